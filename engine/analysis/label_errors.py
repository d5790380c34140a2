"""Label-error finder: rank likely ground-truth mistakes of a committed run, in SQL over the index.

Every suggestion gets a score in [0, 1] read as "how likely is this a real label error", so all
reasons rank in one list. One SQL statement over ``matches`` / ``predictions`` / ``annotations``
(method and measurements in docs/label-errors.md):

* **Calibration.** A prediction's confidence becomes ``p_real``: the share of the run's predictions
  *like it* that match a label elsewhere in the dataset — same size tercile, same occlusion context
  (covered >= 25 % by GT boxes other than its partner, or not), confidence within +-``bandwidth`` (a
  sliding window), smoothed towards the run's overall precision. This is the "similar objects are
  labelled elsewhere" estimate; it also makes over- and under-confident detectors comparable.
* ``missing_annotation``: an unmatched prediction (best IoU with any GT below the match threshold;
  score ``p_real``, damped linearly as that overlap grows — then it is more likely a badly placed
  detection of the labelled object). Overlapping candidates are merged; the strongest is kept.
* ``inconsistent_labeling``: the same in an occluded / crowded context or cut by the image border,
  where annotation policies differ; ``p_real`` is then the labelled rate of such objects elsewhere.
* ``spurious_gt``: a GT no prediction of any label overlaps (IoU < 0.1): posterior
  ``prior / (prior + (1 - prior)(1 - recall))`` with the run's recall on similar GT (size, context).
* ``wrong_label``: an unmatched prediction of label B with IoU >= the threshold on a GT of label A:
  ``p_real * (1 - c_same) * posterior(prior, LR)`` with ``LR = P(top label B | truly B) /
  P(top label B | labelled A)`` from the run's own label confusion, ``c_same`` the best A prediction.
* ``loose_box``: (1) the annotation keeps a second, tighter box (``alt_box_field``, e.g. PennFudan's
  text box as ``txt_box``) whose edges differ from the box by >= 2 px: ``1 - exp(-(dev - 1) / 2)`` (a
  second box looser than the stored one is not suggested: the stored box needs no fix); (2) the best
  same-label prediction lies *inside* the GT box with IoU in [0.3, ``loose_iou``): weak on one run.

**Other runs** (``other_runs``, committed on the same dataset) update each score's odds by a
likelihood ratio estimated from the data: for an unmatched prediction, how much more often the other
run fires (by confidence bin) where this run's *matched* predictions are than where its unmatched
ones are — and a strong penalty where it matches a label; for a wrong label, the other run's own
confusion rates; for a spurious GT, its miss rate; for a loose box, its rate of enclosed predictions.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterable, Sequence

import pyarrow as pa

from ..errors import ValidationError
from engine.store.database import Store
from ._sql import registered, used_params
from .patches import match_threshold

if TYPE_CHECKING:
    from ..api.model import ModelRun

REASONS = ("missing_annotation", "spurious_gt", "wrong_label", "loose_box", "inconsistent_labeling")
BG_IOU = 0.1
OCCLUDED_IOA = 0.25

COLUMNS = ("rank", "score", "reason", "reference_id", "annotation_id", "prediction_id", "label",
           "suggested_label", "x", "y", "width", "height", "suggested_x", "suggested_y", "suggested_width",
           "suggested_height", "confidence", "iou", "support", "explanation", "item_id", "ann_key", "pred_key",
           "image_location")


def _inter(a: str, b: str) -> str:
    """Intersection area of boxes ``a.x, a.y, a.w, a.h`` and ``b.*`` (0 when disjoint)."""
    return (f"greatest(least({a}.x + {a}.w, {b}.x + {b}.w) - greatest({a}.x, {b}.x), 0) * "
            f"greatest(least({a}.y + {a}.h, {b}.y + {b}.h) - greatest({a}.y, {b}.y), 0)")


def _iou(a: str, b: str) -> str:
    return f"box_iou({a}.x, {a}.y, {a}.w, {a}.h, {b}.x, {b}.y, {b}.w, {b}.h, false)"


def _overlaps(a: str, b: str) -> str:
    return f"box_overlaps({a}.x, {a}.y, {a}.w, {a}.h, {b}.x, {b}.y, {b}.w, {b}.h)"


def _run_list(run: "ModelRun", other_runs: Any) -> list["ModelRun"]:
    if other_runs is None:
        return []
    if isinstance(other_runs, str) or not isinstance(other_runs, Iterable):
        other_runs = [other_runs]
    out = []
    for r in other_runs:
        r = run.ws.get_run(r) if isinstance(r, str) else r
        if r.dataset_id != run.dataset_id:
            raise ValidationError(f"run '{r.name}' is on dataset '{r.dataset_name}', not '{run.dataset_name}'",
                                  field="other_runs")
        if r.id != run.id and all(r.id != o.id for o in out):
            out.append(r)
    return out


def _features_sql(runs_table: str, bandwidth: float) -> str:
    """Per run: predictions and GT with calibration, size bin, occlusion context and recall.

    Produces (as CTEs ending in ``pf``, ``gf``, ``rec``):
    pf: run_id, pred_key, item_id, label, x, y, w, h, conf, status, best_iou, partner, ioa, occluded,
        size_bin, p_real;  gf: run_id, ann_key, item_id, label, x, y, w, h, status, best_iou, ioa,
        occluded, size_bin, metadata;  rec: run_id, size_bin, occluded, recall.
    """
    return f"""
    pm AS (
        SELECT m.run_id, p.pred_key, p.item_id, p.annotation_id AS prediction_id, p.label, p.x, p.y,
               p.width AS w, p.height AS h, coalesce(p.confidence, 1.0) AS conf, m.status::VARCHAR AS status,
               coalesce(m.best_iou, 0) AS best_iou, m.ann_key AS partner
        FROM {runs_table} r JOIN matches m ON m.run_id = r.run_id AND m.iou_threshold = r.thr
        JOIN predictions p ON p.pred_key = m.pred_key
        WHERE m.source = 'prediction' AND p.x IS NOT NULL AND p.width > 0 AND p.height > 0),
    gm AS (
        SELECT m.run_id, a.ann_key, a.item_id, a.annotation_id, a.label, a.x, a.y, a.width AS w, a.height AS h,
               m.status::VARCHAR AS status, coalesce(m.best_iou, 0) AS best_iou, a.metadata
        FROM {runs_table} r JOIN matches m ON m.run_id = r.run_id AND m.iou_threshold = r.thr
        JOIN annotations a ON a.ann_key = m.ann_key
        WHERE m.source = 'gt' AND a.x IS NOT NULL AND NOT a.iscrowd),
    cuts AS (  -- size terciles of each run's predictions (shared by GT so both sides use one scale)
        SELECT run_id, quantile_cont(w * h, 1 / 3) AS c1, quantile_cont(w * h, 2 / 3) AS c2 FROM pm GROUP BY run_id),
    p_ctx AS (  -- share of a prediction covered by a GT other than its partner (occlusion / crowd)
        SELECT p.run_id, p.pred_key, max({_inter('p', 'g')} / (p.w * p.h)) AS ioa
        FROM pm p JOIN gm g ON g.run_id = p.run_id AND g.item_id = p.item_id
         AND g.ann_key IS DISTINCT FROM p.partner AND {_overlaps('p', 'g')}
        GROUP BY ALL),
    g_ctx AS (
        SELECT g.run_id, g.ann_key, max({_inter('g', 'o')} / greatest(g.w * g.h, 1e-9)) AS ioa
        FROM gm g JOIN gm o ON o.run_id = g.run_id AND o.item_id = g.item_id AND o.ann_key <> g.ann_key
         AND {_overlaps('g', 'o')}
        GROUP BY ALL),
    pb AS (
        SELECT p.*, coalesce(c.ioa, 0) AS ioa, coalesce(c.ioa, 0) >= {OCCLUDED_IOA} AS occluded,
               1 + (p.w * p.h > k.c1)::INT + (p.w * p.h > k.c2)::INT AS size_bin
        FROM pm p JOIN cuts k USING (run_id) LEFT JOIN p_ctx c USING (run_id, pred_key)),
    prior AS (
        SELECT run_id, avg((status = 'tp')::INT) AS p0 FROM pb WHERE status IN ('tp', 'fp') GROUP BY run_id),
    pf AS (  -- p_real: smoothed share of matched predictions among similar ones (size, context, confidence)
        SELECT pb.*, (coalesce(n_tp, 0) + 2 * pr.p0) / (coalesce(n_win, 0) + 2) AS p_real
        FROM pb JOIN prior pr USING (run_id)
        LEFT JOIN (
            SELECT pred_key, run_id,
                   sum((status = 'tp')::INT) OVER win AS n_tp, count(*) OVER win AS n_win
            FROM pb WHERE status IN ('tp', 'fp')
            WINDOW win AS (PARTITION BY run_id, size_bin, occluded ORDER BY conf
                           RANGE BETWEEN {float(bandwidth)} PRECEDING AND {float(bandwidth)} FOLLOWING)
        ) w USING (run_id, pred_key)),
    gf AS (
        SELECT g.*, coalesce(c.ioa, 0) AS ioa, coalesce(c.ioa, 0) >= {OCCLUDED_IOA} AS occluded,
               1 + (g.w * g.h > k.c1)::INT + (g.w * g.h > k.c2)::INT AS size_bin
        FROM gm g JOIN cuts k USING (run_id) LEFT JOIN g_ctx c USING (run_id, ann_key)),
    rec_all AS (SELECT run_id, (count(*) FILTER (WHERE status = 'tp') + 1.0) / (count(*) + 2.0) AS r0
                FROM gf WHERE status IN ('tp', 'fn') GROUP BY run_id),
    rec AS (  -- recall per size bin and context, smoothed towards the run's recall (sparse bins)
        SELECT run_id, size_bin, occluded,
               (count(*) FILTER (WHERE status = 'tp') + 4 * any_value(r0)) / (count(*) + 4.0) AS recall
        FROM gf JOIN rec_all USING (run_id) WHERE status IN ('tp', 'fn') GROUP BY ALL)"""


def _post(p: str, lr: str) -> str:
    """SQL of the posterior ``p`` after multiplying its odds by the likelihood ratio ``lr``."""
    return f"(({p}) * ({lr}) / (({p}) * ({lr}) + 1 - ({p})))"


def _candidates_sql() -> str:
    """Every reason's candidates as one UNION ALL with a common column set (before ranking)."""
    thr = "$thr"
    return f"""
    -- unmatched predictions: missing annotation / inconsistent labeling --------------------------------
    mc0 AS (
        SELECT f.*, f.p_real * CASE WHEN f.best_iou < {BG_IOU} THEN 1.0
                                    ELSE greatest(1.0 - f.best_iou / {thr}, 0) END AS base,
               (f.occluded OR f.x <= 1 OR f.y <= 1 OR f.x + f.w >= i.width - 1 OR f.y + f.h >= i.height - 1)
                   AS hard_context
        FROM pf f JOIN items i USING (item_id)
        WHERE f.run_id = $run AND f.status = 'fp' AND f.best_iou < {thr} AND f.conf >= $min_conf),
    mc_drop AS (  -- overlapping candidates describe one object: all but the strongest go
        SELECT DISTINCT c.pred_key
        FROM mc0 c JOIN mc0 o ON o.item_id = c.item_id AND o.pred_key <> c.pred_key
         AND (o.base > c.base OR (o.base = c.base AND o.pred_key < c.pred_key)) AND {_overlaps('o', 'c')}
        WHERE {_iou('o', 'c')} >= 0.5),
    mc AS (SELECT * FROM mc0 WHERE pred_key NOT IN (SELECT pred_key FROM mc_drop)),
    fire AS (  -- other runs at each prediction of this run: their best overlapping prediction (IoU >= 0.5)
        SELECT a.pred_key, q.run_id, arg_max(q.status, {_iou('a', 'q')}) AS q_status,
               arg_max(q.conf, {_iou('a', 'q')}) AS q_conf
        FROM pf a JOIN pf q ON q.run_id <> $run AND q.item_id = a.item_id AND {_overlaps('a', 'q')}
        WHERE a.run_id = $run AND {_iou('a', 'q')} >= 0.5
        GROUP BY ALL),
    fire_b AS (SELECT *, least(floor(q_conf * 3), 2)::INT AS cbin FROM fire),
    fire_lr AS (  -- P(other run fires here, in confidence bin | matched) / (.. | unmatched), per size bin
        SELECT r.run_id, a.size_bin, b.cbin,
               count(*) FILTER (WHERE a.status = 'tp') AS n_tp_fire, count(*) FILTER (WHERE a.status = 'fp') AS n_fp_fire
        FROM pf a CROSS JOIN (SELECT run_id FROM __le_runs_tbl WHERE run_id <> $run) r
        LEFT JOIN fire_b b ON b.pred_key = a.pred_key AND b.run_id = r.run_id
        WHERE a.run_id = $run AND a.status IN ('tp', 'fp')
        GROUP BY ALL),
    fire_n AS (
        SELECT run_id, size_bin, sum(n_tp_fire) AS n_tp, sum(n_fp_fire) AS n_fp FROM fire_lr GROUP BY ALL),
    m_ev AS (
        SELECT c.pred_key,
               exp(sum(ln(CASE WHEN b.q_status = 'tp' THEN 0.1   -- it matched a label there: near-miss
                               ELSE ((coalesce(l.n_tp_fire, 0) + 0.5) / (n.n_tp + 1.5))
                                    / ((coalesce(l.n_fp_fire, 0) + 0.5) / (n.n_fp + 1.5)) END))) AS lr,
               count(*) FILTER (WHERE b.q_status = 'fp') AS n_support,
               count(*) FILTER (WHERE b.q_status = 'tp') AS n_contra
        FROM mc c CROSS JOIN (SELECT run_id FROM __le_runs_tbl WHERE run_id <> $run) r
        LEFT JOIN fire_b b ON b.pred_key = c.pred_key AND b.run_id = r.run_id
        JOIN fire_n n ON n.run_id = r.run_id AND n.size_bin = c.size_bin
        LEFT JOIN fire_lr l ON l.run_id = r.run_id AND l.size_bin = c.size_bin AND l.cbin IS NOT DISTINCT FROM b.cbin
        GROUP BY c.pred_key),
    missing AS (
        SELECT CASE WHEN c.hard_context THEN 'inconsistent_labeling' ELSE 'missing_annotation' END AS reason,
               c.item_id, NULL::BIGINT AS ann_key, c.pred_key, c.label, c.label AS suggested_label,
               c.x, c.y, c.w, c.h, c.x AS sx, c.y AS sy, c.w AS sw, c.h AS sh, c.conf, c.best_iou AS iou,
               1 + coalesce(e.n_support, 0) AS support,
               {_post('c.base', 'coalesce(e.lr, 1)')} AS score,
               format('{{}} prediction (confidence {{:.2f}}) matches no labelled object (best IoU {{:.2f}}); '
                      || '{{:.0f}}% of similar predictions{{}} elsewhere match a label{{}}',
                      c.label, c.conf, c.best_iou, 100 * c.p_real,
                      CASE WHEN c.occluded THEN ' (partly covered by other objects)'
                           WHEN c.hard_context THEN ' (cut by the image border)' ELSE '' END,
                      CASE WHEN coalesce(e.n_support, 0) > 0
                           THEN format('; {{}} other run(s) predict it too, unmatched', e.n_support)
                           WHEN coalesce(e.n_contra, 0) > 0 THEN '; another run matches a label there'
                           WHEN e.pred_key IS NOT NULL THEN '; other runs see nothing there'
                           ELSE '' END) AS explanation
        FROM mc c LEFT JOIN m_ev e USING (pred_key)),
    -- GT nothing overlaps: spurious --------------------------------------------------------------------
    sc AS (
        SELECT g.*, coalesce(rc.recall, 0.5) AS recall
        FROM gf g LEFT JOIN rec rc USING (run_id, size_bin, occluded)
        WHERE g.run_id = $run AND g.status = 'fn' AND g.best_iou < {BG_IOU}),
    s_seen AS (  -- other runs with some prediction on the GT
        SELECT DISTINCT c.ann_key, q.run_id
        FROM sc c JOIN pf q ON q.run_id <> $run AND q.item_id = c.item_id AND {_overlaps('c', 'q')}
        WHERE {_iou('c', 'q')} >= {BG_IOU}),
    s_ev AS (
        SELECT c.ann_key, count(s.run_id) AS n_seen, count(*) FILTER (WHERE s.run_id IS NULL) AS n_blind,
               exp(sum(CASE WHEN s.run_id IS NULL
                            THEN ln(1.0 / greatest(1 - coalesce(rc.recall, 0.5), 1e-3)) ELSE 0 END)) AS lr
        FROM sc c CROSS JOIN (SELECT run_id FROM __le_runs_tbl WHERE run_id <> $run) r
        LEFT JOIN s_seen s ON s.ann_key = c.ann_key AND s.run_id = r.run_id
        LEFT JOIN rec rc ON rc.run_id = r.run_id AND rc.size_bin = c.size_bin AND rc.occluded = c.occluded
        GROUP BY c.ann_key),
    spurious AS (
        SELECT 'spurious_gt' AS reason, c.item_id, c.ann_key, NULL::BIGINT AS pred_key, c.label,
               NULL::VARCHAR AS suggested_label, c.x, c.y, c.w, c.h, NULL::DOUBLE AS sx, NULL::DOUBLE AS sy,
               NULL::DOUBLE AS sw, NULL::DOUBLE AS sh, NULL::DOUBLE AS conf, c.best_iou AS iou,
               1 + coalesce(e.n_blind, 0) AS support,
               {_post('$prior / ($prior + (1 - $prior) * (1 - c.recall))',
                      'coalesce(e.lr, 1) * CASE WHEN coalesce(e.n_seen, 0) > 0 THEN 0.1 ELSE 1 END')} AS score,
               format('no prediction of any label overlaps this {{}} (best IoU {{:.2f}}), though the run finds '
                      || '{{:.0f}}% of similar objects{{}}', c.label, c.best_iou, 100 * c.recall,
                      CASE WHEN coalesce(e.n_blind, 0) > 0 THEN format('; {{}} other run(s) see nothing either', e.n_blind)
                           WHEN coalesce(e.n_seen, 0) > 0 THEN '; another run does predict something there'
                           ELSE '' END) AS explanation
        FROM sc c LEFT JOIN s_ev e USING (ann_key)),
    -- another label fits: wrong label ------------------------------------------------------------------
    ov AS (  -- every (GT, prediction) pair of a run with IoU >= thr
        SELECT g.run_id, g.ann_key, g.item_id, g.label AS g_label, q.pred_key, q.label AS p_label, q.conf,
               q.p_real, q.status AS p_status, {_iou('g', 'q')} AS iou
        FROM gf g JOIN pf q ON q.run_id = g.run_id AND q.item_id = g.item_id AND {_overlaps('g', 'q')}
        WHERE {_iou('g', 'q')} >= {thr}),
    top AS (  -- the most confident prediction on each GT
        SELECT run_id, ann_key, g_label, arg_max(p_label, conf) AS top_label, arg_max(p_real, conf) AS top_p,
               max(conf) FILTER (WHERE p_label = g_label) AS c_same
        FROM ov GROUP BY ALL),
    confusion AS (  -- how often a run's top label on a GT of label A is B (smoothed)
        SELECT n.run_id, n.g_label, l.top_label,
               (coalesce(c.n, 0) + 0.5) / (n.n_all + 1.0) AS rate
        FROM (SELECT run_id, g_label, count(*) AS n_all FROM top GROUP BY ALL) n
        JOIN (SELECT DISTINCT label AS top_label FROM pf) l ON true
        LEFT JOIN (SELECT run_id, g_label, top_label, count(*) AS n FROM top GROUP BY ALL) c
          ON c.run_id = n.run_id AND c.g_label = n.g_label AND c.top_label = l.top_label),
    wc AS (
        SELECT o.*, coalesce(t.c_same, 0) AS c_same, coalesce(cf.rate, 0) AS rate,
               coalesce(cs.rate, 1) / coalesce(cf.rate, 1) AS lr_self  -- P(says B | B) / P(says B | A)
        FROM (SELECT * FROM ov WHERE run_id = $run AND p_label <> g_label AND p_status = 'fp' AND conf >= $min_conf
              QUALIFY row_number() OVER (PARTITION BY ann_key ORDER BY conf DESC, pred_key) = 1) o
        JOIN top t USING (run_id, ann_key)
        LEFT JOIN confusion cf ON cf.run_id = o.run_id AND cf.g_label = o.g_label AND cf.top_label = o.p_label
        LEFT JOIN confusion cs ON cs.run_id = o.run_id AND cs.g_label = o.p_label AND cs.top_label = o.p_label),
    w_ev AS (  -- another run's top label on the GT: P(says it | truly p_label) / P(says it | truly g_label)
        SELECT w.ann_key,
               exp(sum(ln(coalesce(num.rate, 1) / coalesce(den.rate, 1)))) AS lr,
               count(*) FILTER (WHERE t.top_label = w.p_label) AS n_support,
               count(*) FILTER (WHERE t.top_label = w.g_label) AS n_contra
        FROM wc w JOIN top t ON t.run_id <> $run AND t.ann_key = w.ann_key
        LEFT JOIN confusion num ON num.run_id = t.run_id AND num.g_label = w.p_label AND num.top_label = t.top_label
        LEFT JOIN confusion den ON den.run_id = t.run_id AND den.g_label = w.g_label AND den.top_label = t.top_label
        GROUP BY w.ann_key),
    wrong AS (
        SELECT 'wrong_label' AS reason, w.item_id, w.ann_key, w.pred_key, w.g_label AS label,
               w.p_label AS suggested_label, g.x, g.y, g.w, g.h, g.x AS sx, g.y AS sy, g.w AS sw, g.h AS sh,
               w.conf, w.iou, 1 + coalesce(e.n_support, 0) AS support,
               w.p_real * (1 - w.c_same) * {_post('$wprior', 'w.lr_self * coalesce(e.lr, 1)')} AS score,
               format('a {{}} prediction (confidence {{:.2f}}) covers this {{}} with IoU {{:.2f}}{{}}; the detector '
                      || 'calls {{}} objects {{}} {{:.0f}}% of the time{{}}',
                      w.p_label, w.conf, w.g_label, w.iou,
                      CASE WHEN w.c_same > 0 THEN format(' (best {{}} prediction: {{:.2f}})', w.g_label, w.c_same)
                           ELSE format(', no {{}} prediction does', w.g_label) END,
                      w.g_label, w.p_label, 100 * w.rate,
                      CASE WHEN coalesce(e.n_support, 0) > 0 THEN format('; {{}} other run(s) agree', e.n_support)
                           WHEN coalesce(e.n_contra, 0) > 0 THEN '; another run sees the labelled class' ELSE '' END)
                   AS explanation
        FROM wc w JOIN gf g ON g.run_id = w.run_id AND g.ann_key = w.ann_key
        LEFT JOIN w_ev e ON e.ann_key = w.ann_key),
    -- box looser than the object ------------------------------------------------------------------------
    alt AS (  -- a second box recorded with the annotation (e.g. PennFudan's text box)
        SELECT g.*, b[1] AS ax, b[2] AS ay, b[3] AS aw, b[4] AS ah
        FROM (SELECT g.*, try_cast(json_extract(g.metadata, $alt_path) AS DOUBLE[]) AS b
              FROM gf g WHERE g.run_id = $run AND g.metadata IS NOT NULL) g
        WHERE len(b) = 4),
    alt_dev AS (
        SELECT *, greatest(abs(ax - x), abs(ay - y), abs(ax + aw - x - w), abs(ay + ah - y - h)) AS dev,
               (aw * ah > w * h) AS alt_larger
        FROM alt),
    loose_alt AS (  -- only where the stored box is the looser one: a tight stored box needs no fix (the
                    -- suggestion would be the stored box itself, a no-op)
        SELECT 'loose_box' AS reason, item_id, ann_key, NULL::BIGINT AS pred_key, label, label AS suggested_label,
               x, y, w, h, ax AS sx, ay AS sy, aw AS sw, ah AS sh,
               NULL::DOUBLE AS conf, box_iou(ax, ay, aw, ah, x, y, w, h, false) AS iou, 1 AS support,
               1 - exp(-(dev - 1) / 2) AS score,
               format('the annotation records two boxes ({{}} and the box) whose edges differ by up to {{:.0f}} px '
                      || '(IoU {{:.2f}}); the tighter {{}} one is suggested', $alt_field, dev,
                      box_iou(ax, ay, aw, ah, x, y, w, h, false), $alt_field) AS explanation
        FROM alt_dev WHERE dev >= 2 AND NOT alt_larger),
    inside AS (  -- per run and GT: the best same-label prediction, and whether it lies inside the GT box
        SELECT g.run_id, g.ann_key, arg_max(q.pred_key, {_iou('g', 'q')}) AS pred_key,
               max({_iou('g', 'q')}) AS iou,
               arg_max(q.conf, {_iou('g', 'q')}) AS conf, arg_max(q.p_real, {_iou('g', 'q')}) AS p_real,
               arg_max(q.x >= g.x - 1 AND q.y >= g.y - 1 AND q.x + q.w <= g.x + g.w + 1
                       AND q.y + q.h <= g.y + g.h + 1, {_iou('g', 'q')}) AS enclosed
        FROM gf g JOIN pf q ON q.run_id = g.run_id AND q.item_id = g.item_id AND q.label = g.label
         AND {_overlaps('g', 'q')}
        GROUP BY ALL),
    lc AS (
        SELECT i.*, g.item_id, g.label, g.x, g.y, g.w, g.h FROM inside i JOIN gf g USING (run_id, ann_key)
        WHERE i.run_id = $run AND i.enclosed AND i.iou >= 0.3 AND i.iou < $loose_iou AND i.conf >= 0.5
          AND i.ann_key NOT IN (SELECT ann_key FROM alt_dev WHERE dev >= 2 AND NOT alt_larger)),
    enc_rate AS (  -- per run: share of GT whose best same-label prediction lies inside with a low IoU
        SELECT run_id, (count(*) FILTER (WHERE enclosed AND iou >= 0.3 AND iou < $loose_iou) + 0.5)
                       / (count(*) + 1.0) AS rate
        FROM inside GROUP BY run_id),
    l_ev AS (
        SELECT c.ann_key,
               exp(sum(ln(CASE WHEN o.enclosed AND o.iou >= 0.3 AND o.iou < $loose_iou THEN 1 / er.rate
                               WHEN o.iou >= $loose_iou THEN 0.1 / (1 - er.rate) ELSE 1 END))) AS lr,
               count(*) FILTER (WHERE o.enclosed AND o.iou >= 0.3 AND o.iou < $loose_iou) AS n_support,
               count(*) FILTER (WHERE o.iou >= $loose_iou) AS n_contra
        FROM lc c JOIN inside o ON o.run_id <> $run AND o.ann_key = c.ann_key
        JOIN enc_rate er ON er.run_id = o.run_id
        GROUP BY c.ann_key),
    loose_iou AS (
        SELECT 'loose_box' AS reason, c.item_id, c.ann_key, c.pred_key, c.label, c.label AS suggested_label,
               c.x, c.y, c.w, c.h, q.x AS sx, q.y AS sy, q.w AS sw, q.h AS sh, c.conf, c.iou,
               1 + coalesce(e.n_support, 0) AS support,
               {_post('$single_w * c.p_real * (1 - c.iou) / 0.7', 'coalesce(e.lr, 1)')} AS score,
               format('the best {{}} prediction (confidence {{:.2f}}) lies inside this box with IoU {{:.2f}}{{}}',
                      c.label, c.conf, c.iou,
                      CASE WHEN coalesce(e.n_support, 0) > 0
                           THEN format('; so do the predictions of {{}} other run(s)', e.n_support)
                           WHEN coalesce(e.n_contra, 0) > 0 THEN '; another run agrees with the box' ELSE '' END)
                   AS explanation
        FROM lc c JOIN pf q ON q.pred_key = c.pred_key LEFT JOIN l_ev e USING (ann_key)),
    allc AS (
        SELECT * FROM missing UNION ALL SELECT * FROM spurious UNION ALL SELECT * FROM wrong
        UNION ALL SELECT * FROM loose_alt UNION ALL SELECT * FROM loose_iou)"""


