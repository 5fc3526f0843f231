"""Half-open, as the field's test suites expect it: the streak, a fresh measurement, lazy timing.

Each behaviour runs in memory and on a shared (Redis) breaker: ``make`` builds either.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from breaker_fsm import BreakerPolicy, CircuitBreaker, CircuitOpenError, CountWindow, Permit
from breaker_fsm.testing import FakeClock
from tests.helpers import Boom, CountingClock, boom, fail, ok
from tests.redis_server import StoreFactory

Make = Callable[..., CircuitBreaker]


@pytest.fixture(params=["memory", "shared"])
def make(request: pytest.FixtureRequest, clock: FakeClock) -> Make:
    """``make(**policy)``: a breaker in memory, or one sharing its state through Redis."""

    def build(**policy: Any) -> CircuitBreaker:
        if request.param == "memory":
            return CircuitBreaker("svc", BreakerPolicy(**policy), clock=clock)
        stores: StoreFactory = request.getfixturevalue("redis_stores")
        store = stores(now=clock.monotonic)
        return CircuitBreaker("svc", BreakerPolicy(**policy), clock=clock, store=store)

    return build


def test_a_failed_trial_extends_the_streak(make: Make, clock: FakeClock) -> None:
    """As in pybreaker and circuitbreaker: trip at 3, a failed trial makes the streak 4,
    and a successful trial ends it."""
    breaker = make(failure_threshold=3, reset_timeout=10)
    fail(breaker, 3)
    assert breaker.state == "open"
    assert breaker.metrics().failure_count == 3
    clock.advance(10)
    fail(breaker)  # the trial
    metrics = breaker.metrics()
    assert (metrics.state, metrics.failure_count, metrics.error_count) == ("open", 4, 4)
    assert breaker.audit[-1].event == "retrip"
    assert breaker.audit[-1].counters["consecutive_failures"] == 4
    clock.advance(20)  # the backed-off episode is no longer than this
    assert breaker.call(lambda: "up") == "up"
    assert (breaker.state, breaker.metrics().failure_count) == ("closed", 0)


def test_a_successful_trial_ends_the_streak_before_recovering(make: Make, clock: FakeClock) -> None:
    """With success_threshold=2 the first good trial already ends the streak."""
    breaker = make(failure_threshold=2, reset_timeout=5, success_threshold=2, half_open_max_calls=2)
    fail(breaker, 2)
    clock.advance(5)
    assert breaker.call(lambda: "ok") == "ok"
    assert (breaker.state, breaker.metrics().failure_count) == ("half_open", 0)


def test_half_open_starts_a_fresh_measurement(make: Make, clock: FakeClock) -> None:
    """Open shows the window that tripped it; half_open starts afresh (rate None, 0 calls),
    as in resilience4j, so a dashboard never shows 100% failures during the trial."""
    breaker = make(
        failure_threshold=None,
        window=CountWindow(size=5),
        minimum_calls=5,
        failure_rate_threshold=1.0,
        reset_timeout=10,
    )
    fail(breaker, 5)
    tripped = breaker.metrics()
    assert (tripped.state, tripped.window_calls, tripped.failure_rate) == ("open", 5, 1.0)
    clock.advance(10)
    seen: list[Any] = []

    def trial() -> str:
        seen.append(breaker.metrics())
        return "ok"

    assert breaker.call(trial) == "ok"
    inside = seen[0]
    assert (inside.state, inside.window_calls, inside.failure_rate) == ("half_open", 0, None)
    assert breaker.state == "closed"
    assert breaker.metrics().window_calls == 0


def test_due_names_the_transition_the_next_call_makes(make: Make, clock: FakeClock) -> None:
    """A breaker runs no timers: past the open duration it still says open, retry_after 0,
    and ``due`` names the attempt_reset that the next call makes."""
    breaker = make(failure_threshold=1, reset_timeout=10)
    fail(breaker)
    assert breaker.metrics().due is None
    clock.advance(9.5)
    assert breaker.metrics().due is None
    clock.advance(0.5)  # exactly elapsed: now - opened_at >= duration
    metrics = breaker.metrics()
    assert (metrics.state, metrics.retry_after, metrics.due) == ("open", 0.0, "attempt_reset")
    with pytest.raises(Boom):
        breaker.call(boom)  # the call makes the transition, then fails its trial
    assert [r.event for r in breaker.audit][-2:] == ["attempt_reset", "retrip"]


def test_due_names_a_timed_out_half_open_episode(make: Make, clock: FakeClock) -> None:
    """A half-open episode past half_open_timeout still reads half_open until the next call,
    ``due`` says "retrip", and the next call makes it."""
    breaker = make(
        failure_threshold=1,
        reset_timeout=1,
        half_open_timeout=5,
        success_threshold=2,
        half_open_max_calls=2,
    )
    fail(breaker)
    clock.advance(1)
    assert breaker.call(lambda: "first trial") == "first trial"
    assert (breaker.state, breaker.metrics().due) == ("half_open", None)
    clock.advance(5)
    assert (breaker.state, breaker.metrics().due) == ("half_open", "retrip")
    with pytest.raises(CircuitOpenError):
        breaker.call(lambda: "never runs")
    assert (breaker.state, breaker.audit[-1].event) == ("open", "retrip")


def test_prometheus_gauges_start_afresh_in_half_open(clock: FakeClock) -> None:
    """The collector's failure-rate and buffered-calls gauges follow metrics(): -1 and 0
    during the trial, not the window that tripped the breaker."""
    prometheus = pytest.importorskip("prometheus_client")
    from breaker_fsm import BreakerRegistry
    from breaker_fsm.prometheus import BreakerCollector

    policy = BreakerPolicy(
        failure_threshold=None, window=CountWindow(size=4), minimum_calls=4, reset_timeout=10
    )
    breakers = BreakerRegistry(policy, clock=clock)
    breaker = breakers.get("svc")
    fail(breaker, 4)
    clock.advance(10)

    def gauges() -> tuple[float, float]:
        registry = prometheus.CollectorRegistry()
        registry.register(BreakerCollector(breakers))
        rate = registry.get_sample_value("circuitbreaker_failure_rate", {"name": "svc"})
        buffered = registry.get_sample_value("circuitbreaker_buffered_calls", {"name": "svc"})
        assert rate is not None
        assert buffered is not None
        return rate, buffered

    assert gauges() == (1.0, 4.0)  # open: the window that tripped it
    seen: list[tuple[float, float]] = []
    breaker.call(lambda: seen.append(gauges()))
    assert seen == [(-1.0, 0.0)]


class SendOnReading(CountingClock):
    """A clock that sends ``event`` to ``breaker`` during its reading number ``at`` (from
    the test's zero), as another thread's transition could land right then; ``sent`` is
    the count of readings once that transition is made."""

    def __init__(self) -> None:
        super().__init__()
        self.breaker: CircuitBreaker | None = None
        self.event = ""
        self.at = 0
        self.sent = -1

    def monotonic(self) -> float:
        now = super().monotonic()
        breaker = self.breaker
        if breaker is not None and self.readings == self.at:
            self.breaker = None
            breaker.send(self.event)
            self.sent = self.readings
        return now


@pytest.mark.parametrize("due", ["attempt_reset", "retrip"])
def test_a_lazy_transition_that_lost_the_race_is_dropped_unasked(due: str) -> None:
    """An open episode's end (attempt_reset) or a timed-out half-open episode (retrip),
    made due by a call's clock reading after another transition (force_open, here during
    that reading) ended the generation it was read in, is dropped as it stands: the machine
    is not asked (not a clock reading for its guard), and the call is refused by the
    state that transition made."""
    clock = SendOnReading()
    policy = BreakerPolicy(failure_threshold=1, reset_timeout=10, half_open_timeout=5)
    breaker = CircuitBreaker("svc", policy, clock=clock)
    fail(breaker)
    clock.advance(10)
    if due == "retrip":
        breaker.send("attempt_reset")
        clock.advance(5)
    clock.readings = 0
    clock.breaker, clock.event = breaker, "force_open"
    clock.at = 2 if due == "attempt_reset" else 1  # open: call() reads the clock first
    with pytest.raises(CircuitOpenError) as refused:
        breaker.call(ok)
    assert refused.value.state == "forced_open"
    assert clock.sent > 0
    assert clock.readings == clock.sent
    assert [r.event for r in breaker.audit][-1:] == ["force_open"]


class FailOnReading(CountingClock):
    """A clock that settles ``permit`` as a failure during its reading number ``at`` (from
    the test's zero), as another thread's trial could end right then."""

    def __init__(self) -> None:
        super().__init__()
        self.permit: Permit | None = None
        self.at = 0

    def monotonic(self) -> float:
        now = super().monotonic()
        permit = self.permit
        if permit is not None and self.readings == self.at:
            self.permit = None
            permit.failure()
        return now


def test_every_trial_failure_counted_before_the_retrip_is_its_evidence() -> None:
    """Two trials that fail in one half-open episode, the second while the first one's
    retrip reads the clock for its evidence, are both counted: the retrip's record has
    two failed trials, and the streak that tripped grew by two."""
    clock = FailOnReading()
    policy = BreakerPolicy(failure_threshold=1, reset_timeout=10, half_open_max_calls=2)
    breaker = CircuitBreaker("svc", policy, clock=clock)
    fail(breaker)
    clock.advance(10)
    first, second = breaker.acquire(), breaker.acquire()
    clock.readings, clock.permit, clock.at = 0, second, 1
    first.failure()
    assert second.settled
    record = breaker.audit[-1]
    assert (record.event, record.reason) == ("retrip", "trial call failed; open for 10s")
    assert record.counters["trial_failures"] == 2
    assert record.counters["consecutive_failures"] == 3
    assert [r.event for r in breaker.audit] == ["trip", "attempt_reset", "retrip"]
