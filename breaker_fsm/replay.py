"""What if: replay recorded calls against candidate policies, offline.

A breaker's decisions are a deterministic function of its policy, the outcomes of the calls it
ran and the times they happened. Given a log of calls (``at``, ``outcome``, ``duration``), as
``breaker_fsm.audit.CallLogSink`` writes it, :func:`simulate` runs them through a real
:class:`~breaker_fsm.CircuitBreaker` on a simulated clock and reports what that policy would
have done: how many calls it would have refused, when it would have tripped, how long it would
have stayed open, and the trade-off between failed calls let through and successful calls
refused.

>>> from breaker_fsm import BreakerPolicy
>>> from breaker_fsm.replay import Call, simulate
>>> calls = [Call(at=t, outcome="failure" if 10 <= t < 30 else "success") for t in range(60)]
>>> result = simulate(BreakerPolicy(failure_threshold=5, reset_timeout=10), calls)
>>> result.first_trip_at, result.refused, result.transitions["retrip"]
(14.0, 18, 1)

The replay is sequential: calls run one after another in order of ``at`` (given out of order,
they are sorted stably, as :func:`read_calls` sorts a log). Each call starts at its own ``at``
on the simulated clock and moves the clock on by its ``duration`` while it runs, so slow-call
detection sees the recorded duration and the timeline stays the recorded one. Calls that
overlapped (a service runs many at once) are the approximation: a call that started before the
previous one ended still starts at its own ``at``, so the simulated clock steps back to it (the
breaker tolerates a clock that stands still or steps back), and its outcome is judged before
those of calls that started later even if they ended first. Calls that started while an earlier
one was still running are counted in :attr:`Replay.overlapped`. Replaying them one after
another instead, each waiting for the previous one to end, would stretch a busy service's hour
into many hours and make every open duration meaningless.

This module simulates (:func:`simulate`, :class:`Replay`); its parts are ``_replay_calls.py``
(:class:`Call`, :func:`read_calls`), ``_explain.py`` (:func:`explain`) and ``_replay_plot.py``
(:func:`plot`), and every public name is imported from here.
"""

from __future__ import annotations

import math
import os
import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, TypedDict, TypeGuard

from ._audit import Transition
from ._breaker import CircuitBreaker
from ._explain import Explanation, explain
from ._policy import BreakerPolicy
from ._replay_calls import (
    _DURATION,
    _NAMES,
    _OUTCOME_SET,
    _RANGE,
    MAX_SECONDS,
    OUTCOMES,
    Call,
    read_calls,
)
from ._replay_plot import plot, require_matplotlib
from .exceptions import ReplayError
from .testing import DEFAULT_WALL_START

__all__ = [
    "EVENTS",
    "MAX_SECONDS",
    "OUTCOMES",
    "Call",
    "Explanation",
    "Replay",
    "ReplayError",
    "explain",
    "plot",
    "read_calls",
    "require_matplotlib",
    "simulate",
]

#: The automatic events a replay can fire, in the order they are reported.
EVENTS: Final = ("trip", "attempt_reset", "retrip", "recover")


@dataclass(frozen=True, slots=True)
class Replay:
    """What one policy would have done with the recorded calls."""

    policy: BreakerPolicy
    calls: int
    """Calls replayed (every record except those recorded as refused)."""
    ran: int
    """Calls the breaker admitted: the operation ran and its recorded outcome was seen."""
    refused: int
    """Calls the breaker refused: their recorded outcome was not seen."""
    failures_let_through: int
    """Calls that ran and failed."""
    successes_refused: int
    """Calls refused that the service had answered successfully."""
    transitions: dict[str, int]
    """How many times each automatic event fired (``trip``, ``attempt_reset``, ...)."""
    trail: tuple[Transition, ...] = field(repr=False)
    """Every transition, as the breaker's audit sinks received them."""
    first_trip_at: float | None
    """Simulated time of the first trip, or ``None`` when it never tripped."""
    open_seconds: float
    """Simulated seconds spent open (an episode still open at the end counts to ``end``)."""
    start: float
    """Simulated time of the first call (0.0 without calls)."""
    end: float
    """When the last call ended by its recorded duration, refused or not (0.0 without calls)."""
    skipped: int = 0
    """Records skipped because the recorded breaker had refused them (outcome unknown)."""
    overlapped: int = 0
    """Calls that started while an earlier call was still running (by recorded durations)."""

    @property
    def first_trip_after(self) -> float | None:
        """Seconds from the first call to the first trip (``first_trip_at`` is absolute)."""
        return None if self.first_trip_at is None else self.first_trip_at - self.start

    def as_dict(self) -> dict[str, Any]:
        """The figures as JSON-ready values (everything except the policy and the trail).

        Seconds are rounded to the nanosecond, so float noise from summing durations
        (``103.99999999999999``) reads as the value it stands for (``104.0``).
        """
        return {
            "calls": self.calls,
            "ran": self.ran,
            "refused": self.refused,
            "skipped": self.skipped,
            "overlapped": self.overlapped,
            "transitions": dict(self.transitions),
            "first_trip_at": _round(self.first_trip_at),
            "first_trip_after": _round(self.first_trip_after),
            "open_seconds": _round(self.open_seconds),
            "failures_let_through": self.failures_let_through,
            "successes_refused": self.successes_refused,
            "start": _round(self.start),
            "end": _round(self.end),
        }


