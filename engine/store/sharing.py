"""Sharing one workspace file between processes (the App, a notebook, the CLI, the console at once).

DuckDB lets one process write a file (or many only read it), and holds that lock for a connection's whole
life. A shared store therefore holds its connection only while operations run: it opens it on the first
operation (waiting up to ``timeout`` seconds for the lock while another process holds it, polling), keeps
it through a burst of operations, and closes it once idle for ``idle`` seconds, or at once when another
process waits. A waiting process says so by touching ``FILE.loupe-wait``; a holder that is never idle
(overlapping requests) stops starting new operations after its turn (``QUANTUM`` seconds, or twice what
opening the file took), finishes the running ones and yields. A connection is never released while a transaction is open.

Writes by other processes can happen only while the connection is released; the file's fingerprint
(FILE and FILE.wal: size, mtime, inode) taken after our close is compared when we look again, and a
change moves the store's ``generation`` so every cache keyed on it is dropped.
"""
from __future__ import annotations

import contextlib
import os
import threading
import time
from typing import Callable, Iterator

from ..errors import WorkspaceLocked

DEFAULT_TIMEOUT = 30.0  # seconds an operation waits for another process's lock (LOUPE_LOCK_TIMEOUT)
DEFAULT_IDLE = 2.0  # seconds a connection is kept after the last operation when nobody waits (LOUPE_IDLE_RELEASE)
QUANTUM = 0.05  # a holder yields to a waiting process after holding at least this long (see Gate._turn)
WAIT_FRESH = 1.0  # a wait signal touched this recently means a process waits (a failed open can take 0.5 s)
GRACE = 0.02  # an idle holder keeps the connection this long after its last use even when a process waits
POLL = 0.005  # the monitor's period
DRAIN_WAIT = 1.0  # longest a new operation waits for a yielding holder to finish its running ones
_MAX_DELAY = 0.005  # longest sleep between two looks at the lock


_TRACE = os.environ.get("LOUPE_GATE_TRACE")


def _trace(*what: object) -> None:
    if _TRACE:
        import sys

        print(f"{time.monotonic():.3f} {os.getpid()}", *what, file=sys.stderr, flush=True)


def env_float(name: str, default: float) -> float:
    value = os.environ.get(name)
    try:
        return float(value) if value else default
    except ValueError:
        return default


