"""64-bit perceptual hashes (DCT pHash, difference hash) for a batch of images, as ``uint64``.

Bit-for-bit the definitions of the ``imagehash`` package (the common reference, so stored hashes
compare with hashes users computed elsewhere): grayscale ("L"), Lanczos resize, then

* pHash: 32x32 pixels, 2-D DCT-II, the top-left 8x8 coefficients (DC included), bit = coefficient
  > their median;
* dHash: 9x8 pixels, bit = pixel > its left neighbour.

Bits are read row by row, the first is the most significant (``int(str(imagehash.phash(im)), 16)``).
Pillow only decodes and resizes each image; the DCT, medians and bit packing run once over the batch.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
from PIL import Image

HASH_SIZE = 8
PHASH_SIDE = HASH_SIZE * 4  # imagehash's highfreq_factor 4


def _dct_matrix(n: int) -> np.ndarray:
    """Unnormalised DCT-II as a matrix (scipy.fftpack.dct's default): y = M @ x."""
    k = np.arange(n)[:, None]
    i = np.arange(n)[None, :]
    return 2.0 * np.cos(np.pi * k * (2 * i + 1) / (2 * n))


_DCT = _dct_matrix(PHASH_SIDE)[:HASH_SIZE]  # only the 8 lowest frequencies are kept


def _gray(images: Sequence[Image.Image], size: tuple[int, int]) -> np.ndarray:
    """(N, h, w) float64 grayscale pixels, each image resized to ``size`` = (w, h) with Lanczos."""
    out = np.empty((len(images), size[1], size[0]), np.float64)
    for i, im in enumerate(images):
        out[i] = np.asarray(im.convert("L").resize(size, Image.Resampling.LANCZOS), np.float64)
    return out


def pack_bits(bits: np.ndarray) -> np.ndarray:
    """(N, 64) booleans, first bit most significant -> uint64[N]."""
    packed = np.packbits(np.asarray(bits, bool).reshape(len(bits), 64), axis=1)
    return packed.view(">u8").reshape(-1).astype(np.uint64)


def phash_pixels(pixels: np.ndarray) -> np.ndarray:
    """pHash of (N, 32, 32) grayscale pixels -> uint64[N]."""
    low = np.einsum("ki,nij,lj->nkl", _DCT, pixels, _DCT, optimize=True).reshape(len(pixels), -1)
    return pack_bits(low > np.median(low, axis=1, keepdims=True))


def dhash_pixels(pixels: np.ndarray) -> np.ndarray:
    """dHash of (N, 8, 9) grayscale pixels -> uint64[N]."""
    return pack_bits(pixels[:, :, 1:] > pixels[:, :, :-1])


def phash(images: Sequence[Image.Image]) -> np.ndarray:
    """64-bit DCT perceptual hash of each image (uint64[N])."""
    return phash_pixels(_gray(images, (PHASH_SIDE, PHASH_SIDE)))


def dhash(images: Sequence[Image.Image]) -> np.ndarray:
    """64-bit horizontal difference hash of each image (uint64[N])."""
    return dhash_pixels(_gray(images, (HASH_SIZE + 1, HASH_SIZE)))


def hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Bitwise Hamming distance between uint64 hashes (broadcasting)."""
    x = np.bitwise_xor(np.asarray(a, np.uint64), np.asarray(b, np.uint64))
    return np.unpackbits(x[..., None].view(np.uint8), axis=-1).sum(axis=-1)
