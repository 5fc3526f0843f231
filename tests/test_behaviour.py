"""The breaker's behaviour, written once and run on every engine × {sync, async}.

Engines: ``memory`` (the in-memory runner), ``shared`` (a :class:`SharedBreaker` on a real
redis-server whose scripts read the test's fake clock) and ``shared-degraded`` (a shared
breaker whose store is on a port nothing listens on: it runs on local state and must behave
exactly like ``memory``). Modes: ``sync`` goes through ``call``/``send`` and ``def``
decorators, ``async`` through ``acall``/``asend`` and ``async def`` decorators.

Each test is one scenario, an ``async def`` run by ``run``: it reaches the breaker only
through ``invoke`` and ``send``, so the same steps take the sync or the asyncio paths. After
every scenario each breaker must still be on its engine: a live shared breaker that silently
degraded would pass the memory behaviours without testing the store.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, NoReturn

import pytest

from breaker_fsm import (
    BreakerPolicy,
    CircuitBreaker,
    CircuitOpenError,
    CountWindow,
    IllegalTransitionError,
    TimeWindow,
)
from breaker_fsm.testing import FakeClock
from tests.helpers import Boom, aok, boom, ok

if TYPE_CHECKING:
    from breaker_fsm.redis import RedisStore
    from tests.redis_server import StoreFactory

ENGINES = ["memory", "shared", "shared-degraded"]

Make = Callable[..., CircuitBreaker]
Scenario = Callable[[], Awaitable[None]]
Run = Callable[[Scenario], None]
#: ``await invoke(breaker, func, *args, **kwargs)``: ``func`` through call() or acall().
Invoke = Callable[..., Awaitable[Any]]
#: ``await send(breaker, event, reason=None)``: send() or asend().
Send = Callable[..., Awaitable[str]]


class Bench:
    """The breakers and stores of one test, on one engine."""

    def __init__(self, request: pytest.FixtureRequest, engine: str, clock: FakeClock) -> None:
        self.request = request
        self.engine = engine
        self.clock = clock
        self.breakers: list[CircuitBreaker] = []
        self.stores: list[RedisStore] = []

    def make(
        self, name: str = "svc", *, options: dict[str, Any] | None = None, **policy: Any
    ) -> CircuitBreaker:
        """A breaker with ``BreakerPolicy(**policy)`` and ``options`` on this engine."""
        kwargs: dict[str, Any] = {"clock": self.clock, **(options or {})}
        if self.engine != "memory":
            kwargs["store"] = self._store()
        breaker = CircuitBreaker(name, BreakerPolicy(**policy), **kwargs)
        self.breakers.append(breaker)
        return breaker

    def _store(self) -> RedisStore:
        pytest.importorskip("redis", reason="redis-py is not installed: pip install redis")
        if self.engine == "shared":
            stores: StoreFactory = self.request.getfixturevalue("redis_stores")
            store = stores(now=self.clock.monotonic)
        else:
            store = self.request.getfixturevalue("dead_redis_store")
        self.stores.append(store)
        return store

    def run(self, scenario: Scenario) -> None:
        """Run ``scenario`` on a fresh event loop; close the stores' asyncio clients on it."""

        async def main() -> None:
            try:
                await scenario()
            finally:
                for store in self.stores:
                    await store.aclose()

        asyncio.run(main())
        for breaker in self.breakers:
            assert breaker.metrics().degraded is (self.engine == "shared-degraded"), breaker


@pytest.fixture(params=ENGINES)
def bench(request: pytest.FixtureRequest, clock: FakeClock) -> Bench:
    """The engine the test's breakers run on."""
    return Bench(request, request.param, clock)


@pytest.fixture
def make(bench: Bench) -> Make:
    """``make(name="svc", options={...}, **policy)``: a breaker on the test's engine."""
    return bench.make


@pytest.fixture
def run(bench: Bench) -> Run:
    """``run(scenario)``: run the test's ``async def`` scenario."""
    return bench.run


@pytest.fixture(params=["sync", "async"])
def mode(request: pytest.FixtureRequest) -> str:
    """Which twin the scenario goes through: ``call``/``send`` or ``acall``/``asend``."""
    return str(request.param)


