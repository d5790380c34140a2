"""Scenario tests (after Nucleus "validate"): a named slice + criteria, evaluated per run, kept with history.

A scenario is stored in ``scenarios`` as text (``bbox_recall(iou=0.5) > 0.8, bbox_map() >= 0.5``,
grammar ``queries/scenario.lark``, parsed by :func:`queries.scenario.parse_criteria` — never
evaluated as code). :func:`run_scenarios` computes every criterion's metric on the scenario's slice
for a run (and for a baseline run, when one is set or given), decides pass / fail and appends the
outcome to ``scenario_evaluations`` / ``scenario_results``; nothing is overwritten, so the history of
a scenario across runs and label versions stays queryable. ``loupe test`` exits non-zero on a failure.

Metrics (parameters as in Nucleus: ``iou_threshold``, ``confidence_threshold``,
``enforce_label_match``; plus ``label`` to restrict to one class):

* recall / precision / F1: greedy matching by confidence at the IoU threshold (pycocotools' rule,
  within a label when ``enforce_label_match`` else across labels) over predictions with confidence
  >= the threshold; crowd GT are ignored. Undefined (no GT / no prediction) counts as a failure.
* ``bbox_map``: mean over labels with GT of the COCO 101-point interpolated AP at that IoU threshold
  (maxDets 100, area all), over predictions above the confidence threshold.
* ``bbox_iou``: mean IoU of the matched pairs.
* ``coco_ap`` / ``coco_ar``: pycocotools' AP@[.50:.95] and AR@100.
"""
from __future__ import annotations

import json
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Iterable, Sequence

import numpy as np
import pyarrow as pa

from queries.scenario import Criterion, parse_criteria
from udfs.matching import greedy_match

from engine.errors import AlreadyExistsError, LoupeError, NotFoundError, ValidationError
from engine.metrics.cocoeval import CocoParams
from engine.metrics.report import subset_item_ids
from engine.runs.evaluate import evaluate_inputs, evaluate_run
from engine.runs.inputs import EvalInputs, Side, box_pairs, gather

if TYPE_CHECKING:
    from engine.api.dataset import Dataset
    from engine.api.model import ModelRun


# -- metric functions ------------------------------------------------------------------------------------
def _subset_side(s: Side, keep: np.ndarray) -> Side:
    return Side(**{f: getattr(s, f)[keep] for f in Side.__dataclass_fields__})


def _inputs(run: "ModelRun", item_ids: np.ndarray | None, label_version: int | None, class_agnostic: bool,
            confidence: float, label: str | None, pairs: bool = True) -> tuple[EvalInputs, Any]:
    """GT and predictions (confidence >= threshold, optionally one label) and their candidate pairs."""
    store = run.ws.store
    inp = gather(store, run.dataset_id, run.id, label_version=label_version, item_ids=item_ids,
                 class_agnostic=class_agnostic)
    keep_d = inp.dt.score >= confidence
    keep_g = np.ones(len(inp.gt), bool)
    if label is not None:
        keep_d &= inp.dt.label == label
        keep_g &= inp.gt.label == label
    inp = replace(inp, dt=_subset_side(inp.dt, keep_d), gt=_subset_side(inp.gt, keep_g),
                  gt_ann_id0=inp.gt_ann_id0[keep_g])
    return inp, (box_pairs(store, inp, same_category=True) if pairs else None)


def detection_stats(run: "ModelRun", item_ids: np.ndarray | None = None, label_version: int | None = None,
                    iou_threshold: float = 0.5, confidence_threshold: float = 0.0,
                    enforce_label_match: bool = False, label: str | None = None) -> dict[str, Any]:
    """TP / FP / FN, precision, recall, F1 and mean matched IoU at one IoU and confidence threshold."""
    inp, pairs = _inputs(run, item_ids, label_version, not enforce_label_match, confidence_threshold, label)
    d, g = inp.dt, inp.gt
    thr = max(float(iou_threshold), 1e-12)  # IoU 0 = any overlap (pairs already have IoU > 0)
    group = d.img * max(len(inp.labels), 1) + d.cat
    m = greedy_match(group, d.score, g.crowd, pairs.dt, pairs.gt, pairs.iou, thr)
    matched = (m.dt_match >= 0) & ~m.dt_ignored
    tp = int(matched.sum())
    fp = int(((m.dt_match < 0) & ~m.dt_ignored).sum())
    fn = int(((m.gt_match < 0) & ~g.crowd).sum())
    ious = np.full(0, np.nan)
    if tp:
        key = pairs.dt.astype(np.int64) * max(len(g), 1) + pairs.gt
        want = np.flatnonzero(matched) * max(len(g), 1) + m.dt_match[matched]
        pos = np.searchsorted(key, want)  # pairs are sorted by (dt, gt)
        ious = pairs.iou[pos]
    prec = tp / (tp + fp) if tp + fp else None
    rec = tp / (tp + fn) if tp + fn else None
    f1 = 2 * prec * rec / (prec + rec) if prec is not None and rec is not None and prec + rec > 0 else (
        0.0 if prec is not None and rec is not None else None)
    return {"tp": tp, "fp": fp, "fn": fn, "precision": prec, "recall": rec, "f1": f1,
            "mean_iou": float(ious.mean()) if len(ious) else None}


