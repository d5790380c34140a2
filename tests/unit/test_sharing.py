"""Several processes on one workspace file (issue 11 point 3): shared stores take turns on DuckDB's lock,
wait for it with a bounded timeout, and see each other's writes. Real processes, no mocks."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import engine

ROOT = Path(__file__).resolve().parents[2]


def _py(code: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, cwd=ROOT,
                          timeout=timeout)


def _items(tag: str, n: int) -> list:
    return [engine.DatasetItem(f"{tag}{i}.png", f"{tag}{i}", width=10, height=10, metadata={"n": i})
            for i in range(n)]


def _append_in_other_process(db: Path, tag: str, n: int, timeout: float = 30) -> subprocess.CompletedProcess:
    return _py(f"""
        import engine
        ws = engine.connect({str(db)!r}, timeout={timeout})
        ws.get_dataset("d").append([engine.DatasetItem(f"{tag}{{i}}.png", f"{tag}{{i}}", width=10, height=10,
                                    metadata={{"n": 100 + i}}) for i in range({n})], check_images=False)
        ws.close()
        print("wrote")
    """)


def test_idle_session_lets_others_write_and_sees_their_writes(tmp_path):
    db = tmp_path / "w.duckdb"
    ws = engine.connect(db)  # a long-lived session (notebook, App): kept open throughout
    ds = ws.create_dataset("d")
    ds.append(_items("a", 5), check_images=False)
    for _ in range(3):  # warm the query caches (copies are built on the second use in a generation)
        assert ds.query("metadata.n >= 0").num_rows == 5
    generation = ws.store.generation
    out = _append_in_other_process(db, "b", 3)
    assert out.stdout.strip() == "wrote", out.stderr
    assert ws.store.generation != generation  # the other process's write moved this store's generation
    assert ds.query("metadata.n >= 0").num_rows == 8  # caches saw it
    assert ds.query("metadata.n >= 100").column("reference_id").to_pylist() == ["b0", "b1", "b2"]
    assert ws.list_datasets().column("items").to_pylist() == [8]
    ws.close()


def test_open_sql_transaction_keeps_the_lock_and_the_waiter_names_it(tmp_path):
    db = tmp_path / "w.duckdb"
    ws = engine.connect(db)
    ws.create_dataset("d")
    ws.sql("BEGIN")
    ws.sql("INSERT INTO loupe_meta VALUES ('note', 'x')")
    out = _append_in_other_process(db, "b", 1, timeout=0.5)  # a connection is never released mid-transaction
    assert out.returncode != 0
    assert "WorkspaceLocked" in out.stderr and f"process {os.getpid()}" in out.stderr and "waited 0.5 s" in out.stderr
    ws.sql("COMMIT")
    out = _append_in_other_process(db, "c", 2)
    assert out.stdout.strip() == "wrote", out.stderr
    assert ws.sql("SELECT count(*) AS n FROM items").column("n")[0].as_py() == 2
    assert ws.sql("SELECT value FROM loupe_meta WHERE key = 'note'").column("value").to_pylist() == ["x"]
    ws.close()


def test_write_waits_for_a_busy_holder_instead_of_failing(tmp_path):
    db = tmp_path / "w.duckdb"
    engine.connect(db).create_dataset("d").ws.close()
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time, engine
        ws = engine.connect({str(db)!r})
        with ws.hold():  # a burst of operations: the lock is kept until it ends
            ws.list_datasets()
            print("holding", flush=True)
            time.sleep(1.0)
        print("released", flush=True)
        sys.stdin.readline()
    """)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert holder.stdout.readline().strip() == "holding"
        ws = engine.connect(db, timeout=60)  # waits for the burst to end, then opens
        ws.get_dataset("d").append(_items("x", 2), check_images=False)
        assert holder.stdout.readline().strip() == "released"
        assert ws.store.sharing_stats["max_wait_s"] > 0
        assert ws.sql("SELECT count(*) AS n FROM items").column("n")[0].as_py() == 2
        ws.close()
    finally:
        holder.communicate("\n", timeout=60)


def test_unshared_holder_fails_waiters_after_the_timeout(tmp_path):
    db = tmp_path / "w.duckdb"
    engine.connect(db).close()
    ws = engine.connect(db, shared=False)  # holds the file until close()
    out = _py(f"""
        import engine
        engine.connect({str(db)!r}, timeout=0.3)
    """)
    assert f"locked by process {os.getpid()}" in out.stderr and "shared=False" in out.stderr
    ws.close()
    assert _py(f"import engine; engine.connect({str(db)!r}, timeout=0).close(); print('ok')").stdout.strip() == "ok"


def test_two_writers_and_a_reader_lose_nothing():
    """The short version of benchmarks/sharing.py: two writer processes and an API reader for 3 s."""
    import tempfile

    from benchmarks.sharing import run

    with tempfile.TemporaryDirectory() as tmp:
        r = run(Path(tmp) / "shared.duckdb", seconds=3.0)
    for name in ("writer_a", "writer_b", "reader"):
        assert r[name]["errors"] == 0, r[name]["err"]
    assert r["writer_a"]["writes"] > 0 and r["writer_b"]["writes"] > 0 and r["reader"]["reads"] > 0
    assert r["rows_at_end"] == r["rows_written"]
    assert r["rows_per_writer"] == {"seed": 1, "a": r["writer_a"]["rows"], "b": r["writer_b"]["rows"]}
    assert r["reader"]["monotonic"]  # a reader never sees a row count go back


def test_idle_release_and_session_state(tmp_path):
    ws = engine.connect(tmp_path / "w.duckdb")
    gate = ws.store._gate
    gate.idle = 0.05
    ws.list_datasets()
    deadline = time.monotonic() + 60
    while gate.connected:  # an idle session lets the lock go by itself
        assert time.monotonic() < deadline
        time.sleep(0.02)
    ws.sql("CREATE TEMP TABLE scratch AS SELECT 42 AS a")  # session state: the connection is kept until close
    time.sleep(0.3)
    assert gate.connected
    assert ws.sql("SELECT a FROM scratch").column("a").to_pylist() == [42]
    ws.close()
    assert not gate.connected
