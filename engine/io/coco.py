"""COCO JSON: ground-truth "instances" files and results files in, the same two formats out.

Import (ground truth):
    * images → items, inserted in ASCENDING COCO image id order (evaluation orders images by
      item_id, as pycocotools sorts ``imgIds``). ``reference_id`` is the ``file_name`` stem; when
      stems collide, the whole ``file_name``; when those collide too, ``str(id)``. A (non-standard)
      ``reference_id`` key in an image entry wins: our exporter writes it when the stem would not
      give the item back. Item metadata keeps ``coco_id``, ``file_name`` and every other image key
      (``license``, ``coco_url`` ...). ``image_location`` is ``images_dir/file_name`` when an image
      folder is given (headers are then read and checked), else ``coco_url``, else ``file_name``.
    * categories → labels (the category ``name``). The category list itself (ids, supercategory,
      keypoint names) is kept in the dataset metadata under ``coco`` with ``info`` and
      ``licenses``, so the export writes the same ids back.
    * annotations → one row each, in file order (``seq`` follows it); ``annotation_id = str(id)``.
      ``bbox`` → x, y, width, height; ``area`` and ``iscrowd`` as given. Polygon segmentation →
      kind ``polygon``; RLE (compressed string or uncompressed counts) → kind ``segmentation``
      with the counts; no segmentation → ``box``; keypoints only → ``keypoints`` (keypoints are
      kept on any kind). Other keys go to the annotation metadata and are exported back.

Import (results: a JSON list of ``{image_id, category_id, bbox | segmentation | keypoints,
score}``) → a run's predictions in file order, ``confidence = score``. Geometry and area follow
pycocotools ``loadRes``, whose file type is set by the first entry: a bbox file keeps each
``bbox`` and has area ``w*h``; a segm file takes box and area from the mask; a keypoints file
takes box and area from the keypoints' extent. The kind is per row (mask > polygon > box).

Parsing: a ground-truth file is one JSON object, read with the ``json`` module (measured faster
than DuckDB's reader here: one object does not parallelize). A results file is a JSON array read
with DuckDB's ``read_json`` into a staged table (500k detections: ~0.2 s vs ~1.5 s for
``json.load`` + columns) while the ground truth is parsed; a plain bbox file is then checked and
stored in SQL (:mod:`engine.io.coco_results`), anything else goes through Arrow from the same
table. If DuckDB rejects a file, the ``json`` path re-reads it and names the bad row and field.
"""
from __future__ import annotations

import json
import re
import warnings
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

try:
    import orjson
except ImportError:  # installed without its dependencies: json does the same, slower
    orjson = None

from ..errors import LoupeError, LoupeWarning, ValidationError
from ..ingest.schema import annotation_schema
from engine.store.database import to_arrow
from ._common import (
    ImportSummary,
    Progress,
    bad,
    dataset_metadata,
    first_duplicate,
    json_text,
    lookup,
    release_arrow_memory,
    write_import,
    write_run,
)
from .coco_results import MAX_JSON, RESULTS_SQL, Staged, staged_results, store_staged

if TYPE_CHECKING:
    from ..api.dataset import Dataset
    from ..api.model import ModelRun
    from ..api.workspace import Workspace

GT_KEYS = ("id", "image_id", "category_id", "bbox", "area", "iscrowd", "segmentation", "keypoints")
IMAGE_KEYS = ("id", "file_name", "width", "height", "reference_id")
RAW_SCHEMA = pa.schema([
    ("image_id", pa.int64()), ("category_id", pa.int64()), ("id", pa.int64()),
    ("bbox", pa.list_(pa.float64())), ("area", pa.float64()), ("iscrowd", pa.int64()),
    ("score", pa.float64()), ("polygon", pa.list_(pa.list_(pa.float64()))),
    ("counts_str", pa.string()), ("counts_list", pa.list_(pa.int64())), ("size", pa.list_(pa.int64())),
    ("keypoints", pa.list_(pa.float64())), ("extra", pa.string()),
])


# ================================================================================================
# reading
# ================================================================================================
def load_json(path: str | Path) -> Any:
    """Parse a JSON file; a syntax error becomes a LoupeError naming the file, line and column.

    orjson parses it when installed (a dependency: 2-3x faster than ``json`` on a COCO file, 4.8 MB:
    ~0.04 vs ~0.1 s); what it refuses goes to ``json``. One difference: an integer beyond 64 bits comes
    back as a float (``json`` keeps it whole), as DuckDB's reader of results files reads it."""
    p = Path(path)
    if not p.is_file():
        raise LoupeError(f"COCO file {p} does not exist")
    try:
        with open(p, "rb") as f:
            data = f.read()
        if orjson is not None:
            try:
                return orjson.loads(data)
            except orjson.JSONDecodeError:
                pass  # json names the line and column, and reads what orjson refuses (NaN, a BOM)
        return json.loads(data)
    except json.JSONDecodeError as e:
        raise LoupeError(f"{p} is not valid JSON: {e.msg} at line {e.lineno}, column {e.colno}") from None
    except UnicodeDecodeError as e:
        raise LoupeError(f"{p} is not UTF-8 JSON: {e}") from None
    except RecursionError:
        raise LoupeError(f"{p} is nested too deeply to be a COCO file") from None


def _is_results_file(path: Path) -> bool:
    """A results file is a JSON array; an instances file is an object."""
    with open(path, "rb") as f:
        head = f.read(4096).lstrip(b"\xef\xbb\xbf \t\r\n")
    return head[:1] == b"["


def _column(values: list, typ: pa.DataType, field: str, name_of) -> pa.Array:
    """``pa.array(values, typ)``; on failure a ValidationError naming the first bad record."""
    try:
        return pa.array(values, typ)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError):
        for i, v in enumerate(values):  # error path only
            try:
                pa.array([v], typ)
            except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError):
                raise bad(f"wrong type: {v!r:.60} is not {typ}", name_of(i), field) from None
        raise