def bbox_map(run: "ModelRun", item_ids: np.ndarray | None = None, label_version: int | None = None,
             iou_threshold: float = 0.5, confidence_threshold: float = 0.0, label: str | None = None) -> float | None:
    """Mean over labels (with GT) of the COCO 101-point AP at one IoU threshold; None without GT."""
    inp, _ = _inputs(run, item_ids, label_version, False, confidence_threshold, label, pairs=False)
    res = evaluate_inputs(run.ws.store, inp, "bbox", CocoParams(iou_thrs=(float(iou_threshold),)))
    ap = res.ap_per_class[res.ap_per_class >= 0]
    return float(ap.mean()) if len(ap) else None


def metric_value(run: "ModelRun", c: Criterion, item_ids: np.ndarray | None, label_version: int | None,
                 cache: dict | None = None) -> float | None:
    """The value of criterion ``c``'s metric for ``run`` on ``item_ids`` (None = undefined)."""
    p = c.params
    key = (run.id, c.function, tuple(sorted(p.items())), None if item_ids is None else item_ids.tobytes(), label_version)
    if cache is not None and key in cache:
        return cache[key]
    f = c.function
    if f in ("bbox_recall", "bbox_precision", "bbox_f1", "bbox_iou"):
        s = detection_stats(run, item_ids, label_version, p["iou_threshold"], p["confidence_threshold"],
                            p["enforce_label_match"], p["label"])
        v = {"bbox_recall": s["recall"], "bbox_precision": s["precision"], "bbox_f1": s["f1"],
             "bbox_iou": s["mean_iou"]}[f]
    elif f == "bbox_map":
        v = bbox_map(run, item_ids, label_version, p["iou_threshold"], p["confidence_threshold"], p["label"])
    elif f in ("coco_ap", "coco_ar"):
        ev = evaluate_run(run.ws.store, run.dataset_id, run.id, label_version=label_version, item_ids=item_ids)
        x = float(ev.result.stats[0 if f == "coco_ap" else 8])
        v = x if x >= 0 else None
    else:  # parse_criteria only yields known functions
        raise LoupeError(f"no evaluation for function {f!r}")
    if cache is not None:
        cache[key] = v
    return v


# -- stored scenarios --------------------------------------------------------------------------------------
def _run(ds: "Dataset", run: "ModelRun | str | None") -> "ModelRun | None":
    if run is None:
        return None
    r = ds.ws.get_run(run) if isinstance(run, str) else run
    if r.dataset_id != ds.id:
        raise ValidationError(f"run '{r.name}' is on dataset '{r.dataset_name}', not '{ds.name}'", field="run")
    return r


def create_scenario(ds: "Dataset", name: str, criteria: str, slice: str | None = None,
                    description: str | None = None, baseline: "ModelRun | str | None" = None,
                    replace: bool = False) -> dict[str, Any]:
    """Store a scenario test: ``criteria`` must parse; ``slice`` (a slice name, None = all items) must exist.

    Example:
        >>> ds.create_scenario("night recall", "bbox_recall(iou=0.5) > 0.6", slice="night")
    """
    if not isinstance(name, str) or not name.strip():
        raise ValidationError("scenario name must be a non-empty string", field="name")
    crit = parse_criteria(criteria)
    if slice is not None:
        ds.get_slice(slice)  # raises NotFoundError naming the known slices
    base = _run(ds, baseline)
    store = ds.ws.store
    with store.transaction() as con:
        old = con.execute("SELECT scenario_id FROM scenarios WHERE dataset_id = ? AND name = ?", [ds.id, name]).fetchone()
        if old and not replace:
            raise AlreadyExistsError(f"scenario '{name}' already exists in dataset '{ds.name}' (pass replace=True)")
        if old:  # keep the id so the history stays attached
            con.execute("UPDATE scenarios SET slice = ?, criteria = ?, description = ?, baseline_run_id = ? "
                        "WHERE scenario_id = ?", [slice, criteria, description, None if base is None else base.id,
                                                  old[0]])
            sid = int(old[0])
        else:
            sid = store.next_key("scenarios", "scenario_id")
            con.execute("INSERT INTO scenarios VALUES (?, ?, ?, ?, ?, ?, ?, now()::TIMESTAMP)",
                        [sid, ds.id, name, slice, criteria, description, None if base is None else base.id])
    return {"scenario_id": sid, "name": name, "slice": slice, "criteria": [c.text() for c in crit],
            "baseline": None if base is None else base.name}


