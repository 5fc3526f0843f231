"""``BreakerPolicy.call_timeout``: a timeout the breaker owns and counts.

The async tests run on an event loop whose clock is the test's FakeClock, so a timeout
expires when the test advances the clock, never by waiting.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from breaker_fsm import (
    BreakerPolicy,
    CallRecord,
    CallTimeoutError,
    CircuitBreaker,
    CountWindow,
    TimeWindow,
)
from breaker_fsm.testing import FakeClock
from tests.redis_server import StoreFactory

Make = Callable[..., CircuitBreaker]


@pytest.fixture(params=["memory", "shared"])
def make(request: pytest.FixtureRequest, clock: FakeClock) -> Make:
    """``make(policy, **options)``: a breaker on ``clock``, in memory or sharing state on a
    real redis-server (whose scripts read the same clock)."""
    stores: list[Any] = []

    def build(policy: BreakerPolicy, **options: Any) -> CircuitBreaker:
        if request.param == "shared":
            factory: StoreFactory = request.getfixturevalue("redis_stores")
            options["store"] = factory(now=clock.monotonic)
            stores.append(options["store"])
        return CircuitBreaker("svc", policy, clock=clock, **options)

    build.stores = stores  # type: ignore[attr-defined]  # closed on the loop that used them
    return build


class FakeTimeLoop(asyncio.SelectorEventLoop):
    """An event loop whose ``time()`` is a FakeClock's monotonic reading."""

    def __init__(self, clock: FakeClock) -> None:
        super().__init__()
        self.clock = clock

    def time(self) -> float:
        return self.clock.monotonic()


def run(clock: FakeClock, main: Callable[[], Awaitable[Any]], make: Make | None = None) -> Any:
    """Run ``main()`` on a FakeTimeLoop; then close ``make``'s stores' asyncio clients."""

    async def scenario() -> Any:
        try:
            return await main()
        finally:
            for store in getattr(make, "stores", ()):
                await store.aclose()

    with asyncio.Runner(loop_factory=lambda: FakeTimeLoop(clock)) as runner:
        return runner.run(scenario())


class Hang:
    """A dependency that never answers; :meth:`advance` moves the clock once a call hangs
    in it (a shared breaker's admission may take a round trip before the call starts)."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.waiting = asyncio.Event()

    async def __call__(self) -> None:
        self.waiting.set()
        await asyncio.get_running_loop().create_future()

    async def advance(self, seconds: float) -> None:
        """Wait until a call hangs here, then move the clock on by ``seconds``."""
        await self.waiting.wait()
        self.waiting.clear()
        self.clock.advance(seconds)


@pytest.mark.parametrize(
    "lists",
    [{"record_exceptions": (KeyError,)}, {"ignore_exceptions": (TimeoutError,)}],
    ids=["not-recorded", "ignored"],
)
def test_acall_times_out_and_counts_a_failure(
    make: Make, clock: FakeClock, lists: dict[str, Any]
) -> None:
    """Past call_timeout acall cancels the call, raises CallTimeoutError (a TimeoutError
    naming the breaker and the limit) and records a failure, whatever the exception lists
    say: the limit is the breaker's own."""
    policy = BreakerPolicy(failure_threshold=2, call_timeout=5, **lists)
    records: list[CallRecord] = []
    breaker = make(policy, call_sinks=[records.append])

    async def main() -> None:
        hang = Hang(clock)
        for _ in range(2):
            advancer = asyncio.create_task(hang.advance(5))
            with pytest.raises(TimeoutError) as caught:
                await breaker.acall(hang)
            assert type(caught.value) is CallTimeoutError
            assert (caught.value.breaker, caught.value.timeout) == ("svc", 5)
            assert str(caught.value) == "breaker 'svc': the call took call_timeout (5 s)"
            assert isinstance(caught.value.__cause__, asyncio.CancelledError)
            await advancer

    run(clock, main, make)
    assert breaker.state == "open"
    assert breaker.metrics().error_count == 2
    assert [(r.outcome, r.duration) for r in records] == [("failure", 5.0)] * 2


def test_the_operations_own_timeout_is_judged_as_raised(clock: FakeClock) -> None:
    """A TimeoutError the operation raises in time is its own answer, judged by the lists."""
    policy = BreakerPolicy(failure_threshold=1, call_timeout=5, ignore_exceptions=(TimeoutError,))
    breaker = CircuitBreaker("svc", policy, clock=clock)

    async def gives_up() -> None:
        raise TimeoutError("upstream said so")

    with pytest.raises(TimeoutError, match="upstream said so") as caught:
        run(clock, lambda: breaker.acall(gives_up))
    assert type(caught.value) is TimeoutError
    metrics = breaker.metrics()
    assert (metrics.state, metrics.error_count, metrics.ignored_count) == ("closed", 0, 1)


def test_a_call_in_time_is_not_touched(clock: FakeClock) -> None:
    """A call that answers before call_timeout gets its arguments, returns its value and
    counts a success."""
    breaker = CircuitBreaker("svc", BreakerPolicy(call_timeout=5), clock=clock)

    async def quick(value: str, *, suffix: str) -> str:
        clock.advance(4.5)
        return value + suffix

    assert run(clock, lambda: breaker.acall(quick, "o", suffix="k")) == "ok"
    assert breaker.metrics().success_count == 1


