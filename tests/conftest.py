"""Shared fixtures: paths to the real datasets (skip when absent) and small workspaces."""
from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "datasets"


def shared_path(*parts: str) -> Path:
    """A path under ../shared/datasets; skips the test with a clear reason when it is absent."""
    p = SHARED.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"real dataset not available: {p} (tests on real data need ../shared/datasets)")
    return p


@pytest.fixture
def ws():
    import engine

    w = engine.connect()
    yield w
    w.close()


@pytest.fixture(scope="session")
def spark():
    """One local[2] Spark session for every Spark test module (tests/spark_support.py): its JVM and
    first Python worker start once (measured 5-6 s and +5 s idle) instead of once per module."""
    from tests.spark_support import spark_or_skip

    s = spark_or_skip()
    yield s
    s.stop()


SPARK_FILES = ("tests/unit/test_spark.py", "tests/unit/test_spark_dsl.py")  # the modules using ``spark`` above


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """``--dist loadfile`` (the default addopts), with the Spark modules as one unit: they share the session
    fixture above, so on one worker one JVM starts (and warms up) instead of one per worker."""
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class SparkTogether(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            scope = super()._split_scope(nodeid)
            return "spark" if scope in SPARK_FILES else scope

    return SparkTogether(config, log)
