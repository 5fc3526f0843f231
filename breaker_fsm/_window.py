"""Sliding windows of call outcomes with running totals: O(1) per recorded call."""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING, ClassVar

from ._outcome import FAILED, SLOW

if TYPE_CHECKING:
    from ._policy import CountWindow, TimeWindow

__all__ = ["CountRing", "TimeBuckets", "make_window"]

_INF = float("inf")


class CountRing:
    """The last ``size`` outcomes in a ring buffer, with running totals.

    Plain successes can also be counted without the breaker's lock: once the breaker has
    armed the ring (``lazy`` is then a tally, an ``itertools.count`` whose ``next()`` is
    atomic under the GIL), a success is one ``next(ring.lazy)``. Those successes are folded
    into the ring, oldest first, by the next ``record``, ``totals`` or ``clear``, which
    run under the breaker's lock. ``clear`` disarms (a later ``arm`` starts a new tally),
    so an increment made with a tally read before the clear is dropped, as a stale outcome
    must be.
    """

    until: ClassVar[float] = _INF  # no time buckets: every reading is "in the newest"
    __slots__ = ("calls", "dirty", "failures", "lazy", "ring", "seen", "size", "slot", "slow")

    def __init__(self, size: int) -> None:
        self.size = size
        self.ring = bytearray(size)  # 0 = empty slot or plain success
        self.slot = 0
        self.calls = 0
        self.failures = 0
        self.slow = 0
        self.lazy: itertools.count[int] | None = None  # the tally, once armed
        self.seen = 0  # value of the tally already folded in
        self.dirty = False  # never set: a count window's rates rise only with a new outcome

    def arm(self) -> None:
        """Let plain successes be counted lock-free on ``lazy`` from now on (idempotent)."""
        if self.lazy is None:  # built here: a ring that is never armed needs no tally
            self.lazy = itertools.count()
            self.seen = 0

    def fold(self) -> None:
        """Move the successes counted on ``lazy`` into the ring (only while armed)."""
        mark = next(self.lazy)  # type: ignore[arg-type]  # reads the tally atomically (and steps it once)
        pending = mark - self.seen
        self.seen = mark + 1
        if pending:
            self._successes(pending)

    def _successes(self, n: int) -> None:
        """Add ``n`` plain successes, evicting the oldest outcomes when full."""
        size = self.size
        if n >= size:
            self.ring = bytearray(size)
            self.slot = self.failures = self.slow = 0
            self.calls = size
            return
        ring, slot = self.ring, self.slot
        if n <= 4:  # the usual case (a success or two between failures): no slicing
            failures = slow = 0
            for _ in range(n):
                old = ring[slot]
                if old:
                    ring[slot] = 0
                    failures += old & FAILED
                    slow += old & SLOW
                slot = slot + 1 if slot + 1 < size else 0
            if failures or slow:
                self.failures -= failures
                self.slow -= slow >> 1
            calls = self.calls + n
            self.calls = calls if calls < size else size
            self.slot = slot
            return
        end = slot + n
        # Empty slots are 0, so only evicted outcomes count here, full or not.
        if end <= size:
            evicted = ring[slot:end]
            ring[slot:end] = bytes(n)
        else:
            end -= size
            evicted = ring[slot:] + ring[:end]
            ring[slot:] = bytes(size - slot)
            ring[:end] = bytes(end)
        both = evicted.count(FAILED | SLOW)
        self.failures -= evicted.count(FAILED) + both
        self.slow -= evicted.count(SLOW) + both
        self.calls = min(size, self.calls + n)
        self.slot = 0 if end == size else end

    def record(self, flags: int, now: float = 0.0) -> None:
        """Add one outcome, evicting the oldest when full."""
        lazy = self.lazy
        if lazy is not None:  # fold() inlined: this runs under the lock on every failure
            mark = next(lazy)
            pending = mark - self.seen
            self.seen = mark + 1
            if pending:
                self._successes(pending)
        ring, slot, size = self.ring, self.slot, self.size
        old = ring[slot]  # 0 while not full: an empty slot evicts nothing
        if old != flags:
            ring[slot] = flags
            self.failures += (flags & FAILED) - (old & FAILED)
            self.slow += ((flags & SLOW) - (old & SLOW)) >> 1
        if self.calls < size:
            self.calls += 1
        slot += 1
        self.slot = 0 if slot == size else slot

    def totals(self, now: float = 0.0) -> tuple[int, int, int]:
        """``(calls, failures, slow)`` in the window."""
        if self.lazy is not None:
            self.fold()
        return self.calls, self.failures, self.slow

    def clear(self) -> None:
        """Forget every outcome, and disarm: the next ``arm`` starts a new tally."""
        self.ring = bytearray(self.size)
        self.slot = self.calls = self.failures = self.slow = self.seen = 0
        self.lazy = None


