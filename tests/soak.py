"""Soak: ten million calls through one breaker and through 10,000 per-host breakers, then a
mass outage: 10,000 per-host breakers trip, recover and trip again, ten times.

Run by ``make soak`` (not part of ``make test``). Prints the figures the README reports:
calls per second and the traced memory before and after each run, which must stay flat
(after the outage's first cycle, once every breaker's bounded audit log is full).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import os
import random
import sys
import time
import tracemalloc
from collections.abc import Callable

from breaker_fsm import (
    BreakerPolicy,
    BreakerRegistry,
    CircuitBreaker,
    CircuitOpenError,
    CountWindow,
)
from breaker_fsm._binding import _POOL
from breaker_fsm.audit import verify
from breaker_fsm.testing import FakeClock


class Flaky(Exception):
    """A failed call."""


def _ok() -> int:
    return 1


def _fail() -> int:
    raise Flaky


def _drive(
    get: Callable[[int], CircuitBreaker], calls: int, clock: FakeClock, seed: int
) -> dict[str, int]:
    rng = random.Random(seed)
    outcomes = rng.randbytes(1 << 16)
    hosts = [rng.randrange(1 << 30) for _ in range(1 << 16)]
    counts = {"ok": 0, "failed": 0, "rejected": 0}
    for i in range(calls):
        breaker = get(hosts[i & 0xFFFF])
        op = _fail if outcomes[i & 0xFFFF] < 40 else _ok  # about 16% failures
        try:
            breaker.call(op)
            counts["ok"] += 1
        except Flaky:
            counts["failed"] += 1
        except CircuitOpenError:
            counts["rejected"] += 1
        if i & 0x3FF == 0:
            clock.advance(0.25)
    return counts


def _measure(
    label: str, get: Callable[[int], CircuitBreaker], calls: int, clock: FakeClock, warm: int
) -> None:
    """Warm up, then run two halves; a leak shows as growth in the second half."""
    _drive(get, warm, clock, seed=1)
    gc.collect()
    marks = [tracemalloc.get_traced_memory()[0]]
    started = time.perf_counter()
    counts = {"ok": 0, "failed": 0, "rejected": 0}
    for half in (2, 3):
        for key, value in _drive(get, calls // 2, clock, seed=half).items():
            counts[key] += value
        gc.collect()
        marks.append(tracemalloc.get_traced_memory()[0])
    elapsed = time.perf_counter() - started
    first, second = marks[1] - marks[0], marks[2] - marks[1]
    print(
        f"{label}: {calls:,} calls in {elapsed:.1f} s ({calls / elapsed:,.0f}/s, traced); "
        f"ok {counts['ok']:,}, failed {counts['failed']:,}, rejected {counts['rejected']:,}; "
        f"traced memory {marks[0] / 1024:,.0f} KiB after warm-up, "
        f"{first / 1024:+,.1f} KiB over the first half, {second / 1024:+,.1f} KiB over the second"
    )
    # One retained byte per call would be calls/2 bytes over the second half.
    if second > max(calls // 8, 64 * 1024):
        sys.exit(f"{label}: memory grew by {second / 1024:.0f} KiB in the second half")


def _memory() -> int:
    """Bytes in use: traced by tracemalloc when it runs, else the process's resident set."""
    if tracemalloc.is_tracing():
        return tracemalloc.get_traced_memory()[0]
    with open("/proc/self/statm", encoding="ascii") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def mass_outage(hosts: int, cycles: int) -> None:
    """Every per-host breaker trips, recovers and trips again, ``cycles`` times over.

    Each breaker keeps its last 3 audit records (a cycle makes 3), so from the first cycle
    on its log is full: memory must stay flat after it. No breaker builds a machine.
    """
    clock = FakeClock()
    policy = BreakerPolicy(failure_threshold=1, reset_timeout=1.0)
    names = [f"host-{i}.example" for i in range(hosts)]
    gc.collect()
    start = _memory()
    registry = BreakerRegistry(policy, clock=clock, audit_capacity=3)
    for name in names:
        registry.get(name)
    gc.collect()
    idle = _memory() - start
    for name in names:  # the outage: every breaker trips
        with contextlib.suppress(Flaky):
            registry.get(name).call(_fail)
    gc.collect()
    marks = [_memory() - start]
    started = time.perf_counter()
    for _ in range(cycles):
        clock.advance(policy.reset_timeout)
        for name in names:
            breaker = registry.get(name)
            breaker.call(_ok)  # attempt_reset, then recover
            with contextlib.suppress(Flaky):
                breaker.call(_fail)  # and the outage again: trip
        gc.collect()
        marks.append(_memory() - start)
    elapsed = time.perf_counter() - started
    transitions = 3 * hosts * cycles
    assert all(b.state == "open" and b._machine is None for b in registry)
    counts = registry.transition_counts()[names[0]]
    assert (counts["trip"], counts["recover"]) == (cycles + 1, cycles), counts
    growth = marks[-1] - marks[1]
    how = "traced" if tracemalloc.is_tracing() else "resident"
    print(
        f"mass outage ({how} memory), {hosts:,} breakers: idle {idle / 1e6:.1f} MB, all tripped "
        f"{marks[0] / 1e6:.1f} MB ({marks[0] / 2**20:.1f} MiB); after each of {cycles} cycles "
        f"of trip-recover-trip: {', '.join(f'{m / 1e6:.2f}' for m in marks[1:])} MB; "
        f"{growth / 1024:+,.1f} KiB from cycle 1 to {cycles}; {transitions:,} transitions in "
        f"{elapsed:.1f} s ({elapsed / transitions * 1e6:.0f} µs each); "
        f"machines built: {len(_POOL)} (shared), 0 per breaker"
    )
    if growth > (64 if tracemalloc.is_tracing() else 1024) * 1024:  # pages, when resident
        sys.exit(f"mass outage: memory grew by {growth / 1024:.0f} KiB after the first cycle")


