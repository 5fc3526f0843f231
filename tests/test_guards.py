"""Guarding work beyond ``call``: ``with``/``async with``, permits, generators (the contract is
the README's "Ways to guard a dependency"), in memory and shared."""

from __future__ import annotations

import asyncio
import functools
import inspect
import threading
import warnings
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn

import pytest

from breaker_fsm import BreakerPolicy, CallRecord, CircuitBreaker, CircuitOpenError, CountWindow
from breaker_fsm.testing import FakeClock
from tests.helpers import Boom, CountingClock, aok, fail, ok
from tests.redis_server import StoreFactory

Make = Callable[..., CircuitBreaker]


@pytest.fixture(params=["memory", "shared"])
def make(request: pytest.FixtureRequest, clock: FakeClock) -> Make:
    """``make(options, **policy)``: a breaker (with ``options``) in memory or sharing Redis
    state (``make.stores``)."""
    made: list[Any] = []

    def build(options: dict[str, Any] | None = None, **policy: Any) -> CircuitBreaker:
        options = dict(options or {})
        if request.param == "shared":
            stores: StoreFactory = request.getfixturevalue("redis_stores")
            options["store"] = stores(now=clock.monotonic)
            made.append(options["store"])
        return CircuitBreaker("svc", BreakerPolicy(**policy), clock=clock, **options)

    build.stores = made  # type: ignore[attr-defined]
    return build


def raise_after(clock: FakeClock, seconds: float, exc: BaseException) -> NoReturn:
    """An operation that takes ``seconds`` on ``clock`` and raises ``exc``."""
    clock.advance(seconds)
    raise exc


def run(make: Make, scenario: Callable[[], Any]) -> None:
    """Run an asyncio scenario, closing any shared store's asyncio client on its loop."""

    async def main() -> None:
        try:
            await scenario()
        finally:
            for store in make.stores:  # type: ignore[attr-defined]
                await store.aclose()

    asyncio.run(main())


def test_with_block_records_success_and_failure(make: Make) -> None:
    """An exception leaving the block is judged as in call() and re-raised; a normal exit
    is a success."""
    breaker = make(failure_threshold=2)
    with breaker:
        pass
    with pytest.raises(Boom), breaker:
        raise Boom("down")
    metrics = breaker.metrics()
    assert (metrics.success_count, metrics.error_count, metrics.failure_count) == (1, 1, 1)
    with pytest.raises(Boom), breaker:
        raise Boom("down")
    assert breaker.state == "open"
    with pytest.raises(CircuitOpenError), breaker:
        pytest.fail("a refused block must not run")


def test_with_block_ignores_the_fallback(make: Make) -> None:
    """A refused with block raises CircuitOpenError even when the breaker has a fallback."""
    breaker = make({"fallback": lambda: "cached"}, failure_threshold=1)
    fail(breaker)
    assert breaker.call(lambda: "never") == "cached"
    with pytest.raises(CircuitOpenError), breaker:
        pass


def test_async_with_block(make: Make) -> None:
    """async with admits, judges and records like with."""
    breaker = make(failure_threshold=1)

    async def scenario() -> None:
        async with breaker:
            await asyncio.sleep(0)
        with pytest.raises(Boom):
            async with breaker:
                raise Boom("down")
        with pytest.raises(CircuitOpenError):
            async with breaker:
                pass

    run(make, scenario)
    assert breaker.metrics().success_count == 1
    assert breaker.state == "open"


def test_permit_settles_exactly_once(make: Make) -> None:
    """A permit records one outcome; settling it again raises RuntimeError and records
    nothing more."""
    breaker = make(failure_threshold=3)
    permit = breaker.acquire()
    assert not permit.settled
    permit.failure(Boom("down"))
    assert permit.settled
    for settle in (permit.success, permit.failure, permit.release):
        with pytest.raises(RuntimeError, match="already settled"):
            settle()
    metrics = breaker.metrics()
    assert (metrics.error_count, metrics.success_count, metrics.total_requests) == (1, 0, 1)


