"""What a commit skips to bound its memory gives the same numbers.

``finish(per_object=False)`` (a commit's final accumulate, whose per-object outputs were recorded
chunk by chunk) must give the same precision / recall / scores / stats as the full ``finish``, and
a file workspace opens DuckDB with the configured memory limit (LOUPE_MEMORY_LIMIT).
"""
from __future__ import annotations

import numpy as np
import pytest

import engine
from engine.runs.evaluate import evaluate_inputs, start_evaluation
from engine.runs.inputs import gather
from engine.store import database
from tests.oracle.coco_random import import_pair, random_pair


@pytest.fixture(scope="module")
def ws_run(tmp_path_factory):
    gt, dets = random_pair(5, n_images=16)
    ws, run = import_pair(tmp_path_factory.mktemp("commit_memory"), gt, dets)
    yield ws, run
    ws.close()


@pytest.mark.parametrize("chunk", [None, 7])
def test_finish_without_per_object_outputs_is_identical(ws_run, chunk):
    ws, run = ws_run
    inp = gather(ws.store, run.dataset_id, run.id)
    full = evaluate_inputs(ws.store, inp, chunk_dets=chunk)
    lean = evaluate_inputs(ws.store, inp, chunk_dets=chunk, per_object=False)
    assert full.dt_match is not None and lean.dt_match is None and lean.gt_match is None
    for name in ("precision", "recall", "scores", "stats", "ap_per_class", "ar_per_class", "dt_dropped"):
        np.testing.assert_array_equal(getattr(lean, name), getattr(full, name))


@pytest.mark.parametrize("chunk", [None, 7])
def test_objects_of_some_thresholds_are_those_rows_of_all(ws_run, chunk):
    """A commit records the per-object matches of its own threshold only (``object_thrs``)."""
    ws, run = ws_run
    inp = gather(ws.store, run.dataset_id, run.id)
    seen: dict[str, list] = {"all": [], "some": []}

    def keep(name):
        return lambda ch, sub, sp, xp, objs: seen[name].append(objs)

    evaluate_inputs(ws.store, inp, chunk_dets=chunk, on_chunk=keep("all"))
    start_evaluation(ws.store, inp, chunk_dets=chunk, on_chunk=keep("some"), object_thrs=[5, 0]).result()
    assert len(seen["all"]) == len(seen["some"]) > (0 if chunk is None else 1)
    for full, some in zip(seen["all"], seen["some"]):
        for name in ("dt_match", "dt_ignore", "gt_match"):
            np.testing.assert_array_equal(getattr(some, name), getattr(full, name)[[5, 0]])
    assert any((full.dt_match[5] >= 0).any() for full in seen["all"])  # matches, not only the -1 defaults


def test_file_workspace_memory_limit(tmp_path, monkeypatch):
    monkeypatch.setenv("LOUPE_MEMORY_LIMIT", "1GB")
    ws = engine.connect(tmp_path / "a.duckdb")
    try:
        limit = ws.sql("SELECT current_setting('memory_limit') AS m").to_pylist()[0]["m"]
        assert limit.replace(" ", "") in ("953.6MiB", "1.0GB", "1GB", "953.7MiB")
    finally:
        ws.close()
    assert database._file_config(None) == {}  # in-memory workspaces keep DuckDB's default
    monkeypatch.setenv("LOUPE_MEMORY_LIMIT", "")
    assert "memory_limit" not in database._file_config(str(tmp_path / "b.duckdb"))
