"""Prometheus metrics for every breaker of a :class:`~breaker_fsm.BreakerRegistry`.

Needs the ``prometheus`` extra (``pip install 'breaker-fsm[prometheus]'``). ``import
breaker_fsm`` never imports this module, so the core works without prometheus_client.

:class:`BreakerCollector` reads the registry at scrape time: nothing is updated on the
call path. Every series carries the breaker's ``name``; the names follow resilience4j's
metric set where one exists (``state``, ``failure_rate``, ``slow_call_rate``,
``buffered_calls``), with Prometheus conventions (``_total`` counters, ratios in 0–1).

=============================================  =======  ===================================
metric                                         type     meaning
=============================================  =======  ===================================
``circuitbreaker_state{name,state}``           gauge    1 for the current state, else 0
``circuitbreaker_calls_total{name,kind}``      counter  calls by outcome: ``success``,
                                                        ``failure``, ``ignored``, ``rejected``
``circuitbreaker_slow_calls_total{name}``      counter  calls slower than slow_call_duration
``circuitbreaker_transitions_total{name,       counter  transitions by event (``trip``,
event}``                                                ``recover``...; zeros included)
``circuitbreaker_failure_rate{name}``          gauge    failed share of the window, 0–1;
                                                        -1 when not computable (the window
                                                        starts afresh in half_open)
``circuitbreaker_slow_call_rate{name}``        gauge    slow share of the window, 0–1; -1
``circuitbreaker_buffered_calls{name}``        gauge    calls in the sliding window
``circuitbreaker_consecutive_failures{name}``  gauge    the current failure streak (failed
                                                        trials extend it)
``circuitbreaker_sink_errors_total{name}``     counter  sinks (audit, call) or predicates
                                                        that raised
``circuitbreaker_store_errors_total{name}``    counter  failed round trips to the shared
                                                        store (``store=``); 0 without one
``circuitbreaker_degraded{name}``              gauge    1 while running on local state
                                                        because the store did not answer
=============================================  =======  ===================================

Every breaker has both store series, a breaker without a store too (always 0): one stable
series set per breaker, so ``rate()`` and alerts need no ``absent()`` or ``or vector(0)``.

>>> from prometheus_client import CollectorRegistry, generate_latest
>>> from breaker_fsm import BreakerRegistry
>>> from breaker_fsm.prometheus import BreakerCollector
>>> breakers = BreakerRegistry()
>>> breakers.get("users-api").call(lambda: "ok")
'ok'
>>> scrape = CollectorRegistry()
>>> scrape.register(BreakerCollector(breakers))
>>> text = generate_latest(scrape).decode()
>>> 'circuitbreaker_state{name="users-api",state="closed"} 1.0' in text
True
>>> 'circuitbreaker_calls_total{kind="success",name="users-api"} 1.0' in text
True
>>> 'circuitbreaker_degraded{name="users-api"} 0.0' in text
True
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import TYPE_CHECKING

try:
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
except ImportError as exc:  # pragma: no cover - exercised in a subprocess without the extra
    raise ImportError(
        "breaker_fsm.prometheus needs prometheus-client: pip install 'breaker-fsm[prometheus]'"
    ) from exc

from ._machine import STATES

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

    from ._registry import BreakerRegistry

__all__ = ["CALL_KINDS", "BreakerCollector"]

#: The ``kind`` label values of ``circuitbreaker_calls_total``.
CALL_KINDS: tuple[str, ...] = ("success", "failure", "ignored", "rejected")

_NAMESPACE = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")


class BreakerCollector:
    """A Prometheus collector over a breaker registry (register it once per registry).

    Args:
        registry: the breakers to expose; breakers created later appear on the next scrape
            and evicted ones disappear.
        namespace: the metric name prefix, ``circuitbreaker`` by default; change it to
            expose two registries through one Prometheus registry.

    Register it with ``prometheus_client.REGISTRY.register(BreakerCollector(registry))``
    (or your own ``CollectorRegistry``).
    """

    def __init__(self, registry: BreakerRegistry, *, namespace: str = "circuitbreaker") -> None:
        if not _NAMESPACE.fullmatch(namespace):
            raise ValueError(f"namespace must be a valid metric name prefix, got {namespace!r}")
        self.registry = registry
        self.namespace = namespace

    def __repr__(self) -> str:
        return f"<BreakerCollector {self.namespace!r} over {self.registry!r}>"

    def describe(self) -> list[Metric]:
        """The metric families without samples (so registering does not scrape)."""
        return list(self._families())

    def collect(self) -> Iterator[Metric]:
        """One scrape: every metric family, one sample set per breaker."""
        (
            state,
            calls,
            slow_calls,
            transitions,
            failure_rate,
            slow_rate,
            buffered,
            streak,
            sink_errors,
            store_errors,
            degraded,
        ) = families = self._families()
        counts = self.registry.transition_counts()
        for name, m in self.registry.snapshot().items():
            for candidate in STATES:
                state.add_metric([name, candidate], 1.0 if m.state == candidate else 0.0)
            outcome = (m.success_count, m.error_count, m.ignored_count, m.rejected_count)
            for kind, value in zip(CALL_KINDS, outcome, strict=True):
                calls.add_metric([name, kind], value)
            slow_calls.add_metric([name], m.slow_call_count)
            for event, value in counts.get(name, {}).items():
                transitions.add_metric([name, event], value)
            failure_rate.add_metric([name], -1.0 if m.failure_rate is None else m.failure_rate)
            slow_rate.add_metric([name], -1.0 if m.slow_call_rate is None else m.slow_call_rate)
            buffered.add_metric([name], m.window_calls)
            streak.add_metric([name], m.failure_count)
            sink_errors.add_metric([name], m.sink_errors)
            # Emitted for every breaker, as 0 (not degraded, no failed round trip) when it
            # has no store, rather than only for stored breakers: Prometheus users expect a
            # stable series set (a series that appears only after the first error makes
            # increase() miss that error and alerts need absent()/`or vector(0)`), the
            # other families already do the same (slow_call_rate is -1 without slow
            # detection), and BreakerMetrics itself reports 0/False without a store.
            store_errors.add_metric([name], m.store_errors)
            degraded.add_metric([name], 1.0 if m.degraded else 0.0)
        yield from families

    def _families(
        self,
    ) -> tuple[
        GaugeMetricFamily,
        CounterMetricFamily,
        CounterMetricFamily,
        CounterMetricFamily,
        GaugeMetricFamily,
        GaugeMetricFamily,
        GaugeMetricFamily,
        GaugeMetricFamily,
        CounterMetricFamily,
        CounterMetricFamily,
        GaugeMetricFamily,
    ]:
        ns = self.namespace
        return (
            GaugeMetricFamily(
                f"{ns}_state",
                "Circuit breaker state: 1 for the current state, 0 for the others",
                labels=["name", "state"],
            ),
            CounterMetricFamily(
                f"{ns}_calls",
                "Calls by outcome: success, failure, ignored (neutral), rejected (not permitted)",
                labels=["name", "kind"],
            ),
            CounterMetricFamily(
                f"{ns}_slow_calls",
                "Calls that took longer than slow_call_duration",
                labels=["name"],
            ),
            CounterMetricFamily(
                f"{ns}_transitions",
                "State transitions by event",
                labels=["name", "event"],
            ),
            GaugeMetricFamily(
                f"{ns}_failure_rate",
                "Failed share of the sliding window (0-1): closed state's calls, frozen while "
                "open, afresh in half_open; -1 below minimum_calls or without a window",
                labels=["name"],
            ),
            GaugeMetricFamily(
                f"{ns}_slow_call_rate",
                "Slow share of the sliding window (0-1), like failure_rate; -1 when not computable",
                labels=["name"],
            ),
            GaugeMetricFamily(
                f"{ns}_buffered_calls",
                "Calls in the sliding window (0 on entering half_open or closed)",
                labels=["name"],
            ),
            GaugeMetricFamily(
                f"{ns}_consecutive_failures",
                "Current streak of consecutive failures (failed trial calls extend it; a "
                "success or entering closed ends it)",
                labels=["name"],
            ),
            CounterMetricFamily(
                f"{ns}_sink_errors",
                "Audit and call sinks, and failure predicates, that raised",
                labels=["name"],
            ),
            CounterMetricFamily(
                f"{ns}_store_errors",
                "Round trips to the shared store that failed or timed out (0 without a store)",
                labels=["name"],
            ),
            GaugeMetricFamily(
                f"{ns}_degraded",
                "1 while running on local state because the shared store did not answer, else 0",
                labels=["name"],
            ),
        )
