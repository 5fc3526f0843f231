"""The walkthrough that ``make demo`` runs: a real flaky HTTP service behind a breaker.

A :class:`~breaker_fsm._flaky_server.FlakyServer` on ``127.0.0.1`` (a free port, seeded)
answers 500 to a share of requests; an ``httpx.Client`` calls it through
:class:`~breaker_fsm.httpx.BreakerTransport`. Half-way the server goes fully down (503)
and later comes back, so the breaker trips, fails fast (a fallback answers), half-opens,
retrips, and recovers, in real time (open durations of 0.3 s and 0.6 s). Without httpx the
simulated walkthrough runs instead.
"""

from __future__ import annotations

import os
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from ._breaker import CircuitBreaker
from ._flaky_server import FlakyServer
from ._policy import BreakerPolicy
from ._registry import BreakerRegistry
from ._trail import JsonlSink, read_jsonl
from ._verify import verify
from .testing import FakeClock

if TYPE_CHECKING:
    from collections.abc import Callable

    import httpx

    from ._audit import Transition
    from .exceptions import CircuitOpenError
    from .httpx import BreakerTransport

__all__ = ["DEFAULT_AUDIT_PATH", "run"]

#: Where the demo writes its audit trail unless told otherwise (relative to the cwd).
DEFAULT_AUDIT_PATH = Path("demo-audit.jsonl")

_PACE = 0.05  # seconds between requests
_LATENCY = 0.02  # seconds the server takes to answer
_FAILURE_RATE = 0.3  # share of 500s while the server is merely flaky
_PHASE_LIMIT = 10.0  # seconds a phase may last before the demo moves on regardless
_FALLBACK_HEADER = "x-breaker-fallback"


class ServiceError(Exception):
    """The flaky service failed this request."""


def run(
    *,
    requests: int = 20,
    seed: int | None = None,
    out: TextIO | None = None,
    audit_path: str | os.PathLike[str] | None = None,
    simulated: bool = False,
) -> CircuitBreaker:
    """Run the demo and return the breaker that guarded the service.

    Args:
        requests: requests sent while the service is merely flaky: half before the outage,
            half after the recovery (the outage itself takes as many as it needs).
        seed: seeds the failures, so the sequence of answers repeats; by default one
            that shows every transition (14 for the server, 8 for the simulation).
        out: where to print (stdout by default).
        audit_path: the JSON Lines audit trail, overwritten; ``./demo-audit.jsonl`` by
            default (a temporary directory if that is not writable).
        simulated: run the instant, simulated walkthrough (no server, a fake clock).
    """
    out = out if out is not None else sys.stdout
    if not simulated:
        try:
            from .httpx import BreakerTransport
        except ImportError:
            print(
                "httpx is not installed, so this is the simulated walkthrough "
                "(pip install 'breaker-fsm[httpx]' for the real one)",
                file=out,
            )
        else:
            path = _audit_file(audit_path, out)
            return _Demo(out, 14 if seed is None else seed, path).run(requests, BreakerTransport)
    return _simulated(requests=requests, seed=8 if seed is None else seed, out=out)


def _audit_file(audit_path: str | os.PathLike[str] | None, out: TextIO) -> Path:
    """The audit file, emptied; the temporary directory if the default is not writable."""
    path = Path(audit_path) if audit_path is not None else DEFAULT_AUDIT_PATH
    try:
        path.write_text("", encoding="utf-8")
    except OSError as exc:
        if audit_path is not None:
            raise
        path = Path(tempfile.gettempdir()) / DEFAULT_AUDIT_PATH.name
        print(f"cannot write {DEFAULT_AUDIT_PATH} ({exc.strerror}); using {path}", file=out)
        path.write_text("", encoding="utf-8")
    return path


