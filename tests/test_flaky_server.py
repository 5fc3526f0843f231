"""Tests for the loopback flaky HTTP server, using real HTTP requests via urllib."""

from __future__ import annotations

import json
import random
import socket
import sys
import threading
import time
import urllib.error
import urllib.request
from email.message import Message
from typing import Any

import pytest

from breaker_fsm._flaky_server import FlakyServer

# An explicit empty ProxyHandler so an http_proxy variable in the environment can never route
# these loopback requests somewhere else.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def request(
    url: str, *, method: str = "GET", data: bytes | None = None
) -> tuple[int, Message, bytes]:
    """Send one request and return (status, headers, body), treating HTTP errors as answers."""
    req = urllib.request.Request(url, data=data, method=method)
    try:
        with _OPENER.open(req, timeout=5) as resp:
            return resp.status, resp.headers, resp.read()
    except urllib.error.HTTPError as err:
        with err:
            return err.code, err.headers, err.read()


def statuses(server: FlakyServer, count: int, path: str = "/") -> list[int]:
    """Return the status codes of ``count`` sequential GETs to ``path``."""
    return [request(server.url + path)[0] for _ in range(count)]


def body(raw: bytes) -> Any:
    """Decode a JSON response body."""
    return json.loads(raw.decode())


def test_same_seed_gives_same_outcome_sequence() -> None:
    """Two servers with the same seed answer the same request sequence identically."""
    with FlakyServer(0.5, seed=123) as a:
        first = statuses(a, 30)
    with FlakyServer(0.5, seed=123) as b:
        second = statuses(b, 30)
    with FlakyServer(0.5, seed=124) as c:
        other = statuses(c, 30)
    assert first == second
    assert set(first) == {200, 500}
    assert first != other


def test_outcomes_follow_random_random_of_seed() -> None:
    """The n-th request fails exactly when the n-th draw of Random(seed) is below the rate."""
    rng = random.Random(7)
    expected = [500 if rng.random() < 0.3 else 200 for _ in range(25)]
    with FlakyServer(0.3, seed=7) as server:
        assert statuses(server, 25) == expected


def test_failure_rate_zero_answers_all_200_with_request_number() -> None:
    """failure_rate=0 answers every request 200 with {"ok": true, "n": <request number>}."""
    with FlakyServer(0.0) as server:
        for n in range(1, 11):
            status, headers, raw = request(server.url + f"/item/{n}")
            assert status == 200
            assert headers["Content-Type"] == "application/json"
            assert body(raw) == {"ok": True, "n": n}


def test_failure_rate_one_answers_all_500() -> None:
    """failure_rate=1 answers every request 500 with {"error": "flaky"}."""
    with FlakyServer(1.0) as server:
        for _ in range(10):
            status, _, raw = request(server.url)
            assert status == 500
            assert body(raw) == {"error": "flaky"}


def test_post_is_answered_and_body_drained() -> None:
    """POST requests with a body get the same flaky treatment as GET."""
    with FlakyServer(0.0) as server:
        status, _, raw = request(server.url + "/submit", method="POST", data=b'{"x": 1}' * 1000)
        assert status == 200
        assert body(raw) == {"ok": True, "n": 1}
        server.set_failure_rate(1.0)
        status, _, raw = request(server.url + "/submit", method="POST", data=b"payload")
        assert status == 500


def test_head_gets_status_and_headers_without_body() -> None:
    """HEAD requests get the status and headers but no body."""
    with FlakyServer(0.0) as server:
        status, headers, raw = request(server.url, method="HEAD")
        assert status == 200
        assert int(headers["Content-Length"]) > 0
        assert raw == b""


def test_set_failure_rate_switches_behaviour() -> None:
    """set_failure_rate changes the outcome of subsequent requests."""
    with FlakyServer(0.0) as server:
        assert statuses(server, 5) == [200] * 5
        server.set_failure_rate(1.0)
        assert server.failure_rate == 1.0
        assert statuses(server, 5) == [500] * 5
        server.set_failure_rate(0.0)
        assert statuses(server, 5) == [200] * 5


def test_go_down_answers_503_with_retry_after() -> None:
    """go_down(retry_after=2) makes every request 503 with a Retry-After: 2 header."""
    with FlakyServer(0.0) as server:
        server.go_down(retry_after=2)
        assert server.is_down
        for _ in range(5):
            status, headers, raw = request(server.url + "/anything")
            assert status == 503
            assert headers["Retry-After"] == "2"
            assert body(raw)["error"] == "down"


