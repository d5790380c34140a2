"""Evaluation inputs, gathered in SQL: GT and detections as numpy arrays, candidate pairs with IoU.

Images are ordered by ``item_id`` (insertion order; COCO imports insert by ascending image id, so
this is pycocotools' sorted ``imgIds``), GT and detections by ``seq`` (input order), categories as
pycocotools orders them: by COCO category id where the dataset was imported from COCO (its
``coco.categories`` metadata), then any other label by name. The order fixes the summation order of the
means (bit-identical stats) and, class-agnostic, how tied scores in an image are ordered. Candidate pairs are found by a hash join on (item, category) with a box-overlap filter;
their IoU is the ``box_iou`` macro (bit-identical to pycocotools) or, for masks, ``udfs.rle``.
"""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from udfs.iou import box_iou_indexed

from ..api.dataset import label_state
from ..errors import LoupeError
from engine.store.database import Store, to_arrow

GEOMETRY_KINDS = ("box", "polygon", "segmentation")


@dataclass(frozen=True)
class Side:
    """One side (GT or detections) as aligned arrays; ``key`` is ann_key / pred_key."""

    key: np.ndarray
    item_id: np.ndarray
    img: np.ndarray
    cat: np.ndarray
    label: np.ndarray  # object array of label strings
    x: np.ndarray
    y: np.ndarray
    w: np.ndarray
    h: np.ndarray
    area: np.ndarray
    crowd: np.ndarray  # GT only (all False for detections)
    score: np.ndarray  # detections only (NaN for GT)
    cat_rank: np.ndarray  # index of the label in category order (= cat unless class-agnostic)

    def __len__(self) -> int:
        return len(self.key)

    def take(self, idx: np.ndarray) -> "Side":
        """The rows at ``idx`` (e.g. one chunk of images)."""
        return Side(**{f: getattr(self, f)[idx] for f in self.__dataclass_fields__})


@dataclass(frozen=True)
class Pairs:
    dt: np.ndarray
    gt: np.ndarray
    iou: np.ndarray
    same: np.ndarray | None = None  # pairs of any category: True where both have the same ``cat`` (if known)


@dataclass(frozen=True)
class EvalInputs:
    labels: list[str]
    n_images: int
    gt: Side
    dt: Side
    gt_ann_id0: np.ndarray  # 0 where annotation_id is "0" (pycocotools treats GT id 0 as unmatched), else 1
    categories: list[str]  # every label in category order (``cat_rank`` indexes it)
    class_agnostic: bool = False  # labels == ["*"]; ties are still ordered by ``cat_rank``

    def take(self, dt_idx: np.ndarray, gt_idx: np.ndarray) -> "EvalInputs":
        """The same evaluation restricted to some detections and GT (image indexing unchanged)."""
        return EvalInputs(self.labels, self.n_images, self.gt.take(gt_idx), self.dt.take(dt_idx),
                          self.gt_ann_id0[gt_idx], self.categories, self.class_agnostic)


def _subset_clause(alias: str, item_ids: np.ndarray | None) -> str:
    return "" if item_ids is None else f" AND {alias}.item_id IN (SELECT item_id FROM __eval_subset)"


