"""Similarity speed, side by side: Loupe vs plain numpy and faiss-cpu (extra 'bench'), each in its own subprocess.

    python benchmarks/similarity.py                          # everything (1M x 512 needs ~10 GB RAM, minutes)
    python benchmarks/similarity.py --parts exact --sizes 100000
    python benchmarks/similarity.py --parts hnsw --hnsw-n 200000
    python benchmarks/similarity.py --parts dups

Parts:
- exact: top-10 cosine over N x 512 float32 (clustered vectors), p50 over 30 single-vector queries after one
  warm-up. numpy = unit matrix @ q + argpartition (the floor); faiss = IndexFlatIP.search; Loupe =
  ``ds.similar(vector, k=10)`` on a workspace holding the set (includes the id lookup of the 10 rows).
- hnsw: ``ds.similarity_index`` (usearch HNSW, built once; its recall@10 vs exact on 200 of the set's vectors) and
  p50 of ``ds.similar(..., method="hnsw")`` over 100 queries on clustered vectors (raw usearch search p50 beside it),
  then a grid of search widths on the same graph. ``--hnsw-db F`` keeps the workspace and its index in F: build
  once (under load, if need be), then measure queries on a quiet machine with a second run.
- dups: ``ds.find_duplicates(max_hamming=10)`` over N 64-bit hashes (random, 1 % planted near-duplicates at 1-10
  bits), the DuckDB band join; recall of the planted pairs is printed.
Memory: each subprocess' peak RSS (VmHWM), which includes the generated data.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this checkout's engine, not an installed one
D = 512


def peak_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM"):
            return int(line.split()[1]) / 1024
    return float("nan")


def clustered(n: int, d: int = D, seed: int = 0, clusters: int = 1000) -> np.ndarray:
    """n vectors around the same 1,000 centres (drawn with seed 0); ``seed`` picks the members and noise,
    so queries (seed 99) come from the data's own clusters, as a real query image does."""
    rng = np.random.default_rng(0)
    centers = rng.standard_normal((clusters, d), dtype=np.float32)
    if seed:
        rng = np.random.default_rng(seed)
    out = np.empty((n, d), np.float32)
    for s in range(0, n, 100_000):
        e = min(n, s + 100_000)
        out[s:e] = centers[rng.integers(0, clusters, e - s)] + 0.5 * rng.standard_normal((e - s, d), dtype=np.float32)
    return out


def queries(n_q: int = 30, d: int = D) -> np.ndarray:
    return clustered(n_q, d, seed=99)


def p50(f, qs) -> float:
    f(qs[0])
    ts = []
    for q in qs:
        t = time.perf_counter()
        f(q)
        ts.append(time.perf_counter() - t)
    return float(np.median(ts) * 1000)


def workspace_with(vectors: np.ndarray | None = None, hashes: np.ndarray | None = None, db: str | None = None):
    """A workspace (in memory, or the file ``db``) holding the set; an existing ``db`` is reopened as is."""
    import pyarrow as pa

    import engine

    if db is not None and Path(db).exists():
        ws = engine.connect(db)
        return ws, ws.get_dataset("bench")
    ws = engine.connect(db) if db is not None else engine.connect()
    ds = ws.create_dataset("bench")
    n = len(vectors) if vectors is not None else len(hashes)
    refs = pa.array([f"i{i}" for i in range(n)])
    ds.append(pa.table({"reference_id": refs}), check_images=False)
    if vectors is not None:
        ds.add_embeddings("v", pa.table({"reference_id": refs, "vector": pa.FixedSizeListArray.from_arrays(
            pa.array(vectors.reshape(-1)), vectors.shape[1])}))
    if hashes is not None:
        ds.add_embeddings("ph", pa.table({"reference_id": refs, "hash": pa.array(hashes)}), model="phash")
    return ws, ds


