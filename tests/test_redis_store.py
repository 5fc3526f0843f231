"""Breaker state shared through a real redis-server: atomic scripts, round trips, degrading."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import re
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pytest

from breaker_fsm import (
    BreakerPolicy,
    BreakerRegistry,
    CircuitBreaker,
    CircuitOpenError,
    CountWindow,
    IllegalTransitionError,
    TimeWindow,
    Transition,
)
from breaker_fsm._store import EVENT_CODES
from breaker_fsm.audit import verify
from breaker_fsm.exceptions import AuditError
from breaker_fsm.testing import FakeClock
from tests.helpers import (
    MODES,
    Boom,
    CommandLog,
    Invoke,
    aboom,
    aok,
    boom,
    fail,
    merged,
    refused,
    run_closing,
    shared,
    through,
    wait_live,
)
from tests.redis_server import StoreFactory

if TYPE_CHECKING:
    from breaker_fsm.redis import RedisStore
    from tests.redis_server import RedisServer

redis = pytest.importorskip("redis", reason="redis-py is not installed: pip install redis")


# ---------------------------------------------------------------------------- basics


def test_failures_from_two_clients_add_up_to_one_trip(
    redis_stores: StoreFactory, clock: FakeClock
) -> None:
    """Failures through two clients add up; the breaker whose script tripped records it."""
    a, b = shared(redis_stores, clock, BreakerPolicy(failure_threshold=3, reset_timeout=5))
    fail(a)
    fail(b)
    assert a.state == b.state == "closed"
    assert b.metrics().failure_count == 2
    fail(a)
    assert a.state == "open"
    [trip] = a.audit
    assert (trip.seq, trip.generation, trip.event) == (1, 1, "trip")
    assert trip.counters["consecutive_failures"] == 3
    assert trip.reason == "3 consecutive failures ≥ 3; open for 5s"
    # b reads nothing before a call: its next call runs, and its reply shows the trip.
    assert b.call(lambda: "ran") == "ran"
    assert b.state == "open"
    assert len(b.audit) == 0
    assert refused(b).retry_after == pytest.approx(5.0)
    assert a.metrics().transitions == b.metrics().transitions == 1


def test_recovery_is_shared_and_the_merged_trail_verifies(
    redis_stores: StoreFactory, clock: FakeClock
) -> None:
    """The breaker that runs the trial recovers for everyone; the merged trail verifies."""
    a, b = shared(redis_stores, clock, BreakerPolicy(failure_threshold=1, reset_timeout=5))
    fail(a)
    b.call(lambda: None)  # learns the trip
    clock.advance(4.9)
    refused(a)
    refused(b)
    clock.advance(0.1)
    assert b.call(lambda: "trial") == "trial"
    assert b.state == "closed"
    assert [(r.seq, r.event) for r in b.audit] == [(2, "attempt_reset"), (3, "recover")]
    assert b.audit[0].reason == "open duration 5s elapsed"
    assert a.state == "open"  # its deadline passed: its next call asks
    assert a.call(lambda: "after") == "after"
    assert a.state == "closed"
    assert verify(merged(a, b)) == 3
    assert a.machine.current_state_value == "closed"


def test_half_open_admits_max_calls_across_clients(
    redis_stores: StoreFactory, clock: FakeClock
) -> None:
    """Trials in flight on three clients: exactly half_open_max_calls are admitted."""
    policy = BreakerPolicy(
        failure_threshold=1, reset_timeout=1, half_open_max_calls=2, success_threshold=2
    )
    a, b, c = shared(redis_stores, clock, policy, n=3)
    fail(a)
    b.call(lambda: None)  # b and c learn the trip (their mirrors said closed)
    c.call(lambda: None)
    clock.advance(1)

    def third() -> str:
        error = refused(c)
        assert (error.state, error.retry_after) == ("half_open", None)
        return "c refused"

    assert a.call(lambda: b.call(third)) == "c refused"  # a's and b's trials nest
    assert a.state == "closed"
    assert [r.event for r in a.audit] == ["trip", "attempt_reset", "recover"]
    assert a.audit[-1].counters["trial_successes"] == 2
    assert c.call(lambda: "c") == "c"
    assert c.state == "closed"
    assert verify(merged(a, b, c)) == 3


def test_neutral_trial_returns_its_permit(redis_stores: StoreFactory, clock: FakeClock) -> None:
    """An ignored exception in a trial releases the shared permit for the next caller."""
    policy = BreakerPolicy(failure_threshold=1, reset_timeout=1, ignore_exceptions=(KeyError,))
    a, b = shared(redis_stores, clock, policy)
    fail(a)
    b.call(lambda: None)  # b learns the trip
    clock.advance(1)
    with pytest.raises(KeyError):
        a.call(lambda: {}["missing"])
    assert a.state == "half_open"
    assert b.call(lambda: "trial") == "trial"
    assert b.state == "closed"
    assert a.metrics().ignored_count == 1


def test_trial_failure_retrips_with_backoff(redis_stores: StoreFactory, clock: FakeClock) -> None:
    """A failed trial retrips; each open duration is backed off and capped, as the policy says."""
    policy = BreakerPolicy(
        failure_threshold=1, reset_timeout=1, reset_timeout_multiplier=2, max_reset_timeout=3
    )
    a, b = shared(redis_stores, clock, policy)
    fail(a)
    b.call(lambda: None)  # b learns the trip
    assert a.metrics().open_duration == b.metrics().open_duration == 1
    for previous, expected in ((1, 2), (2, 3), (3, 3)):
        clock.advance(previous)
        fail(b)  # the trial fails
        assert b.state == "open"
        assert b.metrics().open_duration == expected
        assert refused(b).retry_after == pytest.approx(expected)
    assert [r.event for r in b.audit] == ["attempt_reset", "retrip"] * 3
    assert b.audit[1].reason == "trial call failed; open for 2s"
    clock.advance(3)
    assert a.call(lambda: "back") == "back"
    assert a.metrics().open_duration == 1  # recover restores reset_timeout
    assert verify(merged(a, b)) == 9


def test_jitter_is_drawn_by_the_client(redis_stores: StoreFactory, clock: FakeClock) -> None:
    """Each breaker draws the jitter from its own rng; the script applies it to the duration."""
    policy = BreakerPolicy(failure_threshold=1, reset_timeout=10, reset_timeout_jitter=0.5)
    [a] = shared(redis_stores, clock, policy, n=1, rng=random.Random(7))
    fail(a)
    expected = 10 * (1 + random.Random(7).uniform(-0.5, 0.5))
    assert a.metrics().open_duration == pytest.approx(expected)
    assert 5 <= a.metrics().open_duration <= 15


def test_an_operator_event_is_recorded_from_the_state_the_store_had(
    redis_stores: StoreFactory, clock: FakeClock
) -> None:
    """A member whose mirror is behind (closed) forces open a fleet that a tripped: its
    record goes from the store's state (open), not from its own stale one."""
    a, b = shared(redis_stores, clock, BreakerPolicy(failure_threshold=1))
    fail(a)
    assert (a.state, b.state) == ("open", "closed")  # b has not heard of the trip
    assert b.send("force_open", reason="maintenance") == "forced_open"
    assert [(r.event, r.source, r.target) for r in b.audit] == [
        ("force_open", "open", "forced_open")
    ]


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_retry_after_hint_lengthens_the_episode(
    redis_stores: StoreFactory, clock: FakeClock, mode: str
) -> None:
    """A number of seconds from is_failure is a floor for the open duration, capped."""
    policy = BreakerPolicy(failure_threshold=1, reset_timeout=1, max_reset_timeout=5)
    store = redis_stores(now=clock.monotonic, push=False)
    a = CircuitBreaker(
        "svc", policy, clock=clock, store=store, is_failure=lambda r: 7.0 if r == 503 else False
    )

    async def a503() -> int:
        return 503

    if mode == "sync":
        assert a.call(lambda: 503) == 503
    else:

        async def scenario() -> None:
            assert await a.acall(a503) == 503

        run_closing(store, scenario)
    assert (a.state, a.metrics().store_errors) == ("open", 0)
    assert a.metrics().open_duration == 5
    assert a.audit[0].generation == 1  # the store's trip


