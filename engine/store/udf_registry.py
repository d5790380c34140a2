"""Registers Loupe's SQL functions (macros from ``udfs/*.sql``, Python UDFs) on a connection."""
from __future__ import annotations

import functools
import re
from importlib import resources

import duckdb


def _macro_files() -> list[str]:
    root = resources.files("udfs")
    return sorted(p.name for p in root.iterdir() if p.name.endswith(".sql"))


_CREATE_MACRO = re.compile(r"^\s*CREATE\s+(OR\s+REPLACE\s+)?(TEMP\s+|TEMPORARY\s+)?MACRO", re.I)


def register(con: duckdb.DuckDBPyConnection) -> None:
    """Create every SQL macro shipped in ``udfs/`` on this connection (idempotent).

    Macros are created TEMP: they then live in the connection's temp catalog, which also works on a
    workspace opened read-only, and never end up stored in (or required by) the workspace file.
    """
    con.execute(_macro_script())  # one call: a shared workspace registers them at every (re)connect
    register_python(con)


@functools.lru_cache(maxsize=1)
def _macro_script() -> str:
    """Every macro's CREATE statement, read and rewritten once per process."""
    from engine.store.database import _read_sql, _sql_statements

    return ";\n".join(_CREATE_MACRO.sub("CREATE OR REPLACE TEMP MACRO", stmt, count=1)
                       for name in _macro_files() for stmt in _sql_statements(_read_sql("udfs", name)))


def _flat(arr) -> tuple:
    """(values, offsets, valid) of an Arrow list<uint32> array (offsets rebased to 0)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    a = arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr
    a = a.cast(pa.list_(pa.uint32()))
    valid = ~np.asarray(pc.is_null(a))
    offsets = np.asarray(a.offsets, dtype=np.int64)
    values = np.asarray(a.values, dtype=np.uint32)
    return values, offsets, valid


def _mask_iou(dt, gt, crowd):
    """Arrow UDF: COCO mask IoU of aligned RLE count lists (crowd GT: union = dt area)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    from udfs import rle

    dv, do, dok = _flat(dt)
    gv, go, gok = _flat(gt)
    cr = np.asarray(pc.fill_null(crowd, False)).astype(bool)
    ok = dok & gok
    idx = np.flatnonzero(ok)
    out = np.full(len(ok), np.nan)
    if len(idx):
        out[idx] = rle.iou_pairs_flat(dv, do, idx, gv, go, idx, cr[idx])
    return pa.array(out, pa.float64(), mask=~ok)


def _mask_area(m):
    """Arrow UDF: pixel count of an RLE (sum of the odd runs)."""
    import numpy as np
    import pyarrow as pa

    from udfs import rle

    v, o, ok = _flat(m)
    out = np.zeros(len(ok), np.float64)
    if len(ok):
        out = rle.area_flat(v, o).astype(np.float64)
    return pa.array(out, pa.float64(), mask=~ok)


def register_python(con: duckdb.DuckDBPyConnection) -> None:
    """Vectorized (Arrow) Python UDFs over COCO RLE masks: ``mask_iou(dt, gt, crowd)``, ``mask_area(m)``."""
    try:
        from duckdb import sqltypes as T  # noqa: N812
    except ImportError:  # duckdb < 1.4
        from duckdb import typing as T  # noqa: N812

    rle_t = duckdb.list_type(T.UINTEGER)
    for name, fn, args, ret in (("mask_iou", _mask_iou, [rle_t, rle_t, T.BOOLEAN], T.DOUBLE),
                                ("mask_area", _mask_area, [rle_t], T.DOUBLE)):
        try:
            con.create_function(name, fn, args, ret, type="arrow", null_handling="special")
        except duckdb.CatalogException:  # already registered on this connection
            pass
