"""The ``breaker-fsm`` command line, run as the real console script in subprocesses."""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from breaker_fsm import BreakerPolicy
from breaker_fsm.audit import JsonlSink, digest, read_jsonl
from tests.helpers import SCRIPT, breaker_fsm, one_error_line, write_trail

ROOT = Path(__file__).resolve().parent.parent
NEEDS_DOT = pytest.mark.skipif(
    shutil.which("dot") is None, reason="Graphviz's dot is not on PATH (apt-get install graphviz)"
)
Shadow = Callable[..., dict[str, str]]


@pytest.fixture
def trail(tmp_path: Path) -> Path:
    """A valid five-line audit trail."""
    return write_trail(tmp_path / "trail.jsonl")


@pytest.fixture
def shadow(tmp_path: Path) -> Shadow:
    """PYTHONPATH that makes the named modules impossible to import."""

    def make(*modules: str) -> dict[str, str]:
        root = tmp_path / "shadow"
        for name in modules:
            package = root / name
            package.mkdir(parents=True)
            (package / "__init__.py").write_text(
                f'raise ModuleNotFoundError("No module named {name!r}", name={name!r})\n'
            )
        return {"PYTHONPATH": str(root)}

    return make


# --------------------------------------------------------------------------- the surface


def test_console_script_is_installed() -> None:
    """The breaker-fsm console script sits next to the interpreter."""
    assert SCRIPT.is_file()
    assert os.access(SCRIPT, os.X_OK)


@pytest.mark.parametrize(
    "command",
    [
        [],
        ["diagram"],
        ["policy"],
        ["policy", "schema"],
        ["policy", "check"],
        ["audit"],
        ["audit", "show"],
        ["audit", "verify"],
        ["audit", "schema"],
        ["demo"],
    ],
    ids=lambda c: " ".join(c) or "breaker-fsm",
)
def test_help_on_every_command(command: list[str]) -> None:
    """--help works on every command and subcommand, exit 0."""
    done = breaker_fsm(*command, "--help")
    assert done.returncode == 0
    assert done.stdout.startswith(f"Usage: breaker-fsm {' '.join(command)}".rstrip())
    assert "-h, --help" in done.stdout


def test_top_level_help_lists_the_commands() -> None:
    """The top-level help lists every command; --version prints the version."""
    done = breaker_fsm("-h")
    for command in ("audit", "demo", "diagram", "policy"):
        assert f"  {command} " in done.stdout
    version = breaker_fsm("--version")
    assert version.returncode == 0
    assert version.stdout.strip() == "breaker-fsm, version 0.1.0"


def test_python_dash_m_runs_the_same_command_line() -> None:
    """python -m breaker_fsm is the same command line."""
    done = breaker_fsm("-m", "breaker_fsm", "policy", "--help", script=sys.executable)
    assert done.returncode == 0
    assert done.stdout.startswith("Usage: breaker-fsm policy")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["frobnicate"], "No such command 'frobnicate'"),
        (["policy", "frobnicate"], "No such command 'frobnicate'"),
        (["diagram", "--format", "jpeg"], "'jpeg' is not one of"),
        (["diagram", "--state", "ajar"], "'ajar' is not one of 'closed'"),
        (["diagram", "--colour"], "--colour"),  # click 8.1 writes "No such option: --colour"
        (["diagram", "--format", "png"], "png is binary: write it to a file with --output FILE"),
        (["policy", "check"], "Missing argument 'FILE'"),
        (["audit", "verify"], "Missing argument 'FILES...'"),
        (["audit", "show"], "Missing argument 'FILES...'"),
    ],
    ids=lambda v: v if isinstance(v, str) else " ".join(v),
)
def test_usage_errors_exit_2_with_a_message(args: list[str], message: str) -> None:
    """A usage error exits 2 with the usage line and a message, never a traceback."""
    done = breaker_fsm(*args)
    assert done.returncode == 2
    assert done.stderr.startswith("Usage: breaker-fsm")
    assert message in done.stderr
    assert done.stdout == ""


def test_no_command_shows_help_and_exits_2() -> None:
    """breaker-fsm alone prints its help (to stderr) and exits 2, a usage error."""
    done = breaker_fsm()
    assert done.returncode == 2
    assert "Commands:" in done.stdout + done.stderr


