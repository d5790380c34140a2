"""Embedding sets: storage, validation (nothing written on bad input), exact search against brute force."""
from __future__ import annotations

import importlib.util

import numpy as np
import pyarrow as pa
import pytest

import engine
from engine import BoxAnnotation, ValidationError
from engine.api.records import BoxAnnotation as _BA  # noqa: F401  (same class)
from engine.errors import LoupeError, NotFoundError

N, D = 60, 16


def _pred_cls():
    return engine.BoxPrediction


@pytest.fixture(scope="module")
def world():
    ws = engine.connect()
    ds = ws.create_dataset("sim")
    refs = [f"img{i:03d}" for i in range(N)]
    ds.append(pa.table({"reference_id": refs, "image_location": [None] * N, "width": [100] * N,
                        "height": [80] * N, "metadata": [f'{{"split": "{"train" if i % 2 else "test"}"}}' for i in range(N)]}),
              check_images=False)
    ds.annotate([BoxAnnotation(label="person", reference_id=r, annotation_id=f"a{j}", x=1 + j, y=2, width=10, height=20)
                 for r in refs[:10] for j in range(2)])
    model = ws.add_model("m")
    model.create_run("r1", ds, [_pred_cls()(label="person", reference_id=r, annotation_id=f"p{r}", x=1, y=2, width=10,
                                            height=20, confidence=0.5) for r in refs[:5]])
    rng = np.random.default_rng(7)
    vecs = rng.normal(size=(N, D)).astype(np.float32)
    ds.add_embeddings("vec", (refs, vecs), model="random")
    yield ws, ds, refs, vecs
    ws.close()


def _brute(vecs: np.ndarray, q: np.ndarray) -> np.ndarray:
    u = vecs / np.linalg.norm(vecs, axis=1, keepdims=True)
    return u @ (q / np.linalg.norm(q))


def test_catalog_lists_set(world):
    ws, ds, refs, vecs = world
    t = ds.embeddings()
    row = {c: t.column(c)[0].as_py() for c in t.column_names}
    assert row["name"] == "vec" and row["level"] == "item" and row["kind"] == "vector"
    assert row["dim"] == D and row["count"] == N and row["model"] == "random"
    assert ws.sql("SELECT typeof(vector) AS t FROM embedding_vectors_16 LIMIT 1").column(0)[0].as_py() == "FLOAT[16]"


@pytest.mark.parametrize("qi", [0, 17, 59])
def test_exact_search_equals_brute_force(world, qi):
    ws, ds, refs, vecs = world
    got = ds.similar(refs[qi], k=7, embeddings="vec")
    s = _brute(vecs, vecs[qi])
    s[qi] = -np.inf  # the query itself is left out by default
    want = np.argsort(-s, kind="stable")[:7]
    assert got.column("reference_id").to_pylist() == [refs[i] for i in want]
    np.testing.assert_allclose(got.column("score").to_numpy(), s[want], rtol=1e-5, atol=1e-6)


def test_search_by_vector_and_several_positives(world):
    ws, ds, refs, vecs = world
    q = np.random.default_rng(1).normal(size=D)
    got = ds.similar(q, k=5, embeddings="vec")
    assert got.column("reference_id").to_pylist() == [refs[i] for i in np.argsort(-_brute(vecs, q))[:5]]
    u = vecs / np.linalg.norm(vecs, axis=1, keepdims=True)
    mean = (u[3] + u[4]) / 2
    s = _brute(vecs, mean)
    s[[3, 4]] = -np.inf
    got = ds.similar([refs[3], refs[4]], k=4, embeddings="vec")
    assert got.column("reference_id").to_pylist() == [refs[i] for i in np.argsort(-s)[:4]]


def test_where_and_slice_restrict_candidates(world):
    ws, ds, refs, vecs = world
    got = ds.similar(refs[0], k=N, embeddings="vec", where='metadata.split = "train"')
    assert len(got) == N // 2 and all(int(r[3:]) % 2 for r in got.column("reference_id").to_pylist())
    ds.create_slice("first10", reference_ids=refs[:10])
    got = ds.similar(refs[0], k=N, embeddings="vec", slice="first10")
    assert sorted(got.column("reference_id").to_pylist()) == refs[1:10]


