"""Mining: duplicates (hash band join vs brute force, vectors), histogram, leaky splits, uniqueness (FiftyOne's
formula re-derived here by brute force), uncertainty, selection for labeling, 2-D maps, and the DSL."""
from __future__ import annotations

import importlib.util

import numpy as np
import pyarrow as pa
import pytest

import engine
from engine import BoxAnnotation, ValidationError
from engine.errors import LoupeError
from engine.similarity.duplicates import components
from engine.similarity.uncertainty import scores as uncertainty_scores

N, D = 80, 12


@pytest.fixture(scope="module")
def world():
    rng = np.random.default_rng(11)
    ws = engine.connect()
    ds = ws.create_dataset("mine")
    refs = [f"i{k:03d}" for k in range(N)]
    ds.append(pa.table({"reference_id": refs, "width": [100] * N, "height": [100] * N}), check_images=False)
    labeled = refs[:40]
    ds.annotate([BoxAnnotation(label="person" if k % 3 else "car", reference_id=r, annotation_id="a",
                               x=1, y=1, width=20, height=20) for k, r in enumerate(labeled)])
    preds = []
    for k, r in enumerate(refs):
        c = float(rng.uniform(0.05, 0.95))
        preds.append(engine.BoxPrediction(label="person", reference_id=r, annotation_id="p0", x=1, y=1, width=20,
                                          height=20, confidence=c,
                                          class_pdf={"person": c, "car": 1 - c} if k % 2 else None))
    ws.add_model("det").create_run("run", ds, preds).commit()
    vecs = rng.normal(size=(N, D)).astype(np.float32)
    vecs[41] = vecs[1] + 0.01  # near-duplicates: 1~41 (train/test leak), 50~51~52 (a chain)
    vecs[51] = vecs[50] * 1.5
    vecs[52] = vecs[51] + 0.02
    ds.add_embeddings("v", (refs, vecs))
    hashes = rng.integers(0, 2 ** 63, size=N, dtype=np.int64).astype(np.uint64) * np.uint64(2) + np.uint64(1)
    hashes[10] = hashes[3] ^ np.uint64(0b1011)              # 3 bits from 3
    hashes[20] = hashes[3] ^ np.uint64((1 << 63) | (1 << 40) | (1 << 20) | (1 << 5) | (1 << 6) | 1 | (1 << 30)
                                       | (1 << 50) | (1 << 51))  # 9 bits, spread over all four chunks
    hashes[30] = hashes[7] ^ np.uint64((1 << 64) - 1)        # 64 bits: never a duplicate
    ds.add_embeddings("ph", (refs, hashes), model="phash")
    ds.create_slice("train", reference_ids=refs[:40])
    ds.create_slice("test", reference_ids=refs[40:])
    yield ws, ds, refs, vecs, hashes
    ws.close()


def _brute_hash_pairs(h, r):
    d = np.bitwise_count(h[:, None] ^ h[None, :])
    i, j = np.nonzero(np.triu(d <= r, 1))
    return set(zip(i.tolist(), j.tolist()))


@pytest.mark.parametrize("r", [0, 3, 10, 17])
def test_hash_pairs_equal_brute_force(world, r):
    ws, ds, refs, vecs, hashes = world
    from engine.similarity import search, sets
    from engine.similarity.duplicates import hash_pairs

    entry = search.loaded(ds, sets.get_set(ds, "ph"))
    a, b, d = hash_pairs(entry, r)
    assert set(zip(a.tolist(), b.tolist())) == _brute_hash_pairs(hashes, r)
    assert np.array_equal(d, np.bitwise_count(hashes[a] ^ hashes[b]).astype(float))


def test_find_duplicates_groups(world):
    ws, ds, refs, vecs, hashes = world
    g = ds.find_duplicates("phash", max_hamming=10)
    groups = {}
    for grp, ref, dist in zip(*(g.column(c).to_pylist() for c in ("group", "reference_id", "distance"))):
        groups.setdefault(grp, []).append((ref, dist))
    assert sorted(sorted(r for r, _ in m) for m in groups.values()) == [["i003", "i010", "i020"]]
    assert dict(next(iter(groups.values())))["i010"] == 3
    v = ds.find_duplicates(embeddings="v", max_distance=0.01)
    members = sorted(v.column("reference_id").to_pylist())
    assert members == ["i001", "i041", "i050", "i051", "i052"]
    assert len(set(v.column("group").to_pylist())) == 2  # the chain 50~51~52 is one group
    with pytest.raises(ValidationError):
        ds.find_duplicates("phash", max_hamming=-1)


