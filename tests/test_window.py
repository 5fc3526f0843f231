"""Sliding windows: running totals equal a naive recount, whatever the sequence, lazy successes
included."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from breaker_fsm import CountWindow, TimeWindow
from breaker_fsm._outcome import FAILED, SLOW
from breaker_fsm._window import CountRing, TimeBuckets, make_window


def recount(outcomes: Sequence[int]) -> tuple[int, int, int]:
    """The totals of ``outcomes`` counted afresh: (calls, failed, slow)."""
    return (
        len(outcomes),
        sum(1 for f in outcomes if f & FAILED),
        sum(1 for f in outcomes if f & SLOW),
    )


def naive(outcomes: list[int], size: int) -> tuple[int, int, int]:
    """The totals of the last ``size`` outcomes, counted afresh."""
    return recount(outcomes[-size:] if outcomes else [])


outcomes = st.lists(st.sampled_from([0, FAILED, SLOW, FAILED | SLOW]), max_size=300)


@given(size=st.integers(1, 20), seq=outcomes)
def test_count_ring_equals_naive_last_n(size: int, seq: list[int]) -> None:
    """The count window's totals equal a recount of the last N outcomes."""
    ring = CountRing(size)
    for flags in seq:
        ring.record(flags)
    assert ring.totals() == naive(seq, size)


