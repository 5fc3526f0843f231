"""Checks of ``CircuitBreaker``'s arguments, run once at construction.

A wrong argument must fail where it is written, not during the outage it was meant for
(a fallback that is not callable is only called when a call is refused). Each error names
the argument and what it got. Types are checked by what the breaker uses (``callable``,
the clock's two methods), not by class, so duck-typed objects keep working.
"""

from __future__ import annotations

import inspect
import os
import reprlib
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from ._policy import BreakerPolicy

if TYPE_CHECKING:
    from ._audit import Sink

__all__ = ["check_arguments", "check_sink", "check_sinks"]

_repr = reprlib.Repr()
_repr.maxstring = 40
_repr.maxother = 40


def _got(value: object) -> str:
    """``int 123``: what an argument got, short enough for one line."""
    return f"{type(value).__name__} {_repr.repr(value)}"


def _check_instance(label: str, value: object) -> None:
    """A class where an instance belongs has unbound methods: ``monotonic()`` needs self."""
    if isinstance(value, type):
        raise TypeError(
            f"CircuitBreaker {label} must be an instance, got the class {value.__name__}: "
            f"write {label}={value.__name__}()"
        )


def check_arguments(
    name: object,
    policy: object,
    *,
    clock: object = None,
    fallback: object = None,
    sinks: object = (),
    is_failure: object = None,
    is_failure_exception: object = None,
    rng: object = None,
    audit_capacity: object = 1000,
    store: object = None,
) -> tuple[Sink, ...]:
    """Check ``CircuitBreaker``'s arguments; returns ``sinks`` as a tuple.

    ``sinks`` may be any iterable, a generator too, so it is read once, here, and the
    tuple is what the breaker keeps.

    Raises:
        TypeError: an argument of the wrong kind, named, with what it got.
        ValueError: an empty ``name`` or an ``audit_capacity`` below 1.
    """
    if not isinstance(name, str):
        raise TypeError(f"CircuitBreaker name must be a str, got {_got(name)}")
    if not name:
        raise ValueError("CircuitBreaker name must be a non-empty str, got ''")
    if policy is not None and not isinstance(policy, BreakerPolicy):
        hint = ""
        if isinstance(policy, Mapping):  # a policy is a value shared by reference: build it once
            hint = ": build one with BreakerPolicy(**fields) or BreakerPolicy.model_validate(...)"
        raise TypeError(
            f"CircuitBreaker policy must be a BreakerPolicy or None, got {_got(policy)}{hint}"
        )
    _check_instance("clock", clock)
    _check_instance("rng", rng)
    if clock is not None and not all(
        callable(getattr(clock, method, None)) for method in ("monotonic", "wall")
    ):
        raise TypeError(
            "CircuitBreaker clock must have monotonic() and wall() methods (see "
            f"breaker_fsm.Clock; breaker_fsm.testing.FakeClock in tests), got {_got(clock)}"
        )
    for label, value in (
        ("fallback", fallback),
        ("is_failure", is_failure),
        ("is_failure_exception", is_failure_exception),
    ):
        if value is not None and not callable(value):
            raise TypeError(f"CircuitBreaker {label} must be callable or None, got {_got(value)}")
    if rng is not None and not callable(getattr(rng, "uniform", None)):
        raise TypeError(
            f"CircuitBreaker rng must have a uniform(a, b) method (random.Random), got {_got(rng)}"
        )
    if isinstance(audit_capacity, bool) or not isinstance(audit_capacity, int):
        raise TypeError(
            f"CircuitBreaker audit_capacity must be an int >= 1, got {_got(audit_capacity)}"
        )
    if audit_capacity < 1:
        raise ValueError(f"CircuitBreaker audit_capacity must be an int >= 1, got {audit_capacity}")
    if store is not None and not callable(getattr(store, "bind", None)):
        raise TypeError(
            f"CircuitBreaker store must be a shared store such as breaker_fsm.redis.RedisStore "
            f"(with a bind() method) or None, got {_got(store)}"
        )
    return check_sinks(sinks, "CircuitBreaker sinks")


def is_async_callable(obj: object) -> bool:
    """Whether calling ``obj`` gives a coroutine (``async def``, or an async ``__call__``)."""
    return inspect.iscoroutinefunction(obj) or inspect.iscoroutinefunction(type(obj).__call__)


def check_sinks(sinks: object, label: str, *, calls: bool = False) -> tuple[Sink, ...]:
    """``sinks`` as a tuple, each one checked callable; ``label`` names the argument.

    ``calls``: these are call sinks (they receive ``CallRecord``), not audit sinks.
    """
    if isinstance(sinks, str | bytes | os.PathLike) or not isinstance(sinks, Iterable):
        raise TypeError(
            f"{label} must be an iterable of callables, got {_got(sinks)}"
            f"{_file_hint(sinks, calls=calls)}"
        )
    found = tuple(sinks)
    for index, sink in enumerate(found):
        check_sink(sink, f"{label}[{index}]", calls=calls)
    return found


def check_sink(sink: object, label: str, *, calls: bool = False) -> None:
    """Refuse a sink that is not callable, is ``async def``, or writes the other record kind."""
    from ._calls import CallLogSink
    from ._trail import JsonlSink

    receives = "CallRecord" if calls else "Transition"
    if not callable(sink):
        raise TypeError(
            f"{label} must be callable (it receives each {receives}), "
            f"got {_got(sink)}{_file_hint(sink, calls=calls)}"
        )
    if is_async_callable(sink):
        raise TypeError(
            f"{label} is an async function ({_got(sink)}): sinks are called synchronously, "
            "where the record is made, so its coroutine would never run; give a plain "
            "function (to hand records to an event loop, put them on an asyncio.Queue with "
            "loop.call_soon_threadsafe)"
        )
    wrong, right = (JsonlSink, "CallLogSink") if calls else (CallLogSink, "JsonlSink")
    if isinstance(sink, wrong):
        raise TypeError(
            f"{label} receives each {receives}, but {sink!r} writes the other kind of "
            f"record: use breaker_fsm.audit.{right}({str(sink.path)!r})"
        )


def _file_hint(value: object, *, calls: bool = False) -> str:
    """A hint for a sink given as a file name: wrap it in ``JsonlSink`` (``CallLogSink``)."""
    if isinstance(value, str | os.PathLike):
        path = os.fspath(value)
        if calls:
            return f": to log the calls to a file, use breaker_fsm.audit.CallLogSink({path!r})"
        return f": to write the trail to a file, use breaker_fsm.audit.JsonlSink({path!r})"
    return ""
