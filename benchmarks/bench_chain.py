"""What the audit hash chain adds to a transition: the digest, the stamp, and a send for scale.

Run: .venv/bin/python benchmarks/bench_chain.py (best of several runs, in µs).
"""

from __future__ import annotations

import timeit
from collections.abc import Callable

from breaker_fsm import CircuitBreaker
from breaker_fsm.audit import Chain, digest


def best(work: Callable[[], object], number: int) -> float:
    """The best time of one ``work()`` over seven runs of ``number``, in µs."""
    return min(timeit.repeat(work, number=number, repeat=7)) / number * 1e6


def main() -> None:
    """Print the three figures."""
    breaker = CircuitBreaker("bench")
    breaker.send("force_open")
    breaker.send("reset")
    record = breaker.audit[-1]
    plain = record.model_copy(update={"origin": None, "life": None, "prev": None})
    chain = Chain()
    print(f"digest(record)          {best(lambda: digest(record), 20_000):7.2f} µs")
    print(f"Chain.stamp(record)     {best(lambda: chain.stamp(plain), 20_000):7.2f} µs")

    def two_transitions() -> None:
        breaker.send("force_open")
        breaker.send("reset")

    print(f"send (one transition)   {best(two_transitions, 1_000) / 2:7.2f} µs")


if __name__ == "__main__":
    main()
