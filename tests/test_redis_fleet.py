"""A fleet of OS processes sharing one breaker through a real redis-server.

Each worker process is one member (its own RedisStore, subscription and clients); the
parent moves a fake clock that every process and script reads. What an operation did is
counted in Redis itself (``INCR``), never by the processes.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
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

pytest.importorskip("redis", reason="redis-py is not installed: pip install redis")

WORKERS = 4
TIMEOUT = 60.0  # seconds any step may take on a loaded machine before the test gives up
# Workers fork from a fork server that imported the library once: a fresh interpreter per
# worker ("spawn") costs seconds each on a loaded machine. The server forks from a
# single-threaded process, so no worker inherits a thread or a lock.
CONTEXT = multiprocessing.get_context("forkserver")
CONTEXT.set_forkserver_preload(
    ["breaker_fsm", "breaker_fsm.redis", "redis", "tests.test_redis_fleet"]
)


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
    import redis

    from breaker_fsm import BreakerPolicy, CircuitBreaker
    from breaker_fsm.redis import RedisStore

    clock = SharedClock(shared["now"])
    store = RedisStore(shared["url"], now=clock.monotonic, **shared["store_options"])
    policy = BreakerPolicy.model_validate_json(shared["policy"])
    breaker = CircuitBreaker("fleet", policy, clock=clock, store=store)
    shared["counter"] = redis.Redis.from_url(shared["url"])  # counts what operations ran
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


def _wait(condition: Any) -> list[str]:
    """Poll ``condition`` (an event: a push arriving) for at most TIMEOUT seconds."""
    deadline = time.monotonic() + TIMEOUT
    while not condition():
        if time.monotonic() > deadline:
            return ["timed out"]
        time.sleep(0.001)
    return ["ok"]


def _run(
    command: str, argument: Any, index: int, breaker: CircuitBreaker, shared: dict[str, Any]
) -> list[str]:
    """Run one command in a worker; what each call did."""
    from breaker_fsm import CircuitOpenError

    def boom() -> None:
        raise ConnectionError("dependency down")

    def trial() -> str:
        if command == "counted_trial":
            shared["counter"].incr("trials")
        shared["results"].put(("admitted", index))
        shared["release"].wait(TIMEOUT)
        return "ok"

    def counted() -> str:
        shared["counter"].incr("ran")
        return "ok"

    if command == "audit":
        return [record.to_json() for record in breaker.audit]
    if command == "wait":  # until the mirror is in state ``argument``
        return _wait(lambda: breaker.state == argument)
    if command == "live":
        return _wait(lambda: breaker.metrics().live)
    if command == "send":
        return [breaker.send(argument)]
    operation: Any = {
        "fail": boom,
        "trial": trial,
        "counted_trial": trial,
        "counted": counted,
    }.get(command, lambda: "ok")
    if command == "fail":
        count, together = argument
    else:
        count, together = 1, command in ("trial", "counted_trial")
    if together:  # at the same moment as the other workers
        shared["start"].wait(TIMEOUT)
    outcomes = []
    for _ in range(count):
        try:
            outcomes.append(str(breaker.call(operation)))
        except ConnectionError:
            outcomes.append("failed")
        except CircuitOpenError:
            if command in ("trial", "counted_trial"):
                shared["results"].put(("refused", index))
            outcomes.append("refused")
    return outcomes


class Fleet:
    """The parent's handle on the worker processes."""

    def __init__(
        self,
        server: RedisServer,
        policy: BreakerPolicy,
        workers: int = WORKERS,
        now: Synchronized[float] | None = None,
        **store_options: Any,
    ) -> None:
        self.now = CONTEXT.Value("d", 0.0) if now is None else now
        self.workers = workers
        self.start = CONTEXT.Barrier(workers)
        self.release = CONTEXT.Event()
        self.results = CONTEXT.Queue()
        self.commands = [CONTEXT.Queue() for _ in range(workers)]
        self.pending: list[tuple[Any, ...]] = []  # messages read early, for collect()
        shared = {
            "url": server.url,
            "store_options": {"timeout": 10.0, **store_options},
            "policy": policy.model_dump_json(),
            "now": self.now,
            "start": self.start,
            "release": self.release,
            "commands": self.commands,
            "results": self.results,
        }
        self.processes = [
            CONTEXT.Process(target=_worker, args=(index, shared), daemon=True)
            for index in range(workers)
        ]
        for process in self.processes:
            process.start()

    def advance(self, seconds: float) -> None:
        with self.now.get_lock():
            self.now.value += seconds

    def send(self, command: str, argument: Any = None, workers: range | None = None) -> None:
        for index in workers if workers is not None else range(self.workers):
            self.commands[index].put((command, argument))

    def collect(self, command: str, count: int | None = None) -> dict[int, tuple[list[str], str]]:
        """The replies to ``command`` by worker: (outcomes, state afterwards)."""
        count = self.workers if count is None else count
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

    def run(
        self, command: str, argument: Any = None, workers: range | None = None
    ) -> dict[int, tuple[list[str], str]]:
        """Send ``command`` to ``workers`` (all by default) and collect their replies."""
        targets = range(self.workers) if workers is None else workers
        self.send(command, argument, targets)
        return self.collect(command, len(targets))

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

    def make(policy: BreakerPolicy, workers: int = WORKERS, **options: Any) -> Fleet:
        fleet = Fleet(redis_server, policy, workers, **options)
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


