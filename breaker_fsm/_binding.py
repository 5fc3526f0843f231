"""How a transition reaches a ``BreakerMachine``: models that bind a machine to a breaker.

A machine's model names the breaker it moves, reads that breaker's state, answers the
guards with its policy and applies the transition it takes (``Transitions._apply``). A
breaker's own machine (``breaker.machine``, built on demand) has a :class:`_Binding`; the
transitions a breaker makes itself go through a machine borrowed from a pool the whole
process shares (:func:`_borrow`), whose :class:`_PooledBinding` is bound per event.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ._machine import STATES, BreakerMachine, legal_moves

if TYPE_CHECKING:
    from statemachine.event_data import EventData

    from ._policy import BreakerStats
    from ._transitions import Transitions

__all__ = ["_MOVES", "_Binding", "_PooledBinding", "_borrow", "_give_back", "refused_because"]

#: What an event carries besides its evidence (see ``Transitions._apply``).
Extra = dict[str, Any]

#: The machine's table: (event, source) -> target.
_MOVES = legal_moves()


class _Model:
    """What every machine model of a breaker shares: the breaker it moves, and its state.

    python-statemachine keeps a machine's state on its model (``model.state`` here) and
    asks the model, like a listener, for guards and callbacks. A model reads the state
    from the breaker it names and answers the guards with that breaker's policy, and its
    ``on_enter_state`` applies the transition to that breaker. So which breaker a machine
    moves is decided per event, by the model, and one machine can serve any number of
    breakers: see :func:`_borrow`.

    The breaker owns its state. The machine's own writes of the state (as it enters a
    target, or puts the source back after an error) only end ``source``, the state a
    store's transition starts from (see ``Transitions._dispatch``); ``_apply`` writes the
    breaker's state.
    """

    __slots__ = ("breaker", "source")

    breaker: Transitions
    source: str | None

    def __init__(self, breaker: Transitions) -> None:
        self.breaker = breaker
        self.source = None

    @property
    def state(self) -> str:
        """The state the machine is in: the bound breaker's (or a store transition's source)."""
        source = self.source
        return source if source is not None else STATES[self.breaker._state]

    @state.setter
    def state(self, value: str) -> None:
        self.source = None  # the machine has moved: from now on, the breaker's own state


class _Binding(_Model):
    """The model of a breaker's own machine (:attr:`Transitions.machine`).

    Users send it events and add listeners to it, so it takes what an event is sent with
    as python-statemachine passes it: the guards' ``stats`` and ``event_data``.
    """

    __slots__ = ()

    # The guards the machine names, answered by the bound breaker's policy.

    def failure_threshold_reached(self, stats: BreakerStats | None = None) -> bool:
        """The policy's :meth:`~breaker_fsm.BreakerPolicy.failure_threshold_reached`."""
        return self.breaker.policy.failure_threshold_reached(stats)

    def open_duration_elapsed(self, stats: BreakerStats | None = None) -> bool:
        """The policy's :meth:`~breaker_fsm.BreakerPolicy.open_duration_elapsed`."""
        return self.breaker.policy.open_duration_elapsed(stats)

    def success_threshold_reached(self, stats: BreakerStats | None = None) -> bool:
        """The policy's :meth:`~breaker_fsm.BreakerPolicy.success_threshold_reached`."""
        return self.breaker.policy.success_threshold_reached(stats)

    def trial_failed(self, stats: BreakerStats | None = None) -> bool:
        """The policy's :meth:`~breaker_fsm.BreakerPolicy.trial_failed`."""
        return self.breaker.policy.trial_failed(stats)

    def on_enter_state(self, event_data: EventData) -> None:
        """Apply the transition to the bound breaker and record it (``Transitions._apply``).

        ``on_enter_state`` runs once per transition (self-transitions such as ``reset``
        from ``closed`` included), before the machine's ``after_transition`` callbacks, so
        listeners a user adds see the breaker in its new state.
        """
        extra = event_data.trigger_data.kwargs  # what the event was sent with
        self.breaker._apply(
            str(event_data.event),
            str(event_data.source.id),
            str(event_data.target.id),  # type: ignore[union-attr]  # never a targetless one
            extra.get("stats"),
            extra,
        )


