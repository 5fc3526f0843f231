"""A fleet of OS processes sharing one breaker through a real redis-server."""

from __future__ import annotations

import multiprocessing
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

from breaker_fsm import BreakerPolicy, Transition
from breaker_fsm.audit import verify
from breaker_fsm.testing import DEFAULT_WALL_START

if TYPE_CHECKING:
    from multiprocessing.sharedctypes import Synchronized

    from breaker_fsm import CircuitBreaker
    from tests.redis_server import RedisServer

pytest_plugins = ["tests.redis_server"]

pytest.importorskip("redis", reason="redis-py is not installed: pip install redis")

WORKERS = 4
TIMEOUT = 60.0  # seconds any step may take on a loaded machine before the test gives up
CONTEXT = multiprocessing.get_context("spawn")


class SharedClock:
    """A fake clock whose reading lives in shared memory: the parent moves it for everyone.

    The breakers use it for their local time and the store's scripts for "now", so open
    durations elapse exactly when the test says so, in every process at once.
    """

    def __init__(self, value: Synchronized[float]) -> None:
        self.value = value

    def monotonic(self) -> float:
        return float(self.value.value)

    def wall(self) -> float:
        return DEFAULT_WALL_START + float(self.value.value)


def _worker(index: int, shared: dict[str, Any]) -> None:
    """One process of the fleet: runs the parent's commands against the shared breaker."""
    from breaker_fsm import BreakerPolicy, CircuitBreaker
    from breaker_fsm.redis import RedisStore

    clock = SharedClock(shared["now"])
    store = RedisStore(shared["url"], now=clock.monotonic, timeout=10.0)
    policy = BreakerPolicy.model_validate_json(shared["policy"])
    breaker = CircuitBreaker("fleet", policy, clock=clock, store=store)
    commands, results = shared["commands"][index], shared["results"]
    try:
        while True:
            command, argument = commands.get(timeout=TIMEOUT)
            if command == "stop":
                break
            outcomes = _run(command, argument, index, breaker, shared)
            results.put((command, index, outcomes, breaker.state))
    finally:
        store.close()


def _run(
    command: str, argument: Any, index: int, breaker: CircuitBreaker, shared: dict[str, Any]
) -> list[str]:
    """Run one command in a worker; what each call did."""
    from breaker_fsm import CircuitOpenError

    def boom() -> None:
        raise ConnectionError("dependency down")

    def trial() -> str:
        shared["results"].put(("admitted", index))
        shared["release"].wait(TIMEOUT)
        return "ok"

    if command == "audit":
        return [record.to_json() for record in breaker.audit]
    operation: Any = {"fail": boom, "trial": trial}.get(command, lambda: "ok")
    count, together = argument if command == "fail" else (1, command == "trial")
    if together:  # at the same moment as the other workers
        shared["start"].wait(TIMEOUT)
    outcomes = []
    for _ in range(count):
        try:
            outcomes.append(str(breaker.call(operation)))
        except ConnectionError:
            outcomes.append("failed")
        except CircuitOpenError:
            if command == "trial":
                shared["results"].put(("refused", index))
            outcomes.append("refused")
    return outcomes


