"""The SQL console and `loupe query`, driven as a user would: piped stdin, and a real pseudo-terminal."""
from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

import engine

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    path = tmp_path_factory.mktemp("console") / "ws.duckdb"
    with engine.connect(path) as ws:
        ds = ws.create_dataset("street")
        ds.append([engine.DatasetItem(f"/img/{k}.png", f"img{k}", width=100, height=80,
                                      metadata={"camera": "rear" if k % 2 else "front", "frame": k})
                   for k in range(6)], check_images=False)
        ds.annotate([engine.BoxAnnotation("pedestrian", f"img{k}", x=1, y=1, width=5, height=5, annotation_id=f"a{k}{j}")
                     for k in range(6) for j in range(k)])
        ds.create_slice("test", reference_ids=["img1", "img2"])
        ws.create_dataset("empty")
        model = ws.add_model("det")
        model.create_run("r1", ds, [engine.BoxPrediction("pedestrian", "img5", x=1, y=1, width=5, height=5,
                                                         confidence=0.9, annotation_id="p0")])
    return str(path)


def loupe(*args: str, stdin: str = "", env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "engine", *args], input=stdin, capture_output=True, text=True,
                          cwd=REPO, env={**os.environ, **(env or {})}, timeout=120)


def test_piped_statements_commands_and_errors(db):
    script = "\n".join([
        ".tables",
        "SELECT reference_id",
        "  FROM items",
        "  WHERE metadata->>'camera' = 'rear'",
        "  ORDER BY reference_id;",
        "SELEC broken;",  # an error: printed, and the console goes on
        ".dataset street",
        ".dsl annotations.pedestrian >= 4",
        ".mode csv",
        ".dsl street metadata.frame < 2",
        ".mode json",
        ".objects item.annotations.count > 0 AND reference_id = 'img2'",
        ".objects annotations.count > 0",  # object fields differ: a suggestion, not a crash
        ".schema slices",
        ".slices",
        ".explain annotations.pedestrian >= 4",
        ".dsl annotations.pedestrain > 1",
        ".nonsense",
        ".help",
        ".quit",
        "SELECT 'after quit';",
    ]) + "\n"
    r = loupe("sql", "--db", db, stdin=script)
    assert r.returncode == 0, r.stderr
    out, err = r.stdout, r.stderr
    assert "annotations" in out and "slice_items" in out  # .tables
    assert "img1" in out and "img3" in out and "img5" in out  # multi-line SELECT
    assert "syntax error" in err.lower() or "parser error" in err.lower()
    assert "dataset: street" in out
    assert "img4" in out  # .dsl crowded
    assert "reference_id,image_location,width,height,metadata" in out  # csv mode
    objects = [json.loads(line) for line in out.splitlines() if line.startswith('{"source"')]
    assert len(objects) == 2 and {o["reference_id"] for o in objects} == {"img2"}
    assert "compiled_sql" in out  # .schema slices in json lines
    assert '"name": "test"' in out  # .slices
    assert ("COUNT(*)" in out or "item_counts" in out) and "'pedestrian'" in out  # .explain (counts table or boxes)
    assert "did you mean 'pedestrian'" in err
    assert "did you mean 'item.annotations.count'" in err
    assert "unknown command .nonsense" in err
    assert ".tables" in out  # .help
    assert "after quit" not in out


def test_statement_without_final_semicolon_runs_at_end_of_input(db):
    r = loupe("sql", "--db", db, stdin="SELECT 40 + 2 AS answer\n")
    assert r.returncode == 0 and "42" in r.stdout


def test_read_only_console_refuses_writes_and_keeps_going(db):
    r = loupe("sql", "--db", db, "--read-only",
              stdin="DELETE FROM items;\nSELECT count(*) AS n FROM items;\n")
    assert r.returncode == 0
    assert "read-only" in r.stderr.lower()
    assert "6" in r.stdout
    with engine.connect(db, read_only=True) as ws:
        assert ws.sql("SELECT count(*) FROM items").column(0)[0].as_py() == 6


def test_dsl_needs_a_dataset_when_there_are_several(db):
    r = loupe("sql", "--db", db, "--read-only", stdin=".dsl annotations.count > 0\n.dsl street annotations.count > 4\n")
    assert "no current dataset" in r.stderr and "street" in r.stderr
    assert "img5" in r.stdout


def test_run_context_in_the_console(db):
    r = loupe("sql", "--db", db, "--read-only", "--format", "csv",
              stdin=".run r1\n.dsl predictions.count > 0\n.objects source = 'prediction'\n")
    assert r.returncode == 0, r.stderr
    assert "run: r1 (dataset street)" in r.stdout
    assert "img5" in r.stdout and "p0" in r.stdout


def test_one_statement_with_c(db):
    r = loupe("sql", "--db", db, "-c", "SELECT count(*) AS n FROM annotations", "--format", "json")
    assert r.returncode == 0 and json.loads(r.stdout) == {"n": 15}