def test_cache_follows_writes(world):
    ws, ds, refs, vecs = world
    ds.add_embeddings("tmp", (refs[:3], np.eye(3, dtype=np.float32)))
    assert ds.similar(refs[0], k=1, embeddings="tmp").column(0).to_pylist() in ([refs[1]], [refs[2]])
    ds.add_embeddings("tmp", ([refs[2]], np.array([[1, 0.1, 0]], np.float32)))  # replaces refs[2]'s row
    assert ds.similar(refs[0], k=1, embeddings="tmp").column(0).to_pylist() == [refs[2]]
    ds.delete_embeddings("tmp")
    with pytest.raises(NotFoundError):
        ds.similar(refs[0], embeddings="tmp")


@pytest.mark.parametrize("bad, record", [
    ({"img000": [1.0, 2.0], "img001": [1.0, 2.0, 3.0]}, "img001"),            # mixed dimension
    ({"img000": [1.0, 2.0], "nope": [1.0, 2.0]}, "nope"),                     # unknown id
    ({"img000": [1.0, float("nan")]}, "img000"),                             # NaN
    ({"img005": [1.0, float("inf")]}, "img005"),                             # inf
    ((["img004", "img004"], np.ones((2, 3))), "img004"),                     # duplicate id
])
def test_bad_input_names_record_and_writes_nothing(world, bad, record):
    ws, ds, refs, vecs = world
    before = ds.embeddings().column("name").to_pylist()
    with pytest.raises(ValidationError, match=record):
        ds.add_embeddings("bad", bad)
    assert ds.embeddings().column("name").to_pylist() == before


def test_wrong_dimension_for_existing_set_and_level_errors(world):
    ws, ds, refs, vecs = world
    with pytest.raises(ValidationError, match="dimension"):
        ds.add_embeddings("vec", ([refs[0]], np.ones((1, D + 1))))
    with pytest.raises(ValidationError, match="unknown id"):  # an item id at gt level
        ds.add_embeddings("objs", ([refs[0]], np.ones((1, 4))), level="gt")
    with pytest.raises(ValidationError, match="run"):
        ds.add_embeddings("objs", (["a0"], np.ones((1, 4))), level="prediction")
    with pytest.raises(ValidationError, match="level"):
        ds.add_embeddings("objs", ([refs[0]], np.ones((1, 4))), level="pixel")
    with pytest.raises(ValidationError):
        ds.similar(np.ones(D + 2), embeddings="vec")


def test_object_level_sets(world):
    ws, ds, refs, vecs = world
    # GT ids are per item: a0 exists on ten items -> ambiguous without reference_id
    with pytest.raises(ValidationError, match="ambiguous"):
        ds.add_embeddings("gtvec", (["a0"], np.ones((1, 4))), level="gt")
    t = pa.table({"reference_id": [r for r in refs[:10] for _ in range(2)],
                  "annotation_id": [f"a{j}" for _ in range(10) for j in range(2)],
                  "vector": pa.array(np.random.default_rng(3).normal(size=(20, 4)).tolist())})
    assert ds.add_embeddings("gtvec", t, level="gt")["written"] == 20
    got = ds.similar(("img000", "a0"), k=3, embeddings="gtvec")
    assert got.column_names == ["reference_id", "annotation_id", "score"] and len(got) == 3
    p = ds.add_embeddings("predvec", ([f"p{r}" for r in refs[:5]], np.eye(5, dtype=np.float32)), level="prediction",
                          run="r1")
    assert p["written"] == 5
    got = ds.similar("pimg001", k=2, embeddings="predvec")
    assert got.column_names == ["reference_id", "prediction_id", "score"]
    assert ds.embeddings().column("run").to_pylist()[-1] == "r1"


def test_hash_set_search_by_hamming(world):
    ws, ds, refs, vecs = world
    h = np.array([0, 1, 3, 0xFFFF, 2 ** 63], np.uint64)
    ds.add_embeddings("ph", (refs[:5], h), model="phash")
    got = ds.similar(refs[0], k=4, embeddings="ph")
    # Hamming distances to 0: 1, 2, 16, 1 bits; ties keep row order
    assert got.column("reference_id").to_pylist() == [refs[1], refs[4], refs[2], refs[3]]
    np.testing.assert_allclose(got.column("score").to_numpy(), [1 - 1 / 64, 1 - 1 / 64, 1 - 2 / 64, 1 - 16 / 64])
    assert ws.sql("SELECT typeof(hash) FROM embedding_hashes LIMIT 1").column(0)[0].as_py() == "UBIGINT"


