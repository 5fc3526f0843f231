"""Hostile input: arbitrary config never escapes as anything but a ValidationError.

The second half runs the command line on hostile files and on argument lists built from
its real command tree, so the fuzz reaches the command bodies, not only click's parser.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import re
import tempfile
import tomllib
from collections.abc import Iterator
from datetime import timedelta, timezone
from functools import cache
from pathlib import Path
from typing import TypeVar

import click
import pytest
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from breaker_fsm import AuditError, BreakerPolicy, PolicyFileError
from breaker_fsm._audit import Transition
from breaker_fsm._cli import cli
from breaker_fsm._machine import STATES
from breaker_fsm.audit import dump_jsonl, read_jsonl
from tests.helpers import breaker_fsm, invoke_cli, write_trail

T = TypeVar("T")

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


# --------------------------------------------------------------------------- library bugs
# Found by the command-line fuzz below; fixed in the library itself.


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("deep.json", "[" * 100_000 + "]" * 100_000),
        ("deep.toml", "a = " + "[" * 100_000 + "]" * 100_000),
        ("huge.json", '{"failure_threshold": ' + "9" * 5000 + "}"),
        ("huge.toml", "failure_threshold = " + "9" * 5000),
    ],
)
def test_unparsable_policy_files_raise_policy_file_error(
    tmp_path: Path, name: str, content: str
) -> None:
    """Nesting too deep or numbers too long for the parser are a PolicyFileError too."""
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    with pytest.raises(PolicyFileError, match=f"{name}: cannot parse: "):
        BreakerPolicy.from_file(path)


def test_a_trail_with_line_separators_in_a_reason_reads_back(tmp_path: Path) -> None:
    """A record whose reason holds U+2028 or U+0085 survives dump_jsonl then read_jsonl."""
    record = Transition.at_wall(
        1.0, seq=1, breaker="a", event="trip", source="closed", target="open",
        monotonic=1.0, reason="line\u2028separator\x85next line",
    )  # fmt: skip
    path = tmp_path / "trail.jsonl"
    path.write_text(dump_jsonl([record]), encoding="utf-8")
    assert read_jsonl(path) == [record]


# --------------------------------------------------------------------------- the command line
# In-process through click's CliRunner (many examples), and as the real console script
# through test_cli's helper (a few, capped: each is a subprocess).

#: Examples for each in-process command-line test: a few ms each, so fewer than the ci
#: profile's 1000 keep this file near a minute; never more than the profile asks for.
CLI_EXAMPLES = min(300, settings.default.max_examples)
#: Every character str.splitlines breaks a line at (JSON Lines itself only means "\n").
LINE_BREAKS = "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"
#: What a real argv can hold: no NUL, and no lone surrogate bar surrogateescape's.
argv_text = st.text(
    st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), max_size=20
)


@contextlib.contextmanager
def scratch() -> Iterator[Path]:
    """A fresh directory per example: a function-scoped tmp_path is shared by all of them."""
    with tempfile.TemporaryDirectory(prefix="breaker-fsm-hostile-") as name:
        yield Path(name)


@cache
def legal_trail() -> tuple[str, ...]:
    """The lines of a real trail, as JsonlSink writes it: five records, a legal walk."""
    with scratch() as directory:
        return tuple(write_trail(directory / "trail.jsonl").read_text("utf-8").splitlines())


def parses(line: str) -> bool:
    """Whether ``line`` is a valid audit record (legal in a walk or not)."""
    try:
        Transition.model_validate_json(line)
    except ValidationError:
        return False
    return True


def nested(opening: str, closing: str, middle: str = "1") -> st.SearchStrategy[str]:
    """Nesting from shallow to far past the parsers' recursion limits, closed or not."""
    depths = st.integers(1, 3000) | st.sampled_from([10_000, 100_000])
    return st.builds(
        lambda depth, closed: opening * depth + middle + (closing * depth if closed else ""),
        depths,
        st.booleans(),
    )