# -- a real terminal -------------------------------------------------------------------------------------
def _read_until(fd: int, marker: str, timeout: float = 60) -> str:
    buf = b""
    end = time.time() + timeout
    while marker.encode() not in buf:
        left = end - time.time()
        if left <= 0:
            raise AssertionError(f"timed out waiting for {marker!r}; got {buf.decode(errors='replace')!r}")
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            buf += chunk
    return buf.decode(errors="replace")


@pytest.mark.skipif(sys.platform == "win32", reason="needs a POSIX pseudo-terminal")
def test_interactive_terminal_prompts_multiline_and_history(db, tmp_path):
    import pty

    master, slave = pty.openpty()
    env = {**os.environ, "HOME": str(tmp_path), "TERM": "dumb"}
    p = subprocess.Popen([sys.executable, "-m", "engine", "sql", "--db", db, "--read-only"], stdin=slave,
                         stdout=slave, stderr=slave, cwd=REPO, env=env, close_fds=True)
    os.close(slave)
    try:
        banner = _read_until(master, "loupe> ")
        assert "Loupe SQL console" in banner and "read-only" in banner
        os.write(master, b"SELECT 6 *\n")
        _read_until(master, "...> ")  # continuation prompt
        os.write(master, b"7 AS answer;\n")
        out = _read_until(master, "loupe> ")
        assert "42" in out
        os.write(master, b"SELEC nope;\n")
        out = _read_until(master, "loupe> ")
        assert "error" in out.lower()  # printed, and we got a new prompt
        os.write(master, b".dsl street annotations.pedestrian = 5\n")
        out = _read_until(master, "loupe> ")
        assert "img5" in out
        os.write(master, b".quit\n")
        assert p.wait(timeout=60) == 0
    finally:
        if p.poll() is None:
            p.kill()
        os.close(master)
    import importlib.util

    if importlib.util.find_spec("readline") is None:
        return
    history = (tmp_path / ".loupe_history").read_text()
    assert "SELECT 6 *" in history and ".dsl street" in history


# -- loupe query ---------------------------------------------------------------------------------------
def test_loupe_query_items_objects_explain(db):
    r = loupe("query", "--db", db, "--dataset", "street", "--format", "json", "annotations.pedestrian >= 4")
    assert r.returncode == 0, r.stderr
    assert [json.loads(line)["reference_id"] for line in r.stdout.splitlines()] == ["img4", "img5"]
    r = loupe("query", "--db", db, "--dataset", "street", "--objects", "--run", "r1", "--format", "csv",
              "--order-by", "confidence DESC", "--limit", "1", "source = 'prediction'")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[1].startswith("prediction,img5,p0")
    r = loupe("query", "--db", db, "--dataset", "street", "--explain", "--dialect", "spark", "metadata.frame > 2")
    assert r.returncode == 0 and "GET_JSON_OBJECT" in r.stdout
    r = loupe("query", "--db", db, "--dataset", "street", "--format", "csv", "-", stdin='slice("test")\n')
    assert r.returncode == 0 and len(r.stdout.splitlines()) == 3  # header + 2 items


def test_loupe_query_errors_are_one_clear_message(db):
    r = loupe("query", "--db", db, "--dataset", "street", "annotations.pedestrain > 1")
    assert r.returncode == 1
    assert r.stderr.startswith("error: unknown label 'pedestrain'; did you mean 'pedestrian'?")
    assert "^" in r.stderr and "Traceback" not in r.stderr
    r = loupe("query", "--db", db, "--dataset", "street", "annotations.count >")
    assert r.returncode == 1 and "expected one of" in r.stderr


def test_open_console_shares_the_workspace_with_other_processes(tmp_path):
    """Issue 11 point 3: a console left open does not lock others out, and sees what they wrote."""
    path = tmp_path / "shared.duckdb"
    with engine.connect(path) as ws:
        ws.create_dataset("d")
    console = subprocess.Popen([sys.executable, "-m", "engine", "sql", "--db", str(path), "--format", "csv"],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               cwd=REPO)
    try:
        console.stdin.write("INSERT INTO loupe_meta VALUES ('console', 'here');\n")
        console.stdin.flush()
        ws = engine.connect(path, timeout=60)  # opens (waiting if need be) while the console is open
        deadline = time.monotonic() + 120
        while not ws.sql("SELECT * FROM loupe_meta WHERE key = 'console'").num_rows:
            assert time.monotonic() < deadline, "the console's statement never arrived"
            time.sleep(0.05)
        ws.get_dataset("d").append([engine.DatasetItem(f"/i/{k}.png", f"i{k}", width=4, height=4) for k in range(7)],
                                   check_images=False)
        ws.close()
        out, err = console.communicate("SELECT count(*) AS n FROM items;\n.quit\n", timeout=120)
    finally:
        if console.poll() is None:
            console.kill()
    assert console.returncode == 0, err
    assert "error" not in err
    assert out.strip().splitlines()[-2:] == ["n", "7"]