def test_components_chain():
    assert components(5, np.array([0, 3]), np.array([3, 4])).tolist() == [0, 1, 2, 0, 0]


def test_histogram_and_png(world, tmp_path):
    ws, ds, refs, vecs, hashes = world
    h = ds.duplicate_histogram("phash", sample=None)
    assert h.column("count").to_numpy().sum() == N
    d = np.bitwise_count(hashes[:, None] ^ hashes[None, :]).astype(float)
    np.fill_diagonal(d, np.inf)
    nn = d.min(axis=1)
    lo = h.column("bin_start").to_numpy()
    hi = h.column("bin_end").to_numpy()
    assert [int(((nn >= a) & (nn < b)).sum()) for a, b in zip(lo, hi)][:-1] == h.column("count").to_pylist()[:-1]
    if importlib.util.find_spec("matplotlib"):
        p = tmp_path / "h.png"
        ds.duplicate_histogram(embeddings="v", path=str(p))
        assert p.stat().st_size > 1000


def test_leaky_splits(world):
    ws, ds, refs, vecs, hashes = world
    t = ds.leaky_splits("train", "test", embeddings="v", max_distance=0.01)
    assert list(zip(t.column("reference_id_a").to_pylist(), t.column("reference_id_b").to_pylist())) == [("i001", "i041")]
    assert len(ds.leaky_splits("train", "test", "phash", max_hamming=10)) == 0  # 3, 10, 20 are all in train


def test_uniqueness_matches_fiftyone_formula(world):
    ws, ds, refs, vecs, hashes = world
    got = ds.uniqueness("v")
    x = vecs.astype(np.float64)
    d = np.sqrt(((x[:, None] - x[None, :]) ** 2).sum(-1))
    np.fill_diagonal(d, np.inf)
    near = np.sort(d, axis=1)[:, :3]
    u = (near * [0.6, 0.3, 0.1]).mean(axis=1)
    u /= u.max()
    by_ref = dict(zip(got.column("reference_id").to_pylist(), got.column("uniqueness").to_pylist()))
    np.testing.assert_allclose([by_ref[r] for r in refs], u, rtol=1e-5)
    assert got.column("uniqueness").to_pylist() == sorted(got.column("uniqueness").to_pylist(), reverse=True)


def test_uncertainty_kernels():
    p = [np.array([0.5, 0.5]), np.array([1.0, 0.0]), np.array([0.7, 0.2, 0.1])]
    np.testing.assert_allclose(uncertainty_scores(p, "entropy"),
                               [1.0, 0.0, -(0.7 * np.log(0.7) + 0.2 * np.log(0.2) + 0.1 * np.log(0.1)) / np.log(3)])
    np.testing.assert_allclose(uncertainty_scores(p, "margin"), [1.0, 0.0, 0.5])
    np.testing.assert_allclose(uncertainty_scores(p, "least_confidence"), [0.5, 0.0, 0.3])
    with pytest.raises(ValidationError):
        uncertainty_scores(p, "vibes")


def test_run_uncertainty_per_prediction_and_item(world):
    ws, ds, refs, vecs, hashes = world
    run = ws.get_run("run")
    t = run.uncertainty("least_confidence")
    conf = np.array(t.column("confidence").to_pylist())
    np.testing.assert_allclose(t.column("uncertainty").to_numpy(), 1 - np.maximum(conf, 1 - conf))
    it = run.uncertainty("margin", per="item")
    assert len(it) == N and it.column("uncertainty").to_pylist() == sorted(it.column("uncertainty").to_pylist(), reverse=True)


