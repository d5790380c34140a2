"""Label corrections with history: change, add, delete and undo ground truth, one label version each.

Nothing is ever overwritten. A correction closes the current row of an annotation (``valid_to = v``)
and writes its new state as a new row (``valid_from = v``), so every past label version stays
queryable and ``run.commit(label_version=...)`` / ``run.metrics(label_version=...)`` can evaluate
against it. Who and why are logged twice: per version in ``label_versions`` and per object in
``label_changes`` (each row may carry its own reason, e.g. the suggestion it came from).

Annotations are addressed by ``annotation_id``; ids are unique per item only (PennFudan numbers
objects 1, 2, ... in every image), so an id that exists on several items needs its
``reference_id``: pass ``(reference_id, annotation_id)`` tuples or ``reference_id=``.

Undo never rewrites history either: ``undo(v)`` opens a new version in which the rows version ``v``
replaced or deleted are current again (as copies) and the rows it wrote are closed.
"""
from __future__ import annotations

import contextlib
import json
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from engine.analysis._sql import registered
from engine.errors import LoupeError, LoupeWarning, NotFoundError, ValidationError
from engine.ingest.annotations import EPS, record_version, write_annotations
from engine.store.database import Store

if TYPE_CHECKING:
    from engine.api.dataset import Dataset

CHANGE_FIELDS = ("label", "x", "y", "width", "height", "iscrowd", "metadata")
_BOX = ("x", "y", "width", "height")
_CHANGE_TYPES = {"reference_id": pa.string(), "annotation_id": pa.string(), "label": pa.string(),
                 "x": pa.float64(), "y": pa.float64(), "width": pa.float64(), "height": pa.float64(),
                 "iscrowd": pa.bool_(), "metadata": pa.string(), "reason": pa.string()}


# -- addressing annotations ----------------------------------------------------------------------------
def _ref_rows(ids: Iterable[Any], reference_id: str | None) -> list[dict[str, Any]]:
    """``[{reference_id, annotation_id}]`` from ids given as strings, (ref, id) pairs or dicts."""
    if isinstance(ids, (str, bytes)) or isinstance(ids, Mapping):
        ids = [ids]
    out = []
    for k in ids:
        if isinstance(k, Mapping):
            ref, aid = k.get("reference_id", reference_id), k.get("annotation_id")
        elif isinstance(k, (tuple, list)):
            if len(k) != 2:
                raise ValidationError(f"an annotation is (reference_id, annotation_id), got {k!r}")
            ref, aid = k
        else:
            ref, aid = reference_id, k
        if aid is None or str(aid).strip() == "":
            raise ValidationError("annotation_id is missing or empty", field="annotation_id")
        out.append({"reference_id": None if ref is None else str(ref), "annotation_id": str(aid)})
    return out


def _delete_table(t: pa.Table) -> pa.Table:
    """An Arrow ``delete`` argument checked and cast: reference_id (optional), annotation_id, reason."""
    if "annotation_id" not in t.column_names:
        raise ValidationError("a delete table needs an 'annotation_id' column", field="annotation_id")
    n = t.num_rows
    aid = pc.cast(t["annotation_id"], pa.string())
    blank = pc.or_kleene(pc.is_null(aid), pc.equal(pc.utf8_trim_whitespace(aid), ""))
    if pc.any(blank).as_py():
        row = int(np.flatnonzero(blank.to_numpy(zero_copy_only=False))[0])
        raise ValidationError("annotation_id is missing or empty", record=f"delete row {row}", field="annotation_id")

    def col(name: str) -> pa.ChunkedArray | pa.Array:
        return pc.cast(t[name], pa.string()) if name in t.column_names else pa.nulls(n, pa.string())

    return pa.table({"reference_id": col("reference_id"), "annotation_id": aid, "reason": col("reason")})


