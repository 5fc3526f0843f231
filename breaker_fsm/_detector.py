"""Failure detection: the one rule that says when a closed breaker trips.

A closed breaker trips when its streak of consecutive failures reaches
``failure_threshold``, or when its sliding window holds at least ``minimum_calls``
outcomes and their failure rate reaches ``failure_rate_threshold`` or (with slow-call
detection) their slow-call rate reaches ``slow_call_rate_threshold``. Thresholds are
inclusive (``>=``).

:meth:`BreakerPolicy.trip_reason <breaker_fsm.BreakerPolicy.trip_reason>` (the ``trip``
guard, and the words of the audit record) and the engine's locked recording path both
call :func:`trip_rule`. The inlined fast paths check the same inequalities on the live
counters without a call; the model-based and fast-path tests hold them to this rule.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._window import CountRing, TimeBuckets

__all__ = ["FAILURE_RATE", "SLOW_RATE", "STREAK", "trip_rule", "window_trips"]

#: Which rule fires (``trip_rule``'s answer); 0 means none.
STREAK, FAILURE_RATE, SLOW_RATE = 1, 2, 3


def trip_rule(
    streak: int,
    calls: int,
    failures: int,
    slow: int,
    *,
    threshold: int | None,
    minimum_calls: int,
    rate: float,
    slow_duration: float | None,
    slow_rate: float,
) -> int:
    """Which trip rule fires on these counters: ``STREAK``, ``FAILURE_RATE``, ``SLOW_RATE``, or 0.

    ``calls``, ``failures`` and ``slow`` are the window's totals (all 0 without a window);
    ``slow_duration`` is ``None`` without slow-call detection.
    """
    if threshold is not None and streak >= threshold:
        return STREAK
    if calls and calls >= minimum_calls:
        if failures / calls >= rate:
            return FAILURE_RATE
        if slow_duration is not None and slow / calls >= slow_rate:
            return SLOW_RATE
    return 0


def window_trips(
    window: CountRing | TimeBuckets,
    now: float,
    *,
    minimum_calls: int,
    rate: float,
    slow_duration: float | None,
    slow_rate: float,
) -> bool:
    """Whether the window's rates trip at ``now`` (the caller holds the breaker's lock).

    The caller has checked the streak. Reading the totals folds in the successes counted
    lock-free and expires old buckets, so the rates are checked as they are now
    (``dirty`` is cleared).
    """
    calls, failures, slow = window.totals(now)
    window.dirty = False
    return (
        trip_rule(
            0,
            calls,
            failures,
            slow,
            threshold=None,
            minimum_calls=minimum_calls,
            rate=rate,
            slow_duration=slow_duration,
            slow_rate=slow_rate,
        )
        != 0
    )
