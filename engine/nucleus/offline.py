"""What exists only as a Scale service: a clear "not available offline" error instead of a network call."""
from __future__ import annotations

from ..errors import LoupeError


class NotAvailableOffline(LoupeError, NotImplementedError):
    """A Nucleus feature that exists only as a Scale service (autotag, labeling tasks, Launch...)."""

    def __init__(self, what: str):
        super().__init__(f"{what} is a Scale Nucleus service and is not available offline in Loupe "
                         "(everything is stored in a local workspace; see docs/nucleus.md)")


class OfflineMethods:
    """Mixin: the service-only method names of a class raise :class:`NotAvailableOffline` when called."""

    _service_only: frozenset[str] = frozenset()

    def __getattr__(self, name: str):
        if name in type(self)._service_only:
            owner = type(self).__name__

            def unavailable(*args, **kwargs):
                raise NotAvailableOffline(f"{owner}.{name}")

            return unavailable
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")
