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

The replay is sequential: calls run one after another in the order given (:func:`read_calls`
sorts a log by ``at``). Each call starts at its own ``at`` on the simulated clock and moves the
clock on by its ``duration`` while it runs, so slow-call detection sees the recorded duration
and the timeline stays the recorded one. Calls that overlapped (a service runs many at once)
are the approximation: a call that started before the previous one ended still starts at its
own ``at``, so the simulated clock steps back to it (the breaker tolerates a clock that stands
still or steps back), and its outcome is judged before those of calls that started later even
if they ended first. Calls that started while an earlier one was still running are counted in
:attr:`Replay.overlapped`. Replaying them one
after another instead, each waiting for the previous one to end, would stretch a busy
service's hour into many hours and make every open duration meaningless.
"""

from __future__ import annotations

import csv
import io
import json
import math
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, NamedTuple, cast

from ._audit import Transition, jsonl_lines
from ._breaker import CircuitBreaker
from ._policy import BreakerPolicy, CountWindow
from .exceptions import ReplayError
from .testing import DEFAULT_WALL_START

if TYPE_CHECKING:
    import os

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

#: The outcomes a call record may have. ``"refused"`` means the recorded breaker refused the
#: call, so what the service would have answered is unknown: such calls are skipped.
OUTCOMES: Final = ("success", "failure", "ignored", "refused")

_NAMES: Final = ", ".join(OUTCOMES)

#: The automatic events a replay can fire, in the order they are reported.
EVENTS: Final = ("trip", "attempt_reset", "retrip", "recover")

#: The largest ``at`` (in magnitude) and ``duration`` replayed: about 31 years.
MAX_SECONDS: Final = 1e9
_RANGE: Final = f"from {-MAX_SECONDS:g} to {MAX_SECONDS:g}"
_DURATION: Final = f"a number of seconds from 0 to {MAX_SECONDS:g}"


class Call(NamedTuple):
    """One recorded call.

    ``at`` is when it started (monotonic seconds), ``outcome`` one of :data:`OUTCOMES` and
    ``duration`` how long it ran in seconds (``None``: unknown, replayed as instantaneous and
    never slow).
    """

    at: float
    outcome: str
    duration: float | None = None


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

    def as_dict(self) -> dict[str, Any]:
        """The figures as JSON-ready values (everything except the policy and the trail)."""
        return {
            "calls": self.calls,
            "ran": self.ran,
            "refused": self.refused,
            "skipped": self.skipped,
            "overlapped": self.overlapped,
            "transitions": dict(self.transitions),
            "first_trip_at": self.first_trip_at,
            "open_seconds": self.open_seconds,
            "failures_let_through": self.failures_let_through,
            "successes_refused": self.successes_refused,
            "start": self.start,
            "end": self.end,
        }


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


def simulate(
    policy: BreakerPolicy,
    calls: Iterable[Call | tuple[float, str, float | None]],
    *,
    seed: int | None = None,
    name: str = "replay",
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
        policy: the candidate policy.
        calls: :class:`Call` records (or ``(at, outcome, duration)`` tuples), replayed in
            order; see the module docstring for calls that overlap.
        seed: seeds the open-duration jitter; ``None`` is seed 0, so a replay repeats.
        name: the breaker's name in the audit trail.

    Raises:
        ReplayError: a call is not ``(at, outcome, duration)`` with a finite ``at``, an
            outcome among :data:`OUTCOMES` and a finite ``duration`` ≥ 0 (or ``None``); the
            error names its position in ``index``.
    """
    clock = _ReplayClock()
    trail: list[Transition] = []
    breaker = CircuitBreaker(
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
    start, end, skipped, overlapped, successes_refused = _run(breaker, clock, calls)
    metrics = breaker.metrics()
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
        open_seconds += end - opened_at
    return Replay(
        policy=policy,
        calls=metrics.total_requests + metrics.rejected_count,
        ran=metrics.total_requests,
        refused=metrics.rejected_count,
        failures_let_through=metrics.error_count,
        successes_refused=successes_refused,
        transitions=counts,
        trail=tuple(trail),
        first_trip_at=first_trip_at,
        open_seconds=open_seconds,
        start=start,
        end=end,
        skipped=skipped,
        overlapped=overlapped,
    )


def _run(  # noqa: PLR0912 - the replay loop is inlined on purpose: it runs once per call
    breaker: CircuitBreaker,
    clock: _ReplayClock,
    calls: Iterable[Call | tuple[float, str, float | None]],
) -> tuple[float, float, int, int, int]:
    """Run every call through ``breaker``.

    Returns:
        When the first call started and the last one ended, how many calls were skipped
        and overlapped, and how many successful calls were refused.
    """
    call = breaker.call
    succeed, fail, ignore = clock.succeed, clock.fail, clock.ignore
    refused_marker = _REFUSED
    successes_refused = skipped = overlapped = 0
    start: float | None = None
    latest = -math.inf  # when the calls replayed so far ended, by their recorded durations
    low, high = -MAX_SECONDS, MAX_SECONDS
    index = -1
    try:
        for index, (at, outcome, duration) in enumerate(calls):
            # NaN fails every comparison; a non-number raises TypeError.
            if not low <= at <= high:
                raise _bad_call(index, f"at must be a number of seconds {_RANGE}, got {at!r}")
            if duration is None:
                step = 0.0
            elif 0.0 <= duration <= high:
                step = duration
            else:
                raise _bad_call(index, f"duration must be {_DURATION}, got {duration!r}")
            if outcome == "refused":
                skipped += 1
                continue
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
            elif outcome == "ignored":
                try:  # noqa: SIM105
                    call(ignore)
                except _Ignored:
                    pass
            else:
                raise _bad_call(index, f"outcome must be one of {_NAMES}, got {outcome!r}")
    except (TypeError, ValueError) as exc:
        where = max(index, 0)
        raise _bad_call(where, f"not an (at, outcome, duration) call: {exc}") from None
    if start is None:
        return 0.0, 0.0, skipped, overlapped, successes_refused
    return start, float(latest), skipped, overlapped, successes_refused


def _bad_call(index: int, problem: str) -> ReplayError:
    return ReplayError(f"call {index}: {problem}", index=index)


# --------------------------------------------------------------------------- reading


def read_calls(path: str | os.PathLike[str]) -> list[Call]:
    """Read a call log: JSON Lines as ``CallLogSink`` writes it, or CSV (``.csv``).

    A JSON line is an object with ``"at"`` (seconds), ``"outcome"`` (one of
    :data:`OUTCOMES`) and optionally ``"duration"`` (seconds, or null); other keys are
    ignored and blank lines skipped. A CSV file has a header row naming at least the ``at``
    and ``outcome`` columns (``duration`` optional, an empty cell meaning unknown); other
    columns are ignored. The calls come back sorted by ``at`` (stably): a sink writes a call
    when it ends, so calls that overlapped are logged out of start order.

    Raises:
        ReplayError: the file cannot be read, or a line is not a valid call record; the
            message names the file and the line (also in ``path`` and ``line``).
    """
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ReplayError(f"{file}: no such file", path=str(file)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ReplayError(f"{file}: cannot read: {exc}", path=str(file)) from None
    reader = _csv_calls if file.suffix.lower() == ".csv" else _jsonl_calls
    calls = reader(file, text)
    calls.sort(key=_start)  # timsort: one pass over a log already in order
    return calls


def _start(call: Call) -> float:
    return call.at


def _jsonl_calls(file: Path, text: str) -> list[Call]:
    calls: list[Call] = []
    append = calls.append
    loads = json.loads
    for number, line in enumerate(jsonl_lines(text), start=1):
        if not line.strip():
            continue
        try:
            record = loads(line)
        except (ValueError, RecursionError) as exc:  # JSONDecodeError is a ValueError
            raise _bad_line(file, number, f"not valid JSON ({exc})") from None
        if not isinstance(record, dict):
            raise _bad_line(file, number, f"not a JSON object: {_clip(line)}")
        if "at" not in record or "outcome" not in record:
            missing = " and ".join(repr(key) for key in ("at", "outcome") if key not in record)
            raise _bad_line(file, number, f"no {missing} field")
        at, outcome, duration = record["at"], record["outcome"], record.get("duration")
        # Fast acceptance of a well-formed record; anything else is diagnosed in full.
        if (
            type(at) is float
            and -MAX_SECONDS <= at <= MAX_SECONDS
            and outcome in _OUTCOME_SET
            and (duration is None or (type(duration) is float and 0.0 <= duration <= MAX_SECONDS))
        ):
            append(Call(at, outcome, duration))
        else:
            append(_check_record(file, number, at, outcome, duration))
    return calls


_OUTCOME_SET: Final = frozenset(OUTCOMES)


def _check_record(file: Path, number: int, at: object, outcome: object, duration: object) -> Call:
    """Validate one record's values, or raise naming the first bad one."""
    if not _is_seconds(at, -MAX_SECONDS):
        raise _bad_line(file, number, f"'at' must be a number of seconds {_RANGE}, got {_clip(at)}")
    if not isinstance(outcome, str) or outcome not in _OUTCOME_SET:
        raise _bad_line(
            file, number, f"'outcome' must be one of {', '.join(OUTCOMES)}, got {_clip(outcome)}"
        )
    if duration is not None and not _is_seconds(duration, 0.0):
        raise _bad_line(
            file,
            number,
            f"'duration' must be null or a number of seconds from 0 to {MAX_SECONDS:g}, "
            f"got {_clip(duration)}",
        )
    seconds = float(cast("float", at))
    return Call(seconds, outcome, None if duration is None else float(cast("float", duration)))


def _is_seconds(value: object, low: float) -> bool:
    """Whether ``value`` is a number (not a bool) from ``low`` to ``MAX_SECONDS``."""
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and low <= value <= MAX_SECONDS  # false for NaN
    )


def _csv_calls(file: Path, text: str) -> list[Call]:
    rows = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = next(rows, None)
        if header is None:
            return []
        columns = {name.strip().lower(): i for i, name in enumerate(header)}
        if "at" not in columns or "outcome" not in columns:
            raise _bad_line(file, 1, "the header row must name the 'at' and 'outcome' columns")
        at_col, outcome_col = columns["at"], columns["outcome"]
        duration_col = columns.get("duration")
        width = max(at_col, outcome_col, -1 if duration_col is None else duration_col) + 1
        calls: list[Call] = []
        for row in rows:
            number = rows.line_num
            if not row or (len(row) == 1 and not row[0].strip()):
                continue  # a blank line
            if len(row) < width:
                raise _bad_line(file, number, f"{len(row)} columns, the header names {width}")
            cell = row[duration_col].strip() if duration_col is not None else ""
            try:
                at = float(row[at_col])
                duration = float(cell) if cell else None
            except ValueError as exc:
                raise _bad_line(file, number, f"not a number: {exc}") from None
            calls.append(_check_record(file, number, at, row[outcome_col].strip(), duration))
    except csv.Error as exc:
        raise _bad_line(file, rows.line_num, f"malformed CSV ({exc})") from None
    return calls


def _bad_line(file: Path, number: int, problem: str) -> ReplayError:
    return ReplayError(f"{file}:{number}: {problem}", path=str(file), line=number)


def _clip(value: object, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


# --------------------------------------------------------------------------- explaining


@dataclass(frozen=True, slots=True)
class Explanation:
    """A policy in words: when it trips, how it recovers, and what looks wrong with it."""

    trips: str
    recovers: str
    warnings: tuple[str, ...]

    def __str__(self) -> str:
        lines = [f"Trips {self.trips}.", f"Recovers: {self.recovers}."]
        lines += [f"Warning: {warning}" for warning in self.warnings]
        return "\n".join(lines)


def explain(policy: BreakerPolicy) -> Explanation:
    """Say in words when ``policy`` trips and recovers, with warnings for likely mistakes.

    A warning names a rule that can never fire (a setting without the setting it needs, a
    classification that counts no exception as a failure) or an open duration that grows
    without bound.

    >>> from breaker_fsm import BreakerPolicy, CountWindow
    >>> policy = BreakerPolicy(window=CountWindow(size=100), reset_timeout_multiplier=2,
    ...                        max_reset_timeout=300)
    >>> explain(policy).trips
    'after 5 consecutive failures, or when ≥ 50% of the last 100 calls fail, once at least 10 ...'
    >>> explain(policy).recovers
    'stays open 30 s, doubling after each retrip to at most 300 s; then 1 trial call is ...'
    """
    warnings: list[str] = []
    rules: list[str] = []
    if policy.failure_threshold is not None:
        streak = policy.failure_threshold
        rules.append(
            "on the first failure" if streak == 1 else f"after {streak} consecutive failures"
        )
    window = policy.window
    set_fields = policy.model_fields_set
    if window is not None:
        if isinstance(window, CountWindow):
            scope = "the last call" if window.size == 1 else f"the last {window.size} calls"
        else:
            scope = f"the calls of the last {_secs(window.seconds)}"
        minimum = policy.effective_minimum_calls
        once = f", once at least {minimum} {'has' if minimum == 1 else 'have'} been seen"
        rules.append(f"when ≥ {_percent(policy.failure_rate_threshold)} of {scope} fail{once}")
        if policy.slow_call_duration is not None:
            rules.append(
                f"when ≥ {_percent(policy.slow_call_rate_threshold)} of them take longer "
                f"than {_secs(policy.slow_call_duration)}"
            )
        if isinstance(window, CountWindow) and policy.minimum_calls > window.size:
            warnings.append(
                f"minimum_calls ({policy.minimum_calls}) is larger than the window "
                f"({window.size} calls): rates are judged from {window.size} calls"
            )
        if "slow_call_rate_threshold" in set_fields and policy.slow_call_duration is None:
            warnings.append(
                "slow_call_rate_threshold is set but slow_call_duration is not: "
                "the slow-call rule is off and never trips"
            )
    else:
        ignored = sorted(
            name
            for name in ("failure_rate_threshold", "minimum_calls", "slow_call_rate_threshold")
            if name in set_fields
        )
        if ignored:
            verb = "has" if len(ignored) == 1 else "have"
            warnings.append(f"{' and '.join(ignored)} {verb} no effect without a window")
    if not any(
        not issubclass(recorded, policy.ignore_exceptions) for recorded in policy.record_exceptions
    ):
        warnings.append(
            "no exception counts as a failure (record_exceptions is empty or every type in it is "
            "ignored): it never trips on exceptions"
        )
    trips = ", or ".join(rules)
    recovers = _recovery(policy, warnings)
    return Explanation(trips=trips, recovers=recovers, warnings=tuple(warnings))


def _recovery(policy: BreakerPolicy, warnings: list[str]) -> str:
    """How an open breaker gets back to closed, in words (adding any warning)."""
    text = f"stays open {_secs(policy.reset_timeout)}"
    multiplier = policy.reset_timeout_multiplier
    ceiling = policy.max_reset_timeout
    if multiplier > 1:
        growth = "doubling" if multiplier == 2 else f"multiplied by {multiplier:g}"
        if ceiling is None:
            text += f", {growth} after each retrip without limit"
            warnings.append(
                "the open duration grows without limit (reset_timeout_multiplier without "
                "max_reset_timeout): after a long outage it may in effect never recover"
            )
        else:
            text += f", {growth} after each retrip to at most {_secs(ceiling)}"
    if policy.reset_timeout_jitter:
        text += f" (± {_percent(policy.reset_timeout_jitter)} jitter)"
    trials, needed = policy.half_open_max_calls, policy.success_threshold
    admitted = "1 trial call is admitted" if trials == 1 else f"{trials} trial calls are admitted"
    if needed == 1 and trials == 1:
        verdict = "it recovers when it succeeds"
    else:
        verdict = (
            f"it recovers when {needed} succeed"
            if needed > 1
            else "it recovers on the first success"
        )
    text += f"; then {admitted}, and {verdict} (a failed trial reopens it)"
    if policy.half_open_timeout is not None:
        text += f"; a half-open episode undecided after {_secs(policy.half_open_timeout)} reopens"
    return text


def _secs(seconds: float) -> str:
    return f"{seconds:g} s"


def _percent(fraction: float) -> str:
    return f"{fraction * 100:g}%"


# --------------------------------------------------------------------------- plotting

#: Band colours of the states a replay visits.
_STATE_COLOURS: Final = {"closed": "#d9f0d3", "open": "#f4a582", "half_open": "#fee08b"}
_PLOT_HINT: Final = "plotting needs matplotlib: pip install 'breaker-fsm[plot]'"


def plot(
    path: str | os.PathLike[str],
    calls: Sequence[Call],
    replays: Sequence[Replay],
    *,
    labels: Sequence[str] | None = None,
    bins: int = 200,
) -> None:
    """Draw one timeline per replay: the breaker's state as bands, the failure rate as a line.

    The rolling failure rate is that of the recorded calls (failed ÷ judged, over about a
    fortieth of the span), the same on every panel, so policies compare at a glance. The
    format follows the suffix of ``path`` (``.png``, ``.svg``, or any other matplotlib knows).

    Raises:
        ImportError: matplotlib is not installed (the ``plot`` extra).
    """
    require_matplotlib()
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    names = list(labels) if labels is not None else [f"policy {i + 1}" for i in range(len(replays))]
    start = min((call.at for call in calls), default=0.0)
    end = max([*(replay.end for replay in replays), start + 1e-9])
    centres, rates = _rolling_failure_rate(calls, start, end, bins)
    figure = Figure(figsize=(10, 1.9 * max(1, len(replays)) + 0.6), layout="constrained")
    axes = figure.subplots(max(1, len(replays)), 1, sharex=True, squeeze=False)[:, 0]
    for ax, replay, name in zip(axes, replays, names, strict=False):
        for state, spans in _state_spans(replay, start, end).items():
            ax.broken_barh(
                spans, (0, 1), facecolors=_STATE_COLOURS.get(state, "#cccccc"), linewidth=0
            )
        ax.plot(centres, rates, color="#b2182b", linewidth=1.2)
        ax.set_ylim(0, 1)
        ax.set_xlim(start, end)
        ax.set_ylabel("failure rate")
        ax.set_title(
            f"{name}: refused {replay.refused} of {replay.calls}, "
            f"{replay.failures_let_through} failures let through, "
            f"{replay.successes_refused} successes refused",
            loc="left",
            fontsize=9,
        )
    axes[-1].set_xlabel("time (s)")
    handles = [Patch(color=colour, label=state) for state, colour in _STATE_COLOURS.items()]
    figure.legend(handles=handles, loc="outside lower center", ncols=len(handles), fontsize=8)
    figure.savefig(path)


def require_matplotlib() -> None:
    """Import matplotlib, or raise ``ImportError`` saying how to install it."""
    try:
        import matplotlib.figure  # noqa: F401 - imported to learn whether it can be
    except ImportError as exc:
        raise ImportError(_PLOT_HINT) from exc


def _rolling_failure_rate(
    calls: Sequence[Call], start: float, end: float, bins: int
) -> tuple[list[float], list[float]]:
    """The recorded failure rate at the centre of each of ``bins`` slices of the span."""
    width = (end - start) / bins
    failed = [0] * bins
    judged = [0] * bins
    for at, outcome, _ in calls:
        if outcome in ("success", "failure"):
            slot = min(int((at - start) / width), bins - 1)
            judged[slot] += 1
            failed[slot] += outcome == "failure"
    span = max(1, bins // 40)  # the rolling window, in slices
    centres: list[float] = []
    rates: list[float] = []
    for slot in range(bins):
        low = max(0, slot - span + 1)
        seen = sum(judged[low : slot + 1])
        if seen:
            centres.append(start + (slot + 0.5) * width)
            rates.append(sum(failed[low : slot + 1]) / seen)
    return centres, rates


def _state_spans(replay: Replay, start: float, end: float) -> dict[str, list[tuple[float, float]]]:
    """Each state's ``(start, width)`` intervals over ``[start, end]``, for ``broken_barh``."""
    spans: dict[str, list[tuple[float, float]]] = {}
    state, since = "closed", start
    for record in replay.trail:
        # max(): with overlapping calls a transition may be stamped before the previous one
        spans.setdefault(state, []).append((since, max(0.0, record.monotonic - since)))
        state, since = record.target, record.monotonic
    spans.setdefault(state, []).append((since, max(0.0, end - since)))
    return spans
