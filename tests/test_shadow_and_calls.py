"""Shadow mode (``enforce=False``) and call sinks, in memory and shared, sync and async."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from breaker_fsm import BreakerPolicy, CallRecord, CircuitBreaker, CircuitOpenError, CountWindow
from breaker_fsm.audit import CallLogSink
from breaker_fsm.testing import FakeClock
from tests.helpers import Boom, aboom, boom, fail, ok
from tests.redis_server import StoreFactory

Make = Callable[..., CircuitBreaker]


@pytest.fixture(params=["memory", "shared"])
def make(request: pytest.FixtureRequest, clock: FakeClock) -> Make:
    """``make(policy, **breaker_options)``: a breaker in memory or sharing Redis state."""

    made: list[Any] = []

    def build(policy: BreakerPolicy, **options: Any) -> CircuitBreaker:
        if request.param == "shared":
            stores: StoreFactory = request.getfixturevalue("redis_stores")
            options["store"] = stores(now=clock.monotonic)
            made.append(options["store"])
        return CircuitBreaker("svc", policy, clock=clock, **options)

    build.stores = made  # type: ignore[attr-defined]  # asyncio tests close them on their loop
    return build


def script(breaker: CircuitBreaker, clock: FakeClock, outcomes: str) -> list[str]:
    """Run one call a second, "s" succeeding and "f" failing; what each call did."""
    seen = []
    for outcome in outcomes:
        ran: list[bool] = []

        def op(outcome: str = outcome, ran: list[bool] = ran) -> str:
            ran.append(True)
            if outcome == "f":
                raise Boom("down")
            return "ok"

        try:
            breaker.call(op)
            seen.append("ok")
        except Boom:
            seen.append("failed")
        except CircuitOpenError:
            seen.append("refused")
        assert bool(ran) == (seen[-1] != "refused")
        clock.advance(1)
    return seen


def test_shadow_mode_runs_every_call_and_audits_as_enforcing(make: Make, clock: FakeClock) -> None:
    """A shadow breaker refuses nothing, yet its transitions and audit trail are exactly
    those of an enforcing breaker fed the same calls; what it would refuse is counted."""
    outcomes = "ssfffsssfsssssfsfffsss"
    policy = {"failure_threshold": 3, "reset_timeout": 3}
    own_clock = FakeClock()
    enforcing = CircuitBreaker("svc", BreakerPolicy(**policy), clock=own_clock)
    expected = script(enforcing, own_clock, outcomes)
    breaker = make(BreakerPolicy(**policy, enforce=False))
    seen = script(breaker, clock, outcomes)
    assert expected.count("refused") >= 3
    assert seen == ["failed" if o == "f" else "ok" for o in outcomes]
    walk = [(r.event, r.source, r.target, r.monotonic) for r in enforcing.audit]
    assert [(r.event, r.source, r.target, r.monotonic) for r in breaker.audit] == walk
    metrics = breaker.metrics()
    assert metrics.rejected_count == 0
    assert metrics.shadow_rejected_count == expected.count("refused")
    assert enforcing.metrics().rejected_count == expected.count("refused")


def test_shadow_mode_shows_in_the_policy_json() -> None:
    """enforce round-trips through JSON and defaults to True."""
    assert BreakerPolicy().enforce is True
    policy = BreakerPolicy(enforce=False)
    assert BreakerPolicy.model_validate_json(policy.model_dump_json()) == policy


def test_call_sink_receives_every_outcome(make: Make, clock: FakeClock) -> None:
    """Each call gives one CallRecord: success, failure (with the exception), ignored,
    refused; start and duration come from the breaker's clock."""
    records: list[CallRecord] = []
    policy = BreakerPolicy(failure_threshold=1, reset_timeout=5, ignore_exceptions=(KeyError,))
    breaker = make(policy, call_sinks=[records.append])

    def slow_ok() -> str:
        clock.advance(0.25)
        return "ok"

    def ignored() -> None:
        raise KeyError("not an outage")

    assert breaker.call(slow_ok) == "ok"
    with pytest.raises(KeyError):
        breaker.call(ignored)
    fail(breaker)
    with pytest.raises(CircuitOpenError):
        breaker.call(slow_ok)
    assert [r.outcome for r in records] == ["success", "ignored", "failure", "refused"]
    assert records[0].duration == pytest.approx(0.25)
    assert records[0].start == 0.0
    assert isinstance(records[2].exception, Boom)
    refusal = records[3]
    assert (refusal.slow, refusal.start, refusal.duration, refusal.exception) == (
        False,
        0.25,
        None,
        None,
    )
    assert all(r.breaker == "svc" for r in records)


