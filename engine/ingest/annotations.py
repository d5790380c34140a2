"""Write ground-truth annotations and model predictions from an Arrow table, in one transaction.

Pipeline: normalize columns → derive geometry (numpy) → validate every rule in SQL over the batch
joined to its items → insert with one ``INSERT ... SELECT``. Any failure raises a ValidationError
naming the record and field, and nothing is written.

Ground truth is versioned: a batch that changes labels opens label version ``v + 1``; replaced or
deleted rows get ``valid_to = v + 1`` and stay queryable.
"""
from __future__ import annotations

from typing import Any, Collection

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from engine.store import label_counts
from engine.store.database import Store
from .checks import METADATA_RULE, Rule, blank, enforce, finite, present_columns, trimmed
from .geometry import infer_kind, mask_areas_boxes, polygon_areas, polygon_boxes
from .schema import ANNOTATION_COLUMNS, KINDS, normalize

EPS = 1e-6  # pixels of float slack when checking boxes against the image
_GEOM = ["x", "y", "width", "height"]

_BASE_RULES = [
    Rule("reference_id", f"reference_id IS NULL OR {blank('reference_id')}", "reference_id is missing or empty"),
    Rule("reference_id", "__item_id IS NULL", "unknown reference_id (append the item first)"),
    Rule("kind", f"kind NOT IN ({', '.join(repr(k) for k in KINDS)})", f"kind must be one of {list(KINDS)}"),
    Rule("label", f"label IS NULL OR {blank('label')}", "label is missing or empty"),
    Rule("annotation_id", f"annotation_id IS NOT NULL AND {blank('annotation_id')}", "annotation_id is empty",
         needs=("annotation_id",)),
    Rule("annotation_id", "annotation_id IS NOT NULL AND count(*) OVER (PARTITION BY reference_id, annotation_id) > 1",
         "duplicate annotation_id in batch", needs=("annotation_id",),
         clean_if="count(annotation_id) = count(DISTINCT CASE WHEN annotation_id IS NOT NULL "
                  "THEN (reference_id, annotation_id) END)"),
    Rule("x", f"kind = 'box' AND {finite('x')}", "box x is missing, NaN or infinite"),
    Rule("y", f"kind = 'box' AND {finite('y')}", "box y is missing, NaN or infinite"),
    Rule("width", f"kind = 'box' AND {finite('width')}", "box width is missing, NaN or infinite"),
    Rule("height", f"kind = 'box' AND {finite('height')}", "box height is missing, NaN or infinite"),
    Rule("width", "width < 0", "box width is negative", needs=("width",)),
    Rule("height", "height < 0", "box height is negative", needs=("height",)),
    Rule("polygon", "kind = 'polygon' AND polygon IS NULL", "polygon annotation without polygon"),
    Rule("mask", "kind = 'segmentation' AND mask IS NULL", "segmentation annotation without mask"),
    Rule("mask", "mask IS NOT NULL AND __img_h IS NOT NULL AND (mask_height <> __img_h OR mask_width <> __img_w)",
         "mask size differs from the image size", needs=("mask",)),
    Rule("keypoints", "(kind = 'keypoints' AND keypoints IS NULL) OR len(keypoints) % 3 <> 0",
         "keypoints must be a flat list of x, y, v triples"),
    Rule("keypoints", "keypoints IS NOT NULL AND list_bool_or([isnan(v) OR isinf(v) FOR v IN keypoints])",
         "keypoints contain NaN or infinite values", needs=("keypoints",)),
    Rule("keypoint_names", "keypoint_names IS NOT NULL AND len(keypoint_names) * 3 <> len(keypoints)",
         "keypoint_names must name every keypoint", needs=("keypoint_names",)),
    Rule("area", "area IS NOT NULL AND (isnan(area) OR isinf(area) OR area < 0)", "area must be finite and >= 0",
         needs=("area",)),
    METADATA_RULE,
]
_OUTSIDE = (
    f"__img_w IS NOT NULL AND x IS NOT NULL AND (x < -{EPS} OR y < -{EPS} "
    f"OR x + width > __img_w + {EPS} OR y + height > __img_h + {EPS})"
)
_PRED_RULES = [
    Rule("confidence", "confidence IS NOT NULL AND (isnan(confidence) OR isinf(confidence))",
         "confidence is NaN or infinite", needs=("confidence",)),
    Rule("class_pdf", "class_pdf IS NOT NULL AND list_bool_or([isnan(v) OR isinf(v) OR v < 0 FOR v IN map_values(class_pdf)])",
         "class_pdf values must be finite and >= 0", needs=("class_pdf",)),
]
_GT_RULES = [
    Rule("confidence", "confidence IS NOT NULL", "confidence is only for predictions", needs=("confidence",)),
    Rule("class_pdf", "class_pdf IS NOT NULL", "class_pdf is only for predictions", needs=("class_pdf",)),
]