def settle(value: Any) -> Any:
    """``value``; a coroutine is run to its end here, and must finish without suspending.

    So that one operation can be written as an ``async def`` that awaits ``invoke`` (a
    nested call) and run through ``call()`` too: the sync ``invoke`` never suspends.
    """
    if not inspect.iscoroutine(value):
        return value
    try:
        value.send(None)
    except StopIteration as done:
        return done.value
    value.close()
    raise AssertionError("an operation run through call() awaited something that suspends")


@pytest.fixture
def invoke(mode: str) -> Invoke:
    """``await invoke(breaker, func, *args, **kwargs)``: through ``call`` or ``acall``.

    ``func`` is a plain function or an ``async def``; in async mode it is wrapped in a
    coroutine function so that ``acall`` awaits it.
    """

    async def through_call(
        breaker: CircuitBreaker, func: Callable[..., Any], *args: Any, **kwargs: Any
    ) -> Any:
        return breaker.call(lambda *a, **k: settle(func(*a, **k)), *args, **kwargs)

    async def through_acall(
        breaker: CircuitBreaker, func: Callable[..., Any], *args: Any, **kwargs: Any
    ) -> Any:
        async def operation(*a: Any, **k: Any) -> Any:
            value = func(*a, **k)
            return await value if inspect.isawaitable(value) else value

        return await breaker.acall(operation, *args, **kwargs)

    return through_call if mode == "sync" else through_acall


@pytest.fixture
def send(mode: str) -> Send:
    """``await send(breaker, event, reason=None)``: through ``send`` or ``asend``."""

    async def through_send(breaker: CircuitBreaker, event: str, reason: str | None = None) -> str:
        return breaker.send(event, reason=reason)

    async def through_asend(breaker: CircuitBreaker, event: str, reason: str | None = None) -> str:
        return await breaker.asend(event, reason=reason)

    return through_send if mode == "sync" else through_asend


async def failed(invoke: Invoke, breaker: CircuitBreaker, times: int = 1) -> None:
    """``times`` calls of :func:`boom` through ``breaker``, each re-raising ``Boom``."""
    for _ in range(times):
        with pytest.raises(Boom):
            await invoke(breaker, boom)


async def refusal(invoke: Invoke, breaker: CircuitBreaker) -> CircuitOpenError:
    """A call that ``breaker`` must refuse without running it: its ``CircuitOpenError``."""
    ran: list[bool] = []
    with pytest.raises(CircuitOpenError) as info:
        await invoke(breaker, lambda: ran.append(True))
    assert not ran, "a refused call ran its operation"
    return info.value


def events(breaker: CircuitBreaker) -> list[str]:
    """The events of ``breaker``'s audit trail, in order."""
    return [record.event for record in breaker.audit]


def raising(error: BaseException) -> Callable[[], NoReturn]:
    """An operation that raises ``error``."""

    def operation() -> NoReturn:
        raise error

    return operation


# ------------------------------------------------------------------------ admission, outcomes


def test_an_admitted_call_gets_its_arguments_and_returns_its_value(
    make: Make, invoke: Invoke, run: Run
) -> None:
    """A closed breaker runs the operation with the call's arguments and returns its value."""
    breaker = make(failure_threshold=3)

    async def scenario() -> None:
        assert await invoke(breaker, lambda a, b=0: (a, b), 1, b=2) == (1, 2)
        assert await invoke(breaker, ok) == "ok"
        assert breaker.state == "closed"
        assert breaker.metrics().success_count == 2

    run(scenario)


