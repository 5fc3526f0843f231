"""CircuitBreaker.asend on a shared store (real redis-server): the asyncio twin of send."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from typing import TYPE_CHECKING

import pytest

from breaker_fsm import BreakerPolicy, CircuitBreaker, IllegalTransitionError
from breaker_fsm.audit import verify
from tests.helpers import aboom, aok, merged, refused, run_closing, shared
from tests.redis_server import StoreFactory

if TYPE_CHECKING:
    from breaker_fsm.testing import FakeClock
    from tests.redis_server import RedisServer


POLICY = BreakerPolicy(failure_threshold=2, reset_timeout=5)


def test_asend_reaches_the_other_breakers_of_the_store(
    redis_stores: StoreFactory, clock: FakeClock
) -> None:
    """asend's force_open and reset apply to the shared state, on the asyncio client only."""
    # Without push: a pushing store's subscription thread has a blocking client of its own.
    store = redis_stores(now=clock.monotonic, push=False)
    a = CircuitBreaker("svc", POLICY, clock=clock, store=store)
    [b] = shared(redis_stores, clock, POLICY, n=1)

    async def scenario() -> None:
        assert await a.asend("force_open", reason="maintenance") == "forced_open"
        assert b.call(lambda: "ran") == "ran"  # its mirror said closed; the record tells it
        assert b.state == "forced_open"
        assert refused(b).retry_after is None
        assert await a.asend("reset") == "closed"
        clock.advance(1)  # b re-checks its mirror of the override after sync_interval
        assert b.call(lambda: "again") == "again"
        assert b.state == "closed"

    run_closing(store, scenario)
    assert store._clients._sync is None  # no blocking client was ever built
    assert [(r.event, r.generation, r.reason) for r in a.audit] == [
        ("force_open", 1, "maintenance"),
        ("reset", 2, "operator: reset"),
    ]
    assert not b.audit  # b only mirrored a's transitions
    assert verify(merged(a, b)) == 2
    assert a.metrics().store_errors == b.metrics().store_errors == 0


def test_asend_of_an_illegal_event_raises_and_changes_nothing(
    redis_stores: StoreFactory, clock: FakeClock
) -> None:
    """Illegal, unknown and unguarded events raise IllegalTransitionError; nothing changes."""
    store = redis_stores(now=clock.monotonic)
    a = CircuitBreaker("svc", POLICY, clock=clock, store=store)
    [b] = shared(redis_stores, clock, POLICY, n=1)
    observer = redis_stores()

    async def scenario() -> None:
        assert await a.asend("force_open") == "forced_open"
        before = observer.describe("svc")
        with pytest.raises(IllegalTransitionError, match="not allowed in state 'forced_open'"):
            await a.asend("disable")
        with pytest.raises(IllegalTransitionError, match="unknown event"):
            await a.asend("explode")
        assert observer.describe("svc") == before
        assert (a.state, len(a.audit)) == ("forced_open", 1)
        b.send("reset")
        with pytest.raises(IllegalTransitionError, match="guard does not hold") as info:
            await a.asend("trip")  # no failures: the trip guard does not hold
        assert info.value.state == "closed"  # the store's state, which a now mirrors
        assert a.state == "closed"
        assert len(a.audit) == 1

    run_closing(store, scenario)
    assert observer.describe("svc") is not None
    assert [r.event for r in merged(a, b)] == ["force_open", "reset"]
    assert a.metrics().store_errors == 0


