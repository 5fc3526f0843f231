"""BreakerRegistry: get-or-create, races, conflicts, eviction, sinks, snapshots."""

from __future__ import annotations

import logging
import threading

import pytest

from breaker_fsm import (
    BreakerError,
    BreakerMetrics,
    BreakerPolicy,
    BreakerRegistry,
    CircuitBreaker,
    RegistryError,
    Transition,
)
from breaker_fsm.audit import verify
from breaker_fsm.testing import FakeClock
from tests.helpers import boom

ONE_STRIKE = BreakerPolicy(failure_threshold=1, reset_timeout=10)


def trip(breaker: CircuitBreaker) -> None:
    """Fail one call through a breaker whose policy trips on one failure."""
    with pytest.raises(ConnectionError):
        breaker.call(boom)
    assert breaker.state == "open"


def test_get_creates_once_and_returns_the_same_breaker() -> None:
    """get() creates a breaker with the default policy once and returns it afterwards."""
    policy = BreakerPolicy(failure_threshold=3)
    registry = BreakerRegistry(policy)
    users = registry.get("users-api")
    assert isinstance(users, CircuitBreaker)
    assert users.name == "users-api"
    assert users.policy is policy
    assert registry.get("users-api") is users
    assert registry.get("users-api", policy) is users
    assert len(registry) == 1


def test_default_policy_is_a_fresh_default() -> None:
    """Without a default policy the registry uses BreakerPolicy()."""
    registry = BreakerRegistry()
    assert registry.default_policy == BreakerPolicy()
    assert registry.get("a").policy == BreakerPolicy()


def test_policy_overrides_the_default_for_a_new_name() -> None:
    """policy= applies to a new name; other names keep the default."""
    registry = BreakerRegistry(BreakerPolicy(failure_threshold=5))
    strict = registry.get("payments", ONE_STRIKE)
    assert strict.policy is ONE_STRIKE
    assert registry.get("users").policy.failure_threshold == 5


