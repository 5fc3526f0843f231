"""The breakers under test, each set up for each path, as :class:`~_harness.Case` objects.

Every library is driven through its own idiomatic call path: ``breaker.call(op)`` for
breaker_fsm, pybreaker and aiobreaker, the decorated function for circuitbreaker and
purgatory (whose ``call`` does not check the state, or which has none). Failure thresholds
that must not be reached are set to 10**9; open durations that must not elapse to 10**6 s.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NoReturn

from _harness import Case

import breaker_fsm
from breaker_fsm import BreakerPolicy, CircuitBreaker, CircuitOpenError, CountWindow, TimeWindow

NEVER = 10**9  # a failure threshold that is never reached
LONG = 10**6  # an open duration that never elapses (seconds)


class Boom(RuntimeError):
    """The operation's failure."""


def op() -> int:
    return 1


def fail() -> NoReturn:
    raise Boom("down")


async def aop() -> int:
    return 1


async def afail() -> NoReturn:
    raise Boom("down")


def sleep_op() -> None:
    """An operation that takes 1 ms and releases the GIL, as I/O does."""
    threading.Event().wait(0.001)


# --------------------------------------------------------------------------- the floor


class FloorOpen(Exception):
    """The floor's rejection."""


class Floor:
    """The hand-written floor of issue 7: slots, an int state, a counter, a lock on change."""

    __slots__ = ("failures", "lock", "state", "threshold")

    def __init__(self, threshold: int = 5) -> None:
        self.state = 0
        self.failures = 0
        self.threshold = threshold
        self.lock = threading.Lock()

    def call(self, func: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        if self.state:
            raise FloorOpen
        try:
            result = func(*args, **kwargs)
        except Exception:
            with self.lock:
                self.failures += 1
                if self.failures >= self.threshold:
                    self.state = 1
            raise
        if self.failures:
            with self.lock:
                self.failures = 0
        return result

    async def acall(self, func: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        if self.state:
            raise FloorOpen
        try:
            result = await func(*args, **kwargs)
        except Exception:
            with self.lock:
                self.failures += 1
                if self.failures >= self.threshold:
                    self.state = 1
            raise
        if self.failures:
            with self.lock:
                self.failures = 0
        return result


# --------------------------------------------------------------------------- subjects


@dataclass
class Subject:
    """One breaker implementation (or configuration) and how to drive it on each path."""

    name: str
    label: str
    # Each builder returns a fresh Case, or None when the library has no such path.
    success: Callable[[Callable[[], Any]], Case | None]  # takes the operation to run
    asuccess: Callable[[], Case | None]
    reject: Callable[[], Case | None]
    areject: Callable[[], Case | None]
    failure: Callable[[], Case | None]
    afailure: Callable[[], Case | None]
    alternate: Callable[[], Case | None]
    new: Callable[[str], Any] | None  # builds one never-used breaker, for bytes per breaker
    version: str = ""


def _none() -> None:
    return None


ALT = "{call_ok}\ntry:\n    {call_fail}\nexcept _catch:\n    pass"


def _alternate(call_ok: str, call_fail: str, ns: dict[str, Any], catch: Any) -> Case:
    """One success then one failure (caught), in one statement."""
    stmt = ALT.format(call_ok=call_ok, call_fail=call_fail)
    return Case(stmt, {**ns, "_catch": catch})


def bare() -> Subject:
    ns = {"op": op, "fail": fail, "aop": aop, "afail": afail}
    return Subject(
        "bare",
        "bare call",
        success=lambda fn: Case("op()", {**ns, "op": fn}),
        asuccess=lambda: Case("await aop()", ns, is_async=True),
        reject=lambda: Case("fail()", ns, catch=Boom),
        areject=lambda: Case("await afail()", ns, is_async=True, catch=Boom),
        failure=lambda: Case("fail()", ns, catch=Boom),
        afailure=lambda: Case("await afail()", ns, is_async=True, catch=Boom),
        alternate=lambda: _alternate("op()", "fail()", ns, Boom),
        new=None,
    )


def floor() -> Subject:
    def made(fn: Callable[[], Any] = op, **kw: Any) -> dict[str, Any]:
        floor = Floor(**kw)
        return {
            "c": floor.call,
            "ac": floor.acall,
            "op": fn,
            "fail": fail,
            "aop": aop,
            "afail": afail,
        }

    def rejecting(is_async: bool = False) -> Case:
        f = Floor()
        f.state = 1
        ns = {"c": f.call, "ac": f.acall, "op": op, "aop": aop}
        stmt = "await ac(aop)" if is_async else "c(op)"
        return Case(stmt, ns, is_async=is_async, catch=FloorOpen)

    return Subject(
        "floor",
        "hand-written floor",
        success=lambda fn: Case("c(op)", made(fn)),
        asuccess=lambda: Case("await ac(aop)", made(), is_async=True),
        reject=rejecting,
        areject=lambda: rejecting(True),
        failure=lambda: Case("c(fail)", made(threshold=NEVER), catch=Boom),
        afailure=lambda: Case("await ac(afail)", made(threshold=NEVER), is_async=True, catch=Boom),
        alternate=lambda: _alternate("c(op)", "c(fail)", made(), Boom),
        new=lambda name: Floor(),
    )


def fsm(label: str, name: str, **policy: Any) -> Subject:
    """breaker_fsm with ``BreakerPolicy(**policy)``."""
    pol = BreakerPolicy(**policy)

    def variant(**update: Any) -> BreakerPolicy:
        return BreakerPolicy(**{**policy, **update})

    def ns(breaker: CircuitBreaker) -> dict[str, Any]:
        return {
            "c": breaker.call,
            "ac": breaker.acall,
            "op": op,
            "fail": fail,
            "aop": aop,
            "afail": afail,
        }

    def tripped() -> CircuitBreaker:
        breaker = CircuitBreaker("bench", variant(reset_timeout=LONG, failure_threshold=1))
        with contextlib.suppress(Boom):
            breaker.call(fail)
        assert breaker.state == "open"
        return breaker

    def never(**extra: Any) -> CircuitBreaker:
        return CircuitBreaker("bench", variant(failure_threshold=NEVER, **extra))

    def alternating() -> Case:
        # failure_rate_threshold=1.0: alternating outcomes (a rate of 0.5) never trip.
        update = {"failure_rate_threshold": 1.0} if pol.window is not None else {}
        breaker = CircuitBreaker("bench", variant(**update))
        return _alternate("c(op)", "c(fail)", ns(breaker), Boom)

    return Subject(
        name,
        label,
        success=lambda fn: Case("c(op)", {**ns(CircuitBreaker("bench", pol)), "op": fn}),
        asuccess=lambda: Case("await ac(aop)", ns(CircuitBreaker("bench", pol)), is_async=True),
        reject=lambda: Case("c(op)", ns(tripped()), catch=CircuitOpenError),
        areject=lambda: Case("await ac(aop)", ns(tripped()), is_async=True, catch=CircuitOpenError),
        # With a window every failure would trip it at minimum_calls: the consecutive rule
        # alone (default policy) is measured here, the windows by the alternating pattern.
        failure=(lambda: Case("c(fail)", ns(never()), catch=Boom)) if pol.window is None else _none,
        afailure=(
            (lambda: Case("await ac(afail)", ns(never()), is_async=True, catch=Boom))
            if pol.window is None
            else _none
        ),
        alternate=alternating,
        new=lambda name: CircuitBreaker(name, pol),
        version=getattr(breaker_fsm, "__version__", "0.1.0"),
    )


def pybreaker_subject() -> Subject:
    import pybreaker

    def ns(fn: Callable[[], Any] = op, **kw: Any) -> dict[str, Any]:
        return {"c": pybreaker.CircuitBreaker(**kw).call, "op": fn, "fail": fail}

    def tripped() -> Case:
        breaker = pybreaker.CircuitBreaker(fail_max=1, reset_timeout=LONG)
        with contextlib.suppress(Exception):
            breaker.call(fail)
        assert breaker.current_state == "open"
        return Case("c(op)", {"c": breaker.call, "op": op}, catch=pybreaker.CircuitBreakerError)

    return Subject(
        "pybreaker",
        "pybreaker",
        success=lambda fn: Case("c(op)", ns(fn)),
        asuccess=_none,  # its call_async needs tornado
        reject=tripped,
        areject=_none,
        failure=lambda: Case("c(fail)", ns(fail_max=NEVER), catch=Boom),
        afailure=_none,
        alternate=lambda: _alternate("c(op)", "c(fail)", ns(), Boom),
        new=lambda name: pybreaker.CircuitBreaker(name=name),
        version=_version("pybreaker"),
    )


_names = itertools.count()


def circuitbreaker_subject() -> Subject:
    import circuitbreaker

    def decorated(
        threshold: int = 5, recovery: int = 30, fn: Callable[[], Any] = op
    ) -> dict[str, Any]:
        breaker = circuitbreaker.CircuitBreaker(
            failure_threshold=threshold, recovery_timeout=recovery, name=f"cb{next(_names)}"
        )
        return {
            "w_op": breaker(fn),
            "w_fail": breaker(fail),
            "w_aop": breaker(aop),
            "w_afail": breaker(afail),
        }

    def tripped(is_async: bool) -> Case:
        ns = decorated(threshold=1, recovery=LONG)
        with contextlib.suppress(Boom):
            ns["w_fail"]()
        stmt = "await w_aop()" if is_async else "w_op()"
        return Case(stmt, ns, is_async=is_async, catch=circuitbreaker.CircuitBreakerError)

    return Subject(
        "circuitbreaker",
        "circuitbreaker",
        success=lambda fn: Case("w_op()", decorated(fn=fn)),
        asuccess=lambda: Case("await w_aop()", decorated(), is_async=True),
        reject=lambda: tripped(False),
        areject=lambda: tripped(True),
        failure=lambda: Case("w_fail()", decorated(threshold=NEVER), catch=Boom),
        afailure=lambda: Case(
            "await w_afail()", decorated(threshold=NEVER), is_async=True, catch=Boom
        ),
        alternate=lambda: _alternate("w_op()", "w_fail()", decorated(), Boom),
        new=lambda name: circuitbreaker.CircuitBreaker(name=name),
        version=_version("circuitbreaker"),
    )


def aiobreaker_subject() -> Subject:
    from datetime import timedelta

    import aiobreaker

    def ns(fn: Callable[[], Any] = op, **kw: Any) -> dict[str, Any]:
        breaker = aiobreaker.CircuitBreaker(**kw)
        return {
            "c": breaker.call,
            "ac": breaker.call_async,
            "op": fn,
            "fail": fail,
            "aop": aop,
            "afail": afail,
        }

    def tripped(is_async: bool) -> Case:
        breaker = aiobreaker.CircuitBreaker(fail_max=1, timeout_duration=timedelta(seconds=LONG))
        with contextlib.suppress(Exception):
            breaker.call(fail)
        names = {"c": breaker.call, "ac": breaker.call_async, "op": op, "aop": aop}
        stmt = "await ac(aop)" if is_async else "c(op)"
        return Case(stmt, names, is_async=is_async, catch=aiobreaker.CircuitBreakerError)

    return Subject(
        "aiobreaker",
        "aiobreaker",
        success=lambda fn: Case("c(op)", ns(fn)),
        asuccess=lambda: Case("await ac(aop)", ns(), is_async=True),
        reject=lambda: tripped(False),
        areject=lambda: tripped(True),
        failure=lambda: Case("c(fail)", ns(fail_max=NEVER), catch=Boom),
        afailure=lambda: Case("await ac(afail)", ns(fail_max=NEVER), is_async=True, catch=Boom),
        alternate=lambda: _alternate("c(op)", "c(fail)", ns(), Boom),
        new=lambda name: aiobreaker.CircuitBreaker(name=name),
        version=_version("aiobreaker"),
    )


def purgatory_subject(loop: asyncio.AbstractEventLoop) -> Subject:
    import purgatory
    from purgatory.domain.model import OpenedState

    def sync_ns(threshold: int = 5, ttl: int = 30, fn: Callable[[], Any] = op) -> dict[str, Any]:
        factory = purgatory.SyncCircuitBreakerFactory(default_threshold=threshold, default_ttl=ttl)
        name = f"p{next(_names)}"
        return {"w_op": factory(name)(fn), "w_fail": factory(name)(fail)}

    def async_ns(threshold: int = 5, ttl: int = 30) -> dict[str, Any]:
        factory = purgatory.AsyncCircuitBreakerFactory(default_threshold=threshold, default_ttl=ttl)
        name = f"p{next(_names)}"
        return {"w_aop": factory(name)(aop), "w_afail": factory(name)(afail)}

    def tripped(is_async: bool) -> Case:
        if is_async:
            ns = async_ns(threshold=1, ttl=LONG)
            with contextlib.suppress(Boom):
                loop.run_until_complete(ns["w_afail"]())
            return Case("await w_aop()", ns, is_async=True, catch=OpenedState)
        ns = sync_ns(threshold=1, ttl=LONG)
        with contextlib.suppress(Boom):
            ns["w_fail"]()
        return Case("w_op()", ns, catch=OpenedState)

    def new(name: str) -> Any:
        return _PURGATORY_FACTORY.get_breaker(name)

    _PURGATORY_FACTORY = purgatory.SyncCircuitBreakerFactory()
    return Subject(
        "purgatory",
        "purgatory",
        success=lambda fn: Case("w_op()", sync_ns(fn=fn)),
        asuccess=lambda: Case("await w_aop()", async_ns(), is_async=True),
        reject=lambda: tripped(False),
        areject=lambda: tripped(True),
        failure=lambda: Case("w_fail()", sync_ns(threshold=NEVER), catch=Boom),
        afailure=lambda: Case(
            "await w_afail()", async_ns(threshold=NEVER), is_async=True, catch=Boom
        ),
        alternate=lambda: _alternate("w_op()", "w_fail()", sync_ns(), Boom),
        new=new,
        version=_version("purgatory"),
    )


def _version(dist: str) -> str:
    from importlib.metadata import version

    return version(dist)


def all_subjects(loop: asyncio.AbstractEventLoop) -> list[Subject]:
    """Bare, the floor, breaker_fsm's three configurations, then the four peers."""
    return [
        bare(),
        floor(),
        fsm("breaker_fsm (default policy)", "fsm"),
        fsm("breaker_fsm CountWindow(size=100)", "fsm_count", window=CountWindow(size=100)),
        fsm("breaker_fsm TimeWindow(seconds=60)", "fsm_time", window=TimeWindow(seconds=60)),
        pybreaker_subject(),
        circuitbreaker_subject(),
        aiobreaker_subject(),
        purgatory_subject(loop),
    ]
