"""How a shared breaker's local mirror follows the store's replies, degrades and resyncs.

A breaker created with ``store=`` keeps a mirror of the shared state (state, generation,
open timing, streak, trial counts) and asks the store only when the mirror cannot decide.
When the store does not answer it runs on that mirror as local state, under the same
policy, until a round trip succeeds again. These tests pin the mirror's side of that
contract: what each kind of reply leaves in it, what a call records when the store is
unreachable, and how the first answer after an outage puts the breaker back on the shared
state.

Everything is real: a redis-server child process (``tests/redis_server.py``), with the
scripts' time pinned to a :class:`~breaker_fsm.testing.FakeClock` that the breakers use
too. An unreachable store is a :class:`~breaker_fsm.redis.RedisStore` pointed at a free
loopback port (the connection is refused at once) or the fixture's server killed mid-test.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from typing import TYPE_CHECKING, Any

import pytest

from breaker_fsm import BreakerPolicy, CallRecord, CircuitBreaker, CircuitOpenError, CountWindow
from breaker_fsm.exceptions import IllegalTransitionError
from breaker_fsm.testing import FakeClock
from tests.helpers import Boom, aboom, aok, fail, run_closing
from tests.redis_server import StoreFactory

if TYPE_CHECKING:
    from breaker_fsm.redis import RedisStore
    from tests.redis_server import RedisServer

pytest.importorskip("redis", reason="redis-py is not installed: pip install redis")


@pytest.fixture
def stores(redis_stores: StoreFactory, clock: FakeClock) -> StoreFactory:
    """RedisStores on the test server whose scripts read ``clock`` (``now=`` overrides).

    They do not push: these tests pin how replies alone move the mirror.
    """
    return functools.partial(redis_stores, now=clock.monotonic, push=False)


#: One-second open duration, then an episode of three trials that times out after two seconds.
TIMED_TRIALS = BreakerPolicy(
    failure_threshold=1,
    reset_timeout=1,
    half_open_timeout=2,
    half_open_max_calls=3,
    success_threshold=3,
)


def echo(*args: Any, **kwargs: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
    return args, kwargs


async def aecho(*args: Any, **kwargs: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
    return args, kwargs


def retry_after_hint(result: object) -> float | bool:
    """An ``is_failure`` predicate: a 503 is a failure that asks for 7 s open."""
    return 7.0 if result == 503 else False


class Moves:
    """A listener on a breaker's machine: the transitions the machine itself made."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, str]] = []

    def after_transition(self, event: str, source: Any, target: Any) -> None:
        self.seen.append((str(event), str(source.id), str(target.id)))


class Evidence:
    """A listener on a breaker's machine: the timing evidence each transition was given."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, float | None, float | None]] = []

    def after_transition(self, event: str, stats: Any) -> None:
        self.seen.append((str(event), stats.opened_at, stats.half_open_since))


# ---------------------------------------------------------------------------- replies


def test_a_healthy_mirror_reports_plain_counters(stores: StoreFactory, clock: FakeClock) -> None:
    """While the store answers: degraded is False, and a success's empty reply clears the streak."""
    breaker = CircuitBreaker("svc", BreakerPolicy(failure_threshold=3), clock=clock, store=stores())
    assert breaker.metrics().degraded is False
    fail(breaker)
    assert breaker.metrics().failure_count == 1
    assert breaker.call(lambda: "ok") == "ok"  # resets the shared streak: a full reply
    assert breaker.metrics().failure_count == 0
    assert breaker.call(lambda: "ok") == "ok"  # nothing changed: the empty reply
    metrics = breaker.metrics()
    assert (metrics.failure_count, metrics.success_count, metrics.error_count) == (0, 2, 1)
    assert metrics.degraded is False
    assert metrics.store_errors == 0


def test_a_reset_clears_the_mirrored_streak(stores: StoreFactory, clock: FakeClock) -> None:
    """A shared transition into closed leaves the mirror with no streak, as a local one does."""
    breaker = CircuitBreaker("svc", BreakerPolicy(failure_threshold=3), clock=clock, store=stores())
    fail(breaker)
    fail(breaker)
    assert breaker.metrics().failure_count == 2
    assert breaker.send("reset") == "closed"
    assert breaker.metrics().failure_count == 0
    fail(breaker)  # the shared streak restarted from nothing
    assert breaker.metrics().failure_count == 1
    assert breaker.state == "closed"


