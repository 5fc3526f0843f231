"""Durations as ISO 8601, environment errors that name the variable, bounded windows."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Annotated

import pytest
from pydantic import TypeAdapter, ValidationError

from breaker_fsm import BreakerPolicy, CircuitBreaker, CountWindow, TimeWindow
from breaker_fsm._policy import MAX_COUNT_WINDOW, MAX_TIME_WINDOW, _at_most

#: Every duration field of the policy (seconds, float), with a window so slow calls work.
DURATIONS = ("reset_timeout", "slow_call_duration", "max_reset_timeout", "half_open_timeout")


def policy_with(field: str, value: object) -> BreakerPolicy:
    """A policy with ``field`` set to ``value`` (and what that field needs beside it)."""
    extra: dict[str, object] = {"window": CountWindow(size=10), "reset_timeout": 0.25}
    extra.pop(field, None)
    return BreakerPolicy.model_validate({**extra, field: value})


def locations(exc: pytest.ExceptionInfo[ValidationError]) -> set[str]:
    """Each error's location, dotted."""
    return {".".join(str(part) for part in error["loc"]) for error in exc.value.errors()}


# ----------------------------------------------------------------------------- ISO 8601


@pytest.mark.parametrize("field", DURATIONS)
@pytest.mark.parametrize(
    ("text", "seconds"),
    [("PT30S", 30.0), ("PT1M30S", 90.0), ("P1DT2H", 93_600.0), ("PT0.5S", 0.5), ("P1W", 604_800.0)],
)
def test_iso_durations_are_accepted_for_every_duration_field(
    field: str, text: str, seconds: float
) -> None:
    """Each duration field reads an ISO 8601 duration as seconds."""
    assert getattr(policy_with(field, text), field) == seconds


def test_iso_durations_tolerate_case_and_spaces() -> None:
    """Lower case and surrounding spaces (common in env files) are read too."""
    assert BreakerPolicy(reset_timeout=" pt2m ").reset_timeout == 120.0


def test_number_strings_and_timedeltas_still_work() -> None:
    """Seconds as a string and timedelta are read as before."""
    assert BreakerPolicy(reset_timeout="2.5").reset_timeout == 2.5
    assert BreakerPolicy(reset_timeout=timedelta(minutes=1)).reset_timeout == 60.0


@pytest.mark.parametrize("text", ["P1M", "P1Y", "P1Y2M3DT4H", "p2m"])
def test_years_and_months_are_refused(text: str) -> None:
    """P1M is a month, easily meant as PT1M: calendar units are refused with that advice."""
    with pytest.raises(ValidationError) as exc:
        BreakerPolicy(reset_timeout=text)
    assert locations(exc) == {"reset_timeout"}
    assert [error["msg"] for error in exc.value.errors()] == [
        "Value error, years and months have no fixed length: use weeks or days (P30D), "
        "or PT1M for one minute"
    ]


@pytest.mark.parametrize("text", ["PT", "P", "PTXS", "P1H", "PT1H2D", "P 1D"])
def test_malformed_iso_durations_are_refused(text: str) -> None:
    """A string that starts like an ISO duration but is not one names the expected form."""
    with pytest.raises(ValidationError) as exc:
        BreakerPolicy(reset_timeout=text)
    assert [error["msg"] for error in exc.value.errors()] == [
        "Value error, not an ISO 8601 duration such as PT30S, PT1M30S or P1DT2H"
    ]


@pytest.mark.parametrize("text", ["PT0S", "-PT5S"])
def test_iso_durations_must_be_positive(text: str) -> None:
    """A zero or negative duration is refused like a zero or negative number."""
    with pytest.raises(ValidationError, match="greater than 0"):
        BreakerPolicy(reset_timeout=text)


