"""Embedders: a batch of PIL images -> one vector (or 64-bit hash) per image.

Built-ins work offline: ``"phash"`` / ``"dhash"`` (Pillow + numpy, :mod:`.hashes`) and
``"efficientnet-lite0"`` (ImageNet features through onnxruntime, :mod:`.efficientnet`; extra ``embed``).
Any callable ``images -> float32[N, d]`` plugs in through :func:`resolve_embedder`, which checks what
it returns so a bad batch is refused before anything is stored.
"""
from __future__ import annotations

from typing import Callable, Protocol, Sequence, runtime_checkable

import numpy as np
from PIL import Image

from engine.errors import LoupeError

from . import hashes

ImageBatchFn = Callable[[list[Image.Image]], np.ndarray]


@runtime_checkable
class Embedder(Protocol):
    """What ``compute_embeddings`` runs: ``name`` is stored as the set's model name; ``kind`` is
    ``"vector"`` (float32[N, dim] -> ``FLOAT[dim]``) or ``"hash"`` (uint64[N] -> ``UBIGINT``)."""

    name: str
    dim: int
    kind: str

    def __call__(self, images: list[Image.Image]) -> np.ndarray: ...


class HashEmbedder:
    """A 64-bit perceptual hash (``phash`` or ``dhash``) as an embedder of kind ``"hash"``."""

    kind = "hash"
    dim = 64

    def __init__(self, name: str, fn: Callable[[Sequence[Image.Image]], np.ndarray]):
        self.name = name
        self._fn = fn

    def __call__(self, images: list[Image.Image]) -> np.ndarray:
        return self._fn(images)

    def __repr__(self) -> str:
        return f"HashEmbedder({self.name!r})"


class CallableEmbedder:
    """A user function ``images -> float32[N, d]``; ``dim`` is read from the first batch and every
    later batch must match it. Output that is not a finite (N, d) array is a :class:`LoupeError`."""

    kind = "vector"

    def __init__(self, fn: ImageBatchFn, name: str | None = None):
        self._fn = fn
        fname = getattr(fn, "__name__", None)
        self.name = name or (fname if fname and fname.isidentifier() else "custom")
        self.dim: int | None = None

    def __call__(self, images: list[Image.Image]) -> np.ndarray:
        out = self._fn(images)
        try:
            arr = np.asarray(out)
        except (TypeError, ValueError) as e:
            raise LoupeError(f"embedder '{self.name}' returned {type(out).__name__}, not an array: {e}") from None
        if arr.ndim != 2 or arr.shape[0] != len(images):
            raise LoupeError(f"embedder '{self.name}' returned shape {arr.shape} for {len(images)} images; "
                             f"expected ({len(images)}, d)")
        if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
            raise LoupeError(f"embedder '{self.name}' returned dtype {arr.dtype}; expected float32")
        arr = arr.astype(np.float32, copy=False)
        bad = ~np.isfinite(arr).all(axis=1)
        if bad.any():
            raise LoupeError(f"embedder '{self.name}' returned NaN or inf for image {int(np.argmax(bad))} of the batch")
        if arr.shape[1] == 0:
            raise LoupeError(f"embedder '{self.name}' returned 0-dimensional vectors")
        if self.dim is None:
            self.dim = int(arr.shape[1])
        elif arr.shape[1] != self.dim:
            raise LoupeError(f"embedder '{self.name}' returned dimension {arr.shape[1]}; earlier batches had {self.dim}")
        return arr

    def __repr__(self) -> str:
        return f"CallableEmbedder({self.name!r}, dim={self.dim})"


def _efficientnet() -> Embedder:
    from .efficientnet import EfficientNetLite0

    return EfficientNetLite0()


BUILTINS: dict[str, Callable[[], Embedder]] = {
    "phash": lambda: HashEmbedder("phash", hashes.phash),
    "dhash": lambda: HashEmbedder("dhash", hashes.dhash),
    "efficientnet-lite0": _efficientnet,
}


def resolve_embedder(model: str | ImageBatchFn | Embedder) -> Embedder:
    """The embedder a ``model`` argument names.

    A str names a built-in (``"phash"``, ``"dhash"``, ``"efficientnet-lite0"``); an object that already
    has ``name``/``dim``/``kind`` is used as is; any other callable is wrapped in a
    :class:`CallableEmbedder`. An unknown name, or a built-in whose optional extra is missing, raises
    :class:`LoupeError` (naming the extra to install).
    """
    if isinstance(model, str):
        make = BUILTINS.get(model.strip().lower())
        if make is None:
            raise LoupeError(f"unknown embedder '{model}'; built-ins: {', '.join(BUILTINS)}, "
                             "or pass a function images -> float32[N, d]")
        return make()
    if all(hasattr(model, a) for a in ("name", "dim", "kind")) and callable(model):
        if model.kind not in ("vector", "hash"):
            raise LoupeError(f"embedder '{model.name}' has kind {model.kind!r}; expected 'vector' or 'hash'")
        return model  # type: ignore[return-value]
    if callable(model):
        return CallableEmbedder(model)
    raise LoupeError(f"model must be a built-in embedder name or a function images -> float32[N, d], "
                     f"not {type(model).__name__}")
