"""Rules stated in more than one place are held to their one source here.

The machine (``BreakerMachine``) is the source of the transition table: the store's event
codes and its Lua operator script must agree with it on every (state, event) pair. The
inlined ``call``/``acall`` twins must stay equal but for ``await``.
"""

from __future__ import annotations

import ast
import inspect
import textwrap
from typing import Any

import pytest

from breaker_fsm import BreakerPolicy, CircuitBreaker
from breaker_fsm._machine import STATES, BreakerMachine, legal_moves
from breaker_fsm._store import EVENT_CODES, EVENTS, Seed
from tests.redis_server import StoreFactory

MACHINE_EVENTS = sorted({str(event) for event in BreakerMachine.events})


def test_store_event_codes_are_the_machine_events() -> None:
    """The store's event codes name exactly the machine's events, each once."""
    assert sorted(EVENT_CODES) == MACHINE_EVENTS
    assert EVENTS[0] == ""  # code 0: no transition
    assert len(set(EVENTS)) == len(EVENTS)


@pytest.mark.parametrize("state", STATES)
def test_lua_operator_table_matches_the_machine(state: str, redis_stores: StoreFactory) -> None:
    """For every (state, event) pair the Lua operator script is legal exactly where the
    machine is, and moves to the machine's target."""
    moves = legal_moves()
    store = redis_stores()
    # Guards that can hold from a seed: a long-elapsed open episode, a trial that failed.
    policy = BreakerPolicy(failure_threshold=1, reset_timeout=0.001)
    code = STATES.index(state)
    for event in MACHINE_EVENTS:
        entry = store.bind(f"parity-{state}-{event}", policy)
        seed = Seed(code, 3, 1 if state == "open" else 0, 0.001, 0.0)
        reply = entry.operator(EVENT_CODES[event], 0.0, seed)
        legal = (event, state) in moves
        assert (reply.ok != 0) == legal, (state, event, reply)
        if reply.ok == 1:
            assert STATES[reply.state] == moves[(event, state)], (state, event)
            assert EVENTS[reply.event] == event
            assert STATES[reply.source] == state
        else:
            assert STATES[reply.state] == state  # refused or unguarded: nothing moved


class _Sync(ast.NodeTransformer):
    """Rewrites an async body to its sync twin: ``await x`` is ``x``, and the awaited
    fallback helpers are the sync ones (``_answer(f, args, kwargs)`` is ``f(*args,
    **kwargs)``, ``_arefused`` is ``_refused``, ``_arun_unrecorded`` is
    ``_run_unrecorded``, ``_aunadmitted`` is ``_unadmitted``, and acall's ``call_timeout``
    branch is the plain call)."""

    def visit_Await(self, node: ast.Await) -> Any:
        return self.visit(node.value)

    def visit_If(self, node: ast.If) -> Any:
        # Only acall can enforce call_timeout; without one it runs the call as call does.
        test = node.test
        if (
            isinstance(test, ast.Compare)
            and isinstance(test.left, ast.Attribute)
            and test.left.attr == "_call_timeout"
        ):
            return [self.visit(statement) for statement in node.body]
        return self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> Any:
        self.generic_visit(node)
        func = node.func
        if isinstance(func, ast.Attribute) and func.attr in (
            "_arefused",
            "_arun_unrecorded",
            "_aunadmitted",
        ):
            func.attr = func.attr.replace("_a", "_", 1)
        if isinstance(func, ast.Attribute) and func.attr == "_answer":
            target, args, kwargs = node.args
            return ast.Call(
                func=target,
                args=[ast.Starred(value=args, ctx=ast.Load())],
                keywords=[ast.keyword(arg=None, value=kwargs)],
            )
        return node


class _NoCoroutineCheck(ast.NodeTransformer):
    """Drops call's ``if type(result) is COROUTINE:`` checks: only ``call`` can be handed
    an async function (``acall`` hears of a plain one from ``await``'s own TypeError). And
    reads call's ``_sync_fallback`` as ``_fallback``: the same fallback, but for an
    ``async def`` one, which only ``acall`` can await."""

    def visit_Attribute(self, node: ast.Attribute) -> Any:
        self.generic_visit(node)
        if node.attr == "_sync_fallback":
            node.attr = "_fallback"
        return node

    def visit_If(self, node: ast.If) -> Any:
        test = node.test
        if (
            isinstance(test, ast.Compare)
            and isinstance(test.comparators[0], ast.Name)
            and test.comparators[0].id == "COROUTINE"
        ):
            return None
        return self.generic_visit(node)


def _body(func: Any, *, strip_async: bool = False, strip_coroutine_check: bool = False) -> str:
    """The function's body (docstring left out) as an AST dump."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(func)))
    function = tree.body[0]
    assert isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef)
    module = ast.Module(body=function.body[1:], type_ignores=[])
    if strip_async:
        module = _Sync().visit(module)
    if strip_coroutine_check:
        module = _NoCoroutineCheck().visit(module)
    return ast.dump(module)


def test_call_and_acall_differ_only_by_await() -> None:
    """The inlined hot paths of call and acall stay twins: equal once await is stripped
    and acall's awaited fallback helpers are read as call's, and call's coroutine checks
    are left out."""
    assert _body(CircuitBreaker.acall, strip_async=True) == _body(
        CircuitBreaker.call, strip_coroutine_check=True
    )


def test_call_checks_for_a_coroutine_wherever_it_runs_the_operation() -> None:
    """call checks every result it gets for a coroutine (hot path, slow path), and so does
    the answer to a call it does not admit (disabled): the twin test leaves those checks
    out, so it counts them here."""
    assert _body(CircuitBreaker.call).count("id='COROUTINE'") == 2
    assert _body(CircuitBreaker.call, strip_coroutine_check=True).count("COROUTINE") == 0
    assert _body(CircuitBreaker._unadmitted).count("id='COROUTINE'") == 1


def test_the_twin_check_sees_a_difference() -> None:
    """The comparison is not vacuous: acall without the rewrite differs from call."""
    assert _body(CircuitBreaker.acall) != _body(CircuitBreaker.call)
