"""Run the ``loupe`` CLI in a fresh interpreter, as a shell user would (shared by the e2e tests)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def loupe(*args: object, timeout: int = 180) -> subprocess.CompletedProcess:
    """``python -m engine ARGS`` from the repository root; the caller checks the exit code."""
    return subprocess.run([sys.executable, "-m", "engine", *map(str, args)], capture_output=True, text=True,
                          cwd=REPO, timeout=timeout)
