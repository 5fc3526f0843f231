"""CircuitBreaker: calls, rejections, outcomes, operator events, metrics and sinks."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from typing import Any, NoReturn

import pytest

from breaker_fsm import (
    BreakerPolicy,
    CircuitBreaker,
    CircuitOpenError,
    CountWindow,
    IllegalTransitionError,
    TimeWindow,
    Transition,
)
from breaker_fsm.audit import verify
from breaker_fsm.testing import FakeClock
from tests.helpers import Boom, aok, boom, fail, ok


def events(breaker: CircuitBreaker) -> list[str]:
    return [r.event for r in breaker.audit]


def make(clock: FakeClock, **policy: Any) -> CircuitBreaker:
    policy.setdefault("failure_threshold", 3)
    policy.setdefault("reset_timeout", 10)
    return CircuitBreaker("svc", BreakerPolicy(**policy), clock=clock)


def trip(breaker: CircuitBreaker) -> None:
    fail(breaker, breaker.policy.failure_threshold or 1)
    assert breaker.state == "open"


# ----------------------------------------------------------------------------- basics


def test_name_is_required() -> None:
    """A breaker without a name is refused."""
    with pytest.raises(ValueError, match="name"):
        CircuitBreaker("")


def test_call_passes_arguments_and_returns(clock: FakeClock) -> None:
    """call() forwards positional and keyword arguments and returns the result."""
    breaker = make(clock)
    assert breaker.call(lambda a, b=0: a + b, 1, b=2) == 3
    assert breaker.state == "closed"
    assert repr(breaker) == "<CircuitBreaker 'svc' closed>"


def test_operation_exception_is_reraised_unchanged(clock: FakeClock) -> None:
    """The operation's own exception object propagates after being recorded."""
    breaker = make(clock)
    error = Boom("exact")

    def raiser() -> NoReturn:
        raise error

    with pytest.raises(Boom) as exc:
        breaker.call(raiser)
    assert exc.value is error
    assert breaker.metrics().failure_count == 1


def test_trips_at_threshold_and_rejects(clock: FakeClock) -> None:
    """The threshold-th consecutive failure trips; the next call is rejected with context."""
    breaker = make(clock)
    fail(breaker, 2)
    assert breaker.state == "closed"
    fail(breaker)
    assert breaker.state == "open"
    clock.advance(4)
    with pytest.raises(CircuitOpenError) as exc:
        breaker.call(ok)
    assert (exc.value.breaker, exc.value.state, exc.value.retry_after) == ("svc", "open", 6.0)
    assert "svc" in str(exc.value)
    assert "retry after 6.000s" in str(exc.value)


def test_success_resets_streak(clock: FakeClock) -> None:
    """A success between failures restarts the consecutive count."""
    breaker = make(clock)
    fail(breaker, 2)
    breaker.call(ok)
    fail(breaker, 2)
    assert breaker.state == "closed"
    assert breaker.metrics().failure_count == 2


def test_half_open_after_timeout_then_recover(clock: FakeClock) -> None:
    """After the open duration the next call is a trial; its success closes the breaker."""
    breaker = make(clock)
    trip(breaker)
    clock.advance(9.999)
    with pytest.raises(CircuitOpenError):
        breaker.call(ok)
    clock.advance(0.001)
    assert breaker.call(ok) == "ok"
    assert breaker.state == "closed"
    assert events(breaker) == ["trip", "attempt_reset", "recover"]
    assert [r.reason for r in breaker.audit][1:] == [
        "open duration 10s elapsed",
        "1 trial call(s) succeeded",
    ]


@pytest.mark.parametrize("origin", [-1000.0, 0.0, 1000.0])
def test_open_duration_is_measured_from_the_trip_whatever_the_clock_origin(origin: float) -> None:
    """The open episode lasts reset_timeout after the trip, wherever the monotonic clock starts."""
    clock = FakeClock(start=origin)
    breaker = make(clock)
    trip(breaker)
    clock.advance(5)
    with pytest.raises(IllegalTransitionError, match="guard"):
        breaker.send("attempt_reset")  # the guard measures the open duration too
    clock.advance(4.5)
    with pytest.raises(CircuitOpenError):
        breaker.call(ok)
    clock.advance(0.5)  # exactly reset_timeout after the trip
    assert breaker.call(ok) == "ok"
    assert events(breaker) == ["trip", "attempt_reset", "recover"]


def test_failed_trial_retrips(clock: FakeClock) -> None:
    """A failing trial call sends the breaker back to open for a new episode."""
    breaker = make(clock)
    trip(breaker)
    clock.advance(10)
    fail(breaker)
    assert breaker.state == "open"
    assert events(breaker) == ["trip", "attempt_reset", "retrip"]
    assert breaker.metrics().retry_after == 10


def test_half_open_admits_only_permitted_trials(clock: FakeClock) -> None:
    """While trials are in flight, calls beyond half_open_max_calls are rejected."""
    breaker = make(clock, success_threshold=2, half_open_max_calls=2)
    trip(breaker)
    clock.advance(10)
    seen: list[str] = []

    def nested() -> str:
        # Runs as the first trial; a second trial is admitted, a third is not.
        seen.append(breaker.call(ok, "second"))
        with pytest.raises(CircuitOpenError) as exc:
            breaker.call(ok)
        assert exc.value.state == "half_open"
        assert exc.value.retry_after is None
        return "first"

    assert breaker.call(nested) == "first"
    assert seen == ["second"]
    assert breaker.state == "closed"


def test_success_threshold_needs_several_trials(clock: FakeClock) -> None:
    """With success_threshold=2 one successful trial keeps the breaker half-open."""
    breaker = make(clock, success_threshold=2, half_open_max_calls=3)
    trip(breaker)
    clock.advance(10)
    breaker.call(ok)
    assert breaker.state == "half_open"
    breaker.call(ok)
    assert breaker.state == "closed"


# ----------------------------------------------------------------------------- outcomes


def test_ignored_exceptions_count_neither_way(clock: FakeClock) -> None:
    """An ignored exception changes no streak and no window, but is a request."""
    breaker = make(clock, ignore_exceptions=(KeyError,))
    fail(breaker, 2)
    with pytest.raises(KeyError):
        breaker.call(lambda: {}["x"])
    m = breaker.metrics()
    assert (m.failure_count, m.ignored_count, m.total_requests) == (2, 1, 3)
    fail(breaker)
    assert breaker.state == "open"


def test_unrecorded_exception_counts_as_success(clock: FakeClock) -> None:
    """An exception outside record_exceptions means the dependency answered: a success."""
    breaker = make(clock, record_exceptions=(Boom,))
    fail(breaker, 2)
    with pytest.raises(ValueError, match="bad input"):
        breaker.call(lambda: (_ for _ in ()).throw(ValueError("bad input")))
    assert breaker.metrics().failure_count == 0
    assert breaker.metrics().success_count == 1


