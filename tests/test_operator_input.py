"""Validate, then change: an operator's bad input changes nothing (state, machine, trail)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from breaker_fsm import BreakerPolicy, CircuitBreaker, IllegalTransitionError
from breaker_fsm.audit import verify
from breaker_fsm.testing import FakeClock
from tests.redis_server import StoreFactory

Make = Callable[[], CircuitBreaker]


@pytest.fixture(params=["memory", "shared"])
def make(request: pytest.FixtureRequest, clock: FakeClock) -> Make:
    """A breaker in memory or sharing Redis state."""

    def build() -> CircuitBreaker:
        options: dict[str, Any] = {}
        if request.param == "shared":
            stores: StoreFactory = request.getfixturevalue("redis_stores")
            options["store"] = stores(now=clock.monotonic)
        return CircuitBreaker("svc", BreakerPolicy(failure_threshold=1), clock=clock, **options)

    return build


def snapshot(breaker: CircuitBreaker) -> tuple[object, ...]:
    """Everything a bad send must leave as it was."""
    machine = breaker.machine
    return (
        breaker.state,
        {s.id for s in machine.configuration},
        [(r.seq, r.event) for r in breaker.audit],
        breaker.metrics().transitions,
    )


@pytest.mark.parametrize("reason", [5, 2.5, b"bytes", ["list"], {"a": 1}])
@pytest.mark.parametrize("how", ["send", "asend"])
def test_a_bad_reason_changes_nothing(make: Make, reason: object, how: str) -> None:
    """send/asend with a reason that is not a str raise TypeError naming reason, and the
    state, the machine and the trail are untouched; the next send is recorded normally."""
    breaker = make()
    breaker.send("force_open", reason="maintenance")
    before = snapshot(breaker)

    def attempt() -> object:
        if how == "send":
            return breaker.send("reset", reason=reason)  # type: ignore[arg-type]
        return asyncio.run(breaker.asend("reset", reason=reason))  # type: ignore[arg-type]

    with pytest.raises(TypeError, match="reason"):
        attempt()
    assert snapshot(breaker) == before
    assert breaker.send("reset", reason="done") == "closed"
    assert [(r.source, r.target) for r in breaker.audit][-1] == ("forced_open", "closed")
    assert verify(breaker.audit) == len(breaker.audit)


@pytest.mark.parametrize("event", [None, 3, b"reset", "RESET", "open", ""])
def test_a_bad_event_changes_nothing(make: Make, event: object) -> None:
    """An event that is not a str, or names no event, is refused and changes nothing."""
    breaker = make()
    before = snapshot(breaker)
    with pytest.raises((TypeError, IllegalTransitionError)):
        breaker.send(event)  # type: ignore[arg-type]
    assert snapshot(breaker) == before


def test_a_wrong_type_is_named_in_the_error(clock: FakeClock) -> None:
    """The TypeError of a bad event or reason names the type given and shows the value."""
    breaker = CircuitBreaker("svc", clock=clock)
    with pytest.raises(TypeError) as exc:
        breaker.send(3)  # type: ignore[arg-type]
    assert str(exc.value) == "event must be a str, got int: 3"
    with pytest.raises(TypeError) as exc:
        breaker.send("force_open", reason=2.5)  # type: ignore[arg-type]
    assert str(exc.value) == "reason must be a str or None, got float: 2.5"
    assert breaker.state == "closed"
