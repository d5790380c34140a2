"""``matches`` rows are written by source, status and IoU (engine/store/match_order.py), and the catalog
reads a run's IoU thresholds from them."""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from engine.execution.catalog import DuckDBCatalog
from engine.store import match_order
from engine.store.match_order import in_batches, storage_order
from tests.oracle.coco_random import import_pair, random_pair


def _keys(table: pa.Table) -> tuple[list[str], list[str], np.ndarray]:
    source = table.column("source").cast(pa.string()).to_pylist()
    status = table.column("status").cast(pa.string()).to_pylist()
    return source, status, table.column("iou").to_numpy(zero_copy_only=False)


def assert_storage_order(source: list[str], status: list[str], iou: np.ndarray) -> None:
    groups = list(zip(source, status))
    assert groups == sorted(groups)  # each (source, status) one run, in order
    for g in set(groups):
        v = iou[[k for k, x in enumerate(groups) if x == g]]
        known = ~np.isnan(v)
        assert not (known[1:] & ~known[:-1]).any()  # NULL IoU after the others
        assert (np.diff(v[known]) >= -1 / 65534).all()  # ascending, to 16 bits


@pytest.mark.parametrize("seed", range(5))
def test_storage_order_sorts_stably(seed, monkeypatch):
    rng = np.random.default_rng(seed)
    n = 3000
    status = rng.choice(["tp", "fp", "fn", "ignored"], n)
    iou = np.where(status == "tp", rng.choice([0.5, 0.5 + 1e-9, 0.7, 0.95, 1.0], n), np.nan)
    iou[rng.random(n) < 0.05] = rng.random()  # an fp with an IoU (below the threshold)
    source = rng.choice(["gt", "prediction"], n)
    table = pa.table({"source": pa.array(source).dictionary_encode() if seed % 2 else pa.array(source),
                      "status": pa.array(status).dictionary_encode(),
                      "iou": pa.array(iou, from_pandas=True), "k": np.arange(n)})
    out = storage_order(table)
    assert sorted(out.column("k").to_pylist()) == list(range(n))  # a permutation of the rows
    assert_storage_order(*_keys(out))
    # equal keys keep their input order (fp / fn rows stay by item)
    s, st, v = _keys(out)
    k = out.column("k").to_numpy()
    level = np.where(np.isnan(v), 65535, np.rint(np.nan_to_num(v) * 65534))
    same = (np.array(s[1:]) == np.array(s[:-1])) & (np.array(st[1:]) == np.array(st[:-1])) & (level[1:] == level[:-1])
    assert (k[1:][same] > k[:-1][same]).all()
    assert list(in_batches(table, rows=700)) == [table]  # fewer than MIN_ROWS rows: written as built
    monkeypatch.setattr(match_order, "MIN_ROWS", 2)
    parts = list(in_batches(table, rows=700))  # what commit inserts, batch after batch
    assert [p.num_rows for p in parts] == [700] * 4 + [200]
    assert pa.concat_tables(parts).equals(out)
    assert list(in_batches(out, rows=700)) == [out]  # already in order: as it is


def test_storage_order_of_chunks_with_different_dictionaries():
    pred = pa.table({"source": pa.DictionaryArray.from_arrays(pa.array([0, 0, 0], pa.int8()), pa.array(["prediction"])),
                     "status": pa.DictionaryArray.from_arrays(pa.array([1, 0, 1], pa.int8()), pa.array(["fp", "tp"])),
                     "iou": pa.array([0.9, None, 0.6])})
    gt = pa.table({"source": pa.DictionaryArray.from_arrays(pa.array([0, 0], pa.int8()), pa.array(["gt"])),
                   "status": pa.DictionaryArray.from_arrays(pa.array([0, 1], pa.int8()), pa.array(["tp", "fn"])),
                   "iou": pa.array([0.7, None])})
    out = storage_order(pa.concat_tables([pred, gt]))
    assert list(zip(*_keys(out)[:2])) == [("gt", "fn"), ("gt", "tp"), ("prediction", "fp"), ("prediction", "tp"),
                                          ("prediction", "tp")]
    assert out.column("iou").to_pylist() == [None, 0.7, None, 0.6, 0.9]


@pytest.fixture
def pair(tmp_path):
    gt, dets = random_pair(3, n_images=40, n_cats=4)
    ws, run = import_pair(tmp_path, gt, dets)
    yield ws, ws.get_dataset("d"), run
    ws.close()


def test_commit_writes_matches_in_storage_order(pair, monkeypatch):
    ws, ds, run = pair
    run.commit()
    rows = ws.store.con.execute("SELECT status FROM matches WHERE run_id = ? ORDER BY rowid", [run.id]).fetchall()
    assert sorted(rows) != rows  # a run below MIN_ROWS is written as built (by item, statuses mixed)
    monkeypatch.setattr(match_order, "MIN_ROWS", 2)
    for kw in ({}, {"iou_threshold": 0.3}):
        run.commit(**kw)
        rows = ws.store.con.execute(
            "SELECT source, status, coalesce(iou, 'NaN'::DOUBLE) FROM matches WHERE run_id = ? ORDER BY rowid",
            [run.id]).fetchall()
        assert {r[1] for r in rows} >= {"tp", "fp", "fn"}
        source, status, iou = zip(*rows)
        assert_storage_order(list(source), list(status), np.array(iou, float))


def test_run_thresholds_from_matches(pair):
    ws, ds, run = pair
    run.commit(iou_threshold=0.75)
    assert DuckDBCatalog(ws.store, ds.id)._thresholds(run.id) == [0.75]
    assert DuckDBCatalog(ws.store, ds.id).runs()["r"].iou_threshold == 0.75
    # rows of a second threshold next to the commit's (written by hand): the commit's own is read
    ws.store.con.execute("INSERT INTO matches SELECT * REPLACE (0.5 AS iou_threshold) FROM matches WHERE run_id = ?",
                         [run.id])
    catalog = DuckDBCatalog(ws.store, ds.id)
    assert sorted(catalog._thresholds(run.id)) == [0.5, 0.75]
    assert catalog.runs()["r"].iou_threshold == 0.75
    assert DuckDBCatalog(ws.store, ds.id)._thresholds(10_000) == []