def test_permit_failure_takes_an_exception_or_nothing(make: Make) -> None:
    """permit.failure("oops") is refused, naming what it got, and settles nothing: the
    permit is still held and settles once, properly."""
    breaker = make(failure_threshold=3)
    permit = breaker.acquire()
    with pytest.raises(TypeError, match=r"Permit.failure takes the exception .* got str: 'oops'"):
        permit.failure("oops")  # type: ignore[arg-type]
    assert not permit.settled
    permit.failure()
    metrics = breaker.metrics()
    assert (metrics.error_count, metrics.total_requests, permit.settled) == (1, 1, True)


def test_decorating_something_that_is_not_callable_fails_at_once(make: Make) -> None:
    """@breaker on a value that cannot be called fails where it is written, not at its first
    call."""
    breaker = make()
    with pytest.raises(TypeError, match=r"@breaker decorates a function .* got int: 42"):
        breaker(42)  # type: ignore[call-overload]
    assert breaker.metrics().total_requests == 0


def test_permit_release_is_neutral_and_gives_back_the_trial(make: Make, clock: FakeClock) -> None:
    """release() counts neither way and gives the half-open trial slot back."""
    breaker = make(failure_threshold=1, reset_timeout=5)
    fail(breaker)
    clock.advance(5)
    trial = breaker.acquire()
    assert breaker.state == "half_open"
    with pytest.raises(CircuitOpenError):
        breaker.acquire()  # the one trial slot is held
    trial.release()
    second = breaker.acquire()  # given back
    second.success()
    assert breaker.state == "closed"
    assert breaker.metrics().ignored_count == 1


def test_a_lost_half_open_permit_warns_and_gives_its_trial_back(clock: FakeClock) -> None:
    """A permit garbage-collected unsettled warns; its trial slot is not held for good:
    given back as an ignored call that began when the permit was taken."""
    seen: list[CallRecord] = []
    breaker = CircuitBreaker(
        "svc",
        BreakerPolicy(failure_threshold=1, reset_timeout=5),
        clock=clock,
        call_sinks=[seen.append],
    )
    fail(breaker)
    clock.advance(5)
    with pytest.warns(ResourceWarning) as warned:
        breaker.acquire()  # dropped unsettled: collected at once
    assert [str(w.message) for w in warned] == [
        "<Permit of 'svc', held> was never settled: settle a permit with success(), failure() "
        "or release(), or use it as a context manager"
    ]
    clock.advance(1)
    second = breaker.acquire()  # the lost trial's slot, given back (neutral)
    second.success()
    metrics = breaker.metrics()
    assert (breaker.state, metrics.ignored_count, metrics.success_count) == ("closed", 1, 1)
    assert [(r.outcome, r.start, r.duration) for r in seen[1:]] == [
        ("ignored", 5.0, 1.0),
        ("success", 6.0, 0.0),
    ]


#: A lost permit that another thread gives back first (see ``TakenMeanwhile``).
TAKEN = object()


class TakenMeanwhile(list[Any]):
    """The lost permits as a racing thread leaves them: ``TAKEN`` is popped by that thread
    between this one's look at the list and its own pop, which then finds it empty."""

    def pop(self, index: Any = -1) -> Any:
        item = super().pop(index)
        if item is TAKEN:
            raise IndexError("pop from empty list")
        return item


