"""COCO segmentation objects -> RLE counts, plus a facade over rle/polygons.

``rle_from_coco`` reproduces pycocotools ``COCO.annToRLE``: polygon lists are
rasterized and merged, uncompressed RLE dicts go through frUncompressedRLE
(compress + decompress round trip) and compressed strings are decoded.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from udfs.polygons import (
    bbox_to_rle,
    bboxes_to_rle_flat,
    polygon_area,
    polygon_to_rle,
    polygons_to_rle_many,
    validate_polygon,
    validate_polygons,
)
from udfs.rle import (
    area,
    area_flat,
    as_counts,
    compress,
    compress_many,
    decode,
    decompress,
    decompress_many,
    encode,
    encode_many,
    from_flat,
    iou,
    iou_pairs,
    iou_pairs_flat,
    merge,
    merge_groups_flat,
    to_bbox,
    to_bbox_flat,
    to_flat,
    validate_rle,
)

__all__ = [
    "area", "area_flat", "as_counts", "bbox_to_rle", "bboxes_to_rle_flat", "compress",
    "compress_many", "decode", "decompress", "decompress_many", "encode", "encode_many",
    "from_flat", "iou", "iou_pairs", "iou_pairs_flat", "merge", "merge_groups_flat", "polygon_area",
    "polygon_to_rle", "polygons_to_rle_many", "rle_from_coco", "rles_from_coco_many",
    "to_bbox", "to_bbox_flat", "to_flat", "validate_polygon", "validate_polygons",
    "validate_rle",
]

Segmentation = Sequence[Sequence[float]] | Mapping[str, Any]


def _check_size(segm: Mapping[str, Any], h: int | None, w: int | None) -> tuple[int, int]:
    size = segm.get("size")
    if size is None or len(size) != 2:
        raise ValueError("RLE segmentation needs 'size': [h, w]")
    sh, sw = int(size[0]), int(size[1])
    if h is not None and w is not None and (sh, sw) != (int(h), int(w)):
        raise ValueError(f"RLE size {[sh, sw]} does not match the image size {[int(h), int(w)]}")
    return sh, sw


def rle_from_coco(
    segm: Segmentation, h: int | None = None, w: int | None = None, validate: bool = True
) -> np.ndarray:
    """Counts of a COCO ``segmentation`` value, exactly as pycocotools annToRLE.

    Args:
        segm: polygon list, ``{"counts": [...], "size": [h, w]}`` or
            ``{"counts": "compressed", "size": [h, w]}``.
        h, w: image size (required for polygons; checked against RLE ``size``).
        validate: reject malformed polygons and counts not summing to h*w.
    """
    if isinstance(segm, Mapping):
        if "counts" not in segm:
            raise ValueError("RLE segmentation needs 'counts'")
        sh, sw = _check_size(segm, h, w)
        counts = segm["counts"]
        if isinstance(counts, (str, bytes)):
            out = decompress(counts)
        else:
            # frUncompressedRLE stores the compressed string, read back later
            out = decompress(compress(as_counts(np.asarray(counts).reshape(-1))))
        return validate_rle(out, sh, sw) if validate else out
    if isinstance(segm, (list, tuple)):
        if h is None or w is None:
            raise ValueError("polygon segmentations need the image h and w")
        return polygon_to_rle(segm, h, w, validate=validate)
    raise ValueError(f"unsupported segmentation type {type(segm).__name__}")


def rles_from_coco_many(
    segms: Sequence[Segmentation],
    h: int | Sequence[int] | np.ndarray,
    w: int | Sequence[int] | np.ndarray,
    validate: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Flat ``(values, offsets)`` counts for many segmentations (polygons batched)."""
    n = len(segms)
    hh = np.broadcast_to(np.asarray(h, dtype=np.int64), (n,))
    ww = np.broadcast_to(np.asarray(w, dtype=np.int64), (n,))
    is_poly = np.array([isinstance(s, (list, tuple)) for s in segms], dtype=bool)
    out: list[np.ndarray | None] = [None] * n
    pi = np.nonzero(is_poly)[0]
    if pi.size:
        pv, po = polygons_to_rle_many([segms[i] for i in pi], hh[pi], ww[pi], validate)
        for j, i in enumerate(pi):
            out[i] = pv[po[j] : po[j + 1]]
    for i in np.nonzero(~is_poly)[0]:
        try:
            out[i] = rle_from_coco(segms[i], int(hh[i]), int(ww[i]), validate)
        except ValueError as exc:
            raise ValueError(f"segmentation {i}: {exc}") from exc
    return to_flat(out)
