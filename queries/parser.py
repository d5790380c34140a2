"""Parse DSL text into a lark tree; every lark failure becomes a :class:`DSLSyntaxError`.

The LALR parser is built once per process (building it costs ~50 ms; parsing a query ~0.1 ms).
"""
from __future__ import annotations

import functools
import re
from importlib import resources

from lark import Lark, Token, Tree
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken

from .errors import DSLSyntaxError

MAX_QUERY_CHARS = 200_000  # a flat chain of 5,000 OR terms is fine; nesting is bounded by compiler.MAX_DEPTH
_NOT_TEXT = re.compile("[\x00\ud800-\udfff]")  # NUL, and surrogates that cannot be encoded as UTF-8

# readable names of grammar terminals, for "expected one of"
_TERMINALS = {
    "NAME": "a name", "HEAD": "a field name", "STRING": "a string", "QUOTED_NAME": "a `quoted name`", "NUMBER": "a number",
    "INT": "an integer", "COMP_OP": "a comparison (= != < <= > >=)", "ADD_OP": "+ or -",
    "MUL_OP": "* / or %", "LPAR": "'('", "RPAR": "')'", "COMMA": "','", "DOT": "'.'",
    "$END": "end of query",
}


@functools.lru_cache(maxsize=1)
def _parser() -> Lark:
    grammar = resources.files("queries").joinpath("grammar.lark").read_text(encoding="utf-8")
    return Lark(grammar, parser="lalr", start=["query", "order_list"], maybe_placeholders=True,
                propagate_positions=True, cache=False)


def _readable(names: set[str]) -> list[str]:
    out = []
    for n in sorted(names):
        if n in _TERMINALS:
            out.append(_TERMINALS[n])
        elif n.isupper() and n.isalpha():  # keyword terminals: AND, ORDER, ...
            out.append(n)
        else:
            out.append(n.lower())
    return sorted(dict.fromkeys(out), key=lambda s: (s.startswith("'"), s))


def _position(text: str, pos: int) -> tuple[int, int]:
    line = text.count("\n", 0, pos) + 1
    col = pos - (text.rfind("\n", 0, pos) + 1) + 1
    return line, col


def parse(text: str, start: str = "query") -> Tree:
    """The parse tree of ``text`` (``start`` = ``query`` or ``order_list``).

    Raises:
        DSLSyntaxError: with line, column, the offending text, a caret and what was expected.
    """
    if not isinstance(text, str):
        raise DSLSyntaxError(f"a query must be a string, not {type(text).__name__}", "", 1, 1)
    if len(text) > MAX_QUERY_CHARS:
        raise DSLSyntaxError(f"query too long ({len(text)} characters; the limit is {MAX_QUERY_CHARS})",
                             text[:80], 1, 1)
    bad = _NOT_TEXT.search(text)
    if bad is not None:
        line, col = _position(text, bad.start())
        what = "NUL character" if bad.group() == "\x00" else f"lone surrogate U+{ord(bad.group()):04X} (not text)"
        raise DSLSyntaxError(f"{what} in query", _NOT_TEXT.sub(" ", text), line, col, " ")
    try:
        return _parser().parse(text, start=start)
    except UnexpectedInput as e:
        raise _syntax_error(text, e) from None
    except RecursionError:
        raise DSLSyntaxError("query nested too deeply", text, 1, 1) from None


def _syntax_error(text: str, e: UnexpectedInput) -> DSLSyntaxError:
    if isinstance(e, UnexpectedCharacters):
        line, col = e.line, e.column
        ch = text[e.pos_in_stream] if e.pos_in_stream < len(text) else ""
        if ch in "\"'":
            return DSLSyntaxError("unterminated string", text, line, col, ch, ["a closing " + ch])
        if ch == "`":
            return DSLSyntaxError("unterminated quoted name", text, line, col, ch, ["a closing `"])
        expected = _readable(set(e.allowed or ()))
        return DSLSyntaxError(f"syntax error: unexpected character {ch!r}", text, line, col, ch, expected)
    if isinstance(e, UnexpectedToken):
        tok: Token = e.token
        expected = _readable(set(e.expected or e.accepts or ()))
        if tok.type == "$END":
            line, col = _position(text, len(text))
            return DSLSyntaxError("syntax error: unexpected end of query", text, line, col, "", expected)
        return DSLSyntaxError(f"syntax error: unexpected {str(tok)!r}", text, tok.line or 1, tok.column or 1,
                              str(tok), expected)
    if isinstance(e, UnexpectedEOF):
        line, col = _position(text, len(text))
        return DSLSyntaxError("syntax error: unexpected end of query", text, line, col, "",
                              _readable(set(e.expected or ())))
    return DSLSyntaxError(f"syntax error: {e}", text, getattr(e, "line", 1) or 1, getattr(e, "column", 1) or 1)
