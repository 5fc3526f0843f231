"""``BreakerPolicy``: every threshold and timeout, and the guards that decide transitions."""

from __future__ import annotations

import builtins
import dataclasses
import functools
import importlib
import math
import os
from collections.abc import Mapping
from datetime import timedelta
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    StrictBool,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
)

from ._detector import FAILURE_RATE, SLOW_RATE, STREAK, trip_rule
from ._outcome import FAILED, NEUTRAL, judge_exception
from ._sources import (
    guess_section,
    read_policy_env,
    read_policy_file,
    validate_titled,
    validation_error,
)

if TYPE_CHECKING:
    import random

__all__ = ["BreakerPolicy", "BreakerStats", "CountWindow", "TimeWindow"]


# --------------------------------------------------------------------------- field types


def _not_a_bool(value: object) -> object:
    """Refuse ``True``/``False`` where a number is expected (pydantic would read 1 and 0)."""
    if isinstance(value, bool):
        raise ValueError(f"takes a number, not {value!r}")
    return value


def _seconds(value: object) -> object:
    """Accept ``timedelta`` and ISO 8601 durations wherever seconds are expected."""
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, str):
        text = value.strip().upper()
        if text.lstrip("+-").startswith("P"):
            return _iso_seconds(text)
        try:
            float(text)
        except ValueError:
            raise ValueError(
                f"{value!r} is neither a number of seconds nor an ISO 8601 duration "
                "such as PT30S, PT1M30S or P1DT2H"
            ) from None
    return _not_a_bool(value)


@functools.cache
def _timedelta() -> TypeAdapter[timedelta]:
    """The ISO 8601 duration parser of pydantic (built on first use)."""
    return TypeAdapter(timedelta)


def _iso_seconds(text: str) -> float:
    """Seconds in an ISO 8601 duration (``PT30S``, ``PT1M30S``, ``P1DT2H``, ``P1W``).

    Years and months are refused: they have no fixed length, and ``P1M`` (a month, which
    pydantic reads as 30 days) is too easily written for ``PT1M`` (a minute).
    """
    date_part = text.partition("T")[0]
    if "Y" in date_part or "M" in date_part:
        raise ValueError(
            "years and months have no fixed length: use weeks or days (P30D), "
            "or PT1M for one minute"
        )
    try:
        return _timedelta().validate_python(text).total_seconds()
    except ValidationError:
        raise ValueError("not an ISO 8601 duration such as PT30S, PT1M30S or P1DT2H") from None


def _exception_class(value: object) -> type[Exception]:
    """Resolve an exception class, or its dotted name (``"http.client.HTTPException"``)."""
    if isinstance(value, str):
        name = value.strip()
        module_name, _, attr = name.rpartition(".")
        try:
            if module_name:
                obj: object = getattr(importlib.import_module(module_name), attr)
            else:
                obj = getattr(builtins, name)
        except (ImportError, AttributeError, ValueError) as exc:
            raise ValueError(f"{name!r} does not name an importable exception class") from exc
        value = obj
    if not isinstance(value, type) or not issubclass(value, Exception):
        raise ValueError(f"{value!r} is not an Exception subclass")
    return value


def _dotted_name(cls: type[Exception]) -> str:
    """Name an exception class so that :func:`_exception_class` finds it again."""
    if cls.__module__ == "builtins":
        return cls.__qualname__
    return f"{cls.__module__}.{cls.__qualname__}"


def _exception_tuple(value: object) -> object:
    """Accept one class or name, or a comma-separated string of names, as a tuple."""
    if isinstance(value, str):
        return tuple(part for part in (p.strip() for p in value.split(",")) if part)
    if isinstance(value, type):
        return (value,)
    return value


