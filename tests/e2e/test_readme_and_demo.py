"""README flows: the two commands, the Python quickstart, `loupe demo`, every command documented."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import engine
from engine.cli import _load_commands, cli

REPO = Path(__file__).resolve().parents[2]
README = (REPO / "README.md").read_text()


def test_two_commands_and_ci_runs_the_test_one():
    blocks = re.findall(r"```bash\n(.*?)\n```", README, re.S)
    install_demo, install_test = blocks[0].strip(), blocks[1].strip()
    assert install_demo.endswith("pip install -e . && loupe demo")
    assert install_test.endswith("pip install -e '.[dev]' && pytest")
    ci = (REPO / ".ci" / "run").read_text()
    assert install_test.replace("pip install -e", "pip install -q -e") in ci


def test_python_quickstart_runs_and_runs_again(tmp_path):
    code = re.search(r"```python\n(.*?)```", README, re.S).group(1)
    for attempt in (1, 2):  # a user re-runs it on the same file (issue 13, D15: add_model raised the 2nd time)
        r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=600,
                           env={**os.environ, "PYTHONPATH": str(REPO)})
        assert r.returncode == 0, (attempt, r.stderr[-2000:])
        with engine.connect(tmp_path / "loupe.duckdb", read_only=True) as ws:
            ds = ws.get_dataset("street")
            assert ds.info()["items"] == 40
            assert ds.label_versions().num_rows == 2  # import + the quickstart's correction, once
            assert [s["name"] for s in ds.slices().to_pylist()] == ["crowded"]
            assert ws.list_models().num_rows == 1 and ws.list_runs().num_rows == 1
    assert "Warning" not in r.stderr  # the same predictions again: the stored run is reused silently
    assert any(p.suffix == ".png" for p in (tmp_path / "crops").iterdir())


def test_pandas_extra_is_declared_and_documented():
    """Issue 13, D16: `.to_pandas()` needs pandas, which no extra installed."""
    import tomllib

    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert any(d.startswith("pandas") for d in extras["pandas"]) and any(d.startswith("pandas") for d in extras["dev"])
    assert "`pandas` (for `.to_pandas()`" in README
    with engine.connect() as ws:
        assert ws.sql("SELECT 1 AS one").to_pandas()["one"].tolist() == [1]


def test_loupe_demo_end_to_end(tmp_path):
    db = tmp_path / "demo.duckdb"
    r = subprocess.run([sys.executable, "-m", "engine", "demo", str(tmp_path / "data"), "--n", "24", "--db", str(db)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    out = r.stdout
    with engine.connect(db, read_only=True) as ws:
        info = ws.get_dataset("sample").info()
        assert f"items: {info['items']}" in out and info["items"] == 24
        assert f"annotations: {info['annotations']}" in out
        counts = {r["k"]: r["n"] for r in ws.sql(
            "SELECT source || ':' || status AS k, count(*) AS n FROM matches GROUP BY ALL").to_pylist()}
        ap = ws.get_run("simulated").metrics()["stats"]["AP"]
    m = re.search(r"TP (\d+), FP (\d+), FN (\d+)", out)
    assert m, out
    assert (int(m.group(1)), int(m.group(2)), int(m.group(3))) == (
        counts.get("prediction:tp", 0), counts.get("prediction:fp", 0), counts.get("gt:fn", 0))
    assert re.search(rf"AP\s+{ap:.6g}\b", out)


def test_every_command_is_in_the_readme():
    _load_commands()
    for name in cli.commands:
        assert re.search(rf"loupe {re.escape(name)}\b", README), f"`loupe {name}` is not documented in README.md"