def _round(seconds: float | None) -> float | None:
    """``seconds`` to the nanosecond: float noise removed, every recorded digit kept."""
    return None if seconds is None else round(seconds, 9)


# --------------------------------------------------------------------------- simulating


class _Failure(Exception):
    """Raised by the operation of a call recorded as a failure."""


class _Ignored(Exception):
    """Raised by the operation of a call recorded as ignored."""


class _ReplayClock:
    """The simulated clock, and the three operations a replayed call can run.

    A plain attribute read is the cheapest clock there is; the operations are bound methods
    built once, so no closure is made per call.
    """

    __slots__ = ("now", "step")

    def __init__(self) -> None:
        self.now = 0.0
        self.step = 0.0  # the duration of the call being replayed

    def monotonic(self) -> float:
        return self.now

    def wall(self) -> float:
        # FakeClock's wall start, so audit timestamps read as simulated; capped so that a
        # timestamp stays a datetime whatever the calls add up to.
        return DEFAULT_WALL_START + min(self.now, 100 * MAX_SECONDS)

    def succeed(self) -> None:
        self.now += self.step

    def fail(self) -> None:
        self.now += self.step
        raise _Failure

    def ignore(self) -> None:
        self.now += self.step
        raise _Ignored


_REFUSED = object()


def _refuse(*_: object) -> object:
    """The replay breaker's fallback: a marker instead of raising ``CircuitOpenError``."""
    return _REFUSED


#: What :func:`simulate` takes as one call.
CallLike = Call | tuple[float, str, float | None] | tuple[float, str] | Mapping[str, Any]


def simulate(
    policy: BreakerPolicy,
    calls: Iterable[CallLike],
    *,
    seed: int | None = None,
    name: str = "replay",
    breaker: str | None = None,
) -> Replay:
    """Replay ``calls`` through a breaker with ``policy`` on a simulated clock.

    The decisions are the real breaker's: a :class:`~breaker_fsm.CircuitBreaker` with
    ``policy`` runs one operation per call that succeeds, fails or is ignored as recorded,
    under a clock set to the call's ``at``. A refused call does not run, so its recorded
    outcome is not seen; a half-open trial takes the outcome of the call that became the trial.
    A policy in shadow mode (``enforce=False``) is replayed as if it enforced: the replay
    is what it would refuse. The recorded outcome is already a verdict, so the policy's
    ``record_exceptions`` and ``ignore_exceptions`` are not consulted (the breaker gets a
    copy that classifies the replay's own stand-in exceptions); every other field is used
    as given.

    Args:
        policy: the candidate policy (a :class:`~breaker_fsm.BreakerPolicy`; a file loads
            with ``BreakerPolicy.from_file(path)``).
        calls: :class:`Call` records, ``(at, outcome, duration)`` or ``(at, outcome)``
            tuples, or mappings with ``"at"``, ``"outcome"`` and optionally ``"duration"``
            and ``"breaker"`` (a call log's lines as JSON objects). They replay in order of
            ``at``, sorted stably as :func:`read_calls` sorts them when they are not in
            order already; see the module docstring for calls that overlap. A call log on
            disk is read with :func:`read_calls`.
        seed: seeds the open-duration jitter; ``None`` is seed 0, so a replay repeats.
        name: the breaker's name in the audit trail.
        breaker: replay only the calls whose ``"breaker"`` is this (only mappings name one).
            Without it, calls naming more than one breaker are refused.

    Raises:
        TypeError: ``policy`` is not a ``BreakerPolicy``, ``calls`` is a path or ``seed``
            is not an integer.
        ReplayError: there are no calls; a call is not ``(at, outcome, duration)`` with a
            finite ``at``, an outcome among :data:`OUTCOMES` and a finite ``duration`` ≥ 0
            (or ``None``), the error naming its position in ``index``; the calls name
            several breakers and none is picked, or none is of the ``breaker`` picked.
    """
    _check_arguments(policy, calls, seed)
    prepared = _prepare(calls, breaker)
    clock = _ReplayClock()
    trail: list[Transition] = []
    replayer = CircuitBreaker(
        name,
        policy.model_copy(
            update={
                "record_exceptions": (_Failure,),
                "ignore_exceptions": (_Ignored,),
                "enforce": True,  # a replay asks what the policy would refuse
            }
        ),
        clock=clock,
        fallback=_refuse,
        sinks=[trail.append],
        rng=random.Random(0 if seed is None else seed),
    )
    run = _run(replayer, clock, prepared)
    metrics = replayer.metrics()
    counts = dict.fromkeys(EVENTS, 0)
    first_trip_at = None
    open_seconds = 0.0
    opened_at: float | None = None
    for record in trail:
        counts[record.event] = counts.get(record.event, 0) + 1
        if record.event == "trip" and first_trip_at is None:
            first_trip_at = record.monotonic
        if opened_at is not None:  # every transition out of open follows one into it
            open_seconds += record.monotonic - opened_at
            opened_at = None
        if record.target == "open":
            opened_at = record.monotonic
    if opened_at is not None:
        open_seconds += run["end"] - opened_at
    return Replay(
        policy=policy,
        calls=metrics.total_requests + metrics.rejected_count,
        ran=metrics.total_requests,
        refused=metrics.rejected_count,
        failures_let_through=metrics.error_count,
        transitions=counts,
        trail=tuple(trail),
        first_trip_at=first_trip_at,
        open_seconds=open_seconds,
        **run,
    )