def test_go_down_without_retry_after_omits_header() -> None:
    """go_down() with no retry_after answers 503 without a Retry-After header."""
    with FlakyServer(0.0) as server:
        server.go_down()
        status, headers, _ = request(server.url)
        assert status == 503
        assert headers["Retry-After"] is None


def test_come_back_restores_flaky_mode() -> None:
    """come_back() after go_down() restores normal answers and drops Retry-After."""
    with FlakyServer(0.0) as server:
        server.go_down(retry_after=5)
        assert request(server.url)[0] == 503
        server.come_back()
        assert not server.is_down
        status, headers, _ = request(server.url)
        assert status == 200
        assert headers["Retry-After"] is None


def test_down_time_does_not_shift_seeded_sequence() -> None:
    """Requests answered while down do not consume draws from the seeded sequence."""
    with FlakyServer(0.5, seed=99) as reference:
        expected = statuses(reference, 20)
    with FlakyServer(0.5, seed=99) as server:
        got = statuses(server, 10)
        server.go_down()
        assert statuses(server, 3) == [503] * 3
        server.come_back()
        got += statuses(server, 10)
    assert got == expected


def test_status_override_forces_status_and_headers() -> None:
    """status_override(429, headers) wins over down and flaky mode until clear_override()."""
    with FlakyServer(0.0) as server:
        server.go_down(retry_after=9)
        server.status_override(429, {"Retry-After": "1", "X-Test": "yes"})
        status, headers, raw = request(server.url)
        assert status == 429
        assert headers["Retry-After"] == "1"
        assert headers["X-Test"] == "yes"
        assert body(raw)["error"] == "override"
        server.clear_override()
        status, headers, _ = request(server.url)
        assert status == 503
        assert headers["Retry-After"] == "9"
        server.come_back()
        assert request(server.url)[0] == 200


def test_fractional_retry_after_is_preserved() -> None:
    """A fractional retry_after is sent as-is rather than truncated to an integer."""
    with FlakyServer() as server:
        server.go_down(retry_after=0.5)
        assert request(server.url)[1]["Retry-After"] == "0.5"


def test_request_count_counts_every_request() -> None:
    """request_count and requests_by_path count every request in every mode."""
    with FlakyServer(0.5) as server:
        assert server.request_count == 0
        statuses(server, 4, "/a")
        request(server.url + "/b?q=1", method="POST", data=b"x")
        server.go_down()
        statuses(server, 2, "/b")
        server.status_override(418)
        statuses(server, 1, "/c")
        assert server.request_count == 8
        assert server.requests_by_path == {"/a": 4, "/b": 3, "/c": 1}
        server.reset_counts()
        assert server.request_count == 0
        assert server.requests_by_path == {}


