"""Render Arrow tables for the terminal (aligned table) or for machines (csv, json)."""
from __future__ import annotations

import csv
import io
import json
import math
from typing import Any

import pyarrow as pa

FORMATS = ("table", "csv", "json")


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
    return str(v)


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
    names = table.column_names
    cells = [[_cell(r[c]) for c in names] for r in shown]
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
            out.append(f"{k}:")
            out += [f"  {kk}: {_cell(vv)}" for kk, vv in v.items()] or ["  (none)"]
        else:
            out.append(f"{k}: {_cell(v) if not isinstance(v, list) else ', '.join(map(str, v)) or '(none)'}")
    return "\n".join(out)
