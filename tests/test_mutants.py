"""Tests that pin behaviour found unpinned by `make mutation` (mutmut survivors)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import ValidationError

from breaker_fsm import (
    AuditError,
    BreakerPolicy,
    CircuitBreaker,
    CircuitOpenError,
    CountWindow,
    IllegalTransitionError,
    PolicyFileError,
    Transition,
)
from breaker_fsm._policy import BreakerStats
from breaker_fsm.audit import AuditLog, JsonlSink, LoggingSink, read_jsonl, verify
from breaker_fsm.testing import FakeClock


class Down(Exception):
    """A failed call."""


def _down() -> None:
    raise Down


def rec(
    seq: int, event: str, source: str, target: str, generation: int | None = None
) -> Transition:
    return Transition(
        seq=seq,
        breaker="b",
        event=event,
        source=source,
        target=target,
        at=datetime(2026, 1, 1, tzinfo=UTC),
        monotonic=float(seq),
        generation=generation,
    )


# ---------------------------------------------------------------------- policy


def test_half_open_timed_out_needs_a_timeout_and_a_start() -> None:
    """half_open_timed_out is False without a timeout or a start, and inclusive at it."""
    stats = BreakerStats(now=15.0, half_open_since=10.0)
    assert not BreakerPolicy().half_open_timed_out(stats)
    timed = BreakerPolicy(half_open_timeout=5)
    assert not timed.half_open_timed_out(BreakerStats(now=15.0))
    assert not timed.half_open_timed_out(BreakerStats(now=14.9, half_open_since=10.0))
    assert timed.half_open_timed_out(stats)


def test_from_file_errors_name_the_file_and_the_problem(tmp_path: Path) -> None:
    """Every PolicyFileError carries the file's path and says exactly what is wrong."""
    cases = {
        "p.yaml": ("", "unknown policy file type: use .json or .toml", None),
        "missing.json": (None, "no such file", None),
        "bad.json": ('{"a": }', "invalid JSON: Expecting value", 1),
        "bad.toml": ("a =", "invalid TOML: Invalid value (at end of document)", None),
        "empty.toml": ("", "no [tool.breaker] table", None),
    }
    for name, (text, message, line) in cases.items():
        path = tmp_path / name
        if text is not None:
            path.write_text(text, encoding="utf-8")
        with pytest.raises(PolicyFileError) as exc:
            BreakerPolicy.from_file(path, section="tool.breaker")
        where = str(path) if line is None else f"{path}:{line}"
        assert (exc.value.path, exc.value.line, str(exc.value)) == (
            str(path),
            line,
            f"{where}: {message}",
        )


def test_from_env_keeps_non_json_values_as_strings() -> None:
    """A value that is not JSON is passed on as the plain string."""
    p = BreakerPolicy.from_env(environ={"BREAKER_RECORD_EXCEPTIONS": "OSError"})
    assert p.record_exceptions == (OSError,)


def test_cross_field_errors_are_titled_and_carry_the_input() -> None:
    """A cross-field error is a BreakerPolicy ValidationError with the offending input."""
    with pytest.raises(ValidationError) as exc:
        BreakerPolicy(half_open_max_calls=1, success_threshold=2)
    assert exc.value.title == "BreakerPolicy"
    [error] = exc.value.errors()
    assert (error["loc"], error["input"]) == (("half_open_max_calls",), 1)


# ---------------------------------------------------------------------- audit


def test_jsonl_sink_repr_names_the_path(tmp_path: Path) -> None:
    """repr(JsonlSink) shows the path it writes to."""
    path = tmp_path / "t.jsonl"
    assert repr(JsonlSink(path)) == f"JsonlSink({str(path)!r})"


def test_logging_sink_message_extra_and_logger(caplog: pytest.LogCaptureFixture) -> None:
    """LoggingSink logs one fixed-format line to the given logger, the record in extra."""
    record = rec(1, "trip", "closed", "open").model_copy(update={"reason": "why"})
    caplog.set_level(logging.INFO)
    LoggingSink(logging.getLogger("mine"))(record)
    LoggingSink()(record)
    first, second = caplog.records
    assert (first.name, second.name) == ("mine", "breaker_fsm.audit")
    assert first.getMessage() == "breaker b #1: trip closed -> open (why)"
    assert first.transition == record.model_dump(mode="json")  # type: ignore[attr-defined]
    assert isinstance(first.transition["at"], str)  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("[]", "field 'record': Input should be an object"),
        ('{"seq": 1}', "field 'breaker': Field required (and 5 more)"),
        (
            '{"seq":1,"breaker":"b","event":"trip","source":"closed","target":"open",'
            '"at":"2026-01-01T00:00:00Z","monotonic":1,"counters":{"a":"x"}}',
            "field 'counters.a': Input should be a valid number, unable to parse string as "
            "a number",
        ),
    ],
)
def test_read_jsonl_describes_the_first_error_exactly(
    tmp_path: Path, line: str, message: str
) -> None:
    """The AuditError names the dotted field, the message and how many more errors."""
    path = tmp_path / "t.jsonl"
    path.write_text(line + "\n", encoding="utf-8")
    with pytest.raises(AuditError) as exc:
        read_jsonl(path)
    assert str(exc.value) == f"{path}:1: {message}"