def suggest_label_errors(
    run: "ModelRun",
    other_runs: "ModelRun | str | Sequence[ModelRun | str] | None" = None,
    reasons: str | Iterable[str] | None = None,
    limit: int | None = None,
    min_score: float = 0.0,
    min_confidence: float = 0.0,
    iou_threshold: float | None = None,
    bandwidth: float = 0.1,
    spurious_prior: float = 0.02,
    wrong_label_prior: float = 0.05,
    loose_iou: float = 0.75,
    single_run_weight: float = 0.5,
    alt_box_field: str | None = "txt_box",
) -> pa.Table:
    """Likely label errors of a committed run, ranked by score (see the module docstring).

    Args:
        other_runs: committed runs of other models (or seeds) on the same dataset; their agreement
            raises a suggestion's score and their disagreement lowers it.
        reasons: keep only these (``missing_annotation``, ``spurious_gt``, ``wrong_label``, ``loose_box``,
            ``inconsistent_labeling``).
        min_confidence: ignore predictions below this confidence.
        iou_threshold: which stored matching to read (default 0.5 if stored).
        bandwidth: confidence half-window of the calibration.
        spurious_prior: prior share of spurious GT among unmatched GT.
        wrong_label_prior: prior share of wrong labels among GT another label's prediction covers.
        loose_iou: an enclosed prediction with IoU below this suggests a loose GT box.
        single_run_weight: weight of the IoU-band loose-box rule without other runs to confirm it.
        alt_box_field: metadata key of a second box to check the box against (None: skip).

    Returns:
        Arrow table with :data:`COLUMNS`: ``rank``, ``score``, ``reason``, ``reference_id``,
        ``annotation_id`` (the GT concerned, if any), ``prediction_id`` (the prediction behind it, if
        any), ``label``, ``suggested_label``, the box under review (``x, y, width, height``) and the
        suggested one (``suggested_*``), ``confidence``, ``iou``, ``support`` (runs agreeing),
        ``explanation``, keys and ``image_location``.
    """
    store: Store = run.ws.store
    want = _reasons(reasons)
    thr = match_threshold(store, run.id, iou_threshold)
    others = _run_list(run, other_runs)
    runs = pa.table({"run_id": pa.array([run.id] + [r.id for r in others], pa.int32()),
                     "thr": pa.array([thr] + [match_threshold(store, r.id, None) for r in others], pa.float64())})
    versions = {r.name: store.scalar("SELECT label_version FROM runs WHERE run_id = ?", [r.id]) for r in [run] + others}
    if len(set(versions.values())) > 1:
        raise ValidationError(f"runs were committed against different label versions {versions}; commit them "
                              f"against the same labels (run.commit(label_version=...))", field="other_runs")
    params = {"run": run.id, "thr": thr, "min_conf": float(min_confidence), "prior": float(spurious_prior),
              "wprior": float(wrong_label_prior), "loose_iou": float(loose_iou), "single_w": float(single_run_weight),
              "alt_path": f"$.{alt_box_field}" if alt_box_field else "$.__none__",
              "alt_field": alt_box_field or "", "want": want, "min_score": float(min_score)}
    for name, v in (("spurious_prior", spurious_prior), ("wrong_label_prior", wrong_label_prior)):
        if not 0 < v < 1:
            raise ValidationError(f"{name} must be in (0, 1)", field=name)
    lim = "" if limit is None else f"LIMIT {int(limit)}"
    with registered(store, runs, "le_runs") as runs_name:
        sql = (f"WITH __le_runs_tbl AS (SELECT * FROM {runs_name}), {_features_sql('__le_runs_tbl', bandwidth)}, "
               f"{_candidates_sql()}\n"
               f"""SELECT row_number() OVER (ORDER BY c.score DESC, c.reason, i.reference_id, a.annotation_id,
                                                     p.annotation_id)::INTEGER AS rank,
                          c.score, c.reason, i.reference_id, a.annotation_id, p.annotation_id AS prediction_id,
                          c.label, c.suggested_label, c.x, c.y, c.w AS width, c.h AS height,
                          c.sx AS suggested_x, c.sy AS suggested_y, c.sw AS suggested_width,
                          c.sh AS suggested_height, c.conf AS confidence, c.iou, c.support::INTEGER AS support,
                          c.explanation, c.item_id, c.ann_key, c.pred_key, i.image_location
                   FROM allc c JOIN items i USING (item_id)
                   LEFT JOIN annotations a ON a.ann_key = c.ann_key
                   LEFT JOIN predictions p ON p.pred_key = c.pred_key
                   WHERE c.score > 0 AND c.score >= $min_score AND list_contains($want, c.reason)
                   ORDER BY rank {lim}""")
        return store.arrow(sql, used_params(sql, params))


def _reasons(reasons: str | Iterable[str] | None) -> list[str]:
    if reasons is None:
        return list(REASONS)
    vals = [reasons] if isinstance(reasons, str) else list(reasons)
    bad = [r for r in vals if r not in REASONS]
    if bad:
        raise ValidationError(f"unknown reason {bad[0]!r}; expected some of {list(REASONS)}", field="reasons")
    return vals
