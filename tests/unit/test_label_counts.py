"""item_counts and item_count_columns: the per-item GT counts behind ``annotations.*`` queries stay exactly
the current rows.

After every kind of label change (annotate, annotate(update=True), correct, delete, add, undo, undo of an
undo, one-version apply_changes, dataset deletion, raw SQL) both tables must equal fresh per-item counts of
the current annotation rows (per label, per kind and in total; the columns one row per item), and queries
answered from either must equal the same queries answered from ``annotations``.
"""
from __future__ import annotations

import random
import re

import pytest

import engine
from engine.store import count_columns, label_counts
from engine.execution.catalog import DuckDBCatalog
from engine.execution.runner import compile_for, execute
from queries import compile_query

QUERIES = ["annotations.count > 2", "annotations.cat >= 2", "annotations.dog = 0", "annotations.cat + annotations.dog >= 3",
           "annotations.box.count >= 2", "annotations.polygon.count > 0 OR annotations.cow > 0",
           "annotations.cat > annotations.dog ORDER BY annotations.count DESC LIMIT 3",
           "annotations.cat + annotations.dog + annotations.cow + annotations.box.count - annotations.count = 2",
           "annotations.count - annotations.box.count >= 1 ORDER BY annotations.cat DESC",
           "annotations.cat + annotations.dog < 2 AND annotations.count > 0"]


class _NoCounts(DuckDBCatalog):
    def label_counts(self) -> bool:
        return False


class _NoColumns(DuckDBCatalog):
    def label_slots(self):
        return {}


_ORDER = " ORDER BY item_id, label NULLS LAST, kind NULLS LAST"


def fresh(ws, ds_id):
    """The rollup recounted independently: per item and label, per item and kind, per item."""
    current = "FROM annotations WHERE dataset_id = $ds AND valid_to IS NULL"
    return ws.store.con.execute(f"""
        SELECT item_id, label, NULL AS kind, count(*) AS n {current} GROUP BY item_id, label
        UNION ALL SELECT item_id, NULL, kind, count(*) {current} GROUP BY item_id, kind
        UNION ALL SELECT item_id, NULL, NULL, count(*) {current} GROUP BY item_id""" + _ORDER, {"ds": ds_id}).fetchall()


def kept(ws, ds_id):
    return ws.store.con.execute("SELECT item_id, label, kind, n FROM item_counts WHERE dataset_id = ?" + _ORDER,
                                [ds_id]).fetchall()


def slots(ws, ds_id) -> dict:
    return {(label, kind): slot for slot, label, kind in ws.store.con.execute(
        "SELECT slot, label, kind FROM count_column_slots WHERE dataset_id = ?", [ds_id]).fetchall()}


def kept_columns(ws, ds_id) -> dict:
    rows = ws.store.con.execute("SELECT * EXCLUDE (dataset_id) FROM item_count_columns WHERE dataset_id = ?",
                                [ds_id]).fetchall()
    assert len({r[0] for r in rows}) == len(rows)  # one row per item
    return {r[0]: list(r[1:]) for r in rows}


def fresh_columns(ws, ds_id) -> dict:
    """What item_count_columns must hold under the dataset's column slots: every count of the item in its
    column (0 when the item has none), 0 in a column no count holds; a row for each item with annotations."""
    out: dict = {}
    where = slots(ws, ds_id)
    for item, label, kind, n in fresh(ws, ds_id):
        row = out.setdefault(item, [0] * count_columns.SLOTS)
        if (label, kind) in where:
            row[where[(label, kind)]] = n
    return out


def named(q: str) -> set:
    """The (label, kind) counts a query of QUERIES names."""
    keys = set()
    for name, count in re.findall(r"annotations\.(\w+)(\.count)?", q):
        keys.add((None, None) if name == "count" else (None, name) if count else (name, None))
    return keys