def _int_text(v: Any) -> int | None:
    """``"42"`` → 42 (integer text, as faster-coco-eval casts string ids); None otherwise."""
    if isinstance(v, str):
        t = v.strip()
        if t.lstrip("+-").isdigit() and t.isascii():
            return int(t)
    return None


def _ints(values: list, field: str, name_of, required: bool = True) -> pa.Array:
    """Integer ids: bools and non-whole floats are refused (JSON ``1.0`` is accepted as 1, and
    integer text ``"42"`` as 42, as faster-coco-eval casts string image ids)."""
    try:  # fast path: Arrow infers int64 (or double, checked to be whole) in C
        arr = pa.array(values)
        if pa.types.is_floating(arr.type) and pc.all(pc.equal(pc.floor(arr), arr)).as_py() is not False:
            arr = arr.cast(pa.int64())
        elif pa.types.is_string(arr.type):  # all text: Arrow's cast refuses anything but integer text
            arr = pc.cast(pc.utf8_trim_whitespace(arr), pa.int64())
        if (pa.types.is_integer(arr.type) or pa.types.is_null(arr.type)) and not (required and arr.null_count):
            return arr.cast(pa.int64())
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError):
        pass
    for i, v in enumerate(values):  # slow path: name the bad record
        if isinstance(v, bool) or (v is None and required) or not (
                v is None or isinstance(v, int) or (isinstance(v, float) and v.is_integer())
                or _int_text(v) is not None):
            raise bad(f"must be an integer, got {v!r:.60}", name_of(i), field)
        n = _int_text(v) if isinstance(v, str) else v
        if n is not None and not -2**63 <= n < 2**63:
            raise bad(f"must be a 64-bit integer, got {v!r:.60}", name_of(i), field)
    return pa.array([None if v is None else _int_text(v) if isinstance(v, str) else int(v) for v in values],
                    pa.int64())


def _split_segmentation(segs: list, name_of) -> tuple[list, list, list, list]:
    """COCO ``segmentation`` values → polygon rings | compressed string | counts list, and size."""
    n = len(segs)
    poly: list = [None] * n
    cstr: list = [None] * n
    clist: list = [None] * n
    size: list = [None] * n
    for i, s in enumerate(segs):
        if s is None:
            continue
        if isinstance(s, list):
            if len(s) == 0:
                continue
            if not all(isinstance(r, list) for r in s):
                raise bad("polygon segmentation must be a list of [x1, y1, x2, y2, ...] lists",
                          name_of(i), "segmentation")
            poly[i] = s
        elif isinstance(s, dict):
            counts = s.get("counts")
            if isinstance(counts, str):
                cstr[i] = counts
            elif isinstance(counts, list):
                clist[i] = counts
            else:
                raise bad("RLE segmentation needs 'counts' (a string or a list of integers)", name_of(i),
                          "segmentation")
            size[i] = s.get("size")
        else:
            raise bad(f"segmentation must be a polygon list or an RLE object, got {type(s).__name__}",
                      name_of(i), "segmentation")
    return poly, cstr, clist, size


def raw_from_records(recs: Sequence[Any], name_of, gt: bool) -> pa.Table:
    """Annotation or result dicts → the raw columns of :data:`RAW_SCHEMA` (type-checked)."""
    for i, r in enumerate(recs):
        if not isinstance(r, dict):
            raise bad(f"expected a JSON object, got {type(r).__name__}", name_of(i))
    get = lambda k: [r.get(k) for r in recs]  # noqa: E731
    poly, cstr, clist, size = _split_segmentation(get("segmentation"), name_of)
    n = len(recs)
    keys = set().union(*map(dict.keys, recs)) if recs else set()
    extra = ([{k: v for k, v in r.items() if k not in GT_KEYS} for r in recs] if gt and keys - set(GT_KEYS)
             else [None] * n)
    iscrowd = get("iscrowd") if gt else [None] * n
    if gt and set(iscrowd) - {0, 1, None}:  # True/False are 1/0 here
        for i, v in enumerate(iscrowd):
            if v is not None and v not in (0, 1):
                raise bad(f"iscrowd must be 0 or 1, got {v!r:.40}", name_of(i), "iscrowd")
    cols = {
        "image_id": _ints(get("image_id"), "image_id", name_of),
        "category_id": _ints(get("category_id"), "category_id", name_of, required=False),
        "id": _ints(get("id"), "id", name_of, required=False) if gt else pa.nulls(n, pa.int64()),
        "bbox": _column(get("bbox"), pa.list_(pa.float64()), "bbox", name_of),
        "area": _column(get("area"), pa.float64(), "area", name_of) if gt else pa.nulls(n, pa.float64()),
        "iscrowd": pa.array([None if v is None else int(v) for v in iscrowd], pa.int64()),
        "score": pa.nulls(n, pa.float64()) if gt else _column(get("score"), pa.float64(), "score", name_of),
        "polygon": _column(poly, pa.list_(pa.list_(pa.float64())), "segmentation", name_of),
        "counts_str": pa.array(cstr, pa.string()),
        "counts_list": _column(clist, pa.list_(pa.int64()), "segmentation", name_of),
        "size": _column(size, pa.list_(pa.int64()), "segmentation", name_of),
        "keypoints": _column(get("keypoints"), pa.list_(pa.float64()), "keypoints", name_of),
        "extra": json_text(extra),
    }
    return pa.table(cols, schema=RAW_SCHEMA)


# only run when some row has a segmentation (bbox files skip this pass entirely)
_SEGM_SQL = """
SELECT CASE WHEN json_type(s) = 'ARRAY' AND json_array_length(s) > 0 THEN s::DOUBLE[][] END AS polygon,
       CASE WHEN json_type(s -> '$.counts') = 'VARCHAR' THEN s ->> '$.counts' END AS counts_str,
       CASE WHEN json_type(s -> '$.counts') = 'ARRAY' THEN (s -> '$.counts')::BIGINT[] END AS counts_list,
       CASE WHEN json_type(s) = 'OBJECT' THEN (s -> '$.size')::BIGINT[] END AS size,
       json_type(s) AS seg_type, json_type(s -> '$.counts') AS counts_type
FROM (SELECT segmentation::JSON AS s FROM __loupe_segm)
"""