class _RunFields(TypedDict):
    """The :class:`Replay` fields only the run itself knows."""

    start: float
    end: float
    skipped: int
    overlapped: int
    successes_refused: int


def _run(
    breaker: CircuitBreaker,
    clock: _ReplayClock,
    calls: list[Call],
) -> _RunFields:
    """Run every call (validated by :func:`_prepare`) through ``breaker``.

    Returns:
        The :class:`Replay` fields the run alone knows: when the first call started and
        the last one ended (``start``, ``end``), how many calls were ``skipped`` and
        ``overlapped``, and how many successful calls were refused (``successes_refused``).
    """
    call = breaker.call
    succeed, fail, ignore = clock.succeed, clock.fail, clock.ignore
    refused_marker = _REFUSED
    successes_refused = skipped = overlapped = 0
    start: float | None = None
    latest = -math.inf  # when the calls replayed so far ended, by their recorded durations
    for at, outcome, duration in calls:
        if outcome == "refused":
            skipped += 1
            continue
        step = 0.0 if duration is None else duration
        if at < latest:  # it started while an earlier call was still running
            overlapped += 1
        elif start is None:
            start = float(at)
        end = at + step
        if end > latest:  # noqa: PLR1730 - cheaper than calling max() per call
            latest = end
        clock.now = at  # a step back when the previous call ran past this start
        clock.step = step
        # try/except rather than contextlib.suppress (SIM105): no context manager per call.
        if outcome == "success":
            if call(succeed) is refused_marker:
                successes_refused += 1
        elif outcome == "failure":
            try:  # noqa: SIM105
                call(fail)
            except _Failure:
                pass
        else:  # "ignored": _prepare let no other outcome through
            try:  # noqa: SIM105
                call(ignore)
            except _Ignored:
                pass
    return {
        "start": 0.0 if start is None else start,
        "end": 0.0 if start is None else float(latest),
        "skipped": skipped,
        "overlapped": overlapped,
        "successes_refused": successes_refused,
    }


def _check_arguments(policy: object, calls: object, seed: object) -> None:
    """Raise TypeError for an argument of the wrong kind, saying what to pass instead."""
    if not isinstance(policy, BreakerPolicy):
        kind = type(policy).__name__
        if isinstance(policy, str | os.PathLike):
            hint = "load a policy file with BreakerPolicy.from_file(path)"
        elif isinstance(policy, Mapping):
            hint = "build one with BreakerPolicy(**fields) or BreakerPolicy.model_validate(...)"
        else:
            hint = "e.g. BreakerPolicy(failure_threshold=5), or BreakerPolicy.from_file(path)"
        raise TypeError(f"simulate(): policy must be a BreakerPolicy, got {kind}: {hint}")
    if isinstance(calls, str | bytes | os.PathLike):
        raise TypeError(
            f"simulate(): calls must be the calls, not a path ({calls!r}): read a call log "
            "with read_calls(path) and pass what it returns"
        )
    if seed is not None and (type(seed) is not int):
        raise TypeError(f"simulate(): seed must be an int or None, got {seed!r}")


