"""circuit(): the one-line decorator factory, sharing breakers by name in a registry."""

from __future__ import annotations

import asyncio

import pytest
from pydantic import ValidationError

import breaker_fsm
from breaker_fsm import (
    BreakerPolicy,
    BreakerRegistry,
    CallRecord,
    CircuitOpenError,
    RegistryError,
    circuit,
    circuit_registry,
)
from breaker_fsm._registry import _BREAKER_KWARGS
from breaker_fsm.testing import FakeClock
from tests.helpers import Boom, boom


def test_bare_decorator_names_the_breaker_after_the_function() -> None:
    """@circuit alone guards the function with the default policy, named module.qualname."""

    # The default registry outlives the test: a second run in this process (mutmut runs the
    # suite more than once in one process) must not find the breaker still open.
    circuit_registry.reset_all(reason="the test starts again")

    @circuit
    def fetch(user_id: int) -> dict[str, int]:
        """Fetch a user."""
        if user_id < 0:
            raise ConnectionError("down")
        return {"id": user_id}

    name = f"{__name__}.test_bare_decorator_names_the_breaker_after_the_function.<locals>.fetch"
    assert name in circuit_registry
    assert fetch(1) == {"id": 1}
    for _ in range(5):  # the default policy's failure_threshold
        with pytest.raises(ConnectionError):
            fetch(-1)
    with pytest.raises(CircuitOpenError) as refused:
        fetch(1)
    assert refused.value.breaker == name
    assert (fetch.__name__, fetch.__doc__) == ("fetch", "Fetch a user.")


def test_policy_fields_make_the_policy(clock: FakeClock) -> None:
    """Keywords that name policy fields build the policy, durations as ISO 8601 too."""
    registry = BreakerRegistry(clock=clock)

    @circuit(failure_threshold=2, reset_timeout="PT10S", registry=registry)
    def call() -> None:
        boom()

    breaker = registry[f"{__name__}.test_policy_fields_make_the_policy.<locals>.call"]
    assert (breaker.policy.failure_threshold, breaker.policy.reset_timeout) == (2, 10.0)
    for _ in range(2):
        with pytest.raises(ConnectionError):
            call()
    assert breaker.state == "open"
    clock.advance(10)
    with pytest.raises(ConnectionError):
        call()  # the trial call ran, failed, and retripped
    assert [record.event for record in breaker.audit] == ["trip", "attempt_reset", "retrip"]


def test_same_name_shares_one_breaker() -> None:
    """Two functions decorated under one name share one breaker, and one trips both."""
    registry = BreakerRegistry()

    @circuit("users-api", failure_threshold=1, registry=registry)
    def get_user() -> str:
        return "user"

    @circuit(name="users-api", failure_threshold=1, registry=registry)
    def list_users() -> None:
        boom()

    assert registry.names() == ["users-api"]
    with pytest.raises(ConnectionError):
        list_users()
    with pytest.raises(CircuitOpenError):
        get_user()


def test_async_functions_are_guarded() -> None:
    """async def functions go through acall: failures count, an open breaker refuses."""
    registry = BreakerRegistry()

    @circuit("async-api", failure_threshold=1, registry=registry)
    async def fetch() -> None:
        boom()

    async def main() -> None:
        with pytest.raises(ConnectionError):
            await fetch()
        with pytest.raises(CircuitOpenError):
            await fetch()

    asyncio.run(main())
    assert registry["async-api"].metrics().rejected_count == 1


def test_breaker_arguments_reach_the_breaker() -> None:
    """fallback and is_failure are CircuitBreaker arguments, not policy fields."""
    registry = BreakerRegistry()

    @circuit(
        "status-api",
        failure_threshold=1,
        fallback=lambda code: "cached",
        is_failure=lambda result: result >= 500,
        audit_capacity=5,
        registry=registry,
    )
    def status(code: int) -> int:
        return code

    assert status(503) == 503  # returned, and judged a failure: trips
    assert status(200) == "cached"  # type: ignore[comparison-overlap]
    assert registry["status-api"].audit.capacity == 5
    assert status.breaker is registry["status-api"]  # type: ignore[attr-defined]


