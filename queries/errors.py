"""DSL errors: one renderer for syntax, name and type errors, with line, column and a caret.

``DSLError`` subclasses ``ValueError`` so ``queries/`` depends on nothing in ``engine``; the engine's CLI
catches it next to ``LoupeError``.
"""
from __future__ import annotations

import difflib
from typing import Iterable, Sequence


class DSLError(ValueError):
    """A query that cannot be compiled. ``str(e)`` is the message, the line and a caret under the spot.

    Attributes:
        message: the first line, without location.
        text: the query text.
        line, column: 1-based position of the offending text (None when unknown).
        length: how many characters the caret covers.
    """

    kind = "query error"

    def __init__(self, message: str, text: str | None = None, line: int | None = None,
                 column: int | None = None, length: int = 1):
        self.message = message
        self.text = text
        self.line = line
        self.column = column
        self.length = max(1, length)
        super().__init__(self.render())

    def render(self) -> str:
        if self.line is None or self.column is None:
            return self.message
        if self.text is None:
            return f"{self.message} (at {self.line}:{self.column})"
        lines = self.text.split("\n")
        src = lines[self.line - 1] if 0 < self.line <= len(lines) else ""
        width = max(1, min(self.length, len(src) - self.column + 1))
        caret = " " * (self.column - 1) + "^" * width
        return f"{self.message} (at {self.line}:{self.column})\n  {src}\n  {caret}"

    def at(self, line: int | None, column: int | None, length: int = 1) -> "DSLError":
        """Set the position (if not set yet) and re-render."""
        if self.line is None and line is not None:
            self.line, self.column, self.length = line, column, max(1, length)
            self.args = (self.render(),)
        return self

    def with_text(self, text: str) -> "DSLError":
        """Attach the query text (errors raised deep in the compiler know only the position)."""
        if self.text is None:
            self.text = text
            self.args = (self.render(),)
        return self


class DSLSyntaxError(DSLError):
    """The text does not follow the grammar.

    Attributes:
        token: the offending text ('' at the end of the query).
        expected: readable names of what could have come there.
    """

    kind = "syntax error"

    def __init__(self, message: str, text: str | None, line: int, column: int, token: str = "",
                 expected: Sequence[str] = ()):
        self.token = token
        self.expected = list(expected)
        super().__init__(message, text, line, column, length=len(token) or 1)

    def render(self) -> str:
        out = super().render()
        if self.expected:
            out += "\nexpected one of: " + ", ".join(self.expected)
        return out


class DSLNameError(DSLError):
    """An unknown field, label, metadata key, run, slice or function.

    Attributes:
        name: the unknown name.
        suggestions: the closest known names (best first).
    """

    kind = "name error"

    def __init__(self, message: str, name: str = "", suggestions: Sequence[str] = (), **kw):
        self.name = name
        self.suggestions = list(suggestions)
        super().__init__(message, **kw)


class DSLTypeError(DSLError):
    """Operands of incompatible types, e.g. ``metadata.speed > "fast"`` when speed is a number."""

    kind = "type error"


def closest(name: str, known: Iterable[str], n: int = 3) -> list[str]:
    """The known names closest to ``name`` (difflib ratio, case-insensitive), best first."""
    known = [k for k in dict.fromkeys(known) if isinstance(k, str)]
    lower = {k.lower(): k for k in known}
    hits = difflib.get_close_matches(name.lower(), list(lower), n=n, cutoff=0.6)
    return [lower[h] for h in hits]


def unknown(what: str, name: str, known: Iterable[str], hint: str = "") -> DSLNameError:
    """``unknown label 'pedestrain'; did you mean 'pedestrian'?`` (or the list of known names)."""
    known = sorted(dict.fromkeys(known))
    best = closest(name, known)
    msg = f"unknown {what} '{name}'"
    if best:
        msg += f"; did you mean '{best[0]}'?"
    elif known:
        shown = ", ".join(known[:12]) + (", ..." if len(known) > 12 else "")
        msg += f"; known: {shown}"
    if hint:
        msg += f" ({hint})"
    return DSLNameError(msg, name=name, suggestions=best)
