"""Replay: recorded calls run against candidate policies (breaker_fsm.replay, simulate, explain)."""

from __future__ import annotations

import contextlib
import json
import math
import random
import re
import subprocess
import sys
import tempfile
import textwrap
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from breaker_fsm import (
    BreakerError,
    BreakerPolicy,
    CircuitBreaker,
    CircuitOpenError,
    CountWindow,
    ReplayError,
    TimeWindow,
    Transition,
)
from breaker_fsm.audit import CallLogSink
from breaker_fsm.replay import Call, Replay, explain, plot, read_calls, simulate
from breaker_fsm.testing import FakeClock
from tests.helpers import Interrupt, breaker_fsm, invoke_cli, one_error_line, write_trail
from tests.strategies import ServiceError, policies

#: The module docstring's scenario: one call a second for a minute, failures from t=10 to t=29.
MINUTE = [Call(float(t), "failure" if 10 <= t <= 29 else "success") for t in range(60)]
SCENARIO_POLICY = BreakerPolicy(failure_threshold=5, reset_timeout=10)
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def events(replay: Replay) -> list[tuple[str, float]]:
    """The replay's transitions as (event, time) pairs."""
    return [(record.event, record.monotonic) for record in replay.trail]


def write_jsonl(path: Path, calls: Sequence[Call], **extra: object) -> Path:
    """Write ``calls`` as CallLogSink would: one JSON object a line, extra keys included."""
    lines = [
        json.dumps({"at": c.at, "outcome": c.outcome, "duration": c.duration, **extra})
        for c in calls
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


# --------------------------------------------------------------------------- exact scenarios


def test_the_issues_minute_trips_refuses_retrips_and_recovers() -> None:
    """Failures t=10..29: trips at 14, refuses 15-23 and 25-33, retrips at 24, recovers at 34."""
    replay = simulate(SCENARIO_POLICY, MINUTE)
    # 5th consecutive failure at t=14 trips; open 10 s, so t=24 is the first trial: it fails
    # (retrip); open again until 34, whose trial succeeds.
    assert events(replay) == [
        ("trip", 14.0),
        ("attempt_reset", 24.0),
        ("retrip", 24.0),
        ("attempt_reset", 34.0),
        ("recover", 34.0),
    ]
    assert replay.transitions == {"trip": 1, "attempt_reset": 2, "retrip": 1, "recover": 1}
    assert (replay.calls, replay.ran, replay.refused) == (60, 42, 18)
    assert replay.first_trip_at == 14.0
    assert replay.open_seconds == 20.0  # 14→24 and 24→34
    assert replay.failures_let_through == 6  # t=10..14 and the trial at 24
    assert replay.successes_refused == 4  # t=30..33
    assert (replay.start, replay.end, replay.skipped, replay.overlapped) == (0.0, 59.0, 0, 0)


def test_durations_move_the_clock_while_a_call_runs() -> None:
    """With 50 ms calls the trip lands at 14.05, so t=24 is still refused and 25 is the trial."""
    calls = [call._replace(duration=0.05) for call in MINUTE]
    replay = simulate(SCENARIO_POLICY, calls)
    # Open 14.05→24.05: 15..24 refused (10); trial at 25 fails, retrip at 25.05; open until
    # 35.05: 26..35 refused (10), of which 30..35 were successes; the trial at 36 recovers.
    assert events(replay) == [
        ("trip", 14.05),
        ("attempt_reset", 25.0),
        ("retrip", 25.05),
        ("attempt_reset", 36.0),
        ("recover", 36.05),
    ]
    assert (replay.ran, replay.refused) == (40, 20)
    assert (replay.failures_let_through, replay.successes_refused) == (6, 6)
    assert replay.open_seconds == pytest.approx(21.9)  # 14.05→25 and 25.05→36
    assert replay.end == pytest.approx(59.05)


def test_slow_calls_are_judged_by_the_recorded_duration() -> None:
    """Slow means strictly longer than slow_call_duration: 2 of 4 slow trips at 50%."""
    policy = BreakerPolicy(
        failure_threshold=None,
        window=CountWindow(size=4),
        minimum_calls=4,
        slow_call_duration=1.0,
        slow_call_rate_threshold=0.5,
    )
    durations = [0.5, 2.0, 1.0, 3.0]  # 1.0 is not slow: it is not *longer* than 1 s
    calls = [Call(10.0 * i, "success", d) for i, d in enumerate(durations)]
    assert events(simulate(policy, calls)) == [("trip", 33.0)]  # the 4th call ends at 30+3
    assert simulate(policy, calls[:3]).trail == ()  # 1 slow of 3: too few calls
    untimed = [call._replace(duration=None) for call in calls]
    assert simulate(policy, untimed).trail == ()  # unknown duration: never slow


def test_a_refused_call_is_not_seen_and_a_trial_takes_its_callers_outcome() -> None:
    """Outcomes of refused calls are not seen; the call that becomes the trial decides."""
    policy = BreakerPolicy(failure_threshold=1, reset_timeout=10)
    calls = [
        Call(0.0, "failure"),  # trips
        Call(5.0, "failure"),  # refused: its failure is not seen
        Call(10.0, "success"),  # the trial: recovers
        Call(11.0, "failure"),  # trips again
    ]
    replay = simulate(policy, calls)
    assert events(replay) == [
        ("trip", 0.0),
        ("attempt_reset", 10.0),
        ("recover", 10.0),
        ("trip", 11.0),
    ]
    assert (replay.ran, replay.refused, replay.failures_let_through) == (3, 1, 2)
    assert replay.successes_refused == 0
    assert replay.open_seconds == 10.0  # 0→10, then 11→11 (the end) still open


def test_an_ignored_trial_releases_its_permit() -> None:
    """An ignored call counts neither way: in half_open the next call becomes the trial."""
    policy = BreakerPolicy(failure_threshold=2, reset_timeout=10)
    calls = [Call(0.0, "failure"), Call(1.0, "ignored"), Call(2.0, "failure")]
    assert events(simulate(policy, calls)) == [("trip", 2.0)]  # the streak survives ignored
    calls += [Call(12.0, "ignored"), Call(13.0, "success")]
    replay = simulate(policy, calls)
    assert events(replay)[1:] == [("attempt_reset", 12.0), ("recover", 13.0)]
    assert (replay.ran, replay.refused, replay.failures_let_through) == (5, 0, 2)


def test_calls_recorded_as_refused_are_skipped_and_counted() -> None:
    """A recorded refusal has no outcome: skipped, counted apart, not in calls."""
    calls = [Call(0.0, "refused"), *MINUTE, Call(60.0, "refused", 0.5)]
    replay = simulate(SCENARIO_POLICY, calls)
    assert (replay.calls, replay.skipped, replay.refused) == (60, 2, 18)
    assert events(replay) == events(simulate(SCENARIO_POLICY, MINUTE))
    assert (replay.start, replay.end) == (0.0, 59.0)


def test_overlapping_calls_replay_at_their_own_start() -> None:
    """A call that starts before the previous one ended still starts at its own at."""
    policy = BreakerPolicy(failure_threshold=2, reset_timeout=3)
    calls = [
        Call(0.0, "failure", 5.0),  # ends at 5.0: the first failure
        Call(1.0, "failure", 0.5),  # the clock steps back to 1.0; ends at 1.5: trips
        Call(2.0, "success"),  # open since 1.5: refused
        Call(4.5, "success"),  # 3 s after the trip: the trial, recovers
    ]
    replay = simulate(policy, calls)
    assert events(replay) == [("trip", 1.5), ("attempt_reset", 4.5), ("recover", 4.5)]
    # The three later calls all started while the first was still running.
    assert (replay.overlapped, replay.refused, replay.successes_refused) == (3, 1, 1)
    assert (replay.start, replay.end) == (0.0, 5.0)  # the first call is the last to end
    assert replay.open_seconds == 3.0


def test_a_slow_overlapping_call_is_still_slow() -> None:
    """Overlap does not shorten a call: slow-call detection sees each recorded duration."""
    policy = BreakerPolicy(
        failure_threshold=None,
        window=TimeWindow(seconds=10),
        minimum_calls=3,
        slow_call_duration=1.0,
        slow_call_rate_threshold=1.0,
    )
    calls = [Call(0.0, "success", 2.0), Call(0.5, "success", 2.0), Call(1.0, "success", 2.0)]
    replay = simulate(policy, calls)
    assert events(replay) == [("trip", 3.0)]  # all three slow, judged as the third ends
    assert (replay.overlapped, replay.end) == (2, 3.0)


def test_jitter_is_seeded() -> None:
    """The open duration's jitter comes from the seed: the same seed, the same replay."""
    policy = BreakerPolicy(failure_threshold=1, reset_timeout=10, reset_timeout_jitter=0.5)
    calls = [Call(0.0, "failure"), *(Call(float(t), "success") for t in range(1, 30))]
    for seed in (0, 7, 12345):
        duration = policy.open_duration(1, random.Random(seed))
        replay = simulate(policy, calls, seed=seed)
        assert events(replay)[1] == ("attempt_reset", math.ceil(duration))
    unseeded, seeded = (simulate(policy, calls, seed=s).trail for s in (None, 0))
    identity = {"origin", "life", "prev"}  # each simulated breaker is an instance of its own
    assert [r.model_dump(exclude=identity) for r in unseeded] == [
        r.model_dump(exclude=identity) for r in seeded
    ]
    seeds = {simulate(policy, calls, seed=seed).trail[1].monotonic for seed in range(8)}
    assert len(seeds) > 1


def test_backoff_lengthens_each_retrip() -> None:
    """reset_timeout_multiplier doubles each consecutive open episode, up to the ceiling."""
    policy = BreakerPolicy(
        failure_threshold=1, reset_timeout=2, reset_timeout_multiplier=2, max_reset_timeout=5
    )
    calls = [Call(float(t), "failure") for t in range(20)]
    # Open 2 s (0→2), then 4 s (2→6), then capped at 5 s (6→11, 11→16).
    assert [t for event, t in events(simulate(policy, calls)) if event == "retrip"] == [
        2.0,
        6.0,
        11.0,
        16.0,
    ]


def test_nothing_to_replay_is_an_error() -> None:
    """No calls at all is a ReplayError; calls that are all skipped replay to nothing."""
    with pytest.raises(ReplayError, match=r"^no calls to replay$"):
        simulate(SCENARIO_POLICY, [])
    with pytest.raises(ReplayError, match=r"^no calls to replay$"):
        simulate(SCENARIO_POLICY, iter(()))
    replay = simulate(SCENARIO_POLICY, [Call(5.0, "refused")])
    assert (replay.calls, replay.ran, replay.refused, replay.trail) == (0, 0, 0, ())
    assert (replay.first_trip_at, replay.open_seconds, replay.start, replay.end) == (
        None,
        0.0,
        0.0,
        0.0,
    )
    assert replay.transitions == {"trip": 0, "attempt_reset": 0, "retrip": 0, "recover": 0}
    assert replay.skipped == 1


def test_the_trail_is_a_verified_walk_and_tuples_are_calls() -> None:
    """The trail is the breaker's audit records; plain (at, outcome, duration) tuples work."""
    from breaker_fsm.audit import verify

    replay = simulate(SCENARIO_POLICY, [tuple(call) for call in MINUTE], name="users-api")
    assert verify(replay.trail) == 5
    assert all(isinstance(record, Transition) for record in replay.trail)
    assert {record.breaker for record in replay.trail} == {"users-api"}
    assert replay.policy is SCENARIO_POLICY
    assert replay.as_dict()["transitions"] == replay.transitions


def test_the_policys_exception_classification_does_not_matter() -> None:
    """Recorded outcomes are verdicts already: record/ignore_exceptions change nothing."""
    picky = SCENARIO_POLICY.model_copy(
        update={"record_exceptions": (KeyError,), "ignore_exceptions": (Exception,)}
    )
    assert events(simulate(picky, MINUTE)) == events(simulate(SCENARIO_POLICY, MINUTE))


# --------------------------------------------------------------------------- bad calls


@pytest.mark.parametrize(
    ("call", "message"),
    [
        ((1.0, "timeout", None), "call 1: outcome must be one of success, failure, ignored, "),
        ((math.nan, "success", None), "call 1: at must be a number of seconds"),
        ((math.inf, "success", None), "call 1: at must be a number of seconds"),
        ((2e9, "success", None), "call 1: at must be a number of seconds"),
        ((1.0, "success", -0.5), "call 1: duration must be a number of seconds from 0"),
        ((1.0, "success", math.nan), "call 1: duration must be a number of seconds from 0"),
        (("1.0", "success", None), "call 1: at must be a number of seconds from -1e+09 to "),
        (Call("x", "success"), "call 1: at must be a number of seconds from -1e+09 to "),  # type: ignore[arg-type]
        ((True, "success"), "call 1: at must be a number of seconds"),
        ((1.0, "success", "0.5"), "call 1: duration must be a number of seconds from 0"),
        ((1.0,), "call 1: not an (at, outcome, duration) call: a Call, an (at, outcome"),
        ((1.0, "success", None, "x"), "call 1: not an (at, outcome, duration) call"),
        (None, "call 1: not an (at, outcome, duration) call"),
        ({"at": 1.0}, "call 1: a call given as a mapping needs 'outcome', got {'at': 1.0}"),
        ({"outcome": "success", "at": "soon"}, "call 1: at must be a number of seconds"),
    ],
)
def test_simulate_rejects_a_bad_call_by_position(call: object, message: str) -> None:
    """A bad call raises ReplayError naming its position; nothing is returned."""
    with pytest.raises(ReplayError) as caught:
        simulate(SCENARIO_POLICY, [Call(0.0, "success"), call])  # type: ignore[list-item]
    assert str(caught.value).startswith(message)
    assert caught.value.index == 1
    assert isinstance(caught.value, BreakerError)


def test_simulate_rejects_calls_that_are_not_iterable() -> None:
    """Something that is not a sequence of calls is named as such."""
    with pytest.raises(ReplayError, match=r"^call 0: not an \(at, outcome, duration\) call"):
        simulate(SCENARIO_POLICY, 42)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("policy", "hint"),
    [
        ({"failure_threshold": 3}, r"got dict: build one with BreakerPolicy\(\*\*fields\)"),
        ("policy.toml", r"got str: load a policy file with BreakerPolicy\.from_file\(path\)"),
        (Path("policy.toml"), r"got PosixPath: load a policy file with BreakerPolicy\.from_file"),
        (None, r"got NoneType: e\.g\. BreakerPolicy\(failure_threshold=5\), or BreakerPolicy"),
    ],
)
def test_simulate_says_what_policy_to_pass(policy: object, hint: str) -> None:
    """A policy that is not a BreakerPolicy is a TypeError naming policy and what to pass."""
    with pytest.raises(TypeError, match=r"^simulate\(\): policy must be a BreakerPolicy, " + hint):
        simulate(policy, MINUTE)  # type: ignore[arg-type]