def check(ws, ds, columns: bool = True):
    """Counts equal a fresh GROUP BY, the catalog trusts them, and every query agrees with the fallbacks;
    a query of several counts reads the columns when every count it names has one (a label no item has
    has none), one of a single count reads item_counts.

    ``columns``: every count of the dataset has a column (no more than SLOTS of them). A dataset whose
    counts its first writes deferred holds none, answers from ``annotations``, and gets them from its
    next DSL query."""
    if label_counts.deferred(ws.store, ds.id):
        assert kept(ws, ds.id) == [] and kept_columns(ws, ds.id) == {}
        assert not DuckDBCatalog(ws.store, ds.id).label_counts()
        assert "item_count" not in compile_query(QUERIES[3], DuckDBCatalog(ws.store, ds.id), strict=False).sql()
        compile_for(ds, QUERIES[0], strict=False)  # the first DSL query builds them
        assert not label_counts.deferred(ws.store, ds.id)
    assert kept(ws, ds.id) == fresh(ws, ds.id)
    assert kept_columns(ws, ds.id) == fresh_columns(ws, ds.id)
    catalog = DuckDBCatalog(ws.store, ds.id)
    assert catalog.label_counts()
    assert catalog.label_slots() == slots(ws, ds.id)
    assert len(set(slots(ws, ds.id).values())) == len(slots(ws, ds.id))  # a column holds one count
    if columns:
        # (a count whose last annotation went keeps its column until a rebuild)
        assert {(label, kind) for _, label, kind, _ in fresh(ws, ds.id)} <= set(slots(ws, ds.id))
    for q in QUERIES:
        fast = compile_for(ds, q, strict=False)
        assert ("item_count_columns" in fast.sql()) == (len(named(q)) > 1 and named(q) <= set(slots(ws, ds.id))), q
        assert "GROUP BY" not in fast.sql(), q
        rollup = compile_query(q, _NoColumns(ws.store, ds.id), strict=False)
        assert "item_counts" in rollup.sql() and "item_count_columns" not in rollup.sql(), q
        slow = compile_query(q, _NoCounts(ws.store, ds.id), strict=False)
        assert "item_counts" not in slow.sql() and "item_count_columns" not in slow.sql()
        expected = execute(ds, slow).to_pylist()
        assert execute(ds, fast).to_pylist() == expected, q
        assert execute(ds, rollup).to_pylist() == expected, q
        if {label for label, _ in named(q) if label} <= {label for _, label, _, _ in fresh(ws, ds.id)}:
            assert ds.query(q).to_pylist() == expected, q  # strict: known labels only


def box(label, ref, aid, x=1):
    return engine.BoxAnnotation(label, ref, aid, x=x, y=1, width=5, height=5)


@pytest.fixture
def ds(ws):
    d = ws.create_dataset("d")
    d.append([engine.DatasetItem(f"{r}.png", r, width=100, height=80) for r in "abcdef"], check_images=False)
    return d


def test_counts_follow_every_label_change(ws, ds):
    ds.annotate([box("cat", "a", "1"), box("cat", "a", "2"), box("dog", "a", "3"), box("cat", "b", "1"),
                 box("dog", "c", "1"), box("dog", "c", "2"), box("cat", "c", "3"), box("dog", "c", "4"),
                 engine.PolygonAnnotation("cat", "c", "5", vertices=[(1, 1), (9, 1), (9, 9)])])
    check(ws, ds)
    ds.annotate([box("cow", "d", "1"), box("cat", "d", "2")])  # second ingest: new items only
    check(ws, ds)
    ds.annotate([box("dog", "a", "1", x=2), box("cat", "e", "1")], update=True)  # replace + new
    check(ws, ds)
    ds.correct("3", reference_id="c", label="dog")
    check(ws, ds)
    ds.delete_annotations([("c", "1"), ("a", "2")])
    check(ws, ds)
    ds.add_missing([box("cow", "f", "9"), box("cat", "a", "9")])
    check(ws, ds)
    ds.apply_changes(add=[box("cat", "b", "7")], change=[{"reference_id": "b", "annotation_id": "1", "label": "dog"}],
                     delete=[("d", "1")])
    check(ws, ds)
    for _ in range(3):
        ds.undo()
        check(ws, ds)
    ds.undo(4)  # out of order: the relabel of c/3
    check(ws, ds)


def test_counts_match_random_histories(ws, ds):
    rng = random.Random(7)
    labels = ["cat", "dog", "cow"]
    ds.annotate([box(rng.choice(labels), r, str(k)) for r in "abcdef" for k in range(rng.randint(0, 5))])
    check(ws, ds)
    for _ in range(12):
        cur = [(r["reference_id"], r["annotation_id"]) for r in ds.annotations().to_pylist()]
        op = rng.choice(["correct", "delete", "add", "undo"])
        if op == "correct" and cur:
            ref, aid = rng.choice(cur)
            ds.correct(aid, reference_id=ref, label=rng.choice(labels))
        elif op == "delete" and cur:
            ds.delete_annotations(rng.sample(cur, min(2, len(cur))))
        elif op == "add":
            ds.add_missing([box(rng.choice(labels), rng.choice("abcdef"), f"n{rng.random()}")])
        else:
            try:
                ds.undo()
            except engine.LoupeError:
                pass
        check(ws, ds)