# --------------------------------------------------------------------------- diagram


def test_diagram_prints_mermaid_by_default() -> None:
    """diagram prints the committed Mermaid diagram to stdout."""
    done = breaker_fsm("diagram")
    assert done.returncode == 0
    assert done.stdout == (ROOT / "diagrams" / "breaker.mmd").read_text("utf-8")


def test_diagram_dot_and_highlighted_state() -> None:
    """--format dot prints the committed DOT; --state highlights a state."""
    done = breaker_fsm("diagram", "--format", "dot")
    assert done.stdout == (ROOT / "diagrams" / "breaker.dot").read_text("utf-8")
    highlighted = breaker_fsm("diagram", "-s", "half_open")
    assert highlighted.stdout.endswith("    half_open:::active\n")


def test_diagram_output_takes_its_format_from_the_suffix(tmp_path: Path) -> None:
    """--output writes the file (format from its suffix) and reports it on stderr."""
    target = tmp_path / "machine.dot"
    done = breaker_fsm("diagram", "--output", target)
    assert done.returncode == 0
    assert done.stdout == ""
    assert done.stderr == f"wrote {target} (dot)\n"
    assert target.read_text("utf-8") == (ROOT / "diagrams" / "breaker.dot").read_text("utf-8")
    other = tmp_path / "machine.txt"
    assert breaker_fsm("diagram", "-o", other).returncode == 0
    assert other.read_text("utf-8").startswith("stateDiagram-v2")


def test_diagram_unwritable_output_is_one_line(tmp_path: Path) -> None:
    """An output file that cannot be written gives one line and exit 1."""
    line = one_error_line(breaker_fsm("diagram", "-o", tmp_path / "missing" / "d.mmd"))
    assert "cannot write: No such file or directory" in line


@NEEDS_DOT
def test_diagram_svg_and_png_with_graphviz(tmp_path: Path) -> None:
    """With Graphviz, svg prints an SVG document and png writes a PNG file."""
    svg = breaker_fsm("diagram", "--format", "svg", "--state", "open")
    assert svg.returncode == 0
    assert "<svg" in svg.stdout
    assert "trip — failure threshold reached" in svg.stdout
    png = tmp_path / "breaker.png"
    assert breaker_fsm("diagram", "-o", png).returncode == 0
    assert png.read_bytes().startswith(b"\x89PNG")


@pytest.mark.parametrize("fmt", ["svg", "png"])
def test_diagram_without_graphviz_says_how_to_install_it(tmp_path: Path, fmt: str) -> None:
    """With no dot on PATH, svg and png fail in one line saying how to install Graphviz."""
    empty = tmp_path / "bin"
    empty.mkdir()
    done = breaker_fsm("diagram", "-f", fmt, "-o", tmp_path / f"d.{fmt}", env={"PATH": str(empty)})
    line = one_error_line(done)
    assert "Graphviz's 'dot' program, which is not on PATH" in line
    assert "apt-get install graphviz" in line
    assert "brew install graphviz" in line
    assert not (tmp_path / f"d.{fmt}").exists()


def test_diagram_dot_without_pydot_names_the_extra(shadow: Shadow) -> None:
    """Without pydot, --format dot fails in one line naming the diagrams extra."""
    line = one_error_line(breaker_fsm("diagram", "-f", "dot", env=shadow("pydot")))
    assert "pip install 'breaker-fsm[diagrams]'" in line
    assert breaker_fsm("diagram", env=shadow()).returncode == 0  # mermaid still works


# --------------------------------------------------------------------------- policy


def test_policy_schema_prints_the_json_schema() -> None:
    """policy schema prints BreakerPolicy's JSON Schema."""
    done = breaker_fsm("policy", "schema")
    assert done.returncode == 0
    assert json.loads(done.stdout) == BreakerPolicy.model_json_schema()


