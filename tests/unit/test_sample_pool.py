"""The unlabeled pool: files, metadata and truth.json agree; crowds and planted near-duplicates are what
the truth says; the same seed gives the same bytes."""
from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
from PIL import Image

import sample_data
from sample_data.pool import CROWDED, TRANSFORMS, generate_pool

TEST_IDS = ["SynthPed00002", "SynthPed00005", "SynthPed00007", "SynthPed00009"]


@pytest.fixture(scope="module")
def pool(tmp_path_factory):
    root = tmp_path_factory.mktemp("pool") / "sample"
    sample_data.generate(root, n_images=10, seed=0)
    out = generate_pool(root, n_generated=16, seed=3, test_ids=TEST_IDS)
    truth = json.loads((out / "truth.json").read_text())
    meta = json.loads((out / "metadata.json").read_text())
    return root, out, truth, meta


def test_files_metadata_and_truth_agree(pool):
    root, out, truth, meta = pool
    files = {p.stem: p for p in (out / "PNGImages").iterdir()}
    assert set(files) == set(meta) == set(truth["pool"]) == set(truth["images"])
    assert len(files) == 16 + 5 == truth["summary"]["images"]
    assert not (out / "Annotation").exists()  # unlabeled: no annotations anywhere
    assert all(set(m) == {"camera", "time_of_day", "weather", "scene"} for m in meta.values())
    kinds = [p["kind"] for p in truth["pool"].values()]
    assert kinds.count("generated") == truth["summary"]["generated"] == 16
    assert kinds.count("duplicate") == truth["summary"]["duplicates"] == 5
    assert truth["crowded"] == sorted(r for r, p in truth["pool"].items() if p["crowded"])
    for ref, p in truth["pool"].items():
        assert p["crowd"] == len(truth["images"][ref]["objects"])
        assert p["crowded"] == (p["crowd"] >= CROWDED)
        w, h = Image.open(files[ref]).size
        assert (w, h) == (truth["images"][ref]["width"], truth["images"][ref]["height"])


def test_generated_crowds_are_a_known_subset(pool):
    _, _, truth, _ = pool
    gen = [p for p in truth["pool"].values() if p["kind"] == "generated"]
    crowded = [p["crowd"] for p in gen if p["crowded"]]
    sparse = [p["crowd"] for p in gen if not p["crowded"]]
    assert crowded and sparse
    assert max(sparse) <= 3 and min(crowded) >= CROWDED


def test_planted_duplicates_are_what_truth_says(pool):
    root, out, truth, _ = pool
    dups = truth["duplicates"]
    assert sorted(d["transform"] for d in dups) == sorted(TRANSFORMS)
    labeled = json.loads((root / "truth.json").read_text())["images"]
    assert len({d["source"] for d in dups}) == len(dups)
    for d in dups:
        assert d["source"] in labeled and truth["pool"][d["reference_id"]]["source"] == d["source"]
        assert d["source_split"] == ("test" if d["source"] in TEST_IDS else "train")
        src = np.asarray(Image.open(root / "PNGImages" / f"{d['source']}.png").convert("RGB"), np.float64)
        path = next((out / "PNGImages").glob(d["reference_id"] + ".*"))
        dup = np.asarray(Image.open(path).convert("RGB"), np.float64)
        H, W = src.shape[:2]
        t = d["transform"]
        assert (path.suffix == ".jpg") == (t == "reencode")
        if t == "mirror":
            assert np.array_equal(dup, src[:, ::-1])
        elif t == "resize":
            assert dup.shape[:2] == (round(H * 0.5), round(W * 0.5))
        elif t == "crop":
            assert dup.shape[:2] == (round(H * 0.85), round(W * 0.85))
        elif t == "brighten":
            assert dup.shape == src.shape and dup.mean() > src.mean() * 1.1
        else:
            assert dup.shape == src.shape and 0 < np.abs(dup - src).mean() < 8
    assert truth["summary"]["duplicates_of_test"] == sum(d["source_split"] == "test" for d in dups) >= 2


def test_detector_runs_on_the_pool_and_sees_crowds(pool):
    _, out, truth, _ = pool
    preds = sample_data.detect(out, seed=1)
    per = {r: 0 for r in truth["pool"]}
    for p in preds:
        if p["score"] >= 0.5:
            per[p["reference_id"]] += 1
    crowded = np.mean([per[r] for r in truth["crowded"]])
    other = np.mean([n for r, n in per.items() if r not in set(truth["crowded"])])
    assert crowded > other + 2


def test_same_seed_same_bytes(tmp_path):
    root = tmp_path / "s"
    sample_data.generate(root, n_images=5, seed=0)

    def digest() -> dict:
        out = generate_pool(root, n_generated=3, seed=1)
        return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(out.rglob("*")) if p.is_file()}

    first = digest()
    assert first == digest() and len(first) == 2 + 3 + 5
