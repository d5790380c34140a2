"""The grammar: what parses, what a syntax error says, and string/name decoding."""
from __future__ import annotations

import pytest
from lark import Token

from queries import DSLSyntaxError, MetadataSchema, StaticCatalog, compile_query, parse
from queries.lexemes import unescape

CAT = StaticCatalog(label_set={"pedestrian", "traffic light", "stop-sign"},
                    items_meta=MetadataSchema.from_values([{"camera": "x", "a": {"b": 1}, "k y": 2, "order": 1}]))

VALID = [
    "annotations.pedestrian >= 4",
    "annotations.pedestrian>=4",
    "ANNOTATIONS.count > 1 and NOT metadata.camera = 'x' Or annotations.count < 0",
    "not not (annotations.count = 1)",
    'annotations."traffic light" + annotations.`stop-sign` > 5',
    "metadata.a.b * 2 % 3 - -1 / 4 + +1 != 0",
    "metadata.camera in ('x', \"y\",)",
    "metadata.camera NOT IN ('x')",
    "metadata.camera like 'x%' AND metadata.camera not like '%y'",
    "metadata.a.b between 1 and 2 and metadata.a.b not between 3 and 4",
    "metadata.camera is null or metadata.camera IS NOT NULL",
    "metadata.order = 1",  # a keyword is a plain name after a dot
    'metadata."k y" = 2',
    "metadata.a.b == 1 or metadata.a.b <> 2",
    "annotations.count = 1e3 or annotations.count = .5 or annotations.count = 5.",
    "TRUE", "false", "null is null",
    "",
    "   \n\t ",
    "ORDER BY annotations.count DESC LIMIT 5 OFFSET 2",
    "annotations.count > 0 order by metadata.a.b asc, reference_id desc limit 10",
    "annotations.count > 0\nAND\nannotations.pedestrian > 0",
]


@pytest.mark.parametrize("text", VALID)
def test_valid_queries_compile(text):
    assert compile_query(text, CAT).sql().startswith(("SELECT", "WITH"))


INVALID = [
    # text, (line, column), offending token, something expected
    ("annotations.count >", (1, 20), "", "a number"),
    ("annotations.count > > 3", (1, 21), ">", "a field name"),
    ("(annotations.count > 3", (1, 23), "", "')'"),
    ("annotations.count > 3)", (1, 22), ")", "end of query"),
    ("annotations..count", (1, 13), ".", "a name"),
    ("metadata.camera = 'unterminated", (1, 19), "'", "a closing '"),
    ('metadata.camera = "x" AND', (1, 26), "", "NOT"),
    ("annotations.count > 3\nAND AND annotations.count", (2, 5), "AND", "a field name"),
    ("annotations.count ! 3", (1, 19), "!", None),
    ("LIMIT x", (1, 7), "x", "an integer"),
    ("metadata.camera = `x`", (1, 19), "`x`", None),
    ("annotations.count > 3 ORDER annotations.count", (1, 29), "annotations", "BY"),
    ("3abc > 1", (1, 1), "3", None),
]


@pytest.mark.parametrize("text,where,token,expected", INVALID, ids=[t for t, *_ in INVALID])
def test_syntax_errors_point_at_the_problem(text, where, token, expected):
    with pytest.raises(DSLSyntaxError) as ei:
        compile_query(text, CAT)
    e = ei.value
    assert (e.line, e.column) == where
    assert e.token == token
    if expected is not None:
        assert expected in e.expected
    msg = str(e)
    # the offending line, then a caret under the column
    lines = msg.split("\n")
    src = text.split("\n")[where[0] - 1]
    assert lines[1] == "  " + src
    assert lines[2].index("^") - 2 == where[1] - 1
    assert f"(at {where[0]}:{where[1]})" in lines[0]


def test_unterminated_string_message():
    with pytest.raises(DSLSyntaxError, match="unterminated string"):
        parse("metadata.camera = \"rear")


def test_nul_and_overlong_queries_are_syntax_errors():
    with pytest.raises(DSLSyntaxError, match="NUL"):
        parse("metadata.camera = 'a\x00b'")
    with pytest.raises(DSLSyntaxError, match="too long"):
        parse("1 = 1 AND " * 25000 + "true")  # 250,000 characters
    with pytest.raises(DSLSyntaxError, match="nested too deeply"):
        compile_query("NOT " * 300 + "true", CAT)
    assert compile_query("(" * 300 + "true" + ")" * 300, CAT)  # parentheses leave no depth in the tree


@pytest.mark.parametrize("raw,value", [
    ('"plain"', "plain"),
    ("'single'", "single"),
    (r'"a\"b"', 'a"b'),
    (r"'it\'s'", "it's"),
    ("'it''s'", "it's"),
    ('"say ""hi"""', 'say "hi"'),
    (r'"tab\tnew\nline\\back"', "tab\tnew\nline\\back"),
    (r'"\u00e9t\u00E9"', "été"),
    ('"multi\nline"', "multi\nline"),
    ('""', ""),
])
def test_string_escapes(raw, value):
    assert unescape(Token("STRING", raw, line=1, column=1)) == value


@pytest.mark.parametrize("raw", [r'"\q"', r'"\u12"', r'"\u0000"', r'"\0"'])
def test_bad_escapes(raw):
    with pytest.raises(DSLSyntaxError, match="escape|NUL"):
        compile_query(f"metadata.camera = {raw}", CAT)


def test_error_positions_in_multiline_queries():
    text = "annotations.count > 1\n  AND metadata.camera = 'x'\n  AND annotations.pedestrain > 2"
    from queries import DSLNameError

    with pytest.raises(DSLNameError) as ei:
        compile_query(text, CAT)
    assert (ei.value.line, ei.value.column) == (3, 7)
    assert str(ei.value).split("\n")[1] == "    AND annotations.pedestrain > 2"


# -- the reference page ------------------------------------------------------------------------------
def _doc():
    from pathlib import Path

    return (Path(__file__).resolve().parents[2] / "docs" / "query-language.md").read_text()


def _examples():
    import re

    for info, body in re.findall(r"```(dsl(?: objects)?)\n(.*?)```", _doc(), flags=re.S):
        for line in body.splitlines():
            if line.strip() and not line.startswith("#"):
                yield ("objects" if info.endswith("objects") else "items"), line.strip()


def test_every_example_in_the_docs_compiles():
    from queries import OpenCatalog

    examples = list(_examples())
    assert len(examples) > 50
    for target, q in examples:
        compile_query(q, OpenCatalog(), target=target, run="r").sql()


def test_every_field_and_function_is_documented():
    from queries.fields import (FUNCTIONS, ITEM_ALIASES, ITEM_COLUMNS, KINDS, OBJECT_FIELDS, PREDICTION_AGGREGATES,
                                STATUSES)

    doc = _doc()
    names = list(ITEM_COLUMNS) + list(OBJECT_FIELDS) + list(ITEM_ALIASES) + list(KINDS) + list(STATUSES)
    names += [f"predictions.{k}" if k in ("count", "tp", "fp", "fn") else k for k in PREDICTION_AGGREGATES]
    names += [f"{f}(" for f in FUNCTIONS] + ["annotations.count", "metadata.<key>", "item.<field>"]
    missing = [n for n in names if n not in doc]
    assert not missing, missing
