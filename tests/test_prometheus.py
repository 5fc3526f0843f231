"""The Prometheus collector: scrape the text exposition after a scripted scenario."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from breaker_fsm import (
    BreakerPolicy,
    BreakerRegistry,
    CircuitBreaker,
    CircuitOpenError,
    CountWindow,
)
from breaker_fsm.prometheus import CALL_KINDS, BreakerCollector
from breaker_fsm.testing import FakeClock
from tests.helpers import boom
from tests.redis_server import free_port

if TYPE_CHECKING:
    from breaker_fsm.redis import RedisStore
    from tests.redis_server import RedisServer

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def lookup() -> None:
    raise KeyError("ignored")


def scrape(collector: BreakerCollector) -> tuple[str, Samples]:
    """Register the collector on a fresh CollectorRegistry and scrape it as text."""
    registry = CollectorRegistry()
    registry.register(collector)
    text = generate_latest(registry).decode()
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return text, samples


def value(samples: Samples, metric: str, **labels: str) -> float:
    return samples[(metric, frozenset(labels.items()))]


def run(breaker: CircuitBreaker, func: Callable[[], object], times: int = 1) -> None:
    """Call ``func`` through ``breaker`` ``times`` times, swallowing its own errors."""
    for _ in range(times):
        with contextlib.suppress(ConnectionError, KeyError):
            breaker.call(func)


@pytest.fixture
def scenario(clock: FakeClock) -> BreakerRegistry:
    """Three breakers: one that tripped and recovered, one with a window, one forced open."""
    registry = BreakerRegistry(
        BreakerPolicy(failure_threshold=2, reset_timeout=5, ignore_exceptions=(KeyError,)),
        clock=clock,
    )
    users = registry.get("users")
    run(users, lambda: "ok")
    run(users, lookup)
    run(users, boom, 2)  # trips
    for _ in range(3):
        with pytest.raises(CircuitOpenError):
            users.call(lambda: "ok")
    clock.advance(5)
    run(users, lambda: "ok")  # attempt_reset, then recover

    search = registry.get(
        "search",
        BreakerPolicy(
            failure_threshold=None,
            window=CountWindow(size=10),
            minimum_calls=4,
            failure_rate_threshold=0.9,
        ),
    )
    run(search, lambda: "ok", 3)
    run(search, boom)

    registry.get("admin").send("force_open")
    return registry


def test_metric_names_types_and_help(scenario: BreakerRegistry) -> None:
    """Every family is exposed with snake_case names, _total counters and HELP text."""
    text, _ = scrape(BreakerCollector(scenario))
    for name, kind in [
        ("circuitbreaker_state", "gauge"),
        ("circuitbreaker_calls_total", "counter"),
        ("circuitbreaker_slow_calls_total", "counter"),
        ("circuitbreaker_transitions_total", "counter"),
        ("circuitbreaker_failure_rate", "gauge"),
        ("circuitbreaker_slow_call_rate", "gauge"),
        ("circuitbreaker_buffered_calls", "gauge"),
        ("circuitbreaker_consecutive_failures", "gauge"),
        ("circuitbreaker_sink_errors_total", "counter"),
        ("circuitbreaker_store_errors_total", "counter"),
        ("circuitbreaker_degraded", "gauge"),
    ]:
        assert f"# TYPE {name} {kind}\n" in text
        assert f"# HELP {name} " in text


def test_state_gauge_has_one_series_per_state(scenario: BreakerRegistry) -> None:
    """circuitbreaker_state{name,state} is 1 for the current state and 0 for the other four."""
    _, samples = scrape(BreakerCollector(scenario))
    states = ("closed", "open", "half_open", "forced_open", "disabled")
    for name, current in [("users", "closed"), ("search", "closed"), ("admin", "forced_open")]:
        got = {s: value(samples, "circuitbreaker_state", name=name, state=s) for s in states}
        assert got == {s: 1.0 if s == current else 0.0 for s in states}


def test_calls_by_outcome(scenario: BreakerRegistry) -> None:
    """circuitbreaker_calls_total{kind} counts success, failure, ignored and rejected."""
    text, samples = scrape(BreakerCollector(scenario))
    users = {
        k: value(samples, "circuitbreaker_calls_total", name="users", kind=k) for k in CALL_KINDS
    }
    assert users == {"success": 2.0, "failure": 2.0, "ignored": 1.0, "rejected": 3.0}
    assert 'circuitbreaker_calls_total{kind="rejected",name="users"} 3.0' in text
    search = {
        k: value(samples, "circuitbreaker_calls_total", name="search", kind=k) for k in CALL_KINDS
    }
    assert search == {"success": 3.0, "failure": 1.0, "ignored": 0.0, "rejected": 0.0}
    assert value(samples, "circuitbreaker_slow_calls_total", name="users") == 0.0


def test_transitions_by_event(scenario: BreakerRegistry) -> None:
    """circuitbreaker_transitions_total{event} counts each event, zeros included."""
    _, samples = scrape(BreakerCollector(scenario))
    users = {
        event: value(samples, "circuitbreaker_transitions_total", name="users", event=event)
        for event in (
            "trip",
            "attempt_reset",
            "recover",
            "retrip",
            "force_open",
            "disable",
            "reset",
        )
    }
    assert users == {
        "trip": 1.0,
        "attempt_reset": 1.0,
        "recover": 1.0,
        "retrip": 0.0,
        "force_open": 0.0,
        "disable": 0.0,
        "reset": 0.0,
    }
    assert (
        value(samples, "circuitbreaker_transitions_total", name="admin", event="force_open") == 1.0
    )


def test_failure_rate_and_window_gauges(scenario: BreakerRegistry) -> None:
    """failure_rate is the window's failed share (0-1), -1 without a window or too few calls."""
    _, samples = scrape(BreakerCollector(scenario))
    assert value(samples, "circuitbreaker_failure_rate", name="search") == 0.25
    assert value(samples, "circuitbreaker_buffered_calls", name="search") == 4.0
    assert value(samples, "circuitbreaker_slow_call_rate", name="search") == -1.0
    assert value(samples, "circuitbreaker_failure_rate", name="users") == -1.0
    assert value(samples, "circuitbreaker_buffered_calls", name="users") == 0.0
    assert value(samples, "circuitbreaker_consecutive_failures", name="users") == 0.0
    assert value(samples, "circuitbreaker_sink_errors_total", name="users") == 0.0


