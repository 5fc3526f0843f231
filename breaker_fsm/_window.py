"""Sliding windows of call outcomes with running totals: O(1) per recorded call."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._policy import CountWindow, TimeWindow

__all__ = ["FAILED", "SLOW", "CountRing", "TimeBuckets", "make_window"]

#: Outcome flags, combined with ``|``: a call may be both failed and slow.
FAILED = 1
SLOW = 2


class CountRing:
    """The last ``size`` outcomes in a ring buffer, with running totals."""

    __slots__ = ("calls", "failures", "ring", "size", "slot", "slow")

    def __init__(self, size: int) -> None:
        self.size = size
        self.ring = bytearray(size)  # 0 = empty slot or plain success
        self.slot = 0
        self.calls = 0
        self.failures = 0
        self.slow = 0

    def record(self, flags: int, now: float = 0.0) -> None:
        """Add one outcome, evicting the oldest when full."""
        slot = self.slot
        if self.calls == self.size:
            old = self.ring[slot]
            if old:
                self.failures -= old & FAILED
                self.slow -= (old & SLOW) >> 1
        else:
            self.calls += 1
        self.ring[slot] = flags
        self.failures += flags & FAILED
        self.slow += (flags & SLOW) >> 1
        self.slot = 0 if slot + 1 == self.size else slot + 1

    def totals(self, now: float = 0.0) -> tuple[int, int, int]:
        """``(calls, failures, slow)`` in the window."""
        return self.calls, self.failures, self.slow

    def clear(self) -> None:
        """Forget every outcome."""
        self.ring = bytearray(self.size)
        self.slot = self.calls = self.failures = self.slow = 0


class TimeBuckets:
    """Outcomes of the last ``seconds`` seconds in one-second buckets, with running totals.

    A bucket is reused when its second comes round again; the seconds skipped since the
    last call are cleared first, at most ``seconds`` buckets, so the cost per call is
    bounded by the elapsed time, not by how many calls the window holds.
    """

    __slots__ = ("b_calls", "b_fail", "b_slow", "calls", "failures", "head", "seconds", "slow")

    def __init__(self, seconds: int) -> None:
        self.seconds = seconds
        self.b_calls = [0] * seconds
        self.b_fail = [0] * seconds
        self.b_slow = [0] * seconds
        self.head: int | None = None  # the whole second of the newest bucket
        self.calls = 0
        self.failures = 0
        self.slow = 0

    def _roll(self, now: float) -> int:
        second = int(now // 1)
        head = self.head
        if head is None or second - head >= self.seconds:
            if self.calls:
                self.clear()
            self.head = second
        elif second > head:
            for s in range(head + 1, second + 1):
                i = s % self.seconds
                if self.b_calls[i]:
                    self.calls -= self.b_calls[i]
                    self.failures -= self.b_fail[i]
                    self.slow -= self.b_slow[i]
                    self.b_calls[i] = self.b_fail[i] = self.b_slow[i] = 0
            self.head = second
        # A clock that stands still or steps back keeps using the newest bucket.
        return (self.head if second < self.head else second) % self.seconds  # type: ignore[operator]

    def record(self, flags: int, now: float = 0.0) -> None:
        """Add one outcome at monotonic time ``now``."""
        i = self._roll(now)
        failed = flags & FAILED
        slow = (flags & SLOW) >> 1
        self.b_calls[i] += 1
        self.b_fail[i] += failed
        self.b_slow[i] += slow
        self.calls += 1
        self.failures += failed
        self.slow += slow

    def totals(self, now: float = 0.0) -> tuple[int, int, int]:
        """``(calls, failures, slow)`` in the window ending at ``now``."""
        if self.head is not None:
            self._roll(now)
        return self.calls, self.failures, self.slow

    def clear(self) -> None:
        """Forget every outcome."""
        n = self.seconds
        self.b_calls = [0] * n
        self.b_fail = [0] * n
        self.b_slow = [0] * n
        self.head = None
        self.calls = self.failures = self.slow = 0


def make_window(spec: CountWindow | TimeWindow | None) -> CountRing | TimeBuckets | None:
    """The runtime window for a policy's window spec."""
    if spec is None:
        return None
    if spec.kind == "count":
        return CountRing(spec.size)
    return TimeBuckets(spec.seconds)