def test_sets_survive_reopen_and_older_workspaces_get_tables(tmp_path):
    path = tmp_path / "w.loupe"
    with engine.connect(path) as ws:
        ds = ws.create_dataset("d")
        ds.append([engine.DatasetItem(reference_id="x"), engine.DatasetItem(reference_id="y")], check_images=False)
        ds.add_embeddings("e", (["x", "y"], np.array([[1, 0], [0.6, 0.8]], np.float32)))
        ws.sql("DROP TABLE embedding_maps")  # as if written by a Loupe without it
    with engine.connect(path) as ws:
        assert ws.sql("SELECT count(*) FROM embedding_maps").column(0)[0].as_py() == 0
        got = ws.get_dataset("d").similar("x", embeddings="e")
        assert got.column("reference_id").to_pylist() == ["y"]
        np.testing.assert_allclose(got.column("score").to_numpy(), [0.6], rtol=1e-6)
        ws.delete_dataset("d")
        assert ws.sql("SELECT count(*) FROM embedding_sets").column(0)[0].as_py() == 0


@pytest.mark.skipif(importlib.util.find_spec("usearch") is None, reason="usearch extra not installed")
def test_hnsw_recall_on_clustered_vectors(tmp_path):
    rng = np.random.default_rng(0)
    n = 2000
    centers = rng.normal(size=(40, 32))
    vecs = (centers[rng.integers(0, 40, n)] + 0.3 * rng.normal(size=(n, 32))).astype(np.float32)
    with engine.connect(tmp_path / "h.loupe") as ws:
        ds = ws.create_dataset("h")
        refs = [f"i{i}" for i in range(n)]
        ds.append(pa.table({"reference_id": refs}), check_images=False)
        ds.add_embeddings("v", (refs, vecs))
        report = ds.similarity_index("v")
        assert report["size"] == n and report["recall_at_10"] >= 0.9
        assert (tmp_path / "h.loupe.indexes").exists()
        exact = ds.similar(refs[5], k=10, embeddings="v").column("reference_id").to_pylist()
        approx = ds.similar(refs[5], k=10, embeddings="v", method="hnsw").column("reference_id").to_pylist()
        assert len(set(exact) & set(approx)) >= 8
        filtered = ds.similar(refs[5], k=5, embeddings="v", method="hnsw", where='reference_id LIKE "i1%"')
        assert all(r.startswith("i1") for r in filtered.column("reference_id").to_pylist())
        # the quantised graph's candidates are re-ranked: scores are the exact cosines
        got = ds.similar(vecs[7], k=10, embeddings="v", method="hnsw")
        unit = vecs / np.linalg.norm(vecs, axis=1, keepdims=True)
        rows = [int(r[1:]) for r in got.column("reference_id").to_pylist()]
        np.testing.assert_allclose(got.column("score").to_numpy(), unit[rows] @ unit[7], rtol=1e-5)
        assert list(got.column("score").to_numpy()) == sorted(got.column("score").to_numpy(), reverse=True)
        # one index file per set: a rebuild replaces the old file, deleting the set removes it
        folder = tmp_path / "h.loupe.indexes"
        first = sorted(p.name for p in folder.iterdir())
        assert len(first) == 2 and "-i8-m32-a128" in first[0]
        # other graph settings are another index (and file), not the cached one; search keeps what was built
        sparse = ds.similarity_index("v", connectivity=8, expansion_add=32, expansion_search=64)
        assert (sparse["connectivity"], sparse["expansion_add"], sparse["expansion_search"]) == (8, 32, 64)
        assert [p.name for p in folder.iterdir() if p.suffix == ".usearch"] == [first[1].replace("m32-a128", "m8-a32")]
        ds.similar(refs[5], k=10, embeddings="v", method="hnsw")
        assert ds.similarity_index("v", connectivity=8, expansion_add=32)["expansion_search"] == 256
        assert len(list(folder.iterdir())) == 2 and "-m8-a32" in sorted(p.name for p in folder.iterdir())[0]
        assert ds.similarity_index("v", dtype="f16", rebuild=True)["dtype"] == "f16"
        second = sorted(p.name for p in folder.iterdir())
        assert len(second) == 2 and all("-f16" in n for n in second)
        ds.delete_embeddings("v")
        assert not folder.exists()


def test_read_only_workspace_without_tables_lists_nothing(tmp_path):
    path = tmp_path / "ro.loupe"
    with engine.connect(path) as ws:
        ws.create_dataset("d")
        for t in ("embedding_sets", "embedding_hashes", "embedding_maps"):
            ws.sql(f"DROP TABLE {t}")
    with engine.connect(path, read_only=True) as ws:
        assert len(ws.get_dataset("d").embeddings()) == 0
        with pytest.raises(LoupeError):
            ws.get_dataset("d").similar("x")
