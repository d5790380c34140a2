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
difference of the 12 stats (must be 0 or ~1e-16). The target scale is 50,000 images / 5M detections;
on a shared machine run a smaller size and extrapolate linearly (say so with the figures).

Usage::

    python benchmarks/spark.py --images 5000 --dets 500000 --cores 2 --repeat 1
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
    a = ap.parse_args()

    import engine
    from engine.io.parquet_tables import export_tables
    from engine.spark import local_session
    from engine.spark.commit import spark_commit

    gt, res = data_files(a.images, a.dets)
    tmp = Path(tempfile.mkdtemp(prefix="loupe-spark-bench-"))
    try:
        t0 = time.perf_counter()
        ws = engine.connect(tmp / "w.duckdb")
        ws.import_coco(gt, "bench", results=res, run="dets", check_images=False, clip="keep")
        ws.store.con.execute(f"SET threads = {int(a.cores)}")
        n_dt = int(ws.store.scalar("SELECT count(*) FROM predictions"))
        export_tables(ws, tmp / "tables")
        print(f"data: {a.images} images, {n_dt} detections; import + export {time.perf_counter() - t0:.1f} s",
              flush=True)
        t0 = time.perf_counter()
        spark = local_session(f"local[{a.cores}]", {"spark.driver.memory": "4g"})
        print(f"spark session start: {time.perf_counter() - t0:.1f} s", flush=True)
        run = ws.get_run("dets")
        best = {"duckdb": float("inf"), "spark": float("inf")}
        stats = {}
        for _ in range(a.repeat):
            t0 = time.perf_counter()
            stats["duckdb"] = list(run.commit()["stats"].values())
            best["duckdb"] = min(best["duckdb"], time.perf_counter() - t0)
            print(f"  duckdb round: {time.perf_counter() - t0:.1f} s  load {os.getloadavg()[0]:.1f}", flush=True)
            t0 = time.perf_counter()
            steps: dict[str, float] = {}
            r = spark_commit(tmp / "tables", "dets", tmp / "spark_out", spark=spark, partitions=a.partitions,
                             timings=steps)
            best["spark"] = min(best["spark"], time.perf_counter() - t0)
            print(f"  spark round: {time.perf_counter() - t0:.1f} s  (" +
                  ", ".join(f"{k} {v:.1f} s" for k, v in steps.items()) + f")  load {os.getloadavg()[0]:.1f}",
                  flush=True)
            stats["spark"] = list(r["stats"].values())
        diff = max(abs(x - y) for x, y in zip(stats["duckdb"], stats["spark"]))
        for side in ("duckdb", "spark"):
            s = best[side]
            print(f"{side:7s} commit {s:8.1f} s   {n_dt / s / a.cores:12,.0f} detections/s/core")
        print(f"spark / duckdb time: {best['spark'] / best['duckdb']:.2f}x   max |stat diff| = {diff:.3g}")
        ws.close()
        spark.stop()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
