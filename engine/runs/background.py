"""Run one numpy step on a second thread while the caller goes on (DuckDB queries, other numpy work).

numpy's large-array loops and DuckDB's queries release the GIL, so on a 2-core machine two such steps run
side by side: a commit's accumulate (~0.2 s at 500k detections) overlaps its per-object values and the
``matches`` write, and an evaluation's ``prepare`` overlaps the candidate-pair join. The step must only
read arrays the caller does not change meanwhile; it never touches a DuckDB connection.
"""
from __future__ import annotations

import threading
from typing import Callable, Generic, TypeVar

T = TypeVar("T")


class Background(Generic[T]):
    """``fn(*args)`` started on a thread (or run at once with ``inline=True``); :meth:`result` waits for
    it and returns its value or raises its exception, in the caller's thread.

    Example:
        >>> step = Background(sum, [1, 2, 3])
        >>> step.result()
        6
    """

    def __init__(self, fn: Callable[..., T], *args: object, inline: bool = False) -> None:
        self._value: T | None = None
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None
        if inline:
            self._run(fn, args)
        else:
            self._thread = threading.Thread(target=self._run, args=(fn, args), name="loupe-background",
                                            daemon=True)
            self._thread.start()

    def _run(self, fn: Callable[..., T], args: tuple) -> None:
        try:
            self._value = fn(*args)
        except BaseException as e:  # handed to the caller by result()
            self._error = e

    def result(self) -> T:
        """The step's value, once it has finished; its exception is raised here."""
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._error is not None:
            raise self._error
        return self._value  # type: ignore[return-value]
