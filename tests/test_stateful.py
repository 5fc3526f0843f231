"""Model-based tests: a real ``CircuitBreaker`` against the reference model in ``tests.model``.

The rules (calls, permits, blocks, time, events) are ``tests.model_rules``'s, shared with
the shared-state test; this module adds restarts, reasons and the audit file of every life.

The number of examples comes from the Hypothesis profile (``tests/conftest.py``): ``dev`` by
default, ``ci`` (1,000 examples per state machine) in ``make test``, ``soak`` for long runs.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import event, given
from hypothesis import strategies as st
from hypothesis.stateful import initialize, invariant, precondition, rule

from breaker_fsm import (
    BreakerPolicy,
    CircuitBreaker,
    CountWindow,
    IllegalTransitionError,
    TimeWindow,
    Transition,
)
from breaker_fsm._outcome import FAILED, SLOW
from breaker_fsm._window import CountRing, TimeBuckets
from breaker_fsm.audit import verify
from breaker_fsm.testing import DEFAULT_WALL_START, FakeClock
from tests.model import (
    CLOSED,
    HALF_OPEN,
    OPEN,
    REJECTED,
    NaiveCountWindow,
    NaiveTimeWindow,
    ReferenceBreaker,
    Ticket,
)
from tests.model_rules import BreakerRules, broken_sink, fallback, is_failure
from tests.strategies import EVENTS, CallSpec, ServiceError, call_specs, policies


class BreakerVersusModel(BreakerRules):
    """Drive an in-memory breaker and the reference model alike (rules: ``BreakerRules``);
    the service may restart, and each life appends to the same audit file."""

    # ------------------------------------------------------------------ set-up

    @initialize(
        policy=policies(),
        seed=st.integers(0, 2**32 - 1),
        start=st.sampled_from([0.0, 0.5, 1000.0]),
        use_fallback=st.booleans(),
        use_predicate=st.booleans(),
        failing_sink=st.booleans(),
    )
    def build(
        self,
        *,
        policy: BreakerPolicy,
        seed: int,
        start: float,
        use_fallback: bool,
        use_predicate: bool,
        failing_sink: bool,
    ) -> None:
        """A breaker with a fake clock, a seeded rng and a collecting sink, and its model."""
        self.clock = FakeClock(start)
        self.clock_start = start
        self.failing_sink = failing_sink
        self.use_fallback = use_fallback
        self.use_predicate = use_predicate
        self.policy, self.seed = policy, seed
        self.file: list[Transition] = []  # a JsonlSink's file: every life of the service
        self.lives = 0
        self._start_life()

    def _start_life(self) -> None:
        """A new breaker instance (a process start) and a fresh model; the file goes on.

        Permits the last life held are released on it first (its model is gone).
        """
        self.release_held()
        self.records: list[Transition] = []
        sinks: list[Any] = [self.records.append, self.file.append]
        if self.failing_sink:
            sinks.insert(0, broken_sink)
        self.breaker = CircuitBreaker(
            "model-test",
            self.policy,
            clock=self.clock,
            fallback=fallback if self.use_fallback else None,
            sinks=sinks,
            is_failure=is_failure if self.use_predicate else None,
            rng=random.Random(self.seed),
        )
        self.model = ReferenceBreaker(self.policy, random.Random(self.seed))
        self.settled.clear()
        self.lives += 1

    # ------------------------------------------------------------------ more calls

    @rule(specs=st.lists(call_specs(), min_size=2, max_size=6))
    def burst(self, specs: list[CallSpec]) -> None:
        """Several instant calls in a row: streaks, full windows, permits used up."""
        for spec in specs:
            self._invoke(spec)

    @rule(spec=call_specs(slow=True))
    def slow_call(self, spec: CallSpec) -> None:
        """A call during which the clock advances (it may be slow)."""
        self._invoke(spec)

    @rule(specs=st.lists(call_specs(slow=True), min_size=2, max_size=6))
    def slow_burst(self, specs: list[CallSpec]) -> None:
        """Several calls with durations in a row: slow-call rates, buckets rolling over."""
        for spec in specs:
            self._invoke(spec)

    @precondition(lambda self: self.breaker is not None and self._trial_would_run())
    @rule(specs=st.lists(call_specs(slow=True), min_size=1, max_size=4))
    def trials(self, specs: list[CallSpec]) -> None:
        """Calls made when the model says the first will run as a half-open trial."""
        for spec in specs:
            self._invoke(spec)

    @precondition(lambda self: self.breaker is not None and self._trial_would_run())
    @rule(spec=call_specs(nested=True))
    def trial_with_inner_action(self, spec: CallSpec) -> None:
        """A half-open trial that, in flight, calls again (permits) or sends an event."""
        self._invoke(spec)

    # ------------------------------------------------------------------ more events

    @rule(
        event=st.sampled_from(EVENTS),
        reason=st.one_of(
            st.none(), st.text(max_size=12), st.integers(), st.binary(max_size=4), st.just([])
        ),
    )
    def send_with_reason(self, event: str, reason: object) -> None:
        """An operator's reason: a str is recorded as given; anything else is refused with a
        TypeError before anything happens (state, machine and trail untouched)."""
        assert self.breaker is not None
        if reason is not None and not isinstance(reason, str):
            before = (self.breaker.state, len(self.breaker.audit))
            with pytest.raises(TypeError, match="reason"):
                self.breaker.send(event, reason=reason)  # type: ignore[arg-type]
            assert (self.breaker.state, len(self.breaker.audit)) == before
            return
        legal = self.model.send(event, self.clock.monotonic())
        try:
            self.breaker.send(event, reason=reason)
        except IllegalTransitionError:
            assert not legal
        else:
            assert legal
            if reason:
                assert self.breaker.audit[-1].reason == reason

    @rule()
    def restart(self) -> None:
        """The service restarts: a new instance appends to the same file, seq from 1."""
        self._start_life()

    # ------------------------------------------------------------------ invariants

    @precondition(lambda self: self.breaker is not None)
    @invariant()
    def audit_trail_matches(self) -> None:
        """The audit log is the model's trail, verifies, and the sink got the same records."""
        assert self.breaker is not None
        records = list(self.breaker.audit)
        trail = self.model.trail
        assert [(r.event, r.source, r.target) for r in records] == [t[:3] for t in trail]
        assert [r.seq for r in records] == list(range(1, len(trail) + 1))
        assert [r.monotonic for r in records] == [t[3] for t in trail]
        for record, (*_, at) in zip(records, trail, strict=True):
            expected_at = datetime.fromtimestamp(DEFAULT_WALL_START + at - self.clock_start, UTC)
            assert abs((record.at - expected_at).total_seconds()) < 1e-3
            assert record.breaker == "model-test"
            assert record.reason
        for record, rules in zip(records, self.model.trip_rules, strict=True):
            event(f"transition: {record.event} {record.source} -> {record.target}")
            if rules:  # a trip's reason names the rule that fired, with its figures
                event(f"trip rules: {' + '.join(rules)}")
                assert any(rule in record.reason for rule in rules), (record.reason, rules)
        assert verify(records) == len(records)
        assert self.records == records
        # The file holds every life: it verifies as a whole, each life its own walk, the
        # gaps between lives reported as restarts.
        summary = verify(self.file)
        assert summary == len(self.file)
        if self.file:
            assert summary.breakers["model-test"].lives == len({r.life for r in self.file})
        if records:
            machine = self.breaker.machine
            assert {s.id for s in machine.configuration} == {self.model.state}


