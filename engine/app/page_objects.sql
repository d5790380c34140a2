-- The GT boxes and (with a committed run) predictions of one grid page, with their match status.
-- $ds dataset id, $items the page's item ids, $run run id (-1: none), $thr the stored IoU threshold.
-- Every table is filtered by `item_id = ANY($items)` in its scan (a few hundred ids at most): DuckDB then
-- reads only those rows' columns instead of hash-joining all 700k boxes and 1.4M matches to the page.
WITH page AS (
    SELECT item_id, reference_id FROM items WHERE dataset_id = $ds AND item_id = ANY($items)
), gt AS (
    SELECT * FROM annotations WHERE item_id = ANY($items) AND dataset_id = $ds AND valid_to IS NULL
), pred AS (
    SELECT * FROM predictions WHERE item_id = ANY($items) AND run_id = $run
), m AS (
    SELECT source, ann_key, pred_key, iou, best_iou, status, error_type FROM matches
    WHERE item_id = ANY($items) AND run_id = $run AND iou_threshold = $thr
)
SELECT 'gt' AS source, page.reference_id, a.annotation_id, a.label, a.x, a.y, a.width, a.height,
       NULL::DOUBLE AS confidence, m.iou, m.best_iou, m.status, m.error_type, a.metadata::VARCHAR AS metadata,
       a.iscrowd, a.seq
FROM page
JOIN gt a ON a.item_id = page.item_id
LEFT JOIN m ON m.source = 'gt' AND m.ann_key = a.ann_key
UNION ALL
SELECT 'prediction' AS source, page.reference_id, p.annotation_id, p.label, p.x, p.y, p.width, p.height,
       p.confidence, m.iou, m.best_iou, m.status, m.error_type, p.metadata::VARCHAR AS metadata,
       FALSE AS iscrowd, p.seq
FROM page
JOIN pred p ON p.item_id = page.item_id
LEFT JOIN m ON m.source = 'prediction' AND m.pred_key = p.pred_key
ORDER BY source, seq
