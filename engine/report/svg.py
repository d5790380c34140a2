"""Inline SVG charts for self-contained reports: horizontal bars, histograms and PR curves.

Same look as the App's browser charts (engine/app/static/charts.js), drawn in Python so a report
needs no script and no matplotlib; every text is escaped. Sizes are generous (readable when printed).
"""
from __future__ import annotations

import html
from typing import Sequence

PALETTE = ("#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#ff9da7")


def _t(x: float, y: float, text: str, anchor: str = "start", fill: str = "#333") -> str:
    return (f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" fill="{fill}" '
            f'font-size="12" font-family="sans-serif">{html.escape(str(text))}</text>')


def _num(v: float) -> str:
    if float(v).is_integer():
        return str(int(v))
    return f"{v:.3g}"


def bars(title: str, labels: Sequence[str], values: Sequence[float], color: str = PALETTE[0], width: int = 640,
         max_rows: int = 40) -> str:
    """Horizontal bar chart (one row per label)."""
    labels, values = list(labels)[:max_rows], [float(v or 0) for v in list(values)[:max_rows]]
    row, left, right = 22, 190, 70
    h = row * len(labels) + 34
    top = max(values, default=0) or 1.0
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{h}" role="img">',
           _t(4, 16, title, fill="#111")]
    for i, (lab, v) in enumerate(zip(labels, values)):
        y = 26 + i * row
        w = max(1.0, v / top * (width - left - right))
        out.append(_t(left - 6, y + 14, str(lab)[:30], "end"))
        out.append(f'<rect x="{left}" y="{y + 3}" width="{w:.1f}" height="{row - 7}" fill="{color}"/>')
        out.append(_t(left + w + 4, y + 14, _num(v)))
    out.append("</svg>")
    return "".join(out)


def histogram(title: str, lowers: Sequence[float], uppers: Sequence[float], counts: Sequence[float],
              xlabel: str = "", width: int = 560, height: int = 240) -> str:
    """Vertical histogram with its range on the x axis."""
    L, B, T, R = 50, 42, 26, 12
    n = max(1, len(counts))
    top = max(counts, default=0) or 1
    bw = (width - L - R) / n
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img">',
           _t(4, 16, title, fill="#111")]
    for i, c in enumerate(counts):
        bh = c / top * (height - T - B)
        out.append(f'<rect x="{L + i * bw + 1:.1f}" y="{height - B - bh:.1f}" width="{max(1, bw - 2):.1f}" '
                   f'height="{bh:.1f}" fill="{PALETTE[0]}"><title>{html.escape(f"{_num(lowers[i])}–{_num(uppers[i])}: {c}")}</title></rect>')
    out += [f'<line x1="{L}" y1="{height - B}" x2="{width - R}" y2="{height - B}" stroke="#888"/>',
            _t(L - 4, T + 10, _num(top), "end"), _t(L - 4, height - B, "0", "end")]
    if len(lowers):
        out += [_t(L, height - B + 15, _num(lowers[0])), _t(width - R, height - B + 15, _num(uppers[-1]), "end")]
    if xlabel:
        out.append(_t((width + L) / 2, height - 6, xlabel, "middle", "#555"))
    out.append("</svg>")
    return "".join(out)


def lines(title: str, series: Sequence[tuple[str, Sequence[float], Sequence[float]]], xlabel: str = "recall",
          ylabel: str = "precision", width: int = 520, height: int = 360) -> str:
    """Curves in the unit square: ``series`` = (name, xs, ys)."""
    L, B, T, R = 50, 44, 28, 14
    sx = lambda x: L + x * (width - L - R)  # noqa: E731
    sy = lambda y: height - B - y * (height - T - B)  # noqa: E731
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img">',
           _t(4, 16, title, fill="#111")]
    for k in range(5):
        v = k / 4
        out += [f'<line x1="{sx(0):.1f}" y1="{sy(v):.1f}" x2="{sx(1):.1f}" y2="{sy(v):.1f}" stroke="#eee"/>',
                _t(L - 4, sy(v) + 4, f"{v:.2f}", "end"), _t(sx(v), height - B + 15, f"{v:.2f}", "middle")]
    out += [_t((width + L) / 2, height - 6, xlabel, "middle", "#555"), _t(L, T - 4, ylabel, "start", "#555")]
    for i, (name, xs, ys) in enumerate(series):
        c = PALETTE[i % len(PALETTE)]
        d = "".join(("M" if j == 0 else "L") + f"{sx(x):.1f},{sy(max(0.0, y)):.1f}" for j, (x, y) in enumerate(zip(xs, ys)))
        out.append(f'<path d="{d}" fill="none" stroke="{c}" stroke-width="2"/>')
        out.append(_t(width - R - 4, T + 14 + 15 * i, name, "end", c))
    out.append("</svg>")
    return "".join(out)
