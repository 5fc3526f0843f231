"""A small, real, loopback-only flaky HTTP server for the demo and transport tests."""

from __future__ import annotations

import ipaddress
import json
import random
import socket
import sys
import threading
from collections import Counter
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, ClassVar, Self
from urllib.parse import urlsplit

__all__ = ["FlakyServer"]


def _check_failure_rate(failure_rate: float) -> float:
    """Return ``failure_rate`` as a float, or raise ValueError if it is outside [0, 1]."""
    rate = float(failure_rate)
    if not 0.0 <= rate <= 1.0:  # also rejects NaN
        raise ValueError(f"failure_rate must be within [0, 1], got {failure_rate!r}")
    return rate


def _loopback_host(host: str) -> str:
    """Return ``host`` as a loopback IP literal, or raise ValueError if it is not loopback."""
    # Only the name "localhost" is resolved (to a fixed address): resolving arbitrary names
    # could hand back a routable address and expose the server beyond this machine.
    if host.lower() == "localhost":
        return "127.0.0.1"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"FlakyServer binds to loopback only; {host!r} is not an IP") from None
    if not address.is_loopback:
        raise ValueError(f"FlakyServer binds to loopback only; {host!r} is not loopback")
    return str(address)


class _HTTPServer(ThreadingHTTPServer):
    """ThreadingHTTPServer that knows its owning FlakyServer and stays quiet on disconnects."""

    # Handler threads are non-daemon and joined by server_close(), so stop() leaves none behind.
    daemon_threads = False
    block_on_close = True
    # The stdlib default backlog of 5 drops SYNs under a burst of concurrent test clients,
    # which then stall for a one-second TCP retransmit.
    request_queue_size = 128

    def __init__(
        self,
        address: tuple[str, int],
        owner: FlakyServer,
        family: socket.AddressFamily,
    ) -> None:
        """Bind to ``address`` with the given family, on behalf of ``owner``."""
        self.address_family = family
        self.owner = owner
        super().__init__(address, _Handler)

    def handle_error(
        self,
        request: socket.socket | tuple[bytes, socket.socket],
        client_address: Any,
    ) -> None:
        """Ignore clients that hang up mid-response; report anything else as usual."""
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    """Answers every path and method according to the owning FlakyServer's mode."""

    server: _HTTPServer
    # HTTP/1.0 closes each connection after one response, so no idle keep-alive thread can
    # make server_close() wait on a client that never hangs up.
    protocol_version = "HTTP/1.0"
    # Backstop against a client that connects and never sends a request line.
    timeout: ClassVar[float] = 10.0

    def log_message(self, format: str, *args: object) -> None:
        """Discard per-request logging so tests and the demo stay quiet."""

    def _respond(self) -> None:
        """Drain any request body, then send the response chosen by the owner."""
        length = int(self.headers.get("Content-Length") or 0)
        if length > 0:
            self.rfile.read(length)
        status, headers, body = self.server.owner._handle(urlsplit(self.path).path)
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = _respond
    do_POST = _respond
    do_PUT = _respond
    do_PATCH = _respond
    do_DELETE = _respond
    do_HEAD = _respond