def test_verify_checks_the_shared_walk_across_local_runs() -> None:
    """Records with a generation form one walk: a seq gap between them is caught."""
    trail = [rec(1, "trip", "closed", "open", 1), rec(3, "attempt_reset", "open", "half_open", 3)]
    with pytest.raises(AuditError, match="seq 3 follows seq 1"):
        verify(trail)


def test_verify_starts_a_new_local_walk_after_a_shared_record() -> None:
    """A run of local records after a shared one is its own walk, from its first record."""
    trail = [
        rec(1, "trip", "closed", "open"),
        rec(2, "attempt_reset", "open", "half_open", 2),
        rec(9, "recover", "half_open", "closed"),
    ]
    assert verify(trail) == 3


# ---------------------------------------------------------------------- breaker


def test_async_fast_path_base_exception_is_neutral() -> None:
    """A BaseException in an awaited call on the fast path counts as neutral."""
    breaker = CircuitBreaker("a")

    async def cancelled() -> None:
        raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        asyncio.run(breaker.acall(cancelled))
    m = breaker.metrics()
    assert (m.ignored_count, m.error_count, m.success_count) == (1, 0, 0)


def test_async_failures_trip_a_count_window_breaker() -> None:
    """Awaited failures with a count window (fast path) count and trip."""
    breaker = CircuitBreaker(
        "a", BreakerPolicy(failure_threshold=2, window=CountWindow(size=10), minimum_calls=10)
    )

    async def down() -> None:
        raise Down

    async def run() -> None:
        for _ in range(2):
            with contextlib.suppress(Down):
                await breaker.acall(down)

    asyncio.run(run())
    assert breaker.state == "open"


def test_async_failure_started_before_a_transition_is_not_counted() -> None:
    """An awaited call that began before a reset does not add to the new streak."""
    breaker = CircuitBreaker("a", BreakerPolicy(failure_threshold=5))

    async def run() -> None:
        gate = asyncio.Event()

        async def late_failure() -> None:
            await gate.wait()
            raise Down

        task = asyncio.create_task(breaker.acall(late_failure))
        await asyncio.sleep(0)
        breaker.send("force_open")
        breaker.send("reset")
        gate.set()
        with contextlib.suppress(Down):
            await task

    asyncio.run(run())
    m = breaker.metrics()
    assert (m.failure_count, m.error_count) == (0, 1)


def test_count_window_fast_path_streak_and_rate_rules() -> None:
    """On the count-window fast path the streak trips at the threshold, not before."""
    policy = BreakerPolicy(
        failure_threshold=3,
        window=CountWindow(size=10),
        minimum_calls=10,
        failure_rate_threshold=0.5,
    )
    breaker = CircuitBreaker("w", policy)
    for expected in (1, 2):
        with contextlib.suppress(Down):
            breaker.call(_down)
        assert (breaker.state, breaker.metrics().failure_count) == ("closed", expected)
    with contextlib.suppress(Down):
        breaker.call(_down)
    assert breaker.state == "open"


def test_count_window_fast_path_rate_below_threshold_does_not_trip() -> None:
    """A failure that leaves the window's rate under the line does not trip it."""
    policy = BreakerPolicy(
        failure_threshold=None,
        window=CountWindow(size=10),
        minimum_calls=4,
        failure_rate_threshold=0.5,
    )
    breaker = CircuitBreaker("w", policy)
    for _ in range(3):
        breaker.call(int)
    for _ in range(2):
        with contextlib.suppress(Down):
            breaker.call(_down)
        assert breaker.state == "closed"  # 1 of 4, then 2 of 5: under the line
    with contextlib.suppress(Down):
        breaker.call(_down)
    assert breaker.state == "open"  # 3 of 6


def test_refusal_in_half_open_passes_arguments_to_the_fallback() -> None:
    """A call refused because every trial permit is taken gets the fallback with its args."""
    clock = FakeClock()
    seen: list[object] = []
    breaker = CircuitBreaker(
        "h",
        BreakerPolicy(failure_threshold=1, reset_timeout=1),
        clock=clock,
        fallback=lambda *a, **k: seen.append((a, k)),
    )
    with contextlib.suppress(Down):
        breaker.call(_down)
    clock.advance(1)
    breaker.call(lambda: breaker.call(int, 7, base=8))  # the nested call finds no permit
    assert seen == [((7,), {"base": 8})]


def test_refusal_after_a_half_open_timeout_reports_the_new_open_episode() -> None:
    """A call that retrips a timed-out half-open breaker is refused with its retry_after."""
    clock = FakeClock()
    breaker = CircuitBreaker(
        "t",
        BreakerPolicy(
            failure_threshold=1,
            reset_timeout=0.5,  # under a second: max(0.0, …) is pinned, not max(1.0, …)
            success_threshold=2,
            half_open_max_calls=2,
            half_open_timeout=1,
        ),
        clock=clock,
    )
    with contextlib.suppress(Down):
        breaker.call(_down)
    clock.advance(10)
    breaker.call(int)  # admitted: one trial success of two, still half-open
    assert breaker.state == "half_open"
    clock.advance(3)
    with pytest.raises(CircuitOpenError) as exc:
        breaker.call(int)
    assert (exc.value.breaker, exc.value.state) == ("t", "open")
    assert exc.value.retry_after == breaker.metrics().open_duration


