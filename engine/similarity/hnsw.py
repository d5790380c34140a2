"""Optional approximate search: an HNSW index (``usearch``, extra ``similarity``) over a vector set.

Built lazily on first use and kept beside the workspace file (``<workspace>.indexes/``; in memory for an
in-memory workspace), keyed by the set and its version so a changed set is rebuilt. At build time recall@10
against exact search is measured on a sample of the set's own vectors and reported: HNSW recall depends on
the data (on iid random vectors it collapses), so it is checked on the user's vectors, never assumed.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from engine.errors import LoupeError

if TYPE_CHECKING:
    from engine.api.dataset import Dataset
    from .search import Loaded


def _usearch():
    try:
        from usearch.index import Index
    except ImportError:
        raise LoupeError("method='hnsw' needs the usearch package: pip install 'loupe[similarity]'") from None
    return Index


def _path(ds: "Dataset", entry: "Loaded") -> Path | None:
    if ds.ws.path is None:
        return None
    i = entry.info
    return Path(str(ds.ws.path) + ".indexes") / f"set{i.set_id}-v{i.version}-n{len(entry)}.usearch"


def recall_at_10(entry: "Loaded", index: Any, sample: int = 200, seed: int = 0) -> float:
    """Mean recall@10 of the index against exact search, over ``sample`` of the set's own vectors."""
    from .search import top_k

    n = len(entry)
    if n == 0:
        return 1.0
    rng = np.random.default_rng(seed)
    picks = rng.choice(n, size=min(sample, n), replace=False)
    k = min(10, n)
    hits = 0
    found = index.search(entry.matrix[picks], k)
    keys = np.asarray(found.keys).reshape(len(picks), -1)
    for j, p in enumerate(picks):
        exact = top_k(entry.matrix @ entry.matrix[p], k)
        hits += len(np.intersect1d(exact, keys[j][keys[j] < n]))
    return hits / (len(picks) * k)


def ensure(ds: "Dataset", entry: "Loaded", connectivity: int = 16, expansion_add: int = 128,
           expansion_search: int = 64, rebuild: bool = False) -> dict[str, Any]:
    """The set's index (built, or read from beside the workspace) and its report."""
    Index = _usearch()
    with entry.lock:
        if entry.hnsw is not None and not rebuild:
            return entry.hnsw_report
        path = _path(ds, entry)
        meta = path.with_suffix(".json") if path is not None else None
        index = Index(ndim=entry.info.dim, metric="cos", dtype="f32", connectivity=connectivity,
                      expansion_add=expansion_add, expansion_search=expansion_search)
        if path is not None and path.exists() and meta.exists() and not rebuild:
            index.load(str(path))
            report = json.loads(meta.read_text())
        else:
            index.add(np.arange(len(entry), dtype=np.uint64), entry.matrix)
            report = {"set": entry.info.name, "size": len(entry), "dim": entry.info.dim,
                      "connectivity": connectivity, "expansion_add": expansion_add,
                      "expansion_search": expansion_search, "recall_at_10": recall_at_10(entry, index),
                      "path": str(path) if path is not None else None}
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
                index.save(str(path))
                meta.write_text(json.dumps(report))
        entry.hnsw, entry.hnsw_report = index, report
        return report


def search(ds: "Dataset", entry: "Loaded", q: np.ndarray, k: int, allowed: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Positions and cosine scores of the (approximate) top k; with a filter, the index is asked for more
    until k allowed rows are found (exact search over the allowed rows when they are few)."""
    from .search import top_k

    ensure(ds, entry)
    n = len(entry)
    if allowed is not None and allowed.sum() * 20 < n:  # a narrow filter: exact over the few rows is cheaper
        s = entry.matrix @ q
        pos = top_k(s, k, allowed)
        return pos, s[pos]
    want = k
    while True:
        found = entry.hnsw.search(q, min(n, want))
        pos = np.asarray(found.keys, np.int64).reshape(-1)
        dist = np.asarray(found.distances, np.float64).reshape(-1)
        ok = pos < n
        pos, dist = pos[ok], dist[ok]
        if allowed is not None:
            keep = allowed[pos]
            pos, dist = pos[keep], dist[keep]
        if len(pos) >= k or want >= n:
            return pos[:k], 1.0 - dist[:k]
        want *= 4
