"""Judging what a call came to: an exception, a result, a late answer.

The policy's exception lists (:func:`~breaker_fsm._outcome.judge_exception`), then the
breaker's own predicates (``is_failure``, ``is_failure_exception``), then the clock
(``slow_call_duration``, ``call_timeout``): one outcome (``_outcome``) and, from a
predicate, an open-duration hint.
"""

from __future__ import annotations

import inspect
import logging
import math
import types
from collections.abc import Callable
from typing import Any

from ._calls import call_record
from ._outcome import FAILED, NEUTRAL, SLOW, SUCCESS, VOID, judge_exception
from ._transitions import Transitions

__all__ = ["Judging"]

_log = logging.getLogger("breaker_fsm")

#: The modules whose frames run a guarded call: a ``TypeError`` raised in them, with no
#: frame of the operation's own below, means the call could not be made.
_CALL_MODULES = frozenset({"breaker_fsm._breaker", "breaker_fsm._local", "breaker_fsm._shared"})


def _breaker_traceback(exc: BaseException) -> types.TracebackType | None:
    """``exc``'s traceback if it was raised in the breaker's own frames, else ``None``."""
    first = tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_globals.get("__name__") not in _CALL_MODULES:
            return None  # a frame of the operation's
        tb = tb.tb_next
    return first


class Judging(Transitions):
    """The judging half of an engine: exceptions, results and timings to outcomes."""

    __slots__ = ()

    def _judge_exception(self, exc: BaseException) -> tuple[int, float | None]:
        """The outcome of a call that raised ``exc``, and its open-duration hint.

        The policy classifies it (:func:`judge_exception`); an exception it records as a
        failure is then judged by ``is_failure_exception``, when given, as ``is_failure``
        judges a result.
        """
        outcome = judge_exception(exc, self._recorded, self._ignored)
        predicate = self._is_failure_exception
        if outcome != FAILED or predicate is None:
            return outcome, None
        return self._verdict(predicate, exc, "is_failure_exception")

    def _judge_result(self, result: object) -> tuple[int, float | None]:
        """The outcome of a call that returned ``result``, and its open-duration hint."""
        predicate = self._is_failure
        if predicate is None:
            return SUCCESS, None
        return self._verdict(predicate, result, "is_failure")

    def _verdict(
        self, predicate: Callable[[Any], object], value: object, label: str
    ) -> tuple[int, float | None]:
        """A failure predicate's verdict on ``value``: the outcome and the hint.

        A number of seconds (an int or float, not a bool, 0 included) is a failure whose
        open-duration hint it is; one that is negative, NaN or infinite is a failure without
        a hint, and logged. Any other true verdict is a failure, a false one a success. A
        predicate that raises, or returns an awaitable (an ``async def`` predicate), is
        logged and counted, and the call is neutral.
        """
        try:
            verdict = predicate(value)
            if inspect.isawaitable(verdict):
                if inspect.iscoroutine(verdict):
                    verdict.close()  # never awaited: no "was never awaited" warning
                raise TypeError(f"{label} returned an awaitable: it must be a plain function")
        except Exception:
            _log.exception("breaker %r: %s predicate raised", self.name, label)
            with self._lock:
                self._sink_errors += 1
            return NEUTRAL, None
        if isinstance(verdict, int | float) and not isinstance(verdict, bool):
            if 0.0 <= verdict < math.inf:
                return FAILED, float(verdict)
            _log.warning(
                "breaker %r: %s returned %r seconds, not a finite number >= 0: "
                "a failure with no open-duration hint",
                self.name,
                label,
                verdict,
            )
            return FAILED, None
        return (FAILED, None) if verdict else (SUCCESS, None)

    def _judge_raised(self, exc: BaseException) -> tuple[int, float | None]:
        """:meth:`_judge_exception` for an exception that ``call``/``acall`` caught.

        They call the operation in their own frames. A ``TypeError`` raised there, not
        inside the operation, means that the call could not be made: the operation is not
        callable, the arguments do not fit it, or ``acall`` was handed a function whose
        result cannot be awaited. That is the caller's mistake, not the dependency's
        answer: ``VOID``, so nothing is recorded and any half-open permit is given back,
        and a note on the exception names the method to use.
        """
        if type(exc) is TypeError and (tb := _breaker_traceback(exc)) is not None:
            if tb.tb_frame.f_code.co_flags & inspect.CO_COROUTINE and "await" in str(exc):
                how = (
                    "acall() awaits what its function returns: a plain function goes through call()"
                )
            else:
                how = (
                    "call() takes a function and acall() an async function, with arguments that fit"
                )
            exc.add_note(
                f"breaker {self.name!r}: the call could not be made ({how}); nothing was recorded"
            )
            return VOID, None
        return self._judge_exception(exc)

    def _timed_outcome(self, outcome: int, took: float) -> int:
        """``outcome`` (not neutral) of a call that took ``took`` seconds.

        Slow when it took longer than ``slow_call_duration``; a failure, whatever the
        policy's exception lists say, when it took ``call_timeout`` or longer.
        """
        slow = self._slow
        if slow is not None and took > slow:
            outcome |= SLOW
        timeout = self._call_timeout
        if timeout is not None and took >= timeout:
            outcome |= FAILED
        return outcome

    def _tell_call(
        self,
        outcome: int,
        started: float,
        exc: BaseException | None,
        *,
        shadowed: bool = False,
        now: float | None = None,
    ) -> None:
        """Hand a call's outcome to the call sinks.

        A recorded call's, timed already (it ended ``now``); a shadow call's or a shared
        one's, timed here.
        """
        if outcome == VOID:
            return
        if now is None:
            now = self._clock.monotonic()
            if outcome >= 0:
                outcome = self._timed_outcome(outcome, now - started)
        record = call_record(self.name, outcome, started, now, exc, shadowed=shadowed)
        self._to_sinks(self._call_sinks, record, "call")
