"""2-D maps of an embedding set for a dashboard: PCA (numpy, always) or UMAP (only when ``umap-learn`` is
installed), stored per item / object in ``embedding_maps`` and drawn as a PNG scatter coloured by label,
slice or status.

PCA: the two leading eigenvectors of the covariance of the raw vectors (d x d eigendecomposition, so cost is
O(N d^2) and memory O(N d)); signs fixed so each axis' largest loading is positive (stable across runs).
Hash sets are mapped from their 64 bits as 0/1 coordinates.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from engine.errors import LoupeError, ValidationError
from . import search, sets
from .uniqueness import raw_values

if TYPE_CHECKING:
    from engine.api.dataset import Dataset

METHODS = ("pca", "umap")


def pca_2d(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float64)
    if len(x) == 0:
        return np.zeros((0, 2))
    c = x - x.mean(axis=0)
    w, v = np.linalg.eigh(c.T @ c)
    comps = v[:, np.argsort(w)[::-1][:2]]
    if comps.shape[1] < 2:
        comps = np.pad(comps, ((0, 0), (0, 2 - comps.shape[1])))
    comps *= np.where(comps[np.abs(comps).argmax(axis=0), [0, 1]] < 0, -1.0, 1.0)
    return c @ comps


def _umap_2d(x: np.ndarray, seed: int) -> np.ndarray:
    try:
        import umap  # noqa: F401
    except ImportError:
        raise LoupeError("method='umap' needs umap-learn (pip install umap-learn); method='pca' needs nothing") from None
    return umap.UMAP(n_components=2, random_state=seed).fit_transform(x)


def embedding_map(ds: "Dataset", name: str | None = None, method: str = "pca", seed: int = 0) -> pa.Table:
    """Compute and store the set's 2-D map; ``reference_id`` [+ object id], ``x``, ``y``."""
    if method not in METHODS:
        raise ValidationError(f"method must be one of {', '.join(METHODS)}, got {method!r}", field="method")
    info = sets.get_set(ds, name)
    entry = search.loaded(ds, info)
    raw = raw_values(ds, info)
    if info.kind == "hash":
        raw = np.unpackbits(raw.view(np.uint8).reshape(-1, 8), axis=1).astype(np.float64)
    xy = pca_2d(raw) if method == "pca" else _umap_2d(raw, seed)
    rows = pa.table({"set_id": pa.array(np.full(len(entry), info.set_id, np.int32)),
                     "item_id": pa.array(entry.item_id),
                     "object_id": pa.array(entry.object_id.tolist() if entry.object_id is not None else [None] * len(entry),
                                           pa.string()),
                     "method": pa.array([method] * len(entry), pa.string()),
                     "x": pa.array(xy[:, 0].astype(np.float64)), "y": pa.array(xy[:, 1].astype(np.float64))})
    store = ds.ws.store
    with store.transaction() as con:
        con.execute("DELETE FROM embedding_maps WHERE set_id = $s AND method = $m", {"s": info.set_id, "m": method})
        con.register("__map_rows", rows)
        try:
            con.execute("INSERT INTO embedding_maps SELECT * FROM __map_rows")
        finally:
            con.unregister("__map_rows")
    return stored_map(ds, info.name, method)


def stored_map(ds: "Dataset", name: str | None = None, method: str = "pca") -> pa.Table:
    """The stored map (computed earlier): ``reference_id`` [+ object id], ``x``, ``y``."""
    info = sets.get_set(ds, name)
    t = ds.ws.store.arrow(
        """SELECT i.reference_id, m.object_id, m.x, m.y FROM embedding_maps m JOIN items i USING (item_id)
           WHERE m.set_id = $s AND m.method = $m ORDER BY m.item_id, m.object_id""", {"s": info.set_id, "m": method})
    if info.level == "item":
        return t.drop_columns(["object_id"])
    return t.rename_columns(["reference_id", info.id_column, "x", "y"])


def _colours(ds: "Dataset", info: sets.SetInfo, keys: pa.Table, colour_by: str, run: Any) -> list:
    """Per map row: the category to colour by."""
    store = ds.ws.store
    con = store.con
    con.register("__map_keys", keys)
    try:
        if colour_by == "label":
            if info.level == "item":  # the item's most frequent current GT label; "unlabeled" without GT
                sql = """SELECT coalesce((SELECT a.label FROM annotations a WHERE a.item_id = k.item_id
                                          AND a.valid_to IS NULL GROUP BY a.label ORDER BY count(*) DESC, a.label
                                          LIMIT 1), 'unlabeled') FROM __map_keys k ORDER BY k.rn"""
            elif info.level == "gt":
                sql = """SELECT a.label FROM __map_keys k LEFT JOIN annotations a ON a.item_id = k.item_id
                         AND a.annotation_id = k.object_id AND a.valid_to IS NULL ORDER BY k.rn"""
            else:
                sql = f"""SELECT p.label FROM __map_keys k LEFT JOIN predictions p ON p.item_id = k.item_id
                          AND p.annotation_id = k.object_id AND p.run_id = {int(info.run_id)} ORDER BY k.rn"""
        elif colour_by == "slice":  # the first slice (by creation) holding the item
            sql = """SELECT (SELECT s.name FROM slice_items si JOIN slices s USING (slice_id)
                             WHERE si.item_id = k.item_id ORDER BY s.slice_id LIMIT 1) FROM __map_keys k ORDER BY k.rn"""
        elif colour_by == "status":
            if run is None:
                raise LoupeError("colour_by='status' needs run=")
            rid = int(ds.ws.get_run(run if isinstance(run, str) else run.name).id)
            sql = f"""SELECT CASE WHEN NOT EXISTS (SELECT 1 FROM annotations a WHERE a.item_id = k.item_id
                                                   AND a.valid_to IS NULL) THEN 'unlabeled'
                                  WHEN EXISTS (SELECT 1 FROM matches m WHERE m.run_id = {rid} AND m.item_id = k.item_id
                                               AND m.status IN ('fp', 'fn')) THEN 'has errors'
                                  ELSE 'clean' END FROM __map_keys k ORDER BY k.rn"""
        else:
            raise ValidationError(f"colour_by must be label, slice or status, got {colour_by!r}", field="colour_by")
        return [r[0] for r in con.execute(sql).fetchall()]
    finally:
        con.unregister("__map_keys")


def map_png(ds: "Dataset", path: str, name: str | None = None, method: str = "pca", colour_by: str = "label",
            run: Any = None) -> str:
    """Draw the set's stored map (computed now if absent) as a PNG scatter coloured by ``colour_by``."""
    from .plots import scatter_png

    info = sets.get_set(ds, name)
    t = ds.ws.store.arrow("""SELECT item_id, object_id, x, y FROM embedding_maps WHERE set_id = $s AND method = $m
                             ORDER BY item_id, object_id""", {"s": info.set_id, "m": method})
    if len(t) == 0:
        embedding_map(ds, info.name, method)
        return map_png(ds, path, info.name, method, colour_by, run)
    keys = pa.table({"rn": pa.array(np.arange(len(t))), "item_id": t.column("item_id"), "object_id": t.column("object_id")})
    colours = _colours(ds, info, keys, colour_by, run)
    scatter_png(t.column("x").to_numpy(), t.column("y").to_numpy(), colours, path,
                f"{method.upper()} map of '{info.name}' ({len(t)} {'items' if info.level == 'item' else 'objects'})",
                colour_by)
    return str(path)
