"""The in-memory engine: admission gives a ticket, recording an outcome completes it.

A *ticket* is the generation a call was admitted under (``_admit``), or an
:class:`~breaker_fsm._outcome.Admission` when the call is not run under the breaker. Its
outcome is recorded against it (``_record`` and the fast-path variants): counted in the
lifetime totals always, and against the state's streak, window and trials only if no
transition has moved the generation on since. Whether an outcome makes a transition due
is the detector's rule (:mod:`breaker_fsm._detector`); the policy's guard confirms it on
the machine.

Nothing here knows about a shared store: :mod:`breaker_fsm._shared` uses this engine as
it is while degraded.
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import types
from collections.abc import Awaitable, Callable
from typing import Any

from ._calls import CallRecord
from ._detector import window_trips
from ._judging import Judging
from ._machine import STATES
from ._outcome import FAILED, NEUTRAL, SLOW, VOID, Admission
from ._transitions import CLOSED, DISABLED, HALF_OPEN, OPEN, built
from ._window import CountRing
from .exceptions import CallTimeoutError, CircuitOpenError

__all__ = ["COROUTINE", "LocalEngine", "count_of"]


_REFUSED, _BYPASS, _SHADOW = Admission.REFUSED, Admission.BYPASS, Admission.SHADOW

#: Half-open permits collected unsettled (see ``Permit.__del__``): (engine, generation,
#: started), given back, neutral, when a half-open breaker would refuse for want of a
#: permit. ``__del__`` may run inside any lock, so it only appends (atomic) and takes none.
LOST_PERMITS: list[tuple[LocalEngine, int, float]] = []

#: What calling an ``async def`` function returns: ``call`` checks a result's type against
#: it (one identity test) so that ``call(async_fn)`` fails instead of counting a success.
COROUTINE = types.CoroutineType


def count_of(counter: itertools.count[int]) -> int:
    """Current value of an ``itertools.count``, read without advancing it.

    ``next()`` on a count is atomic in CPython, so it counts exactly without a lock; its
    repr is the only public way to read it back (``count(42)``).
    """
    return int(repr(counter)[6:-1])


class LocalEngine(Judging):
    """Admission and recording on the breaker's own (in-memory) state."""

    __slots__ = ()

    #: Whether a lost half-open permit is given back here (a shared breaker's permits
    #: are the store's: it gives them back itself).
    _reclaims_lost_permits = True

    @property
    def _rejected(self) -> itertools.count[int]:
        """Refused calls, counted with ``next()`` (atomic) from the first refusal on."""
        counter = self._rejections
        return counter if counter is not None else built(self, "_rejections", itertools.count)

    def _window_totals(self, now: float) -> tuple[int, int, int]:
        """The window's calls, failures and slow calls at ``now`` (under ``_lock``)."""
        window = self._window
        return (0, 0, 0) if window is None else window.totals(now)

    # ------------------------------------------------------------------ admission

    def _admit(self) -> int:
        """Admit a call: the generation it runs under, or an :class:`Admission`.

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
                    return _REFUSED
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
                if LOST_PERMITS and self._give_back_lost_permits():
                    continue
                return _REFUSED
            else:
                return _BYPASS if state == DISABLED else _REFUSED
        return _REFUSED  # only a clock that outruns every duration between readings gets here

    def _give_back_lost_permits(self) -> bool:
        """Settle, neutrally, every lost permit; whether one was this breaker's."""
        mine = False
        while LOST_PERMITS:
            try:
                engine, gen, started = LOST_PERMITS.pop()
            except IndexError:  # another thread took the last one
                break
            mine = mine or engine is self
            engine._complete(gen, NEUTRAL, started, None)
        return mine

    def _refused(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """Count a refusal, then raise ``CircuitOpenError`` or return the fallback's value."""
        if self._sync_fallback is None:
            raise self._refusal()
        self._count_refusal()
        return self._sync_fallback(*args, **kwargs)

    def _count_refusal(self) -> None:
        """Count a refused call, and tell the call sinks."""
        next(self._rejections or self._rejected)
        if self._call_sinks:
            record = CallRecord(self.name, "refused", False, self._clock.monotonic(), None)
            self._to_sinks(self._call_sinks, record, "call")

    def _refusal(self) -> CircuitOpenError:
        """Count a refused call; the ``CircuitOpenError`` to raise (no fallback)."""
        self._count_refusal()
        state = self._state
        retry_after = None
        if state == OPEN:
            elapsed = self._clock.monotonic() - self._opened_at
            retry_after = max(0.0, self._open_duration - elapsed)
        return CircuitOpenError(self.name, STATES[state], retry_after)

    async def _arefused(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """:meth:`_refused` for awaited calls: an awaitable fallback's value is awaited."""
        if self._fallback is None:
            raise self._refusal()
        self._count_refusal()
        return await self._answer(self._fallback, args, kwargs)

    @staticmethod
    async def _answer(
        fallback: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        """The fallback's answer to a refused awaited call (awaited if it is awaitable)."""
        value = fallback(*args, **kwargs)
        if inspect.isawaitable(value):
            value = await value
        return value

    # ------------------------------------------------------------------ outcomes

    async def _timed_await(
        self, func: Callable[..., Awaitable[Any]], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        """Await a call under ``call_timeout``.

        (``call`` cannot interrupt a thread: it runs the call as it is, and :meth:`_record`
        judges a late return a failure.)

        Past it the call is cancelled and :class:`~breaker_fsm.CallTimeoutError` raised
        from the cancellation (whose traceback shows where the call hung): always a
        failure (:func:`judge_exception`). A cancellation from outside stays neutral.
        """
        timeout = self._call_timeout
        limit = asyncio.timeout(timeout)
        try:
            async with limit:
                return await func(*args, **kwargs)
        except TimeoutError as exc:
            if timeout is None or not limit.expired():  # the operation's own TimeoutError
                raise
            raise CallTimeoutError(self.name, timeout) from exc.__cause__

    def _complete(self, gen: int, outcome: int, started: float, exc: BaseException | None) -> None:
        """Settle a permit (see :class:`~breaker_fsm.Permit`): record its outcome."""
        if gen >= 0:
            self._record(gen, outcome, started, exc=exc)
        elif gen == _SHADOW and self._call_sinks:
            self._tell_call(outcome, started, exc, shadowed=True)

    async def _acomplete(
        self, gen: int, outcome: int, started: float, exc: BaseException | None
    ) -> None:
        """:meth:`_complete` for asyncio code (in memory there is nothing to await)."""
        self._complete(gen, outcome, started, exc)

    def _record_exception(
        self, exc: BaseException, gen: int, started: float, *, tell: bool
    ) -> None:
        """Record a call that raised ``exc``: a failure, a success, or neutral.

        ``tell=False`` when the call read no start (the inlined closed paths of
        ``call``/``acall``, and the untimed ones): a call sink added while it ran hears only
        the calls after it.
        """
        outcome, hint = self._judge_raised(exc)
        self._record(gen, outcome, started, hint, exc=exc, tell=tell)

    def _give_back(self, gen: int) -> None:
        """Give back the admission of a call that was not made: nothing is recorded."""
        self._record(gen, VOID, 0.0)

    def _not_awaited(self, func: object, coroutine: Any, gen: int) -> TypeError:
        """``call`` was handed an async function: the ``TypeError`` to raise.

        Nothing is recorded (the coroutine never ran: it is closed here, so Python does not
        warn that it was never awaited), and any half-open permit is given back.
        """
        coroutine.close()
        if gen >= 0:
            self._give_back(gen)
        name = getattr(func, "__qualname__", None) or repr(func)
        return TypeError(
            f"breaker {self.name!r}: call() got an async function ({name} returned a "
            "coroutine): use `await breaker.acall(...)`; nothing was recorded"
        )

    # ------------------------------------------------------------------ shadow mode, call sinks

    @property
    def _shadow_count(self) -> itertools.count[int]:
        """Calls a shadow-mode breaker would have refused (``next()`` is atomic)."""
        counter = self._shadowed
        return counter if counter is not None else built(self, "_shadowed", itertools.count)

    def _run_unrecorded(
        self, func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        """Shadow mode: run a call an enforcing breaker would have refused, unrecorded.

        The breaker never sees its outcome (an enforcing one would not have run it), so
        its state and trail stay exactly an enforcing breaker's; call sinks still learn
        the outcome, which is what a replay of other policies needs.
        """
        next(self._shadowed or self._shadow_count)
        started = self._clock.monotonic()  # a call sink added during the call needs it too
        try:
            result = func(*args, **kwargs)
        except BaseException as exc:
            if self._call_sinks:
                self._tell_call(self._judge_raised(exc)[0], started, exc, shadowed=True)
            raise
        if type(result) is COROUTINE:
            raise self._not_awaited(func, result, _SHADOW)
        if self._call_sinks:
            self._tell_call(self._judge_result(result)[0], started, None, shadowed=True)
        return result

    async def _arun_unrecorded(
        self, func: Callable[..., Awaitable[Any]], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        """:meth:`_run_unrecorded` for awaited calls."""
        next(self._shadowed or self._shadow_count)
        started = self._clock.monotonic()
        try:
            result = await func(*args, **kwargs)
        except BaseException as exc:
            if self._call_sinks:
                self._tell_call(self._judge_raised(exc)[0], started, exc, shadowed=True)
            raise
        if self._call_sinks:
            self._tell_call(self._judge_result(result)[0], started, None, shadowed=True)
        return result

    def _record_result(self, result: object, gen: int, started: float, tell: bool) -> None:
        """Record a call that returned ``result``, judged by ``is_failure``.

        ``tell``: the call read its start, for the call sinks (see :meth:`_record`).
        """
        outcome, hint = self._judge_result(result)
        self._record(gen, outcome, started, hint, tell=tell)

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
            window.record(0, 0.0)  # a count window: no time; under the lock, no tally to fold
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

    def _record_timed_success(self, state: int, gen: int, started: float, tell: bool) -> None:
        """A success on the timed path (a time window, or slow-call timing): one reading.

        Counted without the lock, like a closed success on the fast path, when nothing can
        come of it but counting: the call ran in ``closed`` in this generation, there is no
        streak to reset, it was neither slow nor late (past ``call_timeout``: a failure),
        and the window already holds ``minimum_calls`` outcomes, has no expired bucket left
        to check (``dirty``) and takes this reading into its newest bucket (``until``). A
        plain success only lowers the rates then.
        Otherwise :meth:`_record` counts it under the lock (and tells the call sinks, if
        ``tell``: the call read its start).
        """
        now = self._clock.monotonic()
        window = self._window
        slow = self._slow
        timeout = self._call_timeout
        if (
            state == CLOSED
            and window is not None
            and (tally := window.lazy) is not None  # read before the check: clear() swaps it
            and now < window.until
            and not window.dirty
            and window.calls >= self._min_calls
            and not self._streak
            and (slow is None or now - started <= slow)
            and (timeout is None or now - started < timeout)
            and gen == self._gen
            and not self._call_sinks
        ):
            next(self._ok)
            next(tally)  # folded into the newest bucket under the lock
        else:
            self._record(gen, 0, started, at=now, tell=tell)

    def _count(self, outcome: int) -> None:
        """Count ``outcome`` in the lifetime totals (the caller holds ``_lock``)."""
        if outcome < 0:
            if outcome == NEUTRAL:
                self._neutral += 1
        elif outcome & FAILED:
            self._err += 1
        else:
            next(self._ok)
        if outcome > 0 and outcome & SLOW:
            self._slow_calls += 1

    def _record(  # noqa: PLR0912, PLR0917 - one locked section on purpose
        self,
        gen: int,
        outcome: int,
        started: float,
        open_hint: float | None = None,
        at: float | None = None,
        exc: BaseException | None = None,
        *,
        tell: bool = True,
    ) -> None:
        """Count one outcome and fire the transition it makes due, if any.

        ``open_hint`` (seconds) lengthens the open episode if this outcome trips; ``at`` is
        a clock reading already taken for this outcome; ``exc`` what the call raised (for
        call sinks, which hear of the call first, then of any transition it causes, unless
        ``tell`` is false: the caller told them).
        """
        now = 0.0
        if not self._fast:  # the fast path times nothing and has no time buckets
            now = self._clock.monotonic() if at is None else at
            if outcome >= 0:
                outcome = self._timed_outcome(outcome, now - started)
            if self._call_sinks and tell and outcome != VOID:
                self._tell_call(outcome, started, exc, now=now)
        event = None
        lock = self._lock
        lock.acquire()
        try:
            self._count(outcome)
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
                # The cheap necessary conditions first; window_trips has the rates. A plain
                # success only lowers the rates, so it can trip only a window that it brings
                # to minimum_calls or whose rates rose since the last check (``dirty``: old
                # buckets expired).
                if streak >= self._threshold or (
                    window is not None
                    and window.calls >= self._min_calls
                    and (outcome or before < self._min_calls or window.dirty)
                    and window_trips(
                        window,
                        now,
                        minimum_calls=self._min_calls,
                        rate=self._rate,
                        slow_duration=self._slow,
                        slow_rate=self._slow_rate,
                    )
                ):
                    event = "trip"
            elif state == HALF_OPEN:
                if outcome < 0:
                    self._permits -= 1
                elif outcome & FAILED:
                    self._trial_fail += 1
                    self._streak += 1  # a failed trial extends the streak that tripped
                    event = "retrip"
                else:
                    self._trial_ok += 1
                    self._streak = 0
                    if self._trial_ok >= self.policy.success_threshold:
                        event = "recover"
        finally:
            lock.release()
        if event is not None:
            if open_hint is not None:  # a failure's (so the event opens the breaker)
                with self._lock:
                    self._open_hint = open_hint
            if not self._fire(event, gen) and open_hint is not None:
                with self._lock:
                    self._open_hint = None