def resolve(store: Store, dataset_id: int, refs: pa.Table) -> np.ndarray:
    """Current ``ann_key`` of each row of ``refs`` (reference_id may be NULL), in order.

    Raises:
        NotFoundError: no current annotation has that id (on that item).
        ValidationError: the id exists on several items and no reference_id says which, or one
            annotation is named twice.
    """
    t = refs.select(["reference_id", "annotation_id"]).append_column(
        "__k", pa.array(np.arange(refs.num_rows, dtype=np.int64)))
    with registered(store, t, "refs") as name:
        found = store.con.execute(
            f"""SELECT k.__k, a.ann_key, i.reference_id
                FROM {name} k
                LEFT JOIN (annotations a JOIN items i ON i.item_id = a.item_id)
                  ON a.dataset_id = $ds AND a.valid_to IS NULL AND a.annotation_id = k.annotation_id
                 AND (k.reference_id IS NULL OR i.reference_id = k.reference_id)
                ORDER BY k.__k, i.reference_id""", {"ds": dataset_id}).fetchnumpy()
    k = np.asarray(found["__k"], np.int64)
    key = found["ann_key"]
    miss = np.ma.getmaskarray(key) if np.ma.isMaskedArray(key) else np.zeros(len(k), bool)
    if miss.any():
        r = refs.slice(int(k[np.flatnonzero(miss)[0]]), 1).to_pylist()[0]
        on = f" on item '{r['reference_id']}'" if r["reference_id"] else ""
        raise NotFoundError(f"no current annotation with annotation_id '{r['annotation_id']}'{on}")
    counts = np.bincount(k, minlength=refs.num_rows)
    if (counts > 1).any():
        i = int(np.flatnonzero(counts > 1)[0])
        refs_of = np.asarray(found["reference_id"], dtype=object)[k == i][:3]
        raise ValidationError(
            f"annotation_id '{refs.column('annotation_id')[i].as_py()}' exists on {counts[i]} items "
            f"({', '.join(map(str, refs_of))}, ...); say which with reference_id or a (reference_id, "
            f"annotation_id) pair", field="annotation_id")
    keys = np.asarray(np.ma.filled(key, -1) if np.ma.isMaskedArray(key) else key, np.int64)
    uniq, first = np.unique(keys, return_index=True)
    if len(uniq) < len(keys):
        dup = int(np.setdiff1d(np.arange(len(keys)), first)[0])
        raise ValidationError(f"annotation '{refs.column('annotation_id')[dup].as_py()}' is named twice",
                              record=f"row {dup}", field="annotation_id")
    return keys


def _current_version(store: Store, dataset_id: int) -> int:
    return int(store.scalar("SELECT label_version FROM datasets WHERE dataset_id = ?", [dataset_id]))


def _drop_temp(store: Store, *names: str) -> None:
    """Drop scratch tables; quietly, so an aborted transaction still reports its real error."""
    for n in names:
        with contextlib.suppress(Exception):
            store.con.execute(f"DROP TABLE IF EXISTS {n}")


def _log(store: Store, sql_select: str, params: Mapping[str, Any]) -> None:
    """Append label_changes rows produced by ``sql_select`` (columns in table order, minus created_at)."""
    store.con.execute(f"INSERT INTO label_changes SELECT *, now()::TIMESTAMP FROM ({sql_select})", dict(params))


# -- the three primitive writes (inside a transaction, at label version v) ------------------------------
def _changes_table(changes: Iterable[Mapping[str, Any]] | pa.Table) -> pa.Table:
    if isinstance(changes, pa.Table):
        extra = [c for c in changes.column_names if c not in _CHANGE_TYPES]
        if extra:
            raise ValidationError(f"unknown column(s) {extra} in changes; expected {list(_CHANGE_TYPES)}",
                                  field=extra[0])
        rows = changes.to_pylist()
    else:
        rows = [dict(r) for r in changes]
    cols: dict[str, list[Any]] = {c: [] for c in _CHANGE_TYPES}
    for i, r in enumerate(rows):
        r = dict(r)
        if "box" in r:
            box = r.pop("box")
            if box is not None:
                if len(box) != 4:
                    raise ValidationError("box must be [x, y, width, height]", record=f"row {i}", field="box")
                r.update(zip(_BOX, (float(v) for v in box)))
        bad = [c for c in r if c not in _CHANGE_TYPES]
        if bad:
            raise ValidationError(f"cannot change {bad[0]!r}; changeable: {list(CHANGE_FIELDS)} (or box)",
                                  record=f"row {i}", field=bad[0])
        md = r.get("metadata")
        if md is not None and not isinstance(md, str):
            r["metadata"] = json.dumps(md)
        for c in cols:
            cols[c].append(r.get(c))
    try:
        return pa.table({c: pa.array(v, _CHANGE_TYPES[c]) for c, v in cols.items()})
    except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
        raise ValidationError(f"bad change value: {e}") from None


