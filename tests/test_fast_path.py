"""The hot paths' shortcuts keep the semantics through a breaker: lazy window successes, lazily
built parts (the windows' own lazy tally is in test_window.py)."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from typing import Any, NoReturn

import pytest

from breaker_fsm import (
    BreakerPolicy,
    CallRecord,
    CircuitBreaker,
    CircuitOpenError,
    CountWindow,
    TimeWindow,
)
from breaker_fsm.testing import FakeClock
from tests.helpers import Boom, CountingClock, Interrupt, boom, fail, ok


def test_armed_window_trips_exactly_where_a_naive_window_would() -> None:
    """Once armed, lock-free successes still age out failures in order, and trips are exact."""
    breaker = CircuitBreaker(
        "w",
        BreakerPolicy(failure_threshold=None, window=CountWindow(size=10), minimum_calls=10),
    )
    for _ in range(10):
        breaker.call(ok)
    ring = breaker._window
    assert ring is not None
    assert ring.lazy is not None  # 10 calls under the line: armed
    for _ in range(25):  # lock-free successes
        breaker.call(ok)
    fail(breaker, 4)
    m = breaker.metrics()
    assert (m.state, m.window_calls, m.failure_rate, m.success_count) == ("closed", 10, 0.4, 35)
    fail(breaker)  # 5 of the last 10 failed: 0.5 >= 0.5
    assert breaker.state == "open"
    assert breaker.audit[0].counters["window_failures"] == 5


def test_success_trips_when_it_brings_the_window_to_minimum_calls() -> None:
    """Before the window is armed, a success that reaches minimum_calls can trip it."""
    breaker = CircuitBreaker(
        "w",
        BreakerPolicy(failure_threshold=None, window=CountWindow(size=10), minimum_calls=4),
    )
    fail(breaker, 3)
    breaker.call(ok)  # 3 of 4 failed
    assert breaker.state == "open"


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_stale_success_does_not_enter_an_armed_window(is_async: bool) -> None:
    """A success that started before a reset is not counted in the new (armed) window."""
    breaker = CircuitBreaker(
        "w", BreakerPolicy(window=CountWindow(size=5), failure_rate_threshold=1.0)
    )
    for _ in range(6):
        breaker.call(ok)
    assert breaker.metrics().window_calls == 5

    def reset_then_succeed() -> str:
        breaker.send("reset")
        return "ok"

    assert drive(breaker, reset_then_succeed, is_async) == "ok"
    m = breaker.metrics()
    assert (m.window_calls, m.success_count) == (0, 7)


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_success_finishing_after_a_trip_does_not_enter_the_armed_window(is_async: bool) -> None:
    """A success that started before the breaker left closed is not counted in its window."""
    policy = BreakerPolicy(window=CountWindow(size=10), minimum_calls=5, failure_rate_threshold=1.0)
    breaker = CircuitBreaker("w", policy)
    for _ in range(6):
        breaker.call(ok)  # armed: later successes are counted lock-free

    def force_open_then_succeed() -> str:
        breaker.send("force_open")  # leaves the window as it is: only closing clears it
        return "ok"

    assert drive(breaker, force_open_then_succeed, is_async) == "ok"
    m = breaker.metrics()
    assert (m.state, m.window_calls, m.success_count) == ("forced_open", 6, 7)


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_success_after_a_failure_resets_the_streak_with_a_window(is_async: bool) -> None:
    """With an armed count window a success still resets the consecutive-failure streak."""
    breaker = CircuitBreaker(
        "w",
        BreakerPolicy(failure_threshold=2, window=CountWindow(size=4), failure_rate_threshold=1.0),
    )
    for _ in range(4):
        breaker.call(ok)
    fail(breaker)
    drive(breaker, ok, is_async)
    assert breaker.metrics().failure_count == 0
    fail(breaker)
    assert breaker.state == "closed"
    fail(breaker)
    assert breaker.state == "open"


@pytest.mark.parametrize(
    ("window", "window_calls"),
    [(CountWindow(size=1000), 1000), (TimeWindow(seconds=600), 6000)],
    ids=["count", "time"],
)
def test_counts_stay_exact_with_lock_free_window_successes(
    window: CountWindow | TimeWindow, window_calls: int
) -> None:
    """Threads mixing lock-free successes and locked failures lose no count, window included."""
    breaker = CircuitBreaker(
        "w",
        BreakerPolicy(
            failure_threshold=None,
            window=window,
            failure_rate_threshold=1.0,
            minimum_calls=10,
        ),
    )
    barrier = threading.Barrier(4)

    def work() -> None:
        barrier.wait()
        for i in range(1500):
            if i % 5 == 0:
                with pytest.raises(Boom):
                    breaker.call(boom)
            else:
                breaker.call(ok)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    m = breaker.metrics()
    assert (m.success_count, m.error_count, m.total_requests) == (4800, 1200, 6000)
    assert m.window_calls == window_calls


def test_unrecorded_exception_counts_as_success_in_a_window() -> None:
    """An exception outside record_exceptions counts as a success in the window."""
    breaker = CircuitBreaker(
        "w",
        BreakerPolicy(
            record_exceptions=(Boom,), window=CountWindow(size=4), failure_rate_threshold=1.0
        ),
    )

    def other() -> NoReturn:
        raise KeyError("not a failure")

    with pytest.raises(KeyError):
        breaker.call(other)
    m = breaker.metrics()
    assert (m.success_count, m.error_count, m.window_calls) == (1, 0, 1)


def test_rarely_used_parts_are_built_on_first_use() -> None:
    """A fresh breaker has no audit log, transition lock or refusal counter until needed."""
    breaker = CircuitBreaker("lazy", BreakerPolicy(failure_threshold=1))
    assert breaker._audit_log is None
    assert breaker._tlock_obj is None
    assert breaker._rejections is None
    assert breaker.metrics().rejected_count == 0
    assert len(breaker.audit) == 0
    fail(breaker)
    with pytest.raises(CircuitOpenError):
        breaker.call(ok)
    assert breaker.metrics().rejected_count == 1
    assert [r.event for r in breaker.audit] == ["trip"]
    assert breaker._tlock_obj is not None


def test_lazy_parts_are_built_once_under_races() -> None:
    """Threads racing to build a lazy part all get the same one."""
    for _ in range(20):
        breaker = CircuitBreaker("race")
        barrier = threading.Barrier(8)
        seen: list[Any] = []

        def grab(
            breaker: CircuitBreaker = breaker,
            barrier: threading.Barrier = barrier,
            seen: list[Any] = seen,
        ) -> None:
            barrier.wait()
            seen.extend((breaker.audit, breaker._tlock, breaker._rejected))

        threads = [threading.Thread(target=grab) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len({id(x) for x in seen}) == 3


@pytest.mark.parametrize(
    "policy",
    [
        BreakerPolicy(failure_threshold=None, window=CountWindow(size=10), minimum_calls=5),
        BreakerPolicy(failure_threshold=None, window=TimeWindow(seconds=60), minimum_calls=5),
        BreakerPolicy(
            failure_threshold=None,
            window=TimeWindow(seconds=60),
            minimum_calls=5,
            slow_call_duration=1.0,
            slow_call_rate_threshold=0.5,
        ),
    ],
    ids=["count", "time", "time-slow"],
)
def test_outcomes_under_the_rate_line_never_build_the_machine(policy: BreakerPolicy) -> None:
    """Failures below minimum_calls or under the rate line consider no transition at all."""
    clock = FakeClock()
    breaker = CircuitBreaker("m", policy, clock=clock)

    def slow() -> str:
        clock.advance(1.5)
        return "slow"

    fail(breaker)  # 1 call < minimum_calls, though 1 of 1 failed
    for _ in range(7):
        breaker.call(ok)
    breaker.call(slow)  # 1 of 9 slow, where slow calls count: under 0.5
    fail(breaker)  # 2 of 10 failed: under 0.5
    m = breaker.metrics()
    assert (m.state, m.window_calls, m.error_count) == ("closed", 10, 2)
    assert breaker._machine is None  # no trip was tried: the machine was never needed
    assert breaker._tlock_obj is None


def test_audit_capacity_is_still_validated_up_front() -> None:
    """A bad audit capacity fails at construction, although the log is built later."""
    with pytest.raises(ValueError, match="audit_capacity must be an int >= 1, got 0"):
        CircuitBreaker("x", audit_capacity=0)


def test_breakers_without_a_policy_share_the_default_one() -> None:
    """The default policy is a frozen value, so breakers created without one share it."""
    a, b = CircuitBreaker("a"), CircuitBreaker("b")
    assert a.policy is b.policy
    assert a.policy == BreakerPolicy()


def test_refusal_through_the_fast_path_keeps_retry_after_and_fallback(clock: FakeClock) -> None:
    """Refusals while open report the remaining open time, or return the fallback's value."""
    breaker = CircuitBreaker("r", BreakerPolicy(failure_threshold=1, reset_timeout=10), clock=clock)
    fail(breaker)
    clock.advance(4)
    with pytest.raises(CircuitOpenError) as caught:
        breaker.call(ok)
    assert caught.value.retry_after == pytest.approx(6)
    clock.advance(6)
    assert breaker.call(ok) == "ok"  # the open duration elapsed exactly: a trial runs
    assert breaker.state == "closed"
    fallback = CircuitBreaker(
        "f", BreakerPolicy(failure_threshold=1), clock=clock, fallback=lambda *a, **k: (a, k)
    )
    fail(fallback)
    assert fallback.call(ok, 1, x=2) == ((1,), {"x": 2})


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_first_refusal_while_forced_open_is_counted(is_async: bool) -> None:
    """The very first call refused by a forced-open breaker raises CircuitOpenError and counts."""
    breaker = CircuitBreaker("f")
    breaker.send("force_open")
    with pytest.raises(CircuitOpenError) as caught:
        drive(breaker, ok, is_async)
    assert (caught.value.state, caught.value.retry_after) == ("forced_open", None)
    assert breaker.metrics().rejected_count == 1