# ---------------------------------------------------------------------------- push


def ran(server: RedisServer, key: str = "ran") -> int:
    """How many times the operations counted under ``key`` ran, as Redis counted them."""
    with server.client() as client:
        return int(client.get(key) or 0)


def all_say(replies: dict[int, tuple[list[str], str]], outcome: str) -> bool:
    return all(outcomes == [outcome] for outcomes, _ in replies.values())


def test_a_trip_reaches_every_process_before_its_next_call(
    fleet_factory: Any, redis_server: RedisServer
) -> None:
    """One process trips the fleet; the others, which never called, refuse without running."""
    fleet = fleet_factory(BreakerPolicy(failure_threshold=1, reset_timeout=30))
    assert all_say(fleet.run("live"), "ok")
    fleet.run("fail", (1, False), workers=range(1))
    others = range(1, WORKERS)
    assert all_say(fleet.run("wait", "open", others), "ok")  # pushed: no call needed
    assert all_say(fleet.run("counted", workers=others), "refused")
    assert ran(redis_server) == 0
    assert [r.event for r in fleet.trails()] == ["trip"]  # recorded by the one that made it


def test_a_process_started_while_open_refuses_its_first_call(
    fleet_factory: Any, redis_server: RedisServer
) -> None:
    """Processes started during an outage refuse their very first call without running it."""
    first = fleet_factory(BreakerPolicy(failure_threshold=1, reset_timeout=30), workers=1)
    first.run("fail", (1, False))
    late = fleet_factory(BreakerPolicy(failure_threshold=1, reset_timeout=30), workers=2)
    replies = late.run("counted")  # their first call: at once, subscribed yet or not
    assert all_say(replies, "refused")
    assert {state for _, state in replies.values()} == {"open"}
    assert ran(redis_server) == 0


def test_operator_events_reach_every_process(fleet_factory: Any, redis_server: RedisServer) -> None:
    """force_open by one process is refused by all; a reset by another lets them all call."""
    fleet = fleet_factory(BreakerPolicy(failure_threshold=1, reset_timeout=600))
    assert all_say(fleet.run("live"), "ok")
    assert fleet.run("send", "force_open", range(1)) == {0: (["forced_open"], "forced_open")}
    assert all_say(fleet.run("wait", "forced_open"), "ok")
    assert all_say(fleet.run("counted", workers=range(1, WORKERS)), "refused")
    assert ran(redis_server) == 0
    fleet.run("send", "reset", range(1, 2))
    fleet.run("fail", (1, False), workers=range(2, 3))  # opens for 600 s...
    assert all_say(fleet.run("wait", "open"), "ok")
    fleet.run("send", "reset", range(3, 4))  # ...and a reset ends that at once, everywhere
    assert all_say(fleet.run("wait", "closed"), "ok")
    assert all_say(fleet.run("counted"), "ok")
    assert ran(redis_server) == WORKERS
    trail = fleet.trails()
    assert [r.event for r in trail] == ["force_open", "reset", "trip", "reset"]
    assert verify(trail) == 4


