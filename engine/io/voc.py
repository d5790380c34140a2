"""Pascal VOC XML: ``Annotations/*.xml`` (+ images in ``JPEGImages/``) → items and boxes.

Convention: VOC pixel coordinates are 1-based and inclusive, so a ``bndbox`` becomes the 0-based
top-left box ``x = xmin - 1, y = ymin - 1, width = xmax - xmin + 1, height = ymax - ymin + 1``
(the same convention as PennFudan's text boxes). ``reference_id`` = the XML file stem;
``annotation_id`` = the object's 1-based position in its file; ``difficult``, ``truncated``,
``occluded`` and ``pose`` go to the annotation metadata; the image size comes from ``<size>``
(or the image header when absent). An ``ImageSets/Main/<split>.txt`` list selects a split.
"""
from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from ..errors import ValidationError
from ._common import ImportSummary, Progress, abs_path, json_text, need_dir, write_import

if TYPE_CHECKING:
    from ..api.workspace import Workspace

_FLAGS = ("difficult", "truncated", "occluded")


def _text(el: ET.Element | None, tag: str) -> str | None:
    c = None if el is None else el.find(tag)
    return None if c is None or c.text is None else c.text.strip()


def _number(el: ET.Element | None, tag: str, record: str, field: str) -> float:
    v = _text(el, tag)
    try:
        return float(v)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValidationError(f"<{tag}> is missing or not a number ({v!r})", record=record, field=field) from None


def _side(el: ET.Element | None, tag: str, ref: str) -> int | None:
    """An image side from <size>: absent, or a positive whole number below 2^31 (``500.0`` is 500)."""
    v = _text(el, tag)
    if not v:
        return None
    try:
        f = float(v)
    except ValueError:
        f = float("nan")
    if not (f.is_integer() and 0 < f < 2**31):
        raise ValidationError(f"<size><{tag}> must be a positive integer below 2^31, got {v!r:.40}",
                              record=f"reference_id '{ref}'", field=tag)
    return int(f)


def parse_xml(path: Path) -> dict[str, Any]:
    """One VOC annotation file → ``{filename, width, height, objects: [(name, box, meta)]}``."""
    ref = path.stem
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as e:
        raise ValidationError(f"malformed XML in {path}: {e}", record=f"reference_id '{ref}'") from None
    size = root.find("size")
    w, h = _side(size, "width", ref), _side(size, "height", ref)
    objs = []
    for k, ob in enumerate(root.findall("object"), 1):
        rec = f"reference_id '{ref}', annotation_id '{k}'"
        name = _text(ob, "name")
        bb = ob.find("bndbox")
        if bb is None:
            raise ValidationError("object has no <bndbox>", record=rec, field="bndbox")
        x0, y0, x1, y1 = (_number(bb, t, rec, t) for t in ("xmin", "ymin", "xmax", "ymax"))
        meta = {f: _text(ob, f) in ("1", "true") for f in _FLAGS if _text(ob, f) is not None}
        if _text(ob, "pose") not in (None, "", "Unspecified"):
            meta["pose"] = _text(ob, "pose")
        objs.append((name, [x0 - 1, y0 - 1, x1 - x0 + 1, y1 - y0 + 1], meta))
    return {
        "filename": _text(root, "filename") or f"{ref}.jpg",
        "width": w,
        "height": h,
        "objects": objs,
    }


def read_voc(root: str | Path, split: str | None = None, images_dir: str | Path | None = None,
             progress: Progress | None = None) -> tuple[pa.Table, pa.Table]:
    """The items and annotation tables of a VOC folder (``Annotations/`` + ``JPEGImages/``)."""
    root = need_dir(root, "VOC")
    ann_dir = need_dir(root / "Annotations", "VOC Annotations")
    img_dir = Path(images_dir) if images_dir is not None else root / "JPEGImages"
    if split is not None:
        lst = root / "ImageSets" / "Main" / f"{split}.txt"
        if not lst.is_file():
            raise ValidationError(f"split list {lst} does not exist", field="split")
        files = [ann_dir / f"{ln.split()[0]}.xml" for ln in lst.read_text().splitlines() if ln.strip()]
    else:
        files = sorted(ann_dir.glob("*.xml"))
    parsed = []
    for done, f in enumerate(files, 1):
        if not f.is_file():
            raise ValidationError(f"annotation file {f} is missing", record=f"reference_id '{f.stem}'")
        parsed.append(parse_xml(f))
        if progress is not None and (done % 200 == 0 or done == len(files)):
            progress(done, len(files))
    refs = [f.stem for f in files]
    items = pa.table({
        "reference_id": pa.array(refs, pa.string()),
        "image_location": pa.array([abs_path(img_dir / p["filename"]) for p in parsed], pa.string()),
        "width": pa.array([p["width"] for p in parsed], pa.int64()),
        "height": pa.array([p["height"] for p in parsed], pa.int64()),
    })
    rows = [(ref, k, o) for ref, p in zip(refs, parsed) for k, o in enumerate(p["objects"], 1)]
    box = np.array([o[1] for _, _, o in rows], dtype=np.float64).reshape(-1, 4)
    anns = pa.table({
        "reference_id": pa.array([r for r, _, _ in rows], pa.string()),
        "annotation_id": pa.array([str(k) for _, k, _ in rows], pa.string()),
        "kind": pa.array(["box"] * len(rows), pa.string()),
        "label": pa.array([o[0] for _, _, o in rows], pa.string()),
        "x": box[:, 0], "y": box[:, 1], "width": box[:, 2], "height": box[:, 3],
        "metadata": json_text([o[2] for _, _, o in rows]),
    })
    return items, anns


def import_voc(ws: "Workspace", root: str | Path, dataset: str, split: str | None = None,
               images_dir: str | Path | None = None, check_images: bool = True, clip: bool | str = False,
               progress: Progress | None = None) -> ImportSummary:
    """Import a Pascal VOC folder into ``dataset`` (boxes; see the module docstring for the convention)."""
    items, anns = read_voc(root, split=split, images_dir=images_dir, progress=progress)
    return write_import(ws, dataset, items, anns, check_images=check_images, clip=clip)
