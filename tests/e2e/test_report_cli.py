"""``loupe report``: a self-contained HTML file for a dataset, a run and a slice; numbers equal the API's."""
from __future__ import annotations

import re

import pytest

from engine.report.html import read_json_block
from tests.e2e.cli_runner import loupe


@pytest.fixture(scope="module")
def street(tmp_path_factory):
    from engine.cli.demo import build_demo

    tmp = tmp_path_factory.mktemp("report")
    db = tmp / "w.duckdb"
    ws, ds, run = build_demo(tmp / "data", 10, str(db))
    run.commit()
    ds.create_slice("front", query='metadata.camera = "front"')
    ds.annotate([__import__("engine").BoxAnnotation("<script>alert(1)</script>", ds.items().column("reference_id")[0].as_py(),
                                                     x=1, y=1, width=5, height=5, annotation_id="xss")])
    expect = {"all": run.metrics()["stats"]["AP"], "front": run.metrics(slice="front")["stats"]["AP"]}
    ws.close()
    return db, tmp, expect


def test_report_for_run_and_slice(street):
    db, tmp, expect = street
    for sl in (None, "front"):
        out = tmp / f"r-{sl}.html"
        args = ["report", "--db", db, "--dataset", "sample", "--run", "simulated", "--out", out]
        r = loupe(*(args + (["--slice", sl] if sl else [])))
        assert r.returncode == 0, r.stderr
        text = out.read_text()
        data = read_json_block(text, "loupe-report")
        assert abs(data["metrics"]["stats"]["AP"] - expect[sl or "all"]) < 1e-12
        assert text.count("<svg") >= 6  # label, per-item, box-size, PR and error-type charts
        # escaped in HTML; inside the JSON block "</" is written "<\\/" so it cannot close the block
        assert "<script>alert(1)</script>" not in text
        assert sl or "&lt;script&gt;alert(1)" in text  # (the hostile label is outside the slice)
        assert not re.search(r"<(img|link|script)[^>]+(src|href)=\"https?:", text)  # self-contained


def test_report_dataset_only_and_errors(street):
    db, tmp, _ = street
    r = loupe("report", "--db", db, "--dataset", "sample", "--out", tmp / "d.html")
    assert r.returncode == 0 and "metrics" not in read_json_block((tmp / "d.html").read_text(), "loupe-report")
    r = loupe("report", "--db", db, "--dataset", "sample", "--run", "nope", "--out", tmp / "x.html")
    assert r.returncode == 1 and r.stderr.startswith("error: no run named 'nope'")
    r = loupe("report", "--db", db, "--dataset", "sample", "--slice", "nope", "--out", tmp / "x.html")
    assert r.returncode == 1 and "nope" in r.stderr