# -- one measurement per subprocess ------------------------------------------------------------------
def run_exact(side: str, n: int) -> dict:
    x = clustered(n)
    qs = queries()
    out: dict = {"part": "exact", "side": side, "n": n}
    if side == "numpy":
        u = x / np.linalg.norm(x, axis=1, keepdims=True)

        def f(q):
            s = u @ (q / np.linalg.norm(q))
            top = np.argpartition(-s, 9)[:10]
            return top[np.argsort(-s[top])]
    elif side == "faiss":
        import faiss

        u = x / np.linalg.norm(x, axis=1, keepdims=True)
        index = faiss.IndexFlatIP(D)
        index.add(u)

        def f(q):
            return index.search((q / np.linalg.norm(q))[None, :], 10)
    else:
        t = time.perf_counter()
        ws, ds = workspace_with(vectors=x)
        out["load_s"] = time.perf_counter() - t
        del x
        t = time.perf_counter()
        ds.similar(qs[0], k=10, embeddings="v")  # reads the set into the cached matrix
        out["first_query_s"] = time.perf_counter() - t

        def f(q):
            return ds.similar(q, k=10, embeddings="v")
    out["p50_ms"] = p50(f, qs)
    out["peak_mb"] = peak_mb()
    return out


def run_hnsw(n: int, db: str | None = None) -> dict:
    qs = queries(100)
    reused = db is not None and Path(db).exists()
    ws, ds = workspace_with(vectors=None if reused else clustered(n), db=db)
    t, c = time.perf_counter(), time.process_time()
    report = ds.similarity_index("v")  # built, or read from beside a reused workspace file
    build, build_cpu = time.perf_counter() - t, time.process_time() - c
    from engine.similarity import search, sets

    entry = search.loaded(ds, sets.get_set(ds, "v"))
    raw = p50(lambda q: entry.hnsw.search(q / np.linalg.norm(q), 10), qs)
    ours = p50(lambda q: ds.similar(q, k=10, embeddings="v", method="hnsw"), qs)
    exact = [set(ds.similar(q, k=10, embeddings="v").column(0).to_pylist()) for q in qs]
    approx = [set(ds.similar(q, k=10, embeddings="v", method="hnsw").column(0).to_pylist()) for q in qs]
    recall_q = float(np.mean([len(a & b) / 10 for a, b in zip(exact, approx)]))
    from engine.similarity import hnsw

    grid = []  # the same ds.similar path with other search widths (one build)
    defaults = (entry.hnsw.expansion_search, hnsw.RERANK, hnsw.MIN_CANDIDATES)
    for ef, rerank, floor in GRID:
        entry.hnsw.expansion_search, hnsw.RERANK, hnsw.MIN_CANDIDATES = ef, rerank, floor
        ms = p50(lambda q: ds.similar(q, k=10, embeddings="v", method="hnsw"), qs)
        got = [set(ds.similar(q, k=10, embeddings="v", method="hnsw").column(0).to_pylist()) for q in qs]
        grid.append({"expansion_search": ef, "candidates": f"max({rerank}k, {floor})", "p50_ms": ms,
                     "recall_at_10": float(np.mean([len(a & b) / 10 for a, b in zip(exact, got)]))})
    entry.hnsw.expansion_search, hnsw.RERANK, hnsw.MIN_CANDIDATES = defaults
    return {"grid": grid, "part": "hnsw", "side": "loupe", "n": n, "reused": reused, "report": report, "build_s": build, "build_cpu_s": build_cpu, "recall_at_10_build": report["recall_at_10"],
            "recall_at_10_queries": recall_q, "p50_ms": ours, "usearch_raw_p50_ms": raw, "peak_mb": peak_mb()}


GRID = ((64, 4, 40), (128, 10, 100), (128, 20, 200), (256, 20, 200), (512, 40, 400))  # ef, RERANK, MIN_CANDIDATES