@pytest.mark.parametrize("exc_type", [KeyboardInterrupt, SystemExit, asyncio.CancelledError])
def test_base_exceptions_are_neutral_and_release_permit(
    clock: FakeClock, exc_type: type[BaseException]
) -> None:
    """Non-Exception errors are not counted and give a half-open permit back."""
    breaker = make(clock)
    trip(breaker)
    clock.advance(10)

    def interrupted() -> NoReturn:
        raise exc_type

    def only_trial() -> str:  # takes the one permit: a call inside it is refused
        with pytest.raises(CircuitOpenError):
            breaker.call(ok)
        return "ok"

    with pytest.raises(exc_type):
        breaker.call(interrupted)
    assert breaker.state == "half_open"
    assert breaker.call(only_trial) == "ok"  # the permit was released, and only that one
    assert breaker.state == "closed"
    assert breaker.metrics().ignored_count == 1


def test_ignored_exception_releases_half_open_permit(clock: FakeClock) -> None:
    """An ignored exception during a trial frees the permit for another trial."""
    breaker = make(clock, ignore_exceptions=(KeyError,))
    trip(breaker)
    clock.advance(10)
    with pytest.raises(KeyError):
        breaker.call(lambda: {}["x"])
    assert breaker.call(ok) == "ok"
    assert breaker.state == "closed"


def test_is_failure_predicate_fails_but_returns(clock: FakeClock) -> None:
    """A result the predicate rejects is recorded as a failure and still returned."""
    breaker = CircuitBreaker(
        "http",
        BreakerPolicy(failure_threshold=2),
        clock=clock,
        is_failure=lambda status: status >= 500,
    )
    assert breaker.call(ok, 503) == 503
    assert breaker.call(ok, 200) == 200
    assert breaker.call(ok, 500) == 500
    assert breaker.call(ok, 502) == 502
    assert breaker.state == "open"


def test_is_failure_hint_sets_open_duration(clock: FakeClock) -> None:
    """A numeric verdict lengthens the episode it trips, capped by max_reset_timeout."""
    policy = BreakerPolicy(failure_threshold=1, reset_timeout=1, max_reset_timeout=20)
    breaker = CircuitBreaker("h", policy, clock=clock, is_failure=lambda r: r)
    assert breaker.call(ok, 60.0) == 60.0
    assert breaker.metrics().open_duration == 20
    breaker.send("reset")
    breaker.call(ok, 0.5)  # shorter than the policy's: the policy wins
    assert breaker.metrics().open_duration == 1


class ResetOnRelease:
    """Wraps a breaker's lock: once the breaker holds an open hint, a release resets it first."""

    def __init__(self, breaker: CircuitBreaker) -> None:
        self.breaker = breaker
        self.lock = breaker._lock
        self.armed = True

    def acquire(self) -> bool:
        return self.lock.acquire()

    def release(self) -> None:
        self.lock.release()
        if self.armed and self.breaker._open_hint is not None:
            self.armed = False
            self.breaker.send("reset")  # between the outcome's count and its trip

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(self, *_: object) -> None:
        self.release()


def test_a_new_breaker_shows_the_policys_reset_timeout_as_its_open_duration(
    clock: FakeClock,
) -> None:
    """Before any open episode, metrics().open_duration is the next episode's length: the
    policy's reset_timeout, and an override (force_open) does not change it."""
    breaker = make(clock, reset_timeout=7)
    assert breaker.metrics().open_duration == 7
    breaker.send("force_open")
    assert breaker.metrics().open_duration == 7


def test_open_hint_of_a_trip_that_lost_the_race_is_dropped(clock: FakeClock) -> None:
    """A hint whose trip finds another transition made first does not lengthen a later episode."""
    policy = BreakerPolicy(failure_threshold=1, reset_timeout=10)
    breaker = CircuitBreaker("h", policy, clock=clock, is_failure=lambda r: r)
    breaker._lock = ResetOnRelease(breaker)  # type: ignore[assignment]
    assert breaker.call(ok, 60.0) == 60.0
    assert (breaker.state, events(breaker)) == ("closed", ["reset"])  # the trip was stale
    breaker._lock = breaker._lock.lock  # type: ignore[attr-defined]
    fail(breaker)
    assert breaker.metrics().open_duration == 10