_CHANGE_RULES = (
    ("label", "n_label IS NULL OR trim(n_label) = ''", "label is missing or empty"),
    ("box", "box_changed AND kind NOT IN ('box')",
     "only box annotations take a new box (re-annotate polygons/masks with update=True)"),
    ("box", "box_changed AND (n_x IS NULL OR n_y IS NULL OR n_w IS NULL OR n_h IS NULL OR isnan(n_x) OR isnan(n_y) "
            "OR isnan(n_w) OR isnan(n_h) OR isinf(n_x) OR isinf(n_y) OR isinf(n_w) OR isinf(n_h))",
     "box values must be finite numbers"),
    ("box", "box_changed AND (n_w < 0 OR n_h < 0)", "box width/height is negative"),
    ("box", f"box_changed AND img_w IS NOT NULL AND (n_x < -{EPS} OR n_y < -{EPS} OR n_x + n_w > img_w + {EPS} "
            f"OR n_y + n_h > img_h + {EPS})", "box lies outside the image"),
    ("metadata", "c_metadata IS NOT NULL AND json_type(try_cast(c_metadata AS JSON)) IS DISTINCT FROM 'OBJECT'",
     "metadata must be a JSON object (it is merged into the current metadata)"),
)


def _write_changes(store: Store, dataset_id: int, changes: pa.Table, v: int, reason: str | None,
                   author: str | None) -> tuple[int, list[str]]:
    """Replace the changed annotations by new rows valid from ``v``.

    Returns how many changed and, for the rows that change nothing, up to 3 names of them.
    """
    keys = resolve(store, dataset_id, changes)
    t = changes.append_column("old_key", pa.array(keys, pa.int64()))
    con = store.con
    with registered(store, t, "chg") as name:
        con.execute(
            f"""CREATE OR REPLACE TEMP TABLE __chg_plan AS
                SELECT *,
                       [f FOR f IN [CASE WHEN n_label IS DISTINCT FROM label THEN 'label' END,
                                    CASE WHEN box_changed THEN 'box' END,
                                    CASE WHEN n_iscrowd IS DISTINCT FROM iscrowd THEN 'iscrowd' END,
                                    CASE WHEN n_meta IS DISTINCT FROM metadata THEN 'metadata' END]
                        IF f IS NOT NULL] AS fields
                FROM (
                    SELECT a.*, c.old_key, c.reason AS row_reason, c.metadata AS c_metadata, i.width AS img_w,
                           i.height AS img_h, trim(coalesce(c.label, a.label)) AS n_label,
                           coalesce(c.x, a.x) AS n_x, coalesce(c.y, a.y) AS n_y,
                           coalesce(c.width, a.width) AS n_w, coalesce(c.height, a.height) AS n_h,
                           coalesce(c.iscrowd, a.iscrowd) AS n_iscrowd,
                           CASE WHEN c.metadata IS NULL THEN a.metadata
                                WHEN json_type(try_cast(c.metadata AS JSON)) = 'OBJECT'
                                THEN json_merge_patch(coalesce(a.metadata, '{{}}'::JSON), c.metadata::JSON)
                           END AS n_meta,
                           (coalesce(c.x, a.x) IS DISTINCT FROM a.x OR coalesce(c.y, a.y) IS DISTINCT FROM a.y
                            OR coalesce(c.width, a.width) IS DISTINCT FROM a.width
                            OR coalesce(c.height, a.height) IS DISTINCT FROM a.height) AS box_changed
                    FROM {name} c JOIN annotations a ON a.ann_key = c.old_key
                    JOIN items i ON i.item_id = a.item_id)""")
    try:
        for field, cond, msg in _CHANGE_RULES:
            bad = con.execute(
                f"""SELECT p.annotation_id, i.reference_id FROM __chg_plan p JOIN items i USING (item_id)
                    WHERE {cond} LIMIT 1""").fetchone()
            if bad:
                raise ValidationError(msg, record=f"reference_id '{bad[1]}', annotation_id '{bad[0]}'",
                                      field=field)
        n = int(con.execute("SELECT count(*) FROM __chg_plan WHERE len(fields) > 0").fetchone()[0])
        same = [f"reference_id '{r}', annotation_id '{a}'" for a, r in con.execute(
            """SELECT p.annotation_id, i.reference_id FROM __chg_plan p JOIN items i USING (item_id)
               WHERE len(p.fields) = 0 ORDER BY p.old_key""").fetchall()]
        if n == 0:
            return 0, same
        k0 = store.next_key("annotations", "ann_key")
        con.execute(
            """CREATE OR REPLACE TEMP TABLE __chg_new AS
               SELECT *, $k0 + row_number() OVER (ORDER BY old_key) - 1 AS new_key
               FROM __chg_plan WHERE len(fields) > 0""", {"k0": k0})
        con.execute("UPDATE annotations SET valid_to = $v WHERE ann_key IN (SELECT old_key FROM __chg_new)", {"v": v})
        con.execute(
            """INSERT INTO annotations
               SELECT new_key, dataset_id, item_id, annotation_id, kind, n_label, n_x, n_y, n_w, n_h, polygon, mask,
                      keypoints, keypoint_names, n_iscrowd,
                      CASE WHEN box_changed AND mask IS NULL AND polygon IS NULL THEN n_w * n_h ELSE area END,
                      n_meta, seq, $v, NULL
               FROM __chg_new""", {"v": v})
        _log(store, """SELECT dataset_id, $v, item_id, annotation_id, 'change', old_key, new_key, fields,
                              coalesce(row_reason, $r), $a FROM __chg_new""", {"v": v, "r": reason, "a": author})
        return n, same
    finally:
        _drop_temp(store, "__chg_plan", "__chg_new")


