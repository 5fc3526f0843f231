"""Transitions: the one writer of a breaker's state, and its audit trail.

Every transition, automatic or operator, is dispatched through a
:class:`~breaker_fsm.BreakerMachine`. The machine's model (a :class:`_Model`) names a
breaker: it reads that breaker's state, answers the machine's guards with that breaker's
policy, and its ``on_enter_state`` calls :meth:`Transitions._apply`. So one
machine can serve any breaker, bound per event: a breaker borrows one from a pool shared
by the whole process (:func:`_borrow`) for each transition, and no breaker builds a machine
of its own unless its :attr:`~Transitions.machine` is asked for (then every later
transition of that breaker goes through that one, for the listeners a user adds to it).

``_apply`` is the only code that writes the state, the generation and the fast-path flag
(the machine's own writes of its state change nothing: the breaker owns it), and it
writes them in one order, under ``_lock``:

1. ``_hot = False``: from here on, no caller takes the inlined closed-state paths;
2. ``_gen`` moves on: outcomes admitted under the old generation are dropped as stale
   (a caller reads ``_gen`` *before* ``_hot``, so it never counts an old-state call in
   the new generation);
3. the state's own figures (permits, trials, open timing, streak, window) and ``_state``;
4. ``_hot`` again, true only for ``closed`` under a policy the fast path covers.

Transitions of one breaker are serialised by its ``_tlock`` (re-entrant: a sink may read
the breaker, or send it an event), never held while a user's operation runs; transitions
of different breakers run in parallel, each on its own borrowed machine. The record is
built (and validated) before anything is written, so a transition is recorded or nothing
changes.

The slots it writes, and every other slot of a breaker, are declared (and given their
first values) once, in :class:`~breaker_fsm._layout.Layout`, its base.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from sys import intern
from typing import TYPE_CHECKING, Any, TypeVar

from statemachine.exceptions import TransitionNotAllowed

from ._audit import AuditLog, Transition, check_wall
from ._binding import _MOVES, _Binding, _borrow, _give_back, refused_because
from ._layout import CLOSED, DISABLED, FORCED_OPEN, HALF_OPEN, OPEN, Layout
from ._machine import STATES, BreakerMachine
from ._policy import BreakerStats
from .exceptions import IllegalTransitionError

if TYPE_CHECKING:
    from ._calls import CallSink

#: The evidence and the keyword arguments a transition was sent with (see ``_apply``).
Stats = BreakerStats | None
Extra = dict[str, Any]

__all__ = ["CLOSED", "DISABLED", "FORCED_OPEN", "HALF_OPEN", "OPEN", "Transitions", "built"]

_log = logging.getLogger("breaker_fsm")

_CODE = {name: code for code, name in enumerate(STATES)}
_LAZY = threading.Lock()  # guards the first creation of a breaker's rarely used parts


class _Delivering(threading.local):
    """Per thread: the records waiting for the sinks of a breaker that is delivering one."""

    def __init__(self) -> None:
        self.pending: dict[int, list[Transition]] = {}


_DELIVERING = _Delivering()
T = TypeVar("T")


def built(owner: object, slot: str, build: Callable[[], T]) -> T:
    """``owner``'s ``slot``, built by ``build()`` on first use (exactly once, under a lock).

    For the parts of a breaker that most breakers never need (the transition lock, the
    audit log, the rejection counter): they are most of its size.
    """
    with _LAZY:
        value: T | None = getattr(owner, slot)
        if value is None:
            value = build()
            setattr(owner, slot, value)
    return value


class Transitions(Layout):
    """A breaker's state and the transitions between its states (see the module)."""

    __slots__ = ()

    #: Whether ``seq`` counts in a store's shared numbering (the records' ``life``), or
    #: which one (``breaker_fsm._audit.shared_life``).
    _audit_shared: bool | str = False

    # Built on first use: a breaker that never leaves ``closed`` needs none of these, and
    # they are most of its size (the audit log alone is about 800 bytes).

    @property
    def _tlock(self) -> threading.RLock:
        """The transition lock (re-entrant: a sink may read the breaker)."""
        tlock = self._tlock_obj
        return tlock if tlock is not None else built(self, "_tlock_obj", threading.RLock)

    @property
    def _audit(self) -> AuditLog:
        """The audit log behind :attr:`audit`."""
        log = self._audit_log
        if log is not None:
            return log
        return built(self, "_audit_log", lambda: AuditLog(self._audit_capacity))

    @property
    def state(self) -> str:
        """The current state's name: ``"closed"``, ``"open"``, ``"half_open"``, and so on."""
        return STATES[self._state]

    @property
    def machine(self) -> BreakerMachine:
        """The breaker's own python-statemachine instance: built on first use, then kept.

        Until then, this breaker's transitions are dispatched through machines shared by
        every breaker of the process (one borrowed per transition). Once built, every
        transition of this breaker goes through this one, so listeners added to it see
        them all. Its state is the breaker's (its model is bound to this breaker): it
        moves with every transition, however made; setting its ``current_state_value``
        moves nothing (send an event instead).
        """
        machine = self._machine
        if machine is None:
            with self._tlock:
                machine = self._machine
                if machine is None:
                    machine = self._machine = BreakerMachine(model=_Binding(self))
        return machine

    # ------------------------------------------------------------------ transitions

    def send(self, event: str, *, reason: str | None = None) -> str:
        """Fire ``event`` by name (``"force_open"``, ``"disable"``, ``"reset"``, …).

        Guarded events (``trip``, ``attempt_reset``, ``recover``, ``retrip``) fire only
        when the policy's guard holds on the current counters.

        Returns:
            The state after the event.

        With a shared store the event is applied to the shared state (the guards decide on
        the shared counters), atomically; while the store is unreachable it is applied to
        this process's local state only, with a warning.

        Raises:
            IllegalTransitionError: the event is unknown or not legal from the current
                state (or its guard does not hold); nothing changed.
        """
        return self._send_local(event, self._check_reason(reason))

    async def asend(self, event: str, *, reason: str | None = None) -> str:
        """:meth:`send` for asyncio code: the shared store's round trip never blocks the loop.

        The same events, guards, return value and errors as :meth:`send`. With a shared
        store the event is applied on the store's asyncio client (the one :meth:`acall`
        uses), and degrades to local state the same way; without one it is applied in
        memory at once, exactly as :meth:`send` does.

        >>> import asyncio
        >>> from breaker_fsm import CircuitBreaker
        >>> breaker = CircuitBreaker("users-api")
        >>> asyncio.run(breaker.asend("force_open", reason="maintenance"))
        'forced_open'
        >>> breaker.audit[0].reason
        'maintenance'

        Raises:
            IllegalTransitionError: the event is unknown or not legal from the current
                state (or its guard does not hold); nothing changed.
        """
        return self._send_local(event, self._check_reason(reason))

    @staticmethod
    def _check_reason(reason: object) -> str | None:
        """``reason`` as given, checked before anything happens: a str or ``None``."""
        if reason is None or isinstance(reason, str):
            return reason
        raise TypeError(f"reason must be a str or None, got {type(reason).__name__}: {reason!r}")

    def _send_local(self, event: str, reason: str | None) -> str:
        """:meth:`send` on this process's state: no store, or the store is unavailable."""
        if not isinstance(event, str):
            raise TypeError(f"event must be a str, got {type(event).__name__}: {event!r}")
        with self._tlock:
            state = self.state
            if (event, state) not in _MOVES:
                raise IllegalTransitionError(event, state, refused_because(event, state))
            if not self._fire(event, None, reason=reason):
                raise IllegalTransitionError(event, state, "its guard does not hold")
            return self.state

    def _fire(self, event: str, gen: int | None, *, reason: str | None = None) -> bool:
        """Send ``event`` to the machine, unless generation ``gen`` is already over."""
        with self._tlock:
            if gen is not None and gen != self._gen:
                return False  # another caller made a transition first
            if reason is None:  # fewer keyword arguments: python-statemachine copies them
                return self._dispatch(event, self._stats())
            return self._dispatch(event, self._stats(), reason=reason)

    def _dispatch(
        self, event: str, stats: BreakerStats, source: str | None = None, **extra: Any
    ) -> bool:
        """Send ``event`` through a machine bound to this breaker; whether it was taken.

        The breaker's own machine if one was built (:attr:`machine`), else one borrowed
        from the pool for this event. ``source``: the state the machine starts from, when
        it is not the breaker's (a transition a shared store made from the state it had).
        Called under ``_tlock``.
        """
        machine = self._machine
        if machine is not None:
            own: _Binding = machine.model
            outer, own.source = own.source, source
            try:
                getattr(machine, event)(stats=stats, **extra)
            except TransitionNotAllowed:
                return False
            finally:
                own.source = outer
            return True
        dispatcher = _borrow(self)
        binding = dispatcher[1]
        binding.source = source
        binding.begin = source if source is not None else STATES[self._state]
        binding.event = event
        binding.stats = stats
        binding.extra = extra
        try:
            dispatcher[2][event]()  # no arguments: the binding holds them (see _PooledBinding)
            taken = True
        except TransitionNotAllowed:
            taken = False
        # Any other error leaves the machine out of the pool: it keeps only machines
        # that finished their step.
        _give_back(dispatcher)
        return taken

    def _stats(self) -> BreakerStats:
        """Snapshot the counters a guard decides on."""
        now = self._clock.monotonic()
        with self._lock:
            calls, failures, slow = (0, 0, 0)
            if self._window is not None:
                calls, failures, slow = self._window.totals(now)
            return BreakerStats(
                now=now,
                consecutive_failures=self._streak,
                window_calls=calls,
                window_failures=failures,
                window_slow=slow,
                trial_successes=self._trial_ok,
                trial_failures=self._trial_fail,
                opened_at=self._opened_at if self._state == OPEN else None,
                open_duration=self._open_duration,
                half_open_since=self._half_open_since if self._state == HALF_OPEN else None,
            )

    def _apply(self, event: str, source: str, target: str, stats: Stats, extra: Extra) -> None:
        """Apply a transition the machine made to the breaker's state, and record it.

        The only writer of the state, the generation and ``_hot``. The record is built
        (and validated) first, from the values the transition is about to write; only then
        is anything written, so a transition is recorded or nothing changes. Under the
        lock, ``_hot`` is cleared before ``_gen`` moves on (see :meth:`call`) and set last.
        """
        if stats is None:  # sent to the machine directly, not through the breaker
            stats = self._stats()
        now = self._clock.monotonic()
        policy = self.policy
        # Transitions are serialised (_tlock): nothing else writes what is read here.
        gen = self._next_generation(self._gen)
        episodes, duration = self._open_episodes, self._open_duration
        if target == "open":
            episodes = episodes + 1 if event == "retrip" else 1
            duration = policy.open_duration(episodes, self._rng)
            hint = self._open_hint
            if hint is not None:
                # A floor, capped by the ceiling: it never shortens the episode (a
                # jittered duration may exceed max_reset_timeout).
                ceiling = policy.max_reset_timeout
                duration = max(duration, hint if ceiling is None else min(hint, ceiling))
        elif target == "closed":
            episodes, duration = 0, policy.reset_timeout
        reason, generation = self._audit_identity(
            extra.get("reason") or self._reason(event, stats, duration), gen
        )
        # The record's values, checked as its model would check them; it is kept (and
        # built, for the sinks) once the state is written.
        wall = check_wall(self._clock.wall())
        monotonic = float(now)
        # Breakers under one policy give the same reasons: an outage keeps one copy of each.
        reason = intern(reason) if type(reason) is str else str(reason)
        counters = (
            stats.consecutive_failures,
            stats.window_calls,
            stats.window_failures,
            stats.window_slow,
            stats.trial_successes,
            stats.trial_failures,
        )
        code = _CODE[target]
        with self._lock:
            self._hot = False  # before _gen moves on: see call()
            self._gen = gen
            self._permits = self._trial_ok = self._trial_fail = 0
            self._open_episodes = episodes
            self._open_duration = duration
            if code == OPEN:
                self._open_hint = None
                self._opened_at = now
            elif code == HALF_OPEN:
                self._half_open_since = now
                if self._window is not None:
                    self._window.clear()  # the trials are a fresh measurement
            elif code == CLOSED:
                self._streak = 0
                if self._window is not None:
                    self._window.clear()
            self._state = code
            self._seq = seq = self._seq + 1
            self._hot = self._fast and code == CLOSED
        record = self._audit.keep(
            seq, self.name, event, source, target, wall, monotonic, reason, counters, generation,
            shared=self._audit_shared,
        )  # fmt: skip
        if self._sinks:
            self._deliver(record)

    def _add_call_sink(self, sink: CallSink) -> None:
        """Add a call sink: the breaker leaves its inlined fast paths for good.

        From now on every call is timed (its record has a duration) and none is refused
        inline (a refusal is recorded too): :meth:`~breaker_fsm._layout.Layout._derive_flags`
        derives both from the sinks. ``_hot`` is cleared before the flags it is derived
        from, as in :meth:`_apply` (which keeps it false from then on: ``_fast`` is).
        """
        with self._tlock, self._lock:
            self._hot = False
            self._call_sinks = (*self._call_sinks, sink)
            self._derive_flags()

    def _next_generation(self, gen: int) -> int:
        """The generation after ``gen``: a transition starts a new one."""
        return gen + 1

    def _audit_identity(self, reason: str, gen: int) -> tuple[str, int | None]:
        """The reason and the generation a transition's record carries."""
        return reason, gen

    def _emit(self, record: Transition) -> None:
        """Stamp, keep and deliver a validated ``record`` (the audit log stamps it)."""
        record = self._audit.record(record, shared=self._audit_shared)
        if self._sinks:
            self._deliver(record)

    def _deliver(self, record: Transition) -> None:
        """Hand a stamped ``record`` to every sink, in ``seq`` order.

        A sink may make a transition of this breaker (a ``send`` from inside a sink): it
        is applied at once, and its record is handed to the sinks once the record being
        delivered has reached them all, so every sink sees the records in order.
        """
        pending = _DELIVERING.pending
        queue = pending.get(id(self))
        if queue is not None:  # a sink of this breaker, on this thread, made it
            queue.append(record)
            return
        pending[id(self)] = queue = [record]
        try:
            for item in queue:  # grows while a sink makes a transition
                self._to_sinks(self._sinks, item, "audit")
        finally:
            del pending[id(self)]

    def _to_sinks(self, sinks: tuple[Callable[[Any], object], ...], item: Any, kind: str) -> None:
        """Hand ``item`` to every sink; a sink that raises is logged and counted."""
        for sink in sinks:
            try:
                sink(item)
            except Exception:
                _log.exception("breaker %r: %s sink %r failed", self.name, kind, sink)
                with self._lock:
                    self._sink_errors += 1

    def _reason(self, event: str, stats: BreakerStats, open_duration: float) -> str:
        """Why ``event`` fired, in words."""
        if event == "trip":
            return f"{self.policy.trip_reason(stats)}; open for {open_duration:.3g}s"
        if event == "attempt_reset":
            return f"open duration {stats.open_duration:.3g}s elapsed"
        if event == "recover":
            return f"{stats.trial_successes} trial call(s) succeeded"
        if event == "retrip":
            if stats.trial_failures:
                why = "trial call failed"
            else:
                why = f"half-open timed out after {self.policy.half_open_timeout:.3g}s"
            return f"{why}; open for {open_duration:.3g}s"
        return f"operator: {event}"
