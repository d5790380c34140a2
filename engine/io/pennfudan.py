"""PennFudan layout: ``PNGImages/NAME.png``, ``PedMasks/NAME_mask.png``, ``Annotation/NAME.txt``.

Storage decision: ONE annotation per object, kind ``box``, whose ``x, y, width, height`` are the
tight bbox of the object's instance mask in 0-based pixels (x = min column, width = max column -
min column + 1) and which also carries the mask itself as COCO RLE (``mask`` counts at the image
size) with ``area`` = the mask's pixel count (COCO's notion of area). So box queries and box
evaluation see the boxes, and mask evaluation finds the masks on the same rows.

* ``reference_id`` = file stem; ``annotation_id`` = the object index k (mask value k = object k).
* Labels: every ``PASperson*`` label (PASpersonWalking, PASpersonStanding) → ``pedestrian``;
  ``PAScyclist`` → ``cyclist``; anything else lowercased without the ``PAS`` prefix. The original
  string is kept in the annotation metadata as ``pf_label``.
* The text file's box (1-based inclusive corners ``(Xmin, Ymin) - (Xmax, Ymax)``) is kept in the
  metadata as ``txt_box`` = 0-based ``[Xmin-1, Ymin-1, Xmax-Xmin+1, Ymax-Ymin+1]``, so loose
  text boxes can be found later (``txt_box`` differs from the box). Objects listed in
  ``added-object-list.txt`` get ``added: true``.
* An object in the text without mask pixels (or no mask file) keeps its text box and no mask; a
  mask instance missing from the text gets label ``pedestrian`` and ``txt_box: null``.
* A ``metadata.json`` next to the folders (``{NAME: {...}}``, as the sample data writes) becomes
  item metadata.
"""
from __future__ import annotations

import json
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
from PIL import Image

from ..errors import ValidationError
from ._common import ImportSummary, Progress, abs_path, json_text, need_dir, write_import
from .masks import instances

if TYPE_CHECKING:
    from ..api.workspace import Workspace

_SIZE = re.compile(r"Image size \(X x Y x C\)\s*:\s*(\d+)\s*x\s*(\d+)")
_BOX = re.compile(
    r'Bounding box for object (\d+) "([^"]*)"\s*\(Xmin, Ymin\) - \(Xmax, Ymax\)\s*:\s*'
    r"\(\s*(-?\d+)\s*,\s*(-?\d+)\s*\)\s*-\s*\(\s*(-?\d+)\s*,\s*(-?\d+)\s*\)"
)


def label_of(pf_label: str) -> str:
    """PennFudan label string → Loupe label (see the module docstring)."""
    if pf_label.startswith("PASperson"):
        return "pedestrian"
    if pf_label == "PAScyclist":
        return "cyclist"
    return (pf_label[3:] if pf_label.startswith("PAS") else pf_label).lower()


def parse_annotation(text: str, name: str) -> tuple[tuple[int, int] | None, dict[int, tuple[str, list[int]]]]:
    """Image size and ``{k: (pf_label, 0-based [x, y, w, h])}`` of a PASCAL v1.00 annotation text."""
    m = _SIZE.search(text)
    size = (int(m.group(1)), int(m.group(2))) if m else None
    objs: dict[int, tuple[str, list[int]]] = {}
    for g in _BOX.finditer(text):
        k, lab = int(g.group(1)), g.group(2)
        x0, y0, x1, y1 = (int(g.group(i)) for i in range(3, 7))
        if k in objs:
            raise ValidationError("object index appears twice", record=f"reference_id '{name}'",
                                  field=f"object {k}")
        objs[k] = (lab, [x0 - 1, y0 - 1, x1 - x0 + 1, y1 - y0 + 1])
    return size, objs


def _read_mask(path: Path, name: str) -> np.ndarray | None:
    if not path.is_file():
        return None
    try:
        with Image.open(path) as im:
            arr = np.asarray(im)
    except Exception as e:  # noqa: BLE001 - any unreadable mask is reported
        raise ValidationError(f"unreadable mask {path} ({type(e).__name__}: {e})",
                              record=f"reference_id '{name}'", field="mask") from None
    return arr[..., 0] if arr.ndim == 3 else arr


def _added(root: Path) -> set[tuple[str, int]]:
    f = root / "added-object-list.txt"
    if not f.is_file():
        return set()
    out = set()
    for line in f.read_text(errors="replace").splitlines():
        parts = line.split()
        if len(parts) == 2 and not line.startswith("#") and parts[1].isdigit():
            out.add((Path(parts[0]).stem, int(parts[1])))
    return out


