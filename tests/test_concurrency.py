"""Threads and tasks: exact counters, exactly the permitted trials, no lock held in calls."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import threading
from typing import NoReturn

import pytest

from breaker_fsm import BreakerPolicy, CircuitBreaker, CircuitOpenError, CountWindow
from breaker_fsm.audit import verify
from breaker_fsm.testing import FakeClock

THREADS = 8


def run_threads(target: object, n: int = THREADS) -> None:
    threads = [threading.Thread(target=target) for _ in range(n)]  # type: ignore[arg-type]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
        assert not t.is_alive(), "deadlock: a thread did not finish"


@pytest.mark.parametrize("window", [None, CountWindow(size=50)])
def test_counters_exact_under_contention(window: CountWindow | None) -> None:
    """Many threads calling at once lose no count."""
    breaker = CircuitBreaker(
        "c",
        BreakerPolicy(
            failure_threshold=None if window else 10**9,
            window=window,
            failure_rate_threshold=1.0,
            minimum_calls=10**6 if window is None else 50,
        ),
    )
    per_thread = 2000
    barrier = threading.Barrier(THREADS)

    def work() -> None:
        barrier.wait()
        for i in range(per_thread):
            if i % 3 == 0:
                with contextlib.suppress(ValueError):
                    breaker.call(_fail)
            else:
                breaker.call(int)

    run_threads(work)
    m = breaker.metrics()
    failures = THREADS * len(range(0, per_thread, 3))
    assert m.total_requests == THREADS * per_thread
    assert m.error_count == failures
    assert m.success_count == THREADS * per_thread - failures


def _fail() -> NoReturn:
    raise ValueError("x")


@pytest.mark.parametrize("max_calls", [1, 3])
def test_racing_into_half_open_admits_exactly_the_permitted_trials(max_calls: int) -> None:
    """However many threads race into half-open, exactly half_open_max_calls trials run."""
    clock = FakeClock()
    breaker = CircuitBreaker(
        "h",
        BreakerPolicy(
            failure_threshold=1,
            reset_timeout=1,
            success_threshold=max_calls,
            half_open_max_calls=max_calls,
        ),
        clock=clock,
    )
    with contextlib.suppress(ValueError):
        breaker.call(_fail)
    clock.advance(1)
    admitted: list[int] = []
    rejected: list[int] = []
    release = threading.Event()
    barrier = threading.Barrier(THREADS * 4)
    decided = threading.Condition()

    def trial() -> int:
        with decided:
            admitted.append(1)
            decided.notify_all()
        release.wait(timeout=30)
        return 1

    def work() -> None:
        barrier.wait()
        try:
            breaker.call(trial)
        except CircuitOpenError:
            with decided:
                rejected.append(1)
                decided.notify_all()

    threads = [threading.Thread(target=work) for _ in range(THREADS * 4)]
    for t in threads:
        t.start()
    # Hold the trials until every thread is either inside one or has been rejected.
    with decided:
        assert decided.wait_for(lambda: len(admitted) + len(rejected) == THREADS * 4, 30)
    release.set()
    for t in threads:
        t.join(timeout=60)
    assert len(admitted) == max_calls
    assert len(rejected) == THREADS * 4 - max_calls
    assert breaker.state == "closed"
    assert verify(breaker.audit) == 3


def test_no_lock_is_held_while_the_operation_runs() -> None:
    """Two threads can be inside the same breaker's operation at the same time."""
    breaker = CircuitBreaker("l")
    inside = threading.Barrier(2, timeout=30)

    def op() -> None:
        inside.wait()  # both threads must be in here at once, or this times out

    run_threads(lambda: breaker.call(op), 2)
    assert breaker.metrics().success_count == 2


def test_asyncio_tasks_counters_and_trials() -> None:
    """Many asyncio tasks keep exact counters and admit one trial in half-open."""
    clock = FakeClock()
    breaker = CircuitBreaker("a", BreakerPolicy(failure_threshold=5, reset_timeout=1), clock=clock)

    async def good() -> int:
        await asyncio.sleep(0)
        return 1

    async def bad() -> int:
        await asyncio.sleep(0)
        raise ValueError("bad")

    async def scenario() -> tuple[int, int]:
        results = await asyncio.gather(
            *(breaker.acall(good) for _ in range(1000)), return_exceptions=True
        )
        assert all(r == 1 for r in results)
        for _ in range(5):
            with pytest.raises(ValueError, match="bad"):
                await breaker.acall(bad)
        clock.advance(1)
        gate = asyncio.Event()

        async def slow_trial() -> int:
            await gate.wait()
            return 1

        tasks = [asyncio.ensure_future(breaker.acall(slow_trial)) for _ in range(100)]
        await asyncio.sleep(0)
        gate.set()
        outcomes = await asyncio.gather(*tasks, return_exceptions=True)
        ok = sum(1 for o in outcomes if o == 1)
        refused = sum(1 for o in outcomes if isinstance(o, CircuitOpenError))
        return ok, refused

    assert asyncio.run(scenario()) == (1, 99)
    m = breaker.metrics()
    assert (m.success_count, m.error_count, m.state) == (1001, 5, "closed")


def test_reentrant_sink_does_not_deadlock() -> None:
    """A sink that reads metrics and sends reset from inside a transition completes."""
    clock = FakeClock()
    seen: list[str] = []
    breaker: CircuitBreaker

    def sink(record: object) -> None:
        seen.append(breaker.metrics().state + "/" + breaker.state)
        if breaker.state == "open":
            breaker.send("reset")

    breaker = CircuitBreaker("r", BreakerPolicy(failure_threshold=1), clock=clock, sinks=[sink])
    done = threading.Event()

    def work() -> None:
        with contextlib.suppress(ValueError):
            breaker.call(_fail)
        done.set()

    threading.Thread(target=work).start()
    assert done.wait(timeout=30), "deadlock in re-entrant sink"
    assert breaker.state == "closed"
    assert [r.event for r in breaker.audit] == ["trip", "reset"]
    assert verify(breaker.audit) == 2
    assert seen == ["open/open", "closed/closed"]


