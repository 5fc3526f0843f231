"""What a call came to, and what admitting it gave: named values for the ints the hot path uses.

An *outcome* is an int so that a sliding window stores it in one byte and the hot path
compares it without a lookup: ``SUCCESS`` (0), or the flags ``FAILED`` and ``SLOW`` combined
with ``|`` (a call may be both), or ``NEUTRAL`` (-1: counted neither way), or ``VOID``
(-2: no call at all, it could not be made: counted nowhere, any trial permit given back).

An *admission* is the generation a call was admitted under (an int ≥ 0: the ticket its
outcome is recorded against, dropped if a transition has moved the generation on since),
or one of the negative :class:`Admission` values.
"""

from __future__ import annotations

from enum import IntEnum

from .exceptions import CallTimeoutError

__all__ = ["FAILED", "NEUTRAL", "SLOW", "SUCCESS", "VOID", "Admission", "judge_exception"]

SUCCESS = 0
FAILED = 1
SLOW = 2
NEUTRAL = -1
VOID = -2


class Admission(IntEnum):
    """An admission that is not a generation: the call is not run under the breaker."""

    REFUSED = -1
    """Refused: counted as a rejection, then ``CircuitOpenError`` or the fallback."""
    BYPASS = -2
    """``disabled``: the call runs and nothing is recorded."""
    SHADOW = -3
    """Shadow mode (``enforce=False``): a call an enforcing breaker would refuse runs, and
    only call sinks hear of it."""


def judge_exception(
    exc: BaseException,
    record: tuple[type[BaseException], ...],
    ignore: tuple[type[BaseException], ...],
) -> int:
    """The outcome of a call that raised ``exc``, under a policy's exception lists.

    The one classification rule, used by the breaker and by
    :meth:`~breaker_fsm.BreakerPolicy.is_failure_exception`: exceptions that are not
    ``Exception`` (KeyboardInterrupt, CancelledError) and ignored ones are neutral (ignore
    wins over record); recorded ones are failures; any other exception means that the
    dependency answered, so it counts as a success. A :class:`CallTimeoutError` is the
    breaker's own verdict: always a failure.
    """
    if type(exc) is CallTimeoutError:
        return FAILED
    if not isinstance(exc, Exception) or isinstance(exc, ignore):
        return NEUTRAL
    return FAILED if isinstance(exc, record) else SUCCESS