def main() -> None:
    """Run the soaks (``--only outage``: the mass outage alone)."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=int(os.environ.get("SOAK_CALLS", "10000000")))
    parser.add_argument("--hosts", type=int, default=10_000)
    parser.add_argument("--cycles", type=int, default=10)
    parser.add_argument("--only", choices=["calls", "outage"])
    parser.add_argument(
        "--traced", action="store_true", help="outage: tracemalloc's bytes, not the resident set"
    )
    args = parser.parse_args()
    if args.only != "calls":
        if args.traced:
            tracemalloc.start()
        mass_outage(args.hosts, args.cycles)
        tracemalloc.stop()
    if args.only == "outage":
        return
    policy = BreakerPolicy(
        failure_threshold=5,
        reset_timeout=2.0,
        window=CountWindow(size=100),
        failure_rate_threshold=0.6,
    )
    tracemalloc.start()

    clock = FakeClock()
    single = CircuitBreaker("soak", policy, clock=clock, audit_capacity=4)
    _measure("one breaker", lambda _host: single, args.calls, clock, warm=100_000)
    verify(single.audit)

    clock = FakeClock()
    # Bounded audit logs: each breaker keeps its last 4 records. Warm-up builds every
    # breaker's machine and fills its log, so what remains is the per-call cost.
    registry = BreakerRegistry(policy, clock=clock, audit_capacity=4)
    names = [f"host-{i}.example" for i in range(args.hosts)]
    for name in names:
        breaker = registry.get(name)
        for _ in range(4):
            breaker.send("reset", reason="soak warm-up")
    _measure(
        f"registry of {args.hosts:,} breakers",
        lambda host: registry.get(names[host % args.hosts]),
        args.calls,
        clock,
        warm=args.hosts * 10,
    )
    print(f"registry holds {len(registry):,} breakers")


if __name__ == "__main__":
    main()