def read_results_raw(path: str | Path, read: pa.Table | None = None) -> pa.Table:
    """A results file → raw columns, via DuckDB's JSON reader (fast path) or ``json`` (names errors).

    ``read``: what :data:`RESULTS_SQL` returned for the file, when a caller already ran it.
    """
    p = Path(path)
    if not p.is_file():
        raise LoupeError(f"COCO results file {p} does not exist")
    try:
        con = duckdb.connect()
        try:
            t = to_arrow(con.sql(RESULTS_SQL, params={"path": str(p), "max": MAX_JSON})) if read is None else read
            n = t.num_rows
            seg = t.column("segmentation")
            if seg.null_count < n:
                con.register("__loupe_segm", pa.table({"segmentation": seg}))
                sp = to_arrow(con.sql(_SEGM_SQL))
                st, ct = sp.column("seg_type"), sp.column("counts_type")
                weird = pc.and_(pc.is_valid(st), pc.invert(pc.is_in(st, pa.array(["ARRAY", "OBJECT", "NULL"]))))
                weird = pc.or_(weird, pc.and_(pc.equal(st, "OBJECT"), pc.invert(pc.is_in(
                    pc.fill_null(ct, "MISSING"), pa.array(["VARCHAR", "ARRAY"])))))
                if pc.any(weird).as_py():
                    raise _Fallback()
            else:
                sp = None
        finally:
            con.close()
        cols = {"image_id": t.column("image_id"), "category_id": t.column("category_id"),
                "id": pa.nulls(n, pa.int64()), "bbox": t.column("bbox"), "area": pa.nulls(n, pa.float64()),
                "iscrowd": pa.nulls(n, pa.int64()), "score": t.column("score")}
        for c in ("polygon", "counts_str", "counts_list", "size"):
            cols[c] = sp.column(c) if sp is not None else pa.nulls(n, RAW_SCHEMA.field(c).type)
        cols["keypoints"] = t.column("keypoints")
        cols["extra"] = pa.nulls(n, pa.string())
        return pa.table({k: v.cast(RAW_SCHEMA.field(k).type) for k, v in cols.items()}, schema=RAW_SCHEMA)
    except (duckdb.Error, _Fallback, pa.ArrowInvalid):
        data = load_json(p)  # the slow path finds and names the bad record
        if isinstance(data, dict) and isinstance(data.get("annotations"), list):
            # results in the dataset layout ({"images": ..., "annotations": [...]}), as faster-coco-eval takes
            anns = data["annotations"]
            return raw_from_records(anns, lambda i: f"results annotations[{i}]", gt=False)
        if not isinstance(data, list):
            raise LoupeError(f"{p} is not a COCO results file (expected a JSON list, or an object with an "
                             "'annotations' list)") from None
        return raw_from_records(data, lambda i: f"results row {i}", gt=False)


class _Fallback(Exception):
    pass


