"""The rules both model-based tests share: a breaker and ``tests.model`` driven alike.

:class:`BreakerRules` holds every rule, check and invariant that does not depend on where
the breaker keeps its state; ``test_stateful.py`` (in memory) and ``test_stateful_shared.py``
(on a real redis-server) subclass it, each adding its set-up and what only it can check.

Besides calls (sync and async, nested, slow) and operator events, the rules take and settle
permits (``acquire``/``aacquire``, then ``success``/``failure``/``release`` or ending a
``with``/``async with`` on the permit) and run ``with breaker:``/``async with breaker:``
blocks, interleaved with the calls: a held permit keeps its half-open trial slot, and one
settled after a transition counts in the lifetime totals only, as a call's outcome does.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

import pytest
from hypothesis import event, note
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from breaker_fsm import CircuitBreaker, CircuitOpenError, IllegalTransitionError, Permit
from tests.model import HALF_OPEN, OPEN, REJECTED, ReferenceBreaker, Ticket
from tests.strategies import (
    EVENTS,
    CallSpec,
    ClientError,
    Hint,
    NotFoundError,
    ServiceError,
    call_specs,
)

if TYPE_CHECKING:
    from breaker_fsm import BreakerMetrics, Transition
    from breaker_fsm.testing import FakeClock

__all__ = ["BreakerRules", "broken_sink", "fallback", "is_failure"]

EXCEPTIONS: dict[str, type[BaseException]] = {
    "service_error": ServiceError,
    "client_error": ClientError,
    "not_found": NotFoundError,
    "value_error": ValueError,
}
_BOOM = "predicate raises on this"
_BAD = "a result is_failure rejects"

#: How a held permit is settled: its own methods, or the end of a block on the permit.
_SETTLE = ("success", "failure", "release", "with", "async with")
#: What a block (on the breaker or on a permit) raises: nothing, or one of these.
_BLOCK_ERRORS = st.sampled_from([None, None, *EXCEPTIONS])


def is_failure(result: object) -> bool | float:
    """The predicate the test breakers use: ``_BAD`` fails, ``Hint`` fails with seconds."""
    if result == _BOOM:
        raise RuntimeError("is_failure is broken")
    if isinstance(result, Hint):
        return result.seconds
    return result == _BAD


def fallback(*args: Any, **kwargs: Any) -> tuple[str, tuple[Any, ...], dict[str, Any]]:
    """What a refused call returns when the breaker has a fallback: its arguments, tagged."""
    return ("fallback", args, kwargs)


def broken_sink(record: Transition) -> None:
    """An audit sink that always fails: it must never affect a call or a transition."""
    raise RuntimeError(f"sink down ({record.seq})")


class BreakerRules(RuleBasedStateMachine):
    """Drive ``self.breaker`` and ``self.model`` with the same calls, permits, clock and events.

    A subclass's ``@initialize`` rule sets ``breaker``, ``model``, ``clock`` and the options
    (``use_fallback``, ``use_predicate``, ``failing_sink``).
    """

    breaker: CircuitBreaker | None
    model: ReferenceBreaker
    clock: FakeClock
    use_fallback: bool
    use_predicate: bool
    failing_sink: bool

    def __init__(self) -> None:
        super().__init__()
        self.breaker = None
        self.loop: asyncio.AbstractEventLoop = asyncio.new_event_loop()
        #: Permits taken and not yet settled: (permit, the model's ticket, taken at).
        self.held: list[tuple[Permit, Ticket | str, float]] = []
        self.settled: list[Permit] = []
        # Failing sinks and predicates are logged on purpose here: keep reports readable.
        self._logger = logging.getLogger("breaker_fsm")
        self._log_level = self._logger.level
        self._logger.setLevel(logging.CRITICAL)

    def teardown(self) -> None:
        """Release the permits still held; close the event loop; logging as it was."""
        self.release_held()
        self.loop.close()
        self._logger.setLevel(self._log_level)

    def release_held(self) -> None:
        """Release every permit still held (the model is done with them): a permit is
        never left to the garbage collector, which warns."""
        for permit, _, _ in self.held:
            permit.release()
        self.held.clear()

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
        return None, EXCEPTIONS[spec.outcome](spec.outcome)

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
        started = clock.monotonic()
        state_before = model.state
        ticket = model.admit(started)
        admitted_in = model.state
        result, error = self._result_of(spec)
        ran: list[bool] = []

        def body() -> object:
            ran.append(True)
            self._in_flight(spec)
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
        ended = clock.monotonic()
        note(f"{spec} admitted={ticket!r} from {state_before} -> raised={raised!r}")
        event(f"call: {'refused' if ticket == REJECTED else 'ran'} in {admitted_in}")

        if ticket == REJECTED:
            assert not ran, "a refused call ran its operation"
            self._check_refusal(got, raised, started, self.use_fallback)
            return

        assert ran, "an admitted call did not run its operation"
        self._check_raised(error, raised)
        if error is None:
            assert got is result
        outcome, hint = self._expected_outcome(spec, error)
        if isinstance(ticket, Ticket) and ticket.episode != model.episode:
            event(f"call: outcome of {admitted_in} call after a transition")
        if isinstance(ticket, Ticket) and self.use_predicate and spec.outcome == "predicate_raises":
            model.predicate_errors += 1  # the predicate ran and raised: counted, logged
        if admitted_in == HALF_OPEN:
            event(f"call: {outcome} trial")
        model.complete(ticket, outcome, started, ended, hint)

    def _in_flight(self, spec: CallSpec) -> None:
        """What an operation does before it ends: time passes, an inner call or event."""
        if spec.duration:
            self.clock.advance(spec.duration)
        if isinstance(spec.inner, CallSpec):
            self._invoke(spec.inner)
        elif isinstance(spec.inner, str):
            self._send(spec.inner)

    @staticmethod
    def _check_raised(error: BaseException | None, raised: BaseException | None) -> None:
        """The operation's own exception reached the caller unchanged (or nothing did)."""
        if error is None:
            assert raised is None, raised
        elif isinstance(error, asyncio.CancelledError):
            assert isinstance(raised, asyncio.CancelledError)  # the loop may raise its own
        else:
            assert raised is error, "the operation's own exception must be re-raised unchanged"

    def _check_refusal(
        self, got: object, raised: BaseException | None, now: float, answered: bool
    ) -> None:
        """A refused call returned the fallback's value (``answered``), or raised a full
        CircuitOpenError."""
        assert self.breaker is not None
        if answered:
            assert raised is None
            assert got == ("fallback", (1,), {"k": 2})
            return
        assert isinstance(raised, CircuitOpenError), raised
        assert (raised.breaker, raised.state) == (self.breaker.name, self.model.state)
        expected_retry = self.model.retry_after(now)
        if expected_retry is None:
            assert raised.retry_after is None
        else:
            assert raised.retry_after == pytest.approx(expected_retry, abs=1e-9)

    @rule(spec=call_specs())
    def call(self, spec: CallSpec) -> None:
        """A call that returns or raises at once."""
        self._invoke(spec)

    @rule(spec=call_specs(nested=True))
    def call_with_inner_action(self, spec: CallSpec) -> None:
        """A call that, in flight, calls the breaker again or sends an operator event."""
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

    # ------------------------------------------------------------------ permits and blocks

    @precondition(lambda self: self.breaker is not None)
    @rule(is_async=st.booleans())
    def acquire(self, is_async: bool) -> None:
        """Take a permit (acquire or aacquire) and hold it while other rules run."""
        assert self.breaker is not None
        now = self.clock.monotonic()
        ticket = self.model.admit(now)
        try:
            if is_async:
                permit = self.loop.run_until_complete(self.breaker.aacquire())
            else:
                permit = self.breaker.acquire()
        except CircuitOpenError as exc:
            assert ticket == REJECTED, f"refused a permit the model grants: {exc!r}"
            self._check_refusal(None, exc, now, answered=False)  # a permit has no fallback
            event("permit: refused")
            return
        assert ticket != REJECTED, "granted a permit the model refuses"
        assert not permit.settled
        event(f"permit: taken in {self.model.state}")
        self.held.append((permit, ticket, now))

    @precondition(lambda self: self.breaker is not None and self._trial_would_run())
    @rule(is_async=st.booleans())
    def trial_permit(self, is_async: bool) -> None:
        """Take a permit when the model says it will be a half-open trial slot."""
        self.acquire(is_async)

    @precondition(lambda self: bool(self.held))
    @rule(index=st.integers(0, 7), how=st.sampled_from(_SETTLE), error=_BLOCK_ERRORS)
    def settle(self, index: int, how: str, error: str | None) -> None:
        """Settle a held permit: success, failure, release, or the end of a block on it
        (normal: a success; an exception: judged as call judges it, and re-raised)."""
        self._settle(self.held.pop(index % len(self.held)), how, error)

    def _trial_held(self) -> bool:
        """Whether a permit of the current half-open episode is held."""
        episode = Ticket(self.model.episode)
        return self.model.state == HALF_OPEN and any(t == episode for _, t, _ in self.held)

    @precondition(lambda self: self.breaker is not None and self._trial_held())
    @rule(how=st.sampled_from(_SETTLE), error=_BLOCK_ERRORS)
    def settle_trial(self, how: str, error: str | None) -> None:
        """Settle the permit that holds a half-open trial slot (release gives it back)."""
        episode = Ticket(self.model.episode)
        index = next(i for i, (_, t, _) in enumerate(self.held) if t == episode)
        self._settle(self.held.pop(index), how, error)

    def _settle(
        self, held: tuple[Permit, Ticket | str, float], how: str, error: str | None
    ) -> None:
        """Settle ``held`` as ``how`` says, raising ``error`` in a block, and tell the model."""
        permit, ticket, started = held
        raised: BaseException | None = None
        block = how in ("with", "async with")
        exc = EXCEPTIONS[error](error) if block and error is not None else None
        if not block:
            getattr(permit, how)()
            outcome = {"success": "ok", "failure": "failed", "release": "neutral"}[how]
        else:
            outcome = "ok" if exc is None else self.model.classify_exception(type(exc))
            try:
                if how == "with":
                    with permit:
                        if exc is not None:
                            raise exc
                else:
                    self.loop.run_until_complete(self._async_block(permit, exc))
            except BaseException as caught:
                raised = caught
        assert raised is exc
        assert permit.settled
        if isinstance(ticket, Ticket) and ticket.episode != self.model.episode:
            event("permit: settled after a transition")
        self.model.complete(ticket, outcome, started, self.clock.monotonic())
        self.settled.append(permit)

    @staticmethod
    async def _async_block(guard: Any, exc: BaseException | None) -> None:
        """``async with guard:`` a block that raises ``exc`` (if any)."""
        async with guard:
            if exc is not None:
                raise exc

    @precondition(lambda self: bool(self.settled))
    @rule(index=st.integers(0, 7), how=st.sampled_from(["success", "failure", "release"]))
    def settle_again(self, index: int, how: str) -> None:
        """A settled permit refuses a second outcome (RuntimeError) and records nothing."""
        permit = self.settled[index % len(self.settled)]
        with pytest.raises(RuntimeError, match="settles once"):
            getattr(permit, how)()

    @precondition(lambda self: self.breaker is not None)
    @rule(spec=call_specs(nested=True, slow=True), error=_BLOCK_ERRORS)
    def block(self, spec: CallSpec, error: str | None) -> None:
        """``with breaker:`` (``async with`` when ``spec.is_async``) around a block that
        takes ``spec``'s time and inner action, then ends normally or raises ``error``."""
        breaker, model = self.breaker, self.model
        assert breaker is not None
        started = self.clock.monotonic()
        ticket = model.admit(started)
        admitted_in = model.state
        exc = None if error is None else EXCEPTIONS[error](error)
        ran: list[bool] = []

        raised: BaseException | None = None
        try:
            if spec.is_async:
                self.loop.run_until_complete(self._async_guarded(breaker, spec, exc, ran))
            else:
                with breaker:
                    ran.append(True)
                    self._in_flight(spec)
                    if exc is not None:
                        raise exc
        except BaseException as caught:
            raised = caught
        event(f"block: {'refused' if ticket == REJECTED else 'ran'} in {admitted_in}")
        if ticket == REJECTED:
            assert not ran, "a refused block ran"
            self._check_refusal(None, raised, started, answered=False)  # blocks: no fallback
            return
        assert ran, "an admitted block did not run"
        assert raised is exc
        outcome = "ok" if exc is None else model.classify_exception(type(exc))
        model.complete(ticket, outcome, started, self.clock.monotonic())

    async def _async_guarded(
        self, breaker: CircuitBreaker, spec: CallSpec, exc: BaseException | None, ran: list[bool]
    ) -> None:
        """``async with breaker:`` around the block of :meth:`block`."""
        async with breaker:
            ran.append(True)
            self._in_flight(spec)
            if exc is not None:
                raise exc

    # ------------------------------------------------------------------ time

    @rule(seconds=st.sampled_from([0.125, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 7.0, 60.0]))
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
        model, now = self.model, self.clock.monotonic()
        if model.state == OPEN:
            deadline = model.opened_at + model.open_duration
        else:
            assert model.policy.half_open_timeout is not None
            deadline = model.half_open_since + model.policy.half_open_timeout
        step = deadline - now
        if early:
            step -= 0.125
        if step > 0:
            self.clock.advance(step)

    # ------------------------------------------------------------------ events

    def _send(self, name: str) -> None:
        """Send ``name`` to both; the breaker refuses exactly what the model finds illegal."""
        assert self.breaker is not None
        state = self.model.state
        legal = self.model.send(name, self.clock.monotonic())
        try:
            after = self.breaker.send(name)
        except IllegalTransitionError as exc:
            assert not legal, f"{name!r} from {state!r} should be legal"
            assert (exc.event, exc.state) == (name, state)
            assert name in str(exc)
            assert state in str(exc)
        else:
            assert legal, f"{name!r} from {state!r} should be illegal"
            assert after == self.model.state

    @rule(name=st.sampled_from(EVENTS))
    def send(self, name: str) -> None:
        """An event fired by name: operator events, guarded events, an unknown name."""
        self._send(name)

    # ------------------------------------------------------------------ invariants

    def _expected_metrics(self, now: float) -> dict[str, Any]:
        """The ``metrics()`` fields to compare with the model's at ``now``."""
        return self.model.metrics(now)

    def _check_metrics(self, metrics: BreakerMetrics) -> None:
        """What only one kind of breaker can check on its metrics (nothing here)."""

    @precondition(lambda self: self.breaker is not None)
    @invariant()
    def state_and_metrics_match(self) -> None:
        """State and every counter in ``metrics()`` equal the model's."""
        assert self.breaker is not None
        now = self.clock.monotonic()
        expected = self._expected_metrics(now)
        metrics = self.breaker.metrics()
        assert self.breaker.state == self.model.state
        assert {name: getattr(metrics, name) for name in expected} == expected
        assert metrics.name == self.breaker.name
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
        self._check_metrics(metrics)