def gather(
    store: Store,
    dataset_id: int,
    run_id: int | None,
    label_version: int | None = None,
    item_ids: Sequence[int] | None = None,
    class_agnostic: bool = False,
    keypoints: bool = False,
    predictions: pa.Table | None = None,
) -> EvalInputs:
    """GT (at a label version) and a run's detections, restricted to ``item_ids`` if given.

    ``keypoints``: the objects that carry keypoints (whatever their kind) instead of the geometries.
    ``predictions``: detections that were validated but not stored
    (:func:`engine.ingest.annotations.validate_predictions`) instead of run ``run_id``'s; boxes only.
    """
    if predictions is not None and (keypoints or item_ids is not None):
        raise LoupeError("unstored predictions are evaluated as boxes, on every item")
    con = store.con
    subset = None if item_ids is None else np.asarray(item_ids, dtype=np.int64)
    if subset is not None:
        con.register("__eval_subset", pa.table({"item_id": subset}))
    try:
        kinds = ", ".join(f"'{k}'" for k in GEOMETRY_KINDS)
        g_obj = "a.keypoints IS NOT NULL" if keypoints else f"a.kind IN ({kinds}) AND a.x IS NOT NULL"
        d_obj = "p.keypoints IS NOT NULL" if keypoints else f"p.kind IN ({kinds}) AND p.x IS NOT NULL"
        gt = store.arrow(
            f"""SELECT a.ann_key AS key, a.item_id, (a.annotation_id <> '0')::INT AS id_nonzero, a.label, a.x, a.y, a.width AS w, a.height AS h,
                       a.area, a.iscrowd AS crowd, a.seq
                FROM annotations a WHERE a.dataset_id = $ds AND {label_state(label_version)}
                  AND {g_obj} {_subset_clause('a', subset)}""", {"ds": dataset_id})
        dt = _unstored(predictions) if predictions is not None else store.arrow(
            f"""SELECT p.pred_key AS key, p.item_id, p.label, p.x, p.y, p.width AS w, p.height AS h,
                       p.area, coalesce(p.confidence, 1.0) AS score, p.seq
                FROM predictions p WHERE p.run_id = $run AND {d_obj}
                {_subset_clause('p', subset)}""", {"run": run_id})
        images = _np(store.arrow(
            f"SELECT item_id FROM items i WHERE dataset_id = $ds {_subset_clause('i', subset)} ORDER BY item_id",
            {"ds": dataset_id}).column("item_id"), np.int64)
    finally:
        if subset is not None:
            con.unregister("__eval_subset")
    gt, dt = _by_seq(gt), _by_seq(dt)
    # labels: dictionary-encoded in Arrow (no Python string per object), in pycocotools' category order
    g_codes, g_dict = _encode(gt.column("label"))
    d_codes, d_dict = _encode(dt.column("label"))
    categories = category_order(store, dataset_id, set(g_dict.tolist()) | set(d_dict.tolist()))
    rank_idx = {lab: i for i, lab in enumerate(categories)}
    if class_agnostic:
        lab_idx = {lab: 0 for lab in categories}
        labels = ["*"]
    else:
        lab_idx, labels = rank_idx, categories

    def side(t: pa.Table, codes: np.ndarray, names: np.ndarray, is_gt: bool) -> Side:
        n = t.num_rows
        item = _np(t.column("item_id"), np.int64)
        to_idx = np.asarray([lab_idx[v] for v in names.tolist()], dtype=np.int64)
        to_rank = np.asarray([rank_idx[v] for v in names.tolist()], dtype=np.int64)
        cat = to_idx[codes] if n else np.zeros(0, np.int64)
        return Side(
            key=_np(t.column("key"), np.int64),
            item_id=item,
            img=_image_index(images, item),
            cat=cat,
            label=names[codes] if n else np.zeros(0, object),
            x=_np(t.column("x")), y=_np(t.column("y")), w=_np(t.column("w")), h=_np(t.column("h")),
            area=_area_of(t),
            crowd=_np(t.column("crowd"), bool) if is_gt else np.zeros(n, bool),
            score=_np(t.column("score")) if not is_gt else np.full(n, np.nan),
            # one array for both when they agree (not class-agnostic): neither is ever written to
            cat_rank=cat if not class_agnostic else (to_rank[codes] if n else np.zeros(0, np.int64)),
        )

    return EvalInputs(labels=labels, n_images=len(images), gt=side(gt, g_codes, g_dict, True),
                      dt=side(dt, d_codes, d_dict, False),
                      gt_ann_id0=_np(gt.column("id_nonzero"), np.int64), categories=categories,
                      class_agnostic=class_agnostic)


