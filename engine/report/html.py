"""A self-contained HTML report: inline CSS, images embedded as base64 data URIs, no external assets.

The report is built section by section and written as one file that can be mailed or archived and
still shows every table, crop and chart. Machine-readable results can ride along as JSON blocks
(``<script type="application/json" id=...>``), so tests and tools read numbers without scraping.

Example:
    >>> r = HtmlReport("Loupe tutorial")
    >>> r.section("Metrics"); r.table(pa.table({"AP": [0.5]}))
    >>> r.image("charts/labels.png", caption="Label distribution")
    >>> r.write("report.html")
"""
from __future__ import annotations

import base64
import html
import json
import math
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import pyarrow as pa

_CSS = """
body{font:14px/1.45 -apple-system,'Segoe UI',Helvetica,Arial,sans-serif;margin:0 auto;max-width:1180px;
     padding:1.2em 2em;color:#1d1f23;background:#fff}
h1{font-size:1.7em;margin:.2em 0 .1em}h2{font-size:1.3em;margin:1.6em 0 .4em;border-bottom:1px solid #dde;
   padding-bottom:.2em}h3{font-size:1.05em;margin:1.1em 0 .3em}
p{margin:.4em 0}.sub{color:#666}.note{background:#fff7e0;border-left:4px solid #f0b400;padding:.4em .8em;margin:.6em 0}
.skip{background:#f3f3f3;border-left:4px solid #999;padding:.4em .8em;margin:.6em 0;color:#555}
table{border-collapse:collapse;margin:.5em 0 1em;font-size:13px}caption{text-align:left;font-weight:600;
   padding:.2em 0}th,td{border:1px solid #d8dae0;padding:3px 8px}th{background:#f2f4f8;text-align:left}
td.n{text-align:right;font-variant-numeric:tabular-nums}tr:nth-child(even) td{background:#fafbfc}
figure{display:inline-block;margin:.4em 1em .8em 0;vertical-align:top}figcaption{font-size:12px;color:#555}
img{max-width:100%;border:1px solid #e3e3e3}code,pre{font:12.5px Menlo,Consolas,monospace;background:#f5f6f8}
pre{padding:.6em .8em;overflow-x:auto}code{padding:0 .2em}nav a{margin-right:1em}
.legend span{display:inline-block;padding:0 .5em;margin-right:.4em;color:#fff;border-radius:3px}
"""

_MIME = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".gif": "image/gif",
         ".svg": "image/svg+xml", ".webp": "image/webp"}


def fmt_value(v: Any, digits: int = 3) -> str:
    """A cell as text: floats with ``digits`` decimals, NULL as an em dash."""
    if v is None:
        return "—"
    if isinstance(v, float):
        if math.isnan(v):
            return "NaN"
        return f"{v:.{digits}f}"
    if isinstance(v, (list, dict)):
        s = json.dumps(v, default=str)
        return s if len(s) <= 80 else s[:77] + "..."
    return str(v)


def data_uri(path: str | Path) -> str:
    """The file as a ``data:`` URI (base64)."""
    p = Path(path)
    mime = _MIME.get(p.suffix.lower(), "application/octet-stream")
    return f"data:{mime};base64," + base64.b64encode(p.read_bytes()).decode("ascii")


