"""The pool scenario's figures: precision@k and duplicate scores are computed from the API's results
against the pool's truth, and similarity search and the prediction-count query beat a random ranking."""
from __future__ import annotations

import json

import pyarrow as pa
import pytest

import sample_data
from engine.report import pool_scenario as ps


def test_precision_and_duplicate_scores_by_hand():
    assert ps.precision_at(["a", "x", "b"], {"a", "b"}, ks=(2, 3, 4)) == {2: 0.5, 3: 2 / 3, 4: 0.5}
    rows = ps.rank_scores({"mine": ["a", "b", "x"]}, ["a", "b", "x", "y"], {"a", "b"}, ks=(2,))
    by = {r["ranking"]: r["precision@2"] for r in rows}
    assert by["mine"] == 1.0 and by["random (expected)"] == 0.5 and by["best possible"] == 1.0
    groups = pa.table({"group": [0, 0, 0, 1, 1], "reference_id": ["d1", "s1", "z", "d2", "q"]})
    s = ps.duplicate_scores(groups, [("d1", "s1"), ("d2", "s2"), ("d3", "s3")])
    assert s == {"found_pairs": 4, "planted_pairs": 3, "true_pairs": 1, "precision": 0.25, "recall": 1 / 3}


@pytest.fixture(scope="module")
def scenario(tmp_path_factory):
    pytest.importorskip("onnxruntime")  # extra 'embed', installed by .ci/run
    import engine

    root = tmp_path_factory.mktemp("scenario") / "sample"
    sample_data.generate(root, n_images=12, seed=0)
    pool = sample_data.generate_pool(root, n_generated=48, seed=0, test_ids=["SynthPed00001", "SynthPed00004"])
    ws = engine.connect()
    ws.import_pennfudan(root, dataset="d")
    ds = ws.get_dataset("d")
    refs, run = ps.add_pool(ds, pool, ws.add_model("simulated detector", "sim"))
    ds.compute_embeddings("efficientnet-lite0", name="effnet", progress=False)
    ds.compute_embeddings("phash", name="phash", progress=False)
    ds.create_slice("test", reference_ids=["SynthPed00001", "SynthPed00004"])
    yield ds, run, refs, ps.pool_truth(pool), json.loads((root / "metadata.json").read_text())
    ws.close()


def test_pool_items_are_unlabeled_and_sliced(scenario):
    ds, run, refs, truth, _ = scenario
    assert len(refs) == 48 + 5 and len(ds.get_slice("pool")) == 53
    pool_items = ds.query('slice("pool") AND annotations.count = 0')
    assert pool_items.num_rows == len(refs)
    assert run.predictions().num_rows > 0


def test_similarity_and_prediction_query_beat_random(scenario):
    ds, run, refs, truth, meta = scenario
    positives = set(truth["crowded"])
    examples = [e for e in ps.crowded_examples(meta, meta, 3) if meta[e]["crowd"] >= 5]
    assert examples
    ranked = ps.similarity_ranking(ds, examples, "effnet", len(refs))
    assert sorted(ranked) == sorted(refs)  # only pool items, all of them
    pred = ps.prediction_count_ranking(ds, run)
    rows = {r["ranking"]: r for r in ps.rank_scores({"similar": ranked, "dsl": pred}, refs, positives)}
    base = rows["random (expected)"]["precision@20"]
    assert 0 < base < 0.5
    assert rows["similar"]["precision@20"] > base
    assert rows["dsl"]["precision@20"] > base
    # the figures are the truth's count among the top 20 of what the API returned
    assert rows["similar"]["precision@20"] == sum(r in positives for r in ranked[:20]) / 20


def test_planted_duplicates_are_found(scenario):
    ds, _, refs, truth, _ = scenario
    planted = ps.planted_pairs(truth)
    for kw in (dict(method="phash", max_hamming=10), dict(method=None, embeddings="effnet", max_distance=0.1)):
        groups = ds.find_duplicates(**kw)
        s = ps.duplicate_scores(groups, planted)
        # 5 planted among ~65 items (~2,000 pairs): a random pair is planted with p < 0.003
        assert s["planted_pairs"] == 5 and s["precision"] > 0.5 and s["recall"] >= 0.6, (kw, s)
        leaks = ps.leak_scores(ds.leaky_splits("test", "pool", **kw), truth)
        assert leaks["planted_pairs"] == 2 and leaks["true_pairs"] >= 1, (kw, leaks)
    # the hashes cannot see a mirrored copy: that is what the missed column reports
    ph = ps.duplicate_pairs(ds.find_duplicates(method="phash", max_hamming=10))
    assert "mirror x1" in ps.missed_transforms(ph, truth)


def test_leak_scores_by_hand():
    truth = {"duplicates": [{"reference_id": "p1", "source": "t1", "source_split": "test", "transform": "crop"},
                            {"reference_id": "p2", "source": "r1", "source_split": "train", "transform": "mirror"}]}
    pairs = pa.table({"reference_id_a": ["t1", "t2"], "reference_id_b": ["p1", "p9"], "distance": [0.0, 3.0]})
    assert ps.leak_scores(pairs, truth) == {"found_pairs": 2, "planted_pairs": 1, "true_pairs": 1,
                                            "precision": 0.5, "recall": 1.0}
    assert ps.missed_transforms(set(), truth, split="test") == "crop x1"
