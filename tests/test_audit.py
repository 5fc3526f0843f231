"""The audit trail: JSON Lines round trip, verification, sinks and corrupt input."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from breaker_fsm import AuditError, BreakerPolicy, CircuitBreaker, Transition
from breaker_fsm.audit import AuditLog, JsonlSink, LoggingSink, dump_jsonl, read_jsonl, verify
from breaker_fsm.testing import FakeClock


def record(seq: int, event: str, source: str, target: str, breaker: str = "b") -> Transition:
    return Transition(
        seq=seq,
        breaker=breaker,
        event=event,
        source=source,
        target=target,
        at=datetime(2026, 1, 1, tzinfo=UTC),
        monotonic=float(seq),
    )


def scenario(tmp_path: Path) -> tuple[CircuitBreaker, Path]:
    path = tmp_path / "audit.jsonl"
    clock = FakeClock()
    breaker = CircuitBreaker(
        "svc",
        BreakerPolicy(failure_threshold=1, reset_timeout=1),
        clock=clock,
        sinks=[JsonlSink(path)],
    )
    with pytest.raises(ZeroDivisionError):
        breaker.call(lambda: 1 / 0)
    clock.advance(1)
    breaker.call(lambda: None)
    breaker.send("force_open")
    breaker.send("reset")
    return breaker, path


def test_jsonl_round_trip_and_verify(tmp_path: Path) -> None:
    """A JsonlSink file reads back as the same records, and they verify."""
    breaker, path = scenario(tmp_path)
    records = read_jsonl(path)
    assert records == list(breaker.audit)
    assert [r.event for r in records] == ["trip", "attempt_reset", "recover", "force_open", "reset"]
    assert verify(records) == 5
    assert path.read_text() == dump_jsonl(records)
    assert repr(JsonlSink(path)).startswith("JsonlSink(")


def test_read_jsonl_skips_blank_lines(tmp_path: Path) -> None:
    """Blank lines in a trail are ignored."""
    _, path = scenario(tmp_path)
    path.write_text(path.read_text().replace("\n", "\n\n"))
    assert len(read_jsonl(path)) == 5


@pytest.mark.parametrize(
    ("bad_line", "message"),
    [
        ("{not json", "not valid JSON"),
        ('{"seq": 1}', "field 'breaker'"),
        ("[]", "record"),
    ],
)
def test_read_jsonl_names_the_corrupt_line(tmp_path: Path, bad_line: str, message: str) -> None:
    """A corrupt line raises AuditError with its line number."""
    _, path = scenario(tmp_path)
    lines = path.read_text().splitlines()
    lines.insert(2, bad_line)
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(AuditError) as exc:
        read_jsonl(path)
    assert exc.value.line == 3
    assert f"{path}:3" in str(exc.value)
    assert message in str(exc.value)


def test_read_jsonl_unreadable(tmp_path: Path) -> None:
    """Missing and unreadable files raise AuditError naming them."""
    with pytest.raises(AuditError, match="no such file"):
        read_jsonl(tmp_path / "absent.jsonl")
    (tmp_path / "d.jsonl").mkdir()
    with pytest.raises(AuditError, match="cannot read"):
        read_jsonl(tmp_path / "d.jsonl")


def test_verify_accepts_trail_starting_mid_way() -> None:
    """A trail may start at any seq and any state (a bounded log drops its oldest)."""
    assert (
        verify(
            [
                record(7, "attempt_reset", "open", "half_open"),
                record(8, "recover", "half_open", "closed"),
            ]
        )
        == 2
    )


@pytest.mark.parametrize(
    ("records", "bad_seq", "fragment"),
    [
        (
            [record(1, "trip", "closed", "open"), record(3, "attempt_reset", "open", "half_open")],
            3,
            "expected 2",
        ),
        (
            [record(1, "trip", "closed", "open"), record(2, "trip", "closed", "open")],
            2,
            "previous target",
        ),
        ([record(1, "recover", "closed", "open")], 1, "does not lead"),
        ([record(1, "trip", "closed", "half_open")], 1, "does not lead"),
        ([record(1, "trip", "closed", "melted")], 1, "unknown state"),
    ],
)
def test_verify_names_first_bad_record(
    records: list[Transition], bad_seq: int, fragment: str
) -> None:
    """verify raises AuditError naming the first bad record's seq and the problem."""
    with pytest.raises(AuditError) as exc:
        verify(records)
    assert exc.value.seq == bad_seq
    assert exc.value.index == len(records) - 1
    assert f"seq {bad_seq}" in str(exc.value)
    assert fragment in str(exc.value)