def test_store_transitions_go_through_the_machine(stores: StoreFactory, clock: FakeClock) -> None:
    """Transitions a store's script made pass this process's machine: its guards accept them."""
    policy = BreakerPolicy(failure_threshold=1, reset_timeout=5, half_open_timeout=2)
    a, b = (CircuitBreaker("svc", policy, clock=clock, store=stores()) for _ in range(2))
    moves_a, moves_b = Moves(), Moves()
    a.machine.add_listener(moves_a)  # type: ignore[no-untyped-call]
    b.machine.add_listener(moves_b)  # type: ignore[no-untyped-call]
    fail(a)  # second 0
    b.call(lambda: None)  # b learns the trip: a mirror update, not a transition of b's
    clock.advance(5)  # exactly the open duration

    def stuck_trial() -> str:
        clock.advance(2)  # exactly the half-open timeout
        with pytest.raises(CircuitOpenError):
            b.call(lambda: "never runs")  # b's acquire retrips the stuck episode
        return "late"

    assert a.call(stuck_trial) == "late"  # a's acquire moved open to half_open
    assert moves_a.seen == [("trip", "closed", "open"), ("attempt_reset", "open", "half_open")]
    assert moves_b.seen == [("retrip", "half_open", "open")]
    assert [(r.seq, r.event) for r in a.audit] == [(1, "trip"), (2, "attempt_reset")]
    assert [(r.seq, r.event) for r in b.audit] == [(3, "retrip")]
    assert b.audit[0].reason == "half-open timed out after 2s; open for 5s"
    assert a.state == b.state == "open"
    assert a.machine.current_state_value == b.machine.current_state_value == "open"


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_slow_calls_are_timed_by_the_caller(
    stores: StoreFactory, clock: FakeClock, mode: str
) -> None:
    """Only a call strictly longer than slow_call_duration is slow; without the rule, none is."""
    timed_store, untimed_store = stores(), stores()
    timed = CircuitBreaker(
        "timed",
        BreakerPolicy(failure_threshold=None, window=CountWindow(size=10), slow_call_duration=1),
        clock=clock,
        store=timed_store,
    )
    untimed = CircuitBreaker("untimed", BreakerPolicy(), clock=clock, store=untimed_store)
    durations = [(0.5, False), (1.0, False), (1.5, False), (1.5, True)]  # (seconds, fails)

    def op(seconds: float, fails: bool) -> str:
        clock.advance(seconds)
        if fails:
            raise ConnectionError("slow, and failed")
        return "done"

    async def aop(seconds: float, fails: bool) -> str:
        return op(seconds, fails)

    if mode == "sync":
        for breaker in (timed, untimed):
            for seconds, fails in durations:
                with contextlib.suppress(ConnectionError):
                    breaker.call(op, seconds, fails)
    else:

        async def scenario() -> None:
            try:
                for breaker in (timed, untimed):
                    for seconds, fails in durations:
                        with contextlib.suppress(ConnectionError):
                            await breaker.acall(aop, seconds, fails)
            finally:
                await untimed_store.aclose()

        run_closing(timed_store, scenario)
    metrics = timed.metrics()
    assert (metrics.slow_call_count, metrics.success_count, metrics.error_count) == (2, 3, 1)
    window = timed_store.describe("timed")
    assert window is not None
    assert (window["window_calls"], window["window_failures"], window["window_slow"]) == (4, 1, 2)
    metrics = untimed.metrics()
    assert (metrics.slow_call_count, metrics.success_count, metrics.error_count) == (0, 3, 1)


def test_arguments_reach_the_operation_on_every_shared_path(
    stores: StoreFactory, clock: FakeClock
) -> None:
    """Positional and keyword arguments reach the operation closed and disabled, sync and async."""
    store = stores()
    breaker = CircuitBreaker("svc", BreakerPolicy(), clock=clock, store=store)
    expected = ((1, 2), {"k": "v"})

    async def scenario() -> None:
        assert await breaker.acall(aecho, 1, 2, k="v") == expected
        assert breaker.send("disable") == "disabled"
        assert await breaker.acall(aecho, 1, 2, k="v") == expected
        assert breaker.call(echo, 1, 2, k="v") == expected
        assert breaker.send("reset") == "closed"
        assert breaker.call(echo, 1, 2, k="v") == expected

    run_closing(store, scenario)
    assert breaker.metrics().total_requests == 2  # disabled: ran, recorded nothing