@pytest.mark.parametrize("calls", ["calls.jsonl", Path("calls.jsonl"), b"calls.jsonl"])
def test_simulate_given_a_path_says_to_read_it(calls: object) -> None:
    """A path where the calls go: a TypeError pointing at read_calls(path)."""
    with pytest.raises(TypeError, match=r"not a path .*: read a call log with read_calls\(path\)"):
        simulate(SCENARIO_POLICY, calls)  # type: ignore[arg-type]


@pytest.mark.parametrize("seed", ["x", 1.5, True])
def test_simulate_rejects_a_seed_that_is_not_an_int(seed: object) -> None:
    """seed must be an int (or None): anything else is a TypeError naming seed."""
    with pytest.raises(TypeError, match=r"^simulate\(\): seed must be an int or None, got "):
        simulate(SCENARIO_POLICY, MINUTE, seed=seed)  # type: ignore[arg-type]


def test_calls_as_mappings_and_pairs_replay_as_calls() -> None:
    """Dicts (a call log's JSON objects) and (at, outcome) pairs are calls, duration optional."""
    expected = events(simulate(SCENARIO_POLICY, MINUTE))
    as_dicts = [
        {"at": c.at, "outcome": c.outcome, **({"duration": 0.0} if i % 2 else {})}
        for i, c in enumerate(MINUTE)
    ]
    as_pairs = [(int(c.at), c.outcome) for c in MINUTE]
    assert events(simulate(SCENARIO_POLICY, as_dicts)) == expected
    assert events(simulate(SCENARIO_POLICY, as_pairs)) == expected
    mixed: list[object] = [*as_dicts[:20], *as_pairs[20:40], *MINUTE[40:]]
    assert events(simulate(SCENARIO_POLICY, mixed)) == expected  # type: ignore[arg-type]


