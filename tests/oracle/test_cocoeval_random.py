"""Property test: Loupe COCO evaluation == pycocotools COCOeval on random datasets, bit for bit.

Random datasets cover crowds, score ties, IoU ties (duplicate GT boxes), images
without GT or without detections, categories without GT, detections of unknown
categories, touching and zero-area boxes, GT areas on the area-range borders,
more than 100 detections in one image/category, GT annotation id 0, and
class-agnostic / custom-parameter runs.
"""
from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.metrics.coco_arrays import arrays_from_coco
from engine.metrics.cocoeval import CocoParams, evaluate
from pycoco_oracle import assert_matches_agree, assert_same_eval, run_pycocotools


def make_dataset(seed: int, n_img: int, n_cat: int, scale: float, crowd_p: float, dup_p: float,
                 score_levels: int, gt_rate: float, dt_rate: float, many: bool, id0: bool):
    """A small random COCO GT dict + bbox results list (boxes on a coarse grid -> ties, touching)."""
    rng = np.random.default_rng(seed)
    img_ids = rng.choice(np.arange(1, 1000), n_img, replace=False)
    cat_ids = np.sort(rng.choice(np.arange(1, 100), n_cat, replace=False))
    images = [{"id": int(i), "width": 640, "height": 480} for i in img_ids]
    categories = [{"id": int(c), "name": str(c)} for c in cat_ids]
    gt_cats = cat_ids[: max(1, n_cat - 1)] if n_cat > 1 and rng.random() < 0.5 else cat_ids  # maybe one without GT

    def box() -> list[float]:
        x, y = rng.integers(0, 10, 2)
        w, h = rng.integers(0, 7, 2)
        return [float(v * scale) for v in (x, y, w, h)]

    anns = []
    for im in img_ids:
        for _ in range(rng.poisson(gt_rate)):
            c = rng.choice(gt_cats)
            prev = [a for a in anns if a["image_id"] == im and a["category_id"] == c]
            b = list(prev[-1]["bbox"]) if prev and rng.random() < dup_p else box()
            area_kind = rng.integers(0, 6)
            area = [b[2] * b[3], b[2] * b[3] * 0.7, 32.0 ** 2, 96.0 ** 2, rng.uniform(0, 20000), 1e10 + 1][area_kind]
            anns.append({"id": 0, "image_id": int(im), "category_id": int(c), "bbox": b,
                         "area": float(area), "iscrowd": int(rng.random() < crowd_p)})
    order = rng.permutation(len(anns))
    anns = [anns[i] for i in order]
    for k, a in enumerate(anns):
        a["id"] = k + (0 if id0 else 1)

    def score() -> float:
        return float(rng.integers(1, score_levels + 1) / score_levels) if score_levels else float(rng.random())

    results = []
    for im in img_ids:
        mine = [a for a in anns if a["image_id"] == im]
        for _ in range(rng.poisson(dt_rate)):
            if mine and rng.random() < 0.6:
                a = mine[rng.integers(len(mine))]
                jit = rng.integers(-1, 2, 4) * scale
                b = [float(max(0.0, v + j)) for v, j in zip(a["bbox"], jit)]
                c = a["category_id"] if rng.random() < 0.8 else int(rng.choice(cat_ids))
            else:
                b, c = box(), int(rng.choice(cat_ids))
            results.append({"image_id": int(im), "category_id": int(c), "bbox": b, "score": score()})
    if many:  # > maxDets detections in one image/category
        im, c = int(img_ids[0]), int(cat_ids[0])
        for _ in range(130):
            results.append({"image_id": im, "category_id": c, "bbox": box(), "score": score()})
    if rng.random() < 0.2:  # a category the GT does not know: pycocotools ignores it
        results.append({"image_id": int(img_ids[0]), "category_id": 1000, "bbox": box(), "score": 0.5})
    if not results:  # pycocotools' loadRes cannot take an empty list
        results.append({"image_id": int(img_ids[-1]), "category_id": int(cat_ids[0]), "bbox": box(), "score": 0.3})
    return {"images": images, "annotations": anns, "categories": categories}, results


