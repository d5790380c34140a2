"""Loupe on Apache Spark: the same commit, metrics and queries when a workspace outgrows one machine.

Data moves as Parquet (``loupe export parquet --tables``, :mod:`engine.io.parquet_tables`); Spark runs
Loupe's own numpy kernels on Arrow batches (``mapInArrow``), so answers equal the local DuckDB path.
Needs the optional ``spark`` extra (``pip install 'loupe[spark]'``) and Java 17.
"""
from __future__ import annotations

from .session import get_session, local_session

__all__ = ["get_session", "local_session"]
