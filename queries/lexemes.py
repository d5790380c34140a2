"""Token values: string literals (escapes), quoted names, and keywords misplaced as names."""
from __future__ import annotations

import re

from lark import Token

from .errors import DSLSyntaxError

_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", '"': '"', "'": "'", "/": "/", "0": None}


def unescape(tok: Token) -> str:
    """The value of a STRING token: backslash escapes (\\n \\t \\" \\uXXXX ...) or a doubled quote."""
    raw = str(tok)
    q, body = raw[0], raw[1:-1]
    out: list[str] = []
    i = 0
    while i < len(body):
        ch = body[i]
        if ch == q:  # the grammar only lets a quote through doubled
            out.append(q)
            i += 2
            continue
        if ch != "\\":
            out.append(ch)
            i += 1
            continue
        nxt = body[i + 1]
        if nxt == "u" and re.fullmatch(r"[0-9a-fA-F]{4}", body[i + 2:i + 6] or ""):
            cp = int(body[i + 2:i + 6], 16)
            if cp == 0:
                raise _bad_escape(tok, i, "\\u0000 (NUL) is not allowed in strings")
            if 0xD800 <= cp <= 0xDFFF:  # UTF-16 surrogates: a pair is one character (as in JSON), alone none
                low = body[i + 6:i + 12]
                if cp <= 0xDBFF and re.fullmatch(r"\\u[dD][c-fC-F][0-9a-fA-F]{2}", low):
                    out.append(chr(0x10000 + ((cp - 0xD800) << 10) + (int(low[2:], 16) - 0xDC00)))
                    i += 12
                    continue
                raise _bad_escape(tok, i, f"\\u{cp:04X} is half of a UTF-16 surrogate pair, not a character")
            out.append(chr(cp))
            i += 6
            continue
        if nxt not in _ESCAPES or _ESCAPES[nxt] is None:
            raise _bad_escape(tok, i, f"invalid escape \\{nxt} in string")
        out.append(_ESCAPES[nxt])
        i += 2
    return "".join(out)


def _bad_escape(tok: Token, i: int, msg: str) -> DSLSyntaxError:
    return DSLSyntaxError(msg, None, tok.line, tok.column + 1 + i, "\\", ['\\n \\t \\r \\\\ \\" \\\' \\uXXXX'])


KEYWORDS = frozenset({"and", "or", "not", "in", "like", "between", "is", "null", "true", "false", "order", "by",
                      "asc", "desc", "limit", "offset"})


def not_keyword(tok: Token) -> None:
    """The contextual lexer reads a misplaced keyword as a name (``AND AND x``); report it as syntax."""
    if str(tok).lower() in KEYWORDS:
        raise DSLSyntaxError(f"syntax error: unexpected {str(tok)!r}", None, tok.line, tok.column, str(tok),
                             ["a field name", "a number", "a string", "'('", "NOT"])


def segment(tok: Token) -> tuple[str, bool]:
    if tok.type == "STRING":
        return unescape(tok), True
    if tok.type == "QUOTED_NAME":
        return str(tok)[1:-1].replace("``", "`"), True
    return str(tok), False