def run_dups(n: int) -> dict:
    rng = np.random.default_rng(1)
    h = rng.integers(0, 2 ** 63, size=n, dtype=np.int64).astype(np.uint64) * np.uint64(2) + rng.integers(0, 2, n).astype(np.uint64)
    planted = []
    for i in rng.choice(n // 2, n // 100, replace=False):
        j = n // 2 + int(i)
        bits = rng.choice(64, int(rng.integers(1, 11)), replace=False)
        h[j] = h[i] ^ np.uint64(sum(1 << int(b) for b in bits))
        planted.append((int(i), j))
    ws, ds = workspace_with(hashes=h)
    t, c = time.perf_counter(), time.process_time()
    g = ds.find_duplicates("phash", max_hamming=10)
    took, cpu = time.perf_counter() - t, time.process_time() - c
    groups: dict = {}
    for grp, ref in zip(g.column("group").to_pylist(), g.column("reference_id").to_pylist()):
        groups.setdefault(ref, grp)
    found = sum(1 for i, j in planted if f"i{i}" in groups and groups.get(f"i{i}") == groups.get(f"i{j}"))
    return {"part": "dups", "side": "loupe", "n": n, "seconds": took, "cpu_seconds": cpu, "members": len(g),
            "planted_recall": found / len(planted), "peak_mb": peak_mb()}


def sub(args: list[str]) -> dict:
    r = subprocess.run([sys.executable, __file__, "--one", *args], cwd=ROOT, capture_output=True, text=True)
    if r.returncode:
        return {"error": r.stderr.strip().splitlines()[-1] if r.stderr.strip() else f"exit {r.returncode}", "args": args}
    return json.loads(r.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--parts", default="exact,hnsw,dups")
    ap.add_argument("--sizes", default="100000,1000000", help="exact: set sizes")
    ap.add_argument("--hnsw-n", type=int, default=1_000_000)
    ap.add_argument("--hnsw-db", help="hnsw: keep the workspace (and its index) in this file; reuse it when it exists, "
                    "so a later run measures queries without rebuilding")
    ap.add_argument("--dups-n", type=int, default=100_000)
    ap.add_argument("--one", nargs="+", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.one:
        kind = a.one[0]
        if kind == "exact":
            res = run_exact(a.one[1], int(a.one[2]))
        elif kind == "hnsw":
            res = run_hnsw(int(a.one[1]), a.one[2] if len(a.one) > 2 else None)
        else:
            res = run_dups(int(a.one[1]))
        print(json.dumps(res))
        return
    parts = a.parts.split(",")
    if "exact" in parts:
        for n in (int(s) for s in a.sizes.split(",")):
            rows = {side: sub(["exact", side, str(n)]) for side in ("numpy", "faiss", "loupe")}
            base = rows["numpy"].get("p50_ms")
            print(f"exact top-10, {n:,} x {D}:")
            for side, r in rows.items():
                if "error" in r:
                    print(f"  {side:6s} error: {r['error']}")
                    continue
                extra = f"  (load {r['load_s']:.1f} s, first query {r['first_query_s']:.2f} s)" if side == "loupe" else ""
                print(f"  {side:6s} p50 {r['p50_ms']:8.2f} ms  = {r['p50_ms'] / base:5.2f}x numpy  "
                      f"peak RSS {r['peak_mb']:7.0f} MB{extra}")
    if "hnsw" in parts:
        r = sub(["hnsw", str(a.hnsw_n)] + ([a.hnsw_db] if a.hnsw_db else []))
        print(f"HNSW (usearch), {a.hnsw_n:,} x {D} clustered: " + (f"error: {r['error']}" if "error" in r else
              f"{'index read from ' + str(a.hnsw_db) if r['reused'] else 'build'} {r['build_s']:.0f} s ({r['build_cpu_s']:.0f} s CPU), "
              f"connectivity {r['report']['connectivity']}, expansion_add {r['report']['expansion_add']}, {r['report']['dtype']},  recall@10 {r['recall_at_10_build']:.3f} (build sample) / "
              f"{r['recall_at_10_queries']:.3f} (queries), p50 {r['p50_ms']:.2f} ms via ds.similar "
              f"(raw usearch {r['usearch_raw_p50_ms']:.2f} ms), peak RSS {r['peak_mb']:.0f} MB"))
        for g in r.get("grid", []):
            print(f"  expansion_search {g['expansion_search']:4d}, {g['candidates']:16s} re-ranked: "
                  f"recall@10 {g['recall_at_10']:.3f}, p50 {g['p50_ms']:.2f} ms")
    if "dups" in parts:
        r = sub(["dups", str(a.dups_n)])
        print(f"near-duplicates, {a.dups_n:,} 64-bit hashes, max_hamming=10: " + (f"error: {r['error']}" if "error" in r
              else f"{r['seconds']:.2f} s wall, {r['cpu_seconds']:.2f} s CPU, {r['members']} members, planted-pair recall {r['planted_recall']:.3f}, "
                   f"peak RSS {r['peak_mb']:.0f} MB"))


if __name__ == "__main__":
    main()