def test_unsorted_calls_are_sorted_stably_by_at() -> None:
    """Calls out of order replay sorted by at (equal starts keep their order), as read_calls."""
    shuffled = list(MINUTE)
    random.Random(7).shuffle(shuffled)
    assert events(simulate(SCENARIO_POLICY, shuffled)) == events(simulate(SCENARIO_POLICY, MINUTE))
    # At t=0 both calls start together: given order decides which one is the trip.
    same = BreakerPolicy(failure_threshold=1, reset_timeout=10)
    first = simulate(same, [Call(1.0, "success"), Call(0.0, "failure"), Call(0.0, "success")])
    second = simulate(same, [Call(1.0, "success"), Call(0.0, "success"), Call(0.0, "failure")])
    assert (first.ran, first.successes_refused) == (1, 2)
    assert (second.ran, second.successes_refused) == (2, 1)


def test_simulate_picks_one_breaker_from_mappings() -> None:
    """breaker= keeps one breaker's calls; several breakers and no pick is an error."""
    users = [{"at": c.at, "outcome": c.outcome, "breaker": "users"} for c in MINUTE]
    orders = [{"at": c.at + 0.5, "outcome": "failure", "breaker": "orders"} for c in MINUTE]
    both = [call for pair in zip(users, orders, strict=True) for call in pair]
    with pytest.raises(ReplayError, match=r"^the calls name 2 breakers \(users, orders\): pick "):
        simulate(SCENARIO_POLICY, both)
    expected = events(simulate(SCENARIO_POLICY, MINUTE))
    assert events(simulate(SCENARIO_POLICY, both, breaker="users")) == expected
    only_failures = simulate(SCENARIO_POLICY, both, breaker="orders")
    assert only_failures.failures_let_through == 10  # five to trip, then five failed trials
    assert events(simulate(SCENARIO_POLICY, users)) == expected  # one breaker: no pick needed
    with pytest.raises(ReplayError, match=r"^no calls of breaker 'cart' \(the calls: users, ord"):
        simulate(SCENARIO_POLICY, both, breaker="cart")
    with pytest.raises(ReplayError, match=r"^no calls of breaker 'cart' \(the calls: none names"):
        simulate(SCENARIO_POLICY, MINUTE, breaker="cart")


# --------------------------------------------------------------------------- consistency

#: What a generated call does: its outcome and how long it runs (binary-exact seconds).
call_steps = st.tuples(
    st.sampled_from([0.0, 0.0, 0.25, 0.5, 1.0, 3.0]),  # the gap since the previous call ended
    st.sampled_from(["success", "failure", "failure", "ignored"]),
    st.sampled_from([None, 0.0, 0.25, 0.75, 1.5]),
)


def run_by_hand(policy: BreakerPolicy, calls: Sequence[Call]) -> tuple[list[Transition], int, int]:
    """Drive a real enforcing breaker through ``calls`` on a FakeClock: (trail, ran, refused)."""
    clock = FakeClock()
    trail: list[Transition] = []
    breaker = CircuitBreaker(
        "replay", policy, clock=clock, sinks=[trail.append], rng=random.Random(0)
    )
    for at, outcome, duration in calls:
        clock.set(at)

        def operation(outcome: str = outcome, duration: float | None = duration) -> None:
            clock.advance(duration or 0.0)
            if outcome == "failure":
                raise ServiceError  # recorded by every policy tests.strategies draws
            if outcome == "ignored":
                raise Interrupt

        with contextlib.suppress(CircuitOpenError, ServiceError, Interrupt):
            breaker.call(operation)
    metrics = breaker.metrics()
    return trail, metrics.total_requests, metrics.rejected_count


def sequential(steps: Sequence[tuple[float, str, float | None]]) -> list[Call]:
    """Calls that each start ``gap`` seconds after the previous one ended."""
    calls = []
    now = 0.0
    for gap, outcome, duration in steps:
        now += gap
        calls.append(Call(now, outcome, duration))
        now += duration or 0.0
    return calls


#: Examples for the consistency property (two breakers and up to 60 calls each): a few ms each.
CONSISTENCY_EXAMPLES = min(500, settings.default.max_examples)
#: Examples for the simpler properties, which need fewer to cover the policies.
SIMPLE_EXAMPLES = min(200, settings.default.max_examples)


@settings(max_examples=CONSISTENCY_EXAMPLES)
@given(policies(), st.lists(call_steps, min_size=10, max_size=60))
def test_simulate_makes_the_transitions_a_real_breaker_makes(
    policy: BreakerPolicy, steps: list[tuple[float, str, float | None]]
) -> None:
    """Replaying a sequential stream gives the hand-driven breaker's trail, event for event."""
    calls = sequential(steps)
    trail, ran, refused = run_by_hand(policy, calls)
    replay = simulate(policy, calls)

    def view(records: Sequence[Transition]) -> list[tuple[object, ...]]:
        return [
            (r.seq, r.event, r.source, r.target, r.monotonic, r.reason, r.counters) for r in records
        ]

    assert view(replay.trail) == view(trail)
    assert (replay.ran, replay.refused, replay.overlapped) == (ran, refused, 0)