class HtmlReport:
    """Collects sections, paragraphs, tables and images; :meth:`write` emits one HTML file."""

    def __init__(self, title: str, subtitle: str | None = None):
        self.title = title
        self.subtitle = subtitle
        self._parts: list[str] = []
        self._toc: list[tuple[str, str]] = []

    # -- structure --------------------------------------------------------------------------
    def section(self, title: str) -> str:
        """Start a top-level section (listed in the table of contents); returns its anchor."""
        anchor = f"s{len(self._toc) + 1}"
        self._toc.append((anchor, title))
        self._parts.append(f'<h2 id="{anchor}">{html.escape(title)}</h2>')
        return anchor

    def heading(self, title: str) -> None:
        self._parts.append(f"<h3>{html.escape(title)}</h3>")

    def paragraph(self, text: str, raw: bool = False) -> None:
        """A paragraph; ``raw=True`` inserts trusted HTML (e.g. ``<code>``) as is."""
        self._parts.append(f"<p>{text if raw else html.escape(text)}</p>")

    def note(self, text: str) -> None:
        self._parts.append(f'<div class="note">{html.escape(text)}</div>')

    def skipped(self, text: str) -> None:
        self._parts.append(f'<div class="skip">{html.escape(text)}</div>')

    def code(self, text: str) -> None:
        self._parts.append(f"<pre><code>{html.escape(text)}</code></pre>")

    def raw(self, fragment: str) -> None:
        """Trusted HTML, inserted as is."""
        self._parts.append(fragment)

    # -- content ----------------------------------------------------------------------------
    def table(
        self,
        data: pa.Table | Sequence[Mapping[str, Any]],
        columns: Sequence[str] | None = None,
        caption: str | None = None,
        max_rows: int | None = 50,
        digits: int = 3,
        table_id: str | None = None,
    ) -> None:
        """An HTML table from an Arrow table or a list of dicts (numbers right-aligned)."""
        rows = data.to_pylist() if isinstance(data, pa.Table) else [dict(r) for r in data]
        cols = list(columns) if columns is not None else (
            data.column_names if isinstance(data, pa.Table) else list(rows[0]) if rows else [])
        shown = rows if max_rows is None else rows[:max_rows]
        out = [f'<table id="{html.escape(table_id)}">' if table_id else "<table>"]
        if caption:
            out.append(f"<caption>{html.escape(caption)}</caption>")
        out.append("<tr>" + "".join(f"<th>{html.escape(str(c))}</th>" for c in cols) + "</tr>")
        for r in shown:
            cells = []
            for c in cols:
                v = r.get(c)
                num = isinstance(v, (int, float)) and not isinstance(v, bool)
                cells.append(f'<td{" class=n" if num else ""}>{html.escape(fmt_value(v, digits))}</td>')
            out.append("<tr>" + "".join(cells) + "</tr>")
        out.append("</table>")
        if max_rows is not None and len(rows) > max_rows:
            out.append(f'<p class="sub">… {len(rows) - max_rows} more rows not shown</p>')
        if not rows:
            out.append('<p class="sub">(no rows)</p>')
        self._parts.append("".join(out))

    def image(self, path: str | Path, caption: str | None = None, width: int | None = None) -> None:
        """Embed an image file (base64 data URI) with an optional caption."""
        style = f' style="width:{int(width)}px"' if width else ""
        alt = html.escape(caption or Path(path).name)
        cap = f"<figcaption>{html.escape(caption)}</figcaption>" if caption else ""
        self._parts.append(f'<figure><img src="{data_uri(path)}" alt="{alt}"{style}>{cap}</figure>')

    def images(self, items: Iterable[tuple[str | Path, str | None]], width: int | None = None) -> None:
        for path, caption in items:
            self.image(path, caption, width)

    def json_block(self, block_id: str, obj: Any) -> None:
        """Machine-readable data inside the page (``<script type="application/json">``)."""
        text = json.dumps(obj, default=str).replace("</", "<\\/")
        self._parts.append(f'<script type="application/json" id="{html.escape(block_id)}">{text}</script>')

    # -- output ------------------------------------------------------------------------------
    def render(self) -> str:
        toc = "".join(f'<a href="#{a}">{html.escape(t)}</a>' for a, t in self._toc)
        sub = f'<p class="sub">{html.escape(self.subtitle)}</p>' if self.subtitle else ""
        return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
                f"<title>{html.escape(self.title)}</title><style>{_CSS}</style></head><body>"
                f"<h1>{html.escape(self.title)}</h1>{sub}<nav>{toc}</nav>" + "\n".join(self._parts)
                + "</body></html>\n")

    def write(self, path: str | Path) -> Path:
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(self.render(), encoding="utf-8")
        return p


def read_json_block(text: str, block_id: str) -> Any:
    """Read back a :meth:`HtmlReport.json_block` from a written report."""
    marker = f'<script type="application/json" id="{block_id}">'
    start = text.index(marker) + len(marker)
    end = text.index("</script>", start)
    return json.loads(text[start:end].replace("<\\/", "</"))
