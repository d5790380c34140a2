"""The App's JSON API: validates request parameters and answers through the public Loupe API/DSL.

Every handler takes a dict of parameters (query string or JSON body) and returns a JSON-able dict.
Bad input raises :class:`ApiError` (HTTP 400/404 with a one-line message); DSL errors carry their
line, column and caret so the query bar can show them inline. The workspace is shared by all request
threads, so :class:`AppAPI` serialises calls into it with one lock (DuckDB connections are not
thread-safe); cached thumbnails are served without it.
"""
from __future__ import annotations

import itertools
import json
import math
import re
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable

import pyarrow as pa
import pyarrow.compute as pc

from ..errors import LoupeError, NotFoundError, WorkspaceLocked
from . import results
from queries import DSLError
from queries.fields import ANNOTATION_AGGREGATES, ITEM_COLUMNS, OBJECT_FIELDS, PREDICTION_AGGREGATES

MAX_PAGE = 500
_PAGE_SQL = (Path(__file__).with_name("page_objects.sql")).read_text(encoding="utf-8")
_NAME = re.compile(r"^[\w .:+-]{1,128}$")


class ApiError(Exception):
    """An HTTP error answer: status code and a JSON body."""

    def __init__(self, status: int, message: str, **extra: Any):
        super().__init__(message)
        self.status = status
        self.body = {"error": message, **extra}


# -- parameter validation ---------------------------------------------------------------------------
def p_str(p: dict, name: str, required: bool = False, default: str | None = None, max_len: int = 4000) -> str | None:
    v = p.get(name)
    if v is None or v == "":
        if required:
            raise ApiError(400, f"missing parameter '{name}'")
        return default
    if not isinstance(v, str):
        raise ApiError(400, f"parameter '{name}' must be a string")
    if len(v) > max_len or "\x00" in v:
        raise ApiError(400, f"parameter '{name}' is too long or contains NUL")
    return v


def p_int(p: dict, name: str, default: int, lo: int, hi: int) -> int:
    v = p.get(name)
    if v is None or v == "":
        return default
    try:
        i = int(v)
    except (TypeError, ValueError):
        raise ApiError(400, f"parameter '{name}' must be an integer, got {str(v)[:40]!r}") from None
    if not lo <= i <= hi:
        raise ApiError(400, f"parameter '{name}' must be between {lo} and {hi}, got {i}")
    return i


def p_float(p: dict, name: str, default: float | None = None, lo: float = -math.inf, hi: float = math.inf,
            required: bool = False) -> float | None:
    v = p.get(name)
    if v is None or v == "":
        if required:
            raise ApiError(400, f"missing parameter '{name}'")
        return default
    try:
        f = float(v)
    except (TypeError, ValueError):
        raise ApiError(400, f"parameter '{name}' must be a number, got {str(v)[:40]!r}") from None
    if not (math.isfinite(f) and lo <= f <= hi):
        raise ApiError(400, f"parameter '{name}' must be a finite number in [{lo}, {hi}], got {v}")
    return f


def p_bool(p: dict, name: str, default: bool = False) -> bool:
    v = p.get(name)
    if v is None or v == "":
        return default
    if isinstance(v, bool):
        return v
    if str(v).lower() in ("1", "true", "yes"):
        return True
    if str(v).lower() in ("0", "false", "no"):
        return False
    raise ApiError(400, f"parameter '{name}' must be true or false")


def dsl_string(s: str) -> str:
    """A DSL string literal for ``s`` (backslash escapes; control characters as \\uXXXX)."""
    out = ['"']
    for ch in s:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ord(ch) < 32 or ord(ch) == 127:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


class Rows(list):
    """Rows already made JSON-able by :func:`rows` (``_clean`` does not walk them again)."""


