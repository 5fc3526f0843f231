"""Half-open permits in a fleet: a permit whose holder never reports back.

A shared breaker's trial permit is taken by the store's *acquire* script and given back
only by the *record* of that trial's outcome. A process that dies mid-trial (or whose
acquire reply is lost to a timeout or a cancelled ``acall``) never records it. Without a
``half_open_timeout`` the permit is a lease: once every permit of the episode is out, the
newest for the lease, the next *acquire* retrips the episode, so the fleet tries again
after one more open duration, and a late outcome of the lost trial is stale (it decides
nothing). The dead process is played by running its acquire on the store entry directly;
a lost reply by pausing the real redis-server (``SIGSTOP``) under a waiting round trip.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from breaker_fsm import BreakerPolicy, CircuitBreaker, CircuitOpenError
from breaker_fsm._lua import trial_lease
from breaker_fsm._store import Seed
from breaker_fsm.audit import verify
from breaker_fsm.testing import FakeClock
from tests.helpers import MODES, fail, merged, refused, run_closing, wait_live, wait_until
from tests.redis_server import RedisServer, StoreFactory

pytest.importorskip("redis", reason="redis-py is not installed: pip install redis")

CLOSED, HALF_OPEN = 0, 2
LEASE = 60.0  # RedisStore's default trial_lease


def lost_trial(stores: StoreFactory, clock: FakeClock, policy: BreakerPolicy) -> None:
    """Another process takes the half-open permit of "svc", then is never heard of again."""
    entry = stores(now=clock.monotonic).bind("svc", policy)
    reply = entry.acquire(0.0, Seed(CLOSED, 0, 0, policy.reset_timeout, 0.0))
    assert (reply.state, reply.ok) == (2, 1)  # half_open, admitted: the permit is gone


def shared_state(stores: StoreFactory) -> dict[str, float]:
    state = stores().describe("svc")
    assert state is not None
    return state


def test_a_lost_trial_is_retripped_by_half_open_timeout(
    redis_stores: StoreFactory, clock: FakeClock
) -> None:
    """With half_open_timeout the fleet retrips the undecided episode and tries again."""
    policy = BreakerPolicy(failure_threshold=1, reset_timeout=10, half_open_timeout=30)
    breaker = CircuitBreaker("svc", policy, clock=clock, store=redis_stores(now=clock.monotonic))
    fail(breaker)
    clock.advance(10)
    lost_trial(redis_stores, clock, policy)
    with pytest.raises(CircuitOpenError) as info:
        breaker.call(lambda: "never runs")
    assert (info.value.state, info.value.retry_after) == ("half_open", None)
    clock.advance(30)
    with pytest.raises(CircuitOpenError):
        breaker.call(lambda: "never runs")  # retripped: a new open episode
    clock.advance(10)
    assert breaker.call(lambda: "trial") == "trial"
    assert breaker.state == "closed"


def test_a_lost_trial_does_not_hold_the_fleet_half_open_forever(
    redis_stores: StoreFactory, clock: FakeClock
) -> None:
    """Without half_open_timeout the lost permit is a lease: at its end the next caller
    retrips the episode, and after one more open duration the fleet tries again."""
    policy = BreakerPolicy(failure_threshold=1, reset_timeout=10)
    breaker = CircuitBreaker("svc", policy, clock=clock, store=redis_stores(now=clock.monotonic))
    fail(breaker)
    clock.advance(10)
    lost_trial(redis_stores, clock, policy)
    clock.advance(LEASE - 0.001)
    assert refused(breaker).state == "half_open"  # the lease still holds
    clock.advance(0.001)
    error = refused(breaker)  # this caller's acquire ends the episode
    assert (error.state, error.retry_after) == ("open", 10)
    assert [r.event for r in breaker.audit] == ["trip", "retrip"]
    assert breaker.audit[1].reason == (
        "no trial reported for 60s, every permit out: their holders are taken for lost; "
        "open for 10s"
    )
    assert breaker.audit[1].seq == 3  # generation 2 was the lost process's attempt_reset
    clock.advance(86_400)
    assert breaker.call(lambda: "trial") == "trial"
    assert breaker.state == "closed"


def test_the_lease_is_half_open_timeout_or_call_timeout_or_the_stores() -> None:
    """half_open_timeout turns the lease off; call_timeout (plus the round trip) sets it."""
    plain = BreakerPolicy()
    assert trial_lease(plain, 0.05, LEASE) == LEASE
    assert trial_lease(plain.model_copy(update={"call_timeout": 2.0}), 0.05, LEASE) == 2.05
    assert trial_lease(plain.model_copy(update={"half_open_timeout": 5.0}), 0.05, LEASE) == -1


def test_with_call_timeout_a_lost_trial_lapses_once_no_trial_could_succeed(
    redis_stores: StoreFactory, clock: FakeClock
) -> None:
    """call_timeout 2 s, store timeout 0.5 s: the lease is 2.5 s, whatever trial_lease says."""
    policy = BreakerPolicy(failure_threshold=1, reset_timeout=10, call_timeout=2)
    store = redis_stores(now=clock.monotonic, timeout=0.5, trial_lease=3600)
    breaker = CircuitBreaker("svc", policy, clock=clock, store=store)
    fail(breaker)
    clock.advance(10)
    lost_trial(redis_stores, clock, policy)
    clock.advance(2.499)
    assert refused(breaker).state == "half_open"
    clock.advance(0.001)
    assert refused(breaker).state == "open"
    assert breaker.audit[-1].event == "retrip"


def test_a_trial_that_reports_after_its_lease_decides_nothing(
    redis_stores: StoreFactory, clock: FakeClock
) -> None:
    """Exact per episode: a trial past its lease is stale, and the next episode admits
    half_open_max_calls trials of its own, however many processes race for them."""
    policy = BreakerPolicy(failure_threshold=1, reset_timeout=10)
    slow, b, c = (
        CircuitBreaker("svc", policy, clock=clock, store=redis_stores(now=clock.monotonic))
        for _ in range(3)
    )
    wait_live(slow, b, c)
    fail(slow)
    clock.advance(10)
    permit = slow.acquire()  # the trial of episode 1: slow, alive
    assert shared_state(redis_stores)["permits"] == 1
    clock.advance(LEASE)
    refused(b)  # the lease ended episode 1
    permit.success()  # too late: the store counts it for nothing
    assert shared_state(redis_stores)["state"] == 1  # still open
    wait_until(lambda: slow.state == c.state == "open", "every member follows the retrip")
    clock.advance(10)
    second = c.acquire()  # the one trial of episode 2
    refused(b)
    refused(slow)
    second.success()
    wait_until(lambda: slow.state == b.state == "closed", "every member follows the recovery")
    trail = merged(slow, b, c)
    assert [(r.event, r.generation) for r in trail] == [
        ("trip", 1),
        ("attempt_reset", 2),
        ("retrip", 3),
        ("attempt_reset", 4),
        ("recover", 5),
    ]
    assert verify(trail) == 5


@contextmanager
def paused(server: RedisServer) -> Iterator[None]:
    """The server stopped (SIGSTOP): round trips sent meanwhile wait for SIGCONT."""
    assert server.pid is not None
    os.kill(server.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(server.pid, signal.SIGCONT)


@MODES
def test_an_acquire_whose_reply_is_lost_holds_the_permit_only_for_the_lease(
    redis_server: RedisServer, redis_stores: StoreFactory, clock: FakeClock, mode: str
) -> None:
    """The acquire of A's trial reaches a paused server, and A stops waiting (sync: its
    timeout, so the call runs on local state; async: ``wait_for`` cancels the ``acall``).
    Resumed, the server runs it and takes the permit for nobody; B gets it back at the
    lease's end, with one more open duration."""
    policy = BreakerPolicy(failure_threshold=1, reset_timeout=10)
    store = redis_stores(now=clock.monotonic, timeout=0.2)
    a = CircuitBreaker("svc", policy, clock=clock, store=store)
    b = CircuitBreaker("svc", policy, clock=clock, store=redis_stores(now=clock.monotonic))
    wait_live(a, b)
    with redis_server.client() as admin:  # loaded, as in a fleet that ran for a while
        admin.script_load(store._scripts(policy)[1].text)
    fail(a)
    wait_until(lambda: b.state == "open", "b follows the trip")
    clock.advance(10)
    ran: list[str] = []

    async def trial() -> str:
        ran.append(mode)
        return "trial"

    async def cancelled() -> None:
        await store._clients.for_loop().ping()  # this loop's connection is up
        with paused(redis_server), pytest.raises(TimeoutError):
            await asyncio.wait_for(a.acall(trial), 0.1)  # shorter than the store's timeout

    if mode == "sync":
        with paused(redis_server):
            assert a.call(lambda: "ran locally") == "ran locally"
        assert a.metrics().degraded
    else:
        run_closing(store, cancelled)
        assert ran == []
        assert not a.metrics().degraded  # a cancellation is no outage
    wait_until(lambda: shared_state(redis_stores)["permits"] == 1, "the lost acquire ran")
    assert shared_state(redis_stores)["state"] == HALF_OPEN
    assert refused(b).state == "half_open"  # the permit is out: nobody else may try
    clock.advance(LEASE)
    assert refused(b).state == "open"  # the lease lapsed: retripped
    clock.advance(10)
    assert b.call(lambda: "trial") == "trial"
    wait_until(lambda: a.state == "closed", "a follows the recovery")
    assert a.call(lambda: "ok") == "ok"
    shared_walk = [(r.event, r.generation) for r in merged(a, b) if r.generation is not None]
    assert shared_walk == [  # a records the attempt_reset its lost acquire made, from its push
        ("trip", 1),
        ("attempt_reset", 2),
        ("retrip", 3),
        ("attempt_reset", 4),
        ("recover", 5),
    ]
    assert verify(merged(a, b)) == len(merged(a, b))


