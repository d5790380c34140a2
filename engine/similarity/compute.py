"""``compute_embeddings``: run an embedder over a dataset's images or object crops, batch by batch.

Each batch is validated and committed on its own, so an interrupted run keeps what it finished, and a
second call embeds only what the set does not hold yet (resume = skip what is stored). Object levels embed
the box crop (ground-truth boxes, or a run's predictions); an image is decoded once per batch for all its
objects. The embedder comes from ``engine.similarity.embedders.resolve_embedder`` (imported lazily: the
built-ins are optional); a plain callable ``images -> float32[N, d]`` is wrapped by it.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import pyarrow as pa

from engine.errors import LoupeError, ValidationError
from . import schema, sets

if TYPE_CHECKING:
    from engine.api.dataset import Dataset


def resolve(model: Any) -> Any:
    """A built-in embedder by name, or a callable wrapped as one (engine/similarity/embedders.py)."""
    from .embedders import resolve_embedder  # lazy: the built-ins pull optional extras only when used

    return resolve_embedder(model)


def _todo_sql(level: str) -> str:
    """What is not embedded yet: item_id, object_id, image_location, reference_id and the box."""
    if level == "item":
        return """SELECT i.item_id, NULL::VARCHAR AS object_id, i.image_location, i.reference_id,
                         NULL::DOUBLE AS x, NULL::DOUBLE AS y, NULL::DOUBLE AS w, NULL::DOUBLE AS h
                  FROM items i WHERE i.dataset_id = $ds AND i.item_id NOT IN (SELECT item_id FROM stored)
                  ORDER BY i.item_id"""
    src = ("""SELECT a.item_id, a.annotation_id AS oid, a.x, a.y, a.width, a.height FROM annotations a
              WHERE a.dataset_id = $ds AND a.valid_to IS NULL AND a.width > 0 AND a.height > 0""" if level == "gt" else
           """SELECT p.item_id, p.annotation_id AS oid, p.x, p.y, p.width, p.height FROM predictions p
              WHERE p.run_id = $run AND p.width > 0 AND p.height > 0""")
    return f"""SELECT o.item_id, o.oid AS object_id, i.image_location, i.reference_id, o.x, o.y, o.width AS w,
                      o.height AS h
               FROM ({src}) o JOIN items i ON i.item_id = o.item_id
               WHERE NOT EXISTS (SELECT 1 FROM stored s WHERE s.item_id = o.item_id AND s.object_id = o.oid)
               ORDER BY o.item_id, o.oid"""


def _stored_sql(info: sets.SetInfo | None) -> str:
    if info is None:
        return "SELECT NULL::BIGINT AS item_id, NULL::VARCHAR AS object_id WHERE false"
    t = "embedding_hashes" if info.kind == "hash" else schema.vector_table(info.dim)
    return f"SELECT item_id, object_id FROM {t} WHERE set_id = {int(info.set_id)}"


def _open(loc: str | None, ref: str) -> Any:
    from PIL import Image

    if not loc or "://" in str(loc):
        raise ValidationError("no local image to embed (image_location)", record=f"reference_id '{ref}'",
                              field="image_location")
    try:
        with Image.open(Path(loc)) as im:
            return im.convert("RGB")
    except (OSError, ValueError) as e:
        raise ValidationError(f"cannot read image: {e}", record=f"reference_id '{ref}'",
                              field="image_location") from None


def _images(rows: pa.Table) -> list:
    """The batch's images (item level) or box crops (object levels); each image decoded once."""
    locs = rows.column("image_location").to_pylist()
    refs = rows.column("reference_id").to_pylist()
    boxes = np.stack([rows.column(c).to_numpy(zero_copy_only=False).astype(float) for c in ("x", "y", "w", "h")], 1)
    out, cache = [], {}
    for loc, ref, (x, y, w, h) in zip(locs, refs, boxes):
        im = cache.get(ref)
        if im is None:
            im = cache[ref] = _open(loc, ref)
        if np.isnan(x):
            out.append(im)
        else:
            x0, y0 = max(0, int(np.floor(x))), max(0, int(np.floor(y)))
            x1, y1 = min(im.size[0], int(np.ceil(x + w))), min(im.size[1], int(np.ceil(y + h)))
            out.append(im.crop((x0, y0, max(x1, x0 + 1), max(y1, y0 + 1))))
    return out


