-- Loupe workspace schema, version 1.
-- Surrogate keys (item_id, ann_key, pred_key ...) are assigned max+1.. by the single writer; user-facing ids
-- (reference_id, annotation_id) are strings unique per dataset / run.  No index constraints: they
-- slow bulk loads and DuckDB's constraint checks over-eagerly reject delete+insert in one
-- transaction; uniqueness is enforced by the ingest layer inside the writing transaction.

CREATE TABLE loupe_meta (key VARCHAR, value VARCHAR);


CREATE TABLE datasets (
    dataset_id    INTEGER NOT NULL,
    name          VARCHAR NOT NULL,
    created_at    TIMESTAMP NOT NULL,
    metadata      JSON,
    label_version INTEGER NOT NULL DEFAULT 0   -- current label state; bumped by every annotation change
);

CREATE TABLE items (
    item_id        BIGINT NOT NULL,            -- insertion order; evaluation orders images by it
    dataset_id     INTEGER NOT NULL,
    reference_id   VARCHAR NOT NULL,
    image_location VARCHAR,
    width          INTEGER,
    height         INTEGER,
    metadata       JSON
);

-- Ground truth. A row is one version of one annotation: it is visible in label versions
-- valid_from <= v < valid_to (valid_to NULL = still current).
CREATE TABLE annotations (
    ann_key       BIGINT NOT NULL,
    dataset_id    INTEGER NOT NULL,
    item_id       BIGINT NOT NULL,
    annotation_id VARCHAR NOT NULL,
    kind          VARCHAR NOT NULL,            -- box | polygon | segmentation | category | keypoints
    label         VARCHAR NOT NULL,
    x DOUBLE, y DOUBLE, width DOUBLE, height DOUBLE,   -- top-left box in pixels (derived for polygon/mask)
    polygon       DOUBLE[][],                  -- COCO polygon rings [x1, y1, x2, y2, ...]
    mask          UINTEGER[],                  -- COCO RLE counts, uncompressed, column-major, image size
    keypoints     DOUBLE[],                    -- x, y, v triples
    keypoint_names VARCHAR[],
    iscrowd       BOOLEAN NOT NULL DEFAULT FALSE,
    area          DOUBLE,
    metadata      JSON,
    seq           BIGINT NOT NULL,             -- original input order (COCO tie-breaking)
    valid_from    INTEGER NOT NULL,
    valid_to      INTEGER
);

-- Derived: current ground-truth counts per item (the `valid_to IS NULL` rows of `annotations` rolled up
-- with GROUPING SETS): one row per item and label (kind NULL), per item and kind (label NULL) and the item's
-- total (both NULL), so every per-item count query reads one row per item, with no GROUP BY.
-- Kept by engine/store/label_counts.py inside each label-changing transaction; label_count_versions says
-- which label version a dataset's counts reflect (queries fall back to `annotations` when it lags; -1: the
-- dataset's first writes deferred its counts to its first DSL query).
CREATE TABLE item_counts (
    dataset_id INTEGER NOT NULL,
    item_id    BIGINT NOT NULL,
    label      VARCHAR,                        -- NULL: every label (annotations.label is NOT NULL)
    kind       VARCHAR,                        -- NULL: every kind
    n          BIGINT NOT NULL
);

CREATE TABLE label_count_versions (
    dataset_id    INTEGER NOT NULL,
    label_version INTEGER NOT NULL,
    n_rows        BIGINT NOT NULL,             -- count(*) and max(ann_key) of the dataset's annotations rows
    max_key       BIGINT                       -- when the counts were taken (detects rows written by hand)
);

-- Derived: the same counts one row per item, one column per count (item_count_columns, count_column_slots,
-- count_column_state): created with generated DDL by engine/store/count_columns.py, which keeps them.

-- Derived: every item's scalar metadata leaves, one row per item and path (json_tree fullkey without '$.'),
-- the value in the column of its JSON type, so metadata filters join one path's rows instead of parsing
-- every item's JSON. Kept by engine/store/item_values.py inside each write of items.metadata.
CREATE TABLE item_metadata_values (
    dataset_id INTEGER NOT NULL,
    item_id    BIGINT NOT NULL,
    path       VARCHAR NOT NULL,
    v_num      DOUBLE,                         -- JSON numbers
    v_str      VARCHAR,                        -- JSON strings
    v_bool     BOOLEAN                         -- JSON booleans
);