@pytest.mark.parametrize("permits", [1, 2])
def test_racing_processes_run_exactly_the_permitted_trials(
    fleet_factory: Any, redis_server: RedisServer, permits: int
) -> None:
    """Three processes race a slow half-open trial: Redis counts exactly the permitted runs."""
    policy = BreakerPolicy(
        failure_threshold=1,
        reset_timeout=10,
        half_open_max_calls=permits,
        success_threshold=permits,
    )
    fleet = fleet_factory(policy, workers=3)
    assert all_say(fleet.run("live"), "ok")
    fleet.run("fail", (1, False), workers=range(1))
    assert all_say(fleet.run("wait", "open"), "ok")  # learnt by push, not by calling
    fleet.advance(10)
    fleet.send("counted_trial")
    outcomes = [fleet.trial_event()[0] for _ in range(3)]  # the trials block until released
    assert ran(redis_server, "trials") == permits
    assert outcomes.count("admitted") == permits
    fleet.release.set()
    fleet.collect("counted_trial")
    assert all_say(fleet.run("wait", "closed"), "ok")
    assert [r.event for r in fleet.trails()] == ["trip", "attempt_reset", "recover"]


def test_killed_subscriptions_fall_back_then_resume_and_miss_nothing(
    fleet_factory: Any, redis_server: RedisServer
) -> None:
    """CLIENT KILL of every push connection: a trip meanwhile still reaches every process."""
    fleet = fleet_factory(BreakerPolicy(failure_threshold=1, reset_timeout=30))
    assert all_say(fleet.run("live"), "ok")
    with redis_server.client() as admin:
        assert admin.execute_command("CLIENT", "KILL", "TYPE", "pubsub") == WORKERS
    fleet.run("fail", (1, False), workers=range(1))
    assert all_say(fleet.run("wait", "open"), "ok")  # re-read, pushed or asked: learnt
    assert all_say(fleet.run("counted", workers=range(1, WORKERS)), "refused")
    assert all_say(fleet.run("live"), "ok")  # resubscribed
    fleet.run("send", "reset", range(1, 2))
    assert all_say(fleet.run("wait", "closed"), "ok")  # and pushes flow again
    assert ran(redis_server) == 0


def test_a_paused_then_emptied_server_fails_no_call_and_the_fleet_converges(
    fleet_factory: Any, redis_server: RedisServer
) -> None:
    """SIGSTOP/SIGCONT, then a restart with no data: no call fails; the fleet follows one state."""
    fleet = fleet_factory(BreakerPolicy(failure_threshold=1, reset_timeout=600), timeout=0.2)
    assert all_say(fleet.run("live"), "ok")
    assert redis_server.pid is not None
    os.kill(redis_server.pid, signal.SIGSTOP)
    try:
        assert all_say(fleet.run("probe"), "ok")  # timed out: run on local state
    finally:
        os.kill(redis_server.pid, signal.SIGCONT)
    fleet.advance(1)  # past retry_interval
    fleet.run("fail", (1, False), workers=range(1))
    assert all_say(fleet.run("wait", "open"), "ok")
    assert all_say(fleet.run("counted", workers=range(1, WORKERS)), "refused")
    redis_server.kill()
    redis_server.restart()  # empty
    assert all_say(fleet.run("send", "reset", range(1)), "closed")  # recreated, reset
    assert all_say(fleet.run("wait", "closed"), "ok")
    assert all_say(fleet.run("counted"), "ok")  # no call failed
    assert ran(redis_server) == WORKERS
    fleet.run("fail", (1, False), workers=range(1))
    assert all_say(fleet.run("wait", "open"), "ok")
    assert all_say(fleet.run("counted", workers=range(1, WORKERS)), "refused")
    assert ran(redis_server) == WORKERS
