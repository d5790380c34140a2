"""Uniqueness per item (or object), with FiftyOne Brain's definition so the numbers compare.

FiftyOne (``compute_uniqueness``): Euclidean distances between the raw embeddings, the K = 3 nearest other
rows, weighted mean ``(0.6 d1 + 0.3 d2 + 0.1 d3) / 3``, divided by the largest value so the most unique row
is 1; with 3 rows or fewer every row gets 1. Exact k-NN by blocks of at most 2^25 distances (O(N^2 d):
~minutes at 100k x 512 on 2 cores; memory bounded at any N); vectors are read raw from the table (search keeps only unit vectors).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from . import search, sets

if TYPE_CHECKING:
    from engine.api.dataset import Dataset

K = 3
WEIGHTS = np.array([0.6, 0.3, 0.1])
BLOCK = 1024
BLOCK_CELLS = 1 << 25  # distances held at once (256 MB of float64): 1M rows -> blocks of 32


def _block(n: int) -> int:
    return max(8, min(BLOCK, BLOCK_CELLS // max(n, 1)))


def uniqueness_scores(x: np.ndarray) -> np.ndarray:
    """FiftyOne's uniqueness of every row of ``x`` (float [N, d]); hashes: Hamming distances instead."""
    n = len(x)
    if n <= K:
        return np.ones(n)
    d3 = np.empty((n, K))
    block = _block(n)
    if x.dtype == np.uint64:
        for s in range(0, n, block):
            d = np.bitwise_count(x[s:s + block, None] ^ x[None, :]).astype(np.float64)
            d[np.arange(len(d)), np.arange(s, s + len(d))] = np.inf
            d3[s:s + len(d)] = np.sort(np.partition(d, K - 1, axis=1)[:, :K], axis=1)
    else:
        x = x.astype(np.float64)
        sq = (x * x).sum(axis=1)
        for s in range(0, n, block):
            b = x[s:s + block]
            d2 = sq[s:s + block, None] + sq[None, :] - 2.0 * (b @ x.T)
            d2[np.arange(len(b)), np.arange(s, s + len(b))] = np.inf  # self is not a neighbour
            part = np.partition(d2, K - 1, axis=1)[:, :K]
            d3[s:s + len(b)] = np.sqrt(np.maximum(np.sort(part, axis=1), 0.0))
    u = (d3 * WEIGHTS).mean(axis=1)
    top = u.max()
    return u / top if top > 0 else np.ones(n)


def raw_values(ds: "Dataset", info: sets.SetInfo) -> np.ndarray:
    t = sets.load(ds, info)
    return t.column("hash").to_numpy().astype(np.uint64) if info.kind == "hash" else sets.vectors_of(t, info.dim)


def uniqueness(ds: "Dataset", embeddings: str | None = None) -> pa.Table:
    """``reference_id`` [+ object id], ``uniqueness`` in [0, 1], most unique first."""
    info = sets.get_set(ds, embeddings)
    entry = search.loaded(ds, info)
    u = uniqueness_scores(raw_values(ds, info))
    order = np.lexsort((np.arange(len(u)), -u))
    return search.result_table(ds, entry, order, {"uniqueness": pa.array(u[order])})
