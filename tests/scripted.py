"""A scripted in-memory ``SharedState`` and ``SharedStore`` for the shared breaker's tests.

A :class:`ScriptedState` answers each round trip with the next reply (or exception) a test
scripted, and keeps the arguments it was sent; :func:`reply` builds a store's reply by
state and event names. ``tests/test_mirror.py`` and ``tests/test_failover_fork.py`` use them.
"""

from __future__ import annotations

from collections import deque
from typing import Any, NamedTuple

from breaker_fsm import BreakerPolicy
from breaker_fsm._machine import STATES
from breaker_fsm._store import EVENT_CODES, Seed, StoreReply


class Unscripted(BaseException):
    """A round trip no reply was scripted for (a BaseException: the breaker must not
    mistake it for an outage and degrade)."""


class Call(NamedTuple):
    """One round trip the scripted entry received."""

    op: str
    args: tuple[Any, ...]


class ScriptedState:
    """A ``SharedState`` whose answers are scripted: a queue of replies or exceptions."""

    def __init__(self, retry_interval: float = 5.0, sync_interval: float = 30.0) -> None:
        self.retry_interval = retry_interval
        self.sync_interval = sync_interval
        self.answers: deque[StoreReply | BaseException | None] = deque()
        self.calls: list[Call] = []

    def script(self, *answers: StoreReply | BaseException | None) -> None:
        """Queue the answers of the next round trips, in order."""
        self.answers.extend(answers)

    def _answer(self, op: str, *args: Any) -> Any:
        self.calls.append(Call(op, args))
        if not self.answers:
            raise Unscripted(f"no answer scripted for {op}{args}")
        answer = self.answers.popleft()
        if isinstance(answer, BaseException):
            raise answer
        return answer

    def record(
        self, gen: int, outcome: int, u: float, hint: float | None, seed: Seed
    ) -> StoreReply | None:
        return self._answer("record", gen, outcome, u, hint, seed)

    def acquire(self, u: float, seed: Seed) -> StoreReply:
        return self._answer("acquire", u, seed)

    def operator(self, event: int, u: float, seed: Seed) -> StoreReply:
        return self._answer("operator", event, u, seed)

    async def arecord(
        self, gen: int, outcome: int, u: float, hint: float | None, seed: Seed
    ) -> StoreReply | None:
        return self._answer("arecord", gen, outcome, u, hint, seed)

    async def aacquire(self, u: float, seed: Seed) -> StoreReply:
        return self._answer("aacquire", u, seed)

    async def aoperator(self, event: int, u: float, seed: Seed) -> StoreReply:
        return self._answer("aoperator", event, u, seed)


class ScriptedStore:
    """A ``SharedStore`` that binds every breaker to one scripted entry."""

    def __init__(self, entry: ScriptedState) -> None:
        self.entry = entry
        self.bound: list[tuple[str, BreakerPolicy]] = []

    def bind(self, name: str, policy: BreakerPolicy) -> ScriptedState:
        self.bound.append((name, policy))
        return self.entry


def reply(
    state: str = "closed",
    *,
    gen: int = 0,
    epoch: int = 1,
    event: str = "",
    source: str | None = None,
    ok: int = 1,
    streak: int = 0,
    window: tuple[int, int, int] = (0, 0, 0),
    trials: tuple[int, int] = (0, 0),
    episode: int = 0,
    open_duration: float = 10.0,
    elapsed: float = 0.0,
    justified: float = 0.0,
) -> StoreReply:
    """A store's reply, by state and event names."""
    code = STATES.index(state)
    return StoreReply(
        code,
        gen,
        epoch,
        EVENT_CODES[event] if event else 0,
        code if source is None else STATES.index(source),
        ok,
        streak,
        *window,
        *trials,
        episode,
        open_duration,
        elapsed,
        justified,
    )


def tripped(gen: int = 1, *, epoch: int = 1, streak: int = 1, **fields: Any) -> StoreReply:
    """A record reply reporting that this outcome tripped the breaker."""
    fields.setdefault("episode", 1)
    return reply(
        "open", gen=gen, epoch=epoch, event="trip", source="closed", streak=streak, **fields
    )