def _stem(name: str) -> str:
    """``PurePosixPath(name).stem`` (also for Windows separators), without building a path object."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    i = base.rfind(".")
    return base[:i] if 0 < i < len(base) - 1 else base


def _image_refs(images: list[dict], image_ids: np.ndarray) -> list[str]:
    """reference_id per image: file_name stem, else whole file_name, else str(id) (see module doc)."""
    ids = [str(i) for i in image_ids.tolist()]
    names = [im.get("file_name") for im in images]
    for cand in ([_stem(str(n)) if n else i for n, i in zip(names, ids)],
                 [str(n) if n else i for n, i in zip(names, ids)]):
        if len(set(cand)) == len(cand):
            break
    else:
        cand = ids
    return [str(im["reference_id"]) if im.get("reference_id") else c for im, c in zip(images, cand)]


def _image_location(im: dict, images_dir: Path | None) -> str | None:
    fn = im.get("file_name")
    if images_dir is not None and fn:
        return str((images_dir / str(fn)).resolve())
    return im.get("coco_url") or (str(fn) if fn else None)


class CocoIndex:
    """The id → reference_id / label maps an annotation or results table is resolved against."""

    def __init__(self, image_ids: np.ndarray, refs: pa.Array, heights: np.ndarray, widths: np.ndarray,
                 categories: list[dict]):
        self.image_ids = image_ids
        self.refs = refs
        self.heights = heights
        self.widths = widths
        self.categories = categories
        self.cat_ids = np.array([int(c["id"]) for c in categories], dtype=np.int64)
        self.labels = pa.array([str(c["name"]).strip() for c in categories], pa.string())
        kp = [c.get("keypoints") for c in categories]
        self.kp_names = pa.array([k if isinstance(k, list) and k else None for k in kp], pa.list_(pa.string()))

    @classmethod
    def of_dataset(cls, ds: "Dataset") -> "CocoIndex":
        """The index of a dataset imported from COCO (coco_id in item metadata, categories in its metadata)."""
        t = ds.ws.store.arrow(
            "SELECT reference_id, TRY_CAST(json_extract_string(metadata, '$.coco_id') AS BIGINT) AS coco_id, "
            "height, width FROM items WHERE dataset_id = ? ORDER BY item_id", [ds.id])
        cats = dataset_metadata(ds).get("coco", {}).get("categories")
        if t.num_rows == 0 or t.column("coco_id").null_count == t.num_rows or not cats:
            raise LoupeError(
                f"dataset '{ds.name}' was not imported from COCO (no COCO image/category ids); "
                "import its ground truth first: loupe import coco GT.json --dataset ...")
        keep = pc.is_valid(t.column("coco_id"))
        t = t.filter(keep)
        return cls(t.column("coco_id").to_numpy(), t.column("reference_id").combine_chunks(),
                   _num(t.column("height")), _num(t.column("width")), cats)


def _num(col) -> np.ndarray:
    return np.asarray(col.to_numpy(zero_copy_only=False), dtype=np.float64)


def parse_gt(data: Any, images_dir: str | Path | None = None,
             bad_masks: str = "error") -> tuple[pa.Table, pa.Table, CocoIndex, dict]:
    """A COCO instances dict → (items table, annotations table, index, dataset metadata patch).

    ``bad_masks="drop"`` keeps an annotation whose RLE mask does not fit its image as a box (its
    ``bbox`` and ``area``), with a warning: a bbox evaluation never reads the mask.
    """
    if not isinstance(data, dict):
        raise LoupeError("not a COCO instances file (expected a JSON object with 'images')")
    images = data.get("images")
    if not isinstance(images, list):
        raise bad("missing or not a list", "COCO file", "images")
    for i, im in enumerate(images):
        if not isinstance(im, dict):
            raise bad("expected a JSON object", f"images[{i}]")
    img_name = lambda i: f"image id {images[i].get('id')} (images[{i}])"  # noqa: E731
    ids = _ints([im.get("id") for im in images], "id", img_name).to_numpy(zero_copy_only=False)
    dup = first_duplicate(ids)
    if dup is not None:
        raise bad("duplicate image id", img_name(dup), "id")
    size = {f: _ints([im.get(f) for im in images], f, img_name, required=False) for f in ("width", "height")}
    order = np.argsort(ids, kind="stable")
    images = [images[i] for i in order]
    ids = ids[order]
    refs = _image_refs(images, ids)
    idir = None if images_dir is None else Path(images_dir)
    meta = [{"coco_id": cid, **{k: v for k, v in im.items() if k not in ("id", "width", "height", "reference_id")}}
            for cid, im in zip(ids.tolist(), images)]
    items = pa.table({
        "reference_id": pa.array(refs, pa.string()),
        "image_location": pa.array([_image_location(im, idir) for im in images], pa.string()),
        "width": size["width"].take(order),  # the JSON's sizes win; with an
        "height": size["height"].take(order),  # image folder, headers fill gaps
        "metadata": json_text(meta),
    })
    cats = data.get("categories") or []
    if not isinstance(cats, list) or not all(isinstance(c, dict) for c in cats):
        raise bad("must be a list of objects", "COCO file", "categories")
    cat_name = lambda i: f"category id {cats[i].get('id')} (categories[{i}])"  # noqa: E731
    cids = _ints([c.get("id") for c in cats], "id", cat_name).to_numpy(zero_copy_only=False)
    for i, c in enumerate(cats):
        if not isinstance(c.get("name"), str) or not c["name"].strip():
            raise bad("category name is missing or empty", cat_name(i), "name")
    for arr, what in ((cids, "id"), (np.array([c["name"].strip() for c in cats], dtype=object), "name")):
        d = first_duplicate(arr)
        if d is not None:
            raise bad(f"duplicate category {what}", cat_name(d), what)
    hw = [np.asarray(size[f].take(order).to_numpy(zero_copy_only=False), dtype=np.float64) for f in ("height", "width")]
    index = CocoIndex(ids, pa.array(refs, pa.string()), *(np.where(v > 0, v, np.nan) for v in hw), cats)
    anns = data.get("annotations") or []
    if not isinstance(anns, list):
        raise bad("must be a list", "COCO file", "annotations")
    ann_name = lambda i: (f"annotation id {anns[i].get('id')} (annotations[{i}])"  # noqa: E731
                          if isinstance(anns[i], dict) else f"annotations[{i}]")
    raw = raw_from_records(anns, ann_name, gt=True)
    d = first_duplicate(raw.column("id").drop_null().to_numpy())
    if d is not None:
        ids_nn = np.flatnonzero(np.asarray(pc.is_valid(raw.column("id"))))
        raise bad("duplicate annotation id", ann_name(int(ids_nn[d])), "id")
    table = build_annotations(raw, index, ann_name, results=None)
    if bad_masks == "drop":
        table = _drop_bad_masks(table, index, raw, ann_name)
    elif bad_masks != "error":
        raise LoupeError(f"bad_masks must be 'error' or 'drop', got {bad_masks!r}")
    patch = {"coco": {"categories": cats, **{k: data[k] for k in ("info", "licenses") if k in data}}}
    return items, table, index, patch


def _drop_bad_masks(table: pa.Table, index: CocoIndex, raw: pa.Table, name_of) -> pa.Table:
    """Annotations whose RLE size differs from the image's become boxes (mask dropped), with a warning."""
    img_pos, _ = lookup(raw.column("image_id").to_numpy(zero_copy_only=False), index.image_ids)
    mh = _num(table.column("mask_height"))
    mw = _num(table.column("mask_width"))
    ih, iw = index.heights[img_pos], index.widths[img_pos]
    bad_rows = (~np.isnan(mh) & ~np.isnan(ih) & ((mh != ih) | (mw != iw))) if len(mh) else np.zeros(0, bool)
    bad_rows &= ~np.isnan(_num(table.column("width")))  # without a bbox there is nothing to keep
    if not bad_rows.any():
        return table
    i = int(np.argmax(bad_rows))
    warnings.warn(LoupeWarning(
        f"{int(bad_rows.sum())} annotation mask(s) do not fit their image (first: {name_of(i)}, "
        f"{int(mh[i])}x{int(mw[i])} mask on a {int(ih[i])}x{int(iw[i])} image); kept as boxes without "
        "the mask (fine for bbox evaluation; segm evaluation refuses such a file)"), stacklevel=3)
    keep = pa.array(~bad_rows)
    for col in ("mask", "mask_height", "mask_width"):
        c = table.column(col)
        table = table.set_column(table.schema.get_field_index(col), col, pc.if_else(keep, c, pa.nulls(len(c), c.type)))
    kind = pc.if_else(keep, table.column("kind"), pa.scalar("box"))
    return table.set_column(table.schema.get_field_index("kind"), "kind", kind)


