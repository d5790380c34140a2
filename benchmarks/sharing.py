"""Several processes on one workspace file at once (issue 11 point 3).

Two writer processes append items (one small batch per write, each its own transaction) in turn for
``--seconds`` while a reader process serves reads through the API the way the App does per HTTP request:
two clients, each sending a request every ~10 ms on a new thread; a request is ``ds.query`` with a DSL
filter and ``ws.list_datasets`` inside one ``ws.hold()``. Each process opens the workspace once, shared (the
default), and keeps its Workspace object for the whole run, as a notebook or the App would.

Reported: writes/s per writer, the longest wait for the lock, read latency p50/p95 and reads/s, lock or
other errors that reached a caller (must be 0), and rows at the end against the writes made (none lost).

    python benchmarks/sharing.py                 # 60 s
    python benchmarks/sharing.py --seconds 5
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this checkout's engine, as the worker processes (cwd=ROOT) use

_WRITER = """
import json, os, sys, time
import engine
db, tag, seconds, batch = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
ws = engine.connect(db)
ds = ws.get_dataset("shared")
import engine.ingest.items  # warm: imports are not what is measured
ds.query("metadata.n >= 0")
print("ready", flush=True); sys.stdin.readline()
writes = rows = errors = 0; err_text = []; slowest = 0.0
end = time.monotonic() + seconds
while time.monotonic() < end:
    items = [engine.DatasetItem(f"{tag}/{writes}/{k}.png", f"{tag}-{writes}-{k}", width=64, height=48,
                                metadata={"w": tag, "n": writes}) for k in range(batch)]
    t = time.monotonic()
    try:
        ds.append(items, check_images=False)
        writes += 1; rows += batch
    except Exception as e:  # noqa: BLE001 - counted and reported: none may reach a user
        errors += 1; err_text.append(f"{type(e).__name__}: {e}")
    slowest = max(slowest, time.monotonic() - t)
    if os.environ.get("LOUPE_GATE_TRACE"):
        print(f"{time.monotonic():.3f} {os.getpid()} append took {time.monotonic() - t:.3f}", file=sys.stderr, flush=True)
stats = ws.store.sharing_stats
ws.close()
print(json.dumps({"writes": writes, "rows": rows, "errors": errors, "err": err_text[:3], "slowest_s": slowest,
                  "stats": stats}), flush=True)
"""

_READER = """
import json, sys, threading, time
import engine
db, seconds = sys.argv[1], float(sys.argv[2])
ws = engine.connect(db, read_only=True)
ds = ws.get_dataset("shared")
ds.query("metadata.n >= 0")  # warm: imports and the DSL parser are not what is measured
print("ready", flush=True); sys.stdin.readline()
lat = []; errors = 0; err_text = []; seen = []
end = time.monotonic() + seconds


def request():  # what an App request does: one hold for all its API calls
    global errors
    t = time.monotonic()
    try:
        with ws.hold():
            n = ds.query("metadata.n >= 0").num_rows
            ws.list_datasets()
        seen.append((t, n))
    except Exception as e:  # noqa: BLE001
        errors += 1; err_text.append(f"{type(e).__name__}: {e}")
    lat.append(time.monotonic() - t)


def client():  # a browser tab: a request every ~10 ms, each on a new thread (ThreadingHTTPServer)
    while time.monotonic() < end:
        th = threading.Thread(target=request); th.start(); th.join()
        time.sleep(0.01)