def test_call_sinks_are_async_too(make: Make, clock: FakeClock) -> None:
    """acall tells the call sinks the same way."""
    records: list[CallRecord] = []
    breaker = make(BreakerPolicy(failure_threshold=1, reset_timeout=5))
    breaker.add_call_sink(records.append)

    async def aok() -> str:
        return "ok"

    async def aboom() -> None:
        raise Boom("down")

    async def scenario() -> None:
        await breaker.acall(aok)
        with pytest.raises(Boom):
            await breaker.acall(aboom)
        with pytest.raises(CircuitOpenError):
            await breaker.acall(aok)
        for store in make.stores:  # type: ignore[attr-defined]
            await store.aclose()

    asyncio.run(scenario())
    assert [r.outcome for r in records] == ["success", "failure", "refused"]


def test_shadow_mode_runs_awaited_calls_it_would_refuse(make: Make) -> None:
    """acall on a shadow breaker that has tripped: the call runs and returns, unrecorded
    but for the would-refuse count, and call sinks hear its real outcome."""
    records: list[CallRecord] = []
    breaker = make(
        BreakerPolicy(failure_threshold=1, reset_timeout=10, enforce=False),
        call_sinks=[records.append],
    )

    async def aok() -> str:
        return "ran anyway"

    async def aboom() -> None:
        raise Boom("down")

    async def scenario() -> None:
        try:
            with pytest.raises(Boom):
                await breaker.acall(aboom)
            assert breaker.state == "open"
            assert await breaker.acall(aok) == "ran anyway"
            with pytest.raises(Boom):
                await breaker.acall(aboom)
        finally:
            for store in make.stores:  # type: ignore[attr-defined]
                await store.aclose()

    asyncio.run(scenario())
    assert [r.outcome for r in records] == ["failure", "success", "failure"]
    metrics = breaker.metrics()
    assert (metrics.shadow_rejected_count, metrics.error_count, metrics.rejected_count) == (2, 1, 0)


def test_slow_calls_are_marked(make: Make, clock: FakeClock) -> None:
    """A call slower than slow_call_duration is marked slow in its record."""
    records: list[CallRecord] = []
    policy = BreakerPolicy(window=CountWindow(size=10), slow_call_duration=1.0)
    breaker = make(policy, call_sinks=[records.append])
    breaker.call(lambda: clock.advance(2))
    breaker.call(lambda: clock.advance(0.5))
    assert [(r.outcome, r.slow) for r in records] == [("success", True), ("success", False)]


class TickingClock(FakeClock):
    """A FakeClock that moves on a second after each monotonic reading, as a real clock
    moves between any two readings."""

    def monotonic(self) -> float:
        now = super().monotonic()
        self.advance(1)
        return now


def test_a_call_sink_hears_the_call_as_the_breaker_counted_it() -> None:
    """A recorded call's record is timed by the one reading that ended it, the one the
    breaker judged it on: its end, duration and slow flag are the ones counted, though
    the clock moves on right after (a success and a failure)."""
    clock = TickingClock()
    records: list[CallRecord] = []
    policy = BreakerPolicy(window=CountWindow(size=10), slow_call_duration=1.5)
    breaker = CircuitBreaker("svc", policy, clock=clock, call_sinks=[records.append])
    assert breaker.call(ok) == "ok"  # starts at 0, ends at 1
    with pytest.raises(Boom):
        breaker.call(boom)  # starts at 2, ends at 3
    assert [(r.outcome, r.slow, r.start, r.duration) for r in records] == [
        ("success", False, 0.0, 1.0),
        ("failure", False, 2.0, 1.0),
    ]
    assert breaker.metrics().slow_call_count == 0