def test_keyword_arguments_still_reach_the_operation() -> None:
    """The keyword-less fast call and the keyword call pass arguments through unchanged."""
    breaker = CircuitBreaker("k")

    def echo(*args: Any, **kwargs: Any) -> tuple[Any, Any]:
        return args, kwargs

    assert breaker.call(echo) == ((), {})
    assert breaker.call(echo, 1, 2) == ((1, 2), {})
    assert breaker.call(echo, 1, key="v") == ((1,), {"key": "v"})


def drive(breaker: CircuitBreaker, func: Any, is_async: bool) -> Any:
    """Call ``func`` through ``breaker``, sync or awaited (``func`` is sync either way)."""
    if not is_async:
        return breaker.call(func)

    async def wrapper() -> Any:
        return func()

    return asyncio.run(breaker.acall(wrapper))


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
@pytest.mark.parametrize("window", [None, CountWindow(size=3)], ids=["no-window", "count-window"])
def test_fast_path_outcomes_sync_and_async(is_async: bool, window: CountWindow | None) -> None:
    """call and acall count every fast-path outcome alike, stale ones included."""
    breaker = CircuitBreaker(
        "p", BreakerPolicy(failure_threshold=3, window=window, failure_rate_threshold=1.0)
    )

    def interrupt() -> NoReturn:
        raise Interrupt

    def reset_then_fail() -> NoReturn:
        breaker.send("reset")
        raise Boom("stale")

    for func, error in ((boom, Boom), (ok, None), (boom, Boom), (interrupt, Interrupt)):
        if error is None:
            drive(breaker, func, is_async)
        else:
            with pytest.raises(error):
                drive(breaker, func, is_async)
    m = breaker.metrics()
    assert (m.failure_count, m.success_count, m.error_count, m.ignored_count) == (1, 1, 2, 1)
    with pytest.raises(Boom):
        drive(breaker, reset_then_fail, is_async)
    m = breaker.metrics()
    assert (m.state, m.failure_count, m.error_count, m.window_calls) == ("closed", 0, 3, 0)
    for _ in range(3):
        with pytest.raises(Boom):
            drive(breaker, boom, is_async)
    assert breaker.state == "open"
    with pytest.raises(CircuitOpenError):
        drive(breaker, ok, is_async)


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_classified_exceptions_sync_and_async(is_async: bool) -> None:
    """With ignore/record lists, call and acall classify exceptions alike."""
    breaker = CircuitBreaker(
        "c", BreakerPolicy(record_exceptions=(Boom,), ignore_exceptions=(KeyError,))
    )

    def key_error() -> NoReturn:
        raise KeyError("ignored")

    def value_error() -> NoReturn:
        raise ValueError("not recorded")

    for func, error in ((key_error, KeyError), (value_error, ValueError), (boom, Boom)):
        with pytest.raises(error):
            drive(breaker, func, is_async)
    m = breaker.metrics()
    assert (m.ignored_count, m.success_count, m.error_count) == (1, 1, 1)


