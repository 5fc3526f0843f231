"""Regression guard for the hot paths: no cyclic garbage, nothing retained per call.

Not a timing test, so it cannot be flaky: with the collector off, N calls are run on one
path; ``gc.collect()`` must then find nothing, and the bytes still allocated afterwards
(``tracemalloc``) must not grow with N (1 000 calls against 10 000).
"""

from __future__ import annotations

import asyncio
import gc
import tracemalloc
from collections.abc import Callable, Iterator
from typing import Any, NoReturn

import pytest

from breaker_fsm import BreakerPolicy, CircuitBreaker, CircuitOpenError, CountWindow, TimeWindow
from breaker_fsm.testing import FakeClock
from tests.helpers import Boom, Ignored, Interrupt, aboom, aok, boom, ok

SMALL, LARGE = 1_000, 10_000
#: Allowed difference between the LARGE and the SMALL run: a leak of even one byte per
#: call would be 9 000 bytes; a few hundred bytes of constant noise (an int that grew past
#: the small-int cache, a dict that resized once) are not a leak.
SLACK = 2_048


Run = Callable[[int], None]


def footprint(run: Run, n: int) -> tuple[int, int]:
    """``(cyclic garbage, bytes retained)`` after ``run(n)``, with the collector off."""
    run(200)  # warm-up: lazily built parts, interned values, caches
    gc.collect()
    gc.disable()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        run(n)
        garbage = gc.collect()
        retained = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
        gc.enable()
    return garbage, retained


def assert_clean(run: Run) -> None:
    """No cyclic garbage at either size, and no growth from SMALL to LARGE calls."""
    garbage_small, retained_small = footprint(run, SMALL)
    garbage_large, retained_large = footprint(run, LARGE)
    assert (garbage_small, garbage_large) == (0, 0)
    assert retained_large - retained_small < SLACK, (retained_small, retained_large)


def calling(breaker: CircuitBreaker, func: Callable[[], Any], *expected: type) -> Run:
    """``run(n)``: n sync calls of ``func`` through ``breaker``, expected errors caught."""
    call = breaker.call
    catch = expected or ()

    def run(n: int) -> None:
        for _ in range(n):
            try:  # noqa: SIM105 - suppress() would allocate a context manager per call
                call(func)
            except catch:
                pass

    return run


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    """A private event loop."""
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


def awaiting(
    loop: asyncio.AbstractEventLoop,
    breaker: CircuitBreaker,
    func: Callable[[], Any],
    *expected: type,
) -> Run:
    """``run(n)``: n awaited calls of ``func`` through ``breaker``, in one task."""
    acall = breaker.acall
    catch = expected or ()

    async def body(n: int) -> None:
        for _ in range(n):
            try:  # noqa: SIM105 - suppress() would allocate a context manager per call
                await acall(func)
            except catch:
                pass

    def run(n: int) -> None:
        loop.run_until_complete(body(n))

    return run


def tripped(policy: BreakerPolicy | None = None, **kwargs: Any) -> CircuitBreaker:
    """A breaker that has just tripped (open for a long time)."""
    policy = policy or BreakerPolicy(failure_threshold=1, reset_timeout=3600)
    breaker = CircuitBreaker("svc", policy, **kwargs)
    calling(breaker, boom, Boom)(1)
    assert breaker.state == "open"
    return breaker


WINDOWS = {
    "default": None,
    "count-window": CountWindow(size=100),
    "time-window": TimeWindow(seconds=60),
}
POLICIES = {name: BreakerPolicy(window=window) for name, window in WINDOWS.items()}


@pytest.mark.parametrize("policy", POLICIES.values(), ids=POLICIES.keys())
def test_closed_success_sync(policy: BreakerPolicy) -> None:
    """Successful sync calls through a closed breaker leave nothing behind."""
    assert_clean(calling(CircuitBreaker("svc", policy), ok))


@pytest.mark.parametrize("policy", POLICIES.values(), ids=POLICIES.keys())
def test_closed_success_async(policy: BreakerPolicy, loop: asyncio.AbstractEventLoop) -> None:
    """Successful awaited calls through a closed breaker leave nothing behind."""
    assert_clean(awaiting(loop, CircuitBreaker("svc", policy), aok))


def test_failure_below_threshold_sync() -> None:
    """Failed sync calls that do not trip leave no exception/traceback/frame cycle."""
    breaker = CircuitBreaker("svc", BreakerPolicy(failure_threshold=10**9))
    assert_clean(calling(breaker, boom, Boom))


def test_failure_below_threshold_async(loop: asyncio.AbstractEventLoop) -> None:
    """Failed awaited calls that do not trip leave no cycle behind."""
    breaker = CircuitBreaker("svc", BreakerPolicy(failure_threshold=10**9))
    assert_clean(awaiting(loop, breaker, aboom, Boom))


