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

from ._arguments import check_arguments
from ._audit import AuditLog, Sink, Transition
from ._clock import SYSTEM_CLOCK, Clock
from ._machine import STATES, BreakerMachine, legal_moves
from ._policy import BreakerPolicy, BreakerStats
from ._store import EVENT_CODES, EVENTS, Seed
from ._window import FAILED, SLOW, CountRing, TimeBuckets, make_window
from .exceptions import CircuitOpenError, IllegalTransitionError

if TYPE_CHECKING:
    import random
    from collections.abc import Coroutine

    from ._store import SharedState, SharedStore, StoreReply

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
_LOCAL_GEN = 1 << 52  # shared mode: generations of transitions made locally (degraded)
_ASK = -2  # shared admission: the mirror cannot decide, ask the store
_LOCAL = -3  # shared admission: degraded, decide on local state
_LOCAL_REASON = "local (shared store unavailable)"
_NO_WINDOW = (0, 0, 0)
_OPEN_NAME, _FORCED_NAME = STATES[OPEN], STATES[FORCED_OPEN]
_NO_THRESHOLD = 1 << 62  # failure_threshold=None: a streak that is never reached
_LAZY = threading.Lock()  # guards the first creation of a breaker's rarely used parts


@functools.cache
def _default_rng() -> random.Random:
    """The random source of breakers that jitter without an ``rng`` of their own."""
    import random

    return random.Random()


@functools.cache
def _default_policy() -> BreakerPolicy:
    """The policy of a breaker created without one: a frozen value, so one is shared."""
    return BreakerPolicy()


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
    store_errors: int = 0
    """Round trips to the shared store (``store=``) that failed or timed out, lifetime."""
    degraded: bool = False
    """Running on local state because the shared store did not answer."""


