"""Model-based test of a shared breaker: one process on a real redis-server vs ``tests.model``.

The same reference model as the in-memory stateful test, driven by the same rules
(``tests/model_rules.py``: calls, permits, blocks, time, events), but the breaker is a
``SharedBreaker`` whose every decision the Lua scripts make, on a redis-server whose
scripts read the example's fake clock (``now=``).
A single process sees the fleet's state exactly as the model does, so state, counters,
refusals and the audit trail must agree step by step.

Two differences from the in-memory test, both on purpose:

* jitter is off: a shared breaker draws its jitter for every outcome that *could* open it
  (the store decides whether it does), so its random sequence is not the model's one draw
  per open episode;
* a time window's figures in ``metrics()`` are not compared: a shared breaker reports
  them as of its last round trip (a bug, pinned as an xfail in ``test_behaviour.py``);
* examples are fewer (a round trip per outcome): at most ``MAX_EXAMPLES``, or the profile's
  count when that is lower (``mutation``). Each example has its own breaker name and store,
  so examples never share an entry.
"""

from __future__ import annotations

import itertools
import random
from typing import TYPE_CHECKING, Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from breaker_fsm import BreakerPolicy, CircuitBreaker, TimeWindow
from breaker_fsm.audit import verify
from breaker_fsm.testing import FakeClock
from tests.model import ReferenceBreaker
from tests.model_rules import BreakerRules, broken_sink, fallback, is_failure
from tests.strategies import CallSpec, call_specs, policies

if TYPE_CHECKING:
    from breaker_fsm import BreakerMetrics, Transition
    from breaker_fsm.redis import RedisStore
    from tests.redis_server import StoreFactory

pytest.importorskip("redis", reason="redis-py is not installed: pip install redis")

MAX_EXAMPLES = 100

_NAMES = itertools.count()


class SharedBreakerVersusModel(BreakerRules):
    """Drive a shared breaker and the reference model alike (rules: ``BreakerRules``)."""

    stores: StoreFactory  # set on the subclass the test builds

    def __init__(self) -> None:
        super().__init__()
        self.store: RedisStore | None = None

    @initialize(
        policy=policies().map(lambda p: p.model_copy(update={"reset_timeout_jitter": 0.0})),
        start=st.sampled_from([0.0, 0.5, 1000.0]),
        use_fallback=st.booleans(),
        use_predicate=st.booleans(),
        failing_sink=st.booleans(),
    )
    def build(
        self,
        *,
        policy: BreakerPolicy,
        start: float,
        use_fallback: bool,
        use_predicate: bool,
        failing_sink: bool,
    ) -> None:
        """A shared breaker on its own store entry, its scripts on the fake clock."""
        self.clock = FakeClock(start)
        self.records: list[Transition] = []
        sinks: list[Any] = [self.records.append]
        if failing_sink:
            sinks.insert(0, broken_sink)
        self.failing_sink = failing_sink
        self.use_fallback = use_fallback
        self.use_predicate = use_predicate
        # The model has no trial lease (a held permit is never taken back): the store's
        # outlasts any example, whose clock may move 60 s with a permit out.
        self.store = self.stores(now=self.clock.monotonic, trial_lease=1e6)
        self.breaker = CircuitBreaker(
            f"model-{next(_NAMES)}",
            policy,
            clock=self.clock,
            fallback=fallback if use_fallback else None,
            sinks=sinks,
            is_failure=is_failure if use_predicate else None,
            store=self.store,
        )
        self.model = ReferenceBreaker(policy, random.Random(0))  # no jitter: never drawn

    def teardown(self) -> None:
        """Release held permits, close the store's clients (the asyncio one on its loop),
        then the loop."""
        self.release_held()
        if self.store is not None:
            self.loop.run_until_complete(self.store.aclose())
            self.store.close()
        super().teardown()

    # ------------------------------------------------------------------ more calls

    @rule(specs=st.lists(call_specs(slow=True), min_size=2, max_size=6))
    def burst(self, specs: list[CallSpec]) -> None:
        """Several calls in a row, some taking time: streaks, windows, permits, slow calls."""
        for spec in specs:
            self._invoke(spec)

    @precondition(lambda self: self.breaker is not None and self._trial_would_run())
    @rule(spec=call_specs(nested=True, slow=True))
    def trial(self, spec: CallSpec) -> None:
        """A call the model admits as a half-open trial (it may call again in flight)."""
        self._invoke(spec)

    # ------------------------------------------------------------------ invariants

    def _expected_metrics(self, now: float) -> dict[str, Any]:
        """The model's metrics, less a time window's figures.

        Known bug, pinned by test_behaviour's xfail: the mirror reports a time window as of
        the last reply, unaged. The trips it causes are still checked.
        """
        expected = super()._expected_metrics(now)
        if isinstance(self.model.policy.window, TimeWindow):
            for name in ("window_calls", "failure_rate", "slow_call_rate"):
                del expected[name]
        return expected

    def _check_metrics(self, metrics: BreakerMetrics) -> None:
        """A single process on a live redis-server is never degraded."""
        assert (metrics.degraded, metrics.store_errors) == (False, 0)

    @precondition(lambda self: self.breaker is not None)
    @invariant()
    def audit_trail_matches(self) -> None:
        """The trail is the model's, numbered by the store's generations, and verifies."""
        assert self.breaker is not None
        records = list(self.breaker.audit)
        trail = self.model.trail
        assert [(r.event, r.source, r.target) for r in records] == [t[:3] for t in trail]
        assert [r.seq for r in records] == list(range(1, len(trail) + 1))
        assert [r.generation for r in records] == [r.seq for r in records]
        assert [r.monotonic for r in records] == [t[3] for t in trail]
        for record, rules in zip(records, self.model.trip_rules, strict=True):
            if rules:
                assert any(rule in record.reason for rule in rules), (record.reason, rules)
        assert verify(records) == len(records)
        assert self.records == records


def test_a_shared_breaker_agrees_with_the_model(redis_stores: StoreFactory) -> None:
    """A shared breaker on a real redis-server walks exactly as the reference model does."""

    class Machine(SharedBreakerVersusModel):
        stores = staticmethod(redis_stores)

    examples = min(MAX_EXAMPLES, settings.default.max_examples)
    run_state_machine_as_test(
        Machine,
        settings=settings(max_examples=examples, deadline=None, stateful_step_count=30),
    )
