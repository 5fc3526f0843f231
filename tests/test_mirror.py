"""The shared breaker's mirror, against a scripted in-memory ``SharedState`` (no Redis).

A :class:`ScriptedState` answers each round trip with the next reply (or exception) a test
scripted, and keeps the arguments it was sent: so each test pins what the mirror sends and
what it makes of one kind of reply, including replies a live store rarely gives on cue
(an overtaken generation, an entry recreated under a new epoch, a refusal from a server
whose clock disagrees). Every test runs through ``call``/``send`` and ``acall``/``asend``:
the asyncio paths must use the entry's ``a``-prefixed twins.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from typing import Any, ClassVar, NoReturn

import pytest

from breaker_fsm import (
    BreakerPolicy,
    CallRecord,
    CircuitBreaker,
    CircuitOpenError,
    CountWindow,
    IllegalTransitionError,
    TimeWindow,
)
from breaker_fsm._machine import STATES
from breaker_fsm._mirror import LOCAL_GEN
from breaker_fsm._outcome import FAILED, NEUTRAL, SUCCESS
from breaker_fsm._store import EVENT_CODES, Seed, SharedState, SharedStore, StoreReply
from breaker_fsm.testing import FakeClock
from tests.helpers import Boom, aok, boom, ok
from tests.scripted import Call, ScriptedState, ScriptedStore, Unscripted, reply, tripped

CLOSED, OPEN, HALF_OPEN, FORCED_OPEN, DISABLED = range(5)


Make = Callable[..., CircuitBreaker]
Invoke = Callable[..., Any]
Send = Callable[..., str]
Twin = Callable[[str], str]


@pytest.fixture
def entry() -> ScriptedState:
    """The scripted store entry of the test's breakers."""
    return ScriptedState()


@pytest.fixture
def make(entry: ScriptedState, clock: FakeClock) -> Make:
    """``make(options={...}, **policy)``: a shared breaker "svc" on the scripted entry."""

    def build(*, options: dict[str, Any] | None = None, **policy: Any) -> CircuitBreaker:
        policy.setdefault("reset_timeout", 10)
        store = ScriptedStore(entry)
        breaker = CircuitBreaker(
            "svc", BreakerPolicy(**policy), clock=clock, store=store, **(options or {})
        )
        assert store.bound == [("svc", breaker.policy)]
        return breaker

    return build


@pytest.fixture(params=["sync", "async"])
def mode(request: pytest.FixtureRequest) -> str:
    """``call``/``send`` and the entry's sync operations, or ``acall``/``asend`` and twins."""
    return str(request.param)


@pytest.fixture
def twin(mode: str) -> Twin:
    """The name of the entry operation that ``mode`` must use: ``record`` or ``arecord``."""
    return lambda op: op if mode == "sync" else f"a{op}"


