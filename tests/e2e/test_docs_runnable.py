"""The docs can be used as written (issue 13, D18): every Python snippet of docs/walkthrough.md runs when
pasted in order (on a small real PennFudan subset), and every file the docs point at exists."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, shared_path

DOCS = sorted((REPO / "docs").glob("*.md")) + [REPO / "README.md"]
# images the walk-through's snippets name (the unlabelled cyclist, the FP examples) plus a few more
SUBSET = ("FudanPed00001", "FudanPed00012", "FudanPed00033", "FudanPed00048", "PennPed00019", "PennPed00027",
          "PennPed00090", "FudanPed00031", "FudanPed00044")


def test_walkthrough_python_snippets_run_in_order(tmp_path):
    pytest.importorskip("cv2", reason="OpenCV is not installed (optional extra: pip install 'loupe[hog]')")
    pytest.importorskip("matplotlib", reason="matplotlib is not installed (optional extra: plots)")
    root = shared_path("PennFudanPed")
    sub = tmp_path / "PennFudanPed"
    for d, suffix in (("PNGImages", ".png"), ("PedMasks", "_mask.png"), ("Annotation", ".txt")):
        (sub / d).mkdir(parents=True)
        for stem in SUBSET:
            os.symlink((root / d / f"{stem}{suffix}").resolve(), sub / d / f"{stem}{suffix}")
    text = (REPO / "docs" / "walkthrough.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert len(blocks) >= 8
    code = "\n".join(blocks).replace("../shared/datasets/PennFudanPed", str(sub))
    assert "..." not in code.replace('"..."', ""), "a snippet still has a placeholder"
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=600,
                       env={**os.environ, "PYTHONPATH": str(REPO)})
    assert r.returncode == 0, r.stderr[-3000:]
    import engine

    with engine.connect(tmp_path / "pf.duckdb", read_only=True) as ws:
        ds = ws.get_dataset("pennfudan")
        assert ds.label_version >= 2  # the walk-through's corrections were written
        assert "added-1" in ds.annotations().column("annotation_id").to_pylist()


def _targets(md: Path) -> list[tuple[str, Path]]:
    text = md.read_text(encoding="utf-8")
    text = re.sub(r"```.*?```", "", text, flags=re.S)  # code blocks name files the reader creates
    out = [(m, md.parent / m) for m in re.findall(r"\]\(([^)#:\s]+)(?:#[^)]*)?\)", text)]  # markdown links
    for m in re.findall(r"\b[\w./-]+\.md\b", text):  # plain mentions of other docs
        out.append((m, REPO / m if (REPO / m).exists() else md.parent / Path(m).name))
    return out


@pytest.mark.parametrize("md", DOCS, ids=lambda p: p.name)
def test_doc_references_exist(md):
    missing = [name for name, path in _targets(md) if not path.exists()]
    assert not missing, f"{md.name} points at files that do not exist: {missing}"
