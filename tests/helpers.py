"""Helpers shared by the test modules (no test module imports another)."""

from __future__ import annotations

import asyncio
import itertools
import os
import subprocess
import sys
import time
import traceback
from collections.abc import Awaitable, Callable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import pytest

from breaker_fsm import BreakerPolicy, CircuitBreaker, CircuitOpenError, Transition
from breaker_fsm.audit import JsonlSink
from breaker_fsm.testing import DEFAULT_WALL_START, FakeClock

if TYPE_CHECKING:
    from click.testing import Result

    from breaker_fsm.redis import RedisStore
    from tests.redis_server import RedisServer, StoreFactory

#: Files the tests read: trails and policies written by earlier versions, checked in.
FIXTURES = Path(__file__).parent / "fixtures"

#: Seconds a test waits for an event (a push delivered, a subscription up) before it fails:
#: generous, for a loaded machine; the delay itself is measured in ``make bench``.
PATIENCE = 10.0


class Boom(ConnectionError):
    """The dependency's failure (a ``ConnectionError``, as a real outage would raise)."""


class Ignored(Exception):
    """An exception a test's policy lists in ``ignore_exceptions``: it counts neither way."""


class Interrupt(BaseException):
    """A ``BaseException`` that is no ``Exception`` (as ``KeyboardInterrupt``): neutral."""


class CountingClock(FakeClock):
    """A FakeClock that counts its monotonic readings."""

    readings = 0

    def monotonic(self) -> float:
        self.readings += 1
        return super().monotonic()


def ok(value: Any = "ok") -> Any:
    """A call that succeeds with ``value``."""
    return value


def boom(*_: Any, **__: Any) -> NoReturn:
    """A call that fails with :class:`Boom`."""
    raise Boom("dependency down")


async def aok(value: Any = "ok") -> Any:
    """An awaited call that succeeds with ``value``."""
    return value


async def aboom(*_: Any, **__: Any) -> NoReturn:
    """An awaited call that fails with :class:`Boom`."""
    raise Boom("dependency down")


def fail(breaker: CircuitBreaker, times: int = 1) -> None:
    """``times`` failed calls through ``breaker``, each re-raising :class:`Boom`."""
    for _ in range(times):
        with pytest.raises(Boom):
            breaker.call(boom)


def refused(breaker: CircuitBreaker) -> CircuitOpenError:
    """A call that ``breaker`` refuses (it must): the ``CircuitOpenError`` it raised."""
    with pytest.raises(CircuitOpenError) as info:
        breaker.call(lambda: "never runs")
    return info.value


def transition(
    seq: int,
    event: str,
    source: str,
    target: str,
    breaker: str = "b",
    *,
    generation: int | None = None,
) -> Transition:
    """A record stamped 2026-01-01, its monotonic time its seq (no origin, life or hash)."""
    return Transition(
        seq=seq,
        breaker=breaker,
        event=event,
        source=source,
        target=target,
        at=datetime(2026, 1, 1, tzinfo=UTC),
        monotonic=float(seq),
        generation=generation,
    )


def merged(*breakers: CircuitBreaker) -> list[Transition]:
    """Every breaker's trail, merged into one and sorted by seq."""
    return sorted((r for b in breakers for r in b.audit), key=lambda r: r.seq)


def run_closing(
    store: RedisStore, scenario: Callable[[], Awaitable[None]], *others: RedisStore
) -> None:
    """Run an asyncio scenario; close the stores' asyncio clients on its loop, whatever happens."""

    async def main() -> None:
        try:
            await scenario()
        finally:
            for each in (store, *others):
                await each.aclose()

    asyncio.run(main())


#: ``await invoke(breaker, func, *args, **kwargs)``: ``func`` through call() or acall().
Invoke = Callable[..., Awaitable[Any]]
MODES = pytest.mark.parametrize("mode", ["sync", "async"])


