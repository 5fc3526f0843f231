"""Helpers for testing code that uses breakers: a clock you move by hand.

>>> from breaker_fsm.testing import FakeClock
>>> clock = FakeClock()
>>> clock.advance(2.5)
>>> clock.monotonic()
2.5
"""

from __future__ import annotations

import threading

__all__ = ["FakeClock"]

#: 2026-01-01T00:00:00Z, so fake audit timestamps are recognisable and deterministic.
DEFAULT_WALL_START = 1_767_225_600.0


class FakeClock:
    """A deterministic clock: time moves only when :meth:`advance` is called.

    Both readings move together: ``monotonic()`` starts at ``start`` and ``wall()`` at
    ``wall_start`` (seconds since the epoch). Safe to advance from several threads.
    """

    __slots__ = ("_lock", "_offset", "_start", "_wall_start")

    def __init__(self, start: float = 0.0, *, wall_start: float = DEFAULT_WALL_START) -> None:
        self._start = float(start)
        self._wall_start = float(wall_start)
        self._offset = 0.0
        self._lock = threading.Lock()

    def monotonic(self) -> float:
        """The fake monotonic reading."""
        return self._start + self._offset

    def wall(self) -> float:
        """The fake wall-clock reading, seconds since the epoch."""
        return self._wall_start + self._offset

    def advance(self, seconds: float) -> None:
        """Move both clocks forward by ``seconds`` (which must not be negative)."""
        if seconds < 0:
            raise ValueError(f"seconds must be >= 0, got {seconds!r}")
        with self._lock:
            self._offset += seconds

    def set(self, monotonic: float) -> None:
        """Jump the monotonic reading to ``monotonic`` (backwards too, to test clock faults)."""
        with self._lock:
            self._offset = monotonic - self._start

    def __repr__(self) -> str:
        return f"FakeClock(monotonic={self.monotonic()!r})"