#: Number literals that parsers refuse or turn into something odd: too many digits for
#: int(), overflowing floats, NaN and infinity spelt both the JSON and the TOML way.
hostile_numbers = st.one_of(
    (st.integers(1, 6000) | st.sampled_from([4300, 4301])).map(lambda n: "9" * n),
    st.sampled_from(["1e400", "-1e400", "1e-400", "-0.0", "NaN", "Infinity", "-Infinity"]),
    st.sampled_from(["nan", "+inf", "-inf", "0x7fffffffffffffffffff", "1_000", "0o777", "01"]),
    st.integers().map(str),
    st.floats().map(repr),
)
DEFAULT_POLICY: dict[str, object] = json.loads(BreakerPolicy().model_dump_json())
#: The default policy, every field present, with a few replaced by values of any type.
wrong_typed_policies = st.dictionaries(
    st.sampled_from(FIELDS), json_values, min_size=1, max_size=3
).map(lambda changes: {**DEFAULT_POLICY, **changes})


def raw_field(field: str, literal: str) -> str:
    """A JSON policy with ``field`` set to ``literal`` verbatim (json.dumps refuses 10**5000)."""
    return json.dumps({**DEFAULT_POLICY, field: "\0"}).replace('"\\u0000"', literal)


def toml_value(value: object) -> str:
    """``value`` as a TOML value; None (TOML has no null) is left out of arrays and tables."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(item) for item in value if item is not None) + "]"
    if isinstance(value, dict):
        pairs = (f"{json.dumps(k)} = {toml_value(v)}" for k, v in value.items() if v is not None)
        return "{" + ", ".join(pairs) + "}"
    return json.dumps(value)  # strings (JSON's escapes are TOML's), ints, finite floats


def toml_document(data: dict[str, object], table: str | None = None) -> str:
    """A TOML document of ``data``, under ``[table]`` when one is given."""
    lines = [f"[{table}]"] if table else []
    lines += [f"{json.dumps(k)} = {toml_value(v)}" for k, v in data.items() if v is not None]
    return "\n".join(lines) + "\n"


json_documents = st.one_of(
    json_values.map(json.dumps),
    policy_dicts.map(json.dumps),
    wrong_typed_policies.map(json.dumps),
    st.builds(raw_field, st.sampled_from(FIELDS), hostile_numbers),
    st.builds(raw_field, st.sampled_from(FIELDS), nested("[", "]") | nested('{"a": ', "}")),
    nested("[", "]", ""),
    nested('{"a": ', "}"),
)
toml_documents = st.one_of(
    policy_dicts.map(toml_document),
    wrong_typed_policies.map(toml_document),
    st.builds("{} = {}".format, st.sampled_from(FIELDS), hostile_numbers),
    nested("a = [", "]", "").map(lambda doc: doc + "]"),
    nested("a = {b = ", "}"),
    st.integers(1, 3000).map(lambda depth: "[" + ".".join(["t"] * depth) + "]\nx = 1"),
)
sections = st.none() | st.sampled_from(["tool.breaker_fsm", "tool", "", ".", "a..b"]) | argv_text


def encoded(text: str, bom: bool) -> bytes:
    """UTF-8 (lone surrogates kept, so not valid UTF-8), with a byte-order mark if asked."""
    return (b"\xef\xbb\xbf" if bom else b"") + text.encode("utf-8", "surrogatepass")


#: ``(suffix, content, section)``: a policy file and the --section to check it with.
policy_files = st.one_of(
    st.tuples(
        st.sampled_from([".json", ".JSON"]),
        st.builds(encoded, json_documents, st.booleans()),
        sections,
    ),
    st.tuples(
        st.sampled_from([".toml", ".TOML"]),
        st.builds(encoded, toml_documents, st.booleans()),
        sections,
    ),
    st.builds(
        lambda data, table: (".toml", toml_document(data, table).encode(), table),
        policy_dicts | wrong_typed_policies,
        st.sampled_from(["tool.breaker_fsm", "breaker", '"a.b".c']),
    ),
    st.tuples(
        st.sampled_from([".json", ".toml", ".yaml", ".txt", ""]),
        st.binary(max_size=300) | st.builds(encoded, st.text(max_size=200), st.booleans()),
        sections,
    ),
)


@settings(max_examples=CLI_EXAMPLES)
@given(policy_files)
def test_policy_check_on_hostile_files(case: tuple[str, bytes, str | None]) -> None:
    """policy check on any file prints a valid policy, or exits 1 with one error naming the file."""
    suffix, content, section = case
    with scratch() as directory:
        path = directory / f"policy{suffix}"
        path.write_bytes(content)
        option = [] if section is None else [f"--section={section}"]
        result = invoke_cli("policy", "check", str(path), *option)
    if result.exit_code == 0:
        BreakerPolicy.model_validate_json(result.stdout)  # the effective policy, as JSON
        assert result.stderr == ""
    else:
        assert result.exit_code == 1, result.output
        assert result.stderr.startswith(f"Error: {path}"), result.stderr
        assert result.stdout == ""


#: One line of text: no line break of any kind, no lone surrogate (the file is UTF-8).
line_text = st.text(
    st.characters(exclude_categories=("Cs",), exclude_characters=LINE_BREAKS), max_size=80
)
blank_lines = st.sampled_from(["", " ", "\t", "  \t ", "\u00a0", "\u3000"])


def mangled_record(field: str, literal: str | None) -> str:
    """The first legal record with ``field`` set to the JSON ``literal``, or removed if None."""
    record = json.loads(legal_trail()[0])
    record.pop(field, None)
    text = json.dumps(record)
    return text if literal is None else text[:-1] + f", {json.dumps(field)}: {literal}}}"


#: Lines that are not audit records at all.
unparsable_lines = st.one_of(
    line_text,
    json_values.map(json.dumps),
    policy_dicts.map(json.dumps),
    st.builds(
        mangled_record,
        st.sampled_from([*sorted(Transition.model_fields), "extra"]),
        st.none() | json_values.map(json.dumps) | hostile_numbers | nested("[", "]"),
    ),
    nested("[", "]", ""),
).filter(lambda line: bool(line.strip()) and not parses(line))


def not_a_state(text: str) -> bool:
    """Whether ``text`` names no state of the machine."""
    return text not in STATES


@st.composite
def walk_breaking_line(draw: st.DrawFn, before: int) -> str:
    """A valid record that breaks the walk when ``before`` legal records precede it."""
    trail = legal_trail()
    record = json.loads(trail[min(before, len(trail) - 1)])
    choices = ["source", "target", "event"] + (["seq"] if 0 < before < len(trail) else [])
    field = draw(st.sampled_from(choices))
    if field in ("source", "target"):
        record[field] = draw(line_text.filter(not_a_state))
    elif field == "event":
        record["event"] = "no-such-event " + draw(line_text)
    else:  # the next record, numbered anything but next
        record["seq"] = draw(st.integers(1, 2**80).filter(lambda seq: seq != before + 1))
    return json.dumps(record)


@st.composite
def trails_with_one_bad_line(draw: st.DrawFn) -> tuple[list[str], int]:
    """A prefix of a legal trail with one bad line inserted and blank lines anywhere.

    Returns the file's lines and the index of the bad one, which is the first bad one.
    """
    trail = legal_trail()
    good = draw(st.integers(0, len(trail)))
    before = draw(st.integers(0, good))
    bad = draw(unparsable_lines | walk_breaking_line(before))
    records = [*trail[:before], bad, *trail[before:good]]
    lines: list[str] = []
    bad_index = -1
    for number, record in enumerate(records):
        lines += draw(st.lists(blank_lines, max_size=2))
        if number == before:
            bad_index = len(lines)
        lines.append(record)
    lines += draw(st.lists(blank_lines, max_size=2))
    return lines, bad_index


@settings(max_examples=CLI_EXAMPLES)
@given(
    trails_with_one_bad_line(),
    st.sampled_from(["\n", "\r\n", "\r"]),
    st.sampled_from(["verify", "show"]),
)
def test_audit_names_the_bad_line(case: tuple[list[str], int], newline: str, command: str) -> None:
    """audit verify (and show, for a line that is no record) names the file and the bad line."""
    lines, bad = case
    with scratch() as directory:
        path = directory / "trail.jsonl"
        path.write_bytes(newline.join(lines).encode("utf-8"))
        result = invoke_cli("audit", command, str(path))
    if command == "show" and parses(lines[bad]):
        assert result.exit_code == 0, result.output  # show reads records; it does not verify
    else:
        assert result.exit_code == 1, result.output
        assert result.stderr.startswith(f"Error: {path}:{bad + 1}: "), result.stderr
        assert len(result.stderr.splitlines()) == 1, result.stderr


#: Timestamps pydantic may accept but datetime cannot move to UTC, and plain odd ones.
odd_times = st.sampled_from(
    ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00", "2020-02-30T00:00:00Z"]
) | st.builds(
    lambda moment, offset: moment.replace(tzinfo=timezone(offset)).isoformat(),
    st.datetimes(),
    st.timedeltas(-timedelta(hours=23, minutes=59), timedelta(hours=23, minutes=59)),
)
#: Any content, valid UTF-8 or not: real records, junk, every kind of line break.
audit_contents = st.one_of(
    st.binary(max_size=300),
    st.builds(
        lambda lines, separator, bom: encoded(separator.join(lines), bom),
        st.lists(
            st.integers(0, 4).map(lambda i: legal_trail()[i])
            | odd_times.map(lambda at: mangled_record("at", json.dumps(at)))
            | st.text(max_size=80)
            | json_values.map(json.dumps)
            | nested("[", "]", ""),
            max_size=8,
        ),
        st.sampled_from(["\n", "\r\n", "\r", "\n\n", *LINE_BREAKS]),
        st.booleans(),
    ),
)


@settings(max_examples=CLI_EXAMPLES)
@given(audit_contents, st.sampled_from(["verify", "show"]))
def test_audit_commands_on_hostile_files(content: bytes, command: str) -> None:
    """audit verify and show on any bytes exit 0, or 1 naming the file and a line that exists."""
    with scratch() as directory:
        path = directory / "trail.jsonl"
        path.write_bytes(content)
        result = invoke_cli("audit", command, str(path))
    if result.exit_code == 0:  # verify names a file without records on stderr
        assert result.stderr in ("", f"{path}: no records\n"), result.stderr
        return
    assert result.exit_code == 1, result.output
    assert result.stderr.startswith(f"Error: {path}:"), result.stderr
    found = re.match(rf"Error: {re.escape(str(path))}:(\d+): ", result.stderr)
    if found:  # a bad line: it is a line of the file, "\r\n", "\r" and "\n" ending lines
        lines = content.decode("utf-8").replace("\r\n", "\n").replace("\r", "\n").split("\n")
        assert 1 <= int(found[1]) <= len(lines)


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("deep.json", "[" * 100_000, "cannot parse: maximum recursion depth exceeded"),
        ("deep.toml", "a = " + "[" * 100_000, "cannot parse: maximum recursion depth exceeded"),
        ("huge.json", '{"minimum_calls": ' + "9" * 5000 + "}", "cannot parse: Exceeds the limit"),
        ("huge.toml", "minimum_calls = " + "9" * 5000, "cannot parse: Exceeds the limit"),
        ("tables.toml", "[" + ".".join(["t"] * 3000) + "]", "invalid policy, 1 error"),
    ],
)
def test_policy_check_deep_or_huge_files_name_the_file(
    name: str, content: str, message: str
) -> None:
    """Nesting too deep for Python or an int too long is one error naming the file, exit 1."""
    with scratch() as directory:
        path = directory / name
        path.write_text(content, encoding="utf-8")
        result = invoke_cli("policy", "check", str(path))
    assert result.exit_code == 1
    assert result.stderr.startswith(f"Error: {path}: {message}"), result.stderr


@pytest.mark.parametrize(
    ("at", "shown"),
    [
        ("0001-01-01T00:00:00+14:00", "0001-01-01 00:00:00.000+14:00"),
        ("9999-12-31T23:59:59-14:00", "9999-12-31 23:59:59.000-14:00"),
        ("2020-01-01T12:00:00+02:00", "2020-01-01 10:00:00.000Z"),
    ],
)
def test_audit_show_times_outside_the_utc_range(at: str, shown: str) -> None:
    """A time datetime cannot move to UTC is shown as recorded, not an 'unexpected' error."""
    with scratch() as directory:
        path = directory / "trail.jsonl"
        path.write_text(mangled_record("at", json.dumps(at)) + "\n", encoding="utf-8")
        result = invoke_cli("audit", "show", str(path))
        verified = invoke_cli("audit", "verify", str(path))
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[1].startswith(f"{shown}  users-api  trip"), result.stdout
    assert verified.exit_code == 0, verified.output


@settings(max_examples=min(12, settings.default.max_examples))  # subprocesses: ~0.5 s each
@given(
    policy_files.map(lambda case: ("policy", case[0], case[1]))
    | audit_contents.map(lambda content: ("audit", ".jsonl", content))
)
def test_console_script_on_hostile_files(case: tuple[str, str, bytes]) -> None:
    """The real console script on a hostile policy or trail: exit 0, or 1 naming the file."""
    group, suffix, content = case
    with scratch() as directory:
        path = directory / f"hostile{suffix}"
        path.write_bytes(content)
        command = "check" if group == "policy" else "verify"
        done = breaker_fsm(group, command, path)  # asserts there is no traceback
    assert done.returncode in (0, 1), done
    assert "Error: unexpected" not in done.stderr  # run()'s last resort: an unforeseen exception
    if done.returncode == 1:
        assert done.stderr.startswith(f"Error: {path}"), done.stderr


# --------------------------------------------------------------------------- argv from the tree


def command_tree(
    group: click.Group = cli, words: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], click.Command]]:
    """Every command and group under ``group``, with the words that reach it."""
    for name, command in sorted(group.commands.items()):
        yield (*words, name), command
        if isinstance(command, click.Group):
            yield from command_tree(command, (*words, name))


COMMANDS = dict(command_tree())
#: Commands whose FILE argument must be named by any failure.
FILE_COMMANDS = {("policy", "check"), ("audit", "show"), ("audit", "verify")}
#: Files and directories made in each example's directory; the other names do not exist.
EXISTING = ("policy.json", "policy.toml", "hostile.json", "hostile.toml", "trail.jsonl",
            "hostile.jsonl", "binary.jsonl", "folder", "folder.json")  # fmt: skip
MISSING = ("missing.json", "missing.jsonl", "no/such/dir/out.mmd", "policy.json/inner.json",
           "out.mmd", "out.dot", "out.gv", "out.svg", "out.png", "out.txt", "")  # fmt: skip


def mostly(right: st.SearchStrategy[T], wrong: st.SearchStrategy[T]) -> st.SearchStrategy[T]:
    """``right`` nine times in ten, else ``wrong``: enough right to get past click's parser."""
    return st.integers(0, 9).flatmap(lambda n: wrong if n == 0 else right)