def test_half_open_timeout_retrips_on_the_next_admission(
    redis_stores: StoreFactory, clock: FakeClock
) -> None:
    """A trial that never decides is timed out by the next caller's acquire."""
    policy = BreakerPolicy(failure_threshold=1, reset_timeout=1, half_open_timeout=2)
    a, b = shared(redis_stores, clock, policy)
    fail(a)
    b.call(lambda: None)  # b learns the trip
    clock.advance(1)

    def hangs() -> str:
        clock.advance(2)
        refused(b)  # b's acquire retrips the stuck episode
        return "late"

    assert a.call(hangs) == "late"
    assert [r.event for r in b.audit] == ["retrip"]
    assert b.audit[0].reason == "half-open timed out after 2s; open for 1s"
    assert a.state == "open"  # its late outcome was not counted against the new episode
    assert verify(merged(a, b)) == 3


# ---------------------------------------------------------------------------- windows


def test_count_window_is_shared(redis_stores: StoreFactory, clock: FakeClock) -> None:
    """The count window's ring lives in Redis: outcomes of both clients, oldest evicted."""
    policy = BreakerPolicy(failure_threshold=None, window=CountWindow(size=4), minimum_calls=4)
    a, b = shared(redis_stores, clock, policy)
    for breaker in (a, b, a, b):
        breaker.call(lambda: "ok")
    assert b.metrics().window_calls == 4
    assert b.metrics().failure_rate == 0.0
    fail(a)
    assert a.metrics().failure_rate == 0.25
    fail(b)  # the ring now holds ok, ok, failed, failed
    assert b.state == "open"
    assert b.audit[0].reason == "failure rate 0.50 ≥ 0.5 over 4 calls; open for 30s"
    assert b.metrics().window_calls == 4  # while open the last window stays readable


def test_time_window_is_shared(redis_stores: StoreFactory, clock: FakeClock) -> None:
    """The time window's one-second buckets live in Redis and expire on the shared clock."""
    policy = BreakerPolicy(failure_threshold=None, window=TimeWindow(seconds=3), minimum_calls=2)
    a, b = shared(redis_stores, clock, policy)
    fail(a)  # second 0
    clock.advance(3.5)  # second 3: the whole window has passed
    b.call(lambda: "ok")
    assert b.metrics().window_calls == 1
    clock.advance(1)  # second 4
    b.call(lambda: "ok")
    clock.advance(1)  # second 5
    assert b.metrics().window_calls == 2
    fail(a)  # 1 failure in 3 calls
    assert a.metrics().failure_rate == pytest.approx(1 / 3)
    clock.advance(1)  # second 6: the bucket of second 3 expires
    fail(b)  # 2 failures in 3 calls
    assert b.state == "open"
    assert b.audit[0].counters["window_calls"] == 3
    assert b.audit[0].counters["window_failures"] == 2
    with pytest.raises(IllegalTransitionError, match="not allowed in state 'open'"):
        a.send("trip")


def test_slow_calls_are_judged_by_the_caller(redis_stores: StoreFactory, clock: FakeClock) -> None:
    """The caller times the call on its clock; the script counts it as slow."""
    policy = BreakerPolicy(
        failure_threshold=None,
        window=CountWindow(size=2),
        minimum_calls=2,
        slow_call_duration=1,
        slow_call_rate_threshold=1.0,
    )
    a, b = shared(redis_stores, clock, policy)

    def slow() -> str:
        clock.advance(1.5)
        return "slow"

    a.call(slow)
    b.call(slow)
    assert b.state == "open"
    assert b.audit[0].reason.startswith("slow-call rate 1.00 ≥ 1 over 2 calls")
    assert a.metrics().slow_call_count == b.metrics().slow_call_count == 1


# ---------------------------------------------------------------------------- operators


@MODES
def test_a_mirrored_override_is_asked_again_after_sync_interval(
    redis_stores: StoreFactory, clock: FakeClock, mode: str
) -> None:
    """call() and acall() trust a mirrored forced_open only until sync_interval has passed."""
    policy = BreakerPolicy(failure_threshold=2, reset_timeout=5)
    a = CircuitBreaker(
        "svc", policy, clock=clock, store=redis_stores(now=clock.monotonic, push=False)
    )
    store = redis_stores(now=clock.monotonic, push=False)
    b = CircuitBreaker("svc", policy, clock=clock, store=store)
    assert a.send("force_open") == "forced_open"
    assert b.call(lambda: "ran") == "ran"  # its mirror said closed; now it says forced_open
    assert a.send("reset") == "closed"

    async def scenario(invoke: Invoke) -> None:
        with pytest.raises(CircuitOpenError):
            await invoke(b, lambda: "never runs")  # the mirror is trusted for a while
        clock.advance(1)  # sync_interval: asked again
        assert await invoke(b, lambda: "runs") == "runs"

    through(mode, store, scenario)
    assert b.state == "closed"


def test_operator_events_apply_to_the_shared_state(
    redis_stores: StoreFactory, clock: FakeClock
) -> None:
    """send() runs on the shared state; other clients learn it on their next round trip."""
    a, b = shared(redis_stores, clock, BreakerPolicy(failure_threshold=2, reset_timeout=5))
    assert a.send("force_open", reason="maintenance") == "forced_open"
    assert a.audit[0].reason == "maintenance"
    assert b.call(lambda: "ran") == "ran"  # its mirror said closed
    assert b.state == "forced_open"
    assert refused(b).retry_after is None
    assert a.send("reset") == "closed"
    refused(b)  # b trusts its mirror of the override until sync_interval has passed
    clock.advance(1)
    assert b.call(lambda: "again") == "again"
    assert b.state == "closed"
    assert b.send("disable") == "disabled"
    with pytest.raises(IllegalTransitionError, match="not allowed in state 'disabled'"):
        a.send("force_open")
    assert a.state == "disabled"  # the refusal told a the shared state
    assert a.call(lambda: "runs") == "runs"  # disabled: runs, records nothing
    assert a.send("reset") == "closed"
    with pytest.raises(IllegalTransitionError, match="guard does not hold"):
        a.send("trip")
    with pytest.raises(IllegalTransitionError, match="unknown event"):
        a.send("explode")
    events = [r.event for r in merged(a, b)]
    assert events == ["force_open", "reset", "disable", "reset"]
    assert verify(merged(a, b)) == 4


def test_guarded_operator_events(redis_stores: StoreFactory, clock: FakeClock) -> None:
    """Guarded events sent by name obey the policy's guards on the shared counters."""
    lenient = BreakerPolicy(failure_threshold=5, reset_timeout=5)
    strict = BreakerPolicy(failure_threshold=2, reset_timeout=5)
    [a] = shared(redis_stores, clock, lenient, n=1)
    [b] = shared(redis_stores, clock, strict, n=1)
    fail(a)
    fail(a)
    assert b.send("trip") == "open"  # b's policy: 2 consecutive failures trip
    with pytest.raises(IllegalTransitionError, match="guard does not hold"):
        b.send("attempt_reset")
    clock.advance(5)
    assert b.send("attempt_reset") == "half_open"
    with pytest.raises(IllegalTransitionError, match="guard does not hold"):
        b.send("recover")
    with pytest.raises(IllegalTransitionError, match="guard does not hold"):
        b.send("retrip")
    with pytest.raises(IllegalTransitionError, match="not allowed in state 'half_open'"):
        b.send("trip")
    assert [r.event for r in b.audit] == ["trip", "attempt_reset"]


