"""Scale benchmark: import + commit a large generated COCO pair in a FILE workspace, with peak RSS.

The pair comes from :func:`benchmarks.gen_coco.write_pair` (seeded, streamed to
``benchmarks/_data/``, generated in its own process on first use). The measured process opens a
workspace file (``--db``, deleted first), imports GT + results (``clip="keep"``, no image checks),
commits the run (pairs, matching, the per-object index, cached stats) and reads the metrics.
Printed per phase: wall and CPU seconds, the highest RSS sampled during the phase (every 50 ms),
and at the end the process's peak RSS (VmHWM, which the sampler can miss between samples) and the
load average, since the machine is shared. The sampler is a Python thread: it cannot run while
the main thread holds the GIL, so VmHWM is the figure to quote. DuckDB's own memory
(``duckdb_memory()``) is printed after each phase.

Usage::

    python benchmarks/scale.py --images 200000 --dets 20000000          # the issue's target size
    python benchmarks/scale.py --images 50000 --dets 5000000 --chunk-dets 500000
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _status_mb(key: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024.0
    return float("nan")


class Sampler(threading.Thread):
    """Highest VmRSS seen per phase (sampled every ``every`` seconds)."""

    def __init__(self, every: float = 0.05):
        super().__init__(daemon=True)
        self.every, self.phase, self.peak = every, "start", {}
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            rss = _status_mb("VmRSS")
            self.peak[self.phase] = max(self.peak.get(self.phase, 0.0), rss)
            time.sleep(self.every)


def child(a: argparse.Namespace) -> dict:
    import engine

    db = Path(a.db)
    for p in (db, Path(str(db) + ".wal")):
        p.unlink(missing_ok=True)
    s = Sampler()
    s.start()
    phases: dict[str, dict] = {}

    def phase(name: str, fn):
        s.phase = name
        t, c = time.perf_counter(), time.process_time()
        out = fn()
        duck = ws.store.scalar("SELECT sum(memory_usage_bytes) FROM duckdb_memory()")
        phases[name] = {"s": time.perf_counter() - t, "cpu": time.process_time() - c,
                        "duckdb_mb": (duck or 0) / 2**20, "rss_after_mb": _status_mb("VmRSS")}
        return out

    ws = engine.connect(str(db), shared=False)
    phase("import", lambda: ws.import_coco(a.gt, "bench", results=a.res, run="dets", check_images=False,
                                           clip="keep"))
    run = ws.get_run("dets")
    if a.chunk_dets is not None:
        from engine.runs import chunks

        chunks.CHUNK_DETECTIONS = a.chunk_dets
    phase("commit", lambda: run.commit())
    m = phase("metrics", lambda: run.metrics())
    s.phase = "end"
    time.sleep(0.1)
    s.stop.set()
    for k, v in phases.items():
        v["rss_max_mb"] = s.peak.get(k, float("nan"))
    n = ws.sql("SELECT (SELECT count(*) FROM annotations) AS gt, (SELECT count(*) FROM predictions) AS dets")
    ws.close()
    return {"phases": phases, "peak_rss_mb": _status_mb("VmHWM"), "stats": list(m["stats"].values()),
            "counts": n.to_pylist()[0], "db_mb": db.stat().st_size / 1e6}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=50_000)
    ap.add_argument("--dets", type=int, default=5_000_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--db", default="/tmp/loupe_scale.duckdb", help="workspace file (deleted first)")
    ap.add_argument("--chunk-dets", type=int, help="detections per commit chunk (default: the engine's)")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--gt", help=argparse.SUPPRESS)
    ap.add_argument("--res", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        print(json.dumps(child(a)))
        return
    gen = ("from benchmarks.ingest import data_files; import sys; "
           f"print(*data_files({a.images}, {a.dets}, {a.seed}), sep='\\n')")
    t = time.perf_counter()
    gt, res = subprocess.run([sys.executable, "-c", gen], cwd=ROOT, check=True, capture_output=True,
                             text=True).stdout.splitlines()[-2:]
    print(f"data: {Path(gt).name} ({Path(gt).stat().st_size / 1e6:.0f} MB), {Path(res).name} "
          f"({Path(res).stat().st_size / 1e6:.0f} MB), ready in {time.perf_counter() - t:.0f} s")
    cmd = [sys.executable, __file__, "--child", "--gt", gt, "--res", res, "--db", a.db]
    if a.chunk_dets is not None:
        cmd += ["--chunk-dets", str(a.chunk_dets)]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode:
        sys.exit(out.stderr)
    r = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"{r['counts']['gt']:,} GT, {r['counts']['dets']:,} detections; workspace file {r['db_mb']:.0f} MB")
    print(f"{'phase':10}{'wall s':>9}{'CPU s':>9}{'max sampled RSS MB':>21}{'RSS after':>11}{'DuckDB MB':>11}")
    for k, v in r["phases"].items():
        print(f"{k:10}{v['s']:9.1f}{v['cpu']:9.1f}{v['rss_max_mb']:21.0f}{v['rss_after_mb']:11.0f}"
              f"{v['duckdb_mb']:11.0f}")
    print(f"peak RSS (VmHWM): {r['peak_rss_mb']:.0f} MB; load average after: "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print("stats:", ", ".join(f"{v:.6f}" for v in r["stats"]))


if __name__ == "__main__":
    main()
