"""``CircuitBreaker``: runs operations, fails fast while open, records outcomes.

The hot path never touches the state machine. Per-call bookkeeping lives in slotted
attributes guarded by one small lock that is never held while the user's operation runs;
the machine (built lazily) is used for transitions only, and every transition it makes is
applied back to those attributes and recorded by a listener on the machine.
"""

from __future__ import annotations

import functools
import inspect
import itertools
import logging
import threading
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar, cast, overload

from statemachine.exceptions import TransitionNotAllowed

from ._audit import AuditLog, Sink, Transition
from ._clock import SYSTEM_CLOCK, Clock
from ._machine import STATES, BreakerMachine, legal_moves
from ._policy import BreakerPolicy, BreakerStats
from ._window import FAILED, SLOW, make_window
from .exceptions import CircuitOpenError, IllegalTransitionError

if TYPE_CHECKING:
    import random
    from collections.abc import Coroutine

__all__ = ["BreakerMetrics", "CircuitBreaker"]

_log = logging.getLogger("breaker_fsm")

P = ParamSpec("P")
R = TypeVar("R")

# State codes: indexes into STATES, compared on the hot path instead of strings.
CLOSED, OPEN, HALF_OPEN, FORCED_OPEN, DISABLED = range(5)
_CODE = {name: code for code, name in enumerate(STATES)}
_NEUTRAL = -1  # outcome of a call that counts neither way
_SKIP = -1  # "generation" of an admission that records nothing (disabled)
_MOVES = legal_moves()


def _count_of(counter: itertools.count[int]) -> int:
    """Current value of an ``itertools.count``, read without advancing it.

    ``next()`` on a count is atomic in CPython, so it counts exactly without a lock; its
    repr is the only public way to read it back (``count(42)``).
    """
    return int(repr(counter)[6:-1])


@dataclass(frozen=True, slots=True)
class BreakerMetrics:
    """A consistent snapshot of one breaker's counters.

    Lifetime totals survive transitions and ``reset``; the streak, the window and the
    half-open permits belong to the current state.
    """

    name: str
    state: str
    failure_count: int
    """Current streak of consecutive failures."""
    success_count: int
    """Successful calls, lifetime."""
    error_count: int
    """Failed calls, lifetime."""
    ignored_count: int
    """Calls that ran but counted neither way (ignored and non-``Exception`` errors)."""
    total_requests: int
    """Calls that ran the operation and were recorded (neutral ones included)."""
    rejected_count: int
    """Calls refused (with or without a fallback)."""
    slow_call_count: int
    """Calls slower than ``slow_call_duration``, lifetime."""
    error_rate: float
    """``error_count / (success_count + error_count)``, lifetime; 0.0 before any call."""
    window_calls: int
    """Calls in the sliding window (0 without one)."""
    failure_rate: float | None
    """Failed share of the window, ``None`` below ``minimum_calls`` or without a window."""
    slow_call_rate: float | None
    """Slow share of the window, ``None`` below ``minimum_calls`` or without slow detection."""
    open_duration: float
    """Length of the current (or next) open episode, with backoff and jitter."""
    retry_after: float | None
    """Seconds until a trial is allowed while open, else ``None``."""
    transitions: int
    """Transitions recorded so far (the last ``seq``)."""
    sink_errors: int
    """Audit sinks (and ``is_failure`` predicates) that raised, lifetime."""


class _AuditListener:
    """The machine listener that applies each transition and records it."""

    __slots__ = ("breaker",)

    def __init__(self, breaker: CircuitBreaker) -> None:
        self.breaker = breaker

    def after_transition(
        self, event: str, source: Any, target: Any, stats: BreakerStats | None = None, **kwargs: Any
    ) -> None:
        self.breaker._apply(str(event), str(source.id), str(target.id), stats, kwargs)


