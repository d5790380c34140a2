"""Split an evaluation into chunks of whole images so no step holds every candidate pair at once.

Matching is independent per image, so pairs can be found, matched and reduced to per-object
results one chunk at a time. A chunk is a contiguous range of the dense image index holding
about ``max_dets`` detections (an image is never split); inputs with at most ``max_dets``
detections are a single chunk, evaluated exactly as before.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from udfs.matching import stable_order

from .inputs import EvalInputs

CHUNK_DETECTIONS = 1_000_000  # detections per chunk (default)


@dataclass(frozen=True)
class Chunk:
    """Ascending global indices of a chunk's detections and GT; None = everything (one chunk)."""

    dt: np.ndarray | None
    gt: np.ndarray | None

    def inputs(self, inp: EvalInputs) -> EvalInputs:
        return inp if self.dt is None else inp.take(self.dt, self.gt)


def image_bounds(dt_img: np.ndarray, n_images: int, max_dets: int) -> np.ndarray:
    """Start image of each chunk plus ``n_images``: an image goes to chunk ``dets before it // max_dets``."""
    counts = np.bincount(dt_img, minlength=n_images)[:n_images]
    before = np.cumsum(counts) - counts
    chunk = before // max(int(max_dets), 1)
    starts = np.flatnonzero(np.r_[True, chunk[1:] != chunk[:-1]]) if n_images else np.zeros(1, np.int64)
    return np.r_[starts, n_images].astype(np.int64)


def plan_chunks(inp: EvalInputs, max_dets: int | None = None) -> list[Chunk]:
    """Chunks of whole images with about ``max_dets`` detections each (default CHUNK_DETECTIONS)."""
    max_dets = CHUNK_DETECTIONS if max_dets is None else int(max_dets)
    if max_dets < 1:
        raise ValueError(f"chunk size must be >= 1 detection, got {max_dets}")
    if len(inp.dt) <= max_dets:
        return [Chunk(None, None)]
    bounds = image_bounds(inp.dt.img, inp.n_images, max_dets)
    if len(bounds) <= 2:
        return [Chunk(None, None)]
    return [Chunk(d, g) for d, g in zip(_split(inp.dt.img, bounds, inp.n_images),
                                        _split(inp.gt.img, bounds, inp.n_images))]


def _split(img: np.ndarray, bounds: np.ndarray, n_images: int) -> list[np.ndarray]:
    """Per chunk, the ascending indices of the objects whose image lies in [bounds[i], bounds[i+1])."""
    order = stable_order((img, max(n_images, 1)))  # by image, index order inside
    cuts = np.searchsorted(img[order], bounds)
    return [np.sort(order[a:b]) for a, b in zip(cuts[:-1], cuts[1:])]
