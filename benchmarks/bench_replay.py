"""Replay: 1,000,000 recorded calls against three candidate policies (issue 19).

Target: simulating runs at least 500,000 calls a second per policy, apart from reading the
file. Reading (JSON Lines as CallLogSink writes it, and CSV) and simulating are timed
separately, as medians over rounds, by the thread's CPU time (``time.thread_time``, as the
in-memory benchmarks of ``run.py`` are: on a shared machine the wall clock also counts the
time other processes held the core); the wall-clock figures and the load average are reported
next to them.

The log is synthetic and seeded: 100 calls a second with 2% failures and ~40 ms calls, broken
by outages (most calls fail), slow spells (most calls take seconds) and a few overlapping
calls, so that every policy trips, retrips and recovers many times.

    .venv/bin/python benchmarks/bench_replay.py [--calls 1000000] [--rounds 3] [--out bench-results]

``make bench`` runs it; it writes ``bench-results/replay.md`` and ``bench-results/replay.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from breaker_fsm import BreakerPolicy, CountWindow, TimeWindow  # noqa: E402
from breaker_fsm.replay import Call, read_calls, simulate  # noqa: E402

TARGET = 500_000  # calls a second, per policy, simulating only

POLICIES = {
    "consecutive": BreakerPolicy(failure_threshold=5, reset_timeout=30),
    "count window": BreakerPolicy(
        failure_threshold=None,
        window=CountWindow(size=100),
        failure_rate_threshold=0.5,
        minimum_calls=20,
        reset_timeout=10,
        success_threshold=3,
        half_open_max_calls=3,
    ),
    "time window, slow calls, backoff": BreakerPolicy(
        failure_threshold=10,
        window=TimeWindow(seconds=30),
        failure_rate_threshold=0.3,
        minimum_calls=50,
        slow_call_duration=1.0,
        slow_call_rate_threshold=0.5,
        reset_timeout=5,
        reset_timeout_multiplier=2,
        max_reset_timeout=120,
        reset_timeout_jitter=0.1,
        half_open_timeout=10,
    ),
}


def synthetic_log(count: int, seed: int = 19) -> list[Call]:
    """``count`` calls, 100 a second, with outages and slow spells."""
    rng = random.Random(seed)
    calls = []
    at = 1000.0
    for _ in range(count):
        at += rng.expovariate(100.0)
        minute = int(at // 60)
        outage = minute % 17 == 3  # one minute in 17: the dependency is down
        slow_spell = minute % 23 == 11  # one minute in 23: it answers, slowly
        failed = rng.random() < (0.9 if outage else 0.02)
        duration = rng.lognormvariate(-3.2, 0.5)  # ~40 ms
        if slow_spell and rng.random() < 0.8:
            duration = rng.uniform(1.0, 3.0)
        roll = rng.random()
        outcome = (
            "ignored" if roll < 0.01 else "refused" if roll < 0.015 else
            "failure" if failed else "success"
        )  # fmt: skip
        calls.append(Call(round(at, 6), outcome, round(duration, 6)))
    return calls


def write_logs(calls: list[Call], folder: Path) -> tuple[Path, Path]:
    jsonl = folder / "calls.jsonl"
    with jsonl.open("w", encoding="utf-8") as out:
        for call in calls:
            record = {"at": call.at, "outcome": call.outcome, "duration": call.duration}
            out.write(json.dumps({**record, "breaker": "users-api"}) + "\n")
    csv = folder / "calls.csv"
    with csv.open("w", encoding="utf-8") as out:
        out.write("at,outcome,duration\n")
        out.writelines(f"{c.at},{c.outcome},{c.duration}\n" for c in calls)
    return jsonl, csv


def timed(function: Any, *args: Any, **kwargs: Any) -> tuple[float, float, Any]:
    """(CPU seconds, wall seconds, result) of one call."""
    cpu, wall = time.thread_time(), time.perf_counter()
    result = function(*args, **kwargs)
    return time.thread_time() - cpu, time.perf_counter() - wall, result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("bench-results"))
    args = parser.parse_args()

    print(f"replay: building a log of {args.calls:,} calls", file=sys.stderr, flush=True)
    calls = synthetic_log(args.calls)
    with tempfile.TemporaryDirectory() as folder:
        jsonl, csv = write_logs(calls, Path(folder))
        read_seconds: dict[str, list[tuple[float, float]]] = {"jsonl": [], "csv": []}
        for _ in range(args.rounds):
            for kind, path in (("jsonl", jsonl), ("csv", csv)):
                cpu, wall, read = timed(read_calls, path)
                read_seconds[kind].append((cpu, wall))
                assert read == calls, f"{kind}: the log did not read back as written"

    results: dict[str, Any] = {
        "calls": args.calls,
        "rounds": args.rounds,
        "target_calls_per_second": TARGET,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "load_average": os.getloadavg()[0],
        "reading": {kind: figures(args.calls, s) for kind, s in read_seconds.items()},
        "policies": {},
    }
    for name, policy in POLICIES.items():
        rounds = [timed(simulate, policy, calls) for _ in range(args.rounds)]
        replay = rounds[0][2]
        # Each replay is a new breaker instance: its records' origin (and so their life and
        # hash chain) is its own; the walk itself must repeat exactly.
        walk = [r.model_dump(exclude={"origin", "life", "prev"}) for r in replay.trail]
        for _, _, other in rounds[1:]:
            again = [r.model_dump(exclude={"origin", "life", "prev"}) for r in other.trail]
            assert again == walk, "a replay did not repeat"
        speed = figures(args.calls, [(cpu, wall) for cpu, wall, _ in rounds])
        speed["met"] = speed["calls_per_second"] >= TARGET
        results["policies"][name] = speed | replay.as_dict()
        print(
            f"replay: {name}: {speed['calls_per_second']:,.0f} calls/s "
            f"({speed['wall_calls_per_second']:,.0f} by the wall clock)",
            file=sys.stderr,
            flush=True,
        )
    results["load_average_after"] = os.getloadavg()[0]

    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "replay.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    markdown = render(results)
    (args.out / "replay.md").write_text(markdown, encoding="utf-8")
    print(markdown)
    return 0  # a report, not a gate: a shared machine's noise must not fail `make bench`


def figures(calls: int, rounds: list[tuple[float, float]]) -> dict[str, Any]:
    """Median CPU and wall seconds over rounds, and the calls a second of each."""
    cpu = statistics.median(c for c, _ in rounds)
    wall = statistics.median(w for _, w in rounds)
    return {
        "seconds": cpu,
        "calls_per_second": calls / cpu,
        "wall_seconds": wall,
        "wall_calls_per_second": calls / wall,
    }


def render(results: dict[str, Any]) -> str:
    reading = results["reading"]
    lines = [
        f"## Replay: {results['calls']:,} recorded calls, three policies",
        "",
        f"Median of {results['rounds']} rounds, Python {results['python']}, "
        f"{results['cpus']} CPUs, load average {results['load_average']:.1f} before and "
        f"{results['load_average_after']:.1f} after. Seconds are CPU seconds of the thread; "
        "wall-clock calls/s in brackets.",
        "",
        "| reading | seconds | calls/s |",
        "| --- | ---: | ---: |",
        *(
            f"| {kind} | {r['seconds']:.2f} | {r['calls_per_second']:,.0f} "
            f"({r['wall_calls_per_second']:,.0f}) |"
            for kind, r in reading.items()
        ),
        "",
        f"Simulating (target: at least {results['target_calls_per_second']:,} calls/s per policy):",
        "",
        "| policy | seconds | calls/s | target | trips | retrips | recovers | refused "
        "| failures let through | successes refused |",
        "| --- | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, p in results["policies"].items():
        t = p["transitions"]
        lines.append(
            f"| {name} | {p['seconds']:.2f} | {p['calls_per_second']:,.0f} "
            f"({p['wall_calls_per_second']:,.0f}) | {'met' if p['met'] else 'MISSED'} | "
            f"{t['trip']} | {t['retrip']} | {t['recover']} | {p['refused']:,} | "
            f"{p['failures_let_through']:,} | {p['successes_refused']:,} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
