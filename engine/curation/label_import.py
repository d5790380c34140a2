"""Labels edited in a labeling tool (CVAT, Label Studio) back into the workspace as ONE label version.

The tool's objects are compared with the current labels of the items its file holds (named SQL
``label_diff.sql``): an unknown or missing id is an addition, a current object the file no longer has is a
deletion, a changed label or box (beyond ``tolerance`` pixels: tools round coordinates) is a change, a
changed polygon or kind replaces the object under the same id. Everything is applied through
:func:`engine.curation.corrections.apply_changes` (history kept, ``undo`` works). Items the file does
not hold, and kinds the tools do not carry (masks, keypoints), are left alone.
"""
from __future__ import annotations

from importlib import resources
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..errors import ValidationError
from ..io.labels_exchange import EXCHANGED_KINDS

if TYPE_CHECKING:
    from ..api.dataset import Dataset

_DIFF_SQL = resources.files("engine.curation").joinpath("label_diff.sql").read_text(encoding="utf-8")


def exchanged_labels(ds: "Dataset", reference_ids: list[str]) -> pa.Table:
    """Current boxes, polygons and categories of the given items, with the exchange columns."""
    t = ds.annotations()
    keep = pc.and_(pc.is_in(t["reference_id"], pa.array(reference_ids, pa.string())),
                   pc.is_in(t["kind"], pa.array(EXCHANGED_KINDS)))
    return t.filter(keep).select(["reference_id", "annotation_id", "kind", "label", "x", "y", "width", "height",
                                  "polygon"])


def _check_ids(tool: pa.Table) -> None:
    ided = tool.filter(pc.is_valid(tool["annotation_id"]))
    counts = ided.group_by(["reference_id", "annotation_id"]).aggregate([("label", "count")])
    dup = counts.filter(pc.greater(counts["label_count"], 1))
    if dup.num_rows:
        r = dup.to_pylist()[0]
        raise ValidationError(f"id '{r['annotation_id']}' appears {r['label_count']} times on one image",
                              record=f"reference_id '{r['reference_id']}'", field="id")


def apply_tool_labels(ds: "Dataset", tool: pa.Table, reference_ids: list[str], source: str,
                      reason: str | None = None, author: str | None = None, tolerance: float = 0.01) -> dict[str, Any]:
    """Apply a tool's labels for ``reference_ids`` as one label version; returns counts and a change report."""
    _check_ids(tool)
    cur = exchanged_labels(ds, sorted(set(reference_ids)))
    tool = tool.append_column("row_number", pa.array(range(tool.num_rows), pa.int64()))
    store = ds.ws.store
    con = store.con
    con.register("__tool", tool)
    con.register("__cur", cur)
    try:
        diff = store.arrow(_DIFF_SQL, {"tol": float(tolerance)})
    finally:
        con.unregister("__tool")
        con.unregister("__cur")
    version = ds.label_version + 1
    act = diff["action"]
    is_ = lambda *names: pc.is_in(act, pa.array(names))  # noqa: E731
    dele = diff.filter(is_("delete", "replace")).select(["reference_id", "annotation_id"])
    adds = diff.filter(is_("add", "replace"))
    # an addition without an id gets "<source>-v<version>-<n>", n counting them in diff order
    fresh = pc.and_(pc.equal(adds["action"], "add"), pc.is_null(adds["annotation_id"]))
    n = np.cumsum(fresh.to_numpy(zero_copy_only=False), dtype=np.int64)
    minted = pc.binary_join_element_wise(pa.scalar(f"{source}-v{version}-"), pc.cast(pa.array(n), pa.string()), "")
    adds = adds.set_column(adds.column_names.index("annotation_id"), "annotation_id",
                           pc.if_else(fresh, minted, adds["annotation_id"]))
    add_t = adds.select(["reference_id", "annotation_id", "kind", "label_after", "x", "y", "width", "height",
                         "polygon"]).rename_columns(["reference_id", "annotation_id", "kind", "label", "x", "y",
                                                     "width", "height", "polygon"])
    chg = diff.filter(pc.equal(act, "change"))
    geo = chg["geometry_changed"]
    unchanged = lambda c: pc.if_else(geo, chg[c], pa.scalar(None, chg[c].type))  # noqa: E731
    change = pa.table({"reference_id": chg["reference_id"], "annotation_id": chg["annotation_id"],
                       "label": pc.if_else(chg["label_changed"], chg["label_after"], pa.scalar(None, pa.string())),
                       "x": unchanged("x"), "y": unchanged("y"), "width": unchanged("width"),
                       "height": unchanged("height")})
    result = ds.apply_changes(add=add_t if add_t.num_rows else None, change=change if change.num_rows else None,
                              delete=dele if dele.num_rows else None, reason=reason or f"labels from {source}",
                              author=author, operation=f"import {source}")
    # the report names the minted ids too
    ids = diff["annotation_id"]
    if adds.num_rows:
        at = pc.index_in(diff["tool_row"], adds["tool_row"])
        ids = pc.coalesce(pc.take(adds["annotation_id"], at), ids)
    changed = pc.not_equal(act, "same")
    report = pa.table({"action": act, "reference_id": diff["reference_id"], "annotation_id": ids,
                       "kind": diff["kind"], "label_before": diff["label_before"],
                       "label_after": diff["label_after"]}).filter(changed)
    same = diff.num_rows - report.num_rows
    return {**result, "unchanged": same, "items": len(set(reference_ids)), "changes": report}