def prepare(table: pa.Table, what: str) -> pa.Table:
    """Normalize and complete geometry: kind, boxes of polygons/masks, mask areas, ``__row``."""
    t = normalize(table, ANNOTATION_COLUMNS, what)
    t = t.set_column(t.schema.get_field_index("kind"), "kind", infer_kind(t))
    n = t.num_rows
    if t.column("polygon").null_count < n or t.column("mask").null_count < n:
        px, py, pw, ph = polygon_boxes(t)
        marea, mx, my, mw, mh = mask_areas_boxes(t)
        cols = {c: t.column(c).to_numpy(zero_copy_only=False).astype(np.float64) for c in _GEOM + ["area"]}
        for c, p, m in zip(_GEOM, (px, py, pw, ph), (mx, my, mw, mh)):
            v = cols[c]
            fill = np.isnan(v)
            v[fill] = np.where(np.isnan(m[fill]), p[fill], m[fill])
        area = cols["area"]
        fill = np.isnan(area) & ~np.isnan(marea)
        area[fill] = marea[fill]
        for c in _GEOM + ["area"]:
            t = t.set_column(t.schema.get_field_index(c), c, pa.array(cols[c], pa.float64(), from_pandas=True))
    else:  # nothing to derive: only turn NaN into NULL, as the numpy round trip above does
        for c in _GEOM + ["area"]:
            col = t.column(c)
            if col.null_count < n and pc.any(pc.is_nan(col)).as_py():
                t = t.set_column(t.schema.get_field_index(c), c,
                                 pc.if_else(pc.is_nan(col), pa.scalar(None, pa.float64()), col))
    crowd = pc.fill_null(t.column("iscrowd"), False)
    t = t.set_column(t.schema.get_field_index("iscrowd"), "iscrowd", crowd)
    return t.append_column("__row", pa.array(np.arange(t.num_rows, dtype=np.int64)))


# SQL types of the batch columns, for the all-NULL ones the view supplies as typed NULL literals
_SQL_TYPES = {
    "polygon": "DOUBLE[][]", "mask": "UINTEGER[]", "keypoints": "DOUBLE[]", "keypoint_names": "VARCHAR[]",
    "class_pdf": "MAP(VARCHAR, DOUBLE)", "metadata": "VARCHAR", "annotation_id": "VARCHAR",
    "mask_height": "BIGINT", "mask_width": "BIGINT", "confidence": "DOUBLE", "area": "DOUBLE",
}


