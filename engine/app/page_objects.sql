-- The GT boxes and (with a committed run) predictions of one grid page, with their match status.
-- $ds dataset id, $refs the page's reference ids, $run run id (-1: none), $thr the stored IoU threshold.
WITH page AS (
    SELECT item_id, reference_id FROM items WHERE dataset_id = $ds AND list_contains($refs, reference_id)
)
SELECT 'gt' AS source, page.reference_id, a.annotation_id, a.label, a.x, a.y, a.width, a.height,
       NULL::DOUBLE AS confidence, m.iou, m.best_iou, m.status, m.error_type, a.metadata::VARCHAR AS metadata,
       a.iscrowd, a.seq
FROM page
JOIN annotations a ON a.item_id = page.item_id AND a.dataset_id = $ds AND a.valid_to IS NULL
LEFT JOIN matches m ON m.run_id = $run AND m.iou_threshold = $thr AND m.source = 'gt' AND m.ann_key = a.ann_key
UNION ALL
SELECT 'prediction' AS source, page.reference_id, p.annotation_id, p.label, p.x, p.y, p.width, p.height,
       p.confidence, m.iou, m.best_iou, m.status, m.error_type, p.metadata::VARCHAR AS metadata,
       FALSE AS iscrowd, p.seq
FROM page
JOIN predictions p ON p.item_id = page.item_id AND p.run_id = $run
LEFT JOIN matches m ON m.run_id = $run AND m.iou_threshold = $thr AND m.source = 'prediction' AND m.pred_key = p.pred_key
ORDER BY source, seq