def test_stale_failure_and_success_with_an_unarmed_window() -> None:
    """Outcomes that straddle a reset are not counted in the new window, armed or not."""
    breaker = CircuitBreaker(
        "s", BreakerPolicy(window=CountWindow(size=10), failure_rate_threshold=1.0)
    )

    def reset_then_succeed() -> str:
        breaker.send("reset")
        return "ok"

    def reset_then_fail() -> NoReturn:
        breaker.send("reset")
        raise Boom("stale")

    fail(breaker)  # a streak, so the success below takes the locked path
    assert breaker.call(reset_then_succeed) == "ok"
    with pytest.raises(Boom):
        breaker.call(reset_then_fail)
    m = breaker.metrics()
    assert (m.window_calls, m.success_count, m.error_count) == (0, 1, 2)


def test_armed_window_counts_awaited_successes() -> None:
    """Awaited successes are counted lock-free once the window is armed, as sync ones are."""
    breaker = CircuitBreaker("a", BreakerPolicy(window=CountWindow(size=3)))

    async def aok() -> str:
        return "ok"

    async def many() -> None:
        for _ in range(10):
            await breaker.acall(aok)

    asyncio.run(many())
    ring = breaker._window
    assert ring is not None
    assert ring.lazy is not None
    m = breaker.metrics()
    assert (m.success_count, m.window_calls, m.failure_rate) == (10, 3, 0.0)