def _write_deletes(store: Store, dataset_id: int, refs: pa.Table, v: int, reason: str | None,
                   author: str | None) -> int:
    keys = resolve(store, dataset_id, refs)
    row_reason = refs.column("reason") if "reason" in refs.column_names else pa.nulls(refs.num_rows, pa.string())
    t = pa.table({"old_key": pa.array(keys, pa.int64()), "row_reason": row_reason})
    with registered(store, t, "del") as name:
        store.con.execute(f"UPDATE annotations SET valid_to = $v WHERE ann_key IN (SELECT old_key FROM {name})",
                          {"v": v})
        _log(store, f"""SELECT a.dataset_id, $v, a.item_id, a.annotation_id, 'delete', a.ann_key, NULL::BIGINT,
                               NULL::VARCHAR[], coalesce(d.row_reason, $r), $a
                        FROM {name} d JOIN annotations a ON a.ann_key = d.old_key""",
             {"v": v, "r": reason, "a": author})
    return len(keys)


def _write_adds(store: Store, dataset_id: int, table: pa.Table, v: int, reason: str | None, author: str | None,
                operation: str, clip: bool) -> dict[str, Any]:
    """New annotations through the normal ingest path (validation, geometry), at version ``v``."""
    row_reason = None
    if "reason" in table.column_names:
        row_reason = table.select([c for c in ("reference_id", "annotation_id", "reason") if c in table.column_names])
        table = table.drop_columns(["reason"])
    res = write_annotations(store, dataset_id, table, update=False, clip=clip, author=author, reason=reason,
                            operation=operation)
    if res["new"] and res["label_version"] != v:  # cannot happen inside our transaction; guard the invariant
        raise LoupeError(f"internal: adds landed in label version {res['label_version']}, expected {v}")
    if res["new"]:
        reasons = row_reason if row_reason is not None and "annotation_id" in row_reason.column_names else \
            pa.table({"reference_id": pa.array([], pa.string()), "annotation_id": pa.array([], pa.string()),
                      "reason": pa.array([], pa.string())})
        with registered(store, reasons, "addr") as name:
            _log(store, f"""SELECT a.dataset_id, $v, a.item_id, a.annotation_id, 'add', NULL::BIGINT, a.ann_key,
                                   NULL::VARCHAR[], coalesce(r.reason, $r), $a
                            FROM annotations a JOIN items i ON i.item_id = a.item_id
                            LEFT JOIN {name} r ON r.reference_id = i.reference_id AND r.annotation_id = a.annotation_id
                            WHERE a.dataset_id = $ds AND a.valid_from = $v
                              AND a.ann_key NOT IN (SELECT new_ann_key FROM label_changes
                                                    WHERE dataset_id = $ds AND version = $v AND new_ann_key IS NOT NULL)""",
                 {"v": v, "r": reason, "a": author, "ds": dataset_id})
    return res


