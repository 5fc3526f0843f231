"""The flaky-service walkthrough that ``make demo`` runs."""

from __future__ import annotations

import random
import sys
from typing import TextIO

from ._breaker import CircuitBreaker
from ._policy import BreakerPolicy
from .testing import FakeClock

__all__ = ["run"]


class ServiceError(Exception):
    """The flaky service failed this request."""


def run(*, requests: int = 20, seed: int = 8, out: TextIO | None = None) -> CircuitBreaker:
    """Drive a breaker in front of a service that fails about half its calls.

    Time is simulated (a :class:`~breaker_fsm.testing.FakeClock` moved 0.5 s per
    request), so the run is instant and, with the seed, the same every time.
    """
    out = out if out is not None else sys.stdout
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
