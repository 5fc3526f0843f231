"""Tamper evidence in the audit trail: each instance's life, the hash chain, fleets' shared walk."""

from __future__ import annotations

import json
import os
import re
import socket
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

import breaker_fsm._audit
from breaker_fsm import AuditError, BreakerPolicy, CircuitBreaker, Transition
from breaker_fsm._audit import shared_life
from breaker_fsm.audit import Chain, JsonlSink, digest, read_jsonl, verify
from breaker_fsm.testing import FakeClock
from tests.helpers import FIXTURES, transition

if TYPE_CHECKING:
    from tests.redis_server import RedisServer, StoreFactory


# --------------------------------------------------------------------------- lives and chains


def lives_of_a_service(path: Path, lives: int = 2) -> list[CircuitBreaker]:
    """``lives`` instances of breaker "db" in turn, each appending two transitions to path."""
    clock = FakeClock()
    breakers = []
    for _ in range(lives):
        breaker = CircuitBreaker("db", clock=clock, sinks=[JsonlSink(path)])
        breaker.send("force_open", reason="deploy")
        clock.advance(30)
        breaker.send("reset")
        clock.advance(30)
        breakers.append(breaker)
    return breakers


def edit_line(path: Path, number: int, change: Callable[[dict[str, Any]], object]) -> None:
    """Rewrite line ``number`` (1-based) of a JSON Lines file through ``change``."""
    lines = path.read_text("utf-8").splitlines()
    data = json.loads(lines[number - 1])
    change(data)
    lines[number - 1] = json.dumps(data)
    path.write_text("\n".join(lines) + "\n", "utf-8")


def test_every_record_says_which_instance_wrote_it(tmp_path: Path) -> None:
    """Records carry origin host:pid:token and life; each instance is a new one."""
    first, second = lives_of_a_service(tmp_path / "db.jsonl")
    host, pid, token = first.audit[0].origin.split(":")  # type: ignore[union-attr]
    assert (host, pid) == (socket.gethostname(), str(os.getpid()))
    assert re.fullmatch("[0-9a-f]{8}", token)
    assert {r.origin for r in first.audit} == {first.audit.origin}
    assert first.audit.origin != second.audit.origin
    assert all(r.life == r.origin for r in [*first.audit, *second.audit])
    assert [r.seq for r in read_jsonl(tmp_path / "db.jsonl")] == [1, 2, 1, 2]


def test_the_origin_names_the_host_or_localhost(monkeypatch: pytest.MonkeyPatch) -> None:
    """The host is looked up once per process (here again, as in a fresh one); a machine
    without a host name writes localhost."""
    monkeypatch.setattr(breaker_fsm._audit, "_host", None)
    assert Chain().origin.split(":")[0] == socket.gethostname()
    monkeypatch.setattr(breaker_fsm._audit, "_host", None)
    monkeypatch.setattr(socket, "gethostname", lambda: "")
    assert Chain().origin.split(":")[0] == "localhost"


def test_each_record_chains_the_hash_of_the_one_before() -> None:
    """prev is None for an instance's first record, then the digest of the record before."""
    breaker = CircuitBreaker("c")
    assert breaker.audit.head is None
    for event in ("force_open", "reset", "disable", "reset"):
        breaker.send(event)
    records = list(breaker.audit)
    assert records[0].prev is None
    assert [r.prev for r in records[1:]] == [digest(r) for r in records[:-1]]
    assert breaker.audit.head == digest(records[-1])
    assert re.fullmatch("[0-9a-f]{64}", breaker.audit.head or "")


def test_a_restarted_service_verifies_with_its_lives_counted(tmp_path: Path) -> None:
    """One file that three lives appended to verifies; the gaps are restarts, not errors."""
    path = tmp_path / "db.jsonl"
    lives_of_a_service(path, lives=3)
    summary = verify(read_jsonl(path))
    assert summary == 6
    db = summary.breakers["db"]
    assert (db.transitions, db.lives, db.restarts, db.outages) == (6, 3, 2, 0)
    assert db.span == timedelta(seconds=150)
    assert db.last - db.first == db.span
    assert db.head == digest(read_jsonl(path)[-1])


