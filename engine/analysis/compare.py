"""Comparisons: one run against several label states (before/after corrections), and two runs.

* :func:`compare` — COCO AP/AR of a run per slice and per label version, with deltas against the
  first label state: the walk-through's "baseline labels vs corrected labels" table in one call.
* :func:`compare_runs` — per-class and per-slice metric deltas of two runs, and the objects one run
  gets right and the other wrong (TP in A / FN in B, FP only in A ...), sorted by impact.

Both evaluate through ``run.metrics(slice=..., label_version=...)`` (pycocotools semantics), so any
label state and any subset is evaluated afresh; nothing is written.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

import pyarrow as pa

from ..errors import LoupeError, NotFoundError, ValidationError
from ._sql import registered
from .patches import match_threshold

if TYPE_CHECKING:
    from ..api.dataset import Dataset
    from ..api.model import ModelRun
    from ..api.workspace import Workspace

METRICS = ("AP", "AP50", "AP75", "AR1", "AR10", "AR100")


def _resolve_run(ws: "Workspace", run: "ModelRun | str") -> "ModelRun":
    return ws.get_run(run) if isinstance(run, str) else run


def _workspace(target: Any) -> tuple["Workspace", "Dataset | None"]:
    from ..api.dataset import Dataset
    from ..api.model import ModelRun
    from ..api.workspace import Workspace

    if isinstance(target, Workspace):
        return target, None
    if isinstance(target, Dataset):
        return target.ws, target
    if isinstance(target, ModelRun):
        return target.ws, target.dataset
    raise ValidationError(f"expected a Workspace, Dataset or ModelRun, got {type(target).__name__}")


def _versions(ds: "Dataset", label_versions: Any) -> list[tuple[str, int]]:
    """``[(name, version)]`` from a dict, a list of versions or None (first and current version)."""
    cur = ds.label_version
    if label_versions is None:
        first = ds.label_versions().column("version").to_pylist()
        first_v = int(first[0]) if first else cur
        return [("baseline", first_v)] + ([("current", cur)] if cur != first_v else [])
    if isinstance(label_versions, Mapping):
        items = [(str(k), cur if v is None else int(v)) for k, v in label_versions.items()]
    else:
        items = [(f"v{int(v)}" if v is not None else "current", cur if v is None else int(v)) for v in label_versions]
    known = set(ds.label_versions().column("version").to_pylist()) | {0}
    for name, v in items:
        if v not in known:
            raise NotFoundError(f"dataset '{ds.name}' has no label version {v} ({name}); "
                                f"versions: {sorted(known - {0})}")
    if not items:
        raise ValidationError("label_versions is empty", field="label_versions")
    return items


def _slices(slices: Any) -> list[tuple[str, Any]]:
    """``[(display name, subset)]``: None = all items, a slice name, or (name, reference_ids)."""
    if slices is None:
        return [("all", None)]
    if isinstance(slices, (str, tuple)):
        slices = [slices]
    if isinstance(slices, Mapping):
        return [(str(k), v) for k, v in slices.items()]
    out = []
    for s in slices:
        if s is None:
            out.append(("all", None))
        elif isinstance(s, str):
            out.append((s, s))
        elif isinstance(s, tuple) and len(s) == 2:
            out.append((str(s[0]), list(s[1])))
        else:
            raise ValidationError(f"a slice is a name, None (all items) or (name, reference_ids), got {s!r}",
                                  field="slices")
    return out


def _metric_row(m: dict[str, Any], names: Sequence[str]) -> dict[str, Any]:
    row = {n: float(m["stats"][n]) for n in names}
    gt = sum(int(c["gt"]) for c in m["per_class"])
    row.update({"gt": gt, "tp": int(m["counts"]["tp"]), "fp": int(m["counts"]["fp"]), "fn": int(m["counts"]["fn"])})
    return row


def compare(
    target: "Workspace | Dataset | ModelRun",
    run: "ModelRun | str | Iterable[ModelRun | str]",
    label_versions: Mapping[str, int | None] | Sequence[int | None] | None = None,
    slices: Any = None,
    iou_type: str = "bbox",
    metrics: Sequence[str] = METRICS,
    per_class: bool = False,
) -> pa.Table:
    """AP/AR of a run (or runs) for every (slice, label version), with deltas to the first version.

    Args:
        target: the workspace (or the dataset) the run names refer to.
        run: a run, a run name, or several.
        label_versions: ``{"baseline": 1, "corrected": 3}`` (None = current) or a list of versions;
            default: the first and the current version.
        slices: slice names, ``None`` (all items), ``(name, reference_ids)`` pairs or a dict; default
            all items.
        metrics: COCO stat names to report (AP, AP50, AP75, APs, APm, APl, AR1, AR10, AR100, ...).
        per_class: one row per label as well (AP/AR/AP50 per class, ``label`` column; ``*`` = all).

    Returns:
        One row per run x slice x label state (x label): ``run, slice, labels, label_version, <metrics>,
        gt, tp, fp, fn, delta_<metric>`` (delta to the first label state of the same run and slice).

    Example:
        >>> engine.compare(ds, "frcnn", label_versions={"baseline": 1, "corrected": 2}, slices=["test", None])
    """
    ws, ds = _workspace(target)
    runs = [run] if isinstance(run, str) or not isinstance(run, Iterable) else list(run)
    runs = [_resolve_run(ws, r) for r in runs]
    if not runs:
        raise ValidationError("no run to compare", field="run")
    bad = [n for n in metrics if n not in ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100",
                                           "ARs", "ARm", "ARl")]
    if bad:
        raise ValidationError(f"unknown metric {bad[0]!r}", field="metrics")
    rows: list[dict[str, Any]] = []
    for r in runs:
        rds = r.dataset
        if ds is not None and r.dataset_id != ds.id:
            raise ValidationError(f"run '{r.name}' is on dataset '{r.dataset_name}', not '{ds.name}'", field="run")
        versions = _versions(rds, label_versions)
        for sname, subset in _slices(slices):
            first: dict[str, dict[str, Any]] = {}
            for lname, v in versions:
                m = r.metrics(iou_type=iou_type, slice=subset, label_version=v)
                base = {"run": r.name, "slice": sname, "labels": lname, "label_version": v}
                groups = [("*", _metric_row(m, metrics))]
                if per_class:
                    groups += [(c["label"], {"AP": c["ap"], "AP50": c["ap50"], "AR100": c["ar"], "gt": c["gt"],
                                             "predictions": c["predictions"]}) for c in m["per_class"]]
                for label, vals in groups:
                    row = {**base, **({"label": label} if per_class else {}), **vals}
                    ref = first.setdefault(label, row)
                    for n in metrics:
                        if n in vals:
                            row[f"delta_{n}"] = (vals[n] - ref[n]) if vals[n] >= 0 and ref.get(n, -1) >= 0 else None
                    rows.append(row)
    return _table(rows)


def _table(rows: list[dict[str, Any]]) -> pa.Table:
    """Rows (with possibly missing keys) as a table with a stable column order."""
    cols: list[str] = []
    for r in rows:
        cols += [k for k in r if k not in cols]
    return pa.table({c: [r.get(c) for r in rows] for c in cols}) if rows else pa.table({})


# -- two runs ----------------------------------------------------------------------------------------------
_OBJECTS_SQL = """
WITH ga AS (SELECT * FROM matches WHERE run_id = $a AND iou_threshold = $ta AND source = 'gt'),
     gb AS (SELECT * FROM matches WHERE run_id = $b AND iou_threshold = $tb AND source = 'gt'),
     gt_rows AS (
        SELECT CASE WHEN ga.status = 'tp' THEN 'tp_a_fn_b' ELSE 'fn_a_tp_b' END AS change,
               ga.item_id, ga.ann_key, pa_.pred_key AS pred_key_a, pb_.pred_key AS pred_key_b,
               a.label, a.x, a.y, a.width, a.height, ga.status::VARCHAR AS status_a, gb.status::VARCHAR AS status_b,
               ga.iou AS iou_a, gb.iou AS iou_b, pa_.confidence AS confidence_a, pb_.confidence AS confidence_b,
               coalesce(pa_.confidence, pb_.confidence, 1.0) AS impact
        FROM ga JOIN gb USING (ann_key) JOIN annotations a ON a.ann_key = ga.ann_key
        LEFT JOIN predictions pa_ ON pa_.pred_key = ga.pred_key
        LEFT JOIN predictions pb_ ON pb_.pred_key = gb.pred_key
        WHERE ga.status::VARCHAR IN ('tp', 'fn') AND gb.status::VARCHAR IN ('tp', 'fn') AND ga.status <> gb.status),
     fp AS (  -- false positives of one run with no same-label false positive of the other on the spot
        SELECT 'fp_' || s.side || '_only' AS change, p.item_id, NULL::BIGINT AS ann_key,
               CASE WHEN s.side = 'a' THEN p.pred_key END AS pred_key_a,
               CASE WHEN s.side = 'b' THEN p.pred_key END AS pred_key_b,
               p.label, p.x, p.y, p.width, p.height,
               CASE WHEN s.side = 'a' THEN 'fp' END AS status_a, CASE WHEN s.side = 'b' THEN 'fp' END AS status_b,
               NULL::DOUBLE AS iou_a, NULL::DOUBLE AS iou_b,
               CASE WHEN s.side = 'a' THEN p.confidence END AS confidence_a,
               CASE WHEN s.side = 'b' THEN p.confidence END AS confidence_b,
               coalesce(p.confidence, 1.0) AS impact
        FROM (SELECT 'a' AS side, $a AS run, $ta AS thr, $b AS other, $tb AS othr
              UNION ALL SELECT 'b', $b, $tb, $a, $ta) s
        JOIN matches m ON m.run_id = s.run AND m.iou_threshold = s.thr AND m.source = 'prediction' AND m.status = 'fp'
        JOIN predictions p ON p.pred_key = m.pred_key
        WHERE NOT EXISTS (
            SELECT 1 FROM matches mo JOIN predictions q ON q.pred_key = mo.pred_key
            WHERE mo.run_id = s.other AND mo.iou_threshold = s.othr AND mo.source = 'prediction'
              AND mo.status = 'fp' AND q.item_id = p.item_id AND q.label = p.label
              AND box_overlaps(p.x, p.y, p.width, p.height, q.x, q.y, q.width, q.height)
              AND box_iou(p.x, p.y, p.width, p.height, q.x, q.y, q.width, q.height, false) >= 0.5))
