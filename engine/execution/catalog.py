"""The DSL catalog of a dataset, read from DuckDB: labels, metadata keys and types, runs, slices.

Reading metadata types scans every item's JSON (tens of ms for 100k items), so answers are cached per
store and dataset under a cheap version token (label version, item count and max id, run commits,
a hash of the slice definitions; one ~2 ms query, run again only after the store's ``generation`` moved,
i.e. after any write through the store). A
stale answer can only make the compiler *accept* a name; before it reports an unknown name or a type
error it calls :meth:`refresh` and compiles again with fresh answers, so no spurious error survives.
"""
from __future__ import annotations

import json
import weakref
from collections import OrderedDict
from dataclasses import replace
from typing import Any, Callable, Mapping

from queries import Catalog, MetadataSchema, RunInfo, SliceInfo

from engine.store import count_columns
from engine.store import item_values
from engine.store import label_counts
from engine.store import match_counts
from engine.store.database import Store

_CACHE: "weakref.WeakKeyDictionary[Store, dict]" = weakref.WeakKeyDictionary()
_COMPILED_MAX = 256  # compiled queries kept per store (a dashboard repeats the same few)

_TOKEN_SQL = """
SELECT d.label_version, i.n, i.mx, r.n, r.mx, r.c, r.mc, s.n, s.mx, s.h
FROM datasets d,
     (SELECT count(*) n, max(item_id) mx FROM items WHERE dataset_id = {ds}) i,
     (SELECT count(*) n, max(run_id) mx, count(committed_at) c, max(committed_at) mc FROM runs WHERE dataset_id = {ds}) r,
     (SELECT count(*) n, max(slice_id) mx, sum(hash(name, kind, query, run_id)) h FROM slices WHERE dataset_id = {ds}) s
WHERE d.dataset_id = {ds}
"""

# the same plus, when the derived tables exist: annotations count / max key, then label_count_versions,
# item_value_state and count_column_state (what label_counts.py / item_values.py / count_columns.py recorded
# when they last kept the tables; NULLs where the count columns are missing)
_DERIVED_TOKEN_SQL = _TOKEN_SQL.replace(
    "s.n, s.mx, s.h\n", "s.n, s.mx, s.h, a.n, a.mx, lc.label_version, lc.n_rows, lc.max_key, iv.n_items, iv.max_item, "
                        "cc.label_version, cc.n_rows, cc.max_key, mv.version\n"
).replace("\nWHERE d.dataset_id", """,
     (SELECT count(*) n, max(ann_key) mx FROM annotations WHERE dataset_id = {ds}) a
     LEFT JOIN label_count_versions lc ON lc.dataset_id = {ds} LEFT JOIN item_value_state iv ON iv.dataset_id = {ds}
     LEFT JOIN {count_state} cc ON cc.dataset_id = {ds} LEFT JOIN {metadata_version} mv ON mv.dataset_id = {ds}
WHERE d.dataset_id""")
_NO_COUNT_STATE = "(SELECT NULL::INTEGER dataset_id, NULL label_version, NULL n_rows, NULL max_key)"
_NO_METADATA_VERSION = "(SELECT NULL::INTEGER dataset_id, NULL version)"

# what the metadata schemas are read from: its row count and a sum of hashes (see _get_by_content)
_ITEM_METADATA_PRINT = """SELECT count(*), sum(hash(CAST(metadata AS VARCHAR))) FROM items
                          WHERE dataset_id = $ds AND metadata IS NOT NULL"""
_OBJECT_METADATA_PRINT = """
SELECT count(*), sum(hash(CAST(metadata AS VARCHAR))) FROM (
    SELECT metadata FROM annotations WHERE dataset_id = $ds AND valid_to IS NULL AND metadata IS NOT NULL
    UNION ALL SELECT metadata FROM predictions
    WHERE run_id IN (SELECT run_id FROM runs WHERE dataset_id = $ds) AND metadata IS NOT NULL)"""