def _prepare(calls: Iterable[CallLike], breaker: str | None) -> list[Call]:
    """The calls as validated ``Call`` records, sorted by ``at`` (stably), of one breaker."""
    try:
        items = list(calls)
    except TypeError:
        raise _bad_call(
            0,
            f"not an (at, outcome, duration) call: calls must be an iterable of calls, "
            f"got {type(calls).__name__}",
        ) from None
    prepared: list[Call] = []
    append = prepared.append
    names: dict[str, None] = {}  # the breakers the calls name, in order
    previous = -math.inf
    ordered = True
    for index, item in enumerate(items):
        if type(item) is Call and breaker is None:
            call = item
        else:
            named, call = _coerce(index, item)
            if named is not None:
                names[named] = None
            if breaker is not None and named != breaker:
                continue
        at, outcome, duration = call
        # Fast acceptance of a well-formed call; anything else is diagnosed in full.
        if not (
            type(at) is float
            and -MAX_SECONDS <= at <= MAX_SECONDS
            and outcome in _OUTCOME_SET
            and (duration is None or (type(duration) is float and 0.0 <= duration <= MAX_SECONDS))
        ):
            call = _check_call(index, at, outcome, duration)
            at = call.at
        if at < previous:
            ordered = False
        previous = at
        append(call)
    _check_breakers(bool(prepared), list(names), breaker)
    if not ordered:
        prepared.sort(key=_start)
    return prepared


def _check_breakers(kept: bool, names: list[str], breaker: str | None) -> None:
    """Raise when no call is left, or when the calls name several breakers and none is picked."""
    if breaker is not None and not kept:
        found = ", ".join(names) if names else "none names a breaker"
        raise ReplayError(f"no calls of breaker {breaker!r} (the calls: {found})")
    if breaker is None and len(names) > 1:
        raise ReplayError(
            f"the calls name {len(names)} breakers ({', '.join(names)}): pick one with breaker=NAME"
        )
    if not kept:
        raise ReplayError("no calls to replay")


def _start(call: Call) -> float:
    return call.at


def _coerce(index: int, item: object) -> tuple[str | None, Call]:
    """A call given as a tuple or a mapping: its breaker's name (or None), and the call."""
    if isinstance(item, Mapping):
        missing = [key for key in ("at", "outcome") if key not in item]
        if missing:
            keys = " and ".join(map(repr, missing))
            raise _bad_call(index, f"a call given as a mapping needs {keys}, got {_clip(item)}")
        named = item.get("breaker")
        return (None if named is None else str(named)), Call(
            item["at"], item["outcome"], item.get("duration")
        )
    if isinstance(item, tuple) and len(item) in (2, 3):
        return None, Call(*item)
    raise _bad_call(
        index,
        "not an (at, outcome, duration) call: a Call, an (at, outcome[, duration]) tuple "
        f"or a mapping with 'at' and 'outcome', got {_clip(item)}",
    )


def _check_call(index: int, at: object, outcome: object, duration: object) -> Call:
    """Validate one call's fields, or raise naming its position and the first bad field."""
    if not _is_number(at) or not -MAX_SECONDS <= at <= MAX_SECONDS:  # false for NaN
        raise _bad_call(index, f"at must be a number of seconds {_RANGE}, got {_clip(at)}")
    if not isinstance(outcome, str) or outcome not in _OUTCOME_SET:
        raise _bad_call(index, f"outcome must be one of {_NAMES}, got {_clip(outcome)}")
    if duration is not None and (not _is_number(duration) or not 0.0 <= duration <= MAX_SECONDS):
        raise _bad_call(index, f"duration must be {_DURATION} or None, got {_clip(duration)}")
    return Call(float(at), outcome, None if duration is None else float(duration))


def _is_number(value: object) -> TypeGuard[float]:
    """A real number that is not a bool (True is not a time)."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def _clip(value: object, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _bad_call(index: int, problem: str) -> ReplayError:
    return ReplayError(f"call {index}: {problem}", index=index)