def rows(t: pa.Table, columns: list[str] | None = None) -> list[dict]:
    """Arrow rows as JSON-able dicts (NaN/inf become null, dates and times ISO text).

    Float columns are cleaned with Arrow compute; only temporal and nested columns are walked in Python.
    """
    if columns is not None:
        t = t.select([c for c in columns if c in t.column_names])
    walk, iso = [], []
    for i, f in enumerate(t.schema):
        if pa.types.is_floating(f.type):
            c = t.column(i)
            finite = pc.is_finite(c)
            if pc.all(finite).as_py() is False:
                t = t.set_column(i, f, pc.if_else(finite, c, pa.nulls(len(c), f.type)))
        elif pa.types.is_temporal(f.type):
            iso.append(f.name)
        elif pa.types.is_nested(f.type):
            walk.append(f.name)
    out = Rows(t.to_pylist())
    if iso or walk:
        for r in out:
            for k in iso:
                v = r[k]
                if hasattr(v, "isoformat"):
                    r[k] = v.isoformat()
            for k in walk:
                r[k] = _clean(r[k])
    return out


def _clean(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, Rows):
        return v
    if isinstance(v, dict):
        return {k: _clean(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_clean(x) for x in v]
    if isinstance(v, pa.Table):
        return rows(v)
    return v


class AppAPI:
    """The handlers of one App: ``handle(name, params)`` -> dict; ``WRITES`` need the token."""

    READS = ("info", "catalog", "items", "item", "patches", "insights", "metrics", "history", "similar_map")
    WRITES = ("save_slice", "fix", "undo", "commit", "select", "similar")

    def __init__(self, ws: Any, read_only: bool = False):
        self.ws = ws
        self.read_only = read_only
        self.lock = threading.RLock()
        self._results: "OrderedDict[tuple, pa.Array]" = OrderedDict()  # grid results: item ids (LRU)
        self._selections: "OrderedDict[str, list[str]]" = OrderedDict()  # lasso / similar selections
        self._sel_ids = itertools.count(1)
        self._lookups: dict[tuple, Any] = {}
        self._lookups_gen = -1

    def handle(self, name: str, params: dict) -> dict:
        if name not in self.READS + self.WRITES:
            raise ApiError(404, f"no API endpoint '{name}'")
        if name in self.WRITES and self.read_only and name not in ("select", "similar"):
            raise ApiError(403, "the App was started with --read-only: changes are refused")
        fn: Callable[[dict], dict] = getattr(self, "api_" + name)
        with self.lock:
            try:
                with self.ws.store.hold():  # one turn on a shared workspace's lock per request
                    return _clean(fn(params))
            except ApiError:
                raise
            except WorkspaceLocked as e:  # another process kept the file past the wait: try again later
                raise ApiError(503, str(e)) from None
            except DSLError as e:
                raise ApiError(400, e.message, kind=e.kind, line=e.line, column=e.column, length=e.length,
                               text=e.text, detail=str(e),
                               suggestions=list(getattr(e, "suggestions", []) or []),
                               expected=list(getattr(e, "expected", []) or [])) from None
            except NotFoundError as e:
                raise ApiError(404, str(e)) from None
            except LoupeError as e:
                raise ApiError(400, str(e)) from None

    # -- lookups ----------------------------------------------------------------------------------
    def _lookup(self, key: tuple, make: Callable[[], Any]) -> Any:
        """``make()``, kept until the store's generation moves (datasets, runs, commit state: a page asks
        for them several times and each is a query of its own)."""
        gen = self.ws.store.generation
        if self._lookups_gen != gen:
            self._lookups.clear()
            self._lookups_gen = gen
        if key not in self._lookups:
            self._lookups[key] = make()
        return self._lookups[key]

    def _ds(self, p: dict):
        name = p_str(p, "dataset", required=True, max_len=256)
        return self._lookup(("ds", name), lambda: self.ws.get_dataset(name))

    def _run(self, p: dict, ds: Any, name: str = "run"):
        r = p_str(p, name, max_len=256)
        if r is None:
            return None
        run = self._lookup(("run", r), lambda: self.ws.get_run(r))
        if run.dataset_id != ds.id:
            raise ApiError(400, f"run '{r}' is not a run of dataset '{ds.name}'")
        return run

    def _committed(self, run: Any) -> bool:
        return self._lookup(("committed", run.id), lambda: bool(self.ws.store.scalar(
            "SELECT committed_at IS NOT NULL FROM runs WHERE run_id = ?", [run.id])))

    # -- info and catalog ---------------------------------------------------------------------------
    def api_info(self, p: dict) -> dict:
        dss = []
        for name in self.ws.list_datasets().column("name").to_pylist():
            ds = self.ws.get_dataset(name)
            info = ds.info()
            runs = [{"name": r, "committed": self._committed(self.ws.get_run(r))} for r in info["runs"]]
            dss.append({"name": name, "items": info["items"], "annotations": info["annotations"],
                        "labels": info["labels"], "label_version": info["label_version"], "runs": runs,
                        "embeddings": self._embeddings(ds)})
        return {"datasets": dss, "read_only": self.read_only, "path": self.ws.path}

    def _embeddings(self, ds: Any) -> list[dict]:
        if not hasattr(ds, "embeddings"):
            return []  # the similarity layer is not installed in this build
        try:
            return rows(ds.embeddings())
        except LoupeError:
            return []

    def api_catalog(self, p: dict) -> dict:
        from engine.execution.catalog import DuckDBCatalog

        ds = self._ds(p)
        cat = DuckDBCatalog(self.ws.store, ds.id)
        labels = sorted(cat.labels())
        meta = [".".join(k) for k in cat.item_metadata().paths()]
        ometa = [".".join(k) for k in cat.object_metadata().paths()]
        fields = (list(ITEM_COLUMNS) + [f"annotations.{k}" for k in ANNOTATION_AGGREGATES]
                  + [f"annotations.{lab}" for lab in labels] + [f"metadata.{m}" for m in meta]
                  + [f"predictions.{k}" for k in PREDICTION_AGGREGATES]
                  + [f"predictions.{lab}.{s}" for lab in labels for s in ("count", "tp", "fp", "fn")])
        return {"labels": labels, "metadata": meta, "object_metadata": ometa, "fields": fields,
                "object_fields": list(OBJECT_FIELDS), "runs": sorted(cat.runs()),
                "slices": rows(ds.slices(), ["name", "kind", "query", "size"])}

    # -- grid -----------------------------------------------------------------------------------
    def _result(self, p: dict, ds: Any) -> pa.Array:
        """The grid's current result: its item ids in order, cached per query and store generation."""
        q = (p_str(p, "q") or "").strip()
        run = self._run(p, ds)
        sl = p_str(p, "slice", max_len=256)
        sel = p_str(p, "sel", max_len=32)
        order = p_str(p, "order", max_len=200)
        key = (ds.id, q, run.name if run else None, sl, sel, order, self.ws.store.generation)
        hit = self._results.get(key)
        if hit is not None:
            self._results.move_to_end(key)
            return hit
        every = self._cached(("all", ds.id, self.ws.store.generation), lambda: results.all_ids(ds))
        ids = every
        if q or order:
            ids = results.query_ids(ds, q or "width >= 0", run.name if run else None, order, every)
        if sl:
            members = results.ids_of(ds, ds.get_slice(sl).reference_ids())
            ids = ids.filter(pc.is_in(ids, value_set=members))
        if sel:
            if sel not in self._selections:
                raise ApiError(404, f"selection '{sel}' expired; select again")
            chosen = results.ids_of(ds, self._selections[sel])
            ids = chosen.filter(pc.is_in(chosen, value_set=ids))  # in the selection's order
        return self._cached(key, lambda: ids)

    def _cached(self, key: tuple, make: Callable[[], pa.Array]) -> pa.Array:
        hit = self._results.get(key)
        if hit is None:
            hit = self._results[key] = make()
            while len(self._results) > 16:
                self._results.popitem(last=False)
        self._results.move_to_end(key)
        return hit

    def api_items(self, p: dict) -> dict:
        ds = self._ds(p)
        offset = p_int(p, "offset", 0, 0, 10**9)
        limit = p_int(p, "limit", 60, 1, MAX_PAGE)
        ids = self._result(p, ds)
        page = results.rows_of(ds, ids.slice(offset, limit))
        out = {"total": len(ids), "offset": offset, "items": rows(page.drop_columns(["item_id"]))}
        if p_bool(p, "boxes", True) and page.num_rows:
            out["objects"] = self._objects(ds, page, self._run(p, ds))
        return out

    def _objects(self, ds: Any, page: pa.Table, run: Any) -> dict[str, list]:
        """GT and (with a committed run) predictions of the ``page`` items (item_id, reference_id) with
        their match rows, grouped by reference id.

        One bound query (page_objects.sql): the grid needs a page's boxes, not a DSL filter; it
        reads the same ``matches`` index as ``query_objects`` (same status, IoU and error type).
        """
        from engine.analysis.patches import match_threshold

        run_id, thr = -1, 0.5
        if run is not None and self._committed(run):
            run_id, thr = run.id, self._lookup(("thr", run.id), lambda: match_threshold(self.ws.store, run.id))
        items = page.column("item_id").to_pylist()
        t = self.ws.store.arrow(_PAGE_SQL, {"ds": ds.id, "items": items, "run": run_id, "thr": thr})
        out: dict[str, list] = {r: Rows() for r in page.column("reference_id").to_pylist()}
        for r in rows(t.drop_columns(["seq"])):
            out.setdefault(r.pop("reference_id"), Rows()).append(r)
        return out

    def api_item(self, p: dict) -> dict:
        ds = self._ds(p)
        ref = p_str(p, "ref", max_len=1024)
        index = None
        if ref is None:  # by position in the current grid result (keyboard navigation)
            ids = self._result(p, ds)
            index = p_int(p, "index", 0, 0, max(0, len(ids) - 1))
            if len(ids) == 0:
                raise ApiError(404, "the current result is empty")
            ref = results.rows_of(ds, ids.slice(index, 1)).column("reference_id")[0].as_py()
        it = ds.query("reference_id = " + dsl_string(ref))
        if it.num_rows == 0:
            raise ApiError(404, f"no item '{ref}' in dataset '{ds.name}'")
        item = rows(it)[0]
        item["metadata"] = json.loads(item["metadata"]) if item.get("metadata") else {}
        item.pop("image_location", None)  # the client never sees or sends a path
        run = self._run(p, ds)
        page = results.keys_of(ds, [ref])
        return {"item": item, "index": index, "objects": self._objects(ds, page, run)[ref],
                "committed": bool(run is not None and self._committed(run))}

    # -- patches ----------------------------------------------------------------------------------
    def api_patches(self, p: dict) -> dict:
        ds = self._ds(p)
        run = self._run(p, ds)
        if run is None:
            raise ApiError(400, "missing parameter 'run'")
        status = p_str(p, "status", max_len=64)
        label = p_str(p, "label", max_len=256)
        sort = p_str(p, "sort", default="iou", max_len=32)
        offset = p_int(p, "offset", 0, 0, 10**7)
        limit = p_int(p, "limit", 60, 1, MAX_PAGE)
        t = run.patches(status=status.split(",") if status else None, label=label, sort=sort,
                        descending=p_bool(p, "desc"), limit=offset + limit)
        cols = ["source", "status", "error_type", "label", "partner_label", "partner_status", "x", "y", "width",
                "height", "partner_x", "partner_y", "partner_width", "partner_height", "iou", "best_iou",
                "confidence", "reference_id", "annotation_id", "partner_annotation_id", "item_width", "item_height"]
        return {"offset": offset, "patches": rows(t.slice(offset, limit), cols)}

    # -- insights and metrics -------------------------------------------------------------------
    def api_insights(self, p: dict) -> dict:
        ds = self._ds(p)
        run = self._run(p, ds)
        if run is not None and not self._committed(run):
            run = None
        res = ds.insights(slice=p_str(p, "slice", max_len=256), run=run)
        return {k: rows(v) for k, v in res.items() if k != "items_without_labels"}

    def api_metrics(self, p: dict) -> dict:
        ds = self._ds(p)
        out = {}
        for key in ("run", "run_b"):
            run = self._run(p, ds, key)
            if run is None:
                continue
            if not self._committed(run):
                raise ApiError(400, f"run '{run.name}' is not committed yet: commit it first")
            sl = p_str(p, "slice", max_len=256)
            m = run.metrics(slice=sl)
            pr = run.pr_curves(slice=sl)
            pr = pr.filter(pc.is_in(pc.round(pr.column("iou_threshold"), 2), value_set=pa.array([0.5, 0.75])))
            out[key] = {"name": run.name, "stats": m["stats"], "per_class": m["per_class"], "counts": m["counts"],
                        "pr": rows(pr), "confusion": rows(run.confusion_matrix(slice=sl)),
                        "error_types": rows(run.error_types())}
        return out

    def api_history(self, p: dict) -> dict:
        ds = self._ds(p)
        return {"label_version": ds.label_version, "versions": rows(ds.label_versions())}

    # -- writes -----------------------------------------------------------------------------------
    def api_save_slice(self, p: dict) -> dict:
        ds = self._ds(p)
        name = p_str(p, "name", required=True, max_len=128)
        if not _NAME.match(name):
            raise ApiError(400, "slice name: letters, digits, space and . : + - _ only (1-128 characters)")
        if p_str(p, "mode", default="dynamic") == "dynamic":
            q = p_str(p, "q")
            if not q:
                raise ApiError(400, "a dynamic slice needs a query")
            run = self._run(p, ds)
            ds.create_slice(name, query=q, run=run.name if run else None)
        else:
            refs = results.refs_of(ds, self._result(p, ds))
            ds.create_slice(name, reference_ids=refs)
        return {"slice": name, "size": len(ds.get_slice(name))}

    def api_fix(self, p: dict) -> dict:
        """One label correction: add (accept a prediction as missing GT), delete, or change label / box."""
        ds = self._ds(p)
        action = p_str(p, "action", required=True, max_len=16)
        ref = p_str(p, "ref", required=True, max_len=1024)
        reason = p_str(p, "reason", max_len=500) or f"Loupe App: {action}"
        author = "loupe-app"
        if action == "add":
            from engine.api.records import BoxAnnotation

            box = self._box(p)
            label = p_str(p, "label", required=True, max_len=256)
            ann_id = p_str(p, "annotation_id", max_len=128)
            res = ds.add_missing([BoxAnnotation(label, ref, annotation_id=ann_id, **box)], reason=reason,
                                 author=author, clip=True)
        elif action == "delete":
            ann = p_str(p, "annotation_id", required=True, max_len=128)
            n = ds.delete_annotations([ann], reference_id=ref, reason=reason, author=author)
            res = {"deleted": n}
        elif action == "change":
            ann = p_str(p, "annotation_id", required=True, max_len=128)
            changes: dict[str, Any] = {}
            label = p_str(p, "label", max_len=256)
            if label is not None:
                changes["label"] = label
            if any(p.get(k) is not None for k in ("x", "y", "width", "height")):
                changes.update(self._box(p))
            if not changes:
                raise ApiError(400, "a change needs a new 'label' or a box (x, y, width, height)")
            res = ds.correct(ann, reference_id=ref, reason=reason, author=author, **changes)
        else:
            raise ApiError(400, f"unknown action {action!r}; expected add, delete or change")
        return {"result": res, "label_version": ds.label_version}

    @staticmethod
    def _box(p: dict) -> dict:
        b = {k: p_float(p, k, required=True, lo=-1e7, hi=1e7) for k in ("x", "y", "width", "height")}
        if b["width"] <= 0 or b["height"] <= 0:
            raise ApiError(400, "box width and height must be positive")
        return b

    def api_undo(self, p: dict) -> dict:
        """Undo a stack: the latest label fix still in effect (of item ``ref`` / object ``annotation_id``
        when given), then the one before it...; or exactly label ``version``."""
        from engine.curation.corrections import undo_stack

        ds = self._ds(p)
        why, who = "Loupe App: undo", "loupe-app"
        ref = p_str(p, "ref", max_len=1024)
        ann = p_str(p, "annotation_id", max_len=128)
        if ann is not None and ref is None:
            raise ApiError(400, "an 'annotation_id' needs its item's 'ref'")
        if p.get("version") is not None:
            res = ds.undo(p_int(p, "version", 0, 1, 2**31 - 1), reason=why, author=who)
        else:
            res = ds.undo_last(reference_id=ref, annotation_id=ann, reason=why, author=who)
        return {"result": res, "label_version": ds.label_version, "can_undo": len(undo_stack(ds, ref, ann))}

    def api_commit(self, p: dict) -> dict:
        ds = self._ds(p)
        run = self._run(p, ds)
        if run is None:
            raise ApiError(400, "missing parameter 'run'")
        # "before" = the metrics of the last commit, i.e. against the labels it was matched with
        v = self.ws.store.scalar("SELECT label_version FROM runs WHERE run_id = ?", [run.id])
        before = run.metrics(label_version=int(v)) if self._committed(run) and v is not None else None
        c = run.commit()
        after = run.metrics()
        return {"before": before and {"stats": before["stats"], "counts": before["counts"]},
                "after": {"stats": after["stats"], "counts": after["counts"]}, "label_version": ds.label_version,
                "commit": {k: c[k] for k in ("tp", "fp", "fn") if k in c}}

    # -- selections and similarity ------------------------------------------------------------------
    def _remember(self, refs: list[str]) -> str:
        sid = str(next(self._sel_ids))
        self._selections[sid] = refs
        while len(self._selections) > 32:
            self._selections.popitem(last=False)
        return sid

    def api_select(self, p: dict) -> dict:
        ds = self._ds(p)
        refs = p.get("refs")
        if not isinstance(refs, list) or not all(isinstance(r, str) for r in refs) or len(refs) > 200_000:
            raise ApiError(400, "'refs' must be a list of reference ids (at most 200000)")
        known = pc.is_in(pa.array(refs, pa.string()), value_set=ds.items().column("reference_id"))
        refs = [r for r, k in zip(refs, known.to_pylist()) if k]
        return {"sel": self._remember(refs), "count": len(refs)}

    def api_similar(self, p: dict) -> dict:
        ds = self._ds(p)
        if not hasattr(ds, "similar"):
            raise ApiError(400, "similarity search is not available in this build")
        ref = p_str(p, "ref", required=True, max_len=1024)
        k = p_int(p, "k", 48, 1, 1000)
        t = ds.similar(ref, k=k, embeddings=p_str(p, "embeddings", max_len=256))
        refs = list(dict.fromkeys(t.column("reference_id").to_pylist()))
        return {"sel": self._remember(refs), "count": len(refs), "scores": rows(t)}

    def api_similar_map(self, p: dict) -> dict:
        ds = self._ds(p)
        if not hasattr(ds, "embedding_map"):
            raise ApiError(400, "similarity maps are not available in this build")
        name = p_str(p, "embeddings", required=True, max_len=256)
        t = ds.embedding_map(name)
        return {"points": rows(t)}