def test_consecutive_failures_and_new_breakers_show_up_on_the_next_scrape(
    scenario: BreakerRegistry,
) -> None:
    """A scrape reads the registry live: a new breaker and its streak appear at once."""
    collector = BreakerCollector(scenario)
    run(scenario.get("late"), boom)
    _, samples = scrape(collector)
    assert value(samples, "circuitbreaker_consecutive_failures", name="late") == 1.0
    assert value(samples, "circuitbreaker_state", name="late", state="closed") == 1.0


def test_evicted_breakers_disappear() -> None:
    """A breaker evicted from a bounded registry is no longer exposed."""
    registry = BreakerRegistry(max_breakers=1)
    registry.get("first")
    registry.get("second")
    _, samples = scrape(BreakerCollector(registry))
    names = {dict(labels).get("name") for _, labels in samples}
    assert names == {"second"}


def test_empty_registry_exposes_families_without_samples() -> None:
    """With no breakers the families are still described, with no samples."""
    collector = BreakerCollector(BreakerRegistry())
    assert [m.name for m in collector.describe()][:2] == [
        "circuitbreaker_state",
        "circuitbreaker_calls",
    ]
    assert all(not m.samples for m in collector.describe())
    text, samples = scrape(collector)
    assert samples == {}
    assert "# TYPE circuitbreaker_state gauge" in text


def test_namespace_separates_two_registries() -> None:
    """Two collectors need distinct namespaces to share one CollectorRegistry."""
    first, second = BreakerRegistry(), BreakerRegistry()
    first.get("a")
    second.get("a")
    prom = CollectorRegistry()
    prom.register(BreakerCollector(first))
    prom.register(BreakerCollector(second, namespace="edge_breaker"))
    text = generate_latest(prom).decode()
    assert 'circuitbreaker_state{name="a",state="closed"} 1.0' in text
    assert 'edge_breaker_state{name="a",state="closed"} 1.0' in text
    with pytest.raises(ValueError, match="Duplicated"):
        prom.register(BreakerCollector(BreakerRegistry()))
    with pytest.raises(ValueError, match="namespace"):
        BreakerCollector(first, namespace="bad-name")
    assert repr(BreakerCollector(first)) == (
        "<BreakerCollector 'circuitbreaker' over <BreakerRegistry 1 breakers>>"
    )


# ---------------------------------------------------------------------------- shared store


