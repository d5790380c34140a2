"""Append or update dataset items from an Arrow table, in one transaction.

Widths/heights not given are read from the image headers (Pillow, header only). A batch with any bad
row raises :class:`ValidationError` naming it, and writes nothing.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import pyarrow as pa

from engine.store import item_values
from ..errors import ValidationError
from engine.store.database import Store
from .checks import METADATA_RULE, Rule, blank, enforce
from .images import is_remote, read_sizes
from .schema import ITEM_COLUMNS, normalize, record_name

MAX_SIDE = 2**31 - 1  # items.width/height are INTEGER columns

ITEM_RULES = [
    Rule("reference_id", f"reference_id IS NULL OR {blank('reference_id')}", "reference_id is missing or empty"),
    Rule("reference_id", "count(*) OVER (PARTITION BY reference_id) > 1", "duplicate reference_id in batch",
         clean_if="count(reference_id) = count(DISTINCT reference_id) AND count(*) - count(reference_id) <= 1"),
    Rule("width", f"width IS NOT NULL AND (width <= 0 OR width > {MAX_SIDE})", "width must be a positive integer below 2^31"),
    Rule("height", f"height IS NOT NULL AND (height <= 0 OR height > {MAX_SIDE})",
         "height must be a positive integer below 2^31"),
    METADATA_RULE,
]


def append_items(
    store: Store,
    dataset_id: int,
    table: pa.Table,
    update: bool = False,
    check_images: bool = True,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, int]:
    """Write items; existing reference_ids are skipped unless ``update`` replaces them.

    Returns:
        counts ``{"new": n, "updated": n, "ignored": n}``.
    """
    t = normalize(table, ITEM_COLUMNS, "items")
    t = _fill_sizes(t, check_images, progress)
    t = t.append_column("__row", pa.array(np.arange(t.num_rows, dtype=np.int64)))
    con = store.con
    view = f"__items_batch_{id(t)}"
    con.register(view, t)
    try:
        enforce(con, view, ITEM_RULES)
        with store.transaction():
            exists = (
                "EXISTS (SELECT 1 FROM items i WHERE i.dataset_id = $ds AND i.reference_id = b.reference_id)"
            )
            n_existing = con.execute(f"SELECT count(*) FROM {view} b WHERE {exists}", {"ds": dataset_id}).fetchone()[0]
            updated = 0
            if update and n_existing:
                con.execute(
                    f"""UPDATE items SET image_location = b.image_location,
                           width = coalesce(b.width, items.width), height = coalesce(b.height, items.height),
                           metadata = b.metadata::JSON
                        FROM {view} b WHERE items.dataset_id = $ds AND items.reference_id = b.reference_id""",
                    {"ds": dataset_id},
                )
                updated = n_existing
            first = store.next_key("items", "item_id")
            con.execute(
                f"""INSERT INTO items
                    SELECT $first + row_number() OVER (ORDER BY __row) - 1, $ds, reference_id, image_location,
                           width, height, metadata::JSON
                    FROM {view} b WHERE NOT {exists}""",
                {"ds": dataset_id, "first": first},
            )
            item_values.refresh(store, dataset_id, f"SELECT reference_id FROM {view}")
            new = t.num_rows - n_existing
    finally:
        con.unregister(view)
    return {"new": int(new), "updated": int(updated), "ignored": int(n_existing - updated)}


def _fill_sizes(t: pa.Table, check_images: bool, progress) -> pa.Table:
    """Read sizes from headers where missing; with ``check_images`` every local image must open."""
    if not check_images and t.column("width").null_count == 0 and t.column("height").null_count == 0:
        return t  # nothing to read
    locs = t.column("image_location").to_pylist()
    widths = t.column("width").to_pylist()
    heights = t.column("height").to_pylist()
    refs = t.column("reference_id").to_pylist()
    need = [
        loc if loc and not is_remote(loc) and (check_images or widths[i] is None or heights[i] is None) else None
        for i, loc in enumerate(locs)
    ]
    if not any(need):
        return t
    sizes = read_sizes(need, progress)
    for i, res in enumerate(sizes):
        if res is None:
            continue
        if isinstance(res, str):
            if check_images:
                raise ValidationError(
                    f"{res}: {locs[i]} (pass check_images=False to skip this check)",
                    record=record_name(refs[i], i), field="image_location",
                )
            continue
        if widths[i] is None:
            widths[i] = res[0]
        if heights[i] is None:
            heights[i] = res[1]
    t = t.set_column(t.schema.get_field_index("width"), "width", pa.array(widths, pa.int64()))
    return t.set_column(t.schema.get_field_index("height"), "height", pa.array(heights, pa.int64()))
