"""udfs.rle against pycocotools.mask (exact equality) and against brute-force numpy."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from udfs import rle as R

M = pytest.importorskip("pycocotools.mask")

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def coco(counts, h, w):
    """pycocotools RLE object for raw counts (frPyObjects -> frUncompressedRLE)."""
    return M.frPyObjects({"counts": [int(c) for c in counts], "size": [int(h), int(w)]}, h, w)


def coco_counts(obj) -> np.ndarray:
    return R.decompress(obj["counts"])


@st.composite
def masks(draw, max_side=24, values=(0, 1)):
    h = draw(st.integers(1, max_side))
    w = draw(st.integers(1, max_side))
    kind = draw(st.sampled_from(["random", "blocks", "empty", "full"]))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    if kind == "empty":
        return np.zeros((h, w), np.uint8)
    if kind == "full":
        return np.full((h, w), values[-1], np.uint8)
    if kind == "blocks":
        m = np.zeros((h, w), np.uint8)
        for _ in range(rng.integers(1, 4)):
            y0, x0 = rng.integers(0, h), rng.integers(0, w)
            m[y0 : y0 + rng.integers(1, h + 1), x0 : x0 + rng.integers(1, w + 1)] = rng.choice(values[1:])
        return m
    return rng.choice(np.array(values, np.uint8), size=(h, w), p=None)


@st.composite
def rle_counts(draw, h=None, w=None, zeros=True):
    """(counts, h, w) with arbitrary runs; with zeros=True interior zero runs may occur."""
    h = h or draw(st.integers(1, 12))
    w = w or draw(st.integers(1, 12))
    n = h * w
    # pycocotools' rleMerge buffer holds h*w+1 runs: more runs (zero-length ones)
    # corrupt its heap, so zero-run inputs stay short. Without zeros: canonical
    # runs (only the first may be 0, no trailing 0).
    if zeros:
        max_cuts = min(12, max(0, (n - 3) // 2))
        cuts = sorted(draw(st.lists(st.integers(0, n), max_size=max_cuts)))
    else:
        cuts = sorted(draw(st.lists(st.integers(0, n - 1), max_size=12, unique=True)))
    counts = np.diff(np.array([0, *cuts, n]))
    return counts.astype(np.uint32), h, w


def same_canvas_rles(draw, k_min, k_max, zeros):
    h = draw(st.integers(1, 10))
    w = draw(st.integers(1, 10))
    k = draw(st.integers(k_min, k_max))
    return [draw(rle_counts(h, w, zeros))[0] for _ in range(k)], h, w


# --------------------------------------------------------------------------
# encode / decode
# --------------------------------------------------------------------------


@SETTINGS
@given(masks())
def test_encode_decode_roundtrip(m):
    counts = R.encode(m)
    assert counts.dtype == np.uint32
    assert int(counts.sum()) == m.size
    assert np.array_equal(R.decode(counts, *m.shape), m)


@SETTINGS
@given(masks(values=(0, 1, 2, 255)))
def test_encode_matches_pycocotools_including_multivalued_bytes(m):
    ref = M.encode(np.asfortranarray(m))
    ours = R.encode(m)
    assert np.array_equal(ours, coco_counts(ref))
    assert R.compress(ours) == ref["counts"].decode()
    assert np.array_equal(R.decode(ours, *m.shape), M.decode(ref))


def test_encode_bool_and_known_runs():
    m = np.array([[0, 1], [1, 1], [0, 0]], dtype=bool)  # column-major: 0 1 0 | 1 1 0
    assert R.encode(m).tolist() == [1, 1, 1, 2, 1]
    assert R.encode(np.ones((2, 2), bool)).tolist() == [0, 4]
    assert R.encode(np.zeros((3, 2), bool)).tolist() == [6]


def test_encode_many_matches_single():
    rng = np.random.default_rng(1)
    stack = rng.random((7, 13, 9)) < 0.3
    stack[2] = False
    stack[3] = True
    values, offsets = R.encode_many(stack)
    for i in range(7):
        assert np.array_equal(values[offsets[i] : offsets[i + 1]], R.encode(stack[i]))


def test_encode_rejects_other_dtypes():
    with pytest.raises(TypeError):
        R.encode(np.zeros((2, 2), np.int32))


# --------------------------------------------------------------------------
# compressed strings
# --------------------------------------------------------------------------


@SETTINGS
@given(st.lists(st.integers(0, 2**32 - 1), min_size=0, max_size=20))
def test_compress_and_decompress_match_pycocotools_for_any_uint32(counts):
    # frUncompressedRLE -> rleToString; area() reads it back with rleFrString,
    # whose 32-bit int shifts we replicate even for huge deltas.
    # rleToString allocates 6 chars per count: longer strings overflow its buffer.
    assume(len(R.compress(counts)) < 6 * len(counts) or not counts)
    obj = coco(counts, 1, 1)
    assert R.compress(counts) == obj["counts"].decode()
    assert R.area(R.decompress(obj["counts"])) == int(M.area(obj))


@SETTINGS
@given(st.lists(st.integers(0, 2**29), min_size=1, max_size=30))
def test_decompress_inverts_compress_in_normal_range(counts):
    assert R.decompress(R.compress(counts)).tolist() == counts


def test_compress_many_decompress_many_flat():
    lists = [[5], [0, 3, 2], [], [1, 2**20, 3, 2**20 + 7, 1], [2**29, 1]]
    values, offsets = R.to_flat(lists)
    strings = R.compress_many(values, offsets)
    assert strings == [R.compress(c) for c in lists]
    v2, o2 = R.decompress_many(strings)
    assert np.array_equal(v2, values) and np.array_equal(o2, offsets)


def test_decompress_rejects_bad_strings():
    with pytest.raises(ValueError, match="outside"):
        R.decompress("ab~")
    with pytest.raises(ValueError, match="truncated"):
        R.decompress("0P")  # 'P' (0x20 set) says "more" but the string ends


# --------------------------------------------------------------------------
# area / bbox
# --------------------------------------------------------------------------


@SETTINGS
@given(rle_counts())
def test_area_and_bbox_match_pycocotools_even_with_zero_runs(args):
    counts, h, w = args
    obj = coco(counts, h, w)
    assert R.area(counts) == int(M.area(obj))
    bb = R.to_bbox(counts, h, w)
    assert bb.dtype == np.float64
    assert np.array_equal(bb, M.toBbox(obj))


def test_bbox_flat_per_list_sizes():
    rng = np.random.default_rng(3)
    items = []
    for _ in range(40):
        h, w = rng.integers(1, 20, 2)
        m = rng.random((h, w)) < rng.random()
        items.append((R.encode(m), h, w))
    values, offsets = R.to_flat([c for c, _, _ in items])
    hs = np.array([h for _, h, _ in items])
    ws = np.array([w for _, _, w in items])
    boxes = R.to_bbox_flat(values, offsets, hs, ws)
    ref = np.stack([M.toBbox(coco(c, h, w)) for c, h, w in items])
    assert np.array_equal(boxes, ref)
    assert np.array_equal(R.area_flat(values, offsets), [int(M.area(coco(c, h, w))) for c, h, w in items])


# --------------------------------------------------------------------------
# merge
# --------------------------------------------------------------------------


@SETTINGS
@given(st.data(), st.booleans(), st.booleans())
def test_merge_matches_pycocotools(data, intersect, zeros):
    # with zero runs only 1-2 inputs: an early-stopped partial result makes
    # pycocotools loop forever on the next input (we raise instead, see below)
    rles, h, w = same_canvas_rles(data.draw, 1, 2 if zeros else 5, zeros)
    ref = M.merge([coco(c, h, w) for c in rles], intersect=intersect)
    ours = R.merge(rles, h, w, intersect=intersect)
    assert np.array_equal(ours, coco_counts(ref))


def test_merge_early_stop_quirk_then_raises_instead_of_hanging():
    quirky = [2, 0, 0, 3]  # both inputs enter a zero run at t=2: C loop stops there
    assert R.merge([quirky, quirky], 5, 1).tolist() == coco_counts(M.merge([coco(quirky, 5, 1)] * 2)).tolist()
    with pytest.raises(ValueError, match="loops forever"):
        R.merge([quirky, quirky, [1, 4]], 5, 1)


def test_merge_empty_list():
    assert R.merge([], 3, 3).size == 0


@SETTINGS
@given(st.data(), st.booleans())
def test_merge_groups_flat_equals_merge_for_canonical(data, intersect):
    groups = []
    for _ in range(data.draw(st.integers(1, 4))):
        h = data.draw(st.integers(1, 9))
        w = data.draw(st.integers(1, 9))
        k = data.draw(st.integers(1, 3))
        seed = data.draw(st.integers(0, 2**31))
        rng = np.random.default_rng(seed)
        groups.append(([R.encode(rng.random((h, w)) < rng.random()) for _ in range(k)], h, w))
    flat = [c for g, _, _ in groups for c in g]
    values, offsets = R.to_flat(flat)
    gid = np.repeat(np.arange(len(groups)), [len(g) for g, _, _ in groups])
    totals = np.array([h * w for _, h, w in groups])
    v, o = R.merge_groups_flat(values, offsets, gid, len(groups), totals, intersect)
    for i, (g, h, w) in enumerate(groups):
        assert np.array_equal(v[o[i] : o[i + 1]], R.merge(g, h, w, intersect)), i


# --------------------------------------------------------------------------
# IoU
# --------------------------------------------------------------------------


@SETTINGS
@given(st.data(), st.booleans())
def test_iou_matrix_matches_pycocotools(data, zeros):
    rles, h, w = same_canvas_rles(data.draw, 2, 8, zeros)
    nd = data.draw(st.integers(1, len(rles) - 1))
    dt, gt = rles[:nd], rles[nd:]
    crowd = data.draw(st.lists(st.booleans(), min_size=len(gt), max_size=len(gt)))
    ref = M.iou([coco(c, h, w) for c in dt], [coco(c, h, w) for c in gt], crowd)
    ours = R.iou(dt, gt, crowd)
    assert ours.shape == (len(dt), len(gt))
    assert np.array_equal(ours, ref)


def test_iou_empty_inputs_give_empty_matrix():
    assert R.iou([], [[4]], [0]).shape == (0, 1)
    assert R.iou([[4]], [], []).shape == (1, 0)


def brute_iou(a: np.ndarray, b: np.ndarray, crowd: bool) -> float:
    inter = int(np.logical_and(a, b).sum())
    if inter == 0:
        return 0.0
    union = int(a.sum()) if crowd else int(np.logical_or(a, b).sum())
    return inter / union


def random_blob_masks(rng, n, h, w):
    """Ellipses/rectangles/noise mix: realistic run structure plus edge cases."""
    yy, xx = np.mgrid[:h, :w]
    out = np.zeros((n, h, w), bool)
    for i in range(n):
        kind = rng.integers(0, 5)
        if kind == 0:
            cy, cx = rng.uniform(0, h), rng.uniform(0, w)
            ry, rx = rng.uniform(0.5, h / 2), rng.uniform(0.5, w / 2)
            out[i] = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
        elif kind == 1:
            y0, x0 = rng.integers(0, h), rng.integers(0, w)
            out[i, y0 : y0 + rng.integers(1, h), x0 : x0 + rng.integers(1, w)] = True
        elif kind == 2:
            out[i] = rng.random((h, w)) < 0.2
        elif kind == 3:
            out[i] = rng.random() < 0.5  # empty or full
        else:
            out[i, :, rng.integers(0, w)] = True  # one full column
    return out


@pytest.mark.parametrize("chunk", [None, 64])
def test_iou_pairs_flat_matches_bruteforce_and_pycocotools(monkeypatch, chunk):
    if chunk:
        monkeypatch.setattr(R, "_CHUNK_RUNS", chunk)  # force many chunks
    rng = np.random.default_rng(7)
    h, w = 23, 17
    dts = random_blob_masks(rng, 30, h, w)
    gts = random_blob_masks(rng, 25, h, w)
    dv, do = R.encode_many(dts)
    gv, go = R.encode_many(gts)
    p = 600
    di = rng.integers(0, 30, p)
    gi = rng.integers(0, 25, p)
    crowd = rng.random(p) < 0.3
    ours = R.iou_pairs_flat(dv, do, di, gv, go, gi, crowd)
    brute = np.array([brute_iou(dts[d], gts[g], c) for d, g, c in zip(di, gi, crowd)])
    assert np.array_equal(ours, brute)
    dobj = M.encode(np.asfortranarray(dts.transpose(1, 2, 0)))
    gobj = M.encode(np.asfortranarray(gts.transpose(1, 2, 0)))
    ref = np.array([M.iou([dobj[d]], [gobj[g]], [c])[0, 0] for d, g, c in zip(di, gi, crowd)])
    assert np.array_equal(ours, ref)


def test_iou_pairs_flat_arrow_style_sliced_offsets_and_zero_run_fallback():
    h, w = 4, 3
    a = R.encode(np.eye(4, 3, dtype=bool))
    b = R.encode(np.ones((4, 3), bool))
    odd = np.array([2, 0, 0, 10], np.uint32)  # interior zero runs: C early-stop quirk
    lists = [a, b, odd]
    values, offsets = R.to_flat(lists)
    # simulate an Arrow slice: offsets not starting at zero, junk before
    values2 = np.concatenate([np.array([99, 99], np.uint32), values])
    offsets2 = offsets + 2
    di = np.array([0, 1, 2, 2, 0])
    gi = np.array([1, 0, 2, 1, 2])
    crowd = np.array([0, 1, 0, 1, 0], bool)
    ours = R.iou_pairs_flat(values2, offsets2, di, values2, offsets2, gi, crowd)
    objs = [coco(c, h, w) for c in lists]
    ref = [M.iou([objs[d]], [objs[g]], [c])[0, 0] for d, g, c in zip(di, gi, crowd)]
    assert np.array_equal(ours, ref)
    assert ours[2] == 0.0  # identical non-empty masks, yet pycocotools stops early -> 0


def test_iou_pairs_list_form():
    a = R.encode(np.tri(5, 5, dtype=bool))
    b = R.encode(np.tri(5, 5, dtype=bool).T)
    out = R.iou_pairs([a, a], [b, a], [False, True])
    assert out.tolist() == [5 / 25, 1.0]


# --------------------------------------------------------------------------
# validation
# --------------------------------------------------------------------------


def test_validate_rle_errors():
    with pytest.raises(ValueError, match="sum to 5 but the mask has h\\*w = 6"):
        R.validate_rle([2, 3], 2, 3)
    with pytest.raises(ValueError, match="non-negative"):
        R.validate_rle([3, -1, 4], 2, 3)
    with pytest.raises(ValueError, match="empty"):
        R.validate_rle([], 2, 3)
    with pytest.raises(ValueError, match="1-D"):
        R.validate_rle([[1, 2]], 1, 3)
    assert R.validate_rle([1, 2, 3], 2, 3).dtype == np.uint32


def test_decode_merge_iou_reject_mismatched_sizes():
    with pytest.raises(ValueError, match="h\\*w"):
        R.decode([1, 2], 2, 2)
    with pytest.raises(ValueError, match="h\\*w"):
        R.merge([[4], [5]], 2, 2)
    with pytest.raises(ValueError, match="different sizes"):
        R.iou([[4]], [[5]], [0])


def test_flat_functions_accept_arrow_style_sliced_offsets():
    lists = [[3, 2, 1], [6], [0, 6], [1, 1, 1, 1, 1, 1]]
    values, offsets = R.to_flat(lists)
    # an Arrow slice keeps the parent buffer: offsets start past foreign values
    parent = np.concatenate([np.array([7, 7, 7], np.uint32), values, np.array([9], np.uint32)])
    sliced = offsets + 3
    assert R.compress_many(parent, sliced) == [R.compress(c) for c in lists]
    assert R.area_flat(parent, sliced).tolist() == [2, 0, 6, 3]
    boxes = R.to_bbox_flat(parent, sliced, 2, 3)
    assert np.array_equal(boxes, np.stack([M.toBbox(coco(c, 2, 3)) for c in lists]))


@pytest.mark.parametrize("chunk", [None, 5000])
def test_iou_pairs_flat_realistic_canvas_matches_pycocotools_loop(monkeypatch, chunk):
    from udfs.polygons import polygons_to_rle_many

    if chunk:
        monkeypatch.setattr(R, "_CHUNK_RUNS", chunk)
    rng = np.random.default_rng(11)
    h, w, n = 480, 640, 150
    gt_polys, dt_polys = [], []
    for _ in range(n):
        cx, cy, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(3, 150)
        k = int(rng.integers(5, 15))
        ang = np.sort(rng.uniform(0, 2 * np.pi, k))
        rad = r * rng.uniform(0.4, 1.0, k)
        p = np.c_[cx + rad * np.cos(ang), cy + rad * np.sin(ang)].ravel()
        gt_polys.append([p.tolist()])
        dt_polys.append([(p + rng.normal(0, r * 0.15, p.size)).tolist()])
    gv, go = polygons_to_rle_many(gt_polys, h, w)
    dv, do = polygons_to_rle_many(dt_polys, h, w)
    matched = rng.integers(0, n, 1500)
    di = np.concatenate([matched, rng.integers(0, n, 1500)])
    gi = np.concatenate([matched, rng.integers(0, n, 1500)])
    crowd = rng.random(di.size) < 0.2
    ours = R.iou_pairs_flat(dv, do, di, gv, go, gi, crowd)
    dobj = [{"size": [h, w], "counts": R.compress(c)} for c in R.from_flat(dv, do)]
    gobj = [{"size": [h, w], "counts": R.compress(c)} for c in R.from_flat(gv, go)]
    ref = np.array([M.iou([dobj[d]], [gobj[g]], [c])[0, 0] for d, g, c in zip(di, gi, crowd)])
    assert np.count_nonzero(ref) > 1500
    assert np.array_equal(ours, ref)


def test_iou_pairs_flat_rejects_bad_indices():
    v, o = R.to_flat([[4], [1, 3]])
    with pytest.raises(ValueError, match="dt_idx must index"):
        R.iou_pairs_flat(v, o, [2], v, o, [0], False)
    with pytest.raises(ValueError, match="gt_idx must index"):
        R.iou_pairs_flat(v, o, [0], v, o, [-1], False)