ExceptionClass = Annotated[
    type[Exception],
    PlainValidator(_exception_class),
    PlainSerializer(_dotted_name, return_type=str),
    WithJsonSchema({"type": "string", "description": "dotted name of an Exception subclass"}),
]
ExceptionClasses = Annotated[tuple[ExceptionClass, ...], BeforeValidator(_exception_tuple)]
_DURATION_SCHEMA = {"type": "string", "format": "duration", "description": "ISO 8601: PT30S"}
Seconds = Annotated[
    float,
    BeforeValidator(_seconds),
    Field(gt=0, allow_inf_nan=False),
    WithJsonSchema({"anyOf": [{"type": "number", "exclusiveMinimum": 0}, _DURATION_SCHEMA]}),
]
Fraction = Annotated[float, BeforeValidator(_not_a_bool), Field(gt=0, le=1)]


# The largest windows a policy accepts. Every breaker allocates its window up front, and a
# registry may hold thousands of per-host breakers with the same policy, so the bound is
# what one breaker may cost at most (measured on CPython 3.11 with tracemalloc):
#
# - a count window's ring is 1 byte a call (a bytearray), rebuilt on every recover and
#   reset: 100,000 calls are 98 KiB and 2 µs to rebuild; 10**8 were 95 MiB and 70 ms (page
#   faults), per breaker. A window is there to trip within seconds or minutes: 100,000
#   calls are 100 s of traffic at 1,000 calls a second, and a larger window reacts more
#   slowly still (a longer horizon is what a time window is for);
# - a time window keeps three lists of one-second buckets, 24 bytes a second, and a call
#   after a quiet gap clears the skipped buckets under the breaker's lock: an hour is
#   84 KiB and at most 3,600 buckets (about 1 ms, once per gap); a day would be 2 MiB and
#   26 ms under the lock.
MAX_COUNT_WINDOW = 100_000
MAX_TIME_WINDOW = 3_600


def _at_most(limit: int, advice: str) -> AfterValidator:
    """An after-validator refusing values above ``limit``, with ``advice`` in the error."""

    def check(value: int) -> int:
        if value > limit:
            raise ValueError(f"must be <= {limit:,}, got {value:,}: {advice}")
        return value

    return AfterValidator(check)