@pytest.fixture
def invoke(mode: str) -> Invoke:
    """``invoke(breaker, func, *args, **kwargs)``: through ``call``, or ``acall`` awaited."""

    def run(breaker: CircuitBreaker, func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if mode == "sync":
            return breaker.call(func, *args, **kwargs)

        async def operation(*a: Any, **k: Any) -> Any:
            return func(*a, **k)

        return asyncio.run(breaker.acall(operation, *args, **kwargs))

    return run


@pytest.fixture
def send(mode: str) -> Send:
    """``send(breaker, event, reason=None)``: through ``send``, or ``asend`` awaited."""

    def run(breaker: CircuitBreaker, event: str, reason: str | None = None) -> str:
        if mode == "sync":
            return breaker.send(event, reason=reason)
        return asyncio.run(breaker.asend(event, reason=reason))

    return run


def failed(invoke: Invoke, breaker: CircuitBreaker, times: int = 1) -> None:
    """``times`` failed calls through ``breaker``, each re-raising ``Boom``."""
    for _ in range(times):
        with pytest.raises(Boom):
            invoke(breaker, boom)


def refused(invoke: Invoke, breaker: CircuitBreaker) -> CircuitOpenError:
    """A call ``breaker`` refuses: its ``CircuitOpenError``."""
    with pytest.raises(CircuitOpenError) as info:
        invoke(breaker, lambda: pytest.fail("a refused call ran"))
    return info.value


SEED = Seed(CLOSED, 0, 0, 10.0, 0.0)  # a fresh breaker's: closed, generation 0


# ------------------------------------------------------------------------ the fake itself


def test_the_scripted_entry_and_store_meet_the_protocols(entry: ScriptedState) -> None:
    """The fake is a SharedState and its store a SharedStore, so the mirror sees no
    difference from RedisStore's; an unscripted round trip is an error, not an outage."""
    assert isinstance(entry, SharedState)
    assert isinstance(ScriptedStore(entry), SharedStore)
    with pytest.raises(Unscripted):
        entry.record(0, 0, 0.0, None, SEED)


# ------------------------------------------------------------------------ closed


def test_a_closed_call_is_admitted_by_the_mirror_and_recorded_in_one_round_trip(
    make: Make, entry: ScriptedState, invoke: Invoke, twin: Twin
) -> None:
    """No round trip admits a closed call; its outcome goes to the store with the
    generation it was admitted under, and an empty reply is a success that ends the streak."""
    breaker = make(failure_threshold=3)
    entry.script(reply(streak=1), None)
    failed(invoke, breaker)
    assert breaker.metrics().failure_count == 1
    assert invoke(breaker, ok, "value") == "value"
    assert entry.calls == [
        (twin("record"), (0, FAILED, 0.0, None, SEED)),
        (twin("record"), (0, SUCCESS, 0.0, None, SEED._replace(epoch=1))),  # the entry read
    ]
    metrics = breaker.metrics()
    assert (metrics.failure_count, metrics.success_count, metrics.error_count) == (0, 1, 1)
    assert (metrics.state, metrics.degraded, metrics.store_errors) == ("closed", False, 0)


def test_the_shared_streak_and_window_are_the_mirrors(
    make: Make, entry: ScriptedState, invoke: Invoke
) -> None:
    """The streak and window metrics() reports are the store's, as its last reply said."""
    breaker = make(failure_threshold=5, window=CountWindow(size=10), minimum_calls=5)
    entry.script(reply(streak=4, window=(9, 6, 0)))
    failed(invoke, breaker)
    metrics = breaker.metrics()
    assert (metrics.failure_count, metrics.window_calls) == (4, 9)
    assert metrics.failure_rate == pytest.approx(6 / 9)
    assert (metrics.error_count, metrics.transitions) == (1, 0)  # lifetime totals: this process


def test_a_neutral_outcome_outside_half_open_makes_no_round_trip(
    make: Make, entry: ScriptedState, invoke: Invoke
) -> None:
    """A neutral call cannot change a closed store entry: it is only counted here."""
    breaker = make(failure_threshold=1, ignore_exceptions=(KeyError,))
    with pytest.raises(KeyError):
        invoke(breaker, lambda: {}["x"])
    assert entry.calls == []
    assert breaker.metrics().ignored_count == 1


# ------------------------------------------------------------------------ transitions


def test_a_reply_reporting_a_trip_opens_the_mirror_under_the_replys_generation(
    make: Make, entry: ScriptedState, invoke: Invoke, clock: FakeClock
) -> None:
    """The trip the store made goes through the machine and the audit trail with the
    store's generation; the mirror then refuses alone, on the server's timing."""
    breaker = make(failure_threshold=2)
    entry.script(reply(streak=1), tripped(gen=3, streak=2, window=(2, 2, 0), elapsed=1.5))
    failed(invoke, breaker, 2)
    assert breaker.state == "open"
    assert breaker.machine.current_state_value == "open"
    [record] = breaker.audit
    assert (record.event, record.source, record.target) == ("trip", "closed", "open")
    assert (record.seq, record.generation) == (3, 3)
    assert record.counters["consecutive_failures"] == 2
    assert "2 consecutive failures" in record.reason
    metrics = breaker.metrics()
    assert (metrics.transitions, metrics.failure_count, metrics.open_duration) == (3, 2, 10.0)
    assert metrics.retry_after == pytest.approx(8.5)  # the store opened it 1.5 s ago
    clock.advance(8)
    assert refused(invoke, breaker).retry_after == pytest.approx(0.5)
    assert len(entry.calls) == 2  # refused by the mirror: no round trip


def test_the_store_admits_a_trial_and_its_outcome_recovers(
    make: Make, entry: ScriptedState, invoke: Invoke, twin: Twin, clock: FakeClock
) -> None:
    """Past the mirrored deadline one acquire asks the store; the trial runs under the
    reply's generation and the recover reply closes the mirror."""
    breaker = make(failure_threshold=1)
    entry.script(tripped(gen=1))
    failed(invoke, breaker)
    clock.advance(10)
    half_open = reply(
        "half_open", gen=2, event="attempt_reset", source="open", episode=1, justified=10.0
    )
    recovered = reply("closed", gen=3, event="recover", source="half_open", trials=(1, 0))
    entry.script(half_open, recovered)
    seen: list[str] = []
    assert invoke(breaker, lambda: seen.append(breaker.state) or "trial") == "trial"
    assert seen == ["half_open"]
    assert [c.op for c in entry.calls] == [twin("record"), twin("acquire"), twin("record")]
    assert entry.calls[2].args[:2] == (2, SUCCESS)  # admitted under the store's generation
    assert [(r.event, r.generation) for r in breaker.audit] == [
        ("trip", 1),
        ("attempt_reset", 2),
        ("recover", 3),
    ]
    assert (breaker.state, breaker.metrics().transitions) == ("closed", 3)


def test_a_refused_acquire_refuses_on_the_servers_timing(
    make: Make, entry: ScriptedState, invoke: Invoke, clock: FakeClock
) -> None:
    """A mirror that asks a little early takes the server's elapsed time: retry_after is
    what the server has left, and the mirror refuses alone until then."""
    breaker = make(failure_threshold=1)
    entry.script(tripped(gen=1))
    failed(invoke, breaker)
    clock.advance(10)
    entry.script(reply("open", gen=1, ok=0, episode=1, elapsed=7.0))
    assert refused(invoke, breaker).retry_after == pytest.approx(3.0)
    clock.advance(2.5)
    assert refused(invoke, breaker).retry_after == pytest.approx(0.5)
    assert len(entry.calls) == 2
    assert breaker.metrics().rejected_count == 2


def test_a_full_half_open_refuses_and_a_disabled_store_bypasses(
    make: Make, entry: ScriptedState, invoke: Invoke, clock: FakeClock
) -> None:
    """An acquire refused in half_open raises CircuitOpenError(half_open, None); a store
    that says disabled lets the call run, unrecorded."""
    breaker = make(failure_threshold=1)
    entry.script(tripped(gen=1))
    failed(invoke, breaker)
    clock.advance(10)
    entry.script(reply("half_open", gen=2, ok=0, episode=1))
    error = refused(invoke, breaker)
    assert (error.state, error.retry_after) == ("half_open", None)
    assert breaker.state == "half_open"
    entry.script(reply("disabled", gen=3, ok=0))
    assert invoke(breaker, ok, "ran") == "ran"
    assert breaker.state == "disabled"
    assert breaker.metrics().total_requests == 1  # the first failure only
    assert len(entry.calls) == 3  # the bypassed call recorded nothing


def test_an_older_generation_never_rolls_the_mirror_back(
    make: Make, entry: ScriptedState, invoke: Invoke
) -> None:
    """A reply of an older generation than the mirror's (overtaken on the way) is ignored;
    an overtaken transition is recorded in the trail but moves nothing."""
    breaker = make(failure_threshold=3)
    entry.script(reply(gen=5, epoch=7, streak=1))
    failed(invoke, breaker)
    assert (breaker.state, breaker.metrics().transitions) == ("closed", 5)
    entry.script(reply("open", gen=3, epoch=7, episode=1))
    failed(invoke, breaker)
    assert (breaker.state, breaker.metrics().transitions) == ("closed", 5)
    entry.script(tripped(gen=4, epoch=7, streak=3))
    failed(invoke, breaker)
    assert (breaker.state, breaker.metrics().transitions) == ("closed", 5)
    assert breaker.machine.current_state_value == "closed"
    assert [(r.event, r.generation) for r in breaker.audit] == [("trip", 4)]


def test_a_recreated_entry_is_adopted_whatever_its_generation(
    make: Make, entry: ScriptedState, invoke: Invoke
) -> None:
    """A reply under a new epoch (the entry was lost and recreated) is adopted whole,
    even with a lower generation."""
    breaker = make(failure_threshold=3)
    entry.script(reply(gen=5, epoch=7, streak=1))
    failed(invoke, breaker)
    entry.script(reply("open", gen=2, epoch=8, streak=3, episode=2, open_duration=20.0))
    failed(invoke, breaker)
    metrics = breaker.metrics()
    assert (metrics.state, metrics.transitions, metrics.open_duration) == ("open", 2, 20.0)
    assert metrics.retry_after == pytest.approx(20.0)
    assert breaker.machine.current_state_value == "open"
    assert list(breaker.audit) == []  # adopted, not a transition this process made


# ------------------------------------------------------------------------ what is sent


def test_the_seed_carries_the_mirrored_episode(
    make: Make, entry: ScriptedState, invoke: Invoke, send: Send, clock: FakeClock
) -> None:
    """Every round trip sends the mirrored state to recreate a lost entry: an open one
    with the seconds it has left."""
    breaker = make(failure_threshold=1)
    entry.script(tripped(gen=4, episode=2, open_duration=20.0))
    failed(invoke, breaker)
    clock.advance(6)
    entry.script(reply("closed", gen=5, event="reset", source="open"))
    assert send(breaker, "reset") == "closed"
    assert entry.calls[-1].args == (
        EVENT_CODES["reset"],
        0.0,
        Seed(OPEN, 4, 2, 20.0, 14.0, epoch=1),
    )


def test_jitter_is_drawn_only_for_what_could_open(
    make: Make, entry: ScriptedState, invoke: Invoke
) -> None:
    """A failure sends a jitter drawn from the breaker's rng; a success without a window,
    which cannot trip, draws none."""
    breaker = make(failure_threshold=3, reset_timeout_jitter=0.5, options={"rng": random.Random(7)})
    draws = random.Random(7)
    entry.script(reply(streak=1), None, reply(streak=1))
    failed(invoke, breaker)
    invoke(breaker, ok)
    failed(invoke, breaker)
    sent = [c.args[2] for c in entry.calls]
    assert sent == [draws.uniform(-0.5, 0.5), 0.0, draws.uniform(-0.5, 0.5)]


def test_a_retry_after_hint_and_a_slow_call_reach_the_store(
    make: Make, entry: ScriptedState, invoke: Invoke, clock: FakeClock
) -> None:
    """is_failure's seconds go as the hint; the caller times a slow call and says so."""
    breaker = make(
        failure_threshold=5,
        window=CountWindow(size=10),
        slow_call_duration=1.0,
        options={"is_failure": lambda result: 30.0 if result == 503 else False},
    )
    entry.script(reply(streak=1), reply())

    def slow() -> str:
        clock.advance(2)
        return "slow"

    assert invoke(breaker, ok, 503) == 503
    assert invoke(breaker, slow) == "slow"
    assert [c.args[1::2] for c in entry.calls] == [(FAILED, 30.0), (2, None)]  # SLOW == 2
    assert breaker.metrics().slow_call_count == 1


def test_a_neutral_trial_is_sent_to_return_its_permit(
    make: Make, entry: ScriptedState, invoke: Invoke, clock: FakeClock
) -> None:
    """In half_open a neutral outcome goes to the store, which holds the permits."""
    breaker = make(failure_threshold=1)
    entry.script(tripped(gen=1))
    failed(invoke, breaker)
    clock.advance(10)
    entry.script(
        reply("half_open", gen=2, event="attempt_reset", source="open", justified=10.0),
        reply("half_open", gen=2),
    )
    with pytest.raises(KeyboardInterrupt):
        invoke(breaker, lambda: (_ for _ in ()).throw(KeyboardInterrupt))
    assert entry.calls[-1].args[:2] == (2, NEUTRAL)
    assert breaker.metrics().ignored_count == 1


# ------------------------------------------------------------------------ operator events


def test_an_operator_reply_that_performs_returns_the_new_state(
    make: Make, entry: ScriptedState, send: Send, twin: Twin
) -> None:
    """send() applies the event in the store; its transition is recorded with the reason."""
    breaker = make(failure_threshold=1)
    entry.script(reply("forced_open", gen=1, event="force_open", source="closed"))
    assert send(breaker, "force_open", reason="maintenance") == "forced_open"
    assert entry.calls == [(twin("operator"), (EVENT_CODES["force_open"], 0.0, SEED))]
    [record] = breaker.audit
    assert (record.event, record.reason, record.generation) == ("force_open", "maintenance", 1)
    assert breaker.state == "forced_open"


@pytest.mark.parametrize(
    ("ok", "detail"), [(0, "not allowed in state 'forced_open'"), (2, "its guard does not hold")]
)
def test_an_operator_reply_that_refuses_raises_illegal_transition(
    make: Make, entry: ScriptedState, send: Send, ok: int, detail: str
) -> None:
    """ok=0 (not legal) or 2 (guard) raises IllegalTransitionError naming the event and
    the store's state, which the mirror adopts; nothing is recorded."""
    breaker = make(failure_threshold=1)
    entry.script(reply("forced_open", gen=6, ok=ok))
    with pytest.raises(IllegalTransitionError, match=detail) as info:
        send(breaker, "disable")
    assert (info.value.event, info.value.state) == ("disable", "forced_open")
    assert (breaker.state, breaker.metrics().transitions) == ("forced_open", 6)
    assert list(breaker.audit) == []


def test_an_unknown_event_raises_without_a_round_trip(
    make: Make, entry: ScriptedState, send: Send
) -> None:
    """An event the machine does not know is refused before asking the store."""
    breaker = make(failure_threshold=1)
    with pytest.raises(IllegalTransitionError, match="unknown event"):
        send(breaker, "explode")
    assert entry.calls == []


# ------------------------------------------------------------------------ outages


def test_a_store_error_degrades_warns_once_and_the_next_answer_resyncs(
    make: Make,
    entry: ScriptedState,
    invoke: Invoke,
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An exception from the store puts the breaker on local state with one warning; it
    asks again only after retry_interval, and the first answer puts it back."""
    caplog.set_level(logging.INFO, logger="breaker_fsm")
    breaker = make(failure_threshold=2)
    entry.script(reply(epoch=3), ConnectionError("store down"))
    invoke(breaker, ok)  # the mirror follows epoch 3
    failed(invoke, breaker)  # counted locally
    metrics = breaker.metrics()
    assert (metrics.degraded, metrics.store_errors, metrics.failure_count) == (True, 1, 1)
    failed(invoke, breaker)  # before retry_interval: no round trip; trips locally
    assert len(entry.calls) == 2
    [local] = breaker.audit
    assert (local.event, local.generation) == ("trip", None)
    assert local.reason.startswith("local (shared store unavailable): 2 consecutive failures")
    clock.advance(10)  # past the local episode and the retry time: the store is asked
    entry.script(TimeoutError("still down"))
    assert invoke(breaker, ok, "local trial") == "local trial"  # admitted on local state
    assert (breaker.state, breaker.metrics().store_errors) == ("closed", 2)
    clock.advance(5)
    entry.script(reply(gen=9, epoch=3, streak=1))  # the same entry, moved on meanwhile
    failed(invoke, breaker)
    metrics = breaker.metrics()
    assert (metrics.degraded, metrics.state, metrics.transitions) == (False, "closed", 9)
    assert metrics.failure_count == 1  # the store's streak, not the local one
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        "breaker 'svc': shared store unavailable (ConnectionError: store down); running on "
        "local state, retrying every 5s"
    ]
    infos = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert infos == ["breaker 'svc': shared store answers again; back on shared state"]


def test_an_operator_event_while_the_store_is_down_applies_locally(
    make: Make, entry: ScriptedState, send: Send, caplog: pytest.LogCaptureFixture
) -> None:
    """send() during an outage changes this process's state only, and says so."""
    caplog.set_level(logging.WARNING, logger="breaker_fsm")
    breaker = make(failure_threshold=1)
    entry.script(ConnectionError("store down"))
    assert send(breaker, "force_open", reason="maintenance") == "forced_open"
    assert send(breaker, "reset") == "closed"  # before retry_interval: no round trip
    assert len(entry.calls) == 1
    assert [(r.event, r.generation) for r in breaker.audit] == [
        ("force_open", None),
        ("reset", None),
    ]
    messages = [r.getMessage() for r in caplog.records]
    assert "this process's state only" in messages[-1]
    assert breaker.metrics().degraded


# ------------------------------------------------------------------------ a store that pushes


class ScriptedPushingState(ScriptedState):
    """A scripted ``PushingState``: the test delivers the pushes itself (``_pushed``,
    ``_own_pushed``, ``_reread``, as the push thread does); an answer may be a callable,
    run in the round trip (to push during it, then answer or raise)."""

    fingerprint = 0  # no policy digest: never warns

    def __init__(self) -> None:
        super().__init__(retry_interval=60.0)
        self.followers: list[Any] = []
        self.token = 1  # the channel is up, and stays up

    def _answer(self, op: str, *args: Any) -> Any:
        if self.answers and callable(self.answers[0]):
            self.calls.append(Call(op, args))
            return self.answers.popleft()()  # type: ignore[operator]
        return super()._answer(op, *args)

    def follow(self, mirror: Any) -> None:
        self.followers.append(mirror)

    def sync(self, seed: Seed) -> StoreReply:
        return self._answer("sync", seed)  # type: ignore[no-any-return]

    def push_token(self) -> int | None:
        return self.token

    def confirm_push(self, link: Any, token: int | None) -> None:
        if token is not None and token == self.token:
            link.live = True


@pytest.fixture
def pushing() -> ScriptedPushingState:
    return ScriptedPushingState()


def on_pushing(entry: ScriptedPushingState, clock: FakeClock, **policy: Any) -> CircuitBreaker:
    """A shared breaker "svc" following ``entry``'s pushes (not live until a read)."""
    policy.setdefault("reset_timeout", 10)
    breaker = CircuitBreaker(
        "svc", BreakerPolicy(**policy), clock=clock, store=ScriptedStore(entry)
    )
    assert entry.followers == [breaker]
    assert breaker.metrics().live is False
    return breaker


def live_closed(entry: ScriptedPushingState, breaker: CircuitBreaker, epoch: int = 1) -> None:
    """One successful call: its admission reads the state under the push token (live)."""
    entry.script(reply(epoch=epoch), None)
    assert breaker.call(ok) == "ok"
    assert breaker.metrics().live
    entry.calls.clear()


def test_an_admission_under_a_push_token_makes_the_mirror_live(
    pushing: ScriptedPushingState, clock: FakeClock, invoke: Invoke, twin: Twin
) -> None:
    """A mirror that is not live asks before a call; the reply, read under the channel's
    token, makes it live: the next call is admitted without a round trip."""
    breaker = on_pushing(pushing, clock, failure_threshold=3)
    pushing.script(reply(), None, None)
    assert invoke(breaker, ok) == "ok"
    assert breaker.metrics().live
    assert invoke(breaker, ok, "again") == "again"
    assert [c.op for c in pushing.calls] == [twin("acquire"), twin("record"), twin("record")]


def test_a_re_read_that_finds_the_entry_gone_puts_the_open_mirror_back(
    pushing: ScriptedPushingState, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """The push thread re-reads no entry under an open mirror: it sends the mirrored
    episode back (sync), warns once naming the generation, and follows the new entry."""
    caplog.set_level(logging.WARNING, logger="breaker_fsm")
    breaker = on_pushing(pushing, clock, failure_threshold=1)
    pushing.script(reply(), tripped())
    with pytest.raises(Boom):
        breaker.call(boom)
    clock.advance(4)
    pushing.script(reply("open", gen=1, epoch=1, episode=1, elapsed=4.0))  # same entry
    assert breaker._reread(None) is True
    assert caplog.records == []
    pushing.script(reply("open", gen=1, epoch=2, episode=1, elapsed=4.0))  # recreated
    assert breaker._reread(None) is True
    assert [c.args[0] for c in pushing.calls[-2:]] == [Seed(OPEN, 1, 1, 10.0, 6.0, 1)] * 2
    assert [r.getMessage() for r in caplog.records] == [
        "breaker 'svc': the shared store had lost transitions this member saw (a failover, or "
        "a restart); put back its state at generation 1 (open)"
    ]
    assert (breaker.state, breaker.metrics().retry_after) == ("open", 6.0)
    assert breaker.metrics().store_errors == 0
    clock.advance(6)
    pushing.script(reply("half_open", gen=2, epoch=2, event="attempt_reset", source="open"))
    pushing.script(reply("closed", gen=3, epoch=2, event="recover", source="half_open"))
    assert breaker.call(ok) == "ok"
    assert [(r.event, r.generation, r.life) for r in breaker.audit][1:] == [
        ("attempt_reset", 2, "shared:2"),
        ("recover", 3, "shared:2"),
    ]


def test_a_re_read_that_cannot_put_the_state_back_degrades_and_owes_nothing(
    pushing: ScriptedPushingState, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """A re-seed that fails: the mirror is not current (False), the breaker degrades with
    the usual warning, and no transition is owed to a push: the next own push is kept."""
    caplog.set_level(logging.WARNING, logger="breaker_fsm")
    breaker = on_pushing(pushing, clock, failure_threshold=1)
    pushing.script(reply(), tripped())
    with pytest.raises(Boom):
        breaker.call(boom)
    pushing.script(ConnectionError("gone"))
    assert breaker._reread(None) is False
    metrics = breaker.metrics()
    assert (metrics.degraded, metrics.store_errors, metrics.state) == (True, 1, "open")
    assert [r.getMessage() for r in caplog.records] == [
        "breaker 'svc': shared store unavailable (ConnectionError: gone); running on local "
        "state, retrying every 60s"
    ]
    breaker._own_pushed(reply("half_open", gen=2, event="attempt_reset", source="open"))
    assert [r.event for r in breaker.audit] == ["trip"]  # kept, not recorded
    assert breaker.metrics().degraded


def test_an_own_push_kept_for_a_lost_reply_is_recorded_but_never_rolls_back(
    pushing: ScriptedPushingState, clock: FakeClock
) -> None:
    """A member's own push arrives, then its round trip fails: the transition is recorded
    from the push. One from an older entry epoch than the mirror's is recorded only."""
    breaker = on_pushing(pushing, clock, failure_threshold=3)
    live_closed(pushing, breaker, epoch=2)
    late = tripped(gen=5, epoch=1)

    def push_then_fail() -> NoReturn:
        breaker._own_pushed(late)
        raise TimeoutError("reply lost")

    pushing.script(push_then_fail)
    with pytest.raises(Boom):
        breaker.call(boom)
    assert [(r.event, r.generation, r.life) for r in breaker.audit] == [("trip", 5, "shared:1")]
    metrics = breaker.metrics()
    assert (metrics.state, metrics.failure_count, metrics.degraded) == ("closed", 1, True)


def test_a_lost_reply_owes_one_transition_to_the_next_own_push(
    pushing: ScriptedPushingState, clock: FakeClock
) -> None:
    """A round trip that fails with nothing pushed yet owes one transition: the next own
    push records it (and the shared state wins again); a later own push is only kept."""
    breaker = on_pushing(pushing, clock, failure_threshold=1)
    live_closed(pushing, breaker)
    pushing.script(TimeoutError("reply lost"))
    with pytest.raises(Boom):
        breaker.call(boom)
    assert breaker.metrics().degraded
    breaker._own_pushed(tripped())
    assert not breaker.metrics().degraded
    assert [(r.event, r.generation) for r in breaker.audit] == [("trip", None), ("trip", 1)]
    breaker._own_pushed(reply("half_open", gen=2, event="attempt_reset", source="open"))
    assert [(r.event, r.generation) for r in breaker.audit] == [("trip", None), ("trip", 1)]


@pytest.mark.parametrize("trip", ["acquire", "record", "operator"])
def test_an_interrupted_round_trip_owes_its_transition_to_its_push(
    pushing: ScriptedPushingState, clock: FakeClock, invoke: Invoke, send: Send, trip: str
) -> None:
    """A round trip interrupted (a BaseException) re-raises the interruption, nothing
    degrades; its script may have run, so the member's own push of it is recorded."""
    breaker = on_pushing(pushing, clock, failure_threshold=1)
    if trip != "acquire":
        live_closed(pushing, breaker)
    pushing.script(KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt):
        _ = send(breaker, "force_open") if trip == "operator" else invoke(breaker, boom)
    assert list(breaker.audit) == []
    breaker._own_pushed(reply("forced_open", gen=1, event="force_open", source="closed"))
    assert [(r.event, r.generation) for r in breaker.audit] == [("force_open", 1)]
    metrics = breaker.metrics()
    assert (metrics.state, metrics.store_errors, metrics.degraded) == ("forced_open", 0, False)


# ------------------------------------------------------------------------ the local walk


def test_the_first_answer_after_a_local_trip_wins_in_the_entrys_first_epoch(
    make: Make, entry: ScriptedState, invoke: Invoke, clock: FakeClock
) -> None:
    """Degraded, the breaker tripped alone (a local generation, far above any shared one);
    the store's next answer, from the same entry (epoch 1, generation 0), is adopted whole."""
    breaker = make(failure_threshold=1)
    entry.script(ConnectionError("store down"))
    failed(invoke, breaker)
    assert (breaker.state, breaker.metrics().degraded) == ("open", True)
    clock.advance(10)  # past the local episode and the retry time
    entry.script(reply(epoch=1), None)
    assert invoke(breaker, ok, "shared again") == "shared again"
    metrics = breaker.metrics()
    assert (metrics.state, metrics.degraded, metrics.transitions) == ("closed", False, 0)
    assert [(r.event, r.generation) for r in breaker.audit] == [("trip", None)]


def test_local_generations_tell_a_stale_permit_from_a_trial(
    make: Make, entry: ScriptedState, clock: FakeClock
) -> None:
    """Degraded, each local transition starts a new generation: a permit of an earlier
    half-open episode settles as stale, not as a trial of the current one."""
    breaker = make(failure_threshold=1, reset_timeout=1, half_open_max_calls=2, success_threshold=2)
    entry.script(ConnectionError("store down"))
    with pytest.raises(Boom):
        breaker.call(boom)  # trips locally
    clock.advance(1)
    first, second = breaker.acquire(), breaker.acquire()  # the first is attempt_reset's
    first.failure()  # retrips
    clock.advance(breaker.metrics().retry_after or 0.0)
    third = breaker.acquire()  # a new half-open episode
    second.success()  # stale: counted, not a trial
    third.success()  # the one trial: one of two
    assert breaker.state == "half_open"
    assert [r.event for r in breaker.audit] == ["trip", "attempt_reset", "retrip", "attempt_reset"]
    assert (breaker.metrics().success_count, len(entry.calls)) == (2, 1)


def test_a_degraded_permit_settles_locally_with_its_timing(
    make: Make, entry: ScriptedState, clock: FakeClock
) -> None:
    """Degraded, a permit settles on local state without a round trip, timed from acquire."""
    breaker = make(failure_threshold=3, slow_call_duration=1, window=CountWindow(size=10))
    entry.script(ConnectionError("store down"))
    with pytest.raises(Boom):
        breaker.call(boom)
    with breaker.acquire():
        clock.advance(1.5)
    metrics = breaker.metrics()
    assert (metrics.success_count, metrics.slow_call_count, metrics.store_errors) == (1, 1, 1)
    assert len(entry.calls) == 1


def test_a_local_transition_records_the_evidence_its_guard_decided_on(
    make: Make, entry: ScriptedState, invoke: Invoke, clock: FakeClock
) -> None:
    """Degraded, a local trip's record holds the counters the guard decided on, even when
    a listener of the kept machine moves the clock past the window before it is applied."""
    breaker = make(failure_threshold=None, window=TimeWindow(seconds=10), minimum_calls=2)

    class LateListener:
        def before_transition(self) -> None:
            clock.advance(60)  # the window the guard read is gone by now

    breaker.machine.add_listener(LateListener())  # type: ignore[no-untyped-call]
    entry.script(ConnectionError("store down"))
    failed(invoke, breaker, 2)  # degrades, then trips locally on the local window
    (record,) = breaker.audit
    assert (record.event, record.generation) == ("trip", None)
    assert (record.counters["window_calls"], record.counters["window_failures"]) == (2, 2)
    assert record.reason == (
        "local (shared store unavailable): failure rate 1.00 ≥ 0.5 over 2 calls; open for 10s"
    )


def test_an_own_push_owed_to_an_interrupted_round_trip_never_rolls_back(
    pushing: ScriptedPushingState, clock: FakeClock
) -> None:
    """An interrupted round trip (not an outage: nothing degrades) owes its transition to
    the own push; one from an older entry epoch than the mirror's is recorded only."""
    breaker = on_pushing(pushing, clock, failure_threshold=3)
    live_closed(pushing, breaker, epoch=2)
    pushing.script(KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt):
        breaker.call(boom)
    breaker._own_pushed(tripped(gen=5, epoch=1))
    assert [(r.event, r.generation, r.life) for r in breaker.audit] == [("trip", 5, "shared:1")]
    metrics = breaker.metrics()
    assert (metrics.state, metrics.degraded, metrics.transitions) == ("closed", False, 0)


def test_the_last_eight_own_pushes_are_kept_for_a_reply_lost_later(
    pushing: ScriptedPushingState, clock: FakeClock
) -> None:
    """Own pushes are kept, oldest first, eight at most: a round trip that fails after
    nine records the oldest one still kept."""
    breaker = on_pushing(pushing, clock, failure_threshold=1)
    live_closed(pushing, breaker)

    def nine_pushes_then_fail() -> NoReturn:
        for gen in range(1, 10):
            breaker._own_pushed(tripped(gen=gen))
        raise TimeoutError("reply lost")

    pushing.script(nine_pushes_then_fail)
    with pytest.raises(Boom):
        breaker.call(boom)
    assert [(r.event, r.generation) for r in breaker.audit] == [("trip", 2)]


def test_a_push_from_a_recreated_entry_is_adopted_whatever_its_generation(
    pushing: ScriptedPushingState, clock: FakeClock
) -> None:
    """A push behind the mirror in its own entry epoch is ignored (the mirror is still
    current: True); one from a new epoch (the entry was recreated) is the shared state
    now, at any generation."""
    breaker = on_pushing(pushing, clock, failure_threshold=1)
    pushing.script(reply(), tripped(gen=3))
    with pytest.raises(Boom):
        breaker.call(boom)
    assert breaker._pushed(reply("closed", gen=2, epoch=1)) is True
    assert (breaker.state, breaker.metrics().transitions) == ("open", 3)
    assert breaker._pushed(reply("closed", gen=1, epoch=2)) is True
    assert (breaker.state, breaker.metrics().transitions) == ("closed", 1)
    assert [r.event for r in breaker.audit] == ["trip"]  # a push is recorded by its maker


def test_a_push_of_the_mirrored_generation_resyncs_a_degraded_breaker(
    pushing: ScriptedPushingState, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """Degraded, a push (or a re-read) of the very state last mirrored is the store's
    answer: the breaker is back on the shared state (the store's streak, not the local
    one), and says so once."""
    caplog.set_level(logging.INFO, logger="breaker_fsm")
    breaker = on_pushing(pushing, clock, failure_threshold=3)
    pushing.script(reply(), reply(gen=0, streak=1))
    with pytest.raises(Boom):
        breaker.call(boom)
    pushing.script(ConnectionError("store down"))
    with pytest.raises(Boom):
        breaker.call(boom)  # counted locally: a streak of 2
    assert breaker.metrics().degraded
    caplog.clear()
    assert breaker._pushed(reply(gen=0, streak=1)) is True  # the store never saw the second
    metrics = breaker.metrics()
    assert (metrics.degraded, metrics.failure_count, metrics.store_errors) == (False, 1, 1)
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (logging.INFO, "breaker 'svc': shared store answers again; back on shared state")
    ]


def test_a_re_read_older_than_a_failed_round_trip_is_not_taken(
    pushing: ScriptedPushingState, clock: FakeClock
) -> None:
    """A re-read taken before a round trip that has failed since (the breaker's count of
    failed round trips moved on) may be older than what the breaker did alone: it is not
    taken, and the mirror is not current (False: the push thread leaves it asking)."""
    breaker = on_pushing(pushing, clock, failure_threshold=1)
    live_closed(pushing, breaker)
    errors = breaker.metrics().store_errors  # when the push thread read the state
    pushing.script(ConnectionError("store down"))
    with pytest.raises(Boom):
        breaker.call(boom)  # degraded; tripped alone
    assert breaker._reread(reply(gen=0), errors) is False
    metrics = breaker.metrics()
    assert (metrics.state, metrics.degraded, metrics.store_errors) == ("open", True, 1)


def test_a_push_from_an_entry_epoch_the_mirror_left_moves_nothing(
    pushing: ScriptedPushingState, clock: FakeClock
) -> None:
    """Once the mirror follows a recreated entry (a newer epoch), a push from the entry it
    replaced is late: ignored, whatever its generation (the mirror is still current)."""
    breaker = on_pushing(pushing, clock, failure_threshold=1)
    live_closed(pushing, breaker, epoch=2)
    assert breaker._pushed(tripped(gen=5, epoch=1)) is True
    assert (breaker.state, breaker.metrics().transitions) == ("closed", 0)


def test_a_pushed_transition_starts_the_new_states_counters(
    pushing: ScriptedPushingState, clock: FakeClock
) -> None:
    """A pushed transition's counters are those that justified it: the mirror's new
    state starts from zero (closed: no streak, an empty window)."""
    breaker = on_pushing(
        pushing, clock, failure_threshold=3, window=CountWindow(size=10), minimum_calls=5
    )
    live_closed(pushing, breaker)
    breaker._pushed(tripped(gen=1, streak=3, window=(6, 4, 0)))
    assert (breaker.state, breaker.metrics().window_calls) == ("open", 6)
    breaker._pushed(reply("half_open", gen=2, event="attempt_reset", source="open", streak=3))
    metrics = breaker.metrics()
    assert (metrics.state, metrics.failure_count, metrics.window_calls) == ("half_open", 3, 0)
    breaker._pushed(reply("open", gen=3, event="retrip", source="half_open", streak=4))
    breaker._pushed(
        reply("closed", gen=4, event="reset", source="open", streak=3, window=(6, 4, 0))
    )
    metrics = breaker.metrics()
    assert (metrics.state, metrics.failure_count, metrics.window_calls) == ("closed", 0, 0)


def test_a_degraded_open_breaker_refuses_alone_until_its_episode_ends(
    make: Make, entry: ScriptedState, invoke: Invoke, clock: FakeClock
) -> None:
    """Tripped alone while the store was down, the breaker refuses on its own timing to the
    episode's last moment, past its retry time too: no round trip for a refusal."""
    breaker = make(failure_threshold=1, reset_timeout=10)
    entry.script(ConnectionError("store down"))
    failed(invoke, breaker)
    clock.advance(9.5)  # past retry_interval (5 s), half a second before the end
    assert refused(invoke, breaker).retry_after == pytest.approx(0.5)
    assert len(entry.calls) == 1
    assert breaker.metrics().rejected_count == 1


def test_call_of_an_async_function_on_a_disabled_shared_breaker_names_it(
    make: Make, entry: ScriptedState, clock: FakeClock
) -> None:
    """A disabled mirror bypasses without a round trip; call(async_fn) still raises the
    TypeError naming the function, and nothing is recorded."""
    breaker = make(failure_threshold=1)
    entry.script(reply("disabled", gen=1, event="disable", source="closed"))
    assert breaker.send("disable") == "disabled"
    with pytest.raises(TypeError) as caught:
        breaker.call(aok)  # type: ignore[arg-type]
    assert str(caught.value) == (
        "breaker 'svc': call() got an async function (aok returned a coroutine): use "
        "`await breaker.acall(...)`; nothing was recorded"
    )
    assert (len(entry.calls), breaker.metrics().total_requests) == (1, 0)


def test_a_mirrored_time_window_reads_empty_once_a_whole_window_has_passed(
    make: Make, entry: ScriptedState, clock: FakeClock
) -> None:
    """The store's time-window totals, as last mirrored, hold until a whole window has
    passed since that reply (they are not aged in between); degraded, the window is local."""
    clock.advance(100)
    breaker = make(failure_threshold=None, window=TimeWindow(seconds=10), minimum_calls=2)
    assert breaker.metrics().window_calls == 0  # nothing mirrored yet
    entry.script(reply(window=(4, 1, 0)))
    assert breaker.call(ok) == "ok"
    clock.advance(9.5)
    metrics = breaker.metrics()
    assert (metrics.window_calls, metrics.failure_rate) == (4, 0.25)
    clock.advance(0.5)  # ten seconds on
    metrics = breaker.metrics()
    assert (metrics.window_calls, metrics.failure_rate) == (0, None)
    entry.script(ConnectionError("store down"))
    with pytest.raises(Boom):
        breaker.call(boom)
    assert breaker.call(ok) == "ok"  # counted locally: no round trip before retry time
    metrics = breaker.metrics()
    assert (metrics.degraded, metrics.window_calls, metrics.failure_rate) == (True, 2, 0.5)


def test_a_re_read_that_finds_the_store_current_or_ahead_sends_nothing(
    pushing: ScriptedPushingState, clock: FakeClock
) -> None:
    """A re-read finding no entry under a closed mirror, the very state mirrored, or a
    later one of the same entry, is followed without a round trip (nothing to put back)."""
    breaker = on_pushing(pushing, clock, failure_threshold=1)
    live_closed(pushing, breaker)
    assert breaker._reread(None) is True
    assert breaker._reread(reply(gen=0, epoch=1)) is True
    assert breaker._reread(reply("open", gen=1, epoch=1, episode=1)) is True
    assert pushing.calls == []
    assert (breaker.state, breaker.metrics().transitions) == ("open", 1)


def test_a_round_trips_own_transition_from_another_entry_epoch_is_adopted(
    pushing: ScriptedPushingState, clock: FakeClock
) -> None:
    """The reply of this member's own round trip reports a transition the store just made:
    it is the shared state even from another epoch of the entry than the mirror's."""
    breaker = on_pushing(pushing, clock, failure_threshold=3)
    live_closed(pushing, breaker, epoch=2)
    pushing.script(tripped(gen=5, epoch=1, streak=3))
    with pytest.raises(Boom):
        breaker.call(boom)
    assert (breaker.state, breaker.metrics().transitions) == ("open", 5)
    assert [(r.event, r.generation, r.life) for r in breaker.audit] == [("trip", 5, "shared:1")]


def test_a_transition_recorded_from_its_push_is_not_recorded_again_from_its_reply(
    pushing: ScriptedPushingState, clock: FakeClock
) -> None:
    """An interrupted round trip owes a transition; the next round trip's own push arrives
    before its reply and is taken for it: the reply then finds it recorded already."""
    breaker = on_pushing(pushing, clock, failure_threshold=1)
    live_closed(pushing, breaker)
    pushing.script(KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt):
        breaker.call(boom)

    def push_then_reply() -> StoreReply:
        breaker._own_pushed(tripped())
        return tripped()

    pushing.script(push_then_reply)
    with pytest.raises(Boom):
        breaker.call(boom)
    assert [(r.event, r.generation) for r in breaker.audit] == [("trip", 1)]


def test_a_failure_with_a_hint_while_degraded_opens_for_the_hint(
    make: Make, entry: ScriptedState, invoke: Invoke
) -> None:
    """Degraded, a failure's open-duration hint (from is_failure_exception) is kept on
    local state: the local episode lasts the hint, capped by max_reset_timeout."""
    breaker = make(
        failure_threshold=2,
        reset_timeout=1,
        max_reset_timeout=5,
        options={"is_failure_exception": lambda exc: 7.0},
    )
    entry.script(ConnectionError("store down"))
    failed(invoke, breaker)  # degrades
    failed(invoke, breaker)  # local: trips with the hint
    metrics = breaker.metrics()
    assert (metrics.state, metrics.open_duration, metrics.store_errors) == ("open", 5, 1)


def test_a_re_read_behind_the_mirror_in_its_epoch_puts_the_state_back(
    pushing: ScriptedPushingState, clock: FakeClock
) -> None:
    """A re-read behind the mirror in the same entry epoch (a failover lost a transition)
    is re-seeded from the mirror; one from a new epoch (the entry recreated) is followed."""
    breaker = on_pushing(pushing, clock, failure_threshold=1)
    pushing.script(reply(), tripped())
    with pytest.raises(Boom):
        breaker.call(boom)
    pushing.calls.clear()
    pushing.script(reply("open", gen=1, epoch=1, episode=1))
    assert breaker._reread(reply(gen=0, epoch=1)) is True  # behind: put back
    assert pushing.calls == [Call("sync", (Seed(OPEN, 1, 1, 10.0, 10.0, 1),))]
    assert breaker.state == "open"
    assert breaker._reread(reply(gen=0, epoch=2)) is True  # recreated: followed
    assert (breaker.state, len(pushing.calls)) == ("closed", 1)


def test_a_member_under_another_policy_is_warned_about_once(
    pushing: ScriptedPushingState,
    make: Make,
    entry: ScriptedState,
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A reply whose policy fingerprint is another one than this member's entry's warns,
    once; an unknown fingerprint (0) on either side, or the same one, never does."""
    caplog.set_level(logging.WARNING, logger="breaker_fsm")
    pushing.fingerprint = 0x111
    breaker = on_pushing(pushing, clock, failure_threshold=5)
    live_closed(pushing, breaker)  # a reply without a fingerprint
    pushing.script(reply(streak=1)._replace(fingerprint=0x111))
    with pytest.raises(Boom):
        breaker.call(boom)
    assert caplog.records == []
    for streak in (2, 3):
        pushing.script(reply(streak=streak)._replace(fingerprint=0x222))
        with pytest.raises(Boom):
            breaker.call(boom)
    assert [r.getMessage() for r in caplog.records] == [
        "breaker 'svc': another member of the fleet shares it under a different policy "
        "(fingerprint 000000000222 in the shared state, 000000000111 here): the fleet's "
        "decisions mix both; give every process the same policy for this name"
    ]
    caplog.clear()
    unknown = make(failure_threshold=5)  # an entry without a fingerprint of its own
    entry.script(reply(streak=1)._replace(fingerprint=0x222))
    with pytest.raises(Boom):
        unknown.call(boom)
    assert caplog.records == []


def test_a_policy_warning_from_an_operator_reply_names_the_breaker(
    pushing: ScriptedPushingState, clock: FakeClock, send: Send, caplog: pytest.LogCaptureFixture
) -> None:
    """An operator event's reply is the first to show another member's policy: the
    warning names this breaker, as any reply's does."""
    caplog.set_level(logging.WARNING, logger="breaker_fsm")
    pushing.fingerprint = 0x111
    breaker = on_pushing(pushing, clock, failure_threshold=5)
    pushing.script(
        reply("forced_open", gen=1, event="force_open", source="closed")._replace(fingerprint=0x222)
    )
    assert send(breaker, "force_open") == "forced_open"
    assert [r.getMessage() for r in caplog.records] == [
        "breaker 'svc': another member of the fleet shares it under a different policy "
        "(fingerprint 000000000222 in the shared state, 000000000111 here): the fleet's "
        "decisions mix both; give every process the same policy for this name"
    ]


class Stats:
    """A listener on a breaker's machine: the whole evidence each transition was given."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, Any]] = []

    def after_transition(self, event: str, stats: Any) -> None:
        self.seen.append((str(event), stats))


def test_a_store_transition_goes_through_the_machine_with_the_stores_evidence(
    make: Make, entry: ScriptedState, clock: FakeClock
) -> None:
    """The evidence a store's transition gives the machine (and its audit record) is the
    reply's: its time, streak, window and trials; an opening time for attempt_reset only,
    a half-open start for a timed-out retrip only."""
    from breaker_fsm._policy import BreakerStats

    breaker = make(
        failure_threshold=3,
        window=CountWindow(size=20),
        minimum_calls=5,
        success_threshold=3,
        half_open_max_calls=3,
        half_open_timeout=5,
    )
    stats = Stats()
    breaker.machine.add_listener(stats)  # type: ignore[no-untyped-call]
    entry.script(tripped(gen=1, streak=3, window=(9, 6, 2), justified=4.5, open_duration=12.0))
    with pytest.raises(Boom):
        breaker.call(boom)
    clock.advance(12)
    entry.script(
        reply("half_open", gen=2, event="attempt_reset", source="open", streak=3, justified=12.5),
        None,
    )
    assert breaker.call(ok) == "ok"
    entry.script(
        reply("half_open", gen=2, trials=(1, 0)),
        reply(
            "open", gen=3, event="retrip", source="half_open", streak=4, trials=(1, 1),
            justified=2.5, open_duration=24.0, episode=2,
        ),
    )  # fmt: skip
    with pytest.raises(Boom):
        breaker.call(boom)
    clock.advance(24)
    entry.script(
        reply("half_open", gen=4, event="attempt_reset", source="open", streak=4, justified=24),
        None,
    )
    assert breaker.call(ok) == "ok"
    clock.advance(5)
    entry.script(
        reply(
            "open", gen=5, event="retrip", source="half_open", ok=0, streak=4, trials=(2, 0),
            justified=5.0, open_duration=48.0, episode=3,
        )
    )  # fmt: skip
    with pytest.raises(CircuitOpenError):
        breaker.call(ok)
    expected = [
        ("trip", BreakerStats(4.5, 3, 9, 6, 2, 0, 0, None, 12.0, None)),
        ("attempt_reset", BreakerStats(12.5, 3, 0, 0, 0, 0, 0, 0.0, 10.0, None)),
        ("retrip", BreakerStats(2.5, 4, 0, 0, 0, 1, 1, None, 24.0, None)),
        ("attempt_reset", BreakerStats(24.0, 4, 0, 0, 0, 0, 0, 0.0, 10.0, None)),
        ("retrip", BreakerStats(5.0, 4, 0, 0, 0, 2, 0, None, 48.0, 0.0)),
    ]
    assert stats.seen == expected
    counters = [(r.counters["window_slow"], r.counters["trial_failures"]) for r in breaker.audit]
    assert counters == [(2, 0), (0, 0), (0, 1), (0, 0), (0, 0)]


@pytest.mark.parametrize(
    "case",
    [
        ("open", Seed(OPEN, 0, 1, 16.0, 10.0, 3)),  # 10 s of the local episode left
        ("ended", Seed(OPEN, 0, 1, 16.0, 0.0, 3)),  # its time is up: none left
        ("reset", Seed(CLOSED, 0, 0, 10.0, 0.0, 3)),  # reset locally: the shared state's
    ],
)
def test_a_degraded_breaker_seeds_its_local_open_episode(
    make: Make, entry: ScriptedState, send: Send, clock: FakeClock, case: tuple[str, Seed]
) -> None:
    """Tripped alone while degraded, the breaker's next round trip carries its local open
    episode as the seed (at the shared generation and epoch it last mirrored), so a store
    that lost the entry is recreated open; once reset locally, the shared state's seed."""
    how, seed = case
    clock.advance(100)
    breaker = make(
        failure_threshold=1,
        reset_timeout=10,
        max_reset_timeout=16,
        options={"is_failure_exception": lambda exc: 16.0},  # the local episode: 16 s
    )
    entry.script(reply(epoch=3), ConnectionError("store down"))
    assert breaker.call(ok) == "ok"
    with pytest.raises(Boom):
        breaker.call(boom)  # degrades, trips locally at 100
    if how == "reset":
        assert send(breaker, "reset") == "closed"  # before retry time: local
    clock.advance(20 if how == "ended" else 6)  # past retry time
    source = "closed" if how == "reset" else "open"
    entry.script(reply("forced_open", gen=1, epoch=3, event="force_open", source=source))
    assert send(breaker, "force_open") == "forced_open"
    assert entry.calls[-1].op.endswith("operator")
    assert entry.calls[-1].args == (EVENT_CODES["force_open"], 0.0, seed)


def test_a_local_trip_from_the_last_shared_generation_seeds_its_open_episode(
    make: Make, entry: ScriptedState, send: Send, clock: FakeClock
) -> None:
    """A local trip from the last generation below LOCAL_GEN is at LOCAL_GEN itself, a
    local generation: the next round trip seeds its open episode (with the time it has
    left), at the shared generation last mirrored, not the closed shared state."""
    breaker = make(failure_threshold=1, reset_timeout=10)
    entry.script(reply(gen=LOCAL_GEN - 1), ConnectionError("store down"))
    assert breaker.call(ok) == "ok"  # the mirror follows generation LOCAL_GEN - 1
    with pytest.raises(Boom):
        breaker.call(boom)  # degrades, trips locally: generation LOCAL_GEN
    clock.advance(6)  # past the retry time, 4 s of the local episode left
    entry.script(reply("forced_open", gen=LOCAL_GEN, event="force_open", source="open"))
    assert send(breaker, "force_open") == "forced_open"
    assert entry.calls[-1].args == (
        EVENT_CODES["force_open"],
        0.0,
        Seed(OPEN, LOCAL_GEN - 1, 1, 10.0, 4.0, 1),
    )


def test_an_open_mirror_past_its_deadline_seeds_no_time_left(
    make: Make, entry: ScriptedState, clock: FakeClock
) -> None:
    """A mirrored open episode whose time is up is sent back with 0 s left, not less."""
    breaker = make(failure_threshold=1)
    entry.script(tripped(gen=4, episode=2, open_duration=20.0))
    with pytest.raises(Boom):
        breaker.call(boom)
    clock.advance(25)
    entry.script(reply("closed", gen=5, event="reset", source="open"))
    assert breaker.send("reset") == "closed"
    assert entry.calls[-1].args == (EVENT_CODES["reset"], 0.0, Seed(OPEN, 4, 2, 20.0, 0.0, 1))


def test_jitter_is_drawn_for_operator_events_and_windowed_successes_only(
    make: Make, entry: ScriptedState, invoke: Invoke, send: Send, clock: FakeClock
) -> None:
    """An operator event may open the breaker: it draws; so does a success with a window
    (it may bring a failing window up to minimum_calls); a neutral trial never does."""
    breaker = make(
        failure_threshold=1,
        window=CountWindow(size=10),
        minimum_calls=5,
        half_open_max_calls=2,
        success_threshold=2,
        reset_timeout_jitter=0.5,
        ignore_exceptions=(KeyError,),
        options={"rng": random.Random(7)},
    )
    draws = random.Random(7)
    entry.script(None, reply("forced_open", gen=1, event="force_open", source="closed"))
    assert invoke(breaker, ok) == "ok"
    assert send(breaker, "force_open") == "forced_open"
    breaker._pushed(reply("half_open", gen=2, event="attempt_reset", source="forced_open"))
    entry.script(reply("half_open", gen=2), reply("half_open", gen=2))
    with pytest.raises(KeyError):
        invoke(breaker, lambda: {}["x"])  # a neutral trial: its permit goes back
    at = {"record": 2, "operator": 1, "acquire": 0}  # where each round trip sends u
    sent = [c.args[at[c.op[1:] if c.op[1:] in at else c.op]] for c in entry.calls]
    first, second = draws.uniform(-0.5, 0.5), draws.uniform(-0.5, 0.5)
    third = draws.uniform(-0.5, 0.5)  # the trial's admission may retrip a timed-out episode
    assert sent == [first, second, third, 0.0]


def test_a_record_reply_at_a_newer_closed_generation_is_adopted(
    make: Make, entry: ScriptedState, invoke: Invoke
) -> None:
    """A record's reply from a later closed episode (another member reset it meanwhile)
    moves the mirror to that generation, with the reply's streak."""
    breaker = make(failure_threshold=3)
    entry.script(reply(streak=1), reply(gen=4, streak=1))
    failed(invoke, breaker)  # the entry read: generation 0
    failed(invoke, breaker)
    metrics = breaker.metrics()
    assert (metrics.state, metrics.transitions, metrics.failure_count) == ("closed", 4, 1)


def test_a_degraded_breakers_first_record_reply_resyncs_it(
    make: Make, entry: ScriptedState, invoke: Invoke, clock: FakeClock
) -> None:
    """Degraded and past its retry time, a call's record round trip answers with the very
    state mirrored: the breaker is back on the shared state."""
    breaker = make(failure_threshold=3)
    entry.script(reply(), ConnectionError("store down"))
    assert invoke(breaker, ok, "read") == "read"  # the entry read: generation 0
    failed(invoke, breaker)
    clock.advance(5)  # the retry time
    entry.script(reply(streak=2))
    failed(invoke, breaker)
    metrics = breaker.metrics()
    assert (metrics.degraded, metrics.failure_count, metrics.store_errors) == (False, 2, 1)


def test_a_recovery_reply_after_a_re_read_of_its_state_is_still_recorded(
    pushing: ScriptedPushingState, clock: FakeClock
) -> None:
    """A re-read during a trial's round trip already shows the recovered state its script
    made: the round trip's reply still records the recovery, once."""
    breaker = on_pushing(pushing, clock, failure_threshold=1)
    live_closed(pushing, breaker)
    breaker._pushed(reply("open", gen=1, event="trip", source="closed", episode=1))
    breaker._pushed(reply("half_open", gen=2, event="attempt_reset", source="open", episode=1))

    def re_read_then_reply() -> StoreReply:
        assert breaker._reread(reply("closed", gen=3)) is True
        return reply("closed", gen=3, event="recover", source="half_open")

    pushing.script(reply("half_open", gen=2), re_read_then_reply)
    assert breaker.call(ok) == "ok"
    assert [(r.event, r.generation) for r in breaker.audit] == [("recover", 3)]
    assert (breaker.state, breaker.metrics().transitions) == ("closed", 3)


def test_a_reset_reply_starts_the_closed_mirror_from_zero(
    make: Make, entry: ScriptedState, clock: FakeClock
) -> None:
    """An operator reset made by the store reports the counters that stood before it; the
    mirror's closed episode starts with no streak and an empty window."""
    breaker = make(failure_threshold=3, window=CountWindow(size=10), minimum_calls=5)
    entry.script(tripped(gen=1, streak=3, window=(6, 4, 0)))
    with pytest.raises(Boom):
        breaker.call(boom)
    assert breaker.metrics().window_calls == 6  # open: the window that tripped it
    entry.script(reply("closed", gen=2, event="reset", source="open", streak=3, window=(6, 4, 0)))
    assert breaker.send("reset") == "closed"
    metrics = breaker.metrics()
    assert (metrics.failure_count, metrics.window_calls, metrics.transitions) == (0, 0, 2)


def test_a_transition_recorded_long_ago_is_not_recorded_again_from_a_late_push(
    pushing: ScriptedPushingState, clock: FakeClock
) -> None:
    """Every recorded transition is remembered (the last 32): its own push arriving late,
    after later transitions, is never taken for the transition a lost reply owes."""
    breaker = on_pushing(pushing, clock, failure_threshold=1)
    live_closed(pushing, breaker)
    first = tripped()
    pushing.script(first, reply("forced_open", gen=2, event="force_open", source="open"))
    with pytest.raises(Boom):
        breaker.call(boom)
    assert breaker.send("force_open") == "forced_open"
    breaker._own_pushed(first)  # late
    pushing.script(TimeoutError("reply lost"))
    assert breaker.send("reset") == "closed"  # lost: applied locally
    assert [(r.event, r.generation) for r in breaker.audit] == [
        ("trip", 1),
        ("force_open", 2),
        ("reset", None),
    ]


def test_a_member_remembers_the_last_32_transitions_it_recorded(
    make: Make, entry: ScriptedState
) -> None:
    """What a mirror keeps to record each transition once is bounded: the (epoch,
    generation) of the 32 transitions it recorded last, however long it lives."""
    breaker = make()
    for gen in range(1, 41):
        event, source, target = (
            ("force_open", "closed", "forced_open")
            if gen % 2
            else ("reset", "forced_open", "closed")
        )
        entry.script(reply(target, gen=gen, event=event, source=source))
        assert breaker.send(event) == target
    assert len(breaker.audit) == 40
    assert list(breaker._link.recorded or ()) == [(1, gen) for gen in range(9, 41)]


def test_a_re_read_with_newer_counters_keeps_them_after_the_reply(
    pushing: ScriptedPushingState, clock: FakeClock
) -> None:
    """A re-read of the recovered state, with outcomes counted since, arrives before the
    trial's reply: the reply records the recovery and keeps the re-read's counters."""
    breaker = on_pushing(
        pushing, clock, failure_threshold=3, window=CountWindow(size=10), minimum_calls=5
    )
    live_closed(pushing, breaker)
    breaker._pushed(reply("open", gen=1, event="trip", source="closed", episode=1))
    breaker._pushed(reply("half_open", gen=2, event="attempt_reset", source="open", episode=1))

    def re_read_then_reply() -> StoreReply:
        assert breaker._reread(reply("closed", gen=3, streak=1, window=(2, 1, 0))) is True
        return reply("closed", gen=3, event="recover", source="half_open")

    pushing.script(reply("half_open", gen=2), re_read_then_reply)
    assert breaker.call(ok) == "ok"
    assert [(r.event, r.generation) for r in breaker.audit] == [("recover", 3)]
    metrics = breaker.metrics()
    assert (metrics.failure_count, metrics.window_calls) == (1, 2)


def test_a_half_open_episode_owed_to_a_lost_reply_is_tried_locally(
    pushing: ScriptedPushingState, clock: FakeClock
) -> None:
    """The admission that moved the fleet to half_open loses its reply, but its own push
    came first: degraded, the breaker follows that episode (its number, its epoch) with
    every trial permit free, and a failed trial retrips it locally into the next episode."""
    breaker = on_pushing(
        pushing, clock, failure_threshold=1, half_open_max_calls=1, reset_timeout_multiplier=2
    )
    live_closed(pushing, breaker, epoch=2)
    breaker._pushed(reply("open", gen=1, epoch=2, event="trip", source="closed", episode=1))
    clock.advance(10)

    def push_then_fail() -> NoReturn:
        breaker._own_pushed(
            reply("half_open", gen=2, epoch=2, event="attempt_reset", source="open", episode=1)
        )
        raise TimeoutError("reply lost")

    pushing.script(push_then_fail)
    with pytest.raises(Boom):
        breaker.call(boom)  # admitted locally as the trial; it fails: a local retrip
    metrics = breaker.metrics()
    assert (metrics.state, metrics.degraded, metrics.open_duration) == ("open", True, 20.0)
    assert [(r.event, r.generation, r.life) for r in breaker.audit] == [
        ("attempt_reset", 2, "shared:2"),
        ("retrip", None, "shared:2"),
    ]


def test_a_local_transition_belongs_to_the_entry_epoch_last_followed(
    make: Make, entry: ScriptedState
) -> None:
    """Records made alone while degraded number in the life of the store entry the
    mirror followed last (its epoch), as the fleet's records of that entry do."""
    breaker = make(failure_threshold=1)
    entry.script(reply(epoch=7), ConnectionError("store down"))
    assert breaker.call(ok) == "ok"
    with pytest.raises(Boom):
        breaker.call(boom)
    assert [(r.event, r.generation, r.life) for r in breaker.audit] == [("trip", None, "shared:7")]


def test_a_local_transition_before_any_reply_numbers_in_the_shared_life(
    make: Make, entry: ScriptedState
) -> None:
    """A breaker that never reached its store (degraded from its first round trip) records
    its local transitions in the shared life all the same (no entry epoch to name yet),
    never in its own instance's."""
    breaker = make(failure_threshold=1)
    entry.script(ConnectionError("store down"))
    with pytest.raises(Boom):
        breaker.call(boom)
    assert [(r.event, r.generation, r.life) for r in breaker.audit] == [("trip", None, "shared")]


def test_a_half_open_episode_owed_to_a_lost_reply_starts_with_no_trials(
    pushing: ScriptedPushingState, clock: FakeClock
) -> None:
    """Followed from its push while degraded, a half-open episode has had no trial yet:
    one success of two needed leaves it half-open."""
    breaker = on_pushing(
        pushing, clock, failure_threshold=1, half_open_max_calls=2, success_threshold=2
    )
    live_closed(pushing, breaker)
    breaker._pushed(reply("open", gen=1, event="trip", source="closed", episode=1))
    clock.advance(10)

    def push_then_fail() -> NoReturn:
        breaker._own_pushed(
            reply("half_open", gen=2, event="attempt_reset", source="open", trials=(1, 0))
        )
        raise TimeoutError("reply lost")

    pushing.script(push_then_fail)
    assert breaker.call(ok) == "ok"  # admitted locally as a trial
    assert (breaker.state, breaker.metrics().degraded) == ("half_open", True)


def test_an_adopted_half_open_episode_keeps_the_servers_timing(
    pushing: ScriptedPushingState, clock: FakeClock
) -> None:
    """A half-open episode followed mid-way started when the store says (elapsed): its
    half_open_timeout is due that much sooner, and not before."""
    clock.advance(100)
    breaker = on_pushing(pushing, clock, failure_threshold=1, half_open_timeout=2)
    live_closed(pushing, breaker)
    breaker._pushed(reply("half_open", gen=2, event="attempt_reset", source="open", elapsed=1.5))
    assert breaker.metrics().due is None
    clock.advance(0.4)
    assert breaker.metrics().due is None
    clock.advance(0.1)
    assert breaker.metrics().due == "retrip"


def test_the_mirror_refuses_overrides_and_open_permits_alone_until_a_recheck(
    make: Make, entry: ScriptedState, clock: FakeClock
) -> None:
    """An open mirror refuses a permit without a round trip while its episode lasts; a
    forced-open one refuses calls alone until sync_interval has passed, then asks."""
    clock.advance(100)
    breaker = make(failure_threshold=1)
    entry.script(tripped())
    with pytest.raises(Boom):
        breaker.call(boom)
    clock.advance(9)
    with pytest.raises(CircuitOpenError):
        breaker.acquire()
    entry.script(reply("forced_open", gen=2, event="force_open", source="open"))
    assert breaker.send("force_open") == "forced_open"
    clock.advance(29.5)
    assert refused(breaker.call, breaker).state == "forced_open"  # type: ignore[arg-type]
    assert len(entry.calls) == 2
    clock.advance(0.5)  # sync_interval (30 s) since the reply: ask the store
    entry.script(reply("forced_open", gen=2, ok=0))
    assert refused(breaker.call, breaker).state == "forced_open"  # type: ignore[arg-type]
    assert [c.op for c in entry.calls] == ["record", "operator", "acquire"]


def test_a_degraded_breaker_asks_again_at_its_retry_time(
    make: Make, entry: ScriptedState, clock: FakeClock
) -> None:
    """Degraded and tripped alone, the breaker asks the store from its retry time on."""
    breaker = make(failure_threshold=1, reset_timeout=5)
    entry.script(ConnectionError("store down"))
    with pytest.raises(Boom):
        breaker.call(boom)
    clock.advance(5)  # the local episode is over at the retry time itself
    entry.script(reply("half_open", gen=1, event="attempt_reset", source="open"), None)
    assert breaker.call(ok) == "ok"
    assert [c.op for c in entry.calls] == ["record", "acquire", "record"]


def test_a_call_admitted_on_local_state_is_dropped_after_a_resync(
    make: Make, entry: ScriptedState, clock: FakeClock
) -> None:
    """A call admitted on local state, whose breaker is back on the shared state when it
    ends (past the old retry time too), is recorded locally as stale: no round trip; and
    call sinks hear of each call once."""
    seen: list[Any] = []
    breaker = make(failure_threshold=1, reset_timeout=1, options={"call_sinks": [seen.append]})
    entry.script(ConnectionError("store down"))
    with pytest.raises(Boom):
        breaker.call(boom)  # degraded, tripped alone
    clock.advance(1)
    assert breaker.call(ok) == "ok"  # a local trial: recovered alone

    def resynced_meanwhile() -> str:
        breaker._pushed(reply(epoch=1))  # the store answers again: closed, generation 0
        clock.advance(5)
        return "late"

    assert breaker.call(resynced_meanwhile) == "late"
    assert len(entry.calls) == 1
    assert [r.outcome for r in seen] == ["failure", "success", "success"]


def test_a_quick_call_is_not_slow_whenever_it_starts(
    make: Make, entry: ScriptedState, clock: FakeClock
) -> None:
    """The store is told a call's outcome timed from its start: a quick one is no slow call."""
    clock.advance(100)
    breaker = make(failure_threshold=3, window=CountWindow(size=10), slow_call_duration=1)
    entry.script(None)
    assert breaker.call(ok) == "ok"
    assert entry.calls[0].args[1] == SUCCESS


def test_a_record_sent_under_an_open_mirror_seeds_the_time_left(
    make: Make, entry: ScriptedState, clock: FakeClock
) -> None:
    """Another member trips the fleet while a call runs: the call's record carries the
    mirrored open episode with the seconds it has left, as any round trip's seed does."""
    breaker = make(failure_threshold=3)

    def tripped_meanwhile() -> str:
        breaker._pushed(tripped(gen=1, episode=1, open_duration=20.0))
        clock.advance(4)
        return "ok"

    entry.script(reply("open", gen=1, ok=0, episode=1, open_duration=20.0, elapsed=4.0))
    assert breaker.call(tripped_meanwhile) == "ok"
    assert entry.calls[0].args[4] == Seed(OPEN, 1, 1, 20.0, 16.0, 1)


def test_record_answers_resync_count_once_and_keep_the_window_fresh(
    make: Make, entry: ScriptedState, clock: FakeClock
) -> None:
    """A failed record is heard once by call sinks; degraded past its retry time, a
    success the store answers with nothing new resyncs the breaker; a common reply's time
    window is mirrored with the time it came."""
    seen: list[Any] = []
    breaker = make(
        failure_threshold=3,
        window=TimeWindow(seconds=10),
        minimum_calls=5,
        options={"call_sinks": [seen.append]},
    )
    entry.script(ConnectionError("store down"))
    with pytest.raises(Boom):
        breaker.call(boom)
    assert [r.outcome for r in seen] == ["failure"]
    clock.advance(5)
    entry.script(None)
    assert breaker.call(ok) == "ok"
    assert breaker.metrics().degraded is False
    entry.script(reply(window=(1, 0, 0)), reply(window=(2, 0, 0)))
    assert breaker.call(ok) == breaker.call(ok) == "ok"
    assert breaker.metrics().window_calls == 2


# ------------------------------------------------------------------------ generations, forks


@pytest.mark.parametrize(
    "generations",
    [(0, LOCAL_GEN + 2), (LOCAL_GEN - 1, LOCAL_GEN + 1)],
    ids=["from-0", "from-the-last-shared-one"],
)
def test_local_generations_count_on_from_the_shared_one_at_or_above_local_gen(
    make: Make,
    entry: ScriptedState,
    invoke: Invoke,
    clock: FakeClock,
    generations: tuple[int, int],
) -> None:
    """Degraded, the transitions a breaker makes alone number on one by one from the shared
    generation it last mirrored, shifted to LOCAL_GEN and above (never a shared one): a
    call admitted on local state and settled past the retry time reaches the store under
    its local generation (the second local transition's here)."""
    shared, local = generations
    breaker = make(failure_threshold=1, reset_timeout=1)
    entry.script(reply(gen=shared), ConnectionError("store down"))
    assert invoke(breaker, ok) == "ok"  # the mirror follows generation `shared`
    failed(invoke, breaker)  # degrades, and trips locally
    clock.advance(1)  # the local episode is over; the retry time (5 s) is not

    def past_the_retry_time() -> str:
        clock.advance(5)
        return "trial"

    entry.script(None)
    assert invoke(breaker, past_the_retry_time) == "trial"  # admitted by a local attempt_reset
    assert [(r.event, r.generation) for r in breaker.audit] == [
        ("trip", None),
        ("attempt_reset", None),
    ]
    assert (entry.calls[-1].op[-6:], entry.calls[-1].args[:2]) == ("record", (local, SUCCESS))


@pytest.mark.parametrize(
    "push",
    [tripped(gen=1), reply("half_open", gen=2, event="attempt_reset", source="open", episode=1)],
    ids=["the-state-at-its-generation", "the-source-of-the-next-transition"],
)
def test_a_fork_is_followed_with_a_warning_naming_both_states_at_its_generation(
    pushing: ScriptedPushingState,
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
    push: StoreReply,
) -> None:
    """The mirror saw its own force_open at generation 1; a push shows another state there
    (that generation's, or the source of the transition after it): the breaker follows the
    store's state, with one warning naming the generation and both states."""
    caplog.set_level(logging.WARNING, logger="breaker_fsm")
    breaker = on_pushing(pushing, clock, failure_threshold=1)
    pushing.script(reply("forced_open", gen=1, event="force_open", source="closed"))
    assert breaker.send("force_open") == "forced_open"
    assert breaker._pushed(push) is True
    assert (breaker.state, breaker.metrics().transitions) == (STATES[push.state], push.gen)
    assert [r.getMessage() for r in caplog.records] == [
        "breaker 'svc': the shared store holds open at generation 1, where this member "
        "mirrored forced_open: the store lost a transition (a failover) and another member "
        "made another one at that generation; following the store's (verify reports the "
        "fork in the merged trails)"
    ]


def fork_warning(held: str, mirrored: str) -> str:
    """The warning of a fork at generation 2: the store holds ``held``, the mirror ``mirrored``."""
    return (
        f"breaker 'svc': the shared store holds {held} at generation 2, where this member "
        f"mirrored {mirrored}: the store lost a transition (a failover) and another member "
        "made another one at that generation; following the store's (verify reports the "
        "fork in the merged trails)"
    )


def test_a_record_reply_of_another_state_at_a_closed_mirrors_generation_is_a_fork(
    make: Make,
    entry: ScriptedState,
    invoke: Invoke,
    send: Send,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A failover lost this member's reset (generation 2) and another member forced the
    breaker open there: the reply to the next failure's record holds forced_open at the
    generation the mirror holds closed, with no transition. It is no refresh of the closed
    state: the breaker follows the store's, with the fork warning naming both."""
    caplog.set_level(logging.WARNING, logger="breaker_fsm")
    breaker = make(failure_threshold=2)
    entry.script(tripped(gen=1, streak=2))
    failed(invoke, breaker)
    entry.script(reply("closed", gen=2, event="reset", source="open"))
    assert send(breaker, "reset") == "closed"
    entry.script(reply("forced_open", gen=2))
    failed(invoke, breaker)  # admitted by the closed mirror alone
    assert (breaker.state, breaker.metrics().transitions) == ("forced_open", 2)
    assert [r.getMessage() for r in caplog.records] == [fork_warning("forced_open", "closed")]


def test_a_closed_record_reply_at_a_half_open_mirrors_generation_is_a_fork(
    make: Make,
    entry: ScriptedState,
    invoke: Invoke,
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A failover lost the attempt_reset (generation 2) that admitted this member's trial,
    and another member reset the breaker there: the failed trial's reply holds closed, its
    failure counted, at the generation the mirror holds half_open, with no transition. It
    is no refresh of a closed mirror: the breaker follows the store's state, with the fork
    warning naming both."""
    caplog.set_level(logging.WARNING, logger="breaker_fsm")
    breaker = make(failure_threshold=2)
    entry.script(tripped(gen=1, streak=2))
    failed(invoke, breaker)
    clock.advance(10)
    entry.script(
        reply("half_open", gen=2, event="attempt_reset", source="open", episode=1),
        reply("closed", gen=2, streak=1),
    )
    failed(invoke, breaker)  # the trial
    metrics = breaker.metrics()
    assert (metrics.state, metrics.transitions, metrics.failure_count) == ("closed", 2, 1)
    assert [r.getMessage() for r in caplog.records] == [fork_warning("closed", "half_open")]


# ------------------------------------------------------------------------ permits, admission


def test_an_awaited_permit_at_generation_0_settles_in_the_store(
    make: Make, entry: ScriptedState
) -> None:
    """An async with block on a fresh shared breaker (closed, generation 0) settles its
    permit in the store, one arecord round trip, as at any shared generation: the store's
    trip is recorded."""
    breaker = make(failure_threshold=1)
    entry.script(tripped())

    async def scenario() -> None:
        with pytest.raises(Boom):
            async with breaker:
                raise Boom("down")

    asyncio.run(scenario())
    assert [(c.op, c.args[:2]) for c in entry.calls] == [("arecord", (0, FAILED))]
    assert [(r.event, r.generation) for r in breaker.audit] == [("trip", 1)]


def test_an_awaited_shadow_permit_tells_the_call_sinks_all_about_its_block(
    make: Make, entry: ScriptedState, clock: FakeClock
) -> None:
    """Shadow mode, open: an async with block an enforcing breaker would refuse runs, with
    no round trip, and the call sinks hear its outcome, start, duration and exception."""
    breaker = make(failure_threshold=1, enforce=False)
    entry.script(tripped())
    with pytest.raises(Boom):
        breaker.call(boom)  # the store trips
    records: list[CallRecord] = []
    breaker.add_call_sink(records.append)
    clock.advance(1)
    down = Boom("down")

    def two_seconds_then_down() -> NoReturn:
        clock.advance(2)
        raise down

    async def scenario() -> None:
        with pytest.raises(Boom):
            async with breaker:
                two_seconds_then_down()

    asyncio.run(scenario())
    assert [(r.outcome, r.start, r.duration, r.exception, r.shadowed) for r in records] == [
        ("failure", 1.0, 2.0, down, True)
    ]
    assert (len(entry.calls), breaker.metrics().shadow_rejected_count) == (1, 1)


class TickingClock(FakeClock):
    """A FakeClock that moves on by ``tick`` seconds after each monotonic reading."""

    tick = 0.0

    def monotonic(self) -> float:
        reading = super().monotonic()
        self.advance(self.tick)
        return reading


def test_an_open_mirror_refuses_an_admission_on_the_reading_its_plan_took(
    entry: ScriptedState, mode: str
) -> None:
    """An open mirror refuses an admission on the one clock reading its plan took, to the
    last moment of its episode: a later reading past the end (the clock moves on) never
    makes the breaker leave open by a transition of its own while the store answers."""
    clock = TickingClock()
    breaker = CircuitBreaker(
        "svc",
        BreakerPolicy(failure_threshold=1, reset_timeout=10),
        clock=clock,
        store=ScriptedStore(entry),
    )
    entry.script(tripped())
    with pytest.raises(Boom):
        breaker.call(boom)
    clock.advance(9.9)
    clock.tick = 0.2  # the next reading is past the episode's end
    with pytest.raises(CircuitOpenError):
        _ = breaker.acquire() if mode == "sync" else asyncio.run(breaker.aacquire())
    assert [(r.event, r.generation) for r in breaker.audit] == [("trip", 1)]
    assert (breaker.state, len(entry.calls)) == ("open", 1)


def test_an_awaited_shared_call_without_call_timeout_needs_no_asyncio_task(
    make: Make, entry: ScriptedState
) -> None:
    """Without call_timeout, acall awaits the operation itself, under no asyncio.timeout
    (the README's call_timeout is what brings one): a runner other than asyncio's (here
    the coroutine is driven by hand) runs it to its end, and its outcome is recorded."""
    breaker = make(failure_threshold=3)
    entry.script(None)
    running = breaker.acall(aok, "ran")
    with pytest.raises(StopIteration) as done:
        running.send(None)
    assert done.value.value == "ran"
    assert [(c.op, c.args[:2]) for c in entry.calls] == [("arecord", (0, SUCCESS))]


def test_a_call_admitted_at_the_first_local_generation_is_settled_locally_once_resynced(
    make: Make, entry: ScriptedState, clock: FakeClock
) -> None:
    """A call admitted on local state, at LOCAL_GEN itself (the first local generation after
    the shared generation LOCAL_GEN - 1), that ends after the store took the breaker back is
    settled locally (stale there): nothing is sent to the store for it."""
    breaker = make()
    entry.script(reply(gen=LOCAL_GEN - 1), ConnectionError("store down"))
    assert breaker.call(ok) == breaker.call(ok) == "ok"  # mirrors LOCAL_GEN - 1, then degrades
    assert breaker.send("reset") == "closed"  # before the retry time: a local transition

    def resynced_meanwhile() -> str:
        clock.advance(5)  # the retry time
        entry.script(None)
        assert breaker.call(ok) == "ok"  # settled in the store: no longer degraded
        assert breaker.metrics().degraded is False
        return "ok"

    assert breaker.call(resynced_meanwhile) == "ok"
    assert [(c.op, c.args[0]) for c in entry.calls] == [
        ("record", 0),
        ("record", LOCAL_GEN - 1),
        ("record", LOCAL_GEN),  # the inner call's, past the retry time
    ]
    assert breaker.metrics().success_count == 4


class NestedSendOnRetrip:
    """A listener on a breaker's machine: the state each transition exits; before the
    first retrip, it sends ``force_open`` to the breaker (a store transition nested in one)."""

    def __init__(self, breaker: CircuitBreaker) -> None:
        self.breaker = breaker
        self.exits: list[tuple[str, str]] = []

    def before_transition(self, event: str) -> None:
        if event == "retrip" and not self.exits:
            self.breaker.send("force_open")

    def on_exit_state(self, event: str, state: Any) -> None:
        self.exits.append((str(event), str(state.id)))


def test_a_store_transition_leaves_its_source_state_after_a_nested_one(
    make: Make, entry: ScriptedState
) -> None:
    """A store's transition from a state the mirror never saw (a retrip from half_open,
    the mirror still closed) leaves that state on the kept machine, even when a listener
    sends the breaker an event (a nested store transition) before it is applied."""
    breaker = make(failure_threshold=1)
    listener = NestedSendOnRetrip(breaker)
    breaker.machine.add_listener(listener)  # type: ignore[no-untyped-call]
    entry.script(
        reply("open", gen=3, event="retrip", source="half_open", streak=2, trials=(0, 1)),
        reply("forced_open", gen=4, event="force_open", source="open"),
    )
    with pytest.raises(Boom):
        breaker.call(boom)
    assert listener.exits == [("retrip", "half_open"), ("force_open", "open")]
    assert [(r.event, r.source, r.target) for r in breaker.audit] == [
        ("retrip", "half_open", "open"),
        ("force_open", "open", "forced_open"),
    ]
    assert breaker.state == "forced_open"


class AskedPolicy(BreakerPolicy):
    """A policy whose trial_failed guard notes the evidence it is asked on."""

    asked: ClassVar[list[Any]] = []

    def trial_failed(self, stats: Any = None) -> bool:
        AskedPolicy.asked.append(stats)
        return super().trial_failed(stats)


def test_a_store_transition_is_put_to_the_guard_of_its_source_state(
    entry: ScriptedState, clock: FakeClock
) -> None:
    """A store's transition from a state the mirror never saw (a retrip from half_open,
    the mirror still closed) goes through the machine from that state: the policy's guard
    is asked, on the store's evidence (no machine of the breaker's own is built)."""
    AskedPolicy.asked.clear()
    policy = AskedPolicy(failure_threshold=1, reset_timeout=10)
    breaker = CircuitBreaker("svc", policy, clock=clock, store=ScriptedStore(entry))
    entry.script(reply("open", gen=3, event="retrip", source="half_open", trials=(0, 1)))
    with pytest.raises(Boom):
        breaker.call(boom)
    assert [stats.trial_failures for stats in AskedPolicy.asked] == [1]
    [record] = breaker.audit
    assert (record.event, record.source, record.target, breaker.state) == (
        "retrip", "half_open", "open", "open",
    )  # fmt: skip
    assert breaker._machine is None
