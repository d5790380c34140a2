"""YOLO txt: ``images/**`` + ``labels/**.txt`` (same relative paths), one ``cls cx cy w h`` line per box.

Coordinates are normalized by the image size, so every image header is read (Pillow, header only)
to turn them into 0-based pixel boxes: ``x = (cx - w/2) * W``, ``width = w * W``. Overshoots of the
image border below the 6-decimal rounding of the format (2e-6 of the size) are clamped; larger
ones follow the usual policy (error unless ``clip``). Class names come from ``classes.txt`` (one
per line) or the ``names`` of ``data.yaml`` (a list ``[a, b]``, ``- a`` lines or ``0: a`` lines,
parsed here without a YAML dependency); without either, the label is the class number.
``reference_id`` = the image path under ``images/`` without its suffix; ``annotation_id`` = the
1-based line number. Predictions: label files with a 6th column (confidence) in another folder
become a run.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np
import pyarrow as pa

from ..errors import LoupeError, ValidationError
from ..ingest.images import read_sizes
from ._common import ImportSummary, Progress, abs_path, need_dir, write_import

if TYPE_CHECKING:
    from ..api.workspace import Workspace

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif"}
_TOL = 2e-6
_NAME_FILES = ("classes.txt", "obj.names")


def _unquote(s: str) -> str:
    s = s.strip()
    if len(s) >= 2 and s[0] == s[-1] and s[0] in "'\"":
        return s[1:-1]
    return s


def parse_yaml_names(text: str) -> list[str] | None:
    """The ``names`` of a YOLO ``data.yaml`` (flow list, block list or index map); None if absent."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        m = re.match(r"^names\s*:\s*(.*)$", line)
        if not m:
            continue
        rest = m.group(1).split(" #", 1)[0].strip()
        if rest.startswith("["):
            flow = rest
            j = i + 1
            while "]" not in flow and j < len(lines):
                flow += " " + lines[j].strip()
                j += 1
            body = flow[1:flow.index("]")] if "]" in flow else flow[1:]
            return [_unquote(p) for p in re.findall(r"'[^']*'|\"[^\"]*\"|[^,]+", body) if p.strip()]
        if rest.startswith("{"):
            pairs = re.findall(r"(\d+)\s*:\s*('[^']*'|\"[^\"]*\"|[^,}]+)", rest)
            return [_unquote(v) for _, v in sorted(pairs, key=lambda kv: int(kv[0]))]
        out: dict[int, str] = {}
        seq: list[str] = []
        for ln in lines[i + 1:]:
            if not ln.strip() or ln.lstrip().startswith("#"):
                continue
            if not ln[:1].isspace() and not ln.startswith("-"):
                break
            s = ln.split(" #", 1)[0].strip()
            if s.startswith("-"):
                seq.append(_unquote(s[1:]))
            elif (kv := re.match(r"^(\d+)\s*:\s*(.*)$", s)):
                out[int(kv.group(1))] = _unquote(kv.group(2))
        return seq or [out[k] for k in sorted(out)] or None
    return None


def read_class_names(root: Path) -> list[str] | None:
    """Class names from ``classes.txt`` / ``obj.names`` or ``data.yaml`` / ``dataset.yaml`` in ``root``."""
    for name in _NAME_FILES:
        f = root / name
        if f.is_file():
            return [ln.strip() for ln in f.read_text().splitlines() if ln.strip()]
    for name in ("data.yaml", "dataset.yaml", "data.yml"):
        f = root / name
        if f.is_file():
            names = parse_yaml_names(f.read_text())
            if names:
                return names
    return None


def _parse_labels(path: Path, ref: str, with_conf: bool) -> np.ndarray:
    """Rows of one label file as ``[n, 6]`` floats (cls, cx, cy, w, h, conf-or-NaN)."""
    rows = []
    for ln_no, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        rec = f"reference_id '{ref}', annotation_id '{ln_no}'"
        want = 6 if with_conf else 5
        if len(parts) != want and not (not with_conf and len(parts) == 6):
            raise ValidationError(
                f"{path.name} line {ln_no}: expected {want} values (class cx cy w h{' conf' if with_conf else ''}), "
                f"got {len(parts)}", record=rec, field="line")
        try:
            vals = [float(p) for p in parts[:want]]
        except ValueError:
            raise ValidationError(f"{path.name} line {ln_no}: not a number in {line.strip()!r}",
                                  record=rec, field="line") from None
        if not float(vals[0]).is_integer() or not 0 <= vals[0] < 2**31:  # 1e30 would wrap in int64
            raise ValidationError(f"{path.name} line {ln_no}: class must be a non-negative integer below 2^31",
                                  record=rec, field="class")
        rows.append(vals + ([np.nan] if want == 5 else []) + [ln_no])
    return np.array(rows, dtype=np.float64).reshape(-1, 7)