def test_policy_check_prints_the_effective_policy(tmp_path: Path) -> None:
    """A valid JSON policy prints as JSON with every default filled in."""
    path = tmp_path / "policy.json"
    path.write_text('{"failure_threshold": 3, "ignore_exceptions": ["KeyError"]}')
    done = breaker_fsm("policy", "check", path)
    assert done.returncode == 0
    assert done.stderr == ""
    expected = BreakerPolicy(failure_threshold=3, ignore_exceptions=(KeyError,))
    assert BreakerPolicy.model_validate_json(done.stdout) == expected
    assert json.loads(done.stdout)["reset_timeout"] == 30.0
    coloured = breaker_fsm("policy", "check", path, env={"FORCE_COLOR": "1"})
    assert coloured.returncode == 0
    assert "\x1b[" in coloured.stdout
    plain = re.sub(r"\x1b\[[0-9;]*m", "", coloured.stdout)
    assert BreakerPolicy.model_validate_json(plain) == expected


def test_policy_check_reads_a_toml_section(tmp_path: Path) -> None:
    """--section reads the policy from a table of a larger TOML file."""
    path = tmp_path / "pyproject.toml"
    path.write_text('[project]\nname = "x"\n\n[tool.breaker_fsm]\nreset_timeout = 5\n')
    done = breaker_fsm("policy", "check", path, "--section", "tool.breaker_fsm")
    assert done.returncode == 0
    assert json.loads(done.stdout)["reset_timeout"] == 5.0
    line = one_error_line(breaker_fsm("policy", "check", path, "--section", "tool.other"))
    assert line == f"Error: {path}: no [tool.other] table"


def test_policy_check_lists_every_error_by_field_path(tmp_path: Path) -> None:
    """An invalid policy exits 1 listing every error with its field path."""
    path = tmp_path / "policy.json"
    path.write_text(
        json.dumps(
            {
                "failure_threshold": 0,
                "window": {"kind": "count", "size": 0},
                "record_exceptions": ["no.such.Error"],
                "colour": "red",
            }
        )
    )
    done = breaker_fsm("policy", "check", path)
    assert done.returncode == 1
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert lines[0] == f"Error: {path}: invalid policy, 4 errors"
    assert lines[1:] == [
        "  failure_threshold: Input should be greater than or equal to 1 (got 0)",
        "  record_exceptions.0: Value error, 'no.such.Error' does not name an importable "
        "exception class",
        "  window.count.size: Input should be greater than or equal to 1 (got 0)",
        "  colour: Extra inputs are not permitted (got 'red')",
    ]


def test_policy_check_cross_field_and_root_errors(tmp_path: Path) -> None:
    """Cross-field rules name their field; a document that is not a table says so."""
    path = tmp_path / "policy.toml"
    path.write_text("success_threshold = 2\n")
    done = breaker_fsm("policy", "check", path)
    assert done.returncode == 1
    assert "  half_open_max_calls: Value error, must be >= success_threshold (2)" in done.stderr
    listed = tmp_path / "list.json"
    listed.write_text("[" + ", ".join(["1"] * 40) + "]")
    done = breaker_fsm("policy", "check", listed)
    assert "  (policy): Input should be a valid dictionary" in done.stderr
    assert "…)" in done.stderr  # a long input is shortened


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("missing.json", None, "missing.json: no such file"),
        ("policy.json", "{not json", "policy.json:1: invalid JSON: Expecting property name"),
        ("policy.toml", "failure_threshold = ", "policy.toml: invalid TOML: Invalid value"),
        ("policy.json", b"\xff\xfe{}", "policy.json: cannot read:"),
        ("policy.yaml", "failure_threshold: 3", "unknown policy file type: use .json or .toml"),
        ("folder.json", "<dir>", "folder.json: cannot read:"),
    ],
    ids=["missing", "bad-json", "bad-toml", "not-utf8", "yaml", "directory"],
)
def test_policy_check_bad_files_give_one_line(
    tmp_path: Path, name: str, content: str | bytes | None, message: str
) -> None:
    """A missing, unreadable or malformed policy file gives one clear line and exit 1."""
    path = tmp_path / name
    if content == "<dir>":
        path.mkdir()
    elif isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    line = one_error_line(breaker_fsm("policy", "check", path))
    assert message in line


# --------------------------------------------------------------------------- audit


def test_audit_show_prints_a_plain_table_when_piped(trail: Path) -> None:
    """audit show prints time, breaker, event, source → target and reason, one row a record."""
    done = breaker_fsm("audit", "show", trail)
    assert done.returncode == 0
    lines = done.stdout.splitlines()
    assert lines[0].split() == ["time", "breaker", "event", "source", "→", "target", "reason"]
    assert len(lines) == 6
    assert re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}Z  users-api  trip ", lines[1])
    assert "closed → open" in lines[1]
    assert lines[5].split("  ")[-1] == "dependency fixed"
    assert "\x1b[" not in done.stdout


