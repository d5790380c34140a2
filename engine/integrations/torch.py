"""PyTorch adapter: a dataset's items as a ``torch.utils.data.Dataset`` in torchvision's detection format,
and a detection model's outputs back into a run's predictions. Needs the ``torch`` extra; never torchvision.

The targets follow torchvision's detection models: ``boxes`` (float32 ``[N, 4]`` x1, y1, x2, y2 in pixels),
``labels`` (int64, 1..K; 0 is background), ``masks`` (uint8 ``[N, H, W]``, when the objects have masks),
``image_id``, ``area``, ``iscrowd``. Images are read from their locations when indexed (streamed), as float
``[3, H, W]`` in [0, 1].
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..errors import LoupeError, ValidationError

try:  # the base class when torch is installed (this module is imported only by the adapter's users)
    from torch.utils.data import Dataset as _Base
except ModuleNotFoundError:  # pragma: no cover - TorchDataset() then says to install the extra
    _Base = object

if TYPE_CHECKING:
    from ..api.dataset import Dataset


def _torch():
    try:
        import torch
    except ModuleNotFoundError:
        raise LoupeError("the PyTorch adapter needs torch: pip install 'loupe[torch]'") from None
    return torch


def default_label_map(ds: "Dataset") -> dict[str, int]:
    """Labels of the dataset's current boxes/masks/polygons, sorted, numbered from 1 (0 is background)."""
    labels = sorted(set(ds.annotations().column("label").to_pylist()) - {None})
    return {label: i + 1 for i, label in enumerate(labels)}


class TorchDataset(_Base):
    """``(image, target)`` per item, in the order of the dataset (or slice). See :meth:`Dataset.to_torch`."""

    def __init__(self, ds: "Dataset", slice: Any = None, transforms: Callable | None = None,
                 label_map: Mapping[str, int] | None = None, masks: bool | None = None):
        torch = _torch()
        self._torch = torch
        self.transforms = transforms
        items = ds.items() if slice is None else (ds.get_slice(slice) if isinstance(slice, str) else slice).items()
        self.items = items.select(["reference_id", "image_location", "width", "height"])
        self.reference_ids: list[str] = self.items.column("reference_id").to_pylist()
        self._locations: list[str] = self.items.column("image_location").to_pylist()
        self.label_map = dict(label_map) if label_map is not None else default_label_map(ds)
        ann = ds.annotations()
        ann = ann.filter(pc.is_in(ann["kind"], pa.array(["box", "polygon", "segmentation"])))
        pos = pc.index_in(ann["reference_id"], self.items["reference_id"])
        ann = ann.append_column("_item", pos).filter(pc.is_valid(pos))
        ann = ann.take(pc.sort_indices(ann, [("_item", "ascending")]))  # stable: keeps input order per item
        labels = ann.column("label").to_numpy(zero_copy_only=False)
        known = np.array([lab in self.label_map for lab in np.unique(labels)]) if len(labels) else np.array([], bool)
        if len(labels) and not known.all():
            missing = np.unique(labels)[~known][0]
            row = ann.filter(pc.equal(ann["label"], missing)).slice(0, 1).to_pylist()[0]
            raise ValidationError(f"label '{missing}' is not in label_map", record=f"reference_id "
                                  f"'{row['reference_id']}', annotation_id '{row['annotation_id']}'", field="label")
        uniq, inv = np.unique(labels, return_inverse=True)
        self._labels = np.array([self.label_map[u] for u in uniq], np.int64)[inv] if len(labels) else \
            np.zeros(0, np.int64)
        x = ann.column("x").to_numpy(zero_copy_only=False).astype(np.float32)
        y = ann.column("y").to_numpy(zero_copy_only=False).astype(np.float32)
        w = ann.column("width").to_numpy(zero_copy_only=False).astype(np.float32)
        h = ann.column("height").to_numpy(zero_copy_only=False).astype(np.float32)
        self._boxes = np.stack([x, y, x + w, y + h], axis=1) if len(x) else np.zeros((0, 4), np.float32)
        area = ann.column("area").to_numpy(zero_copy_only=False)
        self._area = np.where(np.isnan(area.astype(np.float64)), (w * h).astype(np.float64), area).astype(np.float32)
        self._crowd = ann.column("iscrowd").fill_null(False).to_numpy(zero_copy_only=False).astype(np.int64)
        self._mask = ann.column("mask")
        has_masks = self._mask.null_count < len(self._mask) if len(self._mask) else False
        self.masks = has_masks if masks is None else bool(masks)
        item = ann.column("_item").to_numpy(zero_copy_only=False)
        n = len(self.reference_ids)
        self._starts = np.searchsorted(item, np.arange(n), side="left")
        self._ends = np.searchsorted(item, np.arange(n), side="right")
        self._hw = (self.items.column("height").to_numpy(zero_copy_only=False),
                    self.items.column("width").to_numpy(zero_copy_only=False))

    def __len__(self) -> int:
        return len(self.reference_ids)

    def _image(self, i: int):
        from PIL import Image

        loc = self._locations[i]
        try:
            with Image.open(loc) as im:
                arr = np.asarray(im.convert("RGB"))
        except (OSError, ValueError) as e:
            raise LoupeError(f"cannot read the image of '{self.reference_ids[i]}' ({loc}): {e}") from None
        t = self._torch.from_numpy(arr.copy()).permute(2, 0, 1)
        return t.to(self._torch.float32).div_(255.0)

    def target(self, i: int) -> dict[str, Any]:
        """The target dict of item ``i`` (no image read)."""
        torch = self._torch
        s, e = int(self._starts[i]), int(self._ends[i])
        t: dict[str, Any] = {
            "boxes": torch.from_numpy(self._boxes[s:e].copy()).reshape(-1, 4),
            "labels": torch.from_numpy(self._labels[s:e].copy()),
            "image_id": i,
            "area": torch.from_numpy(self._area[s:e].copy()),
            "iscrowd": torch.from_numpy(self._crowd[s:e].copy()),
        }
        if self.masks:
            from udfs import rle

            hh, ww = int(self._hw[0][i]), int(self._hw[1][i])
            out = np.zeros((e - s, hh, ww), np.uint8)
            for k, counts in enumerate(self._mask.slice(s, e - s).to_pylist()):
                if counts is not None:
                    out[k] = rle.decode(np.asarray(counts, np.uint32), hh, ww)
                else:  # a box without a mask: its box region
                    x1, y1, x2, y2 = np.round(self._boxes[s + k]).astype(int)
                    out[k, max(y1, 0):y2, max(x1, 0):x2] = 1
            t["masks"] = torch.from_numpy(out)
        return t

    def __getitem__(self, i: int):
        if not 0 <= i < len(self):
            raise IndexError(i)
        image, target = self._image(i), self.target(i)
        if self.transforms is not None:
            image, target = self.transforms(image, target)
        return image, target


