"""A small reference model of a circuit breaker, written from the rules the README states.

It is an oracle for the stateful test, so it is written for obviousness, not speed: the
windows are plain lists scanned naively, every rule is spelled out once, and nothing is
shared with ``breaker_fsm`` except the policy object it reads its numbers from.

Readings of the spec this model commits to (the report lists them):

* A call is judged when it completes, at the clock reading then: a time window files it
  under the second it ended in, and it is slow when ``ended - started > slow_call_duration``.
* The trip rules are evaluated after each outcome that enters the window (never on a
  neutral outcome, a clock advance or a ``metrics()`` read).
* The consecutive-failure streak runs across states, as pybreaker's and circuitbreaker's
  counters do: a failed trial call extends it, a successful one ends it, it stays readable
  while open, and entering ``closed`` clears it.
* The window is the ``closed`` state's measurement: it stays frozen while open (it shows
  what tripped the breaker) and entering ``half_open`` or ``closed`` starts it afresh
  (resilience4j's half-open state measures anew).
* Lifetime totals are decided at admission: a call admitted in a recording state is counted
  when it completes even if a transition happened meanwhile (it only stops counting
  *against the new state*); a call admitted while ``disabled`` is never counted.
* An ``is_failure`` predicate that raises gives no verdict: the call is neutral.
* A Retry-After hint from ``is_failure`` is a lower bound on the open episode it causes
  (capped by ``max_reset_timeout``); it never shortens the episode.
"""

from __future__ import annotations

import dataclasses
import math
import random
from typing import Any

from breaker_fsm import BreakerPolicy, CountWindow

__all__ = [
    "CLOSED",
    "DISABLED",
    "FORCED_OPEN",
    "HALF_OPEN",
    "MOVES",
    "OPEN",
    "REJECTED",
    "UNRECORDED",
    "NaiveCountWindow",
    "NaiveTimeWindow",
    "ReferenceBreaker",
    "Ticket",
]

CLOSED, OPEN, HALF_OPEN, FORCED_OPEN, DISABLED = (
    "closed",
    "open",
    "half_open",
    "forced_open",
    "disabled",
)

#: (event, source) -> target, copied from the README's transition table (not from the machine).
MOVES: dict[tuple[str, str], str] = {
    ("trip", CLOSED): OPEN,
    ("attempt_reset", OPEN): HALF_OPEN,
    ("recover", HALF_OPEN): CLOSED,
    ("retrip", HALF_OPEN): OPEN,
    **{("force_open", s): FORCED_OPEN for s in (CLOSED, OPEN, HALF_OPEN)},
    **{("disable", s): DISABLED for s in (CLOSED, OPEN, HALF_OPEN)},
    **{("reset", s): CLOSED for s in (CLOSED, OPEN, HALF_OPEN, FORCED_OPEN, DISABLED)},
}


# --------------------------------------------------------------------------- windows


