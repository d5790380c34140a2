"""End-to-end benchmark: the whole `loupe eval GT RESULTS --json` process vs a faster-coco-eval process.

Both are timed as fresh processes (interpreter start, imports, JSON parsing, evaluation, printing),
interleaved over ``--repeat`` rounds after one untimed warm-up round; best and median wall times, the
CPU time of each process (user + system, all threads) and the ratios are printed, with the load
average, and the 12 stats of both are compared.

Both sides run from compiled bytecode, as installed packages do: this environment may set
PYTHONDONTWRITEBYTECODE (then an editable checkout would recompile every module on every start while
the peers' site-packages carry their .pyc), so the children get a private PYTHONPYCACHEPREFIX under
``benchmarks/_data`` that the warm-up round fills. ``--no-bytecode`` keeps the environment as it is. Data: :func:`benchmarks.ingest.data_files` (5,000 images /
500,000 detections by default). faster-coco-eval comes with the ``bench`` extra.

Usage::

    python benchmarks/eval_e2e.py --repeat 3
"""
from __future__ import annotations

import argparse
import json
import os
import resource
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


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def timed(cmd: list[str], env: dict[str, str], cwd: Path = ROOT) -> tuple[float, float, list[float]]:
    """Wall and CPU seconds of one child process, and its stats."""
    c0, t0 = _children_cpu(), time.perf_counter()
    out = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=True, env=env).stdout
    return time.perf_counter() - t0, _children_cpu() - c0, json.loads(out.strip().splitlines()[-1])["stats"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=5000)
    ap.add_argument("--dets", type=int, default=500_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--no-bytecode", action="store_true", help="Keep PYTHONDONTWRITEBYTECODE as set (no warm-up).")
    ap.add_argument("--baseline", type=Path, default=None,
                    help="Another Loupe checkout (e.g. `git worktree add /tmp/base REV`) timed as a third side.")
    args = ap.parse_args()
    gt, res = data_files(args.images, args.dets)
    sides = {"loupe eval": [sys.executable, "-m", "engine", "eval", str(gt), str(res), "--json"],
             "faster-coco-eval": [sys.executable, "-c", FCE, str(gt), str(res)]}
    env = dict(os.environ)
    if not args.no_bytecode:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(ROOT / "benchmarks" / "_data" / "pycache")
    cwd = {name: ROOT for name in sides}
    if args.baseline is not None:
        sides["loupe (baseline)"] = sides["loupe eval"]
        cwd["loupe (baseline)"] = args.baseline.resolve()
    times: dict[str, list[float]] = {k: [] for k in sides}
    cpus: dict[str, list[float]] = {k: [] for k in sides}
    stats = {}
    print(f"load average before: {os.getloadavg()[0]:.2f}")
    for rnd in range(args.repeat + (0 if args.no_bytecode else 1)):
        for name, cmd in sides.items():
            t, c, stats[name] = timed(cmd, env, cwd[name])
            if rnd or args.no_bytecode:  # round 0 is the bytecode warm-up
                times[name].append(t)
                cpus[name].append(c)
    diff = max(abs(a - b) for a, b in zip(stats["loupe eval"], stats["faster-coco-eval"]))
    for name, ts in times.items():
        each = ", ".join(f"{t:.2f}" for t in ts)
        print(f"{name:18s} best {min(ts):6.2f} s  median {statistics.median(ts):6.2f} s  "
              f"CPU best {min(cpus[name]):6.2f} s  ({each})")
    lo, fce = "loupe eval", "faster-coco-eval"
    best = min(times[lo]) / min(times[fce])
    med = statistics.median(times[lo]) / statistics.median(times[fce])
    cpu = min(cpus[lo]) / min(cpus[fce])
    print(f"ratio loupe / faster-coco-eval: best {best:.3f}x, median {med:.3f}x, CPU {cpu:.3f}x; "
          f"max |stats difference| {diff:.2e}; load average after: {os.getloadavg()[0]:.2f}")
    if args.baseline is not None:
        b = "loupe (baseline)"
        print(f"baseline / faster-coco-eval: best {min(times[b]) / min(times[fce]):.3f}x, median "
              f"{statistics.median(times[b]) / statistics.median(times[fce]):.3f}x, CPU {min(cpus[b]) / min(cpus[fce]):.3f}x")


if __name__ == "__main__":
    main()