def _results_type(raw: pa.Table) -> str:
    """pycocotools loadRes' file type, decided by the first entry: bbox | segm | keypoints."""
    if raw.num_rows == 0:
        return "bbox"
    first = raw.slice(0, 1).to_pylist()[0]
    if first["bbox"]:
        return "bbox"
    if first["polygon"] is not None or first["counts_str"] is not None or first["counts_list"] is not None:
        return "segm"
    if first["keypoints"]:
        return "keypoints"
    return "bbox"


def build_annotations(raw: pa.Table, index: CocoIndex, name_of, results: str | None) -> pa.Table:
    """Raw COCO columns → the engine's annotation/prediction table (``results``: loadRes file type)."""
    n = raw.num_rows
    img_pos, found = lookup(raw.column("image_id").to_numpy(zero_copy_only=False), index.image_ids)
    if not found.all():
        i = int(np.argmax(~found))
        raise bad(f"unknown image_id {raw.column('image_id')[i].as_py()}", name_of(i), "image_id")
    cat = raw.column("category_id")
    if cat.null_count:
        i = int(np.argmax(np.asarray(pc.is_null(cat))))
        raise bad("category_id is missing", name_of(i), "category_id")
    cat_pos, found = lookup(cat.to_numpy(zero_copy_only=False), index.cat_ids)
    if not found.all():
        i = int(np.argmax(~found))
        raise bad(f"unknown category_id {cat[i].as_py()}", name_of(i), "category_id")
    if results is not None and raw.column("score").null_count:
        i = int(np.argmax(np.asarray(pc.is_null(raw.column("score")))))
        raise bad("score is missing", name_of(i), "score")

    # boxes: a 4-list, or absent / empty
    bbox = raw.column("bbox").combine_chunks()
    blen = np.asarray(pc.list_value_length(bbox).fill_null(0))
    wrong = (blen != 0) & (blen != 4)
    if wrong.any():
        i = int(np.argmax(wrong))
        raise bad(f"bbox must be [x, y, width, height], got {blen[i]} values", name_of(i), "bbox")
    has_box = blen == 4
    if has_box.all():  # the common case: a read-only view of Arrow's buffer, no copy
        geo = np.asarray(pc.list_flatten(bbox), dtype=np.float64).reshape(-1, 4)
    else:
        geo = np.full((n, 4), np.nan)
        if has_box.any():
            geo[has_box] = np.asarray(pc.list_flatten(bbox.filter(pa.array(has_box))),
                                      dtype=np.float64).reshape(-1, 4)

    mask, mh, mw = _masks(raw, name_of)
    has_mask = np.asarray(pc.is_valid(mask))
    poly = raw.column("polygon").combine_chunks()
    has_poly = np.asarray(pc.is_valid(poly))
    kps = raw.column("keypoints").combine_chunks()
    has_kp = np.asarray(pc.list_value_length(kps).fill_null(0)) > 0
    code = np.select([has_mask, has_poly, has_box, has_kp], [0, 1, 2, 3], default=4)
    if (code == 4).any():
        i = int(np.argmax(code == 4))
        raise bad("annotation has no bbox, segmentation or keypoints", name_of(i), "bbox")
    kind = pa.array(["segmentation", "polygon", "box", "keypoints"]).take(pa.array(code))

    area = _num(raw.column("area"))
    if results == "bbox":
        area = geo[:, 2] * geo[:, 3]
    elif results == "segm":
        geo = geo.copy()
        geo[has_mask | has_poly] = np.nan  # loadRes: box from the mask, area = mask area (engine derives both)
    elif results == "keypoints":
        geo, area = _keypoint_extent(kps, has_kp, geo, area)

    if has_kp.any():
        kp_names = index.kp_names.take(pa.array(cat_pos))
        kp_len = np.asarray(pc.list_value_length(kps).fill_null(0))
        nm_len = np.asarray(pc.list_value_length(kp_names).fill_null(-1))
        kp_names = pc.if_else(pa.array(has_kp & (nm_len * 3 == kp_len)), kp_names, pa.nulls(n, kp_names.type))
        kps = pc.if_else(pa.array(has_kp), kps, pa.nulls(n, kps.type))
    else:
        kp_names, kps = pa.nulls(n, pa.list_(pa.string())), pa.nulls(n, kps.type)
    ids = raw.column("id")
    cols = {
        "reference_id": index.refs.take(pa.array(img_pos)),
        "annotation_id": pc.cast(ids, pa.string()) if ids.null_count < n else pa.nulls(n, pa.string()),
        "kind": kind,
        "label": index.labels.take(pa.array(cat_pos)),
        "x": geo[:, 0], "y": geo[:, 1], "width": geo[:, 2], "height": geo[:, 3],
        "polygon": poly,
        "mask": mask, "mask_height": mh, "mask_width": mw,
        "keypoints": kps,
        "keypoint_names": kp_names,
        "iscrowd": pc.cast(pc.fill_null(raw.column("iscrowd"), 0), pa.bool_()),
        "area": area,
        "metadata": raw.column("extra"),
        "confidence": raw.column("score"),
    }
    schema = annotation_schema()
    return pa.table({k: _as_arrow(v, schema.field(k).type) for k, v in cols.items()},
                    schema=pa.schema([schema.field(k) for k in cols]))


def _as_arrow(v, typ: pa.DataType):
    if isinstance(v, np.ndarray):
        nan = np.isnan(v)
        return pa.array(v, typ, mask=nan if nan.any() else None)  # NaN → NULL
    return v.cast(typ) if v.type != typ else v