def test_a_failing_call_sink_never_fails_the_call(
    make: Make, caplog: pytest.LogCaptureFixture
) -> None:
    """A sink that raises is logged (naming the breaker and the sink, with the traceback)
    and counted in sink_errors, for a refused call too; the call's result stands."""

    def broken(record: CallRecord) -> None:
        raise RuntimeError("sink down")

    breaker = make(BreakerPolicy(failure_threshold=1), call_sinks=[broken])
    assert breaker.call(lambda: 7) == 7
    with pytest.raises(Boom):
        breaker.call(boom)  # trips
    with pytest.raises(CircuitOpenError):
        breaker.call(lambda: 8)
    assert breaker.metrics().sink_errors == 3
    logged = [r for r in caplog.records if "call sink" in r.getMessage()]
    assert [r.getMessage() for r in logged] == [f"breaker 'svc': call sink {broken!r} failed"] * 3
    assert all(r.exc_info and isinstance(r.exc_info[1], RuntimeError) for r in logged)


def test_no_call_sink_keeps_the_fast_path(clock: FakeClock) -> None:
    """Without call sinks the breaker stays on its inlined path; adding one leaves it."""
    breaker = CircuitBreaker("svc", clock=clock)
    assert breaker._hot
    breaker.add_call_sink(lambda record: None)
    assert not breaker._hot
    breaker.send("force_open")
    breaker.send("reset")
    assert not breaker._hot  # a transition does not bring the fast path back


def test_a_shadow_breaker_forced_open_still_runs_every_call(clock: FakeClock) -> None:
    """Shadow mode holds for the operator states too: forced_open refuses nothing, it only
    counts what an enforcing breaker would have refused."""
    breaker = CircuitBreaker("svc", BreakerPolicy(enforce=False), clock=clock)
    breaker.send("force_open")
    assert [breaker.call(ok, n) for n in range(3)] == [0, 1, 2]
    metrics = breaker.metrics()
    assert (metrics.state, metrics.rejected_count, metrics.shadow_rejected_count) == (
        "forced_open",
        0,
        3,
    )


def test_shadow_mode_tells_call_sinks_the_real_outcome(make: Make) -> None:
    """The calls a shadow breaker would have refused still reach call sinks, with their
    real outcome (what a replay of other policies needs), marked ``shadowed``: by call,
    acall and a permit."""
    records: list[CallRecord] = []
    policy = BreakerPolicy(failure_threshold=1, reset_timeout=10, enforce=False)
    breaker = make(policy, call_sinks=[records.append])
    fail(breaker)
    assert breaker.state == "open"
    assert breaker.call(lambda: "ran anyway") == "ran anyway"
    fail(breaker)

    async def scenario() -> None:
        try:
            with pytest.raises(Boom):
                await breaker.acall(aboom)
        finally:
            for store in make.stores:  # type: ignore[attr-defined]
                await store.aclose()

    asyncio.run(scenario())
    with breaker:
        pass
    assert [(r.outcome, r.shadowed) for r in records] == [
        ("failure", False),
        ("success", True),
        ("failure", True),
        ("failure", True),
        ("success", True),
    ]
    assert [r.as_json().get("shadowed") for r in records] == [None, True, True, True, True]
    metrics = breaker.metrics()
    assert (metrics.shadow_rejected_count, metrics.error_count) == (4, 1)  # one recorded


def test_call_log_sink_writes_json_lines(tmp_path: Path, clock: FakeClock) -> None:
    """CallLogSink writes one JSON object a line with at, outcome and duration."""
    path = tmp_path / "calls.jsonl"
    with CallLogSink(path) as sink:
        breaker = CircuitBreaker(
            "svc", BreakerPolicy(failure_threshold=1), clock=clock, call_sinks=[sink]
        )
        breaker.call(lambda: clock.advance(0.5))
        clock.advance(1)
        fail(breaker)
        with pytest.raises(CircuitOpenError):
            breaker.call(lambda: None)
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [(line["at"], line["outcome"], line["duration"]) for line in lines] == [
        (0.0, "success", 0.5),
        (1.5, "failure", 0.0),
        (1.5, "refused", None),
    ]
    assert lines[1]["exception"] == "Boom"


def test_call_log_sink_needs_its_directory(tmp_path: Path) -> None:
    """A CallLogSink pointed at a missing directory fails when built, naming it."""
    with pytest.raises(FileNotFoundError, match="missing"):
        CallLogSink(tmp_path / "missing" / "calls.jsonl")


