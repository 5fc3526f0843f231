"""``SharedBreaker``: a :class:`CircuitBreaker` whose state a fleet shares through a store.

``CircuitBreaker(name, policy, store=...)`` builds one (as ``pathlib.Path`` builds a
``PosixPath``); the in-memory breaker never mentions a store. A shared breaker keeps a
mirror of the shared state in the attributes it inherits (state, gen = seq = the shared
generation, open timing, streak, trial counts) and asks the store only when the mirror
cannot decide: each operation is plan (no I/O) → one round trip → handle the reply, so the
sync and asyncio twins differ by the round trip alone. A store that fails or times out puts
the breaker on its local state, decided by the inherited in-memory engine with the same
policy, until a later round trip succeeds; nothing the store raises reaches the caller.

Its special generations never leave this module: ``_ASK`` and ``_LOCAL`` are admission
plans, and transitions made locally while degraded number from ``_LOCAL_GEN`` up, so that
they are never mistaken for the shared walk's generations.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar, cast

from statemachine.exceptions import TransitionNotAllowed

from ._audit import Transition
from ._breaker import CircuitBreaker
from ._machine import STATES
from ._metrics import BreakerMetrics
from ._outcome import FAILED, SLOW, Admission
from ._policy import BreakerPolicy, BreakerStats
from ._store import EVENT_CODES, EVENTS, Seed
from ._transitions import CLOSED, DISABLED, HALF_OPEN, OPEN
from .exceptions import IllegalTransitionError

if TYPE_CHECKING:
    from ._store import SharedState, SharedStore, StoreReply

__all__ = ["SharedBreaker"]

_log = logging.getLogger("breaker_fsm")

P = ParamSpec("P")
R = TypeVar("R")

_LOCAL_GEN = 1 << 52  # generations of transitions made locally (degraded)
_REFUSED, _BYPASS = Admission.REFUSED, Admission.BYPASS
_ASK = -10  # admission plan: the mirror cannot decide, ask the store
_LOCAL = -11  # admission plan: degraded, decide on local state
_LOCAL_REASON = "local (shared store unavailable)"
_NO_WINDOW = (0, 0, 0)


class SharedBreaker(CircuitBreaker):
    """A breaker whose state is shared through ``store`` (see :class:`CircuitBreaker`)."""

    __slots__ = ("_link",)

    _overrides_are_final = False  # a mirrored forced_open may be stale: ask now and then

    def __init__(
        self, name: str, policy: BreakerPolicy | None = None, *, store: SharedStore, **options: Any
    ) -> None:
        super().__init__(name, policy, store=store, **options)  # checked with the others there
        self._fast = self._hot = False  # every call goes through the mirror
        self._link = _StoreLink(
            store.bind(name, self.policy), Seed(CLOSED, 0, 0, self.policy.reset_timeout, 0.0)
        )

    def metrics(self) -> BreakerMetrics:
        """A consistent snapshot of the counters; the window is the shared one."""
        link = self._link
        return dataclasses.replace(
            super().metrics(), store_errors=link.errors, degraded=link.degraded
        )

    def _window_totals(self, now: float) -> tuple[int, int, int]:
        """The shared window as last mirrored, or the local one while degraded."""
        if self._link.degraded:
            return super()._window_totals(now)
        return cast(tuple[int, int, int], self._link.window)

    # ------------------------------------------------------------------ calls

    def call(self, func: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
        """:meth:`CircuitBreaker.call` on the shared state."""
        link = self._link
        if self._state == OPEN:  # the mirror refuses alone until its deadline
            retry_after = self._open_duration - (self._clock.monotonic() - self._opened_at)
            if retry_after > 0:
                return cast(R, self._refused(args, kwargs))
        gen = self._gen if self._state == CLOSED and not link.degraded else self._store_admit(link)
        if gen < 0:
            if gen == _BYPASS:
                return func(*args, **kwargs)
            return cast(R, self._refused(args, kwargs))
        started = self._clock.monotonic()
        try:
            result = func(*args, **kwargs)
        except BaseException as exc:
            outcome = self._judge_exception(exc)
            if not self._store_local(link, gen, outcome, started, None):
                self._store_record(link, gen, outcome, started, None)
            raise
        outcome, hint = (0, None) if self._is_failure is None else self._judge_result(result)
        if not self._store_local(link, gen, outcome, started, hint):
            self._store_record(link, gen, outcome, started, hint)
        return result

    async def acall(
        self, func: Callable[P, Awaitable[R]], /, *args: P.args, **kwargs: P.kwargs
    ) -> R:
        """:meth:`CircuitBreaker.acall` on the shared state: the store's asyncio twins."""
        link = self._link
        now = self._clock.monotonic()
        if self._state == OPEN and self._open_duration > now - self._opened_at:
            return cast(R, await self._arefused(args, kwargs))  # the mirror refuses alone
        gen = self._store_plan(link, now)
        if gen == _ASK:
            try:
                reply = await link.entry.aacquire(self._jitter(), self._seed(link, now))
            except Exception as exc:
                self._store_failed(link, exc, now)
                gen = self._admit()
            else:
                gen = self._store_admitted(link, reply, now)
        elif gen == _LOCAL:
            gen = self._admit()
        if gen < 0:
            if gen == _BYPASS:
                return await func(*args, **kwargs)
            return cast(R, await self._arefused(args, kwargs))
        started = self._clock.monotonic()
        try:
            result = await func(*args, **kwargs)
        except BaseException as exc:
            outcome = self._judge_exception(exc)
            if not self._store_local(link, gen, outcome, started, None):
                await self._store_arecord(link, gen, outcome, started, None)
            raise
        outcome, hint = (0, None) if self._is_failure is None else self._judge_result(result)
        if not self._store_local(link, gen, outcome, started, hint):
            await self._store_arecord(link, gen, outcome, started, hint)
        return result

    # ------------------------------------------------------------------ operator events

    def send(self, event: str, *, reason: str | None = None) -> str:
        """:meth:`CircuitBreaker.send` on the shared state, atomically.

        The guards decide on the shared counters. While the store is unreachable the event
        is applied to this process's local state only, with a warning.
        """
        reason = self._check_reason(reason)
        new_state = self._store_send(self._link, event, reason)
        if new_state is not None:
            return new_state
        return self._send_local(event, reason)

    async def asend(self, event: str, *, reason: str | None = None) -> str:
        """:meth:`send` on the store's asyncio client: the round trip never blocks the loop."""
        reason = self._check_reason(reason)
        new_state = await self._store_asend(self._link, event, reason)
        if new_state is not None:
            return new_state
        return self._send_local(event, reason)

    # ------------------------------------------------------------------ the local walk

    def _apply(
        self,
        event: str,
        source: str,
        target: str,
        stats: BreakerStats | None,
        extra: dict[str, Any],
    ) -> None:
        """Apply a transition: the store's (mirrored) or a local one made while degraded."""
        if extra.get("shared") is not None:  # made by the store's script
            self._apply_shared(event, source, target, stats, extra)
        else:
            super()._apply(event, source, target, stats, extra)

    def _next_generation(self, gen: int) -> int:
        """Local transitions number from ``_LOCAL_GEN`` up: never a shared generation."""
        gen += 1
        return gen if gen >= _LOCAL_GEN else gen + _LOCAL_GEN

    def _audit_identity(self, reason: str, gen: int) -> tuple[str, int | None]:
        """A local transition's record says so, and belongs to no shared generation."""
        return f"{_LOCAL_REASON}: {reason}", None

    # ------------------------------------------------------------------ the mirror

    def _store_admit(self, link: _StoreLink) -> int:
        """Admit a call (sync): from the mirror, with one round trip, or on local state."""
        now = self._clock.monotonic()
        gen = self._store_plan(link, now)
        if gen == _ASK:
            try:
                reply = link.entry.acquire(self._jitter(), self._seed(link, now))
            except Exception as exc:
                self._store_failed(link, exc, now)
                return self._admit()
            return self._store_admitted(link, reply, now)
        if gen == _LOCAL:
            return self._admit()
        return gen

    def _store_plan(self, link: _StoreLink, now: float) -> int:
        """An admission decided without a round trip, or how to decide it.

        A generation or ``_REFUSED`` when the mirror decides alone, ``_ASK`` for one round
        trip, ``_LOCAL`` when degraded (the local rules decide).
        """
        state = self._state
        if link.degraded:
            return _LOCAL if now < link.retry_at or state == CLOSED else _ASK
        if state == CLOSED:
            return self._gen
        if state == OPEN:
            return _REFUSED if now - self._opened_at < self._open_duration else _ASK
        if state == HALF_OPEN:
            return _ASK
        if now >= link.recheck_at:  # an override: re-checked now and then
            return _ASK
        return _BYPASS if state == DISABLED else _REFUSED

    def _store_admitted(self, link: _StoreLink, reply: StoreReply, now: float) -> int:
        """Mirror an ``acquire`` reply; the generation the call runs under, or ``_REFUSED``."""
        self._on_reply(link, reply, now)
        if reply.ok == 1:
            return reply.gen
        return _BYPASS if reply.state == DISABLED else _REFUSED

    def _store_local(
        self, link: _StoreLink, gen: int, outcome: int, started: float, hint: float | None
    ) -> bool:
        """Record an outcome locally if it needs no round trip; whether it did.

        Local: a degraded breaker before its retry time, a call admitted on local state
        that the store has since taken back (stale: the local rules drop it), a neutral
        outcome outside half_open (the store would change nothing). A degraded breaker
        past its retry time asks the store, whatever state its call was admitted on: the
        store's answer puts it back on the shared state.
        """
        if (self._clock.monotonic() < link.retry_at if link.degraded else gen >= _LOCAL_GEN) or (
            outcome < 0 and self._state != HALF_OPEN
        ):
            self._record(gen, outcome, started, hint)
            return True
        return False

    def _store_record(
        self, link: _StoreLink, gen: int, outcome: int, started: float, hint: float | None
    ) -> None:
        """Record one outcome in the store (one round trip) and mirror what it decided."""
        now = self._clock.monotonic()
        if outcome >= 0 and self._slow is not None and now - started > self._slow:
            outcome |= SLOW
        seed = link.seed if link.seed.state != OPEN else self._seed(link, now)
        try:
            u = self._jitter(self._could_open(outcome))
            reply = link.entry.record(gen, outcome, u, hint, seed)
        except Exception as exc:
            self._store_failed(link, exc, now)
            self._record(gen, outcome, started, hint)
            return
        if reply is None:  # the common case: a success that changed nothing
            next(self._ok)
            self._streak = 0
            if link.degraded:
                self._resynced(link)
        elif not self._recorded_as_mirrored(link, reply, outcome):
            self._on_reply(link, reply, now)

    async def _store_arecord(
        self, link: _StoreLink, gen: int, outcome: int, started: float, hint: float | None
    ) -> None:
        """:meth:`_store_record` on the asyncio client."""
        now = self._clock.monotonic()
        if outcome >= 0 and self._slow is not None and now - started > self._slow:
            outcome |= SLOW
        try:
            reply = await link.entry.arecord(
                gen, outcome, self._jitter(self._could_open(outcome)), hint, self._seed(link, now)
            )
        except Exception as exc:
            self._store_failed(link, exc, now)
            self._record(gen, outcome, started, hint)
            return
        if reply is None:  # the common case: a success that changed nothing
            next(self._ok)
            self._streak = 0
            if link.degraded:
                self._resynced(link)
        elif not self._recorded_as_mirrored(link, reply, outcome):
            self._on_reply(link, reply, now)

    def _recorded_as_mirrored(self, link: _StoreLink, reply: StoreReply, outcome: int) -> bool:
        """Count an outcome in the lifetime totals; mirror a reply of the common kind.

        The common kind (closed, same episode, nothing performed) is mirrored right here,
        under the same lock; ``False`` leaves any other reply to :meth:`_on_reply`.
        """
        with self._lock:
            if outcome < 0:
                self._neutral += 1
            elif outcome & FAILED:
                self._err += 1
            else:
                next(self._ok)
            if outcome > 0 and outcome & SLOW:
                self._slow_calls += 1
            if (
                reply.state == CLOSED == self._state
                and not reply.event
                and reply.gen == self._gen
                and reply.epoch == link.epoch
                and not link.degraded
            ):
                self._streak = reply.streak
                link.window = reply[7:10]
                return True
        return False

    def _store_send(self, link: _StoreLink, event: str, reason: str | None) -> str | None:
        """:meth:`send` on the shared state; ``None`` when it must be applied locally.

        The decisions are :meth:`_store_send_plan`'s and :meth:`_store_sent`'s, shared with
        :meth:`_store_asend`: only the round trip itself differs.
        """
        code, now = self._store_send_plan(link, event)
        answer: StoreReply | Exception | None = None
        if code is not None:
            try:
                answer = link.entry.operator(code, self._jitter(), self._seed(link, now))
            except Exception as exc:
                answer = exc
        return self._store_sent(link, event, reason, now, answer)

    async def _store_asend(self, link: _StoreLink, event: str, reason: str | None) -> str | None:
        """:meth:`_store_send` on the asyncio client."""
        code, now = self._store_send_plan(link, event)
        answer: StoreReply | Exception | None = None
        if code is not None:
            try:
                answer = await link.entry.aoperator(code, self._jitter(), self._seed(link, now))
            except Exception as exc:
                answer = exc
        return self._store_sent(link, event, reason, now, answer)

    def _store_send_plan(self, link: _StoreLink, event: str) -> tuple[int | None, float]:
        """The event's code, or ``None`` when no round trip is due (degraded); and the time.

        Raises:
            IllegalTransitionError: the event is unknown (no round trip needed to know).
        """
        code = EVENT_CODES.get(event)
        if code is None:
            raise IllegalTransitionError(event, self.state, "unknown event")
        now = self._clock.monotonic()
        if link.degraded and now < link.retry_at:
            return None, now
        return code, now

    def _store_sent(
        self,
        link: _StoreLink,
        event: str,
        reason: str | None,
        now: float,
        answer: StoreReply | Exception | None,
    ) -> str | None:
        """Act on an operator round trip: the new state, or ``None`` to apply it locally.

        ``answer``: the store's reply, the exception the round trip raised, or ``None``
        when no round trip was made (degraded, before the retry time).
        """
        if isinstance(answer, Exception):
            self._store_failed(link, answer, now)
        elif answer is not None:
            self._on_reply(link, answer, now, reason)
            if answer.ok != 1:
                detail = "" if answer.ok == 0 else "its guard does not hold"
                raise IllegalTransitionError(event, STATES[answer.state], detail)
            return STATES[answer.state]
        _log.warning(
            "breaker %r: %r applied to this process's state only: the shared store is "
            "unavailable, and its state wins when it answers again",
            self.name,
            event,
        )
        return None

    def _store_failed(self, link: _StoreLink, exc: BaseException, now: float) -> None:
        """Count a failed round trip; the first of an outage degrades and logs once."""
        with self._lock:
            link.errors += 1
            first = not link.degraded
            link.retry_at = now + link.entry.retry_interval  # first: read unlocked with it
            link.degraded = True
            if first:
                self._permits = 0  # this process's own trials, from now on
                if self._window is not None:
                    self._window.clear()
        if first:
            _log.warning(
                "breaker %r: shared store unavailable (%s: %s); running on local state, "
                "retrying every %gs",
                self.name,
                type(exc).__name__,
                exc,
                link.entry.retry_interval,
            )

    def _on_reply(
        self, link: _StoreLink, reply: StoreReply, now: float, reason: str | None = None
    ) -> None:
        """Mirror a store's reply; record the transition its script made, if any."""
        if link.degraded:
            self._resynced(link)
        if reply.event:
            self._store_transition(link, reply, reason)
            return
        with self._lock:
            if reply.epoch == link.epoch:
                if reply.gen < self._gen:
                    return  # overtaken by a newer reply
                if reply.gen == self._gen and reply.state == self._state:
                    self._streak = reply.streak  # same episode: refresh the counters
                    link.window = reply[7:10]
                    self._trial_ok, self._trial_fail = reply.trial_successes, reply.trial_failures
                    if reply.state == OPEN:  # asked a little early: the server's timing
                        self._opened_at = now - reply.elapsed
                        link.deadline = self._opened_at + self._open_duration
                    return
            self._adopt(link, reply, now, moved=False)
        if self._machine is not None:
            self._sync_machine()

    def _resynced(self, link: _StoreLink) -> None:
        """The store answers again: what it says from now on wins over the local state."""
        with self._lock:
            link.degraded = False
            link.epoch = -1  # the next full reply is adopted whatever it says
        _log.info("breaker %r: shared store answers again; back on shared state", self.name)

    def _store_transition(self, link: _StoreLink, reply: StoreReply, reason: str | None) -> None:
        """Record (and mirror) a transition this process's store operation performed.

        It goes through the machine like a local one, from the shared source state, with
        ``shared=reply`` so that :meth:`_apply` takes the store's figures. A reply that a
        newer one has overtaken is only recorded.
        """
        event = EVENTS[reply.event]
        source, target = STATES[reply.source], STATES[reply.state]
        stats = self._reply_stats(reply)
        extra: dict[str, Any] = {"shared": reply, "reason": reason}
        with self._tlock:
            if reply.epoch != link.epoch or reply.gen > self._gen:
                machine = self.machine
                if machine.current_state_value != source:
                    machine.current_state_value = source
                try:
                    machine.send(event, stats=stats, **extra)
                except TransitionNotAllowed:  # pragma: no cover - the guards agree with the script
                    pass
                else:
                    return
            self._apply(event, source, target, stats, extra)
            self._sync_machine()

    def _apply_shared(
        self, event: str, source: str, target: str, stats: BreakerStats | None, extra: Any
    ) -> None:
        """:meth:`_apply` for a transition a store's script made: mirror it, record it."""
        reply: StoreReply = extra["shared"]
        if stats is None:  # pragma: no cover - _store_transition always passes them
            stats = self._reply_stats(reply)
        link = self._link
        now = self._clock.monotonic()
        with self._lock:
            if reply.epoch != link.epoch or reply.gen > self._gen:
                self._adopt(link, reply, now, moved=True)
        record = Transition.at_wall(
            self._clock.wall(),
            seq=reply.gen,
            breaker=self.name,
            event=event,
            source=source,
            target=target,
            monotonic=now,
            reason=extra.get("reason") or self._reason(event, stats, reply.open_duration),
            counters=stats.as_counters(),
            generation=reply.gen,
        )
        self._emit(record)

    def _adopt(self, link: _StoreLink, reply: StoreReply, now: float, *, moved: bool) -> None:
        """Make the mirror the store's state (under ``_lock``).

        ``moved``: the reply reports a transition, so its counters are those that justified
        it; the new state's own counters start as a transition leaves them.
        """
        state = reply.state
        link.epoch = reply.epoch
        self._state = state  # _hot stays False: a shared breaker never takes the fast path
        self._gen = self._seq = reply.gen
        self._permits = 0
        self._open_episodes = reply.episode
        self._open_duration = reply.open_duration
        if moved:
            self._trial_ok = self._trial_fail = 0
        else:
            self._trial_ok, self._trial_fail = reply.trial_successes, reply.trial_failures
        if moved and state == CLOSED:
            self._streak = 0
            link.window = _NO_WINDOW
        else:
            self._streak = reply.streak
            link.window = reply[7:10]
        deadline = 0.0
        if state == OPEN:
            self._opened_at = now - reply.elapsed
            deadline = self._opened_at + reply.open_duration
        elif state == HALF_OPEN:
            self._half_open_since = now - reply.elapsed
        link.recheck_at = now + link.entry.sync_interval
        link.deadline = deadline
        link.seed = Seed(state, reply.gen, reply.episode, reply.open_duration, 0.0)
        if self._window is not None:
            self._window.clear()  # a later outage starts from an empty local window

    def _sync_machine(self) -> None:
        """Put the machine (if built) in the mirrored state, without a transition."""
        with self._tlock:
            machine = self._machine
            if machine is not None:
                value = STATES[self._state]
                if machine.current_state_value != value:
                    machine.current_state_value = value

    def _reply_stats(self, reply: StoreReply) -> BreakerStats:
        """The evidence of a store's transition, for the guards and the audit record.

        Times are relative to when the previous state began: the store measured them.
        """
        opened_at = half_open_since = None
        if EVENTS[reply.event] == "attempt_reset":
            opened_at = 0.0
        elif EVENTS[reply.event] == "retrip" and not reply.trial_failures:
            half_open_since = 0.0  # the half-open episode timed out
        return BreakerStats(
            now=reply.justified,
            consecutive_failures=reply.streak,
            window_calls=reply.window_calls,
            window_failures=reply.window_failures,
            window_slow=reply.window_slow,
            trial_successes=reply.trial_successes,
            trial_failures=reply.trial_failures,
            opened_at=opened_at,
            open_duration=reply.open_duration,
            half_open_since=half_open_since,
        )

    def _seed(self, link: _StoreLink, now: float) -> Seed:
        """The shared state as last mirrored, to recreate a store entry that is gone."""
        seed = link.seed
        if seed.state == OPEN:
            return seed._replace(remaining=max(0.0, link.deadline - now))
        return seed

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


class _StoreLink:
    """A shared breaker's tie to its store entry, and the bookkeeping of its mirror."""

    __slots__ = (
        "deadline",
        "degraded",
        "entry",
        "epoch",
        "errors",
        "recheck_at",
        "retry_at",
        "seed",
        "window",
    )

    def __init__(self, entry: SharedState, seed: Seed) -> None:
        self.entry = entry
        self.seed = seed  # the shared state last mirrored (recreates a lost entry)
        self.deadline = 0.0  # local monotonic end of the mirrored open episode
        self.epoch = -1  # which incarnation of the store entry the mirror follows
        self.window: tuple[int, ...] = _NO_WINDOW  # shared window totals, last mirrored
        self.recheck_at = 0.0  # when an override's mirror is asked again
        self.degraded = False
        self.retry_at = 0.0  # degraded: when the store is tried again
        self.errors = 0
