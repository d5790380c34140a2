"""udfs.polygons against pycocotools frPyObjects / merge / frBbox (exact equality)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from udfs import polygons as P
from udfs import rle as R

M = pytest.importorskip("pycocotools.mask")

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def coco_poly(polys, h, w) -> np.ndarray:
    """pycocotools annToRLE for a polygon list: merge(frPyObjects(polys, h, w))."""
    return R.decompress(M.merge(M.frPyObjects(polys, h, w))["counts"])


# coordinates: free floats, "rounding edge" grid values (k/10, k/5 +- eps), big values
free = st.floats(-15, 80, allow_nan=False, allow_infinity=False)
grid = st.integers(-100, 800).map(lambda k: k / 10)
fifth = st.tuples(st.integers(-50, 400), st.sampled_from([0.0, 1e-9, -1e-9, 0.1, 0.5])).map(
    lambda t: t[0] / 5 + t[1]
)
big = st.floats(-2e4, 2e4, allow_nan=False)
coord = st.one_of(free, grid, fifth, st.integers(-5, 70).map(float))


@st.composite
def polygon(draw, coords=coord, min_pts=3, max_pts=9):
    n = draw(st.integers(min_pts, max_pts))
    style = draw(st.sampled_from(["random", "dup", "tiny", "collinear", "convex"]))
    pts = [(draw(coords), draw(coords)) for _ in range(n)]
    if style == "dup":  # repeated consecutive vertices and a closing duplicate
        i = draw(st.integers(0, n - 1))
        pts.insert(i, pts[i])
        pts.append(pts[0])
    elif style == "tiny":  # sub-pixel polygon near a random point
        x0, y0 = pts[0]
        pts = [(x0 + draw(st.floats(0, 0.9)), y0 + draw(st.floats(0, 0.9))) for _ in range(n)]
    elif style == "collinear":
        x0, y0 = pts[0]
        dx, dy = draw(free), draw(free)
        pts = [(x0 + t * dx / 7, y0 + t * dy / 7) for t in range(n)]
    elif style == "convex":
        cx, cy, r = draw(free), draw(free), draw(st.floats(0.2, 40))
        ang = np.sort(np.array([draw(st.floats(0, 2 * np.pi)) for _ in range(n)]))
        pts = [(cx + r * np.cos(a), cy + r * np.sin(a)) for a in ang]
    return [float(v) for p in pts for v in p]


canvas = st.tuples(st.integers(1, 70), st.integers(1, 70))


@SETTINGS
@given(st.lists(polygon(), min_size=1, max_size=4), canvas)
def test_polygon_to_rle_matches_pycocotools(polys, hw):
    h, w = hw
    ours = P.polygon_to_rle(polys, h, w)
    assert np.array_equal(ours, coco_poly(polys, h, w))
    assert P.polygon_area(polys, h, w) == int(M.area(M.merge(M.frPyObjects(polys, h, w))))


@settings(max_examples=40, deadline=None)
@given(st.lists(polygon(coords=big, max_pts=5), min_size=1, max_size=2), canvas)
def test_far_out_of_bounds_and_large_coordinates(polys, hw):
    h, w = hw
    assert np.array_equal(P.polygon_to_rle(polys, h, w), coco_poly(polys, h, w))


def test_self_intersecting_bowtie_and_out_of_image():
    bowtie = [1.0, 1.0, 9.0, 9.0, 9.0, 1.0, 1.0, 9.0]
    outside = [-5.0, -5.0, 40.0, -3.0, 38.0, 30.0, -2.0, 33.0]  # covers the whole 12x10 canvas
    for polys in ([bowtie], [outside], [bowtie, outside], [[0.5, 0.5, 0.7, 0.5, 0.6, 0.6]]):
        assert np.array_equal(P.polygon_to_rle(polys, 12, 10), coco_poly(polys, 12, 10))
    assert R.area(P.polygon_to_rle([outside], 12, 10)) == 120


def test_many_segmentations_with_per_item_sizes():
    rng = np.random.default_rng(5)
    segs, hs, ws = [], [], []
    for _ in range(60):
        h, w = (int(v) for v in rng.integers(1, 50, 2))
        parts = [list(rng.uniform(-3, 55, 2 * rng.integers(3, 10))) for _ in range(rng.integers(1, 4))]
        segs.append(parts)
        hs.append(h)
        ws.append(w)
    values, offsets = P.polygons_to_rle_many(segs, hs, ws)
    for i, (s, h, w) in enumerate(zip(segs, hs, ws)):
        assert np.array_equal(values[offsets[i] : offsets[i + 1]], coco_poly(s, h, w)), i


@SETTINGS
@given(st.data(), canvas)
def test_lenient_mode_matches_pycocotools_odd_and_short_parts(data, hw):
    h, w = hw
    first = data.draw(polygon())
    if data.draw(st.booleans()):
        first = first + [data.draw(coord)]  # odd count: pycocotools drops the last value
    rest = [
        [data.draw(coord) for _ in range(data.draw(st.integers(0, 7)))]
        for _ in range(data.draw(st.integers(0, 2)))
    ]
    polys = [first, *rest]
    assert np.array_equal(P.polygon_to_rle(polys, h, w, validate=False), coco_poly(polys, h, w))


@SETTINGS
@given(
    st.tuples(coord, coord, st.one_of(free, grid), st.one_of(free, grid)), canvas
)
def test_bbox_to_rle_matches_frbbox(box, hw):
    h, w = hw
    ref = M.frPyObjects(np.array([box], dtype=np.float64), h, w)[0]
    assert np.array_equal(P.bbox_to_rle(*box, h, w), R.decompress(ref["counts"]))


def test_bboxes_to_rle_flat():
    boxes = np.array([[0, 0, 3, 2], [1.5, 2.2, 4.4, 0.3], [-2, -2, 50, 50], [3, 3, 0, 0]], float)
    values, offsets = P.bboxes_to_rle_flat(boxes, 7, 6)
    refs = M.frPyObjects(boxes, 7, 6)
    for i, r in enumerate(refs):
        assert np.array_equal(values[offsets[i] : offsets[i + 1]], R.decompress(r["counts"]))
    # a box on pixel corners covers exactly its pixels
    assert R.area(values[offsets[0] : offsets[1]]) == 6


@pytest.mark.parametrize(
    "polys, message",
    [
        ([[0, 0, 5, 0, 5]], "odd number of coordinates"),
        ([[0, 0, 5, 5]], "at least 3 are needed"),
        ([[0, 0, 5, 0, 5, 5], [1, 1]], "polygon 1 has 1 point"),
        ([[0, 0, float("nan"), 0, 5, 5]], "NaN"),
        ([[0, 0, float("inf"), 0, 5, 5]], "NaN or infinite"),
        ([], "no polygons"),
        ([1.0, 2.0, 3.0, 4.0, 5.0, 6.0], "list of flat coordinate lists"),
        ([["a", 1, 2, 3, 4, 5]], "not a flat list of numbers"),
    ],
)
def test_validation_errors(polys, message):
    with pytest.raises(ValueError, match=message):
        P.polygon_to_rle(polys, 10, 10)


def test_lenient_mode_still_rejects_what_pycocotools_cannot_read():
    with pytest.raises(ValueError, match="boxes"):
        P.polygon_to_rle([[0, 0, 5, 5]], 10, 10, validate=False)
    with pytest.raises(ValueError, match="NaN"):
        P.polygon_to_rle([[0, 0, 5, 0, float("nan"), 5]], 10, 10, validate=False)


def test_bad_canvas():
    with pytest.raises(ValueError, match="h >= 1"):
        P.polygon_to_rle([[0, 0, 5, 0, 5, 5]], 0, 10)


# --------------------------------------------------------------------------
# COCO segmentation objects (udfs.masks.rle_from_coco)
# --------------------------------------------------------------------------


def test_rle_from_coco_all_three_forms_match_pycocotools():
    from udfs import masks as MS

    h, w = 9, 7
    poly = [[1.0, 1.0, 6.5, 1.2, 5.0, 8.0], [0.0, 0.0, 2.0, 0.0, 2.0, 2.0, 0.0, 2.0]]
    unc = {"counts": [3, 0, 5, 10, 0, 0, 2, 43], "size": [h, w]}  # zero runs kept verbatim
    comp = M.frPyObjects(poly, h, w)[0]  # bytes counts
    comp_str = {"counts": comp["counts"].decode(), "size": [h, w]}
    assert np.array_equal(MS.rle_from_coco(poly, h, w), coco_poly(poly, h, w))
    assert np.array_equal(
        MS.rle_from_coco(unc, h, w), R.decompress(M.frPyObjects(unc, h, w)["counts"])
    )
    assert np.array_equal(MS.rle_from_coco(comp, h, w), R.decompress(comp["counts"]))
    assert np.array_equal(MS.rle_from_coco(comp_str), R.decompress(comp["counts"]))
    values, offsets = MS.rles_from_coco_many([poly, unc, comp_str], h, w)
    assert np.array_equal(values[offsets[0] : offsets[1]], coco_poly(poly, h, w))
    assert np.array_equal(values[offsets[1] : offsets[2]], MS.rle_from_coco(unc, h, w))
    assert np.array_equal(values[offsets[2] : offsets[3]], R.decompress(comp["counts"]))


@pytest.mark.parametrize(
    "segm, hw, message",
    [
        ({"counts": [3, 4], "size": [3, 3]}, (3, 3), "sum to 7 but the mask has h\\*w = 9"),
        ({"counts": [3, -1, 7], "size": [3, 3]}, (3, 3), "non-negative"),
        ({"counts": "52", "size": [3, 4]}, (3, 3), "does not match the image size"),
        ({"size": [3, 3]}, (3, 3), "needs 'counts'"),
        ({"counts": [9]}, (3, 3), "needs 'size'"),
        ([[0, 0, 1, 0, 1, 1]], (None, None), "need the image h and w"),
        ("not a segmentation", (3, 3), "unsupported segmentation type"),
    ],
)
def test_rle_from_coco_errors(segm, hw, message):
    from udfs import masks as MS

    with pytest.raises(ValueError, match=message):
        MS.rle_from_coco(segm, *hw)


def test_rle_from_coco_batch_reports_index():
    from udfs import masks as MS

    good = [[0.0, 0.0, 3.0, 0.0, 3.0, 3.0]]
    with pytest.raises(ValueError, match="segmentation 1: polygon 0 has an odd"):
        MS.rles_from_coco_many([good, [[0.0, 0.0, 3.0, 0.0, 3.0]]], 5, 5)
