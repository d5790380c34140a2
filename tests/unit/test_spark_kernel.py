"""The Spark commit's kernels without Spark: images split into partitions as a hash shuffle would,
:func:`commit_partition` on each, :func:`accumulate_category` per category, then :func:`combine` —
every matches row and the 12 stats must equal the local commit (random pairs with crowds, score and
IoU ties, maxDets overflow; bbox and segm; the shared COCO subset)."""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from engine.spark import kernel, reduce
from tests.oracle.coco_random import random_pair, import_pair

_SORT = [("source", "ascending"), ("ann_key", "ascending"), ("pred_key", "ascending")]


def kernel_rows(ws, run, iou_type: str) -> tuple[pa.Table, list[str]]:
    """GT, detections and candidate pairs in the kernel's input schema (built with DuckDB here)."""
    s = ws.store
    geo = "kind IN ('box', 'polygon', 'segmentation')"
    g = s.arrow(f"""SELECT 0::TINYINT kind, a.item_id, a.ann_key key, NULL::BIGINT key2, a.seq, a.label, a.x, a.y,
        a.width w, a.height h, a.area, a.iscrowd crowd, a.annotation_id <> '0' id_nonzero, NULL::DOUBLE score,
        NULL::DOUBLE iou, a.mask::BIGINT[] mask, a.polygon, i.height::BIGINT ih, i.width::BIGINT iw
        FROM annotations a JOIN items i USING (item_id) WHERE a.valid_to IS NULL AND a.{geo} AND a.x IS NOT NULL""")
    d = s.arrow(f"""SELECT 1::TINYINT kind, p.item_id, p.pred_key key, NULL::BIGINT key2, p.seq, p.label, p.x, p.y,
        p.width w, p.height h, p.area, false crowd, NULL::BOOLEAN id_nonzero, coalesce(p.confidence, 1.0) score,
        NULL::DOUBLE iou, p.mask::BIGINT[] mask, p.polygon, i.height::BIGINT ih, i.width::BIGINT iw
        FROM predictions p JOIN items i USING (item_id) WHERE p.run_id = {run.id} AND p.{geo} AND p.x IS NOT NULL""")
    con = s.con
    con.register("__kg", g)
    con.register("__kd", d)
    try:
        segm = iou_type == "segm"
        p = s.arrow(f"""SELECT 2::TINYINT kind, d.item_id, d.key, g.key key2,
            {'1.0' if segm else 'box_iou(d.x, d.y, d.w, d.h, g.x, g.y, g.w, g.h, g.crowd)'} iou
            FROM __kd d JOIN __kg g ON d.item_id = g.item_id
            {'' if segm else 'AND box_overlaps(d.x, d.y, d.w, d.h, g.x, g.y, g.w, g.h)'}""")
    finally:
        con.unregister("__kg")
        con.unregister("__kd")
    pairs = pa.table({f.name: p.column(f.name) if f.name in p.column_names else pa.nulls(p.num_rows, f.type)
                      for f in kernel.INPUT_SCHEMA})
    rows = pa.concat_tables([g.cast(kernel.INPUT_SCHEMA), d.cast(kernel.INPUT_SCHEMA), pairs.cast(kernel.INPUT_SCHEMA)])
    from engine.runs.inputs import category_order  # the order the Spark commit takes from the export too

    labels = category_order(s, run.dataset_id, set(g.column("label").to_pylist()) | set(d.column("label").to_pylist()))
    return rows, labels


def simulate(ws, run, iou_type: str, n_parts: int = 3):
    rows, labels = kernel_rows(ws, run, iou_type)
    part = rows.column("item_id").to_numpy() % n_parts  # whole images per partition, as repartition(item_id)
    out = pa.concat_tables([kernel.commit_partition(rows.filter(pa.array(part == k)), labels, 0.5, iou_type, False,
                                                    run.id) for k in range(n_parts)])
    cats = out.column("cat").to_numpy()
    curves = pa.concat_tables([reduce.accumulate_category(out.filter(pa.array(cats == k))) for k in np.unique(cats)])
    return out, reduce.combine(curves, labels)


def assert_same_as_local(ws, run, iou_type: str) -> None:
    out, m = simulate(ws, run, iou_type)
    loc = run.commit(iou_type=iou_type)
    local_rows = ws.sql(f"SELECT * FROM matches WHERE run_id = {run.id}")
    ours = out.select(kernel.MATCHES_COLUMNS[:11])
    ours = ours.take(pc.sort_indices(ours, _SORT))
    local_rows = local_rows.cast(ours.schema)
    local_rows = local_rows.take(pc.sort_indices(local_rows, _SORT))
    assert ours.num_rows == local_rows.num_rows
    for c in ours.column_names:  # every object's status, partner, IoUs and error type
        assert ours.column(c).equals(local_rows.column(c)), c
    np.testing.assert_allclose(m["stats"], list(loc["stats"].values()), rtol=0, atol=1e-12)
    m_loc = run.metrics(iou_type=iou_type)
    assert [r["label"] for r in m["per_class"]] == [r["label"] for r in m_loc["per_class"]]
    for a, b in zip(m["per_class"], m_loc["per_class"]):
        assert (a["gt"], a["predictions"]) == (b["gt"], b["predictions"])
        np.testing.assert_allclose([a["ap"], a["ap50"], a["ar"]], [b["ap"], b["ap50"], b["ar"]], rtol=0, atol=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 7])
@pytest.mark.parametrize("iou_type", ["bbox", "segm"])
def test_random_pairs_equal_local(tmp_path, seed, iou_type):
    gt, dets = random_pair(seed, n_images=14)
    ws, run = import_pair(tmp_path, gt, dets)
    assert_same_as_local(ws, run, iou_type)


@pytest.mark.parametrize("iou_type", ["bbox", "segm"])
def test_coco_subset_equals_local(iou_type):
    import engine
    from tests.conftest import shared_path

    base = shared_path("coco_subset", "instances_val2014_100")
    res = base / f"instances_val2014_fake{iou_type}100_results.json"
    with engine.connect() as ws:
        ws.import_coco(base / "instances_val2014_100.json", dataset="d", results=res, run="r", check_images=False,
                       clip="keep")
        assert_same_as_local(ws, ws.get_run("r"), iou_type)
