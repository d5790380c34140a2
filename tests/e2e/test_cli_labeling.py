"""``loupe labels export|import``: a suspected-label-error list sent to CVAT and the fixes taken back."""
from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import numpy as np
from PIL import Image

import engine
from tests.e2e.cli_runner import loupe


def test_labels_round_trip_from_the_shell(tmp_path):
    db = tmp_path / "w.duckdb"
    ws = engine.connect(str(db))
    ds = ws.create_dataset("street")
    for r in ("a", "b"):
        Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(tmp_path / f"{r}.png")
    ds.append([engine.DatasetItem(image_location=str(tmp_path / f"{r}.png"), reference_id=r) for r in "ab"])
    ds.annotate([engine.BoxAnnotation(label="pedestrian", reference_id=r, annotation_id="1", x=1, y=1, width=9,
                                      height=9) for r in "ab"])
    ws.close()
    (tmp_path / "ids.txt").write_text("b\n")
    out = loupe("labels", "export", "cvat", tmp_path / "t.xml", "--db", db, "--dataset", "street",
                "--ids", tmp_path / "ids.txt", "--format", "json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["images"] == 1
    tree = ET.parse(tmp_path / "t.xml")
    img = tree.getroot().find("image")
    img.find("box").set("label", "cyclist")
    tree.write(tmp_path / "t.xml")
    out = loupe("labels", "import", "cvat", tmp_path / "t.xml", "--db", db, "--dataset", "street",
                "--reason", "cvat pass 1")
    assert out.returncode == 0, out.stderr
    assert "changed: 1" in out.stdout and "cyclist" in out.stdout
    bad = loupe("labels", "import", "cvat", tmp_path / "ids.txt", "--db", db, "--dataset", "street")
    assert bad.returncode == 1 and bad.stderr.count("\n") == 1 and "not a CVAT XML file" in bad.stderr
    ws = engine.connect(str(db), read_only=True)
    labels = {(r["reference_id"], r["label"]) for r in ws.get_dataset("street").annotations().to_pylist()}
    assert labels == {("a", "pedestrian"), ("b", "cyclist")}
    ws.close()