@pytest.mark.parametrize("read_metrics_first", [False, True], ids=["record-rolls", "metrics-rolls"])
def test_success_trips_a_time_window_whose_old_buckets_expired(read_metrics_first: bool) -> None:
    """A plain success still trips a time window whose rate rose as old successes expired."""
    clock = FakeClock()
    breaker = CircuitBreaker(
        "t",
        BreakerPolicy(
            failure_threshold=None,
            window=TimeWindow(seconds=3),
            minimum_calls=3,
            failure_rate_threshold=0.6,
        ),
        clock=clock,
    )
    for _ in range(3):
        breaker.call(ok)
    clock.advance(2)
    fail(breaker, 3)
    breaker.call(ok)  # 3 of 7 failed: 0.43 < 0.6; and no streak left to reset
    assert breaker.state == "closed"
    clock.advance(1.5)  # second 0 leaves the window: 3 of 4 failed
    if read_metrics_first:  # it rolls the window: the next success is in the newest second
        assert breaker.metrics().failure_rate == 0.75
    breaker.call(ok)  # 3 of 5 failed: 0.6 >= 0.6
    assert breaker.state == "open"


def test_plain_successes_skip_the_rate_check_but_still_count() -> None:
    """Successes in a time window that cannot trip it are still counted in it."""
    clock = FakeClock()
    breaker = CircuitBreaker(
        "t", BreakerPolicy(window=TimeWindow(seconds=5), minimum_calls=2), clock=clock
    )
    for _ in range(50):
        breaker.call(ok)
    fail(breaker)
    m = breaker.metrics()
    assert (m.state, m.window_calls, m.failure_rate) == ("closed", 51, pytest.approx(1 / 51))


# ----------------------------------------------------------------------------- time windows


def test_time_window_successes_are_exact_and_trip_on_time() -> None:
    """Lock-free successes in a time window still count, and failures trip it on time."""
    clock = FakeClock()
    breaker = CircuitBreaker(
        "t",
        BreakerPolicy(failure_threshold=None, window=TimeWindow(seconds=10), minimum_calls=4),
        clock=clock,
    )
    for _ in range(30):
        breaker.call(ok)
    clock.advance(0.5)
    for _ in range(30):  # lock-free: same second, window full enough, nothing expired
        breaker.call(ok)
    m = breaker.metrics()
    assert (m.success_count, m.window_calls, m.failure_rate) == (60, 60, 0.0)
    clock.advance(10)  # every success expires
    fail(breaker, 3)
    assert breaker.state == "closed"  # 3 calls < minimum_calls
    fail(breaker)
    assert breaker.state == "open"
    assert breaker.audit[0].counters["window_calls"] == 4


def test_slow_successes_in_a_time_window_take_the_counted_path() -> None:
    """A slow success is never counted lock-free: it is slow, and may trip the slow rule."""
    clock = FakeClock()
    breaker = CircuitBreaker(
        "s",
        BreakerPolicy(
            failure_threshold=None,
            window=TimeWindow(seconds=60),
            minimum_calls=2,
            slow_call_duration=1.0,
            slow_call_rate_threshold=0.5,
        ),
        clock=clock,
    )
    for _ in range(4):
        breaker.call(ok)

    def slow() -> str:
        clock.advance(1.5)
        return "slow"

    breaker.call(slow)
    assert breaker.metrics().slow_call_count == 1
    assert breaker.state == "closed"  # 1 of 5 slow
    for _ in range(2):
        breaker.call(slow)
    assert breaker.state == "closed"  # 3 of 7 slow
    breaker.call(slow)
    assert breaker.state == "open"  # 4 of 8 slow: 0.5 >= 0.5


