"""BreakerMachine: the states, events and legal moves of the README's transition table."""

from __future__ import annotations

import pytest
from statemachine import StateMachine
from statemachine.exceptions import TransitionNotAllowed

from breaker_fsm import BreakerMachine, BreakerPolicy, BreakerStats
from breaker_fsm._machine import STATES, legal_moves


def test_states_and_initial_state() -> None:
    """Five states, closed initial, and a strict StateMachine (not a StateChart)."""
    assert STATES == ("closed", "open", "half_open", "forced_open", "disabled")
    assert issubclass(BreakerMachine, StateMachine)
    machine = BreakerMachine(listeners=[BreakerPolicy()])
    assert machine.current_state_value == "closed"


def test_transition_table_is_the_readme_table() -> None:
    """Every (event, source) -> target pair is exactly the README's transition table."""
    operator_sources = ("closed", "open", "half_open")
    expected = {
        ("trip", "closed"): "open",
        ("attempt_reset", "open"): "half_open",
        ("recover", "half_open"): "closed",
        ("retrip", "half_open"): "open",
        **{("force_open", s): "forced_open" for s in operator_sources},
        **{("disable", s): "disabled" for s in operator_sources},
        **{("reset", s): "closed" for s in STATES},
    }
    assert legal_moves() == expected


def test_illegal_event_names_event_and_state_and_changes_nothing() -> None:
    """The machine refuses illegal events with a message naming both; state unchanged."""
    machine = BreakerMachine(listeners=[BreakerPolicy()])
    with pytest.raises(TransitionNotAllowed) as exc:
        machine.send("recover")
    assert "Recover" in str(exc.value)
    assert "closed" in str(exc.value)
    assert machine.current_state_value == "closed"


def test_guards_come_from_the_policy() -> None:
    """Guarded events consult the policy listener with the stats they are sent."""
    machine = BreakerMachine(listeners=[BreakerPolicy(failure_threshold=2)])
    with pytest.raises(TransitionNotAllowed):
        machine.send("trip", stats=BreakerStats(now=0, consecutive_failures=1))
    machine.send("trip", stats=BreakerStats(now=0, consecutive_failures=2))
    assert machine.current_state_value == "open"
    with pytest.raises(TransitionNotAllowed):
        machine.send("attempt_reset", stats=BreakerStats(now=1, opened_at=0, open_duration=5))
    machine.send("attempt_reset", stats=BreakerStats(now=5, opened_at=0, open_duration=5))
    assert machine.current_state_value == "half_open"


def test_guard_names_are_policy_methods() -> None:
    """Every guard named in the machine is a documented method of BreakerPolicy."""
    conds = {
        str(c)
        for state in BreakerMachine.states
        for transition in state.transitions
        for c in transition.cond
    }
    assert conds
    for name in conds:
        method = getattr(BreakerPolicy, name.strip())
        assert method.__doc__
