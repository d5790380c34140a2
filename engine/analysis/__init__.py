"""Error analysis over committed runs and datasets: patches view, crops, insights and charts.

* :func:`patches` — one row per evaluated object of a run (GT and predictions, status, partner, IoU).
* :func:`crops` — image crops of those rows with the boxes drawn, plus a contact sheet.
* :func:`insights` — dataset and run distributions as Arrow tables (all computed in SQL).
* :func:`engine.analysis.plots.save_charts` — the insights as PNG charts (optional ``plots`` extra).
"""
from .crops import LEGEND, crops
from .insights import insights
from .patches import SORT_KEYS, STATUSES, patches

__all__ = ["patches", "crops", "insights", "LEGEND", "SORT_KEYS", "STATUSES"]