def test_datasets_are_counted_apart_and_deleted_with_their_counts(ws, ds):
    ds.annotate([box("cat", "a", "1")])
    other = ws.create_dataset("other")
    other.append([engine.DatasetItem("x.png", "x", width=10, height=10)], check_images=False)
    other.annotate([box("cat", "x", "1", x=0), box("cat", "x", "2", x=0)])
    check(ws, ds)
    check(ws, other)
    ws.delete_dataset("other")
    for t in label_counts.TABLES + count_columns.TABLES:
        assert ws.store.con.execute(f"SELECT count(*) FROM {t} WHERE dataset_id = ?", [other.id]).fetchone()[0] == 0
    check(ws, ds)


def test_rows_written_by_hand_are_not_trusted_until_recounted(ws, ds):
    ds.annotate([box("cat", "a", "1")])
    assert ds.query("annotations.cat = 2").num_rows == 0
    ws.store.con.execute("INSERT INTO annotations SELECT * REPLACE (ann_key + 100 AS ann_key) FROM annotations")
    catalog = DuckDBCatalog(ws.store, ds.id)
    assert not catalog.label_counts() and not catalog.label_slots()
    assert "item_count" not in compile_for(ds, "annotations.cat = 2").sql()
    assert ds.query("annotations.cat = 2").num_rows == 1  # answered from annotations
    with ws.store.transaction():
        label_counts.rebuild(ws.store, ds.id)
    check(ws, ds)
    assert ds.query("annotations.cat = 2").num_rows == 1
    assert "item_counts" in compile_for(ds, "annotations.cat = 2").sql()
    assert "item_count_columns" in compile_for(ds, "annotations.cat + annotations.count = 3").sql()


def test_older_workspace_gets_the_tables_and_read_only_ones_fall_back(tmp_path):
    path = tmp_path / "old.duckdb"
    ws = engine.connect(path)
    d = ws.create_dataset("d")
    d.append([engine.DatasetItem("a.png", "a", width=10, height=10)], check_images=False)
    d.annotate([box("cat", "a", "1", x=0), box("cat", "a", "2", x=0), box("dog", "a", "3", x=0)])
    ws.store.con.execute("DROP TABLE item_counts")
    ws.store.con.execute("DROP TABLE label_count_versions")
    ws.close()
    ro = engine.connect(path, read_only=True)  # cannot add tables: queries read annotations
    assert not label_counts.present(ro.store)
    assert ro.get_dataset("d").query("annotations.cat = 2 AND annotations.dog = 1").num_rows == 1
    ro.close()
    ws = engine.connect(path)  # writable: created and filled on open
    assert label_counts.present(ws.store)
    check(ws, ws.get_dataset("d"))
    ws.close()


def test_workspace_with_the_replaced_per_label_table_is_migrated(tmp_path):
    """A workspace written with item_label_counts (one row per item, label and kind, no rollup rows):
    read-only opens answer from annotations, the first writable open fills item_counts and drops it."""
    path = tmp_path / "old.duckdb"
    ws = engine.connect(path)
    d = ws.create_dataset("d")
    d.append([engine.DatasetItem(f"{r}.png", r, width=10, height=10) for r in "ab"], check_images=False)
    d.annotate([box("cat", "a", "1", x=0), box("cat", "a", "2", x=0), box("dog", "a", "3", x=0),
                engine.PolygonAnnotation("cat", "b", "1", vertices=[(1, 1), (9, 1), (9, 9)])])
    con = ws.store.con
    con.execute("DROP TABLE item_counts")
    con.execute("""CREATE TABLE item_label_counts (dataset_id INTEGER NOT NULL, item_id BIGINT NOT NULL,
                   label VARCHAR NOT NULL, kind VARCHAR NOT NULL, n BIGINT NOT NULL)""")
    con.execute("""INSERT INTO item_label_counts SELECT dataset_id, item_id, label, kind, count(*) FROM annotations
                   WHERE valid_to IS NULL GROUP BY ALL""")
    ws.close()
    expected = {"annotations.cat = 2 AND annotations.dog = 1": ["a"], "annotations.count = 3": ["a"],
                "annotations.polygon.count = 1 AND annotations.cat = 1": ["b"], "annotations.box.count >= 1": ["a"]}

    ro = engine.connect(path, read_only=True)
    assert not label_counts.present(ro.store)
    rd = ro.get_dataset("d")
    assert not DuckDBCatalog(ro.store, rd.id).label_counts()
    for q, refs in expected.items():
        assert "item_counts" not in compile_for(rd, q).sql()
        assert rd.query(q).column("reference_id").to_pylist() == refs, q
    ro.close()

    ws = engine.connect(path)
    assert label_counts.present(ws.store) and not ws.store.has_tables(["item_label_counts"])
    d = ws.get_dataset("d")
    check(ws, d)
    for q, refs in expected.items():
        assert d.query(q).column("reference_id").to_pylist() == refs, q
    ws.close()