class _Demo:
    """One run of the real demo: the server, the client, and what was measured."""

    def __init__(self, out: TextIO, seed: int, audit_path: Path) -> None:
        self.out = out
        self.seed = seed
        self.audit_path = audit_path
        self.policy = BreakerPolicy(
            failure_threshold=3,
            reset_timeout=0.3,
            reset_timeout_multiplier=2.0,
            max_reset_timeout=1.2,
        )
        self.pending: list[Transition] = []
        self.registry = BreakerRegistry(
            self.policy, sinks=[JsonlSink(audit_path), self.pending.append]
        )
        self.sent = 0
        self.fallbacks = 0
        self.failed_seconds: list[float] = []
        self.rejected_seconds: list[float] = []
        self.started = 0.0

    def say(self, text: str = "") -> None:
        print(text, file=self.out)

    def run(self, requests: int, transport_class: type[BreakerTransport]) -> CircuitBreaker:
        import httpx

        before, after = requests // 2, requests - requests // 2
        server = FlakyServer(_FAILURE_RATE, seed=self.seed, latency=_LATENCY)
        transport = transport_class(
            httpx.HTTPTransport(retries=0), registry=self.registry, fallback=_cached_answer
        )
        with (
            server,
            httpx.Client(
                transport=transport, base_url=server.url, timeout=5.0, trust_env=False
            ) as client,
        ):
            breaker = transport.breaker_for(server.url)
            self.say(
                f"a flaky service on {server.url}: {_FAILURE_RATE:.0%} of requests answer 500 "
                f"(seed {self.seed}), each answer takes {_LATENCY * 1000:.0f} ms"
            )
            self.say(
                "httpx calls it through BreakerTransport, one breaker per host: "
                f"{breaker.name!r}, policy "
                + self.policy.model_dump_json(
                    include={
                        "failure_threshold",
                        "reset_timeout",
                        "reset_timeout_multiplier",
                        "max_reset_timeout",
                    }
                )
            )
            self.say("a refused request is answered by a fallback (a cached answer)\n")
            self.say(f"{'#':>3}  {'t(s)':>5}  {'outcome':<46} {'state':<10} streak")
            self.started = time.monotonic()
            self.phase(f"the service is flaky: {before} requests")
            for _ in range(before):
                self.request(client, breaker)

            self.phase("the service goes down: every request answers 503")
            server.go_down()
            retrips = self.events(breaker).count("retrip")
            self.until(client, breaker, lambda: self.events(breaker).count("retrip") > retrips)

            self.phase("the service comes back")
            server.come_back()
            self.until(client, breaker, lambda: breaker.state == "closed")

            self.phase(f"business as usual: {after} requests")
            for _ in range(after):
                self.request(client, breaker)
            served = server.request_count
        self.summary(breaker, served)
        return breaker

    def phase(self, text: str) -> None:
        self.say(f"     -- {text}")

    def events(self, breaker: CircuitBreaker) -> list[str]:
        return [record.event for record in breaker.audit]

    def until(
        self, client: httpx.Client, breaker: CircuitBreaker, done: Callable[[], bool]
    ) -> None:
        """Send requests until ``done()`` (or the phase's time limit)."""
        deadline = time.perf_counter() + _PHASE_LIMIT
        while not done() and time.perf_counter() < deadline:
            self.request(client, breaker)

    def request(self, client: httpx.Client, breaker: CircuitBreaker) -> None:
        """Send one request, print its outcome and the transitions it caused, then pause."""
        import httpx

        self.sent += 1
        at = time.monotonic() - self.started
        started = time.perf_counter()
        try:
            response = client.get(f"/items/{self.sent}")
        except httpx.TransportError as exc:
            elapsed = time.perf_counter() - started
            self.failed_seconds.append(elapsed)
            outcome = f"{type(exc).__name__} in {elapsed * 1000:.1f} ms"
        else:
            elapsed = time.perf_counter() - started
            if response.headers.get(_FALLBACK_HEADER):
                self.fallbacks += 1
                self.rejected_seconds.append(elapsed)
                outcome = f"rejected in {elapsed * 1000:.2f} ms, fallback: cached answer"
            elif response.status_code >= 500:
                self.failed_seconds.append(elapsed)
                outcome = f"{response.status_code} failure in {elapsed * 1000:.1f} ms"
            else:
                outcome = f"{response.status_code} OK in {elapsed * 1000:.1f} ms"
        metrics = breaker.metrics()
        self.say(
            f"{self.sent:>3}  {at:>5.2f}  {outcome:<46} {metrics.state:<10} {metrics.failure_count}"
        )
        for record in self.pending:
            self.say(
                f"       => {record.event}: {record.source} -> {record.target} ({record.reason})"
            )
        self.pending.clear()
        time.sleep(_PACE)

    def summary(self, breaker: CircuitBreaker, served: int) -> None:
        m = breaker.metrics()
        self.say(
            f"\n{self.sent} requests: {m.total_requests} reached the service "
            f"({m.success_count} ok, {m.error_count} failed), {m.rejected_count} were "
            f"rejected without a connection and {self.fallbacks} served by the fallback"
        )
        self.say(f"the service itself counted {served} requests")
        if self.failed_seconds and self.rejected_seconds:
            failed = sum(self.failed_seconds) / len(self.failed_seconds)
            rejected = sum(self.rejected_seconds) / len(self.rejected_seconds)
            saved = len(self.rejected_seconds) * max(0.0, failed - rejected)
            self.say(
                f"a failed call took {failed * 1000:.1f} ms on average, a rejection "
                f"{rejected * 1000:.2f} ms: failing fast saved about {saved:.2f} s "
                f"({len(self.rejected_seconds)} rejections x {(failed - rejected) * 1000:.1f} ms)"
            )
        self.say("\naudit trail:")
        for record in breaker.audit:
            self.say(
                f"  #{record.seq} t={record.monotonic - self.started:>5.2f}s "
                f"{record.event:<13} {record.source} -> {record.target}: {record.reason}"
            )
        records = read_jsonl(self.audit_path)
        verify(records)
        self.say(
            f"\n{len(records)} records written to {self.audit_path.resolve()} "
            "(JSON Lines; read back and verified: a legal walk of the machine)"
        )
        self.prometheus(breaker)
        elapsed = time.monotonic() - self.started
        self.say(f"\nthe demo took {elapsed:.1f} s; the server is stopped")

    def prometheus(self, breaker: CircuitBreaker) -> None:
        """Show what a Prometheus scrape would see, if prometheus_client is installed."""
        try:
            from prometheus_client import CollectorRegistry, generate_latest

            from .prometheus import BreakerCollector
        except ImportError:
            return
        scrape = CollectorRegistry()
        scrape.register(BreakerCollector(self.registry))
        lines = generate_latest(scrape).decode().splitlines()
        self.say("\nwhat Prometheus would scrape (a selection):")
        for line in lines:
            if line.startswith("#") or f'name="{breaker.name}"' not in line:
                continue
            keep = (
                line.startswith("circuitbreaker_calls_total")
                or (line.startswith("circuitbreaker_state") and line.endswith(" 1.0"))
                or (
                    line.startswith("circuitbreaker_transitions_total")
                    and not line.endswith(" 0.0")
                )
            )
            if keep:
                self.say(f"  {line}")


