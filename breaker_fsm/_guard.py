"""Guarding work beyond ``call``: permits, ``with breaker:``, generators, and ``@breaker``.

:meth:`Guards.acquire` is the first half of a call (admission), :class:`Permit` the
second (recording the outcome); ``call`` does both around an operation, these let the
caller do them around anything: a block of code, a stream, work whose outcome is known
elsewhere (gobreaker's ``TwoStepCircuitBreaker``, resilience4j's
``tryAcquirePermission``/``onSuccess``/``onError``).
"""

from __future__ import annotations

import contextvars
import functools
import inspect
import warnings
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Generator
from typing import TYPE_CHECKING, Any

from ._arguments import is_async_callable
from ._local import LOST_PERMITS, LocalEngine
from ._outcome import FAILED, NEUTRAL, SUCCESS, Admission
from ._transitions import CLOSED, HALF_OPEN

if TYPE_CHECKING:
    from ._breaker import CircuitBreaker

__all__ = ["Guards", "Permit", "decorate", "guard_async_generator", "guard_generator"]

_BYPASS, _SHADOW = Admission.BYPASS, Admission.SHADOW

#: The permits that ``with breaker:`` blocks hold in this thread or task, innermost last.
_HELD: contextvars.ContextVar[tuple[Permit, ...]] = contextvars.ContextVar(
    "breaker_fsm_held_permits", default=()
)


class Permit:
    """Permission to run one operation through a breaker; settle it exactly once.

    ``success()``, ``failure()`` or ``release()`` (neutral: counted neither way, any
    half-open trial slot given back) record the outcome; settling twice raises
    ``RuntimeError``. Until settled it holds its half-open trial slot. As a context
    manager it settles by how the block ends: normally, a success; by an exception, as
    ``call`` judges that exception. Slow-call timing runs from acquire to settle.

    A permit garbage-collected unsettled is a bug in the caller: it warns
    (``ResourceWarning``) and, if it held an in-memory breaker's half-open trial slot,
    the slot is given back (neutral) when the breaker next needs one.
    """

    __slots__ = ("_breaker", "_gen", "_settled", "_started")

    def __init__(self, breaker: LocalEngine, gen: int, started: float) -> None:
        self._breaker = breaker
        self._gen = gen
        self._started = started
        self._settled = False

    def __repr__(self) -> str:
        status = "settled" if self._settled else "held"
        return f"<Permit of {self._breaker.name!r}, {status}>"

    def __del__(self) -> None:
        if self._settled:
            return
        breaker, gen = self._breaker, self._gen
        if (
            gen >= 0
            and breaker._reclaims_lost_permits
            and breaker._state == HALF_OPEN
            and breaker._gen == gen
        ):
            LOST_PERMITS.append((breaker, gen, self._started))
        warnings.warn(
            f"{self!r} was never settled: settle a permit with success(), failure() or "
            "release(), or use it as a context manager",
            ResourceWarning,
            stacklevel=1,
        )

    @property
    def settled(self) -> bool:
        """Whether the outcome has been recorded."""
        return self._settled

    def success(self) -> None:
        """The operation succeeded."""
        self._breaker._complete(self._gen, self._take(SUCCESS), self._started, None)

    def failure(self, exc: BaseException | None = None) -> None:
        """The operation failed (``exc``, if given, goes to call sinks).

        Raises:
            TypeError: ``exc`` is neither an exception nor ``None`` (nothing is settled).
        """
        if exc is not None and not isinstance(exc, BaseException):
            raise TypeError(
                "Permit.failure takes the exception the operation raised, or nothing, got "
                f"{type(exc).__name__}: {exc!r}"
            )
        self._breaker._complete(self._gen, self._take(FAILED), self._started, exc)

    def release(self) -> None:
        """Give the permit back without an outcome (neutral)."""
        self._breaker._complete(self._gen, self._take(NEUTRAL), self._started, None)

    def _take(self, outcome: int) -> int:
        """Mark the permit settled, exactly once, whichever thread settles it."""
        with self._breaker._lock:
            if self._settled:
                raise RuntimeError(f"{self!r} is already settled: a permit settles once")
            self._settled = True
        return outcome

    def _judge(self, exc: BaseException | None) -> int:
        """The outcome of a block that ended with ``exc`` (``None``: normally)."""
        return SUCCESS if exc is None else self._breaker._judge_exception(exc)[0]

    def _end(self, exc: BaseException | None) -> None:
        """Settle, unless settled already, as a block that ended with ``exc`` (or normally)."""
        if not self._settled:
            self._breaker._complete(self._gen, self._take(self._judge(exc)), self._started, exc)

    async def _aend(self, exc: BaseException | None) -> None:
        """:meth:`_end` for asyncio code."""
        if not self._settled:
            outcome = self._take(self._judge(exc))
            await self._breaker._acomplete(self._gen, outcome, self._started, exc)

    def __enter__(self) -> Permit:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self._end(exc_info[1])

    async def __aenter__(self) -> Permit:
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self._aend(exc_info[1])


