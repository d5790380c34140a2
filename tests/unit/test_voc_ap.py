"""Pascal VOC AP (engine.metrics.voc, run.voc_metrics, loupe eval --metric voc|voc11).

Published expected values: the worked example of rafaelpadilla/Object-Detection-Metrics (7 images,
15 GT, 24 detections, IoU 0.3, inclusive-pixel areas): all-point AP 24.57 % (results/results.txt,
24.56 % in its README), 11-point AP 26.84 %, and its per-detection precision / recall lists. The
boxes below are that example's data (x, y, w, h). A transcription of the devkit's sequential loop
(VOCevaldet.m / voc_eval.py semantics) checks the vectorized kernel on random data with
``difficult`` GT and score ties.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

import engine
from engine.cli import _load_commands, cli
from engine.metrics.voc import voc_ap, voc_evaluate

_load_commands()

GT = [(1, 25, 16, 38, 56), (1, 129, 123, 41, 62), (2, 123, 11, 43, 55), (2, 38, 132, 59, 45), (3, 16, 14, 35, 48),
      (3, 123, 30, 49, 44), (3, 99, 139, 47, 47), (4, 53, 42, 40, 52), (4, 154, 43, 31, 34), (5, 59, 31, 44, 51),
      (5, 48, 128, 34, 52), (6, 36, 89, 52, 76), (6, 62, 58, 44, 67), (7, 28, 31, 55, 63), (7, 58, 67, 50, 58)]
DT = [(1, .88, 5, 67, 31, 48), (1, .70, 119, 111, 40, 67), (1, .80, 124, 9, 49, 67), (2, .71, 64, 111, 64, 58),
      (2, .54, 26, 140, 60, 47), (2, .74, 19, 18, 43, 35), (3, .18, 109, 15, 77, 39), (3, .67, 86, 63, 46, 45),
      (3, .38, 160, 62, 36, 53), (3, .91, 105, 131, 47, 47), (3, .44, 18, 148, 40, 44), (4, .35, 83, 28, 28, 26),
      (4, .78, 28, 68, 42, 67), (4, .45, 87, 89, 25, 39), (4, .14, 10, 155, 60, 26), (5, .62, 50, 38, 28, 46),
      (5, .44, 95, 11, 53, 28), (5, .95, 29, 131, 72, 29), (5, .23, 29, 163, 72, 29), (6, .45, 43, 48, 74, 38),
      (6, .84, 17, 155, 29, 35), (6, .43, 95, 110, 25, 42), (7, .48, 16, 20, 101, 88), (7, .95, 33, 116, 37, 49)]
PUBLISHED_PREC = [1.00, 0.50, 0.67, 0.50, 0.40, 0.33, 0.29, 0.25, 0.22, 0.30, 0.27, 0.33, 0.38, 0.43, 0.40, 0.38,
                  0.35, 0.33, 0.32, 0.30, 0.29, 0.27, 0.30, 0.29]
PUBLISHED_REC = [0.07, 0.07, 0.13, 0.13, 0.13, 0.13, 0.13, 0.13, 0.13, 0.20, 0.20, 0.27, 0.33, 0.40, 0.40, 0.40,
                 0.40, 0.40, 0.40, 0.40, 0.40, 0.40, 0.47, 0.47]


def _coco(tmp_path, gt_extra=None):
    gt = {"images": [{"id": i, "file_name": f"{i}.jpg", "width": 300, "height": 300} for i in range(1, 8)],
          "categories": [{"id": 1, "name": "person"}, {"id": 2, "name": "dog"}],
          "annotations": [{"id": k + 1, "image_id": g[0], "category_id": 1, "bbox": list(g[1:]), "area": g[3] * g[4],
                           "iscrowd": 0, **((gt_extra or {}).get(k, {}))} for k, g in enumerate(GT)]}
    res = [{"image_id": d[0], "category_id": 1, "bbox": list(d[2:]), "score": d[1]} for d in DT]
    res.append({"image_id": 1, "category_id": 2, "bbox": [0, 0, 5, 5], "score": 0.5})  # a label without GT
    (tmp_path / "g.json").write_text(json.dumps(gt))
    (tmp_path / "r.json").write_text(json.dumps(res))
    return tmp_path / "g.json", tmp_path / "r.json"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    g, r = _coco(tmp_path_factory.mktemp("voc"))
    ws = engine.connect()
    ws.import_coco(g, dataset="d", results=r, run="r", check_images=False, clip="keep")
    yield ws.get_run("r")
    ws.close()


def test_published_example_all_point_and_11_point(run):
    m = run.voc_metrics(iou_threshold=0.3, plus_one=True)
    assert m["per_class"] == {"person": pytest.approx(0.2457, abs=5e-5)}  # labels without GT are left out
    assert m["mAP"] == m["per_class"]["person"]
    assert run.voc_metrics(iou_threshold=0.3, plus_one=True, eleven_point=True)["mAP"] == pytest.approx(0.2684, abs=5e-5)
    # without +1 one detection falls under 0.3: a different (lower) AP
    assert run.voc_metrics(iou_threshold=0.3)["mAP"] < 0.2457 - 1e-3


def test_published_precision_recall_points(run):
    from engine.runs.voc import voc_run

    inp, res = voc_run(run.ws.store, run.dataset_id, run.id, 0.3, plus_one=True)
    k = inp.labels.index("person")
    np.testing.assert_array_equal(np.round(res.precision[k], 2), PUBLISHED_PREC)
    np.testing.assert_array_equal(np.round(res.recall[k], 2), PUBLISHED_REC)


def test_cli_voc_json(tmp_path):
    g, r = _coco(tmp_path)
    for metric, want in (("voc", 0.2457), ("voc11", 0.2684)):
        out = CliRunner().invoke(cli, ["eval", str(g), str(r), "--metric", metric, "--iou", "0.3", "--plus-one", "--json"])
        assert out.exit_code == 0, out.output
        m = json.loads(out.output.strip().splitlines()[-1])
        assert set(m) == {"mAP", "per_class"} and m["mAP"] == pytest.approx(want, abs=5e-5)
    out = CliRunner().invoke(cli, ["eval", str(g), str(r), "--metric", "voc", "--iou", "0"])
    assert out.exit_code == 2 and "--iou" in out.output


def test_difficult_gt_is_neither_tp_nor_counted(tmp_path):
    """Marking the GT that a TP found as difficult removes that TP and that GT from recall."""
    ws = engine.connect()
    g, r = _coco(tmp_path, gt_extra={0: {"difficult": 1}, 3: {"difficult": True}})
    ws.import_coco(g, dataset="d", results=r, run="r", check_images=False, clip="keep")
    run = ws.get_run("r")
    from engine.runs.voc import voc_run

    inp, res = voc_run(ws.store, run.dataset_id, run.id, 0.3, plus_one=True)
    k = inp.labels.index("person")  # labels in COCO category-id order
    assert res.n_pos[k] == 13
    base_gt = [(g[0], g[1:]) for g in GT]
    want = _reference(base_gt, [(d[0], d[1], d[2:]) for d in DT], [i in (0, 3) for i in range(len(GT))], 0.3, True)
    assert res.ap[k] == pytest.approx(want[0], abs=1e-12)
    ws.close()


def _iou_row(d, gts, plus_one):
    one = 1.0 if plus_one else 0.0
    out = []
    for g in gts:
        iw = min(d[0] + d[2], g[0] + g[2]) - max(d[0], g[0]) + one
        ih = min(d[1] + d[3], g[1] + g[3]) - max(d[1], g[1]) + one
        if iw <= 0 or ih <= 0:
            out.append(0.0)
            continue
        inter = iw * ih
        out.append(inter / ((d[2] + one) * (d[3] + one) + (g[2] + one) * (g[3] + one) - inter))
    return out


def _reference(gt, dets, difficult, thr, plus_one, eleven=False):
    """The devkit's loop for one class: dets (img, score, box) in score order, best GT by IoU."""
    order = sorted(range(len(dets)), key=lambda i: -dets[i][1])  # stable
    taken = set()
    tp, fp = [], []
    for i in order:
        img, _, box = dets[i]
        idx = [j for j, (gi, _) in enumerate(gt) if gi == img]
        ious = _iou_row(box, [gt[j][1] for j in idx], plus_one)
        if ious and max(ious) >= thr:
            j = idx[int(np.argmax(ious))]
            if difficult[j]:
                continue
            if j in taken:
                tp.append(0), fp.append(1)
            else:
                taken.add(j)
                tp.append(1), fp.append(0)
        else:
            tp.append(0), fp.append(1)
    npos = sum(not d for d in difficult)
    ctp, cfp = np.cumsum(tp), np.cumsum(fp)
    rec = ctp / npos
    prec = ctp / np.maximum(ctp + cfp, np.finfo(np.float64).eps)
    return voc_ap(rec, prec, eleven), rec, prec


