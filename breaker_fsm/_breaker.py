"""``CircuitBreaker``: the public runner, with its inlined hot paths.

The hot path never touches the state machine. Per-call bookkeeping lives in slotted
attributes guarded by one small lock that is never held while the user's operation runs;
the machine (built lazily) is used for transitions only, and every transition it makes is
applied back to those attributes and recorded by a listener on the machine.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any, ParamSpec, Self, TypeVar, cast, overload

from ._arguments import check_arguments, check_sink, check_sinks
from ._clock import SYSTEM_CLOCK, Clock
from ._guard import Guards, decorate
from ._local import COROUTINE, count_of
from ._machine import STATES
from ._metrics import BreakerMetrics
from ._outcome import NEUTRAL, Admission
from ._policy import BreakerPolicy
from ._transitions import CLOSED, DISABLED, FORCED_OPEN, HALF_OPEN, OPEN
from .exceptions import CircuitOpenError

if TYPE_CHECKING:
    import random
    from collections.abc import Coroutine

    from ._audit import AuditLog, Sink
    from ._calls import CallSink
    from ._store import SharedStore

__all__ = [
    "CLOSED",
    "DISABLED",
    "FORCED_OPEN",
    "HALF_OPEN",
    "OPEN",
    "BreakerMetrics",
    "CircuitBreaker",
]

P = ParamSpec("P")
R = TypeVar("R")

_REFUSED, _BYPASS = Admission.REFUSED, Admission.BYPASS
_OPEN_NAME, _FORCED_NAME = STATES[OPEN], STATES[FORCED_OPEN]


@functools.cache
def _default_rng() -> random.Random:
    """The random source of breakers that jitter without an ``rng`` of their own."""
    import random

    return random.Random()


@functools.cache
def _default_policy() -> BreakerPolicy:
    """The policy of a breaker created without one: a frozen value, so one is shared."""
    return BreakerPolicy()


class CircuitBreaker(Guards):
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
        is_failure_exception: predicate on each exception the policy records as a
            failure: a true verdict keeps it a failure (a number of seconds is also an
            open-duration hint, as for ``is_failure``), a false one makes it a success (an
            ``HTTPStatusError`` for a 404 is an answer, not an outage).
        rng: random source for open-duration jitter; seed it for reproducible runs.
        audit_capacity: how many records ``breaker.audit`` keeps.
        store: share this breaker's state with every breaker of the same name in every
            process using the same store (:class:`breaker_fsm.redis.RedisStore`);
            ``None`` (the default) keeps it in memory.
        call_sinks: callables that receive a :class:`~breaker_fsm.CallRecord` after each
            call (refusals included); a breaker with none pays nothing for the feature.

    >>> breaker = CircuitBreaker("users-api", BreakerPolicy(failure_threshold=2))
    >>> breaker.call(lambda: "ok")
    'ok'
    >>> breaker.state
    'closed'
    """

    __slots__ = ()

    #: Whether ``forced_open`` and ``disabled`` hold until this breaker's own ``reset`` (a
    #: shared breaker's mirror of them may be stale, so it asks the store now and then).
    _overrides_are_final = True

    def __new__(cls, *args: Any, store: SharedStore | None = None, **kwargs: Any) -> Self:
        """``store=`` builds a shared breaker (:class:`~breaker_fsm._shared.SharedBreaker`)."""
        if store is None or cls is not CircuitBreaker:
            return super().__new__(cls)
        from ._shared import SharedBreaker

        return cast(Self, super().__new__(SharedBreaker))

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
        call_sinks: Iterable[CallSink] = (),
        is_failure_exception: Callable[[BaseException], bool | float | None] | None = None,
    ) -> None:
        sinks = check_arguments(  # every argument, before anything is built: see _arguments
            name,
            policy,
            clock=clock,
            fallback=fallback,
            sinks=sinks,
            is_failure=is_failure,
            is_failure_exception=is_failure_exception,
            rng=rng,
            audit_capacity=audit_capacity,
            store=store,
        )
        if store is not None and type(self)._overrides_are_final:
            raise TypeError(f"{type(self).__name__} keeps its state in memory: it takes no store")
        policy = policy if policy is not None else _default_policy()
        if rng is None and policy.reset_timeout_jitter:
            rng = _default_rng()  # jitter with no rng given still de-synchronises a fleet
        super().__init__(
            name,
            policy,
            clock if clock is not None else SYSTEM_CLOCK,
            fallback=fallback,
            sinks=sinks,
            is_failure=is_failure,
            is_failure_exception=is_failure_exception,
            rng=rng,
            audit_capacity=audit_capacity,
            call_sinks=cast(
                "tuple[CallSink, ...]",
                check_sinks(call_sinks, "CircuitBreaker call_sinks", calls=True),
            ),
        )

    def __repr__(self) -> str:
        return f"<CircuitBreaker {self.name!r} {self.state}>"

    # ------------------------------------------------------------------ introspection

    @property
    def audit(self) -> AuditLog:
        """The bounded in-memory audit log of this breaker's transitions."""
        return self._audit

    @property
    def sinks(self) -> tuple[Sink, ...]:
        """The audit sinks, in call order."""
        return self._sinks

    @property
    def call_sinks(self) -> tuple[CallSink, ...]:
        """The call sinks, in call order."""
        return self._call_sinks

    def add_call_sink(self, sink: CallSink) -> None:
        """Send a :class:`~breaker_fsm.CallRecord` of every later call to ``sink`` too.

        From then on the breaker leaves its inlined fast paths (they never check for
        sinks, so a breaker without one pays nothing for the feature).
        """
        check_sink(sink, "add_call_sink's sink", calls=True)
        self._add_call_sink(sink)

    def add_sink(self, sink: Sink) -> None:
        """Send every later transition to ``sink`` too."""
        check_sink(sink, "add_sink's sink")
        with self._tlock:
            self._sinks = (*self._sinks, sink)

    def metrics(self) -> BreakerMetrics:
        """A consistent snapshot of the counters."""
        now = self._clock.monotonic()
        with self._lock:
            state = self._state
            ok = count_of(self._ok)
            err = self._err
            calls, failures, slow = self._window_totals(now)
            rated = calls > 0 and calls >= self._min_calls
            retry_after = due = None
            if state == OPEN:
                retry_after = max(0.0, self._open_duration - (now - self._opened_at))
                due = "attempt_reset" if retry_after == 0.0 else None
            elif state == HALF_OPEN:
                timeout = self.policy.half_open_timeout
                if timeout is not None and now - self._half_open_since >= timeout:
                    due = "retrip"
            return BreakerMetrics(
                name=self.name,
                state=STATES[state],
                failure_count=self._streak,
                success_count=ok,
                error_count=err,
                ignored_count=self._neutral,
                total_requests=ok + err + self._neutral,
                rejected_count=count_of(self._rejected),
                slow_call_count=self._slow_calls,
                error_rate=err / (ok + err) if ok + err else 0.0,
                window_calls=calls,
                failure_rate=failures / calls if rated else None,
                slow_call_rate=slow / calls if rated and self._slow is not None else None,
                open_duration=self._open_duration,
                retry_after=retry_after,
                transitions=self._seq,
                sink_errors=self._sink_errors,
                shadow_rejected_count=0 if self._shadowed is None else count_of(self._shadowed),
                due=due,
            )

    # ------------------------------------------------------------------ running calls

    def call(  # noqa: PLR0912, PLR0915 - the hot paths are inlined on purpose
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
                if not self._plain or type(exc) is TypeError:  # see _judge_raised
                    self._record_exception(exc, gen, 0.0, tell=False)
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
                self._record(gen, NEUTRAL, 0.0, tell=False)
                raise
            if type(result) is COROUTINE:  # call(async_fn): the one check a success pays
                raise self._not_awaited(func, result, gen)
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
        if state == OPEN and self._rejects_inline:  # refused right here: no lock, one reading
            retry_after = self._open_duration - (self._clock.monotonic() - self._opened_at)
            if retry_after > 0:
                next(self._rejections or self._rejected)
                if self._sync_fallback is None:
                    raise CircuitOpenError(self.name, _OPEN_NAME, retry_after)
                return cast(R, self._sync_fallback(*args, **kwargs))
        elif state == FORCED_OPEN and self._overrides_are_final and self._rejects_inline:
            next(self._rejections or self._rejected)
            if self._sync_fallback is None:
                raise CircuitOpenError(self.name, _FORCED_NAME, None)
            return cast(R, self._sync_fallback(*args, **kwargs))
        gen = self._gen if state == CLOSED else self._admit()
        if gen < 0:
            return cast(R, self._unadmitted(gen, func, args, kwargs))
        # Only slow-call timing and call sinks need the start; the end is read in _record.
        # A call that read none is not told to a call sink added while it ran (``timed``).
        timed = self._timed
        started = self._clock.monotonic() if timed else 0.0
        try:
            result = func(*args, **kwargs)  # a late return is judged in _record (call_timeout)
        except BaseException as exc:
            self._record_exception(exc, gen, started, tell=timed)
            raise
        if type(result) is COROUTINE:
            raise self._not_awaited(func, result, gen)
        if self._is_failure is None:
            self._record_timed_success(state, gen, started, timed)
        else:
            self._record_result(result, gen, started, timed)
        return result

    async def acall(  # noqa: PLR0912, PLR0915 - the hot paths are inlined on purpose
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
                if not self._plain or type(exc) is TypeError:  # see _judge_raised
                    self._record_exception(exc, gen, 0.0, tell=False)
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
                self._record(gen, NEUTRAL, 0.0, tell=False)
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
        if state == OPEN and self._rejects_inline:  # refused right here: no lock, one reading
            retry_after = self._open_duration - (self._clock.monotonic() - self._opened_at)
            if retry_after > 0:
                next(self._rejections or self._rejected)
                if self._fallback is None:
                    raise CircuitOpenError(self.name, _OPEN_NAME, retry_after)
                return cast(R, await self._answer(self._fallback, args, kwargs))
        elif state == FORCED_OPEN and self._overrides_are_final and self._rejects_inline:
            next(self._rejections or self._rejected)
            if self._fallback is None:
                raise CircuitOpenError(self.name, _FORCED_NAME, None)
            return cast(R, await self._answer(self._fallback, args, kwargs))
        gen = self._gen if state == CLOSED else self._admit()
        if gen < 0:
            return cast(R, await self._aunadmitted(gen, func, args, kwargs))
        # Only slow-call timing and call sinks need the start; the end is read in _record.
        # A call that read none is not told to a call sink added while it ran (``timed``).
        timed = self._timed
        started = self._clock.monotonic() if timed else 0.0
        try:
            if self._call_timeout is None:
                result = await func(*args, **kwargs)
            else:
                result = await self._timed_await(func, args, kwargs)
        except BaseException as exc:
            self._record_exception(exc, gen, started, tell=timed)
            raise
        if self._is_failure is None:
            self._record_timed_success(state, gen, started, timed)
        else:
            self._record_result(result, gen, started, timed)
        return result

    def _unadmitted(
        self, gen: int, func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        """Answer a call that admission did not give a generation (``gen``: an ``Admission``).

        ``BYPASS`` (disabled) runs it, unrecorded; a refusal refuses it, unless the breaker
        is in shadow mode, which runs it unseen. One answer for every kind of breaker.
        """
        if gen == _BYPASS:
            result = func(*args, **kwargs)
            if type(result) is COROUTINE:
                raise self._not_awaited(func, result, gen)
            return result
        if not self._enforce:  # shadow mode: it runs, unseen, as if refused
            return self._run_unrecorded(func, args, kwargs)
        return self._refused(args, kwargs)

    async def _aunadmitted(
        self,
        gen: int,
        func: Callable[..., Awaitable[Any]],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Any:
        """:meth:`_unadmitted` for awaited calls."""
        if gen == _BYPASS:
            return await func(*args, **kwargs)
        if not self._enforce:  # shadow mode: it runs, unseen, as if refused
            return await self._arun_unrecorded(func, args, kwargs)
        return await self._arefused(args, kwargs)

    @overload
    def __call__(
        self, func: Callable[P, Coroutine[Any, Any, R]]
    ) -> Callable[P, Coroutine[Any, Any, R]]: ...

    @overload
    def __call__(self, func: Callable[P, R]) -> Callable[P, R]: ...

    def __call__(self, func: Callable[P, Any]) -> Callable[P, Any]:
        """Decorate a function so that every call goes through the breaker.

        ``def`` and ``async def`` (or an object whose ``__call__`` is one) go through
        :meth:`call` and :meth:`acall`. A generator
        function (sync or async) is admitted when iteration starts; an exception it raises
        is judged and re-raised, and exhaustion or an early ``close()`` is a success.
        """
        return decorate(self, func)
