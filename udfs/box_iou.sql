-- Box IoU macros for DuckDB, in pycocotools' exact float operation order (maskApi.c bbIou),
-- bit-identical to udfs/iou.py box_iou_pairs. Boxes are COCO [x, y, w, h]; all inputs are cast
-- to DOUBLE so integer columns cannot switch to integer arithmetic.
--   w = least(dx + dw, gx + gw) - greatest(dx, gx)   (0 when w <= 0)
--   h = least(dy + dh, gy + gh) - greatest(dy, gy)   (0 when h <= 0)
--   iou = (w * h) / (crowd ? dw * dh : (dw * dh + gw * gh) - w * h)
CREATE OR REPLACE MACRO box_iou(dx, dy, dw, dh, gx, gy, gw, gh, crowd) AS (
    CASE
        WHEN least(CAST(dw AS DOUBLE) + CAST(dx AS DOUBLE), CAST(gw AS DOUBLE) + CAST(gx AS DOUBLE))
             - greatest(CAST(dx AS DOUBLE), CAST(gx AS DOUBLE)) <= 0 THEN CAST(0 AS DOUBLE)
        WHEN least(CAST(dh AS DOUBLE) + CAST(dy AS DOUBLE), CAST(gh AS DOUBLE) + CAST(gy AS DOUBLE))
             - greatest(CAST(dy AS DOUBLE), CAST(gy AS DOUBLE)) <= 0 THEN CAST(0 AS DOUBLE)
        ELSE
            ((least(CAST(dw AS DOUBLE) + CAST(dx AS DOUBLE), CAST(gw AS DOUBLE) + CAST(gx AS DOUBLE))
              - greatest(CAST(dx AS DOUBLE), CAST(gx AS DOUBLE)))
             * (least(CAST(dh AS DOUBLE) + CAST(dy AS DOUBLE), CAST(gh AS DOUBLE) + CAST(gy AS DOUBLE))
              - greatest(CAST(dy AS DOUBLE), CAST(gy AS DOUBLE))))
            / CASE
                WHEN CAST(crowd AS BOOLEAN) THEN CAST(dw AS DOUBLE) * CAST(dh AS DOUBLE)
                ELSE (CAST(dw AS DOUBLE) * CAST(dh AS DOUBLE) + CAST(gw AS DOUBLE) * CAST(gh AS DOUBLE))
                     - (least(CAST(dw AS DOUBLE) + CAST(dx AS DOUBLE), CAST(gw AS DOUBLE) + CAST(gx AS DOUBLE))
                        - greatest(CAST(dx AS DOUBLE), CAST(gx AS DOUBLE)))
                       * (least(CAST(dh AS DOUBLE) + CAST(dy AS DOUBLE), CAST(gh AS DOUBLE) + CAST(gy AS DOUBLE))
                        - greatest(CAST(dy AS DOUBLE), CAST(gy AS DOUBLE)))
              END
    END
);

-- TRUE exactly where box_iou has a positive intersection (w > 0 and h > 0). Written as plain
-- inequalities (min(a, b) > max(c, d) <=> four comparisons) so DuckDB can plan range joins.
CREATE OR REPLACE MACRO box_overlaps(dx, dy, dw, dh, gx, gy, gw, gh) AS (
    CAST(dx AS DOUBLE) + CAST(dw AS DOUBLE) > CAST(gx AS DOUBLE)
    AND CAST(gx AS DOUBLE) + CAST(gw AS DOUBLE) > CAST(dx AS DOUBLE)
    AND CAST(dy AS DOUBLE) + CAST(dh AS DOUBLE) > CAST(gy AS DOUBLE)
    AND CAST(gy AS DOUBLE) + CAST(gh AS DOUBLE) > CAST(dy AS DOUBLE)
    AND CAST(dx AS DOUBLE) + CAST(dw AS DOUBLE) > CAST(dx AS DOUBLE)
    AND CAST(gx AS DOUBLE) + CAST(gw AS DOUBLE) > CAST(gx AS DOUBLE)
    AND CAST(dy AS DOUBLE) + CAST(dh AS DOUBLE) > CAST(dy AS DOUBLE)
    AND CAST(gy AS DOUBLE) + CAST(gh AS DOUBLE) > CAST(gy AS DOUBLE)
);
