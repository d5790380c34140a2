"""Terminal escape injection: table output escapes control characters in labels and ids; csv and json
stay byte-exact (issue 13 B4)."""
from __future__ import annotations

import csv
import io
import json

import subprocess
import sys

import pyarrow as pa
import pytest

import engine
from tests.e2e.cli_runner import REPO, loupe

EVIL_LABEL = "car\x1b]0;pwned\x07\x1b[2J"
EVIL_REF = "img\x1b[31m\u202eevil\r\n"
CONTROL = ("\x1b", "\x07", "\x9b", "\u202e", "\r")


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    path = tmp_path_factory.mktemp("escapes") / "ws.duckdb"
    with engine.connect(path) as ws:
        ds = ws.create_dataset("d")
        ds.append(pa.table({"reference_id": [EVIL_REF, "plain"], "width": [100, 100], "height": [50, 50],
                            "metadata": ['{"note": "\\u001b[5mblink\\u009b"}', None]}), check_images=False)
        ds.annotate([engine.BoxAnnotation(EVIL_LABEL, EVIL_REF, x=1, y=1, width=10, height=10, annotation_id="g\x1bid"),
                     engine.BoxAnnotation("person", "plain", x=1, y=1, width=10, height=10)])
        run = ws.add_model("m").create_run("r", ds, [
            engine.BoxPrediction(EVIL_LABEL, EVIL_REF, x=1, y=1, width=10, height=10, confidence=0.9),
            engine.BoxPrediction("person", "plain", x=50, y=20, width=10, height=10, confidence=0.4)])
        run.commit()
    return str(path)


def _clean(out: str) -> None:
    for c in CONTROL:
        assert c not in out, repr(out)


@pytest.mark.parametrize("args", [
    ("query", "--dataset", "d", "annotations.count >= 0"),
    ("query", "--dataset", "d", "--objects", "--run", "r", "label = 'person' or label != 'person'"),
    ("patches", "--run", "r"),
    ("insights", "--dataset", "d", "--run", "r"),
    ("sql", "-c", "SELECT label, reference_id, i.metadata FROM annotations JOIN items i USING (item_id)"),
], ids=["query", "query-objects", "patches", "insights", "sql"])
def test_table_output_escapes_control_characters(db, args):
    r = loupe(args[0], "--db", db, *args[1:])
    assert r.returncode == 0, r.stderr
    _clean(r.stdout)
    assert "\\x1b" in r.stdout  # shown, escaped


def test_error_messages_escape_control_characters(db):
    r = loupe("patches", "--db", db, "--run", "no\x1b]0;x\x07such")
    assert r.returncode == 1
    _clean(r.stderr)
    assert "no\\x1b]0;x\\x07such" in r.stderr


def test_csv_and_json_stay_exact(db):
    c = subprocess.run([sys.executable, "-m", "engine", "query", "--db", db, "--dataset", "d", "--objects",
                        "--format", "csv", "label = 'person' or label != 'person'"], capture_output=True, cwd=REPO)
    assert c.returncode == 0, c.stderr  # bytes: no newline translation
    rows = list(csv.DictReader(io.StringIO(c.stdout.decode(), newline="")))
    assert EVIL_LABEL in {r["label"] for r in rows} and EVIL_REF in {r["reference_id"] for r in rows}
    j = loupe("query", "--db", db, "--dataset", "d", "--format", "json", "true")
    assert j.returncode == 0, j.stderr
    _clean(j.stdout)  # JSON escapes control characters itself
    assert EVIL_REF in {json.loads(line)["reference_id"] for line in j.stdout.splitlines()}