def _register(store: Store, t: pa.Table, dataset_id: int) -> tuple[str, pa.Table]:
    """Register the batch and a view joining it to its items (``__item_id``, image size); returns the
    view's name and the registered Arrow batch.

    Columns that are entirely NULL are not scanned from Arrow (converting empty nested columns
    costs as much as real data) but appear in the view as typed NULLs.
    """
    con = store.con
    raw = f"__ann_raw_{id(t)}"
    view = f"__ann_batch_{id(t)}"
    absent = [c for c in t.column_names if c in _SQL_TYPES and t.column(c).null_count == t.num_rows]
    # the item join (reference_id -> item_id, image size) once, as an Arrow hash lookup, instead of
    # a SQL join re-run by every query over the view
    items = store.arrow("SELECT reference_id, item_id, height, width FROM items WHERE dataset_id = ?", [dataset_id])
    pos = pc.index_in(t.column("reference_id"), value_set=items.column("reference_id").combine_chunks())
    b = t.drop_columns(absent)
    for name, col in (("__item_id", "item_id"), ("__img_h", "height"), ("__img_w", "width")):
        b = b.append_column(name, items.column(col).combine_chunks().take(pos))
    con.register(raw, b)
    nulls = "".join(f", NULL::{_SQL_TYPES[c]} AS {c}" for c in absent)
    con.execute(f"CREATE OR REPLACE TEMP VIEW {view} AS SELECT b.*{nulls} FROM {raw} b")
    return view, b


def _drop(store: Store, view: str) -> None:
    con = store.con
    con.execute(f"DROP VIEW IF EXISTS {view}")
    con.unregister(view.replace("__ann_batch_", "__ann_raw_"))


def _fill_polygon_areas(store: Store, t: pa.Table, dataset_id: int) -> pa.Table:
    """COCO area of polygons that came without one (rasterized at the image size)."""
    need = np.flatnonzero(np.asarray(pc.and_(pc.equal(t.column("kind"), "polygon"), pc.is_null(t.column("area")))))
    if len(need) == 0:
        return t
    refs = pa.table({"reference_id": t.column("reference_id").take(need)})
    con = store.con
    con.register("__poly_refs", refs.append_column("__k", pa.array(np.arange(len(need)))))
    try:
        sz = con.execute(
            "SELECT i.height, i.width FROM __poly_refs r LEFT JOIN items i "
            "ON i.reference_id = r.reference_id AND i.dataset_id = $ds ORDER BY r.__k",
            {"ds": dataset_id},
        ).fetchnumpy()
    finally:
        con.unregister("__poly_refs")
    h = np.asarray(sz["height"], dtype=np.float64)
    w = np.asarray(sz["width"], dtype=np.float64)
    area = t.column("area").to_numpy(zero_copy_only=False).astype(np.float64)
    area[need] = polygon_areas(t, need, h, w)
    return t.set_column(t.schema.get_field_index("area"), "area", pa.array(area, from_pandas=True))


def _outside_rules(clip: bool | str) -> list[Rule]:
    """Boxes outside the image: refused (clip=False), clipped (True) or kept as given ("keep",
    what pycocotools does; ``loupe eval`` uses it so results files evaluate unchanged)."""
    if clip not in (False, True, "keep"):
        raise ValueError(f"clip must be False, True or 'keep', got {clip!r}")
    if clip is False:
        return [Rule("x", _OUTSIDE, "box lies outside the image (pass clip=True to clip it)")]
    return []


def _geometry_cte(view: str, clip: bool | str) -> str:
    """The batch with final box ``gx, gy, gw, gh`` (clipped to the image if asked) and COCO ``garea``."""
    if clip is True:
        x1 = "CASE WHEN __img_w IS NULL THEN x + width ELSE least(x + width, __img_w) END"
        y1 = "CASE WHEN __img_h IS NULL THEN y + height ELSE least(y + height, __img_h) END"
        box = (f"greatest(x, 0) AS gx, greatest(y, 0) AS gy, greatest({x1} - greatest(x, 0), 0) AS gw, "
               f"greatest({y1} - greatest(y, 0), 0) AS gh")
    else:
        box = "x AS gx, y AS gy, width AS gw, height AS gh"
    return (f"(SELECT *, coalesce(area, CASE WHEN kind = 'box' THEN gw * gh END) AS garea "
            f"FROM (SELECT *, {box} FROM {view}))")


