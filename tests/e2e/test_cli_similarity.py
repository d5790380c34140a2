"""``loupe embed / similar / duplicates / select`` through the real CLI (subprocess), small data."""
from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest

import engine
from tests.e2e.cli_runner import loupe


def _jsonl(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    path = tmp_path_factory.mktemp("simcli") / "w.duckdb"
    rng = np.random.default_rng(5)
    refs = [f"r{i}" for i in range(30)]
    with engine.connect(path) as ws:
        ds = ws.create_dataset("d")
        ds.append(pa.table({"reference_id": refs}), check_images=False)
        v = rng.normal(size=(30, 8)).astype(np.float32)
        v[7] = v[3] + 0.001
        ds.add_embeddings("v", (refs, v))
        h = rng.integers(0, 2 ** 62, size=30).astype(np.uint64)
        h[9] = h[2] ^ np.uint64(3)
        ds.add_embeddings("ph", (refs, h), model="phash")
        ds.create_slice("a", reference_ids=refs[:5])
        ds.create_slice("b", reference_ids=refs[5:])
    return str(path)


def test_similar_json_and_errors(db):
    r = loupe("similar", "--db", db, "--dataset", "d", "r3", "-e", "v", "-k", "2", "--format", "json")
    assert r.returncode == 0, r.stderr
    rows = _jsonl(r.stdout)
    assert rows[0]["reference_id"] == "r7" and len(rows) == 2
    bad = loupe("similar", "--db", db, "--dataset", "d", "nope", "-e", "v")
    assert bad.returncode == 1 and bad.stderr.count("\n") == 1 and "nope" in bad.stderr
    usage = loupe("similar", "--db", db, "--dataset", "d", "r3", "-k", "0")
    assert usage.returncode == 2


def test_duplicates_leaky_and_select(db):
    r = loupe("duplicates", "--db", db, "--dataset", "d", "--method", "phash", "--format", "csv")
    assert r.returncode == 0, r.stderr
    assert "r2" in r.stdout and "r9" in r.stdout
    r = loupe("duplicates", "--db", db, "--dataset", "d", "-e", "v", "--max-distance", "0.01", "--leaky", "a", "b",
              "--format", "json")
    pairs = _jsonl(r.stdout)
    assert [(p["reference_id_a"], p["reference_id_b"]) for p in pairs] == [("r3", "r7")]
    r = loupe("select", "--db", db, "--dataset", "d", "-n", "3", "--strategy", "diversity", "-e", "v",
              "--slice-name", "pick", "--format", "json")
    assert r.returncode == 0, r.stderr
    assert len(_jsonl(r.stdout)) == 3


def test_embed_needs_a_known_model(db):
    r = loupe("embed", "--db", db, "--dataset", "d", "--model", "no-such-model")
    assert r.returncode == 1 and r.stderr.startswith("error:") and r.stderr.count("\n") == 1