#: The paths each command is mostly given: of the right kind, existing or not.
LIKELY_PATHS = {
    ("policy", "check"): ("policy.json", "policy.toml", "hostile.json", "hostile.toml"),
    ("audit", "show"): ("trail.jsonl", "hostile.jsonl"),
    ("audit", "verify"): ("trail.jsonl", "hostile.jsonl"),
    ("diagram",): ("out.mmd", "out.dot", "out.gv", "out.svg", "out.png", "out.txt"),
}
junk_tokens = st.sampled_from(["-", "--", "-h", "--help", "--nope", "-x", "-V"]) | argv_text


def values_of(kind: click.ParamType, words: tuple[str, ...]) -> st.SearchStrategy[str]:
    """Values for a parameter of type ``kind`` of command ``words``: mostly right."""
    if isinstance(kind, click.Choice):
        return mostly(st.sampled_from([str(choice) for choice in kind.choices]), junk_tokens)
    if isinstance(kind, click.Path):
        any_path = st.sampled_from([*EXISTING, *MISSING])
        likely = st.sampled_from(LIKELY_PATHS.get(words, EXISTING))
        return mostly(st.one_of(likely, any_path), argv_text)
    return mostly(st.sampled_from(["tool.breaker_fsm", "tool", ""]), junk_tokens)