def _masks(raw: pa.Table, name_of) -> tuple[pa.Array, pa.Array, pa.Array]:
    """RLE counts (uint32 lists) and mask sizes from the compressed / uncompressed columns."""
    from udfs import rle

    n = raw.num_rows
    cstr = raw.column("counts_str").combine_chunks()
    clist = raw.column("counts_list").combine_chunks()
    size = raw.column("size").combine_chunks()
    has_c, has_l = np.asarray(pc.is_valid(cstr)), np.asarray(pc.is_valid(clist))
    if not (has_c.any() or has_l.any()):
        return pa.nulls(n, pa.list_(pa.uint32())), pa.nulls(n, pa.int64()), pa.nulls(n, pa.int64())
    has = has_c | has_l
    slen = np.asarray(pc.list_value_length(size).fill_null(0))
    wrong = has & (slen != 2)
    if wrong.any():
        i = int(np.argmax(wrong))
        raise bad("RLE segmentation needs 'size': [height, width]", name_of(i), "segmentation")
    sz = np.zeros((n, 2), dtype=np.int64)
    sz[slen == 2] = np.asarray(pc.list_flatten(size.filter(pa.array(slen == 2))), dtype=np.int64).reshape(-1, 2)
    pieces: list[np.ndarray | None] = [None] * n
    rows_c = np.flatnonzero(has_c)
    if len(rows_c):
        strings = cstr.filter(pa.array(has_c)).to_pylist()
        try:
            vals, offs = rle.decompress_many(strings)
        except ValueError:
            for r, s in zip(rows_c, strings):  # error path: find and name the bad string
                try:
                    rle.decompress(s)
                except ValueError as e:
                    raise bad(f"malformed compressed RLE: {e}", name_of(int(r)), "segmentation") from None
            raise
        for j, r in enumerate(rows_c):
            pieces[r] = vals[offs[j]:offs[j + 1]]
    rows_l = np.flatnonzero(has_l)
    if len(rows_l):
        offsets = np.asarray(clist.offsets)
        values = np.asarray(pc.list_flatten(clist), dtype=np.int64)
        neg = (values < 0) | (values > 0xFFFFFFFF)
        if neg.any():
            r = int(np.searchsorted(offsets, np.argmax(neg), side="right") - 1)
            raise bad("RLE counts must be integers in 0 .. 2^32-1", name_of(r), "segmentation")
        for r in rows_l:
            pieces[r] = values[offsets[r]:offsets[r + 1]].astype(np.uint32)
    mask = pa.array(pieces, pa.list_(pa.uint32()))
    return mask, pa.array(np.where(has, sz[:, 0], 0), pa.int64(), mask=~has), \
        pa.array(np.where(has, sz[:, 1], 0), pa.int64(), mask=~has)


