"""BreakerPolicy: defaults, validation, conversions, loading, guards and backoff."""

from __future__ import annotations

import json
import os
import random
from datetime import timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError

from breaker_fsm import BreakerPolicy, BreakerStats, CountWindow, PolicyFileError, TimeWindow


def _field_errors(exc: pytest.ExceptionInfo[ValidationError]) -> set[str]:
    return {".".join(str(p) for p in e["loc"]) for e in exc.value.errors()}


def test_defaults_are_the_readme_policy_table() -> None:
    """The six core fields have the defaults the README's policy table states."""
    p = BreakerPolicy()
    assert p.failure_threshold == 5
    assert p.reset_timeout == 30.0
    assert p.success_threshold == 1
    assert p.half_open_max_calls == 1
    assert p.record_exceptions == (Exception,)
    assert p.ignore_exceptions == ()
    assert p.window is None


def test_policy_is_frozen_and_hashable() -> None:
    """A policy is an immutable value: assignment fails, equal policies hash alike."""
    p = BreakerPolicy(failure_threshold=3)
    with pytest.raises(ValidationError):
        p.failure_threshold = 4  # type: ignore[misc]
    assert hash(p) == hash(BreakerPolicy(failure_threshold=3))


def test_timedelta_is_accepted_for_durations() -> None:
    """Every duration field accepts a timedelta and stores seconds."""
    p = BreakerPolicy(
        reset_timeout=timedelta(milliseconds=1500),
        max_reset_timeout=timedelta(minutes=1),
        half_open_timeout=timedelta(seconds=2),
        window=CountWindow(size=5),
        slow_call_duration=timedelta(milliseconds=250),
    )
    assert (p.reset_timeout, p.max_reset_timeout, p.half_open_timeout) == (1.5, 60.0, 2.0)
    assert p.slow_call_duration == 0.25


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"failure_threshold": 0}, "failure_threshold"),
        ({"failure_threshold": -1}, "failure_threshold"),
        ({"reset_timeout": 0}, "reset_timeout"),
        ({"reset_timeout": -5}, "reset_timeout"),
        ({"reset_timeout": float("inf")}, "reset_timeout"),
        ({"success_threshold": 0}, "success_threshold"),
        ({"half_open_max_calls": 0}, "half_open_max_calls"),
        ({"failure_threshold": "many"}, "failure_threshold"),
        ({"nonsense": 1}, "nonsense"),
        ({"record_exceptions": ["no.such.module.Error"]}, "record_exceptions.0"),
        ({"record_exceptions": ["os.path"]}, "record_exceptions.0"),
        ({"record_exceptions": ["KeyboardInterrupt"]}, "record_exceptions.0"),
        ({"ignore_exceptions": [42]}, "ignore_exceptions.0"),
        ({"failure_rate_threshold": 0}, "failure_rate_threshold"),
        ({"failure_rate_threshold": 1.5}, "failure_rate_threshold"),
        ({"slow_call_rate_threshold": 0}, "slow_call_rate_threshold"),
        ({"minimum_calls": 0}, "minimum_calls"),
        ({"window": {"kind": "count", "size": 0}}, "window.count.size"),
        ({"window": {"kind": "time", "seconds": 0}}, "window.time.seconds"),
        ({"window": {"kind": "fixed"}}, "window"),
        ({"reset_timeout_multiplier": 0.5}, "reset_timeout_multiplier"),
        ({"reset_timeout": 10, "max_reset_timeout": 5}, "max_reset_timeout"),
        ({"reset_timeout_jitter": -0.1}, "reset_timeout_jitter"),
        ({"reset_timeout_jitter": 1.0}, "reset_timeout_jitter"),
        ({"half_open_timeout": 0}, "half_open_timeout"),
        ({"slow_call_duration": 1.0}, "slow_call_duration"),
    ],
)
def test_invalid_values_name_the_field(kwargs: dict[str, object], field: str) -> None:
    """Each invalid value raises ValidationError whose location names the field."""
    with pytest.raises(ValidationError) as exc:
        BreakerPolicy.model_validate(kwargs)
    assert field in _field_errors(exc)


def test_half_open_calls_must_cover_success_threshold() -> None:
    """half_open_max_calls below success_threshold is refused, also when left at its default."""
    with pytest.raises(ValidationError) as exc:
        BreakerPolicy(success_threshold=3, half_open_max_calls=2)
    assert "half_open_max_calls" in str(exc.value)
    with pytest.raises(ValidationError) as exc:
        BreakerPolicy(success_threshold=2)
    assert "half_open_max_calls" in _field_errors(exc)
    assert BreakerPolicy(success_threshold=2, half_open_max_calls=2).half_open_max_calls == 2