@settings(max_examples=CONSISTENCY_EXAMPLES)
@given(policies(), st.lists(call_steps, min_size=10, max_size=60))
def test_a_shadow_breakers_call_log_replays_to_its_own_audit_trail(
    policy: BreakerPolicy, steps: list[tuple[float, str, float | None]]
) -> None:
    """Record sequential calls through a shadow-mode breaker with a CallLogSink, replay the
    log against the same policy: the replay's transitions are the shadow breaker's trail,
    event for event, and what it refuses is what the shadow breaker would have refused."""
    clock = FakeClock()
    shadow_policy = policy.model_copy(update={"enforce": False})
    with tempfile.TemporaryDirectory() as folder:
        log = Path(folder) / "calls.jsonl"
        with CallLogSink(log) as sink:
            breaker = CircuitBreaker(
                "replay", shadow_policy, clock=clock, call_sinks=[sink], rng=random.Random(0)
            )
            for at, outcome, duration in sequential(steps):
                clock.set(at)

                def operation(outcome: str = outcome, duration: float | None = duration) -> None:
                    clock.advance(duration or 0.0)
                    if outcome == "failure":
                        raise ServiceError
                    if outcome == "ignored":
                        raise Interrupt

                with contextlib.suppress(ServiceError, Interrupt):
                    breaker.call(operation)
        calls = read_calls(log)
    replay = simulate(shadow_policy, calls)
    assert [(r.event, r.source, r.target, r.monotonic, r.reason) for r in replay.trail] == [
        (r.event, r.source, r.target, r.monotonic, r.reason) for r in breaker.audit
    ]
    metrics = breaker.metrics()
    assert metrics.rejected_count == 0
    assert replay.refused == metrics.shadow_rejected_count
    assert len(calls) == len(steps)  # every call ran and was logged


@settings(max_examples=SIMPLE_EXAMPLES)
@given(policies(), st.lists(call_steps, min_size=10, max_size=60))
def test_overlapping_calls_replay_as_a_clock_set_to_each_start(
    policy: BreakerPolicy, steps: list[tuple[float, str, float | None]]
) -> None:
    """Calls that overlap replay as a FakeClock set to each call's at (stepping back) would."""
    calls = []
    now = 0.0
    for gap, outcome, duration in steps:  # starts in order, but a call may outlast the gap
        now += gap
        calls.append(Call(now, outcome, duration))
    trail, ran, refused = run_by_hand(policy, calls)
    replay = simulate(policy, calls)
    assert [(r.event, r.monotonic, r.reason) for r in replay.trail] == [
        (r.event, r.monotonic, r.reason) for r in trail
    ]
    assert (replay.ran, replay.refused) == (ran, refused)
    ends = [call.at + (call.duration or 0.0) for call in calls]
    running_until = [max(ends[:i]) for i in range(1, len(calls))]  # the calls before each
    assert replay.overlapped == sum(
        call.at < until for call, until in zip(calls[1:], running_until, strict=True)
    )
    assert replay.end == max(ends)


@settings(max_examples=SIMPLE_EXAMPLES)
@given(policies(), st.lists(st.sampled_from(["success", "ignored"]), min_size=1, max_size=40))
def test_without_failures_nothing_is_refused(policy: BreakerPolicy, outcomes: list[str]) -> None:
    """A stream with no failure (and no slow call) never trips, so nothing is refused."""
    replay = simulate(policy, [Call(i * 0.5, outcome) for i, outcome in enumerate(outcomes)])
    assert (replay.refused, replay.trail, replay.ran) == (0, (), len(outcomes))


@settings(max_examples=SIMPLE_EXAMPLES)
@given(policies())
def test_with_only_failures_the_first_trip_comes_at_the_threshold(policy: BreakerPolicy) -> None:
    """All failures, 1 ms apart: the first trip is at the call that reaches the first rule."""
    calls = [Call(i / 1024, "failure") for i in range(20)]
    streak = policy.failure_threshold or math.inf
    rate = policy.effective_minimum_calls if policy.window is not None else math.inf
    trip_call = int(min(streak, rate)) - 1  # every window holds all 20 calls at a 100% rate
    replay = simulate(policy, calls)
    assert replay.first_trip_at == calls[trip_call].at
    assert replay.failures_let_through == trip_call + 1  # open ≥ 0.25 s: the rest refused
    assert replay.refused == len(calls) - trip_call - 1


# --------------------------------------------------------------------------- reading call logs


def test_read_calls_reads_what_callogsink_writes(tmp_path: Path) -> None:
    """JSON Lines: extra keys ignored, blank lines skipped, null duration, sorted by at."""
    path = tmp_path / "calls.jsonl"
    path.write_text(
        '{"at": 2.5, "outcome": "success", "duration": 0.25, "breaker": "users", "slow": false}\n'
        "\n"
        '{"at": 1, "outcome": "failure", "duration": null}\r\n'
        '{"at": 2.0, "outcome": "ignored"}\n'
        '{"at": 2.5, "outcome": "refused", "duration": 0}\n',
        encoding="utf-8",
    )
    assert read_calls(path) == [
        Call(1.0, "failure", None),
        Call(2.0, "ignored", None),
        Call(2.5, "success", 0.25),  # equal starts keep the file's order
        Call(2.5, "refused", 0.0),
    ]


def test_read_calls_reads_csv_with_the_same_columns(tmp_path: Path) -> None:
    """CSV: a header naming the columns in any order, empty duration cells, extra columns."""
    path = tmp_path / "calls.csv"
    path.write_text(
        "outcome,At,duration,host\nsuccess,3,0.5,a\n\nfailure,1.5,,b\n", encoding="utf-8"
    )
    assert read_calls(path) == [Call(1.5, "failure", None), Call(3.0, "success", 0.5)]
    bare = tmp_path / "bare.csv"
    bare.write_text("at,outcome\n0,success\n", encoding="utf-8")
    assert read_calls(bare) == [Call(0.0, "success", None)]
    empty = tmp_path / "empty.csv"
    empty.write_text("", encoding="utf-8")
    assert read_calls(empty) == []