class _PooledBinding(_Model):
    """The model of a pooled machine: bound to a breaker, and to one event, per dispatch.

    Only ``Transitions._dispatch`` sends these machines events, and it sends them with no
    arguments: it sets the evidence (``stats``), the event, the state it leaves and what
    the event carries (``extra``) here first. python-statemachine binds each callback's
    arguments by name at every call, through several levels of ``**kwargs``; callbacks
    that take none, of an event sent with none, are about 5% of a bare ``send`` cheaper.
    """

    __slots__ = ("begin", "event", "extra", "stats")

    begin: str
    event: str
    extra: Extra
    stats: BreakerStats

    def failure_threshold_reached(self) -> bool:
        """The policy's :meth:`~breaker_fsm.BreakerPolicy.failure_threshold_reached`."""
        return self.breaker.policy.failure_threshold_reached(self.stats)

    def open_duration_elapsed(self) -> bool:
        """The policy's :meth:`~breaker_fsm.BreakerPolicy.open_duration_elapsed`."""
        return self.breaker.policy.open_duration_elapsed(self.stats)

    def success_threshold_reached(self) -> bool:
        """The policy's :meth:`~breaker_fsm.BreakerPolicy.success_threshold_reached`."""
        return self.breaker.policy.success_threshold_reached(self.stats)

    def trial_failed(self) -> bool:
        """The policy's :meth:`~breaker_fsm.BreakerPolicy.trial_failed`."""
        return self.breaker.policy.trial_failed(self.stats)

    def on_enter_state(self) -> None:
        """Apply the transition the machine took to the bound breaker, and record it.

        The machine took ``event`` from ``begin``; its target is the machine's own, read
        from the table derived from it (``legal_moves``).
        """
        begin, event = self.begin, self.event
        self.breaker._apply(event, begin, _MOVES[event, begin], self.stats, self.extra)


#: Every event's name.
_EVENTS = tuple(sorted({event for event, _ in _MOVES}))


def refused_because(event: str, state: str) -> str:
    """Why ``event`` is not allowed in ``state``, naming what is: an error's detail."""
    if not any(known == event for known, _ in _MOVES):
        return f"unknown event; the events are {', '.join(_EVENTS)}"
    allowed = [known for known in _EVENTS if (known, state) in _MOVES]
    return f"allowed: {', '.join(allowed)}"


#: A machine, its binding, and its events (python-statemachine builds a bound event object
#: at each ``send``; calling a kept one does the same without that).
_Dispatcher = tuple[BreakerMachine, _PooledBinding, dict[str, Callable[..., Any]]]

#: Machines no thread is dispatching through right now; see :func:`_borrow`.
#: ``list.pop`` and ``list.append`` are atomic: no lock.
_POOL: list[_Dispatcher] = []


def _borrow(breaker: Transitions) -> _Dispatcher:
    """A machine bound to ``breaker``: a free one from the pool, or a new one.

    A machine is taken out of the pool for one dispatch and put back (:func:`_give_back`),
    so no two dispatches share one, and the pool holds as many machines as dispatches ever
    ran at the same time (one per thread that made a transition at that moment, plus one
    for each transition a sink made from inside another): a handful in a whole process,
    whatever the number of breakers.
    """
    try:
        dispatcher = _POOL.pop()
    except IndexError:
        binding = _PooledBinding(breaker)
        machine = BreakerMachine(model=binding)
        return machine, binding, {event: getattr(machine, event) for event in _EVENTS}
    dispatcher[1].breaker = breaker
    return dispatcher


def _give_back(dispatcher: _Dispatcher) -> None:
    """Return a borrowed machine to the pool, bound to no breaker."""
    binding = dispatcher[1]
    del binding.breaker, binding.stats, binding.extra  # a pooled machine keeps nothing alive
    binding.source = None
    _POOL.append(dispatcher)