def test_all_rules_off_is_refused() -> None:
    """Turning off the consecutive rule without a window leaves no rule: an error."""
    with pytest.raises(ValidationError) as exc:
        BreakerPolicy(failure_threshold=None)
    assert "window" in _field_errors(exc)
    assert "no trip rule" in str(exc.value)
    assert BreakerPolicy(failure_threshold=None, window=CountWindow()).failure_threshold is None


def test_dotted_exception_names_resolve_and_round_trip() -> None:
    """Exception classes load from dotted names and serialise back to them."""
    p = BreakerPolicy(
        record_exceptions=["OSError", "json.JSONDecodeError"], ignore_exceptions="KeyError"
    )
    assert p.record_exceptions == (OSError, json.JSONDecodeError)
    assert p.ignore_exceptions == (KeyError,)
    dumped = json.loads(p.model_dump_json())
    assert dumped["record_exceptions"] == ["OSError", "json.decoder.JSONDecodeError"]
    assert BreakerPolicy.model_validate_json(p.model_dump_json()) == p


def test_json_round_trip_with_windows() -> None:
    """A policy with every field set survives a JSON round trip unchanged."""
    p = BreakerPolicy(
        failure_threshold=None,
        window=TimeWindow(seconds=30),
        failure_rate_threshold=0.25,
        minimum_calls=4,
        slow_call_duration=0.5,
        slow_call_rate_threshold=0.75,
        reset_timeout_multiplier=2,
        max_reset_timeout=120,
        reset_timeout_jitter=0.1,
        half_open_timeout=3,
    )
    assert BreakerPolicy.model_validate_json(p.model_dump_json()) == p


def test_window_loads_from_config_dicts() -> None:
    """The window is a discriminated union: a plain dict picks its kind."""
    assert BreakerPolicy.model_validate({"window": {"kind": "count", "size": 7}}).window == (
        CountWindow(size=7)
    )
    assert BreakerPolicy.model_validate({"window": {"kind": "time"}}).window == TimeWindow()


def test_json_schema_exports() -> None:
    """The JSON Schema covers every field and describes exceptions as strings."""
    schema = BreakerPolicy.model_json_schema()
    assert set(schema["properties"]) == set(BreakerPolicy.model_fields)
    assert schema["additionalProperties"] is False
    items = schema["properties"]["record_exceptions"]["items"]
    assert items["type"] == "string"


def test_minimum_calls_capped_by_count_window() -> None:
    """A count window smaller than minimum_calls caps the minimum at its size."""
    assert BreakerPolicy(window=CountWindow(size=4)).effective_minimum_calls == 4
    assert BreakerPolicy(window=TimeWindow(seconds=4)).effective_minimum_calls == 10


# ----------------------------------------------------------------------------- loading


def test_from_file_json_and_toml(tmp_path: Path) -> None:
    """JSON and TOML files load into equal policies."""
    (tmp_path / "p.json").write_text('{"failure_threshold": 2, "reset_timeout": 1.5}')
    (tmp_path / "p.toml").write_text("failure_threshold = 2\nreset_timeout = 1.5\n")
    assert BreakerPolicy.from_file(tmp_path / "p.json") == BreakerPolicy.from_file(
        str(tmp_path / "p.toml")
    )


def test_from_file_section(tmp_path: Path) -> None:
    """A dotted section selects a table inside a larger file such as pyproject.toml."""
    path = tmp_path / "pyproject.toml"
    path.write_text("[tool.breaker_fsm]\nfailure_threshold = 9\n[tool.other]\nx = 1\n")
    assert BreakerPolicy.from_file(path, section="tool.breaker_fsm").failure_threshold == 9
    with pytest.raises(PolicyFileError, match=r"no \[tool.missing\] table"):
        BreakerPolicy.from_file(path, section="tool.missing")


def test_from_file_missing_names_the_file(tmp_path: Path) -> None:
    """A missing file raises PolicyFileError naming it."""
    with pytest.raises(PolicyFileError) as exc:
        BreakerPolicy.from_file(tmp_path / "absent.json")
    assert "absent.json" in str(exc.value)
    assert "no such file" in str(exc.value)


def test_from_file_unknown_suffix(tmp_path: Path) -> None:
    """Only .json and .toml are policy files."""
    with pytest.raises(PolicyFileError, match="unknown policy file type"):
        BreakerPolicy.from_file(tmp_path / "p.yaml")


@pytest.mark.skipif(os.geteuid() == 0, reason="root can read any file")
def test_from_file_unreadable(tmp_path: Path) -> None:
    """An unreadable file raises PolicyFileError naming it."""
    path = tmp_path / "p.json"
    path.write_text("{}")
    path.chmod(0)
    with pytest.raises(PolicyFileError, match="cannot read"):
        BreakerPolicy.from_file(path)


