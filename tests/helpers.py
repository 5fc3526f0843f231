"""Helpers shared by the test modules (no test module imports another)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, NoReturn

import pytest

from breaker_fsm import BreakerPolicy, CircuitBreaker, CircuitOpenError, Transition

if TYPE_CHECKING:
    from breaker_fsm.redis import RedisStore
    from breaker_fsm.testing import FakeClock
    from tests.redis_server import StoreFactory


class Boom(ConnectionError):
    """The dependency's failure (a ``ConnectionError``, as a real outage would raise)."""


def ok(value: Any = "ok") -> Any:
    """A call that succeeds with ``value``."""
    return value


def boom(*_: Any, **__: Any) -> NoReturn:
    """A call that fails with :class:`Boom`."""
    raise Boom("dependency down")


async def aok(value: Any = "ok") -> Any:
    """An awaited call that succeeds with ``value``."""
    return value


async def aboom(*_: Any, **__: Any) -> NoReturn:
    """An awaited call that fails with :class:`Boom`."""
    raise Boom("dependency down")


def fail(breaker: CircuitBreaker, times: int = 1) -> None:
    """``times`` failed calls through ``breaker``, each re-raising :class:`Boom`."""
    for _ in range(times):
        with pytest.raises(Boom):
            breaker.call(boom)


def refused(breaker: CircuitBreaker) -> CircuitOpenError:
    """A call that ``breaker`` refuses (it must): the ``CircuitOpenError`` it raised."""
    with pytest.raises(CircuitOpenError) as info:
        breaker.call(lambda: "never runs")
    return info.value


def merged(*breakers: CircuitBreaker) -> list[Transition]:
    """Every breaker's trail, merged into one and sorted by seq."""
    return sorted((r for b in breakers for r in b.audit), key=lambda r: r.seq)


def run_closing(store: RedisStore, scenario: Callable[[], Awaitable[None]]) -> None:
    """Run an asyncio scenario; close the store's asyncio client on its loop, whatever happens."""

    async def main() -> None:
        try:
            await scenario()
        finally:
            await store.aclose()

    asyncio.run(main())


#: ``await invoke(breaker, func, *args, **kwargs)``: ``func`` through call() or acall().
Invoke = Callable[..., Awaitable[Any]]
MODES = pytest.mark.parametrize("mode", ["sync", "async"])


def through(mode: str, store: RedisStore, scenario: Callable[[Invoke], Awaitable[None]]) -> None:
    """Run ``scenario`` with ``invoke(breaker, func, *args, **kwargs)``: call() or acall().

    ``mode`` "sync" runs ``func`` through ``breaker.call``; "async" wraps it in a coroutine
    function and awaits ``breaker.acall``: the same steps take the two twin paths.
    """

    async def invoke(
        breaker: CircuitBreaker, func: Callable[..., Any], *args: Any, **kw: Any
    ) -> Any:
        if mode == "sync":
            return breaker.call(func, *args, **kw)

        async def op(*a: Any, **k: Any) -> Any:
            return func(*a, **k)

        return await breaker.acall(op, *args, **kw)

    run_closing(store, lambda: scenario(invoke))


def shared(
    redis_stores: StoreFactory, clock: FakeClock, policy: BreakerPolicy, n: int = 2, **kwargs: Any
) -> list[CircuitBreaker]:
    """``n`` breakers named "svc", each on its own store (own clients), time pinned to clock."""
    options = {"now": clock.monotonic, **kwargs.pop("store_options", {})}
    return [
        CircuitBreaker("svc", policy, clock=clock, store=redis_stores(**options), **kwargs)
        for _ in range(n)
    ]