class FlakyServer:
    """A threaded HTTP server on loopback that fails a seeded fraction of requests."""

    def __init__(
        self,
        failure_rate: float = 0.5,
        *,
        seed: int | None = 0,
        host: str = "127.0.0.1",
        port: int = 0,
        latency: float = 0.0,
    ) -> None:
        """Configure the server; nothing is bound until ``start()`` or ``with``."""
        if latency < 0:
            raise ValueError(f"latency must be >= 0, got {latency!r}")
        if not 0 <= port <= 65535:
            raise ValueError(f"port must be within [0, 65535], got {port!r}")
        self._host = _loopback_host(host)
        self._requested_port = port
        self._failure_rate = _check_failure_rate(failure_rate)
        self._latency = float(latency)
        # One lock guards the RNG, the mode and the counters together, so the n-th request
        # always takes the n-th draw and the outcome sequence depends only on seed and order.
        self._lock = threading.Lock()
        self._rng = random.Random(seed)
        self._down = False
        self._retry_after: float | None = None
        self._override: tuple[int, dict[str, str]] | None = None
        self._request_count = 0
        self._by_path: Counter[str] = Counter()
        # Set by stop() so a simulated-latency wait ends at once instead of delaying shutdown.
        self._stopping = threading.Event()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._stopped = False

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> Self:
        """Bind the socket and serve in a background thread; a no-op if already running."""
        if self._stopped:
            raise RuntimeError("a stopped FlakyServer cannot be restarted; create a new one")
        if self._httpd is not None:
            return self
        family = socket.AF_INET6 if ":" in self._host else socket.AF_INET
        httpd = _HTTPServer((self._host, self._requested_port), self, family)
        thread = threading.Thread(
            target=httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"breaker_fsm-flaky-server-{httpd.server_address[1]}",
            daemon=True,
        )
        try:
            thread.start()
        except BaseException:
            httpd.server_close()
            raise
        self._httpd, self._thread = httpd, thread
        return self

    def stop(self) -> None:
        """Shut down, join the serving thread and close the socket; safe to call twice."""
        self._stopped = True
        self._stopping.set()
        httpd, thread = self._httpd, self._thread
        self._httpd = self._thread = None
        if httpd is None or thread is None:
            return
        httpd.shutdown()
        thread.join()
        httpd.server_close()

    def __enter__(self) -> Self:
        """Start the server and return it."""
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop the server."""
        self.stop()

    def __repr__(self) -> str:
        """Show the address (when running) and the current mode."""
        where = self.url if self.running else "not running"
        return f"<FlakyServer {where} failure_rate={self._failure_rate} down={self._down}>"

    # -- address -------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        """Whether the server is currently bound and serving."""
        return self._httpd is not None

    @property
    def host(self) -> str:
        """The loopback address the server binds to."""
        return self._host

    @property
    def port(self) -> int:
        """The bound port (the real one when constructed with port 0)."""
        if self._httpd is None:
            raise RuntimeError("FlakyServer is not running; call start() or use 'with'")
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        """Base URL without a trailing slash, e.g. ``http://127.0.0.1:54321``."""
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self.port}"

    # -- control -------------------------------------------------------------------------

    @property
    def failure_rate(self) -> float:
        """Probability that a request in flaky mode answers 500."""
        return self._failure_rate

    def set_failure_rate(self, failure_rate: float) -> None:
        """Change the probability that a request in flaky mode answers 500."""
        rate = _check_failure_rate(failure_rate)
        with self._lock:
            self._failure_rate = rate

    def go_down(self, retry_after: float | None = None) -> None:
        """Answer every request with 503, with ``Retry-After`` if ``retry_after`` is given."""
        if retry_after is not None and retry_after < 0:
            raise ValueError(f"retry_after must be >= 0, got {retry_after!r}")
        with self._lock:
            self._down = True
            self._retry_after = retry_after

    def come_back(self) -> None:
        """Leave the down state and return to flaky mode."""
        with self._lock:
            self._down = False
            self._retry_after = None

    @property
    def is_down(self) -> bool:
        """Whether ``go_down()`` is in effect."""
        return self._down

    def status_override(self, code: int, headers: Mapping[str, str] | None = None) -> None:
        """Answer every request with ``code`` and ``headers``; wins over down and flaky mode."""
        if not 100 <= code <= 599:
            raise ValueError(f"status code must be within [100, 599], got {code!r}")
        with self._lock:
            self._override = (code, dict(headers or {}))

    def clear_override(self) -> None:
        """Remove a ``status_override()`` so the down or flaky mode applies again."""
        with self._lock:
            self._override = None

    # -- counters ------------------------------------------------------------------------

    @property
    def request_count(self) -> int:
        """Total requests received since construction or the last ``reset_counts()``."""
        with self._lock:
            return self._request_count

    @property
    def requests_by_path(self) -> dict[str, int]:
        """A snapshot of request counts keyed by URL path (query string excluded)."""
        with self._lock:
            return dict(self._by_path)

    def reset_counts(self) -> None:
        """Zero the counters; the random sequence is not rewound."""
        with self._lock:
            self._request_count = 0
            self._by_path.clear()

    # -- request handling ----------------------------------------------------------------

    def _handle(self, path: str) -> tuple[int, dict[str, str], bytes]:
        """Count one request and return its status, extra headers and JSON body."""
        with self._lock:
            self._request_count += 1
            self._by_path[path] += 1
            n = self._request_count
            if self._override is not None:
                code, headers = self._override
                status, extra, payload = code, dict(headers), {"error": "override", "n": n}
            elif self._down:
                extra = {}
                if self._retry_after is not None:
                    extra["Retry-After"] = _format_seconds(self._retry_after)
                status, payload = 503, {"error": "down", "n": n}
            # Draws happen only in flaky mode, so time spent down or overridden does not
            # shift the outcome sequence that a given seed produces.
            elif self._rng.random() < self._failure_rate:
                status, extra, payload = 500, {}, {"error": "flaky"}
            else:
                status, extra, payload = 200, {}, {"ok": True, "n": n}
        if self._latency > 0:
            self._stopping.wait(self._latency)
        return status, extra, json.dumps(payload).encode()


def _format_seconds(seconds: float) -> str:
    """Format a Retry-After value as delta-seconds, keeping fractions only when present."""
    return str(int(seconds)) if float(seconds).is_integer() else repr(float(seconds))