class TimeBuckets:
    """Outcomes of the last ``seconds`` seconds in one-second buckets, with running totals.

    A bucket is reused when its second comes round again; the seconds skipped since the
    last call are cleared first, at most ``seconds`` buckets, so the cost per call is
    bounded by the elapsed time, not by how many calls the window holds.

    As in :class:`CountRing`, plain successes can be counted without the breaker's lock,
    with ``next(buckets.lazy)``, by a caller whose reading is before ``until``: they belong
    to the newest bucket, where such a reading lands anyway, and are folded into it under
    the lock by the next ``record``, ``totals`` or roll. ``clear`` starts a new tally, so an
    increment made with a tally read before the clear is dropped.
    """

    __slots__ = (
        "b_calls",
        "b_fail",
        "b_slow",
        "calls",
        "dirty",
        "failures",
        "head",
        "index",
        "lazy",
        "seconds",
        "seen",
        "slow",
        "tally",
        "until",
    )

    def __init__(self, seconds: int) -> None:
        self.seconds = seconds
        self.b_calls = [0] * seconds
        self.b_fail = [0] * seconds
        self.b_slow = [0] * seconds
        self.head: int | None = None  # the whole second of the newest bucket
        self.until = -_INF  # readings before this land in the newest bucket (head + 1)
        self.index = 0  # the newest bucket's index (head % seconds)
        # Set when expired buckets were dropped, so the rates may have risen: the breaker
        # checks its trip rules on the next outcome, even a plain success, and clears it.
        self.dirty = False
        self.calls = 0
        self.failures = 0
        self.slow = 0
        self.tally = itertools.count()
        self.lazy: itertools.count[int] | None = self.tally  # always usable (see above)
        self.seen = 0  # value of ``tally`` already folded in

    def _fold(self) -> None:
        """Move the successes counted on ``tally`` into the newest bucket."""
        mark = next(self.tally)  # reads the tally atomically (and steps it once)
        pending = mark - self.seen
        self.seen = mark + 1
        if pending:
            self.b_calls[self.index] += pending
            self.calls += pending

    def _roll(self, now: float) -> int:
        second = int(now // 1)
        head = self.head
        if head is None or second - head >= self.seconds:
            if self.calls:
                self._empty()
                self.dirty = True
            head = second
        elif second > head:
            for s in range(head + 1, second + 1):
                i = s % self.seconds
                if self.b_calls[i]:
                    self.dirty = True
                    self.calls -= self.b_calls[i]
                    self.failures -= self.b_fail[i]
                    self.slow -= self.b_slow[i]
                    self.b_calls[i] = self.b_fail[i] = self.b_slow[i] = 0
            head = second
        # A clock that stands still or steps back keeps using the newest bucket.
        self.head = head
        self.until = head + 1.0
        self.index = index = head % self.seconds
        return index

    def record(self, flags: int, now: float) -> None:
        """Add one outcome at monotonic time ``now`` (a time window has no default time)."""
        mark = next(self.tally)  # _fold() inlined: this runs under the lock on every record
        pending = mark - self.seen
        self.seen = mark + 1
        if pending:
            self.b_calls[self.index] += pending
            self.calls += pending
        i = self.index if now < self.until else self._roll(now)
        self.b_calls[i] += 1
        self.calls += 1
        if flags:
            failed = flags & FAILED
            slow = (flags & SLOW) >> 1
            self.b_fail[i] += failed
            self.b_slow[i] += slow
            self.failures += failed
            self.slow += slow

    def totals(self, now: float) -> tuple[int, int, int]:
        """``(calls, failures, slow)`` in the window ending at ``now``."""
        self._fold()
        if now >= self.until and self.head is not None:
            self._roll(now)
        return self.calls, self.failures, self.slow

    def _empty(self) -> None:
        n = self.seconds
        self.b_calls = [0] * n
        self.b_fail = [0] * n
        self.b_slow = [0] * n
        self.head = None
        self.until = -_INF
        self.index = 0
        self.calls = self.failures = self.slow = 0

    def clear(self) -> None:
        """Forget every outcome, and start a new tally for the new window."""
        self._empty()
        self.tally = self.lazy = itertools.count()
        self.seen = 0


def make_window(spec: CountWindow | TimeWindow | None) -> CountRing | TimeBuckets | None:
    """The runtime window for a policy's window spec."""
    if spec is None:
        return None
    if spec.kind == "count":
        return CountRing(spec.size)
    return TimeBuckets(spec.seconds)