def test_a_log_and_its_replay_match_the_calls(tmp_path: Path) -> None:
    """Written as JSON Lines and read back, the minute replays exactly as in memory."""
    path = write_jsonl(tmp_path / "minute.jsonl", MINUTE, breaker="users-api")
    assert read_calls(path) == MINUTE
    assert events(simulate(SCENARIO_POLICY, read_calls(path))) == events(
        simulate(SCENARIO_POLICY, MINUTE)
    )


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ('{"at": 1.0, "outcome": "success"', "not valid JSON"),
        ("[1.0, 2.0]", "not a JSON object: '[1.0, 2.0]'"),
        ('{"outcome": "success"}', "no 'at' field"),
        ("{}", "no 'at' and 'outcome' field"),
        ('{"at": "1.0", "outcome": "success"}', "'at' must be a number of seconds"),
        ('{"at": true, "outcome": "success"}', "'at' must be a number of seconds"),
        ('{"at": NaN, "outcome": "success"}', "'at' must be a number of seconds"),
        ('{"at": 1e400, "outcome": "success"}', "'at' must be a number of seconds"),
        ('{"at": 1, "outcome": "timeout"}', "'outcome' must be one of success, failure"),
        ('{"at": 1, "outcome": null}', "'outcome' must be one of success, failure"),
        ('{"at": 1, "outcome": "success", "duration": -1}', "'duration' must be null or"),
        ('{"at": 1, "outcome": "success", "duration": "1"}', "'duration' must be null or"),
        ('{"at": 1, "outcome": "success", "duration": Infinity}', "'duration' must be null or"),
        ("[[[[" * 100_000, "not valid JSON"),
    ],
    ids=lambda v: v[:40],
)
def test_a_malformed_line_names_the_file_and_line(tmp_path: Path, line: str, problem: str) -> None:
    """One error naming file and line (also as attributes), whatever is wrong with it."""
    path = tmp_path / "calls.jsonl"
    path.write_text(f'{{"at": 0, "outcome": "success"}}\n\n{line}\n', encoding="utf-8")
    with pytest.raises(ReplayError) as caught:
        read_calls(path)
    assert str(caught.value).startswith(f"{path}:3: {problem}")
    assert (caught.value.path, caught.value.line) == (str(path), 3)


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("time,outcome\n1,success\n", "1: the header row must name the 'at' and 'outcome'"),
        ("at,outcome,duration\n1,success,0\n2,success\n", "3: 2 columns, the header names 3"),
        ("at,outcome\nsoon,success\n", "2: not a number: could not convert string to float"),
        ("at,outcome,duration\n1,success,fast\n", "2: not a number"),
        ("at,outcome\n1,maybe\n", "2: 'outcome' must be one of"),
        ("at,outcome\ninf,success\n", "2: 'at' must be a number of seconds"),
        ("at,outcome,duration\n1,success,-2\n", "2: 'duration' must be null or"),
        ('at,outcome\n1,"succ"ess\n', "2: malformed CSV"),
    ],
)
def test_a_malformed_csv_row_names_the_file_and_line(
    tmp_path: Path, content: str, problem: str
) -> None:
    """CSV errors name the file and the line too."""
    path = tmp_path / "calls.csv"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ReplayError) as caught:
        read_calls(path)
    assert str(caught.value).startswith(f"{path}:{problem}")


def test_unreadable_call_logs(tmp_path: Path) -> None:
    """A missing file, a directory and bytes that are not UTF-8 each give one clear error."""
    with pytest.raises(ReplayError, match=r"missing\.jsonl: no such file$"):
        read_calls(tmp_path / "missing.jsonl")
    with pytest.raises(ReplayError, match=r": cannot read: "):
        read_calls(tmp_path)
    binary = tmp_path / "binary.jsonl"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ReplayError, match=r"binary\.jsonl: cannot read: 'utf-8' codec"):
        read_calls(binary)


def test_read_calls_picks_one_breaker_of_a_shared_log(tmp_path: Path) -> None:
    """A log of several breakers: pick one with breaker=, else an error listing the names."""
    path = tmp_path / "calls.jsonl"
    path.write_text(
        '{"at": 1, "outcome": "failure", "breaker": "users"}\n'
        '{"at": 2, "outcome": "success", "breaker": "orders"}\n'
        '{"at": 3, "outcome": "success", "breaker": "users"}\n',
        encoding="utf-8",
    )
    with pytest.raises(ReplayError) as caught:
        read_calls(path)
    assert str(caught.value) == (
        f"{path}: the calls name 2 breakers (orders, users): pick one with breaker=NAME "
        "(--breaker NAME on the command line)"
    )
    assert read_calls(path, breaker="users") == [Call(1.0, "failure"), Call(3.0, "success")]
    assert read_calls(path, breaker="orders") == [Call(2.0, "success")]
    with pytest.raises(
        ReplayError, match=r": no calls of breaker 'cart' \(the calls name orders, "
    ):
        read_calls(path, breaker="cart")
    csv_path = tmp_path / "calls.csv"
    csv_path.write_text("at,outcome,breaker\n1,success,a\n2,failure,b\n3,success\n", "utf-8")
    assert read_calls(csv_path, breaker="b") == [Call(2.0, "failure")]
    with pytest.raises(ReplayError, match=r"the calls name 2 breakers \(a, b\)"):
        read_calls(csv_path)


def test_read_calls_reads_a_csv_with_a_byte_order_mark(tmp_path: Path) -> None:
    """Excel's UTF-8 CSV starts with a BOM: the first column is still 'at'."""
    path = tmp_path / "excel.csv"
    path.write_bytes(b"\xef\xbb\xbfat,outcome\r\n1,success\r\n")
    assert read_calls(path) == [Call(1.0, "success")]


def test_an_audit_trail_is_not_a_call_log(tmp_path: Path) -> None:
    """A trail given as calls is named for what it is, at its first line."""
    trail = write_trail(tmp_path / "trail.jsonl")
    with pytest.raises(ReplayError) as caught:
        read_calls(trail)
    assert str(caught.value) == (
        f"{trail}:1: this looks like an audit trail (it has seq/event), not a call log"
    )


def test_read_calls_wants_a_path() -> None:
    """Calls where a path goes are a TypeError, not an obscure one from pathlib."""
    with pytest.raises(TypeError, match=r"^read_calls\(\) takes a path \(str or Path\), got list"):
        read_calls(MINUTE)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- explain


def test_explain_says_when_the_default_policy_trips_and_recovers() -> None:
    """The default policy in words, with nothing to warn about."""
    explanation = explain(BreakerPolicy())
    assert explanation.trips == "after 5 consecutive failures"
    assert explanation.recovers == (
        "stays open 30 s; then 1 trial call is admitted, and it recovers when it succeeds "
        "(a failed trial reopens it)"
    )
    assert explanation.warnings == ()
    assert str(explanation).splitlines() == [
        "Trips after 5 consecutive failures.",
        f"Recovers: {explanation.recovers}.",
    ]


def test_explain_covers_every_rule() -> None:
    """Windows, rates, minimum calls, slow calls, backoff, jitter and half-open, in words."""
    explanation = explain(
        BreakerPolicy(
            failure_threshold=1,
            window=TimeWindow(seconds=30),
            failure_rate_threshold=0.25,
            minimum_calls=1,
            slow_call_duration=2,
            slow_call_rate_threshold=0.8,
            reset_timeout=5,
            reset_timeout_multiplier=1.5,
            max_reset_timeout=60,
            reset_timeout_jitter=0.1,
            success_threshold=3,
            half_open_max_calls=4,
            half_open_timeout=7,
        )
    )
    assert explanation.trips == (
        "on the first failure, or when ≥ 25% of the calls of the last 30 s fail, once at least "
        "1 has been seen, or when ≥ 80% of them take longer than 2 s"
    )
    assert explanation.recovers == (
        "stays open 5 s, multiplied by 1.5 after each retrip to at most 60 s (± 10% jitter); "
        "then 4 trial calls are admitted, and it recovers when 3 succeed (a failed trial "
        "reopens it); a half-open episode undecided after 7 s reopens"
    )
    assert explanation.warnings == ()
    window_only = explain(
        BreakerPolicy(failure_threshold=None, window=CountWindow(size=1), half_open_max_calls=2)
    )
    assert window_only.trips == "when ≥ 50% of the last call fail, once at least 1 has been seen"
    assert "2 trial calls are admitted, and it recovers on the first success" in (
        window_only.recovers
    )