def test_asend_while_redis_is_down_degrades_then_the_store_wins(
    redis_server: RedisServer,
    redis_stores: StoreFactory,
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """asend without Redis applies locally, warns, counts one error; then Redis' state wins."""
    caplog.set_level(logging.WARNING, logger="breaker_fsm")
    store = redis_stores(now=clock.monotonic)
    a = CircuitBreaker("svc", POLICY, clock=clock, store=store)
    [b] = shared(redis_stores, clock, POLICY, n=1)

    def warnings(text: str) -> int:
        return sum(text in r.getMessage() for r in caplog.records)

    async def scenario() -> None:
        assert await a.acall(aok) == "ok"  # connected, on shared state
        redis_server.kill()
        assert await a.asend("force_open") == "forced_open"
        assert a.metrics().degraded
        assert a.metrics().store_errors == 1
        assert warnings("shared store unavailable (ConnectionError") == 1
        assert warnings("'force_open' applied to this process's state only") == 1
        assert await a.asend("reset") == "closed"  # before retry_interval: no round trip
        assert await a.asend("force_open") == "forced_open"
        with pytest.raises(IllegalTransitionError, match="not allowed in state 'forced_open'"):
            await a.asend("disable")  # refused by the local state
        assert a.metrics().store_errors == 1
        assert warnings("applied to this process's state only") == 4  # as send: each one
        redis_server.restart()  # empty
        assert b.send("disable") == "disabled"  # recreates the entry: the fleet is disabled
        clock.advance(1)  # a's retry is due
        with pytest.raises(IllegalTransitionError, match="not allowed in state 'disabled'"):
            await a.asend("force_open")  # the store answers: its state wins
        assert a.state == "disabled"
        assert not a.metrics().degraded
        assert await a.asend("reset") == "closed"

    run_closing(store, scenario)
    assert a.metrics().store_errors == 1
    assert warnings("shared store unavailable") == 1
    local = [r for r in a.audit if r.generation is None]
    assert [r.event for r in local] == ["force_open", "reset", "force_open"]
    assert all(r.reason.startswith("local (shared store unavailable)") for r in local)
    assert [(r.event, r.generation) for r in a.audit if r.generation is not None] == [("reset", 2)]
    assert [(r.event, r.generation) for r in b.audit] == [("disable", 1)]


def test_asend_does_not_block_the_event_loop(
    redis_server: RedisServer, redis_stores: StoreFactory, clock: FakeClock
) -> None:
    """While asend awaits a stalled Redis, the loop keeps running other work."""
    store = redis_stores(now=clock.monotonic)
    a = CircuitBreaker("svc", POLICY, clock=clock, store=store)
    pid = redis_server.pid
    assert pid is not None

    async def scenario() -> None:
        assert await a.acall(aok) == "ok"  # the asyncio client is connected
        os.kill(pid, signal.SIGSTOP)  # Redis accepts the request but cannot answer it
        try:
            pending = asyncio.ensure_future(a.asend("force_open"))
            ticks = 0
            for _ in range(5):
                await asyncio.sleep(0)  # one loop iteration: no timer involved
                ticks += 1
            assert ticks == 5
            assert not pending.done()  # a blocking round trip would have finished by now
        finally:
            os.kill(pid, signal.SIGCONT)
        assert await pending == "forced_open"

    run_closing(store, scenario)
    assert a.metrics().store_errors == 0
    assert [(r.event, r.generation) for r in a.audit] == [("force_open", 1)]


async def send_via(mode: str, breaker: CircuitBreaker, event: str) -> str:
    """``breaker.send(event)`` ("sync") or ``await breaker.asend(event)`` ("async")."""
    return breaker.send(event) if mode == "sync" else await breaker.asend(event)


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_refused_operator_events_name_the_event_the_state_and_why(
    redis_stores: StoreFactory, clock: FakeClock, mode: str
) -> None:
    """Unknown, illegal and unguarded events raise errors naming the event, the state and why."""
    store = redis_stores(now=clock.monotonic)
    a = CircuitBreaker("svc", POLICY, clock=clock, store=store)
    errors: list[IllegalTransitionError] = []

    async def refused_event(event: str) -> None:
        with pytest.raises(IllegalTransitionError) as info:
            await send_via(mode, a, event)
        errors.append(info.value)

    async def scenario() -> None:
        await refused_event("explode")  # unknown: no round trip needed
        await refused_event("trip")  # the store's guard: no failures
        assert await send_via(mode, a, "force_open") == "forced_open"
        await refused_event("disable")  # not a move from forced_open

    run_closing(store, scenario)
    assert [(e.event, e.state, str(e)) for e in errors] == [
        (
            "explode",
            "closed",
            "event 'explode' is not allowed in state 'closed' (unknown event; the events are "
            "attempt_reset, disable, force_open, recover, reset, retrip, trip)",
        ),
        (
            "trip",
            "closed",
            "event 'trip' is not allowed in state 'closed' (its guard does not hold)",
        ),
        (
            "disable",
            "forced_open",
            "event 'disable' is not allowed in state 'forced_open' (allowed: reset)",
        ),
    ]
    assert a.metrics().store_errors == 0


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_an_operator_event_on_an_open_mirror_reaches_the_store(
    redis_stores: StoreFactory, clock: FakeClock, mode: str
) -> None:
    """An event sent while the mirror is open carries the episode's seed: one shared transition."""
    store = redis_stores(now=clock.monotonic)
    a = CircuitBreaker(
        "svc", BreakerPolicy(failure_threshold=1, reset_timeout=5), clock=clock, store=store
    )

    async def scenario() -> None:
        with pytest.raises(ConnectionError):
            await a.acall(aboom)  # trips: the mirror is open
        clock.advance(1)
        assert await send_via(mode, a, "force_open") == "forced_open"

    run_closing(store, scenario)
    assert [(r.event, r.generation) for r in a.audit] == [("trip", 1), ("force_open", 2)]
    assert (a.metrics().store_errors, a.metrics().degraded) == (0, False)