# -- public API -------------------------------------------------------------------------------------------
def apply_changes(
    ds: "Dataset",
    add: Iterable[Any] | pa.Table | None = None,
    change: Iterable[Mapping[str, Any]] | pa.Table | None = None,
    delete: Iterable[Any] | pa.Table | None = None,
    reason: str | None = None,
    author: str | None = None,
    operation: str = "correct",
    clip: bool = False,
) -> dict[str, Any]:
    """Add, change and delete annotations as ONE new label version (all or nothing).

    Args:
        add: new annotations (objects or an Arrow table with the annotation columns, plus an optional
            per-row ``reason``).
        change: ``{annotation_id, [reference_id], [label], [x, y, width, height] or [box], [iscrowd],
            [metadata] (merged), [reason]}`` rows; a None field is left as it is.
        delete: annotation ids, ``(reference_id, annotation_id)`` pairs or dicts (optional ``reason``), or an
            Arrow table with those columns.
        reason, author: recorded with the version (and with every row lacking its own reason).
        operation: the version's operation name in ``label_versions``.

    Returns:
        ``{"label_version", "added", "changed", "deleted", "unchanged", "ignored"}``; ``label_version``
        is the current version when nothing changed. Change rows whose values equal the current
        labels are counted as ``unchanged`` and reported with a :class:`LoupeWarning`.
    """
    from engine.api._inputs import annotations_table

    store = ds.ws.store
    chg = _changes_table(change) if change is not None else None
    dele = None
    if isinstance(delete, pa.Table):
        dele = _delete_table(delete)
    elif delete is not None:
        rows = list(delete) if not isinstance(delete, (str, Mapping)) else [delete]
        refs = _ref_rows(rows, None)
        reasons = [r.get("reason") if isinstance(r, Mapping) else None for r in rows]
        dele = pa.table({"reference_id": pa.array([r["reference_id"] for r in refs], pa.string()),
                         "annotation_id": pa.array([r["annotation_id"] for r in refs], pa.string()),
                         "reason": pa.array(reasons, pa.string())})
    add_t = annotations_table(add) if add is not None else None
    if add_t is not None and add_t.num_rows == 0:
        add_t = None
    with store.transaction():
        cur = _current_version(store, ds.id)
        v = cur + 1
        n_chg, same = (_write_changes(store, ds.id, chg, v, reason, author) if chg is not None and chg.num_rows
                       else (0, []))
        n_del = _write_deletes(store, ds.id, dele, v, reason, author) if dele is not None and dele.num_rows else 0
        added = {"new": 0, "ignored": 0}
        if add_t is not None:
            added = _write_adds(store, ds.id, add_t, v, reason, author, operation, clip)
        if added["new"]:  # write_annotations logged version v with its adds: complete the counts
            store.con.execute("UPDATE label_versions SET changed = $c, deleted = $d WHERE dataset_id = $ds AND version = $v",
                              {"c": n_chg, "d": n_del, "ds": ds.id, "v": v})
        elif n_chg or n_del:
            record_version(store, ds.id, v, operation, author, reason, 0, n_chg, n_del)
        else:
            v = cur
    if same:  # a change equal to the current labels is not an error, but the user meant to change something
        more = f" and {len(same) - 1} more" if len(same) > 1 else ""
        warnings.warn(LoupeWarning(
            f"{len(same)} change(s) left the labels as they were (the values given are the current ones): "
            f"{same[0]}{more}" + ("" if n_chg else f"; no new label version (still {v})")), stacklevel=3)
    return {"label_version": v, "added": int(added["new"]), "changed": n_chg, "deleted": n_del,
            "unchanged": len(same), "ignored": int(added.get("ignored", 0))}


def correct(ds: "Dataset", annotation_id: Any, reason: str | None = None, author: str | None = None,
            reference_id: str | None = None, **changes: Any) -> dict[str, Any]:
    """Change one annotation (label, box, iscrowd, metadata) as a new label version.

    Example:
        >>> ds.correct("3", reference_id="FudanPed00012", label="cyclist", reason="rider on a bike")
        >>> ds.correct("3", reference_id="FudanPed00012", box=(10, 20, 40, 90), reason="box too loose")
    """
    if not changes:
        raise ValidationError(f"nothing to change; give any of {list(CHANGE_FIELDS)} (or box=)")
    ref = _ref_rows([annotation_id], reference_id)[0]
    return apply_changes(ds, change=[{**ref, **changes}], reason=reason, author=author, operation="correct")


def add_missing(ds: "Dataset", annotations: Iterable[Any] | pa.Table, reason: str | None = None,
                author: str | None = None, clip: bool = False) -> dict[str, Any]:
    """Add annotations the labels left out (e.g. accepted ``missing_annotation`` suggestions)."""
    return apply_changes(ds, add=annotations, reason=reason, author=author, operation="add_missing", clip=clip)


def delete_annotations(ds: "Dataset", annotation_ids: Iterable[Any], reason: str | None = None,
                       author: str | None = None, reference_id: str | None = None) -> int:
    """Delete annotations (kept in history) as a new label version. Returns how many."""
    rows = _ref_rows(annotation_ids, reference_id)
    if not rows:
        return 0
    return apply_changes(ds, delete=rows, reason=reason, author=author, operation="delete")["deleted"]


