"""Spark commit vs DuckDB commit: throughput per core on one generated COCO pair, side by side.

Data: :func:`benchmarks.gen_coco.make_pair` (seeded), imported once into a workspace file and
exported as Parquet tables (``loupe export parquet --tables``). Then, interleaved over ``--repeat``
rounds (best time kept):

* DuckDB: ``run.commit()`` (pairs in SQL, matching, matches index written, COCO stats) with
  ``SET threads = CORES``;
* Spark: ``engine.spark.commit.spark_commit`` with ``local[CORES]`` (pairs by a Spark join, the
  matching kernel through mapInArrow, matches written as Parquet, per-category metric reduce).
  The session is started once before timing (its start-up is printed separately).

Printed: seconds, detections per second per core, the Spark/DuckDB time ratio, and the largest
difference of the 12 stats (must be 0 or ~1e-16). The target scale is 50,000 images / 5M detections
(measured: docs/scale-out.md). Peak memory is printed for this process (driver + DuckDB: VmHWM) and for
the JVM and the Python workers Spark started (their summed RSS, sampled every 0.5 s).

``--workdir DIR`` keeps the imported workspace and the table export in DIR and reuses them on the
next run, so a big pair is prepared once without holding the benchmark lock and only the timed
part runs under it (``--prepare`` stops after preparing); ``--side`` times one side only.

Usage::

    python benchmarks/spark.py --images 5000 --dets 500000 --cores 2 --repeat 1
    python benchmarks/spark.py --images 50000 --dets 5000000 --workdir /tmp/me/s50k --prepare
    flock /work/wt/bench.lock python benchmarks/spark.py --images 50000 --dets 5000000 --workdir /tmp/me/s50k
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.ingest import data_files  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=50_000)
    ap.add_argument("--dets", type=int, default=5_000_000)
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--partitions", type=int, default=None, help="Spark kernel partitions (default: automatic)")
    ap.add_argument("--workdir", type=Path, default=None, help="keep / reuse the workspace and export here")
    ap.add_argument("--prepare", action="store_true", help="only build the workspace and export (--workdir)")
    ap.add_argument("--side", choices=["both", "duckdb", "spark"], default="both")
    ap.add_argument("--conf", action="append", default=[], metavar="KEY=VALUE", help="extra Spark setting")
    a = ap.parse_args()

    import engine
    from engine.io.parquet_tables import export_tables
    from engine.spark import local_session
    from engine.spark.commit import spark_commit

    keep = a.workdir is not None
    tmp = a.workdir or Path(tempfile.mkdtemp(prefix="loupe-spark-bench-"))
    tmp.mkdir(parents=True, exist_ok=True)
    sides = ["duckdb", "spark"] if a.side == "both" else [a.side]
    try:
        t0 = time.perf_counter()
        ready = tmp / "ready"
        if not ready.exists():
            gt, res = data_files(a.images, a.dets)
            with engine.connect(tmp / "w.duckdb") as ws:
                ws.import_coco(gt, "bench", results=res, run="dets", check_images=False, clip="keep")
                export_tables(ws, tmp / "tables")
            ready.write_text(f"{a.images} {a.dets}\n")
        ws = engine.connect(tmp / "w.duckdb")
        ws.store.con.execute(f"SET threads = {int(a.cores)}")
        n_dt = int(ws.store.scalar("SELECT count(*) FROM predictions"))
        print(f"data: {a.images} images, {n_dt} detections; import + export {time.perf_counter() - t0:.1f} s",
              flush=True)
        if a.prepare:
            ws.close()
            return
        spark = None
        if "spark" in sides:
            t0 = time.perf_counter()
            spark = local_session(f"local[{a.cores}]", {"spark.driver.memory": "4g",
                                                        **dict(c.split("=", 1) for c in a.conf)})
            print(f"spark session start: {time.perf_counter() - t0:.1f} s", flush=True)
        peaks = PeakWatch(os.getpid())
        run = ws.get_run("dets")
        best = {"duckdb": float("inf"), "spark": float("inf")}
        stats = {}
        for _ in range(a.repeat):
            if "duckdb" in sides:
                t0 = time.perf_counter()
                stats["duckdb"] = list(run.commit()["stats"].values())
                best["duckdb"] = min(best["duckdb"], time.perf_counter() - t0)
                print(f"  duckdb round: {time.perf_counter() - t0:.1f} s  load {os.getloadavg()[0]:.1f}", flush=True)
            if "spark" in sides:
                t0 = time.perf_counter()
                steps: dict[str, float] = {}
                r = spark_commit(tmp / "tables", "dets", tmp / "spark_out", spark=spark, partitions=a.partitions,
                                 timings=steps)
                best["spark"] = min(best["spark"], time.perf_counter() - t0)
                print(f"  spark round: {time.perf_counter() - t0:.1f} s  (" +
                      ", ".join(f"{k} {v:.1f} s" for k, v in steps.items()) + f")  load {os.getloadavg()[0]:.1f}",
                      flush=True)
                stats["spark"] = list(r["stats"].values())
        for side in sides:
            s = best[side]
            print(f"{side:7s} commit {s:8.1f} s   {n_dt / s / a.cores:12,.0f} detections/s/core")
        print("peak RSS: " + peaks.stop())
        if len(sides) == 2:
            diff = max(abs(x - y) for x, y in zip(stats["duckdb"], stats["spark"]))
            print(f"spark / duckdb time: {best['spark'] / best['duckdb']:.2f}x   max |stat diff| = {diff:.3g}")
        else:
            print(f"{sides[0]} stats: {stats[sides[0]]}")
        ws.close()
        if spark is not None:
            spark.stop()
    finally:
        if not keep:
            shutil.rmtree(tmp, ignore_errors=True)


class PeakWatch:
    """Peak resident memory of this process (VmHWM) and of its child processes (the Spark JVM and
    its Python workers: the largest sum of their VmRSS seen, sampled every 0.5 s)."""

    def __init__(self, pid: int):
        import threading

        self.pid, self.peak_children, self._stop = pid, 0, threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    @staticmethod
    def _kb(pid: int, field: str) -> int:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith(field + ":"):
                    return int(line.split()[1])
        except OSError:
            pass
        return 0

    def _children(self) -> list[int]:
        out, todo = [], [self.pid]
        while todo:
            p = todo.pop()
            try:
                kids = [int(c) for t in Path(f"/proc/{p}/task").iterdir()
                        for c in (t / "children").read_text().split()]
            except OSError:
                kids = []
            out += kids
            todo += kids
        return out

    def _loop(self) -> None:
        while not self._stop.wait(0.5):
            self.peak_children = max(self.peak_children, sum(self._kb(c, "VmRSS") for c in self._children()))

    def stop(self) -> str:
        self._stop.set()
        self._thread.join()
        return (f"this process (driver, DuckDB) {self._kb(self.pid, 'VmHWM') / 1024:,.0f} MB, "
                f"Spark JVM + Python workers {self.peak_children / 1024:,.0f} MB")


if __name__ == "__main__":
    main()
