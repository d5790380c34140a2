"""PNGs for similarity work: the duplicate-distance histogram and the 2-D map scatter (matplotlib, extra ``plots``,
drawn through the Agg canvas as engine/analysis/plots.py does)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

from engine.analysis.plots import _matplotlib

MAX_LEGEND = 12  # categories coloured by name; the rest are "other"


def histogram_png(table: pa.Table, path: str | Path, title: str, unit: str) -> Path:
    Figure, Canvas = _matplotlib()
    fig = Figure(figsize=(7, 4))
    Canvas(fig)
    ax = fig.add_subplot(1, 1, 1)
    lo, hi = table.column("bin_start").to_numpy(), table.column("bin_end").to_numpy()
    ax.bar(lo, table.column("count").to_numpy(), width=hi - lo, align="edge", color="#4c72b0", edgecolor="white")
    ax.set_xlabel(unit)
    ax.set_ylabel("rows")
    ax.set_title(title)
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    return out


def scatter_png(x: np.ndarray, y: np.ndarray, colour_by: list, path: str | Path, title: str, legend: str) -> Path:
    """Scatter of map points coloured by a category (label, slice membership, status); None = "none"."""
    Figure, Canvas = _matplotlib()
    fig = Figure(figsize=(7, 6))
    Canvas(fig)
    ax = fig.add_subplot(1, 1, 1)
    cats = np.asarray(["none" if c is None else str(c) for c in colour_by], object)
    names, counts = np.unique(cats, return_counts=True)
    top = list(names[np.argsort(-counts)][:MAX_LEGEND])
    cats = np.where(np.isin(cats, top), cats, "other")
    import matplotlib

    cmap = matplotlib.colormaps["tab20"]
    for i, name in enumerate(sorted(set(cats.tolist()))):
        m = cats == name
        ax.scatter(x[m], y[m], s=8, alpha=0.8, color=cmap(i % 20), label=f"{name} ({int(m.sum())})")
    ax.legend(title=legend, fontsize="small", markerscale=2, loc="best")
    ax.set_title(title)
    ax.set_xticks([])
    ax.set_yticks([])
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    return out
