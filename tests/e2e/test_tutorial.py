"""`loupe tutorial` as a user runs it: sample data (with the truth-file corrections) and real PennFudan + HOG.

The report must be self-contained and its before/after table must equal ``run.metrics(label_version=...)``
recomputed here from the workspace the tutorial left behind.
"""
from __future__ import annotations

import html
import json
import re
import subprocess
from pathlib import Path

import pytest

from engine.report.html import read_json_block
from tests.conftest import shared_path
from tests.e2e.cli_runner import loupe as run_loupe


def loupe(*args: str) -> subprocess.CompletedProcess:
    p = run_loupe(*args, timeout=600)
    assert p.returncode == 0, p.stderr + p.stdout
    return p


def assert_self_contained(text: str) -> None:
    assert "http://" not in text and "https://" not in text
    srcs = re.findall(r'\bsrc\s*=\s*"([^"]*)"', text)
    assert srcs, "the report embeds no image"
    assert all(s.startswith("data:image/") for s in srcs), [s[:40] for s in srcs if not s.startswith("data:")]
    assert "<link" not in text and "@import" not in text
    assert not re.search(r"url\((?!data:)", text)


def html_table(text: str, table_id: str) -> list[list[str]]:
    body = text[text.index(f'<table id="{table_id}">'):]
    body = body[: body.index("</table>")]
    rows = re.findall(r"<tr>(.*?)</tr>", body, flags=re.S)
    return [[html.unescape(c) for c in re.findall(r"<t[dh][^>]*>(.*?)</t[dh]>", r, flags=re.S)] for r in rows]


def recomputed(run, scope, version: int) -> dict:
    return run.metrics(slice=scope, label_version=version)["stats"]


def check_before_after(text: str, run, expected_rows: int) -> list[dict]:
    rows = read_json_block(text, "before-after-data")
    assert len(rows) == expected_rows
    table = html_table(text, "before-after")
    header, cells = table[0], table[1:]
    assert len(cells) == expected_rows
    for row, shown in zip(rows, cells):
        v = row["label_version"]
        for scope, title in (("test", "test set"), (None, "train+test")):
            stats = recomputed(run, scope, v)
            for k in ("AP", "AP50", "AR100"):
                assert row[f"{title} {k}"] == pytest.approx(stats[k], abs=1e-12)
                assert shown[header.index(f"{title} {k}")] == f"{stats[k]:.4f}"
    return rows


@pytest.mark.slow
def test_tutorial_on_sample_data(tmp_path):
    import engine

    out, db = tmp_path / "tut", tmp_path / "t.duckdb"
    p = loupe("tutorial", "--out", out, "--db", db, "--n", "40")
    report = out / "report.html"
    assert f"report: {report.resolve()}" in p.stdout
    for step in ("ingest", "slices", "commit", "metrics", "before/after"):
        assert f"] {step} ..." in p.stdout
    text = report.read_text(encoding="utf-8")
    assert_self_contained(text)

    truth = json.loads((out / "sample_data" / "truth.json").read_text())
    with engine.connect(db, read_only=True) as ws:
        ds = ws.get_dataset("sample")
        run = ws.get_run("simulated")
        assert {"test", "train"} <= set(ds.slices().column("name").to_pylist())
        assert len(ds.get_slice("test")) == 12 and len(ds.get_slice("train")) == 28
        rows = check_before_after(text, run, expected_rows=2)
        base, fixed = rows[0]["label_version"], rows[1]["label_version"]
        # the corrected version holds the truth file's added objects on top of the baseline labels
        n_base = ds.annotations(label_version=base).num_rows
        n_fixed = ds.annotations(label_version=fixed).num_rows
        assert n_fixed - n_base == sum(c["action"] == "add" for c in truth["corrections"])
        # the simulated detector sees the true objects: fixing the labels raises AP, as the truth says
        assert rows[1]["train+test AP"] > rows[0]["train+test AP"]
        assert rows[1]["test set AP"] > rows[0]["test set AP"]
        # the per-slice metrics table agrees with run.metrics too (label state of the first commit)
        metrics = {r[0]: r for r in html_table(text, "metrics")[1:]}
        assert metrics["test"][1] == f"{recomputed(run, 'test', base)['AP']:.3f}"
    if "suggestion-score-data" in text:
        score = read_json_block(text, "suggestion-score-data")
        assert 0 <= score[0]["precision@25"] <= 1


