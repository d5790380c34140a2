"""Benchmark: the Loupe App's server on the query benchmark's workspace (100k items, ~700k boxes, one run).

Measures what a user waits for, over real HTTP on 127.0.0.1 (the App runs in this process, in its
background thread): the first grid page (60 items with their GT and prediction boxes, cold), DSL
query round trips (each query new, so no result cache helps), a cached thumbnail, and the server's
memory. The peer is the query alone through the Python API (``ds.query``, a new text each time), so the
ratio is what the App adds (HTTP, JSON, paging, the page's boxes). "CPU ms" is this process's CPU time
per request (server thread, DuckDB's threads and the client): on a shared machine it varies far less
than wall time, so it is printed with the load average.

    python benchmarks/app.py --db /tmp/q.duckdb        # builds the workspace once (~40 s), then reuses it
    python benchmarks/app.py --items 20000
"""
from __future__ import annotations

import argparse
import http.client
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import engine  # noqa: E402
from engine.app.server import App  # noqa: E402
from engine.app.thumbs import make_thumb, thumb_path  # noqa: E402


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


CPU: list[float] = []  # process CPU ms of each request (server thread + DuckDB threads + this client)


def get(conn: http.client.HTTPConnection, path: str) -> tuple[float, float, bytes]:
    """(wall ms, server ms from Server-Timing or nan, body)."""
    t, c = time.perf_counter(), time.process_time()
    conn.request("GET", path)
    r = conn.getresponse()
    body = r.read()
    wall = (time.perf_counter() - t) * 1000
    CPU.append((time.process_time() - c) * 1000)
    st = r.getheader("Server-Timing") or ""
    server = float(st.split("dur=")[1]) if "dur=" in st else float("nan")
    if r.status != 200:
        raise SystemExit(f"{path}: HTTP {r.status}: {body[:200]!r}")
    return wall, server, body


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--db", default=None, help="workspace file (built by benchmarks/query.py's build when absent)")
    ap.add_argument("--items", type=int, default=100_000)
    ap.add_argument("--per-item", type=float, default=7.0)
    ap.add_argument("--repeat", type=int, default=15)
    args = ap.parse_args()

    from query import build  # benchmarks/query.py: the same dataset as the query benchmark

    mem0 = rss_mb()
    if args.db and Path(args.db).exists():
        ws = engine.connect(args.db, read_only=True)
    else:
        ws = engine.connect(args.db)
        t = time.perf_counter()
        build(ws, args.items, args.per_item)
        print(f"built the workspace in {time.perf_counter() - t:.1f} s", file=sys.stderr)
    ds = ws.get_dataset("bench")
    n_items = ds.info()["items"]
    n_boxes = int(ws.sql("SELECT count(*) FROM annotations WHERE valid_to IS NULL").column(0)[0].as_py())
    n_preds = int(ws.sql("SELECT count(*) FROM predictions").column(0)[0].as_py())
    mem_ws = rss_mb()
    cache = Path(tempfile.mkdtemp(prefix="loupe-bench-thumbs-"))
    app = App(ws, port=0, cache_dir=cache, read_only=True).start()
    conn = http.client.HTTPConnection("127.0.0.1", app.port, timeout=120)
    print(f"# Loupe App on {n_items:,} items, {n_boxes:,} GT boxes, {n_preds:,} predictions (run r1)\n")
    load0 = f"{os.getloadavg()[0]:.1f}"
    rows = []

    def cpu_p50(n: int) -> float:  # the CPU ms of the last n requests
        return statistics.median(CPU[-n:])

    # first grid page: cold (the first request of the launch), then warm repeats
    wall, server, _ = get(conn, "/api/items?dataset=bench&run=r1&offset=0&limit=60")
    rows.append(("first grid page, cold (60 items + boxes)", server, wall, None, cpu_p50(1)))
    warm = [get(conn, f"/api/items?dataset=bench&run=r1&offset={60 * (k + 1)}&limit=60") for k in range(args.repeat)]
    rows.append(("next grid pages, p50", statistics.median(w[1] for w in warm), statistics.median(w[0] for w in warm), None,
                 cpu_p50(len(warm))))
    deep = [get(conn, f"/api/items?dataset=bench&run=r1&offset={n_items - 60 - k}&limit=60") for k in range(3)]
    rows.append(("last page (offset ~100k), p50", statistics.median(w[1] for w in deep), statistics.median(w[0] for w in deep), None,
                 cpu_p50(len(deep))))

    # DSL query round trips: a new query each time (query + first page with boxes)
    qs = [f"annotations.pedestrian >= {k % 6 + 1} AND metadata.camera = \"{['rear', 'front', 'side'][k % 3]}\" "
          f"AND annotations.count > {k}" for k in range(args.repeat)]
    trips = [get(conn, f"/api/items?dataset=bench&run=r1&limit=60&q={quote(q)}") for q in qs]
    trips_cpu = cpu_p50(len(trips))
    peer, peer_cpu = [], []
    for k, q in enumerate(qs):
        q2 = q + f" AND width > {-(k + 1)}"  # new text: no compiled/result cache
        t, c = time.perf_counter(), time.process_time()
        ds.query(q2)
        peer.append((time.perf_counter() - t) * 1000)
        peer_cpu.append((time.process_time() - c) * 1000)
    rows.append(("DSL query round trip, p50", statistics.median(t[1] for t in trips),
                 statistics.median(t[0] for t in trips), statistics.median(peer), trips_cpu))
    rows.append(("  its peer ds.query alone, CPU p50", float("nan"), float("nan"), None, statistics.median(peer_cpu)))
    errs = [get_err(conn, f"/api/items?dataset=bench&q={quote('anotations.pedestrian >= 4')}") for _ in range(args.repeat)]
    rows.append(("query with a typo (error + caret), p50", float("nan"), statistics.median(errs), None, float("nan")))

    # cached thumbnails: made once (a generated JPEG stands in for the missing benchmark images)
    from PIL import Image

    src = cache / "src.jpg"
    Image.new("RGB", (640, 480), (90, 120, 150)).save(src)
    refs = ds.query("width > 0", limit=args.repeat).column("reference_id").to_pylist()
    for r in refs:
        make_thumb(src, thumb_path(cache, ds.id, r))
    thumbs = [get(conn, f"/thumb/bench/{quote(r, safe='')}")[0] for r in refs]
    rows.append(("cached thumbnail, p50", float("nan"), statistics.median(thumbs), None, cpu_p50(len(thumbs))))

    # patches and item view
    p = [get(conn, "/api/patches?dataset=bench&run=r1&status=fp&sort=confidence&desc=1&limit=60") for _ in range(3)]
    rows.append(("patches page (FP by confidence), p50", statistics.median(x[1] for x in p), statistics.median(x[0] for x in p), None,
                 cpu_p50(len(p))))
    it = [get(conn, f"/api/item?dataset=bench&run=r1&ref={quote(r)}") for r in refs]
    rows.append(("item view, p50", statistics.median(x[1] for x in it), statistics.median(x[0] for x in it), None,
                 cpu_p50(len(it))))

    print(f"load average before the requests: {load0}; after: {os.getloadavg()[0]:.1f}\n")
    print("| request | server ms | round trip ms | CPU ms | Python API ms | App / API |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, server, wall, api, cpu in rows:
        ratio = f"{wall / api:.2f}" if api else ""
        print(f"| {name} | {server:.1f} | {wall:.1f} | {cpu:.1f} | {api:.1f} | {ratio} |" if api else
              f"| {name} | {server:.1f} | {wall:.1f} | {cpu:.1f} |  | |")
    print(f"\nserver memory (RSS): {rss_mb():.0f} MB after the requests; {mem_ws:.0f} MB with the workspace "
          f"open before the App started; {mem0:.0f} MB at interpreter start")
    app.stop()
    ws.close()


def get_err(conn: http.client.HTTPConnection, path: str) -> float:
    t = time.perf_counter()
    conn.request("GET", path)
    r = conn.getresponse()
    r.read()
    assert r.status == 400
    return (time.perf_counter() - t) * 1000


if __name__ == "__main__":
    main()
