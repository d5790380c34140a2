"""`loupe import ...` / `loupe export ...` as a user runs them: a real process, exit codes, stderr."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, shared_path


def loupe(*args: str, ok: bool = True) -> subprocess.CompletedProcess:
    p = subprocess.run([sys.executable, "-m", "engine", *map(str, args)], cwd=REPO, capture_output=True, text=True,
                       timeout=300)
    if ok:
        assert p.returncode == 0, p.stderr
    return p


def sql(db: Path, q: str) -> list[dict]:
    return json.loads("[" + ",".join(loupe("sql", "--db", db, "--read-only", "--format", "json", "-c", q)
                                     .stdout.strip().splitlines()) + "]")


def test_import_coco_with_results_then_export(tmp_path):
    d = shared_path("coco_subset", "instances_val2014_100")
    db = tmp_path / "w.duckdb"
    p = loupe("import", "coco", d / "instances_val2014_100.json", "--db", db, "--dataset", "coco",
              "--results", d / "instances_val2014_fakebbox100_results.json", "--run", "bbox")
    assert "100 new items, 839 new annotations" in p.stdout and "run 'bbox'" in p.stdout and "734" in p.stdout
    p = loupe("import", "coco", d / "instances_val2014_fakesegm100_results.json", "--db", db, "--dataset", "coco",
              "--run", "segm", "--format", "json")
    assert json.loads(p.stdout) ["predictions"] == 734
    assert sql(db, "SELECT count(*) AS n, count(*) FILTER (WHERE iscrowd) AS crowd FROM annotations") == [
        {"n": 839, "crowd": 9}]
    out = tmp_path / "gt.json"
    p = loupe("export", "coco", out, "--db", db, "--dataset", "coco")
    assert "100 images, 839 annotations" in p.stdout
    exported = json.loads(out.read_text())
    assert len(exported["images"]) == 100 and len(exported["annotations"]) == 839
    loupe("export", "coco", tmp_path / "bbox.json", "--db", db, "--dataset", "coco", "--run", "bbox")
    assert len(json.loads((tmp_path / "bbox.json").read_text())) == 734
    p = loupe("export", "parquet", tmp_path / "pq", "--db", db, "--dataset", "coco", "--run", "segm")
    assert "predictions.parquet (734 rows)" in p.stdout
    loupe("import", "parquet", tmp_path / "pq", "--db", db, "--dataset", "copy", "--run", "segm_copy")
    assert sql(db, "SELECT count(*) AS n FROM predictions p JOIN runs r USING (run_id) WHERE r.name = 'segm_copy'") == [
        {"n": 734}]


def test_import_pennfudan_real(tmp_path):
    root = shared_path("PennFudanPed")
    db = tmp_path / "w.duckdb"
    p = loupe("import", "pennfudan", root, "--db", db, "--dataset", "pf")
    assert "170 new items, 423 new annotations" in p.stdout and "pedestrian 423" in p.stdout
    info = json.loads(loupe("info", "--db", db, "--dataset", "pf", "--format", "json").stdout)
    assert info["items"] == 170 and info["kinds"] == {"box": 423}


def test_bad_input_is_one_line_on_stderr_and_writes_nothing(tmp_path):
    gt = {"images": [{"id": 1, "file_name": "a.jpg", "width": 10, "height": 10}],
          "categories": [{"id": 1, "name": "car"}],
          "annotations": [{"id": 5, "image_id": 1, "category_id": 1, "bbox": [1, 1, -2, 3], "area": 1, "iscrowd": 0}]}
    f = tmp_path / "gt.json"
    f.write_text(json.dumps(gt))
    db = tmp_path / "w.duckdb"
    p = loupe("import", "coco", f, "--db", db, "--dataset", "d", ok=False)
    assert p.returncode != 0
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in p.stderr
    assert "annotation_id '5'" in lines[0] and "field 'width'" in lines[0]
    assert sql(db, "SELECT count(*) AS n FROM datasets") == [{"n": 0}]
    p = loupe("import", "coco", tmp_path / "missing.json", "--db", db, "--dataset", "d", ok=False)
    assert p.returncode != 0 and "Traceback" not in p.stderr
    gt["annotations"][0]["bbox"] = [5, 5, 8, 3]  # crosses the right border
    f.write_text(json.dumps(gt))
    p = loupe("import", "coco", f, "--db", db, "--dataset", "d", ok=False)
    assert "outside the image" in p.stderr
    loupe("import", "coco", f, "--db", db, "--dataset", "kept", "--keep-outside")
    loupe("import", "coco", f, "--db", db, "--dataset", "clipped", "--clip")
    assert sql(db, "SELECT d.name, a.width FROM annotations a JOIN datasets d USING (dataset_id) ORDER BY d.name") == [
        {"name": "clipped", "width": 5.0}, {"name": "kept", "width": 8.0}]
    p = loupe("export", "coco", tmp_path / "x.json", "--db", db, "--dataset", "nope", ok=False)
    assert p.returncode != 0 and p.stderr.strip().splitlines() == ["error: no dataset named 'nope'; datasets: clipped, kept"]


def test_import_voc_and_yolo(tmp_path):
    from PIL import Image

    voc = tmp_path / "voc"
    (voc / "Annotations").mkdir(parents=True)
    (voc / "JPEGImages").mkdir()
    Image.new("RGB", (40, 30)).save(voc / "JPEGImages" / "v1.jpg")
    (voc / "Annotations" / "v1.xml").write_text(
        "<annotation><filename>v1.jpg</filename><size><width>40</width><height>30</height></size>"
        "<object><name>car</name><difficult>1</difficult><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>10</xmax>"
        "<ymax>5</ymax></bndbox></object></annotation>")
    yolo = tmp_path / "yolo"
    (yolo / "images").mkdir(parents=True)
    (yolo / "labels").mkdir()
    (yolo / "preds").mkdir()
    Image.new("RGB", (40, 30)).save(yolo / "images" / "y1.png")
    (yolo / "labels" / "y1.txt").write_text("1 0.5 0.5 0.5 0.5\n")
    (yolo / "preds" / "y1.txt").write_text("1 0.5 0.5 0.5 0.5 0.8\n0 0.25 0.25 0.1 0.1 0.3\n")
    (yolo / "data.yaml").write_text("names: [person, car]\n")
    db = tmp_path / "w.duckdb"
    p = loupe("import", "voc", voc, "--db", db, "--dataset", "voc")
    assert "1 new items, 1 new annotations" in p.stdout
    p = loupe("import", "yolo", yolo, "--db", db, "--dataset", "yolo", "--predictions", yolo / "preds", "--run", "y")
    assert "car 1" in p.stdout and "run 'y' on dataset 'yolo': 2 predictions" in p.stdout
    rows = sql(db, "SELECT d.name, a.x, a.y, a.width, a.height, a.label FROM annotations a "
                   "JOIN datasets d USING (dataset_id) ORDER BY d.name")
    assert rows == [{"name": "voc", "x": 0.0, "y": 0.0, "width": 10.0, "height": 5.0, "label": "car"},
                    {"name": "yolo", "x": 10.0, "y": 7.5, "width": 20.0, "height": 15.0, "label": "car"}]


@pytest.mark.parametrize("fmt", ["coco", "pennfudan", "voc", "yolo"])
def test_import_help_lists_options(fmt):
    p = loupe("import", fmt, "--help")
    assert "--db" in p.stdout and "--dataset" in p.stdout
