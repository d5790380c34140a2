"""Scores the engine computes outside SQL and the query reads by item (or prediction): ``similarity(...)``,
``uniqueness(...)``, ``uncertainty(...)``.

``queries/`` never touches a connection, so a score is a :class:`ScoreSpec` (what to compute) plus a
scalar subquery on a relation named after the spec (``__loupe_score_<hash>``: columns ``item_id`` or
``pred_key``, and ``score``). The engine computes each spec of a compiled query and registers its rows
under that name before running the SQL (engine/similarity/dsl.py). The Arrow fast paths do not evaluate
these constructs: a query that uses one runs in DuckDB.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

from sqlglot import exp

from .sqlbuild import col, table

UNCERTAINTY_METHODS = ("entropy", "margin", "least_confidence")
SCORE_FUNCTIONS = {
    "similarity": 'similarity("set", "id", ...): cosine similarity of the item to the given items '
                  '(several: their mean unit vector; 1 - Hamming/64 for hash sets)',
    "uniqueness": 'uniqueness("set"): FiftyOne-style uniqueness in [0, 1] from the set\'s 3 nearest neighbours',
    "uncertainty": 'uncertainty("entropy" | "margin" | "least_confidence"): in a run, the most uncertain '
                   'prediction of the item (object queries: of the prediction)',
}


@dataclass(frozen=True)
class ScoreSpec:
    """One score to compute: ``kind`` (similarity | uniqueness | uncertainty), its string ``args`` and
    ``run``; ``key`` is the column rows are joined on (item_id, or pred_key for per-prediction scores)."""

    kind: str
    args: tuple[str, ...]
    run: str | None = None
    key: str = "item_id"

    @property
    def relation(self) -> str:
        digest = hashlib.sha1(repr((self.kind, self.args, self.run, self.key)).encode()).hexdigest()[:16]
        return f"__loupe_score_{digest}"

    def lookup(self, key: exp.Expression) -> exp.Expression:
        """``(SELECT s.score FROM <relation> s WHERE s.<key> = <key>)``."""
        sub = exp.select(col("score", "s")).from_(table(self.relation, "s"), copy=False).where(
            exp.EQ(this=col(self.key, "s"), expression=key), copy=False)
        return exp.Subquery(this=sub)
