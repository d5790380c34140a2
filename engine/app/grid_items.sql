-- The grid's unfiltered result: every item of dataset $ds in insertion order, only what a cell needs.
SELECT reference_id, width, height FROM items WHERE dataset_id = $ds ORDER BY item_id