def test_trial_success_recovers_while_the_time_window_is_armed() -> None:
    """A half-open trial's success is counted as a trial, never lock-free in the kept window."""
    clock = FakeClock()
    breaker = CircuitBreaker(
        "s",
        BreakerPolicy(
            failure_threshold=None,
            reset_timeout=0.1,
            window=TimeWindow(seconds=60),
            minimum_calls=2,
            slow_call_duration=1.0,
            slow_call_rate_threshold=0.5,
        ),
        clock=clock,
    )

    def slow() -> str:
        clock.advance(1.5)
        return "slow"

    breaker.call(ok)
    breaker.call(ok)
    breaker.call(slow)
    breaker.call(slow)  # 2 of 4 slow, no streak: the window stays armed while open
    assert breaker.state == "open"
    clock.advance(0.1)  # still inside the newest bucket's second
    assert breaker.call(ok) == "ok"
    assert breaker.state == "closed"
    assert [r.event for r in breaker.audit] == ["trip", "attempt_reset", "recover"]


@pytest.mark.parametrize(("event", "kept"), [("reset", 0), ("force_open", 5)])
def test_stale_success_does_not_enter_a_time_window(event: str, kept: int) -> None:
    """A success that started before a transition is not counted in the window, whether
    the transition cleared it (reset) or kept it (force_open)."""
    clock = FakeClock()
    breaker = CircuitBreaker(
        "t", BreakerPolicy(window=TimeWindow(seconds=60), minimum_calls=2), clock=clock
    )
    for _ in range(5):
        breaker.call(ok)

    def transition_then_succeed() -> str:
        breaker.send(event)
        return "ok"

    breaker.call(transition_then_succeed)
    m = breaker.metrics()
    assert (m.window_calls, m.success_count) == (kept, 6)


def time_window_breaker(clock: FakeClock, **policy: Any) -> CircuitBreaker:
    """A breaker on a 60 s time window that needs two calls to judge a rate."""
    policy = {"failure_threshold": None, "minimum_calls": 2, **policy}
    return CircuitBreaker("t", BreakerPolicy(window=TimeWindow(seconds=60), **policy), clock=clock)


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
@pytest.mark.parametrize(("slow", "readings"), [(None, 1), (1.0, 2)])
def test_a_time_window_success_reads_the_clock_once_at_its_end(
    slow: float | None, readings: int, is_async: bool
) -> None:
    """A success in a time window reads the clock once when it ends (that one reading
    judges it slow and files it), plus once when it starts if slow calls are timed."""
    clock = CountingClock()
    breaker = time_window_breaker(clock, slow_call_duration=slow)
    for calls in range(1, 5):  # under minimum_calls, then lock-free
        drive(breaker, ok, is_async)
        assert clock.readings == calls * readings


def test_a_slow_success_in_the_newest_second_is_never_counted_lock_free() -> None:
    """A success that takes longer than slow_call_duration but ends within the newest
    bucket's second is counted slow, from any clock origin (monotonic readings may be
    negative)."""
    clock = FakeClock(-10.0)
    breaker = time_window_breaker(clock, slow_call_duration=0.5)
    breaker.call(ok)
    breaker.call(ok)  # minimum_calls: plain successes may now be counted lock-free

    def slow() -> str:
        clock.advance(0.75)  # from -10.0 to -9.25: still in second -10
        return "slow"

    breaker.call(slow)
    m = breaker.metrics()
    assert (m.window_calls, m.slow_call_count, m.slow_call_rate) == (3, 1, pytest.approx(1 / 3))


def test_a_success_resets_the_streak_in_a_time_window() -> None:
    """A success between failures ends their streak, though the window could count it
    lock-free otherwise."""
    clock = FakeClock()
    breaker = time_window_breaker(clock, failure_threshold=2, failure_rate_threshold=1.0)
    breaker.call(ok)
    breaker.call(ok)
    fail(breaker)
    breaker.call(ok)
    fail(breaker)  # one failure in a row: 2 of 5 failed
    m = breaker.metrics()
    assert (m.state, m.failure_count, m.window_calls) == ("closed", 1, 5)


def test_every_time_window_success_reaches_the_call_sinks() -> None:
    """With a call sink, no success is counted lock-free, out of the sink's sight."""
    records: list[CallRecord] = []
    breaker = time_window_breaker(FakeClock())
    breaker.add_call_sink(records.append)
    for _ in range(4):
        breaker.call(ok)
    assert [r.outcome for r in records] == ["success"] * 4
    assert breaker.metrics().window_calls == 4


def test_a_count_window_with_slow_call_timing_counts_every_success() -> None:
    """Slow-call timing with a count window: successes past minimum_calls are counted
    under the lock (the ring is never armed on this path)."""
    clock = FakeClock()
    breaker = CircuitBreaker(
        "c",
        BreakerPolicy(window=CountWindow(size=10), minimum_calls=2, slow_call_duration=1.0),
        clock=clock,
    )
    for _ in range(4):
        assert breaker.call(ok) == "ok"
    m = breaker.metrics()
    assert (m.success_count, m.window_calls, m.slow_call_count) == (4, 4, 0)