def write_annotations(
    store: Store,
    dataset_id: int,
    table: pa.Table,
    update: bool = False,
    clip: bool = False,
    author: str | None = None,
    reason: str | None = None,
    operation: str = "annotate",
) -> dict[str, Any]:
    """Insert ground truth. Existing (reference_id, annotation_id) are skipped, or replaced with ``update``.

    Returns:
        ``{"new", "updated", "ignored", "label_version"}``.
    """
    t = prepare(table, "annotations")
    t = _fill_polygon_areas(store, t, dataset_id)
    view, _ = _register(store, t, dataset_id)
    con = store.con
    try:
        rules = _BASE_RULES + _GT_RULES + _outside_rules(clip)
        enforce(con, view, rules, with_annotation_id=True, present=present_columns(t))
        with store.transaction():
            cur_v = int(con.execute("SELECT label_version FROM datasets WHERE dataset_id = ?", [dataset_id]).fetchone()[0])
            v = cur_v + 1
            # stable ids for rows without one: content hash + occurrence number (the window is only
            # computed when some row lacks an id)
            aid = "annotation_id" if t.column("annotation_id").null_count == 0 else (
                """coalesce(annotation_id,
                        'h' || substr(md5(concat_ws('|', kind, label, gx, gy, gw, gh, polygon::VARCHAR,
                                                    hash(mask), keypoints::VARCHAR)), 1, 16)
                        || '-' || row_number() OVER (PARTITION BY reference_id, kind, label, gx, gy, gw, gh,
                                                     polygon::VARCHAR, hash(mask), keypoints::VARCHAR ORDER BY __row)
                    )""")
            batch = f"(SELECT g.*, {aid} AS __aid FROM {_geometry_cte(view, clip)} g)"
            if t.num_rows and not con.execute(
                    "SELECT EXISTS (SELECT 1 FROM annotations WHERE dataset_id = ? AND valid_to IS NULL)",
                    [dataset_id]).fetchone()[0]:
                # nothing current to compare with (a first import): every row is new, so the plan below
                # would number them in __row order; insert straight from the batch
                _insert_annotations(store, dataset_id, f"{batch} n", "n.__row", "$s0 + n.__row", v)
                record_version(store, dataset_id, v, operation, author, reason, t.num_rows, 0, 0)
                return {"new": t.num_rows, "updated": 0, "ignored": 0, "label_version": v}
            con.execute(f"CREATE OR REPLACE TEMP TABLE __ann_in AS SELECT * FROM {batch}")
            cur = f"(SELECT * FROM annotations WHERE dataset_id = {int(dataset_id)} AND valid_to IS NULL)"
            same = ("a.kind = n.kind AND a.label = n.label AND a.x IS NOT DISTINCT FROM n.gx AND a.y IS NOT DISTINCT FROM n.gy "
                    "AND a.width IS NOT DISTINCT FROM n.gw AND a.height IS NOT DISTINCT FROM n.gh "
                    "AND a.polygon IS NOT DISTINCT FROM n.polygon AND a.mask IS NOT DISTINCT FROM n.mask "
                    "AND a.keypoints IS NOT DISTINCT FROM n.keypoints AND a.iscrowd = n.iscrowd "
                    "AND a.area IS NOT DISTINCT FROM n.garea AND a.metadata IS NOT DISTINCT FROM n.metadata::JSON")
            con.execute(
                f"""CREATE OR REPLACE TEMP TABLE __ann_plan AS
                    SELECT n.__row, a.ann_key AS old_key, a.seq AS old_seq,
                           CASE WHEN a.ann_key IS NULL THEN 'new'
                                WHEN {same} THEN 'same'
                                WHEN $update THEN 'replace' ELSE 'skip' END AS action
                    FROM __ann_in n LEFT JOIN {cur} a ON a.item_id = n.__item_id AND a.annotation_id = n.__aid""",
                {"update": bool(update)},
            )
            counts = dict(con.execute("SELECT action, count(*) FROM __ann_plan GROUP BY action").fetchall())
            n_new, n_rep = counts.get("new", 0), counts.get("replace", 0)
            if n_new or n_rep:
                con.execute(
                    "UPDATE annotations SET valid_to = $v WHERE ann_key IN "
                    "(SELECT old_key FROM __ann_plan WHERE action = 'replace')", {"v": v})
                _insert_annotations(store, dataset_id,
                                    "__ann_in n JOIN __ann_plan p USING (__row) WHERE p.action IN ('new', 'replace')",
                                    "row_number() OVER (ORDER BY n.__row) - 1",
                                    "coalesce(p.old_seq, $s0 + row_number() OVER (ORDER BY n.__row) - 1)", v)
                record_version(store, dataset_id, v, operation, author, reason, n_new, n_rep, 0)
            else:
                v = cur_v
            con.execute("DROP TABLE IF EXISTS __ann_in")
            con.execute("DROP TABLE IF EXISTS __ann_plan")
    finally:
        _drop(store, view)
    return {"new": int(n_new), "updated": int(n_rep),
            "ignored": int(counts.get("skip", 0) + counts.get("same", 0)), "label_version": v}


