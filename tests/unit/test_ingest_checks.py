"""engine/ingest/checks.py: a rule's ``clean_if`` shortcut never changes which record enforce names."""
from __future__ import annotations

import dataclasses
import random

import duckdb
import pyarrow as pa
import pytest

from engine.errors import ValidationError
from engine.ingest.annotations import _BASE_RULES
from engine.ingest.checks import enforce
from engine.ingest.items import ITEM_RULES

DUP_RULES = [r for r in _BASE_RULES + ITEM_RULES if r.clean_if]


def _outcome(con, rules):
    try:
        enforce(con, "b", rules, with_annotation_id=True)
    except ValidationError as e:
        return str(e), e.record, e.field
    return None


def test_the_duplicate_rules_have_a_shortcut():
    assert {r.message for r in DUP_RULES} == {"duplicate annotation_id in batch", "duplicate reference_id in batch"}


@pytest.mark.parametrize("seed", range(40))
def test_clean_if_names_the_same_record_as_the_window(seed):
    """Random small batches with NULLs and repeats: enforce with the shortcut and without it agree."""
    rng = random.Random(seed)
    n = rng.randint(0, 8)
    pick = lambda values: [rng.choice(values) for _ in range(n)]  # noqa: E731
    t = pa.table({"__row": list(range(n)), "reference_id": pick(["a", "b", None]),
                  "annotation_id": pick(["1", "2", None])}, schema=pa.schema(
        [("__row", pa.int64()), ("reference_id", pa.string()), ("annotation_id", pa.string())]))
    con = duckdb.connect()
    con.register("b", t)
    plain = [dataclasses.replace(r, clean_if=None) for r in DUP_RULES]
    for with_shortcut, without in zip(DUP_RULES, plain):
        assert _outcome(con, [with_shortcut]) == _outcome(con, [without]), t.to_pylist()
