"""A failover fork: two members' transitions at one shared generation, and what says so.

A failover can lose a transition the old primary acknowledged (Redis replicates
asynchronously). A member that had seen it puts it back when it reaches the new primary
(the store is *behind* its mirror: it re-seeds). But a member that never saw it, reaching
the new primary first, makes another transition at that same generation. Two genuine
records then share a ``seq`` in one numbering. These tests pin what the fleet and the
trail make of that:

- the member whose transition was lost follows the store's state as soon as it hears of
  it (a reply, a push or a re-read), with one warning naming the generation;
- ``verify`` reports the two records as a fork (``BreakerSummary.forks``), not as a broken
  walk, and ``breaker-fsm audit verify`` prints it, file and line of each, and exits 0;
- anything else at one generation (a member recording it twice, a record not legal from
  the generation before) is still an error.

First on a scripted in-memory store (``tests.scripted.ScriptedState``: every reply
chosen by the test), then on a real redis-server whose entry is set back to the older
generation, as a promoted replica that lacks the transition holds it. The Sentinel
version (a real primary killed) is in ``tests/test_redis_sentinel.py``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from breaker_fsm import BreakerPolicy, CircuitBreaker, CircuitOpenError
from breaker_fsm.audit import AuditError, Fork, JsonlSink, digest, verify
from breaker_fsm.testing import FakeClock
from tests.helpers import fail, invoke_cli, merged, wait_live, wait_until
from tests.redis_server import RedisServer, StoreFactory
from tests.scripted import ScriptedState, ScriptedStore, reply, tripped

POLICY = BreakerPolicy(failure_threshold=1, reset_timeout=30)
EPOCH = 7  # the store entry's incarnation: the same before and after the failover
FORK_WARNING = "the shared store holds open at generation 1, where this member mirrored forced_open"


def scripted(entry: ScriptedState, clock: FakeClock, **options: Any) -> CircuitBreaker:
    """A member of breaker "svc" whose round trips ``entry`` answers."""
    return CircuitBreaker("svc", POLICY, clock=clock, store=ScriptedStore(entry), **options)


def fork_of_two(clock: FakeClock, **options: Any) -> tuple[CircuitBreaker, CircuitBreaker]:
    """A's force_open (generation 1) is lost by the store; B, which never saw it, trips at 1.

    Both replies are what the store answered at the time: the old primary acknowledged A's
    transition; the new one, which lacks it, made B's failure a trip from generation 0.
    """
    ea, eb = ScriptedState(), ScriptedState()
    a, b = scripted(ea, clock, **options), scripted(eb, clock, **options)
    ea.script(reply("forced_open", gen=1, epoch=EPOCH, event="force_open", source="closed"))
    assert a.send("force_open") == "forced_open"
    eb.script(tripped(gen=1, epoch=EPOCH, open_duration=30.0))
    fail(b)
    return a, b


def the_fork(summary: Any) -> Fork:
    (fork,) = summary.breakers["svc"].forks
    assert isinstance(fork, Fork)
    return fork


# ---------------------------------------------------------------------- scripted store


def test_two_members_transitions_at_one_generation_are_a_fork_not_a_broken_walk(
    clock: FakeClock,
) -> None:
    """The merged trail verifies; the fork names the generation and both records."""
    a, b = fork_of_two(clock)
    trail = merged(a, b)
    assert [(r.seq, r.event, r.generation, r.life) for r in trail] == [
        (1, "force_open", 1, f"shared:{EPOCH}"),
        (1, "trip", 1, f"shared:{EPOCH}"),
    ]
    summary = verify(trail)
    assert summary == 2
    fork = the_fork(summary)
    assert (fork.breaker, fork.generation, fork.life) == ("svc", 1, f"shared:{EPOCH}")
    assert [(r.event, r.origin) for r in fork.records] == [
        ("force_open", a.audit.origin),
        ("trip", b.audit.origin),
    ]
    assert fork.indexes == (0, 1)
    assert fork.records == (a.audit[0], b.audit[0])  # the members' own records
    assert verify(a.audit).breakers["svc"].forks == ()  # one member's trail alone: no fork


def test_the_member_whose_transition_was_lost_follows_the_store_and_says_so(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """A's next round trip finds open at the generation it mirrors as forced_open: it adopts
    the store's state (one warning), refuses as the fleet does, and the walk goes on from
    the record the store kept: B's trip."""
    caplog.set_level(logging.WARNING, logger="breaker_fsm")
    ea, eb = ScriptedState(sync_interval=30.0), ScriptedState()
    a, b = scripted(ea, clock), scripted(eb, clock)
    ea.script(reply("forced_open", gen=1, epoch=EPOCH, event="force_open", source="closed"))
    a.send("force_open")
    eb.script(tripped(gen=1, epoch=EPOCH, open_duration=30.0))
    fail(b)
    assert FORK_WARNING not in caplog.text
    clock.advance(30)  # a's forced_open mirror is asked again (sync_interval)
    ea.script(reply("open", gen=1, epoch=EPOCH, ok=0, episode=1, open_duration=60, elapsed=30))
    with pytest.raises(CircuitOpenError):
        a.call(lambda: pytest.fail("a refused call ran"))
    assert a.state == "open"
    assert caplog.text.count(FORK_WARNING) == 1
    # The fleet goes on from the store's state: a trial after the open duration, by A.
    clock.advance(30)
    ea.script(
        reply("half_open", gen=2, epoch=EPOCH, event="attempt_reset", source="open", episode=1),
        reply("closed", gen=3, epoch=EPOCH, event="recover", source="half_open", trials=(1, 0)),
    )
    assert a.call(lambda: "trial") == "trial"
    trail = merged(a, b)
    assert [(r.seq, r.event) for r in trail] == [
        (1, "force_open"),
        (1, "trip"),
        (2, "attempt_reset"),
        (3, "recover"),
    ]
    assert the_fork(verify(trail)).generation == 1
    assert caplog.text.count(FORK_WARNING) == 1