def test_a_label_named_like_a_kind_is_counted_apart_from_the_kind(ws, ds):
    """Label rows and kind rows differ by which column is NULL, so a label "box" is not the kind box."""
    poly = engine.PolygonAnnotation
    ds.annotate([box("box", "a", "1"), box("box", "a", "2"), box("cat", "a", "3"),
                 poly("box", "b", "1", vertices=[(1, 1), (9, 1), (9, 9)]), box("cat", "b", "2"),
                 box("cat", "c", "1"), box("cat", "c", "2"), box("cat", "c", "3")])
    check(ws, ds)
    expected = {"annotations.box = 2": ["a"],                # the label
                'annotations."box".count = 1': ["b"],        # the label, quoted
                "annotations.box.count = 3": ["a", "c"],     # the kind
                "annotations.box.count = 3 AND annotations.box = 0": ["c"],
                "annotations.box.count = 1": ["b"],
                "annotations.box + annotations.box.count = 5": ["a"],
                "annotations.box > 0 AND annotations.polygon.count = 0": ["a"]}
    for q, refs in expected.items():
        several = q.count("annotations.") > 1
        assert ("item_count_columns" in compile_for(ds, q).sql()) == several, q
        assert several or "item_counts" in compile_for(ds, q).sql()
        rollup = compile_query(q, _NoColumns(ws.store, ds.id))
        assert "item_counts" in rollup.sql()
        for answer in (ds.query(q), execute(ds, rollup), execute(ds, compile_query(q, _NoCounts(ws.store, ds.id)))):
            assert answer.column("reference_id").to_pylist() == refs, q


def test_workspace_an_older_loupe_opened_again_is_recounted(tmp_path):
    """Both tables present: an older Loupe recreated item_label_counts and may have changed labels, keeping
    label_count_versions but not item_counts. Its counts are not trusted; a writable open recounts them."""
    path = tmp_path / "both.duckdb"
    ws = engine.connect(path)
    d = ws.create_dataset("d")
    d.append([engine.DatasetItem("a.png", "a", width=10, height=10)], check_images=False)
    d.annotate([box("cat", "a", "1", x=0), box("dog", "a", "2", x=0)])
    con = ws.store.con
    con.execute("""CREATE TABLE item_label_counts (dataset_id INTEGER NOT NULL, item_id BIGINT NOT NULL,
                   label VARCHAR NOT NULL, kind VARCHAR NOT NULL, n BIGINT NOT NULL)""")
    con.execute("DELETE FROM item_counts WHERE label = 'dog'")  # what that Loupe's relabel would have missed
    ws.close()

    ro = engine.connect(path, read_only=True)
    assert not label_counts.present(ro.store)
    assert ro.get_dataset("d").query("annotations.dog = 1").num_rows == 1
    ro.close()

    ws = engine.connect(path)
    assert label_counts.present(ws.store) and not ws.store.has_tables(["item_label_counts"])
    check(ws, ws.get_dataset("d"))
    ws.close()


def test_counts_past_the_columns_read_item_counts(ws, ds):
    """72 counts (the total, the kind box, 70 labels): the total, the kind and the 62 labels on most items
    get the 64 columns; a query naming another label reads item_counts, with the same answers. A label
    first seen when the columns are taken gets none; a rebuild hands them out again."""
    refs = "abcdef"
    ds.annotate([box(f"l{k:02d}", r, f"{k}-{r}") for k in range(70) for r in refs[:1 + k % 6]])
    check(ws, ds, columns=False)
    held = slots(ws, ds.id)
    assert len(held) == count_columns.SLOTS and (None, None) in held and (None, "box") in held
    lacking = sorted(f"l{k:02d}" for k in range(70) if (f"l{k:02d}", None) not in held)
    assert lacking == ["l24", "l30", "l36", "l42", "l48", "l54", "l60", "l66"]  # on one item, last by name
    cases = {"annotations.l05 + annotations.l11 >= 2": True, "annotations.l00 + annotations.l05 = 2": True,
             "annotations.l05 + annotations.l66 = 2": False, "annotations.l66 >= 1 OR annotations.count > 69": False}
    for q, reads_columns in cases.items():
        fast = compile_for(ds, q)
        assert ("item_count_columns" in fast.sql()) == reads_columns, q
        slow = compile_query(q, _NoCounts(ws.store, ds.id))
        assert ds.query(q).to_pylist() == execute(ds, slow).to_pylist() == execute(ds, fast).to_pylist(), q
    assert ds.query("annotations.l05 + annotations.l66 = 2").column("reference_id").to_pylist() == ["a"]
    ds.add_missing([box("zz", "b", "z1"), box("l01", "c", "z2")])  # no column free for zz
    check(ws, ds, columns=False)
    assert ("zz", None) not in slots(ws, ds.id) and "item_count_columns" not in compile_for(ds, "annotations.zz = 1").sql()
    assert ds.query("annotations.zz + annotations.l01 = 2").column("reference_id").to_pylist() == ["b"]
    ds.delete_annotations([(r, f"{k}-{r}") for k in range(1, 70, 6) for r in "ab"])  # l01, l07, ...: 4 items left
    check(ws, ds, columns=False)
    with ws.store.transaction():
        label_counts.rebuild(ws.store, ds.id)
    check(ws, ds, columns=False)
    assert ("zz", None) in slots(ws, ds.id)  # on one item, first by name among those