def test_audit_show_uses_rich_on_a_terminal(trail: Path) -> None:
    """On a terminal (FORCE_COLOR stands in for one) audit show draws a rich table."""
    trail.write_text(trail.read_text("utf-8").replace("dependency fixed", "[/] fixed [b]"))
    done = breaker_fsm("audit", "show", trail, env={"FORCE_COLOR": "1", "COLUMNS": "200"})
    assert done.returncode == 0
    assert "┃" in done.stdout
    assert "\x1b[" in done.stdout
    assert "attempt_reset" in done.stdout
    assert "[/] fixed [b]" in done.stdout  # a reason is text, never rich markup


def test_audit_show_without_rich_stays_plain(trail: Path, shadow: Shadow) -> None:
    """Without rich, a terminal still gets the plain table."""
    done = breaker_fsm("audit", "show", trail, env={"FORCE_COLOR": "1", **shadow("rich")})
    assert done.returncode == 0
    assert done.stdout.splitlines()[0].startswith("time ")


def test_audit_show_empty_trail(tmp_path: Path) -> None:
    """An empty trail says so and exits 0."""
    path = tmp_path / "empty.jsonl"
    path.write_text("\n\n")
    done = breaker_fsm("audit", "show", path)
    assert done.returncode == 0
    assert done.stdout == f"{path}: no transitions\n"


def test_audit_verify_accepts_a_legal_trail(trail: Path) -> None:
    """audit verify exits 0 with one line per breaker and an OK line."""
    done = breaker_fsm("audit", "verify", trail)
    assert done.returncode == 0
    breaker_line, head, ok = done.stdout.splitlines()
    assert breaker_line == (
        "users-api: 5 transitions, 1 life, 0 outages, "
        "2026-01-01 00:00:00.000Z → 2026-01-01 00:00:01.000Z (1s)"
    )
    records = read_jsonl(trail)
    assert head == f"  head {digest(records[-1])} ({records[-1].origin})"
    assert ok == "OK: 5 transitions of 1 breaker in 1 file, legal walks of BreakerMachine"
    assert done.stderr == ""


def test_audit_verify_names_the_first_bad_line(trail: Path) -> None:
    """An illegal walk exits 1 naming the file line of the first bad record (blank lines count)."""
    lines = trail.read_text("utf-8").splitlines()
    trail.write_text("\n".join(["", lines[0], "", lines[1], lines[3], lines[4]]) + "\n")
    line = one_error_line(breaker_fsm("audit", "verify", trail))
    assert line == f"Error: {trail}:5: breaker 'users-api', seq 4: seq 4 follows seq 2: expected 3"


def test_audit_verify_summary_counts_breakers(tmp_path: Path) -> None:
    """Interleaved trails of several breakers verify each on its own and count them."""
    first = write_trail(tmp_path / "a.jsonl").read_text("utf-8").splitlines()
    second = write_trail(tmp_path / "b.jsonl", "billing").read_text("utf-8").splitlines()
    merged = tmp_path / "merged.jsonl"
    merged.write_text("\n".join(x for pair in zip(first, second, strict=True) for x in pair))
    done = breaker_fsm("audit", "verify", merged)
    assert done.returncode == 0
    assert "OK: 10 transitions of 2 breakers in 1 file" in done.stdout


@pytest.mark.parametrize("command", ["show", "verify"])
def test_audit_corrupt_json_line_is_named(trail: Path, command: str) -> None:
    """A corrupt JSON line gives one line naming that line, exit 1."""
    lines = trail.read_text("utf-8").splitlines()
    lines[2] = lines[2][:40]
    trail.write_text("\n".join(lines) + "\n")
    line = one_error_line(breaker_fsm("audit", command, trail))
    assert line.startswith(f"Error: {trail}:3: not valid JSON")


def test_audit_invalid_record_names_line_and_field(trail: Path) -> None:
    """A line that is JSON but not a record names the line and the field."""
    with trail.open("a") as file:
        file.write('{"seq": 0, "breaker": "x"}\n')
    line = one_error_line(breaker_fsm("audit", "verify", trail))
    assert line.startswith(f"Error: {trail}:6: field 'seq'")


