"""PNG charts of :func:`engine.analysis.insights` tables, so people can look rather than read.

matplotlib is an optional extra (``pip install 'loupe[plots]'``); it is imported on first use and
drawn through the Agg canvas directly (no pyplot, no global backend switch, no display needed).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import pyarrow as pa
import pyarrow.compute as pc

from ..errors import LoupeError

COLOURS = {"tp": "#1e6eff", "fp": "#e61e1e", "fn": "#ff9600", "gt": "#00b400", "bar": "#4c72b0"}
MAX_BARS = 25      # categories shown per bar chart (the most frequent)
MAX_FIELDS = 12    # metadata fields drawn


def _matplotlib() -> tuple[Any, Any]:
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ModuleNotFoundError:
        raise LoupeError("charts need matplotlib, an optional extra: pip install 'loupe[plots]' "
                         "(or pip install matplotlib)") from None
    return Figure, FigureCanvasAgg


def save_charts(insights: dict[str, pa.Table], out_dir: str | Path, dpi: int = 100) -> list[Path]:
    """Draw every chart the ``insights`` tables allow into ``out_dir``; returns the PNG paths.

    Charts: labels, annotations_per_item, size_buckets, box_sizes (width/height/area/aspect),
    metadata (one panel per field), and with a run: per_class (TP/FP/FN), error_types, scores
    (stacked TP/FP confidence histogram) and ious (IoU of TPs, best IoU of FPs and FNs).
    """
    Figure, Canvas = _matplotlib()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, (needs, draw, shape) in _CHARTS.items():
        tables = [insights.get(n) for n in needs]
        if tables[0] is None or tables[0].num_rows == 0 or not _drawable(name, tables[0]):
            continue
        fig = Figure(figsize=shape(*tables), dpi=dpi, layout="constrained")
        draw(fig, *tables)
        path = out / f"{name}.png"
        Canvas(fig).print_png(str(path))
        written.append(path)
    return written


def _drawable(name: str, t: pa.Table) -> bool:
    if name == "metadata":
        return any(v in ("categorical", "numeric") for v in t.column("type").to_pylist())
    return True


def _col(t: pa.Table, name: str) -> list:
    return t.column(name).to_pylist()


def _barh(ax: Any, labels: list, values: list, title: str, colour: str = COLOURS["bar"]) -> None:
    pairs = sorted(zip(values, [str(v) for v in labels]), key=lambda p: -p[0])[:MAX_BARS][::-1]
    ax.barh([p[1] for p in pairs], [p[0] for p in pairs], color=colour)
    ax.set_title(title, fontsize=10)
    ax.tick_params(labelsize=8)


def _hist(ax: Any, t: pa.Table, cols: list[str], title: str, stacked: bool = False) -> None:
    """Bars from a (lower, upper, counts...) histogram table; stacked or side by side."""
    lower, upper = _col(t, "lower"), _col(t, "upper")
    widths = [max(u - lo, 1e-12) for lo, u in zip(lower, upper)]
    bottom = [0] * t.num_rows
    for k, c in enumerate(cols):
        vals = [v or 0 for v in _col(t, c)]
        colour = COLOURS.get(c.split("_")[0], COLOURS["bar"])
        if stacked or len(cols) == 1:
            ax.bar(lower, vals, width=widths, bottom=bottom, align="edge", color=colour, label=c, edgecolor="white")
            bottom = [b + v for b, v in zip(bottom, vals)]
        else:
            w = [x / len(cols) for x in widths]
            ax.bar([lo + k * wi for lo, wi in zip(lower, w)], vals, width=w, align="edge", color=colour, label=c)
    ax.set_title(title, fontsize=10)
    ax.tick_params(labelsize=8)
    if len(cols) > 1:
        ax.legend(fontsize=8)


def _labels(fig: Any, t: pa.Table) -> None:
    _barh(fig.add_subplot(), _col(t, "label"), _col(t, "annotations"), "annotations per label")


def _per_item(fig: Any, t: pa.Table) -> None:
    ax = fig.add_subplot()
    ax.bar([str(v) for v in _col(t, "annotations")], _col(t, "items"), color=COLOURS["bar"])
    ax.set_xlabel("annotations in the item")
    ax.set_ylabel("items")
    ax.set_title("annotations per item", fontsize=10)


def _buckets(fig: Any, t: pa.Table) -> None:
    ax = fig.add_subplot()
    labels = list(dict.fromkeys(_col(t, "label")))
    counts = {(r["label"], r["bucket"]): r["count"] for r in t.to_pylist()}
    for k, (bucket, colour) in enumerate((("small", "#9ecae1"), ("medium", "#4292c6"), ("large", "#08519c"))):
        ax.bar([i + (k - 1) * 0.27 for i in range(len(labels))], [counts.get((lab, bucket), 0) for lab in labels],
               width=0.27, color=colour, label=bucket)
    ax.set_xticks(range(len(labels)), labels, fontsize=8, rotation=30 if len(labels) > 6 else 0)
    ax.set_title("COCO size buckets (small < 32², medium < 96², large)", fontsize=10)
    ax.legend(fontsize=8)


def _boxes(fig: Any, t: pa.Table) -> None:
    measures = list(dict.fromkeys(_col(t, "measure")))
    axes = fig.subplots(1, len(measures), squeeze=False)[0]
    for ax, m in zip(axes, measures):
        _hist(ax, t.filter(pc.equal(t["measure"], m)), ["count"], f"box {m}")


def _metadata(fig: Any, fields: pa.Table, values: pa.Table | None = None, hists: pa.Table | None = None) -> None:
    rows = [r for r in fields.to_pylist() if r["type"] in ("categorical", "numeric")][:MAX_FIELDS]
    cols = min(3, len(rows))
    axes = fig.subplots((len(rows) + cols - 1) // cols, cols, squeeze=False).ravel()
    for ax in axes[len(rows):]:
        ax.set_visible(False)
    for ax, r in zip(axes, rows):
        title = f"{r['scope']}.{r['field']}"
        if r["type"] == "categorical" and values is not None:
            v = [x for x in values.to_pylist() if x["scope"] == r["scope"] and x["field"] == r["field"]]
            if r["numeric_values"]:
                _numeric_counts(ax, [float(x["value"]) for x in v], [x["count"] for x in v], title)
            else:
                _barh(ax, [x["value"] for x in v], [x["count"] for x in v], title)
        elif hists is not None:
            h = pa.Table.from_pylist([x for x in hists.to_pylist() if x["scope"] == r["scope"] and x["field"] == r["field"]],
                                     schema=hists.schema)
            _hist(ax, h, ["count"], title)


def _numeric_counts(ax: Any, values: list[float], counts: list[int], title: str) -> None:
    """Value counts of a few-valued numeric field: bars at the values, or a histogram if many."""
    import numpy as np

    if len(values) <= 30:
        order = np.argsort(values)
        ax.bar([f"{values[i]:g}" for i in order], [counts[i] for i in order], color=COLOURS["bar"])
    else:
        ax.hist(values, bins=20, weights=counts, color=COLOURS["bar"], edgecolor="white")
    ax.set_title(title, fontsize=10)
    ax.tick_params(labelsize=8)


def _per_class(fig: Any, t: pa.Table) -> None:
    rows = [r for r in t.to_pylist() if r["label"] != "(all)"][:MAX_BARS]
    ax = fig.add_subplot()
    for k, c in enumerate(("tp", "fp", "fn")):
        ax.bar([i + (k - 1) * 0.27 for i in range(len(rows))], [r[c] for r in rows], width=0.27,
               color=COLOURS[c], label=c.upper())
    ax.set_xticks(range(len(rows)), [r["label"] for r in rows], fontsize=8, rotation=30 if len(rows) > 6 else 0)
    ax.set_title("per class TP / FP / FN", fontsize=10)
    ax.legend(fontsize=8)


def _errors(fig: Any, t: pa.Table) -> None:
    rows = t.to_pylist()
    _barh(fig.add_subplot(), [f"{r['status']}: {r['error_type']}" for r in rows], [r["count"] for r in rows],
          "errors by type", COLOURS["fp"])


def _scores(fig: Any, t: pa.Table) -> None:
    _hist(fig.add_subplot(), t, ["tp", "fp"], "prediction confidence (stacked)", stacked=True)


def _ious(fig: Any, t: pa.Table) -> None:
    _hist(fig.add_subplot(), t, ["tp", "fp_best", "fn_best"], "IoU of TPs; best IoU of FPs and FNs")


def _wide(*_: Any) -> tuple[float, float]:
    return (7.0, 3.5)


def _tall(t: pa.Table, *_: Any) -> tuple[float, float]:
    return (7.0, min(max(2.5, 1.0 + 0.25 * min(t.num_rows, MAX_BARS)), 8.0))


def _meta_shape(fields: pa.Table, *_: Any) -> tuple[float, float]:
    n = min(sum(1 for r in fields.column("type").to_pylist() if r in ("categorical", "numeric")), MAX_FIELDS)
    return (12.0, 3.2 * max(1, (n + 2) // 3))


# chart name -> (tables that must be non-empty, draw(fig, *tables), figure size(*tables))
_CHARTS: dict[str, tuple[tuple[str, ...], Callable, Callable]] = {
    "labels": (("labels",), _labels, _tall),
    "annotations_per_item": (("annotations_per_item",), _per_item, _wide),
    "size_buckets": (("size_buckets",), _buckets, _wide),
    "box_sizes": (("box_histograms",), _boxes, lambda *_: (14.0, 3.2)),
    "metadata": (("metadata_fields", "metadata_values", "metadata_histograms"), _metadata, _meta_shape),
    "per_class": (("per_class",), _per_class, _wide),
    "error_types": (("error_types",), _errors, _tall),
    "scores": (("scores",), _scores, _wide),
    "ious": (("ious",), _ious, _wide),
}
