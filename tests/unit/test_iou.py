"""Box IoU: numpy kernel and DuckDB macros are bit-identical to pycocotools (maskApi.c bbIou)."""
from __future__ import annotations

from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pytest
from pycocotools import mask as mask_utils

from udfs.iou import box_iou_indexed, box_iou_matrix, box_iou_pairs, box_overlaps

SQL = Path(__file__).resolve().parents[2] / "udfs" / "box_iou.sql"


def random_boxes(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs mixing continuous boxes, a coarse integer grid (touching, identical, nested)
    and degenerate boxes (zero width/height, tiny, far apart)."""
    rng = np.random.default_rng(seed)
    d = rng.uniform(0, 50, (n, 4))
    g = rng.uniform(0, 50, (n, 4))
    grid = rng.random(n) < 0.5
    d[grid] = rng.integers(0, 6, (grid.sum(), 4))
    g[grid] = rng.integers(0, 6, (grid.sum(), 4))
    same = rng.random(n) < 0.05
    g[same] = d[same]
    tiny = rng.random(n) < 0.05
    d[tiny, 2:] = rng.choice([0.0, 1e-9, 1e-3], (tiny.sum(), 2))
    crowd = rng.random(n) < 0.3
    return d, g, crowd


def bits(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x, dtype=np.float64).view(np.int64)


@pytest.fixture(scope="module")
def con():
    c = duckdb.connect()
    c.execute(SQL.read_text())
    yield c
    c.close()


def test_numpy_equals_pycocotools_bitwise():
    d, g, crowd = random_boxes(3000, 0)
    ours = box_iou_pairs(*d.T, *g.T, crowd)
    ref = np.array([mask_utils.iou([list(d[i])], [list(g[i])], [int(crowd[i])])[0, 0] for i in range(len(d))])
    np.testing.assert_array_equal(bits(ours), bits(ref))
    assert (ours == 0).sum() > 100 and (ours > 0).sum() > 100


def test_indexed_equals_pairs_bitwise():
    """Per-box edges and areas, then pairs by index: the same bits as per-pair arithmetic (and pycocotools)."""
    d, g, crowd = random_boxes(3000, 3)
    rng = np.random.default_rng(4)
    di, gi = rng.integers(0, 3000, 9000), rng.integers(0, 3000, 9000)
    ours = box_iou_indexed(tuple(d.T), tuple(g.T), crowd, di, gi)
    want = box_iou_pairs(*d[di].T, *g[gi].T, crowd[gi])
    np.testing.assert_array_equal(bits(ours), bits(want))
    assert (ours == 0).sum() > 100 and (ours > 0).sum() > 100 and crowd[gi][ours > 0].sum() > 100


def test_matrix_equals_pycocotools_with_crowd():
    rng = np.random.default_rng(1)
    d = rng.integers(0, 20, (40, 4)).astype(float)
    g = rng.integers(0, 20, (25, 4)).astype(float)
    crowd = rng.random(25) < 0.4
    ref = mask_utils.iou(d.tolist(), g.tolist(), crowd.astype(int).tolist())
    ours = box_iou_matrix(d, g, crowd)
    assert ours.shape == (40, 25)
    np.testing.assert_array_equal(bits(ours), bits(ref))


def test_crowd_iou_is_intersection_over_detection_area():
    # Detection fully inside a big crowd region: IoU 1 for crowd, area ratio otherwise.
    assert box_iou_pairs(10, 10, 5, 5, 0, 0, 100, 100, True) == 1.0
    assert box_iou_pairs(10, 10, 5, 5, 0, 0, 100, 100, False) == 25 / 10000
    # Touching edges do not overlap.
    assert box_iou_pairs(0, 0, 10, 10, 10, 0, 10, 10, False) == 0.0


def test_sql_macro_equals_numpy_bitwise(con):
    d, g, crowd = random_boxes(20000, 2)
    con.register("tbl", pa.table({"dx": d[:, 0], "dy": d[:, 1], "dw": d[:, 2], "dh": d[:, 3],
                                  "gx": g[:, 0], "gy": g[:, 1], "gw": g[:, 2], "gh": g[:, 3], "crowd": crowd}))
    out = con.execute(
        "SELECT box_iou(dx, dy, dw, dh, gx, gy, gw, gh, crowd) AS iou, "
        "box_overlaps(dx, dy, dw, dh, gx, gy, gw, gh) AS ov FROM tbl").fetchnumpy()
    ours = box_iou_pairs(*d.T, *g.T, crowd)
    np.testing.assert_array_equal(bits(out["iou"]), bits(ours))
    np.testing.assert_array_equal(out["ov"], ours > 0)
    np.testing.assert_array_equal(box_overlaps(*d.T, *g.T), ours > 0)


def test_sql_macro_integer_columns_and_int_crowd(con):
    got = con.execute("SELECT box_iou(0, 0, 10, 10, 5, 5, 10, 10, 0), box_iou(0, 0, 10, 10, 5, 5, 10, 10, 1), "
                      "box_iou(0, 0, 3, 3, 1, 1, 3, 3, false)").fetchone()
    assert got[0] == box_iou_pairs(0, 0, 10, 10, 5, 5, 10, 10, False) == 25 / 175
    assert got[1] == 0.25
    assert got[2] == box_iou_pairs(0, 0, 3, 3, 1, 1, 3, 3, False) == 4 / 14


def test_box_overlaps_usable_as_join_predicate(con):
    con.execute("CREATE OR REPLACE TEMP TABLE d AS SELECT * FROM (VALUES (1, 0.0, 0.0, 10.0, 10.0), (2, 50.0, 50.0, 5.0, 5.0)) t(id, x, y, w, h)")
    con.execute("CREATE OR REPLACE TEMP TABLE g AS SELECT * FROM (VALUES (7, 5.0, 5.0, 10.0, 10.0), (8, 10.0, 0.0, 4.0, 4.0)) t(id, x, y, w, h)")
    rows = con.execute(
        "SELECT d.id, g.id, box_iou(d.x, d.y, d.w, d.h, g.x, g.y, g.w, g.h, false) FROM d JOIN g "
        "ON box_overlaps(d.x, d.y, d.w, d.h, g.x, g.y, g.w, g.h) ORDER BY 1, 2").fetchall()
    assert rows == [(1, 7, 25 / 175)]  # (1, 8) only touch; box 2 is far away