def undo(ds: "Dataset", version: int | None = None, reason: str | None = None,
         author: str | None = None) -> dict[str, Any]:
    """Revert label version ``version`` (default: the latest) by opening a new version.

    The annotations ``version`` wrote are closed and the ones it replaced or deleted become current
    again; history is never rewritten. Refused when a later version changed the same annotations
    (undo those first).

    Returns:
        ``{"label_version", "undone", "restored", "removed", "changed"}``.
    """
    store = ds.ws.store
    con = store.con
    with store.transaction():
        cur = _current_version(store, ds.id)
        v = cur if version is None else int(version)
        if v < 1 or v > cur:
            raise NotFoundError(f"dataset '{ds.name}' has no label version {v} (current: {cur})")
        if not con.execute("SELECT 1 FROM label_versions WHERE dataset_id = ? AND version = ?", [ds.id, v]).fetchone():
            raise NotFoundError(f"dataset '{ds.name}' has no recorded label version {v}")
        p = {"ds": ds.id, "v": v}
        # identities (item, annotation_id) the version touched, with what it wrote / what it replaced, and
        # the identity's current row. The version's state must still be in effect: the current row is the
        # one it wrote, or a copy with the same content (an undo of a later fix restored it), or, for a
        # delete, there is none. So fixes on one object undo one by one, latest first.
        touched = f"""SELECT t.*, c.ann_key AS cur_key,
                             CASE WHEN t.new_key IS NOT NULL THEN c.ann_key IS NOT DISTINCT FROM t.new_key
                                  OR ({_SAME_CONTENT}) ELSE c.ann_key IS NULL END AS in_effect
                      FROM (SELECT item_id, annotation_id,
                                   max(CASE WHEN valid_from = $v THEN ann_key END) AS new_key,
                                   max(CASE WHEN valid_to = $v THEN ann_key END) AS old_key
                            FROM annotations WHERE dataset_id = $ds AND (valid_from = $v OR valid_to = $v)
                            GROUP BY item_id, annotation_id) t
                      LEFT JOIN annotations c ON c.dataset_id = $ds AND c.item_id = t.item_id
                           AND c.annotation_id = t.annotation_id AND c.valid_to IS NULL
                      LEFT JOIN annotations n ON n.ann_key = t.new_key"""
        conflict = con.execute(
            f"""SELECT t.annotation_id, i.reference_id, c.valid_from
                FROM ({touched}) t JOIN items i USING (item_id)
                LEFT JOIN annotations c ON c.ann_key = t.cur_key
                WHERE NOT t.in_effect
                LIMIT 1""", p).fetchone()
        if conflict:
            later = f"version {conflict[2]}" if conflict[2] is not None else "a later version"
            raise LoupeError(f"cannot undo label version {v}: annotation '{conflict[0]}' on '{conflict[1]}' was "
                             f"changed again in {later}; undo the later versions first")
        n = cur + 1
        con.execute(f"CREATE OR REPLACE TEMP TABLE __undo AS {touched}", p)
        try:
            counts = con.execute(
                """SELECT count(*) FILTER (WHERE new_key IS NULL), count(*) FILTER (WHERE old_key IS NULL),
                          count(*) FILTER (WHERE new_key IS NOT NULL AND old_key IS NOT NULL) FROM __undo""").fetchone()
            restored, removed, changed = (int(c) for c in counts)
            k0 = store.next_key("annotations", "ann_key")
            con.execute(
                """CREATE OR REPLACE TEMP TABLE __undo_keys AS
                   SELECT *, CASE WHEN old_key IS NOT NULL
                                  THEN $k0 + row_number() OVER (ORDER BY old_key NULLS LAST) - 1 END AS copy_key
                   FROM __undo""", {"k0": k0})
            con.execute("UPDATE annotations SET valid_to = $n WHERE ann_key IN "
                        "(SELECT cur_key FROM __undo_keys WHERE new_key IS NOT NULL)", {"n": n})
            con.execute(
                """INSERT INTO annotations
                   SELECT u.copy_key, a.dataset_id, a.item_id, a.annotation_id, a.kind, a.label, a.x, a.y, a.width,
                          a.height, a.polygon, a.mask, a.keypoints, a.keypoint_names, a.iscrowd, a.area, a.metadata,
                          a.seq, $n, NULL
                   FROM __undo_keys u JOIN annotations a ON a.ann_key = u.old_key""", {"n": n})
            why = f"undo of label version {v}" + (f": {reason}" if reason else "")
            _log(store, """SELECT $ds, $n, item_id, annotation_id,
                                  CASE WHEN new_key IS NULL THEN 'restore' WHEN old_key IS NULL THEN 'delete'
                                       ELSE 'change' END,
                                  CASE WHEN new_key IS NOT NULL THEN cur_key END, copy_key, NULL::VARCHAR[], $r, $a
                           FROM __undo_keys""",
                 {"ds": ds.id, "n": n, "r": why, "a": author})
            record_version(store, ds.id, n, "undo", author, why, restored, changed, removed)
        finally:
            _drop_temp(store, "__undo", "__undo_keys")
    return {"label_version": n, "undone": v, "restored": restored, "removed": removed, "changed": changed}