#: The breaker and the model agree on state, counters and audit trail after every step.
TestBreakerVersusModel = BreakerVersusModel.TestCase


# --------------------------------------------------------------------------- windows

_OUTCOME_FLAGS = st.sampled_from([0, FAILED, SLOW, FAILED | SLOW])


@given(size=st.integers(1, 12), flags=st.lists(_OUTCOME_FLAGS, max_size=60))
def test_count_ring_totals_equal_naive_last_n(size: int, flags: list[int]) -> None:
    """CountRing's running totals equal a naive scan of the last ``size`` outcomes."""
    ring, naive = CountRing(size), NaiveCountWindow(size)
    for f in flags:
        ring.record(f)
        naive.add(bool(f & FAILED), bool(f & SLOW), 0.0)
        assert ring.totals() == naive.totals(0.0)
    ring.clear()
    assert ring.totals() == (0, 0, 0)


@given(
    seconds=st.integers(1, 6),
    steps=st.lists(
        st.tuples(st.sampled_from([0.0, 0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 3.0, 9.0]), _OUTCOME_FLAGS),
        max_size=60,
    ),
    start=st.sampled_from([0.0, 0.5, 0.999, 1000.25]),
)
def test_time_buckets_totals_equal_naive_filter(
    seconds: int, steps: list[tuple[float, int]], start: float
) -> None:
    """TimeBuckets' totals equal the naive filter ``floor(t) > floor(now) - seconds``."""
    buckets, naive = TimeBuckets(seconds), NaiveTimeWindow(seconds)
    now = start
    for gap, f in steps:
        now += gap
        buckets.record(f, now)
        naive.add(bool(f & FAILED), bool(f & SLOW), now)
        assert buckets.totals(now) == naive.totals(now)
        later = now + gap
        assert buckets.totals(later) == naive.totals(later)
        now = later


