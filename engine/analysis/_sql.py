"""Small SQL helpers shared by the analysis modules: named parameters and temporary Arrow views."""
from __future__ import annotations

import contextlib
import re
import uuid
from typing import Any, Iterator, Mapping

import pyarrow as pa

from engine.store.database import Store

_PARAM = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)")


def used_params(sql: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """The subset of ``params`` that ``sql`` names (DuckDB refuses unused named parameters)."""
    names = set(_PARAM.findall(sql))
    return {k: v for k, v in params.items() if k in names}


def arrow(store: Store, sql: str, params: Mapping[str, Any]) -> pa.Table:
    """Run ``sql`` with the named parameters it uses; the result as an Arrow table."""
    return store.arrow(sql, used_params(sql, params))


@contextlib.contextmanager
def registered(store: Store, table: pa.Table, prefix: str) -> Iterator[str]:
    """Register ``table`` under a fresh name for the duration of the block (works read-only too)."""
    name = f"__{prefix}_{uuid.uuid4().hex[:12]}"
    con = store.con
    con.register(name, table)
    try:
        yield name
    finally:
        with contextlib.suppress(Exception):
            con.unregister(name)


def bin_sql(src: str, n: int, ranges: str, keys: tuple[str, ...] = ("g",)) -> str:
    """Equal-width histogram of ``src(keys..., v)`` per group, with numpy's bin rules.

    Args:
        src: a query with the group columns ``keys`` and ``v`` (finite values).
        n: number of bins.
        ranges: a query with ``keys``, ``lo``, ``hi`` — the histogram range of each group; values
            outside it are not counted (numpy's ``range=``). ``hi = lo`` gives one zero-width bin.
        keys: the group columns (trusted identifiers).

    Returns:
        A query with ``keys..., bin, lower, upper, count``, every bin present (count 0 when empty). As
        in ``numpy.histogram`` every bin is half-open except the last, which includes ``hi``.
    """
    n = int(n)
    k = ", ".join(keys)
    sk = ", ".join(f"s.{c}" for c in keys)
    ak = ", ".join(f"a.{c}" for c in keys)
    return f"""
    WITH __r AS (SELECT {k}, lo, hi, CASE WHEN hi > lo THEN {n} ELSE 1 END AS nb FROM ({ranges})),
    __v AS (
        SELECT {sk}, s.v, r.lo, r.hi, r.nb,
               CASE WHEN r.hi > r.lo
                    THEN least(CAST(floor((s.v - r.lo) * (r.nb / (r.hi - r.lo))) AS BIGINT), r.nb - 1)
                    ELSE 0 END AS b0
        FROM ({src}) s JOIN __r r USING ({k})
        WHERE s.v >= r.lo AND s.v <= r.hi),
    __b AS (  -- numpy's correction of float rounding against the exact edges
        SELECT {k}, b0 - CASE WHEN v < lo + b0 * ((hi - lo) / nb) THEN 1 ELSE 0 END
                       + CASE WHEN b0 < nb - 1 AND v >= lo + (b0 + 1) * ((hi - lo) / nb) THEN 1 ELSE 0 END AS bin
        FROM __v),
    __c AS (SELECT {k}, bin, count(*) AS c FROM __b GROUP BY ALL),
    __all AS (SELECT {k}, lo, hi, nb, unnest(range(nb)) AS bin FROM __r)
    SELECT {ak}, a.bin, a.lo + a.bin * ((a.hi - a.lo) / a.nb) AS lower,
           CASE WHEN a.bin = a.nb - 1 THEN a.hi ELSE a.lo + (a.bin + 1) * ((a.hi - a.lo) / a.nb) END AS upper,
           coalesce(c.c, 0) AS count
    FROM __all a LEFT JOIN __c c USING ({k}, bin)
    """
