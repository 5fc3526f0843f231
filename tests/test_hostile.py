"""Hostile input: arbitrary config never escapes as anything but a ValidationError."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from breaker_fsm import AuditError, BreakerPolicy, PolicyFileError
from breaker_fsm.audit import read_jsonl

FIELDS = sorted(BreakerPolicy.model_fields)

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**20), 10**20)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=30)
    | st.sampled_from(["Exception", "OSError", "os.path", "no.such.Thing", "KeyboardInterrupt"]),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.sampled_from(["kind", "size", "seconds", "x"]), children, max_size=3)
    ),
    max_leaves=8,
)
policy_dicts = st.dictionaries(
    st.sampled_from([*FIELDS, "unknown_field"]) | st.text(max_size=10), json_values, max_size=8
)


@given(policy_dicts)
def test_arbitrary_dicts_give_a_policy_or_a_validation_error(data: dict[str, object]) -> None:
    """Any dict is either a valid policy or a ValidationError naming fields, nothing else."""
    try:
        policy = BreakerPolicy.model_validate(data)
    except ValidationError as exc:
        assert exc.errors()
    else:
        assert BreakerPolicy.model_validate_json(policy.model_dump_json()) == policy


@given(st.text(max_size=200))
def test_arbitrary_json_text(text: str) -> None:
    """Any JSON text gives a policy or a ValidationError."""
    try:
        BreakerPolicy.model_validate_json(text)
    except ValidationError as exc:
        assert exc.errors()


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(content=st.text(max_size=200), suffix=st.sampled_from([".json", ".toml"]))
def test_arbitrary_files_give_clear_errors(tmp_path: Path, content: str, suffix: str) -> None:
    """Any file content gives a policy, a PolicyFileError or a ValidationError naming the file."""
    path = tmp_path / f"policy{suffix}"
    path.write_text(content, encoding="utf-8")
    try:
        BreakerPolicy.from_file(path)
    except PolicyFileError as exc:
        assert str(path) in str(exc)
    except ValidationError as exc:
        assert str(path) in exc.title


@given(policy_dicts)
def test_toml_documents_from_generated_dicts(data: dict[str, object]) -> None:
    """Generated TOML documents load as a policy or fail with a ValidationError."""
    lines = []
    for key, value in data.items():
        if value is None or not key.isidentifier():
            continue
        lines.append(f"{key} = {json.dumps(value)}")
    try:
        parsed = tomllib.loads("\n".join(lines))
    except tomllib.TOMLDecodeError:
        return
    try:
        BreakerPolicy.model_validate(parsed)
    except ValidationError as exc:
        assert exc.errors()


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.text(max_size=80), min_size=1, max_size=5))
def test_arbitrary_audit_lines_name_the_line(tmp_path: Path, lines: list[str]) -> None:
    """Arbitrary lines fed to read_jsonl raise AuditError with a line number, or parse."""
    path = tmp_path / "trail.jsonl"
    path.write_text("\n".join(lines), encoding="utf-8")
    try:
        read_jsonl(path)
    except AuditError as exc:
        assert exc.line is not None
        assert f":{exc.line}:" in str(exc)


@pytest.mark.parametrize("text", ["\ud800", "\x00"])
def test_odd_characters_in_policy_json(tmp_path: Path, text: str) -> None:
    """Surrogates and NULs in a policy file are reported, not raised raw."""
    path = tmp_path / "p.json"
    path.write_bytes(json.dumps({"record_exceptions": [text]}).encode())
    with pytest.raises(ValidationError):
        BreakerPolicy.from_file(path)
