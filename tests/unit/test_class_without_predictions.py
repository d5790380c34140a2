"""docs/matching.md, "A class without predictions counts as AP 0" (issue 13, D18): relabelling one person
as a class the model never predicts roughly halves AP, as pycocotools does; per class shows why."""
from __future__ import annotations

import pytest

import engine


def test_new_label_class_without_predictions_enters_the_mean_as_zero(ws):
    ds = ws.create_dataset("d")
    refs = [f"i{k}" for k in range(6)]
    ds.append([engine.DatasetItem(f"{r}.png", r, width=200, height=200) for r in refs], check_images=False)
    ds.annotate([engine.BoxAnnotation("pedestrian", r, "1", x=20, y=20, width=40, height=100) for r in refs])
    run = ws.add_model("m").create_run("r", ds, [
        engine.BoxPrediction("pedestrian", r, f"{r}-p", x=22, y=21, width=40, height=100, confidence=0.9)
        for r in refs])
    before = run.metrics()["stats"]["AP"]
    ds.correct("1", reference_id="i0", label="cyclist", reason="rides a bike")
    m = run.metrics()
    per = {r["label"]: r for r in m["per_class"]}
    assert per["cyclist"]["ap"] == 0 and per["cyclist"]["predictions"] == 0
    assert per["pedestrian"]["ap"] > 0.5 * before  # one FP more (the rider, predicted as a pedestrian)
    assert m["stats"]["AP"] == pytest.approx((per["pedestrian"]["ap"] + 0) / 2, abs=1e-12)
    assert m["stats"]["AP"] < 0.6 * before
    assert run.metrics(class_agnostic=True)["stats"]["AP"] == pytest.approx(before, abs=1e-12)