class _AuditListener:
    """The machine listener that applies each transition and records it.

    It hooks ``on_enter_state``, which python-statemachine calls once per transition
    (self-transitions such as ``reset`` from ``closed`` included), rather than
    ``after_transition``: a generic transition callback is bound to each of the machine's
    16 transitions, and costs about 29 KB per machine against 9 KB for the 5 states.
    """

    __slots__ = ("breaker",)

    def __init__(self, breaker: CircuitBreaker) -> None:
        self.breaker = breaker

    def on_enter_state(
        self, event: str, source: Any, target: Any, stats: BreakerStats | None = None, **kwargs: Any
    ) -> None:
        if not source.id:  # the machine entering its initial state as it is built
            return
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
        store: share this breaker's state with every breaker of the same name in every
            process using the same store (:class:`breaker_fsm.redis.RedisStore`);
            ``None`` (the default) keeps it in memory.

    >>> breaker = CircuitBreaker("users-api", BreakerPolicy(failure_threshold=2))
    >>> breaker.call(lambda: "ok")
    'ok'
    >>> breaker.state
    'closed'
    """

    __slots__ = (
        "__weakref__",
        "_audit_capacity",
        "_audit_log",
        "_clock",
        "_err",
        "_fallback",
        "_fast",
        "_gen",
        "_half_open_since",
        "_hot",
        "_ignored",
        "_is_failure",
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
        "_plain",
        "_rate",
        "_recorded",
        "_rejections",
        "_rng",
        "_seq",
        "_sink_errors",
        "_sinks",
        "_slow",
        "_slow_calls",
        "_slow_rate",
        "_state",
        "_store",
        "_streak",
        "_threshold",
        "_tlock_obj",
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
        store: SharedStore | None = None,
    ) -> None:
        sinks = check_arguments(  # every argument, before anything is built: see _arguments
            name,
            policy,
            clock=clock,
            fallback=fallback,
            sinks=sinks,
            is_failure=is_failure,
            rng=rng,
            audit_capacity=audit_capacity,
            store=store,
        )
        self.name = name
        self.policy = policy = policy if policy is not None else _default_policy()
        self._clock = clock if clock is not None else SYSTEM_CLOCK
        self._fallback = fallback
        self._sinks: tuple[Sink, ...] = tuple(sinks)
        self._is_failure = is_failure
        if rng is None and policy.reset_timeout_jitter:
            rng = _default_rng()  # jitter with no rng given still de-synchronises a fleet
        self._rng = rng
        self._audit_capacity = audit_capacity  # the log itself is built on the first transition
        self._audit_log: AuditLog | None = None
        self._lock = threading.Lock()
        self._tlock_obj: threading.RLock | None = None
        self._machine: BreakerMachine | None = None

        # Policy figures the hot path reads, resolved once.
        self._recorded = policy.record_exceptions
        self._ignored = policy.ignore_exceptions
        # Every Exception is a failure (the default): the fast path classifies nothing.
        self._plain = not self._ignored and Exception in self._recorded
        self._threshold = (
            policy.failure_threshold if policy.failure_threshold is not None else _NO_THRESHOLD
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
            and store is None  # shared state: every call goes through _shared_call
        )
        self._store = (
            None
            if store is None
            else _StoreLink(store.bind(name, policy), Seed(CLOSED, 0, 0, policy.reset_timeout, 0.0))
        )

        self._state = CLOSED
        self._hot = self._fast
        self._gen = 0
        self._seq = 0
        self._streak = 0
        self._ok = itertools.count()
        self._rejections: itertools.count[int] | None = None  # see _rejected
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

    # Built on first use: a breaker that never leaves ``closed`` needs none of these, and
    # they are most of its size (the audit log alone is about 800 bytes).

    @property
    def _tlock(self) -> threading.RLock:
        """The transition lock (re-entrant: a sink may read the breaker)."""
        tlock = self._tlock_obj
        if tlock is None:
            with _LAZY:
                tlock = self._tlock_obj
                if tlock is None:
                    tlock = self._tlock_obj = threading.RLock()
        return tlock

    @property
    def _audit(self) -> AuditLog:
        """The audit log behind :attr:`audit`."""
        log = self._audit_log
        if log is None:
            with _LAZY:
                log = self._audit_log
                if log is None:
                    log = self._audit_log = AuditLog(self._audit_capacity)
        return log

    @property
    def _rejected(self) -> itertools.count[int]:
        """Refused calls, counted with ``next()`` (atomic) from the first refusal on."""
        counter = self._rejections
        if counter is None:
            with _LAZY:
                counter = self._rejections
                if counter is None:
                    counter = self._rejections = itertools.count()
        return counter

    @property
    def _listener(self) -> _AuditListener:
        """A listener for a new machine (one machine per breaker is ever built)."""
        return _AuditListener(self)

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
                    if self._state != CLOSED:  # a shared breaker mirrored a state first
                        machine.current_state_value = STATES[self._state]
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
            link = self._store
            if link is not None and not link.degraded:
                calls, failures, slow = link.window  # the shared window, as last mirrored
            elif self._window is not None:
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
                store_errors=0 if link is None else link.errors,
                degraded=link is not None and link.degraded,
            )

    # ------------------------------------------------------------------ running calls

    def call(  # noqa: PLR0911, PLR0912, PLR0915 - the hot paths are inlined on purpose
        self, func: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs
    ) -> R:
        """Run ``func(*args, **kwargs)`` through the breaker.

        Returns:
            What ``func`` returned, or the fallback's value when the call was refused.

        Raises:
            CircuitOpenError: the call was refused and there is no fallback.
            Exception: whatever ``func`` raised, unchanged, after it was recorded.
        """
        gen = self._gen  # read first: a transition clears _hot before it moves _gen on
        if self._hot:  # closed, and a policy the inlined fast path covers
            try:
                # No empty dict to build and merge for the common call without keywords.
                result = func(*args, **kwargs) if kwargs else func(*args)  # type: ignore[call-arg]
            except Exception as exc:
                if not self._plain:  # the policy ignores or leaves out some exceptions
                    self._record_exception(exc, gen, 0.0)
                elif self._window is not None:
                    self._record_failure(gen)
                else:  # the default policy: _record_failure without a window, inlined
                    lock = self._lock
                    lock.acquire()  # not `with`: in 3.11 that costs twice as much
                    try:
                        self._err += 1
                        streak = self._streak + 1 if gen == self._gen else 0
                        if streak:
                            self._streak = streak
                    finally:
                        lock.release()
                    if streak >= self._threshold:
                        self._fire("trip", gen)
                raise
            except BaseException:
                self._record(gen, _NEUTRAL, 0.0)
                raise
            window = self._window
            if window is None:
                if self._streak:
                    self._record_success(gen)  # resets the streak under the lock
                else:
                    next(self._ok)
            else:
                tally = window.lazy  # read before the check: a clear() swaps it
                if tally is not None and gen == self._gen and not self._streak:
                    next(self._ok)
                    next(tally)  # lock-free; folded into the window under the lock
                else:
                    self._record_success(gen)
            return result
        state = self._state
        if state == OPEN:  # refused right here: no lock, one clock reading
            retry_after = self._open_duration - (self._clock.monotonic() - self._opened_at)
            if retry_after > 0:
                next(self._rejections or self._rejected)
                if self._fallback is None:
                    raise CircuitOpenError(self.name, _OPEN_NAME, retry_after)
                return cast(R, self._fallback(*args, **kwargs))
        elif state == FORCED_OPEN and self._store is None:  # shared: the mirror may be stale
            next(self._rejections or self._rejected)
            if self._fallback is None:
                raise CircuitOpenError(self.name, _FORCED_NAME, None)
            return cast(R, self._fallback(*args, **kwargs))
        if self._store is not None:
            return self._shared_call(func, args, kwargs)
        gen = self._gen if state == CLOSED else self._admit()
        if gen < 0:
            if gen == _SKIP and self._state == DISABLED:
                return func(*args, **kwargs)
            return cast(R, self._refused(args, kwargs))
        # Only slow-call detection needs the start; the end is read once, in _record.
        started = self._clock.monotonic() if self._slow is not None else 0.0
        try:
            result = func(*args, **kwargs)
        except BaseException as exc:
            self._record_exception(exc, gen, started)
            raise
        if self._is_failure is None:
            self._record_timed_success(state, gen, started)
        else:
            self._record_result(result, gen, started)
        return result

    async def acall(  # noqa: PLR0911, PLR0912, PLR0915 - the hot paths are inlined on purpose
        self, func: Callable[P, Awaitable[R]], /, *args: P.args, **kwargs: P.kwargs
    ) -> R:
        """Await ``func(*args, **kwargs)`` through the breaker; see :meth:`call`.

        ``asyncio.CancelledError`` is neutral: not counted, any trial permit released.
        A fallback may be a coroutine function; its result is awaited.
        """
        gen = self._gen  # read first: a transition clears _hot before it moves _gen on
        if self._hot:  # closed, and a policy the inlined fast path covers
            try:
                result = await (func(*args, **kwargs) if kwargs else func(*args))  # type: ignore[call-arg]
            except Exception as exc:
                if not self._plain:  # the policy ignores or leaves out some exceptions
                    self._record_exception(exc, gen, 0.0)
                elif self._window is not None:
                    self._record_failure(gen)
                else:  # the default policy: _record_failure without a window, inlined
                    lock = self._lock
                    lock.acquire()  # not `with`: in 3.11 that costs twice as much
                    try:
                        self._err += 1
                        streak = self._streak + 1 if gen == self._gen else 0
                        if streak:
                            self._streak = streak
                    finally:
                        lock.release()
                    if streak >= self._threshold:
                        self._fire("trip", gen)
                raise
            except BaseException:
                self._record(gen, _NEUTRAL, 0.0)
                raise
            window = self._window
            if window is None:
                if self._streak:
                    self._record_success(gen)  # resets the streak under the lock
                else:
                    next(self._ok)
            else:
                tally = window.lazy  # read before the check: a clear() swaps it
                if tally is not None and gen == self._gen and not self._streak:
                    next(self._ok)
                    next(tally)  # lock-free; folded into the window under the lock
                else:
                    self._record_success(gen)
            return result
        state = self._state
        if state == OPEN:  # refused right here: no lock, one clock reading
            retry_after = self._open_duration - (self._clock.monotonic() - self._opened_at)
            if retry_after > 0:
                next(self._rejections or self._rejected)
                if self._fallback is None:
                    raise CircuitOpenError(self.name, _OPEN_NAME, retry_after)
                return cast(R, await self._answer(self._fallback, args, kwargs))
        elif state == FORCED_OPEN and self._store is None:  # shared: the mirror may be stale
            next(self._rejections or self._rejected)
            if self._fallback is None:
                raise CircuitOpenError(self.name, _FORCED_NAME, None)
            return cast(R, await self._answer(self._fallback, args, kwargs))
        if self._store is not None:
            return await self._shared_acall(func, args, kwargs)
        gen = self._gen if state == CLOSED else self._admit()
        if gen < 0:
            if gen == _SKIP and self._state == DISABLED:
                return await func(*args, **kwargs)
            value = self._refused(args, kwargs)
            if inspect.isawaitable(value):
                value = await value
            return cast(R, value)
        started = self._clock.monotonic() if self._slow is not None else 0.0
        try:
            result = await func(*args, **kwargs)
        except BaseException as exc:
            self._record_exception(exc, gen, started)
            raise
        if self._is_failure is None:
            self._record_timed_success(state, gen, started)
        else:
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

    @staticmethod
    async def _answer(
        fallback: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        """The fallback's answer to a refused awaited call (awaited if it is awaitable)."""
        value = fallback(*args, **kwargs)
        if inspect.isawaitable(value):
            value = await value
        return value

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
                limit = self.policy.half_open_max_calls
                if self._permits < limit:  # else every permit is taken: no lock to refuse
                    lock = self._lock
                    lock.acquire()
                    try:
                        if self._gen == gen and self._permits < limit:
                            self._permits += 1
                            return gen
                    finally:
                        lock.release()
                return _SKIP
            else:
                return _SKIP
        return _SKIP  # pragma: no cover - only a pathological clock gets here

    def _refused(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """Count a refusal, then raise ``CircuitOpenError`` or return the fallback's value."""
        next(self._rejections or self._rejected)
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

    def _record_failure(self, gen: int) -> None:
        """A failure on the fast path with a count window: one lock, no clock.

        The trip rules that apply here, inlined: the streak and the
        window's failure rate (the fast path has no slow-call rule). Without a window,
        :meth:`call` and :meth:`acall` inline the streak rule themselves.
        """
        lock = self._lock
        lock.acquire()  # acquire/release rather than `with`: half the cost in CPython 3.11
        try:
            self._err += 1
            if gen != self._gen:
                return  # started before a transition: not counted against the new state
            streak = self._streak = self._streak + 1
            window: CountRing = self._window  # type: ignore[assignment]  # fast: a count window
            window.record(FAILED)
            if streak < self._threshold:
                calls = window.calls
                if calls < self._min_calls or window.failures / calls < self._rate:
                    return
        finally:
            lock.release()
        self._fire("trip", gen)

    def _record_success(self, gen: int) -> None:
        """A success on the fast path that takes the lock: one lock, no clock.

        Taken when there is a streak to reset, or a count window that is not armed yet.
        Once the window holds ``minimum_calls`` outcomes under the failure-rate line, no
        success can trip it any more (a success only lowers a count window's rate), so it
        is armed: later successes are counted lock-free and folded in under the lock.
        """
        lock = self._lock
        lock.acquire()
        try:
            next(self._ok)
            if gen != self._gen:
                return  # started before a transition: not counted against the new state
            self._streak = 0
            window = self._window
            if window is None:
                return
            window.record(0)  # under the lock already: cheaper than a tally to fold later
            if window.lazy is not None:
                return  # armed: a success cannot trip it
            calls = window.calls
            if calls < self._min_calls:
                return
            if window.failures / calls < self._rate:
                window.arm()  # type: ignore[union-attr]  # the fast path's window is a count
                return
        finally:
            lock.release()
        self._fire("trip", gen)

    def _record_timed_success(self, state: int, gen: int, started: float) -> None:
        """A success on the timed path (a time window, or slow-call timing): one reading.

        Counted without the lock, like a closed success on the fast path, when nothing can
        come of it but counting: the call ran in ``closed`` in this generation, there is no
        streak to reset, it was not slow, and the window already holds ``minimum_calls``
        outcomes, has no expired bucket left to check (``dirty``) and takes this reading
        into its newest bucket (``until``). A plain success only lowers the rates then.
        Otherwise :meth:`_record` counts it under the lock.
        """
        now = self._clock.monotonic()
        window = self._window
        slow = self._slow
        if (
            state == CLOSED
            and window is not None
            and (tally := window.lazy) is not None  # read before the check: clear() swaps it
            and now < window.until
            and not window.dirty
            and window.calls >= self._min_calls
            and not self._streak
            and (slow is None or now - started <= slow)
            and gen == self._gen
        ):
            next(self._ok)
            next(tally)  # folded into the newest bucket under the lock
        else:
            self._record(gen, 0, started, at=now)

    def _record(  # noqa: PLR0912 - one locked section on purpose
        self,
        gen: int,
        outcome: int,
        started: float,
        open_hint: float | None = None,
        at: float | None = None,
    ) -> None:
        """Count one outcome and fire the transition it makes due, if any.

        ``open_hint`` (seconds) lengthens the open episode if this outcome trips; ``at`` is
        a clock reading already taken for this outcome.
        """
        now = 0.0
        if not self._fast:  # the fast path times nothing and has no time buckets
            now = self._clock.monotonic() if at is None else at
            if outcome >= 0 and self._slow is not None and now - started > self._slow:
                outcome |= SLOW
        event = None
        lock = self._lock
        lock.acquire()
        try:
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
                streak = self._streak = self._streak + 1 if outcome & FAILED else 0
                window = self._window
                before = 0
                if window is not None:
                    before = window.calls
                    window.record(outcome, now)
                # The cheap necessary conditions first; _window_trips has the rates. A plain
                # success only lowers the rates, so it can trip only a window that it brings
                # to minimum_calls or whose rates rose since the last check (``dirty``: old
                # buckets expired).
                if streak >= self._threshold or (
                    window is not None
                    and window.calls >= self._min_calls
                    and (outcome or before < self._min_calls or window.dirty)
                    and self._window_trips(window, now)
                ):
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
        finally:
            lock.release()
        if event is not None:
            if open_hint is not None and event != "recover":
                with self._lock:
                    self._open_hint = open_hint
            if not self._fire(event, gen) and open_hint is not None:
                with self._lock:
                    self._open_hint = None

    def _window_trips(self, window: CountRing | TimeBuckets, now: float) -> bool:
        """The window's rate rules on the live counters (under ``_lock``).

        The caller has checked the streak rule, and that the window holds ``minimum_calls``
        (at least 1) outcomes once ``record`` has brought it up to ``now``: reading the
        totals at the same ``now`` only adds successes counted lock-free, so ``calls`` is at
        least that too. The policy's guard confirms on a snapshot.
        """
        calls, failures, slow = window.totals(now)
        window.dirty = False  # the rates are checked as they are now
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

        With a shared store the event is applied to the shared state (the guards decide on
        the shared counters), atomically; while the store is unreachable it is applied to
        this process's local state only, with a warning.

        Raises:
            IllegalTransitionError: the event is unknown or not legal from the current
                state (or its guard does not hold); nothing changed.
        """
        link = self._store
        if link is not None:
            new_state = self._store_send(link, event, reason)
            if new_state is not None:
                return new_state
        return self._send_local(event, reason)

    async def asend(self, event: str, *, reason: str | None = None) -> str:
        """:meth:`send` for asyncio code: the shared store's round trip never blocks the loop.

        The same events, guards, return value and errors as :meth:`send`. With a shared
        store the event is applied on the store's asyncio client (the one :meth:`acall`
        uses), and degrades to local state the same way; without one it is applied in
        memory at once, exactly as :meth:`send` does.

        >>> import asyncio
        >>> breaker = CircuitBreaker("users-api")
        >>> asyncio.run(breaker.asend("force_open", reason="maintenance"))
        'forced_open'
        >>> breaker.audit[0].reason
        'maintenance'

        Raises:
            IllegalTransitionError: the event is unknown or not legal from the current
                state (or its guard does not hold); nothing changed.
        """
        link = self._store
        if link is not None:
            new_state = await self._store_asend(link, event, reason)
            if new_state is not None:
                return new_state
        return self._send_local(event, reason)

    def _send_local(self, event: str, reason: str | None) -> str:
        """:meth:`send` on this process's state: no store, or the store is unavailable."""
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
        if extra.get("shared") is not None:  # made by a shared store's script
            self._apply_shared(event, source, target, stats, extra)
            return
        if stats is None:  # sent to the machine directly, not through the breaker
            stats = self._stats()
        now = self._clock.monotonic()
        policy = self.policy
        with self._lock:
            self._hot = False  # before _gen moves on: see call()
            self._gen += 1
            if self._store is not None and self._gen < _LOCAL_GEN:
                self._gen += _LOCAL_GEN  # never mistaken for a shared generation
            self._permits = self._trial_ok = self._trial_fail = 0
            if target == "open":
                self._open_episodes = self._open_episodes + 1 if event == "retrip" else 1
                duration = policy.open_duration(self._open_episodes, self._rng)
                hint = self._open_hint
                if hint is not None:
                    # A floor, capped by the ceiling: it never shortens the episode (a
                    # jittered duration may exceed max_reset_timeout).
                    ceiling = policy.max_reset_timeout
                    duration = max(duration, hint if ceiling is None else min(hint, ceiling))
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
            self._state = code = _CODE[target]
            self._hot = self._fast and code == CLOSED
            self._seq += 1
            seq = self._seq
            gen = self._gen
            open_duration = self._open_duration
        reason = extra.get("reason") or self._reason(event, stats, open_duration)
        generation: int | None = gen
        if self._store is not None:  # made alone, while the shared store did not answer
            reason = f"{_LOCAL_REASON}: {reason}"
            generation = None
        record = Transition.at_wall(
            self._clock.wall(),
            seq=seq,
            breaker=self.name,
            event=event,
            source=source,
            target=target,
            monotonic=now,
            reason=reason,
            counters=stats.as_counters(),
            generation=generation,
        )
        self._emit(record)

    def _emit(self, record: Transition) -> None:
        """Append ``record`` to the audit log and hand it to every sink."""
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

    # ------------------------------------------------------------------ shared state (store=)
    #
    # A breaker with a store keeps a mirror of the shared state in the attributes above
    # (state, gen = seq = the shared generation, open timing, streak, trial counts) and
    # asks the store only when the mirror cannot decide. A store that fails or times out
    # puts the breaker on its local state (the same attributes, the same policy) until a
    # later round trip succeeds; nothing the store raises reaches the caller.

    def _shared_call(self, func: Callable[..., R], args: tuple[Any, ...], kwargs: Any) -> R:
        """:meth:`call` for a breaker whose state is shared through a store."""
        link: _StoreLink = self._store  # type: ignore[assignment]
        gen = self._gen if self._state == CLOSED and not link.degraded else self._store_admit(link)
        if gen < 0:
            if gen == _SKIP and self._state == DISABLED:
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

    async def _shared_acall(
        self, func: Callable[..., Awaitable[R]], args: tuple[Any, ...], kwargs: Any
    ) -> R:
        """:meth:`acall` for a shared breaker: the store's asyncio twins, never blocking."""
        link: _StoreLink = self._store  # type: ignore[assignment]
        now = self._clock.monotonic()
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
            outcome = self._judge_exception(exc)
            if not self._store_local(link, gen, outcome, started, None):
                await self._store_arecord(link, gen, outcome, started, None)
            raise
        outcome, hint = (0, None) if self._is_failure is None else self._judge_result(result)
        if not self._store_local(link, gen, outcome, started, hint):
            await self._store_arecord(link, gen, outcome, started, hint)
        return result

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

        A generation or ``_SKIP`` when the mirror decides alone, ``_ASK`` for one round
        trip, ``_LOCAL`` when degraded (the local rules decide).
        """
        state = self._state
        if link.degraded:
            return _LOCAL if now < link.retry_at or state == CLOSED else _ASK
        if state == CLOSED:
            return self._gen
        if state == OPEN:
            return _SKIP if now - self._opened_at < self._open_duration else _ASK
        if state == HALF_OPEN:
            return _ASK
        return _SKIP if now < link.recheck_at else _ASK  # an override: re-checked now and then

    def _store_admitted(self, link: _StoreLink, reply: StoreReply, now: float) -> int:
        """Mirror an ``acquire`` reply; the generation the call runs under, or ``_SKIP``."""
        self._on_reply(link, reply, now)
        return reply.gen if reply.ok == 1 else _SKIP

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
        link = cast("_StoreLink", self._store)
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

    def _judge_exception(self, exc: BaseException) -> int:
        """The outcome of a call that raised ``exc``: failed, success or neutral."""
        if not isinstance(exc, Exception) or isinstance(exc, self._ignored):
            return _NEUTRAL
        return FAILED if isinstance(exc, self._recorded) else 0

    def _judge_result(self, result: object) -> tuple[int, float | None]:
        """The outcome of a call that returned ``result`` and its open-duration hint."""
        predicate = self._is_failure
        if predicate is None:
            return 0, None
        try:
            verdict = predicate(result)
        except Exception:
            _log.exception("breaker %r: is_failure predicate raised", self.name)
            with self._lock:
                self._sink_errors += 1
            return _NEUTRAL, None
        if not verdict:
            return 0, None
        if not isinstance(verdict, bool) and isinstance(verdict, int | float):
            return FAILED, float(verdict)
        return FAILED, None


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