def test_a_transition_whose_reply_was_lost_is_still_recorded(
    redis_server: RedisServer, redis_stores: StoreFactory, clock: FakeClock
) -> None:
    """The attempt_reset that A's lost acquire made is recorded by A, from its own push
    (the reply never came): the fleet's merged trail has no gap."""
    policy = BreakerPolicy(failure_threshold=1, reset_timeout=10)
    store = redis_stores(now=clock.monotonic, timeout=0.2)
    a = CircuitBreaker("svc", policy, clock=clock, store=store)
    b = CircuitBreaker("svc", policy, clock=clock, store=redis_stores(now=clock.monotonic))
    wait_live(a, b)
    with redis_server.client() as admin:
        admin.script_load(store._scripts(policy)[1].text)
    fail(a)
    clock.advance(10)
    with paused(redis_server):
        assert a.call(lambda: "ran locally") == "ran locally"
    wait_until(lambda: shared_state(redis_stores)["permits"] == 1, "the lost acquire ran")
    wait_until(lambda: [r.generation for r in a.audit][-1:] == [2], "a records it from its push")
    assert (a.audit[-1].event, a.audit[-1].reason) == ("attempt_reset", "open duration 10s elapsed")
    clock.advance(LEASE)
    refused(b)
    shared_walk = [r for r in merged(a, b) if r.generation is not None]
    assert [r.generation for r in shared_walk] == [1, 2, 3]
    assert verify(merged(a, b)) == len(merged(a, b))


