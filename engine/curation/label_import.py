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
    rows = diff.to_pylist()
    version = ds.label_version + 1
    add, change, delete = [], [], []
    n_new = 0
    for r in rows:
        act = r["action"]
        if act in ("delete", "replace"):
            delete.append({"reference_id": r["reference_id"], "annotation_id": r["annotation_id"]})
        if act in ("add", "replace"):
            ident = r["annotation_id"] if act == "replace" else None
            if ident is None:
                n_new += 1
                ident = f"{source}-v{version}-{n_new}"
                r["annotation_id"] = ident
            add.append({"reference_id": r["reference_id"], "annotation_id": ident, "kind": r["kind"],
                        "label": r["label_after"], "x": r["x"], "y": r["y"], "width": r["width"],
                        "height": r["height"], "polygon": r["polygon"]})
        if act == "change":
            change.append({"reference_id": r["reference_id"], "annotation_id": r["annotation_id"],
                           "label": r["label_after"] if r["label_changed"] else None,
                           **({"x": r["x"], "y": r["y"], "width": r["width"], "height": r["height"]}
                              if r["geometry_changed"] else {})})
    add_t = pa.Table.from_pylist(add, schema=pa.schema([
        ("reference_id", pa.string()), ("annotation_id", pa.string()), ("kind", pa.string()), ("label", pa.string()),
        ("x", pa.float64()), ("y", pa.float64()), ("width", pa.float64()), ("height", pa.float64()),
        ("polygon", pa.list_(pa.list_(pa.float64())))])) if add else None
    result = ds.apply_changes(add=add_t, change=change or None, delete=delete or None,
                              reason=reason or f"labels from {source}", author=author, operation=f"import {source}")
    report = pa.Table.from_pylist(
        [{"action": r["action"], "reference_id": r["reference_id"], "annotation_id": r["annotation_id"],
          "kind": r["kind"], "label_before": r["label_before"], "label_after": r["label_after"]}
         for r in rows if r["action"] != "same"],
        schema=pa.schema([("action", pa.string()), ("reference_id", pa.string()), ("annotation_id", pa.string()),
                          ("kind", pa.string()), ("label_before", pa.string()), ("label_after", pa.string())]))
    same = sum(1 for r in rows if r["action"] == "same")
    return {**result, "unchanged": same, "items": len(set(reference_ids)), "changes": report}