-- n_items -1: the dataset's first writes deferred its values to its first DSL query
CREATE TABLE item_value_state (dataset_id INTEGER NOT NULL, n_items BIGINT NOT NULL, max_item BIGINT);
-- moved by every write of a dataset's item metadata (the DSL catalog re-reads metadata types when it moves)
CREATE TABLE item_metadata_version (dataset_id INTEGER NOT NULL, version BIGINT NOT NULL);

CREATE TABLE label_versions (
    dataset_id INTEGER NOT NULL,
    version    INTEGER NOT NULL,
    created_at TIMESTAMP NOT NULL,
    author     VARCHAR,
    reason     VARCHAR,
    operation  VARCHAR NOT NULL,               -- annotate | correct | delete | undo ...
    added      BIGINT NOT NULL,
    changed    BIGINT NOT NULL,
    deleted    BIGINT NOT NULL
);

CREATE TABLE models (
    model_id     INTEGER NOT NULL,
    name         VARCHAR NOT NULL,
    reference_id VARCHAR NOT NULL,
    metadata     JSON,
    created_at   TIMESTAMP NOT NULL
);

CREATE TABLE runs (
    run_id        INTEGER NOT NULL,
    model_id      INTEGER NOT NULL,
    dataset_id    INTEGER NOT NULL,
    name          VARCHAR NOT NULL,            -- unique in the workspace
    created_at    TIMESTAMP NOT NULL,
    metadata      JSON,
    committed_at  TIMESTAMP,
    label_version INTEGER,                     -- label state the commit matched against
    params        JSON                         -- commit parameters
);

CREATE TABLE predictions (
    pred_key      BIGINT NOT NULL,
    run_id        INTEGER NOT NULL,
    item_id       BIGINT NOT NULL,
    annotation_id VARCHAR NOT NULL,
    kind          VARCHAR NOT NULL,
    label         VARCHAR NOT NULL,
    x DOUBLE, y DOUBLE, width DOUBLE, height DOUBLE,
    polygon       DOUBLE[][],
    mask          UINTEGER[],
    keypoints     DOUBLE[],
    keypoint_names VARCHAR[],
    confidence    DOUBLE,
    class_pdf     MAP(VARCHAR, DOUBLE),
    area          DOUBLE,
    metadata      JSON,
    seq           BIGINT NOT NULL
);

-- The TP/FP/FN index written by commit: one row per prediction and per GT object of the run's dataset.
CREATE TABLE matches (
    run_id        INTEGER NOT NULL,
    iou_threshold DOUBLE NOT NULL,
    source        VARCHAR NOT NULL,            -- 'gt' | 'prediction'
    ann_key       BIGINT,                      -- the GT row (source = 'gt', or the partner of a prediction)
    pred_key      BIGINT,                      -- the prediction (source = 'prediction', or partner of a GT)
    item_id       BIGINT NOT NULL,
    iou           DOUBLE,                      -- IoU with the partner (NULL when unmatched)
    best_iou      DOUBLE,                      -- best IoU with any object of any label on the other side
    best_iou_key  BIGINT,                      -- that object
    status        VARCHAR NOT NULL,            -- tp | fp | fn | ignored
    error_type    VARCHAR                      -- TIDE type for fp / fn rows
);

-- Derived: per run, IoU threshold and item, the counts `predictions.tp / fp / fn` read (prediction tp / fp and
-- GT fn matches rows), for all labels (label NULL) and per label (of the GT row or the prediction). Written
-- by commit with the matches rows (engine/store/match_counts.py); the state row holds the run's matches row count
-- when they were written, so a reader can tell when they lag and count `matches` instead.
CREATE TABLE item_match_counts (
    run_id        INTEGER NOT NULL,
    iou_threshold DOUBLE NOT NULL,
    item_id       BIGINT NOT NULL,
    source        VARCHAR NOT NULL,
    status        VARCHAR NOT NULL,
    label         VARCHAR,                     -- NULL: every label
    n             BIGINT NOT NULL
);

CREATE TABLE match_count_state (run_id INTEGER NOT NULL, n_rows BIGINT NOT NULL);

-- Cached COCO evaluation of the last commit (metrics() without a subset reads it).
CREATE TABLE evaluations (
    run_id         INTEGER NOT NULL,
    iou_type       VARCHAR NOT NULL,
    label_version  INTEGER,
    class_agnostic BOOLEAN NOT NULL,
    stats          JSON NOT NULL,              -- the 12 COCO stats by name
    per_class      JSON NOT NULL,              -- [{label, ap, ap50, ar, gt, predictions}]
    created_at     TIMESTAMP NOT NULL
);

