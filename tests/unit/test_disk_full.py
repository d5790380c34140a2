"""Disk full (issue 13 B2): a Loupe error naming the workspace, nothing of the batch written, a failed
checkpoint loud (warned at a release, raised at close and by ws.checkpoint()), `loupe checkpoint`.

Once on a real full filesystem (a small tmpfs, where mounting is allowed), and always by failing the
DuckDB call itself with the error DuckDB gives on a full disk (what the real run printed)."""
from __future__ import annotations

import subprocess
import sys
import warnings

import duckdb
import pytest

import engine
from engine.errors import CheckpointError, WorkspaceFull

_ENOSPC = 'Could not write file "{path}.wal": No space left on device'


def _items(tag: str, n: int, pad: int = 0) -> list:
    return [engine.DatasetItem(f"{tag}/{i}.png" + "x" * pad, f"{tag}-{i}" + "y" * pad, width=10, height=10)
            for i in range(n)]


class _FullDisk:
    """A DuckDB connection whose COMMIT / CHECKPOINT fail as on a full disk (the rest passes through)."""

    def __init__(self, con, path: str, fail: tuple[str, ...]):
        self._con, self._path, self._fail = con, path, fail

    def execute(self, query, *args, **kwargs):
        head = query.strip().split()[0].upper() if isinstance(query, str) else ""
        if head in self._fail:
            if head == "CHECKPOINT":
                raise duckdb.FatalException("Failed to create checkpoint because of error: "
                                            + _ENOSPC.format(path=self._path))
            raise duckdb.TransactionException("Failed to commit: " + _ENOSPC.format(path=self._path))
        return self._con.execute(query, *args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._con, name)


def _fill(store, fail: tuple[str, ...]) -> None:
    root = store._con  # the root connection wrapper; its raw DuckDB connection is swapped
    root._con = _FullDisk(root._con, store.path, fail)


def test_disk_full_commit_is_a_loupe_error_and_writes_nothing(tmp_path):
    db = tmp_path / "w.duckdb"
    ws = engine.connect(db, shared=False)
    ds = ws.create_dataset("d")
    ds.append(_items("a", 3), check_images=False)
    real = ws.store._con._con
    _fill(ws.store, ("COMMIT",))
    with pytest.raises(WorkspaceFull, match=f"workspace {db}: the disk is full, nothing of this operation"):
        ds.append(_items("b", 5), check_images=False)
    ws.store._con._con = real
    assert ws.sql("SELECT count(*) AS n FROM items").column("n")[0].as_py() == 3
    ws.close()


def test_failed_checkpoint_is_loud(tmp_path):
    db = tmp_path / "w.duckdb"
    ws = engine.connect(db)  # shared: released between operations
    ds = ws.create_dataset("d")
    with ws.hold():
        ds.append(_items("a", 3), check_images=False)
        _fill(ws.store, ("CHECKPOINT",))
    with pytest.warns(RuntimeWarning, match=r"checkpoint failed \(the disk is full\).*safe in .*\.wal"):
        ws.store._gate.release()  # what the idle release does
    assert "loupe checkpoint" in ws.store.checkpoint_warning
    with ws.hold():
        _fill(ws.store, ("CHECKPOINT",))
        with pytest.raises(CheckpointError, match="keep .* together"):
            ws.checkpoint()
    _fill(ws.store, ("CHECKPOINT",))
    with pytest.raises(CheckpointError):
        ws.close()
    with engine.connect(db) as again:  # the data was safe in FILE.wal
        assert again.sql("SELECT count(*) AS n FROM items").column("n")[0].as_py() == 3


def test_checkpoint_api_and_command_leave_one_file(tmp_path):
    db = tmp_path / "w.duckdb"
    ws = engine.connect(db, shared=False)
    ds = ws.create_dataset("d")
    ds.append(_items("a", 50), check_images=False)
    assert (tmp_path / "w.duckdb.wal").stat().st_size > 0
    ws.checkpoint()
    wal = tmp_path / "w.duckdb.wal"
    assert not wal.exists() or wal.stat().st_size == 0
    ws.sql("INSERT INTO loupe_meta VALUES ('k', 'v')")
    ws.close()
    out = subprocess.run([sys.executable, "-m", "engine", "checkpoint", "--db", str(db)], capture_output=True,
                         text=True)
    assert out.returncode == 0, out.stderr
    assert "checkpointed" in out.stdout and "0 bytes left" in out.stdout


@pytest.fixture
def small_fs(tmp_path):
    mnt = tmp_path / "fs"
    mnt.mkdir()
    out = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)], capture_output=True, text=True)
    if out.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here ({out.stderr.strip()}); the injected tests cover it")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def test_real_full_disk(small_fs):
    db = small_fs / "w.duckdb"
    ws = engine.connect(db)
    ds = ws.create_dataset("d")
    committed = 0
    with pytest.raises(WorkspaceFull, match=f"workspace {db}: the disk is full") as err:
        for b in range(100):
            ds.append(_items(str(b), 200, pad=200), check_images=False)
            committed += 200
    assert "No space left on device" in str(err.value)
    assert committed > 0
    assert ws.sql("SELECT count(*) AS n FROM items").column("n")[0].as_py() == committed  # the full batch: none
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(CheckpointError, match="the disk is full"):
            ws.checkpoint()
        with pytest.raises(CheckpointError):
            ws.close()
    subprocess.run(["mount", "-o", "remount,size=16m", str(small_fs)], check=True)  # free space
    out = subprocess.run([sys.executable, "-m", "engine", "checkpoint", "--db", str(db)], capture_output=True,
                         text=True)
    assert out.returncode == 0, out.stderr
    assert not (small_fs / "w.duckdb.wal").exists() or (small_fs / "w.duckdb.wal").stat().st_size == 0
    with engine.connect(db, read_only=True) as again:
        assert again.sql("SELECT count(*) AS n FROM items").column("n")[0].as_py() == committed