def tokens_of(param: click.Parameter, words: tuple[str, ...]) -> st.SearchStrategy[list[str]]:
    """The argv words for one parameter, in every spelling click accepts (and some it refuses)."""
    values = values_of(param.type, words)
    if isinstance(param, click.Argument):
        return values.map(lambda value: [value])
    names = [*param.opts, *param.secondary_opts]
    if isinstance(param, click.Option) and param.is_flag:
        return st.sampled_from(names).map(lambda name: [name])
    spellings = st.tuples(st.sampled_from(names), values).map(list)
    long_names = [name for name in names if name.startswith("--")]
    if long_names:
        joined = st.tuples(st.sampled_from(long_names), values).map("=".join).map(lambda w: [w])
        spellings |= joined
    return mostly(spellings, st.sampled_from(names).map(lambda name: [name]))  # value missing


@dataclasses.dataclass(frozen=True)
class CommandLine:
    """An argument list for one command of the tree."""

    words: tuple[str, ...]  # the command's own words, "audit verify"
    argv: list[str]
    exact: bool  # no junk word added: click sees each parameter as it was meant
    file: str | None  # the FILE argument, when given


def argv_of(words: tuple[str, ...], command: click.Command) -> st.SearchStrategy[CommandLine]:
    """Argument lists for one command: its own parameters in any order, options maybe left out."""
    parts = []
    for param in command.params:
        tokens = tokens_of(param, words).map(lambda tokens, name=param.name: (name, tokens))
        left_out: st.SearchStrategy[tuple[str | None, list[str]]] = st.just((None, []))
        # a missing argument is only a usage error: leave one out rarely, an option often
        parts.append(mostly(tokens, left_out) if param.required else tokens | left_out)

    def build(parts: list[tuple[str | None, list[str]]], junk: list[str]) -> CommandLine:
        given_values = {name: tokens[-1] for name, tokens in parts if name and tokens}
        argv = [*words, *(token for _, tokens in parts for token in tokens), *junk]
        return CommandLine(words, argv, exact=not junk, file=given_values.get("file"))

    return st.builds(
        build,
        st.tuples(*parts).flatmap(lambda drawn: st.permutations(list(drawn))),
        mostly(st.just([]), st.lists(junk_tokens, min_size=1, max_size=2)),
    )


