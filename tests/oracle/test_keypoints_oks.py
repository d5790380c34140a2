"""Keypoint (OKS) evaluation against live pycocotools ``COCOeval(iouType='keypoints')`` on seeded random
data: crowds, GT with num_keypoints 0 (ignored), invisible keypoints (box distance), score ties, more
than maxDets detections, area ranges; per-category sigmas; the CLI's 10 stats."""
from __future__ import annotations

import contextlib
import copy
import io
import json

import numpy as np
import pytest
from click.testing import CliRunner

pytest.importorskip("pycocotools")
from pycocotools.coco import COCO  # noqa: E402
from pycocotools.cocoeval import COCOeval  # noqa: E402

import engine  # noqa: E402
from engine.cli import _load_commands, cli  # noqa: E402
from engine.errors import ValidationError  # noqa: E402

_load_commands()


def kp_pair(seed: int, n_images: int = 10, cats: dict[int, int] | None = None) -> tuple[dict, list[dict]]:
    """GT with keypoints (categories id -> keypoint count) and keypoint results."""
    cats = cats or {1: 17}
    rng = np.random.default_rng(seed)
    W, H = 400, 300
    images = [{"id": i + 1, "file_name": f"{i}.jpg", "width": W, "height": H} for i in range(n_images)]
    anns, dets = [], []
    for im in images:
        for _ in range(int(rng.integers(0, 6))):
            c = int(rng.choice(list(cats)))
            k = cats[c]
            x, y = float(rng.integers(0, W - 120)), float(rng.integers(0, H - 120))
            w, h = float(rng.integers(5, 120)), float(rng.integers(5, 120))
            xs, ys = x + rng.uniform(0, w, k).round(1), y + rng.uniform(0, h, k).round(1)
            v = rng.choice([0, 1, 2], k, p=[0.3, 0.2, 0.5])
            if rng.random() < 0.15:
                v[:] = 0  # no visible keypoint: OKS uses the box, and num_keypoints 0 ignores it
            kps = np.stack([np.where(v > 0, xs, 0), np.where(v > 0, ys, 0), v], 1).ravel().tolist()
            area = float(w * h) if rng.random() > 0.2 else float(rng.uniform(500, 15000))
            anns.append({"id": len(anns) + 1, "image_id": im["id"], "category_id": c, "bbox": [x, y, w, h],
                         "area": area, "iscrowd": int(rng.random() < 0.08), "keypoints": kps,
                         "num_keypoints": int((v > 0).sum())})
            for _ in range(int(rng.integers(0, 4))):  # detections near this GT
                jit = float(rng.choice([0.5, 3.0, 10.0]))
                dk = np.stack([xs + rng.normal(0, jit, k).round(2), ys + rng.normal(0, jit, k).round(2),
                               np.ones(k)], 1).ravel().tolist()
                s = float(rng.choice([0.5, 0.8])) if rng.random() < 0.3 else float(round(rng.random(), 3))
                dets.append({"image_id": im["id"], "category_id": c, "keypoints": dk, "score": s})
        n_far = 25 if rng.random() < 0.1 else int(rng.integers(0, 3))  # > maxDets 20 sometimes
        for _ in range(n_far):
            c = int(rng.choice(list(cats)))
            k = cats[c]
            dk = np.stack([rng.uniform(0, W, k).round(1), rng.uniform(0, H, k).round(1), np.ones(k)], 1)
            dets.append({"image_id": im["id"], "category_id": c, "keypoints": dk.ravel().tolist(),
                         "score": float(round(rng.random(), 3))})
    categories = [{"id": c, "name": f"kind{c}", "keypoints": [f"p{i}" for i in range(k)], "skeleton": []}
                  for c, k in cats.items()]
    return {"images": images, "annotations": anns, "categories": categories}, dets


def pycoco_kp(gt: dict, dets: list[dict], sigmas=None, cat_ids=None, params=None) -> COCOeval:
    with contextlib.redirect_stdout(io.StringIO()):
        cg = COCO()
        cg.dataset = copy.deepcopy(gt)
        cg.createIndex()
        cd = cg.loadRes(copy.deepcopy(dets))
        e = COCOeval(cg, cd, "keypoints")
        if sigmas is not None:
            e.params.kpt_oks_sigmas = np.asarray(sigmas)
        if cat_ids is not None:
            e.params.catIds = cat_ids
        for k, v in (params or {}).items():
            setattr(e.params, k, v)
        e.evaluate()
        e.accumulate()
        e.summarize()
    return e


