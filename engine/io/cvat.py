"""CVAT "for images 1.1" XML: write a task of items with their current labels, read the tool's export back.

Boxes become ``<box xtl ytl xbr ybr>`` (pixels, 0-based, as CVAT), polygons ``<polygon points="x,y;...">``,
image-level categories ``<tag>``. Each shape carries a ``loupe_id`` text attribute (declared on every label
in ``<meta>`` so CVAT keeps it through an edit): shapes drawn in the tool have none and are new. Images are
named ``<reference_id><suffix of the image file>``; reading maps a name back by that rule, by its stem, or
by the image file's base name.
"""
from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any, Iterable

import pyarrow as pa

from ..errors import ValidationError
from .labels_exchange import EXCHANGE_SCHEMA, image_name

ID_ATTR = "loupe_id"


def write_cvat(items: list[dict[str, Any]], annotations: list[dict[str, Any]], labels: Iterable[str],
               path: str | Path, task_name: str) -> dict[str, int]:
    """Write one CVAT task file; ``annotations`` rows carry the exchange columns."""
    root = ET.Element("annotations")
    ET.SubElement(root, "version").text = "1.1"
    task = ET.SubElement(ET.SubElement(root, "meta"), "task")
    ET.SubElement(task, "name").text = task_name
    ET.SubElement(task, "size").text = str(len(items))
    ET.SubElement(task, "mode").text = "annotation"
    lab = ET.SubElement(task, "labels")
    for name in sorted(set(labels)):
        el = ET.SubElement(lab, "label")
        ET.SubElement(el, "name").text = name
        ET.SubElement(el, "type").text = "any"
        attrs = ET.SubElement(ET.SubElement(el, "attributes"), "attribute")
        for tag, text in (("name", ID_ATTR), ("mutable", "False"), ("input_type", "text"), ("default_value", ""),
                          ("values", "")):
            ET.SubElement(attrs, tag).text = text
    by_ref: dict[str, list[dict[str, Any]]] = {}
    for a in annotations:
        by_ref.setdefault(a["reference_id"], []).append(a)
    n = 0
    for i, it in enumerate(items):
        img = ET.SubElement(root, "image", id=str(i), name=image_name(it), width=str(it["width"] or 0),
                            height=str(it["height"] or 0))
        for a in by_ref.get(it["reference_id"], []):
            common = {"label": a["label"], "source": "manual", "occluded": "0", "z_order": "0"}
            if a["kind"] == "box":
                el = ET.SubElement(img, "box", **common, xtl=_f(a["x"]), ytl=_f(a["y"]),
                                   xbr=_f(a["x"] + a["width"]), ybr=_f(a["y"] + a["height"]))
            elif a["kind"] == "polygon":
                ring = a["polygon"][0]
                pts = ";".join(f"{_f(ring[j])},{_f(ring[j + 1])}" for j in range(0, len(ring), 2))
                el = ET.SubElement(img, "polygon", **common, points=pts)
            else:  # category
                el = ET.SubElement(img, "tag", label=a["label"], source="manual")
            ET.SubElement(el, "attribute", name=ID_ATTR).text = a["annotation_id"]
            n += 1
    ET.indent(root)
    ET.ElementTree(root).write(path, encoding="utf-8", xml_declaration=True)
    return {"images": len(items), "shapes": n}


def _f(v: float) -> str:
    return repr(float(v))  # exact: CVAT reads any float text and writes 2 decimals back


def _num(el: ET.Element, attr: str, where: str) -> float:
    v = el.get(attr)
    try:
        x = float(v)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValidationError(f"attribute {attr}={v!r} is not a number", record=where, field=attr) from None
    if x != x or x in (float("inf"), float("-inf")):
        raise ValidationError(f"attribute {attr}={v!r} is not finite", record=where, field=attr)
    return x


def read_cvat(path: str | Path, resolve: Any) -> tuple[pa.Table, list[str]]:
    """Shapes of a CVAT export as an exchange table, and the reference ids of the images it holds.

    ``resolve(name) -> reference_id`` maps an image name (raises ValidationError when unknown).
    """
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as e:
        raise ValidationError(f"not a CVAT XML file: {e}", record=str(path), field="xml") from None
    if root.tag != "annotations":
        raise ValidationError("root element is not <annotations> (CVAT for images 1.1)", record=str(path),
                              field="xml")
    cols: dict[str, list[Any]] = {n: [] for n in EXCHANGE_SCHEMA.names}
    refs: list[str] = []
    for img in root.iter("image"):
        name = img.get("name") or ""
        ref = resolve(name)
        refs.append(ref)
        for k, el in enumerate(el for el in img if el.tag in ("box", "polygon", "tag")):
            where = f"image '{name}', {el.tag} {k + 1}"
            label = el.get("label")
            if not label:
                raise ValidationError("shape without a label", record=where, field="label")
            ident = next((a.text for a in el.findall("attribute") if a.get("name") == ID_ATTR), None)
            row = {"reference_id": ref, "annotation_id": (ident or "").strip() or None, "label": label,
                   "kind": None, "x": None, "y": None, "width": None, "height": None, "polygon": None}
            if el.tag == "box":
                x0, y0, x1, y1 = (_num(el, a, where) for a in ("xtl", "ytl", "xbr", "ybr"))
                row.update(kind="box", x=x0, y=y0, width=x1 - x0, height=y1 - y0)
            elif el.tag == "polygon":
                try:
                    flat = [float(c) for p in (el.get("points") or "").split(";") if p for c in p.split(",")]
                except ValueError:
                    raise ValidationError(f"points {el.get('points')!r} are not x,y pairs", record=where,
                                          field="points") from None
                if len(flat) < 6 or len(flat) % 2:
                    raise ValidationError("a polygon needs at least 3 x,y points", record=where, field="points")
                row.update(kind="polygon", polygon=[flat])
            else:
                row.update(kind="category")
            for n in cols:
                cols[n].append(row[n])
    return pa.table(cols, schema=EXCHANGE_SCHEMA), refs