def test_each_outcome_is_counted_as_its_kind(make: Make, invoke: Invoke, run: Run) -> None:
    """Recorded exceptions fail, other exceptions succeed, ignored and BaseException count
    neither way, and the operation's own exception is re-raised unchanged."""
    breaker = make(failure_threshold=5, record_exceptions=(Boom,), ignore_exceptions=(KeyError,))

    async def scenario() -> None:
        error = Boom("exact")
        with pytest.raises(Boom) as info:
            await invoke(breaker, raising(error))
        assert info.value is error
        await failed(invoke, breaker)
        with pytest.raises(KeyError):  # ignored: the streak goes on
            await invoke(breaker, raising(KeyError("x")))
        for neutral in (KeyboardInterrupt(), asyncio.CancelledError()):
            with pytest.raises(type(neutral)):
                await invoke(breaker, raising(neutral))
        metrics = breaker.metrics()
        assert (metrics.failure_count, metrics.error_count) == (2, 2)
        assert (metrics.ignored_count, metrics.success_count) == (3, 0)
        with pytest.raises(ValueError, match="bad input"):  # not recorded: a success
            await invoke(breaker, raising(ValueError("bad input")))
        metrics = breaker.metrics()
        assert (metrics.failure_count, metrics.success_count, metrics.error_count) == (0, 1, 2)
        assert metrics.total_requests == 6
        assert breaker.state == "closed"

    run(scenario)


# ------------------------------------------------------------------------ trip and refusal


def test_the_threshold_th_consecutive_failure_trips(make: Make, invoke: Invoke, run: Run) -> None:
    """A success restarts the streak; failure_threshold failures in a row trip, not one fewer."""
    breaker = make(failure_threshold=3, reset_timeout=10)

    async def scenario() -> None:
        await failed(invoke, breaker, 2)
        await invoke(breaker, ok)
        await failed(invoke, breaker, 2)
        assert (breaker.state, breaker.metrics().failure_count) == ("closed", 2)
        await failed(invoke, breaker)
        assert breaker.state == "open"
        assert events(breaker) == ["trip"]
        [record] = breaker.audit
        assert (record.source, record.target) == ("closed", "open")
        assert "3 consecutive failures" in record.reason
        assert record.counters["consecutive_failures"] == 3

    run(scenario)


def test_a_failure_rate_over_the_window_trips(make: Make, invoke: Invoke, run: Run) -> None:
    """With a count window the rate trips once minimum_calls are in and the rate reaches it."""
    breaker = make(
        failure_threshold=None,
        window=CountWindow(size=4),
        minimum_calls=4,
        failure_rate_threshold=0.5,
    )

    async def scenario() -> None:
        await failed(invoke, breaker)
        await invoke(breaker, ok)
        await failed(invoke, breaker)
        metrics = breaker.metrics()
        assert (metrics.state, metrics.window_calls, metrics.failure_rate) == ("closed", 3, None)
        await invoke(breaker, ok)  # the fourth call: 2 of 4 failed, the rate is reached
        assert breaker.state == "open"
        assert breaker.audit[-1].event == "trip"
        assert "failure rate 0.50" in breaker.audit[-1].reason

    run(scenario)


def test_an_open_breaker_refuses_with_its_name_state_and_retry_after(
    make: Make, invoke: Invoke, run: Run, clock: FakeClock
) -> None:
    """A refused call does not run and raises CircuitOpenError(breaker, state, retry_after)."""
    breaker = make(failure_threshold=1, reset_timeout=10)

    async def scenario() -> None:
        await failed(invoke, breaker)
        clock.advance(4)
        error = await refusal(invoke, breaker)
        assert (error.breaker, error.state) == ("svc", "open")
        assert error.retry_after == pytest.approx(6.0)
        assert "'svc' is open" in str(error)
        await refusal(invoke, breaker)
        metrics = breaker.metrics()
        assert (metrics.rejected_count, metrics.total_requests) == (2, 1)

    run(scenario)


def test_a_refused_call_hands_its_arguments_to_the_fallback(
    make: Make, invoke: Invoke, run: Run
) -> None:
    """With a fallback a refused call returns the fallback's value for the same arguments."""
    breaker = make(failure_threshold=1, options={"fallback": lambda *a, **k: ("fallback", a, k)})

    async def scenario() -> None:
        await failed(invoke, breaker)
        ran: list[bool] = []

        def operation(*_: Any, **__: Any) -> None:
            ran.append(True)

        assert await invoke(breaker, operation, 1, k=2) == ("fallback", (1,), {"k": 2})
        assert not ran
        assert breaker.metrics().rejected_count == 1

    run(scenario)


