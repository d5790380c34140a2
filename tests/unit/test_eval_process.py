"""`loupe eval` as its own process: the same numbers as in-process, and pandas never imported there
(pyarrow would import it on its first array conversion; the eval command refuses it, see
engine/cli/eval_cmds.py `_skip_pandas`)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from engine.cli import _load_commands, cli

_load_commands()

ROOT = Path(__file__).resolve().parents[2]


def _pair(tmp_path: Path) -> tuple[Path, Path]:
    gt = {"images": [{"id": i, "file_name": f"{i}.jpg", "width": 100, "height": 100} for i in (1, 2)],
          "categories": [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}],
          "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 30, 30], "area": 900, "iscrowd": 0},
                          {"id": 2, "image_id": 2, "category_id": 2, "bbox": [50, 50, 20, 40], "area": 800, "iscrowd": 0}]}
    res = [{"image_id": 1, "category_id": 1, "bbox": [12, 11, 30, 28], "score": 0.9},
           {"image_id": 1, "category_id": 2, "bbox": [10, 10, 30, 30], "score": 0.8},
           {"image_id": 2, "category_id": 2, "bbox": [55, 50, 20, 40], "score": 0.7}]
    g, r = tmp_path / "gt.json", tmp_path / "res.json"
    g.write_text(json.dumps(gt))
    r.write_text(json.dumps(res))
    return g, r


PROBE = """
import runpy, sys
sys.argv = ["loupe", "eval", sys.argv[1], sys.argv[2], "--json"]
try:
    runpy.run_module("engine", run_name="__main__")
except SystemExit as e:
    assert not e.code, e.code
print(json.dumps({"pandas": sys.modules.get("pandas") is not None}))
"""


def test_eval_process_matches_in_process_and_skips_pandas(tmp_path):
    g, r = _pair(tmp_path)
    out = subprocess.run([sys.executable, "-c", "import json\n" + PROBE, str(g), str(r)], cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout.strip().splitlines()
    report, probe = json.loads(out[0]), json.loads(out[-1])
    assert probe == {"pandas": False}
    inproc = CliRunner().invoke(cli, ["eval", str(g), str(r), "--json"])
    assert inproc.exit_code == 0, inproc.output
    assert report == json.loads(inproc.output)
    assert 0 < report["stats"][0] < 1  # one TP per class at IoU >= 0.5, one FP


def test_in_process_cli_leaves_pandas_importable(tmp_path):
    """Inside another program (click's runner), the eval command does not touch the import system."""
    g, r = _pair(tmp_path)
    n_finders = len(sys.meta_path)
    assert CliRunner().invoke(cli, ["eval", str(g), str(r), "--json"]).exit_code == 0
    assert len(sys.meta_path) == n_finders