def _insert_annotations(store: Store, dataset_id: int, source: str, key_offset: str, seq: str, v: int) -> None:
    """INSERT the batch rows ``n`` of ``source`` (FROM ... [WHERE]) as label version ``v``: keys from the
    next free one on (plus ``key_offset``), ``seq`` an expression over ``$s0`` (the next free seq)."""
    store.con.execute(
        f"""INSERT INTO annotations
            SELECT $k0 + {key_offset}, $ds, n.__item_id, n.__aid, n.kind,
                   {trimmed('n.label')}, n.gx, n.gy, n.gw, n.gh, n.polygon, n.mask, n.keypoints,
                   n.keypoint_names, n.iscrowd, n.garea, n.metadata::JSON, {seq}, $v, NULL
            FROM {source}""",
        {"k0": store.next_key("annotations", "ann_key"), "s0": store.next_key("annotations", "seq"),
         "ds": dataset_id, "v": v},
    )


def record_version(store: Store, dataset_id: int, v: int, operation: str, author: str | None,
                   reason: str | None, added: int, changed: int, deleted: int) -> None:
    """Log a label version and make it the dataset's current one (call after writing its rows)."""
    store.con.execute(
        "INSERT INTO label_versions VALUES ($ds, $v, now()::TIMESTAMP, $a, $r, $op, $n, $c, $d)",
        {"ds": dataset_id, "v": v, "a": author, "r": reason, "op": operation, "n": added, "c": changed, "d": deleted},
    )
    store.con.execute("UPDATE datasets SET label_version = $v WHERE dataset_id = $ds", {"v": v, "ds": dataset_id})
    label_counts.refresh(store, dataset_id, v)  # version v's rows are written: recount the items it touched


def _checked_predictions(store: Store, dataset_id: int, table: pa.Table,
                         clip: bool | str) -> tuple[pa.Table, str, pa.Table]:
    """The prepared batch, its registered view and Arrow batch, every prediction rule checked (the
    caller drops the view)."""
    t = prepare(table, "predictions")
    t = _fill_polygon_areas(store, t, dataset_id)
    view, batch = _register(store, t, dataset_id)
    try:
        enforce(store.con, view, prediction_rules(clip), with_annotation_id=True, present=present_columns(t))
    except BaseException:
        _drop(store, view)
        raise
    return t, view, batch