SELECT o.change, i.reference_id, a.annotation_id, pa_.annotation_id AS prediction_id_a,
       pb_.annotation_id AS prediction_id_b, o.label, o.x, o.y, o.width, o.height, o.status_a, o.status_b,
       o.iou_a, o.iou_b, o.confidence_a, o.confidence_b, o.impact, o.item_id, o.ann_key, o.pred_key_a, o.pred_key_b,
       i.image_location
FROM (SELECT * FROM gt_rows UNION ALL SELECT * FROM fp) o
JOIN items i ON i.item_id = o.item_id
LEFT JOIN annotations a ON a.ann_key = o.ann_key
LEFT JOIN predictions pa_ ON pa_.pred_key = o.pred_key_a
LEFT JOIN predictions pb_ ON pb_.pred_key = o.pred_key_b
WHERE {subset}
ORDER BY o.impact DESC, o.change, i.reference_id, a.annotation_id, prediction_id_a, prediction_id_b
"""


def _committed_version(run: "ModelRun") -> int | None:
    v = run.ws.store.scalar("SELECT label_version FROM runs WHERE run_id = ? AND committed_at IS NOT NULL", [run.id])
    return None if v is None else int(v)


def compare_runs(
    run_a: "ModelRun | str",
    run_b: "ModelRun | str",
    slice: Any = None,
    iou_type: str = "bbox",
    label_version: int | None = None,
    slices: Sequence[str] | None = None,
    limit: int | None = None,
    ws: "Workspace | None" = None,
) -> dict[str, pa.Table]:
    """Where run B is better or worse than run A.

    Args:
        slice: restrict everything to this slice (a name or reference ids).
        label_version: labels to evaluate against (default current). The object table reads both
            runs' commit indexes, which must have been committed against this label version.
        slices: slices for the per-slice table (default: every slice of the dataset).
        limit: at most this many objects.

    Returns:
        ``{"summary": metric, a, b, delta}``, ``{"per_class": label, ap_a, ap_b, delta_ap, ap50_*, ar_*,
        gt}``, ``{"per_slice": slice, items, AP_a, AP_b, delta_AP, AR100_a, AR100_b, delta_AR100}`` and
        ``{"objects": change (tp_a_fn_b | fn_a_tp_b | fp_a_only | fp_b_only), reference_id,
        annotation_id, prediction ids, label, box, status/iou/confidence per run, impact, ...}`` sorted
        by impact (the confidence of the prediction that decides the difference), and ``{"items":
        reference_id, gained, lost, fp_removed, fp_added, net}`` (B minus A) sorted by |net|.
    """
    if ws is None:
        ws = run_a.ws if not isinstance(run_a, str) else run_b.ws if not isinstance(run_b, str) else None
    if ws is None:
        raise ValidationError("give ModelRun objects (or ws=) to compare runs by name")
    a, b = _resolve_run(ws, run_a), _resolve_run(ws, run_b)
    if a.dataset_id != b.dataset_id:
        raise ValidationError(f"runs '{a.name}' and '{b.name}' are on different datasets", field="run_b")
    if a.id == b.id:
        raise ValidationError("compare a run with another run, not with itself", field="run_b")
    ds = a.dataset
    v = ds.label_version if label_version is None else int(label_version)
    ma = a.metrics(iou_type=iou_type, slice=slice, label_version=v)
    mb = b.metrics(iou_type=iou_type, slice=slice, label_version=v)
    summary = pa.table({
        "metric": list(ma["stats"]) + ["tp", "fp", "fn"],
        "a": [float(x) for x in ma["stats"].values()] + [float(ma["counts"][k]) for k in ("tp", "fp", "fn")],
        "b": [float(x) for x in mb["stats"].values()] + [float(mb["counts"][k]) for k in ("tp", "fp", "fn")],
    })
    summary = summary.append_column("delta", pa.array(
        [y - x if x >= 0 and y >= 0 else None for x, y in zip(summary["a"].to_pylist(), summary["b"].to_pylist())],
        pa.float64()))
    return {"summary": summary, "per_class": _per_class(ma, mb),
            "per_slice": _per_slice(a, b, ds, slice, slices, iou_type, v),
            **_objects(a, b, slice, v, limit)}


def _per_class(ma: dict[str, Any], mb: dict[str, Any]) -> pa.Table:
    ca = {c["label"]: c for c in ma["per_class"]}
    cb = {c["label"]: c for c in mb["per_class"]}
    rows = []
    for lab in sorted(set(ca) | set(cb)):
        x, y = ca.get(lab, {}), cb.get(lab, {})
        row: dict[str, Any] = {"label": lab}
        for k in ("ap", "ap50", "ar"):
            va, vb = x.get(k), y.get(k)
            va = None if va is None or va < 0 else float(va)
            vb = None if vb is None or vb < 0 else float(vb)
            row.update({f"{k}_a": va, f"{k}_b": vb, f"delta_{k}": None if va is None or vb is None else vb - va})
        row["gt"] = int(x.get("gt", y.get("gt", 0)))
        rows.append(row)
    return _table(rows) if rows else pa.table({"label": pa.array([], pa.string())})


def _per_slice(a: "ModelRun", b: "ModelRun", ds: "Dataset", only: Any, names: Sequence[str] | None,
               iou_type: str, v: int) -> pa.Table:
    if names is None:
        names = ds.slices().column("name").to_pylist() if only is None else ([only] if isinstance(only, str) else [])
    rows = []
    for name in names:
        ma = a.metrics(iou_type=iou_type, slice=name, label_version=v)
        mb = b.metrics(iou_type=iou_type, slice=name, label_version=v)
        row: dict[str, Any] = {"slice": name, "gt": sum(int(c["gt"]) for c in ma["per_class"])}
        for k in ("AP", "AP50", "AR100"):
            xa, xb = float(ma["stats"][k]), float(mb["stats"][k])
            row.update({f"{k}_a": xa if xa >= 0 else None, f"{k}_b": xb if xb >= 0 else None,
                        f"delta_{k}": xb - xa if xa >= 0 and xb >= 0 else None})
        rows.append(row)
    if not rows:
        return pa.table({"slice": pa.array([], pa.string()), "delta_AP": pa.array([], pa.float64())})
    t = _table(rows)
    return t


def _objects(a: "ModelRun", b: "ModelRun", slice: Any, v: int, limit: int | None) -> dict[str, pa.Table]:
    store = a.ws.store
    for r in (a, b):
        cv = _committed_version(r)
        if cv is None:
            raise LoupeError(f"run '{r.name}' is not committed; call run.commit() first")
        if cv != v:
            raise LoupeError(f"run '{r.name}' was committed against label version {cv}, not {v}; commit both runs "
                             f"against the same labels (run.commit(label_version={v})) to compare objects")
    ta, tb = match_threshold(store, a.id), match_threshold(store, b.id)
    from ..metrics.report import subset_item_ids

    ids = subset_item_ids(a, slice)
    params = {"a": a.id, "b": b.id, "ta": ta, "tb": tb}
    if ids is None:
        sql = _OBJECTS_SQL.format(subset="true")
        objects = store.arrow(sql + ("" if limit is None else f" LIMIT {int(limit)}"), params)
    else:
        with registered(store, pa.table({"item_id": pa.array(ids, pa.int64())}), "cmp_items") as name:
            sql = _OBJECTS_SQL.format(subset=f"o.item_id IN (SELECT item_id FROM {name})")
            objects = store.arrow(sql + ("" if limit is None else f" LIMIT {int(limit)}"), params)
    with registered(store, objects.select(["reference_id", "change"]), "cmp_obj") as name:
        items = store.arrow(
            f"""SELECT reference_id, count(*) FILTER (WHERE change = 'fn_a_tp_b') AS gained,
                       count(*) FILTER (WHERE change = 'tp_a_fn_b') AS lost,
                       count(*) FILTER (WHERE change = 'fp_a_only') AS fp_removed,
                       count(*) FILTER (WHERE change = 'fp_b_only') AS fp_added,
                       gained - lost + fp_removed - fp_added AS net
                FROM {name} GROUP BY reference_id ORDER BY abs(net) DESC, net DESC, reference_id""")
    return {"objects": objects, "items": items}