def store_at(url: str, clock: FakeClock) -> Iterator[RedisStore]:
    """A RedisStore on ``url`` (time pinned to ``clock``), closed afterwards."""
    pytest.importorskip("redis", reason="redis-py is not installed: pip install redis")
    from breaker_fsm.redis import RedisStore

    store = RedisStore(url, timeout=2.0, retry_interval=1.0, now=clock.monotonic)
    try:
        yield store
    finally:
        store.close()


@pytest.fixture
def dead_store(clock: FakeClock) -> Iterator[RedisStore]:
    """A RedisStore on a loopback port nothing listens on (free a moment ago): refused."""
    yield from store_at(f"redis://127.0.0.1:{free_port()}/0", clock)


@pytest.fixture
def live_store(redis_server: RedisServer, clock: FakeClock) -> Iterator[RedisStore]:
    """A RedisStore on the test's real redis-server."""
    yield from store_at(redis_server.url, clock)


def store_series(samples: Samples, name: str) -> tuple[float, float]:
    """(circuitbreaker_store_errors_total, circuitbreaker_degraded) of breaker ``name``."""
    return (
        value(samples, "circuitbreaker_store_errors_total", name=name),
        value(samples, "circuitbreaker_degraded", name=name),
    )


def test_breakers_without_a_store_expose_store_series_as_zero(scenario: BreakerRegistry) -> None:
    """Without a store, store_errors_total and degraded are still there, as 0."""
    text, samples = scrape(BreakerCollector(scenario))
    for name in ("users", "search", "admin"):
        assert store_series(samples, name) == (0.0, 0.0)
    assert 'circuitbreaker_store_errors_total{name="users"} 0.0' in text
    assert 'circuitbreaker_degraded{name="users"} 0.0' in text


def test_an_unreachable_store_degrades_and_counts_store_errors(
    dead_store: RedisStore, clock: FakeClock
) -> None:
    """Refused round trips show as degraded 1 and one store error per retry_interval."""
    registry = BreakerRegistry(BreakerPolicy(failure_threshold=3), clock=clock, store=dead_store)
    orders = registry.get("orders")
    assert [orders.call(lambda: "local") for _ in range(3)] == ["local"] * 3
    text, samples = scrape(BreakerCollector(registry))
    assert store_series(samples, "orders") == (1.0, 1.0)  # no retry before retry_interval
    assert 'circuitbreaker_degraded{name="orders"} 1.0' in text
    assert 'circuitbreaker_store_errors_total{name="orders"} 1.0' in text
    assert value(samples, "circuitbreaker_calls_total", name="orders", kind="success") == 3.0
    clock.advance(1)
    run(orders, boom)  # retries the store, which refuses again
    run(registry.get("idle"), lambda: "ok")  # a second breaker degrades on its own
    text, samples = scrape(BreakerCollector(registry))
    assert store_series(samples, "orders") == (2.0, 1.0)
    assert store_series(samples, "idle") == (1.0, 1.0)
    assert 'circuitbreaker_store_errors_total{name="orders"} 2.0' in text
    assert value(samples, "circuitbreaker_consecutive_failures", name="orders") == 1.0


def test_degraded_returns_to_zero_when_the_store_answers_again(
    redis_server: RedisServer, live_store: RedisStore, clock: FakeClock
) -> None:
    """Killed redis-server: degraded 1; restarted: degraded 0, store_errors_total kept."""
    registry = BreakerRegistry(BreakerPolicy(failure_threshold=3), clock=clock, store=live_store)
    orders = registry.get("orders")
    assert orders.call(lambda: "shared") == "shared"
    collector = BreakerCollector(registry)
    _, samples = scrape(collector)
    assert store_series(samples, "orders") == (0.0, 0.0)
    redis_server.kill()
    assert orders.call(lambda: "local") == "local"
    text, samples = scrape(collector)
    assert store_series(samples, "orders") == (1.0, 1.0)
    assert 'circuitbreaker_degraded{name="orders"} 1.0' in text
    redis_server.restart()  # empty, same port
    clock.advance(1)
    assert orders.call(lambda: "shared again") == "shared again"
    text, samples = scrape(collector)
    assert store_series(samples, "orders") == (1.0, 0.0)  # a counter never goes back
    assert 'circuitbreaker_degraded{name="orders"} 0.0' in text
    assert 'circuitbreaker_store_errors_total{name="orders"} 1.0' in text