def validate_predictions(store: Store, dataset_id: int, table: pa.Table, clip: bool | str = False) -> pa.Table:
    """A run's predictions checked by every rule of :func:`write_predictions` and returned as that
    function would store them, without storing anything (``loupe eval`` throws its run away).

    Columns: ``key`` (input row), ``item_id``, ``kind``, ``label``, ``x``, ``y``, ``w``, ``h``, ``area``
    (COCO area: as given, else ``w * h`` for boxes), ``confidence``, in input order (the stored ``seq``).
    Boxes are kept as given (``clip`` False or "keep"); clipping is only done by a write.
    """
    if clip is True:
        raise ValueError("validate_predictions keeps boxes as given; clip=True needs write_predictions")
    t, view, batch = _checked_predictions(store, dataset_id, table, clip)
    _drop(store, view)
    item_id = batch.column("__item_id")
    label = t.column("label")
    if pc.any(pc.or_(pc.starts_with(label, " "), pc.ends_with(label, " "))).as_py():
        label = pc.utf8_trim(label, " ")  # as the INSERT's ``trimmed(label)``
    kind, w, h, area = (t.column(c) for c in ("kind", "width", "height", "area"))
    box_area = pc.if_else(pc.equal(kind, "box"), pc.multiply(w, h), pa.scalar(None, pa.float64()))
    return pa.table({"key": t.column("__row"), "item_id": item_id, "kind": kind, "label": label, "x": t.column("x"),
                     "y": t.column("y"), "w": w, "h": h, "area": pc.coalesce(area, box_area),
                     "confidence": t.column("confidence")})


def write_predictions(store: Store, run_id: int, dataset_id: int, table: pa.Table, clip: bool = False) -> int:
    """Insert a run's predictions (all or nothing). Returns the number written."""
    t, view, _ = _checked_predictions(store, dataset_id, table, clip)
    try:
        with store.transaction():
            _insert_predictions(store, run_id, view, clip)
    finally:
        _drop(store, view)
    return t.num_rows


def prediction_rules(clip: bool | str) -> list[Rule]:
    """Every rule a stored prediction passes (boxes outside the image: see :func:`_outside_rules`)."""
    return _BASE_RULES + _PRED_RULES + _outside_rules(clip)


def write_predictions_view(store: Store, run_id: int, view: str, clip: bool | str,
                           present: set[str] | None = None, known_clean: Collection[Rule] = ()) -> None:
    """Check and insert predictions that a reader prepared in SQL (all or nothing): the rules and the
    INSERT of :func:`write_predictions`, over ``view`` (a view name or parenthesized query) shaped like
    its batch view, so errors name records the same way.

    ``view`` has, per prediction: ``__row`` (input order, 0..n-1), ``__item_id``, ``__img_h``, ``__img_w``
    (NULL for an unknown item), every column of :data:`engine.ingest.schema.ANNOTATION_COLUMNS` as
    :func:`prepare` leaves it (NaN is NULL, ``kind`` filled) except ``iscrowd``. ``present``: the
    columns that may hold a value (rules that need only absent ones are skipped). ``known_clean``:
    rules the caller has shown no row of ``view`` breaks (e.g. checked once per distinct id); they are
    not evaluated again, which leaves the first failing rule and row unchanged.
    """
    clean = set(known_clean)
    rules = [r for r in prediction_rules(clip) if r not in clean]
    enforce(store.con, view, rules, with_annotation_id=True, present=present)
    with store.transaction():
        _insert_predictions(store, run_id, view, clip)


def _insert_predictions(store: Store, run_id: int, view: str, clip: bool | str) -> None:
    """INSERT the checked rows of ``view`` as run ``run_id``'s predictions (keys and seq in ``__row`` order)."""
    k0 = store.next_key("predictions", "pred_key")
    store.con.execute(
        f"""INSERT INTO predictions
            SELECT $k0 + __row, $run, __item_id, coalesce(annotation_id, 'p' || __row::VARCHAR), kind,
                   {trimmed('label')}, gx, gy, gw, gh, polygon, mask, keypoints, keypoint_names, confidence,
                   class_pdf, garea, metadata::JSON, __row
            FROM {_geometry_cte(view, clip)}""",
        {"k0": k0, "run": run_id},
    )