def test_a_lost_permit_given_back_while_another_thread_empties_the_list(
    clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A breaker that finds its own lost permit among several gives it back and takes the
    trial, even when another thread takes the last one from under it."""
    lost = TakenMeanwhile([TAKEN])
    monkeypatch.setattr("breaker_fsm._local.LOST_PERMITS", lost)
    monkeypatch.setattr("breaker_fsm._guard.LOST_PERMITS", lost)
    breaker = CircuitBreaker(
        "svc", BreakerPolicy(failure_threshold=1, reset_timeout=5), clock=clock
    )
    fail(breaker)
    clock.advance(5)
    with pytest.warns(ResourceWarning, match="never settled"):
        breaker.acquire()  # dropped unsettled: on the list, above TAKEN
    assert len(lost) == 2
    breaker.acquire().success()  # its own slot back: the trial, not a refusal
    assert lost == []
    assert (breaker.state, breaker.metrics().ignored_count) == ("closed", 1)


def test_a_lost_closed_permit_only_warns(clock: FakeClock) -> None:
    """Unsettled in closed, a permit held no slot: a warning, and nothing recorded, then or
    when the breaker, half-open, next looks for a lost trial to take back."""
    breaker = CircuitBreaker("svc", BreakerPolicy(failure_threshold=1), clock=clock)
    with pytest.warns(ResourceWarning, match="never settled"):
        breaker.acquire()
    assert breaker.metrics().total_requests == 0
    settled = breaker.acquire()
    settled.success()
    # Settled: no warning when it goes (filterwarnings = error would fail the test). A permit
    # holds no cycle: `del` finalizes it here, with no gc.collect() (which would also
    # collect, and blame on this test, whatever garbage earlier tests left).
    del settled
    fail(breaker)
    clock.advance(60)
    trial = breaker.acquire()
    with pytest.raises(CircuitOpenError):
        breaker.acquire()  # the one trial is held; no lost one to take back
    trial.success()
    metrics = breaker.metrics()
    assert (breaker.state, metrics.ignored_count, metrics.success_count) == ("closed", 0, 2)


def test_another_breakers_lost_trial_is_given_back_without_a_second_look(
    clock: FakeClock,
) -> None:
    """A half-open breaker whose trials are all taken gives back the lost trials it finds,
    whoever's they are, then refuses: another breaker's trial frees none of its own, so it
    does not look at its state again (one clock reading, its half-open timeout's)."""
    policy = BreakerPolicy(failure_threshold=1, reset_timeout=5, half_open_timeout=60)
    own = CountingClock()
    mine = CircuitBreaker("mine", policy, clock=own)
    other = CircuitBreaker("other", policy, clock=clock)
    fail(mine)
    fail(other)
    own.advance(5)
    clock.advance(5)
    trial = mine.acquire()
    with pytest.warns(ResourceWarning, match="never settled"):
        other.acquire()  # dropped unsettled: other's trial, lost
    readings = own.readings
    with pytest.raises(CircuitOpenError):
        mine.acquire()
    assert own.readings == readings + 1
    assert other.metrics().ignored_count == 1  # given back, neutral
    trial.success()
    other.acquire().success()  # its trial slot is free again
    assert (mine.state, other.state) == ("closed", "closed")


def test_the_never_settled_warning_is_issued_from_the_permit_module(clock: FakeClock) -> None:
    """A permit is collected wherever its last reference goes, so its ResourceWarning names
    breaker_fsm's permit module, not that line: a filter on breaker_fsm's modules silences
    it, wherever the permit was dropped."""
    breaker = CircuitBreaker("svc", BreakerPolicy(), clock=clock)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        breaker.acquire()  # dropped unsettled: collected at once
        warnings.filterwarnings("ignore", category=ResourceWarning, module=r"breaker_fsm\.")
        breaker.acquire()
    assert [(w.category, Path(w.filename).name) for w in caught] == [(ResourceWarning, "_guard.py")]


def test_a_lost_shared_permit_is_left_to_its_lease(
    clock: FakeClock, redis_stores: StoreFactory
) -> None:
    """A shared breaker's lost trial is the store's lease: an in-memory breaker looking for
    lost trials to take back leaves it alone, and the fleet's trial stays taken."""
    policy = BreakerPolicy(failure_threshold=1, reset_timeout=5)
    shared = CircuitBreaker("svc", policy, clock=clock, store=redis_stores(now=clock.monotonic))
    local = CircuitBreaker("mem", policy, clock=clock)
    fail(shared)
    fail(local)
    clock.advance(5)
    with pytest.warns(ResourceWarning, match="never settled"):
        shared.acquire()  # the fleet's one trial, lost
    trial = local.acquire()
    with pytest.raises(CircuitOpenError):
        local.acquire()  # looks for lost trials: finds none of its own
    with pytest.raises(CircuitOpenError):
        shared.acquire()  # its trial is still leased
    trial.success()
    assert (local.state, shared.state) == ("closed", "half_open")


def test_a_call_sink_added_while_a_permit_is_held_hears_its_start(
    make: Make, clock: FakeClock
) -> None:
    """A permit taken before the breaker had a call sink is told with its real start."""
    seen: list[CallRecord] = []
    breaker = make()
    clock.advance(10)
    permit = breaker.acquire()
    breaker.add_call_sink(seen.append)
    clock.advance(0.5)
    permit.success()
    assert [(r.outcome, r.start, r.duration) for r in seen] == [("success", 10.0, 0.5)]


def test_async_permits(make: Make, clock: FakeClock) -> None:
    """aacquire gives a permit that settles like acquire's; async with on a permit too."""
    breaker = make(failure_threshold=1, reset_timeout=5)

    async def scenario() -> None:
        permit = await breaker.aacquire()
        permit.failure()
        assert breaker.state == "open"
        with pytest.raises(CircuitOpenError):
            await breaker.aacquire()
        clock.advance(5)
        async with await breaker.aacquire():
            pass

    run(make, scenario)
    assert breaker.state == "closed"


def test_half_open_permits_are_exact_across_threads(make: Make, clock: FakeClock) -> None:
    """However many threads race for permits in half_open, exactly half_open_max_calls win."""
    breaker = make(failure_threshold=1, reset_timeout=1, half_open_max_calls=3, success_threshold=3)
    fail(breaker)
    clock.advance(1)
    won: list[Any] = []
    refused: list[CircuitOpenError] = []
    barrier = threading.Barrier(16)

    def race() -> None:
        barrier.wait()
        try:
            won.append(breaker.acquire())
        except CircuitOpenError as exc:
            refused.append(exc)

    threads = [threading.Thread(target=race) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert (len(won), len(refused)) == (3, 13)
    for permit in won:
        permit.success()
    assert breaker.state == "closed"


def test_half_open_permits_are_exact_across_tasks(make: Make, clock: FakeClock) -> None:
    """However many asyncio tasks race aacquire in half_open, exactly half_open_max_calls
    win; async with blocks hold theirs until they end."""
    breaker = make(failure_threshold=1, reset_timeout=1, half_open_max_calls=2, success_threshold=2)
    fail(breaker)
    clock.advance(1)
    entered: list[int] = []

    async def racer(index: int, release: asyncio.Event) -> str:
        try:
            async with breaker:
                entered.append(index)
                await release.wait()
        except CircuitOpenError:
            return "refused"
        return "ran"

    async def scenario() -> None:
        release = asyncio.Event()
        tasks = [asyncio.create_task(racer(i, release)) for i in range(12)]
        while len(entered) < 2 or sum(t.done() for t in tasks) < 10:
            await asyncio.sleep(0)
        assert len(entered) == 2  # the two winners hold their trial slots
        release.set()
        outcomes = await asyncio.gather(*tasks)
        assert sorted(outcomes) == ["ran"] * 2 + ["refused"] * 10

    run(make, scenario)
    assert breaker.state == "closed"
    assert breaker.metrics().rejected_count == 10


def test_slow_call_timing_runs_from_acquire_to_settle(make: Make, clock: FakeClock) -> None:
    """A permit settled after slow_call_duration counts a slow call."""
    breaker = make(window=CountWindow(size=10), slow_call_duration=1.0)
    permit = breaker.acquire()
    clock.advance(2)
    permit.success()
    assert breaker.metrics().slow_call_count == 1


def test_nested_with_blocks_on_two_breakers(clock: FakeClock) -> None:
    """Nested with blocks settle their own permits, innermost first."""
    outer = CircuitBreaker("outer", clock=clock)
    inner = CircuitBreaker("inner", clock=clock)
    with pytest.raises(Boom), outer, inner:
        raise Boom("down")
    assert (outer.metrics().error_count, inner.metrics().error_count) == (1, 1)


def test_exit_without_enter_is_an_error(clock: FakeClock) -> None:
    """Leaving a with block this task never entered raises RuntimeError."""
    breaker = CircuitBreaker("svc", clock=clock)
    with pytest.raises(RuntimeError, match="never entered"):
        breaker.__exit__(None, None, None)


def test_disabled_permits_record_nothing(make: Make) -> None:
    """While disabled, a permit is granted and settling it records nothing and tells call
    sinks nothing, as call() does then."""
    seen: list[CallRecord] = []
    breaker = make({"call_sinks": [seen.append]})
    breaker.send("disable")
    with breaker:
        pass
    breaker.acquire().failure()

    async def scenario() -> None:
        async with breaker:
            pass

    run(make, scenario)
    assert breaker.call(ok) == "ok"
    assert breaker.metrics().total_requests == 0
    assert seen == []


def test_generator_failure_mid_iteration_is_a_failure(make: Make) -> None:
    """@breaker on a generator: admitted when iteration starts; an exception raised
    mid-iteration is judged a failure and re-raised."""
    breaker = make(failure_threshold=5)

    @breaker
    def rows() -> Iterator[int]:
        yield 1
        yield 2
        raise Boom("connection lost")

    stream = rows()
    assert breaker.metrics().total_requests == 0  # nothing admitted before iteration
    assert next(stream) == 1
    with pytest.raises(Boom):
        list(stream)
    assert breaker.metrics().error_count == 1


def test_generator_exhaustion_and_early_close_are_successes(make: Make) -> None:
    """Exhausting a guarded generator, or closing it early, records a success."""
    breaker = make()

    @breaker
    def numbers(n: int) -> Iterator[int]:
        yield from range(n)

    assert inspect.isgeneratorfunction(numbers)  # frameworks that look see a generator
    assert list(numbers(3)) == [0, 1, 2]
    stream = numbers(10)
    assert next(stream) == 0
    stream.close()
    assert breaker.metrics().success_count == 2


def test_generator_is_refused_when_open(make: Make) -> None:
    """A guarded generator on an open breaker raises CircuitOpenError at its first next()."""
    breaker = make(failure_threshold=1)
    fail(breaker)

    @breaker
    def rows() -> Iterator[int]:
        yield 1

    with pytest.raises(CircuitOpenError):
        next(rows())


def test_async_generator(make: Make) -> None:
    """@breaker on an async generator: failures judged, exhaustion and aclose successes."""
    breaker = make(failure_threshold=5)

    @breaker
    async def events(fail_after: int | None) -> AsyncIterator[int]:
        for i in range(3):
            if fail_after is not None and i == fail_after:
                raise Boom("stream broke")
            yield i

    assert inspect.isasyncgenfunction(events)

    async def scenario() -> None:
        assert [i async for i in events(None)] == [0, 1, 2]
        with pytest.raises(Boom):
            [i async for i in events(1)]
        stream = events(None)
        assert await stream.__anext__() == 0
        await stream.aclose()

    run(make, scenario)
    metrics = breaker.metrics()
    assert (metrics.success_count, metrics.error_count) == (2, 1)


def test_is_failure_exception_looks_at_the_exception(make: Make) -> None:
    """A predicate decides which recorded exceptions are failures: a 404 is an answer,
    a 503 an outage (a number is also an open-duration hint)."""

    class HTTPError(Exception):
        def __init__(self, status: int) -> None:
            super().__init__(status)
            self.status = status

    def outage(exc: BaseException) -> bool | float:
        status = getattr(exc, "status", 500)
        return 30.0 if status == 429 else status >= 500

    breaker = make({"is_failure_exception": outage}, failure_threshold=2, reset_timeout=1)

    def status(code: int) -> None:
        raise HTTPError(code)

    for code in (404, 404, 503):
        with pytest.raises(HTTPError):
            breaker.call(status, code)
    metrics = breaker.metrics()
    assert (metrics.success_count, metrics.error_count, breaker.state) == (2, 1, "closed")
    with pytest.raises(HTTPError):
        breaker.call(status, 429)
    assert breaker.state == "open"
    assert breaker.metrics().open_duration == 30.0  # the hint: at least 30 s


def test_is_failure_exception_judges_awaited_calls_too(make: Make) -> None:
    """acall, async with and an async generator put each recorded exception to the same
    predicate: a 404 is a success, a 503 a failure."""

    class HTTPError(Exception):
        def __init__(self, status: int) -> None:
            super().__init__(status)
            self.status = status

    breaker = make({"is_failure_exception": lambda exc: exc.status >= 500}, failure_threshold=3)

    async def status(code: int) -> None:
        raise HTTPError(code)

    @breaker
    async def stream(code: int) -> AsyncIterator[int]:
        yield 1
        raise HTTPError(code)

    async def scenario() -> None:
        for code in (404, 503):
            with pytest.raises(HTTPError):
                await breaker.acall(status, code)
            with pytest.raises(HTTPError):
                async with breaker:
                    raise HTTPError(code)
            with pytest.raises(HTTPError):
                async for _ in stream(code):
                    pass

    run(make, scenario)
    metrics = breaker.metrics()
    assert (metrics.success_count, metrics.error_count, breaker.state) == (3, 3, "open")


def test_a_raising_exception_predicate_is_neutral_and_counted(clock: FakeClock) -> None:
    """An is_failure_exception that raises is logged and counted; the call is neutral."""

    def broken(exc: BaseException) -> bool:
        raise RuntimeError("predicate bug")

    breaker = CircuitBreaker("svc", clock=clock, is_failure_exception=broken)
    with pytest.raises(Boom):
        breaker.call(lambda: (_ for _ in ()).throw(Boom("down")))
    metrics = breaker.metrics()
    assert (metrics.ignored_count, metrics.error_count, metrics.sink_errors) == (1, 0, 1)
    with pytest.raises(TypeError, match="is_failure_exception"):
        CircuitBreaker("svc", is_failure_exception=404)  # type: ignore[arg-type]


def nothing_recorded(breaker: CircuitBreaker) -> tuple[int, int, int, int, int]:
    """The counters a call could change: requests, successes, errors, ignored, rejected."""
    m = breaker.metrics()
    return m.total_requests, m.success_count, m.error_count, m.ignored_count, m.rejected_count


#: The note on a TypeError raised because the call could not be made (not by acall's await).
CANNOT_CALL = (
    "breaker 'svc': the call could not be made (call() takes a function and acall() an "
    "async function, with arguments that fit); nothing was recorded"
)


def test_a_call_that_cannot_be_made_records_nothing(make: Make) -> None:
    """A TypeError raised by the call itself (not callable, wrong arguments, acall of a
    plain function) is the caller's mistake: re-raised with a note, nothing recorded,
    never a trip; one raised inside the operation is the dependency's and counts."""
    seen: list[CallRecord] = []
    breaker = make({"call_sinks": [seen.append]}, failure_threshold=1)

    def takes_one(x: int) -> int:
        return x

    def broken() -> None:
        raise TypeError("the dependency's own bug")

    def await_reply(x: int) -> int:  # "await" in its name, so in the TypeError's message
        return x

    with pytest.raises(TypeError) as caught:
        breaker.call(42)  # type: ignore[arg-type]
    assert caught.value.__notes__ == [CANNOT_CALL]
    for func in (takes_one, await_reply):
        with pytest.raises(TypeError) as caught:
            breaker.call(func, 1, 2)  # type: ignore[call-arg]
        assert caught.value.__notes__ == [CANNOT_CALL]

    async def scenario() -> None:
        with pytest.raises(TypeError) as caught:
            await breaker.acall(takes_one, 1)  # type: ignore[arg-type]
        assert caught.value.__notes__ == [
            "breaker 'svc': the call could not be made (acall() awaits what its function "
            "returns: a plain function goes through call()); nothing was recorded"
        ]
        with pytest.raises(TypeError) as caught:
            await breaker.acall(aok, 1, 2)  # type: ignore[call-arg]
        assert caught.value.__notes__ == [CANNOT_CALL]

    run(make, scenario)
    assert breaker.state == "closed"
    assert nothing_recorded(breaker) == (0, 0, 0, 0, 0)
    assert seen == []
    with pytest.raises(TypeError):
        breaker.call(broken)
    assert breaker.state == "open"


def not_awaited(name: str) -> str:
    """The message of ``svc``'s TypeError for call() of ``name``, an async function."""
    return (
        f"breaker 'svc': call() got an async function ({name} returned a coroutine): "
        "use `await breaker.acall(...)`; nothing was recorded"
    )


@pytest.mark.parametrize("options", [{}, {"call_sinks": [lambda record: None]}])
def test_call_of_an_async_function_raises_naming_acall(make: Make, options: Any) -> None:
    """call(async_fn) raises TypeError naming acall: nothing recorded, nothing told to call
    sinks, the coroutine closed (never awaited, no warning), the breaker still closed."""
    seen: list[CallRecord] = []
    breaker = make({**options, "call_sinks": [*options.get("call_sinks", []), seen.append]})
    ran: list[str] = []

    async def fetch() -> str:
        ran.append("ran")
        return "ok"

    for _ in range(3):
        with pytest.raises(TypeError) as caught:
            breaker.call(fetch)  # type: ignore[arg-type]
        assert str(caught.value) == not_awaited(fetch.__qualname__)

    def plain() -> Any:
        return aok()  # a coroutine from a plain function is caught too

    with pytest.raises(TypeError, match="acall"):
        breaker.call(plain)
    nameless = functools.partial(fetch)  # no __qualname__: named by its repr
    with pytest.raises(TypeError) as caught:
        breaker.call(nameless)
    assert str(caught.value) == not_awaited(repr(nameless))
    assert ran == []
    assert breaker.state == "closed"
    assert nothing_recorded(breaker) == (0, 0, 0, 0, 0)
    assert seen == []
    assert breaker.call(ok) == "ok"
    assert breaker.metrics().success_count == 1


def test_call_of_an_async_function_raises_on_the_fast_path(clock: FakeClock) -> None:
    """The inlined closed path of the default policy (with and without a count window)
    checks for a coroutine too, and counts nothing."""
    for policy in (BreakerPolicy(), BreakerPolicy(window=CountWindow(size=10))):
        breaker = CircuitBreaker("svc", policy, clock=clock)
        with pytest.raises(TypeError, match="acall"):
            breaker.call(aok)  # type: ignore[arg-type]
        assert nothing_recorded(breaker) == (0, 0, 0, 0, 0)


@pytest.mark.parametrize("style", ["call(async_fn)", "acall(sync_fn)", "acall(sync_fn) timed"])
def test_a_wrong_style_call_in_half_open_gives_its_permit_back(
    make: Make, clock: FakeClock, style: str
) -> None:
    """A wrong-style call during the one half-open trial neither retrips nor keeps the trial
    slot nor counts: the next call is the trial, and it recovers the breaker."""
    policy: dict[str, Any] = {"failure_threshold": 1, "reset_timeout": 1}
    if style.endswith("timed"):
        policy["call_timeout"] = 5
    breaker = make(**policy)
    fail(breaker)
    before = nothing_recorded(breaker)
    clock.advance(1)

    async def scenario() -> None:
        if style == "call(async_fn)":
            with pytest.raises(TypeError, match="acall"):
                breaker.call(aok)  # type: ignore[arg-type]
        else:
            with pytest.raises(TypeError) as caught:
                await breaker.acall(ok)  # type: ignore[arg-type]
            assert "through call()" in "".join(caught.value.__notes__)
        assert breaker.state == "half_open"
        assert nothing_recorded(breaker) == before
        assert await breaker.acall(aok, "trial") == "trial"

    run(make, scenario)
    assert breaker.state == "closed"
    assert breaker.metrics().store_errors == 0  # the trial slot went back in one round trip


@pytest.mark.parametrize("state", ["disabled", "shadow"])
def test_call_of_an_async_function_raises_where_nothing_is_recorded(
    make: Make, clock: FakeClock, state: str
) -> None:
    """Disabled, or a shadow-mode breaker running a call it would refuse: call(async_fn)
    raises TypeError naming acall all the same, and call sinks hear of nothing."""
    seen: list[CallRecord] = []
    if state == "disabled":
        breaker = make()
        breaker.send("disable")
    else:
        breaker = make({"call_sinks": [seen.append]}, failure_threshold=1, enforce=False)
        fail(breaker)
        assert breaker.state == "open"
        seen.clear()
    with pytest.raises(TypeError) as caught:
        breaker.call(aok)  # type: ignore[arg-type]
    assert str(caught.value) == not_awaited("aok")

    async def scenario() -> None:
        with pytest.raises(TypeError):
            await breaker.acall(ok)  # type: ignore[arg-type]

    run(make, scenario)
    assert seen == []


def test_a_permit_names_its_breaker_and_whether_it_is_settled(clock: FakeClock) -> None:
    """A permit's repr names its breaker and says held or settled; ``settled`` is a bool."""
    breaker = CircuitBreaker("svc", clock=clock)
    permit = breaker.acquire()
    assert permit.settled is False
    assert repr(permit) == "<Permit of 'svc', held>"
    permit.success()
    assert permit.settled is True
    assert repr(permit) == "<Permit of 'svc', settled>"


def test_permits_hand_outcome_timing_and_exception_to_call_sinks(
    make: Make, clock: FakeClock
) -> None:
    """Each way of settling a permit gives the call sinks its outcome, its start (the clock
    at acquire), its duration (acquire to settle) and what the block raised."""
    breaker = make(failure_threshold=10)
    records: list[CallRecord] = []
    breaker.add_call_sink(records.append)
    clock.advance(100)  # a start of 0.0 would look like an unread clock
    first, second, third = Boom("first"), Boom("second"), Boom("third")
    permit = breaker.acquire()
    clock.advance(1)
    permit.failure(first)
    with pytest.raises(Boom), breaker:
        raise_after(clock, 2, second)
    permit = breaker.acquire()
    clock.advance(3)
    permit.release()

    async def scenario() -> None:
        with pytest.raises(Boom):
            async with breaker:
                raise_after(clock, 4, third)

    run(make, scenario)
    seen = [(r.outcome, r.start, r.duration, r.exception) for r in records]
    assert seen == [
        ("failure", 100.0, 1.0, first),
        ("failure", 101.0, 2.0, second),
        ("ignored", 103.0, 3.0, None),
        ("failure", 106.0, 4.0, third),
    ]


def test_shadow_mode_permits_are_granted_counted_and_reach_call_sinks(
    make: Make, clock: FakeClock
) -> None:
    """In shadow mode an open breaker still grants a permit: the refusal it would have been
    is counted, and settling it tells the call sinks, not the counters."""
    breaker = make(failure_threshold=1, reset_timeout=60, enforce=False)
    records: list[CallRecord] = []
    fail(breaker)
    breaker.add_call_sink(records.append)
    clock.advance(10)
    down = Boom("down")
    permit = breaker.acquire()
    assert breaker.metrics().shadow_rejected_count == 1
    clock.advance(2)
    permit.failure(down)
    with breaker:
        clock.advance(1)
    metrics = breaker.metrics()
    assert (metrics.shadow_rejected_count, metrics.error_count, metrics.success_count) == (2, 1, 0)
    seen = [(r.outcome, r.start, r.duration, r.exception) for r in records]
    assert seen == [("failure", 10.0, 2.0, down), ("success", 12.0, 1.0, None)]


def test_with_blocks_left_out_of_order_settle_their_own_permits(clock: FakeClock) -> None:
    """Leaving a with block settles the permit of that breaker, wherever it is in the stack
    of held permits, and leaves the others held."""
    a, b, c = (CircuitBreaker(name, clock=clock) for name in "abc")
    a.__enter__()
    b.__enter__()
    c.__enter__()
    a.__exit__(None, None, None)  # the outermost first
    b.__exit__(None, None, None)
    c.__exit__(None, None, None)
    assert [breaker.metrics().success_count for breaker in (a, b, c)] == [1, 1, 1]
    with pytest.raises(RuntimeError, match="never entered"):
        a.__exit__(None, None, None)


def test_guarded_generators_are_called_with_keyword_arguments(make: Make) -> None:
    """@breaker on a generator or an async generator passes its keyword arguments on."""
    breaker = make()

    @breaker
    def numbers(*, n: int) -> Iterator[int]:
        yield from range(n)

    @breaker
    async def events(*, n: int) -> AsyncIterator[int]:
        for i in range(n):
            yield i

    assert list(numbers(n=2)) == [0, 1]

    async def scenario() -> None:
        assert [i async for i in events(n=3)] == [0, 1, 2]

    run(make, scenario)
    assert breaker.metrics().success_count == 2