_SAME_CONTENT = " AND ".join(f"c.{k} IS NOT DISTINCT FROM n.{k}" for k in (
    "kind", "label", "x", "y", "width", "height", "polygon", "mask", "keypoints", "keypoint_names", "iscrowd",
    "area", "metadata"))  # of the current row c and the row n a version wrote

FIX_OPERATIONS = ("correct", "add_missing", "delete")  # the versions undo_last walks back through


def undo_stack(ds: "Dataset", reference_id: str | None = None, annotation_id: Any = None) -> list[int]:
    """Label versions of fixes (:data:`FIX_OPERATIONS`) still in effect, oldest first: what
    :func:`undo_last` reverts, latest first. With ``reference_id`` (and ``annotation_id``), only the
    fixes that touched that item (object).

    An undo version records the version it reverted in its reason ("undo of label version N", written
    by :func:`undo`); undoing an undo puts that version back in effect.
    """
    store = ds.ws.store
    versions = store.arrow(
        """SELECT version, operation, regexp_extract(reason, '^undo of label version ([0-9]+)', 1) AS undid
           FROM label_versions WHERE dataset_id = $ds ORDER BY version""", {"ds": ds.id}).to_pylist()
    undid = {r["version"]: int(r["undid"]) for r in versions if r["operation"] == "undo" and r["undid"]}
    done = {r["version"]: True for r in versions}
    for u in sorted(undid):  # the few undo versions, in order
        t = undid[u]
        done[t] = False
        if t in undid:  # an undo of an undo: the version that one reverted is in effect again
            done[undid[t]] = True
    stack = [r["version"] for r in versions if r["operation"] in FIX_OPERATIONS and done.get(r["version"])]
    if reference_id is None:
        return stack
    params: dict[str, Any] = {"ds": ds.id, "ref": reference_id}
    cond = ""
    if annotation_id is not None:
        cond, params["aid"] = " AND c.annotation_id = $aid", str(annotation_id)
    touched = {int(r[0]) for r in store.con.execute(
        f"""SELECT DISTINCT c.version FROM label_changes c JOIN items i USING (item_id)
            WHERE c.dataset_id = $ds AND i.reference_id = $ref{cond}""", params).fetchall()}
    return [v for v in stack if v in touched]


def undo_last(ds: "Dataset", reference_id: str | None = None, annotation_id: Any = None,
              reason: str | None = None, author: str | None = None) -> dict[str, Any]:
    """Undo the latest fix still in effect (of one item or object when given): called again, the fix
    before it, and so on, each restoring the state before that fix. See :func:`undo_stack`."""
    stack = undo_stack(ds, reference_id, annotation_id)
    if not stack:
        what = "" if reference_id is None else f" on '{reference_id}'" + (
            f" (annotation '{annotation_id}')" if annotation_id is not None else "")
        raise LoupeError(f"nothing to undo{what}: no label fix of dataset '{ds.name}' is still in effect")
    return undo(ds, stack[-1], reason=reason, author=author)


def history(ds: "Dataset", annotation_id: Any = None, reference_id: str | None = None) -> pa.Table:
    """Every stored state of annotations (all, or one) with the version that wrote it and why.

    Columns: reference_id, annotation_id, valid_from, valid_to, label, x, y, width, height, iscrowd,
    metadata, operation, author, reason (the per-object reason when one was given), created_at.
    """
    cond, params = "", {"ds": ds.id}
    if annotation_id is not None:
        cond = " AND a.annotation_id = $aid"
        params["aid"] = str(annotation_id)
    if reference_id is not None:
        cond += " AND i.reference_id = $ref"
        params["ref"] = str(reference_id)
    return ds.ws.store.arrow(
        f"""SELECT i.reference_id, a.annotation_id, a.valid_from, a.valid_to, a.label, a.x, a.y, a.width, a.height,
                   a.iscrowd, a.metadata::VARCHAR AS metadata, v.operation, coalesce(c.author, v.author) AS author,
                   coalesce(c.reason, v.reason) AS reason, v.created_at
            FROM annotations a JOIN items i USING (item_id)
            LEFT JOIN label_versions v ON v.dataset_id = a.dataset_id AND v.version = a.valid_from
            LEFT JOIN label_changes c ON c.dataset_id = a.dataset_id AND c.new_ann_key = a.ann_key
            WHERE a.dataset_id = $ds {cond}
            ORDER BY i.reference_id, a.annotation_id, a.valid_from""", params)


