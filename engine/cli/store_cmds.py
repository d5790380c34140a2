"""``loupe checkpoint``: move committed data from FILE.wal into FILE (before copying the workspace)."""
from __future__ import annotations

import os

import click

from . import cli
from .common import db_option, handle_errors, open_ws


@cli.command()
@db_option()
@handle_errors
def checkpoint(db: str) -> None:
    """Write everything committed into FILE, so FILE alone is the whole workspace.

    Until a checkpoint, recent commits may live in FILE.wal beside it (DuckDB's write-ahead log); copy
    both, or run this first. Fails with a clear error (the data stays safe in FILE.wal) when the disk is full.
    """
    ws = open_ws(db)
    try:
        ws.checkpoint()
    finally:
        ws.close()
    wal = db + ".wal"
    left = os.path.getsize(wal) if os.path.exists(wal) else 0
    click.echo(f"checkpointed {db} ({os.path.getsize(db):,} bytes); {wal}: {left:,} bytes left")