def collate(batch: Sequence[Any]) -> tuple:
    """``DataLoader(collate_fn=collate)``: images and targets as tuples (sizes differ between images)."""
    return tuple(zip(*batch))


def predictions_from_outputs(outputs: Sequence[Mapping[str, Any]], reference_ids: Sequence[str],
                             label_map: Mapping[str, int], score_threshold: float = 0.0) -> pa.Table:
    """Detection model outputs (per image ``boxes`` xyxy, ``scores``, ``labels``) → a predictions table for
    ``model.create_run``: reference_id, annotation_id (``<reference_id>:<k>``), kind, label, x, y, width,
    height, confidence. ``label_map`` is the one the training data used (label → index)."""
    if len(outputs) != len(reference_ids):
        raise ValidationError(f"{len(outputs)} outputs for {len(reference_ids)} reference ids",
                              record="outputs", field="reference_ids")
    names = {v: k for k, v in label_map.items()}
    boxes, scores, labels, refs, idx = [], [], [], [], []
    for n, (out, ref) in enumerate(zip(outputs, reference_ids)):
        b = np.asarray(out["boxes"].detach().cpu() if hasattr(out["boxes"], "detach") else out["boxes"],
                       np.float64).reshape(-1, 4)
        s = np.asarray(out["scores"].detach().cpu() if hasattr(out["scores"], "detach") else out["scores"],
                       np.float64).reshape(-1)
        lab = np.asarray(out["labels"].detach().cpu() if hasattr(out["labels"], "detach") else out["labels"],
                         np.int64).reshape(-1)
        if not (len(b) == len(s) == len(lab)):
            raise ValidationError("boxes, scores and labels differ in length", record=f"output {n} ('{ref}')",
                                  field="boxes")
        keep = s >= score_threshold
        boxes.append(b[keep])
        scores.append(s[keep])
        labels.append(lab[keep])
        refs.append(np.full(int(keep.sum()), ref, dtype=object))
        idx.append(np.arange(int(keep.sum())))
    b = np.concatenate(boxes) if boxes else np.zeros((0, 4))
    lab = np.concatenate(labels) if labels else np.zeros(0, np.int64)
    unknown = sorted(set(np.unique(lab).tolist()) - set(names))
    if unknown:
        raise ValidationError(f"label index {unknown[0]} is not in label_map", record="outputs", field="labels")
    ref = np.concatenate(refs) if refs else np.zeros(0, object)
    k = np.concatenate(idx) if idx else np.zeros(0, np.int64)
    return pa.table({
        "reference_id": pa.array(ref, pa.string()),
        "annotation_id": pc.binary_join_element_wise(pa.array(ref, pa.string()), pa.array(k.astype(str)), ":"),
        "kind": pa.array(["box"] * len(ref), pa.string()),
        "label": pa.array([names[i] for i in lab.tolist()], pa.string()),
        "x": b[:, 0], "y": b[:, 1], "width": b[:, 2] - b[:, 0], "height": b[:, 3] - b[:, 1],
        "confidence": np.concatenate(scores) if scores else np.zeros(0),
    })