@pytest.mark.parametrize("command", ["show", "verify"])
@pytest.mark.parametrize(
    ("kind", "message"),
    [("missing", "no such file"), ("directory", "cannot read"), ("binary", "cannot read")],
)
def test_audit_unreadable_files_give_one_line(
    tmp_path: Path, command: str, kind: str, message: str
) -> None:
    """A missing file, a directory or a non-UTF-8 file gives one clear line and exit 1."""
    path = tmp_path / "trail.jsonl"
    if kind == "directory":
        path.mkdir()
    elif kind == "binary":
        path.write_bytes(b"\xff\xfe\x00")
    line = one_error_line(breaker_fsm("audit", command, path))
    assert line.startswith(f"Error: {path}: {message}")


def test_audit_verify_merges_the_files_of_several_lives(tmp_path: Path) -> None:
    """Several files, old format and new, merge: each breaker's lives counted, exit 0."""
    first = write_trail(tmp_path / "first.jsonl", later=3600)  # after the fixture's minute
    second = write_trail(tmp_path / "second.jsonl", later=7200)
    fixture = ROOT / "tests" / "fixtures" / "trail-v1.jsonl"
    done = breaker_fsm("audit", "verify", first, second, fixture)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("users-api: 15 transitions, 3 lives (2 restarts), 0 outages, ")
    origins = [read_jsonl(path)[-1].origin for path in (first, second)]
    assert [line.rsplit(" ", 1)[-1] for line in lines[1:3]] == [f"({o})" for o in origins]
    assert lines[3].startswith("billing: 5 transitions, 1 life, 0 outages, ")  # no origin,
    assert lines[4] == "OK: 20 transitions of 2 breakers in 3 files, legal walks of BreakerMachine"


@pytest.mark.parametrize(
    ("tamper", "message"),
    [
        ("edit", "seq 3: the hash chain breaks between this record and seq 4"),
        ("delete", "seq 4: seq 4 follows seq 2: expected 3"),
        ("swap", "seq 4: seq 4 follows seq 2: expected 3"),
    ],
)
def test_audit_verify_names_the_file_and_line_of_a_tampered_record(
    tmp_path: Path, tamper: str, message: str
) -> None:
    """An edited, deleted or moved record in one of several files names that file:line."""
    first = write_trail(tmp_path / "first.jsonl")
    second = write_trail(tmp_path / "second.jsonl", "billing")
    lines = second.read_text("utf-8").splitlines()
    if tamper == "edit":
        lines[2] = lines[2].replace('"reason":"', '"reason":"quietly ')
    elif tamper == "delete":
        del lines[2]
    else:
        lines[2], lines[3] = lines[3], lines[2]
    second.write_text("\n".join(lines) + "\n", "utf-8")
    line = one_error_line(breaker_fsm("audit", "verify", first, second))
    assert line == f"Error: {second}:3: breaker 'billing', {message}" + (
        ": this record was edited, or records after it were removed" if tamper == "edit" else ""
    )


def test_audit_show_merges_several_files(tmp_path: Path) -> None:
    """audit show takes several files and prints their records merged by time."""
    first = write_trail(tmp_path / "first.jsonl")
    second = write_trail(tmp_path / "second.jsonl", "billing")
    done = breaker_fsm("audit", "show", first, second)
    assert done.returncode == 0
    rows = done.stdout.splitlines()[1:]
    assert len(rows) == 10
    assert [row.split()[2] for row in rows[:2]] == ["users-api", "billing"]
    assert rows == sorted(rows, key=lambda row: row[:24])
    empty, blank = tmp_path / "empty.jsonl", tmp_path / "blank.jsonl"
    empty.write_text("")
    blank.write_text("\n")
    assert (
        breaker_fsm("audit", "show", empty, blank).stdout == f"{empty}, {blank}: no transitions\n"
    )


def test_two_writers_at_once_are_not_restarts(tmp_path: Path) -> None:
    """Two instances writing one breaker's trail at the same time: concurrent, no restart."""
    first = write_trail(tmp_path / "first.jsonl")
    second = write_trail(tmp_path / "second.jsonl")  # the same second as the first
    done = breaker_fsm("audit", "verify", first, second)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(
        "users-api: 10 transitions, 2 lives (1 writing at the same time as another), 0 outages, "
    )
    third = write_trail(tmp_path / "third.jsonl", later=60)
    done = breaker_fsm("audit", "verify", first, second, third)
    assert done.stdout.startswith(
        "users-api: 15 transitions, 3 lives (1 restart, 1 writing at the same time as another), "
    )


