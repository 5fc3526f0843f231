"""Reliability under load and faults: mixed concurrent traffic, odd clocks, re-entrant sinks.

The command line's hostile-input fuzz is in ``tests/test_hostile.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import threading
from typing import NoReturn

import pytest

from breaker_fsm import (
    BreakerPolicy,
    CircuitBreaker,
    CircuitOpenError,
    CountWindow,
    IllegalTransitionError,
    Transition,
)
from breaker_fsm.audit import verify
from breaker_fsm.testing import FakeClock
from tests.helpers import Boom

POLICY = BreakerPolicy(
    failure_threshold=4,
    reset_timeout=0.5,
    success_threshold=2,
    half_open_max_calls=3,
    ignore_exceptions=(KeyError,),
    window=CountWindow(size=20),
    minimum_calls=8,
    failure_rate_threshold=0.7,
    reset_timeout_multiplier=2,
    max_reset_timeout=4,
    half_open_timeout=2,
)


def _raise(exc: BaseException) -> NoReturn:
    raise exc


def _check_accounting(breaker: CircuitBreaker, attempted: int, sink: list[Transition]) -> None:
    m = breaker.metrics()
    ran = m.success_count + m.error_count + m.ignored_count
    assert m.total_requests == ran
    assert ran + m.rejected_count == attempted
    assert verify(breaker.audit) == len(breaker.audit)
    assert sink == list(breaker.audit)
    assert breaker._permits >= 0


def _trial_is_admitted_after(breaker: CircuitBreaker, clock: FakeClock) -> None:
    """No permit leaked: after a reset and a trip, a trial call is admitted."""
    breaker.send("reset")
    for _ in range(POLICY.failure_threshold or 0):
        with contextlib.suppress(Boom):
            breaker.call(_raise, Boom())
    assert breaker.state == "open"
    clock.advance(POLICY.max_reset_timeout or 0)
    assert breaker.call(int) == 0
    assert breaker.state in {"half_open", "closed"}


def test_eight_threads_mixed_traffic_and_operators() -> None:
    """8 threads mix outcomes, operator events and clock moves: every call is accounted for.

    ``disable`` is left out: a disabled breaker records nothing, so its calls could not be
    accounted for (tests/test_breaker.py pins that behaviour on its own).
    """
    clock = FakeClock()
    sink: list[Transition] = []
    breaker = CircuitBreaker(
        "mixed", POLICY, clock=clock, sinks=[sink.append], rng=random.Random(1)
    )
    per_thread = 1500
    barrier = threading.Barrier(8)
    errors: list[BaseException] = []

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        barrier.wait()
        try:
            for _ in range(per_thread):
                roll = rng.random()
                with contextlib.suppress(Boom, KeyError, CircuitOpenError, KeyboardInterrupt):
                    if roll < 0.45:
                        breaker.call(int)
                    elif roll < 0.75:
                        breaker.call(_raise, Boom())
                    elif roll < 0.85:
                        breaker.call(_raise, KeyError("ignored"))
                    elif roll < 0.9:
                        breaker.call(_raise, KeyboardInterrupt())
                    else:
                        breaker.call(int)
                if roll > 0.97:
                    clock.advance(0.3)
                elif roll < 0.004:
                    with contextlib.suppress(IllegalTransitionError):
                        breaker.send(rng.choice(["force_open", "reset", "reset"]))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(seed,)) for seed in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
        assert not t.is_alive(), "deadlock"
    assert not errors
    _check_accounting(breaker, 8 * per_thread, sink)
    _trial_is_admitted_after(breaker, clock)


def test_thousand_asyncio_tasks_with_cancellations() -> None:
    """1,000 tasks mixing outcomes and cancellations keep exact counts and a legal trail."""
    clock = FakeClock()
    sink: list[Transition] = []
    breaker = CircuitBreaker("tasks", POLICY, clock=clock, sinks=[sink.append])

    async def op(kind: int) -> int:
        await asyncio.sleep(0)
        if kind == 1:
            raise Boom
        if kind == 2:
            raise KeyError("ignored")
        if kind == 3:
            await asyncio.Event().wait()  # cancelled by the test
        return 1

    async def scenario() -> int:
        rng = random.Random(5)
        tasks = []
        for i in range(1000):
            tasks.append(asyncio.ensure_future(breaker.acall(op, rng.choice([0, 0, 1, 2, 3]))))
            if i % 50 == 0:
                clock.advance(0.4)
                await asyncio.sleep(0)
        await asyncio.sleep(0)
        for task in tasks:
            if not task.done():
                task.cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        return len(results)

    assert asyncio.run(asyncio.wait_for(scenario(), timeout=60)) == 1000
    _check_accounting(breaker, 1000, sink)
    _trial_is_admitted_after(breaker, clock)


def test_clock_that_stands_still_or_jumps_back() -> None:
    """A frozen or backwards clock keeps the breaker open, never corrupts state."""
    clock = FakeClock(start=100.0)
    breaker = CircuitBreaker("clock", POLICY, clock=clock)
    for _ in range(4):
        with contextlib.suppress(Boom):
            breaker.call(_raise, Boom())
    assert breaker.state == "open"
    clock.set(50.0)  # backwards: the open duration cannot have elapsed
    with pytest.raises(CircuitOpenError) as exc:
        breaker.call(int)
    assert exc.value.retry_after is not None
    assert exc.value.retry_after > 0
    clock.set(100.5)
    assert breaker.call(int) == 0
    assert breaker.state == "half_open"
    assert verify(breaker.audit) == 2


class RacingClock(FakeClock):
    """A clock that moves on by ``step`` seconds at every reading (a pathological one)."""

    step = 0.0

    def monotonic(self) -> float:
        self.advance(self.step)
        return super().monotonic()


def test_a_clock_that_races_ahead_cannot_keep_admission_looping() -> None:
    """A clock that outruns every open duration and half-open timeout between two readings
    could move the breaker round open -> half_open -> open forever: one admission makes
    at most four transitions, then refuses the call; the trail stays legal."""
    clock = RacingClock()
    policy = BreakerPolicy(failure_threshold=1, reset_timeout=1, half_open_timeout=1)
    breaker = CircuitBreaker("clock", policy, clock=clock)
    with contextlib.suppress(Boom):
        breaker.call(_raise, Boom())
    clock.step = 10.0
    with pytest.raises(CircuitOpenError):
        breaker.call(int)
    assert [r.event for r in breaker.audit] == ["trip", *["attempt_reset", "retrip"] * 2]
    assert verify(breaker.audit) == 5


def test_reentrant_operator_from_sink_keeps_trail_legal() -> None:
    """A sink that force-opens on every trip leaves a legal, complete trail."""
    clock = FakeClock()
    breaker: CircuitBreaker
    seen: list[Transition] = []

    def sink(record: Transition) -> None:
        seen.append(record)
        breaker.metrics()
        if record.event == "trip":
            breaker.send("force_open", reason="page the on-call")

    breaker = CircuitBreaker("re", POLICY, clock=clock, sinks=[sink])
    for _ in range(4):
        with contextlib.suppress(Boom):
            breaker.call(_raise, Boom())
    assert breaker.state == "forced_open"
    assert [r.event for r in seen] == ["trip", "force_open"]
    assert verify(seen) == 2