def test_lives_that_overlap_in_time_are_concurrent_not_restarts() -> None:
    """A life that begins before an earlier one's last record is a concurrent writer."""
    clock = FakeClock()
    first, second = CircuitBreaker("db", clock=clock), CircuitBreaker("db", clock=clock)
    first.send("force_open")
    second.send("force_open")  # both instances are writing now
    clock.advance(10)
    first.send("reset")
    second.send("reset")
    both = verify([*first.audit, *second.audit]).breakers["db"]
    assert (both.lives, both.restarts, both.concurrent) == (2, 0, 1)
    clock.advance(10)
    third = CircuitBreaker("db", clock=clock)
    third.send("disable")  # after both had ended: a restart
    fourth = CircuitBreaker("db", clock=clock)
    fourth.send("disable")  # at the instant the third's last record was written: a restart
    trail = [*fourth.audit, *third.audit, *first.audit, *second.audit]  # any order
    db = verify(trail).breakers["db"]
    assert (db.lives, db.restarts, db.concurrent) == (4, 2, 1)


def test_lives_inside_a_long_one_are_each_concurrent() -> None:
    """Two short lives, one after the other, both while a long one is writing: both are
    concurrent writers (the long life's end counts, not only the latest one's)."""
    clock = FakeClock()
    long = CircuitBreaker("db", clock=clock)
    long.send("force_open")
    short = []
    for _ in range(2):
        clock.advance(10)
        breaker = CircuitBreaker("db", clock=clock)
        breaker.send("force_open")
        clock.advance(1)
        breaker.send("reset")
        short.append(breaker)
    clock.advance(100)
    long.send("reset")
    db = verify([*long.audit, *short[0].audit, *short[1].audit]).breakers["db"]
    assert (db.lives, db.restarts, db.concurrent) == (3, 0, 2)


def test_a_lifes_span_runs_from_its_earliest_record_to_its_latest() -> None:
    """Whatever order a life's records come in (a wall clock stepped back), its span is
    its earliest to its latest: a life that wrote inside it is concurrent."""
    clock = FakeClock()
    long, inside = CircuitBreaker("db", clock=clock), CircuitBreaker("db", clock=clock)
    long.send("force_open")
    clock.advance(5)
    inside.send("force_open")
    inside.send("reset")
    for _ in range(2):
        clock.advance(10)
        long.send("reset" if long.state == "forced_open" else "force_open")
    assert verify([*long.audit, *inside.audit]).breakers["db"].concurrent == 1
    stepped, other = Chain(), Chain()

    def at(chain: Chain, wall: float, made: Transition) -> Transition:
        return chain.stamp(made.model_copy(update={"at": datetime.fromtimestamp(wall, UTC)}))

    trail = [
        at(stepped, 100, transition(1, "force_open", "closed", "forced_open", "db")),
        at(stepped, 0, transition(2, "reset", "forced_open", "closed", "db")),  # stepped back
        at(other, 50, transition(1, "disable", "closed", "disabled", "db")),
    ]
    assert verify(trail).breakers["db"].concurrent == 1


def test_verify_and_digest_say_what_they_take() -> None:
    """A path to verify, or a dict to digest: a TypeError saying what to pass instead."""
    with pytest.raises(TypeError) as exc:
        verify("trail.jsonl")  # type: ignore[arg-type]
    assert str(exc.value) == (
        "verify() takes records, not a path ('trail.jsonl'): read a trail with "
        "read_jsonl(path) and verify what it returns"
    )
    with pytest.raises(TypeError, match=r"^verify\(\) takes records, not a path"):
        verify(Path("trail.jsonl"))  # type: ignore[arg-type]
    record = transition(1, "trip", "closed", "open")
    with pytest.raises(TypeError, match=r"^verify\(\): record 1 is a dict, not a Transition$"):
        verify([record, record.model_dump()])  # type: ignore[list-item]
    with pytest.raises(TypeError) as exc:
        digest(record.model_dump())  # type: ignore[arg-type]
    assert str(exc.value) == (
        "digest() takes a Transition, got dict "
        "(Transition.model_validate(...) builds one from a dict)"
    )


def test_old_and_new_records_in_one_trail_are_two_lives(tmp_path: Path) -> None:
    """A service upgraded in place: its old records and its new ones each verify."""
    path = tmp_path / "mixed.jsonl"
    path.write_text((FIXTURES / "trail-v1.jsonl").read_text("utf-8"), "utf-8")
    breaker = CircuitBreaker("billing", sinks=[JsonlSink(path)])
    breaker.send("disable")
    summary = verify(read_jsonl(path))
    assert summary == 11
    assert (summary.breakers["billing"].lives, summary.breakers["users-api"].lives) == (2, 1)