@pytest.mark.parametrize(
    ("policy", "warning"),
    [
        (
            BreakerPolicy(window=CountWindow(size=5), minimum_calls=20),
            "minimum_calls (20) is larger than the window (5 calls): rates are judged from 5 calls",
        ),
        (
            BreakerPolicy(window=CountWindow(size=50), slow_call_rate_threshold=0.5),
            "slow_call_rate_threshold is set but slow_call_duration is not: the slow-call rule "
            "is off and never trips",
        ),
        (
            BreakerPolicy(failure_rate_threshold=0.2),
            "failure_rate_threshold has no effect without a window",
        ),
        (
            BreakerPolicy(minimum_calls=3, slow_call_rate_threshold=0.5),
            "minimum_calls and slow_call_rate_threshold have no effect without a window",
        ),
        (
            BreakerPolicy(ignore_exceptions=("Exception",)),
            "no exception counts as a failure (record_exceptions is empty or every type in it "
            "is ignored): it never trips on exceptions",
        ),
        (
            BreakerPolicy(record_exceptions=()),
            "no exception counts as a failure (record_exceptions is empty or every type in it "
            "is ignored): it never trips on exceptions",
        ),
        (
            BreakerPolicy(reset_timeout_multiplier=2),
            "the open duration grows without limit (reset_timeout_multiplier without "
            "max_reset_timeout): after a long outage it may in effect never recover",
        ),
    ],
)
def test_explain_warns_about_rules_that_never_fire(policy: BreakerPolicy, warning: str) -> None:
    """Each likely mistake gets its warning, and only that one."""
    assert explain(policy).warnings == (warning,)
    assert str(explain(policy)).splitlines()[-1] == f"Warning: {warning}"


# --------------------------------------------------------------------------- the plot


@pytest.mark.parametrize("suffix", [".png", ".svg"])
def test_plot_writes_a_real_image(tmp_path: Path, suffix: str) -> None:
    """One panel per policy, as PNG (magic bytes) or SVG (an <svg> XML document)."""
    pytest.importorskip("matplotlib")
    path = tmp_path / f"timeline{suffix}"
    calls = [*MINUTE, Call(59.5, "ignored"), Call(59.75, "refused")]  # not in the rate
    replays = [
        simulate(SCENARIO_POLICY, calls),
        simulate(BreakerPolicy(failure_threshold=3), calls),
    ]
    plot(path, calls, replays, labels=["strict.toml", "lenient.toml"])
    data = path.read_bytes()
    if suffix == ".png":
        assert data.startswith(PNG_MAGIC)
    else:
        root = ET.fromstring(data)
        assert root.tag == "{http://www.w3.org/2000/svg}svg"
        assert b"strict.toml: refused 18 of 61" in data  # the ignored call ran
        assert b"lenient.toml" in data


def test_plot_with_no_calls_and_default_labels(tmp_path: Path) -> None:
    """No calls replayed still draws (empty panels), labelled policy 1, policy 2, ..."""
    pytest.importorskip("matplotlib")
    path = tmp_path / "empty.svg"
    plot(path, [], [simulate(SCENARIO_POLICY, [Call(0.0, "refused")])])
    assert b"policy 1: refused 0 of 0" in path.read_bytes()


# --------------------------------------------------------------------------- the command line


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    """The minute as a call log, and two candidate policies (JSON and TOML)."""
    strict = tmp_path / "strict.json"
    strict.write_text('{"failure_threshold": 5, "reset_timeout": 10}', encoding="utf-8")
    lenient = tmp_path / "lenient.toml"
    lenient.write_text("failure_threshold = 30\n", encoding="utf-8")
    return {
        "calls": write_jsonl(tmp_path / "calls.jsonl", MINUTE, breaker="users-api"),
        "strict": strict,
        "lenient": lenient,
    }


def test_simulate_prints_one_row_per_policy(files: dict[str, Path]) -> None:
    """A plain table, one row per --policy in order, with the trade-off columns."""
    result = invoke_cli(
        "simulate", files["calls"], "-p", files["strict"], "--policy", files["lenient"]
    )
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    header = (
        "policy|calls|ran|refused|trips|retrips|recovers|first trip|open s|"
        "failures let through|successes refused"
    )
    assert re.split(r"\s{2,}", lines[0].strip()) == header.split("|")
    strict = [str(files["strict"]), "60", "42", "18", "1", "1", "1", "+14s", "20", "6", "4"]
    lenient = [str(files["lenient"]), "60", "60", "0", "0", "0", "0", "-", "0", "20", "0"]
    assert [lines[1].split(), lines[2].split()] == [strict, lenient]
    assert len(lines) == 3


def test_simulate_json_keeps_the_policy_order_and_paths_as_given(files: dict[str, Path]) -> None:
    """--json: a list in --policy order, each naming its policy file as given."""
    result = invoke_cli(
        "simulate", files["calls"], "-p", files["lenient"], "-p", files["strict"], "--json"
    )
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [row["policy"] for row in rows] == [str(files["lenient"]), str(files["strict"])]
    strict = rows[1]
    assert strict == {
        "policy": str(files["strict"]),
        "calls": 60,
        "ran": 42,
        "refused": 18,
        "skipped": 0,
        "overlapped": 0,
        "transitions": {"trip": 1, "attempt_reset": 2, "retrip": 1, "recover": 1},
        "first_trip_at": 14.0,
        "first_trip_after": 14.0,
        "open_seconds": 20.0,
        "failures_let_through": 6,
        "successes_refused": 4,
        "start": 0.0,
        "end": 59.0,
    }


def test_simulate_notes_skipped_and_overlapping_calls(
    files: dict[str, Path], tmp_path: Path
) -> None:
    """Calls recorded as refused and calls that overlapped are noted under the table."""
    calls = write_jsonl(
        tmp_path / "odd.jsonl",
        [Call(0.0, "success", 2.0), Call(1.0, "success"), Call(3.0, "refused")],
    )
    result = invoke_cli("simulate", calls, "-p", files["strict"], "--seed", "3")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[-2:] == [
        "note: 1 call recorded as refused skipped (outcome unknown)",
        "note: 1 call started while an earlier call was still running (replayed one after "
        "another, each at its own start)",
    ]


def test_simulate_draws_a_rich_table_on_a_terminal(files: dict[str, Path], tmp_path: Path) -> None:
    """On a terminal the table is rich's, notes included."""
    calls = write_jsonl(tmp_path / "c.jsonl", [*MINUTE, Call(60.0, "refused")])
    result = invoke_cli(
        "simulate", calls, "-p", files["strict"], env={"FORCE_COLOR": "1", "COLUMNS": "200"}
    )
    assert result.exit_code == 0, result.output
    assert "─" * 20 in result.stdout  # rich's rule under the headings
    assert "successes" in result.stdout
    assert "note: 1 call recorded as refused skipped" in result.stdout


