"""Scores for the query language: compute what a compiled query's ``similarity`` / ``uniqueness`` /
``uncertainty`` calls need and register the rows on this thread's connection under the names the SQL reads
(queries/scores.py). Results are kept per store generation, so a query run twice computes once."""
from __future__ import annotations

import threading
import weakref
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import pyarrow as pa

from engine.errors import LoupeError
from . import search, sets

if TYPE_CHECKING:
    from engine.api.dataset import Dataset

_CACHE: "weakref.WeakKeyDictionary[Any, dict]" = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()


def _compute(ds: "Dataset", spec: Any) -> pa.Table:
    if spec.kind == "similarity":
        info = sets.get_set(ds, spec.args[0])
        entry = search.loaded(ds, info)
        s, _ = search.scores(entry, ds, list(spec.args[1:]))
        if info.level != "item":  # an item's score: its best object
            order = np.lexsort((-s, entry.item_id))
            first = np.ones(len(order), bool)
            first[1:] = entry.item_id[order][1:] != entry.item_id[order][:-1]
            pick = order[first]
            return pa.table({"item_id": pa.array(entry.item_id[pick]), "score": pa.array(s[pick].astype(np.float64))})
        return pa.table({"item_id": pa.array(entry.item_id), "score": pa.array(s.astype(np.float64))})
    if spec.kind == "uniqueness":
        from .uniqueness import raw_values, uniqueness_scores

        info = sets.get_set(ds, spec.args[0])
        if info.level != "item":
            raise LoupeError(f"uniqueness(\"{info.name}\") needs an item-level set; '{info.name}' is {info.level}-level")
        entry = search.loaded(ds, info)
        return pa.table({"item_id": pa.array(entry.item_id),
                         "score": pa.array(uniqueness_scores(raw_values(ds, info)))})
    if spec.kind == "uncertainty":
        from .uncertainty import per_item, per_prediction

        run = ds.ws.get_run(spec.run)
        t = per_prediction(run, spec.args[0], keys=True)
        if spec.key == "pred_key":
            return pa.table({"pred_key": t.column("pred_key"), "score": t.column("uncertainty")})
        it = per_item(t)
        return pa.table({"item_id": it.column("item_id"), "score": it.column("uncertainty")})
    raise LoupeError(f"unknown score {spec.kind}")


def prepare(ds: "Dataset", specs: Sequence[Any]) -> None:
    """Compute (or reuse) every spec's rows and register them on this thread's connection."""
    store = ds.ws.store
    con = store.con
    for spec in specs:
        key = (ds.id, spec)
        with _LOCK:
            per = _CACHE.setdefault(store, {})
            hit = per.get(key)
        if hit is None or hit[0] != store.generation:
            generation = store.generation
            table = _compute(ds, spec)
            hit = (generation, table)
            if store.caching and store.generation == generation:
                with _LOCK:
                    per = _CACHE.setdefault(store, {})
                    for k in [k for k, v in per.items() if v[0] != generation]:
                        del per[k]
                    per[key] = hit
        con.register(spec.relation, hit[1])
