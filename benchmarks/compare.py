"""``make bench-compare BASE=rev``: this checkout against another revision, path by path.

Both versions of breaker_fsm are timed in the same run: each round starts one fresh
subprocess per version (in a shuffled order), each importing its own tree, and times the
same paths there on this thread's CPU clock (the best of a few repeats). The result per
path is the median over rounds of the ratio *this / base*, so slow drift in the machine's
load cancels out. Bytes per idle breaker come from tracemalloc (exact, no rounds needed).

Writes a Markdown table to ``--out`` (``bench-results/compare.md``) and prints it.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Runs inside each subprocess, with that version's tree first on sys.path. Prints JSON:
# nanoseconds per operation for each path, and bytes per idle and per tripped breaker.
PROBE = r"""
import asyncio, json, sys, time, timeit, tracemalloc
from breaker_fsm import BreakerPolicy, CircuitBreaker, CircuitOpenError, TimeWindow
from breaker_fsm.testing import FakeClock

CLOCK = time.thread_time

def best(stmt, ns, number, repeat=5):
    timer = timeit.Timer(stmt, globals=ns, timer=CLOCK)
    return min(timer.repeat(repeat=repeat, number=number)) / number * 1e9

def ok(): return 1
class Boom(Exception): pass
def boom(): raise Boom

closed = CircuitBreaker("c", BreakerPolicy(failure_threshold=10**9))
timed = CircuitBreaker("t", BreakerPolicy(window=TimeWindow(seconds=60), minimum_calls=1,
                                         failure_rate_threshold=1.0))
clock = FakeClock()
opened = CircuitBreaker("o", BreakerPolicy(failure_threshold=1, reset_timeout=10**9), clock=clock)
try:
    opened.call(boom)
except Boom:
    pass
for _ in range(100):
    timed.call(ok)
ns = dict(closed=closed, timed=timed, opened=opened, ok=ok, boom=boom, Boom=Boom,
          CircuitOpenError=CircuitOpenError)
out = {}
out["bare call"] = best("ok()", ns, 200_000)
out["closed success"] = best("closed.call(ok)", ns, 200_000) - out["bare call"]
out["closed failure"] = best("try:\n closed.call(boom)\nexcept Boom:\n pass", ns, 50_000)
out["open rejection"] = best(
    "try:\n opened.call(ok)\nexcept CircuitOpenError:\n pass", ns, 50_000)
out["TimeWindow success"] = best("timed.call(ok)", ns, 100_000) - out["bare call"]

# A transition: trip and reset a threshold-1 breaker (its machine already built).
flip = CircuitBreaker("f", BreakerPolicy(failure_threshold=1), clock=FakeClock())
flip.machine
def cycle():
    try:
        flip.call(boom)
    except Boom:
        pass
    flip.send("reset")
ns["cycle"] = cycle
out["trip + reset (2 transitions)"] = best("cycle()", ns, 200, repeat=5) / 1000  # µs

def size(make, count=2000):
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    keep = [make(i) for i in range(count)]
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    total = sum(s.size_diff for s in after.compare_to(before, "filename"))
    del keep
    return total / count
out["bytes per idle breaker"] = size(lambda i: CircuitBreaker(f"b{i}"))

# Issue 17: a breaker that tripped, recovered and tripped again, over an idle one (the
# same policy and clock), and a trip against python-statemachine's own bare send.
import statistics
from statemachine import State, StateMachine

once = BreakerPolicy(failure_threshold=1, reset_timeout=1.0)
fake = FakeClock()
def cycled(i):
    breaker = CircuitBreaker(f"c{i}", once, clock=fake)
    for op in (boom, ok, boom):
        try:
            breaker.call(op)
        except Boom:
            pass
        fake.advance(1.0)
    assert breaker.state == "open"
    return breaker
idle = size(lambda i: CircuitBreaker(f"i{i}", once, clock=fake), count=1000)
out["bytes per cycled breaker over an idle one"] = size(cycled, count=1000) - idle

class Two(StateMachine):
    a = State(initial=True)
    b = State()
    go = a.to(b)
    back = b.to(a)

two = Two()
tripping = BreakerPolicy(failure_threshold=1, reset_timeout=10**9)
received = []
later = CircuitBreaker("later", tripping, sinks=[received.append], audit_capacity=10)
def trip(breaker):
    try:
        breaker.call(boom)
    except Boom:
        pass
def median_us(op, undo, n):
    times = []
    for _ in range(n):
        t0 = CLOCK()
        op()
        times.append(CLOCK() - t0)
        undo()
    return statistics.median(times) * 1e6
fresh = iter([CircuitBreaker(f"f{i}", tripping, sinks=[received.append]) for i in range(400)])
sends, trips, firsts = [], [], []
for _ in range(4):  # interleaved rounds: the same load for each
    sends.append(median_us(lambda: two.send("go"), lambda: two.send("back"), 100))
    trips.append(median_us(lambda: trip(later), lambda: later.send("reset"), 100))
    firsts.append(median_us(lambda: trip(next(fresh)), lambda: None, 100))
    received.clear()
out["bare python-statemachine send"] = statistics.median(sends)
out["a later trip (one sink)"] = statistics.median(trips)
out["a later trip ÷ a bare send"] = statistics.median(t / s for t, s in zip(trips, sends))
out["a first trip ÷ a bare send"] = statistics.median(t / s for t, s in zip(firsts, sends))
print(json.dumps(out))
"""

UNITS = {
    "trip + reset (2 transitions)": "µs",
    "bytes per idle breaker": "B",
    "bytes per cycled breaker over an idle one": "B",
    "bare python-statemachine send": "µs",
    "a later trip (one sink)": "µs",
    "a later trip ÷ a bare send": "×",
    "a first trip ÷ a bare send": "×",
}


def probe(tree: Path) -> dict[str, float]:
    """One fresh process importing breaker_fsm from ``tree``: its figures."""
    code = f"import sys; sys.path.insert(0, {str(tree)!r})\n" + PROBE
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=tree
    )
    figures: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True, help="the revision to compare against")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--out", type=Path, default=ROOT / "bench-results")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / "base"
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(base), args.base],
            check=True,
            capture_output=True,
        )
        try:
            runs: dict[str, list[dict[str, float]]] = {"base": [], "this": []}
            trees = {"base": base, "this": ROOT}
            for _ in range(args.rounds):
                order = list(trees)
                random.shuffle(order)
                for which in order:
                    runs[which].append(probe(trees[which]))
        finally:
            subprocess.run(
                ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(base)],
                check=False,
                capture_output=True,
            )
    head = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    lines = [
        f"# This checkout ({head}) against {args.base}: {args.rounds} rounds, medians",
        "",
        "| path | base | this | this / base (median of per-round ratios) |",
        "| --- | --- | --- | --- |",
    ]
    for path in runs["this"][0]:
        unit = UNITS.get(path, "ns")
        before = statistics.median(r[path] for r in runs["base"])
        after = statistics.median(r[path] for r in runs["this"])
        ratios = [t[path] / b[path] for t, b in zip(runs["this"], runs["base"], strict=True)]
        lines.append(
            f"| {path} | {before:,.{2 if unit == '×' else 1}f} {unit} | "
            f"{after:,.{2 if unit == '×' else 1}f} {unit} | "
            f"{statistics.median(ratios):.3f} |"
        )
    table = "\n".join(lines) + "\n"
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "compare.md").write_text(table, encoding="utf-8")
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