#: The leaves of the tree (bare groups only print their help, which the arbitrary argument
#: lists below reach), but not demo: it runs a real HTTP server for seconds (test_demo).
LEAVES = sorted(
    words
    for words, command in COMMANDS.items()
    if not isinstance(command, click.Group) and words != ("demo",)
)
command_lines = st.sampled_from(LEAVES).flatmap(lambda words: argv_of(words, COMMANDS[words]))
policy_content = policy_files.map(lambda case: case[1])
terminals = st.sampled_from([{}, {"FORCE_COLOR": "1", "COLUMNS": "100"}])


def make_files(data: st.DataObject, argv: list[str]) -> None:
    """The EXISTING files, in the current directory; hostile content drawn only if named."""
    Path("policy.json").write_text('{"failure_threshold": 3}', encoding="utf-8")
    Path("policy.toml").write_text("[tool.breaker_fsm]\nreset_timeout = 2.5\n", encoding="utf-8")
    Path("trail.jsonl").write_text("\n".join(legal_trail()) + "\n", encoding="utf-8")
    for suffix, content in (
        (".json", policy_content),
        (".toml", policy_content),
        (".jsonl", audit_contents),
    ):
        name = f"hostile{suffix}"
        mentioned = any(name in word for word in argv)  # "--output=hostile.json" too
        Path(name).write_bytes(data.draw(content, label=name) if mentioned else b"")
    Path("binary.jsonl").write_bytes(b"\xff\xfe\x00")
    Path("folder").mkdir()
    Path("folder.json").mkdir()