def test_iso_durations_from_json_toml_and_env(tmp_path: Path) -> None:
    """The same durations load from JSON, TOML and the environment, and dump as seconds."""
    expected = BreakerPolicy(reset_timeout=90, window=TimeWindow(seconds=120), half_open_timeout=5)
    json_file = tmp_path / "policy.json"
    json_file.write_text(
        json.dumps(
            {
                "reset_timeout": "PT1M30S",
                "window": {"kind": "time", "seconds": "PT2M"},
                "half_open_timeout": "PT5S",
            }
        )
    )
    toml_file = tmp_path / "policy.toml"
    toml_file.write_text(
        'reset_timeout = "PT1M30S"\nhalf_open_timeout = "PT5S"\n'
        '[window]\nkind = "time"\nseconds = "PT2M"\n'
    )
    env = {
        "BREAKER_RESET_TIMEOUT": "PT1M30S",
        "BREAKER_WINDOW": '{"kind": "time", "seconds": "PT2M"}',
        "BREAKER_HALF_OPEN_TIMEOUT": "PT5S",
    }
    assert BreakerPolicy.from_file(json_file) == expected
    assert BreakerPolicy.from_file(toml_file) == expected
    assert BreakerPolicy.from_env(environ=env) == expected
    dumped = json.loads(expected.model_dump_json())
    assert (dumped["reset_timeout"], dumped["window"]["seconds"]) == (90.0, 120)


def test_time_window_reads_durations() -> None:
    """A time window's length is a duration too: ISO 8601 or timedelta, whole seconds."""
    assert TimeWindow(seconds="PT1M").seconds == 60
    assert TimeWindow(seconds=timedelta(minutes=2)).seconds == 120
    with pytest.raises(ValidationError, match="fractional part"):
        TimeWindow(seconds="PT1.5S")


def test_json_schema_shows_durations_as_numbers_or_iso_strings() -> None:
    """The schema admits what validation admits: seconds, or a string in duration format."""
    schema = BreakerPolicy.model_json_schema()
    reset = schema["properties"]["reset_timeout"]["anyOf"]
    assert {"type": "number", "exclusiveMinimum": 0} in reset
    assert any(branch.get("format") == "duration" for branch in reset)
    seconds = schema["$defs"]["TimeWindow"]["properties"]["seconds"]["anyOf"]
    assert {"type": "integer", "minimum": 1, "maximum": MAX_TIME_WINDOW} in seconds


# ----------------------------------------------------------------------------- from_env errors


def test_from_env_errors_name_the_variable() -> None:
    """A bad value is reported under its environment variable, as it was spelled."""
    with pytest.raises(ValidationError) as exc:
        BreakerPolicy.from_env(
            environ={"BREAKER_RESET_TIMEOUT": "-1", "Breaker_Minimum_Calls": "x"}
        )
    assert locations(exc) == {"BREAKER_RESET_TIMEOUT", "Breaker_Minimum_Calls"}
    assert "BREAKER_RESET_TIMEOUT\n  Input should be greater than 0" in str(exc.value)


def test_from_env_nested_errors_start_with_the_variable() -> None:
    """An error inside a JSON value keeps its path below the variable's name."""
    with pytest.raises(ValidationError) as exc:
        BreakerPolicy.from_env("APP_", environ={"APP_WINDOW": '{"kind": "count", "size": 0}'})
    assert locations(exc) == {"APP_WINDOW.count.size"}


def test_from_env_iso_error_names_the_variable() -> None:
    """An ISO duration with months is refused under the variable that holds it."""
    with pytest.raises(ValidationError, match="PT1M for one minute") as exc:
        BreakerPolicy.from_env(environ={"BREAKER_HALF_OPEN_TIMEOUT": "P1M"})
    assert locations(exc) == {"BREAKER_HALF_OPEN_TIMEOUT"}


