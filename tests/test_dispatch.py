"""How transitions reach a BreakerMachine: pooled machines bound per event, kept ones on demand.

The README's Architecture section: every transition goes through a ``BreakerMachine`` whose
model binds it to one breaker; breakers borrow one from a pool shared by the process, and
only a breaker whose ``machine`` is asked for builds one of its own.
"""

from __future__ import annotations

import gc
from typing import Any

import pytest

from breaker_fsm import (
    BreakerMachine,
    BreakerPolicy,
    BreakerStats,
    CircuitBreaker,
    TimeWindow,
    Transition,
)
from breaker_fsm._binding import _POOL, _Binding
from breaker_fsm.audit import AuditLog, verify
from breaker_fsm.testing import FakeClock

from .helpers import Boom, boom, fail, ok

ONE_STRIKE = BreakerPolicy(failure_threshold=1, reset_timeout=5)


def machines() -> int:
    """How many BreakerMachine instances are alive."""
    gc.collect()
    return sum(isinstance(o, BreakerMachine) for o in gc.get_objects())


def test_tripping_many_breakers_builds_no_machine_per_breaker(clock: FakeClock) -> None:
    """A hundred breakers trip, recover and trip again with no machine of their own."""
    breakers = [CircuitBreaker(f"host-{i}", ONE_STRIKE, clock=clock) for i in range(100)]
    fail(breakers[0])  # the pool has a machine from here on
    before = machines()
    for breaker in breakers[1:]:
        fail(breaker)
    clock.advance(5)
    for breaker in breakers:
        breaker.call(ok)
        fail(breaker)
    assert machines() == before
    assert all(b._machine is None and b.state == "open" for b in breakers)
    assert all(
        [r.event for r in b.audit] == ["trip", "attempt_reset", "recover", "trip"]
        for b in breakers[1:]
    )
    assert len(_POOL) <= 2  # one per transition in flight at once: this test runs one


def test_pooled_machine_keeps_no_breaker_alive(clock: FakeClock) -> None:
    """A machine back in the pool is bound to no breaker, so breakers can be collected."""
    fail(CircuitBreaker("gone", ONE_STRIKE, clock=clock))
    assert _POOL
    for _, binding, _ in _POOL:
        assert not hasattr(binding, "breaker")
        assert binding.source is None


def test_machine_is_built_on_demand_and_kept_for_every_later_transition(clock: FakeClock) -> None:
    """breaker.machine is built once; its listeners see every transition from then on."""
    breaker = CircuitBreaker("kept", ONE_STRIKE, clock=clock)
    fail(breaker)  # through a pooled machine
    seen: list[tuple[str, str, str]] = []

    class Listener:
        def after_transition(self, event: str, source: Any, target: Any) -> None:
            seen.append((str(event), str(source.id), str(target.id)))

    machine = breaker.machine
    assert machine is breaker.machine
    assert machine.current_state_value == "open"  # the breaker's state, not a fresh machine's
    machine.add_listener(Listener())  # type: ignore[no-untyped-call]
    clock.advance(5)
    breaker.call(ok)  # attempt_reset, then recover
    breaker.send("force_open")
    assert seen == [
        ("attempt_reset", "open", "half_open"),
        ("recover", "half_open", "closed"),
        ("force_open", "closed", "forced_open"),
    ]
    assert verify(breaker.audit) == 4


def test_a_kept_machine_records_the_evidence_its_guard_decided_on(clock: FakeClock) -> None:
    """The record's counters are those the trip was decided on, even when a listener of the
    kept machine moves the clock past the window before the transition is applied."""
    policy = BreakerPolicy(failure_threshold=None, window=TimeWindow(seconds=10), minimum_calls=2)
    breaker = CircuitBreaker("evidence", policy, clock=clock)

    class LateListener:
        def before_transition(self) -> None:
            clock.advance(60)  # the window the guard read is gone by now

    breaker.machine.add_listener(LateListener())  # type: ignore[no-untyped-call]
    fail(breaker, times=2)
    (record,) = breaker.audit
    assert record.event == "trip"
    assert (record.counters["window_calls"], record.counters["window_failures"]) == (2, 2)
    assert record.reason == "failure rate 1.00 ≥ 0.5 over 2 calls; open for 30s"


