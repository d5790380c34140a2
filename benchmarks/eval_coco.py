"""Evaluation benchmark: Loupe vs pycocotools vs faster-coco-eval on one generated COCO pair.

Data: :func:`benchmarks.gen_coco.make_pair` (seeded; 5,000 images, ~36,000 GT, 80 classes,
500,000 detections by default), shared with ``benchmarks/ingest.py``. Each tool runs in its own
subprocess (so peak RSS is its own), the sides interleaved over ``--repeat`` rounds, best time kept.

Reported per tool:
* pycocotools / faster-coco-eval: ``load`` (COCO() + loadRes) and ``eval`` (evaluate + accumulate + summarize);
* Loupe: ``load`` (import GT + results into an in-memory workspace, all validation on) and ``eval``
  (run.commit(): pairs in SQL, matching, the TP/FP/FN index written to DuckDB, COCO stats cached,
  then run.metrics()); ``load + eval`` is what ``loupe eval`` does end to end.
The 12 stats of every tool are compared (max abs difference printed). As in ``ingest.py``, imports are
not timed: Loupe's side runs :func:`benchmarks.ingest.warm_imports` first (pandas, which pyarrow imports
at its first conversion, ~0.15-0.3 s). Before session 8 that import fell inside ``load``; since the
import stores bbox results in SQL with no Arrow conversion, it fell inside ``eval`` instead. Since
session 9 it also imports ``engine.runs.commit`` and ``engine.metrics.report`` first (the evaluation
modules, which ``run.commit()`` / ``run.metrics()`` import on first use: ~35-45 ms inside ``eval`` here,
where no ``.pyc`` is written and every import compiles), as the peers import their ``COCOeval`` before
their timer. ``eval s per round`` lists every round's time.

Usage::

    python benchmarks/eval_coco.py                       # 5k images / 500k dets, all three tools
    python benchmarks/eval_coco.py --images 50000 --dets 5000000 --tools loupe --repeat 1   # scale
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.ingest import _peak_mb, data_files, run_child, warm_imports  # noqa: E402

TOOLS = ("pycocotools", "faster-coco-eval", "loupe")


def side_loupe(gt: Path, res: Path) -> dict:
    import engine

    warm_imports()
    import engine.metrics.report  # noqa: F401  run.metrics()'s module
    import engine.runs.commit  # noqa: F401  the commit's modules (imported on first commit, ~40 ms here)

    ws = engine.connect()
    t0, c0 = time.perf_counter(), time.process_time()
    ws.import_coco(gt, "bench", results=res, run="dets", check_images=False, clip="keep")
    t1, c1 = time.perf_counter(), time.process_time()
    run = ws.get_run("dets")
    run.commit()
    m = run.metrics()
    t2, c2 = time.perf_counter(), time.process_time()
    return {"load": t1 - t0, "eval": t2 - t1, "load_cpu": c1 - c0, "eval_cpu": c2 - c1,
            "stats": list(m["stats"].values()), "peak_rss_mb": _peak_mb()}


def _coco_side(COCO, COCOeval, gt: Path, res: Path) -> dict:
    with contextlib.redirect_stdout(io.StringIO()):
        t0, c0 = time.perf_counter(), time.process_time()
        cg = COCO(str(gt))
        cd = cg.loadRes(str(res))
        t1, c1 = time.perf_counter(), time.process_time()
        e = COCOeval(cg, cd, "bbox")
        e.evaluate()
        e.accumulate()
        e.summarize()
        t2, c2 = time.perf_counter(), time.process_time()
    return {"load": t1 - t0, "eval": t2 - t1, "load_cpu": c1 - c0, "eval_cpu": c2 - c1,
            "stats": [float(v) for v in e.stats], "peak_rss_mb": _peak_mb()}


def side_pycocotools(gt: Path, res: Path) -> dict:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    return _coco_side(COCO, COCOeval, gt, res)


def side_faster(gt: Path, res: Path) -> dict:
    from faster_coco_eval import COCO, COCOeval_faster

    return _coco_side(COCO, COCOeval_faster, gt, res)


SIDES = {"loupe": side_loupe, "pycocotools": side_pycocotools, "faster-coco-eval": side_faster}


def run_side(tool: str, gt: Path, res: Path) -> dict:
    return run_child(__file__, tool, gt, res)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=5000)
    ap.add_argument("--dets", type=int, default=500_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeat", type=int, default=3, help="rounds; the best time per tool is reported")
    ap.add_argument("--tools", default=",".join(TOOLS), help="comma-separated subset of " + ",".join(TOOLS))
    ap.add_argument("--side", choices=TOOLS, help=argparse.SUPPRESS)
    ap.add_argument("--gt", help=argparse.SUPPRESS)
    ap.add_argument("--res", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.side:
        print(json.dumps(SIDES[a.side](Path(a.gt), Path(a.res))))
        return
    tools = [t for t in a.tools.split(",") if t]
    gt, res = data_files(a.images, a.dets, a.seed)
    print(f"data: {gt.name} ({gt.stat().st_size / 1e6:.1f} MB), {res.name} ({res.stat().st_size / 1e6:.1f} MB)")
    best: dict[str, dict] = {}
    evals: dict[str, list[float]] = {t: [] for t in tools}
    print(f"load average before: {os.getloadavg()[0]:.2f}")
    for _ in range(a.repeat):
        for tool in tools:
            r = run_side(tool, gt, res)
            evals[tool].append(r["eval"])
            for k in ("load", "eval", "load_cpu", "eval_cpu"):
                b = best.setdefault(tool, dict(r))
                b[k] = min(b[k], r[k])
            best[tool]["peak_rss_mb"] = max(best[tool]["peak_rss_mb"], r["peak_rss_mb"])
    print(f"{'tool':18}{'load s':>9}{'eval s':>9}{'load+eval':>11}{'load CPU':>10}{'eval CPU':>10}{'peak RSS MB':>13}")
    for t in tools:
        r = best[t]
        print(f"{t:18}{r['load']:9.3f}{r['eval']:9.3f}{r['load'] + r['eval']:11.3f}{r['load_cpu']:10.3f}"
              f"{r['eval_cpu']:10.3f}{r['peak_rss_mb']:13.0f}")
    if "loupe" in best:
        lo = best["loupe"]
        for peer in [t for t in tools if t != "loupe"]:
            p = best[peer]
            diff = max(abs(x - y) for x, y in zip(lo["stats"], p["stats"]))
            med = statistics.median(evals["loupe"]) / statistics.median(evals[peer])
            print(f"loupe / {peer}: eval {lo['eval'] / p['eval']:.3f}x (median {med:.3f}x), load+eval "
                  f"{(lo['load'] + lo['eval']) / (p['load'] + p['eval']):.3f}x, "
                  f"peak RSS {lo['peak_rss_mb'] / p['peak_rss_mb']:.2f}x; CPU: load {lo['load_cpu'] / p['load_cpu']:.3f}x, "
                  f"eval {lo['eval_cpu'] / p['eval_cpu']:.3f}x; max |stats diff| = {diff:.2e}")
        print(f"load average after: {os.getloadavg()[0]:.2f}")
        print("eval s per round:", "; ".join(f"{t} " + " ".join(f"{v:.3f}" for v in evals[t]) for t in tools))
        print("stats (loupe):", ", ".join(f"{v:.6f}" for v in lo["stats"]))


if __name__ == "__main__":
    main()