def _clamped(start: np.ndarray, size: np.ndarray, limit: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Snap box sides that overshoot the image by less than the format's rounding onto its border."""
    under = (start < 0) & (start > -_TOL * limit)
    size = np.where(under, size + start, size)
    start = np.where(under, 0.0, start)
    end = start + size
    over = (end > limit) & (end < limit * (1 + _TOL))
    return start, np.where(over, limit - start, size)


def _boxes(ref_rows: list[tuple[str, np.ndarray]], sizes: dict[str, tuple[int, int]], names: Sequence[str] | None,
           kind_conf: bool) -> pa.Table:
    refs = [r for r, a in ref_rows for _ in range(len(a))]
    a = np.concatenate([a for _, a in ref_rows]) if ref_rows else np.zeros((0, 7))
    wh = np.array([sizes[r] for r in refs], dtype=np.float64).reshape(-1, 2)
    W, H = wh[:, 0], wh[:, 1]
    cls = a[:, 0].astype(np.int64)
    if names is not None and len(cls) and cls.max() >= len(names):
        i = int(np.argmax(cls >= len(names)))
        raise ValidationError(f"class {cls[i]} is not in the {len(names)} class names",
                              record=f"reference_id '{refs[i]}', annotation_id '{int(a[i, 6])}'", field="class")
    x, w = _clamped((a[:, 1] - a[:, 3] / 2) * W, a[:, 3] * W, W)
    y, h = _clamped((a[:, 2] - a[:, 4] / 2) * H, a[:, 4] * H, H)
    labels = [names[c] for c in cls] if names is not None else [str(c) for c in cls]
    cols = {
        "reference_id": pa.array(refs, pa.string()),
        "annotation_id": pa.array([str(int(v)) for v in a[:, 6]], pa.string()),
        "kind": pa.array(["box"] * len(refs), pa.string()),
        "label": pa.array(labels, pa.string()),
        "x": x, "y": y, "width": w, "height": h,
    }
    if kind_conf:
        cols["confidence"] = a[:, 5]
    return pa.table(cols)


def _images(images_dir: Path) -> list[Path]:
    return sorted(p for p in images_dir.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def read_yolo(root: str | Path, classes: Sequence[str] | None = None, images_dir: str | Path | None = None,
              labels_dir: str | Path | None = None, predictions: str | Path | None = None,
              progress: Progress | None = None) -> tuple[pa.Table, pa.Table, pa.Table | None]:
    """Items, ground-truth boxes and (with ``predictions``, a folder of 6-column files) predictions."""
    root = need_dir(root, "YOLO")
    idir = Path(images_dir) if images_dir else (root / "images" if (root / "images").is_dir() else root)
    ldir = Path(labels_dir) if labels_dir else (root / "labels" if (root / "labels").is_dir() else idir)
    need_dir(idir, "YOLO images")
    names = list(classes) if classes is not None else read_class_names(root)
    imgs = _images(idir)
    if not imgs:
        raise LoupeError(f"no images in {idir}")
    refs = [p.relative_to(idir).with_suffix("").as_posix() for p in imgs]
    heads = read_sizes([str(p) for p in imgs], progress)
    sizes = {}
    for ref, p, res in zip(refs, imgs, heads):
        if not isinstance(res, tuple):
            raise ValidationError(f"{res}: {p} (YOLO boxes are relative to the image size)",
                                  record=f"reference_id '{ref}'", field="image_location")
        sizes[ref] = res
    known = set(refs)
    gt = []
    for ref in refs:
        f = ldir / f"{ref}.txt"
        if f.is_file():
            gt.append((ref, _parse_labels(f, ref, with_conf=False)))
    orphans = [p for p in ldir.rglob("*.txt") if p.name not in _NAME_FILES
               and p.relative_to(ldir).with_suffix("").as_posix() not in known]
    if orphans:
        o = orphans[0].relative_to(ldir).with_suffix("").as_posix()
        raise ValidationError(f"label file {orphans[0]} has no image in {idir}", record=f"reference_id '{o}'",
                              field="image_location")
    items = pa.table({
        "reference_id": pa.array(refs, pa.string()),
        "image_location": pa.array([abs_path(p) for p in imgs], pa.string()),
        "width": pa.array([sizes[r][0] for r in refs], pa.int64()),
        "height": pa.array([sizes[r][1] for r in refs], pa.int64()),
    })
    anns = _boxes(gt, sizes, names, kind_conf=False)
    preds = None
    if predictions is not None:
        pdir = need_dir(predictions, "YOLO predictions")
        pr = []
        for f in sorted(pdir.rglob("*.txt")):
            ref = f.relative_to(pdir).with_suffix("").as_posix()
            if ref not in known:
                raise ValidationError(f"prediction file {f} has no image", record=f"reference_id '{ref}'",
                                      field="reference_id")
            pr.append((ref, _parse_labels(f, ref, with_conf=True)))
        preds = _boxes(pr, sizes, names, kind_conf=True)
    return items, anns, preds


def import_yolo(ws: "Workspace", root: str | Path, dataset: str, classes: Sequence[str] | None = None,
                images_dir: str | Path | None = None, labels_dir: str | Path | None = None,
                predictions: str | Path | None = None, run: str | None = None, model: str | None = None,
                clip: bool | str = False, progress: Progress | None = None) -> ImportSummary:
    """Import a YOLO folder into ``dataset``; ``predictions`` (6-column label files) becomes run ``run``."""
    items, anns, preds = read_yolo(root, classes, images_dir, labels_dir, predictions, progress)
    if preds is not None:
        run = run or Path(predictions).name  # type: ignore[arg-type]
    # headers were read above (every image opened), so append need not reopen them
    return write_import(ws, dataset, items, anns, check_images=False, clip=clip, predictions=preds, run=run,
                        model=model)