def _by_seq(t: pa.Table) -> pa.Table:
    """Rows in ``seq`` (input) order. The queries above leave out ``ORDER BY seq`` (a sort of every row, a
    quarter of reading 500k detections): DuckDB returns a table's rows in insertion order, which is seq
    order for rows written by one import; checked here, and sorted when it is not."""
    if "seq" not in t.column_names:  # unstored predictions come in input order
        return t
    if not _ascending(t.column("seq")):
        seq = _np(t.column("seq"), np.int64)
        t = t.take(pa.array(np.argsort(seq, kind="stable")))
    return t.drop_columns(["seq"])


def _ascending(col: pa.ChunkedArray) -> bool:
    """Whether an int column without nulls strictly ascends, read chunk by chunk (no combined copy)."""
    last = None
    for chunk in col.chunks:
        if len(chunk) == 0:
            continue
        v = chunk.to_numpy(zero_copy_only=False)
        if (last is not None and v[0] <= last) or not (v[1:] > v[:-1]).all():
            return False
        last = v[-1]
    return True


def _image_index(images: np.ndarray, item: np.ndarray) -> np.ndarray:
    """``np.searchsorted(images, item)`` (``images`` ascending): a subtraction when the item ids are one
    consecutive range and every ``item`` lies in it (an import's items), else the binary search."""
    if len(images) and len(item) and images[-1] - images[0] == len(images) - 1:
        lo, hi = int(images[0]), int(images[-1])
        if lo <= int(item.min()) and int(item.max()) <= hi:
            return item - lo
    return np.searchsorted(images, item).astype(np.int64, copy=False)


def _unstored(t: pa.Table) -> pa.Table:
    """The detection columns of validated, unstored predictions, as the stored run's query selects them."""
    keep = pc.and_(pc.is_in(t.column("kind"), pa.array(GEOMETRY_KINDS)), pc.is_valid(t.column("x")))
    t = t.filter(keep) if not pc.all(keep).as_py() else t
    score = pc.coalesce(t.column("confidence"), pa.scalar(1.0))
    return t.select(["key", "item_id", "label", "x", "y", "w", "h", "area"]).append_column("score", score)


def category_order(store: Store, dataset_id: int, labels: set[str]) -> list[str]:
    """``labels`` in pycocotools' category order: by COCO category id where the dataset has one (imported
    from COCO), then the others by name."""
    raw = store.scalar("SELECT (metadata -> '$.coco.categories')::VARCHAR FROM datasets WHERE dataset_id = ?",
                       [dataset_id])
    try:
        cats = json.loads(raw) if raw else None
    except ValueError:
        cats = None
    return order_categories(labels, cats)


def order_categories(labels: Iterable[str], coco_categories: Any) -> list[str]:
    """The category-order rule alone (also used by the Spark commit): labels with a COCO category id (from
    the dataset's ``coco.categories`` metadata) by id, then the others by name."""
    ids: dict[str, int] = {}
    try:
        for c in coco_categories or []:
            ids.setdefault(str(c["name"]).strip(), int(c["id"]))
    except (TypeError, KeyError, ValueError):  # metadata edited by hand: fall back to names
        ids = {}
    return sorted(labels, key=lambda lab: (0, ids[lab], lab) if lab in ids else (1, 0, lab))


def _label_index(lab: np.ndarray, lab_idx: dict[str, int]) -> np.ndarray:
    """Category index of each label (vectorized through Arrow's hash lookup)."""
    if len(lab) == 0:
        return np.zeros(0, np.int64)
    keys = list(lab_idx)
    pos = pc.index_in(pa.array(lab, pa.string()), value_set=pa.array(keys, pa.string()))
    codes = np.asarray([lab_idx[k] for k in keys], dtype=np.int64)
    return codes[np.asarray(pos, dtype=np.int64)]