def _keypoint_extent(kps: pa.Array, has_kp: np.ndarray, geo: np.ndarray, area: np.ndarray):
    """loadRes for keypoints files: box = extent of all keypoints, area = its w * h."""
    rows = np.flatnonzero(has_kp)
    if len(rows) == 0:
        return geo, area
    flat = np.asarray(pc.list_flatten(kps.filter(pa.array(has_kp))), dtype=np.float64)
    lens = np.asarray(pc.list_value_length(kps.filter(pa.array(has_kp))))
    starts = np.r_[0, np.cumsum(lens // 3)[:-1]]
    xs, ys = flat[0::3], flat[1::3]
    x0, x1 = np.minimum.reduceat(xs, starts), np.maximum.reduceat(xs, starts)
    y0, y1 = np.minimum.reduceat(ys, starts), np.maximum.reduceat(ys, starts)
    geo = geo.copy()
    area = np.full(len(geo), np.nan)
    geo[rows] = np.stack([x0, y0, x1 - x0, y1 - y0], axis=1)
    area[rows] = (x1 - x0) * (y1 - y0)
    return geo, area


def parse_results(path: str | Path, index: CocoIndex, raw: pa.Table | None = None) -> pa.Table:
    """A results file (or its already read ``raw`` columns) → the prediction table, in file order."""
    raw = read_results_raw(path) if raw is None else raw
    return build_annotations(raw, index, lambda i: f"results row {i}", results=_results_type(raw))


# ================================================================================================
# import
# ================================================================================================
@contextmanager
def results_reader(results: str | Path) -> Iterator[Callable[[CocoIndex], pa.Table]]:
    """Start reading a results file on DuckDB's threads; yields ``index -> prediction table``.

    The caller parses (and may store) the ground truth meanwhile: DuckDB's reader runs in native
    threads, and the index the results are resolved against comes from the ground truth.
    """
    with ThreadPoolExecutor(max_workers=1) as pool:
        raw = pool.submit(read_results_raw, results)
        yield lambda index: parse_results(results, index, raw.result())


def import_coco(
    ws: "Workspace",
    path: str | Path,
    dataset: str,
    images_dir: str | Path | None = None,
    results: str | Path | None = None,
    run: str | None = None,
    model: str | None = None,
    check_images: bool | None = None,
    clip: bool | str = False,
    progress: Progress | None = None,
    bad_masks: str = "error",
) -> ImportSummary:
    """Import a COCO instances file (and optionally a results file as a run) into ``dataset``.

    A results file (a JSON list) given as ``path`` is imported as a run of an existing dataset.

    Args:
        images_dir: folder the ``file_name`` entries are relative to; with it, image headers are
            read and every image must exist (``check_images`` defaults to whether it is given).
        results: a results file stored as run ``run`` (default: the file stem) of ``model``.
        clip: clip boxes to the image instead of refusing boxes outside it.
        bad_masks: ``"error"`` (default) refuses a GT mask whose size differs from its image;
            ``"drop"`` keeps such an annotation as its box, with a :class:`LoupeWarning` (a bbox
            evaluation does not need masks; segm does).

    Returns:
        What was written; nothing is written if any record is invalid.
    """
    p = Path(path)
    if p.is_file() and _is_results_file(p):
        if results is not None:
            raise LoupeError(f"{p} is a results file; pass the instances file as PATH")
        return import_coco_results(ws, p, dataset, run=run, model=model, clip=clip)
    check = images_dir is not None if check_images is None else check_images
    if results is None:
        items, anns, _, patch = parse_gt(load_json(p), images_dir, bad_masks)
        summary = write_import(ws, dataset, items, anns, check_images=check, clip=clip, metadata=patch,
                               progress=progress)
    else:  # the ground truth is parsed and stored while DuckDB reads the results; one transaction for all
        run = run or Path(results).stem
        with staged_results(ws.store, results) as staged:
            items, anns, index, patch = parse_gt(load_json(p), images_dir, bad_masks)
            with ws.store.transaction():
                summary = write_import(ws, dataset, items, anns, check_images=check, clip=clip, metadata=patch,
                                       progress=progress)
                summary.predictions = store_results(ws, ws.get_dataset(dataset), results, staged(), index, run,
                                                    model, clip)
                summary.run = run
    del items, anns
    release_arrow_memory()
    return summary


def import_coco_results(ws: "Workspace", path: str | Path, dataset: str, run: str | None = None,
                        model: str | None = None, clip: bool | str = False) -> ImportSummary:
    """Import a COCO results file as run ``run`` (default: file stem) on a dataset imported from COCO."""
    ds = ws.get_dataset(dataset)
    index = CocoIndex.of_dataset(ds)
    run = run or Path(path).stem
    with staged_results(ws.store, path) as staged, ws.store.transaction():
        n = store_results(ws, ds, path, staged(), index, run, model, clip)
    release_arrow_memory()
    return ImportSummary(dataset=dataset, predictions=n, run=run)


def store_results(ws: "Workspace", ds: "Dataset", path: str | Path, staged: Staged | None, index: CocoIndex,
                  run: str, model: str | None, clip: bool | str) -> int:
    """Store a results file as run ``run`` of ``ds`` (in the caller's transaction); returns the count.

    ``staged``: the file as :func:`engine.io.coco_results.staged_results` read it (None if DuckDB
    refused the file). A plain bbox file is checked and stored in SQL; anything else (segm,
    keypoints, a bad record to name) goes the Arrow path, from the same table.
    """
    if staged is None:
        read = None
    else:
        n = store_staged(ws, ds, staged, index, run, model, clip)
        if n is not None:
            return n
        read = to_arrow(ws.store.con.sql(f"SELECT * FROM {staged.table} ORDER BY rowid"))
    preds = parse_results(path, index, read_results_raw(path, read))
    del read
    return write_run(ws, ds, preds, run, model, clip)


# ================================================================================================
# export
# ================================================================================================
_IMG_SQL = """
SELECT reference_id, image_location, width, height, metadata::VARCHAR AS metadata,
       TRY_CAST(json_extract_string(metadata, '$.coco_id') AS BIGINT) AS coco_id
FROM items WHERE dataset_id = ? {subset} ORDER BY item_id
"""


def _subset(items_sql: str | None, alias: str = "") -> str:
    """``AND item_id IN (items_sql)`` restricting an export to a slice's items (or nothing)."""
    return "" if items_sql is None else f"AND {alias}item_id IN ({items_sql})"
_INT_RE = re.compile(r"^[0-9]{1,18}$")


def _export_images(ds: "Dataset", items_sql: str | None = None) -> tuple[list[dict], dict[str, int]]:
    """COCO image entries (original ids when known, new ids after the largest otherwise)."""
    t = ds.ws.store.arrow(_IMG_SQL.format(subset=_subset(items_sql)), [ds.id])
    known = [v for v in t.column("coco_id").to_pylist() if v is not None]
    ids = t.column("coco_id").to_pylist()
    if len(set(known)) != len(known):  # ids clash (e.g. merged imports): renumber all
        ids = [None] * len(ids)
        known = []
    nxt = max(known, default=0) + 1
    images, id_of = [], {}
    for ref, loc, w, h, meta, cid in zip(t.column("reference_id").to_pylist(), t.column("image_location").to_pylist(),
                                         t.column("width").to_pylist(), t.column("height").to_pylist(),
                                         t.column("metadata").to_pylist(), ids):
        if cid is None:
            cid, nxt = nxt, nxt + 1
        m = json.loads(meta) if meta else {}
        fn = m.pop("file_name", None) or (PurePosixPath(loc.replace("\\", "/")).name if loc and "://" not in loc
                                          else (loc.rsplit("/", 1)[-1] if loc else ref))
        im = {"id": int(cid), "file_name": fn, "width": w, "height": h}
        if _stem(fn) != ref:
            im["reference_id"] = ref  # so the import gives this item back
        im.update({k: v for k, v in m.items() if k not in IMAGE_KEYS and k != "coco_id"})
        images.append(im)
        id_of[ref] = int(cid)
    return images, id_of


def _export_categories(ds: "Dataset", labels: Sequence[str]) -> tuple[list[dict], dict[str, int]]:
    cats = [dict(c) for c in dataset_metadata(ds).get("coco", {}).get("categories", [])]
    id_of = {str(c["name"]).strip(): int(c["id"]) for c in cats}
    nxt = max(id_of.values(), default=0) + 1
    for lab in sorted(set(labels) - set(id_of)):
        cats.append({"id": nxt, "name": lab, "supercategory": lab})
        id_of[lab] = nxt
        nxt += 1
    return cats, id_of


def _segmentations(t: pa.Table, crowd_uncompressed: bool) -> list[Any]:
    """COCO ``segmentation`` values: polygon rings, or RLE dicts (compressed; crowd GT uncompressed)."""
    from udfs import rle

    n = t.num_rows
    out: list[Any] = t.column("polygon").to_pylist()
    masks = t.column("mask").combine_chunks()
    rows = np.flatnonzero(np.asarray(pc.is_valid(masks)))
    if len(rows):
        sub = masks.take(pa.array(rows))
        values = np.asarray(pc.list_flatten(sub), dtype=np.uint32)
        offs = np.asarray(sub.offsets, dtype=np.int64) - int(sub.offsets[0].as_py())
        strings = rle.compress_many(values, offs)
        crowd = t.column("iscrowd").to_pylist()
        hs, ws_ = t.column("__h").to_pylist(), t.column("__w").to_pylist()
        for j, r in enumerate(rows):
            counts: Any = strings[j]
            if crowd_uncompressed and crowd[r]:
                counts = values[offs[j]:offs[j + 1]].tolist()
            out[r] = {"size": [hs[r], ws_[r]], "counts": counts}
    assert len(out) == n
    return out


def coco_dict(ds: "Dataset", items_sql: str | None = None) -> dict[str, Any]:
    """The dataset's current ground truth as a COCO instances dict (see :func:`export_coco`).

    ``items_sql`` (SQL selecting ``item_id``) restricts it to those items, e.g. a slice's.
    """
    images, img_id = _export_images(ds, items_sql)
    t = ds.ws.store.arrow(
        f"""SELECT i.reference_id, a.annotation_id, a.kind, a.label, a.x, a.y, a.width, a.height, a.polygon, a.mask,
                  a.keypoints, a.iscrowd, a.area, a.metadata::VARCHAR AS metadata, i.height AS __h, i.width AS __w
           FROM annotations a JOIN items i USING (item_id)
           WHERE a.dataset_id = ? AND a.valid_to IS NULL AND a.kind <> 'category' {_subset(items_sql, "a.")}
           ORDER BY a.seq""", [ds.id])
    cats, cat_id = _export_categories(ds, t.column("label").to_pylist())
    aids = t.column("annotation_id").to_pylist()
    numeric = all(a is not None and _INT_RE.match(a) for a in aids) and len(set(aids)) == len(aids)
    ids = [int(a) for a in aids] if numeric else list(range(1, len(aids) + 1))
    segs = _segmentations(t, crowd_uncompressed=True)
    cols = {c: t.column(c).to_pylist() for c in ("reference_id", "label", "x", "y", "width", "height", "keypoints",
                                                 "iscrowd", "area", "metadata", "kind")}
    anns = []
    for j in range(t.num_rows):
        a: dict[str, Any] = {"id": ids[j], "image_id": img_id[cols["reference_id"][j]],
                             "category_id": cat_id[cols["label"][j]]}
        if segs[j] is not None:
            a["segmentation"] = segs[j]
        if cols["x"][j] is not None:
            a["bbox"] = [cols["x"][j], cols["y"][j], cols["width"][j], cols["height"][j]]
        if cols["area"][j] is not None:
            a["area"] = cols["area"][j]
        a["iscrowd"] = int(bool(cols["iscrowd"][j]))
        if cols["keypoints"][j] is not None:
            a["keypoints"] = cols["keypoints"][j]
            a.setdefault("num_keypoints", int(sum(1 for v in cols["keypoints"][j][2::3] if v > 0)))
        if cols["metadata"][j]:
            a.update({k: v for k, v in json.loads(cols["metadata"][j]).items() if k not in GT_KEYS})
        anns.append(a)
    meta = dataset_metadata(ds).get("coco", {})
    out: dict[str, Any] = {}
    if "info" in meta:
        out["info"] = meta["info"]
    if "licenses" in meta:
        out["licenses"] = meta["licenses"]
    out.update({"images": images, "annotations": anns, "categories": cats})
    return out


def results_list(run: "ModelRun", items_sql: str | None = None) -> list[dict[str, Any]]:
    """A run's predictions as a COCO results list (bbox, or segmentation for masks/polygons, + score)."""
    ds = run.dataset
    _, img_id = _export_images(ds, items_sql)
    t = ds.ws.store.arrow(
        f"""SELECT i.reference_id, p.kind, p.label, p.x, p.y, p.width, p.height, p.polygon, p.mask, p.keypoints,
                  p.confidence, FALSE AS iscrowd, i.height AS __h, i.width AS __w
           FROM predictions p JOIN items i USING (item_id) WHERE p.run_id = ? AND p.kind <> 'category'
           {_subset(items_sql, "p.")} ORDER BY p.seq""", [run.id])
    _, cat_id = _export_categories(ds, t.column("label").to_pylist())
    segs = _segmentations(t, crowd_uncompressed=False)
    cols = {c: t.column(c).to_pylist() for c in ("reference_id", "label", "kind", "x", "y", "width", "height",
                                                 "keypoints", "confidence")}
    out = []
    for j in range(t.num_rows):
        r: dict[str, Any] = {"image_id": img_id[cols["reference_id"][j]], "category_id": cat_id[cols["label"][j]]}
        kind = cols["kind"][j]
        if kind in ("box", "keypoints") and cols["x"][j] is not None:
            r["bbox"] = [cols["x"][j], cols["y"][j], cols["width"][j], cols["height"][j]]
        if segs[j] is not None and kind in ("segmentation", "polygon", "box"):
            r["segmentation"] = segs[j]
        if cols["keypoints"][j] is not None:
            r["keypoints"] = cols["keypoints"][j]
        r["score"] = cols["confidence"][j]
        out.append(r)
    return out


def export_coco(ds: "Dataset", path: str | Path, run: str | None = None,
                items_sql: str | None = None) -> dict[str, int]:
    """Write the dataset's ground truth as COCO JSON; with ``run``, that run's results file instead.

    Args:
        items_sql: SQL selecting the ``item_id`` of the items to export (default: all).

    Returns:
        counts written: ``{"images", "annotations", "categories"}`` or ``{"results"}``.
    """
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    if run is not None:
        r = ds.ws.get_run(run)
        if r.dataset_id != ds.id:
            raise LoupeError(f"run '{run}' is not a run of dataset '{ds.name}'")
        res = results_list(r, items_sql)
        _dump(p, res)
        return {"results": len(res)}
    d = coco_dict(ds, items_sql)
    _dump(p, d)
    return {"images": len(d["images"]), "annotations": len(d["annotations"]), "categories": len(d["categories"])}


def export_slice(ds: "Dataset", path: str | Path, item_ids_sql: str, run: str | None = None) -> dict[str, int]:
    """Export only the items selected by ``item_ids_sql`` (the hook ``Slice.export("coco", ...)`` calls)."""
    return export_coco(ds, path, run=run, items_sql=item_ids_sql)


def _dump(p: Path, obj: Any) -> None:
    tmp = p.with_name(p.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f, separators=(",", ":"))
    tmp.replace(p)


__all__ = ["import_coco", "import_coco_results", "results_reader", "export_coco", "export_slice", "coco_dict", "results_list", "parse_gt",
           "parse_results", "read_results_raw", "load_json", "CocoIndex", "ValidationError"]