def test_slow_calls_count_and_a_slow_call_rate_trips(
    make: Make, invoke: Invoke, run: Run, clock: FakeClock
) -> None:
    """A call longer than slow_call_duration is slow (failed or not); the slow-call rate
    over the window trips like the failure rate."""
    breaker = make(
        failure_threshold=None,
        window=CountWindow(size=4),
        minimum_calls=4,
        slow_call_duration=1.0,
        slow_call_rate_threshold=0.75,
    )

    def taking(seconds: float) -> Callable[[], str]:
        def operation() -> str:
            clock.advance(seconds)
            return "done"

        return operation

    async def scenario() -> None:
        await invoke(breaker, taking(1.0))  # exactly the limit: not slow
        await invoke(breaker, taking(1.5))
        with pytest.raises(Boom):
            await invoke(breaker, lambda: taking(2.0)() and boom())
        metrics = breaker.metrics()
        assert (metrics.slow_call_count, metrics.window_calls, metrics.slow_call_rate) == (
            2,
            3,
            None,
        )
        await invoke(breaker, taking(3.0))  # 3 of 4 slow
        assert breaker.state == "open"
        assert "slow-call rate 0.75" in breaker.audit[-1].reason

    run(scenario)


# ------------------------------------------------------------------------ half-open


def test_open_lets_a_trial_through_once_reset_timeout_has_elapsed(
    make: Make, invoke: Invoke, run: Run, clock: FakeClock
) -> None:
    """Just before reset_timeout calls are refused; at reset_timeout the call is a trial."""
    breaker = make(failure_threshold=1, reset_timeout=10)

    async def scenario() -> None:
        await failed(invoke, breaker)
        clock.advance(9.75)
        assert (await refusal(invoke, breaker)).retry_after == pytest.approx(0.25)
        clock.advance(0.25)
        seen: list[str] = []
        assert await invoke(breaker, lambda: seen.append(breaker.state) or "trial") == "trial"
        assert seen == ["half_open"]
        assert events(breaker) == ["trip", "attempt_reset", "recover"]
        assert breaker.state == "closed"

    run(scenario)


def test_recovery_takes_success_threshold_good_trials(
    make: Make, invoke: Invoke, run: Run, clock: FakeClock
) -> None:
    """Half-open stays half-open until success_threshold trials have succeeded, then closes."""
    breaker = make(failure_threshold=2, reset_timeout=5, success_threshold=3, half_open_max_calls=3)

    async def scenario() -> None:
        await failed(invoke, breaker, 2)
        clock.advance(5)
        for _ in range(2):
            await invoke(breaker, ok)
            assert breaker.state == "half_open"
        await invoke(breaker, ok)
        assert breaker.state == "closed"
        assert events(breaker) == ["trip", "attempt_reset", "recover"]
        assert breaker.audit[-1].counters["trial_successes"] == 3
        await failed(invoke, breaker)  # closed afresh: a new streak
        assert (breaker.state, breaker.metrics().failure_count) == ("closed", 1)

    run(scenario)


def test_a_failed_trial_retrips_with_backoff(
    make: Make, invoke: Invoke, run: Run, clock: FakeClock
) -> None:
    """Each retrip multiplies the open duration up to max_reset_timeout; recovery resets it."""
    breaker = make(
        failure_threshold=1,
        reset_timeout=10,
        reset_timeout_multiplier=2,
        max_reset_timeout=30,
    )

    async def scenario() -> None:
        await failed(invoke, breaker)
        durations = [breaker.metrics().open_duration]
        for _ in range(3):
            clock.advance(durations[-1])
            await failed(invoke, breaker)  # the trial fails
            assert breaker.state == "open"
            durations.append(breaker.metrics().open_duration)
        assert durations == [10, 20, 30, 30]
        assert events(breaker) == ["trip"] + ["attempt_reset", "retrip"] * 3
        clock.advance(29)
        assert (await refusal(invoke, breaker)).retry_after == pytest.approx(1)
        clock.advance(1)
        await invoke(breaker, ok)
        assert (breaker.state, breaker.metrics().open_duration) == ("closed", 10)
        await failed(invoke, breaker)
        assert breaker.metrics().open_duration == 10

    run(scenario)