def test_counts_written_without_the_columns_are_not_read_from_them(ws, ds, monkeypatch):
    """An older Loupe keeps item_counts but not item_count_columns: queries then read item_counts, and the
    next write recounts the columns whole (a refresh of the changed items alone would miss the older
    change)."""
    ds.annotate([box("cat", "a", "1"), box("dog", "a", "2"), box("cat", "b", "1")])
    check(ws, ds)
    with monkeypatch.context() as m:
        m.setattr(count_columns, "refresh", lambda *a, **k: None)  # what the older Loupe's write does
        ds.correct("2", reference_id="a", label="cat")
    catalog = DuckDBCatalog(ws.store, ds.id)
    assert catalog.label_counts() and not catalog.label_slots()
    assert not count_columns.in_step(ws.store, ds.id)
    q = "annotations.cat + annotations.box.count = 4"
    assert "item_counts" in compile_for(ds, q).sql() and "item_count_columns" not in compile_for(ds, q).sql()
    assert ds.query(q).column("reference_id").to_pylist() == ["a"]
    assert ds.query("annotations.cat = 2").column("reference_id").to_pylist() == ["a"]
    ds.add_missing([box("dog", "c", "1")])  # the columns of items a and b were stale: recounted whole
    check(ws, ds)
    assert ds.query("annotations.cat = 2").column("reference_id").to_pylist() == ["a"]


def test_raw_sql_writes_are_recounted_into_the_columns(ws, ds):
    ds.annotate([box("cat", "a", "1"), box("dog", "a", "2")])
    ws.sql("UPDATE annotations SET valid_to = 1 WHERE annotation_id = '2'")  # closed by hand: no API refresh
    ws.sql("""INSERT INTO annotations SELECT * REPLACE (ann_key + 100 AS ann_key, item_id + 1 AS item_id, 'emu' AS label)
              FROM annotations WHERE annotation_id = '1'""")
    assert ds.query("annotations.emu + annotations.cat = 1").column("reference_id").to_pylist() == ["a", "b"]
    check(ws, ds)
    assert ("emu", None) in slots(ws, ds.id)


def test_workspace_without_the_columns_gets_them_and_read_only_ones_read_item_counts(tmp_path):
    path = tmp_path / "old.duckdb"
    ws = engine.connect(path)
    d = ws.create_dataset("d")
    d.append([engine.DatasetItem(f"{r}.png", r, width=10, height=10) for r in "ab"], check_images=False)
    d.annotate([box("cat", "a", "1", x=0), box("cat", "a", "2", x=0), box("dog", "a", "3", x=0), box("dog", "b", "1")])
    d.query("annotations.count > 0")  # builds the counts the annotate deferred
    for t in count_columns.TABLES:
        ws.store.con.execute(f"DROP TABLE {t}")
    ws.close()
    q = "annotations.cat + annotations.dog = 3"
    ro = engine.connect(path, read_only=True)
    rd = ro.get_dataset("d")
    assert label_counts.present(ro.store) and not count_columns.present(ro.store)
    assert DuckDBCatalog(ro.store, rd.id).label_counts() and not DuckDBCatalog(ro.store, rd.id).label_slots()
    assert "item_counts" in compile_for(rd, q).sql()
    assert rd.query(q).column("reference_id").to_pylist() == ["a"]
    ro.close()
    ws = engine.connect(path)  # writable: created and filled on open
    d = ws.get_dataset("d")
    assert count_columns.present(ws.store)
    check(ws, d)
    assert "item_count_columns" in compile_for(d, q).sql() and d.query(q).column("reference_id").to_pylist() == ["a"]
    ws.close()