def test_awaited_refusal_while_half_open_is_full_uses_the_fallback() -> None:
    """An awaited call refused because every trial permit is taken gets the fallback's answer."""
    clock = FakeClock()

    async def fallback() -> str:
        return "fallback"

    breaker = CircuitBreaker(
        "h", BreakerPolicy(failure_threshold=1, reset_timeout=5), clock=clock, fallback=fallback
    )
    fail(breaker)
    clock.advance(5)

    async def trial() -> str:  # holds the one permit while another call is refused
        assert breaker.state == "half_open"
        return await breaker.acall(aok)

    async def aok() -> str:
        return "ok"

    assert asyncio.run(breaker.acall(trial)) == "fallback"
    assert breaker.state == "closed"
    assert breaker.metrics().rejected_count == 1


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
@pytest.mark.parametrize("error", [Boom, Interrupt], ids=["failure", "interrupted"])
def test_a_call_sink_added_during_an_inlined_call_hears_only_the_calls_after_it(
    is_async: bool, error: type[BaseException]
) -> None:
    """A call on the inlined closed path reads no start: a call sink added while it runs
    does not hear of it (it would get a made-up start), whatever it raised; the breaker
    counts it all the same, and the sink hears every later call with its real timing."""
    clock = FakeClock(100.0)
    records: list[CallRecord] = []
    # Boom is the only exception recorded: a failure is judged, not counted inline.
    breaker = CircuitBreaker("s", BreakerPolicy(record_exceptions=(Boom,)), clock=clock)

    def add_sink_then_raise() -> NoReturn:
        breaker.add_call_sink(records.append)
        clock.advance(2)
        raise error("down")

    with pytest.raises(error):
        drive(breaker, add_sink_then_raise, is_async)
    assert records == []
    m = breaker.metrics()
    assert (m.error_count, m.ignored_count) == ((1, 0) if error is Boom else (0, 1))

    def raise_later() -> NoReturn:
        clock.advance(1)
        raise error("down")

    with pytest.raises(error):
        drive(breaker, raise_later, is_async)
    outcome = "failure" if error is Boom else "ignored"
    assert [(r.outcome, r.start, r.duration) for r in records] == [(outcome, 102.0, 1.0)]


class CountingLock:
    """A breaker's lock, wrapped: it counts the acquisitions."""

    def __init__(self, lock: threading.Lock) -> None:
        self.lock = lock
        self.acquired = 0

    def acquire(self) -> bool:
        self.acquired += 1
        return self.lock.acquire()

    def release(self) -> None:
        self.lock.release()

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(self, *_: object) -> None:
        self.release()


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_an_armed_count_window_counts_inlined_successes_without_the_lock(
    is_async: bool,
) -> None:
    """Once its count window is armed, a closed success on the inlined path takes no lock
    (a step of the window's tally); the window and the totals hold it all the same."""
    breaker = CircuitBreaker("w", BreakerPolicy(window=CountWindow(size=3)))
    for _ in range(3):
        drive(breaker, ok, is_async)  # minimum_calls under the line: armed
    counting = CountingLock(breaker._lock)
    breaker._lock = counting  # type: ignore[assignment]
    for _ in range(5):
        assert drive(breaker, ok, is_async) == "ok"
    assert counting.acquired == 0
    breaker._lock = counting.lock
    m = breaker.metrics()
    assert (m.success_count, m.window_calls, m.failure_rate) == (8, 3, 0.0)


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_an_open_breaker_refuses_inline_on_one_clock_reading_to_its_episodes_end(
    is_async: bool,
) -> None:
    """An enforcing open breaker refuses right in call/acall on one clock reading, up to
    the last moment of its episode (half a second left here), and reports that reading's
    retry time."""
    clock = CountingClock()
    breaker = CircuitBreaker("o", BreakerPolicy(failure_threshold=1, reset_timeout=10), clock=clock)
    fail(breaker)
    clock.advance(9.5)
    clock.readings = 0
    with pytest.raises(CircuitOpenError) as refused:
        drive(breaker, ok, is_async)
    assert (refused.value.retry_after, clock.readings) == (0.5, 1)
    assert breaker.metrics().rejected_count == 1


