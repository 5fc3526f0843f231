"""Clocks: the fake clock users test with, and the system clock."""

from __future__ import annotations

import pytest

from breaker_fsm import Clock, SystemClock
from breaker_fsm.testing import DEFAULT_WALL_START, FakeClock


def test_fake_clock_moves_both_readings_together() -> None:
    """advance() moves monotonic and wall time by the same amount."""
    clock = FakeClock(start=100.0)
    assert (clock.monotonic(), clock.wall()) == (100.0, DEFAULT_WALL_START)
    clock.advance(2.5)
    assert (clock.monotonic(), clock.wall()) == (102.5, DEFAULT_WALL_START + 2.5)
    assert repr(clock) == "FakeClock(monotonic=102.5)"


def test_fake_clock_refuses_going_backwards_by_advance() -> None:
    """A negative advance is an error; set() can jump back to simulate clock faults."""
    clock = FakeClock()
    with pytest.raises(ValueError, match=">= 0"):
        clock.advance(-1)
    clock.advance(10)
    clock.set(3.0)
    assert clock.monotonic() == 3.0


def test_clocks_satisfy_the_protocol() -> None:
    """Both clocks are Clocks; the system clock's readings move forward."""
    system = SystemClock()
    assert isinstance(system, Clock)
    assert isinstance(FakeClock(), Clock)
    first = system.monotonic()
    assert system.monotonic() >= first
    assert system.wall() > DEFAULT_WALL_START - 10 * 365 * 86400
    assert repr(system) == "SystemClock()"
