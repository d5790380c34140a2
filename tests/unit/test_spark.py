"""Loupe on Spark (local[2], the shared session of tests/conftest.py): the Spark commit equals the local commit
row for row and stat for stat, imports back into the workspace, and `loupe spark eval` prints
byte for byte what `loupe eval` prints."""
from __future__ import annotations

import numpy as np
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pytest
from click.testing import CliRunner

from engine.cli import cli, _load_commands
from engine.io.parquet_tables import export_tables
from engine.spark.commit import spark_commit
from engine.spark.importer import import_commit
from engine.spark.kernel import MATCHES_COLUMNS
from tests.oracle.coco_random import random_pair, import_pair

_SORT = [("source", "ascending"), ("ann_key", "ascending"), ("pred_key", "ascending")]


def _sorted(t):
    return t.take(pc.sort_indices(t, _SORT))


@pytest.mark.parametrize("iou_type", ["bbox", "segm"])
def test_commit_equals_local_and_imports_back(spark, tmp_path, iou_type):
    gt, dets = random_pair(3, n_images=16)  # crowds, score ties, >100 detections in an image
    ws, run = import_pair(tmp_path, gt, dets)
    export_tables(ws, tmp_path / "tables")
    r = spark_commit(tmp_path / "tables", "r", tmp_path / "out", spark=spark, iou_type=iou_type)
    loc = run.commit(iou_type=iou_type)
    np.testing.assert_allclose(list(r["stats"].values()), list(loc["stats"].values()), rtol=0, atol=1e-12)
    assert {k: r[k] for k in ("tp", "fp", "fn", "ignored", "predictions", "ground_truth")} == \
        {k: loc[k] for k in ("tp", "fp", "fn", "ignored", "predictions", "ground_truth")}
    local_rows = _sorted(ws.sql(f"SELECT * FROM matches WHERE run_id = {run.id}"))
    spark_rows = _sorted(pads.dataset(str(tmp_path / "out" / "matches")).to_table(columns=MATCHES_COLUMNS[:11]))
    assert spark_rows.equals(local_rows.cast(spark_rows.schema))  # every object's status, partner, IoU, error
    local_metrics = run.metrics(iou_type=iou_type)
    local_counts = ws.sql("SELECT * FROM item_match_counts ORDER BY ALL")

    ws.sql(f"DELETE FROM matches WHERE run_id = {run.id}")
    ws.sql("DELETE FROM evaluations")
    assert import_commit(run, tmp_path / "out") == local_rows.num_rows
    assert _sorted(ws.sql(f"SELECT * FROM matches WHERE run_id = {run.id}")).equals(local_rows)
    assert ws.sql("SELECT * FROM item_match_counts ORDER BY ALL").equals(local_counts)
    assert run.metrics(iou_type=iou_type) == local_metrics  # served from the imported evaluation
    assert run.error_types().num_rows > 0  # the commit index works for analysis


def _coco_pair(iou_type):
    from tests.conftest import shared_path

    base = shared_path("coco_subset", "instances_val2014_100")
    return str(base / "instances_val2014_100.json"), str(base / f"instances_val2014_fake{iou_type}100_results.json")


@pytest.mark.parametrize("iou_type,extra", [("bbox", ["--json"]), ("segm", [])])
def test_spark_eval_prints_what_eval_prints(spark, iou_type, extra):
    gt, res = _coco_pair(iou_type)
    _load_commands()
    runner = CliRunner()
    local = runner.invoke(cli, ["eval", gt, res, "--iou-type", iou_type, *extra])
    on_spark = runner.invoke(cli, ["spark", "eval", gt, res, "--iou-type", iou_type, *extra])
    assert local.exit_code == 0, local.output
    assert on_spark.exit_code == 0, on_spark.output
    assert on_spark.stdout_bytes == local.stdout_bytes
    assert "Average Precision" in local.output or '"stats"' in local.output


def test_cli_export_commit_import_and_refusal(spark, tmp_path):
    """`loupe export parquet --tables`, `loupe spark commit`, `loupe spark import`; a commit whose
    objects the workspace no longer holds is refused, and nothing is written."""
    import json

    import engine
    from engine.errors import LoupeError

    gt, dets = random_pair(4, n_images=6)
    ws, run = import_pair(tmp_path, gt, dets)  # writes gt.json / res.json; the in-memory reference
    db = str(tmp_path / "w.duckdb")
    _load_commands()
    runner = CliRunner()
    out = runner.invoke(cli, ["import", "coco", str(tmp_path / "gt.json"), "--db", db, "--dataset", "d",
                              "--results", str(tmp_path / "res.json"), "--run", "r", "--keep-outside"])
    assert out.exit_code == 0, out.output
    out = runner.invoke(cli, ["export", "parquet", str(tmp_path / "tables"), "--db", db, "--tables"])
    assert out.exit_code == 0, out.output
    out = runner.invoke(cli, ["spark", "commit", str(tmp_path / "tables"), "--run", "r", "--out",
                              str(tmp_path / "out"), "--format", "json"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.output)["stats"] == run.commit()["stats"]
    out = runner.invoke(cli, ["spark", "import", str(tmp_path / "out"), "--db", db, "--run", "r"])
    assert out.exit_code == 0 and "imported" in out.output, out.output
    with engine.connect(db) as w2:
        n = w2.sql("SELECT count(*) AS n FROM matches").column("n")[0].as_py()
        assert n == len(dets) + len(gt["annotations"])
        w2.sql("DELETE FROM predictions WHERE pred_key IN (SELECT min(pred_key) FROM predictions)")
        with pytest.raises(LoupeError, match="does not match run"):
            import_commit(w2.get_run("r"), tmp_path / "out")
        assert w2.sql("SELECT count(*) AS n FROM matches").column("n")[0].as_py() == n