@given(
    seconds=st.integers(1, 10),
    steps=st.lists(
        st.tuples(st.floats(0, 4, allow_nan=False), st.sampled_from([0, FAILED, SLOW, 3])),
        max_size=200,
    ),
    tail=st.floats(0, 12, allow_nan=False),
)
def test_time_buckets_equal_naive_recount(
    seconds: int, steps: list[tuple[float, int]], tail: float
) -> None:
    """The time window's totals equal a recount of outcomes in the last N whole seconds."""
    window = TimeBuckets(seconds)
    now = 0.0
    seen: list[tuple[float, int]] = []
    for gap, flags in steps:
        now += gap
        window.record(flags, now)
        seen.append((now, flags))
    now += tail
    live = [f for t, f in seen if int(t // 1) > int(now // 1) - seconds]
    assert window.totals(now) == recount(live)


def test_time_buckets_tolerate_a_clock_that_steps_back() -> None:
    """A reading earlier than the newest bucket lands in the newest bucket."""
    window = TimeBuckets(5)
    window.record(FAILED, 10.0)
    window.record(0, 8.0)
    assert window.totals(10.5) == (2, 1, 0)


def test_clear_and_factory() -> None:
    """clear() empties a window; make_window builds the kind the policy names."""
    ring = CountRing(3)
    ring.record(FAILED)
    ring.clear()
    assert ring.totals() == (0, 0, 0)
    buckets = TimeBuckets(3)
    buckets.record(FAILED, 1.0)
    buckets.clear()
    assert buckets.totals(1.0) == (0, 0, 0)
    assert make_window(None) is None
    assert isinstance(make_window(CountWindow(size=2)), CountRing)
    assert isinstance(make_window(TimeWindow(seconds=2)), TimeBuckets)


# ----------------------------------------------------------------------------- lazy successes
# The hot path counts a closed success without the lock, on the window's ``lazy`` tally; the
# window folds those successes in before it is read.


# Steps: an outcome recorded under the lock, a burst of lock-free successes, arm, clear.
steps = st.lists(
    st.one_of(
        st.tuples(st.just("record"), st.sampled_from([0, FAILED, SLOW, FAILED | SLOW])),
        st.tuples(st.just("lazy"), st.integers(1, 4) | st.integers(5, 30)),
        st.tuples(st.just("arm"), st.just(0)),
        st.tuples(st.just("clear"), st.just(0)),
        st.tuples(st.just("totals"), st.just(0)),
    ),
    max_size=120,
)


@given(size=st.integers(1, 12), script=steps)
def test_lazy_successes_fold_in_order(size: int, script: list[tuple[str, int]]) -> None:
    """Successes counted lock-free and folded later equal a naive recount of the last N."""
    ring = CountRing(size)
    seen: list[int] = []
    for step, value in script:
        if step == "record":
            ring.record(value)
            seen.append(value)
        elif step == "lazy" and ring.lazy is not None:
            for _ in range(value):
                next(ring.lazy)
            seen.extend([0] * value)
        elif step == "arm":
            ring.arm()
        elif step == "clear":
            ring.clear()
            seen = []
        else:
            assert ring.totals() == naive(seen, size)
    assert ring.totals() == naive(seen, size)


@pytest.mark.parametrize("burst", [1, 2, 3, 4, 5, 7])
def test_a_burst_of_lazy_successes_evicts_slow_and_failed_outcomes(burst: int) -> None:
    """Folding a few successes evicts slow-only and failed outcomes alike, not just the last."""
    for first in (SLOW, FAILED, FAILED | SLOW):
        ring = CountRing(3)
        seen = [first, 0, 0]
        for flags in seen:
            ring.record(flags)
        ring.arm()
        assert ring.lazy is not None
        for _ in range(burst):
            next(ring.lazy)
        seen += [0] * burst
        assert ring.totals() == naive(seen, 3)


def test_increment_with_a_tally_read_before_clear_is_dropped() -> None:
    """A success counted on the tally of a window that was cleared since does not count."""
    ring = CountRing(4)
    ring.arm()
    stale = ring.lazy
    assert stale is not None
    ring.clear()
    next(stale)  # a call that started before the clear finishes after it
    assert ring.totals() == (0, 0, 0)
    assert ring.lazy is None


time_steps = st.lists(
    st.one_of(
        st.tuples(st.just("advance"), st.floats(0, 2.5, allow_nan=False)),
        st.tuples(st.just("record"), st.sampled_from([0, FAILED, SLOW, FAILED | SLOW])),
        st.tuples(st.just("lazy"), st.integers(1, 5)),
        st.tuples(st.just("totals"), st.just(0)),
    ),
    max_size=120,
)


@given(seconds=st.integers(1, 6), script=time_steps)
def test_lazy_successes_land_in_the_newest_bucket(seconds: int, script: list[Any]) -> None:
    """Lock-free successes taken before ``until`` count as outcomes of the newest second."""
    window = TimeBuckets(seconds)
    now = 0.0
    head: int | None = None
    seen: list[tuple[int, int]] = []  # (second of the bucket it landed in, flags)

    def expected() -> tuple[int, int, int]:
        return recount([f for s, f in seen if head is not None and s > head - seconds])

    for step, value in script:
        if step == "advance":
            now += value
        elif step == "record":
            if head is None or now >= head + 1:
                head = int(now // 1)
            window.record(value, now)
            seen.append((head, value))
        elif step == "lazy" and head is not None and now < window.until:
            assert window.lazy is not None
            for _ in range(value):
                next(window.lazy)
            seen.extend([(head, 0)] * value)
        elif step == "totals":
            if head is not None and now >= head + 1:
                head = int(now // 1)
            assert window.totals(now) == expected()
    if head is not None and now >= head + 1:
        head = int(now // 1)
    assert window.totals(now) == expected()


def test_lazy_successes_expire_with_their_own_second() -> None:
    """Folded successes sit in the bucket of their second and expire with it, not another."""
    window = TimeBuckets(3)
    window.record(0, 1.2)  # second 1
    assert window.lazy is not None
    for _ in range(5):
        next(window.lazy)  # also second 1
    window.record(FAILED, 1.6)
    window.record(0, 2.5)  # second 2
    assert window.totals(3.2) == (8, 1, 0)  # seconds 1-3 are live
    assert window.totals(4.1) == (1, 0, 0)  # second 1 expired with its 7 outcomes


def test_time_buckets_put_negative_readings_in_their_own_second() -> None:
    """A monotonic clock's origin is arbitrary: a reading of -0.5 is in second -1 (floor),
    not second 0, and leaves a two-second window one second before a reading of 0.5."""
    window = TimeBuckets(2)
    window.record(FAILED, -0.5)
    window.record(0, 0.5)
    assert window.totals(0.9) == (2, 1, 0)
    assert window.totals(1.0) == (1, 0, 0)


ring_ops = st.lists(
    st.one_of(
        st.tuples(st.just("record"), st.sampled_from([0, FAILED, SLOW, FAILED | SLOW])),
        st.tuples(st.just("lazy"), st.integers(1, 25)),
        st.tuples(st.just("totals"), st.just(0)),
    ),
    max_size=60,
)


@given(size=st.integers(1, 12), ops=ring_ops)
# Folds of a few successes that evict two failures or two slow calls, then go on from the
# slot they stopped at (within the ring, and wrapping round it); a fold of many that wraps.
@example(
    3,
    [
        ("record", FAILED),
        ("record", FAILED | SLOW),
        ("record", SLOW),
        ("lazy", 2),
        ("totals", 0),
        ("record", FAILED),
        ("record", 0),
    ],
)
@example(3, [("record", SLOW), ("record", FAILED | SLOW), ("record", FAILED), ("lazy", 2)])
@example(3, [("record", FAILED), ("record", FAILED), ("lazy", 2), ("record", SLOW)])
@example(10, [("record", FAILED)] * 7 + [("lazy", 5)])
@example(
    10,
    [("record", f) for f in (FAILED | SLOW, SLOW, FAILED | SLOW, SLOW, FAILED, 0, 0)]
    + [("lazy", 5)],
)
@example(10, [("record", f) for f in (FAILED, SLOW, FAILED | SLOW)] + [("lazy", 7), ("record", 0)])
def test_count_ring_with_lock_free_successes_equals_naive_last_n(
    size: int, ops: list[tuple[str, int]]
) -> None:
    """Successes counted lock-free on an armed ring (``next(ring.lazy)``), folded in by the
    next record or totals, leave the totals of a recount of the last N outcomes: few or
    many at once, wrapping round the ring or not, evicting failures and slow calls."""
    ring = CountRing(size)
    ring.arm()
    seen: list[int] = []

    def recount() -> tuple[int, int, int]:
        last = seen[-size:]
        return (
            len(last),
            sum(1 for f in last if f & FAILED),
            sum(1 for f in last if f & SLOW),
        )

    for op, value in ops:
        if op == "record":
            ring.record(value)
            seen.append(value)
        elif op == "lazy":
            lazy = ring.lazy
            assert lazy is not None
            for _ in range(value):
                next(lazy)
            seen.extend([0] * value)
        else:
            assert ring.totals() == recount()
    assert ring.totals() == recount()
    ring.record(FAILED)  # the slots the folds left are where the ring goes on from
    seen.append(FAILED)
    assert ring.totals() == recount()


def test_time_buckets_read_before_any_outcome_stay_unanchored() -> None:
    """Reading an empty time window does not make that reading its newest second: the first
    outcome does, even one from a clock that has stepped back since."""
    window = TimeBuckets(5)
    assert window.totals(100.0) == (0, 0, 0)
    window.record(FAILED, 50.0)
    assert window.totals(52.0) == (1, 1, 0)
    assert window.totals(100.0) == (0, 0, 0)


def test_a_fold_that_wraps_round_the_ring_keeps_the_ring_its_size() -> None:
    """Lock-free successes folded across the ring's end overwrite its slots: the ring never
    grows, however many bursts wrap round it (a count window's memory is its size)."""
    ring = CountRing(10)
    ring.arm()
    assert ring.lazy is not None
    seen: list[int] = []
    for _ in range(3):
        for flags in (FAILED, SLOW, 0, FAILED, 0, 0, FAILED | SLOW):
            ring.record(flags)
            seen.append(flags)
        for _ in range(8):  # folded from slot 7 past the ring's end (from slot 2, up to it)
            next(ring.lazy)
        seen += [0] * 8
        assert ring.totals() == naive(seen, 10)
        assert len(ring.ring) == 10


def test_a_time_windows_newest_bucket_takes_readings_until_its_second_ends() -> None:
    """``until`` is the end of the newest bucket's second: readings before it land in that
    bucket (the breaker counts a success there lock-free), and each roll moves it on."""
    window = TimeBuckets(5)
    window.record(FAILED, 10.2)
    assert (window.head, window.until) == (10, 11.0)
    window.record(0, 10.9)  # the same second: no roll
    assert window.until == 11.0
    window.record(0, 12.5)
    assert (window.head, window.until) == (12, 13.0)
    assert window.totals(12.9) == (3, 1, 0)