@pytest.mark.parametrize("bound", [None, 4])
def test_racing_callers_get_the_same_object(bound: int | None) -> None:
    """Threads released together by a Barrier all get one and the same breaker."""
    registry = BreakerRegistry(max_breakers=bound)
    threads_count = 16
    barrier = threading.Barrier(threads_count)
    results: list[CircuitBreaker] = []
    lock = threading.Lock()

    def worker() -> None:
        barrier.wait()
        breaker = registry.get("shared")
        with lock:
            results.append(breaker)

    threads = [threading.Thread(target=worker) for _ in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == threads_count
    assert len({id(b) for b in results}) == 1
    assert len(registry) == 1


def test_racing_creation_of_many_names_respects_the_bound() -> None:
    """Many threads creating distinct names never leave more than max_breakers closed ones."""
    registry = BreakerRegistry(max_breakers=8)
    barrier = threading.Barrier(8)
    errors: list[BaseException] = []

    def worker(offset: int) -> None:
        barrier.wait()
        try:
            for n in range(50):
                registry.get(f"host-{(n * 7 + offset) % 40}")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(registry) == 8
    assert registry.evicted > 0


def test_conflicting_policy_is_an_error_and_changes_nothing() -> None:
    """A different policy for an existing name raises RegistryError; the breaker stays."""
    registry = BreakerRegistry()
    users = registry.get("users", ONE_STRIKE)
    with pytest.raises(
        RegistryError,
        match=(
            r"'users' already exists with a different policy \(failure_threshold is 1, "
            r"asked for 2; reset_timeout is 10\.0, asked for 30\.0\)$"
        ),
    ):
        registry.get("users", BreakerPolicy(failure_threshold=2))
    assert issubclass(RegistryError, BreakerError)
    assert registry.get("users") is users
    assert users.policy is ONE_STRIKE
    # An equal policy (another instance of the same value) is no conflict.
    assert registry.get("users", BreakerPolicy(failure_threshold=1, reset_timeout=10)) is users


def test_conflicting_policy_is_an_error_in_a_bounded_registry_too() -> None:
    """The conflict check also applies on the locked (bounded) lookup path."""
    registry = BreakerRegistry(max_breakers=3)
    registry.get("users", ONE_STRIKE)
    with pytest.raises(RegistryError, match="different policy"):
        registry.get("users", BreakerPolicy())


def test_breaker_kwargs_apply_on_creation_and_must_not_conflict() -> None:
    """Registry and get() keyword arguments configure new breakers; a conflict is an error."""

    def fallback() -> str:
        return "cached"

    def other() -> str:  # pragma: no cover - never called
        return "other"

    registry = BreakerRegistry(ONE_STRIKE, fallback=fallback, audit_capacity=5)
    breaker = registry.get("a")
    trip(breaker)
    assert breaker.call(boom) == "cached"
    assert breaker.audit.capacity == 5
    assert registry.get("a", fallback=fallback) is breaker
    with pytest.raises(RegistryError, match="fallback="):
        registry.get("a", fallback=other)
    judged = registry.get("b", is_failure=bool)
    assert judged.call(lambda: 1) == 1
    assert judged.state == "open"  # a truthy result is a failure for this breaker
    with pytest.raises(RegistryError, match="is_failure=None"):
        registry.get("a", is_failure=bool)


def test_unknown_breaker_arguments_are_refused() -> None:
    """Keyword arguments that CircuitBreaker does not take are a TypeError, early."""
    with pytest.raises(TypeError, match="unexpected breaker argument"):
        BreakerRegistry(sinks_extra=[])
    registry = BreakerRegistry()
    with pytest.raises(TypeError, match="clock"):
        registry.get("a", clock=FakeClock())
    assert len(registry) == 0


def test_iteration_len_names_contains_and_getitem() -> None:
    """The registry is a sorted collection of breakers; [] looks up without creating."""
    registry = BreakerRegistry()
    for name in ("c", "a", "b"):
        registry.get(name)
    assert len(registry) == 3
    assert registry.names() == ["a", "b", "c"]
    assert [b.name for b in registry] == ["a", "b", "c"]
    assert "a" in registry
    assert "z" not in registry
    assert registry["b"] is registry.get("b")
    with pytest.raises(KeyError):
        registry["z"]
    assert "z" not in registry
    assert repr(registry) == "<BreakerRegistry 3 breakers>"
    assert repr(BreakerRegistry(max_breakers=9)) == "<BreakerRegistry 0/9 breakers>"


def test_snapshot_has_every_breakers_metrics() -> None:
    """snapshot() maps each name to that breaker's BreakerMetrics."""
    registry = BreakerRegistry(ONE_STRIKE)
    registry.get("ok").call(lambda: 1)
    trip(registry.get("down"))
    snap = registry.snapshot()
    assert list(snap) == ["down", "ok"]
    assert all(isinstance(m, BreakerMetrics) for m in snap.values())
    assert snap["ok"].state == "closed"
    assert snap["ok"].success_count == 1
    assert snap["down"].state == "open"
    assert snap["down"].error_count == 1


def test_reset_all_closes_every_breaker() -> None:
    """reset_all() sends reset to every breaker, whatever its state, with a reason."""
    registry = BreakerRegistry(ONE_STRIKE)
    trip(registry.get("open"))
    registry.get("forced").send("force_open")
    registry.get("disabled").send("disable")
    registry.get("closed")
    assert registry.reset_all() == 4
    assert {b.state for b in registry} == {"closed"}
    last = registry["open"].audit[-1]
    assert (last.event, last.reason) == ("reset", "registry reset_all")


def test_registry_sinks_see_every_breakers_transitions() -> None:
    """Sinks given to the registry, or added later, receive every breaker's records."""
    early: list[Transition] = []
    late: list[Transition] = []
    registry = BreakerRegistry(ONE_STRIKE, sinks=[early.append])
    trip(registry.get("a"))
    registry.add_sink(late.append)
    trip(registry.get("b"))
    registry.get("a").send("reset")
    assert registry.sinks == (early.append, late.append)
    assert [(r.breaker, r.event) for r in early] == [("a", "trip"), ("b", "trip"), ("a", "reset")]
    assert [(r.breaker, r.event) for r in late] == [("b", "trip"), ("a", "reset")]
    assert verify(early) == 3


def test_a_failing_registry_sink_fails_nothing() -> None:
    """A registry sink that raises is logged and counted; the call and transition happen."""

    def broken(record: Transition) -> None:
        raise RuntimeError("disk full")

    seen: list[Transition] = []
    registry = BreakerRegistry(ONE_STRIKE, sinks=[broken, seen.append])
    breaker = registry.get("a")
    trip(breaker)
    assert [r.event for r in seen] == ["trip"]
    assert breaker.metrics().sink_errors == 1


def test_transition_counts_include_zeros_and_count_by_event() -> None:
    """transition_counts() counts every breaker's transitions per event, zeros included."""
    clock = FakeClock()
    registry = BreakerRegistry(ONE_STRIKE, clock=clock)
    breaker = registry.get("a")
    trip(breaker)
    clock.advance(10)
    trip(breaker)  # the trial fails: attempt_reset then retrip
    registry.get("b")
    counts = registry.transition_counts()
    assert list(counts) == ["a", "b"]
    assert counts["a"] == {
        "attempt_reset": 1,
        "disable": 0,
        "force_open": 0,
        "recover": 0,
        "reset": 0,
        "retrip": 1,
        "trip": 1,
    }
    assert set(counts["b"].values()) == {0}


def test_breakers_use_the_registry_clock() -> None:
    """The registry's clock drives every breaker: open, then half-open after advancing."""
    clock = FakeClock()
    registry = BreakerRegistry(ONE_STRIKE, clock=clock)
    assert registry.clock is clock
    breaker = registry.get("a")
    trip(breaker)
    clock.advance(9.9)
    assert breaker.metrics().retry_after == pytest.approx(0.1)
    clock.advance(0.1)
    assert breaker.call(lambda: "ok") == "ok"
    assert breaker.state == "closed"


def test_max_breakers_must_be_positive() -> None:
    """max_breakers below 1 is refused."""
    with pytest.raises(ValueError, match="max_breakers"):
        BreakerRegistry(max_breakers=0)


def test_eviction_takes_the_least_recently_used_closed_breaker() -> None:
    """At the bound, the least recently used closed breaker makes room for a new one."""
    registry = BreakerRegistry(max_breakers=3)
    a, b, _c = registry.get("a"), registry.get("b"), registry.get("c")
    assert registry.get("a") is a  # a is now the most recently used
    registry.get("d")
    assert registry.names() == ["a", "c", "d"]  # b was the least recently used
    assert registry.evicted == 1
    registry.get("e")
    assert registry.names() == ["a", "d", "e"]  # then c
    assert registry.get("b") is not b  # an evicted name comes back as a new breaker
    assert registry.names() == ["b", "d", "e"]  # ... evicting a, now the oldest
    assert registry.evicted == 3


def test_lookup_by_index_does_not_count_as_a_use() -> None:
    """registry[name] inspects without refreshing the breaker's place in the LRU order."""
    registry = BreakerRegistry(max_breakers=2)
    registry.get("a")
    registry.get("b")
    _ = registry["a"]
    registry.get("c")
    assert registry.names() == ["b", "c"]


def test_a_breaker_that_is_not_closed_is_never_evicted() -> None:
    """Open, forced-open and disabled breakers stay; closed ones are evicted around them."""
    registry = BreakerRegistry(ONE_STRIKE, max_breakers=3)
    trip(registry.get("open"))
    registry.get("forced").send("force_open")
    registry.get("closed")
    registry.get("new")
    assert registry.names() == ["forced", "new", "open"]
    registry.get("disabled").send("disable")  # no closed one but "new" to evict
    assert registry.names() == ["disabled", "forced", "open"]


def test_registry_grows_past_the_bound_when_nothing_can_be_evicted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """With every breaker non-closed, a new name is still created and a warning logged once."""
    registry = BreakerRegistry(ONE_STRIKE, max_breakers=2)
    trip(registry.get("a"))
    trip(registry.get("b"))
    with caplog.at_level(logging.WARNING, logger="breaker_fsm"):
        c = registry.get("c")
        trip(c)
        registry.get("d")
    assert registry.names() == ["a", "b", "c", "d"]
    warnings = [r for r in caplog.records if "over its bound of 2" in r.getMessage()]
    assert len(warnings) == 1
    assert "now 3 breakers" in warnings[0].getMessage()
    # Once breakers close again, the next creation shrinks the registry back to its bound.
    registry.reset_all()
    registry.get("e")
    assert len(registry) == 2
    assert registry.names() == ["d", "e"]
    registry.get("f")
    assert registry.names() == ["e", "f"]


def test_making_room_in_an_outage_looks_at_each_open_breaker_once(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """With every breaker open, each new name costs O(1): open ones are not scanned again."""
    registry = BreakerRegistry(ONE_STRIKE, max_breakers=10)
    for i in range(10):
        trip(registry.get(f"down-{i}"))
    reads = 0
    state = CircuitBreaker.state

    def counted(self: CircuitBreaker) -> str:
        nonlocal reads
        reads += 1
        return state.fget(self)  # type: ignore[misc]

    monkeypatch.setattr(CircuitBreaker, "state", property(counted))
    with caplog.at_level(logging.ERROR, logger="breaker_fsm"):  # the over-bound warning
        for i in range(100):
            trip(registry.get(f"new-{i}"))
    assert len(registry) == 110
    assert reads <= 10 + 100 * 2  # each open breaker once, and each new one's own checks


def test_a_pinned_breaker_that_closes_can_be_evicted_again() -> None:
    """An open breaker kept past its turn is evicted once it has closed, before newer ones."""
    registry = BreakerRegistry(ONE_STRIKE, max_breakers=2)
    trip(registry.get("a"))
    registry.get("b")
    registry.get("c")  # a is open: b goes
    assert registry.names() == ["a", "c"]
    registry["a"].send("reset")  # a closes, unused since
    registry.get("d")
    assert registry.names() == ["c", "d"]


def test_a_pinned_breaker_in_use_again_counts_as_recently_used() -> None:
    """A closed breaker that get() hands out again rejoins the order as the newest."""
    registry = BreakerRegistry(ONE_STRIKE, max_breakers=2)
    trip(registry.get("a"))
    registry.get("b")
    registry.get("c")  # a is open and pinned; b goes
    registry["a"].send("reset")
    registry.get("a")  # in use again: the most recently used
    registry.get("d")
    assert registry.names() == ["a", "d"]


def test_transition_counts_by_event_include_zeros() -> None:
    """transition_counts() names every event of the machine, counted per breaker."""
    registry = BreakerRegistry(ONE_STRIKE)
    trip(registry.get("a"))
    registry.get("a").send("reset")
    counts = registry.transition_counts()["a"]
    assert counts["trip"] == counts["reset"] == 1
    assert set(counts) == {
        "attempt_reset",
        "disable",
        "force_open",
        "recover",
        "reset",
        "retrip",
        "trip",
    }
    assert sum(counts.values()) == 2
