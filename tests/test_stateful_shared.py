"""Model-based test of a shared breaker: one process on a real redis-server vs ``tests.model``.

The same reference model as the in-memory stateful test, driven by the same strategies
(``tests/strategies.py``), but the breaker is a ``SharedBreaker`` whose every decision the
Lua scripts make, on a redis-server whose scripts read the example's fake clock (``now=``).
A single process sees the fleet's state exactly as the model does, so state, counters,
refusals and the audit trail must agree step by step.

Two differences from the in-memory test, both on purpose:

* jitter is off: a shared breaker draws its jitter for every outcome that *could* open it
  (the store decides whether it does), so its random sequence is not the model's one draw
  per open episode;
* a time window's figures in ``metrics()`` are not compared: a shared breaker reports
  them as of its last round trip (a bug, pinned as an xfail in ``test_behaviour.py``);
* examples are fewer (a round trip per outcome): at most ``MAX_EXAMPLES``, or the profile's
  count when that is lower (``mutation``). Each example has its own breaker name and store,
  so examples never share an entry.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest
from hypothesis import event, note, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from breaker_fsm import (
    BreakerPolicy,
    CircuitBreaker,
    CircuitOpenError,
    IllegalTransitionError,
    TimeWindow,
)
from breaker_fsm.audit import verify
from breaker_fsm.testing import FakeClock
from tests.model import HALF_OPEN, OPEN, REJECTED, ReferenceBreaker, Ticket
from tests.strategies import (
    EVENTS,
    CallSpec,
    ClientError,
    Hint,
    NotFoundError,
    ServiceError,
    call_specs,
    policies,
)

if TYPE_CHECKING:
    from breaker_fsm import Transition
    from breaker_fsm.redis import RedisStore
    from tests.redis_server import StoreFactory

pytest.importorskip("redis", reason="redis-py is not installed: pip install redis")

MAX_EXAMPLES = 100

_EXCEPTIONS: dict[str, type[BaseException]] = {
    "service_error": ServiceError,
    "client_error": ClientError,
    "not_found": NotFoundError,
    "value_error": ValueError,
}
_BOOM = "predicate raises on this"
_BAD = "a result is_failure rejects"
_NAMES = itertools.count()


@pytest.fixture(autouse=True)
def _quiet_breaker_log() -> Iterator[None]:
    """Failing sinks and predicates are logged on purpose here; keep reports readable."""
    logger = logging.getLogger("breaker_fsm")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    yield
    logger.setLevel(level)


def _is_failure(result: object) -> bool | float:
    """``_BAD`` fails, ``Hint`` fails with seconds, ``_BOOM`` makes the predicate raise."""
    if result == _BOOM:
        raise RuntimeError("is_failure is broken")
    if isinstance(result, Hint):
        return result.seconds
    return result == _BAD


def _fallback(*args: Any, **kwargs: Any) -> tuple[str, tuple[Any, ...], dict[str, Any]]:
    """What a refused call returns when the breaker has a fallback: its arguments, tagged."""
    return ("fallback", args, kwargs)


def _failing_sink(record: Transition) -> None:
    """An audit sink that always fails: it must never affect a call or a transition."""
    raise RuntimeError(f"sink down ({record.seq})")


class SharedBreakerVersusModel(RuleBasedStateMachine):
    """Drive a shared breaker and the reference model with the same calls, clock and events."""

    stores: StoreFactory  # set on the subclass the test builds

    def __init__(self) -> None:
        super().__init__()
        self.breaker: CircuitBreaker | None = None
        self.store: RedisStore | None = None
        self.loop: asyncio.AbstractEventLoop | None = None

    @initialize(
        policy=policies().map(lambda p: p.model_copy(update={"reset_timeout_jitter": 0.0})),
        start=st.sampled_from([0.0, 0.5, 1000.0]),
        use_fallback=st.booleans(),
        use_predicate=st.booleans(),
        failing_sink=st.booleans(),
    )
    def build(
        self,
        *,
        policy: BreakerPolicy,
        start: float,
        use_fallback: bool,
        use_predicate: bool,
        failing_sink: bool,
    ) -> None:
        """A shared breaker on its own store entry, its scripts on the fake clock."""
        self.clock = FakeClock(start)
        self.name = f"model-{next(_NAMES)}"
        self.records: list[Transition] = []
        sinks: list[Any] = [self.records.append]
        if failing_sink:
            sinks.insert(0, _failing_sink)
        self.failing_sink = failing_sink
        self.use_fallback = use_fallback
        self.use_predicate = use_predicate
        self.loop = asyncio.new_event_loop()
        self.store = self.stores(now=self.clock.monotonic)
        self.breaker = CircuitBreaker(
            self.name,
            policy,
            clock=self.clock,
            fallback=_fallback if use_fallback else None,
            sinks=sinks,
            is_failure=_is_failure if use_predicate else None,
            store=self.store,
        )
        self.model = ReferenceBreaker(policy, random.Random(0))  # no jitter: never drawn

    def teardown(self) -> None:
        """Close the store's clients (the asyncio one on its loop), then the loop."""
        if self.loop is not None:
            if self.store is not None:
                self.loop.run_until_complete(self.store.aclose())
                self.store.close()
            self.loop.close()

    # ------------------------------------------------------------------ calls

    def _result_of(self, spec: CallSpec) -> tuple[object, BaseException | None]:
        """What the operation returns or raises for ``spec``."""
        if spec.outcome == "ok":
            return "value", None
        if spec.outcome == "bad_result":
            return _BAD, None
        if spec.outcome == "hint_result":
            return Hint(spec.hint), None
        if spec.outcome == "predicate_raises":
            return _BOOM, None
        if spec.outcome == "base_exception":
            neutral = asyncio.CancelledError if spec.is_async else KeyboardInterrupt
            return None, neutral("neutral")
        return None, _EXCEPTIONS[spec.outcome](spec.outcome)

    def _expected_outcome(
        self, spec: CallSpec, error: BaseException | None
    ) -> tuple[str, float | None]:
        """The model's verdict on a call that ran: (ok/failed/neutral, Retry-After hint)."""
        if error is not None:
            return self.model.classify_exception(type(error)), None
        if not self.use_predicate:
            return "ok", None
        if spec.outcome == "bad_result":
            return "failed", None
        if spec.outcome == "hint_result":
            return "failed", spec.hint
        if spec.outcome == "predicate_raises":
            return "neutral", None
        return "ok", None

    def _invoke(self, spec: CallSpec) -> None:
        """One call through the breaker, checked against the model's admission and verdict."""
        breaker, model, clock = self.breaker, self.model, self.clock
        assert breaker is not None
        assert self.loop is not None
        started = clock.monotonic()
        ticket = model.admit(started)
        admitted_in = model.state
        result, error = self._result_of(spec)
        ran: list[bool] = []

        def body() -> object:
            ran.append(True)
            if spec.duration:
                clock.advance(spec.duration)
            if isinstance(spec.inner, CallSpec):
                self._invoke(spec.inner)
            elif isinstance(spec.inner, str):
                self._send(spec.inner)
            if error is not None:
                raise error
            return result

        def operation(*args: Any, **kwargs: Any) -> object:
            assert (args, kwargs) == ((1,), {"k": 2})
            return body()

        async def async_operation(*args: Any, **kwargs: Any) -> object:
            assert (args, kwargs) == ((1,), {"k": 2})
            return body()

        got: object = None
        raised: BaseException | None = None
        try:
            if spec.is_async:
                got = self.loop.run_until_complete(breaker.acall(async_operation, 1, k=2))
            else:
                got = breaker.call(operation, 1, k=2)
        except BaseException as exc:  # KeyboardInterrupt is a test outcome here
            raised = exc
        note(f"{spec} admitted={ticket!r} in {admitted_in} -> raised={raised!r}")
        event(f"call: {'refused' if ticket == REJECTED else 'ran'} in {admitted_in}")

        if ticket == REJECTED:
            assert not ran, "a refused call ran its operation"
            self._check_refusal(got, raised, started)
            return
        assert ran, "an admitted call did not run its operation"
        if error is None:
            assert raised is None, raised
            assert got is result
        else:
            assert isinstance(raised, type(error)), raised
        outcome, hint = self._expected_outcome(spec, error)
        if isinstance(ticket, Ticket) and self.use_predicate and spec.outcome == "predicate_raises":
            model.predicate_errors += 1
        model.complete(ticket, outcome, started, clock.monotonic(), hint)

    def _check_refusal(self, got: object, raised: BaseException | None, now: float) -> None:
        """A refused call returned the fallback's value, or raised a full CircuitOpenError."""
        if self.use_fallback:
            assert raised is None
            assert got == ("fallback", (1,), {"k": 2})
            return
        assert isinstance(raised, CircuitOpenError), raised
        assert (raised.breaker, raised.state) == (self.name, self.model.state)
        expected = self.model.retry_after(now)
        if expected is None:
            assert raised.retry_after is None
        else:
            assert raised.retry_after == pytest.approx(expected, abs=1e-9)

    @rule(spec=call_specs())
    def call(self, spec: CallSpec) -> None:
        """A call that returns or raises at once."""
        self._invoke(spec)

    @rule(specs=st.lists(call_specs(slow=True), min_size=2, max_size=6))
    def burst(self, specs: list[CallSpec]) -> None:
        """Several calls in a row, some taking time: streaks, windows, permits, slow calls."""
        for spec in specs:
            self._invoke(spec)

    @rule(spec=call_specs(nested=True))
    def call_with_inner_action(self, spec: CallSpec) -> None:
        """A call that, in flight, calls the breaker again or sends an operator event."""
        self._invoke(spec)

    @precondition(lambda self: self.breaker is not None and self._trial_would_run())
    @rule(spec=call_specs(nested=True, slow=True))
    def trial(self, spec: CallSpec) -> None:
        """A call the model admits as a half-open trial (it may call again in flight)."""
        self._invoke(spec)

    def _trial_would_run(self) -> bool:
        """Whether a call now would be admitted as a half-open trial (asks the model)."""
        model, now = self.model, self.clock.monotonic()
        if model.state == OPEN:
            return model.open_elapsed(now)
        return (
            model.state == HALF_OPEN
            and not model.half_open_timed_out(now)
            and model.permits < model.policy.half_open_max_calls
        )

    # ------------------------------------------------------------------ time

    @rule(seconds=st.sampled_from([0.125, 0.25, 0.5, 1.0, 2.0, 3.0, 7.0, 60.0]))
    def advance(self, seconds: float) -> None:
        """Time passes with no calls."""
        self.clock.advance(seconds)

    @precondition(
        lambda self: (
            self.breaker is not None
            and (
                self.model.state == OPEN
                or (
                    self.model.state == HALF_OPEN
                    and self.model.policy.half_open_timeout is not None
                )
            )
        )
    )
    @rule(early=st.booleans())
    def advance_to_deadline(self, early: bool) -> None:
        """Time moves to exactly (or just before) the end of the open or half-open episode."""
        model = self.model
        if model.state == OPEN:
            deadline = model.opened_at + model.open_duration
        else:
            assert model.policy.half_open_timeout is not None
            deadline = model.half_open_since + model.policy.half_open_timeout
        step = deadline - self.clock.monotonic()
        if early:
            step -= 0.125
        if step > 0:
            self.clock.advance(step)

    # ------------------------------------------------------------------ events

    def _send(self, name: str) -> None:
        assert self.breaker is not None
        state = self.model.state
        legal = self.model.send(name, self.clock.monotonic())
        try:
            after = self.breaker.send(name)
        except IllegalTransitionError as exc:
            assert not legal, f"{name!r} from {state!r} should be legal"
            assert (exc.event, exc.state) == (name, state)
        else:
            assert legal, f"{name!r} from {state!r} should be illegal"
            assert after == self.model.state

    @rule(name=st.sampled_from(EVENTS))
    def send(self, name: str) -> None:
        """An event fired by name: operator events, guarded events, an unknown name."""
        self._send(name)

    # ------------------------------------------------------------------ invariants

    @precondition(lambda self: self.breaker is not None)
    @invariant()
    def state_and_metrics_match(self) -> None:
        """State and every counter in ``metrics()`` equal the model's; never degraded."""
        assert self.breaker is not None
        now = self.clock.monotonic()
        expected = self.model.metrics(now)
        if isinstance(self.model.policy.window, TimeWindow):
            # Known bug, pinned by test_behaviour's xfail: the mirror reports a time window
            # as of the last reply, unaged. The trips it causes are still checked.
            for name in ("window_calls", "failure_rate", "slow_call_rate"):
                del expected[name]
        metrics = self.breaker.metrics()
        assert (metrics.degraded, metrics.store_errors) == (False, 0)
        assert {name: getattr(metrics, name) for name in expected} == expected
        expected_retry = self.model.retry_after(now)
        if expected_retry is None:
            assert metrics.retry_after is None
        else:
            assert metrics.retry_after == pytest.approx(expected_retry, abs=1e-9)
        if self.model.state == OPEN:
            assert metrics.open_duration == pytest.approx(self.model.open_duration, rel=1e-12)
        errors = self.model.predicate_errors
        if self.failing_sink:
            errors += len(self.model.trail)
        assert metrics.sink_errors == errors

    @precondition(lambda self: self.breaker is not None)
    @invariant()
    def audit_trail_matches(self) -> None:
        """The trail is the model's, numbered by the store's generations, and verifies."""
        assert self.breaker is not None
        records = list(self.breaker.audit)
        trail = self.model.trail
        assert [(r.event, r.source, r.target) for r in records] == [t[:3] for t in trail]
        assert [r.seq for r in records] == list(range(1, len(trail) + 1))
        assert [r.generation for r in records] == [r.seq for r in records]
        assert [r.monotonic for r in records] == [t[3] for t in trail]
        for record, rules in zip(records, self.model.trip_rules, strict=True):
            event(f"transition: {record.event} {record.source} -> {record.target}")
            if rules:
                assert any(rule in record.reason for rule in rules), (record.reason, rules)
        assert verify(records) == len(records)
        assert self.records == records


def test_a_shared_breaker_agrees_with_the_model(redis_stores: StoreFactory) -> None:
    """A shared breaker on a real redis-server walks exactly as the reference model does."""

    class Machine(SharedBreakerVersusModel):
        stores = staticmethod(redis_stores)

    examples = min(MAX_EXAMPLES, settings.default.max_examples)
    run_state_machine_as_test(
        Machine,
        settings=settings(max_examples=examples, deadline=None, stateful_step_count=30),
    )