@pytest.mark.parametrize("columns", [80, 100])
def test_the_terminal_table_fits_and_shows_every_path_whole(
    files: dict[str, Path], tmp_path: Path, columns: int
) -> None:
    """At 80 and 100 columns nothing is cut short: paths whole above, every heading whole."""
    deep = tmp_path / "some" / "very" / "long" / "directory" / "for" / "the" / "policies"
    deep.mkdir(parents=True)
    long_name = deep / "a-candidate-policy-with-a-long-name.json"
    long_name.write_text(files["strict"].read_text("utf-8"), encoding="utf-8")
    result = invoke_cli(
        "simulate",
        files["calls"],
        "-p",
        long_name,
        "-p",
        files["lenient"],
        env={"FORCE_COLOR": "1", "COLUMNS": str(columns)},
    )
    assert result.exit_code == 0, result.output
    text = re.sub(r"\x1b\[[0-9;]*m", "", result.stdout)
    assert "…" not in text
    assert max(map(len, text.splitlines())) <= columns
    unfolded = text.replace("\n", "")  # a path longer than a line is folded, never cut
    assert f"1: {long_name}" in unfolded
    assert f"2: {files['lenient']}" in unfolded
    for heading in ("calls", "refused", "retrips", "recovers", "failures", "successes"):
        assert heading in text
    rows = [line.split() for line in text.splitlines() if line[:1] in ("1", "2")]
    assert rows == [
        ["1", "60", "42", "18", "1", "1", "1", "+14s", "20", "6", "4"],
        ["2", "60", "60", "0", "0", "0", "0", "-", "0", "20", "0"],
    ]


def test_simulate_bad_inputs_print_one_error_and_nothing_else(
    files: dict[str, Path], tmp_path: Path
) -> None:
    """A malformed line, a bad or missing policy: one Error line naming the file, exit 1."""
    broken = tmp_path / "broken.jsonl"
    broken.write_text(
        files["calls"].read_text("utf-8") + '{"at": 61, "outcome": "maybe"}\n', encoding="utf-8"
    )
    bad_policy = tmp_path / "bad.json"
    bad_policy.write_text('{"failure_threshold": 0}', encoding="utf-8")
    cases = [
        (
            [broken, "-p", files["strict"]],
            f"Error: {broken}:61: 'outcome' must be one of success, failure, ignored, refused, "
            "got 'maybe'",
        ),
        ([tmp_path / "none.jsonl", "-p", files["strict"]], f"Error: {tmp_path}/none.jsonl: no"),
        ([files["calls"], "-p", files["strict"], "-p", tmp_path / "nope.toml"], "Error: "),
        ([files["calls"], "-p", bad_policy], f"Error: {bad_policy}: invalid policy, 1 error"),
    ]
    for args, error in cases:
        result = invoke_cli("simulate", *args)
        assert result.exit_code == 1, result.output
        assert result.stdout == ""
        assert result.stderr.startswith(error), result.stderr
    assert (
        "nope.toml: no such file"
        in invoke_cli("simulate", files["calls"], "-p", tmp_path / "nope.toml").stderr
    )


def test_simulate_picks_a_breaker_with_breaker(files: dict[str, Path], tmp_path: Path) -> None:
    """--breaker picks one breaker of a shared log; without it the names found are listed."""
    shared = tmp_path / "shared.jsonl"
    orders = [Call(c.at + 0.5, "failure") for c in MINUTE]
    shared.write_text(
        files["calls"].read_text("utf-8")
        + write_jsonl(tmp_path / "o.jsonl", orders, breaker="orders").read_text("utf-8"),
        encoding="utf-8",
    )
    line = one_error_line(breaker_fsm("simulate", shared, "-p", files["strict"]))
    assert line == (
        f"Error: {shared}: the calls name 2 breakers (orders, users-api): pick one with "
        "breaker=NAME (--breaker NAME on the command line)"
    )
    alone = invoke_cli("simulate", files["calls"], "-p", files["strict"], "--json")
    picked = invoke_cli(
        "simulate", shared, "-p", files["strict"], "--breaker", "users-api", "--json"
    )
    assert picked.exit_code == 0, picked.output
    assert json.loads(picked.stdout) == json.loads(alone.stdout)
    other = invoke_cli("simulate", shared, "-p", files["strict"], "-b", "orders", "--json")
    assert json.loads(other.stdout)[0]["failures_let_through"] == 10


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("empty.jsonl", b""),
        ("blank.jsonl", b"\n\n"),
        ("empty.csv", b""),
        ("head.csv", b"at,outcome\n"),
    ],
)
def test_simulate_on_a_log_without_calls_says_so(
    files: dict[str, Path], tmp_path: Path, name: str, content: bytes
) -> None:
    """An empty JSONL, a 0-byte CSV or a header-only CSV: 'no calls in FILE', exit 1."""
    path = tmp_path / name
    path.write_bytes(content)
    result = invoke_cli("simulate", path, "-p", files["strict"])
    assert (result.exit_code, result.stdout) == (1, "")
    assert result.stderr == f"Error: no calls in {path}\n"


def test_simulate_reads_the_policy_from_a_section(files: dict[str, Path], tmp_path: Path) -> None:
    """--section reads each policy from a table; without it a pyproject-like file gets a hint."""
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text(
        '[project]\nname = "svc"\n[tool.breaker_fsm]\nfailure_threshold = 5\nreset_timeout = 10\n',
        encoding="utf-8",
    )
    hinted = invoke_cli("simulate", files["calls"], "-p", pyproject)
    assert hinted.exit_code == 1
    assert hinted.stderr.splitlines()[-1] == (
        "  hint: is the policy in a table? Pass --section tool.breaker_fsm"
    )
    read = invoke_cli(
        "simulate", files["calls"], "-p", pyproject, "--section", "tool.breaker_fsm", "--json"
    )
    strict = invoke_cli("simulate", files["calls"], "-p", files["strict"], "--json")
    assert read.exit_code == 0, read.output
    assert [row["refused"] for row in json.loads(read.stdout)] == [18]
    assert json.loads(read.stdout)[0] | {"policy": ""} == json.loads(strict.stdout)[0] | {
        "policy": ""
    }
    checked = invoke_cli("policy", "check", pyproject)
    assert "Pass --section tool.breaker_fsm" in checked.stderr


def test_simulate_names_every_bad_policy(files: dict[str, Path], tmp_path: Path) -> None:
    """Two bad --policy files: both are reported, in order, then nothing else."""
    zero = tmp_path / "zero.json"
    zero.write_text('{"failure_threshold": 0}', encoding="utf-8")
    result = invoke_cli(
        "simulate", files["calls"], "-p", zero, "-p", files["strict"], "-p", tmp_path / "no.toml"
    )
    assert (result.exit_code, result.stdout) == (1, "")
    lines = result.stderr.splitlines()
    assert lines[0] == f"Error: {zero}: invalid policy, 1 error"
    assert lines[-1] == f"{tmp_path / 'no.toml'}: no such file"