def test_a_pooled_machine_records_the_evidence_its_guard_decided_on() -> None:
    """The trip's record holds the counters the guard decided on, though the clock moves
    on at every reading (the failure that filled the window has left it one reading later)."""

    class Ticking(FakeClock):
        def monotonic(self) -> float:
            value = super().monotonic()
            self.advance(4)
            return value

    policy = BreakerPolicy(failure_threshold=None, window=TimeWindow(seconds=10), minimum_calls=2)
    breaker = CircuitBreaker("ticking", policy, clock=Ticking())
    fail(breaker, times=2)
    (record,) = breaker.audit
    assert (record.counters["window_calls"], record.counters["window_failures"]) == (2, 2)
    assert record.reason == "failure rate 1.00 ≥ 0.5 over 2 calls; open for 30s"


def test_a_kept_machines_listeners_see_the_evidence_of_each_state(clock: FakeClock) -> None:
    """The stats a transition is sent with hold the open timing only in open, and the
    half-open timing only in half_open: the evidence of the state being left."""
    breaker = CircuitBreaker("timing", ONE_STRIKE, clock=clock)
    seen: list[tuple[str, float | None, float | None]] = []

    class Listener:
        def after_transition(self, event: str, stats: BreakerStats) -> None:
            seen.append((str(event), stats.opened_at, stats.half_open_since))

    breaker.machine.add_listener(Listener())  # type: ignore[no-untyped-call]
    start = clock.monotonic()
    fail(breaker)  # trip
    clock.advance(5)
    breaker.call(ok)  # attempt_reset, then recover
    fail(breaker)  # trip again
    assert seen == [
        ("trip", None, None),
        ("attempt_reset", start, None),
        ("recover", None, start + 5),
        ("trip", None, None),
    ]


def test_an_event_sent_to_the_kept_machine_itself_is_recorded(clock: FakeClock) -> None:
    """An event sent to breaker.machine directly, with no stats and a reason that send()
    would refuse, moves the breaker and is recorded: its counters read now, its reason as text."""
    breaker = CircuitBreaker("direct", ONE_STRIKE, clock=clock)
    breaker.machine.send("force_open", reason=5)
    breaker.machine.send("reset")
    assert breaker.state == "closed"
    assert [(r.event, r.reason) for r in breaker.audit] == [
        ("force_open", "5"),
        ("reset", "operator: reset"),
    ]
    assert verify(breaker.audit) == 2


def test_a_kept_machine_reads_the_breakers_state(clock: FakeClock) -> None:
    """The machine's state is the breaker's: writing current_state_value moves nothing."""
    breaker = CircuitBreaker("state", ONE_STRIKE, clock=clock)
    machine = breaker.machine
    machine.current_state_value = "disabled"
    assert (breaker.state, machine.current_state_value) == ("closed", "closed")
    fail(breaker)
    assert machine.current_state_value == "open"
    assert [s.id for s in machine.configuration] == ["open"]


@pytest.mark.parametrize(
    "stats",
    [
        BreakerStats(now=0),
        BreakerStats(now=10, consecutive_failures=3, opened_at=0, open_duration=5),
        BreakerStats(now=10, trial_successes=2, trial_failures=1, half_open_since=0),
        None,
    ],
)
def test_binding_answers_every_guard_with_the_bound_breakers_policy(
    stats: BreakerStats | None,
) -> None:
    """Each guard the machine names is answered by the bound breaker's own policy."""
    conds = {str(c) for s in BreakerMachine.states for t in s.transitions for c in t.cond}
    policy = BreakerPolicy(failure_threshold=3, success_threshold=2, half_open_max_calls=2)
    binding = _Binding(CircuitBreaker("guards", policy))
    for name in conds:
        assert getattr(binding, name)(stats) == getattr(policy, name)(stats), name