def list_scenarios(ds: "Dataset") -> pa.Table:
    """The dataset's scenarios with their last outcome."""
    return ds.ws.store.arrow(
        """SELECT s.name, s.slice, s.criteria, s.description, b.name AS baseline, s.created_at,
                  l.run AS last_run, l.passed AS last_passed, l.evaluated_at AS last_evaluated
           FROM scenarios s LEFT JOIN runs b ON b.run_id = s.baseline_run_id
           LEFT JOIN (SELECT e.scenario_id, r.name AS run, e.passed, e.evaluated_at FROM scenario_evaluations e
                      JOIN runs r USING (run_id)
                      QUALIFY row_number() OVER (PARTITION BY e.scenario_id ORDER BY e.evaluation_id DESC) = 1) l
             ON l.scenario_id = s.scenario_id
           WHERE s.dataset_id = ? ORDER BY s.scenario_id""", [ds.id])


def delete_scenario(ds: "Dataset", name: str) -> None:
    """Delete a scenario and its history."""
    store = ds.ws.store
    sid = _scenario_id(ds, name)
    with store.transaction() as con:
        con.execute("DELETE FROM scenario_results WHERE evaluation_id IN "
                    "(SELECT evaluation_id FROM scenario_evaluations WHERE scenario_id = ?)", [sid])
        con.execute("DELETE FROM scenario_evaluations WHERE scenario_id = ?", [sid])
        con.execute("DELETE FROM scenarios WHERE scenario_id = ?", [sid])


def set_baseline(ds: "Dataset", run: "ModelRun | str | None", names: Iterable[str] | None = None) -> int:
    """Make ``run`` the baseline of the named scenarios (default all). Returns how many."""
    r = _run(ds, run)
    names = None if names is None else [names] if isinstance(names, str) else list(names)
    ids = [_scenario_id(ds, n) for n in names] if names is not None else None
    store = ds.ws.store
    with store.transaction() as con:
        where = "dataset_id = ?" + ("" if ids is None else f" AND scenario_id IN ({', '.join(map(str, ids))})")
        n = con.execute(f"UPDATE scenarios SET baseline_run_id = ? WHERE {where}",
                        [None if r is None else r.id, ds.id]).fetchone()[0]
    return int(n)


def _scenario_id(ds: "Dataset", name: str) -> int:
    row = ds.ws.store.con.execute("SELECT scenario_id FROM scenarios WHERE dataset_id = ? AND name = ?",
                                  [ds.id, name]).fetchone()
    if row is None:
        known = ds.ws.store.con.execute("SELECT name FROM scenarios WHERE dataset_id = ? ORDER BY name",
                                        [ds.id]).fetchall()
        raise NotFoundError(f"no scenario '{name}' in dataset '{ds.name}'"
                            + (f"; scenarios: {', '.join(k[0] for k in known)}" if known else ""))
    return int(row[0])


_RESULT_COLUMNS = ("evaluation_id", "scenario", "slice", "position", "criterion", "function", "value",
                   "baseline_value", "op", "bound", "passed", "scenario_passed", "run", "baseline",
                   "label_version")