@pytest.mark.parametrize("command", ["verify", "show"])
def test_audit_commands_refuse_a_file_given_twice(tmp_path: Path, command: str) -> None:
    """The same file twice (as given, or by another path) is named, not verified twice."""
    trail = write_trail(tmp_path / "trail.jsonl")
    line = one_error_line(breaker_fsm("audit", command, trail, trail))
    assert line == f"Error: {trail}: the same file is given twice"
    other = tmp_path / ".." / tmp_path.name / "trail.jsonl"
    line = one_error_line(breaker_fsm("audit", command, trail, other))
    assert line == f"Error: {other}: the same file is given twice (as {trail} and {other})"


@pytest.mark.parametrize("command", ["verify", "show"])
def test_audit_commands_name_a_call_log(tmp_path: Path, command: str) -> None:
    """A call log where a trail goes: the error says what it looks like, at its line."""
    calls = tmp_path / "calls.jsonl"
    calls.write_text('\n{"at": 1.5, "outcome": "success", "breaker": "db"}\n', "utf-8")
    line = one_error_line(breaker_fsm("audit", command, calls))
    assert line == (
        f"Error: {calls}:2: this looks like a call log (it has at/outcome), not an audit trail"
    )


def test_audit_schema_covers_identity_and_chain() -> None:
    """audit schema prints the record's JSON Schema, with origin, life and prev."""
    done = breaker_fsm("audit", "schema")
    assert done.returncode == 0
    schema = json.loads(done.stdout)
    assert schema["title"] == "Transition"
    properties = schema["properties"]
    assert {"origin", "life", "prev", "generation"} <= set(properties)
    assert {"seq", "breaker", "event", "source", "target", "at", "monotonic"} <= set(
        schema["required"]
    )
    assert "origin" not in schema["required"]
    assert {"type": "string", "pattern": "^[0-9a-f]{64}$"} in properties["prev"]["anyOf"]


# --------------------------------------------------------------------------- demo and extras


def test_demo_runs_the_main_job(tmp_path: Path) -> None:
    """demo runs the walkthrough: the breaker trips on the flaky service."""
    done = breaker_fsm("demo", cwd=tmp_path)
    assert done.returncode == 0
    assert "trip" in done.stdout


def test_without_click_only_demo_runs(tmp_path: Path, shadow: Shadow) -> None:
    """Without click, demo still runs and anything else says which extra to install, exit 2."""
    env = shadow("click")
    demo = breaker_fsm("demo", env=env, cwd=tmp_path)
    assert demo.returncode == 0
    assert "trip" in demo.stdout
    for args in (["--help"], ["diagram"], ["demo", "--help"]):
        done = breaker_fsm(*args, env=env)
        assert done.returncode == 2
        assert done.stdout == ""
        assert done.stderr == (
            "breaker-fsm: the command line needs click (the cli extra): "
            "pip install 'breaker-fsm[cli]'\n"
        )


def test_unexpected_errors_are_one_line_not_a_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """An unforeseen exception inside a command is reported in one line, exit 1."""
    from breaker_fsm import _cli
    from breaker_fsm.__main__ import main

    def explode(*args: object, **kwargs: object) -> str:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(_cli, "render", explode)
    assert main(["diagram"]) == 1
    assert capsys.readouterr().err == "Error: unexpected RuntimeError: disk on fire\n"
    assert main(["--version"]) == 0


def test_audit_verify_takes_the_empty_trail_of_a_member_that_recorded_nothing(
    trail: Path, tmp_path: Path
) -> None:
    """A JsonlSink creates its file: a watching member's trail verifies, as "no records"."""
    watcher = tmp_path / "tr-w.jsonl"
    JsonlSink(watcher)  # a member that only mirrors others' transitions records nothing
    done = breaker_fsm("audit", "verify", watcher, trail)
    assert done.returncode == 0, done.stderr
    assert done.stderr == f"{watcher}: no records\n"
    assert "OK: 5 transitions of 1 breaker in 2 files" in done.stdout