class Guards(LocalEngine):
    """``acquire``/``aacquire`` and ``with``/``async with`` on a breaker."""

    __slots__ = ()

    def acquire(self) -> Permit:
        """Admit one operation now: a :class:`Permit` to settle when it is done.

        Raises:
            CircuitOpenError: refused (the fallback is not used: there is no call to
                answer for).
        """
        gen = self._gen  # read first, as call() does: a stale outcome is then dropped
        if self._state != CLOSED:
            gen = self._admit()
        return self._permit(gen)

    async def aacquire(self) -> Permit:
        """:meth:`acquire` for asyncio code.

        A shared breaker asks the store without blocking the event loop.
        """
        return self.acquire()

    def _permit(self, gen: int) -> Permit:
        """The permit of an admission, or the refusal."""
        if gen >= 0 or gen == _BYPASS:  # its start: a call sink added before it settles needs it
            return Permit(self, gen, self._clock.monotonic())
        if not self._enforce:  # shadow mode: it runs, unseen, as if refused
            next(self._shadowed or self._shadow_count)
            return Permit(self, _SHADOW, self._clock.monotonic())
        raise self._refusal()

    def __enter__(self) -> Permit:
        permit = self.acquire()
        _HELD.set((*_HELD.get(), permit))
        return permit

    def __exit__(self, *exc_info: Any) -> None:
        self._release_held().__exit__(*exc_info)

    async def __aenter__(self) -> Permit:
        permit = await self.aacquire()
        _HELD.set((*_HELD.get(), permit))
        return permit

    async def __aexit__(self, *exc_info: Any) -> None:
        await self._release_held().__aexit__(*exc_info)

    def _release_held(self) -> Permit:
        """The innermost permit this thread or task holds on this breaker, let go."""
        held = _HELD.get()
        for index in range(len(held) - 1, -1, -1):
            if held[index]._breaker is self:
                _HELD.set(held[:index] + held[index + 1 :])
                return held[index]
        raise RuntimeError(f"{self!r}: a with block ends that this task never entered")


def guard_generator(
    breaker: Guards, func: Callable[..., Generator[Any, Any, Any]], args: Any, kwargs: Any
) -> Generator[Any, Any, Any]:
    """Iterate ``func(*args, **kwargs)`` under one permit, taken when iteration starts.

    An exception the generator raises is judged as ``call`` judges it and re-raised;
    exhaustion, or an early ``close()``, is a success.
    """
    permit = breaker.acquire()
    try:
        result = yield from func(*args, **kwargs)
    except GeneratorExit:
        permit.success()
        raise
    except BaseException as exc:
        permit._end(exc)
        raise
    permit.success()
    return result


async def guard_async_generator(
    breaker: Guards, func: Callable[..., AsyncIterator[Any]], args: Any, kwargs: Any
) -> AsyncGenerator[Any]:
    """:func:`guard_generator` for async generators (values only: ``asend`` is not relayed)."""
    permit = await breaker.aacquire()
    try:
        async for item in func(*args, **kwargs):
            yield item
    except GeneratorExit:
        await permit._aend(None)
        raise
    except BaseException as exc:
        await permit._aend(exc)
        raise
    await permit._aend(None)


def decorate(breaker: CircuitBreaker, func: Callable[..., Any]) -> Callable[..., Any]:
    """``@breaker`` on ``func``: the wrapper that runs each of its calls through ``breaker``.

    A generator function (sync or async) gets a wrapper of its own kind, guarded by one
    permit per stream; an ``async def`` (or an object whose ``__call__`` is one) goes
    through ``acall``; anything else through ``call``.

    Raises:
        TypeError: ``func`` is not callable (``@breaker`` on something else).
    """
    if not callable(func):
        raise TypeError(
            f"@breaker decorates a function (or any callable), got {type(func).__name__}: {func!r}"
        )
    if inspect.isgeneratorfunction(func):

        @functools.wraps(func)
        def generator_wrapper(*args: Any, **kwargs: Any) -> Any:
            # A generator function itself, so that inspect (and frameworks) see one.
            return (yield from guard_generator(breaker, func, args, kwargs))

        return generator_wrapper
    if inspect.isasyncgenfunction(func):

        @functools.wraps(func)
        async def async_generator_wrapper(*args: Any, **kwargs: Any) -> Any:
            # An async generator function itself, so that inspect sees one; it closes
            # the guarded stream as it is closed (async for would leave that to the GC).
            stream = guard_async_generator(breaker, func, args, kwargs)
            try:
                async for item in stream:
                    yield item
            finally:
                await stream.aclose()

        return async_generator_wrapper
    # An object with an async __call__ too, a descriptor (with __get__) among them.
    if is_async_callable(func):

        @functools.wraps(func)
        async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
            return await breaker.acall(func, *args, **kwargs)

        return async_wrapper

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return breaker.call(func, *args, **kwargs)

    return wrapper