def test_from_file_directory_is_unreadable(tmp_path: Path) -> None:
    """A directory in place of the file is reported as unreadable, naming the path."""
    path = tmp_path / "dir.json"
    path.mkdir()
    with pytest.raises(PolicyFileError, match=r"dir\.json: cannot read"):
        BreakerPolicy.from_file(path)


def test_from_file_not_utf8(tmp_path: Path) -> None:
    """Bytes that are not UTF-8 are reported, not raised as UnicodeDecodeError."""
    path = tmp_path / "p.toml"
    path.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(PolicyFileError, match="cannot read"):
        BreakerPolicy.from_file(path)


@pytest.mark.parametrize(
    ("name", "text", "line"),
    [
        ("p.json", '{\n  "failure_threshold": 3,\n  oops\n}', 3),
        ("p.toml", "failure_threshold = 3\nreset_timeout = = 2\n", 2),
    ],
    ids=["json", "toml"],
)
def test_from_file_malformed_names_the_line(
    tmp_path: Path, name: str, text: str, line: int
) -> None:
    """Malformed JSON or TOML reports the file and the parser's line number."""
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(PolicyFileError) as exc:
        BreakerPolicy.from_file(path)
    assert exc.value.line == line
    assert f"{path}:{line}" in str(exc.value)


def test_from_file_invalid_values_are_titled_with_the_file(tmp_path: Path) -> None:
    """Invalid values raise ValidationError naming the field and titled with the file."""
    path = tmp_path / "p.toml"
    path.write_text("failure_threshold = 0\nunknown = 1\n")
    with pytest.raises(ValidationError) as exc:
        BreakerPolicy.from_file(path)
    assert str(path) in exc.value.title
    assert _field_errors(exc) == {"failure_threshold", "unknown"}


def test_from_env_reads_prefixed_variables() -> None:
    """Prefixed variables, case-insensitive, with JSON or plain values, make a policy."""
    env = {
        "APP_BREAKER_FAILURE_THRESHOLD": "4",
        "app_breaker_reset_timeout": "2.5",
        "APP_BREAKER_RECORD_EXCEPTIONS": '["OSError", "TimeoutError"]',
        "APP_BREAKER_MAX_RESET_TIMEOUT": "null",
        "UNRELATED": "x",
    }
    p = BreakerPolicy.from_env("APP_BREAKER_", environ=env)
    assert (p.failure_threshold, p.reset_timeout) == (4, 2.5)
    assert p.record_exceptions == (OSError, TimeoutError)
    assert p.max_reset_timeout is None