def test_half_open_admits_half_open_max_calls_trials_at_once(
    make: Make, invoke: Invoke, run: Run, clock: FakeClock
) -> None:
    """While trials are in flight, calls beyond half_open_max_calls are refused (no
    retry_after), and a trial that ends neutral gives its permit back."""
    breaker = make(failure_threshold=1, reset_timeout=5, success_threshold=3, half_open_max_calls=3)

    async def scenario() -> None:
        await failed(invoke, breaker)
        clock.advance(5)
        seen: list[Any] = []

        async def first() -> str:
            seen.append(await invoke(breaker, ok, "second"))
            with pytest.raises(KeyboardInterrupt):  # a neutral third trial: its permit back
                await invoke(breaker, raising(KeyboardInterrupt()))
            seen.append(await invoke(breaker, ok, "third"))
            error = await refusal(invoke, breaker)
            seen.append((error.state, error.retry_after))
            return "first"

        assert await invoke(breaker, first) == "first"
        assert seen == ["second", "third", ("half_open", None)]
        assert breaker.state == "closed"
        assert breaker.metrics().rejected_count == 1

    run(scenario)


def test_a_half_open_episode_past_half_open_timeout_retrips_on_the_next_call(
    make: Make, invoke: Invoke, run: Run, clock: FakeClock
) -> None:
    """A trial episode undecided for half_open_timeout is retripped by the next call,
    which is refused."""
    breaker = make(
        failure_threshold=1,
        reset_timeout=5,
        half_open_timeout=3,
        success_threshold=2,
        half_open_max_calls=2,
    )

    async def scenario() -> None:
        await failed(invoke, breaker)
        clock.advance(5)
        await invoke(breaker, ok)  # one good trial of two
        clock.advance(2.75)
        await invoke(breaker, ok)  # still in time: recovers
        assert breaker.state == "closed"
        await failed(invoke, breaker)
        clock.advance(5)
        await invoke(breaker, ok)
        clock.advance(3)
        assert (await refusal(invoke, breaker)).state == "open"
        assert events(breaker)[-3:] == ["trip", "attempt_reset", "retrip"]
        assert breaker.metrics().retry_after == pytest.approx(5)

    run(scenario)


# ------------------------------------------------------------------------ operator events


def test_force_open_refuses_every_call_until_reset(
    make: Make, invoke: Invoke, send: Send, run: Run, clock: FakeClock
) -> None:
    """forced_open refuses without a retry_after, however long it lasts; reset closes it."""
    breaker = make(failure_threshold=2, reset_timeout=1)

    async def scenario() -> None:
        await failed(invoke, breaker)
        assert await send(breaker, "force_open", reason="maintenance") == "forced_open"
        clock.advance(3600)
        error = await refusal(invoke, breaker)
        assert (error.state, error.retry_after) == ("forced_open", None)
        assert await send(breaker, "reset") == "closed"
        assert await invoke(breaker, ok) == "ok"
        assert events(breaker) == ["force_open", "reset"]
        assert breaker.audit[0].reason.endswith("maintenance")
        assert breaker.metrics().failure_count == 0  # reset cleared the streak

    run(scenario)


def test_disable_runs_every_call_unrecorded_until_reset(
    make: Make, invoke: Invoke, send: Send, run: Run
) -> None:
    """disabled runs calls and counts nothing, so nothing trips; reset closes it."""
    breaker = make(failure_threshold=1)

    async def scenario() -> None:
        assert await send(breaker, "disable") == "disabled"
        await failed(invoke, breaker, 3)
        assert await invoke(breaker, ok) == "ok"
        metrics = breaker.metrics()
        assert (metrics.state, metrics.total_requests, metrics.failure_count) == ("disabled", 0, 0)
        assert await send(breaker, "reset") == "closed"
        await failed(invoke, breaker)
        assert breaker.state == "open"
        assert events(breaker) == ["disable", "reset", "trip"]

    run(scenario)