class _PausingLock:
    """The breaker's lock, wrapped: one chosen thread's first acquire pauses until resumed.

    Swapped in while the breaker is already half-open, so the chosen thread's first
    acquire is the one in ``_admit`` right after the unlocked permit check passed: the
    thread is held exactly in the window between that check and the locked re-check.
    """

    def __init__(self, lock: threading.Lock) -> None:
        self._lock = lock
        self.target: threading.Thread | None = None
        self.paused_in: str | None = None  # the function whose acquire was paused
        self.permits_seen: int | None = None
        self.at_window = threading.Event()
        self.resume = threading.Event()
        self.breaker: CircuitBreaker | None = None

    def _pause_if_target(self, depth: int) -> None:
        if threading.current_thread() is self.target and not self.at_window.is_set():
            self.paused_in = sys._getframe(depth).f_code.co_name
            assert self.breaker is not None
            self.permits_seen = self.breaker._permits
            self.at_window.set()
            self.resume.wait(timeout=30)

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        self._pause_if_target(2)
        return self._lock.acquire(blocking, timeout)

    def release(self) -> None:
        self._lock.release()

    def __enter__(self) -> bool:
        self._pause_if_target(2)
        return self._lock.acquire()

    def __exit__(self, *exc: object) -> None:
        self._lock.release()


@pytest.mark.parametrize("max_calls", [1, 3])
def test_permit_taken_between_unlocked_check_and_lock_refuses_the_late_caller(
    max_calls: int,
) -> None:
    """A caller paused after the unlocked permit check is refused once others take every permit."""
    clock = FakeClock()
    breaker = CircuitBreaker(
        "p",
        BreakerPolicy(failure_threshold=1, reset_timeout=1, half_open_max_calls=max_calls),
        clock=clock,
    )
    with contextlib.suppress(ValueError):
        breaker.call(_fail)
    clock.advance(1)
    assert breaker.send("attempt_reset") == "half_open"  # no permit taken yet
    pausing = _PausingLock(breaker._lock)
    pausing.breaker = breaker
    breaker._lock = pausing  # type: ignore[assignment]

    guard = threading.Lock()
    inside = [0]
    most_inside = [0]
    permits: list[int] = []
    late_outcome: list[str] = []
    holder_outcomes: list[str] = []
    entered = threading.Barrier(max_calls + 1, timeout=30)
    release = threading.Event()

    def enter_trial() -> None:
        with guard:
            inside[0] += 1
            most_inside[0] = max(most_inside[0], inside[0])
            permits.append(breaker._permits)

    def leave_trial() -> None:
        with guard:
            inside[0] -= 1

    def late_trial() -> str:
        enter_trial()
        leave_trial()
        return "ran"

    def late() -> None:
        try:
            late_outcome.append(breaker.call(late_trial))
        except CircuitOpenError:
            late_outcome.append("refused")

    def held_trial() -> NoReturn:
        enter_trial()
        try:
            entered.wait()
            release.wait(timeout=30)
        finally:
            leave_trial()
        raise ValueError("trial failed")

    def holder() -> None:
        try:
            breaker.call(held_trial)
        except ValueError:
            holder_outcomes.append("failed")
        except CircuitOpenError:
            holder_outcomes.append("refused")

    late_thread = threading.Thread(target=late, daemon=True)
    pausing.target = late_thread
    holders = [threading.Thread(target=holder, daemon=True) for _ in range(max_calls)]
    try:
        late_thread.start()
        assert pausing.at_window.wait(timeout=30), "the late caller never reached the lock"
        # It passed the unlocked check (a permit was free) and waits to take the lock.
        # the lock taken in _admit (mutmut renames it xǁCircuitBreakerǁ_admit__mutmut_…)
        assert pausing.paused_in is not None
        assert "_admit" in pausing.paused_in
        assert pausing.permits_seen == 0
        for t in holders:
            t.start()
        entered.wait()  # every permit is taken: max_calls trials are running
        assert breaker._permits == max_calls
        pausing.resume.set()
        late_thread.join(timeout=30)
        assert not late_thread.is_alive(), "deadlock: the late caller did not finish"
        assert late_outcome == ["refused"], (
            f"the late caller's trial {late_outcome}: {most_inside[0]} trials at once "
            f"with half_open_max_calls={max_calls}, permits up to {max(permits)}"
        )
        assert breaker._permits == max_calls
    finally:
        pausing.resume.set()
        release.set()
        for t in [late_thread, *holders]:
            if t.ident is not None:  # started
                t.join(timeout=30)
    for t in holders:
        assert not t.is_alive(), "deadlock: a trial did not finish"
    assert most_inside[0] == max_calls
    assert holder_outcomes == ["failed"] * max_calls
    assert len(permits) == max_calls
    assert all(1 <= p <= max_calls for p in permits)  # never negative, never past the limit
    assert breaker.state == "open"  # the first failed trial retripped
    assert breaker._permits >= 0

    # The permits were not leaked: the next half-open episode admits a trial again.
    clock.advance(breaker.metrics().open_duration)
    assert breaker.call(late_trial) == "ran"
    assert breaker.state == "closed"
    assert breaker._permits >= 0
    assert verify(breaker.audit) == 5