# ---------------------------------------------------------------------------- keys


def test_keys_expire_and_overrides_do_not(
    redis_server: RedisServer, redis_stores: StoreFactory, clock: FakeClock
) -> None:
    """Every write refreshes the keys' TTL (at least twice the open duration); overrides persist."""
    store = redis_stores(now=clock.monotonic, ttl=60)
    policy = BreakerPolicy(failure_threshold=1, reset_timeout=100, window=CountWindow(size=5))
    breaker = CircuitBreaker("svc", policy, clock=clock, store=store)
    state_key, window_key = store.keys("svc")
    assert (state_key, window_key) == ("breaker_fsm:{svc}", "breaker_fsm:{svc}:w")
    fail(breaker)
    with redis_server.client() as client:
        assert 199_000 < client.pttl(state_key) <= 200_000
        assert 199_000 < client.pttl(window_key) <= 200_000
        breaker.send("force_open")
        assert client.pttl(state_key) == -1  # the window may go: leaving needs a reset
        breaker.send("reset")
        assert 199_000 < client.pttl(state_key) <= 200_000
        default = CircuitBreaker("short", BreakerPolicy(), clock=clock, store=redis_stores())
        fail(default)
        assert 3_599_000 < client.pttl("breaker_fsm:{short}") <= 3_600_000


def test_namespaces_are_isolated(
    redis_server: RedisServer, redis_stores: StoreFactory, clock: FakeClock
) -> None:
    """Breakers of the same name in two namespaces share nothing."""
    policy = BreakerPolicy(failure_threshold=1)
    one = CircuitBreaker("svc", policy, clock=clock, store=redis_stores(namespace="one"))
    two = CircuitBreaker("svc", policy, clock=clock, store=redis_stores(namespace="two"))
    fail(one)
    assert two.call(lambda: "fine") == "fine"
    assert (one.state, two.state) == ("open", "closed")
    described = [redis_stores(namespace=ns).describe("svc") for ns in ("one", "two", "three")]
    assert [d and d["state"] for d in described] == [1, 0, None]  # open, closed, none
    with redis_server.client() as client:
        assert sorted(client.keys("*")) == [b"one:{svc}", b"two:{svc}"]


def test_a_lost_entry_is_recreated_from_the_mirror(
    redis_server: RedisServer, redis_stores: StoreFactory, clock: FakeClock
) -> None:
    """Keys that vanished (expiry, an empty restart) come back as the caller last saw them."""
    a, b = shared(redis_stores, clock, BreakerPolicy(failure_threshold=1, reset_timeout=5))
    fail(a)
    with redis_server.client() as client:
        assert client.delete(*redis_stores().keys("svc")) == 1
    clock.advance(5)
    assert a.call(lambda: "trial") == "trial"  # recreated open (gen 1), then reset, recovered
    assert [r.seq for r in a.audit] == [1, 2, 3]
    assert verify(a.audit) == 3
    assert b.call(lambda: "b") == "b"
    assert b.metrics().transitions == 3


# ---------------------------------------------------------------------------- round trips


@MODES
def test_round_trips_per_call(
    redis_server: RedisServer, redis_stores: StoreFactory, clock: FakeClock, mode: str
) -> None:
    """MONITOR, push on: 1 round trip per closed call, 0 while open, 2 for a half-open trial."""
    policy = BreakerPolicy(
        failure_threshold=2, reset_timeout=5, window=CountWindow(size=10), minimum_calls=10
    )
    store = redis_stores(now=clock.monotonic)
    breaker = CircuitBreaker("svc", policy, clock=clock, store=store)
    log = CommandLog(redis_server)

    async def scenario(invoke: Invoke) -> None:
        async def trips(*funcs: Callable[[], object]) -> int:
            log.begin()
            for func in funcs:
                with contextlib.suppress(Boom, CircuitOpenError):
                    await invoke(breaker, func)
            return log.round_trips()

        # Warm up: connect and load the scripts (a new server answers NOSCRIPT once).
        for func in (boom, boom, lambda: "trial"):
            with contextlib.suppress(Boom):
                await invoke(breaker, func)
            clock.advance(5)
        assert breaker.state == "closed"
        wait_live(breaker)  # subscribed, and the state read once for this member
        assert await trips(lambda: "ok") == 1
        assert await trips(*[lambda: "ok"] * 10) == 10
        assert await trips(boom) == 1
        assert await trips(boom) == 1  # this one trips
        assert breaker.state == "open"
        assert await trips(*[lambda: "never runs"] * 20) == 0
        clock.advance(5)
        assert await trips(lambda: "trial") == 2  # acquire + record
        assert breaker.state == "closed"
        assert await trips(lambda: "ok") == 1

    try:
        through(mode, store, scenario)
    finally:
        log.close()


# ---------------------------------------------------------------------------- degrading


