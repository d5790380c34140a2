"""Writers for the PennFudan on-disk format (annotation text, instance mask, image).

Layout: ``PNGImages/NAME.png`` (RGB), ``PedMasks/NAME_mask.png`` (8-bit, 0 =
background, k = object k) and ``Annotation/NAME.txt`` in the PASCAL-v1 style text
used by PennFudan, with 1-based inclusive corner boxes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

DATASET_ROOT = "LoupeSynthPed"
DATABASE = "The Loupe Synthetic Pedestrian Database"
SUBDIRS = ("PNGImages", "PedMasks", "Annotation")


def annotation_text(name: str, width: int, height: int, objects: list[tuple[str, list[int]]]) -> str:
    """PennFudan annotation text.

    Args:
        name: image stem, e.g. ``SynthPed00001``.
        width, height: image size in pixels.
        objects: ``(label, [x, y, w, h])`` in mask-index order, 0-based pixel boxes;
            written as 1-based inclusive ``(x+1, y+1) - (x+w, y+h)``.
    """
    labels = " ".join(f'"{lab}"' for lab, _ in objects)
    lines = [
        "# Compatible with PASCAL Annotation Version 1.00",
        f'Image filename : "{DATASET_ROOT}/PNGImages/{name}.png"',
        f"Image size (X x Y x C) : {width} x {height} x 3",
        f'Database : "{DATABASE}"',
        f"Objects with ground truth : {len(objects)} {{ {labels + ' ' if labels else ''}}}",
        "# Note there may be some objects not included in the ground truth list for they are severe-occluded",
        "# or have very small size.",
        "# Top left pixel co-ordinates : (1, 1)",
    ]
    for k, (lab, (x, y, w, h)) in enumerate(objects, start=1):
        lines += [
            f'# Details for pedestrian {k} ("{lab}")',
            f'Original label for object {k} "{lab}" : "{DATASET_ROOT}"',
            f'Bounding box for object {k} "{lab}" (Xmin, Ymin) - (Xmax, Ymax) : '
            f"({x + 1}, {y + 1}) - ({x + w}, {y + h})",
            f'Pixel mask for object {k} "{lab}" : "{DATASET_ROOT}/PedMasks/{name}_mask.png"',
            "",
        ]
    return "\n".join(lines) + "\n"


def write_item(out_dir: Path, name: str, rgb: np.ndarray, mask: np.ndarray, text: str) -> None:
    """Write one image, its mask and its annotation text under ``out_dir``."""
    Image.fromarray(rgb).save(out_dir / "PNGImages" / f"{name}.png", compress_level=1)
    Image.fromarray(mask).save(out_dir / "PedMasks" / f"{name}_mask.png", compress_level=6)
    (out_dir / "Annotation" / f"{name}.txt").write_bytes(text.encode("ascii"))