@settings(max_examples=CLI_EXAMPLES)
@given(command_lines, terminals, st.data())
def test_argument_lists_from_the_command_tree(
    line: CommandLine, env: dict[str, str], data: st.DataObject
) -> None:
    """Argument lists built from the real commands exit 0, 1 or 2; a failure names the FILE."""
    with scratch() as directory, contextlib.chdir(directory):  # relative paths land in here
        make_files(data, line.argv)
        result = invoke_cli(*line.argv, env=env)
    event(f"{' '.join(line.words)}: exit {result.exit_code}")
    if result.exit_code == 2:  # a usage error, or a group's help
        assert "Error: " in result.output or "Usage:" in result.output, result.output
    elif result.exit_code == 1:
        assert result.stderr.startswith("Error: "), result.output
        if line.exact and line.words in FILE_COMMANDS and line.file is not None:
            assert str(Path(line.file)) in result.stderr, result.stderr


@settings(max_examples=CLI_EXAMPLES)
@given(
    st.lists(
        st.sampled_from(sorted({w for ws in COMMANDS for w in ws} - {"demo"}))
        | junk_tokens
        | st.sampled_from([*EXISTING, *MISSING]),
        max_size=6,
    )
)
def test_arbitrary_argument_lists(argv: list[str]) -> None:
    """Any argument list (demo aside) exits 0, 1 or 2 without a traceback."""
    assume("demo" not in argv)
    with scratch() as directory, contextlib.chdir(directory):
        invoke_cli(*argv)