def test_is_failure_predicate_errors_are_logged_and_each_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Each raising is_failure predicate is logged with the breaker's name and counted."""

    def predicate(_: object) -> bool:
        raise RuntimeError("bug")

    breaker = CircuitBreaker("p", is_failure=predicate)
    with caplog.at_level(logging.ERROR, logger="breaker_fsm"):
        breaker.call(int)
        breaker.call(int)
    assert breaker.metrics().sink_errors == 2
    assert [r.getMessage() for r in caplog.records] == [
        "breaker 'p': is_failure predicate raised"
    ] * 2


def test_is_failure_verdicts_that_are_not_numbers_give_no_open_hint() -> None:
    """A True or truthy non-numeric verdict is a failure without an open-duration hint."""
    for verdict in (True, "yes"):
        breaker = CircuitBreaker(
            "v",
            BreakerPolicy(failure_threshold=1, reset_timeout=0.5),
            is_failure=lambda _r, v=verdict: v,
        )
        breaker.call(int)
        assert (breaker.state, breaker.metrics().open_duration) == ("open", 0.5)


def test_illegal_send_messages() -> None:
    """send() names why an event is refused: illegal here, unknown, or guard not holding."""
    breaker = CircuitBreaker("s")
    with pytest.raises(IllegalTransitionError) as exc:
        breaker.send("recover")
    assert str(exc.value) == "event 'recover' is not allowed in state 'closed'"
    with pytest.raises(IllegalTransitionError) as exc:
        breaker.send("explode")
    assert exc.value.detail == "unknown event"
    with pytest.raises(IllegalTransitionError) as exc:
        breaker.send("trip")
    assert exc.value.detail == "its guard does not hold"


def test_comma_separated_exception_names_without_spaces() -> None:
    """A comma-separated string of exception names, with or without spaces, is a tuple."""
    p = BreakerPolicy.from_env(environ={"BREAKER_RECORD_EXCEPTIONS": "KeyError,OSError"})
    assert p.record_exceptions == (KeyError, OSError)


def test_exception_name_errors_say_what_is_wrong() -> None:
    """An unresolvable or non-exception name is refused with a message naming it."""
    with pytest.raises(ValidationError, match=r"'nowhere\.Missing' does not name an importable"):
        BreakerPolicy(record_exceptions=["nowhere.Missing"])
    with pytest.raises(ValidationError, match="<class 'int'> is not an Exception subclass"):
        BreakerPolicy(record_exceptions=["int"])


def test_cross_field_error_messages() -> None:
    """The cross-field rules explain themselves."""
    with pytest.raises(ValidationError, match="no trip rule is active: set failure_threshold"):
        BreakerPolicy(failure_threshold=None)
    with pytest.raises(ValidationError, match=r"must be >= success_threshold \(2\), got 1"):
        BreakerPolicy(half_open_max_calls=1, success_threshold=2)


def test_audit_counters_are_named() -> None:
    """A transition's counters carry the guard's evidence under fixed names."""
    stats = BreakerStats(
        now=0.0,
        consecutive_failures=1,
        window_calls=2,
        window_failures=3,
        window_slow=4,
        trial_successes=5,
        trial_failures=6,
    )
    counters = stats.as_counters()
    assert {k: counters[k] for k in list(counters)[:6]} == {
        "consecutive_failures": 1,
        "window_calls": 2,
        "window_failures": 3,
        "window_slow": 4,
        "trial_successes": 5,
        "trial_failures": 6,
    }


def test_open_duration_elapsed_is_measured_from_the_opening() -> None:
    """The open duration has elapsed only once now - opened_at reaches it."""
    policy = BreakerPolicy(reset_timeout=5)
    assert not policy.open_duration_elapsed(BreakerStats(now=12, opened_at=10, open_duration=5))
    assert policy.open_duration_elapsed(BreakerStats(now=15, opened_at=10, open_duration=5))


def test_audit_log_capacity_default_and_minimum() -> None:
    """An AuditLog keeps 1000 records by default; a capacity of 1 is allowed, 0 is not."""
    assert AuditLog().capacity == 1000
    assert AuditLog(1).capacity == 1
    with pytest.raises(ValueError, match="audit capacity must be >= 1, got 0"):
        AuditLog(0)


def test_read_jsonl_counts_one_more_error(tmp_path: Path) -> None:
    """With exactly two errors the message says "(and 1 more)"."""
    path = tmp_path / "t.jsonl"
    line = (
        '{"seq":1,"breaker":"b","event":"trip","source":"closed","target":"open",'
        '"at":"2026-01-01T00:00:00Z","monotonic":"x","counters":{"a":"x"}}'
    )
    path.write_text(line + "\n", encoding="utf-8")
    with pytest.raises(AuditError, match=r"field 'monotonic': .* \(and 1 more\)$"):
        read_jsonl(path)