@pytest.mark.parametrize("lost", ["record", "operator"])
def test_a_cancelled_round_trip_that_made_a_transition_is_still_recorded(
    redis_server: RedisServer, redis_stores: StoreFactory, clock: FakeClock, lost: str
) -> None:
    """wait_for cancels A's acall while its failure's record (which trips the fleet) or
    A's asend("force_open") waits on a paused server: the script runs on SIGCONT, and A
    records the transition from its push; B follows it; the merged trail has no gap."""
    policy = BreakerPolicy(failure_threshold=1, reset_timeout=10)
    store = redis_stores(now=clock.monotonic)
    a = CircuitBreaker("svc", policy, clock=clock, store=store)
    b = CircuitBreaker("svc", policy, clock=clock, store=redis_stores(now=clock.monotonic))
    wait_live(a, b)
    with redis_server.client() as admin:  # loaded, as in a fleet that ran for a while
        for script in store._scripts(policy):
            admin.script_load(script.text)

    async def down() -> None:
        raise ConnectionError("dependency down")

    async def cancelled() -> None:
        await store._clients.for_loop().ping()  # this loop's connection is up
        round_trip = a.acall(down) if lost == "record" else a.asend("force_open")
        with paused(redis_server), pytest.raises(TimeoutError):
            await asyncio.wait_for(round_trip, 0.1)

    run_closing(store, cancelled)
    target = "open" if lost == "record" else "forced_open"
    wait_until(lambda: [r.generation for r in a.audit] == [1], "a records it from its push")
    assert (a.audit[0].event, a.audit[0].target) == (
        "trip" if lost == "record" else "force_open",
        target,
    )
    wait_until(lambda: a.state == b.state == target, "both follow it")
    assert list(b.audit) == []
    assert b.send("reset") == "closed"
    assert verify(merged(a, b)) == 2