@pytest.mark.parametrize(
    "window", [CountWindow(size=100), TimeWindow(seconds=60)], ids=["count", "time"]
)
def test_alternating_outcomes_in_a_window(window: CountWindow | TimeWindow) -> None:
    """Alternating successes and failures in a window (rate 1.0, never trips) leave nothing."""
    breaker = CircuitBreaker("svc", BreakerPolicy(window=window, failure_rate_threshold=1.0))
    succeed, failing = calling(breaker, ok), calling(breaker, boom, Boom)

    def run(n: int) -> None:
        for _ in range(n // 2):
            succeed(1)
            failing(1)

    assert_clean(run)
    assert breaker.state == "closed"


def test_ignored_unrecorded_and_neutral_exceptions() -> None:
    """Classified exceptions (ignored, not recorded, BaseException) leave nothing behind."""
    breaker = CircuitBreaker(
        "svc",
        BreakerPolicy(record_exceptions=(Boom,), ignore_exceptions=(Ignored,)),
    )
    kinds: list[type[BaseException]] = [Ignored]

    def raising() -> NoReturn:
        raise kinds[0]()

    def run(n: int) -> None:
        for i in range(n):
            kinds[0] = (Ignored, ValueError, Interrupt)[i % 3]
            try:  # noqa: SIM105 - suppress() would allocate a context manager per call
                breaker.call(raising)
            except (Exception, Interrupt):
                pass

    assert_clean(run)
    assert breaker.state == "closed"


@pytest.mark.parametrize("window", WINDOWS.values(), ids=WINDOWS.keys())
def test_rejection_while_open_sync(window: CountWindow | TimeWindow | None) -> None:
    """Refused sync calls (CircuitOpenError) leave no cycle and retain nothing."""
    breaker = tripped(BreakerPolicy(failure_threshold=1, reset_timeout=3600, window=window))
    assert_clean(calling(breaker, ok, CircuitOpenError))


def test_rejection_while_open_async(loop: asyncio.AbstractEventLoop) -> None:
    """Refused awaited calls leave no cycle and retain nothing."""
    assert_clean(awaiting(loop, tripped(), aok, CircuitOpenError))


def test_long_run_of_rejections_retains_nothing() -> None:
    """30 000 refusals in a row retain no more than 1 000 do (no growing shared traceback)."""
    breaker = tripped()
    run = calling(breaker, ok, CircuitOpenError)
    garbage_small, retained_small = footprint(run, SMALL)
    garbage_large, retained_large = footprint(run, 30 * SMALL)
    assert (garbage_small, garbage_large) == (0, 0)
    assert retained_large - retained_small < SLACK
    assert breaker.metrics().rejected_count == 200 + SMALL + 200 + 30 * SMALL


def test_rejection_while_forced_open() -> None:
    """Refusals while forced open leave nothing behind."""
    breaker = CircuitBreaker("svc")
    breaker.send("force_open")
    assert_clean(calling(breaker, ok, CircuitOpenError))


def test_rejection_while_half_open_is_full() -> None:
    """Refusals while the only half-open trial is in flight leave nothing behind."""
    clock = FakeClock()
    breaker = tripped(clock=clock)
    clock.advance(3600)
    inner = calling(breaker, ok, CircuitOpenError)
    seen: list[tuple[int, int, int, int]] = []

    def trial() -> None:  # holds the one permit while the refusals are measured
        assert breaker.state == "half_open"
        seen.append((*footprint(inner, SMALL), *footprint(inner, LARGE)))

    breaker.call(trial)
    ((garbage_small, retained_small, garbage_large, retained_large),) = seen
    assert (garbage_small, garbage_large) == (0, 0)
    assert retained_large - retained_small < SLACK
    assert breaker.state == "closed"  # the trial succeeded


def test_fallback_while_open_sync() -> None:
    """Refused calls answered by a fallback leave nothing behind."""
    assert_clean(calling(tripped(fallback=lambda: 0), ok))


def test_fallback_while_open_async(loop: asyncio.AbstractEventLoop) -> None:
    """Refused awaited calls answered by a coroutine fallback leave nothing behind."""

    async def fallback() -> int:
        return 0

    assert_clean(awaiting(loop, tripped(fallback=fallback), aok))


def test_refusal_error_carries_its_fields() -> None:
    """The error a refused call raises has its public fields, read from its args."""
    with pytest.raises(CircuitOpenError) as caught:
        tripped().call(ok)
    error = caught.value
    assert (error.breaker, error.state) == ("svc", "open")
    assert error.retry_after is not None
    assert 0 < error.retry_after <= 3600
    assert error.args == (error.breaker, error.state, error.retry_after)
    assert str(error).startswith("circuit 'svc' is open; retry after ")