@pytest.mark.parametrize("word", ["none", "None", "NULL", "null", "", "  none "])
@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("FAILURE_THRESHOLD", None),
        ("WINDOW", None),
        ("CALL_TIMEOUT", None),
        ("HALF_OPEN_TIMEOUT", None),
        ("MAX_RESET_TIMEOUT", None),
    ],
)
def test_from_env_reads_none_where_none_is_allowed(word: str, field: str, value: None) -> None:
    """none, null (any case) or an empty value set an optional field to None."""
    environ = {f"BREAKER_{field}": word}
    if field == "FAILURE_THRESHOLD":  # no trip rule left without a window
        environ["BREAKER_WINDOW"] = '{"kind": "count", "size": 10}'
    policy = BreakerPolicy.from_env(environ=environ)
    assert getattr(policy, field.lower()) is value
    assert BreakerPolicy.from_env(environ={"BREAKER_CALL_TIMEOUT": "5"}).call_timeout == 5.0


@pytest.mark.parametrize("word", ["none", "NULL", "None"])
def test_from_env_none_for_a_required_field_names_the_variable(word: str) -> None:
    """none where None is not allowed is refused under the variable, saying which fields
    may be none and what to write instead."""
    with pytest.raises(ValidationError) as exc:
        BreakerPolicy.from_env(environ={"Breaker_Reset_Timeout": word})
    assert locations(exc) == {"Breaker_Reset_Timeout"}
    message = str(exc.value)
    assert "reset_timeout cannot be none" in message
    assert "failure_threshold" in message
    assert "call_timeout" in message
    assert "leave Breaker_Reset_Timeout unset for the default (30.0)" in message


def test_from_env_empty_exception_list_is_still_empty() -> None:
    """An empty value where None is not allowed keeps its meaning: no exception types."""
    policy = BreakerPolicy.from_env(environ={"BREAKER_IGNORE_EXCEPTIONS": ""})
    assert policy.ignore_exceptions == ()


@pytest.mark.parametrize(
    "window", [{"size": 100}, {"kind": "bogus", "size": 100}, 5, "count", ["count"]]
)
def test_a_window_without_a_kind_says_which_kinds_exist(window: object) -> None:
    """A window given as data without a known "kind" is refused under the window field,
    naming both kinds with an example of each."""
    with pytest.raises(ValidationError) as exc:
        BreakerPolicy.model_validate({"window": window})
    assert locations(exc) == {"window"}
    message = str(exc.value)
    assert '"kind": "count"' in message
    assert '"kind": "time"' in message
    assert repr(window) in message


def test_a_window_without_a_kind_from_env_names_the_variable() -> None:
    """The same error from the environment is reported under the variable."""
    with pytest.raises(ValidationError, match='needs a "kind"') as exc:
        BreakerPolicy.from_env(environ={"BREAKER_WINDOW": '{"size": 100}'})
    assert locations(exc) == {"BREAKER_WINDOW"}


def test_windows_with_a_kind_still_validate() -> None:
    """Window objects, and data with a kind, are accepted as before."""
    assert BreakerPolicy(window=CountWindow(size=5)).window == CountWindow(size=5)
    time = BreakerPolicy.model_validate({"window": {"kind": "time", "seconds": "PT2M"}})
    assert time.window == TimeWindow(seconds=120)


def test_other_loaders_keep_field_names() -> None:
    """Only from_env renames: a dict's errors still name the field."""
    with pytest.raises(ValidationError) as exc:
        BreakerPolicy.model_validate({"reset_timeout": -1})
    assert locations(exc) == {"reset_timeout"}


# ----------------------------------------------------------------------------- window bounds


def test_count_window_size_is_bounded() -> None:
    """CountWindow(size=10**8) is refused with the bound and why; the bound itself is fine."""
    assert CountWindow(size=MAX_COUNT_WINDOW).size == 100_000
    with pytest.raises(ValidationError) as exc:
        CountWindow(size=10**8)
    message = str(exc.value)
    assert "must be <= 100,000, got 100,000,000" in message
    assert "use a TimeWindow" in message
    schema = CountWindow.model_json_schema()["properties"]["size"]
    assert (schema["minimum"], schema["maximum"]) == (1, MAX_COUNT_WINDOW)