def through(
    mode: str,
    store: RedisStore,
    scenario: Callable[[Invoke], Awaitable[None]],
    *others: RedisStore,
) -> None:
    """Run ``scenario`` with ``invoke(breaker, func, *args, **kwargs)``: call() or acall().

    ``mode`` "sync" runs ``func`` through ``breaker.call``; "async" wraps it in a coroutine
    function and awaits ``breaker.acall``: the same steps take the two twin paths.
    """

    async def invoke(
        breaker: CircuitBreaker, func: Callable[..., Any], *args: Any, **kw: Any
    ) -> Any:
        if mode == "sync":
            return breaker.call(func, *args, **kw)

        async def op(*a: Any, **k: Any) -> Any:
            return func(*a, **k)

        return await breaker.acall(op, *args, **kw)

    run_closing(store, lambda: scenario(invoke), *others)


def shared(
    redis_stores: StoreFactory, clock: FakeClock, policy: BreakerPolicy, n: int = 2, **kwargs: Any
) -> list[CircuitBreaker]:
    """``n`` breakers named "svc", each on its own store (own clients), time pinned to clock.

    The stores do not push (``push=False``, unless ``store_options`` says otherwise): each
    breaker learns the fleet's state from its own replies only, so that a test decides
    when it does.
    """
    options = {"now": clock.monotonic, "push": False, **kwargs.pop("store_options", {})}
    return [
        CircuitBreaker("svc", policy, clock=clock, store=redis_stores(**options), **kwargs)
        for _ in range(n)
    ]


def wait_until(condition: Callable[[], object], what: str, timeout: float = PATIENCE) -> None:
    """Poll ``condition`` until it holds (waiting for an event, never for a timeout to pass).

    Fails the test, naming ``what``, if it does not hold within ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"not within {timeout:g}s: {what}")
        time.sleep(0.001)


def wait_live(*breakers: CircuitBreaker) -> None:
    """Wait until each shared breaker's mirror follows the fleet by push."""
    for breaker in breakers:
        wait_until(lambda b=breaker: b.metrics().live, f"{breaker!r} live")


