"""Image header reading: width/height from the file header with Pillow, without decoding pixels."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Sequence

REMOTE_PREFIXES = ("http://", "https://", "s3://", "gs://", "az://")


def is_remote(location: str) -> bool:
    return location.lower().startswith(REMOTE_PREFIXES)


def read_size(location: str) -> tuple[int, int] | str:
    """(width, height) from the image header, or an error message string."""
    from PIL import Image  # on first use: imports without image checks (`loupe eval`) never need Pillow

    p = Path(location)
    if not p.exists():
        return "image file not found"
    try:
        with Image.open(p) as im:
            return int(im.width), int(im.height)
    except Exception as e:  # noqa: BLE001 - any unreadable image is reported, not raised
        return f"unreadable image ({type(e).__name__}: {e})"


def read_sizes(
    locations: Sequence[str | None], progress: Callable[[int, int], None] | None = None
) -> list[tuple[int, int] | str | None]:
    """Headers of many local images (threads: the work is file I/O); None for remote/empty."""
    todo = [i for i, loc in enumerate(locations) if loc and not is_remote(loc)]
    out: list[tuple[int, int] | str | None] = [None] * len(locations)
    with ThreadPoolExecutor(max_workers=8) as pool:
        for done, (i, res) in enumerate(zip(todo, pool.map(lambda j: read_size(locations[j]), todo)), 1):
            out[i] = res
            if progress is not None and (done % 500 == 0 or done == len(todo)):
                progress(done, len(todo))
    return out
