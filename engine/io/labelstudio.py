"""Label Studio JSON tasks: items with their current labels as pre-annotations, and the tool's export back.

Export: one task per item, ``data`` = ``{"image": <url>, "reference_id": ...}``, the labels as one
``predictions`` entry (``rectanglelabels`` / ``polygonlabels`` in percent of the image, ``choices`` for
image categories) whose region ``id`` is the Loupe annotation id — Label Studio keeps region ids when an
annotator accepts a pre-annotation. Import: per task the latest annotation that was not cancelled (tasks
nobody annotated are left alone); regions with an unknown id are new.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import pyarrow as pa

from ..errors import ValidationError
from .labels_exchange import EXCHANGE_SCHEMA, image_name

FROM_BOX, FROM_POLY, FROM_CHOICE, TO = "label", "polygon", "choice", "image"


def labeling_config(labels: list[str]) -> str:
    """The Label Studio labeling config matching the exported tasks."""
    vals = "".join(f'<Label value="{_xml_attr(v)}"/>' for v in sorted(set(labels)))
    choices = "".join(f'<Choice value="{_xml_attr(v)}"/>' for v in sorted(set(labels)))
    return (f'<View><Image name="{TO}" value="$image"/>'
            f'<RectangleLabels name="{FROM_BOX}" toName="{TO}">{vals}</RectangleLabels>'
            f'<PolygonLabels name="{FROM_POLY}" toName="{TO}">{vals}</PolygonLabels>'
            f'<Choices name="{FROM_CHOICE}" toName="{TO}" choice="multiple">{choices}</Choices></View>')


def _xml_attr(v: str) -> str:
    return v.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;").replace(">", "&gt;")


def write_label_studio(items: list[dict[str, Any]], annotations: list[dict[str, Any]], path: str | Path,
                       image_url: Callable[[dict[str, Any]], str], model_version: str) -> dict[str, int]:
    by_ref: dict[str, list[dict[str, Any]]] = {}
    for a in annotations:
        by_ref.setdefault(a["reference_id"], []).append(a)
    tasks = []
    n = 0
    for it in items:
        w, h = float(it["width"] or 0), float(it["height"] or 0)
        result = []
        for a in by_ref.get(it["reference_id"], []):
            base = {"id": a["annotation_id"], "to_name": TO, "original_width": int(w), "original_height": int(h),
                    "image_rotation": 0}
            if a["kind"] == "box":
                result.append({**base, "type": "rectanglelabels", "from_name": FROM_BOX, "value": {
                    "x": 100 * a["x"] / w, "y": 100 * a["y"] / h, "width": 100 * a["width"] / w,
                    "height": 100 * a["height"] / h, "rotation": 0, "rectanglelabels": [a["label"]]}})
            elif a["kind"] == "polygon":
                ring = a["polygon"][0]
                pts = [[100 * ring[j] / w, 100 * ring[j + 1] / h] for j in range(0, len(ring), 2)]
                result.append({**base, "type": "polygonlabels", "from_name": FROM_POLY,
                               "value": {"points": pts, "polygonlabels": [a["label"]]}})
            else:
                result.append({**base, "type": "choices", "from_name": FROM_CHOICE, "value": {"choices": [a["label"]]}})
            n += 1
        tasks.append({"data": {"image": image_url(it), "reference_id": it["reference_id"],
                               "image_name": image_name(it)},
                      "predictions": [{"model_version": model_version, "result": result}]})
    Path(path).write_text(json.dumps(tasks, indent=1), encoding="utf-8")
    return {"tasks": len(tasks), "regions": n}


def _pick(task: dict[str, Any]) -> dict[str, Any] | None:
    anns = [a for a in task.get("annotations") or [] if not a.get("was_cancelled")]
    if not anns:
        return None
    return max(enumerate(anns), key=lambda p: (str(p[1].get("updated_at") or p[1].get("created_at") or ""), p[0]))[1]


def _float(v: Any, where: str, field: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or v != v or v in (float("inf"), float("-inf")):
        raise ValidationError(f"{field} {v!r} is not a finite number", record=where, field=field)
    return float(v)


def read_label_studio(path: str | Path, resolve: Callable[[str], str],
                      sizes: dict[str, tuple[float, float]]) -> tuple[pa.Table, list[str]]:
    """Regions of the annotated tasks of a Label Studio JSON export, and the reference ids those tasks hold."""
    try:
        tasks = json.loads(Path(path).read_text(encoding="utf-8"))
    except (ValueError, RecursionError) as e:
        raise ValidationError(f"not a JSON file: {e}", record=str(path), field="json") from None
    if not isinstance(tasks, list):
        raise ValidationError("a Label Studio JSON export is a list of tasks", record=str(path), field="json")
    cols: dict[str, list[Any]] = {n: [] for n in EXCHANGE_SCHEMA.names}
    refs: list[str] = []
    for t, task in enumerate(tasks):
        data = task.get("data") if isinstance(task, dict) else None
        if not isinstance(data, dict):
            raise ValidationError("task without a data object", record=f"task {t + 1}", field="data")
        ref = data.get("reference_id")
        ref = resolve(str(ref)) if ref is not None else resolve(str(data.get("image_name") or data.get("image", "")))
        ann = _pick(task)
        if ann is None:
            continue
        refs.append(ref)
        iw, ih = sizes[ref]
        for k, r in enumerate(ann.get("result") or []):
            where = f"task {t + 1} ('{ref}'), region {k + 1}"
            v = r.get("value") or {}
            w = float(r.get("original_width") or iw)
            h = float(r.get("original_height") or ih)
            row = {"reference_id": ref, "annotation_id": (str(r["id"]) if r.get("id") is not None else None),
                   "kind": None, "label": None, "x": None, "y": None, "width": None, "height": None, "polygon": None}
            typ = r.get("type")
            if typ == "rectanglelabels":
                if v.get("rotation"):
                    raise ValidationError("rotated boxes are not supported", record=where, field="rotation")
                row.update(kind="box", x=_float(v.get("x"), where, "x") * w / 100,
                           y=_float(v.get("y"), where, "y") * h / 100,
                           width=_float(v.get("width"), where, "width") * w / 100,
                           height=_float(v.get("height"), where, "height") * h / 100)
                labels = v.get("rectanglelabels")
            elif typ == "polygonlabels":
                pts = v.get("points") or []
                if len(pts) < 3:
                    raise ValidationError("a polygon needs at least 3 points", record=where, field="points")
                flat = [c for p in pts for c in (_float(p[0], where, "points") * w / 100,
                                                 _float(p[1], where, "points") * h / 100)]
                row.update(kind="polygon", polygon=[flat])
                labels = v.get("polygonlabels")
            elif typ == "choices":
                labels = v.get("choices")
                row.update(kind="category")
            else:
                continue  # other control tags (text areas, ratings) carry no labels Loupe stores
            if not labels or not isinstance(labels, list) or not all(isinstance(x, str) for x in labels) or \
                    (len(labels) != 1 and typ != "choices"):
                raise ValidationError(f"expected one label, got {labels!r}", record=where, field="labels")
            for j, label in enumerate(labels):  # several choices: the first keeps the region id, others are new
                one = {**row, "label": label, "annotation_id": row["annotation_id"] if j == 0 else None}
                for n in cols:
                    cols[n].append(one[n])
    return pa.table(cols, schema=EXCHANGE_SCHEMA), refs