@pytest.mark.parametrize("seed", range(25))
def test_kernel_equals_the_devkit_loop(seed):
    rng = np.random.default_rng(seed)
    n_img, K = 6, 3
    gts, dets = [], []
    for _ in range(int(rng.integers(5, 30))):
        gts.append((int(rng.integers(n_img)), int(rng.integers(K)),
                    [float(rng.integers(0, 60)), float(rng.integers(0, 60)), float(rng.integers(2, 40)),
                     float(rng.integers(2, 40))]))
    for _ in range(int(rng.integers(0, 60))):
        if gts and rng.random() < 0.6:
            img, c, b = gts[int(rng.integers(len(gts)))]
            b = [v + float(rng.integers(-4, 5)) for v in b[:2]] + b[2:]
        else:
            img, c, b = int(rng.integers(n_img)), int(rng.integers(K)), [float(rng.integers(0, 60)), float(rng.integers(0, 60)), 20.0, 20.0]
        dets.append((img, c if rng.random() > 0.1 else int(rng.integers(K)), b, float(rng.choice([0.5, 0.7, rng.random()]))))
    diff = rng.random(len(gts)) < 0.2
    thr = float(rng.choice([0.3, 0.5, 0.7]))
    plus_one = bool(rng.integers(2))
    eleven = bool(rng.integers(2))
    pairs = [(i, j, v) for i, d in enumerate(dets) for j, g in enumerate(gts) if d[0] == g[0] and d[1] == g[1]
             for v in _iou_row(d[2], [g[2]], plus_one) if v > 0]
    pd, pg, pv = (np.array([p[t] for p in pairs]) for t in range(3)) if pairs else (np.zeros(0, int),) * 2 + (np.zeros(0),)
    res = voc_evaluate([g[0] for g in gts], [g[1] for g in gts], diff, [d[0] for d in dets], [d[1] for d in dets],
                       [d[3] for d in dets], pd, pg, pv, K, thr, eleven)
    for k in range(K):
        sel_g = [j for j, g in enumerate(gts) if g[1] == k]
        sel_d = [i for i, d in enumerate(dets) if d[1] == k]
        npos = sum(not diff[j] for j in sel_g)
        if npos == 0:
            assert np.isnan(res.ap[k])
            continue
        want, _, _ = _reference([(gts[j][0], gts[j][2]) for j in sel_g], [(dets[i][0], dets[i][3], dets[i][2]) for i in sel_d],
                                [bool(diff[j]) for j in sel_g], thr, plus_one, eleven)
        assert res.ap[k] == pytest.approx(want, abs=1e-12), k
