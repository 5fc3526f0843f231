"""Time sources: monotonic seconds for durations, wall seconds for audit timestamps."""

from __future__ import annotations

import time
from typing import Protocol, runtime_checkable

__all__ = ["Clock", "SystemClock"]


@runtime_checkable
class Clock(Protocol):
    """What a breaker needs to know about time.

    ``monotonic()`` measures durations (open time, slow calls, windows); ``wall()`` is
    seconds since the Unix epoch, used only to stamp audit records in UTC.
    """

    def monotonic(self) -> float:
        """Seconds on a clock that never goes backwards."""
        ...

    def wall(self) -> float:
        """Seconds since the Unix epoch (UTC)."""
        ...


class SystemClock:
    """The real clocks: ``time.monotonic`` and ``time.time``."""

    __slots__ = ()

    # Plain attribute lookups of builtins: no Python frame per reading on the hot path.
    monotonic = staticmethod(time.monotonic)
    wall = staticmethod(time.time)

    def __repr__(self) -> str:
        return "SystemClock()"


SYSTEM_CLOCK = SystemClock()
