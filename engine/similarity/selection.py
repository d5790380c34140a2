"""Pick what to label next: by uncertainty, by diversity (k-center greedy on embeddings) or both.

- ``uncertainty``: the n candidate items whose most uncertain prediction is highest (needs a run);
- ``diversity``: k-center greedy (Sener & Savarese 2018) on the item-level set's unit vectors: each pick is
  the candidate farthest (cosine distance) from everything chosen so far and from the items outside the
  candidates that have vectors (already labeled / already chosen), so picks cover the candidates' space;
- ``uncertainty+diversity``: k-center greedy over the ``pool_factor * n`` most uncertain candidates.
The picks become a static slice (name ``slice_name``; an existing slice of that name is an error).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from engine.errors import LoupeError, ValidationError
from . import search, sets

if TYPE_CHECKING:
    from engine.api.dataset import Dataset
    from engine.curation.slices import Slice

STRATEGIES = ("uncertainty", "diversity", "uncertainty+diversity")


def k_center_greedy(m: np.ndarray, candidates: np.ndarray, n: int, seeds: np.ndarray) -> np.ndarray:
    """Rows of ``m`` (unit vectors) picked among ``candidates``: farthest-first from ``seeds`` and earlier picks.
    Without seeds the first pick is the candidate nearest the candidates' mean (deterministic)."""
    cand = m[candidates]
    if len(candidates) == 0 or n <= 0:
        return np.zeros(0, np.int64)
    if len(seeds):
        dist = np.full(len(candidates), np.inf)
        for s in range(0, len(seeds), 1024):
            dist = np.minimum(dist, (1.0 - cand @ m[seeds[s:s + 1024]].T).min(axis=1))
    else:
        mean = cand.mean(axis=0)
        first = int(np.argmax(cand @ mean))
        dist = np.maximum(1.0 - cand @ cand[first], 0.0)
        dist[first] = -np.inf
        picks = [first]
        n -= 1
    picks = [] if len(seeds) else picks
    for _ in range(min(n, len(candidates) - len(picks))):
        j = int(np.argmax(dist))
        picks.append(j)
        dist = np.minimum(dist, 1.0 - cand @ cand[j])
        dist[j] = -np.inf
    return candidates[np.asarray(picks, np.int64)]


def _candidate_items(ds: "Dataset", where: str | None, run: Any) -> np.ndarray:
    from engine.execution.runner import compile_for, execute

    return np.sort(execute(ds, compile_for(ds, where or "", "items", run, projection="ids")).column(0).to_numpy())


def select_for_labeling(ds: "Dataset", n: int, strategy: str = "uncertainty+diversity", where: str | None = None,
                        slice_name: str = "to-label", embeddings: str | None = None, run: Any = None,
                        method: str = "entropy", pool_factor: int = 5) -> "Slice":
    """See ``Dataset.select_for_labeling``."""
    if isinstance(n, bool) or not isinstance(n, int) or n <= 0:
        raise ValidationError(f"n must be a positive integer, got {n!r}", field="n")
    if strategy not in STRATEGIES:
        raise ValidationError(f"strategy must be one of {', '.join(STRATEGIES)}, got {strategy!r}", field="strategy")
    cand_items = _candidate_items(ds, where, run)
    ranked = cand_items
    if "uncertainty" in strategy:
        if run is None:
            raise LoupeError(f"strategy '{strategy}' needs run= (the run whose predictions are scored)")
        from .uncertainty import per_item, per_prediction

        u = per_item(per_prediction(ds.ws.get_run(run if isinstance(run, str) else run.name), method, keys=True))
        ids, vals = u.column("item_id").to_numpy(), u.column("uncertainty").to_numpy()
        keep = np.isin(ids, cand_items)
        ids, vals = ids[keep], vals[keep]
        ranked = ids[np.lexsort((ids, -vals))]
        if strategy == "uncertainty":
            return _make_slice(ds, slice_name, ranked[:n])
        ranked = ranked[:max(n, pool_factor * n)]
    info = sets.get_set(ds, embeddings, kind=None)
    if info.level != "item":
        raise LoupeError(f"diversity needs an item-level embedding set; '{info.name}' is {info.level}-level")
    entry = search.loaded(ds, info)
    if info.kind == "hash":
        bits = np.unpackbits(entry.matrix.view(np.uint8).reshape(-1, 8), axis=1).astype(np.float32)
        m = search.normalise(bits * 2 - 1)
    else:
        m = entry.matrix
    pos, found = search.positions_of(entry.item_id, ranked)
    missing = ranked[~found]
    if len(missing) and strategy == "diversity":
        pass  # candidates without a vector cannot be placed; they are not picked
    cand_rows = pos[found]
    outside = np.setdiff1d(np.arange(len(entry)), np.flatnonzero(np.isin(entry.item_id, cand_items)))
    picked = k_center_greedy(m, cand_rows, n, outside)
    return _make_slice(ds, slice_name, entry.item_id[picked])


def _make_slice(ds: "Dataset", name: str, item_ids: np.ndarray) -> "Slice":
    refs = ds.ws.store.arrow("SELECT item_id, reference_id FROM items WHERE dataset_id = $ds", {"ds": ds.id})
    lookup = dict(zip(refs.column(0).to_pylist(), refs.column(1).to_pylist()))
    return ds.create_slice(name, reference_ids=[lookup[int(i)] for i in item_ids])