def test_reset_closes_an_open_breaker_at_once(
    make: Make, invoke: Invoke, send: Send, run: Run
) -> None:
    """reset from open closes before the open duration ends, and the next call runs."""
    breaker = make(failure_threshold=1, reset_timeout=60)

    async def scenario() -> None:
        await failed(invoke, breaker)
        assert await send(breaker, "reset", reason="fixed") == "closed"
        assert await invoke(breaker, ok) == "ok"
        assert [(r.event, r.source, r.target) for r in breaker.audit][-1] == (
            "reset",
            "open",
            "closed",
        )
        assert breaker.metrics().retry_after is None

    run(scenario)


ILLEGAL = [
    # (state to reach, event, detail in the message)
    ("closed", "attempt_reset", None),
    ("closed", "recover", None),
    ("closed", "retrip", None),
    ("closed", "trip", "its guard does not hold"),
    ("closed", "explode", "unknown event"),
    ("open", "attempt_reset", "its guard does not hold"),
    ("open", "recover", None),
    ("forced_open", "force_open", None),
    ("forced_open", "disable", None),
    ("disabled", "trip", None),
]


def test_an_illegal_event_raises_naming_event_and_state_and_changes_nothing(
    make: Make, invoke: Invoke, send: Send, run: Run
) -> None:
    """An event not legal from the state (or whose guard does not hold) raises
    IllegalTransitionError(event, state) and leaves state, counters and trail as they were."""
    names = iter(range(len(ILLEGAL)))

    async def reach(state: str) -> CircuitBreaker:
        breaker = make(f"svc-{next(names)}", failure_threshold=1, reset_timeout=60)
        await invoke(breaker, ok)
        if state == "open":
            await failed(invoke, breaker)
        elif state != "closed":
            await send(breaker, {"forced_open": "force_open", "disabled": "disable"}[state])
        assert breaker.state == state
        return breaker

    async def scenario() -> None:
        for state, event, detail in ILLEGAL:
            breaker = await reach(state)
            before = dataclasses.replace(breaker.metrics(), store_errors=0, degraded=False)
            trail = list(breaker.audit)
            with pytest.raises(IllegalTransitionError) as info:
                await send(breaker, event)
            error = info.value
            assert (error.event, error.state) == (event, state)
            assert f"{event!r}" in str(error)
            assert f"{state!r}" in str(error)
            if detail is not None:
                assert detail in str(error)
            after = dataclasses.replace(breaker.metrics(), store_errors=0, degraded=False)
            assert (breaker.state, after, list(breaker.audit)) == (state, before, trail)

    run(scenario)


# ------------------------------------------------------------------------ metrics


def test_metrics_report_every_counter(
    bench: Bench, make: Make, invoke: Invoke, run: Run, clock: FakeClock
) -> None:
    """metrics() reports lifetime totals, streak, window, rates, timing and transitions;
    store_errors and degraded say which engine answered."""
    breaker = make(
        failure_threshold=3,
        reset_timeout=10,
        window=CountWindow(size=10),
        minimum_calls=4,
        failure_rate_threshold=1.0,
        ignore_exceptions=(KeyError,),
    )

    async def scenario() -> None:
        fresh = breaker.metrics()
        assert (fresh.error_rate, fresh.failure_rate, fresh.retry_after, fresh.due) == (
            0.0,
            None,
            None,
            None,
        )
        await invoke(breaker, ok)
        await failed(invoke, breaker)
        with pytest.raises(KeyError):
            await invoke(breaker, raising(KeyError("x")))
        await invoke(breaker, ok)
        await failed(invoke, breaker, 3)
        clock.advance(4)
        await refusal(invoke, breaker)
        metrics = breaker.metrics()
        expected = {
            "name": "svc",
            "state": "open",
            "failure_count": 3,
            "success_count": 2,
            "error_count": 4,
            "ignored_count": 1,
            "total_requests": 7,
            "rejected_count": 1,
            "slow_call_count": 0,
            "error_rate": 4 / 6,
            "window_calls": 6,
            "failure_rate": 4 / 6,
            "slow_call_rate": None,
            "open_duration": 10.0,
            "retry_after": pytest.approx(6.0),
            "transitions": 1,
            "sink_errors": 0,
            "due": None,
        }
        assert {k: v for k, v in dataclasses.asdict(metrics).items() if k in expected} == expected
        degraded = bench.engine == "shared-degraded"
        assert metrics.degraded is degraded
        assert (metrics.store_errors > 0) is degraded
        clock.advance(6)
        assert (breaker.metrics().retry_after, breaker.metrics().due) == (0.0, "attempt_reset")

    run(scenario)