class SendOnRelease:
    """Wraps a breaker's lock: the first release sends ``event`` right after it, between a
    fast-path outcome's count and the trip that count made due; ``readings`` is the clock's
    count of readings once that transition is made."""

    def __init__(self, breaker: CircuitBreaker, clock: CountingClock, event: str) -> None:
        self.breaker = breaker
        self.clock = clock
        self.lock = breaker._lock
        self.event: str | None = event
        self.readings = -1

    def acquire(self) -> bool:
        return self.lock.acquire()

    def release(self) -> None:
        self.lock.release()
        event, self.event = self.event, None
        if event is not None:
            self.breaker.send(event)
            self.readings = self.clock.readings

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(self, *_: object) -> None:
        self.release()


@pytest.mark.parametrize(
    ("threshold", "failures", "outcome", "slow"),
    [(1, 0, boom, None), (None, 1, ok, None), (1, 0, boom, 10.0)],
    ids=["failure-streak", "success-rate", "timed-failure-streak"],
)
def test_a_fast_path_trip_that_lost_the_race_is_dropped_unasked(
    threshold: int | None, failures: int, outcome: Any, slow: float | None
) -> None:
    """A trip that a fast-path outcome (a failure's streak, or a success that brings the
    window's rate to minimum_calls), or a timed one (slow calls timed: the locked
    recording path), made due in a generation that a transition has ended since is
    dropped as it stands: the machine is not asked (not a clock reading for its guard),
    and the transition made first is the only one."""
    clock = CountingClock()
    policy = BreakerPolicy(
        failure_threshold=threshold,
        window=CountWindow(size=4),
        minimum_calls=2,
        slow_call_duration=slow,
    )
    breaker = CircuitBreaker("w", policy, clock=clock)
    fail(breaker, failures)  # below minimum_calls: no rule broken yet
    lock = breaker._lock = SendOnRelease(breaker, clock, "force_open")  # type: ignore[assignment]
    with contextlib.suppress(Boom):
        breaker.call(outcome)  # a trip due in generation 0, then force_open takes it over
    breaker._lock = lock.lock
    assert lock.readings > 0
    assert clock.readings == lock.readings
    assert (breaker.state, [r.event for r in breaker.audit]) == ("forced_open", ["force_open"])


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_a_time_window_counts_successes_without_the_lock_from_minimum_calls(
    is_async: bool,
) -> None:
    """A closed success in a time window takes no lock once the window holds exactly
    minimum_calls outcomes and no streak is left, also right after those outcomes' rates
    were checked (the success that reset the streak brought the window to minimum_calls)."""
    breaker = time_window_breaker(FakeClock(), minimum_calls=3)
    drive(breaker, ok, is_async)
    with pytest.raises(Boom):
        drive(breaker, boom, is_async)
    drive(breaker, ok, is_async)  # resets the streak; 1 of 3 failed: checked, under 0.5
    counting = CountingLock(breaker._lock)
    breaker._lock = counting  # type: ignore[assignment]
    assert drive(breaker, ok, is_async) == "ok"
    assert counting.acquired == 0
    breaker._lock = counting.lock
    m = breaker.metrics()
    assert (m.state, m.success_count, m.window_calls, m.failure_rate) == ("closed", 3, 4, 0.25)


