"""End-to-end benchmark: the whole `loupe eval GT RESULTS --json` process vs a faster-coco-eval process.

Both are timed as fresh processes (interpreter start, imports, JSON parsing, evaluation, printing),
interleaved over ``--repeat`` rounds; best and median wall times and their ratio are printed, and
the 12 stats of both are compared. Data: :func:`benchmarks.ingest.data_files` (5,000 images /
500,000 detections by default). faster-coco-eval comes with the ``bench`` extra.

Usage::

    python benchmarks/eval_e2e.py --repeat 3
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.ingest import data_files  # noqa: E402

FCE = """
import contextlib, io, json, sys
from faster_coco_eval import COCO, COCOeval_faster
with contextlib.redirect_stdout(io.StringIO()):
    gt = COCO(sys.argv[1]); dt = gt.loadRes(sys.argv[2])
    e = COCOeval_faster(gt, dt, "bbox"); e.evaluate(); e.accumulate(); e.summarize()
print(json.dumps({"stats": [float(v) for v in e.stats]}))
"""


def timed(cmd: list[str]) -> tuple[float, list[float]]:
    t0 = time.perf_counter()
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return time.perf_counter() - t0, json.loads(out.strip().splitlines()[-1])["stats"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=5000)
    ap.add_argument("--dets", type=int, default=500_000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    gt, res = data_files(args.images, args.dets)
    sides = {"loupe eval": [sys.executable, "-m", "engine", "eval", str(gt), str(res), "--json"],
             "faster-coco-eval": [sys.executable, "-c", FCE, str(gt), str(res)]}
    times: dict[str, list[float]] = {k: [] for k in sides}
    stats = {}
    for _ in range(args.repeat):
        for name, cmd in sides.items():
            t, stats[name] = timed(cmd)
            times[name].append(t)
    diff = max(abs(a - b) for a, b in zip(stats["loupe eval"], stats["faster-coco-eval"]))
    for name, ts in times.items():
        each = ", ".join(f"{t:.2f}" for t in ts)
        print(f"{name:18s} best {min(ts):6.2f} s  median {statistics.median(ts):6.2f} s  ({each})")
    best = min(times["loupe eval"]) / min(times["faster-coco-eval"])
    med = statistics.median(times["loupe eval"]) / statistics.median(times["faster-coco-eval"])
    print(f"ratio loupe / faster-coco-eval: best {best:.3f}x, median {med:.3f}x; max |stats difference| {diff:.2e}")


if __name__ == "__main__":
    main()
