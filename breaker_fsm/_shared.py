"""``SharedBreaker``: a :class:`CircuitBreaker` whose state a fleet shares through a store.

``CircuitBreaker(name, policy, store=...)`` builds one (as ``pathlib.Path`` builds a
``PosixPath``); the in-memory breaker never mentions a store. A shared breaker keeps a
mirror of the shared state in the attributes it inherits (state, gen = seq = the shared
generation, open timing, streak, trial counts), which the store keeps current by pushing
every other member's transitions, and asks the store only when the mirror cannot decide
(or is not live: the push channel is down, or it has not read the state yet): each
operation is plan (no I/O) → one round trip → handle the reply, so the sync and asyncio
twins differ by the round trip alone. A store that fails or times out puts
the breaker on its local state, decided by the inherited in-memory engine with the same
policy, until a later round trip succeeds; nothing the store raises reaches the caller.

Its special admissions never leave this module: ``_ASK`` (one round trip decides) and
``_LOCAL`` (degraded: the local rules decide) are plans, resolved to a ticket before the
call runs. How replies move the mirror is :mod:`breaker_fsm._mirror`'s.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar, cast

from ._audit import SHARED_LIFE
from ._binding import refused_because
from ._guard import Permit
from ._local import COROUTINE
from ._machine import STATES
from ._mirror import LOCAL_GEN, Mirror, StoreLink
from ._outcome import VOID, Admission
from ._policy import BreakerPolicy
from ._store import EVENT_CODES, PushingState, Seed
from ._transitions import CLOSED, DISABLED, HALF_OPEN, OPEN
from .exceptions import IllegalTransitionError

if TYPE_CHECKING:
    from ._store import SharedStore, StoreReply

__all__ = ["SharedBreaker"]

_log = logging.getLogger("breaker_fsm")

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")

_REFUSED, _BYPASS = Admission.REFUSED, Admission.BYPASS
_ASK = -10  # admission plan: the mirror cannot decide, ask the store
_LOCAL = -11  # admission plan: degraded, decide on local state


class SharedBreaker(Mirror):
    """A breaker whose state is shared through ``store`` (see :class:`CircuitBreaker`)."""

    __slots__ = ()

    _overrides_are_final = False  # a mirrored forced_open may be stale: ask now and then
    _closed_inline = False  # every call goes through the mirror

    def __init__(
        self, name: str, policy: BreakerPolicy | None = None, *, store: SharedStore, **options: Any
    ) -> None:
        super().__init__(name, policy, store=store, **options)  # checked with the others there
        self._audit_shared = SHARED_LIFE  # its records number in the store's shared walk
        self._link = StoreLink(
            store.bind(name, self.policy), Seed(CLOSED, 0, 0, self.policy.reset_timeout, 0.0)
        )
        entry = self._link.entry
        if isinstance(entry, PushingState):
            self._link.pushing = True
            entry.follow(self)  # last: a push may arrive at once
        else:  # no pushes: the mirror is trusted as it stands
            self._link.live = True

    # ------------------------------------------------------------------ calls

    def call(self, func: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
        """:meth:`CircuitBreaker.call` on the shared state."""
        link = self._link
        now = self._clock.monotonic()
        gen = _REFUSED if self._refuses_alone(link, now) else self._store_admit(link, now)
        if gen < 0:
            return cast(R, self._unadmitted(gen, func, args, kwargs))
        started = self._clock.monotonic()
        try:
            result = func(*args, **kwargs)
        except BaseException as exc:
            self._settle(gen, *self._judge_raised(exc), started, exc)
            raise
        if type(result) is COROUTINE:
            raise self._not_awaited(func, result, gen)
        self._settle(gen, *self._judge_result(result), started, None)
        return result

    async def acall(
        self, func: Callable[P, Awaitable[R]], /, *args: P.args, **kwargs: P.kwargs
    ) -> R:
        """:meth:`CircuitBreaker.acall` on the shared state: the store's asyncio twins."""
        link = self._link
        now = self._clock.monotonic()
        gen = _REFUSED if self._refuses_alone(link, now) else await self._store_aadmit(link, now)
        if gen < 0:
            return cast(R, await self._aunadmitted(gen, func, args, kwargs))
        started = self._clock.monotonic()
        try:
            result = await (  # under call_timeout, if the policy sets one
                func(*args, **kwargs)
                if self._call_timeout is None
                else self._timed_await(func, args, kwargs)
            )
        except BaseException as exc:
            await self._asettle(gen, *self._judge_raised(exc), started, exc)
            raise
        await self._asettle(gen, *self._judge_result(result), started, None)
        return result

    def _refuses_alone(self, link: StoreLink, now: float) -> bool:
        """Whether the mirror refuses a call without a round trip: open, and trusted."""
        return (
            self._state == OPEN
            and link.live
            and self._rejects_inline
            and self._open_duration > now - self._opened_at
        )

    def _give_back(self, gen: int) -> None:
        """Give back the admission of a call that was not made; nothing is recorded.

        A half-open trial slot is the store's: giving it back is one round trip.
        """
        self._settle(gen, VOID, None, 0.0, None)

    # ------------------------------------------------------------------ operator events

    def send(self, event: str, *, reason: str | None = None) -> str:
        """:meth:`CircuitBreaker.send` on the shared state, atomically.

        The guards decide on the shared counters. While the store is unreachable the event
        is applied to this process's local state only, with a warning.
        """
        reason = self._check_reason(reason)
        link = self._link
        code, now = self._store_send_plan(link, event)
        answer: StoreReply | Exception | None = None
        if code is not None:
            answer = self._round_trip(link, link.entry.operator, *self._operator_args(code, now))
        return self._store_sent(link, event, reason, now, answer) or self._send_local(event, reason)

    async def asend(self, event: str, *, reason: str | None = None) -> str:
        """:meth:`send` on the store's asyncio client: the round trip never blocks the loop."""
        reason = self._check_reason(reason)
        link = self._link
        code, now = self._store_send_plan(link, event)
        answer: StoreReply | Exception | None = None
        if code is not None:
            args = self._operator_args(code, now)
            answer = await self._around_trip(link, link.entry.aoperator, *args)
        return self._store_sent(link, event, reason, now, answer) or self._send_local(event, reason)

    # ------------------------------------------------------------------ permits

    def acquire(self) -> Permit:
        """:meth:`CircuitBreaker.acquire` on the shared state."""
        return self._permit(self._store_admit(self._link, self._clock.monotonic()))

    async def aacquire(self) -> Permit:
        """:meth:`CircuitBreaker.aacquire` on the shared state, on the asyncio client."""
        return self._permit(await self._store_aadmit(self._link, self._clock.monotonic()))

    def _complete(self, gen: int, outcome: int, started: float, exc: BaseException | None) -> None:
        """Settle a permit on the shared state (one round trip, as after a call)."""
        if gen < 0:
            super()._complete(gen, outcome, started, exc)
        else:
            self._settle(gen, outcome, None, started, exc)

    async def _acomplete(
        self, gen: int, outcome: int, started: float, exc: BaseException | None
    ) -> None:
        """:meth:`_complete` on the asyncio client."""
        if gen < 0:
            super()._complete(gen, outcome, started, exc)
        else:
            await self._asettle(gen, outcome, None, started, exc)

    def _settle(
        self, gen: int, outcome: int, hint: float | None, started: float, exc: BaseException | None
    ) -> None:
        """Record the outcome of a call (or a permit) admitted at ``gen``.

        The call sinks hear of it first; then it is recorded locally if no round trip is
        due (:meth:`_store_local`), else in the store.
        """
        if not self._settled_locally(gen, outcome, hint, started, exc):
            self._store_record(self._link, gen, outcome, started, hint)

    async def _asettle(
        self, gen: int, outcome: int, hint: float | None, started: float, exc: BaseException | None
    ) -> None:
        """:meth:`_settle` on the asyncio client."""
        if not self._settled_locally(gen, outcome, hint, started, exc):
            await self._store_arecord(self._link, gen, outcome, started, hint)

    def _settled_locally(
        self, gen: int, outcome: int, hint: float | None, started: float, exc: BaseException | None
    ) -> bool:
        """Tell the call sinks; record locally if no round trip is due; whether it did."""
        if self._call_sinks:
            self._tell_call(outcome, started, exc)
        return self._store_local(self._link, gen, outcome, started, hint)

    # ------------------------------------------------------------------ the round trips

    def _store_admit(self, link: StoreLink, now: float) -> int:
        """Admit a call (sync): from the mirror, with one round trip, or on local state."""
        plan = self._store_plan(link, now)
        if plan != _ASK:
            return self._admit() if plan == _LOCAL else plan
        token, u, seed = self._acquire_plan(link, now)
        reply = self._round_trip(link, link.entry.acquire, u, seed)
        return self._store_admitted(link, reply, now, token)

    async def _store_aadmit(self, link: StoreLink, now: float) -> int:
        """:meth:`_store_admit` on the asyncio client."""
        plan = self._store_plan(link, now)
        if plan != _ASK:
            return self._admit() if plan == _LOCAL else plan
        token, u, seed = self._acquire_plan(link, now)
        reply = await self._around_trip(link, link.entry.aacquire, u, seed)
        return self._store_admitted(link, reply, now, token)

    def _round_trip(
        self, link: StoreLink, operation: Callable[..., T], *args: Any
    ) -> T | Exception:
        """``operation(*args)`` on the store: its reply, or the exception it raised."""
        try:
            return operation(*args)
        except Exception as exc:
            return exc
        except BaseException:  # interrupted: its script may have run all the same
            self._reply_lost(link)
            raise

    async def _around_trip(
        self, link: StoreLink, operation: Callable[..., Awaitable[T]], *args: Any
    ) -> T | Exception:
        """:meth:`_round_trip` on the asyncio client."""
        try:
            return await operation(*args)
        except Exception as exc:
            return exc
        except BaseException:  # interrupted (cancelled): its script may have run all the same
            self._reply_lost(link)
            raise

    def _store_plan(self, link: StoreLink, now: float) -> int:  # noqa: PLR0911 - one per case
        """An admission decided without a round trip, or how to decide it.

        A generation or ``_REFUSED`` when the mirror decides alone, ``_ASK`` for one round
        trip (always, while the mirror is not live), ``_LOCAL`` when degraded (the local
        rules decide).
        """
        state = self._state
        if link.degraded:
            return _LOCAL if now < link.retry_at or state == CLOSED else _ASK
        if not link.live:
            return _ASK
        if state == CLOSED:
            return self._gen
        if state == OPEN:
            return _REFUSED if now - self._opened_at < self._open_duration else _ASK
        if state == HALF_OPEN:
            return _ASK
        if now >= link.recheck_at:  # an override: re-checked now and then
            return _ASK
        return _BYPASS if state == DISABLED else _REFUSED

    def _jitter(self, could_open: bool = True) -> float:
        """The open-duration jitter ``u`` for the store (it computes the duration).

        Drawn only when the operation could open the breaker (an operator event, an
        admission that may retrip, an outcome for which :meth:`_could_open`), so the random
        source advances far less often than once per call.
        """
        jitter = self.policy.reset_timeout_jitter
        rng = self._rng
        if could_open and jitter and rng is not None:
            return rng.uniform(-jitter, jitter)
        return 0.0

    def _could_open(self, outcome: int) -> bool:
        """Whether recording ``outcome`` could trip or retrip the shared breaker.

        A failed or slow outcome can; so can a plain success with a window, which may bring
        a failing window up to ``minimum_calls``. A neutral outcome never does.
        """
        return outcome > 0 or (outcome == 0 and self._window is not None)

    def _acquire_plan(self, link: StoreLink, now: float) -> tuple[int | None, float, Seed]:
        """What an ``acquire`` round trip sends, and the push token taken before it."""
        token = cast("PushingState", link.entry).push_token() if link.pushing else None
        u = self._jitter(self._state != CLOSED)  # a closed mirror expects no retrip
        return token, u, self._seed(link, now)

    def _store_admitted(
        self, link: StoreLink, reply: StoreReply | Exception, now: float, token: int | None
    ) -> int:
        """Act on an ``acquire`` round trip: the call's generation, or an ``Admission``.

        A failed round trip degrades the breaker, and the local rules admit the call.

        ``token``: the push channel's, taken before the round trip; the reply makes a
        mirror that was not live live again if no push can have been missed since.
        """
        if isinstance(reply, Exception):
            self._store_failed(link, reply, now)
            return self._admit()
        self._on_reply(link, reply, now)
        if not link.live:
            cast("PushingState", link.entry).confirm_push(link, token)
        if reply.ok == 1:
            return reply.gen
        return _BYPASS if reply.state == DISABLED else _REFUSED

    def _store_local(
        self, link: StoreLink, gen: int, outcome: int, started: float, hint: float | None
    ) -> bool:
        """Record an outcome locally if it needs no round trip; whether it did.

        Local: a degraded breaker before its retry time, a call admitted on local state
        that the store has since taken back (stale: the local rules drop it), a neutral
        outcome outside half_open (the store would change nothing). A degraded breaker
        past its retry time asks the store, whatever state its call was admitted on: the
        store's answer puts it back on the shared state.
        """
        if (self._clock.monotonic() < link.retry_at if link.degraded else gen >= LOCAL_GEN) or (
            outcome < 0 and self._state != HALF_OPEN
        ):
            self._record(gen, outcome, started, hint, tell=False)
            return True
        return False

    def _store_record(
        self, link: StoreLink, gen: int, outcome: int, started: float, hint: float | None
    ) -> None:
        """Record one outcome in the store (one round trip) and mirror what it decided."""
        outcome, now, u, seed = self._record_plan(link, outcome, started)
        answer = self._round_trip(link, link.entry.record, gen, outcome, u, hint, seed)
        self._record_answer(link, gen, outcome, started, hint, now, answer)

    async def _store_arecord(
        self, link: StoreLink, gen: int, outcome: int, started: float, hint: float | None
    ) -> None:
        """:meth:`_store_record` on the asyncio client."""
        outcome, now, u, seed = self._record_plan(link, outcome, started)
        answer = await self._around_trip(link, link.entry.arecord, gen, outcome, u, hint, seed)
        self._record_answer(link, gen, outcome, started, hint, now, answer)

    def _record_plan(
        self, link: StoreLink, outcome: int, started: float
    ) -> tuple[int, float, float, Seed]:
        """What recording ``outcome`` sends: the outcome (slow?), time, jitter and seed.

        The jitter is drawn only if the outcome could open the breaker.
        """
        now = self._clock.monotonic()
        if outcome >= 0:
            outcome = self._timed_outcome(outcome, now - started)
        return outcome, now, self._jitter(self._could_open(outcome)), self._seed(link, now)

    def _record_answer(  # noqa: PLR0917 - the record round trip's plan, and its answer
        self,
        link: StoreLink,
        gen: int,
        outcome: int,
        started: float,
        hint: float | None,
        now: float,
        answer: StoreReply | Exception | None,
    ) -> None:
        """Act on a record round trip's answer.

        The store's reply, ``None`` (the common case: a success that changed nothing), or
        the exception that the round trip raised (degrade, and record on local state).
        """
        if isinstance(answer, Exception):
            self._store_failed(link, answer, now)
            self._record(gen, outcome, started, hint, tell=False)
        elif answer is None:
            next(self._ok)
            self._streak = 0
            if link.degraded:
                self._resynced(link)
        elif not self._recorded_as_mirrored(link, answer, outcome, now):
            self._on_reply(link, answer, now)

    def _store_send_plan(self, link: StoreLink, event: str) -> tuple[int | None, float]:
        """The event's code, or ``None`` when no round trip is due (degraded); and the time.

        Raises:
            IllegalTransitionError: the event is unknown (no round trip needed to know).
        """
        code = EVENT_CODES.get(event)
        if code is None:
            raise IllegalTransitionError(event, self.state, refused_because(event, self.state))
        now = self._clock.monotonic()
        if link.degraded and now < link.retry_at:
            return None, now
        return code, now

    def _operator_args(self, code: int, now: float) -> tuple[int, float, Seed]:
        """What an ``operator`` round trip sends: the event's code, the jitter, the seed."""
        return code, self._jitter(), self._seed(self._link, now)

    def _store_sent(
        self,
        link: StoreLink,
        event: str,
        reason: str | None,
        now: float,
        answer: StoreReply | Exception | None,
    ) -> str | None:
        """Act on an operator round trip: the new state, or ``None`` to apply it locally.

        Shared by :meth:`send` and :meth:`asend`, which differ by the round trip alone.

        ``answer``: the store's reply, the exception the round trip raised, or ``None``
        when no round trip was made (degraded, before the retry time).
        """
        if isinstance(answer, Exception):
            self._store_failed(link, answer, now)
        elif answer is not None:
            self._on_reply(link, answer, now, reason)
            if answer.ok != 1:
                state = STATES[answer.state]
                detail = "its guard does not hold" if answer.ok else refused_because(event, state)
                raise IllegalTransitionError(event, state, detail)
            return STATES[answer.state]
        _log.warning(
            "breaker %r: %r applied to this process's state only: the shared store is "
            "unavailable, and its state wins when it answers again",
            self.name,
            event,
        )
        return None
