"""``loupe report``: a self-contained HTML report of any dataset (and optionally one run and slice).

Reads only the public API (ds.info / insights, run.metrics / pr_curves / confusion_matrix /
error_types / patches) and writes one file through :class:`engine.report.html.HtmlReport`, with
inline SVG charts (:mod:`engine.report.svg`) and the numbers as a JSON block (id ``loupe-report``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa

from . import svg
from .html import HtmlReport

STAT_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")


def build_report(ws: Any, dataset: str, run: str | None = None, slice: str | None = None) -> HtmlReport:
    """The report of ``dataset`` (restricted to ``slice``), with ``run``'s evaluation when given."""
    from ..errors import LoupeError

    ds = ws.get_dataset(dataset)
    r = ws.get_run(run) if run else None
    if r is not None and r.dataset_id != ds.id:
        raise LoupeError(f"run '{run}' is not a run of dataset '{dataset}'")
    if r is not None and ws.store.scalar("SELECT committed_at FROM runs WHERE run_id = ?", [r.id]) is None:
        raise LoupeError(f"run '{run}' is not committed yet: run `loupe commit` first")
    if slice is not None:
        ds.get_slice(slice)  # a clear error for an unknown slice
    scope = f"slice '{slice}'" if slice else "all items"
    rep = HtmlReport(f"Loupe report: {dataset}", f"{scope}" + (f" · run {run}" if run else "")
                     + (f" · workspace {ws.path}" if ws.path else ""))
    info = ds.info()
    ins = ds.insights(slice=slice, run=r)
    data: dict[str, Any] = {"dataset": dataset, "run": run, "slice": slice, "items": info["items"]}

    rep.section("Dataset")
    rep.table(ins["summary"], caption="Summary")
    data["summary"] = ins["summary"].to_pylist()[0] if ins["summary"].num_rows else {}
    lab = ins["labels"]
    rep.raw(svg.bars("Annotations per label", lab.column("label").to_pylist(), lab.column("annotations").to_pylist()))
    api = ins["annotations_per_item"]
    rep.raw(svg.bars("Items by number of annotations", [f"{n} annotations" for n in api.column("annotations").to_pylist()],
                     api.column("items").to_pylist(), color=svg.PALETTE[1]))

    rep.section("Box sizes")
    hist = ins["box_histograms"]
    for m in dict.fromkeys(hist.column("measure").to_pylist()):
        h = hist.filter(pa.compute.equal(hist.column("measure"), m))
        rep.raw(svg.histogram(f"Box {m}", h.column("lower").to_pylist(), h.column("upper").to_pylist(),
                              h.column("count").to_pylist(), xlabel=m))
    rep.table(ins["box_stats"], caption="Box statistics")
    if ins["size_buckets"].num_rows:
        rep.table(ins["size_buckets"], caption="COCO size buckets per label")

    mv, mh = ins["metadata_values"], ins["metadata_histograms"]
    if mv.num_rows or mh.num_rows:
        rep.section("Metadata")
        rep.table(ins["metadata_fields"], caption="Metadata fields")
        for scope_, field in dict.fromkeys(zip(mv.column("scope").to_pylist(), mv.column("field").to_pylist())):
            rows = [x for x in mv.to_pylist() if x["scope"] == scope_ and x["field"] == field]
            rep.raw(svg.bars(f"{scope_} metadata.{field}", [str(x["value"]) for x in rows], [x["count"] for x in rows],
                             color=svg.PALETTE[2]))
        for scope_, field in dict.fromkeys(zip(mh.column("scope").to_pylist(), mh.column("field").to_pylist())):
            rows = [x for x in mh.to_pylist() if x["scope"] == scope_ and x["field"] == field]
            rep.raw(svg.histogram(f"{scope_} metadata.{field}", [x["lower"] for x in rows], [x["upper"] for x in rows],
                                  [x["count"] for x in rows], xlabel=field))

    if r is not None:
        m = r.metrics(slice=slice)
        data["metrics"] = {"stats": m["stats"], "counts": m["counts"], "per_class": m["per_class"]}
        rep.section(f"Run {run}: metrics")
        rep.table([{"stat": k, "value": m["stats"][k]} for k in STAT_NAMES if k in m["stats"]],
                  caption="COCO stats (pycocotools-exact)", table_id="coco-stats")
        rep.paragraph(f"TP {m['counts']['tp']} · FP {m['counts']['fp']} · FN {m['counts']['fn']} at IoU 0.5")
        rep.table(m["per_class"], caption="Per class")
        pr = r.pr_curves(slice=slice).to_pylist()
        series = {}
        for p in pr:
            if round(p["iou_threshold"], 2) in (0.5, 0.75):
                series.setdefault(f"{p['label']} @{p['iou_threshold']:.2f}", ([], []))
                series[f"{p['label']} @{p['iou_threshold']:.2f}"][0].append(p["recall"])
                series[f"{p['label']} @{p['iou_threshold']:.2f}"][1].append(p["precision"])
        rep.raw(svg.lines("Precision–recall", [(k, xs, ys) for k, (xs, ys) in list(series.items())[:8]]))
        rep.table(r.confusion_matrix(slice=slice), caption="Confusion (gt_label, pred_label, count) at IoU 0.5")
        et = r.error_types()
        rep.raw(svg.bars("Error types", [f"{a} {b}" for a, b in zip(et.column("label").to_pylist(),
                                                                    et.column("error_type").to_pylist())],
                         et.column("count").to_pylist(), color=svg.PALETTE[3]))
        cols = ["reference_id", "annotation_id", "source", "status", "label", "iou", "best_iou", "confidence"]
        worst = r.patches(query=f'slice("{slice}")' if slice else None, status="tp", sort="iou", limit=20)
        rep.table(worst, columns=cols, caption="Worst-IoU true positives")
        fps = r.patches(query=f'slice("{slice}")' if slice else None, status="fp", sort="confidence",
                        descending=True, limit=20)
        rep.table(fps, columns=cols, caption="Most confident false positives")
    rep.json_block("loupe-report", data)
    return rep


def write_report(ws: Any, dataset: str, out: str | Path, run: str | None = None, slice: str | None = None) -> Path:
    return build_report(ws, dataset, run=run, slice=slice).write(out)
