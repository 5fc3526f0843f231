"""The mirror of a fleet's shared state, kept by a :class:`~breaker_fsm._shared.SharedBreaker`.

A shared breaker keeps the store's state in the attributes it inherits (state, gen = seq =
the shared generation, open timing, streak, trial counts) and follows the store's replies
here: a reply with a transition goes through the machine and the audit trail like a local
one (``_store_transition``); any other reply moves the mirror without one (``_adopt``), and
so does a transition another member made, pushed by the store (``_pushed``): only the
process whose script made a transition records it.
While the store does not answer, the breaker runs on its local state: the transitions it
makes alone number from ``LOCAL_GEN`` up, so that they are never mistaken for the shared
walk's generations, and their records say so.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import math
from typing import TYPE_CHECKING, Any, cast

from ._audit import Transition, shared_life
from ._breaker import CircuitBreaker
from ._machine import STATES
from ._metrics import BreakerMetrics
from ._policy import BreakerStats
from ._store import EVENTS, Seed
from ._transitions import CLOSED, HALF_OPEN, OPEN, Extra, Stats

if TYPE_CHECKING:
    from ._store import PushingState, SharedState, StoreReply

__all__ = ["LOCAL_GEN", "Mirror", "StoreLink"]

_log = logging.getLogger("breaker_fsm")

_RESYNCED = "breaker %r: shared store answers again; back on shared state"
LOCAL_GEN = 1 << 52  # generations of transitions made locally (degraded)
_LOCAL_REASON = "local (shared store unavailable)"
_NO_WINDOW = (0, 0, 0)
_KEPT = 8  # own pushes kept for a round trip that fails late; lost replies owed at most


class Mirror(CircuitBreaker):
    """A breaker that mirrors a store's state (the base of ``SharedBreaker``)."""

    __slots__ = ("_audit_shared", "_link")

    _reclaims_lost_permits = False  # its half-open permits are the store's
    _link: StoreLink
    #: The shared numbering its records belong to: that of the store entry's incarnation
    #: it follows (a store restarted empty recreates the entry in a new one).
    _audit_shared: bool | str

    def metrics(self) -> BreakerMetrics:
        """A consistent snapshot of the counters; the window is the shared one."""
        link = self._link
        return dataclasses.replace(
            super().metrics(), store_errors=link.errors, degraded=link.degraded, live=link.live
        )

    def _window_totals(self, now: float) -> tuple[int, int, int]:
        """The shared window as last mirrored, or the local one while degraded.

        A time window's figures are those of the store's last reply, and read empty once
        a whole window has passed since (every outcome in it has expired); in between they
        are not aged (the mirror holds totals, not buckets).
        """
        link = self._link
        if link.degraded:
            return super()._window_totals(now)
        window = self.policy.window
        if (
            window is not None
            and window.kind == "time"
            and math.floor(now) - math.floor(link.window_at) >= window.seconds
        ):
            return (0, 0, 0)
        return cast(tuple[int, int, int], link.window)

    # ------------------------------------------------------------------ the local walk

    def _apply(self, event: str, source: str, target: str, stats: Stats, extra: Extra) -> None:
        """Apply a transition: the store's (mirrored) or a local one made while degraded."""
        if extra.get("shared") is not None:  # made by the store's script
            self._apply_shared(event, source, target, stats, extra)
        else:
            super()._apply(event, source, target, stats, extra)

    def _next_generation(self, gen: int) -> int:
        """Local transitions number from ``LOCAL_GEN`` up: never a shared generation."""
        gen += 1
        return gen if gen >= LOCAL_GEN else gen + LOCAL_GEN

    def _audit_identity(self, reason: str, gen: int) -> tuple[str, int | None]:
        """A local transition's record says so, and belongs to no shared generation."""
        return f"{_LOCAL_REASON}: {reason}", None

    def _recorded_as_mirrored(
        self, link: StoreLink, reply: StoreReply, outcome: int, now: float
    ) -> bool:
        """Count an outcome in the lifetime totals; mirror a reply of the common kind.

        The common kind (closed, same episode, nothing performed) is mirrored right here,
        under the same lock; ``False`` leaves any other reply to :meth:`_on_reply`.
        """
        link.check_policy(reply, self.name)
        with self._lock:
            self._count(outcome)
            if (
                reply.state == CLOSED == self._state
                and not reply.event
                and reply.gen == self._gen
                and reply.epoch == link.epoch
                and not link.degraded
            ):
                self._streak = reply.streak
                link.window, link.window_at = reply[7:10], now
                return True
        return False

    def _store_failed(
        self, link: StoreLink, exc: BaseException, now: float, *, owed: bool = True
    ) -> None:
        """Count a failed round trip; the first of an outage degrades and logs once.

        ``owed``: the round trip could have made a transition, which its push records.
        """
        with self._lock:
            link.errors += 1
            first = not link.degraded
            link.retry_at = now + link.entry.retry_interval  # first: read unlocked with it
            link.degraded = True
            if first:
                self._permits = 0  # this process's own trials, from now on
                if self._window is not None:
                    self._window.clear()
        if first:
            _log.warning(
                "breaker %r: shared store unavailable (%s: %s); running on local state, "
                "retrying every %gs",
                self.name,
                type(exc).__name__,
                exc,
                link.entry.retry_interval,
            )
        if owed:
            self._reply_lost(link)

    def _pushed(self, reply: StoreReply, errors: int | None = None) -> bool:
        """Follow a transition another member made (or the state re-read after a lost push).

        Moves the mirror (a built machine reads the breaker's state) without recording
        anything; a reply older than the mirror is ignored, and so is one behind the shared
        state this mirror last saw, degraded or not (a late push; or a store that lost
        transitions, which the next round trip re-seeds). A degraded breaker takes any
        other as the store's first answer: the shared state wins over the local one. So
        does another state at the mirror's own generation: a fork (:meth:`_forked`).

        ``errors``: a re-read's, the breaker's count of failed round trips when the state
        was read. If one failed since, the read is older than that failure, and may be
        older than what the breaker did on its own after it: it is not taken (``False``),
        and the breaker asks the store before its next call, at its retry time.
        """
        link = self._link
        link.check_policy(reply, self.name)
        seed = link.seed
        if reply.epoch == seed.epoch and reply.gen < seed.gen:
            return True  # never backwards within one entry epoch
        forked = _forked(seed, reply)
        with self._lock:
            if errors is not None and errors != link.errors:
                return False
            resynced = link.degraded
            if resynced:  # the store answered: from now on, its state wins
                link.degraded = False
                link.epoch = -1  # the next full reply is adopted whatever it says
            if reply.epoch < link.epoch or (
                reply.epoch == link.epoch and reply.gen <= self._gen and not forked
            ):
                return True
            self._adopt(link, reply, self._clock.monotonic(), moved=reply.event != 0)
        if resynced:
            _log.info(_RESYNCED, self.name)
        if forked:
            self._forked(reply, seed)
        return True

    def _reread(self, reply: StoreReply | None, errors: int | None = None) -> bool:
        """Follow the state re-read after a lost push (``None``: the store has no entry).

        A store behind the shared state this mirror last saw, in the same entry epoch (a
        failover lost transitions), or without an entry while the mirror (or, degraded,
        the local state: :meth:`_seed`) is not closed, is re-seeded from the mirror, as
        any round trip would do (:meth:`_reseed`): no member adopts the older state, and
        the members that never saw the lost transitions get them back by push. ``False``
        when that failed, or when a round trip failed since the read (``errors``, as for
        :meth:`_pushed`): the mirror is not current, and its breaker asks before each call.
        """
        link = self._link
        seed = link.seed
        if reply is None:
            closed = self._seed(link, self._clock.monotonic()).state == CLOSED
            return closed or self._reseed(link)
        if reply.epoch == seed.epoch and reply.gen < seed.gen:
            return self._reseed(link)
        return self._pushed(reply, errors)

    def _reseed(self, link: StoreLink) -> bool:
        """Put back the state this mirror saw (one round trip, push thread); whether done."""
        now = self._clock.monotonic()
        seed = self._seed(link, now)
        try:
            reply = cast("PushingState", link.entry).sync(seed)
        except Exception as exc:
            self._store_failed(link, exc, now, owed=False)
            return False
        if reply.epoch != seed.epoch:
            _log.warning(
                "breaker %r: the shared store had lost transitions this member saw (a "
                "failover, or a restart); put back its state at generation %d (%s)",
                self.name,
                seed.gen,
                STATES[seed.state],
            )
        self._on_reply(link, reply, now)
        return True

    def _on_reply(
        self, link: StoreLink, reply: StoreReply, now: float, reason: str | None = None
    ) -> None:
        """Mirror a store's reply; record the transition its script made, if any."""
        link.check_policy(reply, self.name)
        seed = link.seed
        forked = _forked(seed, reply)
        if link.degraded:
            self._resynced(link)
        if reply.event:
            self._store_transition(link, reply, reason)
            if forked:
                self._forked(reply, seed)
            return
        with self._lock:
            if reply.epoch == link.epoch:
                if reply.gen < self._gen:
                    return  # overtaken by a newer reply
                if reply.gen == self._gen and reply.state == self._state:
                    self._streak = reply.streak  # same episode: refresh the counters
                    link.window, link.window_at = reply[7:10], now
                    self._trial_ok, self._trial_fail = reply.trial_successes, reply.trial_failures
                    if reply.state == OPEN:  # asked a little early: the server's timing
                        self._opened_at = now - reply.elapsed
                        link.deadline = self._opened_at + self._open_duration
                    return
            self._adopt(link, reply, now, moved=False)
        if forked:
            self._forked(reply, seed)

    def _forked(self, reply: StoreReply, seed: Seed) -> None:
        """The store holds another state at the mirror's generation: say so (it was adopted).

        One entry's generation names one state, unless the store lost a transition this
        member made or mirrored (a failover) and another member, which had not seen it,
        made another one at that generation before anyone put it back (a re-read or a
        round trip re-seeds a store only when it is *behind* the mirror). The store's state
        is the fleet's from then on; both transitions are in the members' trails, where
        ``verify`` reports them as a fork (``BreakerSummary.forks``).
        """
        _log.warning(
            "breaker %r: the shared store holds %s at generation %d, where this member "
            "mirrored %s: the store lost a transition (a failover) and another member made "
            "another one at that generation; following the store's (verify reports the "
            "fork in the merged trails)",
            self.name,
            STATES[reply.state if reply.gen == seed.gen else reply.source],
            seed.gen,
            STATES[seed.state],
        )

    def _resynced(self, link: StoreLink) -> None:
        """The store answers again: what it says from now on wins over the local state."""
        with self._lock:
            link.degraded = False
            link.epoch = -1  # the next full reply is adopted whatever it says
        _log.info(_RESYNCED, self.name)

    def _store_transition(
        self, link: StoreLink, reply: StoreReply, reason: str | None, *, lost: bool = False
    ) -> None:
        """Record (and mirror) a transition this process's store operation performed.

        It goes through the machine like a local one, from the shared source state, with
        ``shared=reply`` so that :meth:`_apply` takes the store's figures. A reply that a
        newer one has overtaken is only recorded; each transition is recorded once
        (``lost``: from its push, its round trip's reply lost).
        """
        event = EVENTS[reply.event]
        source, target = STATES[reply.source], STATES[reply.state]
        stats = reply.evidence()
        lapsed = event == "retrip" and not reply.trial_failures
        if reason is None and lapsed and self.policy.half_open_timeout is None:
            reason = (  # the store's trial lease lapsed (breaker_fsm._lua.trial_lease)
                f"no trial reported for {reply.justified:.3g}s, every permit out: "
                f"their holders are taken for lost; open for {reply.open_duration:.3g}s"
            )
        extra: dict[str, Any] = {"shared": reply, "reason": reason}
        with self._tlock:
            recorded = link.recorded
            if recorded is not None and (reply.epoch, reply.gen) in recorded:
                return  # recorded from its push already: its reply was taken for lost
            if lost and reply.epoch < link.epoch:
                extra["record_only"] = True  # never roll the mirror back
            elif (reply.epoch != link.epoch or reply.gen > self._gen) and self._dispatch(
                event, stats, source, **extra
            ):
                return
            self._apply(event, source, target, stats, extra)

    def _own_pushed(self, reply: StoreReply) -> None:
        """A transition this member's own script made, pushed back to it (push thread).

        The round trip's reply records it, as a rule. But a round trip that ended without
        its reply (a timeout, a cancelled ``acall``) may have run its script all the same:
        while one is owed, the push records the transition in its place. Otherwise the
        push is kept a little while, for a round trip that fails later (its reply lost
        after the server published).
        """
        link = self._link
        with self._tlock:
            if (reply.epoch, reply.gen) in (link.recorded or ()):
                return  # its reply came first (the common case)
            if link.lost:
                link.lost -= 1
                if link.degraded:  # as for any push: the shared state wins
                    self._resynced(link)
                self._store_transition(link, reply, None, lost=True)
                return
            own = link.own
            if own is None:
                own = link.own = collections.deque(maxlen=_KEPT)
            own.append(reply)

    def _reply_lost(self, link: StoreLink) -> None:
        """A round trip ended without its reply: record what its script made, if anything.

        From its push: already kept here, or owed until it comes.
        """
        with self._tlock:
            recorded = link.recorded or ()
            kept, link.own = link.own or (), None
            for reply in kept:
                if (reply.epoch, reply.gen) not in recorded:
                    self._store_transition(link, reply, None, lost=True)
                    return
            link.lost = min(link.lost + 1, _KEPT)

    def _apply_shared(
        self, event: str, source: str, target: str, stats: BreakerStats | None, extra: Any
    ) -> None:
        """:meth:`_apply` for a transition a store's script made: mirror it, record it."""
        reply: StoreReply = extra["shared"]
        if stats is None:  # pragma: no cover - _store_transition always passes them
            stats = reply.evidence()
        link = self._link
        now = self._clock.monotonic()
        with self._lock:
            if not extra.get("record_only") and (
                reply.epoch != link.epoch or reply.gen > self._gen
            ):
                self._adopt(link, reply, now, moved=True)
        recorded = link.recorded
        if recorded is None:
            recorded = link.recorded = collections.deque(maxlen=4 * _KEPT)
        recorded.append((reply.epoch, reply.gen))
        record = Transition.at_wall(
            self._clock.wall(),
            seq=reply.gen,
            breaker=self.name,
            event=event,
            source=source,
            target=target,
            monotonic=now,
            reason=extra.get("reason") or self._reason(event, stats, reply.open_duration),
            counters=stats.as_counters(),
            generation=reply.gen,
            life=shared_life(reply.epoch),
        )
        self._emit(record)

    def _adopt(self, link: StoreLink, reply: StoreReply, now: float, *, moved: bool) -> None:
        """Make the mirror the store's state (under ``_lock``).

        ``moved``: the reply reports a transition, so its counters are those that justified
        it; the new state's own counters start as a transition leaves them.
        """
        state = reply.state
        if reply.epoch != link.epoch:
            self._audit_shared = shared_life(reply.epoch)  # its local records' numbering
        link.epoch = reply.epoch
        self._state = state  # _hot stays False: a shared breaker never takes the fast path
        self._gen = self._seq = reply.gen
        self._permits = 0
        self._open_episodes = reply.episode
        self._open_duration = reply.open_duration
        if moved:
            self._trial_ok = self._trial_fail = 0
        else:
            self._trial_ok, self._trial_fail = reply.trial_successes, reply.trial_failures
        if moved and state == CLOSED:
            self._streak = 0
            link.window = _NO_WINDOW
        elif moved and state == HALF_OPEN:
            self._streak = reply.streak
            link.window = _NO_WINDOW  # the trials are a fresh measurement
        else:
            self._streak = reply.streak
            link.window, link.window_at = reply[7:10], now
        deadline = 0.0
        if state == OPEN:
            self._opened_at = now - reply.elapsed
            deadline = self._opened_at + reply.open_duration
        elif state == HALF_OPEN:
            self._half_open_since = now - reply.elapsed
        link.recheck_at = now + link.entry.sync_interval
        link.deadline = deadline
        link.seed = Seed(state, reply.gen, reply.episode, reply.open_duration, 0.0, reply.epoch)
        if self._window is not None:
            self._window.clear()  # a later outage starts from an empty local window

    def _seed(self, link: StoreLink, now: float) -> Seed:
        """The shared state as last mirrored, to recreate a store entry that is gone.

        A degraded breaker that opened on its own (a local trip or retrip) seeds its local
        open episode instead, at the shared generation and epoch it last mirrored: a store
        that lost the entry (restarted empty) is recreated open, so the fleet does not go
        back to calling a dependency this member saw failing; a store that kept the entry
        (not behind that generation) wins, as ever.
        """
        seed = link.seed
        if link.degraded and self._state == OPEN and self._gen >= LOCAL_GEN:
            remaining = self._open_duration - (now - self._opened_at)
            return seed._replace(
                state=OPEN,
                episode=self._open_episodes,
                open_duration=self._open_duration,
                remaining=max(0.0, remaining),
            )
        if seed.state == OPEN:
            return seed._replace(remaining=max(0.0, link.deadline - now))
        return seed