@pytest.mark.parametrize(
    ("line", "change"),
    [
        (2, lambda r: r.update(reason="operator: nothing to see")),
        (2, lambda r: r["counters"].update(consecutive_failures=0.5)),
        (2, lambda r: r.update(at="2026-01-01T00:00:31Z")),
        (2, lambda r: r.update(monotonic=31.5)),
        (1, lambda r: r.update(generation=7, reason="")),
    ],
    ids=["reason", "counter", "timestamp", "monotonic", "first record"],
)
def test_an_edited_record_is_named(
    tmp_path: Path, line: int, change: Callable[[dict[str, Any]], object]
) -> None:
    """Editing a record keeps the walk legal, but its hash no longer chains: it is named."""
    breaker = CircuitBreaker("db", sinks=[JsonlSink(path := tmp_path / "db.jsonl")])
    for event in ("force_open", "reset", "force_open", "reset"):
        breaker.send(event)
    edit_line(path, line, change)
    with pytest.raises(AuditError) as exc:
        verify(read_jsonl(path))
    assert (exc.value.index, exc.value.seq) == (line - 1, line)
    assert str(exc.value) == (
        f"breaker 'db', seq {line}: the hash chain breaks between this record and seq "
        f"{line + 1}: this record was edited, or records after it were removed"
    )


def test_a_deleted_record_is_named(tmp_path: Path) -> None:
    """Deleting a record is caught at the record after the gap, even when renumbered."""
    breaker = CircuitBreaker("db", sinks=[JsonlSink(path := tmp_path / "db.jsonl")])
    for event in ("force_open", "reset", "force_open", "reset", "force_open"):
        breaker.send(event)
    lines = path.read_text("utf-8").splitlines()
    path.write_text("\n".join([lines[0], *lines[3:]]) + "\n")
    with pytest.raises(AuditError, match="seq 4 follows seq 1") as exc:
        verify(read_jsonl(path))
    assert exc.value.index == 1
    edit_line(path, 2, lambda r: r.update(seq=2))  # hide the gap: the walk is legal again
    edit_line(path, 3, lambda r: r.update(seq=3))
    with pytest.raises(AuditError, match="seq 1: the hash chain breaks between") as exc:
        verify(read_jsonl(path))
    assert exc.value.index == 0


def test_a_reordered_pair_is_named(tmp_path: Path) -> None:
    """Two records swapped are caught at the first of them, whatever the walk says."""
    breaker = CircuitBreaker("db", sinks=[JsonlSink(path := tmp_path / "db.jsonl")])
    for event in ("force_open", "reset", "force_open", "reset"):
        breaker.send(event)
    lines = path.read_text("utf-8").splitlines()
    lines[1], lines[2] = lines[2], lines[1]
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(AuditError, match="seq 3") as exc:
        verify(read_jsonl(path))
    assert exc.value.index == 1


def test_the_newest_record_is_covered_by_an_anchored_head(tmp_path: Path) -> None:
    """An edited last record still chains; it no longer hashes to the head anchored earlier."""
    breaker = CircuitBreaker("db", sinks=[JsonlSink(path := tmp_path / "db.jsonl")])
    breaker.send("force_open")
    breaker.send("reset")
    anchored = breaker.audit.head
    edit_line(path, 2, lambda r: r.update(reason="operator: all fine"))
    summary = verify(read_jsonl(path))
    assert summary.breakers["db"].head != anchored
    assert summary.breakers["db"].heads == {breaker.audit.origin: summary.breakers["db"].head}


def test_a_forked_child_writes_as_a_new_instance(monkeypatch: pytest.MonkeyPatch) -> None:
    """After a fork (a new pid) the inherited chain takes a new origin and starts over."""
    chain = Chain()
    assert (chain.origin.split(":")[1], chain.head) == (str(os.getpid()), None)
    parent = chain.origin
    first = chain.stamp(transition(1, "force_open", "closed", "forced_open"))
    assert (first.origin, first.life, first.prev) == (parent, parent, None)
    monkeypatch.setattr(os, "getpid", lambda: 4_000_000)
    second = chain.stamp(transition(2, "reset", "forced_open", "closed"))
    assert second.origin != first.origin
    assert second.origin is not None
    assert second.origin.split(":")[1] == "4000000"
    assert (second.prev, second.life) == (None, second.origin)
    assert "Chain(origin=" in repr(chain)
    third = chain.stamp(transition(3, "force_open", "closed", "forced_open"))
    assert (third.origin, third.prev) == (second.origin, digest(second))  # the child's chain