def _one(root: Path, name: str) -> dict[str, Any]:
    """Objects of one image: the text annotation joined with its mask's instances (numpy)."""
    ann = root / "Annotation" / f"{name}.txt"
    if not ann.is_file():
        raise ValidationError(f"annotation file {ann} is missing", record=f"reference_id '{name}'",
                              field="annotation")
    size, objs = parse_annotation(ann.read_text(errors="replace"), name)
    label = _read_mask(root / "PedMasks" / f"{name}_mask.png", name)
    ids, boxes, areas, counts = instances(label) if label is not None else (np.zeros(0, np.int64), None, None, [])
    shape = label.shape if label is not None else None
    by_id = {int(k): j for j, k in enumerate(ids)}
    rows = []
    for k in sorted(set(objs) | set(by_id)):
        pf, txt = objs.get(k, (None, None))
        j = by_id.get(k)
        rows.append({
            "k": k, "pf": pf, "txt": txt,
            "box": boxes[j].tolist() if j is not None else [float(v) for v in txt],
            "area": int(areas[j]) if j is not None else None,
            "counts": counts[j] if j is not None else None,
        })
    return {"name": name, "size": size, "shape": shape, "rows": rows}


def _item_metadata(path: Path) -> dict[str, Any]:
    """``metadata.json`` (``{NAME: {...}}``) if present; anything else is refused naming the file."""
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, RecursionError) as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise ValidationError(f"{path} is not valid JSON: {e}", record="metadata.json", field="metadata") from None
    if not isinstance(data, dict):
        raise ValidationError(f"{path} must be a JSON object {{image name: {{...}}}}, got {type(data).__name__}",
                              record="metadata.json", field="metadata")
    return data


def read_pennfudan(root: str | Path, check_images: bool = True,
                   progress: Progress | None = None) -> tuple[pa.Table, pa.Table]:
    """The items and annotation tables of a PennFudan-layout folder."""
    root = need_dir(root, "PennFudan")
    img_dir = need_dir(root / "PNGImages", "PennFudan PNGImages")
    names = sorted(p.stem for p in img_dir.glob("*.png"))
    if not names:
        raise ValidationError(f"no .png images in {img_dir}", field="PNGImages")
    added = _added(root)
    meta_file = root / "metadata.json"
    item_meta = _item_metadata(meta_file)
    with ThreadPoolExecutor(max_workers=4) as pool:  # PNG decoding releases the GIL
        per = []
        for done, r in enumerate(pool.map(lambda n: _one(root, n), names), 1):
            per.append(r)
            if progress is not None:
                progress(done, len(names))
    items = pa.table({
        "reference_id": pa.array(names, pa.string()),
        "image_location": pa.array([abs_path(img_dir / f"{n}.png") for n in names], pa.string()),
        "width": pa.array([None if check_images else (r["shape"][1] if r["shape"] else (r["size"] or (None,))[0])
                           for r in per], pa.int64()),
        "height": pa.array([None if check_images else (r["shape"][0] if r["shape"] else (r["size"] or (None, None))[1])
                            for r in per], pa.int64()),
        "metadata": json_text([item_meta.get(n) for n in names]),
    })
    rows = [(r, o) for r in per for o in r["rows"]]
    box = np.array([o["box"] for _, o in rows], dtype=np.float64).reshape(-1, 4)
    meta = []
    for r, o in rows:
        m: dict[str, Any] = {"txt_box": o["txt"], "pf_label": o["pf"]}
        if added:
            m["added"] = (r["name"], o["k"]) in added
        meta.append(m)
    anns = pa.table({
        "reference_id": pa.array([r["name"] for r, _ in rows], pa.string()),
        "annotation_id": pa.array([str(o["k"]) for _, o in rows], pa.string()),
        "kind": pa.array(["box"] * len(rows), pa.string()),
        "label": pa.array([label_of(o["pf"]) if o["pf"] else "pedestrian" for _, o in rows], pa.string()),
        "x": box[:, 0], "y": box[:, 1], "width": box[:, 2], "height": box[:, 3],
        "mask": pa.array([o["counts"] for _, o in rows], pa.list_(pa.uint32())),
        "mask_height": pa.array([r["shape"][0] if o["counts"] is not None else None for r, o in rows], pa.int64()),
        "mask_width": pa.array([r["shape"][1] if o["counts"] is not None else None for r, o in rows], pa.int64()),
        "area": pa.array([o["area"] for _, o in rows], pa.float64()),
        "metadata": json_text(meta),
    })
    return items, anns


def import_pennfudan(ws: "Workspace", root: str | Path, dataset: str, check_images: bool = True,
                     clip: bool | str = False, progress: Progress | None = None) -> ImportSummary:
    """Import a PennFudan-layout folder (the real dataset or the sample data) into ``dataset``."""
    items, anns = read_pennfudan(root, check_images=check_images, progress=progress)
    return write_import(ws, dataset, items, anns, check_images=check_images, clip=clip)