def test_outcomes_the_store_answers_for_all_count(stores: StoreFactory, clock: FakeClock) -> None:
    """Every failure and every ignored trial outcome answered with a full reply is counted."""
    policy = BreakerPolicy(
        failure_threshold=3, reset_timeout=1, half_open_max_calls=3, ignore_exceptions=ValueError
    )
    breaker = CircuitBreaker("svc", policy, clock=clock, store=stores())

    def ignored() -> None:
        raise ValueError("not the dependency's fault")

    fail(breaker)
    fail(breaker)
    assert breaker.metrics().error_count == 2
    fail(breaker)  # trips
    clock.advance(1)
    for _ in range(2):  # trials whose neutral outcome gives their permit back in the store
        with pytest.raises(ValueError, match="not the dependency"):
            breaker.call(ignored)
    metrics = breaker.metrics()
    assert (metrics.state, metrics.error_count, metrics.ignored_count) == ("half_open", 3, 2)


def test_a_stale_record_adopts_a_newer_closed_generation(
    stores: StoreFactory, clock: FakeClock
) -> None:
    """A record refused as stale by a store closed at a later generation moves the mirror on."""
    policy = BreakerPolicy(failure_threshold=2)
    a, b = (CircuitBreaker("svc", policy, clock=clock, store=stores()) for _ in range(2))
    fail(b)  # b mirrors generation 0
    fail(a)  # the shared streak reaches 2: trip (generation 1)
    assert a.send("reset") == "closed"  # generation 2
    assert b.call(lambda: "stale") == "stale"  # counted at generation 0: refused, adopted
    assert b.metrics().transitions == 2
    fail(b)
    fail(b)  # counted at generation 2 now: b's own failures trip the shared state
    assert b.state == "open"
    assert [(r.event, r.generation) for r in b.audit] == [("trip", 3)]


def test_a_refused_operator_event_refreshes_the_mirrored_streak(
    stores: StoreFactory, clock: FakeClock
) -> None:
    """A trip whose guard does not hold still brings back the shared streak of this episode."""
    policy = BreakerPolicy(failure_threshold=3)
    a, b = (CircuitBreaker("svc", policy, clock=clock, store=stores()) for _ in range(2))
    fail(a)
    fail(b)  # the shared streak is 2; a still mirrors 1
    assert a.metrics().failure_count == 1
    with pytest.raises(IllegalTransitionError, match="its guard does not hold"):
        a.send("trip")
    assert (a.state, a.metrics().failure_count) == ("closed", 2)


def test_a_later_open_episode_is_adopted_whole(stores: StoreFactory, clock: FakeClock) -> None:
    """An open reply of a later generation replaces the mirrored episode, its backoff included."""
    policy = BreakerPolicy(failure_threshold=1, reset_timeout=1, reset_timeout_multiplier=2)
    a, b = (CircuitBreaker("svc", policy, clock=clock, store=stores()) for _ in range(2))
    fail(a)  # generation 1: open for 1 s
    assert b.call(lambda: "stale") == "stale"  # b adopts the open episode
    assert (b.state, b.metrics().transitions) == ("open", 1)
    clock.advance(1)
    fail(a)  # attempt_reset (2), the trial fails: retrip (3), open for 2 s
    with pytest.raises(CircuitOpenError) as refused:
        b.call(lambda: "never runs")  # b's mirror has run out: it asks, and learns the retrip
    assert refused.value.retry_after == 2
    metrics = b.metrics()
    assert (metrics.state, metrics.transitions, metrics.open_duration) == ("open", 3, 2)
    assert metrics.retry_after == 2