def changes(ds: "Dataset", version: int | None = None) -> pa.Table:
    """The per-object change log (``label_changes``) of one version or all, with reference ids."""
    cond = "" if version is None else f" AND c.version = {int(version)}"
    return ds.ws.store.arrow(
        f"""SELECT c.version, i.reference_id, c.annotation_id, c.action, c.fields, c.reason, c.author, c.created_at,
                   o.label AS old_label, n.label AS new_label
            FROM label_changes c JOIN items i USING (item_id)
            LEFT JOIN annotations o ON o.ann_key = c.old_ann_key
            LEFT JOIN annotations n ON n.ann_key = c.new_ann_key
            WHERE c.dataset_id = ? {cond} ORDER BY c.version, i.reference_id, c.annotation_id""", [ds.id])


# -- the sample data's truth file -------------------------------------------------------------------------
def truth_corrections(truth_path: str | Path, reference_ids: Sequence[str] | None = None,
                      reasons: Sequence[str] | None = None) -> dict[str, list[dict[str, Any]]]:
    """The sample data's ``truth.json`` corrections as ``apply_changes`` arguments (``add`` and ``change``).

    ``add`` boxes get annotation_id ``truth-<object_id>``; ``relabel`` and ``set_box`` address the
    imported object ``str(mask_index)`` (the PennFudan importer's annotation ids). ``set_box`` also
    sets the metadata ``txt_box`` to the corrected box, so the text and mask boxes agree again.
    """
    truth = json.loads(Path(truth_path).read_text(encoding="utf-8"))
    keep_refs = None if reference_ids is None else set(map(str, reference_ids))
    keep_reasons = None if reasons is None else set(reasons)
    add, change = [], []
    for c in truth.get("corrections", []):
        if keep_refs is not None and c["reference_id"] not in keep_refs:
            continue
        if keep_reasons is not None and c.get("reason") not in keep_reasons:
            continue
        why = f"truth.json: {c.get('reason', c['action'])}"
        if c["action"] == "add":
            x, y, w, h = (float(v) for v in c["box"])
            add.append({"reference_id": c["reference_id"], "annotation_id": f"truth-{c['object_id']}", "kind": "box",
                        "label": c["label"], "x": x, "y": y, "width": w, "height": h,
                        "metadata": json.dumps({"pf_label": c.get("pf_label"), "txt_box": c["box"],
                                                "source": "truth.json"}),
                        "reason": why})
        elif c["action"] == "relabel":
            md = {"pf_label": c["pf_label"]} if c.get("pf_label") else None
            change.append({"reference_id": c["reference_id"], "annotation_id": str(c["mask_index"]),
                           "label": c["label"], "metadata": md, "reason": why})
        elif c["action"] == "set_box":
            change.append({"reference_id": c["reference_id"], "annotation_id": str(c["mask_index"]),
                           "box": [float(v) for v in c["box"]], "metadata": {"txt_box": c["box"]}, "reason": why})
        else:
            raise ValidationError(f"unknown correction action {c['action']!r} in {truth_path}", field="action")
    return {"add": add, "change": change}


def apply_truth_corrections(ds: "Dataset", truth_path: str | Path, reference_ids: Sequence[str] | None = None,
                            reasons: Sequence[str] | None = None, author: str = "truth.json",
                            reason: str = "corrections from the sample data's truth file") -> dict[str, Any]:
    """Apply the sample data's truth-file corrections (add / relabel / set_box) as ONE label version.

    Args:
        reference_ids: only these items (e.g. the test slice), default all.
        reasons: only these error reasons (missing, inconsistent_occluded, loose_box, wrong_label).

    Returns:
        ``apply_changes``' summary (``label_version`` is the corrected state to evaluate against).
    """
    c = truth_corrections(truth_path, reference_ids, reasons)
    add = pa.Table.from_pylist(c["add"]) if c["add"] else None
    # a change may name the same object twice (relabel + set_box): merge per object
    merged: dict[tuple[str, str], dict[str, Any]] = {}
    for ch in c["change"]:
        key = (ch["reference_id"], ch["annotation_id"])
        m = merged.setdefault(key, {"reference_id": key[0], "annotation_id": key[1]})
        for k, val in ch.items():
            if k == "metadata" and m.get("metadata") and val:
                m["metadata"] = {**m["metadata"], **val}
            elif k == "reason" and m.get("reason"):
                m["reason"] = f"{m['reason']}; {val}"
            elif val is not None:
                m[k] = val
    return apply_changes(ds, add=add, change=list(merged.values()) or None, reason=reason, author=author,
                         operation="correct")