class _Window(BaseModel):
    """What both kinds of window are: frozen, and strict about their fields."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class CountWindow(_Window):
    """Judge the last ``size`` calls (at most ``MAX_COUNT_WINDOW``, 100,000)."""

    kind: Literal["count"] = "count"
    size: Annotated[
        int,
        BeforeValidator(_not_a_bool),
        _at_most(
            MAX_COUNT_WINDOW,
            "a count window allocates a byte a call up front; for longer, use a TimeWindow",
        ),
    ] = Field(
        default=100,
        ge=1,
        json_schema_extra={"maximum": MAX_COUNT_WINDOW},
        description="number of most recent calls judged",
    )


class TimeWindow(_Window):
    """Judge the calls of the last ``seconds`` seconds, in one-second buckets (an hour at most)."""

    kind: Literal["time"] = "time"
    seconds: Annotated[
        int,
        BeforeValidator(_seconds),
        _at_most(MAX_TIME_WINDOW, "a time window keeps one-second buckets for an hour at most"),
        WithJsonSchema(
            {
                "anyOf": [
                    {"type": "integer", "minimum": 1, "maximum": MAX_TIME_WINDOW},
                    _DURATION_SCHEMA,
                ]
            }
        ),
    ] = Field(default=60, ge=1, description="length of the window in seconds")


Window = Annotated[CountWindow | TimeWindow, Field(discriminator="kind")]


# --------------------------------------------------------------------------- guard input


@dataclasses.dataclass(frozen=True, slots=True)
class BreakerStats:
    """The evidence a guard decides on: a snapshot of one breaker's counters.

    Built only when a transition is considered (rare), never on the hot path.
    """

    now: float
    consecutive_failures: int = 0
    window_calls: int = 0
    window_failures: int = 0
    window_slow: int = 0
    trial_successes: int = 0
    trial_failures: int = 0
    opened_at: float | None = None
    open_duration: float = 0.0
    half_open_since: float | None = None

    def as_counters(self) -> dict[str, float]:
        """The counters that justify a transition, for its audit record."""
        return {
            "consecutive_failures": self.consecutive_failures,
            "window_calls": self.window_calls,
            "window_failures": self.window_failures,
            "window_slow": self.window_slow,
            "trial_successes": self.trial_successes,
            "trial_failures": self.trial_failures,
        }


# --------------------------------------------------------------------------- the policy


class BreakerPolicy(BaseModel):
    """Thresholds, timeouts and failure classification for a circuit breaker.

    A policy is an immutable value: share one between many breakers. Durations are
    seconds and also accept :class:`datetime.timedelta`. Thresholds are inclusive: a
    streak or a rate trips when it *reaches* its threshold.

    >>> BreakerPolicy(failure_threshold=3, reset_timeout=timedelta(seconds=5)).reset_timeout
    5.0
    """

    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=False)

    failure_threshold: int | None = Field(
        default=5, ge=1, description="consecutive failures that trip a closed breaker (None: off)"
    )
    reset_timeout: Seconds = Field(
        default=30.0, description="seconds a breaker stays open before a trial call is allowed"
    )
    success_threshold: int = Field(
        default=1, ge=1, description="successful trial calls in half_open needed to recover"
    )
    half_open_max_calls: int = Field(
        default=1, ge=1, description="trial calls admitted per half-open episode"
    )
    record_exceptions: ExceptionClasses = Field(
        # A name, not the class, so that the JSON Schema can show the default.
        default=("Exception",),
        validate_default=True,
        description="exception types counted as failures",
    )
    ignore_exceptions: ExceptionClasses = Field(
        default=(), description="exception types that count neither way (they win over record)"
    )
    window: Window | None = Field(
        default=None,
        description="sliding window judged by the rate rules: count- or time-based (None: off)",
    )
    failure_rate_threshold: Fraction = Field(
        default=0.5, description="fraction of failed calls in the window that trips"
    )
    minimum_calls: int = Field(
        default=10, ge=1, description="calls the window needs before any rate is computed"
    )
    slow_call_duration: Seconds | None = Field(
        default=None, description="seconds after which a call counts as slow (None: off)"
    )
    slow_call_rate_threshold: Fraction = Field(
        default=1.0, description="fraction of slow calls in the window that trips"
    )
    reset_timeout_multiplier: float = Field(
        default=1.0, ge=1, allow_inf_nan=False, description="backoff factor of each retrip"
    )
    max_reset_timeout: Seconds | None = Field(
        default=None, description="ceiling for the backed-off open duration"
    )
    reset_timeout_jitter: float = Field(
        default=0.0, ge=0, lt=1, description="open durations vary by up to this share, ±"
    )
    half_open_timeout: Seconds | None = Field(
        default=None, description="seconds a half-open episode may last without a decision"
    )
    call_timeout: Seconds | None = Field(
        default=None,
        description=(
            "seconds a call may take: acall cancels it then (TimeoutError, a failure); call "
            "cannot interrupt a thread, so it records a late return as a failure"
        ),
    )
    enforce: StrictBool = Field(
        default=True,
        description=(
            "refuse calls while open (False: shadow mode: every call runs, the breaker "
            "decides and audits as if enforcing, and counts what it would have refused)"
        ),
    )

    _numbers_are_not_bools = field_validator(
        "failure_threshold",
        "success_threshold",
        "half_open_max_calls",
        "minimum_calls",
        "reset_timeout_multiplier",
        "reset_timeout_jitter",
        mode="before",
    )(_not_a_bool)

    @field_validator("window", mode="before")
    @classmethod
    def _window_says_its_kind(cls, value: object) -> object:
        """A window given as data names its kind; pydantic's own error names neither."""
        if value is None or isinstance(value, CountWindow | TimeWindow):
            return value
        if not isinstance(value, Mapping) or value.get("kind") not in ("count", "time"):
            shown = repr(dict(value)) if isinstance(value, Mapping) else repr(value)
            raise ValueError(
                f'needs a "kind": "count" (the last calls: {{"kind": "count", "size": 100}}) '
                f'or "time" (the last seconds: {{"kind": "time", "seconds": 60}}), got {shown}'
            )
        return value

    # ------------------------------------------------------------------ cross-field rules

    @field_validator("slow_call_duration")
    @classmethod
    def _slow_needs_window(cls, value: float | None, info: ValidationInfo) -> float | None:
        if value is not None and info.data.get("window") is None:
            raise ValueError("slow-call detection needs a window")
        return value

    @field_validator("max_reset_timeout")
    @classmethod
    def _ceiling_above_base(cls, value: float | None, info: ValidationInfo) -> float | None:
        base = info.data.get("reset_timeout")
        if value is not None and base is not None and value < base:
            raise ValueError(f"must be >= reset_timeout ({base}), got {value}")
        return value

    def model_post_init(self, context: Any, /) -> None:
        """Check the rules that span fields which may have been left at their defaults."""
        if self.failure_threshold is None and self.window is None:
            raise validation_error(
                "window", None, "no trip rule is active: set failure_threshold or a window"
            )
        if self.half_open_max_calls < self.success_threshold:
            raise validation_error(
                "half_open_max_calls",
                self.half_open_max_calls,
                f"must be >= success_threshold ({self.success_threshold}), "
                f"got {self.half_open_max_calls}",
            )

    # ------------------------------------------------------------------ derived values

    @property
    def effective_minimum_calls(self) -> int:
        """``minimum_calls``, capped at a count window's size."""
        if isinstance(self.window, CountWindow):
            return min(self.minimum_calls, self.window.size)
        return self.minimum_calls

    def open_duration(self, episode: int, rng: random.Random | None = None) -> float:
        """Seconds the ``episode``-th consecutive open episode lasts (1 after a trip).

        ``min(reset_timeout × multiplier^(episode−1), max_reset_timeout)``, then scaled by
        ``1 + u`` with ``u`` uniform in ``[−jitter, +jitter]`` drawn from ``rng``.
        """
        try:
            base = self.reset_timeout * self.reset_timeout_multiplier ** (episode - 1)
        except OverflowError:
            base = math.inf
        if self.max_reset_timeout is not None:
            base = min(base, self.max_reset_timeout)
        if self.reset_timeout_jitter and rng is not None:
            jitter = self.reset_timeout_jitter
            base *= 1.0 + rng.uniform(-jitter, jitter)
        return base

    def is_failure_exception(self, exc: BaseException) -> bool | None:
        """Classify an exception: ``True`` failure, ``None`` neutral, ``False`` success.

        Exceptions that are not ``Exception`` (KeyboardInterrupt, CancelledError) and
        ignored ones are neutral; recorded ones are failures; any other exception means the
        dependency answered, so it counts as a success.
        """
        outcome = judge_exception(exc, self.record_exceptions, self.ignore_exceptions)
        return None if outcome == NEUTRAL else outcome == FAILED

    # ------------------------------------------------------------------ guards

    def _trip_rule(self, stats: BreakerStats) -> int:
        """Which trip rule fires on ``stats`` (``_detector``'s code), or 0."""
        return trip_rule(
            stats.consecutive_failures,
            stats.window_calls if self.window is not None else 0,
            stats.window_failures,
            stats.window_slow,
            threshold=self.failure_threshold,
            minimum_calls=self.effective_minimum_calls,
            rate=self.failure_rate_threshold,
            slow_duration=self.slow_call_duration,
            slow_rate=self.slow_call_rate_threshold,
        )

    def trip_reason(self, stats: BreakerStats) -> str | None:
        """Which trip rule fires on ``stats``, in words, or ``None`` when none does."""
        calls = stats.window_calls  # read by a rate rule alone, which needs a window
        rule = self._trip_rule(stats)
        if rule == STREAK:
            return f"{stats.consecutive_failures} consecutive failures ≥ {self.failure_threshold}"
        if rule == FAILURE_RATE:
            rate = stats.window_failures / calls
            return f"failure rate {rate:.2f} ≥ {self.failure_rate_threshold:g} over {calls} calls"
        if rule == SLOW_RATE:
            slow_rate = stats.window_slow / calls
            return (
                f"slow-call rate {slow_rate:.2f} ≥ "
                f"{self.slow_call_rate_threshold:g} over {calls} calls"
            )
        return None

    def failure_threshold_reached(self, stats: BreakerStats | None = None) -> bool:
        """Failure threshold reached."""
        return stats is not None and self._trip_rule(stats) != 0  # the words only if it trips

    def open_duration_elapsed(self, stats: BreakerStats | None = None) -> bool:
        """Open duration elapsed."""
        if stats is None or stats.opened_at is None:
            return False
        return stats.now - stats.opened_at >= stats.open_duration

    def success_threshold_reached(self, stats: BreakerStats | None = None) -> bool:
        """Enough trial calls succeeded."""
        return stats is not None and stats.trial_successes >= self.success_threshold

    def trial_failed(self, stats: BreakerStats | None = None) -> bool:
        """A trial call failed or half-open timed out."""
        if stats is None:
            return False
        return stats.trial_failures > 0 or self.half_open_timed_out(stats)

    def half_open_timed_out(self, stats: BreakerStats) -> bool:
        """Whether the half-open episode has lasted ``half_open_timeout`` without a decision."""
        if self.half_open_timeout is None or stats.half_open_since is None:
            return False
        return stats.now - stats.half_open_since >= self.half_open_timeout

    # ------------------------------------------------------------------ loading

    @classmethod
    def from_file(
        cls, path: str | os.PathLike[str], *, section: str | None = None
    ) -> BreakerPolicy:
        """Load a policy from a ``.json`` or ``.toml`` file.

        Args:
            path: the file.
            section: dotted path of the table holding the policy (``"tool.breaker_fsm"``
                in a ``pyproject.toml``); the whole document when ``None``.

        Raises:
            PolicyFileError: the file is missing, unreadable, malformed or of an unknown kind.
            pydantic.ValidationError: the values are invalid (titled with the file's name).
        """
        data, title = read_policy_file(path, section)
        try:
            return validate_titled(cls, data, title)
        except ValidationError as exc:
            if section is None and (table := guess_section(exc)) is not None:
                exc.add_note(f"hint: is the policy in a table? Pass section={table!r}")
            raise

    @classmethod
    def from_env(
        cls, prefix: str = "BREAKER_", environ: Mapping[str, str] | None = None
    ) -> BreakerPolicy:
        """Load a policy from environment variables such as ``BREAKER_FAILURE_THRESHOLD=3``.

        Every variable that starts with ``prefix`` names a field (case-insensitive); an
        unknown one is an error. Values are JSON where they parse as JSON (numbers,
        ``{"kind": "count", "size": 100}``, lists), else plain strings; exception lists may
        also be comma-separated names, durations ISO 8601 (``PT30S``), and ``enforce``
        ``true``/``false``, ``1``/``0``, ``yes``/``no`` or ``on``/``off`` (any case). A
        field that may be ``None`` is set to it by ``none``, ``null`` (any case) or an empty
        value.

        Raises:
            pydantic.ValidationError: a value is invalid, or a variable names no field; each
                error's location starts with the variable's name
                (``BREAKER_RESET_TIMEOUT``), not the field's.
        """
        # Hand-written, not pydantic-settings: the core depends on pydantic alone, an extra
        # would make from_env behave differently with and without it, and pydantic-settings
        # names the field in its errors, not the variable (pydantic-settings issue #24).
        data, variables, title = read_policy_env(cls, prefix, environ)
        return validate_titled(cls, data, title, variables)