def test_breakers_with_different_policies_share_machines(clock: FakeClock) -> None:
    """The same pooled machine decides each breaker's trip with that breaker's policy."""
    strict = CircuitBreaker("strict", ONE_STRIKE, clock=clock)
    lenient = CircuitBreaker("lenient", BreakerPolicy(failure_threshold=3), clock=clock)
    fail(lenient, times=2)
    fail(strict)
    assert (strict.state, lenient.state) == ("open", "closed")
    fail(lenient)
    assert lenient.state == "open"


def test_a_failed_transition_changes_nothing_and_the_next_one_works(clock: FakeClock) -> None:
    """An error while a transition is applied leaves the breaker as it was; the pool recovers."""

    class BrokenWall(FakeClock):
        broken = True

        def wall(self) -> float:
            if self.broken:
                raise OSError("no wall clock")
            return super().wall()

    broken = BrokenWall()
    breaker = CircuitBreaker("broken", ONE_STRIKE, clock=broken)
    with pytest.raises(OSError, match="no wall clock"):
        breaker.send("force_open")
    assert (breaker.state, len(breaker.audit)) == ("closed", 0)
    broken.broken = False
    assert breaker.send("force_open") == "forced_open"
    assert [r.seq for r in breaker.audit] == [1]


def test_a_transition_made_by_a_sink_reaches_every_sink_after_the_current_one(
    clock: FakeClock,
) -> None:
    """A sink's own send is applied at once; every sink still sees the records in seq order."""
    first: list[int] = []
    second: list[int] = []
    answers: list[str] = []
    breaker: CircuitBreaker

    def operator(record: Transition) -> None:
        first.append(record.seq)
        if record.event == "trip":
            answers.append(breaker.send("force_open", reason="page the on-call"))

    breaker = CircuitBreaker(
        "sinks", ONE_STRIKE, clock=clock, sinks=[operator, lambda r: second.append(r.seq)]
    )
    fail(breaker)
    assert answers == ["forced_open"]
    assert first == second == [1, 2]
    assert verify(breaker.audit) == 2


def test_audit_log_keeps_a_foreign_record_as_it_is() -> None:
    """A record whose counters are not a breaker's is kept whole, and read back the same."""
    record = Transition.at_wall(
        0.0,
        seq=1,
        breaker="b",
        event="reset",
        source="closed",
        target="closed",
        monotonic=0.0,
        counters={"other": 0.5},
    )
    log = AuditLog(2)
    log.append(record)
    assert log[0] is record


class FailDuringReset:
    """A listener on a breaker's machine: before a reset is applied, a call fails through
    the breaker with a 30 s open-duration hint, and trips it."""

    def __init__(self, breaker: CircuitBreaker) -> None:
        self.breaker = breaker

    def before_transition(self, event: str) -> None:
        if event == "reset":
            with pytest.raises(Boom):
                self.breaker.call(boom)


def test_a_trip_made_during_another_transition_opens_for_its_hint(clock: FakeClock) -> None:
    """A failure whose open-duration hint trips the breaker while another transition is
    being made on its kept machine (a listener's call, before a reset) opens it for that
    hint once its trip is made."""
    options: dict[str, Any] = {"is_failure_exception": lambda exc: 30.0}
    breaker = CircuitBreaker("svc", ONE_STRIKE, clock=clock, **options)
    breaker.machine.add_listener(FailDuringReset(breaker))  # type: ignore[no-untyped-call]
    breaker.send("reset")
    [trip] = [r for r in breaker.audit if r.event == "trip"]
    assert trip.reason.endswith("open for 30s")
