"""The audit trail: JSON Lines round trip, verification, sinks and corrupt input (the chain,
lives and fleets are in test_audit_chain.py)."""

from __future__ import annotations

import json
import logging
import os
import pickle
import time
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from breaker_fsm import AuditError, BreakerPolicy, BreakerStats, CircuitBreaker, Transition
from breaker_fsm._audit import COUNTERS, _compact, canonical, check_wall
from breaker_fsm.audit import (
    AuditLog,
    JsonlSink,
    LoggingSink,
    digest,
    dump_jsonl,
    read_jsonl,
    verify,
)
from breaker_fsm.testing import FakeClock
from tests.helpers import FIXTURES, transition


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
    assert repr(JsonlSink(path)) == f"JsonlSink({str(path)!r})"


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
        (
            '{"seq":1,"breaker":"b","event":"trip","source":"closed","target":"open",'
            '"at":"2026-01-01T00:00:00Z","monotonic":"x","counters":{"a":"x"}}',
            "field 'monotonic': Input should be a valid number, unable to parse string as "
            "a number (and 1 more)",
        ),
    ],
)
def test_read_jsonl_describes_the_first_error_exactly(
    tmp_path: Path, line: str, message: str
) -> None:
    """The AuditError names the dotted field, pydantic's message and how many more errors."""
    path = tmp_path / "t.jsonl"
    path.write_text(line + "\n", encoding="utf-8")
    with pytest.raises(AuditError) as exc:
        read_jsonl(path)
    assert str(exc.value) == f"{path}:1: {message}"


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
                transition(7, "attempt_reset", "open", "half_open"),
                transition(8, "recover", "half_open", "closed"),
            ]
        )
        == 2
    )


