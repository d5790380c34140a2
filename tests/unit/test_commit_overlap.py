"""A commit accumulates on a second thread while it writes the ``matches`` index (engine/runs/background.py).

The overlap must change nothing: the same stats and rows as the evaluation run in one thread, and a failure
of the background accumulate leaves the previous index, counts and evaluation as they were (one transaction).
"""
from __future__ import annotations

import threading

import numpy as np
import pytest

import engine.runs.evaluate as evaluate_mod
from engine.store import match_counts
from engine.runs.background import Background
from engine.runs.evaluate import evaluate_inputs, start_evaluation
from engine.runs.inputs import gather
from tests.oracle.coco_random import import_pair, random_pair

_TABLES = {
    "matches": "SELECT * FROM matches ORDER BY source, pred_key, ann_key",
    "counts": "SELECT * FROM item_match_counts ORDER BY ALL",
    "evaluations": "SELECT iou_type, label_version, stats::VARCHAR AS s, per_class::VARCHAR AS p FROM evaluations",
    "runs": "SELECT committed_at, params::VARCHAR AS p FROM runs",
}


@pytest.fixture(scope="module")
def ws_run(tmp_path_factory):
    gt, dets = random_pair(11, n_images=24)
    ws, run = import_pair(tmp_path_factory.mktemp("overlap"), gt, dets)
    yield ws, run
    ws.close()


def _state(ws) -> dict:
    return {name: ws.sql(q).to_pylist() for name, q in _TABLES.items()}


def test_background_returns_the_value_or_raises_in_the_caller():
    assert Background(sum, [1, 2, 3]).result() == 6
    assert Background(sum, [4], inline=True).result() == 4
    seen = []

    def fail() -> None:
        seen.append(threading.current_thread() is threading.main_thread())
        raise ValueError("boom")

    step = Background(fail)
    with pytest.raises(ValueError, match="boom"):
        step.result()
    assert seen == [False]  # it ran on the other thread
    with pytest.raises(ValueError):  # asking again raises again, never returns None
        step.result()


def test_background_accumulate_equals_the_one_thread_evaluation(ws_run):
    ws, run = ws_run
    inp = gather(ws.store, run.dataset_id, run.id)
    ref = evaluate_inputs(ws.store, inp)
    started = start_evaluation(ws.store, inp, background=True)
    got = started.result()
    for name in ("precision", "recall", "scores", "stats", "ap_per_class", "ar_per_class", "dt_dropped",
                 "dt_match", "gt_match", "dt_ignore"):
        np.testing.assert_array_equal(getattr(got, name), getattr(ref, name))
    np.testing.assert_array_equal(~started.plan.evaluated, ref.dt_dropped)


def test_commit_runs_the_accumulate_beside_the_write(ws_run, monkeypatch):
    ws, run = ws_run
    first = run.commit()
    state = _state(ws)
    threads = []
    real = evaluate_mod.finish

    def spy(*a, **k):
        threads.append(threading.current_thread() is threading.main_thread())
        return real(*a, **k)

    monkeypatch.setattr(evaluate_mod, "finish", spy)
    again = run.commit()
    assert threads == [False]  # the accumulate ran on the second thread
    assert again["stats"] == first["stats"] and again["tp"] == first["tp"] and again["fn"] == first["fn"]
    after = _state(ws)
    for name in ("matches", "counts", "evaluations"):
        assert after[name] == state[name], name


def test_a_failing_background_accumulate_writes_nothing(ws_run, monkeypatch):
    ws, run = ws_run
    run.commit()
    before = _state(ws)
    written = threading.Event()
    seen = []
    real_counts = match_counts.write_counted

    def counts_then_signal(store, run_id, counts):  # inside the transaction, after the matches insert
        real_counts(store, run_id, counts)
        seen.append(store.scalar("SELECT count(*) FROM matches WHERE iou_threshold = 0.3"))
        written.set()

    def boom(*a, **k):  # the accumulate fails once the new rows are in the open transaction
        written.wait(timeout=60)
        raise RuntimeError("accumulate failed")

    monkeypatch.setattr(match_counts, "write_counted", counts_then_signal)
    monkeypatch.setattr(evaluate_mod, "finish", boom)
    with pytest.raises(RuntimeError, match="accumulate failed"):
        run.commit(iou_threshold=0.3)
    assert seen and seen[0] > 0  # the new index had been written when the accumulate failed
    assert _state(ws) == before  # ... and was rolled back with everything else


def test_accumulate_inputs_built_beforehand_give_the_same_curves(ws_run):
    """The accumulate's match-free part (with running counts) built beside the matching = built inside."""
    from engine.metrics.cocoeval import PairArrays, accumulate_inputs, finish, match
    from engine.runs.evaluate import _plan, candidate_pairs

    ws, run = ws_run
    inp = gather(ws.store, run.dataset_id, run.id)
    plan = _plan(inp, None)
    sp = candidate_pairs(ws.store, inp, "bbox")
    mt = match(plan, PairArrays(sp.dt, sp.gt, sp.iou))
    assert len(mt.dt) > 0
    ref = finish(plan, mt)
    got = finish(plan, mt, prepared=accumulate_inputs(plan))
    for name in ("precision", "recall", "scores", "stats"):
        np.testing.assert_array_equal(getattr(got, name), getattr(ref, name))
    assert (ref.precision > 0).any()
