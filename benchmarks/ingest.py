"""Ingest benchmark: a COCO GT + results pair into Loupe vs pycocotools ``COCO()`` + ``loadRes()``.

The pair (about 5,000 images, 36,000 GT boxes, 500,000 detections) is generated with the seeded
:func:`benchmarks.gen_coco.make_pair` into ``benchmarks/_data/`` (gitignored) on first use. Each
side runs in its own subprocess so its peak RSS (``getrusage``; tracemalloc cannot see DuckDB's
allocations) is its own; the timer covers the work only (parse + build + store), not interpreter
start-up or module imports, also not those Loupe's call would do lazily (:func:`warm_imports`: pandas,
which pyarrow imports at its first conversion; ``--timed-imports`` times them as before session 8).
Loupe stores into an in-memory workspace with all validation on, with ``clip="keep"``: the
generator's jittered detections may cross the image border, which pycocotools accepts unchecked;
Loupe refuses such boxes by default and here keeps them as given.

Usage::

    python benchmarks/ingest.py                 # default sizes, best of 3 runs per side
    python benchmarks/ingest.py --images 500 --dets 50000 --repeat 1
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
DATA = ROOT / "benchmarks" / "_data"


def data_files(n_images: int, n_dets: int, seed: int = 0) -> tuple[Path, Path]:
    """Paths of the GT and results files for these sizes, generated (seeded) if missing."""
    gt = DATA / f"gt_{n_images}_s{seed}.json"
    res = DATA / f"res_{n_images}_{n_dets}_s{seed}.json"
    if not (gt.exists() and res.exists()):
        sys.path.insert(0, str(ROOT))
        from benchmarks.gen_coco import write_pair

        DATA.mkdir(parents=True, exist_ok=True)
        tg, tr = gt.with_suffix(".tmp"), res.with_suffix(".tmp")
        write_pair(tg, tr, n_images=n_images, n_dets=n_dets, seed=seed)  # streamed: 20M dets fit
        tg.replace(gt)
        tr.replace(res)
    return gt, res


def _peak_mb() -> float:
    """Peak resident set of this process in MB: VmHWM (reset by exec, unlike ru_maxrss, which a
    child inherits from a big parent on Linux), else getrusage."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def warm_imports() -> None:
    """Import what Loupe's import call would otherwise import lazily inside the timer: its COCO reader
    module, and pandas, which pyarrow imports (when installed, ~0.2-0.3 s) at its first conversion of a
    list or numpy array. Imports are not timed on either side (``--timed-imports`` times them)."""
    import pyarrow as pa

    import engine.io.coco  # noqa: F401

    pa.array([0])


def side_loupe(gt: Path, res: Path, timed_imports: bool = False) -> dict:
    sys.path.insert(0, str(ROOT))
    import engine

    if not timed_imports:
        warm_imports()
    ws = engine.connect()
    base = _peak_mb()
    t0, c0 = time.perf_counter(), time.process_time()
    s = ws.import_coco(gt, "bench", results=res, run="dets", clip="keep")
    dt, cpu = time.perf_counter() - t0, time.process_time() - c0
    n = ws.sql("SELECT (SELECT count(*) FROM annotations) AS a, (SELECT count(*) FROM predictions) AS p").to_pylist()[0]
    assert n["p"] == s.predictions and n["a"] == s.annotations
    return {"seconds": dt, "cpu": cpu, "peak_rss_mb": _peak_mb(), "rss_before_mb": base, "gt": n["a"], "dets": n["p"]}


def side_pycocotools(gt: Path, res: Path) -> dict:
    import contextlib
    import io

    from pycocotools.coco import COCO

    base = _peak_mb()
    t0, c0 = time.perf_counter(), time.process_time()
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(gt))
        dets = coco.loadRes(str(res))
    dt, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"seconds": dt, "cpu": cpu, "peak_rss_mb": _peak_mb(), "rss_before_mb": base, "gt": len(coco.anns),
            "dets": len(dets.anns)}


def run_child(script: str, side: str, gt: Path, res: Path, extra: tuple[str, ...] = ()) -> dict:
    """Run ``script --side SIDE`` in a fresh interpreter (its own peak RSS) and parse its JSON line."""
    out = subprocess.run([sys.executable, script, "--side", side, "--gt", str(gt), "--res", str(res), *extra],
                         check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_side(side: str, gt: Path, res: Path, timed_imports: bool = False) -> dict:
    return run_child(__file__, side, gt, res, ("--timed-imports",) if timed_imports else ())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=5000)
    ap.add_argument("--dets", type=int, default=500_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeat", type=int, default=3, help="runs per side; the best time is reported")
    ap.add_argument("--timed-imports", action="store_true",
                    help="time Loupe's lazy imports (pandas via pyarrow) too, as before session 8")
    ap.add_argument("--side", choices=["loupe", "pycocotools"], help=argparse.SUPPRESS)
    ap.add_argument("--gt", help=argparse.SUPPRESS)
    ap.add_argument("--res", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.side:  # child process
        if a.side == "loupe":
            print(json.dumps(side_loupe(Path(a.gt), Path(a.res), a.timed_imports)))
        else:
            print(json.dumps(side_pycocotools(Path(a.gt), Path(a.res))))
        return
    gt, res = data_files(a.images, a.dets, a.seed)
    print(f"load average before: {os.getloadavg()[0]:.2f}")
    print(f"data: {gt.name} ({gt.stat().st_size / 1e6:.1f} MB), {res.name} ({res.stat().st_size / 1e6:.1f} MB)")
    best: dict[str, dict] = {}
    walls: dict[str, list[float]] = {"pycocotools": [], "loupe": []}
    for _ in range(a.repeat):
        for side in ("pycocotools", "loupe"):  # interleaved, so load changes hit both sides
            r = run_side(side, gt, res, a.timed_imports)
            walls[side].append(r["seconds"])
            if side not in best or r["seconds"] < best[side]["seconds"]:
                best[side] = r
            best[side]["cpu"] = min(best[side]["cpu"], r["cpu"])
    p, lo = best["pycocotools"], best["loupe"]
    med = {k: statistics.median(v) for k, v in walls.items()}
    print(f"{'':14}{'seconds':>9}{'median':>8}{'CPU s':>8}{'peak RSS MB':>13}{'RSS before':>12}{'GT':>9}{'dets':>9}")
    for name, r in (("pycocotools", p), ("loupe", lo)):
        print(f"{name:14}{r['seconds']:9.3f}{med[name]:8.3f}{r['cpu']:8.3f}{r['peak_rss_mb']:13.0f}"
              f"{r['rss_before_mb']:12.0f}{r['gt']:9d}{r['dets']:9d}")
    print(f"ratio loupe / pycocotools: {lo['seconds'] / p['seconds']:.3f}x best wall time (target <= 0.15x), "
          f"{med['loupe'] / med['pycocotools']:.3f}x median, "
          f"{lo['cpu'] / p['cpu']:.3f}x CPU time; load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