def lock_free(path: str, exclusive: bool) -> bool:
    """Whether DuckDB's lock on ``path`` (a POSIX record lock on the whole file) looks free: a cheap probe
    (microseconds) made before a real open (milliseconds of CPU, which a polling waiter would take from
    the holder). Only called while this process has no connection to the file (closing the probe's
    descriptor would drop this process's own locks on it)."""
    try:
        import fcntl
    except ImportError:  # no POSIX locks (Windows): let the open attempt tell
        return True
    try:
        fd = os.open(path, os.O_RDWR if exclusive else os.O_RDONLY)
    except OSError:
        return True
    try:
        fcntl.lockf(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
    except OSError:
        return False
    else:
        fcntl.lockf(fd, fcntl.LOCK_UN)
        return True
    finally:
        os.close(fd)


def fingerprint(path: str) -> tuple:
    """What changes when any process writes the workspace: FILE and FILE.wal (size, mtime, inode)."""
    out = []
    for p in (path, path + ".wal"):
        try:
            s = os.stat(p)
            out.append((s.st_size, s.st_mtime_ns, s.st_ino))
        except OSError:
            out.append(None)
    return tuple(out)


class Gate:
    """Opens and releases one store's connection around operations (see the module docstring).

    ``open_root()`` connects (raising WorkspaceLocked while another process holds the file),
    ``close_root(final)`` checkpoints and closes (``final``: at close(), where a failed checkpoint raises), ``pinned()`` says whether a transaction is open,
    ``foreign_write()`` is called when another process changed the file while we held no connection.
    """

    def __init__(self, path: str, open_root: Callable[[], None], close_root: Callable[[bool], None],
                 pinned: Callable[[], bool], foreign_write: Callable[[], None],
                 timeout: float | None = None, idle: float | None = None, exclusive: bool = True):
        self.path = path
        self.exclusive = exclusive  # a read-write open needs the lock alone; a read-only one shares it
        self.timeout = env_float("LOUPE_LOCK_TIMEOUT", DEFAULT_TIMEOUT) if timeout is None else float(timeout)
        self.idle = env_float("LOUPE_IDLE_RELEASE", DEFAULT_IDLE) if idle is None else float(idle)
        self._open_root, self._close_root = open_root, close_root
        self._pinned, self._foreign_write = pinned, foreign_write
        self._cond = threading.Condition(threading.RLock())
        self._local = threading.local()
        self.connected = False
        self.closed = False
        self.active = 0  # operations running (all threads)
        self.draining = False  # a process waits: start no new operation until released
        self.acquired_at = 0.0
        self.last_used = 0.0
        self.yielded_at = 0.0
        self.released_fp: tuple | None = None
        self.signal = path + ".loupe-wait"
        self._my_touch = 0
        self.open_s = 0.0  # what the last open took
        self.stats = {"connects": 0, "releases": 0, "yields": 0, "max_wait_s": 0.0, "waited_s": 0.0}

    # -- operations ---------------------------------------------------------------------------
    @contextlib.contextmanager
    def hold(self) -> Iterator[None]:
        """Hold the connection for one operation (re-entrant; other threads' operations share it)."""
        depth = getattr(self._local, "depth", 0)
        if depth:
            self._local.depth = depth + 1
            try:
                yield
            finally:
                self._local.depth = depth
            return
        with self._cond:
            give_up = time.monotonic() + DRAIN_WAIT  # bounded: an operation may wait on helper threads of its own
            while self.draining and self.connected and not self._pinned() and time.monotonic() < give_up:
                self._cond.wait(POLL)
            self.active += 1
            try:
                self._ensure_locked()
            except BaseException:
                self.active -= 1
                raise
        self._local.depth = 1
        try:
            yield
        finally:
            self._local.depth = 0
            with self._cond:
                self.active -= 1
                self.last_used = time.monotonic()
                if _TRACE:
                    _trace("op end; held", f"{self.last_used - self.acquired_at:.3f}", "turn", f"{self._turn():.3f}",
                           "waits", self._someone_waits(), "draining", self.draining, "active", self.active)
                if (not self.active and self.connected and not self._pinned() and (self.draining or (
                        self.last_used - self.acquired_at >= self._turn() and self._someone_waits()))):
                    self._yield_locked()  # another process waits and we had our turn: let it in now
                self._cond.notify_all()

    def ensure(self) -> None:
        """Make sure the connection is open (for code touching the connection outside an operation)."""
        if self.connected:
            self.last_used = time.monotonic()
            return
        with self._cond:
            self._ensure_locked()

    def _ensure_locked(self) -> None:
        if self.connected:
            self.last_used = time.monotonic()
            return
        if self.closed:
            from ..errors import LoupeError

            raise LoupeError(f"workspace {self.path} is closed")
        if self.yielded_at:  # we just yielded to a waiting process: let it take the lock first
            pause = self.yielded_at + 2 * _MAX_DELAY - time.monotonic()
            if pause > 0:
                time.sleep(pause)
        start = time.monotonic()
        deadline = start + self.timeout
        delay = 0.001
        while True:
            now = time.monotonic()
            if now >= deadline or lock_free(self.path, self.exclusive):  # a free-looking lock: open for real
                try:
                    self._open_root()
                    self.open_s = time.monotonic() - now
                    break
                except WorkspaceLocked as e:
                    if time.monotonic() >= deadline:
                        self._note_wait(time.monotonic() - start)
                        raise WorkspaceLocked(self.path, e.pid, waited=self.timeout) from None
            self._touch_signal()
            time.sleep(max(0.0, min(delay, deadline - time.monotonic())))
            delay = min(delay * 2, _MAX_DELAY)
        now = time.monotonic()
        self._note_wait(now - start)
        _trace("connected after", f"{now - start:.3f}", "open", f"{self.open_s:.3f}")
        self.connected = True
        self.stats["connects"] += 1
        self.acquired_at = self.last_used = now
        self.yielded_at = 0.0
        self.draining = False
        if self.released_fp is not None and fingerprint(self.path) != self.released_fp:
            self._foreign_write()
        self._start_monitor()

    def _note_wait(self, waited: float) -> None:
        self.stats["waited_s"] += waited
        self.stats["max_wait_s"] = max(self.stats["max_wait_s"], waited)

    def check_foreign(self) -> None:
        """Without a connection: did another process write since we released? (cheap: two stat calls)"""
        if self.connected or self.released_fp is None:
            return
        fp = fingerprint(self.path)
        if fp != self.released_fp:
            self.released_fp = fp
            self._foreign_write()

    # -- release --------------------------------------------------------------------------------
    def _touch_signal(self) -> None:
        t = time.time_ns()
        with contextlib.suppress(OSError):
            try:
                os.utime(self.signal, ns=(t, t))
            except FileNotFoundError:
                open(self.signal, "a").close()
                os.utime(self.signal, ns=(t, t))
            self._my_touch = t

    def _someone_waits(self) -> bool:
        """Whether another process touched the wait signal just now (our own touches do not count)."""
        try:
            mtime = os.stat(self.signal).st_mtime_ns
        except OSError:
            return False
        return mtime != self._my_touch and time.time_ns() - mtime < WAIT_FRESH * 1e9

    def _start_monitor(self) -> None:
        threading.Thread(target=self._monitor, name=f"loupe-gate {self.path}", daemon=True).start()

    def _monitor(self) -> None:
        """Release the connection when idle, or when another process waits (stops once released)."""
        while True:
            time.sleep(POLL)
            with self._cond:
                if not self.connected:
                    return
                if self._pinned():
                    self.draining = False
                    continue
                now = time.monotonic()
                waits = self._someone_waits()
                if waits and self.active and now - self.acquired_at >= self._turn():
                    self.draining = True
                if self.active:
                    continue
                idle_for = now - self.last_used
                if waits and (self.draining or idle_for >= GRACE or now - self.acquired_at >= self._turn()):
                    self._yield_locked()
                    return
                if idle_for >= self.idle:
                    self._release_locked()
                    return

    def _turn(self) -> float:
        """How long a holder keeps the lock before yielding to a waiting process: at least QUANTUM, and
        twice what opening the file took, so that reopening stays under a third of the time."""
        return max(QUANTUM, 2 * self.open_s)

    def _yield_locked(self) -> None:
        self.stats["yields"] += 1
        self._release_locked()
        self.yielded_at = time.monotonic()

    def _release_locked(self, final: bool = False) -> None:
        _trace("release", "held", f"{time.monotonic() - self.acquired_at:.3f}", "active", self.active)
        self.connected = False
        self.draining = False
        self.stats["releases"] += 1
        try:
            self._close_root(final)
        finally:
            self.released_fp = fingerprint(self.path)
            self._cond.notify_all()

    def release(self) -> None:
        """Release now (when no operation runs and no transaction is open); used by tests and close()."""
        with self._cond:
            if self.connected:
                self._release_locked()

    def close(self) -> None:
        with self._cond:
            self.closed = True
            if self.connected:
                self._release_locked(final=True)


def hold_methods(cls: type, store_of: Callable[[object], object] = lambda self: self.ws.store) -> type:
    """Make every public method of an API class one operation on its store (``store_of(self)``): a shared
    store holds its connection for the call, nested calls share it."""
    import functools
    import inspect

    def held(f: Callable) -> Callable:
        @functools.wraps(f)
        def wrapper(self, *args, **kwargs):
            with store_of(self).hold():
                return f(self, *args, **kwargs)
        return wrapper

    for name, f in list(vars(cls).items()):
        if not name.startswith("_") and name != "close" and inspect.isfunction(f):
            setattr(cls, name, held(f))
    return cls
