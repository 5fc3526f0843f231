"""The shared-state store interface: what a breaker needs from a fleet-wide store.

A :class:`~breaker_fsm.CircuitBreaker` created with ``store=`` keeps its state, open
timing, half-open permits and window counters in the store instead of in memory, so that
several processes (on several hosts) share one breaker. Each decision that reads and
writes shared state is one atomic operation of the store: record an outcome (and trip,
recover or retrip), acquire an admission (move open to half_open, take a half-open
permit, retrip a timed-out episode), or apply an operator event. Whoever's operation
performs a transition is the one process that records it in its audit trail.

The breaker keeps a local mirror of the shared state and makes no round trip while the
mirror alone decides (closed admissions, rejections while open). Any exception a store
operation raises makes the breaker degrade to local state (see :mod:`breaker_fsm.redis`).

:class:`breaker_fsm.redis.RedisStore` implements this interface; ``store=None`` (the
default) keeps everything in memory, as before.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple, Protocol, runtime_checkable

from ._policy import BreakerStats

if TYPE_CHECKING:
    from ._mirror import Mirror, StoreLink
    from ._policy import BreakerPolicy

__all__ = [
    "EVENTS",
    "EVENT_CODES",
    "PushingState",
    "Seed",
    "SharedState",
    "SharedStore",
    "StoreReply",
]

#: Transition events by code, as a store reports them; code 0 means "no transition".
EVENTS: tuple[str, ...] = (
    "",
    "trip",
    "attempt_reset",
    "recover",
    "retrip",
    "force_open",
    "disable",
    "reset",
)
EVENT_CODES: dict[str, int] = {name: code for code, name in enumerate(EVENTS) if name}


class Seed(NamedTuple):
    """The shared state as the caller last saw it, to recreate a store entry that is gone.

    A store whose entry for a breaker is missing (expired, or the server restarted empty)
    recreates it from the seed of the first caller that reaches it, so the shared walk of
    the machine continues where that caller left it instead of restarting from nothing.
    """

    state: int
    """State code (an index into ``STATES``)."""
    gen: int
    """Shared generation (transitions so far)."""
    episode: int
    """Consecutive open episodes (backoff exponent), 0 when closed."""
    open_duration: float
    """The current (or next) open duration, seconds."""
    remaining: float
    """Seconds left in the open episode (0 unless open)."""
    epoch: int = 0
    """The store entry the caller mirrors (0: none yet). An entry of this epoch whose
    generation is behind the seed's lost transitions (a failover): it is re-seeded."""


class StoreReply(NamedTuple):
    """The shared state after one store operation, and what the operation did."""

    state: int
    """State code after the operation."""
    gen: int
    """Shared generation after the operation; every transition adds one."""
    epoch: int
    """Identifies the store entry: it changes when the entry was recreated."""
    event: int
    """Code of the transition this operation performed (``EVENTS``), 0 for none."""
    source: int
    """State code before that transition (the current state when there was none)."""
    ok: int
    """``acquire``: 1 admitted, 0 refused. ``operator``: 1 performed, 0 not legal from
    the state, 2 its guard did not hold. ``record``: 1 counted, 0 stale (ignored)."""
    streak: int
    """Consecutive failures (those that justified the transition, if one was made)."""
    window_calls: int
    window_failures: int
    window_slow: int
    trial_successes: int
    trial_failures: int
    episode: int
    """Consecutive open episodes."""
    open_duration: float
    """Current (or next) open duration, seconds (backoff and jitter applied)."""
    elapsed: float
    """Seconds since the current state began (open or half_open; 0 otherwise)."""
    justified: float
    """For ``attempt_reset``: how long it had been open; for a timed-out ``retrip``: how
    long it had been half-open. 0 otherwise."""
    fingerprint: int = 0
    """The fingerprint of the policy that last wrote the state (0: unknown)."""

    def evidence(self) -> BreakerStats:
        """The evidence of the transition this reply reports, for the guards and the record.

        Times are relative to when the previous state began: the store measured them.
        """
        opened_at = half_open_since = None
        if EVENTS[self.event] == "attempt_reset":
            opened_at = 0.0
        elif EVENTS[self.event] == "retrip" and not self.trial_failures:
            half_open_since = 0.0  # the half-open episode timed out
        return BreakerStats(
            now=self.justified,
            consecutive_failures=self.streak,
            window_calls=self.window_calls,
            window_failures=self.window_failures,
            window_slow=self.window_slow,
            trial_successes=self.trial_successes,
            trial_failures=self.trial_failures,
            opened_at=opened_at,
            open_duration=self.open_duration,
            half_open_since=half_open_since,
        )