def test_dsl_similarity_uniqueness_uncertainty(world):
    ws, ds, refs, vecs, hashes = world
    u = vecs / np.linalg.norm(vecs, axis=1, keepdims=True)
    s = u @ u[1]
    got = ds.query('similarity("v", "i001") > 0.5 AND NOT slice("train")')
    want = [r for k, r in enumerate(refs) if s[k] > 0.5 and k >= 40]
    assert got.column("reference_id").to_pylist() == want and "i041" in want
    top = ds.query('annotations.count = 0 ORDER BY similarity("v", "i001", "i002") DESC LIMIT 3')
    mean = (u[1] + u[2]) / np.linalg.norm(u[1] + u[2])
    s2 = u @ mean
    order = [k for k in np.argsort(-s2, kind="stable") if k >= 40][:3]
    assert top.column("reference_id").to_pylist() == [refs[k] for k in order]
    uq = ds.uniqueness("v")
    best = uq.column("reference_id")[0].as_py()
    assert ds.query('uniqueness("v") = 1').column("reference_id").to_pylist() == [best]
    unc = ws.get_run("run").uncertainty("entropy", per="item")
    hi = {r for r, v in zip(unc.column("reference_id").to_pylist(), unc.column("uncertainty").to_pylist()) if v > 0.9}
    got = ds.query('uncertainty("entropy") > 0.9', run="run").column("reference_id").to_pylist()
    assert set(got) == hi and got
    objs = ds.query_objects('uncertainty("least_confidence") > 0.4', run="run")
    lc = ws.get_run("run").uncertainty("least_confidence")
    assert len(objs) == int((lc.column("uncertainty").to_numpy() > 0.4).sum())
    dyn = ds.create_slice("like1", query='similarity("v", "i001") > 0.9')
    assert "i041" in dyn.reference_ids()
    with pytest.raises(LoupeError):
        ds.query('uncertainty("entropy") > 0.5')  # needs a run
    with pytest.raises(LoupeError):
        ds.query('uncertainty("vibes") > 0.5', run="run")
    with pytest.raises(LoupeError):
        ds.query('similarity("v") > 0.5')


def test_select_for_labeling(world):
    ws, ds, refs, vecs, hashes = world
    s = ds.select_for_labeling(5, strategy="uncertainty", where="annotations.count = 0", run="run", slice_name="u5")
    unc = ws.get_run("run").uncertainty("entropy", per="item")
    pool = [r for r in unc.column("reference_id").to_pylist() if int(r[1:]) >= 40][:5]
    assert sorted(s.reference_ids()) == sorted(pool)
    d = ds.select_for_labeling(6, strategy="diversity", where="annotations.count = 0", embeddings="v", slice_name="d6")
    picked = d.reference_ids()
    assert len(picked) == 6 and all(int(r[1:]) >= 40 for r in picked)
    # k-center greedy never picks both members of a near-duplicate pair
    assert not {"i050", "i051"} <= set(picked)
    both = ds.select_for_labeling(4, where="annotations.count = 0", embeddings="v", run="run", slice_name="ud4")
    assert len(both.reference_ids()) == 4


def test_embedding_map_pca_stored_and_png(world, tmp_path):
    ws, ds, refs, vecs, hashes = world
    t = ds.embedding_map("v")
    assert t.column_names == ["reference_id", "x", "y"] and len(t) == N
    c = vecs.astype(np.float64) - vecs.mean(axis=0)
    _, _, vt = np.linalg.svd(c, full_matrices=False)
    xy = np.stack([t.column("x").to_numpy(), t.column("y").to_numpy()], 1)
    np.testing.assert_allclose(np.abs(xy), np.abs(c @ vt[:2].T), rtol=1e-4, atol=1e-4)
    assert ws.sql("SELECT count(*) FROM embedding_maps").column(0)[0].as_py() == N
    if importlib.util.find_spec("matplotlib"):
        for colour in ("label", "slice"):
            p = tmp_path / f"map-{colour}.png"
            ds.embedding_map("v", path=str(p), colour_by=colour)
            assert p.stat().st_size > 1000
        ds.embedding_map("ph", path=str(tmp_path / "s.png"), colour_by="status", run="run")


def test_uniqueness_blocks_do_not_change_the_answer(monkeypatch):
    """Blocks are sized by a distance budget (bounded memory at any N); any block size gives the same scores."""
    from engine.similarity import uniqueness as uq

    rng = np.random.default_rng(3)
    x = rng.normal(size=(300, 16)).astype(np.float32)
    h = rng.integers(0, 2 ** 63, size=300, dtype=np.int64).astype(np.uint64)
    whole = uq.uniqueness_scores(x), uq.uniqueness_scores(h)
    monkeypatch.setattr(uq, "BLOCK_CELLS", 300 * 8)  # blocks of 8 rows
    assert uq._block(300) == 8 and uq._block(10 ** 6) == 8
    np.testing.assert_allclose(uq.uniqueness_scores(x), whole[0], rtol=1e-12)  # BLAS may round per block
    np.testing.assert_array_equal(uq.uniqueness_scores(h), whole[1])