def test_an_adopted_open_episode_keeps_the_servers_timing(
    redis_server: RedisServer, stores: StoreFactory, clock: FakeClock
) -> None:
    """A mirror that learns an episode late counts from its start, and reseeds a lost entry so."""
    policy = BreakerPolicy(failure_threshold=1, reset_timeout=5)
    store = stores()
    a, b = (CircuitBreaker("svc", policy, clock=clock, store=s) for s in (stores(), store))
    fail(a)  # opened at second 0
    clock.advance(2)
    assert b.call(lambda: "stale") == "stale"  # b adopts an episode 2 s old
    assert (b.state, b.metrics().retry_after) == ("open", 3)
    redis_server.kill()
    redis_server.restart()  # empty: the entry is recreated from the first caller's seed
    clock.advance(1)
    with pytest.raises(IllegalTransitionError, match="its guard does not hold"):
        b.send("attempt_reset")  # 3 s into a 5 s episode, on the recreated entry too
    state = store.describe("svc")
    assert state is not None
    assert (state["state"], state["opened_at"]) == (1, 0)
    assert (b.metrics().retry_after, b.metrics().degraded) == (2, False)
    clock.advance(2)
    assert b.call(lambda: "trial") == "trial"


def test_a_mirror_that_asks_early_takes_the_servers_timing(
    redis_server: RedisServer, stores: StoreFactory, clock: FakeClock
) -> None:
    """Refused because the server's clock says it is early: the mirror waits as the server says."""
    server = FakeClock()  # the store's clock, running behind this process's
    store = stores(now=server.monotonic)
    breaker = CircuitBreaker(
        "svc", BreakerPolicy(failure_threshold=1, reset_timeout=5), clock=clock, store=store
    )
    fail(breaker)  # opened at 0 on both clocks
    clock.advance(5)
    server.advance(4)
    with pytest.raises(CircuitOpenError) as refused:
        breaker.call(lambda: "never runs")  # the mirror's 5 s are up, the server's are not
    assert refused.value.retry_after == 1
    assert breaker.metrics().retry_after == 1
    redis_server.kill()
    redis_server.restart()  # empty: the entry is recreated from this breaker's seed
    clock.advance(0.5)
    server.advance(0.5)
    with pytest.raises(IllegalTransitionError, match="its guard does not hold"):
        breaker.send("attempt_reset")  # 0.5 s left, on the recreated entry too
    state = store.describe("svc")
    assert state is not None
    assert (state["state"], state["opened_at"]) == (1, 0)
    metrics = breaker.metrics()
    assert (metrics.degraded, metrics.store_errors, metrics.retry_after) == (False, 0, 0.5)


def test_a_half_open_episode_adopted_mid_way_times_out_locally(
    redis_server: RedisServer, stores: StoreFactory, clock: FakeClock
) -> None:
    """A mirror that learns a half-open episode late times it out from its shared start."""
    policy = TIMED_TRIALS
    a, b = (CircuitBreaker("svc", policy, clock=clock, store=stores()) for _ in range(2))
    fail(a)  # second 0
    clock.advance(1.5)
    assert a.call(lambda: "trial") == "trial"  # half_open since 1.5
    clock.advance(0.5)
    assert b.call(lambda: "stale") == "stale"  # b adopts an episode 0.5 s old
    assert b.state == "half_open"
    redis_server.kill()
    clock.advance(1.5)  # 2 s into the episode
    with pytest.raises(CircuitOpenError):
        b.call(lambda: "never runs")  # the acquire fails: the local rules time it out
    assert [(r.event, r.generation) for r in b.audit] == [("retrip", None)]


def test_an_overtaken_transition_reply_is_only_recorded(
    stores: StoreFactory, clock: FakeClock
) -> None:
    """A transition whose reply a newer one overtook is recorded, not mirrored a second time."""
    policy = BreakerPolicy(failure_threshold=1, reset_timeout=5)
    breaker = CircuitBreaker("svc", policy, clock=clock, store=stores())
    nested: list[str] = []

    class Overtake:
        """Before the trip is applied, 2 s pass and another call's reply arrives first."""

        def before_transition(self, event: str) -> None:
            if event == "trip" and not nested:
                clock.advance(2)
                nested.append(breaker.call(lambda: "overtakes"))

    breaker.machine.add_listener(Overtake())  # type: ignore[no-untyped-call]
    fail(breaker)  # trips at second 0
    assert nested == ["overtakes"]
    assert [(r.seq, r.event, r.generation) for r in breaker.audit] == [(1, "trip", 1)]
    metrics = breaker.metrics()
    assert (metrics.state, metrics.transitions, metrics.retry_after) == ("open", 1, 3)


