"""``circuit``: the one-line decorator, for code coming from the ``circuitbreaker`` package.

>>> from breaker_fsm import circuit
>>> @circuit(failure_threshold=3, reset_timeout="PT30S")
... def fetch_user(user_id):
...     return {"id": user_id}
>>> fetch_user(42)
{'id': 42}
>>> fetch_user.breaker.policy.failure_threshold
3
>>> fetch_user.breaker is circuit_registry[f"{__name__}.fetch_user"]
True
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Final, TypeVar, cast, overload

from ._policy import BreakerPolicy
from ._registry import BreakerRegistry

if TYPE_CHECKING:
    import random

    from ._calls import CallSink

__all__ = ["circuit", "circuit_registry"]

F = TypeVar("F", bound=Callable[..., Any])

#: The registry ``circuit`` keeps its breakers in unless given another: one breaker per
#: name, so every function decorated under one name shares one breaker.
circuit_registry = BreakerRegistry()

_POLICY_FIELDS = frozenset(BreakerPolicy.model_fields)
#: The keywords passed on to the breaker (typed in the overload below), when not ``None``.
_BREAKER_ARGUMENTS: Final = (
    "fallback",
    "is_failure",
    "is_failure_exception",
    "call_sinks",
    "rng",
    "audit_capacity",
)

#: What the keywords of the ``circuitbreaker`` and ``pybreaker`` packages are called here.
_RENAMED: Final = {
    "fail_max": "failure_threshold",
    "recovery_timeout": "reset_timeout",
    "expected_exception": "record_exceptions=(...) or is_failure_exception=pred",
    "exclude": "ignore_exceptions",
    "fallback_function": "fallback",
    "clock": "registry=BreakerRegistry(clock=...)",
    "sinks": "registry=BreakerRegistry(sinks=...)",
    "store": "registry=BreakerRegistry(store=...)",
}


@overload
def circuit(name: F, /) -> F: ...


@overload
def circuit(
    name: str | None = None,
    *,
    policy: BreakerPolicy | None = None,
    registry: BreakerRegistry | None = None,
    fallback: Callable[..., Any] | None = None,
    is_failure: Callable[[Any], bool | float | None] | None = None,
    is_failure_exception: Callable[[BaseException], bool | float | None] | None = None,
    call_sinks: Iterable[CallSink] | None = None,
    rng: random.Random | None = None,
    audit_capacity: int | None = None,
    **policy_fields: Any,
) -> Callable[[F], F]: ...


def circuit(
    name: str | Callable[..., Any] | None = None,
    *,
    policy: BreakerPolicy | None = None,
    registry: BreakerRegistry | None = None,
    **options: Any,
) -> Any:
    """Guard a function (``def`` or ``async def``) with the breaker called ``name``.

    ``@circuit`` alone, or ``@circuit(failure_threshold=3, reset_timeout=10)``: keywords
    that name a :class:`~breaker_fsm.BreakerPolicy` field make the breaker's policy, and
    ``fallback``, ``is_failure``, ``is_failure_exception``, ``call_sinks``, ``rng`` and
    ``audit_capacity`` are passed to its :class:`~breaker_fsm.CircuitBreaker`; the
    decorated function's ``breaker`` attribute is that breaker. It is created when the
    function is
    decorated (so a bad argument fails at import) and kept in ``registry``
    (:data:`circuit_registry` by default): functions decorated under one name share one
    breaker, and a second decoration that asks for a different policy or fallback raises
    :class:`~breaker_fsm.RegistryError`. The clock, audit sinks and shared store are the
    registry's: pass ``registry=BreakerRegistry(clock=..., sinks=..., store=...)``.

    Args:
        name: the breaker's name; the function's module and qualified name
            (``"app.users.fetch_user"``) by default.
        policy: a whole policy, instead of policy fields.
        registry: where the breaker is kept; :data:`circuit_registry` by default.
        fallback: see :class:`~breaker_fsm.CircuitBreaker`.
        is_failure: see :class:`~breaker_fsm.CircuitBreaker`.
        is_failure_exception: see :class:`~breaker_fsm.CircuitBreaker`.
        call_sinks: see :class:`~breaker_fsm.CircuitBreaker`.
        rng: see :class:`~breaker_fsm.CircuitBreaker`.
        audit_capacity: see :class:`~breaker_fsm.CircuitBreaker`.
        **options: the breaker's arguments above, and
            :class:`~breaker_fsm.BreakerPolicy` fields.

    Raises:
        TypeError: a keyword that is neither a policy field nor a breaker argument, or
            ``policy`` together with policy fields.
        pydantic.ValidationError: an invalid policy field.
        RegistryError: the name's breaker exists with another policy or arguments.
    """
    if callable(name):  # bare @circuit: the function itself came as the name
        return circuit()(name)
    if name is not None and not isinstance(name, str):
        raise TypeError(
            f"circuit() takes the breaker's name (a str) or the function to guard, "
            f"got {type(name).__name__}"
        )
    breaker_kwargs = {
        key: value for key in _BREAKER_ARGUMENTS if (value := options.pop(key, None)) is not None
    }
    if "call_sinks" in breaker_kwargs:  # compared with a registered breaker's: a tuple
        breaker_kwargs["call_sinks"] = tuple(breaker_kwargs["call_sinks"])
    policy_fields = options  # what is left: BreakerPolicy fields, checked below
    unknown = sorted(set(policy_fields) - _POLICY_FIELDS)
    if unknown:
        said = ", ".join(
            f"{key} (here: {_RENAMED[key]})" if key in _RENAMED else key for key in unknown
        )
        raise TypeError(
            f"circuit() got unexpected keyword argument(s) {said}: it takes BreakerPolicy "
            "fields (failure_threshold, reset_timeout, ...) and "
            f"{', '.join(_BREAKER_ARGUMENTS)}, policy, registry"
        )
    if policy is not None and policy_fields:
        raise TypeError(
            f"circuit() takes policy= or policy fields, not both (got policy and "
            f"{', '.join(sorted(policy_fields))})"
        )
    if policy_fields:
        policy = BreakerPolicy(**policy_fields)
    if registry is not None and not isinstance(registry, BreakerRegistry):
        raise TypeError(
            f"circuit() registry must be a BreakerRegistry, got {type(registry).__name__}"
        )
    where = circuit_registry if registry is None else registry

    def decorate(func: F) -> F:
        if not callable(func):
            raise TypeError(f"@circuit decorates a function, got {type(func).__name__}")
        breaker_name = name if name is not None else f"{func.__module__}.{func.__qualname__}"
        breaker = where.get(breaker_name, policy, **breaker_kwargs)
        guarded = breaker(func)
        guarded.breaker = breaker  # type: ignore[attr-defined]  # circuitbreaker's handle
        return cast(F, guarded)

    return decorate