def run_scenarios(run: "ModelRun", baseline: "ModelRun | str | None" = None,
                  scenarios: str | Sequence[str] | None = None, label_version: int | None = None,
                  store_results: bool = True) -> pa.Table:
    """Evaluate scenario tests for ``run`` (and its baseline) and record the outcome.

    Args:
        baseline: compare against this run (default: each scenario's stored baseline, if any).
        scenarios: scenario names (default: all of the run's dataset).
        label_version: labels to evaluate against (default: current).
        store_results: append the outcome to the history tables (needs a writable workspace).

    Returns:
        One row per criterion: ``evaluation_id, scenario, slice, position, criterion, function, value,
        baseline_value, op, bound, passed, scenario_passed, run, baseline, label_version``. A criterion
        with an undefined value (e.g. no GT in the slice) or a relative bound without a baseline fails.
    """
    ds = run.dataset
    store = run.ws.store
    names = None if scenarios is None else [scenarios] if isinstance(scenarios, str) else list(scenarios)
    rows_s = store.con.execute(
        "SELECT scenario_id, name, slice, criteria, baseline_run_id FROM scenarios WHERE dataset_id = ? "
        "ORDER BY scenario_id", [ds.id]).fetchall()
    if names is not None:
        missing = [n for n in names if n not in {r[1] for r in rows_s}]
        if missing:
            _scenario_id(ds, missing[0])
        rows_s = [r for r in rows_s if r[1] in names]
    base_override = _run(ds, baseline)
    v = ds.label_version if label_version is None else int(label_version)
    cache: dict = {}
    out: list[dict[str, Any]] = []
    evaluations = []
    for sid, sname, slice_name, text, base_id in rows_s:
        base = base_override or (None if base_id is None else _run_by_id(run, base_id))
        crits = parse_criteria(text)
        items = subset_item_ids(run, slice_name) if slice_name is not None else None
        results = []
        for c in crits:
            val = metric_value(run, c, items, v, cache)
            bval = metric_value(base, c, items, v, cache) if base is not None else None
            results.append({"scenario": sname, "slice": slice_name, "position": c.position, "criterion": c.text(),
                            "function": c.function, "params": json.dumps(c.params), "value": val,
                            "baseline_value": bval, "op": c.op, "bound": c.bound(bval),
                            "passed": c.passes(val, bval), "run": run.name,
                            "baseline": None if base is None else base.name, "label_version": v})
        passed = all(r["passed"] for r in results)
        for r in results:
            r["scenario_passed"] = passed
        evaluations.append((sid, base, text, passed, results))
        out += results
    if store_results and evaluations:
        with store.transaction() as con:
            for sid, base, text, passed, results in evaluations:
                eid = store.next_key("scenario_evaluations", "evaluation_id")
                con.execute("INSERT INTO scenario_evaluations VALUES (?, ?, ?, ?, ?, ?, ?, now()::TIMESTAMP)",
                            [eid, sid, run.id, None if base is None else base.id, v, text, passed])
                for r in results:
                    r["evaluation_id"] = eid
                    con.execute("INSERT INTO scenario_results VALUES (?, ?, ?, ?, ?::JSON, ?, ?, ?, ?, ?)",
                                [eid, r["position"], r["criterion"], r["function"], r["params"], r["op"],
                                 r["bound"], r["value"], r["baseline_value"], r["passed"]])
    types = {"evaluation_id": pa.int32(), "scenario": pa.string(), "slice": pa.string(), "position": pa.int32(),
             "criterion": pa.string(), "function": pa.string(), "value": pa.float64(),
             "baseline_value": pa.float64(), "op": pa.string(), "bound": pa.float64(), "passed": pa.bool_(),
             "scenario_passed": pa.bool_(), "run": pa.string(), "baseline": pa.string(), "label_version": pa.int32()}
    return pa.table({c: pa.array([r.get(c) for r in out], types[c]) for c in _RESULT_COLUMNS})


def _run_by_id(run: "ModelRun", run_id: int) -> "ModelRun":
    from engine.api.model import ModelRun

    return ModelRun(run.ws, int(run_id))


def scenario_history(ds: "Dataset", name: str | None = None, run: "ModelRun | str | None" = None) -> pa.Table:
    """Past evaluations, newest first: one row per criterion with run, baseline, label version, values."""
    cond, params = "s.dataset_id = $ds", {"ds": ds.id}
    if name is not None:
        cond += " AND s.scenario_id = $sid"
        params["sid"] = _scenario_id(ds, name)
    r = _run(ds, run)
    if r is not None:
        cond += " AND e.run_id = $run"
        params["run"] = r.id
    return ds.ws.store.arrow(
        f"""SELECT e.evaluation_id, s.name AS scenario, r.name AS run, b.name AS baseline, e.label_version,
                   e.evaluated_at, e.passed AS scenario_passed, x.position, x.criterion, x.value, x.baseline_value,
                   x.op, x.threshold AS bound, x.passed
            FROM scenario_evaluations e JOIN scenarios s USING (scenario_id) JOIN runs r ON r.run_id = e.run_id
            LEFT JOIN runs b ON b.run_id = e.baseline_run_id
            JOIN scenario_results x ON x.evaluation_id = e.evaluation_id
            WHERE {cond} ORDER BY e.evaluation_id DESC, x.position""", params)
