-- Compare the labels a tool sent back (__tool) with the current labels of the same items (__cur).
-- One row per object: action add | delete | change | same, with both sides' label and geometry.
-- $tol: coordinate tolerance in pixels (tools round coordinates when they write them).
SELECT
    CASE
        WHEN c.annotation_id IS NULL THEN 'add'
        WHEN t.reference_id IS NULL THEN 'delete'
        WHEN t.kind <> c.kind THEN 'replace'
        WHEN t.kind = 'polygon' AND (len(t.polygon[1]) <> len(c.polygon[1]) OR list_max(list_transform(
                 list_zip(t.polygon[1], c.polygon[1]), lambda p: abs(p[1] - p[2]))) > $tol) THEN 'replace'
        WHEN t.label <> c.label
             OR (t.kind = 'box' AND greatest(abs(t.x - c.x), abs(t.y - c.y), abs(t.width - c.width),
                                             abs(t.height - c.height)) > $tol) THEN 'change'
        ELSE 'same'
    END AS action,
    coalesce(t.reference_id, c.reference_id) AS reference_id,
    coalesce(c.annotation_id, t.annotation_id) AS annotation_id,
    t.row_number AS tool_row,
    coalesce(t.kind, c.kind) AS kind,
    c.label AS label_before, t.label AS label_after,
    t.label <> c.label AS label_changed,
    t.kind = 'box' AND c.kind = 'box' AND greatest(abs(t.x - c.x), abs(t.y - c.y), abs(t.width - c.width),
                                                   abs(t.height - c.height)) > $tol AS geometry_changed,
    t.x, t.y, t.width, t.height, t.polygon
FROM __tool t
FULL OUTER JOIN __cur c ON t.reference_id = c.reference_id AND t.annotation_id = c.annotation_id
ORDER BY reference_id, coalesce(t.row_number, 1e18), annotation_id
