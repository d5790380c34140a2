"""Tables of embedding sets, created in new workspaces and added to older ones on open.

``embedding_sets`` is the catalog (one row per set, name unique per dataset). Vectors live in one table per
dimension, ``embedding_vectors_<d>`` with a ``FLOAT[d]`` column (DuckDB arrays have one fixed size per
column, and users have few distinct dimensions but may have many sets: a table per dimension keeps the
schema small, a new set needs no DDL unless its dimension is new, and deleting a set is one DELETE).
64-bit hashes are ``UBIGINT`` rows of ``embedding_hashes``; 2-D maps are rows of ``embedding_maps``.
Rows name their item (``item_id``) and, at object level, the object's ``annotation_id`` (GT) or the
prediction's ``annotation_id`` (``object_id``; stable across label corrections, unlike ``ann_key``).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from engine.store.database import Store

TABLES = ("embedding_sets", "embedding_hashes", "embedding_maps")

DDL = (
    """CREATE TABLE IF NOT EXISTS embedding_sets (
        set_id     INTEGER NOT NULL,
        dataset_id INTEGER NOT NULL,
        name       VARCHAR NOT NULL,            -- unique per dataset
        level      VARCHAR NOT NULL,            -- item | gt | prediction
        run_id     INTEGER,                     -- prediction level: the run whose predictions are embedded
        model      VARCHAR,                     -- embedder name (phash, efficientnet-lite0, the user's own ...)
        kind       VARCHAR NOT NULL,            -- vector | hash
        dim        INTEGER NOT NULL,
        created_at TIMESTAMP NOT NULL,
        version    INTEGER NOT NULL DEFAULT 0   -- bumped by every write of the set's rows (search caches key on it)
    )""",
    """CREATE TABLE IF NOT EXISTS embedding_hashes (
        set_id INTEGER NOT NULL, item_id BIGINT NOT NULL, object_id VARCHAR, hash UBIGINT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS embedding_maps (
        set_id INTEGER NOT NULL, item_id BIGINT NOT NULL, object_id VARCHAR, method VARCHAR NOT NULL,
        x DOUBLE NOT NULL, y DOUBLE NOT NULL)""",
)


def vector_table(dim: int) -> str:
    """Name of the table holding vectors of dimension ``dim``."""
    return f"embedding_vectors_{int(dim)}"


def vector_ddl(dim: int) -> str:
    """CREATE statement of the dimension's vector table (built with sqlglot: the name and type from an int)."""
    from sqlglot import exp  # here, not at the top: every Store imports this module (sqlglot: ~0.1 s)

    d = int(dim)
    if d <= 0:
        raise ValueError("dimension must be positive")
    schema = exp.Schema(this=exp.to_table(vector_table(d)), expressions=[
        exp.ColumnDef(this=exp.to_identifier("set_id"), kind=exp.DataType.build("INTEGER"),
                      constraints=[exp.ColumnConstraint(kind=exp.NotNullColumnConstraint())]),
        exp.ColumnDef(this=exp.to_identifier("item_id"), kind=exp.DataType.build("BIGINT"),
                      constraints=[exp.ColumnConstraint(kind=exp.NotNullColumnConstraint())]),
        exp.ColumnDef(this=exp.to_identifier("object_id"), kind=exp.DataType.build("VARCHAR")),
        exp.ColumnDef(this=exp.to_identifier("vector"), kind=exp.DataType.build(f"FLOAT[{d}]", dialect="duckdb")),
    ])
    return exp.Create(this=schema, kind="TABLE", exists=True).sql("duckdb")


def present(store: "Store") -> bool:
    return store.has_tables(TABLES)


def ensure(store: "Store") -> None:
    """Create the tables in a workspace that lacks them (new or written before they existed; writable only)."""
    store.ensure_tables(TABLES, DDL, lambda ds: None)