def test_time_window_is_bounded_to_an_hour() -> None:
    """TimeWindow allows an hour of one-second buckets, not a day."""
    assert TimeWindow(seconds="PT1H").seconds == MAX_TIME_WINDOW
    with pytest.raises(ValidationError, match="must be <= 3,600, got 86,400"):
        TimeWindow(seconds="P1D")


def test_bounded_window_errors_reach_the_policy_and_its_loaders() -> None:
    """The bound applies however the window arrives: nested, from a dict or the environment."""
    with pytest.raises(ValidationError) as exc:
        BreakerPolicy.model_validate({"window": {"kind": "count", "size": MAX_COUNT_WINDOW + 1}})
    assert locations(exc) == {"window.count.size"}
    with pytest.raises(ValidationError) as exc:
        BreakerPolicy.from_env(environ={"BREAKER_WINDOW": '{"kind": "time", "seconds": 3601}'})
    assert locations(exc) == {"BREAKER_WINDOW.time.seconds"}


def test_largest_count_window_works_in_a_breaker() -> None:
    """A breaker with the largest count window trips by rate as a small one does."""
    policy = BreakerPolicy(
        failure_threshold=None, window=CountWindow(size=MAX_COUNT_WINDOW), minimum_calls=4
    )
    breaker = CircuitBreaker("big", policy)
    for _ in range(2):
        breaker.call(lambda: "ok")
    for _ in range(2):
        with pytest.raises(ZeroDivisionError):
            breaker.call(lambda: 1 / 0)
    assert breaker.state == "open"


def test_a_bound_refuses_values_above_its_limit_with_its_advice() -> None:
    """The window bounds' validator: the limit itself passes, above it the error says the
    limit, the value and what to do instead. (Built afresh here: the window fields' own
    validators were built when the module was imported.)"""
    bounded = TypeAdapter(Annotated[int, _at_most(5_000, "use fewer")])
    assert bounded.validate_python(5_000) == 5_000
    with pytest.raises(ValidationError) as exc:
        bounded.validate_python(5_001)
    assert [error["msg"] for error in exc.value.errors()] == [
        "Value error, must be <= 5,000, got 5,001: use fewer"
    ]


def test_policy_errors_are_titled_by_where_the_values_came_from(tmp_path: Path) -> None:
    """A ValidationError's title names its source: the class, the environment prefix, the
    file; an error about the whole document (no field) keeps its empty location."""
    with pytest.raises(ValidationError) as exc:
        BreakerPolicy(failure_threshold=None)
    assert exc.value.title == "BreakerPolicy"
    assert [error["msg"] for error in exc.value.errors()] == [
        "Value error, no trip rule is active: set failure_threshold or a window"
    ]
    with pytest.raises(ValidationError) as exc:
        BreakerPolicy(half_open_max_calls=1, success_threshold=2)
    assert exc.value.title == "BreakerPolicy"
    with pytest.raises(ValidationError) as exc:
        BreakerPolicy.from_env(environ={"BREAKER_FAILURE_THRESHOLD": "0"})
    assert exc.value.title == "BreakerPolicy from environment (BREAKER_*)"
    path = tmp_path / "list.json"
    path.write_text("[]", encoding="utf-8")
    with pytest.raises(ValidationError) as exc:
        BreakerPolicy.from_file(path)
    assert exc.value.title == f"BreakerPolicy from {path}"
    assert [(error["loc"], error["type"]) for error in exc.value.errors()] == [((), "model_type")]


# ----------------------------------------------------------------------------- mistakes


#: Every numeric field, and what it would have been read as had True been taken for 1.
NUMBERS = (
    "failure_threshold",
    "success_threshold",
    "half_open_max_calls",
    "minimum_calls",
    "failure_rate_threshold",
    "slow_call_rate_threshold",
    "reset_timeout_multiplier",
    "reset_timeout_jitter",
    *DURATIONS,
    "call_timeout",
)