class DuckDBCatalog(Catalog):
    """Catalog of one dataset of a workspace; each part is loaded on first use."""

    def __init__(self, store: Store, dataset_id: int, derived: bool = True):
        self.store = store
        self.dataset_id = dataset_id
        self.derived = derived  # may queries read the derived tables (item_counts, item_metadata_values)
        self._memo: dict[str, Any] = {}
        self._token: tuple | None = None
        self._fresh = False  # after refresh(): bypass the shared cache
        self._served_cached = False

    # -- caching ---------------------------------------------------------------------------------
    def _version(self) -> tuple:
        """The version token; read once per store generation (every write through the store bumps it)."""
        if self._token is None:
            cache = _CACHE.setdefault(self.store, {})
            generation = getattr(self.store, "generation", None) if self._shared() else None
            hit = cache.get((self.dataset_id, "token"))
            if hit is not None and hit[0] == generation and generation is not None and not self._fresh:
                self._token = hit[1]
                return self._token
            sql = _TOKEN_SQL.format(ds=int(self.dataset_id))
            if self._has_derived_tables():  # token[10:21]: what the derived tables were kept at, and now
                state = "count_column_state" if self._has_count_columns() else _NO_COUNT_STATE
                version = item_values.VERSION_TABLE if self._has_metadata_version() else _NO_METADATA_VERSION
                sql = _DERIVED_TOKEN_SQL.format(ds=int(self.dataset_id), count_state=state, metadata_version=version)
            row = self.store.con.execute(sql).fetchone()
            self._token = (tuple(row) if row else ()) + (generation,)
            if generation is not None:
                cache[(self.dataset_id, "token")] = (generation, self._token)
        return self._token

    def _get(self, part: str, load, across_writes: bool = False) -> Any:
        """A part, cached under the version token; ``across_writes``: also kept when only the store's
        generation moved (the token's data fields are unchanged)."""
        if part in self._memo:
            return self._memo[part]
        cache = _CACHE.setdefault(self.store, {})
        key = (self.dataset_id, part)
        version = self._version()
        hit = cache.get(key)
        same = hit is not None and (hit[0] == version or (across_writes and hit[0][:-1] == version[:-1]))
        if same and not self._fresh and self._shared():
            self._served_cached = True
            value = hit[1]
        else:
            value = load()
            if self._shared():
                cache[key] = (version, value)
        self._memo[part] = value
        return value

    def _shared(self) -> bool:
        """May answers be shared through the store-wide cache (no transaction open: see Store.caching)?"""
        return getattr(self.store, "caching", True)

    def _store_fact(self, name: str, probe: Callable[[], bool]) -> bool:
        """A fact about the workspace's tables, fixed for the store's life (they are created at open when
        writable), probed once per store."""
        cache = _CACHE.setdefault(self.store, {})
        if name not in cache:
            cache[name] = probe()
        return cache[name]

    def _has_derived_tables(self) -> bool:
        return self._store_fact("derived_tables",
                                lambda: label_counts.present(self.store) and item_values.present(self.store))

    def _has_count_columns(self) -> bool:
        return self._store_fact("count_columns", lambda: count_columns.present(self.store))

    def _has_metadata_version(self) -> bool:
        return self._store_fact("metadata_version", lambda: item_values.has_version(self.store))

    def _derived(self) -> tuple | None:
        if not self.derived or getattr(self.store, "derived_stale", False) or not self._has_derived_tables():
            return None
        t = self._version()
        return t if len(t) > 21 else None

    def _match_counts_allowed(self) -> bool:
        """May queries read item_match_counts at all (each run's RunInfo.match_counts says if its rows are current)."""
        if not self.derived or getattr(self.store, "derived_stale", False):
            return False
        return self._has_match_tables()

    def _has_match_tables(self) -> bool:
        cache = _CACHE.setdefault(self.store, {})
        if "match_tables" not in cache:  # fixed for the store's life (created at open when writable)
            cache["match_tables"] = match_counts.present(self.store)
        return cache["match_tables"]

    def deferred(self) -> bool:
        """True when the dataset's first writes left its per-item counts or metadata values to be built
        by its first DSL query (``DEFERRED`` in engine/store/label_counts.py and item_values.py)."""
        t = self._derived()
        return t is not None and (t[12] == label_counts.DEFERRED or t[15] == item_values.DEFERRED)

    def label_counts(self) -> bool:
        """True when ``item_counts`` holds the dataset's current per-item GT counts: kept at the current
        label version, over the annotations rows there are now (rows added or removed by hand show)."""
        t = self._derived()
        return t is not None and t[12] is not None and (t[12], t[13], t[14]) == (t[0], t[10], t[11])

    def label_slots(self) -> Mapping[tuple[str | None, str | None], int]:
        """The counts ``item_count_columns`` holds, (label, kind) -> column number, when it was written
        with the current ``item_counts`` (else empty: queries read ``item_counts``)."""
        if not self.label_counts():
            return {}
        t = self._derived()
        if t is None or t[17] is None or (t[17], t[18], t[19]) != (t[12], t[13], t[14]):
            return {}
        return self._get("slots", self._load_slots)

    def _load_slots(self) -> dict[tuple[str | None, str | None], int]:
        rows = self.store.con.execute("SELECT label, kind, slot FROM count_column_slots WHERE dataset_id = $ds",
                                      {"ds": self.dataset_id}).fetchall()
        return {(label, kind): int(slot) for label, kind, slot in rows}

    def item_values(self) -> bool:
        """True when ``item_metadata_values`` was kept over the items there are now (count, highest id)."""
        t = self._derived()
        return t is not None and t[15] is not None and (t[15], t[16]) == (t[1], t[2])

    def compiled(self, key: tuple) -> Any:
        """A query compiled earlier under the same catalog version (every name it read is unchanged)."""
        lru = _CACHE.setdefault(self.store, {}).get((self.dataset_id, "compiled"))
        if lru is None or self._fresh or not self._shared():
            return None
        hit = lru.get(key)
        if hit is None or hit[0] != self._version():
            return None
        lru.move_to_end(key)
        return hit[1]

    def remember(self, key: tuple, compiled: Any) -> None:
        if not self._shared():
            return
        lru = _CACHE.setdefault(self.store, {}).setdefault((self.dataset_id, "compiled"), OrderedDict())
        lru[key] = (self._version(), compiled)
        while len(lru) > _COMPILED_MAX:
            lru.popitem(last=False)

    def refresh(self) -> bool:
        was = self._served_cached
        self._memo.clear()
        self._token = None
        self._fresh = True
        self._served_cached = False
        return was

    # -- parts -----------------------------------------------------------------------------------
    def labels(self) -> frozenset[str]:
        """Every label of the dataset's current GT and its runs' predictions. Read only to check names,
        where a stale set can only accept a name that matches nothing or refuse a new one (the compiler
        then refreshes): kept across writes while the token's data fields are unchanged (label version,
        object counts, runs), since DISTINCT over 14M objects takes ~160 ms."""
        return self._get("labels", self._load_labels, across_writes=True)

    def _load_labels(self) -> frozenset[str]:
        rows = self.store.con.execute(
            """SELECT DISTINCT label FROM annotations WHERE dataset_id = $ds AND valid_to IS NULL
               UNION SELECT DISTINCT label FROM predictions
               WHERE run_id IN (SELECT run_id FROM runs WHERE dataset_id = $ds)""", {"ds": self.dataset_id}).fetchall()
        return frozenset(r[0] for r in rows)

    def item_metadata(self) -> MetadataSchema:
        return self._get_by_content("item_metadata", self._item_metadata_print, lambda: self._schema(
            "SELECT DISTINCT json_structure(metadata) FROM items WHERE dataset_id = $ds AND metadata IS NOT NULL"))

    def _item_metadata_print(self) -> tuple:
        """What the item metadata types are read from: the dataset's metadata version when the derived item
        values are current (every write of item metadata through Loupe moves it: no document is read), else
        a hash of every document (1M items: ~40 ms)."""
        t = self._derived()
        if t is not None and t[20] is not None and self.item_values():
            return ("version", t[20], t[1], t[2])
        return tuple(self.store.con.execute(_ITEM_METADATA_PRINT, {"ds": self.dataset_id}).fetchone())

    def object_metadata(self) -> MetadataSchema:
        return self._get_by_content("object_metadata", lambda: tuple(self.store.con.execute(
            _OBJECT_METADATA_PRINT, {"ds": self.dataset_id}).fetchone()), lambda: self._schema(
            """SELECT DISTINCT json_structure(metadata) FROM annotations
               WHERE dataset_id = $ds AND valid_to IS NULL AND metadata IS NOT NULL
               UNION SELECT DISTINCT json_structure(metadata) FROM predictions
               WHERE run_id IN (SELECT run_id FROM runs WHERE dataset_id = $ds) AND metadata IS NOT NULL"""))

    def _get_by_content(self, part: str, fingerprint_of: Callable[[], tuple], load) -> Any:
        """A part kept for as long as the content it is read from is the same (metadata types: ~150 ms
        to read from 100k JSON documents, so not again after every write): validated by a fingerprint of
        that content (a version moved by every write of it, or its row count and a sum of hashes, ~7 ms
        per 100k rows), itself read once per store generation."""
        if part in self._memo:
            return self._memo[part]
        if not self._shared():  # a transaction is open: its rows are its own
            self._memo[part] = load()
            return self._memo[part]
        cache = _CACHE.setdefault(self.store, {})
        shared = not self._fresh
        generation = getattr(self.store, "generation", None) if shared else None
        fp_key = (self.dataset_id, part, "fingerprint")
        hit = cache.get(fp_key)
        if hit is not None and generation is not None and hit[0] == generation:
            fingerprint = hit[1]
        else:
            fingerprint = fingerprint_of()
            if generation is not None:
                cache[fp_key] = (generation, fingerprint)
        key = (self.dataset_id, part)
        hit = cache.get(key)
        if hit is not None and shared and hit[0] == fingerprint:
            self._served_cached = True
            value = hit[1]
        else:
            value = load()
            cache[key] = (fingerprint, value)
        self._memo[part] = value
        return value

    def _schema(self, sql: str) -> MetadataSchema:
        rows = self.store.con.execute(sql, {"ds": self.dataset_id}).fetchall()
        return MetadataSchema.from_structures(r[0] for r in rows)

    def runs(self) -> Mapping[str, RunInfo]:
        runs = self._get("runs", self._load_runs)
        if any(r.match_counts for r in runs.values()) and not self._match_counts_allowed():
            runs = {n: replace(r, match_counts=False) for n, r in runs.items()}  # base tables only
        return runs

    def _load_runs(self) -> dict[str, RunInfo]:
        con = self.store.con
        rows = con.execute(
            """SELECT r.name, r.run_id, r.params::VARCHAR, r.label_version IS NOT DISTINCT FROM d.label_version
               FROM runs r JOIN datasets d USING (dataset_id) WHERE r.dataset_id = $ds ORDER BY r.run_id""",
            {"ds": self.dataset_id}).fetchall()
        counted = self._counted_runs() if self._has_match_tables() else set()
        return {name: RunInfo(name, int(run_id), _threshold(params, self._thresholds(run_id)), bool(current),
                              run_id in counted)
                for name, run_id, params, current in rows}

    def _thresholds(self, run_id: int) -> list[float]:
        """The IoU thresholds a run has matches rows for. One commit writes one: min and max with the run id
        a constant are a scan of one compressed column (~1 ms for 14M rows, where DISTINCT per run took
        ~140 ms); the DISTINCT only when they differ."""
        con = self.store.con
        lo, hi = con.execute("SELECT min(iou_threshold), max(iou_threshold) FROM matches WHERE run_id = $run",
                             {"run": run_id}).fetchone()
        if lo is None or lo == hi:
            return [] if lo is None else [lo]
        return [r[0] for r in con.execute("SELECT DISTINCT iou_threshold FROM matches WHERE run_id = $run",
                                          {"run": run_id}).fetchall()]

    def _counted_runs(self) -> set[int]:
        """Runs whose item_match_counts are current (see :func:`engine.store.match_counts.counted_runs`)."""
        return match_counts.counted_runs(self.store, self.dataset_id)

    def slices(self) -> Mapping[str, SliceInfo]:
        return self._get("slices", self._load_slices)

    def _load_slices(self) -> dict[str, SliceInfo]:
        rows = self.store.con.execute(
            """SELECT s.name, s.slice_id, s.kind, s.query, r.name FROM slices s
               LEFT JOIN runs r ON r.run_id = s.run_id WHERE s.dataset_id = $ds""", {"ds": self.dataset_id}).fetchall()
        return {n: SliceInfo(n, int(sid), kind, q, run) for n, sid, kind, q, run in rows}


def _threshold(params: str | None, thresholds: list[float] | None) -> float | None:
    """The IoU threshold whose matches rows object queries read (None: the run is not committed).

    The commit's own ``params.iou_threshold`` when present, else 0.5 (COCO's), else the smallest.
    """
    if not thresholds:
        return None
    try:
        wanted = json.loads(params).get("iou_threshold") if params else None
    except (ValueError, AttributeError):
        wanted = None
    for t in (wanted, 0.5):
        if t is not None and any(abs(float(t) - x) < 1e-12 for x in thresholds):
            return next(x for x in thresholds if abs(float(t) - x) < 1e-12)
    return min(thresholds)
