"""Render Arrow tables for the terminal (aligned table) or for machines (csv, json).

The table format is for a terminal: control characters (C0, DEL, C1) and bidi overrides in any cell or
header are shown escaped (``\\x1b``, ``\\n``, ``\\u202e``) so a hostile label cannot move the cursor,
retitle the window or reorder text. csv and json stay byte-exact for machines, as DuckDB's and SQLite's
CLIs do for ``-csv``/``-json``: json escapes control characters by itself; csv writes them verbatim
(quoted per RFC 4180), so pipe it to a program, not to a terminal.
"""
from __future__ import annotations

import csv
import io
import json
import math
from typing import Any

import pyarrow as pa

FORMATS = ("table", "csv", "json")

_NAMED = {0x09: "\\t", 0x0A: "\\n", 0x0D: "\\r"}
_BIDI = [0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A)]
_ESCAPES = {c: _NAMED.get(c, f"\\x{c:02x}") for c in [*range(0x20), *range(0x7F, 0xA0)]}
_ESCAPES.update({c: f"\\u{c:04x}" for c in _BIDI})


_ESCAPES_KEEP_NL = {c: e for c, e in _ESCAPES.items() if c != 0x0A}


def printable(text: str, newlines: bool = False) -> str:
    """``text`` with terminal control characters and bidi overrides escaped (for table output and
    error messages; never for csv/json, which must stay exact). ``newlines`` keeps line breaks (a DSL
    error's caret drawing spans lines)."""
    return text.translate(_ESCAPES_KEEP_NL if newlines else _ESCAPES)


def _cell(v: Any) -> str:
    if v is None:
        return "NULL"
    if isinstance(v, float):
        if math.isnan(v):
            return "NaN"
        return f"{v:.6g}" if abs(v) < 1e15 else repr(v)
    if isinstance(v, (list, dict, tuple)):
        s = json.dumps(v, default=str)
        return s if len(s) <= 60 else s[:57] + "..."
    return printable(str(v))


def render(table: pa.Table, fmt: str = "table", max_rows: int | None = None) -> str:
    """The table as text in ``fmt`` (table | csv | json lines)."""
    rows = table.to_pylist()
    if fmt == "json":
        return "\n".join(json.dumps(r, default=str) for r in rows)
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(table.column_names)
        for r in rows:
            w.writerow(["" if r[c] is None else (json.dumps(r[c], default=str) if isinstance(r[c], (list, dict)) else r[c])
                        for c in table.column_names])
        return buf.getvalue().rstrip("\n")
    shown = rows if max_rows is None else rows[:max_rows]
    names = [printable(n) for n in table.column_names]
    cells = [[_cell(r[c]) for c in table.column_names] for r in shown]
    widths = [max([len(n)] + [len(row[i]) for row in cells]) for i, n in enumerate(names)]
    numeric = [pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t) for t in table.schema.types]
    fmt_row = lambda vals: "  ".join(  # noqa: E731
        v.rjust(widths[i]) if numeric[i] else v.ljust(widths[i]) for i, v in enumerate(vals)).rstrip()
    lines = [fmt_row(names), "  ".join("-" * w for w in widths)]
    lines += [fmt_row(r) for r in cells]
    if max_rows is not None and len(rows) > max_rows:
        lines.append(f"... {len(rows) - max_rows} more rows")
    lines.append(f"({len(rows)} row{'s' if len(rows) != 1 else ''})")
    return "\n".join(lines)


def render_dict(d: dict[str, Any], fmt: str = "table") -> str:
    """A flat or nested dict: JSON for machines, indented key: value lines for people."""
    if fmt == "json":
        return json.dumps(d, default=str)
    if fmt == "csv":
        return "key,value\n" + "\n".join(f"{k},{json.dumps(v, default=str) if isinstance(v, (dict, list)) else v}" for k, v in d.items())
    out = []
    for k, v in d.items():
        if isinstance(v, dict):
            out.append(f"{printable(str(k))}:")
            out += [f"  {printable(str(kk))}: {_cell(vv)}" for kk, vv in v.items()] or ["  (none)"]
        else:
            shown = _cell(v) if not isinstance(v, list) else printable(', '.join(map(str, v))) or '(none)'
            out.append(f"{printable(str(k))}: {shown}")
    return "\n".join(out)