def _progress(progress: Any) -> Callable[[int, int], None] | None:
    if callable(progress):
        return progress
    if not progress:
        return None

    def report(done: int, total: int) -> None:
        end = "\n" if done >= total else "\r"
        sys.stderr.write(f"embedding: {done}/{total}{end}")
        sys.stderr.flush()

    return report


def compute_embeddings(ds: "Dataset", model: Any = "phash", level: str = "item", name: str | None = None,
                       run: Any = None, batch_size: int = 32, progress: Any = True,
                       limit: int | None = None) -> dict[str, Any]:
    """See ``Dataset.compute_embeddings``. Returns ``{"name", "model", "level", "computed", "skipped", "total"}``."""
    if level not in sets.LEVELS:
        raise ValidationError(f"level must be one of {', '.join(sets.LEVELS)}, got {level!r}", field="level")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size <= 0:
        raise ValidationError(f"batch_size must be a positive integer, got {batch_size!r}", field="batch_size")
    embedder = resolve(model)
    run_id = sets._run_id(ds, level, run)
    name = name or (embedder.name if level == "item" else f"{embedder.name}-{level}")
    store = ds.ws.store
    try:
        info = sets.get_set(ds, name)
    except LoupeError:
        info = None
    if info is not None and (info.level, info.run_id) != (level, run_id):
        raise ValidationError(f"embedding set '{name}' exists at another level or run; pass another name=",
                              field="name")
    todo = store.arrow(f"WITH stored AS ({_stored_sql(info)}) {_todo_sql(level)}",
                       {"ds": ds.id} | ({"run": run_id} if level == "prediction" else {}))
    if limit is not None:
        todo = todo.slice(0, int(limit))
    total = len(todo)
    n_stored = 0 if info is None else int(store.scalar(f"SELECT count(*) FROM ({_stored_sql(info)})"))
    report = _progress(progress)
    done = 0
    if report is not None:
        report(0, total)
    for start in range(0, total, batch_size):
        rows = todo.slice(start, batch_size)
        images = _images(rows)
        first = rows.column("reference_id")[0].as_py()
        try:
            out = embedder(images)
        except ValidationError:
            raise
        except LoupeError as e:  # the embedder refused its own output (shape, NaN ...): name the batch
            raise ValidationError(str(e), record=f"batch from reference_id '{first}'") from None
        kind = getattr(embedder, "kind", "vector")
        values = np.asarray(out)
        if kind == "hash":
            if values.shape != (len(images),):
                raise ValidationError(f"embedder '{embedder.name}' returned shape {values.shape} for {len(images)} "
                                      f"images (expected [{len(images)}] uint64 hashes)", record=f"reference_id '{first}'")
            values = values.astype(np.uint64)
        else:
            if values.ndim != 2 or values.shape[0] != len(images):
                raise ValidationError(f"embedder '{embedder.name}' returned shape {values.shape} for {len(images)} "
                                      f"images (expected [{len(images)}, d])", record=f"reference_id '{first}'")
            bad = ~np.isfinite(values).all(axis=1)
            if bad.any():
                raise ValidationError("embedder returned NaN or infinity",
                                      record=f"reference_id '{rows.column('reference_id')[int(np.flatnonzero(bad)[0])].as_py()}'",
                                      field="vector")
            values = values.astype(np.float32)
        batch = sets.Batch(rows.column("item_id").to_numpy().astype(np.int64),
                           rows.column("object_id").combine_chunks(), values, kind)
        sets.write(ds, name, batch, level, run_id, embedder.name)  # one transaction per batch: resumable
        done += len(rows)
        if report is not None:
            report(done, total)
    return {"name": name, "model": embedder.name, "level": level, "computed": done, "skipped": n_stored,
            "total": n_stored + done}