CREATE TABLE slices (
    slice_id     INTEGER NOT NULL,
    dataset_id   INTEGER NOT NULL,
    name         VARCHAR NOT NULL,
    kind         VARCHAR NOT NULL DEFAULT 'items',   -- items | objects
    query        VARCHAR,                      -- DSL text for dynamic slices
    compiled_sql VARCHAR,
    run_id       INTEGER,                      -- run context of a dynamic query, if any
    created_at   TIMESTAMP NOT NULL
);

CREATE TABLE slice_items (slice_id INTEGER NOT NULL, item_id BIGINT NOT NULL);
CREATE TABLE slice_objects (slice_id INTEGER NOT NULL, ann_key BIGINT, pred_key BIGINT);

-- Row-level log of label corrections (engine/curation/corrections.py): which annotation changed how, who and why.
-- The rows themselves stay in `annotations` (valid_from / valid_to); this adds the per-object reason.
CREATE TABLE label_changes (
    dataset_id    INTEGER NOT NULL,
    version       INTEGER NOT NULL,            -- the label version the change opened
    item_id       BIGINT NOT NULL,
    annotation_id VARCHAR NOT NULL,
    action        VARCHAR NOT NULL,            -- add | change | delete | restore
    old_ann_key   BIGINT,                      -- the row replaced or deleted (NULL for add)
    new_ann_key   BIGINT,                      -- the row written (NULL for delete)
    fields        VARCHAR[],                   -- what a change touched (label, box, iscrowd, metadata)
    reason        VARCHAR,
    author        VARCHAR,
    created_at    TIMESTAMP NOT NULL
);

-- Scenario tests (engine/analysis/scenarios.py): a named slice + criteria text (queries/scenario.lark).
CREATE TABLE scenarios (
    scenario_id     INTEGER NOT NULL,
    dataset_id      INTEGER NOT NULL,
    name            VARCHAR NOT NULL,          -- unique per dataset
    slice           VARCHAR,                   -- slice name; NULL = the whole dataset
    criteria        VARCHAR NOT NULL,
    description     VARCHAR,
    baseline_run_id INTEGER,                   -- default baseline for comparisons
    created_at      TIMESTAMP NOT NULL
);

-- One evaluation of a scenario for a run (history: never overwritten).
CREATE TABLE scenario_evaluations (
    evaluation_id   INTEGER NOT NULL,
    scenario_id     INTEGER NOT NULL,
    run_id          INTEGER NOT NULL,
    baseline_run_id INTEGER,
    label_version   INTEGER NOT NULL,
    criteria        VARCHAR NOT NULL,          -- the criteria text as evaluated
    passed          BOOLEAN NOT NULL,
    evaluated_at    TIMESTAMP NOT NULL
);

-- One row per criterion of an evaluation.
CREATE TABLE scenario_results (
    evaluation_id   INTEGER NOT NULL,
    position        INTEGER NOT NULL,          -- criterion index in the criteria text
    criterion       VARCHAR NOT NULL,          -- normalized text, e.g. bbox_recall(iou_threshold=0.5) > 0.8
    function        VARCHAR NOT NULL,
    params          JSON NOT NULL,
    op              VARCHAR NOT NULL,
    threshold       DOUBLE,                    -- the bound compared against (baseline-relative ones resolved)
    value           DOUBLE,                    -- the run's metric (NULL: undefined, e.g. no GT in the slice)
    baseline_value  DOUBLE,
    passed          BOOLEAN NOT NULL
);

-- Views for hand-written SQL (`loupe sql`, `ws.sql`; listed by the console's .help). They avoid the two
-- traps of the raw tables. Workspaces written before them get them on their next writable open
-- (engine/store/views.py).
-- `annotations` keeps every label version: a row is current while valid_to IS NULL.
CREATE VIEW current_annotations AS SELECT * FROM annotations WHERE valid_to IS NULL;

-- `matches` has a GT row AND a prediction row per match (count(*) of its TP rows is twice the TPs):
-- one row per (prediction, GT) match, from the prediction's side; status tp, or ignored (a crowd GT).
CREATE VIEW matched_pairs AS
SELECT m.run_id, m.iou_threshold, m.item_id, m.pred_key, m.ann_key, m.iou, m.status,
       p.label AS pred_label, a.label AS gt_label, p.confidence
FROM matches m JOIN predictions p ON p.pred_key = m.pred_key JOIN annotations a ON a.ann_key = m.ann_key
WHERE m.source = 'prediction' AND m.ann_key IS NOT NULL;