def test_exception_judge_and_call_sinks_reach_the_breaker() -> None:
    """is_failure_exception and call_sinks, as for CircuitBreaker (circuitbreaker's
    expected_exception as a predicate)."""
    registry = BreakerRegistry()
    records: list[CallRecord] = []

    @circuit(
        "judged",
        failure_threshold=1,
        is_failure_exception=lambda exc: "503" in str(exc),
        call_sinks=[records.append],
        registry=registry,
    )
    def fetch(status: str) -> None:
        raise Boom(status)

    with pytest.raises(Boom):
        fetch("404")  # not a failure
    assert fetch.breaker.state == "closed"  # type: ignore[attr-defined]
    with pytest.raises(Boom):
        fetch("503")
    assert fetch.breaker.state == "open"  # type: ignore[attr-defined]
    assert [r.outcome for r in records] == ["success", "failure"]


def test_a_whole_policy_can_be_given() -> None:
    """policy= takes a shared BreakerPolicy instead of fields."""
    registry = BreakerRegistry()
    shared = BreakerPolicy(failure_threshold=7)

    @circuit("with-policy", policy=shared, registry=registry)
    def run() -> int:
        return 1

    assert registry["with-policy"].policy is shared


def test_unknown_keywords_are_refused_by_name() -> None:
    """A keyword that is neither a policy field nor a breaker argument is a TypeError naming it."""
    with pytest.raises(TypeError, match=r"unexpected keyword argument\(s\) clock .*, treshold"):
        circuit(treshold=3, clock=FakeClock())


def test_names_from_other_breakers_get_their_name_here() -> None:
    """circuitbreaker's and pybreaker's keywords are refused with what to write instead."""
    with pytest.raises(TypeError) as caught:
        circuit(recovery_timeout=30, expected_exception=OSError, fail_max=3, clock=FakeClock())
    assert str(caught.value).startswith(
        "circuit() got unexpected keyword argument(s) "
        "clock (here: registry=BreakerRegistry(clock=...)), "
        "expected_exception (here: record_exceptions=(...) or is_failure_exception=pred), "
        "fail_max (here: failure_threshold), recovery_timeout (here: reset_timeout): "
    )


def test_policy_and_fields_together_are_refused() -> None:
    """policy= with policy fields is ambiguous, so it is refused."""
    with pytest.raises(TypeError, match="not both \\(got policy and failure_threshold\\)"):
        circuit(policy=BreakerPolicy(), failure_threshold=3)


def test_bad_values_fail_at_decoration() -> None:
    """An invalid policy field or breaker argument fails where the decorator is written."""
    with pytest.raises(ValidationError, match="failure_threshold"):
        circuit(failure_threshold=0)
    registry = BreakerRegistry()
    decorate = circuit("bad-fallback", fallback="cached", registry=registry)  # type: ignore[call-overload]
    with pytest.raises(TypeError, match="fallback must be callable"):
        decorate(lambda: None)
    assert "bad-fallback" not in registry


def test_a_conflicting_second_decoration_is_refused() -> None:
    """The same name with another policy raises RegistryError instead of replacing the breaker."""
    registry = BreakerRegistry()
    circuit("payments", failure_threshold=1, registry=registry)(lambda: None)
    with pytest.raises(RegistryError, match="failure_threshold is 1, asked for 2"):
        circuit("payments", failure_threshold=2, registry=registry)(lambda: None)


def test_policy_fields_and_breaker_arguments_do_not_overlap() -> None:
    """No keyword could mean both a policy field and a breaker argument."""
    assert not set(BreakerPolicy.model_fields) & (_BREAKER_KWARGS | {"policy", "registry"})


def test_circuit_is_exported() -> None:
    """circuit and its registry are part of the package's public surface."""
    assert {"circuit", "circuit_registry"} <= set(breaker_fsm.__all__)
    assert isinstance(circuit_registry, BreakerRegistry)


def test_circuit_names_a_bad_registry_or_target() -> None:
    """circuit(registry={}) and @circuit on something not callable say what is wrong."""
    from breaker_fsm import circuit

    with pytest.raises(TypeError, match="registry must be a BreakerRegistry, got dict"):
        circuit(registry={})  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="decorates a function, got str"):
        circuit(name="x")("not a function")  # type: ignore[arg-type]


@pytest.mark.parametrize("name", [5, b"svc", ["svc"]])
def test_a_name_that_is_not_a_string_is_refused_where_it_is_given(name: object) -> None:
    """``circuit(5)`` would otherwise fail only when the function is decorated, or never."""
    with pytest.raises(TypeError, match=f"breaker's name \\(a str\\).*got {type(name).__name__}"):
        circuit(name)  # type: ignore[call-overload]