def _cached_answer(request: httpx.Request, error: CircuitOpenError) -> httpx.Response:
    """The demo's fallback: a cached answer, marked so that the demo can tell."""
    import httpx

    return httpx.Response(
        200,
        json={"cached": True, "path": request.url.path},
        headers={_FALLBACK_HEADER: error.state},
        request=request,
    )


def _simulated(*, requests: int = 20, seed: int = 8, out: TextIO) -> CircuitBreaker:
    """Drive a breaker in front of a service that fails about half its calls.

    Time is simulated (a :class:`~breaker_fsm.testing.FakeClock` moved 0.5 s per
    request), so the run is instant and, with the seed, the same every time.
    """
    rng = random.Random(seed)
    clock = FakeClock()
    policy = BreakerPolicy(failure_threshold=3, reset_timeout=2.0)

    def fetch(n: int) -> str:
        if rng.random() < 0.5:
            raise ServiceError(f"request {n}: 500 from the service")
        return f"request {n}: 200 OK"

    breaker = CircuitBreaker(
        "flaky-service", policy, clock=clock, fallback=lambda n: f"request {n}: cached answer"
    )
    print(
        f"policy: {policy.model_dump_json(include={'failure_threshold', 'reset_timeout'})}",
        file=out,
    )
    print(f"{'#':>3}  {'t':>5}  {'outcome':<38} {'state':<10} streak", file=out)
    for n in range(1, requests + 1):
        before = breaker.metrics().rejected_count
        try:
            answer = breaker.call(fetch, n)
            rejected = breaker.metrics().rejected_count > before
            outcome = f"rejected, fallback: {answer}" if rejected else f"success: {answer}"
        except ServiceError:
            outcome = "service error"
        metrics = breaker.metrics()
        print(
            f"{n:>3}  {clock.monotonic():>5.1f}  {outcome:<38.38} {metrics.state:<10} "
            f"{metrics.failure_count}",
            file=out,
        )
        clock.advance(0.5)
    metrics = breaker.metrics()
    print(
        f"\n{metrics.total_requests} calls ran ({metrics.success_count} ok, "
        f"{metrics.error_count} failed), {metrics.rejected_count} rejected and served "
        "by the fallback",
        file=out,
    )
    print("\naudit trail:", file=out)
    for record in breaker.audit:
        print(
            f"  #{record.seq} t={record.monotonic:>4.1f}s {record.event:<13} "
            f"{record.source} -> {record.target}: {record.reason}",
            file=out,
        )
    return breaker