def test_tutorial_skips_missing_features(tmp_path, monkeypatch):
    """A build without the label-error finder, the corrections or engine.compare still runs to the end."""
    import engine
    import engine.curation.corrections
    from engine.api.model import ModelRun
    from engine.report.tutorial import run_tutorial

    monkeypatch.delattr(ModelRun, "suggest_label_errors")
    monkeypatch.delattr(engine.curation.corrections, "apply_truth_corrections")
    monkeypatch.delattr(engine, "compare", raising=False)
    lines: list[str] = []
    res = run_tutorial(out_dir=tmp_path / "t", n_images=12, echo=lines.append)
    skipped = {s.name: s.detail for s in res.skipped}
    assert skipped == {"label-error suggestions": "ModelRun.suggest_label_errors not available",
                       "corrected labels": "engine.curation.corrections.apply_truth_corrections not available"}
    assert "      skipped: ModelRun.suggest_label_errors not available" in lines
    assert res.missing == ["engine.compare"]  # the before/after table then comes from run.metrics
    text = res.report.read_text(encoding="utf-8")
    assert len(read_json_block(text, "before-after-data")) == 1  # no corrected labels, baseline only
    assert res.label_versions == {"baseline": 1}


@pytest.mark.slow
def test_tutorial_on_pennfudan_with_hog(tmp_path):
    pytest.importorskip("cv2", reason="OpenCV is not installed (optional extra: pip install 'loupe[hog]')")
    root = shared_path("PennFudanPed")
    import engine

    out = tmp_path / "pf"
    p = loupe("tutorial", str(root), "--out", out)  # all 170 images: HOG takes ~15-20 s on 2 cores
    assert "not applicable: no truth file for real data" in p.stdout
    text = (out / "report.html").read_text(encoding="utf-8")
    assert_self_contained(text)
    assert "there is no truth file" in text
    with engine.connect(out / "tutorial.duckdb", read_only=True) as ws:
        run = ws.get_run("hog")
        assert ws.get_dataset("pennfudan").info()["items"] == 170
        rows = check_before_after(text, run, expected_rows=1)
    # a working detector: HOG on PennFudan scores AP50 ~0.41 (a broken box conversion scores ~0)
    assert 0.3 < rows[0]["train+test AP50"] < 0.6


def test_tutorial_pennfudan_limit_uses_a_subset(tmp_path):
    pytest.importorskip("cv2", reason="OpenCV is not installed (optional extra: pip install 'loupe[hog]')")
    root = shared_path("PennFudanPed")
    import engine
    from engine.report.tutorial import run_tutorial

    res = run_tutorial(root, out_dir=tmp_path / "pf", limit=6, echo=lambda _: None)
    first = sorted(p.stem for p in (root / "PNGImages").glob("*.png"))[:6]
    with engine.connect(res.db, read_only=True) as ws:
        ds = ws.get_dataset("pennfudan")
        assert sorted(ds.items().column("reference_id").to_pylist()) == first
        # image locations point at the real files, not at the links
        assert all(Path(p).parent == (root / "PNGImages").resolve()
                   for p in ds.items().column("image_location").to_pylist())
        assert {s.name: s.status for s in res.steps}["corrected labels"] == "n/a"
        assert ws.get_run("hog").predictions().num_rows > 0
    # the report's numbered sections follow the console's steps, n/a ones included (10 jumped to 12)
    text = (tmp_path / "pf" / "report.html").read_text(encoding="utf-8")
    assert [int(n) for n in re.findall(r'<h2 id="[^"]*">(\d+)\. ', text)] == list(range(1, 13))


def test_tutorial_never_replaces_a_users_dataset(tmp_path):
    import engine
    from engine.errors import LoupeError
    from engine.report.tutorial import run_tutorial

    db = tmp_path / "mine.duckdb"
    with engine.connect(db) as ws:
        ws.create_dataset("sample").append([engine.DatasetItem("x.png", "x", width=8, height=8)], check_images=False)
    with pytest.raises(LoupeError, match="did not create"):
        run_tutorial(out_dir=tmp_path / "t", db=db, n_images=3, echo=lambda _: None)
    with engine.connect(db, read_only=True) as ws:
        assert ws.get_dataset("sample").info()["items"] == 1
    # a workspace the tutorial made is replaced on a re-run
    run_tutorial(out_dir=tmp_path / "t2", n_images=3, echo=lambda _: None)
    res = run_tutorial(out_dir=tmp_path / "t2", n_images=3, echo=lambda _: None)
    assert res.report.is_file()