def test_a_dead_server_degrades_to_local_state_then_converges(
    redis_server: RedisServer,
    redis_stores: StoreFactory,
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Killed: calls go on locally, one warning, counted, audited; restarted: shared again."""
    caplog.set_level(logging.WARNING, logger="breaker_fsm")
    a, b = shared(redis_stores, clock, BreakerPolicy(failure_threshold=3, reset_timeout=5))
    assert a.call(lambda: "up") == "up"
    b.call(lambda: "up")
    redis_server.kill()
    raised: list[type[BaseException]] = []
    for _ in range(6):
        try:
            a.call(boom)
        except Exception as exc:
            raised.append(type(exc))
    assert raised == [Boom] * 3 + [CircuitOpenError] * 3  # tripped on local state
    assert a.state == "open"
    metrics = a.metrics()
    assert metrics.degraded
    assert metrics.store_errors == 1  # then no retry before retry_interval
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "'svc': shared store unavailable (ConnectionError" in warnings[0].getMessage()
    [local] = a.audit
    assert (local.event, local.generation) == ("trip", None)
    assert local.reason.startswith("local (shared store unavailable): 3 consecutive failures")
    assert verify(a.audit) == 1
    clock.advance(1)
    refused(a)  # still open locally; a retry is due but an open breaker rejects locally
    assert b.call(lambda: "b") == "b"  # b's record fails: b degrades too
    assert b.metrics().degraded
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 2  # a, b

    redis_server.restart()  # empty
    clock.advance(4)
    # acquire (or a's re-read) recreates the entry from a's open episode, made alone: it
    # is over, so the call is the trial that recovers (generations 1 and 2)
    assert a.call(lambda: "back") == "back"
    assert not a.metrics().degraded
    assert a.state == "closed"
    assert [(r.event, r.generation) for r in list(a.audit)[1:]] == [
        ("attempt_reset", 1),
        ("recover", 2),
    ]
    assert b.call(lambda: "back") == "back"
    assert not b.metrics().degraded
    fail(a)
    fail(b)
    fail(a)
    assert a.state == "open"
    b.call(lambda: None)
    assert b.state == "open"  # converged: one shared breaker again
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 2
    assert a.audit[-1].generation == 3
    assert verify(a.audit) == 4


def test_a_hung_server_times_out_and_degrades(
    redis_server: RedisServer, redis_stores: StoreFactory, clock: FakeClock
) -> None:
    """A server that stops answering costs one timeout, then calls run locally."""
    policy = BreakerPolicy(failure_threshold=2)
    [breaker] = shared(redis_stores, clock, policy, n=1, store_options={"timeout": 0.25})
    breaker.call(lambda: "warm")
    pid = redis_server.pid
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        assert breaker.call(lambda: "slow store") == "slow store"
        assert [breaker.call(lambda: "local") for _ in range(100)] == ["local"] * 100
        assert time.monotonic() - started < 2.0
    finally:
        os.kill(pid, signal.SIGCONT)
    assert breaker.metrics().degraded
    assert breaker.metrics().store_errors == 1
    clock.advance(1)
    breaker.call(lambda: "resynced")
    assert not breaker.metrics().degraded


def test_operator_event_while_degraded_is_local(
    redis_server: RedisServer,
    redis_stores: StoreFactory,
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """send() without Redis changes this process only, says so, and Redis wins afterwards."""
    [a] = shared(redis_stores, clock, BreakerPolicy(failure_threshold=2), n=1)
    a.call(lambda: None)
    redis_server.kill()
    assert a.send("force_open") == "forced_open"
    assert "applied to this process's state only" in caplog.text
    assert a.audit[0].generation is None
    assert a.send("reset") == "closed"  # before retry_interval: local, no round trip
    assert a.metrics().store_errors == 1
    redis_server.restart()
    clock.advance(1)
    assert a.send("disable") == "disabled"  # shared again
    assert a.audit[-1].generation == 1
    assert verify(a.audit) == 3


def test_an_open_breaker_whose_server_died_recovers_locally(
    redis_server: RedisServer, redis_stores: StoreFactory, clock: FakeClock
) -> None:
    """Past its deadline with Redis gone, the acquire fails and the local rules take over."""
    [a] = shared(redis_stores, clock, BreakerPolicy(failure_threshold=1, reset_timeout=5), n=1)
    fail(a)
    redis_server.kill()
    clock.advance(5)
    assert a.call(lambda: "trial") == "trial"  # attempt_reset and recover, locally
    assert a.state == "closed"
    assert [(r.event, r.generation) for r in a.audit] == [
        ("trip", 1),
        ("attempt_reset", None),
        ("recover", None),
    ]
    assert [r.seq for r in a.audit] == [1, 2, 3]
    assert verify(a.audit) == 3
    assert a.metrics().store_errors == 1


def test_predicate_errors_are_neutral(redis_stores: StoreFactory, clock: FakeClock) -> None:
    """An is_failure predicate that raises makes the call neutral: logged, counted, no trip."""

    def predicate(result: object) -> bool:
        raise RuntimeError("bad predicate")

    [a] = shared(redis_stores, clock, BreakerPolicy(failure_threshold=1), n=1, is_failure=predicate)
    assert a.call(lambda: "value") == "value"
    assert a.state == "closed"
    assert (a.metrics().ignored_count, a.metrics().sink_errors) == (1, 1)
    [b] = shared(redis_stores, clock, BreakerPolicy(failure_threshold=2), n=1, is_failure=bool)
    assert b.call(lambda: 0) == 0  # falsy: a success
    assert b.call(lambda: "error") == "error"  # True: a failure
    assert b.metrics().failure_count == 1


def linked(redis_stores: StoreFactory, clock: FakeClock) -> tuple[CircuitBreaker, Any]:
    """A shared breaker (trips on one failure) that has made a call, and its link to the store.

    Tests that hand replies to ``_on_reply`` in an order of their choosing drive the link.
    """
    [a] = shared(redis_stores, clock, BreakerPolicy(failure_threshold=1), n=1)
    a.call(lambda: None)
    link = a._link
    assert link is not None
    return a, link


def test_an_overtaken_reply_never_rolls_the_mirror_back(
    redis_stores: StoreFactory, clock: FakeClock
) -> None:
    """Replies handled out of order (two threads): older ones are recorded, never mirrored."""
    a, link = linked(redis_stores, clock)
    seed = a._seed(link, 0.0)
    closed = link.entry.acquire(0.0, seed)  # gen 0
    forced = link.entry.operator(EVENT_CODES["force_open"], 0.0, seed)  # gen 1, by "thread 1"
    reset = link.entry.operator(EVENT_CODES["reset"], 0.0, seed)  # gen 2, by "thread 2"
    a._on_reply(link, reset, 0.0)  # thread 2 is handled first
    a._on_reply(link, forced, 0.0)
    a._on_reply(link, closed, 0.0)
    assert (a.state, a.metrics().transitions) == ("closed", 2)
    assert [r.seq for r in a.audit] == [2, 1]  # both recorded; sorted, they verify
    assert verify(sorted(a.audit, key=lambda r: r.seq)) == 2
    assert a.machine.current_state_value == "closed"


# ---------------------------------------------------------------------------- twin paths


@pytest.mark.parametrize("path", ["sync-acquire", "sync-record", "async-acquire", "async-record"])
def test_the_outage_warning_names_the_error_of_the_failed_round_trip(
    redis_server: RedisServer,
    redis_stores: StoreFactory,
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
    path: str,
) -> None:
    """Whichever round trip meets the outage first, the one warning names the error it raised."""
    mode, round_trip = path.split("-")
    caplog.set_level(logging.WARNING, logger="breaker_fsm")
    store = redis_stores(now=clock.monotonic, push=False)
    policy = BreakerPolicy(failure_threshold=1, reset_timeout=5)
    breaker = CircuitBreaker("svc", policy, clock=clock, store=store)

    async def scenario(invoke: Invoke) -> None:
        assert await invoke(breaker, lambda: "up") == "up"
        if round_trip == "acquire":
            with pytest.raises(ConnectionError):
                await invoke(breaker, boom)  # trips
            clock.advance(5)  # the mirror's episode is over: the next call asks the store
        redis_server.kill()
        assert await invoke(breaker, lambda: "local") == "local"

    through(mode, store, scenario)
    [record] = [r for r in caplog.records if r.levelno == logging.WARNING]
    error = record.args[2]  # type: ignore[index]  # the round trip's own exception
    assert isinstance(error, redis.exceptions.ConnectionError)
    assert record.getMessage() == (
        f"breaker 'svc': shared store unavailable (ConnectionError: {error}); "
        "running on local state, retrying every 1s"
    )
    assert (breaker.state, breaker.metrics().store_errors) == ("closed", 1)


@MODES
def test_local_outcomes_keep_their_duration_and_hint(
    dead_redis_store: RedisStore, clock: FakeClock, mode: str
) -> None:
    """Degraded, each outcome is timed from its own start and keeps its retry-after hint."""
    policy = BreakerPolicy(
        failure_threshold=2,
        reset_timeout=1,
        max_reset_timeout=5,
        window=CountWindow(size=10),
        slow_call_duration=1,
    )
    breaker = CircuitBreaker(
        "svc",
        policy,
        clock=clock,
        store=dead_redis_store,
        is_failure=lambda r: 7.0 if r == 503 else False,
    )

    def slow(fails: bool) -> str:
        clock.advance(1.5)
        if fails:
            raise ConnectionError("slow, and failed")
        return "slow"

    async def scenario(invoke: Invoke) -> None:
        assert await invoke(breaker, lambda: "ok") == "ok"  # its record is refused: degraded
        assert await invoke(breaker, slow, False) == "slow"  # local from here on
        with pytest.raises(ConnectionError):
            await invoke(breaker, slow, True)
        assert await invoke(breaker, lambda: 503) == 503  # the second failure trips

    through(mode, dead_redis_store, scenario)
    metrics = breaker.metrics()
    assert (metrics.state, metrics.degraded, metrics.store_errors) == ("open", True, 1)
    assert (metrics.slow_call_count, metrics.success_count, metrics.error_count) == (2, 2, 2)
    assert metrics.open_duration == 5  # the 7 s hint, capped by max_reset_timeout


@MODES
def test_a_refused_shared_call_hands_its_arguments_to_the_fallback(
    redis_stores: StoreFactory, clock: FakeClock, mode: str
) -> None:
    """Forced open, call and acall answer with fallback(*args, **kwargs), counted as refused."""
    store = redis_stores(now=clock.monotonic, push=False)
    breaker = CircuitBreaker(
        "svc",
        BreakerPolicy(failure_threshold=1),
        clock=clock,
        store=store,
        fallback=lambda *args, **kwargs: ("fallback", args, kwargs),
    )

    async def scenario(invoke: Invoke) -> None:
        assert breaker.send("force_open") == "forced_open"  # refused by the shared path
        answer = await invoke(breaker, lambda *a, **k: "never runs", 1, 2, k="v")
        assert answer == ("fallback", (1, 2), {"k": "v"})

    through(mode, store, scenario)
    assert (breaker.state, breaker.metrics().rejected_count) == ("forced_open", 1)


@MODES
def test_a_record_that_finds_the_entry_gone_recreates_the_open_episode(
    redis_server: RedisServer, redis_stores: StoreFactory, clock: FakeClock, mode: str
) -> None:
    """A late outcome recorded after its breaker tripped recreates a lost entry, time left kept."""
    store = redis_stores(now=clock.monotonic, push=False)
    policy = BreakerPolicy(failure_threshold=1, reset_timeout=5)
    breaker = CircuitBreaker("svc", policy, clock=clock, store=store)

    def lose_the_entry() -> str:
        clock.advance(1)  # 4 s of the episode left
        with redis_server.client() as client:
            assert client.delete(*store.keys("svc")) == 1
        return "late"

    if mode == "sync":

        def outer() -> str:
            fail(breaker)  # trips: the mirror is open while the outer call is in flight
            return lose_the_entry()

        assert breaker.call(outer) == "late"
    else:

        async def aouter() -> str:
            with pytest.raises(ConnectionError):
                await breaker.acall(aboom)
            return lose_the_entry()

        async def scenario() -> None:
            assert await breaker.acall(aouter) == "late"

        run_closing(store, scenario)
    metrics = breaker.metrics()
    assert (metrics.state, metrics.degraded, metrics.store_errors) == ("open", False, 0)
    assert metrics.retry_after == pytest.approx(4.0)
    described = store.describe("svc")
    assert described is not None
    assert described["state"] == 1  # recreated open


@MODES
def test_a_success_that_trips_the_window_opens_for_reset_timeout(
    redis_stores: StoreFactory, clock: FakeClock, mode: str
) -> None:
    """A success that brings a failing window to minimum_calls trips it, for reset_timeout."""
    policy = BreakerPolicy(
        failure_threshold=None, reset_timeout=5, window=CountWindow(size=2), minimum_calls=2
    )
    store = redis_stores(now=clock.monotonic, push=False)
    breaker = CircuitBreaker("svc", policy, clock=clock, store=store)

    async def scenario(invoke: Invoke) -> None:
        with pytest.raises(ConnectionError):
            await invoke(breaker, boom)
        assert await invoke(breaker, lambda: "ok") == "ok"

    through(mode, store, scenario)
    assert (breaker.state, breaker.metrics().open_duration) == ("open", 5)
    assert breaker.audit[0].reason == "failure rate 0.50 ≥ 0.5 over 2 calls; open for 5s"


@MODES
def test_an_admission_that_retrips_a_timed_out_trial_draws_jitter(
    redis_stores: StoreFactory, clock: FakeClock, mode: str
) -> None:
    """The acquire that finds a half-open episode timed out retrips for a jittered duration."""
    policy = BreakerPolicy(
        failure_threshold=1,
        reset_timeout=4,
        reset_timeout_jitter=0.5,
        half_open_timeout=2,
        half_open_max_calls=2,
        success_threshold=2,
    )
    store = redis_stores(now=clock.monotonic, push=False)
    breaker = CircuitBreaker("svc", policy, clock=clock, store=store, rng=random.Random(11))

    async def scenario(invoke: Invoke) -> None:
        with pytest.raises(ConnectionError):
            await invoke(breaker, boom)  # trips: the first draw
        clock.advance(4)
        assert await invoke(breaker, lambda: "trial") == "trial"  # the acquire: the second
        clock.advance(2)  # half_open_timeout, one success short of recovering
        with pytest.raises(CircuitOpenError):
            await invoke(breaker, lambda: "never runs")  # the acquire retrips: the third

    through(mode, store, scenario)
    twin = random.Random(11)
    draws = [twin.uniform(-0.5, 0.5) for _ in range(3)]
    assert [r.event for r in breaker.audit] == ["trip", "attempt_reset", "retrip"]
    assert breaker.metrics().open_duration == pytest.approx(4 * (1 + draws[2]))


@MODES
def test_a_success_that_trips_the_window_draws_jitter(
    redis_stores: StoreFactory, clock: FakeClock, mode: str
) -> None:
    """A success that trips a shared window opens for a jittered duration, as in memory."""
    policy = BreakerPolicy(
        failure_threshold=None,
        reset_timeout=5,
        reset_timeout_jitter=0.5,
        window=CountWindow(size=2),
        minimum_calls=2,
    )
    store = redis_stores(now=clock.monotonic, push=False)
    breaker = CircuitBreaker("svc", policy, clock=clock, store=store, rng=random.Random(7))

    async def scenario(invoke: Invoke) -> None:
        with pytest.raises(ConnectionError):
            await invoke(breaker, boom)  # could open: draws the first u
        assert await invoke(breaker, lambda: "ok") == "ok"  # trips: draws the second

    through(mode, store, scenario)
    twin = random.Random(7)
    twin.uniform(-0.5, 0.5)
    expected = 5 * (1 + twin.uniform(-0.5, 0.5))
    assert breaker.state == "open"
    assert breaker.metrics().open_duration == pytest.approx(expected)
    assert expected != pytest.approx(5)


def test_the_failure_streak_is_the_fleets_one_members_success_ends_anothers(
    redis_stores: StoreFactory, clock: FakeClock
) -> None:
    """One streak per breaker name: b's success between a's failures resets a's count."""
    a, b = shared(redis_stores, clock, BreakerPolicy(failure_threshold=3))
    for _ in range(2):
        with pytest.raises(ConnectionError):
            a.call(boom)
    assert b.call(lambda: "ok") == "ok"  # the shared streak: 2 → 0
    with pytest.raises(ConnectionError):
        a.call(boom)  # 1, not 3: no trip
    assert (a.state, a.metrics().failure_count) == ("closed", 1)
    for _ in range(2):
        with pytest.raises(ConnectionError):
            b.call(boom)  # b's failures count on with a's: 2, 3 → the fleet trips
    assert b.state == "open"
    assert [r.reason for r in b.audit] == ["3 consecutive failures ≥ 3; open for 30s"]


@MODES
def test_an_empty_reply_clears_a_stale_streak(
    redis_stores: StoreFactory, clock: FakeClock, mode: str
) -> None:
    """A success the store answers with nothing (its streak was already 0) clears the mirror's."""
    store = redis_stores(now=clock.monotonic, push=False)
    policy = BreakerPolicy(failure_threshold=3)
    a = CircuitBreaker("svc", policy, clock=clock, store=store)
    [b] = shared(redis_stores, clock, policy, n=1)

    async def scenario(invoke: Invoke) -> None:
        with pytest.raises(ConnectionError):
            await invoke(a, boom)
        b.call(lambda: "ok")  # resets the shared streak; a's mirror still says 1
        assert a.metrics().failure_count == 1
        assert await invoke(a, lambda: "ok") == "ok"  # nothing to change: the empty reply

    through(mode, store, scenario)
    metrics = a.metrics()
    assert (metrics.failure_count, metrics.success_count, metrics.error_count) == (0, 1, 1)


@MODES
def test_an_empty_reply_after_an_outage_resyncs(
    redis_server: RedisServer,
    redis_stores: StoreFactory,
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
    mode: str,
) -> None:
    """The first answer after an outage may be the empty reply to a success: it resyncs too."""
    caplog.set_level(logging.INFO, logger="breaker_fsm")
    store = redis_stores(now=clock.monotonic, push=False)
    breaker = CircuitBreaker("svc", BreakerPolicy(failure_threshold=3), clock=clock, store=store)

    async def scenario(invoke: Invoke) -> None:
        fail(breaker)
        assert await invoke(breaker, lambda: "up") == "up"  # shared streak back to 0
        with redis_server.client() as client:
            client.save()  # the restarted server loads the same entry
        redis_server.kill()
        assert await invoke(breaker, lambda: "local") == "local"  # refused record: degraded
        redis_server.restart()
        clock.advance(1)  # retry_interval
        assert await invoke(breaker, lambda: "back") == "back"  # changes nothing: empty reply

    through(mode, store, scenario)
    metrics = breaker.metrics()
    assert (metrics.degraded, metrics.store_errors, metrics.success_count) == (False, 1, 3)
    assert caplog.records[-1].getMessage() == (
        "breaker 'svc': shared store answers again; back on shared state"
    )


@MODES
def test_an_outage_mid_trial_leaves_the_local_permits_to_this_process(
    redis_server: RedisServer, redis_stores: StoreFactory, clock: FakeClock, mode: str
) -> None:
    """The store dies during its only trial: the local half-open admits this process's own one."""
    store = redis_stores(now=clock.monotonic, push=False)
    policy = BreakerPolicy(failure_threshold=1, reset_timeout=1)
    breaker = CircuitBreaker("svc", policy, clock=clock, store=store)
    fail(breaker)
    clock.advance(1)
    if mode == "sync":

        def trial() -> str:
            redis_server.kill()
            return breaker.call(lambda: "local trial")  # its acquire fails: local rules

        assert breaker.call(trial) == "local trial"  # the store's permit
    else:

        async def atrial() -> str:
            redis_server.kill()
            return await breaker.acall(aok)

        async def scenario() -> None:
            assert await breaker.acall(atrial) == "ok"

        run_closing(store, scenario)
    assert (breaker.state, breaker.metrics().store_errors) == ("closed", 1)
    assert [(r.event, r.generation) for r in breaker.audit] == [
        ("trip", 1),
        ("attempt_reset", 2),
        ("recover", None),
    ]


@MODES
def test_a_learnt_episode_ends_on_time_on_a_clock_of_another_origin(
    redis_stores: StoreFactory, clock: FakeClock, mode: str
) -> None:
    """A process whose monotonic clock has its own origin ends a learnt episode on time."""
    policy = BreakerPolicy(failure_threshold=1, reset_timeout=5)
    [b] = shared(redis_stores, clock, policy, n=1)  # b and the scripts on one clock
    clock.advance(100)
    fail(b)  # trips at 100
    clock.advance(3)
    own = FakeClock()  # a's monotonic clock starts at 0: the episode began at -3 on it
    store = redis_stores(now=clock.monotonic, push=False)
    a = CircuitBreaker("svc", policy, clock=own, store=store)

    async def scenario(invoke: Invoke) -> None:
        assert await invoke(a, lambda: "ran") == "ran"  # its reply tells a: 3 s into the episode
        assert a.state == "open"
        assert a.metrics().retry_after == pytest.approx(2.0)
        clock.advance(2)
        own.advance(2)
        assert await invoke(a, lambda: "trial") == "trial"

    through(mode, store, scenario)
    assert a.state == "closed"
    assert [(r.event, r.generation) for r in a.audit] == [("attempt_reset", 2), ("recover", 3)]


def test_a_transition_the_mirror_already_follows_is_only_recorded(
    redis_stores: StoreFactory, clock: FakeClock
) -> None:
    """A transition's reply handled after a reply of its own generation is not replayed."""
    a, link = linked(redis_stores, clock)
    seen: list[str] = []

    class Listener:
        def after_transition(self, event: str) -> None:
            seen.append(str(event))

    a.machine.add_listener(Listener())  # type: ignore[no-untyped-call]
    seed = a._seed(link, 0.0)
    forced = link.entry.operator(EVENT_CODES["force_open"], 0.0, seed)  # gen 1, by "thread 1"
    later = link.entry.acquire(0.0, seed)  # gen 1 too, refused: by "thread 2"
    assert (forced.gen, later.gen, later.event) == (1, 1, 0)
    a._on_reply(link, later, 0.0)  # thread 2 is handled first: the mirror is forced_open
    a._on_reply(link, forced, 0.0)
    assert seen == []  # the machine already was where the transition leads
    assert [(r.seq, r.event, r.generation) for r in a.audit] == [(1, "force_open", 1)]
    assert a.state == a.machine.current_state_value == "forced_open"


# ---------------------------------------------------------------------------- asyncio


def test_acall_uses_the_asyncio_client(
    redis_server: RedisServer, redis_stores: StoreFactory, clock: FakeClock
) -> None:
    """acall's round trips go through redis.asyncio: the sync client is never built."""
    store = redis_stores(now=clock.monotonic, push=False)
    [other] = shared(redis_stores, clock, BreakerPolicy(failure_threshold=2, reset_timeout=5), n=1)
    breaker = CircuitBreaker("svc", other.policy, clock=clock, store=store)

    async def scenario() -> None:
        assert await breaker.acall(aok) == "ok"
        for _ in range(2):
            with pytest.raises(ConnectionError):
                await breaker.acall(aboom)
        assert breaker.state == "open"
        with pytest.raises(CircuitOpenError):
            await breaker.acall(aok)
        clock.advance(5)
        assert await breaker.acall(aok) == "ok"
        assert breaker.state == "closed"
        redis_server.reset_stats()
        assert await breaker.acall(aok) == "ok"
        assert redis_server.commandstats()["evalsha"] == 1
        task = asyncio.ensure_future(breaker.acall(asyncio.sleep, 10))
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert breaker.metrics().ignored_count == 1

    run_closing(store, scenario)
    assert store._clients._sync is None  # no blocking client was ever used
    assert [r.event for r in breaker.audit] == ["trip", "attempt_reset", "recover"]
    assert other.call(lambda: "sync") == "sync"
    assert other.metrics().transitions == 3


def test_acall_degrades_and_resyncs(
    redis_server: RedisServer, redis_stores: StoreFactory, clock: FakeClock
) -> None:
    """acall on a dead server runs locally (no exception from Redis), then resyncs."""
    store = redis_stores(now=clock.monotonic, push=False)
    policy = BreakerPolicy(failure_threshold=1, reset_timeout=1)
    breaker = CircuitBreaker("svc", policy, clock=clock, store=store)

    async def scenario() -> None:
        assert await breaker.acall(aok) == "ok"
        redis_server.kill()
        assert await breaker.acall(aok) == "ok"  # its record fails: degraded
        assert await breaker.acall(aok) == "ok"  # local, no round trip
        with pytest.raises(ConnectionError):
            await breaker.acall(aboom)
        assert breaker.state == "open"
        assert breaker.metrics().store_errors == 1
        assert breaker.metrics().degraded
        redis_server.restart()
        clock.advance(1)
        # acquire recreates the entry from the local open episode (over: a trial, recovered)
        assert await breaker.acall(aok) == "ok"
        assert not breaker.metrics().degraded
        fail_task = breaker.acall(aboom)
        with pytest.raises(ConnectionError):
            await fail_task
        assert breaker.state == "open"
        clock.advance(1)
        assert await breaker.acall(aok) == "ok"
        assert breaker.state == "closed"

    run_closing(store, scenario)
    assert [r.generation for r in breaker.audit] == [None, 1, 2, 3, 4, 5]
    assert verify(breaker.audit) == 6


def test_acall_refusals_overrides_and_lost_acquires(
    redis_server: RedisServer, redis_stores: StoreFactory, clock: FakeClock
) -> None:
    """acall: a full half-open episode refuses, disabled runs, a failed acquire goes local."""
    store, store2 = (
        redis_stores(now=clock.monotonic, push=False),
        redis_stores(now=clock.monotonic, push=False),
    )
    policy = BreakerPolicy(failure_threshold=1, reset_timeout=1)

    async def fallback() -> str:
        return "fallback"

    breaker = CircuitBreaker("svc", policy, clock=clock, store=store)
    breaker2 = CircuitBreaker("svc", policy, clock=clock, store=store2, fallback=fallback)
    [other] = shared(redis_stores, clock, policy, n=1)

    async def scenario() -> None:
        with pytest.raises(ConnectionError):
            await breaker.acall(aboom)
        assert await breaker2.acall(aok) == "ok"  # learns the trip
        clock.advance(1)

        async def trial() -> str:
            return str(await breaker2.acall(aok))  # the only permit is taken: refused

        assert await breaker.acall(trial) == "fallback"
        assert breaker.state == "closed"
        other.send("disable")
        assert await breaker.acall(aok) == "ok"  # learns the override
        assert breaker.state == "disabled"
        with pytest.raises(ConnectionError):
            await breaker.acall(aboom)  # disabled: runs, records nothing
        other.send("reset")
        fail(other)  # shared: open
        clock.advance(1)  # breaker's mirror of the override is due a check...
        redis_server.kill()  # ...which fails: the local rules decide (disabled: runs)
        assert await breaker.acall(aok) == "ok"
        assert breaker.metrics().degraded

    async def run_both() -> None:
        try:
            await scenario()
        finally:
            await store2.aclose()

    run_closing(store, run_both)
    assert [r.event for r in breaker.audit] == ["trip", "attempt_reset", "recover"]


def test_clients_are_derived_from_the_other_kind(
    redis_server: RedisServer, clock: FakeClock
) -> None:
    """A sync client gives acall a derived asyncio client, and the other way round."""
    import redis.asyncio

    from breaker_fsm.redis import RedisStore

    policy = BreakerPolicy(failure_threshold=1)
    with redis_server.client(socket_timeout=1.0) as sync_client:
        store = RedisStore(sync_client, now=clock.monotonic)
        breaker = CircuitBreaker("derived", policy, clock=clock, store=store)

        async def scenario() -> None:
            with pytest.raises(ConnectionError):
                await breaker.acall(aboom)

        run_closing(store, scenario)
        assert breaker.state == "open"
        store.close()  # the client was passed in: it stays open
        assert sync_client.ping()

    async def from_async() -> None:
        client = redis.asyncio.Redis(host=redis_server.host, port=redis_server.port)
        store = RedisStore(client, now=clock.monotonic, timeout=2.0)
        try:
            breaker = CircuitBreaker("derived", policy, clock=clock, store=store)
            with pytest.raises(CircuitOpenError):  # a new member asks first: refused
                breaker.call(lambda: "never runs")  # on the derived sync client
            assert breaker.state == "open"  # learned the shared state
            with pytest.raises(CircuitOpenError):
                await breaker.acall(aok)
        finally:
            store.close()
            await client.aclose()

    asyncio.run(from_async())


# ---------------------------------------------------------------------------- misc


def test_real_server_time_ends_the_episode(redis_stores: StoreFactory) -> None:
    """Without a pinned time the scripts use the server's TIME: a 50 ms episode ends."""
    store = redis_stores()
    breaker = CircuitBreaker(
        "svc", BreakerPolicy(failure_threshold=1, reset_timeout=0.05), store=store
    )
    fail(breaker)
    assert breaker.state == "open"
    deadline = time.monotonic() + 10
    while breaker.state == "open":
        with contextlib.suppress(CircuitOpenError):
            breaker.call(lambda: "trial")
        assert time.monotonic() < deadline
        time.sleep(0.005)  # polling the real clock: this test is about real time
    assert breaker.state == "closed"
    assert [r.event for r in breaker.audit] == ["trip", "attempt_reset", "recover"]


def test_registry_passes_the_store_on(redis_stores: StoreFactory, clock: FakeClock) -> None:
    """Breakers a registry creates share their state through the registry's store."""
    policy = BreakerPolicy(failure_threshold=1)
    one = BreakerRegistry(policy, clock=clock, store=redis_stores(now=clock.monotonic))
    two = BreakerRegistry(policy, clock=clock, store=redis_stores(now=clock.monotonic))
    fail(one.get("users-api"))
    refused(two.get("users-api"))  # a new member reads the shared state first
    assert two.get("users-api").state == "open"
    assert one.transition_counts()["users-api"]["trip"] == 1


def test_wait_without_a_replica_says_so_and_blocks_each_transition(
    redis_stores: Any, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """No replica attached: each transition's WAIT answers 0 after wait_timeout, and says so."""
    caplog.set_level(logging.WARNING, logger="breaker_fsm")
    store = redis_stores(now=clock.monotonic, wait_replicas=1, timeout=2.0, wait_timeout=0.2)
    breaker = CircuitBreaker("svc", BreakerPolicy(), clock=clock, store=store)
    started = time.monotonic()
    assert breaker.send("force_open") == "forced_open"
    assert time.monotonic() - started >= 0.2  # the WAIT blocked for its whole timeout
    assert store.unconfirmed == 1
    assert "not confirmed by 1 replica(s) within 0.2s (0 replica(s) acknowledged)" in caplog.text


def test_a_wait_that_outlasts_the_socket_timeout_is_explained(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A WAIT timed out by the socket (Redis answers it on a cron tick): the real cause."""
    from redis.exceptions import TimeoutError as RedisTimeout

    from breaker_fsm.redis import RedisStore

    store = RedisStore("redis://127.0.0.1:1/0", push=False, wait_replicas=1)
    assert store._replicas is not None
    store._replicas._unconfirmed(b"breaker_fsm:{svc}", RedisTimeout("Timeout reading from socket"))
    assert "no answer to WAIT within the store's timeout of 0.05s" in caplog.text
    assert "fewer than 1 replica(s) acknowledged" in caplog.text
    assert "cron tick" in caplog.text


def test_a_store_names_what_it_was_given_in_a_few_words() -> None:
    """The repr (and so every warning) never embeds a client's repr, its whole pool."""
    from redis.asyncio.cluster import RedisCluster
    from redis.sentinel import Sentinel

    from breaker_fsm.redis import RedisStore

    sentinel = Sentinel([("127.0.0.1", 1), ("127.0.0.1", 2)], socket_timeout=0.1)
    cases = {
        "redis://:pw@127.0.0.1:1/0": "redis://:***@127.0.0.1:1/0",
        redis.Redis(host="127.0.0.1", port=1, db=3): "127.0.0.1:1/3",
        redis.Redis(unix_socket_path="/tmp/r.sock"): "unix:/tmp/r.sock/0",
        sentinel: "sentinel 127.0.0.1:1,127.0.0.1:2/mymaster",
        sentinel.master_for("mymaster"): "sentinel 127.0.0.1:1,127.0.0.1:2/mymaster",
        RedisCluster(host="127.0.0.1", port=1): "cluster 127.0.0.1:1",
    }
    for client, shown in cases.items():
        store = RedisStore(client, service_name="mymaster" if client is sentinel else None)
        assert repr(store) == f"RedisStore({shown}, namespace='breaker_fsm')"


def test_describe_names_the_state_and_spells_the_fingerprint_as_the_warnings_do(
    redis_stores: Any, clock: FakeClock
) -> None:
    from breaker_fsm._lua import fingerprint

    policy = BreakerPolicy()
    breaker = CircuitBreaker("svc", policy, clock=clock, store=redis_stores(now=clock.monotonic))
    assert breaker.send("force_open") == "forced_open"
    described = redis_stores().describe("svc")
    assert described is not None
    assert (described["state"], described["state_name"]) == (3, "forced_open")
    assert described["fingerprint_hex"] == f"{fingerprint(policy):012x}"


def test_store_arguments_are_checked() -> None:
    """Wrong clients and non-positive settings are refused with a clear error."""
    from breaker_fsm._store import SharedStore
    from breaker_fsm.redis import RedisStore

    with pytest.raises(TypeError, match="redis:// URL"):
        RedisStore(42)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="timeout must be > 0"):
        RedisStore("redis://127.0.0.1:1/0", timeout=0)
    with pytest.raises(ValueError, match="namespace"):
        RedisStore("redis://127.0.0.1:1/0", namespace="")
    store = RedisStore("redis://127.0.0.1:1/0")
    assert isinstance(store, SharedStore)
    assert "namespace='breaker_fsm'" in repr(store)


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("", "needs a URL"),
        ("   ", "needs a URL"),
        ("http://127.0.0.1:21379", "scheme must be one of"),
        ("127.0.0.1:6379", "scheme must be one of"),
        ("redis://127.0.0.1:notaport/0", "port 'notaport' is not a number"),
        ("redis://127.0.0.1:0/0", "port '0' is not a number from 1 to 65535"),
        ("redis://:pw@127.0.0.1:70000/0", "port '70000'"),
        ("redis://127.0.0.1:6379/zero", "database 'zero' is not a number"),
        ("redis://", "no host"),
        ("rediss://:6379/0", "no host"),
        ("unix://", "socket's path"),
        ("redis+cluster://", "no host"),
        ("redis+cluster://127.0.0.1:7000,:7001", "no host in ':7001'"),
        ("redis+cluster://127.0.0.1:7000,127.0.0.1:x", "port 'x'"),
        ("redis+sentinel:///mymaster", "no host"),
        ("redis+sentinel://[::1]x/mymaster", "is not host:port"),
        ("redis+sentinel://127.0.0.1:1/mymaster/x", "the database 'x' is not a number"),
        ("redis+sentinel://127.0.0.1:1/mymaster/-1", "the database '-1' is not a number"),
        ("redis+sentinel://127.0.0.1:1/mymaster/0/extra", "only a database may follow"),
        ("redis+sentinel://127.0.0.1:1/0", "'0' would be the service's name, but looks like a"),
        ("redis+sentinel://:pw@127.0.0.1:1/", "names its service (.../SERVICE[/DB])"),
        ("redis+cluster://:pw@127.0.0.1:7000/1", "a Redis Cluster has only database 0"),
        ("redis://127.0.0.1:46019,127.0.0.1:54473", "for a Redis Cluster's nodes use redis+"),
        ("rediss://:pw@a:1,b:2/0", "names one server, not several ('a:1,b:2')"),
        ("redis://127.0.0.1:6379/0?bogus=1", "unknown query option 'bogus': redis-py would"),
        ("unix:///tmp/r.sock?db=1&bogus=1&nope=2", "unknown query options 'bogus', 'nope'"),
        ("rediss://127.0.0.1:6379/0?ssl_cert_reqs=none&sockettimeout=1", "'sockettimeout'"),
        ("redis://127.0.0.1:6379/0?db=x", "Invalid value for 'db'"),
        ("redis://127.0.0.1:6379/0?socket_timeout=fast", "Invalid value for 'socket_timeout'"),
        ("redis+cluster://127.0.0.1:7000?bogus=1", "takes no query options, got 'bogus'"),
        (
            "redis+sentinel://127.0.0.1:1/mymaster?socket_timeout=1",
            "takes no query options, got 'socket_timeout': build a Sentinel client",
        ),
    ],
)
def test_a_malformed_url_is_refused_at_construction(url: str, problem: str) -> None:
    """What redis-py would take and fail on (or re-aim at localhost) later is refused now."""
    from breaker_fsm.redis import RedisStore

    with pytest.raises(ValueError, match=re.escape(problem)) as info:
        RedisStore(url, push=False)
    assert "pw" not in str(info.value)  # the password is masked
    if url.strip():
        assert "RedisStore URL" in str(info.value)


