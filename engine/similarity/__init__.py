"""Similarity and mining: embedding sets stored in the workspace, exact (and optional HNSW) search, duplicates,
uniqueness, uncertainty, selection for labeling and 2-D maps.

Modules: ``schema`` (tables, ensured on open), ``sets`` (add / list / delete / load embedding sets),
``search`` (``similar``), ``compute`` (the ``compute_embeddings`` driver), ``mining`` (duplicates, leaky
splits, uniqueness), ``uncertainty``, ``selection``, ``projection`` (2-D maps), ``dsl`` (scores for queries).
The built-in embedders live in ``embedders`` (written by the embedder work; imported lazily).
"""