# --------------------------------------------------------------------------- fleets


def member(life: bool | str = True) -> tuple[Chain, Callable[..., Transition]]:
    """A fleet member's chain and a function that stamps its next record (shared=life)."""
    chain = Chain()

    def write(seq: int, event: str, source: str, target: str, *, alone: bool = False) -> Transition:
        made = Transition.at_wall(
            float(seq), seq=seq, breaker="svc", event=event, source=source, target=target,
            monotonic=float(seq), generation=None if alone else seq,
        )  # fmt: skip
        return chain.stamp(made, shared=life)

    return chain, write


def fleet_with_an_outage() -> tuple[list[Transition], list[Transition]]:
    """Two members' trails: shared, both degraded at generation 2 (each writes seq 3), rejoined."""
    _, a = member()
    _, b = member()
    trail_a = [a(1, "trip", "closed", "open")]
    trail_b = [b(2, "attempt_reset", "open", "half_open")]
    trail_a += [  # a learned generation 2, then the store went away
        a(3, "recover", "half_open", "closed", alone=True),
        a(4, "trip", "closed", "open", alone=True),
    ]
    trail_b += [b(3, "force_open", "half_open", "forced_open", alone=True)]
    trail_b += [b(3, "retrip", "half_open", "open")]  # back on the store, still at 2
    trail_a += [a(4, "attempt_reset", "open", "half_open")]
    return trail_a, trail_b


def test_a_fleets_merged_trails_verify_across_an_outage() -> None:
    """The shared walk by generation, each member's local run on its own, both write seq 3."""
    trail_a, trail_b = fleet_with_an_outage()
    merged = sorted([*trail_a, *trail_b], key=lambda r: r.at)
    summary = verify(merged)
    assert summary == 7
    svc = summary.breakers["svc"]
    assert (svc.lives, svc.outages, svc.restarts) == (1, 2, 0)
    assert len(svc.heads) == 2
    assert verify(trail_b) == 3  # b's file alone: b wrote each generation up to its last
    with pytest.raises(AuditError, match="seq 4 follows seq 1: expected 2"):
        verify(trail_a)  # a's alone: generations 2 and 3 are in b's file, left out


@pytest.mark.parametrize("life", [True, "shared:7"])
def test_a_local_run_must_start_where_the_shared_walk_was(life: bool | str) -> None:
    """A member that degrades from generation 2 starts from the state generation 2 left
    (in the fleet's numbering, or in the store entry's incarnation it names)."""
    _, a = member(life)
    trail = [a(1, "trip", "closed", "open"), a(2, "attempt_reset", "open", "half_open")]
    trail.append(a(3, "reset", "open", "closed", alone=True))
    with pytest.raises(AuditError, match="degraded at generation 2, which left 'half_open'") as exc:
        verify(trail)
    assert exc.value.index == 2


@pytest.mark.parametrize("life", [True, "shared:7"])
def test_a_member_never_goes_back_to_an_older_generation(life: bool | str) -> None:
    """Rejoining or degrading again, a member's generations only move forward (in the
    fleet's numbering, or in the store entry's incarnation it names)."""
    _, a = member(life)
    _, b = member(life)
    shared = [a(1, "trip", "closed", "open"), b(2, "attempt_reset", "open", "half_open")]
    back = [*shared, a(3, "recover", "half_open", "closed")]
    back.append(a(2, "recover", "half_open", "closed", alone=True))
    with pytest.raises(AuditError, match=r"degraded at generation 1 after .* reached generation 3"):
        verify(back)
    _, c = member(life)  # a reply that a newer one overtook is recorded late: no step back
    late = [c(2, "force_open", "open", "forced_open"), c(1, "trip", "closed", "open")]
    assert verify(late) == verify([late[1], late[0]]) == 2


def test_a_store_entrys_numbering_is_named_by_its_epoch_from_zero() -> None:
    """Epoch 0 is a known epoch ("shared:0"); a negative one is not known yet ("shared")."""
    assert (shared_life(0), shared_life(7), shared_life(-1)) == ("shared:0", "shared:7", "shared")