@pytest.mark.parametrize(
    "policy",
    [{"slow_call_duration": 0.5}, {"call_timeout": 1.0}],
    ids=["exactly-slow_call_duration", "under-call_timeout"],
)
def test_a_timed_success_neither_slow_nor_late_is_counted_without_the_lock(
    policy: dict[str, float],
) -> None:
    """A success that took exactly slow_call_duration is not slow, and one under
    call_timeout is not late, whatever the clock reads (here 100 s): once the time window
    holds minimum_calls, either is counted lock-free, a plain success."""
    clock = FakeClock(100.0)
    breaker = time_window_breaker(clock, **policy)
    breaker.call(ok)
    breaker.call(ok)  # minimum_calls

    def half_a_second() -> str:
        clock.advance(0.5)  # to 100.5: still in the newest bucket's second
        return "ok"

    counting = CountingLock(breaker._lock)
    breaker._lock = counting  # type: ignore[assignment]
    assert breaker.call(half_a_second) == "ok"
    assert counting.acquired == 0
    breaker._lock = counting.lock
    m = breaker.metrics()
    assert (m.success_count, m.error_count, m.slow_call_count, m.window_calls) == (3, 0, 0, 3)


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
@pytest.mark.parametrize("case", ["success", "failure", "judged-failure"])
def test_a_call_sink_added_during_an_untimed_call_hears_only_the_calls_after_it(
    is_async: bool, case: str
) -> None:
    """A call off the inlined path that times nothing (a time window, an is_failure
    predicate, no slow-call timing or call_timeout) reads no start: a call sink added while
    it runs does not hear of it (it would get a made-up start); the breaker counts it all
    the same, and the sink hears every later call with its real timing."""
    clock = FakeClock(100.0)
    records: list[CallRecord] = []
    if case == "judged-failure":
        breaker = CircuitBreaker("s", BreakerPolicy(), clock=clock, is_failure=lambda r: r == "bad")
    else:
        breaker = CircuitBreaker("s", BreakerPolicy(window=TimeWindow(seconds=60)), clock=clock)

    def end(after: float) -> str:
        clock.advance(after)
        if case == "failure":
            raise Boom("down")
        return "bad" if case == "judged-failure" else "ok"

    def add_sink_then_end() -> str:
        breaker.add_call_sink(records.append)
        return end(2)

    for operation in (add_sink_then_end, lambda: end(1)):
        with pytest.raises(Boom) if case == "failure" else contextlib.nullcontext():
            drive(breaker, operation, is_async)
    outcome = "success" if case == "success" else "failure"
    assert [(r.outcome, r.start, r.duration) for r in records] == [(outcome, 102.0, 1.0)]
    m = breaker.metrics()
    assert (m.success_count, m.error_count) == ((2, 0) if case == "success" else (0, 2))


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
@pytest.mark.parametrize("event", ["reset", "recover"])
def test_a_breaker_back_in_closed_takes_the_inlined_path_again(is_async: bool, event: str) -> None:
    """Closed again (an operator's reset, or a recovery after an open episode), a breaker
    whose policy the inlined path covers takes it again: a success reads no clock and takes
    no lock."""
    clock = CountingClock()
    breaker = CircuitBreaker("b", BreakerPolicy(failure_threshold=1, reset_timeout=10), clock=clock)
    fail(breaker)
    if event == "reset":
        breaker.send("reset")
    else:
        clock.advance(10)
        assert drive(breaker, ok, is_async) == "ok"  # the trial: recovers
    assert breaker.state == "closed"
    clock.readings = 0
    counting = CountingLock(breaker._lock)
    breaker._lock = counting  # type: ignore[assignment]
    assert drive(breaker, ok, is_async) == "ok"
    breaker._lock = counting.lock
    assert (clock.readings, counting.acquired) == (0, 0)
    assert breaker.metrics().success_count == (1 if event == "reset" else 2)


class CallOnClear:
    """Wraps a breaker's count window: its first ``clear()``, which a transition makes under
    the breaker's lock before it writes the new state, first makes a call through the
    breaker, as another thread's call could land right then; ``seen`` is what it did."""

    def __init__(self, breaker: CircuitBreaker) -> None:
        self.breaker = breaker
        self.window = breaker._window
        self.seen: str | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.window, name)

    def clear(self) -> None:
        if self.seen is None:
            try:
                self.seen = self.breaker.call(ok)
            except CircuitOpenError as exc:
                self.seen = f"refused: {exc.state}"
        self.window.clear()


def test_a_call_during_a_transition_to_closed_is_judged_on_the_state_being_left() -> None:
    """While a transition is applied, no call takes the inlined closed path: one that lands
    between its first write and the new state (here inside it) is judged on the state the
    breaker is leaving, so a forced-open breaker that is being reset still refuses it."""
    breaker = CircuitBreaker("w", BreakerPolicy(window=CountWindow(size=3)))
    for _ in range(3):
        breaker.call(ok)  # minimum_calls under the line: armed (a lock-free success)
    breaker.send("force_open")
    hook = CallOnClear(breaker)
    breaker._window = hook  # type: ignore[assignment]
    assert breaker.send("reset") == "closed"
    breaker._window = hook.window
    assert hook.seen == "refused: forced_open"
    assert breaker.metrics().rejected_count == 1


def test_a_half_open_breaker_with_every_permit_taken_refuses_without_the_lock() -> None:
    """Half-open with every trial permit out, a call is refused on one look at the permits:
    no lock is taken to refuse it."""
    clock = FakeClock()
    policy = BreakerPolicy(failure_threshold=1, reset_timeout=10, half_open_max_calls=1)
    breaker = CircuitBreaker("h", policy, clock=clock)
    fail(breaker)
    clock.advance(10)
    acquired: list[int] = []

    def trial() -> str:
        counting = CountingLock(breaker._lock)
        breaker._lock = counting  # type: ignore[assignment]
        try:
            with pytest.raises(CircuitOpenError):
                breaker.call(ok)  # the one permit is this trial's
        finally:
            breaker._lock = counting.lock
        acquired.append(counting.acquired)
        return "trial"

    assert breaker.call(trial) == "trial"
    assert acquired == [0]
    assert (breaker.state, breaker.metrics().rejected_count) == ("closed", 1)