def test_simulate_given_an_audit_trail_says_so(files: dict[str, Path], tmp_path: Path) -> None:
    """An audit trail passed as the call log: one error saying what it looks like."""
    trail = write_trail(tmp_path / "trail.jsonl")
    line = one_error_line(breaker_fsm("simulate", trail, "-p", files["strict"]))
    assert line == (
        f"Error: {trail}:1: this looks like an audit trail (it has seq/event), not a call log"
    )


def test_simulate_json_rounds_float_noise(tmp_path: Path) -> None:
    """Seconds with float noise (10.299999999999955) print rounded; first_trip_at absolute."""
    calls = [Call(1000.0 + i * 0.1, "failure", 0.1) for i in range(3)]
    calls += [Call(1000.0 + 104 * 0.1 + i * 0.1, "success", 0.1) for i in range(3)]
    path = write_jsonl(tmp_path / "noisy.jsonl", calls)
    policy = tmp_path / "once.json"
    policy.write_text('{"failure_threshold": 1, "reset_timeout": 10}', encoding="utf-8")
    raw = simulate(BreakerPolicy.from_file(policy), read_calls(path))
    assert raw.open_seconds == 10.299999999999955  # the noise there is to round
    row = json.loads(invoke_cli("simulate", path, "-p", policy, "--json").stdout)[0]
    assert (row["open_seconds"], row["start"], row["end"]) == (10.3, 1000.0, 1010.7)
    assert (row["first_trip_at"], row["first_trip_after"]) == (1000.1, 0.1)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["calls.jsonl"], "Missing option '-p' / '--policy'"),
        (["-p", "a.json"], "Missing argument 'CALLS'"),
        (["calls.jsonl", "-p", "a.json", "--plot", "out.pdf"], "--plot writes .png or .svg"),
        (["calls.jsonl", "-p", "a.json", "--seed", "x"], "'x' is not a valid integer"),
    ],
)
def test_simulate_usage_errors_exit_2(args: list[str], message: str) -> None:
    """Usage errors exit 2 with a message, as every command does."""
    result = invoke_cli("simulate", *args)
    assert result.exit_code == 2
    assert message in result.stderr


def test_simulate_plot_writes_the_image_via_the_console_script(files: dict[str, Path]) -> None:
    """The real console script writes a PNG with --plot and still prints the table."""
    pytest.importorskip("matplotlib")
    out = files["calls"].parent / "timeline.png"
    done = breaker_fsm(
        "simulate", files["calls"], "-p", files["strict"], "-p", files["lenient"], "--plot", out
    )
    assert done.returncode == 0, done.stderr
    assert out.read_bytes().startswith(PNG_MAGIC)
    assert done.stderr == f"wrote {out}\n"
    assert len(done.stdout.splitlines()) == 3


def test_simulate_plot_without_matplotlib_says_how_to_install_it(
    files: dict[str, Path], tmp_path: Path
) -> None:
    """Without matplotlib, --plot is one error with the install hint; nothing else printed."""
    shadow = tmp_path / "shadow" / "matplotlib"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'matplotlib'\", name='matplotlib')\n"
    )
    out = tmp_path / "timeline.svg"
    done = breaker_fsm(
        "simulate",
        files["calls"],
        "-p",
        files["strict"],
        "--plot",
        out,
        env={"PYTHONPATH": str(tmp_path / "shadow")},
    )
    assert done.returncode == 1
    assert done.stderr == ("Error: plotting needs matplotlib: pip install 'breaker-fsm[plot]'\n")
    assert done.stdout == ""
    assert not out.exists()


def test_simulate_plot_unwritable_is_one_error(files: dict[str, Path], tmp_path: Path) -> None:
    """An output in a missing folder fails with one line naming it, before any table."""
    pytest.importorskip("matplotlib")
    out = tmp_path / "no" / "such" / "timeline.svg"
    result = invoke_cli("simulate", files["calls"], "-p", files["strict"], "--plot", out)
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.startswith(f"Error: {out}: cannot write: ")


def test_policy_explain_prints_words_and_warnings(tmp_path: Path) -> None:
    """policy explain: trips and recovery in words, wrapped, then any warning; exit 0."""
    path = tmp_path / "pyproject.toml"
    path.write_text(
        "[tool.breaker_fsm]\nfailure_threshold = 3\nreset_timeout = 5\n"
        "reset_timeout_multiplier = 2\n",
        encoding="utf-8",
    )
    result = invoke_cli("policy", "explain", path, "--section", "tool.breaker_fsm")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        "Trips after 3 consecutive failures.",
        "Recovers: stays open 5 s, doubling after each retrip without limit; then 1 trial call is",
        "  admitted, and it recovers when it succeeds (a failed trial reopens it).",
        "Warning: the open duration grows without limit (reset_timeout_multiplier without",
        "  max_reset_timeout): after a long outage it may in effect never recover.",
    ]


def test_policy_explain_bad_file_is_one_error(tmp_path: Path) -> None:
    """A policy file that does not load fails as policy check does."""
    path = tmp_path / "policy.yaml"
    path.write_text("failure_threshold: 3\n", encoding="utf-8")
    result = invoke_cli("policy", "explain", path)
    assert result.exit_code == 1
    assert result.stderr == f"Error: {path}: unknown policy file type: use .json or .toml\n"


@pytest.mark.parametrize("command", [["simulate"], ["policy", "explain"]])
def test_help_of_the_replay_commands(command: list[str]) -> None:
    """--help works on the new commands, exit 0, via the real console script."""
    done = breaker_fsm(*command, "--help")
    assert done.returncode == 0
    assert done.stdout.startswith(f"Usage: breaker-fsm {' '.join(command)}")


# --------------------------------------------------------------------------- the module surface


def test_replay_all_is_complete() -> None:
    """replay's __all__ names every public object of it and its parts (ruff sorts it)."""
    from breaker_fsm import _explain, _replay_calls, _replay_plot, replay

    parts = (replay, _replay_calls, _replay_plot, _explain)
    defined = {
        name
        for part in parts
        for name, value in vars(part).items()
        if not name.startswith("_") and getattr(value, "__module__", None) == part.__name__
    }
    assert {"Call", "Explanation", "Replay", "explain", "plot", "read_calls"} <= defined
    assert defined <= set(replay.__all__)
    assert {"EVENTS", "MAX_SECONDS", "OUTCOMES", "ReplayError"} <= set(replay.__all__)
    for name in replay.__all__:
        assert hasattr(replay, name), name


def test_replay_works_without_matplotlib() -> None:
    """Importing replay and simulating loads no matplotlib; plot says what to install."""
    code = textwrap.dedent(
        """
        import sys

        class Block:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] == "matplotlib":
                    raise ImportError(f"blocked {name}")
                return None

        sys.meta_path.insert(0, Block())
        from breaker_fsm import BreakerPolicy
        from breaker_fsm.replay import Call, plot, simulate
        replay = simulate(BreakerPolicy(failure_threshold=1), [Call(0.0, "failure")])
        assert replay.transitions["trip"] == 1
        try:
            plot("out.png", [], [replay])
        except ImportError as exc:
            print(exc)
        assert "matplotlib" not in sys.modules
        """
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "plotting needs matplotlib: pip install 'breaker-fsm[plot]'\n"