@given(
    size=st.integers(1, 10),
    minimum=st.integers(1, 12),
    outcomes=st.lists(st.booleans(), max_size=60),
)
def test_count_window_failure_rate_in_metrics_is_naive_rate(
    size: int, minimum: int, outcomes: list[bool]
) -> None:
    """``metrics().failure_rate`` over a CountWindow is failures/calls of the last N outcomes."""
    policy = BreakerPolicy(
        failure_threshold=None,
        window=CountWindow(size=size),
        failure_rate_threshold=1.0,
        minimum_calls=minimum,
    )
    breaker = CircuitBreaker("rate", policy, clock=FakeClock())
    seen: list[bool] = []

    def fail() -> None:
        raise ServiceError

    for failed in outcomes:
        if failed:
            with pytest.raises(ServiceError):
                breaker.call(fail)
        else:
            breaker.call(lambda: None)
        seen.append(failed)
        last = seen[-size:]
        metrics = breaker.metrics()
        assert metrics.window_calls == len(last)
        if len(last) < min(minimum, size):
            assert metrics.failure_rate is None
        else:
            assert metrics.failure_rate == sum(last) / len(last)
        if breaker.state == "open":  # only an all-failure window trips at rate 1.0
            assert metrics.failure_rate == 1.0
            break


@given(
    seconds=st.integers(1, 5),
    steps=st.lists(
        st.tuples(st.sampled_from([0.0, 0.25, 0.5, 1.0, 2.0, 6.0]), st.booleans()), max_size=40
    ),
)
def test_time_window_failure_rate_in_metrics_is_naive_rate(
    seconds: int, steps: list[tuple[float, bool]]
) -> None:
    """``metrics().failure_rate`` over a TimeWindow is the naive rate of the live buckets."""
    policy = BreakerPolicy(
        failure_threshold=None,
        window=TimeWindow(seconds=seconds),
        failure_rate_threshold=1.0,
        minimum_calls=2,
    )
    clock = FakeClock(0.5)
    breaker = CircuitBreaker("rate", policy, clock=clock)
    naive = NaiveTimeWindow(seconds)

    def fail() -> None:
        raise ServiceError

    for gap, failed in steps:
        clock.advance(gap)
        if failed:
            with pytest.raises(ServiceError):
                breaker.call(fail)
        else:
            breaker.call(lambda: None)
        naive.add(failed, False, clock.monotonic())
        calls, failures, _ = naive.totals(clock.monotonic())
        metrics = breaker.metrics()
        assert metrics.window_calls == calls
        assert metrics.failure_rate == (failures / calls if calls >= 2 else None)
        if breaker.state == "open":
            assert metrics.failure_rate == 1.0
            break


def test_model_agrees_with_itself_on_a_known_story() -> None:
    """The reference model itself: trip at the threshold, reject, half-open, recover."""
    policy = BreakerPolicy(failure_threshold=2, reset_timeout=5)
    model = ReferenceBreaker(policy, random.Random(0))
    for now in (0.0, 1.0):
        ticket = model.admit(now)
        assert isinstance(ticket, Ticket)
        model.complete(ticket, "failed", now, now)
    assert model.state == OPEN
    assert model.admit(4.0) == REJECTED
    ticket = model.admit(6.0)
    assert isinstance(ticket, Ticket)
    assert model.state == HALF_OPEN
    model.complete(ticket, "ok", 6.0, 6.0)
    assert model.state == CLOSED
    assert [t[0] for t in model.trail] == ["trip", "attempt_reset", "recover"]
    assert model.metrics(6.0)["rejected_count"] == 1


def test_jitter_applies_without_an_injected_rng() -> None:
    """A policy's jitter varies open durations even when the breaker is given no rng."""
    policy = BreakerPolicy(failure_threshold=1, reset_timeout=10, reset_timeout_jitter=0.5)
    durations = set()
    for _ in range(20):
        breaker = CircuitBreaker("jitter", policy, clock=FakeClock())
        with pytest.raises(ServiceError):
            breaker.call(_raise, ServiceError("down"))
        duration = breaker.metrics().open_duration
        assert 5 <= duration <= 15
        durations.add(duration)
    assert len(durations) > 1  # 20 equal draws from a continuous uniform: never


def _raise(error: BaseException) -> None:
    """An operation that raises ``error``."""
    raise error