def test_request_count_is_thread_safe() -> None:
    """Concurrent requests are all counted and each gets a distinct request number."""
    numbers: list[int] = []
    numbers_lock = threading.Lock()
    with FlakyServer(0.0) as server:

        def worker() -> None:
            for _ in range(10):
                n = body(request(server.url)[2])["n"]
                with numbers_lock:
                    numbers.append(n)

        threads = [threading.Thread(target=worker) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert server.request_count == 80
    assert sorted(numbers) == list(range(1, 81))


def test_latency_delays_responses() -> None:
    """latency=0.2 makes each response take at least 0.2 s."""
    with FlakyServer(0.0, latency=0.2) as server:
        started = time.monotonic()
        assert request(server.url)[0] == 200
        assert time.monotonic() - started >= 0.2


def test_stop_cuts_latency_wait_short() -> None:
    """stop() does not wait out a long simulated latency of an in-flight request."""
    server = FlakyServer(0.0, latency=30.0).start()
    results: list[int] = []
    client = threading.Thread(target=lambda: results.append(request(server.url)[0]))
    client.start()
    deadline = time.monotonic() + 5
    while server.request_count == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert server.request_count == 1
    started = time.monotonic()
    server.stop()
    assert time.monotonic() - started < 5
    client.join(timeout=5)
    assert results == [200]


def test_stop_frees_port_and_joins_thread() -> None:
    """stop() closes the listening socket (the port can be bound again) and ends all threads."""
    before = set(threading.enumerate())
    server = FlakyServer(0.5).start()
    port = server.port
    assert server.url == f"http://127.0.0.1:{port}"
    statuses(server, 5)
    thread_name = f"breaker_fsm-flaky-server-{port}"
    assert any(t.name == thread_name for t in threading.enumerate())

    def bind_port() -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            # SO_REUSEADDR tolerates TIME_WAIT leftovers but still refuses a live listener,
            # so the bind below distinguishes "socket closed" from "still listening".
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(("127.0.0.1", port))
            probe.listen()

    with pytest.raises(OSError, match=r"[Aa]ddress already in use"):
        bind_port()

    server.stop()
    assert not server.running
    assert not any(t.name == thread_name for t in threading.enumerate())
    assert set(threading.enumerate()) <= before
    bind_port()
    server.stop()  # idempotent


def test_stop_before_start_and_no_restart() -> None:
    """stop() on a never-started server is harmless, and a stopped server cannot restart."""
    server = FlakyServer()
    server.stop()
    with pytest.raises(RuntimeError):
        server.start()


def test_start_is_idempotent_and_port_needs_running_server() -> None:
    """start() twice keeps one binding; port/url raise before start."""
    server = FlakyServer()
    with pytest.raises(RuntimeError):
        _ = server.url
    assert "not running" in repr(server)
    try:
        server.start()
        port = server.port
        assert server.start() is server
        assert server.port == port
        assert server.url in repr(server)
    finally:
        server.stop()


@pytest.mark.parametrize(
    "host", ["0.0.0.0", "192.168.1.10", "10.0.0.1", "::", "2001:db8::1", "example.com", ""]
)
def test_non_loopback_host_rejected(host: str) -> None:
    """Any host that is not a loopback address is refused with ValueError."""
    with pytest.raises(ValueError, match="loopback"):
        FlakyServer(host=host)


@pytest.mark.parametrize(
    ("host", "bound"), [("127.0.0.1", "127.0.0.1"), ("localhost", "127.0.0.1")]
)
def test_loopback_hosts_accepted(host: str, bound: str) -> None:
    """Loopback addresses and the name localhost are accepted and bound to loopback."""
    with FlakyServer(0.0, host=host) as server:
        assert server.host == bound
        assert request(server.url)[0] == 200


def test_ipv6_loopback_url_is_bracketed() -> None:
    """An IPv6 loopback host yields a bracketed URL that answers requests."""
    if not socket.has_ipv6:
        pytest.skip("no IPv6 support")
    try:
        server = FlakyServer(0.0, host="::1").start()
    except OSError:
        pytest.skip("IPv6 loopback not available")
    try:
        assert server.url == f"http://[::1]:{server.port}"
        assert request(server.url)[0] == 200
    finally:
        server.stop()


@pytest.mark.parametrize(
    "kwargs",
    [
        {"failure_rate": -0.1},
        {"failure_rate": 1.5},
        {"failure_rate": float("nan")},
        {"latency": -1.0},
        {"port": 70000},
    ],
)
def test_invalid_configuration_rejected(kwargs: dict[str, Any]) -> None:
    """Out-of-range failure_rate, latency or port raise ValueError."""
    with pytest.raises(ValueError):  # noqa: PT011 - several distinct messages
        FlakyServer(**kwargs)


def test_invalid_control_arguments_rejected() -> None:
    """Control methods validate their arguments."""
    server = FlakyServer()
    with pytest.raises(ValueError, match="failure_rate"):
        server.set_failure_rate(2.0)
    with pytest.raises(ValueError, match="retry_after"):
        server.go_down(retry_after=-1)
    with pytest.raises(ValueError, match="status code"):
        server.status_override(42)


def test_handle_error_ignores_disconnects_only(capsys: pytest.CaptureFixture[str]) -> None:
    """Client disconnects are swallowed silently; other handler errors are still reported."""
    with FlakyServer() as server:
        httpd = server._httpd
        assert httpd is not None
        with socket.socket() as dummy:
            try:
                raise ConnectionResetError
            except ConnectionResetError:
                httpd.handle_error(dummy, ("127.0.0.1", 1))
            assert capsys.readouterr().err == ""
            try:
                raise KeyError("boom")
            except KeyError:
                httpd.handle_error(dummy, ("127.0.0.1", 1))
            err = capsys.readouterr().err
    assert "KeyError" in err
    assert sys.exc_info() == (None, None, None)
