"""A SparkSession for Loupe: the caller's, or a local one configured for small jobs and tests.

A local session binds 127.0.0.1, has the UI and progress bars off and 2 shuffle partitions by default
(``spark.sql.shuffle.partitions``); Arrow batches are enabled for ``mapInArrow``.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from ..errors import LoupeError

LOCAL_CONF = {
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.sql.shuffle.partitions": "2",
    "spark.driver.bindAddress": "127.0.0.1",
    "spark.driver.host": "127.0.0.1",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    "spark.sql.session.timeZone": "UTC",
}


def require_pyspark() -> Any:
    """The pyspark module, or a clear error naming the extra to install."""
    try:
        import pyspark  # noqa: F401
        from pyspark.sql import SparkSession
    except ImportError:  # pragma: no cover - depends on the environment
        raise LoupeError("Spark support needs pyspark: pip install 'loupe[spark]' (and Java 17)") from None
    return SparkSession


def local_session(master: str = "local[2]", conf: dict[str, str] | None = None) -> Any:
    """Start (or reuse) a local SparkSession with Loupe's defaults, overridden by ``conf``."""
    SparkSession = require_pyspark()
    _worker_path()
    b = SparkSession.builder.master(master).appName("loupe")
    for k, v in {**LOCAL_CONF, **(conf or {})}.items():
        b = b.config(k, v)
    spark = b.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def _worker_path() -> None:
    """Local Python workers import the same Loupe as the driver (a source checkout may shadow an install)."""
    root = str(Path(__file__).resolve().parents[2])
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)  # the driver's interpreter, not python3 on PATH
    parts = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    if root not in parts:
        os.environ["PYTHONPATH"] = os.pathsep.join([root, *parts])


def get_session(spark: Any = None, master: str | None = None) -> Any:
    """The user's session when given, else the active one, else a new local one (``master``, default local[2])."""
    if spark is not None:
        return spark
    SparkSession = require_pyspark()
    if master is None:
        active = SparkSession.getActiveSession()
        if active is not None:
            return active
    return local_session(master or "local[2]")