@pytest.mark.parametrize(
    ("records", "bad_seq", "fragment"),
    [
        (
            [
                transition(1, "trip", "closed", "open"),
                transition(3, "attempt_reset", "open", "half_open"),
            ],
            3,
            "expected 2",
        ),
        (
            [transition(1, "trip", "closed", "open"), transition(2, "trip", "closed", "open")],
            2,
            "previous target",
        ),
        ([transition(1, "recover", "closed", "open")], 1, "does not lead"),
        ([transition(1, "trip", "closed", "half_open")], 1, "does not lead"),
        ([transition(1, "trip", "closed", "melted")], 1, "unknown state"),
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
        transition(1, "trip", "closed", "open", "a"),
        transition(1, "force_open", "closed", "forced_open", "b"),
        transition(2, "attempt_reset", "open", "half_open", "a"),
        transition(2, "reset", "forced_open", "closed", "b"),
    ]
    assert verify(trail) == 4


def test_verify_checks_the_shared_walk_across_local_runs() -> None:
    """Records with a generation form one walk: a seq gap between them is caught."""
    trail = [
        transition(1, "trip", "closed", "open", generation=1),
        transition(3, "attempt_reset", "open", "half_open", generation=3),
    ]
    with pytest.raises(AuditError, match="seq 3 follows seq 1") as exc:
        verify(trail)
    assert (exc.value.seq, exc.value.index) == (3, 1)


def test_verify_starts_a_new_local_walk_after_a_shared_record() -> None:
    """A run of local records after a shared one is its own walk, from its first record."""
    trail = [
        transition(1, "trip", "closed", "open"),
        transition(2, "attempt_reset", "open", "half_open", generation=2),
        transition(9, "recover", "half_open", "closed"),
    ]
    assert verify(trail) == 3


def test_verify_measures_time_across_utc_offsets() -> None:
    """first, last and span compare instants: 10:00+02:00 is an hour before 09:00 UTC."""
    east = timezone(timedelta(hours=2))
    early = transition(1, "force_open", "closed", "forced_open").model_copy(
        update={"at": datetime(2026, 1, 1, 10, tzinfo=east)}
    )
    late = transition(2, "reset", "forced_open", "closed").model_copy(
        update={"at": datetime(2026, 1, 1, 9, tzinfo=UTC)}
    )
    b = verify([early, late]).breakers["b"]
    assert (b.first, b.last, b.span) == (early.at, late.at, timedelta(hours=1))


def test_verify_counts_the_outages_of_a_trail_in_the_first_format() -> None:
    """Without origins, each run of records without a generation after one with a generation
    is an outage; records without a generation before any with one are none."""
    alone = [transition(1, "trip", "closed", "open"), transition(2, "reset", "open", "closed")]
    assert verify(alone).breakers["b"].outages == 0
    assert verify(alone).breakers["b"].heads == {}  # no origin: no writer's chain
    once = [transition(1, "trip", "closed", "open", generation=1)]
    once.append(transition(2, "attempt_reset", "open", "half_open"))
    assert verify(once).breakers["b"].outages == 1
    twice = [
        *once,
        transition(2, "attempt_reset", "open", "half_open", generation=2),
        transition(3, "recover", "half_open", "closed"),
        transition(4, "trip", "closed", "open"),
    ]
    assert verify(twice).breakers["b"].outages == 2


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
    data: dict[str, Any] = transition(1, "trip", "closed", "open").model_dump()
    data["surprise"] = 1
    with pytest.raises(ValueError, match="surprise"):
        Transition.model_validate(data)


def test_audit_log_bounds() -> None:
    """AuditLog keeps `capacity` records (1000 by default, at least 1) and counts drops."""
    assert AuditLog().capacity == 1000
    assert AuditLog(1).capacity == 1
    log = AuditLog(2)
    for seq in (1, 2, 3):
        log.append(transition(seq, "reset", "closed", "closed"))
    assert [r.seq for r in log] == [2, 3]
    assert (log.dropped, log.capacity, len(log)) == (1, 2, 2)
    assert "dropped=1" in repr(log)
    with pytest.raises(ValueError, match="audit capacity must be >= 1, got 0"):
        AuditLog(0)


@pytest.mark.parametrize("capacity", [3, 100])
def test_audit_log_drops_the_oldest_in_order_past_its_first_rows(capacity: int) -> None:
    """A log keeps its newest `capacity` records in order, under 64 rows or past them, chained."""
    breaker = CircuitBreaker("c", audit_capacity=capacity)
    for _ in range(75):
        breaker.send("force_open")
        breaker.send("reset")
    records = list(breaker.audit)
    assert [r.seq for r in records] == list(range(151 - capacity, 151))
    assert (breaker.audit.dropped, len(breaker.audit)) == (150 - capacity, capacity)
    assert [breaker.audit[i] for i in (0, -1)] == [records[0], records[-1]]
    assert [r.prev for r in records[1:]] == [digest(r) for r in records[:-1]]
    assert verify(records) == capacity


def test_a_kept_record_is_the_one_the_sinks_got(tmp_path: Path) -> None:
    """What the log keeps reads back equal, field by field and hash by hash, to the sinks' copy."""
    got: list[Transition] = []
    breaker = CircuitBreaker("c", sinks=[got.append, JsonlSink(path := tmp_path / "c.jsonl")])
    breaker.send("force_open", reason="maintenance ≥ \u2028 window")
    breaker.send("reset")
    kept = list(breaker.audit)
    assert kept == got == read_jsonl(path)
    assert [r.to_json() for r in kept] == [r.to_json() for r in got]
    assert [type(r.at) for r in kept] == [datetime, datetime]
    assert breaker.audit.head == digest(got[-1])
    edited = kept[0].model_copy(update={"reason": "edited"})  # a record read back is a model
    assert (edited.reason, edited.seq, kept[0].reason) == ("edited", 1, got[0].reason)


def test_breakers_under_one_policy_share_their_reasons() -> None:
    """An outage's breakers keep one copy of each reason text (the same str object)."""
    policy = BreakerPolicy(failure_threshold=1)
    first, second = CircuitBreaker("a", policy), CircuitBreaker("b", policy)
    for breaker in (first, second):
        with pytest.raises(ZeroDivisionError):
            breaker.call(lambda: 1 / 0)
    assert first.audit[0].reason == second.audit[0].reason
    assert first.audit[0].reason is second.audit[0].reason


def test_a_wall_clock_datetime_cannot_hold_changes_nothing() -> None:
    """A wall reading no UTC datetime can hold fails the transition before anything changes."""

    class FarClock(FakeClock):
        def wall(self) -> float:
            return 1e20

    breaker = CircuitBreaker("c", clock=FarClock())
    with pytest.raises((OverflowError, ValueError, OSError)):
        breaker.send("force_open")
    assert (breaker.state, len(breaker.audit), breaker.metrics().state) == ("closed", 0, "closed")
    breaker._clock = FakeClock()
    assert breaker.send("force_open") == "forced_open"
    assert [r.seq for r in breaker.audit] == [1]


def test_a_wall_reading_past_year_9999_in_utc_is_refused_west_of_utc(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The wall reading is checked as a UTC datetime, whatever the local time zone: one
    second past 9999-12-31T23:59:59Z is refused, though local time (UTC-5) could hold it."""
    monkeypatch.setenv("TZ", "Etc/GMT+5")
    time.tzset()
    try:
        assert check_wall(253402300799.0) == 253402300799.0  # the last second that fits
        assert check_wall(0) == 0.0
        with pytest.raises(ValueError, match="year 10000 is out of range"):
            check_wall(253402300800.0)
    finally:
        monkeypatch.undo()
        time.tzset()


def test_keep_stamps_the_numbering_it_is_given_and_keeps_any_names() -> None:
    """AuditLog.keep: the instance's own life by default, the fleet's or the one named with
    shared=; the machine's names share one object, other names are kept as given."""
    log = AuditLog(8)
    counters = (0, 0, 0, 0, 0, 0)

    def keep(event: str, source: str, target: str, **shared: bool | str) -> Transition:
        return log.keep(1, "b", event, source, target, 0.0, 0.0, "why", counters, 1, **shared)

    assert keep("trip", "closed", "open").life == log.origin
    assert keep("trip", "closed", "open", shared=True).life == "shared"
    assert keep("trip", "closed", "open", shared="shared:9").life == "shared:9"
    made = keep("".join(["tr", "ip"]), "".join(["clo", "sed"]), "".join(["op", "en"]))
    kept = log[-1]
    for name, given in (("event", "trip"), ("source", "closed"), ("target", "open")):
        assert getattr(made, name) is getattr(kept, name) is getattr(log[0], name) == given
    other = keep("probe", "here", "there")
    assert (other.event, other.source, other.target) == ("probe", "here", "there")
    assert (log[-1].event, log[-1].source, log[-1].target) == ("probe", "here", "there")


def test_record_stamps_the_numbering_it_is_given_and_append_keeps_any_names() -> None:
    """AuditLog.record: the instance's own life by default, else the record's own life,
    the one named with shared=, or the fleet's; append keeps the machine's names as one
    object each and other names as given; a record read back is a new, equal object."""
    log = AuditLog(16)
    made = transition(1, "trip", "closed", "open")
    assert log.record(made).life == log.origin
    assert log.record(made, shared=True).life == "shared"
    assert log.record(made, shared="shared:9").life == "shared:9"
    own = made.model_copy(update={"life": "shared:5"})
    assert (
        log.record(own, shared=True).life == log.record(own, shared="shared:9").life == "shared:5"
    )
    counted = {"counters": dict.fromkeys(COUNTERS, 0.0)}  # kept as a row of its values
    for _ in range(2):
        names = ("".join(["tr", "ip"]), "".join(["clo", "sed"]), "".join(["op", "en"]))
        log.append(transition(1, *names).model_copy(update=counted))
    for name in ("event", "source", "target"):
        assert getattr(log[-1], name) is getattr(log[-2], name)
    log.append(transition(2, "probe", "here", "there").model_copy(update=counted))
    assert (log[-1].event, log[-1].source, log[-1].target) == ("probe", "here", "there")
    chained = transition(3, "reset", "there", "closed").model_copy(
        update={**counted, "prev": "ab" * 32}
    )
    log.append(chained)
    assert log[-1] == chained
    assert log[-1] is not log[-1]  # kept as a row, built again at each read


def test_a_records_own_counters_hash_after_the_breakers_by_name() -> None:
    """canonical() puts the breaker's counters first, in their order, then any others by
    name: the same bytes however the counters were ordered when read."""
    made = transition(1, "trip", "closed", "open")
    given = {"zeta": 1.0, "window_calls": 4.0, "alpha": 2.0, "consecutive_failures": 3.0}
    record = made.model_copy(update={"counters": given})
    assert b'"counters":{"consecutive_failures":3.0,"window_calls":4.0,"alpha":2.0,"zeta":1.0}' in (
        canonical(record)
    )
    assert digest(record) == digest(
        made.model_copy(update={"counters": dict(sorted(given.items()))})
    )


def test_a_record_whose_prev_is_no_digest_is_kept_whole() -> None:
    """A record made without validation, whose prev is not a hex digest, reads back as it was."""
    odd = transition(1, "reset", "closed", "closed").model_copy(
        update={"counters": dict.fromkeys(COUNTERS, 0.0), "prev": "not-hex"}
    )
    upper = odd.model_copy(update={"prev": "AB" * 32})
    log = AuditLog(2)
    log.append(odd)
    log.append(upper)
    assert (log[0], log[1]) == (odd, upper)
    assert log[1].prev == "AB" * 32


def test_a_kept_record_keeps_its_fractional_counters_exactly() -> None:
    """Only integral counters are kept as ints: a record written elsewhere with fractional
    ones reads back from the log exactly as it was appended."""
    made = transition(1, "trip", "closed", "open")
    record = made.model_copy(
        update={"counters": dict(zip(COUNTERS, (2.5, 0.25, 3.0, 0.0, 7.75, 1.5), strict=True))}
    )
    log = AuditLog()
    log.append(record)
    assert log[0] == record
    assert list(log[0].counters.values()) == [2.5, 0.25, 3.0, 0.0, 7.75, 1.5]


def test_a_kept_record_keeps_its_integral_counters_as_ints() -> None:
    """The log keeps an integral counter as an ``int`` (small ones are shared objects, so a
    kept record holds no float object per counter) and any other value as it is."""
    assert [(value, type(value)) for value in map(_compact, (3.0, 0.0, 2.5, 7))] == [
        (3, int),
        (0, int),
        (2.5, float),
        (7, int),
    ]


def test_a_forked_breaker_writes_as_a_new_instance(monkeypatch: pytest.MonkeyPatch) -> None:
    """A breaker's log in a forked child (a new pid) takes a new origin and starts a new chain."""
    breaker = CircuitBreaker("c")
    breaker.send("force_open")
    monkeypatch.setattr(os, "getpid", lambda: 4_000_000)
    breaker.send("reset")
    first, second = breaker.audit
    assert second.origin != first.origin == first.life
    assert second.origin is not None
    assert second.origin.split(":")[1] == "4000000"
    assert (second.prev, second.life, breaker.audit.origin) == (None, second.origin, second.origin)


def test_a_forked_child_chains_its_records_under_one_new_origin(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """After a fork the child is one new writer: all its records carry the same new origin
    and chain to each other, not a new origin and a broken chain per record."""
    breaker = CircuitBreaker("c")
    breaker.send("force_open")
    monkeypatch.setattr(os, "getpid", lambda: 4_000_000)
    breaker.send("reset")
    breaker.send("force_open")
    first, second, third = breaker.audit
    assert third.origin == second.origin == breaker.audit.origin != first.origin
    assert (third.life, third.prev) == (second.origin, digest(second))
    assert verify([second, third]) == 2


def test_a_logs_origin_is_the_one_its_records_carry() -> None:
    """The origin an AuditLog shows before its first record is the one it stamps into it:
    a log is one writer from the moment it is made."""
    log = AuditLog(4)
    origin = log.origin
    assert log.record(transition(1, "trip", "closed", "open")).origin == origin
    assert log[0].origin == log.origin == origin


def test_a_record_read_from_the_log_pickles_like_any_record() -> None:
    """A record the log builds again from its kept row is a whole model: it holds only its
    fields, and pickles and unpickles equal (to another process, a queue, a cache)."""
    breaker = CircuitBreaker("p", clock=FakeClock())
    breaker.send("force_open")
    record = breaker.audit[0]
    assert set(vars(record)) == set(Transition.model_fields)
    assert pickle.loads(pickle.dumps(record)) == record


def test_logging_sink(caplog: pytest.LogCaptureFixture) -> None:
    """LoggingSink logs one line per record with the record attached."""
    sink = LoggingSink(level=logging.WARNING)
    with caplog.at_level(logging.WARNING, logger="breaker_fsm.audit"):
        sink(transition(1, "trip", "closed", "open"))
    assert "breaker b #1: trip closed -> open" in caplog.text
    assert caplog.records[0].transition["event"] == "trip"  # type: ignore[attr-defined]
    assert repr(sink) == "LoggingSink('breaker_fsm.audit')"


def test_logging_sink_message_extra_and_logger(caplog: pytest.LogCaptureFixture) -> None:
    """LoggingSink logs one fixed-format line to the given logger, the record in extra."""
    made = transition(1, "trip", "closed", "open").model_copy(update={"reason": "why"})
    caplog.set_level(logging.INFO)
    LoggingSink(logging.getLogger("mine"))(made)
    LoggingSink()(made)
    first, second = caplog.records
    assert (first.name, second.name) == ("mine", "breaker_fsm.audit")
    assert first.getMessage() == "breaker b #1: trip closed -> open (why)"
    assert first.transition == made.model_dump(mode="json")  # type: ignore[attr-defined]
    assert isinstance(first.transition["at"], str)  # type: ignore[attr-defined]


def test_jsonl_sink_to_vanished_directory_is_counted(tmp_path: Path) -> None:
    """A JsonlSink whose directory disappears fails visibly but never fails the call."""
    path = tmp_path / "gone" / "audit.jsonl"
    path.parent.mkdir()
    breaker = CircuitBreaker("v", BreakerPolicy(failure_threshold=1), sinks=[JsonlSink(path)])
    path.unlink()  # created empty by the sink
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


def test_trail_written_before_origins_still_reads_and_verifies() -> None:
    """A checked-in trail in the first format (no origin, life or hash) reads and verifies."""
    records = read_jsonl(FIXTURES / "trail-v1.jsonl")
    assert {r.breaker for r in records} == {"users-api", "billing"}
    assert verify(records) == 10


def test_trail_written_with_origins_and_chains_still_verifies() -> None:
    """A checked-in trail with origins and hash chains verifies: the canonical form is pinned.

    Two lives of one service, and a fleet whose members both wrote seq 3 alone. If the
    bytes a record hashes ever change, every chain already written would break: this fails.
    """
    records = read_jsonl(FIXTURES / "trail-v2.jsonl")
    assert all(r.origin is not None for r in records)
    summary = verify(records)
    assert summary == 15
    lives = {name: (b.lives, b.outages) for name, b in summary.breakers.items()}
    assert lives == {"users-api": (2, 0), "billing": (1, 2)}


def test_digest_survives_the_json_round_trip(tmp_path: Path) -> None:
    """A record read back from its JSON line hashes as it did when it was written."""
    breaker, path = scenario(tmp_path)
    assert [digest(r) for r in read_jsonl(path)] == [digest(r) for r in breaker.audit]
    legacy = read_jsonl(FIXTURES / "trail-v1.jsonl")[0]
    assert digest(legacy) == digest(Transition.model_validate_json(legacy.to_json()))


def test_counters_re_sorted_by_a_log_pipeline_still_chain(tmp_path: Path) -> None:
    """The digest reads counters in the order a breaker writes them: a pipeline that
    re-serialises JSON with sorted keys (jq -S) leaves the chain intact."""
    breaker, path = scenario(tmp_path)
    lines = [json.loads(line) for line in path.read_text("utf-8").splitlines()]
    path.write_text("".join(json.dumps(line, sort_keys=True) + "\n" for line in lines), "utf-8")
    records = read_jsonl(path)
    assert list(records[0].counters) == sorted(COUNTERS)  # really re-sorted
    assert verify(records) == len(breaker.audit)
    assert [digest(r) for r in records] == [digest(r) for r in breaker.audit]
    stats = BreakerStats(now=0.0)
    assert tuple(stats.as_counters()) == COUNTERS  # the order a breaker writes