class CircuitBreaker:
    """A circuit breaker around calls to one dependency.

    Args:
        name: names the breaker in errors, metrics and audit records.
        policy: thresholds and timeouts; ``BreakerPolicy()`` when omitted. Shared, not copied.
        clock: time source (``monotonic()`` and ``wall()``); the system clocks by default.
            Tests pass a :class:`~breaker_fsm.testing.FakeClock`.
        fallback: called with the call's arguments instead of raising
            :class:`~breaker_fsm.CircuitOpenError` when a call is refused.
        sinks: callables that receive every :class:`~breaker_fsm.Transition`, in order,
            before the call that caused it returns. A sink that raises is logged and counted.
        is_failure: predicate on the operation's return value; a true verdict records the
            call as a failure (the value is still returned). A verdict that is a number of
            seconds (not a bool) also asks that, if this failure trips the breaker, the
            episode stay open at least that long (an HTTP ``Retry-After``), capped by
            ``max_reset_timeout``.
        rng: random source for open-duration jitter; seed it for reproducible runs.
        audit_capacity: how many records ``breaker.audit`` keeps.

    >>> breaker = CircuitBreaker("users-api", BreakerPolicy(failure_threshold=2))
    >>> breaker.call(lambda: "ok")
    'ok'
    >>> breaker.state
    'closed'
    """

    __slots__ = (
        "__weakref__",
        "_audit",
        "_clock",
        "_err",
        "_fallback",
        "_fast",
        "_gen",
        "_half_open_since",
        "_ignored",
        "_is_failure",
        "_listener",
        "_lock",
        "_machine",
        "_min_calls",
        "_neutral",
        "_ok",
        "_open_duration",
        "_open_episodes",
        "_open_hint",
        "_opened_at",
        "_permits",
        "_rate",
        "_recorded",
        "_rejected",
        "_rng",
        "_seq",
        "_sink_errors",
        "_sinks",
        "_slow",
        "_slow_calls",
        "_slow_rate",
        "_state",
        "_streak",
        "_threshold",
        "_tlock",
        "_trial_fail",
        "_trial_ok",
        "_window",
        "name",
        "policy",
    )

    def __init__(
        self,
        name: str,
        policy: BreakerPolicy | None = None,
        *,
        clock: Clock | None = None,
        fallback: Callable[..., Any] | None = None,
        sinks: Iterable[Sink] = (),
        is_failure: Callable[[Any], bool | float | None] | None = None,
        rng: random.Random | None = None,
        audit_capacity: int = 1000,
    ) -> None:
        if not isinstance(name, str) or not name:
            raise ValueError("a breaker needs a non-empty name")
        self.name = name
        self.policy = policy = policy if policy is not None else BreakerPolicy()
        self._clock = clock if clock is not None else SYSTEM_CLOCK
        self._fallback = fallback
        self._sinks: tuple[Sink, ...] = tuple(sinks)
        self._is_failure = is_failure
        self._rng = rng
        self._audit = AuditLog(audit_capacity)
        self._lock = threading.Lock()
        self._tlock = threading.RLock()
        self._machine: BreakerMachine | None = None
        self._listener = _AuditListener(self)

        # Policy figures the hot path reads, resolved once.
        self._recorded = policy.record_exceptions
        self._ignored = policy.ignore_exceptions
        self._threshold = (
            policy.failure_threshold if policy.failure_threshold is not None else 1 << 62
        )
        self._window = make_window(policy.window)
        self._min_calls = policy.effective_minimum_calls
        self._rate = policy.failure_rate_threshold
        self._slow = policy.slow_call_duration
        self._slow_rate = policy.slow_call_rate_threshold
        # The fast path needs no clock reading: no slow-call timing, no time buckets.
        self._fast = (
            self._slow is None
            and is_failure is None
            and (policy.window is None or policy.window.kind == "count")
        )

        self._state = CLOSED
        self._gen = 0
        self._seq = 0
        self._streak = 0
        self._ok = itertools.count()
        self._rejected = itertools.count()
        self._err = 0
        self._neutral = 0
        self._slow_calls = 0
        self._sink_errors = 0
        self._opened_at = 0.0
        self._open_duration = policy.reset_timeout
        self._open_episodes = 0
        self._open_hint: float | None = None
        self._half_open_since = 0.0
        self._permits = 0
        self._trial_ok = 0
        self._trial_fail = 0

    def __repr__(self) -> str:
        return f"<CircuitBreaker {self.name!r} {self.state}>"

    # ------------------------------------------------------------------ introspection

    @property
    def state(self) -> str:
        """The current state's name: ``"closed"``, ``"open"``, ``"half_open"``, and so on."""
        return STATES[self._state]

    @property
    def machine(self) -> BreakerMachine:
        """The python-statemachine instance (built on first use)."""
        machine = self._machine
        if machine is None:
            with self._tlock:
                machine = self._machine
                if machine is None:
                    machine = BreakerMachine(listeners=[self.policy, self._listener])
                    self._machine = machine
        return machine

    @property
    def audit(self) -> AuditLog:
        """The bounded in-memory audit log of this breaker's transitions."""
        return self._audit

    @property
    def sinks(self) -> tuple[Sink, ...]:
        """The audit sinks, in call order."""
        return self._sinks

    def add_sink(self, sink: Sink) -> None:
        """Send every later transition to ``sink`` too."""
        with self._tlock:
            self._sinks = (*self._sinks, sink)

    def metrics(self) -> BreakerMetrics:
        """A consistent snapshot of the counters."""
        now = self._clock.monotonic()
        with self._lock:
            state = self._state
            ok = _count_of(self._ok)
            err = self._err
            calls, failures, slow = (0, 0, 0)
            if self._window is not None:
                calls, failures, slow = self._window.totals(now)
            rated = calls > 0 and calls >= self._min_calls
            retry_after = None
            if state == OPEN:
                retry_after = max(0.0, self._open_duration - (now - self._opened_at))
            return BreakerMetrics(
                name=self.name,
                state=STATES[state],
                failure_count=self._streak,
                success_count=ok,
                error_count=err,
                ignored_count=self._neutral,
                total_requests=ok + err + self._neutral,
                rejected_count=_count_of(self._rejected),
                slow_call_count=self._slow_calls,
                error_rate=err / (ok + err) if ok + err else 0.0,
                window_calls=calls,
                failure_rate=failures / calls if rated else None,
                slow_call_rate=slow / calls if rated and self._slow is not None else None,
                open_duration=self._open_duration,
                retry_after=retry_after,
                transitions=self._seq,
                sink_errors=self._sink_errors,
            )

    # ------------------------------------------------------------------ running calls

    def call(self, func: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
        """Run ``func(*args, **kwargs)`` through the breaker.

        Returns:
            What ``func`` returned, or the fallback's value when the call was refused.

        Raises:
            CircuitOpenError: the call was refused and there is no fallback.
            Exception: whatever ``func`` raised, unchanged, after it was recorded.
        """
        if self._state == CLOSED and self._fast:
            gen = self._gen
            try:
                result = func(*args, **kwargs)
            except BaseException as exc:
                self._record_exception(exc, gen, 0.0)
                raise
            if self._window is None:
                if self._streak:
                    self._record(gen, 0, 0.0)  # resets the streak under the lock
                else:
                    next(self._ok)
            else:
                self._record_success(gen)
            return result
        gen = self._admit()
        if gen < 0:
            if gen == _SKIP and self._state == DISABLED:
                return func(*args, **kwargs)
            return cast(R, self._refused(args, kwargs))
        started = self._clock.monotonic()
        try:
            result = func(*args, **kwargs)
        except BaseException as exc:
            self._record_exception(exc, gen, started)
            raise
        self._record_result(result, gen, started)
        return result

    async def acall(
        self, func: Callable[P, Awaitable[R]], /, *args: P.args, **kwargs: P.kwargs
    ) -> R:
        """Await ``func(*args, **kwargs)`` through the breaker; see :meth:`call`.

        ``asyncio.CancelledError`` is neutral: not counted, any trial permit released.
        A fallback may be a coroutine function; its result is awaited.
        """
        if self._state == CLOSED and self._fast:
            gen = self._gen
            try:
                result = await func(*args, **kwargs)
            except BaseException as exc:
                self._record_exception(exc, gen, 0.0)
                raise
            if self._window is None:
                if self._streak:
                    self._record(gen, 0, 0.0)  # resets the streak under the lock
                else:
                    next(self._ok)
            else:
                self._record_success(gen)
            return result
        gen = self._admit()
        if gen < 0:
            if gen == _SKIP and self._state == DISABLED:
                return await func(*args, **kwargs)
            value = self._refused(args, kwargs)
            if inspect.isawaitable(value):
                value = await value
            return cast(R, value)
        started = self._clock.monotonic()
        try:
            result = await func(*args, **kwargs)
        except BaseException as exc:
            self._record_exception(exc, gen, started)
            raise
        self._record_result(result, gen, started)
        return result

    @overload
    def __call__(
        self, func: Callable[P, Coroutine[Any, Any, R]]
    ) -> Callable[P, Coroutine[Any, Any, R]]: ...

    @overload
    def __call__(self, func: Callable[P, R]) -> Callable[P, R]: ...

    def __call__(self, func: Callable[P, Any]) -> Callable[P, Any]:
        """Decorate a function (``def`` or ``async def``) so that every call goes through."""
        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def async_wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
                return await self.acall(func, *args, **kwargs)

            return async_wrapper

        @functools.wraps(func)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
            return self.call(func, *args, **kwargs)

        return wrapper

    # ------------------------------------------------------------------ admission

    def _admit(self) -> int:
        """Admit a call: its generation, or ``_SKIP`` (disabled or refused).

        Moves ``open`` to ``half_open`` once the open duration has elapsed and retrips a
        half-open episode that timed out, both lazily, here: no timer threads.
        """
        for _ in range(4):  # a transition changes the state at most a few times per call
            state = self._state
            if state == CLOSED:
                return self._gen
            if state == OPEN:
                gen = self._gen
                if self._clock.monotonic() - self._opened_at < self._open_duration:
                    return _SKIP
                self._fire("attempt_reset", gen)
            elif state == HALF_OPEN:
                gen = self._gen
                timeout = self.policy.half_open_timeout
                if (
                    timeout is not None
                    and self._clock.monotonic() - self._half_open_since >= timeout
                ):
                    self._fire("retrip", gen)
                    continue
                with self._lock:
                    if self._gen == gen and self._permits < self.policy.half_open_max_calls:
                        self._permits += 1
                        return gen
                return _SKIP
            else:
                return _SKIP
        return _SKIP  # pragma: no cover - only a pathological clock gets here

    def _refused(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """Count a refusal, then raise ``CircuitOpenError`` or return the fallback's value."""
        next(self._rejected)
        if self._fallback is not None:
            return self._fallback(*args, **kwargs)
        state = self._state
        retry_after = None
        if state == OPEN:
            elapsed = self._clock.monotonic() - self._opened_at
            retry_after = max(0.0, self._open_duration - elapsed)
        raise CircuitOpenError(self.name, STATES[state], retry_after)

    # ------------------------------------------------------------------ outcomes

    def _record_exception(self, exc: BaseException, gen: int, started: float) -> None:
        """Record a call that raised ``exc``: a failure, a success, or neutral."""
        if not isinstance(exc, Exception) or isinstance(exc, self._ignored):
            self._record(gen, _NEUTRAL, started)
        elif isinstance(exc, self._recorded):
            self._record(gen, FAILED, started)
        else:
            self._record(gen, 0, started)

    def _record_result(self, result: object, gen: int, started: float) -> None:
        """Record a call that returned ``result``, judged by ``is_failure`` when given."""
        outcome = 0
        hint = None
        predicate = self._is_failure
        if predicate is not None:
            try:
                verdict = predicate(result)
            except Exception:
                _log.exception("breaker %r: is_failure predicate raised", self.name)
                with self._lock:
                    self._sink_errors += 1
                outcome = _NEUTRAL
            else:
                if verdict:
                    outcome = FAILED
                    if not isinstance(verdict, bool) and isinstance(verdict, int | float):
                        hint = float(verdict)
        self._record(gen, outcome, started, hint)

    def _record_success(self, gen: int) -> None:
        """A success on the fast path with a count window: one lock, no clock."""
        trip = False
        with self._lock:
            next(self._ok)
            if gen == self._gen:
                self._streak = 0
                window = self._window
                window.record(0)  # type: ignore[union-attr]  # fast path has a window here
                trip = self._should_trip(0.0)
        if trip:
            self._fire("trip", gen)

    def _record(  # noqa: PLR0912 - one locked section on purpose
        self, gen: int, outcome: int, started: float, open_hint: float | None = None
    ) -> None:
        """Count one outcome and fire the transition it makes due, if any.

        ``open_hint`` (seconds) lengthens the open episode if this outcome trips.
        """
        if gen == _SKIP:
            return
        now = 0.0
        if not self._fast:  # the fast path times nothing and has no time buckets
            now = self._clock.monotonic()
            if outcome >= 0 and self._slow is not None and now - started > self._slow:
                outcome |= SLOW
        event = None
        with self._lock:
            if outcome < 0:
                self._neutral += 1
            elif outcome & FAILED:
                self._err += 1
            else:
                next(self._ok)
            if outcome > 0 and outcome & SLOW:
                self._slow_calls += 1
            if gen != self._gen:
                return  # started before a transition: not counted against the new state
            state = self._state
            if state == CLOSED:
                if outcome < 0:
                    return
                self._streak = self._streak + 1 if outcome & FAILED else 0
                if self._window is not None:
                    self._window.record(outcome, now)
                if self._should_trip(now):
                    event = "trip"
            elif state == HALF_OPEN:
                if outcome < 0:
                    self._permits -= 1
                elif outcome & FAILED:
                    self._trial_fail += 1
                    event = "retrip"
                else:
                    self._trial_ok += 1
                    if self._trial_ok >= self.policy.success_threshold:
                        event = "recover"
        if event is not None:
            if open_hint is not None and event != "recover":
                with self._lock:
                    self._open_hint = open_hint
            if not self._fire(event, gen) and open_hint is not None:
                with self._lock:
                    self._open_hint = None

    def _should_trip(self, now: float) -> bool:
        """The trip rules on the live counters (under ``_lock``); the policy guard confirms."""
        if self._streak >= self._threshold:
            return True
        window = self._window
        if window is None or window.calls < self._min_calls:
            return False
        calls, failures, slow = window.totals(now)
        if calls < self._min_calls or not calls:
            return False
        if failures / calls >= self._rate:
            return True
        return self._slow is not None and slow / calls >= self._slow_rate

    # ------------------------------------------------------------------ transitions

    def send(self, event: str, *, reason: str | None = None) -> str:
        """Fire ``event`` by name (``"force_open"``, ``"disable"``, ``"reset"``, …).

        Guarded events (``trip``, ``attempt_reset``, ``recover``, ``retrip``) fire only
        when the policy's guard holds on the current counters.

        Returns:
            The state after the event.

        Raises:
            IllegalTransitionError: the event is unknown or not legal from the current
                state (or its guard does not hold); nothing changed.
        """
        with self._tlock:
            state = self.state
            if (event, state) not in _MOVES:
                known = any(e == event for e, _ in _MOVES)
                raise IllegalTransitionError(event, state, "" if known else "unknown event")
            if not self._fire(event, None, reason=reason):
                raise IllegalTransitionError(event, state, "its guard does not hold")
            return self.state

    def _fire(self, event: str, gen: int | None, *, reason: str | None = None) -> bool:
        """Send ``event`` to the machine, unless generation ``gen`` is already over."""
        with self._tlock:
            if gen is not None and gen != self._gen:
                return False  # another caller made a transition first
            machine = self.machine
            stats = self._stats()
            try:
                machine.send(event, stats=stats, reason=reason)
            except TransitionNotAllowed:
                return False
            return True

    def _stats(self) -> BreakerStats:
        """Snapshot the counters a guard decides on."""
        now = self._clock.monotonic()
        with self._lock:
            calls, failures, slow = (0, 0, 0)
            if self._window is not None:
                calls, failures, slow = self._window.totals(now)
            return BreakerStats(
                now=now,
                consecutive_failures=self._streak,
                window_calls=calls,
                window_failures=failures,
                window_slow=slow,
                trial_successes=self._trial_ok,
                trial_failures=self._trial_fail,
                opened_at=self._opened_at if self._state == OPEN else None,
                open_duration=self._open_duration,
                half_open_since=self._half_open_since if self._state == HALF_OPEN else None,
            )

    def _apply(
        self,
        event: str,
        source: str,
        target: str,
        stats: BreakerStats | None,
        extra: dict[str, Any],
    ) -> None:
        """Apply a transition the machine made to the fast-path state, then record it."""
        if stats is None:  # sent to the machine directly, not through the breaker
            stats = self._stats()
        now = self._clock.monotonic()
        policy = self.policy
        with self._lock:
            self._gen += 1
            self._permits = self._trial_ok = self._trial_fail = 0
            if target == "open":
                self._open_episodes = self._open_episodes + 1 if event == "retrip" else 1
                duration = policy.open_duration(self._open_episodes, self._rng)
                hint = self._open_hint
                if hint is not None and hint > duration:
                    ceiling = policy.max_reset_timeout
                    duration = hint if ceiling is None else min(hint, ceiling)
                self._open_hint = None
                self._opened_at = now
                self._open_duration = duration
            elif target == "half_open":
                self._half_open_since = now
            elif target == "closed":
                self._streak = 0
                self._open_episodes = 0
                self._open_duration = policy.reset_timeout
                if self._window is not None:
                    self._window.clear()
            self._state = _CODE[target]
            self._seq += 1
            seq = self._seq
            gen = self._gen
            open_duration = self._open_duration
        record = Transition.at_wall(
            self._clock.wall(),
            seq=seq,
            breaker=self.name,
            event=event,
            source=source,
            target=target,
            monotonic=now,
            reason=extra.get("reason") or self._reason(event, stats, open_duration),
            counters=stats.as_counters(),
            generation=gen,
        )
        self._audit.append(record)
        for sink in self._sinks:
            try:
                sink(record)
            except Exception:
                _log.exception("breaker %r: audit sink %r failed", self.name, sink)
                with self._lock:
                    self._sink_errors += 1

    def _reason(self, event: str, stats: BreakerStats, open_duration: float) -> str:
        """Why ``event`` fired, in words."""
        if event == "trip":
            return f"{self.policy.trip_reason(stats)}; open for {open_duration:.3g}s"
        if event == "attempt_reset":
            return f"open duration {stats.open_duration:.3g}s elapsed"
        if event == "recover":
            return f"{stats.trial_successes} trial call(s) succeeded"
        if event == "retrip":
            if stats.trial_failures:
                why = "trial call failed"
            else:
                why = f"half-open timed out after {self.policy.half_open_timeout:.3g}s"
            return f"{why}; open for {open_duration:.3g}s"
        return f"operator: {event}"