class CommandLog:
    """The commands a redis-server receives, read with ``MONITOR``, by connection.

    ``MONITOR`` marks the commands that the server's own Lua scripts run with client
    ``lua``: those are not round trips. Neither are a push subscription's (connections in
    Pub/Sub mode, flag ``P`` in ``CLIENT LIST``). :meth:`sent` returns the rest, sent while
    an action ran: the round trips of the members' own connections.
    """

    def __init__(self, server: RedisServer) -> None:
        self._marks = server.client(socket_timeout=PATIENCE)
        self._marks.ping()  # connected before any window opens
        self._client = server.client(socket_timeout=PATIENCE)
        self._monitor = self._client.monitor().__enter__()
        self._count = itertools.count()

    def close(self) -> None:
        self._monitor.__exit__()
        self._client.close()
        self._marks.close()

    def begin(self) -> None:
        """Open a window: from now on, :meth:`end` returns what members sent."""
        self._subscribers = {
            entry["addr"] for entry in self._marks.client_list() if "P" in entry["flags"]
        }
        self._n = next(self._count)
        self._marks.echo(f"start-{self._n}")
        _, mark = self._until(f"start-{self._n}")
        self._skip = self._subscribers | {f"{mark['client_address']}:{mark['client_port']}"}

    def end(self) -> list[str]:
        """Close the window: the commands (names, in order) members' connections sent."""
        self._marks.echo(f"end-{self._n}")
        seen, _ = self._until(f"end-{self._n}")
        return [
            str(command["command"]).split(" ", 1)[0].upper()
            for command in seen
            if command["client_type"] != "lua"
            and f"{command['client_address']}:{command['client_port']}" not in self._skip
        ]

    def round_trips(self) -> int:
        """:meth:`end`, counted: every script (``EVALSHA``) is one; nothing else may be sent."""
        sent = self.end()
        assert set(sent) <= {"EVALSHA"}, sent
        return len(sent)

    def _until(self, marker: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        seen: list[dict[str, Any]] = []
        while True:
            command: dict[str, Any] = self._monitor.next_command()
            if command["command"] == f"ECHO {marker}":
                return seen, command
            seen.append(command)


# --------------------------------------------------------------------------- the command line

#: The ``breaker-fsm`` console script, next to the interpreter.
SCRIPT = Path(sys.executable).parent / "breaker-fsm"
#: Variables that would change how output looks; each test sets what it needs.
STYLE_VARS = ("FORCE_COLOR", "NO_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "COLUMNS")


def breaker_fsm(
    *args: str | Path,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    script: Path | str = SCRIPT,
) -> subprocess.CompletedProcess[str]:
    """Run the console script; whatever happens, it never prints a traceback."""
    environ = {k: v for k, v in os.environ.items() if k not in STYLE_VARS}
    environ |= {"PYTHONIOENCODING": "utf-8"} | (env or {})
    command = [str(script), *map(str, args)]
    done = subprocess.run(
        command,
        check=False,
        capture_output=True,
        text=True,
        encoding="utf-8",
        env=environ,
        cwd=cwd,
        timeout=120,
    )
    assert "Traceback" not in done.stderr, done.stderr
    assert "Traceback" not in done.stdout, done.stdout
    return done


def invoke_cli(*args: str | Path, env: Mapping[str, str | None] | None = None) -> Result:
    """Run the command line in-process: exit 0, 1 or 2, nothing raised, no traceback printed.

    Output is plain text unless ``env`` asks for a terminal (every :data:`STYLE_VARS` unset).
    """
    from click.testing import CliRunner  # click is the cli extra: imported when a test runs it

    from breaker_fsm._cli import cli

    plain: dict[str, str | None] = dict.fromkeys(STYLE_VARS)
    result = CliRunner().invoke(
        cli, [str(a) for a in args], prog_name="breaker-fsm", env={**plain, **(env or {})}
    )
    exc = result.exception
    if exc is not None and not isinstance(exc, SystemExit):  # run() would say "unexpected"
        trace = "".join(traceback.format_exception(exc))
        raise AssertionError(f"breaker-fsm {args!r} raised {exc!r}\n{trace}")
    assert result.exit_code in (0, 1, 2), result.output
    assert "Traceback" not in result.output, result.output
    return result


def one_error_line(done: subprocess.CompletedProcess[str]) -> str:
    """The single ``Error: ...`` line a failure prints, with exit status 1."""
    assert done.returncode == 1, done
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("Error: ")
    return lines[0]


def write_trail(path: Path, name: str = "users-api", *, later: float = 0.0) -> Path:
    """Five real transitions of one breaker instance, as JsonlSink writes them.

    They span one second from FakeClock's wall start, or from ``later`` seconds after it.
    """
    clock = FakeClock(start=1000.0, wall_start=DEFAULT_WALL_START + later)
    breaker = CircuitBreaker(
        name,
        BreakerPolicy(failure_threshold=1, reset_timeout=1),
        clock=clock,
        sinks=[JsonlSink(path)],
    )
    with pytest.raises(Boom):
        breaker.call(boom)
    clock.advance(1)
    breaker.call(lambda: None)
    breaker.send("force_open")
    breaker.send("reset", reason="dependency fixed")
    return path


def store_factory(url: str) -> Iterator[Callable[..., RedisStore]]:
    """A fixture's body: ``make(**options)`` builds a RedisStore on ``url`` (or on
    ``client=``), with a 2 s timeout unless told otherwise; every one is closed after."""
    made: list[RedisStore] = []

    def make(**kwargs: Any) -> RedisStore:
        from breaker_fsm.redis import RedisStore

        kwargs.setdefault("timeout", 2.0)  # a loaded test machine must not look like an outage
        store = RedisStore(kwargs.pop("client", url), **kwargs)
        made.append(store)
        return store

    yield make
    for store in made:
        store.close()
