"""Timing harness: interleaved rounds, paired differences, medians.

The machine this runs on is small and shared (two cores; other engineers run test suites on
it), so every figure is a median over many rounds, read from this thread's CPU clock:

- each *sample* is the best of a few short repeats (a repeat that was disturbed is dropped,
  not averaged in);
- in each *round* every case is sampled once, in a shuffled order;
- an overhead is the median over rounds of a *paired* difference: the case minus its
  baseline measured in the same round, which cancels slow drift in the machine's load;
  a ratio is the median of the per-round ratios.

A case is a statement (or an awaited expression) compiled into the timing loop itself, so
that a bare call and a call through a breaker pay exactly the same loop overhead.
"""

from __future__ import annotations

import asyncio
import gc
import random
import statistics
import textwrap
import time
import timeit
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

#: The clock every sample is read from: this thread's CPU time, so that the time the thread
#: spends preempted by other processes on a shared machine is not counted.
CLOCK = time.thread_time

Sampler = Callable[[int], float]  # runs n iterations, returns seconds


@dataclass(frozen=True)
class Case:
    """One operation to time: ``stmt`` (sync) or ``await``-ed ``stmt`` lines (async).

    ``stmt`` may span lines; with ``catch`` set it runs inside ``try``/``except catch``.
    ``namespace`` supplies the names it uses.
    """

    stmt: str
    namespace: dict[str, Any]
    is_async: bool = False
    catch: type[BaseException] | tuple[type[BaseException], ...] | None = None

    def body(self) -> str:
        """The statement as it runs once, ``try``-wrapped when it expects an exception."""
        if self.catch is None:
            return self.stmt
        return f"try:\n{textwrap.indent(self.stmt, '    ')}\nexcept _catch:\n    pass"

    def namespace_for_run(self) -> dict[str, Any]:
        namespace = dict(self.namespace)
        if self.catch is not None:
            namespace["_catch"] = self.catch
        return namespace


def _compile_loop(case: Case, clock: Callable[[], float] | None) -> Callable[[int], Any]:
    """``loop(n)``: run the case ``n`` times (returning seconds when ``clock`` is given)."""
    body = textwrap.indent(case.body(), " " * 8)
    prefix = "async def" if case.is_async else "def"
    timed = clock is not None
    source = (
        f"{prefix} _loop(_n):\n"
        + ("    _t0 = _clock()\n" if timed else "")
        + "    for _ in range(_n):\n"
        + body
        + "\n"
        + ("    return _clock() - _t0\n" if timed else "    return None\n")
    )
    namespace = case.namespace_for_run()
    namespace["_clock"] = clock
    exec(compile(source, f"<case {case.stmt[:30]!r}>", "exec"), namespace)
    loop: Callable[[int], Any] = namespace["_loop"]
    return loop


def runner(case: Case, loop: asyncio.AbstractEventLoop) -> Callable[[int], None]:
    """A plain ``run(n)`` for the case (no timing): for memory, garbage and thread checks."""
    fn = _compile_loop(case, None)
    if not case.is_async:
        return fn

    def run(n: int) -> None:
        loop.run_until_complete(fn(n))

    return run


def sampler(case: Case, loop: asyncio.AbstractEventLoop) -> Sampler:
    """A sampler for the case: :mod:`timeit` for sync, a self-timed coroutine for async."""
    if not case.is_async:
        timer = timeit.Timer(case.body(), timer=CLOCK, globals=case.namespace_for_run())
        return timer.timeit
    coroutine = _compile_loop(case, CLOCK)

    def sample(n: int) -> float:
        enabled = gc.isenabled()
        gc.disable()  # as timeit does for the sync cases
        try:
            elapsed: float = loop.run_until_complete(coroutine(n))
            return elapsed
        finally:
            if enabled:
                gc.enable()

    return sample


def calibrate(sample: Sampler, target: float) -> int:
    """Iterations that make one repeat last about ``target`` seconds."""
    n = 1
    while True:
        elapsed = sample(n)
        if elapsed >= target / 4 or n >= 1 << 24:
            return max(1, int(n * target / max(elapsed, 1e-9)))
        n *= 4


@dataclass
class Results:
    """Per-case samples (seconds per iteration), one per round."""

    samples: dict[str, list[float]] = field(default_factory=dict)

    def median(self, case: str) -> float:
        return statistics.median(self.samples[case])

    def paired(self, case: str, base: str) -> list[float]:
        return [a - b for a, b in zip(self.samples[case], self.samples[base], strict=True)]

    def overhead(self, case: str, base: str) -> float:
        """Median over rounds of (case - base), seconds per iteration."""
        return statistics.median(self.paired(case, base))

    def ratio(self, case: str, base: str) -> float:
        """Median over rounds of case / base."""
        return statistics.median(
            a / b for a, b in zip(self.samples[case], self.samples[base], strict=True)
        )

    def iqr(self, values: list[float]) -> float:
        """Interquartile range."""
        if len(values) < 4:
            return 0.0
        q = statistics.quantiles(values, n=4)
        return q[2] - q[0]


def run(
    samplers: dict[str, Sampler],
    *,
    rounds: int = 31,
    repeats: int = 3,
    target: float = 0.002,
    seed: int = 7,
    progress: Callable[[int], None] | None = None,
) -> Results:
    """Sample every case ``rounds`` times, interleaved; see the module docstring."""
    sizes = {name: calibrate(s, target) for name, s in samplers.items()}
    rng = random.Random(seed)
    results = Results({name: [] for name in samplers})
    names = list(samplers)
    for r in range(rounds):
        rng.shuffle(names)
        for name in names:
            sample, n = samplers[name], sizes[name]
            gc.collect()
            best = min(sample(n) for _ in range(repeats))
            results.samples[name].append(best / n)
        if progress is not None:
            progress(r + 1)
    return results