@pytest.mark.parametrize("value", [True, False])
@pytest.mark.parametrize("field", NUMBERS)
def test_a_bool_is_not_taken_for_a_number(field: str, value: bool) -> None:
    """pydantic reads True as 1 in lax mode; a policy names the field and refuses it."""
    with pytest.raises(ValidationError, match=f"takes a number, not {value}") as caught:
        policy_with(field, value)
    assert locations(caught) == {field}


@pytest.mark.parametrize(("window", "where"), [({"kind": "count", "size": True}, "size")])
def test_a_bool_is_not_taken_for_a_window_size(window: dict[str, object], where: str) -> None:
    with pytest.raises(ValidationError, match="takes a number, not True") as caught:
        BreakerPolicy(window=window)  # type: ignore[arg-type]
    assert locations(caught) == {f"window.count.{where}"}


@pytest.mark.parametrize("text", ["30s", "1m", "thirty", "30 seconds", "xPT30S"])
@pytest.mark.parametrize("field", DURATIONS)
def test_a_duration_that_is_neither_seconds_nor_iso_says_how_to_write_one(
    field: str, text: str
) -> None:
    with pytest.raises(ValidationError, match="nor an ISO 8601 duration such as PT30S") as caught:
        policy_with(field, text)
    assert locations(caught) == {field}
    with pytest.raises(ValidationError, match="PT30S"):
        TimeWindow(seconds=text)  # type: ignore[arg-type]


def test_numbers_and_none_still_pass_the_bool_check() -> None:
    policy = BreakerPolicy(failure_threshold=None, window=CountWindow(size=5), minimum_calls=2)
    assert (policy.failure_threshold, policy.minimum_calls, policy.window) == (
        None,
        2,
        CountWindow(size=5),
    )
    assert policy_with("reset_timeout", "2.5").reset_timeout == 2.5


@pytest.mark.parametrize(
    ("word", "enforce"),
    [
        *[("true", True), ("1", True), ("Yes", True), (" ON ", True)],
        *[("false", False), ("0", False), ("NO", False), ("off", False)],
    ],
)
def test_from_env_reads_the_usual_words_for_enforce(word: str, enforce: bool) -> None:
    assert BreakerPolicy.from_env(environ={"BREAKER_ENFORCE": word}).enforce is enforce


@pytest.mark.parametrize("word", ["maybe", "2", "[]"])
def test_from_env_names_the_variable_of_a_bad_enforce(word: str) -> None:
    with pytest.raises(ValidationError, match="BREAKER_ENFORCE") as caught:
        BreakerPolicy.from_env(environ={"BREAKER_ENFORCE": word})
    assert locations(caught) == {"BREAKER_ENFORCE"}


def test_from_env_refuses_a_prefix_that_is_not_a_string() -> None:
    with pytest.raises(TypeError, match="prefix must be a str, got int"):
        BreakerPolicy.from_env(prefix=5, environ={})  # type: ignore[arg-type]


def test_a_pyproject_read_whole_asks_for_its_section(tmp_path: Path) -> None:
    """Read without ``section=``, a pyproject's tables are 'extra' errors: a note names it."""
    file = tmp_path / "pyproject.toml"
    file.write_text(
        '[project]\nname = "svc"\n\n[tool.breaker_fsm]\nfailure_threshold = 3\n', "utf-8"
    )
    with pytest.raises(ValidationError, match=str(file)) as caught:
        BreakerPolicy.from_file(file)
    assert caught.value.__notes__ == [
        "hint: is the policy in a table? Pass section='tool.breaker_fsm'"
    ]
    assert BreakerPolicy.from_file(file, section="tool.breaker_fsm").failure_threshold == 3
    file.write_text("failure_threshold = 3\nthreshold = 2\n", "utf-8")
    with pytest.raises(ValidationError, match="threshold") as caught:
        BreakerPolicy.from_file(file)
    assert not hasattr(caught.value, "__notes__")  # no table: nothing to guess