def test_call_sinks_must_be_callables(clock: FakeClock) -> None:
    """call_sinks=["file.jsonl"] is refused at construction, with a hint."""
    with pytest.raises(TypeError, match="call_sinks"):
        CircuitBreaker("svc", clock=clock, call_sinks="calls.jsonl")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="add_call_sink"):
        CircuitBreaker("svc", clock=clock).add_call_sink(3)  # type: ignore[arg-type]


def test_call_log_sink_names_a_bad_path() -> None:
    """CallLogSink(123) says what it needs, naming itself."""
    with pytest.raises(TypeError, match="CallLogSink path must be a str or a path, got int"):
        CallLogSink(123)  # type: ignore[arg-type]


def test_shadow_calls_pass_their_arguments_and_tell_call_sinks_everything(
    make: Make, clock: FakeClock
) -> None:
    """A call a shadow breaker would refuse gets its arguments, by call and acall; call
    sinks get its start, its duration, what it raised, and the outcome ``is_failure``
    judges from what it returned, each marked shadowed."""
    records: list[CallRecord] = []
    policy = BreakerPolicy(failure_threshold=1, reset_timeout=100, enforce=False)
    breaker = make(policy, call_sinks=[records.append], is_failure=lambda r: r == "bad")
    quiet = make(policy)  # no call sink: acall's other path
    fail(breaker)
    fail(quiet)  # shared, it is the same breaker: already open, so this one is shadowed
    assert quiet.state == "open"
    before = quiet.metrics().shadow_rejected_count
    records.clear()
    clock.advance(10)

    def op(result: str, *, took: float) -> str:
        clock.advance(took)
        if result == "raise":
            raise Boom(result)
        return result

    async def aop(result: str, *, took: float) -> str:
        return op(result, took=took)

    assert breaker.call(op, "good", took=0.5) == "good"
    assert breaker.call(op, "bad", took=0.25) == "bad"
    with pytest.raises(Boom) as raised:
        breaker.call(op, "raise", took=1)

    async def scenario() -> None:
        try:
            assert await breaker.acall(aop, "good", took=0.5) == "good"
            assert await breaker.acall(aop, "bad", took=0.25) == "bad"
            with pytest.raises(Boom) as araised:
                await breaker.acall(aop, "raise", took=1)
            assert records[-1].exception is araised.value
            assert await quiet.acall(aop, "good", took=0) == "good"
        finally:
            for store in make.stores:  # type: ignore[attr-defined]
                await store.aclose()

    asyncio.run(scenario())
    assert records[2].exception is raised.value
    expected = [("success", 10.0, 0.5), ("failure", 10.5, 0.25), ("failure", 10.75, 1.0)]
    seen = [(r.outcome, r.start, r.duration) for r in records]
    assert seen == expected + [(o, s + 1.75, d) for o, s, d in expected]
    assert all(r.shadowed for r in records)
    assert [r.exception is None for r in records] == [True, True, False] * 2
    assert (breaker.state, breaker.metrics().shadow_rejected_count) == ("open", 6)
    assert quiet.metrics().shadow_rejected_count == before + 1


def test_a_call_sink_added_during_a_shadowed_call_hears_it_whole(
    make: Make, clock: FakeClock
) -> None:
    """A call sink added while a call a shadow breaker would refuse is running hears that
    call with its real start and duration, by call and acall alike."""
    records: list[CallRecord] = []
    policy = BreakerPolicy(failure_threshold=1, reset_timeout=100, enforce=False)
    breaker, abreaker = make(policy), make(policy)  # neither has a call sink yet
    fail(breaker)
    fail(abreaker)  # shared, already open: shadowed
    clock.advance(10)

    def op(breaker: CircuitBreaker) -> str:
        breaker.add_call_sink(records.append)
        clock.advance(0.5)
        return "ran"

    async def aop(breaker: CircuitBreaker) -> str:
        return op(breaker)

    assert breaker.call(op, breaker) == "ran"

    async def scenario() -> None:
        try:
            assert await abreaker.acall(aop, abreaker) == "ran"
        finally:
            for store in make.stores:  # type: ignore[attr-defined]
                await store.aclose()

    asyncio.run(scenario())
    assert [(r.outcome, r.start, r.duration, r.shadowed) for r in records] == [
        ("success", 10.0, 0.5, True),
        ("success", 10.5, 0.5, True),
    ]
