"""Exception types raised by Loupe.

Every user-facing failure is a subclass of :class:`LoupeError`, so the CLI can turn it into one clear
line on stderr and callers can catch one type.
"""
from __future__ import annotations


class LoupeError(Exception):
    """Base class of every error Loupe raises on purpose."""


class ValidationError(LoupeError, ValueError):
    """A record in an input batch is invalid; nothing of the batch was written.

    Attributes:
        record: what names the bad record (``reference_id``, ``annotation_id`` or ``row 12``).
        field: the offending field.
    """

    def __init__(self, message: str, record: str | None = None, field: str | None = None):
        self.record = record
        self.field = field
        where = ""
        if record is not None:
            where = f"{record}"
            if field is not None:
                where += f", field '{field}'"
            where += ": "
        elif field is not None:
            where = f"field '{field}': "
        super().__init__(where + message)


class NotFoundError(LoupeError, KeyError):
    """A named dataset, model, run or slice does not exist."""

    def __str__(self) -> str:  # KeyError quotes its message; we do not want that
        return str(self.args[0]) if self.args else ""


class AlreadyExistsError(LoupeError):
    """A name that must be unique is taken."""


class WorkspaceLocked(LoupeError):
    """Another process holds the workspace file's lock (past the wait timeout, or it holds it for good)."""

    def __init__(self, path: str, pid: int | None, detail: str = "", waited: float | None = None):
        self.path = path
        self.pid = pid
        self.waited = waited
        holder = f"process {pid}" if pid is not None else "another process"
        if waited is None:
            hint = ("Loupe processes take turns on a shared workspace; that one holds it for good (opened with "
                    "shared=False, or a DuckDB client other than Loupe): close it there")
        else:
            hint = (f"waited {waited:g} s; that process keeps it inside a long transaction (an import, a BEGIN "
                    f"left open in a console) or holds it for good (shared=False, a DuckDB client other than "
                    f"Loupe): finish or close it there, or wait longer (connect(..., timeout=S), "
                    f"LOUPE_LOCK_TIMEOUT=S)")
        super().__init__(f"workspace {path} is locked by {holder}; {hint}" + (f" ({detail})" if detail else ""))


class WorkspaceFull(LoupeError):
    """The disk holding the workspace is full: the operation wrote nothing."""

    def __init__(self, path: str | None, detail: str):
        self.path = path
        super().__init__(f"workspace {path or ':memory:'}: the disk is full, nothing of this operation was "
                         f"written; free space and retry ({detail})")


class CheckpointError(LoupeError):
    """Committed data could not be moved from FILE.wal into FILE (it is safe in FILE.wal)."""


class SchemaVersionError(LoupeError):
    """The workspace file was written by a newer (or unknown) Loupe schema version."""


class LoupeWarning(UserWarning):
    """Input accepted with a loss the user should know about (e.g. masks dropped for a bbox evaluation)."""
