"""Benchmark: DSL compile time and compile + run latency on 100,000 items and ~700,000 boxes.

The dataset (items with JSON metadata, ground-truth boxes, one committed run with ~700,000 predictions and
its ~1.4M matches rows) is written straight into the tables with Arrow, as a commit would leave them, and
a static "test" slice holds every fifth item. Each query is timed as a user sees it: catalog lookup,
DSL -> SQL, DuckDB execution, Arrow result.

    python benchmarks/query.py                      # in memory, 100k items
    python benchmarks/query.py --db /tmp/q.duckdb   # keep (and reuse) the workspace file
    python benchmarks/query.py --items 20000 --repeat 10

Prints a Markdown table (the "Query" section of benchmarks/README.md). "compile ms" is what a query needs
before it runs (item queries: the SQL text; object queries: the compiled plan, run on the in-memory object
copy; their SQL text is generated only when DuckDB runs them), "DSL→SQL ms" the SQL text for every query.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import engine  # noqa: E402
from engine.execution import catalog as query_catalog  # noqa: E402
from engine.execution import object_cache  # noqa: E402
from engine.store import item_values, label_counts, match_counts  # noqa: E402
from engine.store.match_order import storage_order  # noqa: E402
from engine.execution.catalog import DuckDBCatalog  # noqa: E402
from queries import compile_query  # noqa: E402

LABELS = ["pedestrian", "car", "truck", "bus", "bicycle", "traffic light", "stop-sign"]

QUERIES = [
    # (name, target, run, dsl)
    ("crowded scenes", "items", None, "annotations.pedestrian >= 4"),
    ("metadata + count", "items", None, 'metadata.camera = "rear" AND annotations.count > 8'),
    ("label arithmetic", "items", None, "annotations.truck + annotations.bus >= 3"),
    ("nested metadata", "items", None, "metadata.weather.rain > 0.9 AND NOT metadata.weather.fog"),
    ("FPs per item", "items", "r1", "predictions.fp >= 3"),
    ("test slice, missed pedestrians", "items", "r1", 'slice("test") AND predictions.pedestrian.fn > 0'),
    ("crowded, first 50", "items", None, "annotations.pedestrian >= 4 LIMIT 50"),
    ("FPs by confidence, top 50", "objects", "r1", 'status = "fp" AND confidence > 0.8 ORDER BY confidence DESC LIMIT 50'),
    ("worst-IoU TPs, 50", "objects", "r1", 'status = "tp" ORDER BY iou ASC LIMIT 50'),
    ("small GT (all rows)", "objects", "r1", 'source = "gt" AND area < 32 * 32'),
    ("rear-camera FPs (all rows)", "objects", "r1", 'status = "fp" AND confidence > 0.8 AND item.metadata.camera = "rear"'),
]


def build(ws: "engine.Workspace", n_items: int, per_item: float, seed: int = 0) -> None:
    """Write the benchmark dataset into an empty workspace (Arrow inserts, one transaction per table)."""
    rng = np.random.default_rng(seed)
    ds = ws.create_dataset("bench")
    con = ws.store.con
    ids = np.arange(1, n_items + 1)
    cams = np.array(["front", "rear", "left", "right"])[rng.integers(0, 4, n_items)]
    rain = np.round(rng.random(n_items), 3)
    meta = [json.dumps({"camera": c, "frame": int(i), "weather": {"rain": float(r), "fog": bool(i % 5 == 0)},
                        "speed": int(i % 90)}) for i, c, r in zip(ids, cams, rain)]
    items = pa.table({"item_id": ids, "reference_id": [f"img{i:06d}" for i in ids],
                      "image_location": [f"/data/img{i:06d}.jpg" for i in ids], "metadata": meta})
    con.register("__b_items", items)
    con.execute(f"INSERT INTO items SELECT item_id, {ds.id}, reference_id, image_location, 640, 480, metadata::JSON "
                "FROM __b_items")
    item_values.rebuild(ws.store, ds.id)  # what append keeps up to date in its transaction
    n_per = rng.poisson(per_item, n_items)
    n = int(n_per.sum())
    item_of = np.repeat(ids, n_per)
    p = 1 / np.arange(1, len(LABELS) + 1)
    lab = np.array(LABELS)[rng.choice(len(LABELS), n, p=p / p.sum())]
    w, h = rng.uniform(4, 200, n), rng.uniform(4, 200, n)
    x, y = rng.uniform(0, 640 - w), rng.uniform(0, 480 - h)
    ann = pa.table({"ann_key": np.arange(1, n + 1), "item_id": item_of, "annotation_id": [f"a{i}" for i in range(n)],
                    "label": lab, "x": x, "y": y, "width": w, "height": h, "area": w * h, "seq": np.arange(n)})
    con.register("__b_ann", ann)
    con.execute(f"""INSERT INTO annotations (ann_key, dataset_id, item_id, annotation_id, kind, label, x, y, width,
                        height, iscrowd, area, seq, valid_from, valid_to)
                    SELECT ann_key, {ds.id}, item_id, annotation_id, 'box', label, x, y, width, height, false, area,
                           seq, 1, NULL FROM __b_ann""")
    con.execute("UPDATE datasets SET label_version = 1 WHERE dataset_id = ?", [ds.id])
    label_counts.rebuild(ws.store, ds.id)  # what the ingest path keeps up to date in its transaction
    model = ws.add_model("detector")
    con.execute(f"INSERT INTO runs VALUES (1, {model.id}, {ds.id}, 'r1', now()::TIMESTAMP, NULL, now()::TIMESTAMP, 1, "
                "'{\"iou_threshold\": 0.5}')")
    # predictions: a jittered copy of 80% of the GT (true positives) + 20% background boxes (false positives)
    tp = rng.random(n) < 0.8
    ptp = np.flatnonzero(tp)
    n_fp = int(n * 0.2)
    pitem = np.concatenate([item_of[ptp], rng.choice(ids, n_fp)])
    m = len(pitem)
    plab = np.concatenate([lab[ptp], np.array(LABELS)[rng.choice(len(LABELS), n_fp, p=p / p.sum())]])
    pw, ph = np.concatenate([w[ptp], rng.uniform(4, 200, n_fp)]), np.concatenate([h[ptp], rng.uniform(4, 200, n_fp)])
    px = np.concatenate([x[ptp] + rng.normal(0, 2, len(ptp)), rng.uniform(0, 400, n_fp)])
    py = np.concatenate([y[ptp] + rng.normal(0, 2, len(ptp)), rng.uniform(0, 280, n_fp)])
    pred = pa.table({"pred_key": np.arange(1, m + 1), "item_id": pitem, "annotation_id": [f"p{i}" for i in range(m)],
                     "label": plab, "x": px, "y": py, "width": pw, "height": ph,
                     "confidence": np.round(rng.random(m), 3), "area": pw * ph, "seq": np.arange(m)})
    con.register("__b_pred", pred)
    con.execute("""INSERT INTO predictions (pred_key, run_id, item_id, annotation_id, kind, label, x, y, width, height,
                        confidence, area, seq)
                   SELECT pred_key, 1, item_id, annotation_id, 'box', label, x, y, width, height, confidence, area, seq
                   FROM __b_pred""")
    iou = np.round(rng.uniform(0.5, 1.0, len(ptp)), 4)
    is_tp = np.arange(m) < len(ptp)
    partner = np.concatenate([ptp + 1, np.zeros(n_fp, np.int64)])
    mp = pa.table({"source": pa.array(["prediction"] * m), "ann_key": pa.array(partner, mask=~is_tp),
                   "pred_key": np.arange(1, m + 1), "item_id": pitem,
                   "iou": pa.array(np.concatenate([iou, np.zeros(n_fp)]), mask=~is_tp),
                   "status": pa.array(np.where(is_tp, "tp", "fp")),
                   "error_type": pa.array(np.where(is_tp, None, "background").tolist())})
    gpred = np.zeros(n, np.int64)
    gpred[ptp] = np.arange(1, len(ptp) + 1)
    giou = np.zeros(n)
    giou[ptp] = iou
    mg = pa.table({"source": pa.array(["gt"] * n), "ann_key": np.arange(1, n + 1), "pred_key": pa.array(gpred, mask=~tp),
                   "item_id": item_of, "iou": pa.array(giou, mask=~tp), "status": pa.array(np.where(tp, "tp", "fn")),
                   "error_type": pa.array(np.where(tp, None, "missed").tolist())})
    con.register("__b_m", storage_order(pa.concat_tables([mp, mg])))  # the order commit writes them in
    con.execute("INSERT INTO matches SELECT 1, 0.5, source, ann_key, pred_key, item_id, iou, iou, "
                "coalesce(ann_key, pred_key), status, error_type FROM __b_m")
    match_counts.rebuild(ws.store, ds.id)  # what commit writes in its transaction
    con.execute("CHECKPOINT")
    ds.create_slice("test", reference_ids=[f"img{i:06d}" for i in ids[::5]])


def _pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


def _forget_compiled(ws: "engine.Workspace", ds_id: int, token: bool = True) -> None:
    """Drop the compiled-query cache (a new query text compiles) and the catalog version token (``token``:
    the first query after a write reads it again)."""
    cache = query_catalog._CACHE.get(ws.store, {})
    cache.pop((ds_id, "compiled"), None)
    if token:
        cache.pop((ds_id, "token"), None)


def run(ws: "engine.Workspace", repeat: int) -> list[dict]:
    """Per query: DSL -> SQL alone, then ``ds.query`` / ``ds.query_objects`` end to end, cold and warm.

    Compile + run: a query text not seen before (no compiled-query cache; the catalog is current).
    + catalog version read: also no catalog version token (read again once per store generation, i.e. by
    the first query after a write; that query also finds no copies: it runs all in DuckDB, timed as
    "first after a write" by moving the store's generation as a write does).
    Repeated: what ``ds.query`` does when the same text comes again on unchanged data (cached, execution).
    Both read item rows from the dataset's in-memory copy (engine/execution/item_cache.py) and object queries run on
    the run's object copy (engine/execution/object_cache.py); the first query after a write uses neither and the
    second builds them (timed apart by :func:`object_copy_cost`); the data is unchanged during the runs.
    Object queries are also timed all in DuckDB (copy turned off), for the ratio.
    """
    ds = ws.get_dataset("bench")
    results = []
    for name, target, run_name, dsl in QUERIES:
        query = ds.query if target == "items" else ds.query_objects
        for _ in range(2):  # warm DuckDB, the catalog's cached parts and the item rows copy
            query(dsl, run=run_name)
        pure, needed, fresh, cold, warm, first = [], [], [], [], [], []
        rows = 0
        catalog = DuckDBCatalog(ws.store, ds.id)
        for _ in range(repeat):
            t0 = time.perf_counter()
            compiled = compile_query(dsl, catalog, target=target, run=run_name)
            t1 = time.perf_counter()
            compiled.sql()
            t2 = time.perf_counter()
            pure.append(t2 - t0)  # DSL -> SQL text
            # what running it needs: object queries on the in-memory copy run the compiled plan, no SQL
            needed.append((t1 - t0) if target == "objects" else (t2 - t0))
        for _ in range(repeat):
            _forget_compiled(ws, ds.id, token=False)
            t0 = time.perf_counter()
            query(dsl, run=run_name)
            fresh.append(time.perf_counter() - t0)
        for _ in range(repeat):
            _forget_compiled(ws, ds.id)
            t0 = time.perf_counter()
            rows = query(dsl, run=run_name).num_rows
            cold.append(time.perf_counter() - t0)
        for _ in range(repeat):
            t0 = time.perf_counter()
            query(dsl, run=run_name)
            warm.append(time.perf_counter() - t0)
        for _ in range(repeat):  # as if something was written just before: no copies, version read again
            ws.store.generation += 1
            _forget_compiled(ws, ds.id)
            t0 = time.perf_counter()
            query(dsl, run=run_name)
            first.append(time.perf_counter() - t0)
        for _ in range(2):  # the copies again (the next query after a write builds them)
            query(dsl, run=run_name)
        sql_only = []
        if target == "objects":  # the same query with the object copy turned off: all in DuckDB
            budget, object_cache.COPIES.max_bytes = object_cache.COPIES.max_bytes, 0
            try:
                for _ in range(repeat):
                    t0 = time.perf_counter()
                    query(dsl, run=run_name)
                    sql_only.append(time.perf_counter() - t0)
            finally:
                object_cache.COPIES.max_bytes = budget
        results.append({"query": name, "dsl": dsl, "rows": rows, "dsl_to_sql_ms": 1000 * statistics.median(pure),
                        "compile_ms": 1000 * statistics.median(needed),
                        "fresh_p50": 1000 * _pct(fresh, 0.5), "fresh_p95": 1000 * _pct(fresh, 0.95),
                        "cold_p50": 1000 * _pct(cold, 0.5), "cold_p95": 1000 * _pct(cold, 0.95),
                        "p50_ms": 1000 * _pct(warm, 0.5), "p95_ms": 1000 * _pct(warm, 0.95),
                        "first_p50": 1000 * _pct(first, 0.5),
                        "sql_p50": 1000 * _pct(sql_only, 0.5) if sql_only else None})
    return results


def object_copy_cost(ws: "engine.Workspace", run_name: str = "r1") -> tuple[float, float | None]:
    """Seconds to build the run's in-memory object copy (the second object query after a write) and its MB
    (None when the run does not fit the copy budget: object queries then stay in DuckDB)."""
    ds = ws.get_dataset("bench")
    object_cache.forget(ws.store)
    ds.query_objects("", run=run_name, limit=1)  # first query of the generation: DuckDB
    t0 = time.perf_counter()
    ds.query_objects("", run=run_name, limit=1)  # second: builds the copy
    seconds = time.perf_counter() - t0
    entry = object_cache.COPIES.entries.get(ws.store, {}).get(("objects", ds.id, run_name))
    copy = None if entry is None else entry.value
    return seconds, None if copy is None else copy.nbytes / 2**20


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--items", type=int, default=100_000)
    ap.add_argument("--per-item", type=float, default=7.0, help="mean GT boxes per item")
    ap.add_argument("--repeat", type=int, default=30)
    ap.add_argument("--db", default=None, help="workspace file (reused when it already holds the dataset)")
    ap.add_argument("--threads", type=int, default=None, help="DuckDB threads (default: all cores)")
    args = ap.parse_args()
    reuse = args.db is not None and Path(args.db).exists()
    ws = engine.connect(args.db, read_only=reuse)
    if args.threads:
        ws.store.con.execute(f"SET threads = {int(args.threads)}")
    if not reuse:
        t0 = time.perf_counter()
        build(ws, args.items, args.per_item)
        print(f"built in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    counts = ws.sql("""SELECT (SELECT count(*) FROM items) items, (SELECT count(*) FROM annotations) boxes,
                              (SELECT count(*) FROM predictions) predictions, (SELECT count(*) FROM matches) matches"""
                    ).to_pylist()[0]
    print(f"{counts['items']:,} items, {counts['boxes']:,} GT boxes, {counts['predictions']:,} predictions, "
          f"{counts['matches']:,} matches rows; {args.repeat} runs per query\n")
    seconds, mb = object_copy_cost(ws)
    if mb is None:
        print(f"object copy of run r1 (engine/execution/object_cache.py): not built, the run exceeds the "
              f"{object_cache.COPIES.max_bytes / 2**20:.0f} MB budget (object queries run in DuckDB); "
              f"second query {seconds:.2f} s\n")
    else:
        print(f"object copy of run r1 (engine/execution/object_cache.py): built in {seconds:.2f} s, {mb:.0f} MB\n")
    res = run(ws, args.repeat)
    print("| query | DSL | rows | compile ms | DSL→SQL ms | compile + run p50 / p95 ms | + catalog version read "
          "p50 / p95 ms | repeated p50 / p95 ms | all-DuckDB repeated p50 ms | first after a write p50 ms |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in res:
        sql = "" if r["sql_p50"] is None else f"{r['sql_p50']:.1f} ({r['sql_p50'] / r['p50_ms']:.1f}x)"
        print(f"| {r['query']} | `{r['dsl']}` | {r['rows']:,} | {r['compile_ms']:.2f} | {r['dsl_to_sql_ms']:.2f} | "
              f"{r['fresh_p50']:.1f} / {r['fresh_p95']:.1f} | {r['cold_p50']:.1f} / {r['cold_p95']:.1f} | "
              f"{r['p50_ms']:.1f} / {r['p95_ms']:.1f} | {sql} | {r['first_p50']:.1f} |")
    ws.close()


if __name__ == "__main__":
    main()