def _forked(seed: Seed, reply: StoreReply) -> bool:
    """Whether ``reply`` shows another state at the generation the mirror last saw (``seed``).

    One entry's generation names one state: another one there (the state a reply holds at
    that generation, or the source of the transition that followed it) is a fork (see
    :meth:`Mirror._forked`).
    """
    if reply.epoch != seed.epoch:
        return False
    if reply.gen == seed.gen:
        return reply.state != seed.state
    return bool(reply.event) and reply.gen == seed.gen + 1 and reply.source != seed.state


class StoreLink:
    """A shared breaker's tie to its store entry, and the bookkeeping of its mirror."""

    __slots__ = (
        "deadline",
        "degraded",
        "entry",
        "epoch",
        "errors",
        "live",
        "lost",
        "own",
        "policy_warned",
        "pushing",
        "recheck_at",
        "recorded",
        "retry_at",
        "seed",
        "window",
        "window_at",
    )

    def __init__(self, entry: SharedState, seed: Seed) -> None:
        self.entry = entry
        self.seed = seed  # the shared state last mirrored (recreates a lost entry)
        self.deadline = 0.0  # local monotonic end of the mirrored open episode
        self.epoch = -1  # which incarnation of the store entry the mirror follows
        self.window: tuple[int, ...] = _NO_WINDOW  # shared window totals, last mirrored
        self.window_at = 0.0  # when they were mirrored (local monotonic)
        self.recheck_at = 0.0  # when an override's mirror is asked again
        self.degraded = False
        self.retry_at = 0.0  # degraded: when the store is tried again
        self.errors = 0
        # Whether the mirror may decide alone: no push can have been missed since it last
        # read the state (set by the store's push channel; always, for a store that does
        # not push).
        self.live = False
        self.pushing = False  # the entry pushes (a PushingState): ask it for push tokens
        self.policy_warned = False
        # Transitions whose round trip's reply was lost (made by its script or not): each
        # is recorded from its push. Its own pushes, kept a while; the (epoch, generation)
        # of the transitions it recorded last, so that none is recorded twice.
        self.lost = 0
        self.own: collections.deque[StoreReply] | None = None
        self.recorded: collections.deque[tuple[int, int]] | None = None

    def check_policy(self, reply: StoreReply, name: str) -> None:
        """Warn (once) when the shared state was written under another policy than ours."""
        theirs, ours = reply.fingerprint, getattr(self.entry, "fingerprint", 0)
        if theirs and ours and theirs != ours and not self.policy_warned:
            self.policy_warned = True
            _log.warning(
                "breaker %r: another member of the fleet shares it under a different policy "
                "(fingerprint %012x in the shared state, %012x here): the fleet's "
                "decisions mix both; give every process the same policy for this name",
                name,
                theirs,
                ours,
            )
