"""Shared fixtures and the Hypothesis profiles."""

from __future__ import annotations

import os
import sys

import pytest
from hypothesis import HealthCheck, settings

from breaker_fsm import _judging
from breaker_fsm.testing import FakeClock

if "mutmut.mutation.trampoline" in sys.modules:  # pragma: no cover - only under `make mutation`
    # mutmut calls each mutated function through a trampoline in its own module, so its
    # frames sit between the breaker's: "the call could not be made" (a TypeError raised in
    # the breaker's own frames only) must count them as the breaker's.
    _judging._CALL_MODULES |= {"mutmut.mutation.trampoline"}

pytest_plugins = ["tests.redis_server", "tests.redis_cluster"]

settings.register_profile(
    "ci",
    max_examples=1000,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("dev", max_examples=200, deadline=None)
# `make mutation` runs the suite once per mutant: few examples, and derandomized so that a
# mutant's verdict (killed or survived) is the same on every run.
settings.register_profile(
    "mutation",
    max_examples=10,
    stateful_step_count=20,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "soak",
    max_examples=50_000,
    stateful_step_count=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))


@pytest.fixture
def clock() -> FakeClock:
    """A fake clock at monotonic 0.0."""
    return FakeClock()
