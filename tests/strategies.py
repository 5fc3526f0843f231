"""Hypothesis strategies for valid ``BreakerPolicy`` values and the calls a test makes.

Every policy field is covered, with small sizes and short, binary-exact durations, so that
trips, recoveries, window expiry, backoff and time-outs actually happen within a few dozen
steps of a stateful test.
"""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from typing import Any

from hypothesis import strategies as st

from breaker_fsm import BreakerPolicy, CountWindow, TimeWindow

__all__ = [
    "EVENTS",
    "OUTCOMES",
    "CallSpec",
    "ClientError",
    "Hint",
    "NotFoundError",
    "ServiceError",
    "call_specs",
    "policies",
    "policy_kwargs",
]


# --------------------------------------------------------------------------- exceptions


class ServiceError(Exception):
    """The dependency failed: recorded by every policy this module draws."""


class ClientError(Exception):
    """The caller's fault (a 4xx): recorded, ignored or a success, depending on the policy."""


class NotFoundError(ClientError):
    """A kind of ``ClientError``: exercises subclass matching and 'ignore wins over record'."""


@dataclasses.dataclass(frozen=True)
class Hint:
    """A return value that the test's ``is_failure`` judges a failure with a Retry-After."""

    seconds: float


# --------------------------------------------------------------------------- policies

#: Durations that are exact in binary, so boundaries (``now - start >= d``) are hit exactly.
_SHORT = st.sampled_from([0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 5.0])

_RECORD = st.sampled_from(
    [(Exception,), (ServiceError,), (ServiceError, ClientError), (ServiceError, ValueError)]
)
_IGNORE = st.sampled_from([(), (), (NotFoundError,), (ClientError,), (KeyError,)])

_RATE = st.one_of(
    st.sampled_from([0.2, 0.25, 1 / 3, 0.5, 0.6, 2 / 3, 0.75, 1.0]),
    st.floats(min_value=0.05, max_value=1.0),
)


def _maybe_timedelta(seconds: float) -> st.SearchStrategy[float | timedelta]:
    """The same duration as a float or as a ``timedelta`` (both are accepted)."""
    return st.sampled_from([seconds, timedelta(seconds=seconds)])


@st.composite
def policy_kwargs(draw: st.DrawFn) -> dict[str, Any]:
    """Keyword arguments of a valid ``BreakerPolicy``, every field drawn."""
    window = draw(
        st.one_of(
            st.none(),
            st.builds(CountWindow, size=st.integers(1, 8)),
            st.builds(TimeWindow, seconds=st.integers(1, 6)),
        )
    )
    # With no window the consecutive rule is the only rule, so it must stay on.
    threshold = draw(st.integers(1, 5)) if window is None else draw(st.none() | st.integers(1, 5))
    reset_timeout = draw(_SHORT)
    success_threshold = draw(st.sampled_from([1, 1, 2, 3]))
    kwargs: dict[str, Any] = {
        "failure_threshold": threshold,
        "reset_timeout": draw(_maybe_timedelta(reset_timeout)),
        "success_threshold": success_threshold,
        "half_open_max_calls": success_threshold + draw(st.sampled_from([0, 0, 1, 2])),
        "record_exceptions": draw(_RECORD),
        "ignore_exceptions": draw(_IGNORE),
        "window": window,
        "failure_rate_threshold": draw(_RATE),
        "minimum_calls": draw(st.integers(1, 8)),
        "reset_timeout_multiplier": draw(st.sampled_from([1.0, 1.0, 1.5, 2.0, 3.0])),
        "max_reset_timeout": draw(
            st.none() | st.sampled_from([1.0, 1.0, 2.0, 4.0]).map(lambda f: reset_timeout * f)
        ),
        "reset_timeout_jitter": draw(
            st.sampled_from([0.0, 0.0, 0.1, 0.5, 0.9]) | st.floats(0.0, 0.99)
        ),
        "half_open_timeout": draw(st.none() | _SHORT),
    }
    if window is not None and draw(st.booleans()):
        kwargs["slow_call_duration"] = draw(st.sampled_from([0.25, 0.5, 1.0, 2.0]))
        kwargs["slow_call_rate_threshold"] = draw(_RATE)
    return kwargs


def policies() -> st.SearchStrategy[BreakerPolicy]:
    """Valid policies covering every field; small enough that every rule can fire."""
    return policy_kwargs().map(lambda kw: BreakerPolicy(**kw))


# --------------------------------------------------------------------------- calls

#: What an operation does. Failures are listed twice so that breakers trip often, and so is
#: a result with a Retry-After hint (a failure only when the breaker has ``is_failure``).
OUTCOMES = (
    "service_error",
    "ok",
    "service_error",
    "ok",
    "client_error",
    "not_found",
    "value_error",
    "base_exception",
    "bad_result",
    "hint_result",
    "hint_result",
    "predicate_raises",
)

#: Every event of the machine, plus one it does not know. ``force_open`` and ``disable``
#: hold the breaker until a ``reset``, so ``reset`` is listed twice to keep stories moving.
EVENTS = (
    "reset",
    "force_open",
    "disable",
    "reset",
    "trip",
    "attempt_reset",
    "recover",
    "retrip",
    "no_such_event",
)


@dataclasses.dataclass(frozen=True)
class CallSpec:
    """One call through the breaker: what the operation does, and how long it takes.

    ``inner`` is something the operation itself does before finishing: a nested call
    through the same breaker, or an operator event sent while the call is in flight.
    """

    outcome: str
    duration: float = 0.0
    is_async: bool = False
    hint: float = 1.0
    inner: CallSpec | str | None = None


def call_specs(*, nested: bool = False, slow: bool = False) -> st.SearchStrategy[CallSpec]:
    """Calls with every outcome; ``slow`` draws durations; ``nested`` adds an inner action."""
    durations = st.sampled_from([0.0, 0.25, 0.5, 0.75, 1.0, 2.5]) if slow else st.just(0.0)
    leaf = st.builds(
        CallSpec,
        outcome=st.sampled_from(OUTCOMES),
        duration=durations,
        is_async=st.booleans(),
        hint=st.sampled_from([0.5, 4.0, 50.0]),
    )
    if not nested:
        return leaf
    inner_leaf = st.builds(
        CallSpec, outcome=st.sampled_from(OUTCOMES), hint=st.sampled_from([0.5, 4.0])
    )
    # Two levels of nesting: three calls in flight at once use up a few trial permits.
    inner_call = st.builds(
        CallSpec,
        outcome=st.sampled_from(OUTCOMES),
        hint=st.sampled_from([0.5, 4.0]),
        inner=st.none() | inner_leaf,
    )
    # Mostly nested calls: an operator event in flight ends most stories (only reset leaves).
    inner = st.one_of(
        inner_call,
        inner_call,
        inner_call,
        st.sampled_from(["reset", "reset", "force_open", "disable"]),
    )
    return st.builds(
        CallSpec,
        outcome=st.sampled_from(OUTCOMES),
        duration=durations,
        is_async=st.booleans(),
        hint=st.sampled_from([0.5, 4.0, 50.0]),
        inner=inner,
    )
