"""Audit-trail behaviour found unpinned by `make mutation` (folded into test_audit.py next)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path

import pytest

from breaker_fsm import (
    AuditError,
    Transition,
)
from breaker_fsm.audit import AuditLog, JsonlSink, LoggingSink, read_jsonl, verify


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