def _np(col: pa.ChunkedArray, dtype: type = np.float64) -> np.ndarray:
    """A column as numpy; float nulls become NaN."""
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    if dtype is np.float64:
        return np.asarray(arr.to_numpy(zero_copy_only=False), dtype=np.float64)
    return np.asarray(arr.to_numpy(zero_copy_only=False), dtype=dtype)


def _encode(col: pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """(codes, distinct values as an object array) of a string column."""
    enc = pc.dictionary_encode(col.combine_chunks())
    return (np.asarray(enc.indices.to_numpy(zero_copy_only=False), dtype=np.int64),
            np.asarray(enc.dictionary.to_pylist(), dtype=object))


def _area_of(t: pa.Table) -> np.ndarray:
    area = _np(t.column("area"))
    missing = np.isnan(area)
    if missing.any():  # geometry without a stored area: COCO falls back to the box area
        area[missing] = (_np(t.column("w")) * _np(t.column("h")))[missing]
    return area


def box_pairs(store: Store, inp: EvalInputs, same_category: bool = True, all_pairs: bool = False) -> Pairs:
    """Overlapping (detection, GT) pairs in the same image (and category) with their box IoU.

    ``all_pairs`` keeps every pair of the group (IoU 1 placeholder), for mask IoU candidates.
    """
    con = store.con
    g, d = inp.gt, inp.dt
    con.register("__pg", pa.table({"gi": np.arange(len(g)), "img": g.img, "cat": g.cat, "x": g.x, "y": g.y,
                                   "w": g.w, "h": g.h, "crowd": g.crowd}))
    con.register("__pd", pa.table({"di": np.arange(len(d)), "img": d.img, "cat": d.cat, "x": d.x, "y": d.y,
                                   "w": d.w, "h": d.h}))
    on_cat = "AND d.cat = g.cat" if same_category else ""
    low = 0 if same_category or all_pairs else 1  # the join's ``d.cat = g.cat`` flag in the key's low bit
    shift = max(max(len(g) - 1, 0).bit_length(), 1) + low
    packed = not all_pairs and max(len(d) - 1, 0).bit_length() + shift <= 62
    try:
        # DuckDB finds the overlapping pairs (hash join + range filter); their IoU is computed over the
        # id columns in numpy (udfs.iou.box_iou_indexed, pycocotools' float order): the box_iou macro over
        # 1.1M cross-label pairs cost twice the join, and fetchnumpy a third more than Arrow. Each pair
        # comes back as one packed (dt, gt[, same]) key (_sorted_ids): one column to convert, no key to
        # build in numpy (1.14M pairs: ~40 MB fewer temporaries).
        if packed:
            flag = " | (d.cat = g.cat)::BIGINT" if low else ""
            cols = f"(d.di << {shift}) | (g.gi << {low}){flag} AS k"
        else:
            flag = "" if same_category or all_pairs else ", (d.cat = g.cat) AS same"  # computed by the join
            cols = f"d.di, g.gi{flag}"
        res = to_arrow(con.sql(
            f"""SELECT {cols} FROM __pd d JOIN __pg g ON d.img = g.img {on_cat}
                 {'' if all_pairs else 'AND box_overlaps(d.x, d.y, d.w, d.h, g.x, g.y, g.w, g.h)'}"""))
    finally:
        con.unregister("__pd")
        con.unregister("__pg")
    if packed:
        key = _writable(res.column("k"))
        del res
        di, gi, same = _split_keys(key, shift, low)
    else:
        di = _np(res.column("di"), np.int64)
        gi = _np(res.column("gi"), np.int64)
        if all_pairs:
            return _sorted_pairs(di, gi, np.ones(len(di)))
        same = _np(res.column("same"), bool) if flag else None
        del res
        di, gi, same = _sorted_ids(di, gi, same)
    iou = box_iou_indexed((d.x, d.y, d.w, d.h), (g.x, g.y, g.w, g.h), g.crowd, di, gi)
    keep = iou > 0  # the overlap filter leaves only positive IoUs, but for degenerate boxes
    if keep.all():
        return Pairs(dt=di, gt=gi, iou=iou, same=same)
    return Pairs(dt=di[keep], gt=gi[keep], iou=iou[keep], same=None if same is None else same[keep])


def _writable(col: pa.ChunkedArray) -> np.ndarray:
    """An int64 column without nulls as one writable numpy array (a single copy of its chunks)."""
    if col.num_chunks == 0:
        return np.zeros(0, np.int64)
    return np.concatenate([c.to_numpy() for c in col.chunks]).astype(np.int64, copy=False)


def _split_keys(key: np.ndarray, shift: int, low: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Sort packed ``(dt << shift) | (gt << low) | flag`` keys in place and split them (:func:`_sorted_ids`)."""
    key.sort(kind="stable")  # timsort: the join emits runs of ascending keys (1.1M keys: 11 vs 58 ms)
    di = np.right_shift(key, shift)
    flag = None
    if low:  # the low byte of each key (little-endian), not a key-sized temporary
        flag = (key.view(np.uint8)[::8] & 1).view(bool) if sys.byteorder == "little" else (key & 1).astype(bool)
    key &= (1 << shift) - 1
    if low:
        key >>= 1
    return di, key, flag


def _sorted_ids(di: np.ndarray, gi: np.ndarray, flag: np.ndarray | None = None
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Unique (dt, gt) id pairs in (dt, gt) order, with a per-pair ``flag`` following them: one int64 key
    per pair (dt in the high bits, then gt, then the flag), its values sorted and split again (half the
    time of an argsort and the gathers; the IoU is then computed in this order)."""
    low = 0 if flag is None else 1
    shift = max(int(gi.max(initial=0)).bit_length(), 1) + low
    key = np.left_shift(di, shift)
    if low:
        key |= np.left_shift(gi, 1)
        key |= flag
    else:
        key |= gi
    return _split_keys(key, shift, low)


def _sorted_pairs(di, gi, iou) -> Pairs:
    di = np.asarray(di, np.int64)
    gi = np.asarray(gi, np.int64)
    iou = np.asarray(iou, np.float64)
    keep = iou > 0
    di, gi, iou = di[keep], gi[keep], iou[keep]
    # (dt, gt) order through one int64 key (pairs are unique): 3-10x faster than lexsort on two keys; a
    # stable sort profits from the runs of equal dt the hash join emits
    order = np.argsort(di * (int(gi.max(initial=0)) + 1) + gi, kind="stable")
    return Pairs(dt=di[order], gt=gi[order], iou=iou[order])


def mask_pairs(store: Store, inp: EvalInputs, same_category: bool = True) -> Pairs:
    """Pairs with mask IoU (COCO RLE; polygons rasterized as pycocotools does; crowd = dt area union)."""
    from udfs import rle

    # every pair of the group: stored boxes of masks/polygons need not bound the mask exactly
    cand = box_pairs(store, inp, same_category, all_pairs=True)
    if len(cand.dt) == 0:
        return cand
    # only the masks of objects with a candidate, in index order
    ug, pos_g = np.unique(cand.gt, return_inverse=True)
    ud, pos_d = np.unique(cand.dt, return_inverse=True)
    gt_values, gt_offsets = _masks(store, "annotations", "ann_key", inp.gt.key[ug])
    dt_values, dt_offsets = _masks(store, "predictions", "pred_key", inp.dt.key[ud])
    iou = rle.iou_pairs_flat(dt_values, dt_offsets, pos_d.ravel(), gt_values, gt_offsets, pos_g.ravel(),
                             inp.gt.crowd[cand.gt])
    return _sorted_pairs(cand.dt, cand.gt, iou)


def _masks(store: Store, table: str, key: str, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """RLE counts of the given rows, in ``keys`` order, as flat values + offsets.

    Polygons are rasterized to RLE at the image size and boxes become box masks (pycocotools' frBbox).
    """
    con = store.con
    con.register("__mk", pa.table({"k": keys, "pos": np.arange(len(keys))}))
    try:
        t = store.arrow(
            f"""SELECT o.mask, o.polygon, o.x, o.y, o.width, o.height, i.height AS ih, i.width AS iw
                FROM __mk m JOIN {table} o ON o.{key} = m.k JOIN items i ON i.item_id = o.item_id
                ORDER BY m.pos""")
    finally:
        con.unregister("__mk")
    return masks_flat(t)


def masks_flat(t: pa.Table) -> tuple[np.ndarray, np.ndarray]:
    """Flat RLE counts (values + offsets) of rows with mask, polygon, x, y, width, height, ih, iw columns.

    Shared by the local path and the Spark kernel (engine.spark.kernel), so both rasterize alike.
    """
    from udfs import polygons

    masks = t.column("mask").combine_chunks()
    if masks.type != pa.list_(pa.uint32()):
        masks = masks.cast(pa.list_(pa.uint32()))
    if masks.null_count == 0:  # all stored as RLE: use the Arrow buffers as they are
        return (np.asarray(masks.values, dtype=np.uint32),
                np.asarray(masks.offsets, dtype=np.int64) - int(masks.offsets[0].as_py()))
    n = t.num_rows
    ih = t.column("ih").to_numpy(zero_copy_only=False)
    iw = t.column("iw").to_numpy(zero_copy_only=False)
    has_mask = ~np.asarray(pc.is_null(masks))
    has_poly = ~np.asarray(pc.is_null(t.column("polygon"))) & ~has_mask
    is_box = ~has_mask & ~has_poly
    need = ~has_mask
    if need.any() and (np.isnan(ih[need].astype(float)).any() or np.isnan(iw[need].astype(float)).any()):
        raise LoupeError("segm evaluation needs image sizes; an item has no width/height")
    parts = []
    rows = np.flatnonzero(has_mask)
    if len(rows):
        sub = masks.take(pa.array(rows))
        parts.append((rows, np.asarray(sub.values, np.uint32),
                      np.asarray(sub.offsets, np.int64) - int(sub.offsets[0].as_py())))
    rows = np.flatnonzero(has_poly)
    if len(rows):  # pycocotools rasterizes GT polygons at the image size (frPyObjects + merge)
        segs = t.column("polygon").take(pa.array(rows)).to_pylist()
        v, o = polygons.polygons_to_rle_many(segs, ih[rows].astype(np.int64), iw[rows].astype(np.int64),
                                             validate=False)
        parts.append((rows, v, o))
    rows = np.flatnonzero(is_box)
    if len(rows):  # a box-only object is its box polygon, as loadRes makes for bbox results
        boxes = np.stack([t.column(c).to_numpy(zero_copy_only=False)[rows].astype(np.float64)
                          for c in ("x", "y", "width", "height")], axis=1)
        v, o = polygons.bboxes_to_rle_flat(boxes, ih[rows].astype(np.int64), iw[rows].astype(np.int64))
        parts.append((rows, v, o))
    return _scatter_flat(parts, n)


def _scatter_flat(parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]], n: int) -> tuple[np.ndarray, np.ndarray]:
    """Interleave several flat (values, offsets) lists, each for some ``rows``, back into row order."""
    lengths = np.zeros(n, np.int64)
    for rows, _, o in parts:
        lengths[rows] = np.diff(o)
    offsets = np.zeros(n + 1, np.int64)
    np.cumsum(lengths, out=offsets[1:])
    values = np.empty(int(offsets[-1]), np.uint32)
    for rows, v, o in parts:
        L = np.diff(o)
        src = np.arange(o[0], o[-1])
        dst = np.repeat(offsets[rows] - o[:-1], L) + src
        values[dst] = v[o[0]:o[-1]]
    return values, offsets