def test_store_transitions_hand_listeners_the_stores_evidence(
    stores: StoreFactory, clock: FakeClock
) -> None:
    """Only attempt_reset is given an opening time, only a timed-out retrip a half-open start."""
    policy = BreakerPolicy(failure_threshold=1, reset_timeout=1, half_open_timeout=2)
    a = CircuitBreaker("svc", policy, clock=clock, store=stores())
    evidence = Evidence()
    a.machine.add_listener(evidence)  # type: ignore[no-untyped-call]
    fail(a)  # trip
    clock.advance(1)
    fail(a)  # attempt_reset, then the trial fails: retrip
    clock.advance(a.metrics().retry_after or 0)

    def stuck_trial() -> str:
        clock.advance(2)
        with pytest.raises(CircuitOpenError):
            a.call(lambda: "never runs")  # this acquire retrips the timed-out episode
        return "late"

    assert a.call(stuck_trial) == "late"  # attempt_reset
    assert a.send("reset") == "closed"
    assert evidence.seen == [
        ("trip", None, None),
        ("attempt_reset", 0.0, None),
        ("retrip", None, None),
        ("attempt_reset", 0.0, None),
        ("retrip", None, 0.0),
        ("reset", None, None),
    ]


# ---------------------------------------------------------------------------- degraded


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_failed_record_counts_the_outcome_locally(
    dead_redis_store: RedisStore, clock: FakeClock, mode: str
) -> None:
    """A record the store refused is counted on local state, its retry-after hint included."""
    policy = BreakerPolicy(failure_threshold=1, reset_timeout=1, max_reset_timeout=5)
    breaker = CircuitBreaker(
        "svc", policy, clock=clock, store=dead_redis_store, is_failure=retry_after_hint
    )

    async def a503() -> int:
        return 503

    if mode == "sync":
        assert breaker.call(lambda: 503) == 503
    else:

        async def scenario() -> None:
            assert await breaker.acall(a503) == 503

        run_closing(dead_redis_store, scenario)
    metrics = breaker.metrics()
    assert (metrics.state, metrics.degraded, metrics.store_errors) == ("open", True, 1)
    assert metrics.open_duration == 5  # the 7 s hint, capped by max_reset_timeout
    [trip] = breaker.audit
    assert (trip.event, trip.generation) == ("trip", None)
    assert trip.reason == (
        "local (shared store unavailable): 1 consecutive failures ≥ 1; open for 5s"
    )


def test_degraded_calls_keep_their_timing_and_hint(
    dead_redis_store: RedisStore, clock: FakeClock
) -> None:
    """Before retry_interval, outcomes are recorded locally with their duration and hint."""
    policy = BreakerPolicy(
        failure_threshold=1,
        reset_timeout=1,
        max_reset_timeout=5,
        window=CountWindow(size=10),
        slow_call_duration=1,
    )
    breaker = CircuitBreaker(
        "svc", policy, clock=clock, store=dead_redis_store, is_failure=retry_after_hint
    )
    assert breaker.call(lambda: "ok") == "ok"  # its record is refused: degraded from now on

    def slow() -> str:
        clock.advance(1.5)
        return "slow"

    assert breaker.call(slow) == "slow"
    assert breaker.metrics().slow_call_count == 1
    assert breaker.call(lambda: 503) == 503  # trips the local state
    metrics = breaker.metrics()
    assert (metrics.state, metrics.open_duration, metrics.store_errors) == ("open", 5, 1)
    assert metrics.window_calls == 3  # the local window, while degraded


def test_a_degraded_breaker_asks_again_only_after_retry_interval(
    dead_redis_store: RedisStore, clock: FakeClock
) -> None:
    """Degraded, an open breaker moves on by the local rules: no round trip before retry time."""
    policy = BreakerPolicy(failure_threshold=1, reset_timeout=1)
    breaker = CircuitBreaker("svc", policy, clock=clock, store=dead_redis_store)
    fail(breaker)  # refused record: degraded (retry in 60 s), tripped locally
    assert breaker.metrics().store_errors == 1
    clock.advance(1)
    assert breaker.call(lambda: "trial") == "trial"  # attempt_reset, recover: local
    assert [(r.event, r.generation) for r in breaker.audit] == [
        ("trip", None),
        ("attempt_reset", None),
        ("recover", None),
    ]
    assert breaker.metrics().store_errors == 1
    fail(breaker)
    clock.advance(59)  # the retry time has come: an open mirror asks the store again
    assert breaker.call(lambda: "asks") == "asks"
    assert breaker.metrics().store_errors == 2