# ------------------------------------------------------------------------ decorator, is_failure


def test_the_decorator_runs_def_and_async_def_through_the_breaker(
    make: Make, mode: str, run: Run
) -> None:
    """``@breaker`` keeps the function's name and kind; calls run through call or acall."""
    breaker = make(failure_threshold=2, reset_timeout=10)

    def get(user: str, *, fail: bool = False) -> str:
        """Fetch a user."""
        if fail:
            raise Boom(user)
        return f"user {user}"

    async def aget(user: str, *, fail: bool = False) -> str:
        """Fetch a user."""
        return get(user, fail=fail)

    decorated: Callable[..., Any] = breaker(get if mode == "sync" else aget)
    assert decorated.__doc__ == "Fetch a user."
    assert decorated.__name__ == ("get" if mode == "sync" else "aget")
    assert inspect.iscoroutinefunction(decorated) is (mode == "async")

    async def call(*args: Any, **kwargs: Any) -> Any:
        value = decorated(*args, **kwargs)
        return await value if inspect.isawaitable(value) else value

    async def scenario() -> None:
        assert await call("ada") == "user ada"
        for _ in range(2):
            with pytest.raises(Boom):
                await call("bob", fail=True)
        with pytest.raises(CircuitOpenError):
            await call("ada")
        metrics = breaker.metrics()
        assert (metrics.state, metrics.success_count, metrics.error_count) == ("open", 1, 2)

    run(scenario)


class _AsyncCall:
    async def __call__(self) -> None:
        raise Boom("down")


class _AsyncCallDescriptor(_AsyncCall):
    """A class-based decorator that binds to methods: inspect counts it a routine."""

    def __get__(self, instance: object, owner: type | None = None) -> _AsyncCallDescriptor:
        return self


@pytest.mark.parametrize("kind", [_AsyncCall, _AsyncCallDescriptor])
def test_the_decorator_sees_an_async_call_method(
    make: Make, run: Run, kind: type[_AsyncCall]
) -> None:
    """An object whose ``__call__`` is ``async def`` goes through acall: its failure counts."""
    breaker = make(failure_threshold=1)
    decorated = breaker(kind())
    assert inspect.iscoroutinefunction(decorated)

    async def scenario() -> None:
        with pytest.raises(Boom):
            await decorated()

    run(scenario)
    assert breaker.state == "open"


def test_is_failure_judges_returned_values(
    make: Make, invoke: Invoke, run: Run, clock: FakeClock
) -> None:
    """A true verdict is a failure (the value still returned), a number of seconds also
    lengthens the episode it opens, and a predicate that raises makes the call neutral."""

    def verdict(result: Any) -> bool | float:
        if result == "crash":
            raise RuntimeError("predicate bug")
        return 45.0 if result == 503 else result == 500

    breaker = make(failure_threshold=2, reset_timeout=10, options={"is_failure": verdict})

    async def scenario() -> None:
        assert await invoke(breaker, ok, 500) == 500
        assert await invoke(breaker, ok, "crash") == "crash"  # neutral: the streak goes on
        metrics = breaker.metrics()
        assert (metrics.failure_count, metrics.ignored_count, metrics.sink_errors) == (1, 1, 1)
        assert await invoke(breaker, ok, 503) == 503
        assert breaker.state == "open"
        assert breaker.metrics().open_duration == 45.0
        clock.advance(44)
        await refusal(invoke, breaker)
        clock.advance(1)
        assert await invoke(breaker, ok, 200) == 200
        assert breaker.state == "closed"

    run(scenario)


