"""Round trip to labeling tools: export items (a slice, some ids, or all) with their current labels as a
CVAT task or Label Studio tasks, and import the tool's export back as corrections (label_import)."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable

from ..errors import LoupeError
from ..io import cvat, labelstudio
from ..io.labels_exchange import name_resolver
from .label_import import apply_tool_labels, exchanged_labels

if TYPE_CHECKING:
    from ..api.dataset import Dataset

TOOLS = ("cvat", "label-studio")


def _items(ds: "Dataset", slice: Any, reference_ids: Iterable[str] | None) -> list[dict[str, Any]]:
    items = ds.items().to_pylist()
    if slice is not None and reference_ids is not None:
        raise LoupeError("give a slice or reference_ids, not both")
    if slice is not None:
        wanted = set((ds.get_slice(slice) if isinstance(slice, str) else slice).reference_ids())
    elif reference_ids is not None:
        wanted = {str(r) for r in reference_ids}
        unknown = wanted - {it["reference_id"] for it in items}
        if unknown:
            raise LoupeError(f"unknown reference_id '{sorted(unknown)[0]}' in dataset '{ds.name}'")
    else:
        return items
    return [it for it in items if it["reference_id"] in wanted]


def export_labels(ds: "Dataset", tool: str, path: str | Path, slice: Any = None,
                  reference_ids: Iterable[str] | None = None,
                  image_url: Callable[[dict[str, Any]], str] | str | None = None) -> dict[str, Any]:
    """Write ``tool``'s task file for the chosen items with their current labels.

    ``image_url`` (Label Studio): a prefix joined with the image's tool name, or a function of the item row;
    default the image location as a ``/data/local-files/?d=`` URL (Label Studio's local-files storage).
    """
    items = _items(ds, slice, reference_ids)
    anns = exchanged_labels(ds, [it["reference_id"] for it in items]).to_pylist()
    labels = {a["label"] for a in anns}
    if tool == "cvat":
        out = cvat.write_cvat(items, anns, labels, path, task_name=f"{ds.name} (loupe)")
    elif tool == "label-studio":
        url = _url(image_url)
        out = labelstudio.write_label_studio(items, anns, path, url, model_version=f"loupe-labels-v{ds.label_version}")
        Path(str(path) + ".config.xml").write_text(labelstudio.labeling_config(sorted(labels)), encoding="utf-8")
    else:
        raise LoupeError(f"unknown labeling tool '{tool}'; one of: {', '.join(TOOLS)}")
    return {**out, "path": str(path), "label_version": ds.label_version}


def _url(image_url: Callable[[dict[str, Any]], str] | str | None) -> Callable[[dict[str, Any]], str]:
    from urllib.parse import quote

    from ..io.labels_exchange import image_name

    if callable(image_url):
        return image_url
    if isinstance(image_url, str):
        return lambda it: image_url.rstrip("/") + "/" + quote(image_name(it))
    return lambda it: "/data/local-files/?d=" + quote(str(it["image_location"]).lstrip("/"))


def import_labels(ds: "Dataset", tool: str, path: str | Path, reason: str | None = None, author: str | None = None,
                  tolerance: float = 0.01) -> dict[str, Any]:
    """Read a tool's export and apply it as ONE label version; returns counts and the ``changes`` table."""
    items = ds.items().to_pylist()
    resolve = name_resolver(items)
    if tool == "cvat":
        table, refs = cvat.read_cvat(path, resolve)
    elif tool == "label-studio":
        sizes = {it["reference_id"]: (float(it["width"] or 0), float(it["height"] or 0)) for it in items}
        table, refs = labelstudio.read_label_studio(path, resolve, sizes)
    else:
        raise LoupeError(f"unknown labeling tool '{tool}'; one of: {', '.join(TOOLS)}")
    return apply_tool_labels(ds, table, refs, source=tool, reason=reason, author=author, tolerance=tolerance)
