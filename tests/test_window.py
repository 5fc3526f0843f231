"""Sliding windows: running totals equal a naive recount, whatever the sequence."""

from __future__ import annotations

from hypothesis import example, given
from hypothesis import strategies as st

from breaker_fsm import CountWindow, TimeWindow
from breaker_fsm._outcome import FAILED, SLOW
from breaker_fsm._window import CountRing, TimeBuckets, make_window

outcomes = st.lists(st.sampled_from([0, FAILED, SLOW, FAILED | SLOW]), max_size=300)


@given(size=st.integers(1, 20), seq=outcomes)
def test_count_ring_equals_naive_last_n(size: int, seq: list[int]) -> None:
    """The count window's totals equal a recount of the last N outcomes."""
    ring = CountRing(size)
    for flags in seq:
        ring.record(flags)
    last = seq[-size:] if seq else []
    assert ring.totals() == (
        len(last),
        sum(1 for f in last if f & FAILED),
        sum(1 for f in last if f & SLOW),
    )


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
    assert window.totals(now) == (
        len(live),
        sum(1 for f in live if f & FAILED),
        sum(1 for f in live if f & SLOW),
    )


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
