-- The grid's unfiltered result: every item id of dataset $ds in insertion order (a page's rows are read per page).
SELECT item_id FROM items WHERE dataset_id = $ds ORDER BY item_id
