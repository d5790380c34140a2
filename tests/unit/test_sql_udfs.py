"""SQL functions registered on every connection: box_iou macro, mask_iou / mask_area Arrow UDFs."""
from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

import engine
from udfs import rle


@pytest.fixture
def masks_ws(ws):
    rng = np.random.default_rng(3)
    ds = ws.create_dataset("m")
    ds.append([engine.DatasetItem("a", "a", width=20, height=15)], check_images=False)
    ms = [rng.random((15, 20)) > 0.6 for _ in range(6)]
    ds.annotate([engine.SegmentationAnnotation("x", "a", str(i), mask=m, iscrowd=(i == 5)) for i, m in enumerate(ms)])
    return ws, ms


def test_mask_iou_and_area_match_the_kernel(masks_ws):
    ws, ms = masks_ws
    rows = ws.sql("""SELECT a.annotation_id AS i, b.annotation_id AS j, mask_iou(a.mask, b.mask, b.iscrowd) AS iou,
                            mask_area(a.mask) AS area
                     FROM annotations a, annotations b ORDER BY i, j""").to_pylist()
    assert len(rows) == 36
    for r in rows:
        i, j = int(r["i"]), int(r["j"])
        want = rle.iou([rle.encode(ms[i])], [rle.encode(ms[j])], [j == 5])[0, 0]
        assert r["iou"] == want
        assert r["area"] == ms[i].sum()


def test_mask_iou_null_is_null(masks_ws):
    ws, _ = masks_ws
    assert ws.sql("SELECT mask_iou(NULL::UINTEGER[], mask, false) AS v FROM annotations LIMIT 1").column("v")[0].as_py() is None


def test_box_iou_from_the_cli(tmp_path):
    from engine.cli import _load_commands, cli

    _load_commands()
    db = tmp_path / "w.duckdb"
    engine.connect(db).close()
    r = CliRunner().invoke(cli, ["sql", "--db", str(db), "-c", "SELECT box_iou(0, 0, 10, 10, 5, 0, 10, 10, false) AS v",
                                 "--format", "csv"])
    assert r.exit_code == 0, r.output
    assert float(r.output.strip().splitlines()[-1]) == pytest.approx(1 / 3)
    r = CliRunner().invoke(cli, ["sql", "--db", str(db), "--read-only", "-c", "SELECT mask_area([3, 2, 1]::UINTEGER[]) AS v",
                                 "--format", "csv"])
    assert r.exit_code == 0, r.output
    assert float(r.output.strip().splitlines()[-1]) == 2