class NaiveCountWindow:
    """The last ``size`` outcomes, as a plain list."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.outcomes: list[tuple[bool, bool]] = []  # (failed, slow)

    def add(self, failed: bool, slow: bool, now: float) -> None:
        """Append one outcome and keep only the last ``size``."""
        self.outcomes = [*self.outcomes, (failed, slow)][-self.size :]

    def totals(self, now: float) -> tuple[int, int, int]:
        """``(calls, failures, slow)``, counted by scanning the list."""
        calls = len(self.outcomes)
        failures = sum(1 for failed, _ in self.outcomes if failed)
        slow = sum(1 for _, is_slow in self.outcomes if is_slow)
        return calls, failures, slow

    def clear(self) -> None:
        """Forget everything."""
        self.outcomes = []


class NaiveTimeWindow:
    """Every outcome with its time; the window is the last ``seconds`` whole seconds.

    An outcome at time ``t`` is in bucket ``floor(t)``; at time ``now`` the window holds
    the buckets ``b`` with ``b > floor(now) - seconds`` (the current second and the
    ``seconds - 1`` before it).
    """

    def __init__(self, seconds: int) -> None:
        self.seconds = seconds
        self.entries: list[tuple[float, bool, bool]] = []  # (t, failed, slow)

    def add(self, failed: bool, slow: bool, now: float) -> None:
        """Remember one outcome at time ``now``."""
        self.entries.append((now, failed, slow))

    def totals(self, now: float) -> tuple[int, int, int]:
        """``(calls, failures, slow)`` of the entries whose bucket is still in the window."""
        oldest = math.floor(now) - self.seconds
        live = [e for e in self.entries if math.floor(e[0]) > oldest]
        return len(live), sum(1 for e in live if e[1]), sum(1 for e in live if e[2])

    def clear(self) -> None:
        """Forget everything."""
        self.entries = []


# --------------------------------------------------------------------------- the breaker


@dataclasses.dataclass(frozen=True)
class Ticket:
    """An admitted call: the episode it was admitted in."""

    episode: int


#: ``admit`` results for a refused call and for a call that runs unrecorded (disabled).
REJECTED = "rejected"
UNRECORDED = "unrecorded"


class ReferenceBreaker:
    """What a ``CircuitBreaker`` with ``policy`` should do, step by step.

    ``rng`` must be seeded like the breaker's: one ``uniform(-j, j)`` draw per open episode,
    on ``trip`` and ``retrip`` only, and only when ``reset_timeout_jitter > 0``.
    """

    def __init__(self, policy: BreakerPolicy, rng: random.Random) -> None:
        self.policy = policy
        self.rng = rng
        self.state = CLOSED
        self.episode = 0  # bumped by every transition
        self.streak = 0
        self.window: NaiveCountWindow | NaiveTimeWindow | None = None
        if isinstance(policy.window, CountWindow):
            self.window = NaiveCountWindow(policy.window.size)
        elif policy.window is not None:
            self.window = NaiveTimeWindow(policy.window.seconds)
        self.trial_ok = 0
        self.trial_failed = 0
        self.permits = 0
        self.opened_at = 0.0
        self.open_duration = policy.reset_timeout
        self.open_episodes = 0  # n of the current run of open episodes (0 after closing)
        self.half_open_since = 0.0
        # lifetime
        self.ok = 0
        self.failed = 0
        self.neutral = 0
        self.rejected = 0
        self.slow = 0
        self.predicate_errors = 0
        # audit trail: (event, source, target, monotonic), and the rules each trip had
        self.trail: list[tuple[str, str, str, float]] = []
        self.trip_rules: list[list[str]] = []

    # ------------------------------------------------------------------ rules

    @property
    def minimum_calls(self) -> int:
        """``minimum_calls``, capped at a count window's size."""
        if isinstance(self.policy.window, CountWindow):
            return min(self.policy.minimum_calls, self.policy.window.size)
        return self.policy.minimum_calls

    def window_totals(self, now: float) -> tuple[int, int, int]:
        """``(calls, failures, slow)`` in the window at ``now`` (zeros without one)."""
        return (0, 0, 0) if self.window is None else self.window.totals(now)

    def firing_rules(self, now: float) -> list[str]:
        """The active trip rules that fire at ``now`` (thresholds inclusive), by name."""
        p = self.policy
        rules = []
        if p.failure_threshold is not None and self.streak >= p.failure_threshold:
            rules.append("consecutive")
        calls, failures, slow = self.window_totals(now)
        if self.window is not None and calls > 0 and calls >= self.minimum_calls:
            if failures / calls >= p.failure_rate_threshold:
                rules.append("failure rate")
            if p.slow_call_duration is not None and slow / calls >= p.slow_call_rate_threshold:
                rules.append("slow-call rate")
        return rules

    def trip_rule_fires(self, now: float) -> bool:
        """Whether any active trip rule fires at ``now``."""
        return bool(self.firing_rules(now))

    def open_elapsed(self, now: float) -> bool:
        """The open duration has elapsed (``now - start >= duration``)."""
        return self.state == OPEN and now - self.opened_at >= self.open_duration

    def half_open_timed_out(self, now: float) -> bool:
        """The half-open episode has lasted ``half_open_timeout`` without a decision."""
        timeout = self.policy.half_open_timeout
        return (
            self.state == HALF_OPEN
            and timeout is not None
            and now - self.half_open_since >= timeout
        )

    def next_open_duration(self, hint: float | None) -> float:
        """Length of the next open episode: backoff, ceiling, jitter, then any hint."""
        p = self.policy
        n = self.open_episodes
        duration = p.reset_timeout * p.reset_timeout_multiplier ** (n - 1)
        if p.max_reset_timeout is not None:
            duration = min(duration, p.max_reset_timeout)
        if p.reset_timeout_jitter > 0:
            jitter = p.reset_timeout_jitter
            duration = duration * (1 + self.rng.uniform(-jitter, jitter))
        if hint is not None:
            floor = hint if p.max_reset_timeout is None else min(hint, p.max_reset_timeout)
            duration = max(duration, floor)
        return duration

    # ------------------------------------------------------------------ transitions

    def transition(self, event: str, now: float, hint: float | None = None) -> None:
        """Make the (legal) transition ``event`` at time ``now``."""
        target = MOVES[(event, self.state)]
        self.trail.append((event, self.state, target, now))
        self.trip_rules.append(self.firing_rules(now) if event == "trip" else [])
        self.episode += 1
        self.permits = self.trial_ok = self.trial_failed = 0
        if target == OPEN:
            self.open_episodes = 1 if event == "trip" else self.open_episodes + 1
            self.open_duration = self.next_open_duration(hint)
            self.opened_at = now
        elif target == HALF_OPEN:
            self.half_open_since = now
            if self.window is not None:
                self.window.clear()
        elif target == CLOSED:
            self.streak = 0
            self.open_episodes = 0
            self.open_duration = self.policy.reset_timeout
            if self.window is not None:
                self.window.clear()
        self.state = target

    def guard_holds(self, event: str, now: float) -> bool:
        """The guard of ``event`` on the current counters (operator events have none)."""
        if event == "trip":
            return self.trip_rule_fires(now)
        if event == "attempt_reset":
            return self.open_elapsed(now)
        if event == "recover":
            return self.trial_ok >= self.policy.success_threshold
        if event == "retrip":
            return self.trial_failed > 0 or self.half_open_timed_out(now)
        return True

    def send(self, event: str, now: float) -> bool:
        """An event sent by name: make it and return True, or return False if illegal."""
        if (event, self.state) not in MOVES or not self.guard_holds(event, now):
            return False
        self.transition(event, now)
        return True

    # ------------------------------------------------------------------ calls

    def admit(self, now: float) -> Ticket | str:
        """A call arrives at ``now``: a ``Ticket``, ``REJECTED`` or ``UNRECORDED``."""
        while True:  # the lazy transitions, each checked on the state the last one left
            if self.open_elapsed(now):
                self.transition("attempt_reset", now)
            elif self.half_open_timed_out(now):
                self.transition("retrip", now)
            else:
                break
        if self.state == CLOSED:
            return Ticket(self.episode)
        if self.state == DISABLED:
            return UNRECORDED
        if self.state == HALF_OPEN and self.permits < self.policy.half_open_max_calls:
            self.permits += 1
            return Ticket(self.episode)
        self.rejected += 1
        return REJECTED

    def retry_after(self, now: float) -> float | None:
        """What a refusal (or ``metrics()``) reports as seconds until a trial may run."""
        if self.state != OPEN:
            return None
        return max(0.0, self.open_duration - (now - self.opened_at))

    def classify_exception(self, exc_type: type[BaseException]) -> str:
        """``"neutral"``, ``"failed"`` or ``"ok"`` for an operation that raised ``exc_type``."""
        p = self.policy
        if not issubclass(exc_type, Exception) or issubclass(exc_type, p.ignore_exceptions):
            return "neutral"
        if issubclass(exc_type, p.record_exceptions):
            return "failed"
        return "ok"

    def count_lifetime(self, outcome: str, slow: bool) -> None:
        """Add one recorded call to the lifetime totals."""
        if outcome == "ok":
            self.ok += 1
        elif outcome == "failed":
            self.failed += 1
        else:
            self.neutral += 1
        self.slow += slow

    def complete(
        self,
        ticket: Ticket | str,
        outcome: str,
        started: float,
        ended: float,
        hint: float | None = None,
    ) -> None:
        """An admitted call ended at ``ended`` with ``outcome`` (ok, failed, neutral)."""
        if not isinstance(ticket, Ticket):
            return  # disabled: ran, recorded nothing
        duration = self.policy.slow_call_duration
        slow = outcome != "neutral" and duration is not None and ended - started > duration
        self.count_lifetime(outcome, slow)
        if ticket.episode != self.episode:
            return  # started before a transition: not counted against the new state
        if self.state == CLOSED:
            if outcome == "neutral":
                return
            failed = outcome == "failed"
            self.streak = self.streak + 1 if failed else 0
            if self.window is not None:
                self.window.add(failed, slow, ended)
            if self.trip_rule_fires(ended):
                self.transition("trip", ended, hint if failed else None)
        elif self.state == HALF_OPEN:
            if outcome == "neutral":
                self.permits -= 1
            elif outcome == "failed":
                self.trial_failed += 1
                self.streak += 1
                self.transition("retrip", ended, hint)
            else:
                self.trial_ok += 1
                self.streak = 0
                if self.trial_ok >= self.policy.success_threshold:
                    self.transition("recover", ended)

    # ------------------------------------------------------------------ observation

    def metrics(self, now: float) -> dict[str, Any]:
        """The ``breaker.metrics()`` fields this model predicts, at ``now``."""
        calls, failures, slow = self.window_totals(now)
        rated = self.window is not None and calls > 0 and calls >= self.minimum_calls
        return {
            "state": self.state,
            "failure_count": self.streak,
            "success_count": self.ok,
            "error_count": self.failed,
            "ignored_count": self.neutral,
            "total_requests": self.ok + self.failed + self.neutral,
            "rejected_count": self.rejected,
            "slow_call_count": self.slow,
            "error_rate": self.failed / (self.ok + self.failed) if self.ok + self.failed else 0.0,
            "window_calls": calls,
            "failure_rate": failures / calls if rated else None,
            "slow_call_rate": (
                slow / calls if rated and self.policy.slow_call_duration is not None else None
            ),
            "transitions": len(self.trail),
        }