def test_is_failure_predicate_that_raises_is_neutral(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """A predicate that raises leaves the call's result intact, logs and counts it."""

    def broken(_: object) -> bool:
        raise RuntimeError("predicate bug")

    breaker = CircuitBreaker("p", clock=clock, is_failure=broken)
    with caplog.at_level(logging.ERROR, logger="breaker_fsm"):
        assert breaker.call(ok, 1) == 1
    m = breaker.metrics()
    assert (m.ignored_count, m.sink_errors, m.state) == (1, 1, "closed")
    assert "is_failure predicate raised" in caplog.text


# ----------------------------------------------------------------------------- fallback


def test_fallback_receives_arguments(clock: FakeClock) -> None:
    """A refused call returns fallback(*args, **kwargs) and counts a rejection."""
    breaker = CircuitBreaker(
        "fb",
        BreakerPolicy(failure_threshold=1),
        clock=clock,
        fallback=lambda user_id, *, region: f"cached {user_id} {region}",
    )
    fail(breaker)
    assert breaker.call(ok, 7, region="eu") == "cached 7 eu"
    assert breaker.metrics().rejected_count == 1


def test_fallback_that_raises_propagates(clock: FakeClock) -> None:
    """A failing fallback raises its own error; the state stays legal."""

    def bad_fallback() -> NoReturn:
        raise LookupError("no cache")

    breaker = CircuitBreaker(
        "fb", BreakerPolicy(failure_threshold=1), clock=clock, fallback=bad_fallback
    )
    fail(breaker)
    with pytest.raises(LookupError):
        breaker.call(ok)
    assert breaker.state == "open"
    assert breaker.metrics().rejected_count == 1


# ----------------------------------------------------------------------------- async


def test_acall_and_async_fallback(clock: FakeClock) -> None:
    """acall() runs coroutines, records failures, and awaits an async fallback."""

    async def fallback(x: int) -> str:
        return f"fallback {x}"

    breaker = CircuitBreaker(
        "async", BreakerPolicy(failure_threshold=2), clock=clock, fallback=fallback
    )

    async def good(x: int) -> int:
        return x * 2

    async def bad(x: int) -> int:
        raise Boom(x)

    async def scenario() -> list[object]:
        results: list[object] = [await breaker.acall(good, 2)]
        for _ in range(2):
            with pytest.raises(Boom):
                await breaker.acall(bad, 1)
        results.append(await breaker.acall(good, 3))
        return results

    assert asyncio.run(scenario()) == [4, "fallback 3"]
    assert breaker.state == "open"


def test_acall_cancellation_is_neutral(clock: FakeClock) -> None:
    """A cancelled trial call is neutral and frees its permit."""
    breaker = make(clock)
    trip(breaker)
    clock.advance(10)

    async def scenario() -> str:
        started = asyncio.Event()

        async def hang() -> str:
            started.set()
            await asyncio.Event().wait()
            return "never"

        task = asyncio.ensure_future(breaker.acall(hang))
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

        async def good() -> str:
            return "trial ok"

        return await breaker.acall(good)

    assert asyncio.run(scenario()) == "trial ok"
    assert breaker.state == "closed"


def test_acall_without_fallback_raises_and_disabled_runs(clock: FakeClock) -> None:
    """acall() raises CircuitOpenError while open and runs everything while disabled."""
    breaker = make(clock)
    trip(breaker)

    async def good() -> str:
        return "ran"

    with pytest.raises(CircuitOpenError):
        asyncio.run(breaker.acall(good))
    breaker.send("disable")
    assert asyncio.run(breaker.acall(good)) == "ran"


def test_acall_slow_path_records_outcomes(clock: FakeClock) -> None:
    """acall() through a non-fast breaker records successes and failures."""
    breaker = CircuitBreaker(
        "async-window",
        BreakerPolicy(failure_threshold=None, window=TimeWindow(seconds=5), minimum_calls=2),
        clock=clock,
    )

    async def good() -> str:
        return "ok"

    async def bad() -> str:
        raise Boom

    assert asyncio.run(breaker.acall(good)) == "ok"
    with pytest.raises(Boom):
        asyncio.run(breaker.acall(bad))
    assert breaker.state == "open"  # 1 failure in 2 calls reaches 0.5


# ----------------------------------------------------------------------------- decorator


def test_decorator_keeps_name_and_docstring(clock: FakeClock) -> None:
    """@breaker wraps def and async def, keeping their metadata."""
    breaker = make(clock)

    @breaker
    def fetch(x: int) -> int:
        """Fetch x."""
        return x

    @breaker
    async def afetch(x: int) -> int:
        """Fetch x asynchronously."""
        return x + 1

    assert (fetch.__name__, fetch.__doc__) == ("fetch", "Fetch x.")
    assert (afetch.__name__, afetch.__doc__) == ("afetch", "Fetch x asynchronously.")
    assert fetch(1) == 1
    assert asyncio.run(afetch(1)) == 2
    assert asyncio.iscoroutinefunction(afetch)


# ----------------------------------------------------------------------------- operator


def test_forced_open_rejects_without_retry_after(clock: FakeClock) -> None:
    """forced_open rejects everything and never resets by itself."""
    breaker = make(clock)
    assert breaker.send("force_open") == "forced_open"
    clock.advance(1e6)
    with pytest.raises(CircuitOpenError) as exc:
        breaker.call(ok)
    assert (exc.value.state, exc.value.retry_after) == ("forced_open", None)
    assert breaker.state == "forced_open"


def test_disabled_runs_and_records_nothing(clock: FakeClock) -> None:
    """disabled runs every call, records nothing and never trips."""
    breaker = make(clock)
    breaker.send("disable")
    fail(breaker, 10)
    assert breaker.call(ok) == "ok"
    m = breaker.metrics()
    assert (m.state, m.total_requests, m.failure_count, m.rejected_count) == (
        "disabled",
        0,
        0,
        0,
    )


def test_reset_clears_current_counters_but_not_lifetime(clock: FakeClock) -> None:
    """reset closes, clears streak and backoff, keeps lifetime totals."""
    breaker = make(clock, reset_timeout_multiplier=2)
    trip(breaker)
    clock.advance(10)
    fail(breaker)  # retrip: second episode, 20 s
    assert breaker.metrics().open_duration == 20
    assert breaker.send("reset", reason="fixed by hand") == "closed"
    m = breaker.metrics()
    assert (m.failure_count, m.error_count, m.open_duration) == (0, 4, 10)
    assert breaker.audit[-1].reason == "fixed by hand"


def test_reset_from_closed_is_recorded(clock: FakeClock) -> None:
    """reset is legal from closed too and produces an audit record."""
    breaker = make(clock)
    fail(breaker, 2)
    breaker.send("reset")
    assert breaker.metrics().failure_count == 0
    assert [(r.source, r.target) for r in breaker.audit] == [("closed", "closed")]


@pytest.mark.parametrize(
    ("setup", "event"),
    [
        ([], "recover"),
        ([], "attempt_reset"),
        (["force_open"], "disable"),
        (["disable"], "force_open"),
        (["force_open"], "trip"),
    ],
)
def test_illegal_events_name_event_and_state(
    clock: FakeClock, setup: list[str], event: str
) -> None:
    """An event not legal from the current state raises and changes nothing."""
    breaker = make(clock)
    for name in setup:
        breaker.send(name)
    before = (breaker.state, len(breaker.audit))
    with pytest.raises(IllegalTransitionError) as exc:
        breaker.send(event)
    assert (exc.value.event, exc.value.state) == (event, before[0])
    assert event in str(exc.value)
    assert before[0] in str(exc.value)
    assert (breaker.state, len(breaker.audit)) == before


def test_unknown_event(clock: FakeClock) -> None:
    """An unknown event name is reported as such."""
    breaker = make(clock)
    with pytest.raises(IllegalTransitionError, match="unknown event"):
        breaker.send("explode")


def test_guarded_event_refused_when_guard_fails(clock: FakeClock) -> None:
    """A guarded event sent by hand fires only when the policy's guard holds."""
    breaker = make(clock)
    with pytest.raises(IllegalTransitionError, match="guard"):
        breaker.send("trip")
    fail(breaker, 2)
    trip_breaker = make(clock, failure_threshold=2)
    fail(trip_breaker, 1)
    with pytest.raises(IllegalTransitionError):
        trip_breaker.send("trip")
    assert trip_breaker.state == "closed"


@pytest.mark.parametrize("kept", [False, True], ids=["pooled", "kept"])
def test_a_guarded_event_sent_with_a_reason_decides_on_the_counters(
    clock: FakeClock, kept: bool
) -> None:
    """send(event, reason=...) asks the guard about the breaker's counters, through a pooled
    machine or the breaker's own: refused before the open duration, taken after it."""
    breaker = make(clock)
    if kept:
        assert breaker.machine.current_state_value == "closed"
    with pytest.raises(IllegalTransitionError, match="its guard does not hold"):
        breaker.send("trip", reason="by hand")
    trip(breaker)
    clock.advance(9)
    with pytest.raises(IllegalTransitionError, match="its guard does not hold"):
        breaker.send("attempt_reset", reason="too early")
    clock.advance(1)
    assert breaker.send("attempt_reset", reason="probe now") == "half_open"
    assert [(r.event, r.reason) for r in breaker.audit] == [
        ("trip", "3 consecutive failures ≥ 3; open for 10s"),
        ("attempt_reset", "probe now"),
    ]


def test_asend_without_a_store_is_send(clock: FakeClock) -> None:
    """asend on an in-memory breaker returns, raises and records exactly what send does."""
    script = [
        ("force_open", "maintenance"),
        ("disable", None),  # illegal from forced_open
        ("reset", None),
        ("trip", None),  # its guard does not hold
        ("explode", None),  # unknown
        ("disable", "load test"),
        ("reset", "done"),
    ]

    def trail(breaker: CircuitBreaker) -> list[tuple[Any, ...]]:
        return [(r.seq, r.event, r.source, r.target, r.reason) for r in breaker.audit]

    synced, awaited = make(clock), make(clock)
    sent: list[str] = []
    for event, reason in script:
        try:
            sent.append(synced.send(event, reason=reason))
        except IllegalTransitionError as exc:
            sent.append(str(exc))

    async def scenario() -> list[str]:
        results: list[str] = []
        for event, reason in script:
            try:
                results.append(await awaited.asend(event, reason=reason))
            except IllegalTransitionError as exc:
                results.append(str(exc))
        return results

    assert asyncio.run(scenario()) == sent
    assert sent == [
        "forced_open",
        "event 'disable' is not allowed in state 'forced_open' (allowed: reset)",
        "closed",
        "event 'trip' is not allowed in state 'closed' (its guard does not hold)",
        "event 'explode' is not allowed in state 'closed' (unknown event; the events are "
        "attempt_reset, disable, force_open, recover, reset, retrip, trip)",
        "disabled",
        "closed",
    ]
    assert awaited.state == synced.state == "closed"
    assert trail(awaited) == trail(synced)
    assert [r.reason for r in awaited.audit] == [
        "maintenance",
        "operator: reset",
        "load test",
        "done",
    ]
    assert verify(awaited.audit) == 4


def test_machine_send_directly_is_still_audited(clock: FakeClock) -> None:
    """Driving breaker.machine directly still updates the breaker and its trail."""
    breaker = make(clock)
    breaker.machine.send("force_open")
    assert breaker.state == "forced_open"
    assert events(breaker) == ["force_open"]
    assert verify(breaker.audit) == 1


# ----------------------------------------------------------------------------- stale outcomes


def test_outcome_started_before_transition_is_not_counted(clock: FakeClock) -> None:
    """A call that started in closed and finishes after a reset does not count against it."""
    breaker = make(clock, failure_threshold=2)
    fail(breaker)

    def reset_then_fail() -> NoReturn:
        breaker.send("reset")
        raise Boom

    with pytest.raises(Boom):
        breaker.call(reset_then_fail)
    m = breaker.metrics()
    assert (m.state, m.failure_count, m.error_count) == ("closed", 0, 2)


# ----------------------------------------------------------------------------- windows


def test_count_window_trips_on_rate(clock: FakeClock) -> None:
    """With a count window the failure rate trips once minimum_calls is reached."""
    breaker = make(
        clock, failure_threshold=None, window=CountWindow(size=4), failure_rate_threshold=0.5
    )
    breaker.call(ok)
    fail(breaker)
    breaker.call(ok)
    assert breaker.state == "closed"  # 3 calls < minimum (capped at 4)
    fail(breaker)
    assert breaker.state == "open"
    record = breaker.audit[0]
    assert record.reason.startswith("failure rate 0.50 ≥ 0.5 over 4 calls")
    assert record.counters["window_calls"] == 4


def test_success_can_trip_when_minimum_reached(clock: FakeClock) -> None:
    """Reaching minimum_calls with a success still trips if the rate is over the line."""
    breaker = make(clock, failure_threshold=None, window=CountWindow(size=10), minimum_calls=3)
    fail(breaker, 2)
    assert breaker.state == "closed"
    breaker.call(ok)  # 2 of 3 failed: 0.67 >= 0.5
    assert breaker.state == "open"


def test_window_is_cleared_on_close_and_kept_while_open(clock: FakeClock) -> None:
    """While open the last window stays readable; recovery starts an empty window."""
    breaker = make(clock, failure_threshold=None, window=CountWindow(size=2), reset_timeout=1)
    fail(breaker, 2)
    m = breaker.metrics()
    assert (m.state, m.window_calls, m.failure_rate) == ("open", 2, 1.0)
    clock.advance(1)
    breaker.call(ok)
    m = breaker.metrics()
    assert (m.state, m.window_calls, m.failure_rate) == ("closed", 0, None)


def test_time_window_buckets_expire(clock: FakeClock) -> None:
    """Outcomes older than the time window no longer count."""
    breaker = make(
        clock,
        failure_threshold=None,
        window=TimeWindow(seconds=3),
        minimum_calls=3,
    )
    fail(breaker, 2)
    clock.advance(3)
    breaker.call(ok)
    m = breaker.metrics()
    assert (m.window_calls, m.state) == (1, "closed")
    fail(breaker, 1)
    assert breaker.state == "closed"  # 2 calls < minimum_calls
    fail(breaker, 1)
    assert breaker.state == "open"  # 2 of 3 within the window


def test_slow_calls_trip_on_slow_rate(clock: FakeClock) -> None:
    """Calls longer than slow_call_duration count as slow and trip on the slow rate."""
    breaker = make(
        clock,
        failure_threshold=None,
        window=CountWindow(size=4),
        slow_call_duration=1.0,
        slow_call_rate_threshold=0.5,
    )

    def slow() -> str:
        clock.advance(1.5)
        return "late"

    def just_in_time() -> str:
        clock.advance(1.0)  # not strictly longer: not slow
        return "ok"

    breaker.call(slow)
    breaker.call(just_in_time)
    breaker.call(ok)
    assert breaker.state == "closed"
    breaker.call(slow)
    assert breaker.state == "open"
    m = breaker.metrics()
    assert m.slow_call_count == 2
    assert "slow-call rate 0.50" in breaker.audit[0].reason


def test_slow_success_in_half_open_is_a_success(clock: FakeClock) -> None:
    """A slow trial call that succeeds still counts toward recovery."""
    breaker = make(
        clock,
        failure_threshold=1,
        window=CountWindow(size=4),
        slow_call_duration=0.1,
    )
    trip(breaker)
    clock.advance(10)

    def slow() -> str:
        clock.advance(5)
        return "late"

    breaker.call(slow)
    assert breaker.state == "closed"


# ------------------------------------------------------------- backoff, half-open timeout


def test_backoff_on_each_retrip_and_restore_on_recover(clock: FakeClock) -> None:
    """Each retrip multiplies the open duration; recovery restores reset_timeout."""
    breaker = make(clock, failure_threshold=1, reset_timeout=1, reset_timeout_multiplier=3)
    trip(breaker)
    durations = [breaker.metrics().open_duration]
    for _ in range(2):
        clock.advance(durations[-1])
        fail(breaker)
        durations.append(breaker.metrics().open_duration)
    assert durations == [1, 3, 9]
    clock.advance(9)
    breaker.call(ok)
    assert breaker.metrics().open_duration == 1
    fail(breaker)
    with pytest.raises(CircuitOpenError) as exc:
        breaker.call(ok)
    assert exc.value.retry_after == 1


def test_jitter_is_reproducible_with_seeded_rng(clock: FakeClock) -> None:
    """The same seed gives the same jittered open durations, within bounds."""

    def durations(seed: int) -> float:
        breaker = CircuitBreaker(
            "j",
            BreakerPolicy(failure_threshold=1, reset_timeout=10, reset_timeout_jitter=0.5),
            clock=FakeClock(),
            rng=random.Random(seed),
        )
        fail(breaker)
        return breaker.metrics().open_duration

    assert durations(1) == durations(1)
    assert 5 <= durations(2) <= 15
    assert durations(1) != durations(2)


def test_half_open_timeout_retrips(clock: FakeClock) -> None:
    """A half-open episode with no decision in half_open_timeout retrips on the next call."""
    breaker = make(clock, failure_threshold=1, reset_timeout=1, half_open_timeout=5)
    trip(breaker)
    clock.advance(1)
    hung: list[CircuitOpenError] = []

    def trial_that_hangs() -> str:
        clock.advance(5)
        try:
            breaker.call(ok)
        except CircuitOpenError as exc:
            hung.append(exc)
        return "finally"

    assert breaker.call(trial_that_hangs) == "finally"
    assert hung
    assert hung[0].state == "open"
    assert events(breaker) == ["trip", "attempt_reset", "retrip"]
    assert "half-open timed out" in breaker.audit[-1].reason
    assert breaker.state == "open"  # the late success belongs to the old episode


# ----------------------------------------------------------------------------- metrics


def test_metrics_snapshot_is_frozen_and_complete(clock: FakeClock) -> None:
    """metrics() reports the documented fields and cannot be mutated."""
    breaker = make(clock)
    breaker.call(ok)
    fail(breaker)
    m = breaker.metrics()
    assert (m.state, m.failure_count, m.success_count, m.total_requests) == ("closed", 1, 1, 2)
    assert m.error_rate == 0.5
    with pytest.raises(AttributeError):
        m.state = "open"  # type: ignore[misc]
    assert make(clock).metrics().error_rate == 0.0


# ----------------------------------------------------------------------------- sinks and audit


def test_sinks_receive_records_before_call_returns(clock: FakeClock) -> None:
    """Sinks see each record synchronously, in order, as soon as it is made."""
    seen: list[Transition] = []
    breaker = CircuitBreaker(
        "s", BreakerPolicy(failure_threshold=1), clock=clock, sinks=[seen.append]
    )
    fail(breaker)
    assert [r.event for r in seen] == ["trip"]
    assert seen[0] == breaker.audit[0]  # the log keeps the record's values, not the object
    assert seen[0].at.tzinfo is not None
    assert breaker.sinks == (seen.append,)


def test_failing_sink_never_fails_the_call(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """A sink that raises is logged and counted; the call, state and log are intact."""

    def broken(_: Transition) -> None:
        raise OSError("disk full")

    later: list[Transition] = []
    breaker = CircuitBreaker("s", BreakerPolicy(failure_threshold=1), clock=clock, sinks=[broken])
    breaker.add_sink(later.append)
    with caplog.at_level(logging.ERROR, logger="breaker_fsm"):
        fail(breaker)
    assert breaker.state == "open"
    assert len(breaker.audit) == 1
    assert len(later) == 1
    assert breaker.metrics().sink_errors == 1
    assert [r.getMessage() for r in caplog.records] == [
        f"breaker 's': audit sink {broken!r} failed"
    ]
    assert [r.args for r in caplog.records] == [("s", "audit", broken)]  # breaker, kind, sink


class Stop(BaseException):
    """Not an ``Exception``: a sink raising it is not caught."""


def test_a_sink_raising_a_base_exception_propagates_after_the_transition(
    clock: FakeClock,
) -> None:
    """A sink that raises a BaseException (not an Exception) is not swallowed: it leaves
    the call that caused the transition, and the transition stands, recorded."""

    def stop(_: Transition) -> None:
        raise Stop

    breaker = CircuitBreaker("s", BreakerPolicy(failure_threshold=1), clock=clock, sinks=[stop])
    with pytest.raises(Stop):
        breaker.call(boom)
    assert (breaker.state, [r.event for r in breaker.audit]) == ("open", ["trip"])
    assert breaker.metrics().sink_errors == 0


def test_audit_log_is_bounded_and_counts_drops(clock: FakeClock) -> None:
    """The in-memory log keeps the newest records and counts the dropped ones."""
    breaker = CircuitBreaker("b", clock=clock, audit_capacity=3)
    for _ in range(5):
        breaker.send("reset")
    assert [r.seq for r in breaker.audit] == [3, 4, 5]
    assert breaker.audit.dropped == 2
    assert verify(breaker.audit) == 3
    assert breaker.metrics().transitions == 5


def test_audit_record_fields(clock: FakeClock) -> None:
    """A trip record carries seq, names, UTC time, monotonic time, reason and counters."""
    clock.advance(12.5)
    breaker = make(clock, failure_threshold=2)
    fail(breaker, 2)
    r = breaker.audit[0]
    assert (r.seq, r.breaker, r.event, r.source, r.target) == (1, "svc", "trip", "closed", "open")
    assert r.monotonic == 12.5
    assert r.at.isoformat() == "2026-01-01T00:00:12.500000+00:00"
    assert r.counters == {
        "consecutive_failures": 2,
        "window_calls": 0,  # no window
        "window_failures": 0,
        "window_slow": 0,
        "trial_successes": 0,
        "trial_failures": 0,
    }
    assert r.reason == "2 consecutive failures ≥ 2; open for 10s"
    assert r.generation == 1


def test_retrip_record_counts_the_one_failed_trial(clock: FakeClock) -> None:
    """A failed trial retrips with exactly one trial failure (and the successes before it)."""
    breaker = make(clock, failure_threshold=1, success_threshold=3, half_open_max_calls=3)
    fail(breaker)
    clock.advance(10)
    assert breaker.call(ok) == "ok"
    fail(breaker)
    retrip = breaker.audit[-1]
    assert (retrip.event, retrip.source, retrip.target) == ("retrip", "half_open", "open")
    assert (retrip.counters["trial_successes"], retrip.counters["trial_failures"]) == (1, 1)


# ----------------------------------------------------------------------------- shared store


@pytest.fixture
def shared(redis_server: Any, clock: FakeClock) -> Any:
    """Build breakers sharing state through the test redis-server, time pinned to ``clock``."""
    pytest.importorskip("redis", reason="redis-py is not installed: pip install redis")
    from breaker_fsm.redis import RedisStore

    store = RedisStore(redis_server.url, timeout=2.0, now=clock.monotonic)

    def build(policy: BreakerPolicy, **kwargs: Any) -> CircuitBreaker:
        return CircuitBreaker("svc", policy, clock=clock, store=store, **kwargs)

    build.store = store  # type: ignore[attr-defined]
    yield build
    store.close()


def test_shared_breaker_classifies_exceptions_and_results(
    shared: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """With a store, outcomes are judged as in memory: unrecorded, predicate errors, verdicts."""

    def verdict(result: object) -> object:
        if result == "bug":
            raise RuntimeError("predicate bug")
        return result == "bad" and "yes"  # a true verdict that is not a number of seconds

    breaker = shared(BreakerPolicy(record_exceptions=(Boom,)), is_failure=verdict)
    with pytest.raises(KeyError):
        breaker.call(lambda: {}["x"])  # not recorded: a success
    with caplog.at_level(logging.ERROR, logger="breaker_fsm"):
        assert breaker.call(ok, "bug") == "bug"
        assert breaker.call(ok, "bug") == "bug"
    assert breaker.call(ok, "good") == "good"  # a false verdict: a success
    assert breaker.call(ok, "bad") == "bad"
    m = breaker.metrics()
    assert (m.success_count, m.error_count, m.ignored_count, m.sink_errors) == (2, 1, 2, 2)
    assert (m.failure_count, m.degraded) == (1, False)
    assert [(r.msg, r.args) for r in caplog.records] == [
        ("breaker %r: %s predicate raised", ("svc", "is_failure"))
    ] * 2


@pytest.mark.parametrize("jitter", [0.0, 0.5])
def test_shared_breaker_draws_jitter_only_when_a_call_could_open(
    shared: Any, jitter: float
) -> None:
    """With a store, the rng advances once per failure when jittering, never for a success."""
    rng = random.Random(7)
    breaker = shared(BreakerPolicy(failure_threshold=3, reset_timeout_jitter=jitter), rng=rng)

    async def aok() -> str:
        return "ok"

    async def main() -> str:
        try:
            return await breaker.acall(aok)
        finally:
            await shared.store.aclose()

    assert asyncio.run(main()) == "ok"
    fail(breaker)
    m = breaker.metrics()
    assert (m.success_count, m.error_count, m.store_errors, m.degraded) == (1, 1, 0, False)
    twin = random.Random(7)
    if jitter:
        assert -jitter <= twin.uniform(-jitter, jitter)  # the failure's one draw
    assert rng.random() == twin.random()


# ---------------------------------------------------------------------- pinned by mutation testing


def test_async_fast_path_base_exception_is_neutral() -> None:
    """A BaseException in an awaited call on the fast path counts as neutral."""
    breaker = CircuitBreaker("a")

    async def cancelled() -> None:
        raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        asyncio.run(breaker.acall(cancelled))
    m = breaker.metrics()
    assert (m.ignored_count, m.error_count, m.success_count) == (1, 0, 0)


def test_async_failures_trip_a_count_window_breaker() -> None:
    """Awaited failures with a count window (fast path) count and trip."""
    breaker = CircuitBreaker(
        "a", BreakerPolicy(failure_threshold=2, window=CountWindow(size=10), minimum_calls=10)
    )

    async def down() -> None:
        raise Boom

    async def run() -> None:
        for _ in range(2):
            with contextlib.suppress(Boom):
                await breaker.acall(down)

    asyncio.run(run())
    assert breaker.state == "open"


def test_async_failure_started_before_a_transition_is_not_counted() -> None:
    """An awaited call that began before a reset does not add to the new streak."""
    breaker = CircuitBreaker("a", BreakerPolicy(failure_threshold=5))

    async def run() -> None:
        gate = asyncio.Event()

        async def late_failure() -> None:
            await gate.wait()
            raise Boom

        task = asyncio.create_task(breaker.acall(late_failure))
        await asyncio.sleep(0)
        breaker.send("force_open")
        breaker.send("reset")
        gate.set()
        with contextlib.suppress(Boom):
            await task

    asyncio.run(run())
    m = breaker.metrics()
    assert (m.failure_count, m.error_count) == (0, 1)


def test_count_window_fast_path_streak_and_rate_rules() -> None:
    """On the count-window fast path the streak trips at the threshold, not before."""
    policy = BreakerPolicy(
        failure_threshold=3,
        window=CountWindow(size=10),
        minimum_calls=10,
        failure_rate_threshold=0.5,
    )
    breaker = CircuitBreaker("w", policy)
    for expected in (1, 2):
        with contextlib.suppress(Boom):
            breaker.call(boom)
        assert (breaker.state, breaker.metrics().failure_count) == ("closed", expected)
    with contextlib.suppress(Boom):
        breaker.call(boom)
    assert breaker.state == "open"


def test_count_window_fast_path_rate_below_threshold_does_not_trip() -> None:
    """A failure that leaves the window's rate under the line does not trip it."""
    policy = BreakerPolicy(
        failure_threshold=None,
        window=CountWindow(size=10),
        minimum_calls=4,
        failure_rate_threshold=0.5,
    )
    breaker = CircuitBreaker("w", policy)
    for _ in range(3):
        breaker.call(int)
    for _ in range(2):
        with contextlib.suppress(Boom):
            breaker.call(boom)
        assert breaker.state == "closed"  # 1 of 4, then 2 of 5: under the line
    with contextlib.suppress(Boom):
        breaker.call(boom)
    assert breaker.state == "open"  # 3 of 6


def test_refusal_in_half_open_passes_arguments_to_the_fallback() -> None:
    """A call refused because every trial permit is taken gets the fallback with its args."""
    clock = FakeClock()
    seen: list[object] = []
    breaker = CircuitBreaker(
        "h",
        BreakerPolicy(failure_threshold=1, reset_timeout=1),
        clock=clock,
        fallback=lambda *a, **k: seen.append((a, k)),
    )
    with contextlib.suppress(Boom):
        breaker.call(boom)
    clock.advance(1)
    breaker.call(lambda: breaker.call(int, 7, base=8))  # the nested call finds no permit
    assert seen == [((7,), {"base": 8})]


def test_refusal_after_a_half_open_timeout_reports_the_new_open_episode() -> None:
    """A call that retrips a timed-out half-open breaker is refused with its retry_after."""
    clock = FakeClock()
    breaker = CircuitBreaker(
        "t",
        BreakerPolicy(
            failure_threshold=1,
            reset_timeout=0.5,  # under a second: max(0.0, …) is pinned, not max(1.0, …)
            success_threshold=2,
            half_open_max_calls=2,
            half_open_timeout=1,
        ),
        clock=clock,
    )
    with contextlib.suppress(Boom):
        breaker.call(boom)
    clock.advance(10)
    breaker.call(int)  # admitted: one trial success of two, still half-open
    assert breaker.state == "half_open"
    clock.advance(3)
    with pytest.raises(CircuitOpenError) as exc:
        breaker.call(int)
    assert (exc.value.breaker, exc.value.state) == ("t", "open")
    assert exc.value.retry_after == breaker.metrics().open_duration


def test_is_failure_predicate_errors_are_logged_and_each_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Each raising is_failure predicate is logged with the breaker's name and counted."""

    def predicate(_: object) -> bool:
        raise RuntimeError("bug")

    breaker = CircuitBreaker("p", is_failure=predicate)
    with caplog.at_level(logging.ERROR, logger="breaker_fsm"):
        breaker.call(int)
        breaker.call(int)
    assert breaker.metrics().sink_errors == 2
    assert [r.getMessage() for r in caplog.records] == [
        "breaker 'p': is_failure predicate raised"
    ] * 2


def test_is_failure_verdicts_that_are_not_numbers_give_no_open_hint() -> None:
    """A True or truthy non-numeric verdict is a failure without an open-duration hint."""
    for verdict in (True, "yes"):
        breaker = CircuitBreaker(
            "v",
            BreakerPolicy(failure_threshold=1, reset_timeout=0.5),
            is_failure=lambda _r, v=verdict: v,
        )
        breaker.call(int)
        assert (breaker.state, breaker.metrics().open_duration) == ("open", 0.5)


def test_a_verdict_of_zero_seconds_is_a_failure(caplog: pytest.LogCaptureFixture) -> None:
    """0 seconds (a Retry-After: 0) is a number of seconds: a failure, not a false verdict,
    and a valid hint (nothing is logged)."""
    for verdict in (0, 0.0):
        breaker = CircuitBreaker(
            "z",
            BreakerPolicy(failure_threshold=1, reset_timeout=0.5),
            is_failure_exception=lambda _e, v=verdict: v,
        )
        with caplog.at_level(logging.DEBUG, logger="breaker_fsm"), pytest.raises(Boom):
            breaker.call(boom)
        metrics = breaker.metrics()
        assert (breaker.state, metrics.failure_count, metrics.open_duration) == ("open", 1, 0.5)
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []


def test_verdicts_that_are_no_duration_are_failures_without_a_hint(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A negative, NaN or infinite number of seconds is a failure; the hint is dropped, logged."""
    for verdict in (-1, float("nan"), float("inf")):
        breaker = CircuitBreaker(
            "h",
            BreakerPolicy(failure_threshold=1, reset_timeout=0.5),
            is_failure=lambda _r, v=verdict: v,
        )
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="breaker_fsm"):
            breaker.call(int)
        assert (breaker.state, breaker.metrics().open_duration) == ("open", 0.5)
        assert [r.getMessage() for r in caplog.records] == [
            f"breaker 'h': is_failure returned {verdict!r} seconds, not a finite number >= 0: "
            "a failure with no open-duration hint"
        ]


def test_an_async_predicate_is_a_predicate_error(caplog: pytest.LogCaptureFixture) -> None:
    """An async def predicate gives an awaitable, no verdict: neutral, logged, counted."""

    async def predicate(_exc: BaseException) -> bool:
        return True

    breaker = CircuitBreaker(
        "a", BreakerPolicy(failure_threshold=1), is_failure_exception=predicate
    )
    with caplog.at_level(logging.ERROR, logger="breaker_fsm"), pytest.raises(Boom):
        breaker.call(boom)
    metrics = breaker.metrics()
    assert (breaker.state, metrics.failure_count, metrics.sink_errors) == ("closed", 0, 1)
    assert caplog.records[0].exc_info is not None
    assert "is_failure_exception returned an awaitable" in str(caplog.records[0].exc_info[1])


def test_illegal_send_messages() -> None:
    """send() names why an event is refused: illegal here, unknown, or guard not holding."""
    breaker = CircuitBreaker("s")
    with pytest.raises(IllegalTransitionError) as exc:
        breaker.send("recover")
    assert str(exc.value) == (
        "event 'recover' is not allowed in state 'closed' (allowed: disable, force_open, "
        "reset, trip)"
    )
    with pytest.raises(IllegalTransitionError) as exc:
        breaker.send("explode")
    assert exc.value.detail == (
        "unknown event; the events are attempt_reset, disable, force_open, recover, reset, "
        "retrip, trip"
    )
    with pytest.raises(IllegalTransitionError) as exc:
        breaker.send("trip")
    assert exc.value.detail == "its guard does not hold"


# ------------------------------------------------------------------------ acall's inlined paths


def test_acall_of_a_plain_function_on_the_inlined_path_records_nothing(clock: FakeClock) -> None:
    """The default policy's inlined closed path of acall (with and without a count window)
    takes await's TypeError for the caller's mistake: noted, nothing counted, never a trip."""
    for policy in (
        BreakerPolicy(failure_threshold=1),
        BreakerPolicy(failure_threshold=1, window=CountWindow(size=10)),
    ):
        breaker = CircuitBreaker("svc", policy, clock=clock)
        with pytest.raises(TypeError) as caught:
            asyncio.run(breaker.acall(ok))  # type: ignore[arg-type]
        assert "through call()" in "".join(caught.value.__notes__)
        m = breaker.metrics()
        assert (m.total_requests, m.error_count, m.ignored_count, m.state) == (0, 0, 0, "closed")
        with pytest.raises(Boom):  # an exception of the operation's own still counts
            asyncio.run(breaker.acall(_araise, Boom("down")))
        assert (breaker.metrics().error_count, breaker.state) == (1, "open")


async def _araise(exc: BaseException) -> NoReturn:
    raise exc


def test_acall_refusals_say_how_long_and_which_breaker(clock: FakeClock) -> None:
    """acall's inlined refusals: retry_after counts from the trip (not from time 0), and a
    forced-open refusal names its breaker and state, with no retry_after."""
    breaker = make(clock)
    clock.advance(100)  # the trip happens at monotonic 100, not 0
    trip(breaker)
    clock.advance(4)
    with pytest.raises(CircuitOpenError) as caught:
        asyncio.run(breaker.acall(_araise, Boom()))
    assert (caught.value.breaker, caught.value.state) == ("svc", "open")
    assert caught.value.retry_after == pytest.approx(6.0)
    breaker.send("force_open")
    with pytest.raises(CircuitOpenError) as caught:
        asyncio.run(breaker.acall(_araise, Boom()))
    assert (caught.value.breaker, caught.value.state, caught.value.retry_after) == (
        "svc",
        "forced_open",
        None,
    )
    assert breaker.metrics().rejected_count == 2


def test_acall_on_a_clock_below_zero_opens_for_the_reset_timeout(clock: FakeClock) -> None:
    """A monotonic clock may read below zero: the open episode still lasts reset_timeout."""
    below = FakeClock(start=-1000.0)
    breaker = make(below)
    trip(breaker)
    below.advance(9)
    with pytest.raises(CircuitOpenError) as caught:
        asyncio.run(breaker.acall(_araise, Boom()))
    assert caught.value.retry_after == pytest.approx(1.0)
    below.advance(1)

    async def good() -> str:
        return "trial"

    assert asyncio.run(breaker.acall(good)) == "trial"
    assert events(breaker) == ["trip", "attempt_reset", "recover"]


def test_adding_a_sink_that_is_not_one_is_refused_by_name(clock: FakeClock, tmp_path: Any) -> None:
    """add_sink and add_call_sink name themselves and the record their sink receives, and
    refuse a file sink of the other kind."""
    from breaker_fsm.audit import CallLogSink, JsonlSink

    breaker = make(clock)
    with pytest.raises(TypeError) as caught:
        breaker.add_sink(3)  # type: ignore[arg-type]
    assert (
        str(caught.value)
        == "add_sink's sink must be callable (it receives each Transition), got int 3"
    )
    with pytest.raises(TypeError) as caught:
        breaker.add_call_sink(3)  # type: ignore[arg-type]
    assert str(caught.value) == (
        "add_call_sink's sink must be callable (it receives each CallRecord), got int 3"
    )
    trail = JsonlSink(tmp_path / "trail.jsonl")
    with pytest.raises(
        TypeError, match=r"^add_call_sink's sink receives each CallRecord, but .*\.CallLogSink\("
    ):
        breaker.add_call_sink(trail)  # type: ignore[arg-type]
    with (
        CallLogSink(tmp_path / "calls.jsonl") as calls,
        pytest.raises(
            TypeError, match=r"^add_sink's sink receives each Transition, but .*\.JsonlSink\("
        ),
    ):
        breaker.add_sink(calls)  # type: ignore[arg-type]
    assert (breaker.sinks, breaker.call_sinks) == ((), ())


def test_a_callable_object_with_a_plain_call_is_decorated_as_plain(clock: FakeClock) -> None:
    """@breaker on an object whose __call__ is a plain method (or a functools.partial of a
    plain function) gives a plain wrapper that calls through call()."""
    import functools
    import inspect

    class Double:
        def __call__(self, x: int) -> int:
            return 2 * x

    breaker = make(clock)
    for func in (Double(), functools.partial(lambda x, y: x * y, 2)):
        wrapped = breaker(func)
        assert not inspect.iscoroutinefunction(wrapped)
        assert wrapped(3) == 6
    assert breaker.metrics().success_count == 2


def test_a_call_that_cannot_be_made_on_the_inlined_path_records_nothing(clock: FakeClock) -> None:
    """The default policy's inlined closed path of call (with and without a count window):
    arguments that do not fit, or an async function, are the caller's mistake: nothing is
    counted, and the TypeError for an async function names it; so does a disabled breaker's."""
    for policy in (
        BreakerPolicy(failure_threshold=1),
        BreakerPolicy(failure_threshold=1, window=CountWindow(size=10)),
    ):
        breaker = CircuitBreaker("svc", policy, clock=clock)
        with pytest.raises(TypeError):
            breaker.call(ok, 1, 2, 3)  # type: ignore[call-arg]
        with pytest.raises(TypeError) as caught:
            breaker.call(aok)  # type: ignore[arg-type]
        assert str(caught.value) == (
            "breaker 'svc': call() got an async function (aok returned a coroutine): use "
            "`await breaker.acall(...)`; nothing was recorded"
        )
        m = breaker.metrics()
        assert (m.total_requests, m.error_count, m.ignored_count, m.state) == (0, 0, 0, "closed")
        breaker.send("disable")
        with pytest.raises(TypeError, match=r"\(aok returned a coroutine\)"):
            breaker.call(aok)  # type: ignore[arg-type]


def test_a_forced_open_call_refusal_names_its_breaker(clock: FakeClock) -> None:
    """call's inlined forced-open refusal: the breaker, the state, no retry_after."""
    breaker = make(clock)
    breaker.send("force_open")
    with pytest.raises(CircuitOpenError) as caught:
        breaker.call(ok)
    assert (caught.value.breaker, caught.value.state, caught.value.retry_after) == (
        "svc",
        "forced_open",
        None,
    )


def test_rates_are_reported_from_minimum_calls_on(clock: FakeClock) -> None:
    """metrics() reports a window's rates once it holds minimum_calls outcomes (one, here
    from the first), and neither retry_after nor a due transition while closed."""
    breaker = make(clock, failure_threshold=None, window=CountWindow(size=10), minimum_calls=1)
    assert breaker.metrics().failure_rate is None
    breaker.call(ok)
    metrics = breaker.metrics()
    assert (metrics.failure_rate, metrics.retry_after, metrics.due) == (0.0, None, None)
    later = make(clock, failure_threshold=None, window=CountWindow(size=10), minimum_calls=3)
    later.call(ok)
    later.call(ok)
    assert (later.metrics().window_calls, later.metrics().failure_rate) == (2, None)


def test_metrics_say_what_transition_is_due_and_when(clock: FakeClock) -> None:
    """Open: retry_after counts down to 0, when attempt_reset is due; half-open: a retrip
    is due once half_open_timeout has passed (due is lazy: the next call makes it)."""
    breaker = make(
        clock, failure_threshold=1, half_open_timeout=4, success_threshold=2, half_open_max_calls=2
    )
    clock.advance(50)
    trip(breaker)
    clock.advance(3)
    metrics = breaker.metrics()
    assert (metrics.retry_after, metrics.due) == (7.0, None)
    clock.advance(7)
    metrics = breaker.metrics()
    assert (metrics.retry_after, metrics.due) == (0.0, "attempt_reset")
    breaker.call(ok)  # the first of two trials: half-open
    clock.advance(3.5)
    metrics = breaker.metrics()
    assert (metrics.state, metrics.retry_after, metrics.due) == ("half_open", None, None)
    clock.advance(0.5)
    assert breaker.metrics().due == "retrip"


def test_metrics_name_the_breaker_and_rate_slow_calls(clock: FakeClock) -> None:
    """metrics(): the breaker's name, no shadow refusals (0, not None) and, with slow-call
    timing and minimum_calls reached, the slow-call rate."""
    breaker = make(
        clock,
        failure_threshold=None,
        window=CountWindow(size=10),
        minimum_calls=2,
        slow_call_duration=1,
        slow_call_rate_threshold=1.0,
    )

    def slow() -> str:
        clock.advance(2)
        return "slow"

    breaker.call(ok)
    assert breaker.metrics().slow_call_rate is None  # one call of the two it needs
    breaker.call(slow)
    metrics = breaker.metrics()
    assert (metrics.name, metrics.shadow_rejected_count, metrics.slow_call_rate) == ("svc", 0, 0.5)


def test_metrics_count_what_a_shadow_breaker_would_have_refused(clock: FakeClock) -> None:
    """enforce=False: the calls an enforcing breaker would refuse run, and are counted."""
    breaker = make(clock, failure_threshold=1, enforce=False)
    fail(breaker)
    assert breaker.call(ok) == "ok"
    metrics = breaker.metrics()
    assert (metrics.state, metrics.shadow_rejected_count, metrics.rejected_count) == ("open", 1, 0)