def test_from_env_uses_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without an explicit mapping the process environment is read."""
    monkeypatch.setenv("BREAKER_SUCCESS_THRESHOLD", "2")
    monkeypatch.setenv("BREAKER_HALF_OPEN_MAX_CALLS", "3")
    p = BreakerPolicy.from_env()
    assert (p.success_threshold, p.half_open_max_calls) == (2, 3)


def test_from_env_unknown_variable_is_an_error() -> None:
    """A prefixed variable that names no field is refused, naming it."""
    with pytest.raises(ValidationError) as exc:
        BreakerPolicy.from_env(environ={"BREAKER_FAILURE_TRESHOLD": "3"})
    assert "BREAKER_FAILURE_TRESHOLD" in _field_errors(exc)
    assert "environment" in exc.value.title


# ----------------------------------------------------------------------------- guards


def test_consecutive_rule_is_inclusive() -> None:
    """The streak trips exactly when it reaches the threshold."""
    p = BreakerPolicy(failure_threshold=3)
    assert not p.failure_threshold_reached(BreakerStats(now=0, consecutive_failures=2))
    assert p.failure_threshold_reached(BreakerStats(now=0, consecutive_failures=3))
    assert p.trip_reason(BreakerStats(now=0, consecutive_failures=3)) == (
        "3 consecutive failures ≥ 3"
    )
    assert not p.failure_threshold_reached(None)


def test_a_policy_without_a_window_ignores_window_figures() -> None:
    """Without a window no rate rule applies, whatever window figures the stats carry."""
    p = BreakerPolicy(failure_threshold=3, minimum_calls=1)
    stats = BreakerStats(now=0, window_calls=4, window_failures=4, window_slow=4)
    assert p.trip_reason(stats) is None
    assert not p.failure_threshold_reached(stats)
    assert p.trip_reason(BreakerStats(now=0, window_failures=1)) is None


def test_rate_rule_boundaries() -> None:
    """The failure rate trips at the threshold, never below minimum_calls."""
    p = BreakerPolicy(failure_threshold=None, window=CountWindow(size=10), minimum_calls=4)
    below = BreakerStats(now=0, window_calls=3, window_failures=3)
    at = BreakerStats(now=0, window_calls=4, window_failures=2)
    under = BreakerStats(now=0, window_calls=5, window_failures=2)
    assert p.trip_reason(below) is None
    assert p.trip_reason(at) == "failure rate 0.50 ≥ 0.5 over 4 calls"
    assert p.trip_reason(under) is None


def test_slow_rate_rule() -> None:
    """The slow-call rate trips only when slow-call detection is on."""
    stats = BreakerStats(now=0, window_calls=10, window_slow=5)
    on = BreakerPolicy(
        window=CountWindow(size=10), slow_call_duration=1, slow_call_rate_threshold=0.5
    )
    off = BreakerPolicy(window=CountWindow(size=10), slow_call_rate_threshold=0.5)
    assert on.trip_reason(stats) == "slow-call rate 0.50 ≥ 0.5 over 10 calls"
    assert off.trip_reason(stats) is None


def test_open_duration_elapsed_is_inclusive() -> None:
    """The open duration has elapsed when now - opened_at >= duration."""
    p = BreakerPolicy()
    assert not p.open_duration_elapsed(BreakerStats(now=4.9, opened_at=0, open_duration=5))
    assert p.open_duration_elapsed(BreakerStats(now=5, opened_at=0, open_duration=5))
    assert not p.open_duration_elapsed(BreakerStats(now=5))
    assert not p.open_duration_elapsed(None)


def test_trial_guards() -> None:
    """Recovery needs success_threshold trial successes; one failure or a timeout retrips."""
    p = BreakerPolicy(success_threshold=2, half_open_max_calls=2, half_open_timeout=3)
    assert not p.success_threshold_reached(BreakerStats(now=0, trial_successes=1))
    assert p.success_threshold_reached(BreakerStats(now=0, trial_successes=2))
    assert not p.success_threshold_reached(None)
    assert p.trial_failed(BreakerStats(now=0, trial_failures=1))
    assert not p.trial_failed(BreakerStats(now=2.9, half_open_since=0))
    assert p.trial_failed(BreakerStats(now=3, half_open_since=0))
    assert not p.trial_failed(None)


def test_backoff_grows_and_is_capped() -> None:
    """Open durations multiply per retrip up to max_reset_timeout."""
    p = BreakerPolicy(reset_timeout=1, reset_timeout_multiplier=2, max_reset_timeout=5)
    assert [p.open_duration(n) for n in range(1, 6)] == [1, 2, 4, 5, 5]
    huge = BreakerPolicy(reset_timeout=1, reset_timeout_multiplier=10)
    assert huge.open_duration(10_000) == float("inf")


def test_jitter_stays_within_bounds_and_is_seeded() -> None:
    """Jitter scales by 1 + u, u in [-j, j], reproducibly from a seeded source."""
    p = BreakerPolicy(reset_timeout=10, reset_timeout_jitter=0.2)
    draws = [p.open_duration(1, random.Random(seed)) for seed in range(200)]
    assert all(8.0 <= d <= 12.0 for d in draws)
    assert len(set(draws)) > 100
    assert p.open_duration(1, random.Random(3)) == p.open_duration(1, random.Random(3))
    assert p.open_duration(1) == 10  # no random source, no jitter


def test_exception_classification() -> None:
    """Ignored wins over recorded; non-Exception is neutral; unrecorded counts as success."""
    p = BreakerPolicy(record_exceptions=(OSError,), ignore_exceptions=(FileNotFoundError,))
    assert p.is_failure_exception(OSError()) is True
    assert p.is_failure_exception(FileNotFoundError()) is None
    assert p.is_failure_exception(KeyboardInterrupt()) is None
    assert p.is_failure_exception(ValueError()) is False


# ---------------------------------------------------------------------- pinned by mutation testing


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


def test_from_file_refuses_too_deep_documents_and_too_long_numbers(tmp_path: Path) -> None:
    """A document too deep to parse, or with an integer too long to convert, is a
    PolicyFileError naming the file (JSON and TOML alike), not a RecursionError."""
    cases = {
        "deep.json": "[" * 100_000,
        "long.json": '{"failure_threshold": 1' + "0" * 5_000 + "}",
        "deep.toml": "a = " + "[" * 100_000,
        "long.toml": "failure_threshold = 1" + "0" * 5_000,
    }
    for name, text in cases.items():
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        with pytest.raises(PolicyFileError) as exc:
            BreakerPolicy.from_file(path)
        assert (exc.value.path, exc.value.line) == (str(path), None)
        assert str(exc.value).startswith(f"{path}: cannot parse: ")
        assert len(str(exc.value)) > len(f"{path}: cannot parse: ") + 10  # the parser's words


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


def test_open_duration_elapsed_is_measured_from_the_opening() -> None:
    """The open duration has elapsed only once now - opened_at reaches it."""
    policy = BreakerPolicy(reset_timeout=5)
    assert not policy.open_duration_elapsed(BreakerStats(now=12, opened_at=10, open_duration=5))
    assert policy.open_duration_elapsed(BreakerStats(now=15, opened_at=10, open_duration=5))


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