datasets = st.builds(
    make_dataset,
    seed=st.integers(0, 2 ** 32 - 1),
    n_img=st.integers(1, 6),
    n_cat=st.integers(1, 4),
    scale=st.sampled_from([1.0, 7.0, 25.0]),
    crowd_p=st.sampled_from([0.0, 0.15, 0.5]),
    dup_p=st.sampled_from([0.0, 0.4]),
    score_levels=st.sampled_from([0, 2, 5]),
    gt_rate=st.sampled_from([0.5, 2.0, 5.0, 10.0]),
    dt_rate=st.sampled_from([0.0, 3.0, 12.0, 30.0]),
    many=st.booleans(),
    id0=st.sampled_from([False, False, False, True]),
)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=datasets, use_cats=st.sampled_from([True, True, True, False]))
def test_random_datasets_match_pycocotools(data, use_cats):
    gt, results = data
    ga, da, pairs = arrays_from_coco(gt, results, use_cats=use_cats)
    res = evaluate(ga, da, pairs, CocoParams(use_cats=use_cats))
    ev = run_pycocotools(gt, results, use_cats=use_cats)
    assert_same_eval(res, ev)
    assert_matches_agree(res, ev, ga.ann_id, len(results))
    # Per-class AP = mean of pycocotools precision > -1 (area all, maxDet 100).
    prec = ev.eval["precision"][:, :, :, 0, -1]
    for k in range(prec.shape[2]):
        v = prec[:, :, k][prec[:, :, k] > -1]
        assert res.ap_per_class[k] == (np.mean(v) if v.size else -1.0)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=datasets,
       thrs=st.sampled_from([(0.5, 0.75), (0.3, 0.5, 0.9), (0.5, 0.95)]),  # unsorted: refused (test_coco_params)
       max_dets=st.sampled_from([(1, 10, 100), (1, 5, 20), (3, 50, 200)]))
def test_custom_params_match_pycocotools(data, thrs, max_dets):
    gt, results = data
    ga, da, pairs = arrays_from_coco(gt, results)
    params = CocoParams(iou_thrs=thrs, max_dets=max_dets)
    res = evaluate(ga, da, pairs, params)
    ev = run_pycocotools(gt, results, params={"iouThrs": np.array(thrs), "maxDets": list(max_dets)})
    assert_same_eval(res, ev)
    assert_matches_agree(res, ev, ga.ann_id, len(results))


def test_empty_inputs_follow_pycocotools_conventions():
    """No detections: categories with GT score 0 (pycocotools: nd = 0 -> recall 0, precision 0);
    categories without GT and a run without any GT score -1 everywhere."""
    from engine.metrics.cocoeval import DtArrays, GtArrays, PairArrays

    e, f = np.zeros(0, np.int64), np.zeros(0)
    no_dt = DtArrays(img=e, cat=e, score=f, area=f)
    gt = GtArrays(img=np.array([0, 1]), cat=np.array([0, 0]), area=np.array([100.0, 5000.0]),
                  iscrowd=np.array([False, False]), n_images=3, n_categories=2)
    res = evaluate(gt, no_dt, PairArrays(e, e, f))
    assert (res.precision[:, :, 0, 0] == 0).all() and (res.precision[:, :, 1] == -1).all()
    assert (res.recall[:, 0, 0] == 0).all() and (res.recall[:, 1] == -1).all()
    assert res.stats[5] == -1 and res.stats[0] == 0  # no large GT; AP over the rest is 0
    np.testing.assert_array_equal(res.gt_match, -1)
    no_gt = GtArrays(img=e, cat=e, area=f, iscrowd=e.astype(bool), n_images=1, n_categories=1)
    one_dt = DtArrays(img=np.array([0]), cat=np.array([0]), score=np.array([0.5]), area=np.array([4.0]))
    res = evaluate(no_gt, one_dt, PairArrays(e, e, f))
    assert (res.stats == -1).all() and (res.precision == -1).all() and res.dt_match[0, 0] == -1
