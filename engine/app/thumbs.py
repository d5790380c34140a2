"""Thumbnails for the grid: made once per item with Pillow, cached as small JPEG files on disk.

The cache key is the dataset id and a hash of the reference id (never a client-given path), so a
cached thumbnail is served by one ``stat`` + ``read`` without touching the database.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

THUMB_SIZE = 256  # longest side, pixels
IMAGE_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".bmp": "image/bmp",
               ".gif": "image/gif", ".webp": "image/webp", ".tif": "image/tiff", ".tiff": "image/tiff"}


def cache_dir_for(db_path: str | None) -> Path:
    """``<workspace>.thumbs/`` beside a workspace file; a temporary folder for an in-memory one."""
    if db_path:
        return Path(str(db_path) + ".thumbs")
    return Path(tempfile.mkdtemp(prefix="loupe-thumbs-"))


def thumb_path(cache_dir: Path, dataset_id: int, reference_id: str) -> Path:
    h = hashlib.sha1(reference_id.encode("utf-8")).hexdigest()
    return cache_dir / str(int(dataset_id)) / h[:2] / f"{h}.jpg"


def safe_image_path(location: str | None) -> Path | None:
    """The registered image as a local file, or None when it must not be served.

    Refused: URLs, relative paths and ``..`` segments, missing files, non-image suffixes, and symlinks whose target leaves the folder
    the workspace registered (a link planted next to the images cannot expose /etc/passwd).
    """
    if not location or "://" in location or "\x00" in location:
        return None
    p = Path(location)
    if not p.is_absolute() or ".." in p.parts or p.suffix.lower() not in IMAGE_TYPES:
        return None
    try:
        real = p.resolve(strict=True)
        folder = p.parent.resolve(strict=True)
    except (OSError, RuntimeError):
        return None
    if real.parent != folder and folder not in real.parents:
        return None
    if real.suffix.lower() not in IMAGE_TYPES or not real.is_file():
        return None
    return real


def make_thumb(src: Path, dest: Path) -> bytes:
    """Write the thumbnail of ``src`` to ``dest`` atomically and return its bytes."""
    from io import BytesIO

    from PIL import Image

    with Image.open(src) as im:
        im.draft("RGB", (THUMB_SIZE, THUMB_SIZE))  # JPEG: decode at reduced scale
        im = im.convert("RGB")
        im.thumbnail((THUMB_SIZE, THUMB_SIZE))
        buf = BytesIO()
        im.save(buf, "JPEG", quality=82)
    data = buf.getvalue()
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, dest)
    return data
