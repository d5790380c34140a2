"""Keypoint evaluation inputs: OKS of candidate pairs and pycocotools' keypoint ignore flags.

Candidates are every (detection, GT) pair of the same image and label (OKS is positive for any
pair); their keypoints are read by key from DuckDB (Arrow buffers, no per-object Python) and
compared with ``engine.metrics.oks`` one label at a time (each label has its own sigmas).
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa

from ..errors import ValidationError
from ..metrics.cocoeval import CocoParams
from ..metrics.oks import COCO_PERSON_SIGMAS, oks_pairs
from engine.store.database import Store
from .inputs import EvalInputs, Pairs, box_pairs

_KP_SQL = """
SELECT o.keypoints, TRY_CAST(json_extract(o.metadata, '$.num_keypoints') AS BIGINT) AS num_keypoints
FROM __kp_keys k JOIN {table} o ON o.{key} = k.key ORDER BY k.pos
"""


def _fetch(store: Store, table: str, key: str, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(flat keypoint values, offsets, stored num_keypoints or -1) of the rows with ``keys``, in order."""
    con = store.con
    con.register("__kp_keys", pa.table({"key": keys, "pos": np.arange(len(keys))}))
    try:
        t = store.arrow(_KP_SQL.format(table=table, key=key))  # table/key are module constants
    finally:
        con.unregister("__kp_keys")
    kp = t.column("keypoints").combine_chunks()
    off = np.asarray(kp.offsets, np.int64)
    vals = np.asarray(kp.values, np.float64)[off[0]:off[-1]] if len(kp) else np.zeros(0)
    nk = t.column("num_keypoints").to_numpy(zero_copy_only=False)
    nk = np.where(np.isnan(nk.astype(np.float64)), -1, nk).astype(np.int64) if len(nk) else np.zeros(0, np.int64)
    return vals, off - off[0], nk


def keypoint_ignore(store: Store, inp: EvalInputs) -> np.ndarray:
    """pycocotools' keypoint ignore: ``num_keypoints == 0`` (the stored field, else the count of v > 0)."""
    vals, off, nk = _fetch(store, "annotations", "ann_key", inp.gt.key)
    n = len(inp.gt)
    rows = np.repeat(np.arange(n), np.diff(off) // 3)
    visible = np.bincount(rows, weights=(vals[2::3] > 0), minlength=n) if len(rows) else np.zeros(n)
    count = np.where(nk >= 0, nk, visible)
    return count == 0


def sigmas_for(params: CocoParams, label: str) -> np.ndarray:
    s = params.kpt_oks_sigmas
    if s is None:
        return COCO_PERSON_SIGMAS
    if s and isinstance(s[0], tuple):
        per = dict(s)
        if label not in per:
            raise ValidationError(f"no sigmas for label {label!r} (labels given: {sorted(per)})", field="kpt_oks_sigmas")
        return np.asarray(per[label], np.float64)
    return np.asarray(s, np.float64)


def keypoint_pairs(store: Store, inp: EvalInputs, params: CocoParams) -> Pairs:
    """Every same-image, same-label (detection, GT) pair with its OKS (pairs with OKS 0 left out)."""
    cand = box_pairs(store, inp, same_category=True, all_pairs=True)
    if len(cand.dt) == 0:
        return cand
    ug, pos_g = np.unique(cand.gt, return_inverse=True)
    ud, pos_d = np.unique(cand.dt, return_inverse=True)
    gv, go, _ = _fetch(store, "annotations", "ann_key", inp.gt.key[ug])
    dv, do, _ = _fetch(store, "predictions", "pred_key", inp.dt.key[ud])
    g, cat = inp.gt, inp.gt.cat[cand.gt]
    oks = np.zeros(len(cand.dt))
    for c in np.unique(cat):  # labels are few; each step is vectorized
        sig = sigmas_for(params, inp.labels[c])
        w = 3 * len(sig)
        sel = np.flatnonzero(cat == c)
        rg, rd = pos_g.ravel()[sel], pos_d.ravel()[sel]
        for name, off, rows, keys in (("annotation", go, rg, inp.gt.key[ug]), ("prediction", do, rd, inp.dt.key[ud])):
            bad = np.flatnonzero(np.diff(off)[rows] != w)
            if len(bad):
                n = int(np.diff(off)[rows][bad[0]]) // 3
                raise ValidationError(f"{name} (key {int(keys[rows[bad[0]]])}) of label {inp.labels[c]!r} has {n} "
                                      f"keypoints, the sigmas {len(sig)}; pass kpt_oks_sigmas for it",
                                      field="keypoints")
        gm = gv[go[rg][:, None] + np.arange(w)]
        dm = dv[do[rd][:, None] + np.arange(w)]
        gi = cand.gt[sel]
        box = np.stack([g.x[gi], g.y[gi], g.w[gi], g.h[gi]], axis=1)
        oks[sel] = oks_pairs(dm, gm, box, g.area[gi], sig)
    keep = oks > 0
    return Pairs(cand.dt[keep], cand.gt[keep], oks[keep])