class Fleet:
    """The parent's handle on the worker processes."""

    def __init__(self, server: RedisServer, policy: BreakerPolicy) -> None:
        self.now = CONTEXT.Value("d", 0.0)
        self.start = CONTEXT.Barrier(WORKERS)
        self.release = CONTEXT.Event()
        self.results = CONTEXT.Queue()
        self.commands = [CONTEXT.Queue() for _ in range(WORKERS)]
        self.pending: list[tuple[Any, ...]] = []  # messages read early, for collect()
        shared = {
            "url": server.url,
            "policy": policy.model_dump_json(),
            "now": self.now,
            "start": self.start,
            "release": self.release,
            "commands": self.commands,
            "results": self.results,
        }
        self.processes = [
            CONTEXT.Process(target=_worker, args=(index, shared), daemon=True)
            for index in range(WORKERS)
        ]
        for process in self.processes:
            process.start()

    def advance(self, seconds: float) -> None:
        with self.now.get_lock():
            self.now.value += seconds

    def send(self, command: str, argument: Any = None, workers: range | None = None) -> None:
        for index in workers if workers is not None else range(WORKERS):
            self.commands[index].put((command, argument))

    def collect(self, command: str, count: int = WORKERS) -> dict[int, tuple[list[str], str]]:
        """The replies to ``command`` by worker: (outcomes, state afterwards)."""
        replies: dict[int, tuple[list[str], str]] = {}
        while len(replies) < count:
            message = self.next_message()
            if message[0] == command and len(message) == 4:
                replies[message[1]] = (message[2], message[3])
        return replies

    def next_message(self) -> tuple[Any, ...]:
        if self.pending:
            return self.pending.pop(0)
        message: tuple[Any, ...] = self.results.get(timeout=TIMEOUT)
        return message

    def trial_event(self) -> tuple[str, int]:
        """The next "admitted" or "refused" message of a trial (a worker's final reply to
        the command is kept for :meth:`collect`)."""
        while True:
            message = self.results.get(timeout=TIMEOUT)
            if len(message) == 2:
                return message[0], message[1]
            self.pending.append(message)

    def trails(self) -> list[Transition]:
        """Every worker's audit trail, merged and sorted by seq."""
        self.send("audit")
        records = [
            Transition.model_validate_json(line)
            for outcomes, _ in self.collect("audit").values()
            for line in outcomes
        ]
        return sorted(records, key=lambda r: r.seq)

    def stop(self) -> None:
        self.release.set()
        self.send("stop")
        for process in self.processes:
            process.join(TIMEOUT)
            if process.is_alive():  # pragma: no cover - only a hung worker gets here
                process.kill()
                process.join()


@pytest.fixture
def fleet_factory(redis_server: RedisServer) -> Iterator[Any]:
    """Start fleets of worker processes on the test server; stop them afterwards."""
    fleets: list[Fleet] = []

    def make(policy: BreakerPolicy) -> Fleet:
        fleet = Fleet(redis_server, policy)
        fleets.append(fleet)
        return fleet

    yield make
    for fleet in fleets:
        fleet.stop()


def test_failures_from_many_processes_add_up_to_one_trip(fleet_factory: Any) -> None:
    """Four processes failing at once trip the shared breaker exactly once; trails merge."""
    fleet = fleet_factory(BreakerPolicy(failure_threshold=8, reset_timeout=30))
    fleet.send("fail", (3, True))  # 12 failures in all; no process alone reaches 8
    replies = fleet.collect("fail")
    outcomes = [o for outs, _ in replies.values() for o in outs]
    assert outcomes.count("failed") >= 8
    assert sum("failed" in outs for outs, _ in replies.values()) >= 3  # counted together
    trail = fleet.trails()
    assert [r.event for r in trail] == ["trip"]
    assert (trail[0].seq, trail[0].generation) == (1, 1)
    assert trail[0].counters["consecutive_failures"] == 8
    assert verify(trail) == 1
    fleet.send("probe")  # every process learns the trip (a closed mirror runs one call)
    fleet.collect("probe")
    fleet.send("probe")
    for outs, state in fleet.collect("probe").values():
        assert (outs, state) == (["refused"], "open")


def test_half_open_admits_exactly_the_permitted_trials_fleet_wide(fleet_factory: Any) -> None:
    """After the open duration, of four racing processes exactly two run trials; all recover."""
    policy = BreakerPolicy(
        failure_threshold=1, reset_timeout=10, half_open_max_calls=2, success_threshold=2
    )
    fleet = fleet_factory(policy)
    fleet.send("fail", (1, False), workers=range(1))
    fleet.collect("fail", count=1)
    fleet.send("probe")  # everyone mirrors the open state
    fleet.collect("probe")
    fleet.advance(10)
    fleet.send("trial")
    admitted: list[int] = []
    refused: list[int] = []
    while len(admitted) + len(refused) < WORKERS:  # the trials block until released
        kind, index = fleet.trial_event()
        (admitted if kind == "admitted" else refused).append(index)
    assert len(admitted) == 2
    assert len(refused) == 2
    fleet.release.set()
    replies = fleet.collect("trial")
    assert sorted(i for i, (outs, _) in replies.items() if outs == ["ok"]) == sorted(admitted)
    fleet.send("probe")
    for outs, state in fleet.collect("probe").values():
        assert (outs, state) == (["ok"], "closed")  # every process sees the recovery
    trail = fleet.trails()
    assert [r.event for r in trail] == ["trip", "attempt_reset", "recover"]
    assert trail[-1].counters["trial_successes"] == 2
    assert verify(trail) == 3