def test_verify_checks_interleaved_breakers_separately() -> None:
    """Records of several breakers interleave; each breaker's walk is checked on its own."""
    trail = [
        record(1, "trip", "closed", "open", "a"),
        record(1, "force_open", "closed", "forced_open", "b"),
        record(2, "attempt_reset", "open", "half_open", "a"),
        record(2, "reset", "forced_open", "closed", "b"),
    ]
    assert verify(trail) == 4


def test_transition_rejects_naive_datetimes_and_extra_fields() -> None:
    """Records are strict: timestamps carry a zone, unknown fields are refused."""
    with pytest.raises(ValueError, match="timezone"):
        Transition(
            seq=1,
            breaker="b",
            event="trip",
            source="closed",
            target="open",
            at=datetime(2026, 1, 1),
            monotonic=0.0,
        )
    data: dict[str, Any] = record(1, "trip", "closed", "open").model_dump()
    data["surprise"] = 1
    with pytest.raises(ValueError, match="surprise"):
        Transition.model_validate(data)


def test_audit_log_bounds() -> None:
    """AuditLog keeps `capacity` records, counts drops, and refuses a zero capacity."""
    log = AuditLog(2)
    for seq in (1, 2, 3):
        log.append(record(seq, "reset", "closed", "closed"))
    assert [r.seq for r in log] == [2, 3]
    assert (log.dropped, log.capacity, len(log)) == (1, 2, 2)
    assert "dropped=1" in repr(log)
    with pytest.raises(ValueError, match="capacity"):
        AuditLog(0)


def test_logging_sink(caplog: pytest.LogCaptureFixture) -> None:
    """LoggingSink logs one line per record with the record attached."""
    sink = LoggingSink(level=logging.WARNING)
    with caplog.at_level(logging.WARNING, logger="breaker_fsm.audit"):
        sink(record(1, "trip", "closed", "open"))
    assert "breaker b #1: trip closed -> open" in caplog.text
    assert caplog.records[0].transition["event"] == "trip"  # type: ignore[attr-defined]
    assert repr(sink) == "LoggingSink('breaker_fsm.audit')"


def test_jsonl_sink_to_vanished_directory_is_counted(tmp_path: Path) -> None:
    """A JsonlSink whose directory disappears fails visibly but never fails the call."""
    path = tmp_path / "gone" / "audit.jsonl"
    path.parent.mkdir()
    breaker = CircuitBreaker("v", BreakerPolicy(failure_threshold=1), sinks=[JsonlSink(path)])
    path.parent.rmdir()  # after construction, which checks that the directory exists
    with pytest.raises(ZeroDivisionError):
        breaker.call(lambda: 1 / 0)
    assert breaker.state == "open"
    assert breaker.metrics().sink_errors == 1
    assert len(breaker.audit) == 1


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_jsonl_sink_on_full_disk_is_counted() -> None:
    """Writing the trail to a full disk is counted, the transition still happens."""
    breaker = CircuitBreaker(
        "f", BreakerPolicy(failure_threshold=1), sinks=[JsonlSink("/dev/full")]
    )
    with pytest.raises(ZeroDivisionError):
        breaker.call(lambda: 1 / 0)
    assert (breaker.state, breaker.metrics().sink_errors) == ("open", 1)
