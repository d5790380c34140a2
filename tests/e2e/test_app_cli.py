"""``loupe app``: starts, prints its URL, serves the page; warns when bound beyond loopback; --read-only."""
from __future__ import annotations

import json
import subprocess
import sys
import urllib.request

import pytest

from tests.e2e.cli_runner import REPO


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    import engine

    path = tmp_path_factory.mktemp("app_cli") / "w.duckdb"
    ws = engine.connect(str(path))
    ws.create_dataset("d")
    ws.close()
    return path


def _start(*args):
    p = subprocess.Popen([sys.executable, "-m", "engine", "app", *map(str, args)], cwd=REPO,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = p.stdout.readline()
    return p, line


@pytest.mark.parametrize("host,warn", [("127.0.0.1", False), ("0.0.0.0", True)])
def test_app_command(db, host, warn):
    p, line = _start("--db", db, "--port", 0, "--host", host, "--read-only")
    try:
        assert line.startswith("Loupe App serving") and "(read-only)" in line, line + p.stderr.read()
        url = line.split(" at ")[1].split()[0].replace("0.0.0.0", "127.0.0.1")
        info = json.loads(urllib.request.urlopen(url + "api/info", timeout=30).read())
        assert info["read_only"] is True and [d["name"] for d in info["datasets"]] == ["d"]
    finally:
        p.terminate()
        err = p.communicate(timeout=30)[1]
    assert ("warning: binding 0.0.0.0" in err) == warn


def test_app_command_errors(db, tmp_path):
    r = subprocess.run([sys.executable, "-m", "engine", "app", "--db", tmp_path / "missing.duckdb"], cwd=REPO,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and r.stderr.startswith("error: workspace file")
