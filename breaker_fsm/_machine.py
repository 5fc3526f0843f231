"""``BreakerMachine``: the states and transitions, the one source of truth.

The diagram, the docs and the audit verifier are all derived from this class. Guards are
named after methods of :class:`~breaker_fsm.BreakerPolicy`: a breaker's machine asks them
of that breaker's policy (through the machine's model, a ``_binding._Model``), so the
policy decides every guarded transition. A policy passed as a listener works the same way.
"""

from __future__ import annotations

from statemachine import State, StateMachine

__all__ = ["STATES", "BreakerMachine", "legal_moves"]


class BreakerMachine(StateMachine):
    """A circuit breaker's lifecycle.

    ``closed`` runs calls; ``open`` rejects them until the open duration has elapsed;
    ``half_open`` admits a few trial calls; ``forced_open`` and ``disabled`` are operator
    overrides that only ``reset`` leaves.
    """

    closed = State("closed", initial=True)
    open = State("open")
    half_open = State("half_open")
    forced_open = State("forced_open")
    disabled = State("disabled")

    trip = closed.to(open, cond="failure_threshold_reached")
    attempt_reset = open.to(half_open, cond="open_duration_elapsed")
    recover = half_open.to(closed, cond="success_threshold_reached")
    retrip = half_open.to(open, cond="trial_failed")
    force_open = closed.to(forced_open) | open.to(forced_open) | half_open.to(forced_open)
    disable = closed.to(disabled) | open.to(disabled) | half_open.to(disabled)
    reset = (
        closed.to(closed)
        | open.to(closed)
        | half_open.to(closed)
        | forced_open.to(closed)
        | disabled.to(closed)
    )


#: State names in declaration order.
STATES: tuple[str, ...] = tuple(str(s.id) for s in BreakerMachine.states)


def legal_moves() -> dict[tuple[str, str], str]:
    """Map ``(event, source)`` to ``target`` for every transition of the machine."""
    moves: dict[tuple[str, str], str] = {}
    for state in BreakerMachine.states:
        for transition in state.transitions:
            for event in transition.events:
                moves[(str(event), str(state.id))] = str(transition.target.id)
    return moves