@runtime_checkable
class SharedState(Protocol):
    """One breaker's entry in a shared store: its atomic operations.

    Every method raises (anything) when the store cannot answer in time; the breaker then
    degrades to local state. ``u`` is the open-duration jitter drawn by the breaker, in
    ``[-jitter, +jitter]`` (0 without jitter); ``seed`` recreates a missing entry.
    The ``a``-prefixed twins are the same operations for asyncio code (``acall`` and
    ``asend``), which must not block the event loop.
    """

    retry_interval: float
    """Seconds a degraded breaker waits before it asks the store again."""
    sync_interval: float
    """Seconds a breaker in ``forced_open`` or ``disabled`` trusts its mirror before it
    asks the store again (so an operator's ``reset`` elsewhere reaches it); infinite
    when the store pushes every transition."""

    def record(
        self, gen: int, outcome: int, u: float, hint: float | None, seed: Seed
    ) -> StoreReply | None:
        """Count one outcome of a call admitted at generation ``gen``.

        Trips, recovers or retrips when the outcome makes that due. ``outcome``: -1
        neutral, else FAILED|SLOW flags. ``hint`` (seconds) lengthens the open episode if
        this outcome opens it. ``None`` (the common case, cheapest to send) means: counted,
        and the state is closed at generation ``gen`` with no streak, as the caller saw it.
        """
        ...

    def acquire(self, u: float, seed: Seed) -> StoreReply:
        """Admit a call that the mirror cannot admit alone.

        Open past its deadline, half_open, an override due for a re-check.
        """
        ...

    def operator(self, event: int, u: float, seed: Seed) -> StoreReply:
        """Apply operator event code ``event`` if it is legal and its guard holds."""
        ...

    async def arecord(
        self, gen: int, outcome: int, u: float, hint: float | None, seed: Seed
    ) -> StoreReply | None:
        """:meth:`record` for asyncio code."""
        ...

    async def aacquire(self, u: float, seed: Seed) -> StoreReply:
        """:meth:`acquire` for asyncio code."""
        ...

    async def aoperator(self, event: int, u: float, seed: Seed) -> StoreReply:
        """:meth:`operator` for asyncio code."""
        ...


@runtime_checkable
class PushingState(SharedState, Protocol):
    """A :class:`SharedState` whose store pushes every transition to the breakers bound to it.

    A breaker on an entry that is not one trusts its mirror and learns the fleet's
    transitions from its own replies only (as ``RedisStore(push=False)`` does).
    """

    fingerprint: int
    """A digest of the policy this entry decides with, kept in the shared state: a reply
    carrying another one means another member shares the breaker under another policy."""

    def follow(self, mirror: Mirror) -> None:
        """Keep ``mirror`` current with every transition another member makes.

        The store calls ``mirror._pushed(reply)`` with each, and keeps
        ``mirror._link.live`` true exactly while nothing can have been missed. A store that
        cannot push sets it true once.
        """
        ...

    def sync(self, seed: Seed) -> StoreReply:
        """The state, after re-creating it from ``seed`` if the store lost it.

        Lost: missing, or behind ``seed`` in the same entry epoch (a failover dropped
        transitions that this member had mirrored). Sent by the push thread when a re-read
        or a push shows the store behind the mirror, so that no member goes backwards.
        """
        ...

    def push_token(self) -> int | None:
        """Taken before a round trip that reads the state (see :meth:`confirm_push`)."""
        ...

    def confirm_push(self, link: StoreLink, token: int | None) -> None:
        """The state was read after :meth:`push_token` gave ``token``: ``link`` is live.

        Unless a push can have been missed since.
        """
        ...


@runtime_checkable
class SharedStore(Protocol):
    """A store of breaker state shared by a fleet (``CircuitBreaker(..., store=...)``)."""

    def bind(self, name: str, policy: BreakerPolicy) -> SharedState:
        """The entry of breaker ``name``, deciding with ``policy``."""
        ...