def test_wait_for_outside_acall_stays_neutral(make: Make, clock: FakeClock) -> None:
    """A timeout the caller owns (asyncio.wait_for around acall) cancels the call: that is
    neutral, not a failure of the dependency."""
    breaker = make(BreakerPolicy(failure_threshold=1))

    async def main() -> None:
        hang = Hang(clock)
        advancer = asyncio.create_task(hang.advance(1))
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(breaker.acall(hang), 1)
        await advancer

    run(clock, main, make)
    metrics = breaker.metrics()
    assert (metrics.state, metrics.error_count, metrics.ignored_count) == ("closed", 0, 1)


def test_wait_for_outside_is_neutral_while_call_timeout_inside_trips(
    make: Make, clock: FakeClock
) -> None:
    """On one breaker with call_timeout=5: wait_for(acall, 1) outside expires first and is
    neutral, however often; wait_for(acall, 10) lets the breaker's own timeout expire at 5,
    which is a failure and trips it."""
    breaker = make(BreakerPolicy(failure_threshold=1, call_timeout=5))

    async def main() -> None:
        hang = Hang(clock)
        for _ in range(3):
            advancer = asyncio.create_task(hang.advance(1))
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(breaker.acall(hang), 1)
            await advancer
        assert breaker.state == "closed"
        advancer = asyncio.create_task(hang.advance(5))
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(breaker.acall(hang), 10)
        await advancer

    run(clock, main, make)
    metrics = breaker.metrics()
    assert (metrics.state, metrics.error_count, metrics.ignored_count) == ("open", 1, 3)
    assert breaker.audit[-1].event == "trip"


def test_call_records_a_late_return_as_a_failure(make: Make, clock: FakeClock) -> None:
    """call cannot interrupt a thread: a call that returns after call_timeout keeps its
    result, and is recorded as a failure."""
    breaker = make(BreakerPolicy(failure_threshold=1, call_timeout=2))

    def slow() -> str:
        clock.advance(2)
        return "late"

    assert breaker.call(slow) == "late"
    assert breaker.state == "open"
    assert breaker.audit[-1].event == "trip"


def test_a_late_return_is_a_failure_in_a_time_window_that_counts_successes_lock_free(
    clock: FakeClock,
) -> None:
    """A time window counts plain successes without the lock once it holds minimum_calls
    outcomes; a call that returns after call_timeout is no plain success: a failure."""
    policy = BreakerPolicy(
        failure_threshold=None, window=TimeWindow(seconds=60), minimum_calls=2, call_timeout=0.5
    )
    breaker = CircuitBreaker("svc", policy, clock=clock)
    breaker.call(lambda: "ok")
    breaker.call(lambda: "ok")

    def late() -> str:
        clock.advance(0.5)  # call_timeout exactly, in the same second (the newest bucket)
        return "late"

    assert breaker.call(late) == "late"
    metrics = breaker.metrics()
    assert (metrics.success_count, metrics.error_count, metrics.window_calls) == (2, 1, 3)
    assert metrics.failure_rate == pytest.approx(1 / 3)


@pytest.mark.parametrize(("took", "raises"), [(6, False), (1.5, True)], ids=["late", "raised"])
def test_a_slow_failure_is_both_slow_and_a_failure(
    make: Make, clock: FakeClock, took: float, raises: bool
) -> None:
    """A call past slow_call_duration that fails, by raising or by ending past
    call_timeout, counts as a failure and as slow: the two flags add up."""
    records: list[CallRecord] = []
    policy = BreakerPolicy(
        window=CountWindow(size=10), slow_call_duration=1, call_timeout=5, minimum_calls=5
    )
    breaker = make(policy, call_sinks=[records.append])

    def slow() -> str:
        clock.advance(took)
        if raises:
            raise ConnectionError("down")
        return "late"

    if raises:
        with pytest.raises(ConnectionError):
            breaker.call(slow)
    else:
        assert breaker.call(slow) == "late"
    assert [(r.outcome, r.slow) for r in records] == [("failure", True)]
    metrics = breaker.metrics()
    assert (metrics.error_count, metrics.success_count, metrics.slow_call_count) == (1, 0, 1)


def test_a_permit_settled_late_is_a_failure(make: Make, clock: FakeClock) -> None:
    """call_timeout applies from acquire to settle, as slow-call timing does."""
    breaker = make(BreakerPolicy(call_timeout=1))
    permit = breaker.acquire()
    clock.advance(1)
    permit.success()
    assert breaker.metrics().error_count == 1


def test_call_timeout_round_trips_and_is_checked() -> None:
    """call_timeout is a duration: JSON round-trips, ISO-8601 accepted, zero refused."""
    policy = BreakerPolicy(call_timeout="PT1.5S")
    assert policy.call_timeout == 1.5
    assert BreakerPolicy.model_validate_json(policy.model_dump_json()) == policy
    with pytest.raises(ValueError, match="call_timeout"):
        BreakerPolicy(call_timeout=0)
