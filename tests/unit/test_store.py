"""Workspace store: schema creation, reopening, versions, locking, read-only, SQL to Arrow."""
from __future__ import annotations

import subprocess
import sys
import textwrap

import duckdb
import pyarrow as pa
import pytest

import engine
from engine.errors import LoupeError, SchemaVersionError, WorkspaceLocked


def test_in_memory_sql_returns_arrow(ws):
    t = ws.sql("SELECT 1 AS a, 'x' AS b")
    assert isinstance(t, pa.Table)
    assert t.to_pylist() == [{"a": 1, "b": "x"}]


def test_sql_params_and_errors(ws):
    assert ws.sql("SELECT ? + 1 AS v", [41]).column("v").to_pylist() == [42]
    with pytest.raises(LoupeError, match="SQL error"):
        ws.sql("SELECT * FROM no_such_table")


def test_reopen_file_keeps_data(tmp_path):
    db = tmp_path / "w.duckdb"
    with engine.connect(db) as ws:
        ws.create_dataset("d")
    with engine.connect(db) as ws:
        assert ws.list_datasets().column("name").to_pylist() == ["d"]


def test_newer_schema_version_is_refused(tmp_path):
    db = tmp_path / "w.duckdb"
    engine.connect(db).close()
    con = duckdb.connect(str(db))
    con.execute("UPDATE loupe_meta SET value = '999' WHERE key = 'schema_version'")
    con.close()
    with pytest.raises(SchemaVersionError, match="schema version 999"):
        engine.connect(db)


def test_foreign_duckdb_file_is_refused(tmp_path):
    db = tmp_path / "other.duckdb"
    con = duckdb.connect(str(db))
    con.execute("CREATE TABLE t(a INT)")
    con.close()
    with pytest.raises(LoupeError, match="not a Loupe workspace"):
        engine.connect(db)


def _hold_lock_script(db, read_only=False, shared=True) -> str:
    return textwrap.dedent(f"""
        import sys, time, engine
        ws = engine.connect({str(db)!r}, read_only={read_only}, shared={shared})
        ws.list_datasets()
        print("ready", flush=True)
        sys.stdin.readline()
    """)


def test_locked_file_names_holder_pid(tmp_path):
    db = tmp_path / "w.duckdb"
    engine.connect(db).close()
    holder = subprocess.Popen([sys.executable, "-c", _hold_lock_script(db, shared=False)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ready"
        with pytest.raises(WorkspaceLocked) as err:
            engine.connect(db, timeout=0.3)
        assert err.value.pid == holder.pid
        assert str(holder.pid) in str(err.value)
        assert "waited 0.3 s" in str(err.value) and "--read-only" not in str(err.value)
    finally:
        holder.communicate("\n", timeout=30)


def _refuse_then_probe(db, make_bad, shared):
    make_bad()
    with pytest.raises(LoupeError):
        engine.connect(db, shared=shared)
    probe = textwrap.dedent(f"""
        import duckdb
        duckdb.connect({str(db)!r}).close()  # no waiting: fails at once if the file is still locked
        print("opened")
    """)
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "opened", out.stderr


@pytest.mark.parametrize("shared", [True, False])
def test_refused_open_leaves_file_unlocked(tmp_path, shared):
    """Issue 13 B1: a refused open closes its connection on every path; another process opens at once."""
    db = tmp_path / "w.duckdb"
    engine.connect(db).close()

    def newer():
        con = duckdb.connect(str(db))
        con.execute("UPDATE loupe_meta SET value = '999' WHERE key = 'schema_version'")
        con.close()

    _refuse_then_probe(db, newer, shared)
    foreign = tmp_path / "foreign.duckdb"
    _refuse_then_probe(foreign, lambda: duckdb.connect(str(foreign)).execute("CREATE TABLE t(a INT)").close(), shared)


def test_many_read_only_processes(tmp_path):
    db = tmp_path / "w.duckdb"
    with engine.connect(db) as ws:
        ws.create_dataset("shared")
    readers = [
        subprocess.Popen([sys.executable, "-c", _hold_lock_script(db, read_only=True)], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True)
        for _ in range(3)
    ]
    try:
        for r in readers:
            assert r.stdout.readline().strip() == "ready"
        with engine.connect(db, read_only=True) as ws:  # a fourth reader, in this process
            assert ws.list_datasets().column("name").to_pylist() == ["shared"]
            with pytest.raises(LoupeError, match="read-only"):
                ws.create_dataset("nope")
    finally:
        for r in readers:
            r.communicate("\n", timeout=30)


def test_read_only_open_of_missing_file(tmp_path):
    with pytest.raises(LoupeError, match="does not exist"):
        engine.connect(tmp_path / "missing.duckdb", read_only=True)


def test_threads_read_while_one_writes(tmp_path):
    import threading

    ws = engine.connect(tmp_path / "w.duckdb")
    ds = ws.create_dataset("d")
    ds.append([engine.DatasetItem(f"{i}.png", str(i), width=10, height=10) for i in range(50)], check_images=False)
    errors: list[BaseException] = []

    def reader():
        try:
            for _ in range(20):
                n = ws.sql("SELECT count(*) AS n FROM items").column("n")[0].as_py()
                assert n >= 50
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=reader) for _ in range(3)]
    for t in threads:
        t.start()
    ds.append([engine.DatasetItem(f"{i}.png", str(i), width=10, height=10) for i in range(50, 100)], check_images=False)
    for t in threads:
        t.join()
    assert not errors
    assert ws.sql("SELECT count(*) AS n FROM items").column("n")[0].as_py() == 100
    ws.close()
