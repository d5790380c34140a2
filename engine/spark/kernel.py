"""The per-partition commit kernel: whole images in, per-object matches and metric inputs out.

Spark hash-partitions GT, detections and candidate pairs by item and hands each partition to
:func:`commit_partition` as one Arrow table (``mapInArrow``). The kernel runs the local commit's own
code on it (``engine.runs.evaluate`` / ``engine.runs.commit``: plan, greedy matching for all images,
thresholds and area ranges at once, per-object status / partner / error type). Matching is
independent per (image, class), so a partition's results equal the local path's for its objects.

Besides the ``matches`` columns each detection carries what the metric reduce needs: its category,
input order, score, area and two bit masks over (IoU threshold, area range) — ``hit`` (a match that
counts in accumulate) and ``tp`` (that match is to a non-ignored GT). GT rows carry area and crowd.
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..metrics.cocoeval import PairArrays, match, new_objects, record
from ..runs.chunks import Chunk
from ..runs.commit import _from_eval, _match, _matches_table, _object_values, _ObjectRows
from ..runs.evaluate import _plan, same_label
from ..runs.inputs import EvalInputs, Pairs, Side, _label_index, _sorted_pairs, masks_flat
from ..metrics.cocoeval import CocoParams

GT, DT, PAIR = 0, 1, 2

# what the kernel reads (one schema for the three kinds of rows; unused fields are null)
INPUT_SCHEMA = pa.schema([
    ("kind", pa.int8()), ("item_id", pa.int64()), ("key", pa.int64()), ("key2", pa.int64()),
    ("seq", pa.int64()), ("label", pa.string()), ("x", pa.float64()), ("y", pa.float64()),
    ("w", pa.float64()), ("h", pa.float64()), ("area", pa.float64()), ("crowd", pa.bool_()),
    ("id_nonzero", pa.bool_()), ("score", pa.float64()), ("iou", pa.float64()),
    ("mask", pa.list_(pa.int64())), ("polygon", pa.list_(pa.list_(pa.float64()))),
    ("ih", pa.int64()), ("iw", pa.int64()),
])

OUTPUT_SCHEMA = pa.schema([
    ("run_id", pa.int32()), ("iou_threshold", pa.float64()), ("source", pa.string()),
    ("ann_key", pa.int64()), ("pred_key", pa.int64()), ("item_id", pa.int64()), ("iou", pa.float64()),
    ("best_iou", pa.float64()), ("best_iou_key", pa.int64()), ("status", pa.string()),
    ("error_type", pa.string()), ("label", pa.string()),
    # metric inputs
    ("cat", pa.int32()), ("seq", pa.int64()), ("score", pa.float64()), ("area", pa.float64()),
    ("crowd", pa.bool_()), ("hit", pa.int64()), ("tp", pa.int64()),
])
MATCHES_COLUMNS = OUTPUT_SCHEMA.names[:12]


def _side(t: pa.Table, images: np.ndarray, lab_idx: dict[str, int], rank_idx: dict[str, int], is_gt: bool) -> Side:
    def f(c: str) -> np.ndarray:
        return np.asarray(t.column(c).to_numpy(zero_copy_only=False), np.float64)

    n = t.num_rows
    item = t.column("item_id").to_numpy().astype(np.int64)
    lab = np.asarray(t.column("label").to_numpy(zero_copy_only=False), dtype=object)
    area = f("area")
    missing = np.isnan(area)
    if missing.any():  # geometry without a stored area: COCO falls back to the box area
        area[missing] = (f("w") * f("h"))[missing]
    return Side(key=t.column("key").to_numpy().astype(np.int64), item_id=item,
                img=np.searchsorted(images, item).astype(np.int64), cat=_label_index(lab, lab_idx), label=lab,
                x=f("x"), y=f("y"), w=f("w"), h=f("h"), area=area,
                crowd=np.asarray(t.column("crowd").fill_null(False).to_numpy(zero_copy_only=False), bool)
                if is_gt else np.zeros(n, bool),
                score=f("score") if not is_gt else np.full(n, np.nan), cat_rank=_label_index(lab, rank_idx))


def _positions(keys: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    order = np.argsort(keys, kind="stable")
    return order[np.searchsorted(keys[order], wanted)]


def _mask_ious(g: pa.Table, d: pa.Table, di: np.ndarray, gi: np.ndarray, crowd: np.ndarray) -> np.ndarray:
    from udfs import rle

    if len(di) == 0:
        return np.zeros(0)
    ug, pos_g = np.unique(gi, return_inverse=True)
    ud, pos_d = np.unique(di, return_inverse=True)
    cols = ["mask", "polygon", "x", "y", "w", "h", "ih", "iw"]
    names = ["mask", "polygon", "x", "y", "width", "height", "ih", "iw"]
    gv, go = masks_flat(g.take(pa.array(ug)).select(cols).rename_columns(names))
    dv, do = masks_flat(d.take(pa.array(ud)).select(cols).rename_columns(names))
    return rle.iou_pairs_flat(dv, do, pos_d.ravel(), gv, go, pos_g.ravel(), crowd[gi])


def commit_partition(t: pa.Table, labels: list[str], thr: float, iou_type: str, class_agnostic: bool,
                     run_id: int) -> pa.Table:
    """Commit the whole images in ``t`` (rows of INPUT_SCHEMA); returns rows of OUTPUT_SCHEMA."""
    kind = t.column("kind").to_numpy(zero_copy_only=False)
    g_t = t.filter(pa.array(kind == GT))
    d_t = t.filter(pa.array(kind == DT))
    p_t = t.filter(pa.array(kind == PAIR))
    g_t = g_t.take(pc.sort_indices(g_t, [("seq", "ascending")]))
    d_t = d_t.take(pc.sort_indices(d_t, [("seq", "ascending")]))
    lab_idx = {lab: 0 for lab in labels} if class_agnostic else {lab: i for i, lab in enumerate(labels)}
    cats = ["*"] if class_agnostic else list(labels)
    images = np.unique(np.r_[g_t.column("item_id").to_numpy(), d_t.column("item_id").to_numpy()]).astype(np.int64)
    rank_idx = {lab: i for i, lab in enumerate(labels)}  # labels come in the local commit's category order
    g, d = _side(g_t, images, lab_idx, rank_idx, True), _side(d_t, images, lab_idx, rank_idx, False)
    id_nz = np.asarray(g_t.column("id_nonzero").to_numpy(zero_copy_only=False), np.int64)
    inp = EvalInputs(labels=cats, n_images=len(images), gt=g, dt=d, gt_ann_id0=id_nz, categories=list(labels),
                     class_agnostic=class_agnostic)

    # candidate pairs of any label (the commit needs them for best IoU and error types)
    di = _positions(d.key, p_t.column("key").to_numpy().astype(np.int64)) if len(d) else np.zeros(0, np.int64)
    gi = _positions(g.key, p_t.column("key2").to_numpy().astype(np.int64)) if len(g) else np.zeros(0, np.int64)
    if iou_type == "segm":
        iou = _mask_ious(g_t, d_t, di, gi, g.crowd)
    else:
        iou = p_t.column("iou").to_numpy(zero_copy_only=False).astype(np.float64)
    xp = _sorted_pairs(di, gi, iou)
    sp = same_label(inp, xp)

    plan = _plan(inp, None)
    mt = match(plan, PairArrays(sp.dt, sp.gt, sp.iou))
    objs = new_objects(plan)
    record(plan, mt, objs)
    t_eval = np.flatnonzero(np.asarray(CocoParams().iou_thrs) == thr)
    m = _from_eval(objs, int(t_eval[0])) if len(t_eval) else _match(inp, sp, xp, thr, set(), "coco")
    rows = _ObjectRows.empty(len(d), len(g))
    rows.put(Chunk(None, None), *_object_values(inp, xp, m, thr))
    rows.d_status[~plan.evaluated] = 3  # beyond maxDets: ignored, as the local commit
    rows.d_err[~plan.evaluated] = 6
    table = _matches_table(run_id, inp, rows, thr, class_agnostic)

    # accumulate inputs: bit (t * A + a) of each detection's hit / tp mask
    A = len(plan.area_rng)
    m_ig = plan.g_ig[mt.area, mt.gt]
    id0 = plan.ann_id[mt.gt] == 0
    keep = ~(id0 & ~m_ig)
    bit = np.left_shift(np.uint64(1), (mt.thr.astype(np.uint64) * np.uint64(A) + mt.area.astype(np.uint64)))
    hit = np.zeros(len(d), np.uint64)
    tp = np.zeros(len(d), np.uint64)
    np.bitwise_or.at(hit, mt.dt[keep], bit[keep])
    sel = keep & ~m_ig
    np.bitwise_or.at(tp, mt.dt[sel], bit[sel])
    nd, ng = len(d), len(g)
    extra = {
        "cat": np.r_[d.cat, g.cat].astype(np.int32),
        "seq": np.r_[d_t.column("seq").to_numpy(), g_t.column("seq").to_numpy()].astype(np.int64),
        "score": np.r_[d.score, np.full(ng, np.nan)],
        "area": np.r_[d.area, g.area],
        "crowd": np.r_[np.zeros(nd, bool), g.crowd],
        "hit": np.r_[hit.view(np.int64), np.zeros(ng, np.int64)],
        "tp": np.r_[tp.view(np.int64), np.zeros(ng, np.int64)],
    }
    cols = [table.column(c).cast(pa.string()) if pa.types.is_dictionary(table.column(c).type) else table.column(c)
            for c in MATCHES_COLUMNS]
    cols += [pa.array(extra[c], OUTPUT_SCHEMA.field(c).type) for c in OUTPUT_SCHEMA.names[12:]]
    return pa.Table.from_arrays(cols, schema=OUTPUT_SCHEMA)