def _import(tmp_path, gt, dets):
    (tmp_path / "g.json").write_text(json.dumps(gt))
    (tmp_path / "r.json").write_text(json.dumps(dets))
    ws = engine.connect()
    ws.import_coco(tmp_path / "g.json", dataset="d", results=tmp_path / "r.json", run="r", check_images=False,
                   clip="keep")
    return ws, ws.get_run("r")


@pytest.mark.parametrize("seed", range(10))
def test_oks_stats_equal_pycocotools(tmp_path, seed):
    gt, dets = kp_pair(seed, n_images=8 + seed)
    ref = pycoco_kp(gt, dets)
    ws, run = _import(tmp_path, gt, dets)
    c = run.commit(iou_type="keypoints")
    assert list(c["stats"]) == ["AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl"]
    np.testing.assert_allclose(list(c["stats"].values()), ref.stats, rtol=0, atol=1e-12)
    m = run.metrics(iou_type="keypoints", slice=ws.sql("SELECT reference_id FROM items").column(0).to_pylist())
    np.testing.assert_allclose(list(m["stats"].values()), ref.stats, rtol=0, atol=1e-12)
    ws.close()


def test_oks_with_custom_params_and_sigmas(tmp_path):
    gt, dets = kp_pair(42, n_images=14)
    sig = list(np.linspace(0.02, 0.12, 17).round(3))
    ref = pycoco_kp(gt, dets, sigmas=sig, params={"maxDets": [5, 20], "iouThrs": np.array([0.3, 0.5, 0.75])})
    ws, run = _import(tmp_path, gt, dets)
    m = run.metrics(iou_type="keypoints", kpt_oks_sigmas=sig, max_dets=[5, 20], iou_thresholds=[0.3, 0.5, 0.75])
    np.testing.assert_allclose(list(m["stats"].values()), ref.stats, rtol=0, atol=1e-12)
    ws.close()


def test_per_category_sigmas(tmp_path):
    """Two categories with 17 and 5 keypoints: each label's AP equals pycocotools run on that category
    with that category's sigmas."""
    gt, dets = kp_pair(7, n_images=16, cats={1: 17, 2: 5})
    sig5 = [0.05, 0.06, 0.07, 0.08, 0.09]
    ws, run = _import(tmp_path, gt, dets)
    with pytest.raises(ValidationError, match="kind2.*5 keypoints"):
        run.metrics(iou_type="keypoints")  # COCO's 17 sigmas do not fit the 5-keypoint label
    from engine.metrics.oks import COCO_PERSON_SIGMAS

    m = run.metrics(iou_type="keypoints", kpt_oks_sigmas={"kind1": list(COCO_PERSON_SIGMAS), "kind2": sig5})
    aps = {r["label"]: r["ap"] for r in m["per_class"]}
    for cid, sig in ((1, None), (2, sig5)):
        ref = pycoco_kp(gt, dets, sigmas=sig, cat_ids=[cid])
        p = ref.eval["precision"][:, :, 0, 0, -1]
        assert aps[f"kind{cid}"] == pytest.approx(float(np.mean(p[p > -1])), abs=1e-12)
    ws.close()


def test_cli_prints_10_keypoint_stats(tmp_path):
    gt, dets = kp_pair(3, n_images=12)
    ref = pycoco_kp(gt, dets)
    (tmp_path / "g.json").write_text(json.dumps(gt))
    (tmp_path / "r.json").write_text(json.dumps(dets))
    r = CliRunner().invoke(cli, ["eval", str(tmp_path / "g.json"), str(tmp_path / "r.json"), "--iou-type",
                                 "keypoints", "--json"])
    assert r.exit_code == 0, r.output
    stats = json.loads(r.output.strip().splitlines()[-1])["stats"]
    assert len(stats) == 10
    np.testing.assert_allclose(stats, ref.stats, rtol=0, atol=1e-12)
    r = CliRunner().invoke(cli, ["eval", str(tmp_path / "g.json"), str(tmp_path / "r.json"), "--iou-type", "keypoints"])
    assert r.exit_code == 0 and "area=medium | maxDets= 20" in r.output and "maxDets 20)" in r.output, r.output