def test_the_scenario_runs_on_its_engine(
    bench: Bench, make: Make, invoke: Invoke, run: Run
) -> None:
    """Memory and live shared breakers are never degraded; a dead store's breaker is."""
    breaker = make(failure_threshold=3)

    async def scenario() -> None:
        assert breaker.metrics().degraded is False  # no round trip yet
        await failed(invoke, breaker)
        metrics = breaker.metrics()
        assert metrics.degraded is (bench.engine == "shared-degraded")
        assert metrics.store_errors == (1 if bench.engine == "shared-degraded" else 0)
        assert type(breaker).__name__ == (
            "CircuitBreaker" if bench.engine == "memory" else "SharedBreaker"
        )

    run(scenario)


def test_a_time_window_ages_out_between_calls(
    bench: Bench, make: Make, invoke: Invoke, run: Run, clock: FakeClock
) -> None:
    """metrics() reads a time window at the time it is asked: calls older than the window
    no longer count, whether or not a call has been made since (a shared breaker's mirror
    reads empty once a whole window has passed since the store's last reply)."""
    breaker = make(failure_threshold=5, window=TimeWindow(seconds=2), minimum_calls=1)

    async def scenario() -> None:
        await failed(invoke, breaker)
        assert (breaker.metrics().window_calls, breaker.metrics().failure_rate) == (1, 1.0)
        clock.advance(2)
        assert (breaker.metrics().window_calls, breaker.metrics().failure_rate) == (0, None)

    run(scenario)


def test_an_async_fallback_answers_acall_and_call_says_it_cannot(
    make: Make, run: Run, clock: FakeClock
) -> None:
    """An ``async def`` fallback answers refused awaited calls. ``call`` cannot await it: a
    refused ``call`` raises a TypeError naming ``acall`` (no coroutine is left unawaited,
    which ``filterwarnings = error`` would catch), on the inlined refusal (open) and on
    the others (half-open with its trial taken, forced_open)."""

    async def cached(key: str) -> str:
        return f"cached {key}"

    breaker = make(options={"fallback": cached}, failure_threshold=1, reset_timeout=5)
    cannot = r"breaker 'svc': its fallback .*cached is an async function, which call\(\) cannot"

    async def scenario() -> None:
        with pytest.raises(Boom):
            await breaker.acall(abort)
        assert await breaker.acall(aok, "a") == "cached a"
        with pytest.raises(TypeError, match=cannot):
            breaker.call(ok, "b")
        clock.advance(5)
        trial = breaker.acquire()  # the one trial: the next calls are refused
        with pytest.raises(TypeError, match=cannot):
            breaker.call(ok, "c")
        assert await breaker.acall(aok, "d") == "cached d"
        trial.success()
        await breaker.asend("force_open")
        with pytest.raises(TypeError, match=cannot):
            breaker.call(ok, "e")
        assert await breaker.acall(aok, "f") == "cached f"

    run(scenario)
    assert breaker.metrics().rejected_count == 6


async def abort() -> NoReturn:
    """An awaited call that fails with :class:`Boom`."""
    raise Boom("dependency down")


class CachedAnswer:
    """An async fallback that is an object (no ``__qualname__`` of its own)."""

    async def __call__(self, key: str) -> str:
        return f"cached {key}"

    def __repr__(self) -> str:
        return "<CachedAnswer>"


def test_an_async_fallback_object_is_named_by_its_repr(make: Make, run: Run) -> None:
    """An async fallback without a ``__qualname__`` (an object with an async ``__call__``)
    is named by its repr when call() refuses it; acall awaits it as any async fallback."""
    breaker = make(options={"fallback": CachedAnswer()}, failure_threshold=1)

    async def scenario() -> None:
        await breaker.asend("force_open")
        with pytest.raises(TypeError, match=r"its fallback <CachedAnswer> is an async function"):
            breaker.call(ok, "a")
        assert await breaker.acall(aok, "b") == "cached b"

    run(scenario)
