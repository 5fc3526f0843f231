"""``BreakerMetrics``: a frozen snapshot of one breaker's counters."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["BreakerMetrics"]


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
    """Sinks (audit and call sinks) and ``is_failure``/``is_failure_exception`` predicates
    that raised, lifetime: each one is logged, and the call goes on."""
    store_errors: int = 0
    """Round trips to the shared store (``store=``) that failed or timed out, lifetime."""
    degraded: bool = False
    """Running on local state because the shared store did not answer."""
    shadow_rejected_count: int = 0
    """Shadow mode (``enforce=False``): calls an enforcing breaker would have refused (they
    ran, unrecorded, as an enforcing breaker would never have seen them)."""
    due: str | None = None
    """The transition the next call makes first, when the clock already says so:
    ``"attempt_reset"`` (open, its duration elapsed) or ``"retrip"`` (a half-open episode
    past ``half_open_timeout``). A breaker runs no timers: ``state`` changes on that call."""
    live: bool = field(default=False, compare=False)
    """A shared breaker whose mirror follows every fleet transition (the store pushes
    them), so that its calls decide on it; while not live each call asks the store first.
    The state of a connection, not of the breaker: snapshots compare equal without it."""
