"""In-memory copies of query data, each valid for one store generation, within a byte budget per store.

Every write through a store moves its ``generation``, so a copy taken at generation g is exact as long as
the store is still at g. A copy is built on the second use in a generation (a write-query-write loop never
pays for one), never while a transaction is open (its rows are its connection's alone), and a store's
copies share one budget: the least recently built go first. Copies of an older generation are freed on
the next use.
"""
from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Hashable

import numpy as np

if TYPE_CHECKING:
    from engine.store.database import Store


@dataclass
class Slot:
    generation: int
    value: Any = None  # None: not built yet (first use) or too large
    too_large: bool = False


class Copies:
    """Copies keyed per store by any hashable key; values have ``nbytes``."""

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes  # 0 disables
        self.entries: "weakref.WeakKeyDictionary[Store, dict[Hashable, Slot]]" = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()

    def get(self, store: "Store", key: Hashable, build: Callable[[int], Any]) -> Any:
        """The copy for ``key`` at the store's current generation, building it (``build(generation)``) on
        the second use; None when queries should read the tables."""
        if self.max_bytes <= 0 or not store.caching:
            return None
        generation = store.generation
        with self._lock:
            per_store = self.entries.get(store)
            if per_store is None:
                per_store = self.entries[store] = {}
                store.on_close(lambda: self.forget(store))  # the copies go when the store closes
            for k in [k for k, s in per_store.items() if s.generation != generation and k != key]:
                del per_store[k]  # written since: never usable again
            slot = per_store.get(key)
            if slot is None or slot.generation != generation:  # first use since the last write
                per_store[key] = Slot(generation)
                return None
            if slot.too_large:
                return None
            if slot.value is not None:
                return slot.value
        value = build(generation)
        built = Slot(generation)
        if value is None or value.nbytes > self.max_bytes:
            built.too_large = True
        else:
            built.value = value
        with self._lock:
            if store.generation == generation:  # nothing wrote while it was read
                per_store = self.entries.setdefault(store, {})
                per_store.pop(key, None)
                per_store[key] = built  # newest last
                self._fit(per_store)
        return None if built.too_large or store.generation != generation else built.value

    def _fit(self, per_store: dict[Hashable, Slot]) -> None:
        total = sum(s.value.nbytes for s in per_store.values() if s.value is not None)
        for k in list(per_store)[:-1]:
            if total <= self.max_bytes:
                break
            s = per_store.pop(k)
            total -= s.value.nbytes if s.value is not None else 0

    def forget(self, store: "Store") -> None:
        """Drop every copy of a store."""
        with self._lock:
            self.entries.pop(store, None)



def positions(ids: np.ndarray, wanted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Where each of ``wanted`` is in the sorted ``ids``, and whether it is there at all."""
    if len(ids) == 0:
        return np.zeros(len(wanted), np.int64), np.zeros(len(wanted), bool)
    pos = np.minimum(np.searchsorted(ids, wanted), len(ids) - 1)
    return pos, ids[pos] == wanted