def test_a_transition_made_from_the_stores_branch_is_recorded_from_its_state(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """A, mirroring forced_open at generation 1, sends reset: the store (open at 1, B's)
    resets from open. A records reset from open, says the store had forked, and the walk
    verifies: generation 2 follows B's branch."""
    caplog.set_level(logging.WARNING, logger="breaker_fsm")
    ea, eb = ScriptedState(), ScriptedState()
    a, b = scripted(ea, clock), scripted(eb, clock)
    ea.script(reply("forced_open", gen=1, epoch=EPOCH, event="force_open", source="closed"))
    a.send("force_open")
    eb.script(tripped(gen=1, epoch=EPOCH, open_duration=30.0))
    fail(b)
    ea.script(reply("closed", gen=2, epoch=EPOCH, event="reset", source="open"))
    assert a.send("reset") == "closed"
    assert caplog.text.count(FORK_WARNING) == 1
    trail = merged(a, b)
    assert [(r.seq, r.event, r.source, r.target) for r in trail] == [
        (1, "force_open", "closed", "forced_open"),
        (1, "trip", "closed", "open"),
        (2, "reset", "open", "closed"),
    ]
    assert the_fork(verify(trail)).generation == 1


def test_a_member_that_never_saw_the_fork_warns_of_nothing(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """B's branch is the store's: its later replies agree with its mirror, no warning."""
    caplog.set_level(logging.WARNING, logger="breaker_fsm")
    eb = ScriptedState()
    b = scripted(eb, clock)
    eb.script(tripped(gen=1, epoch=EPOCH, open_duration=30.0))
    fail(b)
    clock.advance(30)
    eb.script(
        reply("half_open", gen=2, epoch=EPOCH, event="attempt_reset", source="open", episode=1),
        reply("closed", gen=3, epoch=EPOCH, event="recover", source="half_open", trials=(1, 0)),
    )
    assert b.call(lambda: "trial") == "trial"
    assert "the shared store holds" not in caplog.text


def test_a_record_after_the_fork_must_follow_one_of_its_branches(clock: FakeClock) -> None:
    """Generation 2 from a state neither record of generation 1 left is still an error."""
    ea, eb = ScriptedState(), ScriptedState()
    a, b = scripted(ea, clock), scripted(eb, clock)
    ea.script(reply("forced_open", gen=1, epoch=EPOCH, event="force_open", source="closed"))
    a.send("force_open")
    eb.script(tripped(gen=1, epoch=EPOCH, open_duration=30.0))
    fail(b)
    eb.script(reply("closed", gen=2, epoch=EPOCH, event="reset", source="half_open"))
    b.send("reset")  # the scripted store says: reset from half_open, which no branch left
    with pytest.raises(AuditError, match="seq 2: source 'half_open' is not the target of any "
                       "record at generation 1 \\('forced_open' or 'open'\\)"):  # fmt: skip
        verify(merged(a, b))


def test_one_member_recording_one_generation_twice_is_not_a_fork(clock: FakeClock) -> None:
    """A second record of generation 1 by the same writer (chained after its first) is an
    error naming it: a member never forks with itself."""
    a, _ = fork_of_two(clock)
    (first,) = a.audit
    second = first.model_copy(
        update={"event": "disable", "target": "disabled", "prev": digest(first)}
    )
    with pytest.raises(AuditError, match=f"seq 1: {first.origin} recorded generation 1 twice"):
        verify([first, second])


def test_a_gap_after_a_fork_is_still_a_gap(clock: FakeClock) -> None:
    """A fork does not excuse a missing generation after it."""
    a, b = fork_of_two(clock)
    (trip,) = b.audit
    later = trip.model_copy(
        update={"seq": 3, "generation": 3, "event": "attempt_reset", "source": "open",
                "target": "half_open", "prev": digest(trip)}
    )  # fmt: skip
    with pytest.raises(AuditError, match="seq 3 follows seq 1: expected 2"):
        verify([*a.audit, trip, later])


def test_audit_verify_prints_the_fork_with_each_records_file_and_line(
    tmp_path: Path, clock: FakeClock
) -> None:
    """Each member's JsonlSink file; the command names the fork and exits 0."""
    a_file, b_file = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    ea, eb = ScriptedState(), ScriptedState()
    a = scripted(ea, clock, sinks=[JsonlSink(a_file)])
    b = scripted(eb, clock, sinks=[JsonlSink(b_file)])
    ea.script(reply("forced_open", gen=1, epoch=EPOCH, event="force_open", source="closed"))
    a.send("force_open")
    clock.advance(1)
    eb.script(tripped(gen=1, epoch=EPOCH, open_duration=30.0))
    fail(b)
    result = invoke_cli("audit", "verify", str(a_file), str(b_file))
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith("svc: 2 transitions, 1 life, 0 outages, 1 failover fork, ")
    assert lines[1] == (
        f"  fork at generation 1 (shared:{EPOCH}): "
        f"{a_file}:1 force_open closed → forced_open by {a.audit.origin}; "
        f"{b_file}:1 trip closed → open by {b.audit.origin} "
        "(the store lost one in a failover; the fleet went on from the one it kept)"
    )
    assert lines[-1] == (
        "OK: 2 transitions of 1 breaker in 2 files, legal walks of BreakerMachine "
        "(1 failover fork: a store lost transitions)"
    )


# ---------------------------------------------------------------------- one real server


def test_a_pushed_transition_at_the_mirrors_own_generation_is_followed(
    redis_server: RedisServer,
    redis_stores: StoreFactory,
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A's force_open (generation 1) is lost: the entry is set back to generation 0, as a
    promoted replica that never received it holds it. B (no push: it never heard of A's)
    trips at generation 1. Its push reaches A, whose mirror is at generation 1 too: A
    follows the store (open), says so, and the merged trail verifies with one fork."""
    caplog.set_level(logging.WARNING, logger="breaker_fsm")
    a = CircuitBreaker("svc", POLICY, clock=clock, store=redis_stores(now=clock.monotonic))
    b = CircuitBreaker(
        "svc", POLICY, clock=clock, store=redis_stores(now=clock.monotonic, push=False)
    )
    wait_live(a)
    assert a.call(lambda: "ok") == b.call(lambda: "ok") == "ok"  # the entry, at generation 0
    with redis_server.client() as admin:
        replicated = admin.get("breaker_fsm:{svc}")
        assert a.send("force_open") == "forced_open"  # acknowledged: generation 1...
        admin.set("breaker_fsm:{svc}", replicated)  # ...and lost, as by a failover
    fail(b)  # b's mirror is at generation 0: the store's next transition is its trip
    assert b.state == "open"
    wait_until(lambda: a.state == "open", "a follows the trip pushed at its own generation")
    assert FORK_WARNING in caplog.text
    state = redis_stores().describe("svc")
    assert state is not None
    assert (state["state_name"], state["gen"]) == ("open", 1)
    summary = verify(merged(a, b))
    fork = the_fork(summary)
    assert [(r.event, r.generation) for r in fork.records] == [("force_open", 1), ("trip", 1)]
    # The fleet goes on from the trip: A refuses, and after the open duration recovers.
    with pytest.raises(CircuitOpenError):
        a.call(lambda: pytest.fail("a refused call ran"))
    clock.advance(30)
    assert a.call(lambda: "trial") == "trial"
    assert [(r.seq, r.event) for r in merged(a, b)] == [
        (1, "force_open"),
        (1, "trip"),
        (2, "attempt_reset"),
        (3, "recover"),
    ]
    assert verify(merged(a, b)).breakers["svc"].forks == (fork,)