def test_a_member_stamps_the_numbering_it_is_given() -> None:
    """shared=True stamps the fleet's numbering, a life names the store entry's
    incarnation, and a record that carries a life keeps it."""
    chain = Chain()
    made = transition(1, "trip", "closed", "open", generation=1)
    assert chain.stamp(made, shared=True).life == "shared"
    assert chain.stamp(made, shared="shared:7").life == "shared:7"
    kept = made.model_copy(update={"life": "shared:5"})
    assert chain.stamp(kept, shared="shared:7").life == "shared:5"
    assert chain.stamp(made).life == chain.origin


def test_a_member_degrading_again_may_not_start_before_its_last_outage() -> None:
    """A member's outage from generation 2 marks it: a later one from generation 1 fails."""
    _, a = member()
    trail = [a(1, "trip", "closed", "open"), a(2, "attempt_reset", "open", "half_open")]
    trail.append(a(3, "recover", "half_open", "closed", alone=True))
    assert verify(trail).breakers["svc"].outages == 1
    trail.append(a(2, "attempt_reset", "open", "half_open", alone=True))
    with pytest.raises(AuditError, match=r"degraded at generation 1 after .* generation 2$") as exc:
        verify(trail)
    assert exc.value.index == 3


def test_a_late_reply_does_not_lower_the_generation_a_member_reached() -> None:
    """A member that recorded generation 2, then generation 1's overtaken reply, has still
    reached generation 2: degrading from generation 1 afterwards fails."""
    _, a = member()
    trail = [a(2, "attempt_reset", "open", "half_open"), a(1, "trip", "closed", "open")]
    assert verify(trail) == 2
    trail.append(a(2, "attempt_reset", "open", "half_open", alone=True))
    with pytest.raises(AuditError, match=r"degraded at generation 1 after .* generation 2$"):
        verify(trail)


def test_a_shared_record_ends_the_members_local_run() -> None:
    """A member back on the store ends its run: its next record made alone is a new
    outage, even when it is numbered and placed as the run's next one would be."""
    _, a = member()
    trail = [
        a(1, "trip", "closed", "open"),
        a(2, "attempt_reset", "open", "half_open", alone=True),  # outage 1
        a(2, "attempt_reset", "open", "half_open"),  # back: the fleet's generation 2
        a(3, "recover", "half_open", "closed", alone=True),  # outage 2
    ]
    assert verify(trail).breakers["svc"].outages == 2


def test_a_writers_head_is_the_end_of_its_chain_in_any_trail_order() -> None:
    """A member stamped generation 2, then generation 1's overtaken reply: given by seq,
    its head is still the record it stamped last, as its log's head said."""
    chain, c = member()
    late = [c(2, "force_open", "open", "forced_open"), c(1, "trip", "closed", "open")]
    svc = verify([late[1], late[0]]).breakers["svc"]
    assert svc.heads == {chain.origin: chain.head}
    assert svc.head == digest(late[0])  # the trail's last record


def test_a_members_record_replaced_by_another_members_breaks_its_chain() -> None:
    """The shared walk stays legal with one of a's records swapped for b's of the same
    generation; a's next record names the record missing before it."""
    chain, a = member()
    _, b = member()
    first = a(1, "trip", "closed", "open")
    a(2, "attempt_reset", "open", "half_open")  # left out of the trail
    trail = [
        first,
        b(2, "attempt_reset", "open", "half_open"),
        a(3, "recover", "half_open", "closed"),
    ]
    with pytest.raises(AuditError) as exc:
        verify(trail)
    assert exc.value.index == 2
    assert str(exc.value) == (
        f"breaker 'svc', seq 3: prev is not the hash of any record {chain.origin} wrote in "
        "this trail: one before it was edited, removed or moved"
    )