def test_a_mirrored_half_open_episode_times_out_locally(
    redis_server: RedisServer, stores: StoreFactory, clock: FakeClock
) -> None:
    """The store dies mid-episode: the local half-open timeout counts from the shared start."""
    policy = TIMED_TRIALS
    breaker = CircuitBreaker("svc", policy, clock=clock, store=stores())
    fail(breaker)  # second 0
    clock.advance(1.5)

    def trial() -> str:
        redis_server.kill()
        return "trial"

    assert breaker.call(trial) == "trial"  # admitted by the store at 1.5; its record fails
    assert (breaker.state, breaker.metrics().degraded) == ("half_open", True)
    clock.advance(0.5)  # 0.5 s into the episode (2 s into the breaker's life)
    assert breaker.call(lambda: "second trial") == "second trial"
    clock.advance(1.5)  # 2 s into the episode: timed out
    with pytest.raises(CircuitOpenError):
        breaker.call(lambda: "never runs")
    assert [(r.event, r.generation) for r in breaker.audit] == [
        ("trip", 1),
        ("attempt_reset", 2),
        ("retrip", None),
    ]
    assert breaker.audit[-1].reason.endswith("half-open timed out after 2s; open for 1s")


def test_the_first_answer_after_an_outage_resyncs(
    redis_server: RedisServer,
    stores: StoreFactory,
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A store back with the entry it had: its first reply ends the outage, logged once each way."""
    caplog.set_level(logging.INFO, logger="breaker_fsm")
    breaker = CircuitBreaker("svc", BreakerPolicy(failure_threshold=3), clock=clock, store=stores())
    assert breaker.call(lambda: "up") == "up"
    with redis_server.client() as client:
        client.save()  # a snapshot: the restarted server loads the same entry (same epoch)
    redis_server.kill()
    assert breaker.call(lambda: "local") == "local"  # its record is refused: degraded
    redis_server.restart()
    assert breaker.metrics().degraded is True
    clock.advance(1)  # retry_interval
    fail(breaker)  # its record is answered: an ordinary closed reply
    metrics = breaker.metrics()
    assert (metrics.degraded, metrics.failure_count, metrics.store_errors) == (False, 1, 1)
    logged = [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "breaker_fsm"]
    [(down_level, down), (up_level, up)] = logged
    assert down_level == logging.WARNING
    assert down.startswith("breaker 'svc': shared store unavailable (ConnectionError: ")
    assert down.endswith("); running on local state, retrying every 1s")
    assert up_level == logging.INFO
    assert up == "breaker 'svc': shared store answers again; back on shared state"


def test_an_operator_event_while_degraded_says_what_it_did(
    dead_redis_store: RedisStore, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """send() with no store applies the event locally and warns that the store's state wins."""
    breaker = CircuitBreaker("svc", BreakerPolicy(), clock=clock, store=dead_redis_store)
    assert breaker.send("force_open") == "forced_open"
    [unavailable, applied] = [r.getMessage() for r in caplog.records if r.name == "breaker_fsm"]
    assert unavailable.startswith("breaker 'svc': shared store unavailable (ConnectionError: ")
    assert applied == (
        "breaker 'svc': 'force_open' applied to this process's state only: the shared store "
        "is unavailable, and its state wins when it answers again"
    )
    assert (breaker.audit[0].event, breaker.audit[0].generation) == ("force_open", None)


def test_a_local_override_yields_to_the_store_at_the_next_call(
    redis_server: RedisServer, stores: StoreFactory, clock: FakeClock
) -> None:
    """An override applied alone in an outage is checked against the store at the next call."""
    CircuitBreaker("svc", BreakerPolicy(), clock=clock, store=stores()).call(lambda: "entry")
    with redis_server.client() as client:
        client.save()  # the restarted server loads the same closed entry
    breaker = CircuitBreaker("svc", BreakerPolicy(), clock=clock, store=stores(retry_interval=0.5))

    def outage() -> str:
        redis_server.kill()
        assert breaker.send("force_open") == "forced_open"  # applied locally only
        clock.advance(0.5)  # retry_interval
        redis_server.restart()
        return "ran"

    assert breaker.call(outage) == "ran"  # recorded by the store: closed, as seen; resynced
    assert breaker.metrics().degraded is False
    assert breaker.call(lambda: "after") == "after"  # asks at once: the store says closed
    assert (breaker.state, breaker.metrics().store_errors) == ("closed", 1)


def test_mirrored_trial_counts_stay_fresh_within_a_half_open_episode(
    redis_server: RedisServer, stores: StoreFactory, clock: FakeClock
) -> None:
    """Trial successes the store counted carry over when the store dies mid-episode."""
    policy = BreakerPolicy(
        failure_threshold=1, reset_timeout=1, half_open_max_calls=3, success_threshold=3
    )
    breaker = CircuitBreaker("svc", policy, clock=clock, store=stores())
    fail(breaker)
    clock.advance(1)
    assert breaker.call(lambda: "trial 1") == "trial 1"  # the store moves it to half_open
    assert breaker.call(lambda: "trial 2") == "trial 2"  # counted by the store: 2 of 3
    assert breaker.metrics().state == "half_open"
    redis_server.kill()
    assert breaker.call(lambda: "trial 3") == "trial 3"  # counted locally: the third of 3
    assert (breaker.state, breaker.metrics().degraded) == ("closed", True)
    assert [r.event for r in breaker.audit][-1] == "recover"


def test_a_degraded_breaker_closed_by_a_local_transition_asks_the_store_again(
    redis_server: RedisServer, stores: StoreFactory, clock: FakeClock
) -> None:
    """Local transitions during an outage do not stop the retry every retry_interval."""
    policy = BreakerPolicy(failure_threshold=1, reset_timeout=1)
    breaker = CircuitBreaker("svc", policy, clock=clock, store=stores())
    assert breaker.call(lambda: "up") == "up"
    redis_server.kill()
    fail(breaker)  # its record fails: degraded, and the local rules trip it
    clock.advance(1)
    assert breaker.call(lambda: "trial") == "trial"  # local attempt_reset and recover
    assert [r.generation for r in breaker.audit] == [None, None, None]
    assert (breaker.state, breaker.metrics().degraded) == ("closed", True)
    errors = breaker.metrics().store_errors
    redis_server.restart()
    clock.advance(1)  # past retry_interval: the next outcome goes to the store
    assert breaker.call(lambda: "back") == "back"
    metrics = breaker.metrics()
    assert (metrics.degraded, metrics.store_errors, metrics.state) == (False, errors, "closed")


def seven_seconds(exc: BaseException) -> float:
    """An ``is_failure_exception`` predicate: every failure asks for 7 s open."""
    return 7.0


HINTED = BreakerPolicy(failure_threshold=1, reset_timeout=1, max_reset_timeout=5)


@pytest.mark.parametrize("store", ["answers", "degraded"])
def test_an_awaited_failure_keeps_its_hint_and_tells_call_sinks_what_it_raised(
    stores: StoreFactory, dead_redis_store: RedisStore, clock: FakeClock, store: str
) -> None:
    """acall on a shared breaker, the store answering or not: the failure's open-duration
    hint (capped) decides the open episode, and the call sink's record carries the exception."""
    shared = stores() if store == "answers" else dead_redis_store
    seen: list[CallRecord] = []
    breaker = CircuitBreaker(
        "svc",
        HINTED,
        clock=clock,
        store=shared,
        is_failure_exception=seven_seconds,
        call_sinks=[seen.append],
    )
    raised: list[BaseException] = []

    async def scenario() -> None:
        assert await breaker.acall(aok) == "ok"  # a dead store degrades here
        with pytest.raises(Boom) as caught:
            await breaker.acall(aboom)
        raised.append(caught.value)

    run_closing(shared, scenario)
    metrics = breaker.metrics()
    assert (metrics.state, metrics.open_duration) == ("open", 5)
    assert metrics.store_errors == (0 if store == "answers" else 1)
    assert [(r.outcome, r.exception) for r in seen] == [("success", None), ("failure", raised[0])]
    [trip] = breaker.audit
    assert trip.reason is not None
    assert trip.reason.endswith("open for 5s")
