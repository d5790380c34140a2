"""The walk-through's last step, measured on the sample data: find more crowded scenes in an unlabeled
pool from one crowded labeled example, and find the near-duplicates planted in the pool.

:func:`add_pool` appends the pool written by :func:`sample_data.generate_pool` to a dataset (items with
metadata ``pool = true``, a static slice ``pool``, and the simulated detector's predictions on it as a run);
:func:`rank_scores` compares rankings of the pool for "crowded" (precision@k against the pool's
truth.json); :func:`duplicate_scores` scores duplicate groups against the planted pairs. Everything is
computed from the API's Arrow results, so the figures are what a user of the API would get.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

KS = (20, 50)
PREDICTION_QUERY = "predictions.pedestrian >= 4"
EFFNET_DUP_DISTANCES = (0.05, 0.1)  # cosine distances tried for EfficientNet-Lite0 near-duplicates


def pool_truth(pool_dir: str | Path) -> dict:
    return json.loads((Path(pool_dir) / "truth.json").read_text(encoding="utf-8"))


def add_pool(ds: Any, pool_dir: str | Path, model: Any = None, run_name: str = "simulated-pool",
             detector_seed: int = 1) -> tuple[list[str], Any]:
    """Append the pool's images (no annotations) and, with ``model``, the simulated detector's
    predictions on them as run ``run_name``. Returns the pool reference ids and the run (or None)."""
    import sample_data
    from engine.api.records import DatasetItem

    pool_dir = Path(pool_dir)
    meta = json.loads((pool_dir / "metadata.json").read_text(encoding="utf-8"))
    truth = pool_truth(pool_dir)
    files = {p.stem: p for p in (pool_dir / "PNGImages").iterdir()}
    refs = sorted(meta)
    ds.append([DatasetItem(image_location=str(files[r].resolve()), reference_id=r,
                           width=truth["images"][r]["width"], height=truth["images"][r]["height"],
                           metadata={**meta[r], "pool": True}) for r in refs], check_images=False)
    ds.create_slice("pool", reference_ids=refs)
    run = None
    if model is not None:
        from engine.io.predictions_json import read_predictions_json

        sample_data.detect(pool_dir, seed=detector_seed)
        run = model.create_run(run_name, ds, read_predictions_json(pool_dir / "predictions.json"))
    return refs, run


def precision_at(ranked: Sequence[str], positives: set[str], ks: Iterable[int] = KS) -> dict[int, float]:
    """precision@k of a ranking (k larger than the ranking counts the missing places as misses)."""
    return {k: sum(r in positives for r in list(ranked)[:k]) / k for k in ks}


def rank_scores(rankings: dict[str, Sequence[str]], pool_refs: Sequence[str], positives: set[str],
                ks: Iterable[int] = KS, seed: int = 0) -> list[dict[str, Any]]:
    """One row per ranking (``precision@k``), plus a seeded random ranking, the expected precision of a
    random ranking (the share of positives in the pool) and the best possible (all positives first)."""
    ks = tuple(ks)
    rows = [{"ranking": name, "ranked": len(r), **{f"precision@{k}": p for k, p in precision_at(r, positives, ks).items()}}
            for name, r in rankings.items()]
    perm = np.random.default_rng(seed).permutation(len(pool_refs))
    rnd = [pool_refs[i] for i in perm]
    rows.append({"ranking": f"random (seed {seed})", "ranked": len(rnd),
                 **{f"precision@{k}": p for k, p in precision_at(rnd, positives, ks).items()}})
    n_pos = len(positives & set(pool_refs))
    base = n_pos / max(len(pool_refs), 1)
    rows.append({"ranking": "random (expected)", "ranked": len(pool_refs), **{f"precision@{k}": base for k in ks}})
    rows.append({"ranking": "best possible", "ranked": len(pool_refs),
                 **{f"precision@{k}": min(k, n_pos) / k for k in ks}})
    return rows


def similarity_ranking(ds: Any, query: str | list[str], embeddings: str, n: int) -> list[str]:
    """Pool reference ids by similarity to the query item(s), best first."""
    t = ds.similar(query, k=n, embeddings=embeddings, slice="pool")
    return t.column("reference_id").to_pylist()


def prediction_count_ranking(ds: Any, run: Any, query: str = PREDICTION_QUERY) -> list[str]:
    """Pool items the DSL query selects, ordered by their predicted pedestrians (most first)."""
    t = ds.query(f'slice("pool") AND {query}', run=run, order_by="predictions.pedestrian DESC")
    return t.column("reference_id").to_pylist()


def duplicate_pairs(groups: pa.Table) -> set[frozenset[str]]:
    """All member pairs of each duplicate group (``group``, ``reference_id``)."""
    refs = groups.column("reference_id").to_pylist()
    gids = groups.column("group").to_pylist()
    by: dict[Any, list[str]] = {}
    for g, r in zip(gids, refs):
        by.setdefault(g, []).append(r)
    return {frozenset((a, b)) for m in by.values() for i, a in enumerate(m) for b in m[i + 1:]}


def duplicate_scores(groups: pa.Table, planted: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """Precision (found pairs that were planted) and recall (planted pairs found) of duplicate groups."""
    found = duplicate_pairs(groups)
    truth = {frozenset(p) for p in planted}
    hit = len(found & truth)
    return {"found_pairs": len(found), "planted_pairs": len(truth), "true_pairs": hit,
            "precision": hit / len(found) if found else 0.0, "recall": hit / len(truth) if truth else 0.0}


def planted_pairs(truth: dict) -> list[tuple[str, str]]:
    return [(d["reference_id"], d["source"]) for d in truth["duplicates"]]


def crowded_examples(labeled_meta: dict[str, dict], among: Iterable[str], n: int = 3) -> list[str]:
    """The ``n`` labeled images with the most people (ties by id): a user's "good crowded examples"."""
    return sorted(among, key=lambda r: (-labeled_meta[r]["crowd"], r))[:n]


def missed_transforms(groups_or_pairs: set[frozenset[str]], truth: dict, split: str | None = None) -> str:
    """The planted duplicates not found, as ``transform x count`` (what a method cannot see)."""
    missed: dict[str, int] = {}
    for d in truth["duplicates"]:
        if (split is None or d["source_split"] == split) and frozenset((d["reference_id"], d["source"])) not in groups_or_pairs:
            missed[d["transform"]] = missed.get(d["transform"], 0) + 1
    return ", ".join(f"{k} x{v}" for k, v in sorted(missed.items())) or "none"


def leak_pairs(pairs: pa.Table) -> set[frozenset[str]]:
    """Pairs of ``Dataset.leaky_splits`` (``reference_id_a``, ``reference_id_b``) as unordered pairs."""
    return {frozenset(p) for p in zip(pairs.column("reference_id_a").to_pylist(),
                                      pairs.column("reference_id_b").to_pylist())}


def leak_scores(pairs: pa.Table, truth: dict) -> dict[str, Any]:
    """A leak check between the test slice and the pool, against the planted duplicates of test images."""
    found = leak_pairs(pairs)
    want = {frozenset((d["reference_id"], d["source"])) for d in truth["duplicates"] if d["source_split"] == "test"}
    hit = len(found & want)
    return {"found_pairs": len(found), "planted_pairs": len(want), "true_pairs": hit,
            "precision": hit / len(found) if found else 0.0, "recall": hit / len(want) if want else 0.0}