@pytest.mark.parametrize(
    "url",
    [
        "redis://localhost",
        "redis://127.0.0.1:6379",
        "redis://user:pw@cache:6379/2",
        "rediss://[::1]:6380/0?ssl_cert_reqs=none",
        "unix:///tmp/redis.sock?db=1",
        "redis+cluster://[::1]:7000, 10.0.0.2:7001",
        "redis+sentinel://s1,s2:26380/mymaster/1",
        "redis://127.0.0.1:6379/0?socket_timeout=2&health_check_interval=5&max_connections=9",
        "rediss://127.0.0.1:6380/0?ssl_cert_reqs=none&ssl_check_hostname=false&client_name=x",
        "redis+sentinel://s1/mymaster/",
    ],
)
def test_a_well_formed_url_is_taken(url: str) -> None:
    from breaker_fsm.redis import RedisStore

    RedisStore(url, push=False)


def test_a_urls_socket_timeout_overrides_the_stores_timeout() -> None:
    """``?socket_timeout=`` wins over ``timeout`` (redis-py's URL options come last)."""
    from breaker_fsm.redis import RedisStore

    store = RedisStore("redis://127.0.0.1:1/0?socket_timeout=2", timeout=0.05, push=False)
    kwargs = store._clients.sync().connection_pool.connection_kwargs  # built: no I/O yet
    assert (kwargs["socket_timeout"], kwargs["socket_connect_timeout"]) == (2.0, 0.05)
    store.close()