tabs = [threading.Thread(target=client) for _ in range(2)]
for th in tabs: th.start()
for th in tabs: th.join()
stats = ws.store.sharing_stats
ws.close()
lat.sort(); seen.sort()
counts = [n for _, n in seen]
print(json.dumps({"reads": len(lat), "errors": errors, "err": err_text[:3],
                  "p50_ms": 1e3 * lat[len(lat) // 2] if lat else None,
                  "p95_ms": 1e3 * lat[int(len(lat) * 0.95)] if lat else None,
                  "monotonic": all(a <= b for a, b in zip(counts, counts[1:])),
                  "last_seen": counts[-1] if counts else None, "stats": stats}), flush=True)
"""


def run(db: str | Path, seconds: float, batch: int = 5) -> dict:
    """Run two writers and a reader on ``db`` for ``seconds``; return their reports and the final count."""
    import engine

    db = str(db)
    with engine.connect(db) as ws:  # one item, so the reader's query knows metadata.n from the start
        ws.create_dataset("shared").append([engine.DatasetItem("seed.png", "seed", width=64, height=48,
                                                               metadata={"w": "seed", "n": -1})], check_images=False)
    procs = {
        "writer_a": [_WRITER, db, "a", str(seconds), str(batch)],
        "writer_b": [_WRITER, db, "b", str(seconds), str(batch)],
        "reader": [_READER, db, str(seconds)],
    }
    running = {name: subprocess.Popen([sys.executable, "-c", *args], cwd=ROOT, stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, stderr=None if os.environ.get("LOUPE_GATE_TRACE") else subprocess.PIPE, text=True)
               for name, args in procs.items()}
    for name, p in running.items():
        line = p.stdout.readline().strip()
        if line != "ready":
            raise RuntimeError(f"{name} did not start: {line} {p.stderr.read()}")
    for p in running.values():  # all start together
        p.stdin.write("\n")
        p.stdin.flush()
    out = {}
    for name, p in running.items():
        stdout, stderr = p.communicate(timeout=seconds + 120)
        if p.returncode != 0:
            raise RuntimeError(f"{name} failed: {stderr}")
        out[name] = json.loads(stdout.strip().splitlines()[-1])
    with engine.connect(db, read_only=True) as ws:
        out["rows_at_end"] = ws.sql("SELECT count(*) AS n FROM items").column("n")[0].as_py()
        out["rows_per_writer"] = {r["w"]: r["n"] for r in ws.sql(
            "SELECT metadata->>'w' AS w, count(*) AS n FROM items GROUP BY 1").to_pylist()}
    out["rows_written"] = 1 + out["writer_a"]["rows"] + out["writer_b"]["rows"]  # with the seed item
    return out


def overhead(db: str | Path, items: int = 20_000, repeat: int = 30) -> dict:
    """What sharing costs one process alone: a repeated query on a shared store (connection kept through
    the burst) against an unshared one, the same query right after a release (reconnect + UDFs), and a
    bare DuckDB open + close of the file. Caches stay valid across a release (nobody else wrote)."""
    import duckdb
    import pyarrow as pa

    import engine

    db = str(db)
    with engine.connect(db, shared=False) as ws:
        ws.create_dataset("d").append(pa.table({
            "reference_id": [f"r{i}" for i in range(items)], "image_location": [f"/i/{i}.png" for i in range(items)],
            "width": [640] * items, "height": [480] * items,
            "metadata": [f'{{"n": {i}, "camera": "{"rear" if i % 2 else "front"}"}}' for i in range(items)]}),
            check_images=False)
    q = 'metadata.camera = "rear" AND metadata.n >= 100'

    def p50(f) -> float:
        ts = []
        for _ in range(repeat):
            t = time.perf_counter()
            f()
            ts.append(time.perf_counter() - t)
        return 1e3 * sorted(ts)[len(ts) // 2]

    out = {}
    for shared in (False, True):
        with engine.connect(db, shared=shared) as ws:
            ds = ws.get_dataset("d")
            for _ in range(3):
                ds.query(q)
            out[f"query_ms_{'shared' if shared else 'unshared'}"] = p50(lambda: ds.query(q))
            if shared:
                out["query_after_release_ms"] = p50(lambda: (ws.store._gate.release(), ds.query(q)))
                out["release_ms"] = p50(lambda: (ds.query(q), ws.store._gate.release())) - out["query_ms_shared"]
    out["duckdb_open_close_ms"] = p50(lambda: duckdb.connect(db).close())
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--batch", type=int, default=5, help="items per write")
    ap.add_argument("--overhead", action="store_true", help="only the one-process costs of sharing")
    args = ap.parse_args()
    if args.overhead:
        with tempfile.TemporaryDirectory() as tmp:
            o = overhead(Path(tmp) / "one.duckdb")
        print(f"repeated query p50: unshared {o['query_ms_unshared']:.2f} ms, shared {o['query_ms_shared']:.2f} ms; "
              f"right after a release {o['query_after_release_ms']:.2f} ms (reconnect "
              f"{o['query_after_release_ms'] - o['query_ms_shared']:.2f} ms); a release {o['release_ms']:.2f} ms; "
              f"bare DuckDB open + close {o['duckdb_open_close_ms']:.2f} ms")
        return
    with tempfile.TemporaryDirectory() as tmp:
        r = run(Path(tmp) / "shared.duckdb", args.seconds, args.batch)
    for w in ("writer_a", "writer_b"):
        s = r[w]
        print(f"{w}: {s['writes']} writes ({s['writes'] / args.seconds:.1f}/s), errors {s['errors']}, "
              f"slowest write {s['slowest_s'] * 1e3:.0f} ms, max lock wait {s['stats']['max_wait_s'] * 1e3:.0f} ms, "
              f"connects {s['stats']['connects']}, yields {s['stats']['yields']}")
    s = r["reader"]
    print(f"reader: {s['reads']} reads ({s['reads'] / args.seconds:.1f}/s), errors {s['errors']}, p50 "
          f"{s['p50_ms']:.1f} ms, p95 {s['p95_ms']:.1f} ms, max lock wait {s['stats']['max_wait_s'] * 1e3:.0f} ms, "
          f"counts never went back: {s['monotonic']}")
    print(f"rows at end {r['rows_at_end']} = rows written {r['rows_written']}: {r['rows_at_end'] == r['rows_written']}")
    for name in ("writer_a", "writer_b", "reader"):
        for e in r[name]["err"]:
            print(f"  {name} error: {e}")


if __name__ == "__main__":
    main()
