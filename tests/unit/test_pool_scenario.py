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