def test_the_shared_walk_is_checked_across_members() -> None:
    """A generation missing between two members' records, or claimed twice by one, fails.

    Claimed by two members, it is a fork (a failover lost one: ``tests/test_failover_fork.py``),
    each record of which must follow the generation before it.
    """
    _, a = member()
    _, b = member()
    gap = [a(1, "trip", "closed", "open"), b(3, "attempt_reset", "open", "half_open")]
    with pytest.raises(AuditError, match="seq 3 follows seq 1: expected 2") as exc:
        verify(gap)
    assert exc.value.index == 1
    _, c = member()
    _, d = member()
    twice = [c(1, "trip", "closed", "open"), d(1, "force_open", "closed", "forced_open")]
    (fork,) = verify(twice).breakers["svc"].forks
    assert (fork.breaker, fork.life) == ("svc", "shared")
    assert (fork.generation, fork.records, fork.indexes) == (1, tuple(twice), (0, 1))
    twice.append(c(1, "force_open", "closed", "forced_open"))
    with pytest.raises(AuditError, match=r"seq 1: .* recorded generation 1 twice") as exc:
        verify(twice)
    assert exc.value.index == 2
    _, f = member()
    _, g = member()
    astray = [f(1, "trip", "closed", "open"), g(2, "trip", "closed", "open")]
    astray.insert(1, g(1, "force_open", "closed", "forced_open"))
    with pytest.raises(AuditError, match="seq 2: source 'closed' is not the target of any "
                       "record at generation 1 \\('open' or 'forced_open'\\)") as exc:  # fmt: skip
        verify(astray)
    assert exc.value.index == 2
    _, e = member()
    bad = e(1, "trip", "closed", "open").model_copy(update={"seq": 2})
    with pytest.raises(AuditError, match="seq 2 is not its generation 1") as exc:
        verify([bad])
    assert exc.value.index == 0


def misnumbered(chain: Chain, seq: int, generation: int) -> Transition:
    """A fleet member's ``force_open`` from closed whose ``seq`` is not its generation."""
    made = Transition.at_wall(
        float(seq), seq=seq, breaker="svc", event="force_open", source="closed",
        target="forced_open", monotonic=float(seq), generation=generation,
    )  # fmt: skip
    return chain.stamp(made, shared=True)


def test_a_generation_missing_after_a_fork_is_named_where_the_walk_resumes() -> None:
    """A generation missing after a fork fails at the record after the gap, as after one
    record; a fork record whose seq is not its generation (later in the trail, and an
    error of its own) does not make that record look like its successor."""
    _, a = member()
    _, b = member()
    fork = a(1, "trip", "closed", "open")
    after = a(3, "reset", "forced_open", "closed")  # generation 2 is missing
    trail = [fork, after, b(1, "force_open", "closed", "forced_open")]
    with pytest.raises(AuditError, match="seq 3 follows seq 1: expected 2") as exc:
        verify(trail)
    assert exc.value.index == 1
    chain = Chain()
    trail[2] = misnumbered(chain, 2, 1)  # seq 2 at generation 1: 'after' would follow it
    with pytest.raises(AuditError, match="seq 3 follows seq 1: expected 2") as exc:
        verify(trail)
    assert exc.value.index == 1
    with pytest.raises(AuditError, match="seq 2 is not its generation 1") as exc:
        verify([fork, trail[2]])
    assert exc.value.index == 1


def test_a_record_astray_after_a_fork_names_the_generation_it_should_follow() -> None:
    """A record that follows none of a fork's records names the fork's generation and its
    targets, even when one of them carries another seq (an error later in the trail)."""
    _, a = member()
    trail = [
        a(1, "trip", "closed", "open"),
        a(2, "trip", "closed", "open"),
        misnumbered(Chain(), 2, 1),
    ]
    with pytest.raises(AuditError) as exc:
        verify(trail)
    assert exc.value.index == 1
    assert str(exc.value) == (
        "breaker 'svc', seq 2: source 'closed' is not the target of any record at "
        "generation 1 ('open' or 'forced_open')"
    )


def test_a_member_rejoining_after_the_fleet_moved_by_one_is_a_new_outage() -> None:
    """seq one past its last local record is a new run if the shared walk explains it."""
    _, a = member()
    _, b = member()
    trail = [
        a(1, "trip", "closed", "open"),
        b(2, "force_open", "open", "forced_open", alone=True),  # b's outage: seq 2
        a(2, "attempt_reset", "open", "half_open"),
        b(3, "recover", "half_open", "closed", alone=True),  # b back at 2 and out again
    ]
    assert verify(trail).breakers["svc"].outages == 2
    wrong = [*trail[:2], trail[3]]  # nothing explains where seq 3 starts from
    with pytest.raises(AuditError, match="not the previous target of this member's run") as exc:
        verify(wrong)
    assert exc.value.index == 2


