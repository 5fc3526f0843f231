"""A policy in words: ``explain`` says when a policy trips and recovers, and warns of mistakes.

Part of :mod:`breaker_fsm.replay`, which re-exports the public names.
"""

from __future__ import annotations

from dataclasses import dataclass

from ._policy import BreakerPolicy, CountWindow


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