def test_verify_treats_local_runs_as_walks_of_their_own() -> None:
    """Records without a generation after shared ones form their own walk; shared ones go on."""

    def record(seq: int, event: str, source: str, target: str, gen: int | None) -> Transition:
        return Transition.at_wall(
            0, seq=seq, breaker="svc", event=event, source=source, target=target,
            monotonic=0.0, generation=gen,
        )  # fmt: skip

    trail = [
        record(1, "trip", "closed", "open", 1),
        record(2, "attempt_reset", "open", "half_open", None),  # degraded, from the mirror
        record(3, "recover", "half_open", "closed", None),
        record(2, "attempt_reset", "open", "half_open", 2),  # shared again
        record(3, "trip", "closed", "open", None),  # another outage, from a new mirror
    ]
    assert verify(trail) == 5
    broken = [*trail[:3], record(5, "recover", "half_open", "closed", None)]
    with pytest.raises(AuditError, match="seq 5 follows seq 3"):
        verify(broken)
    with pytest.raises(AuditError, match="seq 3 follows seq 1"):
        verify([trail[0], record(3, "attempt_reset", "open", "half_open", 3)])


def test_redis_module_imports_without_redis_py() -> None:
    """breaker_fsm.redis imports without redis-py; only building a store needs it."""
    code = textwrap.dedent(
        """
        import sys

        class Block:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] == "redis":
                    raise ImportError(f"blocked {name}")
                return None

        sys.meta_path.insert(0, Block())
        import breaker_fsm.redis
        try:
            breaker_fsm.redis.RedisStore("redis://localhost")
        except ImportError:
            print("ok")
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