def test_a_real_fleets_trails_verify_across_a_redis_outage(
    redis_server: RedisServer,
    redis_stores: StoreFactory,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Two members on one Redis, Redis killed: both write seq 5 alone; merged, they verify."""
    clock = FakeClock()
    policy = BreakerPolicy(failure_threshold=1, reset_timeout=1)
    paths = [tmp_path / "a.jsonl", tmp_path / "b.jsonl"]
    a, b = (  # no push: each learns the other's events from its own replies, as scripted
        CircuitBreaker(
            "db",
            policy,
            clock=clock,
            store=redis_stores(now=clock.monotonic, push=False),
            sinks=[JsonlSink(p)],
        )
        for p in paths
    )
    a.send("force_open")
    a.send("reset")
    b.send("force_open")
    b.send("reset")
    a.call(lambda: None)  # a learns generation 4
    redis_server.kill()
    with pytest.raises(ZeroDivisionError):
        a.call(lambda: 1 / 0)  # trips alone
    b.send("force_open")  # on its own
    trails = [read_jsonl(path) for path in paths]
    assert [(r.seq, r.generation) for r in (trails[0][-1], trails[1][-1])] == [(5, None)] * 2
    summary = verify(sorted([*trails[0], *trails[1]], key=lambda r: r.at))
    db = summary.breakers["db"]
    assert (summary, db.lives, db.outages) == (6, 1, 2)
    assert db.heads == {a.audit.origin: a.audit.head, b.audit.origin: b.audit.head}
    [life] = {r.life for r in a.audit}  # the local run's too: it continues that numbering
    assert life is not None
    assert life.startswith("shared:")
    assert life == {r.life for r in b.audit}.pop()
    from breaker_fsm._cli import run  # the cli extra

    assert run(["audit", "verify", *map(str, paths)]) == 0  # the command line merges them
    assert capsys.readouterr().out.startswith("db: 6 transitions, 1 life, 2 outages, ")


def test_a_store_restarted_empty_begins_a_new_shared_numbering(
    redis_server: RedisServer,
    redis_stores: StoreFactory,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Redis restarted empty: the member that recreates the entry from a stale mirror
    numbers from there again. The merged trails verify, the walk after the restart
    checked as a numbering of its own, reported as a restart of the store."""
    clock = FakeClock()
    policy = BreakerPolicy(failure_threshold=1, reset_timeout=1)
    paths = [tmp_path / "a.jsonl", tmp_path / "b.jsonl"]
    a, b = (  # no push: b does not learn a's transitions (its mirror is stale)
        CircuitBreaker(
            "db",
            policy,
            clock=clock,
            store=redis_stores(now=clock.monotonic, push=False),
            sinks=[JsonlSink(p)],
        )
        for p in paths
    )
    a.send("force_open")  # generations 1 and 2, which b never learns
    clock.advance(1)
    a.send("reset")
    redis_server.kill()
    redis_server.restart()  # empty
    clock.advance(1)
    b.send("force_open")  # recreates the entry from b's mirror (generation 0): 1 again
    a.call(lambda: None)  # a is told of the new incarnation
    clock.advance(1)
    a.send("reset")
    trails = [read_jsonl(path) for path in paths]
    records = sorted([*trails[0], *trails[1]], key=lambda r: r.at)
    assert [(r.event, r.generation) for r in records] == [
        ("force_open", 1),
        ("reset", 2),
        ("force_open", 1),
        ("reset", 2),
    ]
    before, after = {r.life for r in records[:2]}, {r.life for r in records[2:]}
    assert len(before) == len(after) == 1
    assert before != after  # two numberings, never one silent continuation
    assert all((life or "").startswith("shared:") for life in before | after)
    summary = verify(records)
    db = summary.breakers["db"]
    assert (summary, db.lives, db.store_restarts, db.restarts, db.outages) == (4, 2, 1, 0, 0)
    from breaker_fsm._cli import run  # the cli extra

    assert run(["audit", "verify", *map(str, paths)]) == 0
    assert capsys.readouterr().out.startswith("db: 4 transitions, 2 lives (1 store restart), ")


def test_a_copied_record_that_keeps_the_walk_legal_is_caught_by_the_chain() -> None:
    """Two records of one writer chained to the same predecessor: one was inserted."""
    _, a = member()
    trail = [a(1, "trip", "closed", "open"), a(2, "force_open", "open", "forced_open", alone=True)]
    forged = trail[1].model_copy(update={"event": "disable", "target": "disabled"})
    with pytest.raises(AuditError, match="chains to the same one before it") as exc:
        verify([*trail, forged])
    assert exc.value.index == 2
