"""The ``breaker-fsm`` command line, built with click (the ``cli`` extra).

Rich draws tables and colour when stdout is a terminal (rich's own test, so ``FORCE_COLOR``,
``NO_COLOR`` and ``TTY_COMPATIBLE`` are honoured); piped output is plain text. Every failure
is one ``Error: ...`` line on stderr with exit status 1, a usage error exits 2, and nothing
ever prints a traceback.
"""

from __future__ import annotations

import heapq
import json
import reprlib
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import click
from pydantic import ValidationError

from . import __version__
from ._audit import Transition
from ._machine import STATES, BreakerMachine
from ._policy import BreakerPolicy
from ._sources import guess_section
from ._trail import read_numbered
from ._verify import BreakerSummary, Fork, instant, verify
from .diagram import FORMATS, render
from .exceptions import AuditError, DiagramError, PolicyFileError, ReplayError

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from rich.console import Console

    from .replay import Replay

__all__ = ["cli", "run"]

#: The diagram format an ``--output`` file's suffix implies when ``--format`` is not given.
SUFFIX_FORMATS = {
    ".mmd": "mermaid",
    ".mermaid": "mermaid",
    ".dot": "dot",
    ".gv": "dot",
    ".svg": "svg",
    ".png": "png",
}


class Fail(click.ClickException):
    """A failure the user can act on: one ``Error: ...`` message, exit status 1."""


def run(args: Sequence[str]) -> int:
    """Run the command line on ``args``; returns the exit status, never raises."""
    code: object = 0
    try:
        cli.main(args=list(args), prog_name="breaker-fsm")
    except SystemExit as exc:  # click's standalone mode always ends here
        code = exc.code
    except Exception as exc:  # anything unforeseen: still one line, never a traceback
        click.echo(f"Error: unexpected {type(exc).__name__}: {exc}", err=True)
        return 1
    return code if isinstance(code, int) else 1


def _console() -> Console | None:
    """A rich console when stdout is a terminal and rich is installed, else ``None``."""
    try:
        from rich.console import Console
    except ImportError:
        return None
    console = Console(highlight=False)
    return console if console.is_terminal else None


def _plural(count: int, word: str, plural: str | None = None) -> str:
    return f"{count} {word if count == 1 else plural or word + 's'}"


# --------------------------------------------------------------------------- the group


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "-V", "--version", prog_name="breaker-fsm")
def cli() -> None:
    """A circuit breaker built as an audited finite-state machine.

    Render its state diagram, check and explain policy files, read and verify audit trails,
    replay recorded calls against candidate policies, or run the demo.
    """


# --------------------------------------------------------------------------- diagram


@cli.command()
@click.option(
    "-f",
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    help="Output format [default: from the --output suffix, else mermaid]. "
    "svg and png need Graphviz's dot.",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the diagram to FILE instead of stdout.",
)
@click.option("-s", "--state", type=click.Choice(STATES), help="Highlight this state.")
def diagram(fmt: str | None, output: Path | None, state: str | None) -> None:
    """Print or write the state diagram.

    The diagram is derived from BreakerMachine; a state given with --state is highlighted.
    """
    if fmt is None:
        fmt = SUFFIX_FORMATS.get(output.suffix.lower(), "mermaid") if output else "mermaid"
    if fmt == "png" and output is None:
        raise click.UsageError("png is binary: write it to a file with --output FILE")
    try:
        content = render(BreakerMachine, fmt, state=state)
    except DiagramError as exc:
        raise Fail(str(exc)) from None
    if output is None:
        click.echo(content, nl=False)
        return
    data = content.encode("utf-8") if isinstance(content, str) else content
    try:
        output.write_bytes(data)
    except OSError as exc:
        raise Fail(f"{output}: cannot write: {exc.strerror or exc}") from None
    click.echo(f"wrote {output} ({fmt})", err=True)


# --------------------------------------------------------------------------- policy


@cli.group()
def policy() -> None:
    """Inspect and validate breaker policies."""


def _section_option(command: Callable[..., None]) -> Callable[..., None]:
    """The --section option of every command that reads a policy file."""
    return click.option(
        "--section",
        metavar="TABLE",
        help='Dotted path of the table holding the policy, e.g. "tool.breaker_fsm".',
    )(command)


def _policy_file(command: Callable[..., None]) -> Callable[..., None]:
    """The FILE argument and the --section option of the commands that read a policy file."""
    command = _section_option(command)
    return click.argument("file", type=click.Path(path_type=Path))(command)


@policy.command()
def schema() -> None:
    """Print the JSON Schema of a policy (BreakerPolicy)."""
    click.echo(json.dumps(BreakerPolicy.model_json_schema(), indent=2))


@policy.command()
@_policy_file
def check(file: Path, section: str | None) -> None:
    """Validate a JSON or TOML policy file.

    Prints the effective policy (defaults filled in) as JSON, or exits 1 listing every
    invalid field by its path.
    """
    text = _load_policy(file, section).model_dump_json(indent=2)
    console = _console()
    if console is None:
        click.echo(text)
    else:
        console.print_json(text)


#: Error types whose message already names the input (the policy's own validators).
_SAYS_INPUT = frozenset({"value_error"})


@policy.command(name="explain")
@_policy_file
def explain_command(file: Path, section: str | None) -> None:
    """Say in words when the policy in FILE trips and recovers.

    Warns about rules that can never fire and open durations that grow without limit; the
    exit status is 0 either way (1 only when FILE is not a valid policy).
    """
    from ._explain import explain

    explanation = explain(_load_policy(file, section))
    wrap = textwrap.TextWrapper(width=88, subsequent_indent="  ", break_on_hyphens=False)
    click.echo(wrap.fill(f"Trips {explanation.trips}."))
    click.echo(wrap.fill(f"Recovers: {explanation.recovers}."))
    for warning in explanation.warnings:
        click.secho(wrap.fill(f"Warning: {warning}."), fg="yellow")


def _load_policy(file: Path, section: str | None = None) -> BreakerPolicy:
    """Load a policy file as ``policy check`` does, or fail listing every invalid field."""
    try:
        return BreakerPolicy.from_file(file, section=section)
    except PolicyFileError as exc:
        raise Fail(str(exc)) from None
    except ValidationError as exc:
        problems = [
            f"  {_field_path(error['loc'])}: {error['msg']}"
            + ("" if error["type"] in _SAYS_INPUT else f" (got {_short(error['input'])})")
            for error in exc.errors(include_url=False)
        ]
        header = f"{file}: invalid policy, {_plural(exc.error_count(), 'error')}"
        hint = _section_hint(exc) if section is None else None
        raise Fail("\n".join([header, *problems, *([hint] if hint else [])])) from None


def _section_hint(exc: ValidationError) -> str | None:
    """A hint to pass --section when the policy seems to sit in a table of the file."""
    table = guess_section(exc)
    return None if table is None else f"  hint: is the policy in a table? Pass --section {table}"


def _field_path(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(part) for part in loc) or "(policy)"


def _short(value: object, limit: int = 60) -> str:
    try:
        text = repr(value)
    except RecursionError:  # nested too deep for repr (TOML's [a.b.c...]): elide inner levels
        text = reprlib.repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


# --------------------------------------------------------------------------- audit


@cli.group()
def audit() -> None:
    """Read and verify audit trails.

    A trail is a JSON Lines file, one transition a line, as JsonlSink writes it. Several
    files (a service's rotated files, a fleet's members) are merged by time, each file's
    own order kept.
    """


#: A record, and the file and line it was read from.
Located = tuple[Path, int, Transition]


def _read(files: Sequence[Path]) -> list[Located]:
    """The records of ``files`` merged by ``at``; each file's own order is kept."""
    seen: dict[Path, Path] = {}
    for file in files:  # a file given twice would double every record and fail its chain
        same = seen.setdefault(file.resolve(), file)
        if same is not file:
            twice = "twice" if same == file else f"twice (as {same} and {file})"
            raise Fail(f"{file}: the same file is given {twice}")
    per_file: list[list[Located]] = []
    for file in files:
        try:
            numbered = read_numbered(file)
        except AuditError as exc:
            raise Fail(str(exc)) from None
        per_file.append([(file, line, record) for line, record in numbered])
    return list(heapq.merge(*per_file, key=lambda located: instant(located[2].at)))


def _names(files: Sequence[Path]) -> str:
    return ", ".join(map(str, files))


@audit.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
def show(files: tuple[Path, ...]) -> None:
    """Print the audit trail in FILES as a table, merged by time."""
    records = [record for _, _, record in _read(files)]
    if not records:
        click.echo(f"{_names(files)}: no transitions")
        return
    header = ("time", "breaker", "event", "source → target", "reason")
    rows = [
        (
            _utc(record.at),
            record.breaker,
            record.event,
            f"{record.source} → {record.target}",
            record.reason,
        )
        for record in records
    ]
    console = _console()
    if console is not None:
        from rich.table import Table
        from rich.text import Text

        table = Table(title=Text(_names(files)), title_justify="left")
        for name in header:  # time and event stay on one line; the others may wrap
            table.add_column(name, no_wrap=name in ("time", "event"), min_width=8)
        for row in rows:  # Text, not str: "[...]" in a reason is not rich markup
            table.add_row(*(Text(cell) for cell in row))
        console.print(table)
        return
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header) - 1)]
    for row in [header, *rows]:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        click.echo("  ".join([*cells, row[-1]]).rstrip())


def _utc(at: datetime) -> str:
    """``at`` in UTC to the millisecond, or as recorded when UTC is outside datetime's range."""
    try:
        return at.astimezone(UTC).isoformat(sep=" ", timespec="milliseconds")[:-6] + "Z"
    except OverflowError:  # 0001-01-01T00:00+14:00 is in year 0 in UTC
        return at.isoformat(sep=" ", timespec="milliseconds")


@audit.command(name="verify")
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
def verify_command(files: tuple[Path, ...]) -> None:
    """Check that the trails in FILES, merged, are legal walks of the machine.

    Prints one line per breaker (transitions, lives, outages, time span), then each fork
    of a fleet's shared walk (records of two members at one generation: a failover lost
    one member's transition), then the head of each writer's hash chain (to compare with
    an anchored one), and exits 0; or exits 1 naming the file and line of the first bad
    record. A file with no records is named on stderr.
    """
    located = _read(files)
    for empty in sorted(set(files) - {file for file, _, _ in located}, key=files.index):
        click.echo(f"{empty}: no records", err=True)
    try:
        summary = verify(record for _, _, record in located)
    except AuditError as exc:  # verify names the record's position: always set here
        file, line, _ = located[exc.index if exc.index is not None else -1]
        raise Fail(f"{file}:{line}: {exc}") from None
    for breaker in summary.breakers.values():
        click.echo(_breaker_line(breaker, located))
    forks = sum(len(breaker.forks) for breaker in summary.breakers.values())
    click.secho(
        f"OK: {_plural(summary, 'transition')} of {_plural(len(summary.breakers), 'breaker')} "
        f"in {_plural(len(files), 'file')}, legal walks of BreakerMachine"
        + (f" ({_plural(forks, 'failover fork')}: a store lost transitions)" if forks else ""),
        fg="green",
    )


def _breaker_line(breaker: BreakerSummary, located: Sequence[Located]) -> str:
    notes = [_plural(breaker.restarts, "restart")] if breaker.restarts else []
    if breaker.concurrent:
        notes.append(f"{breaker.concurrent} writing at the same time as another")
    if breaker.store_restarts:
        notes.append(_plural(breaker.store_restarts, "store restart"))
    restarts = f" ({', '.join(notes)})" if notes else ""
    forks = f", {_plural(len(breaker.forks), 'failover fork')}" if breaker.forks else ""
    return (
        (
            f"{breaker.breaker}: {_plural(breaker.transitions, 'transition')}, "
            f"{_plural(breaker.lives, 'life', 'lives')}{restarts}, "
            f"{_plural(breaker.outages, 'outage')}{forks}, "
            f"{_utc(breaker.first)} → {_utc(breaker.last)} ({_duration(breaker.span)})"
        )
        + "".join(f"\n  {_fork_line(fork, located)}" for fork in breaker.forks)
        + "".join(f"\n  head {head} ({origin})" for origin, head in breaker.heads.items())
    )


def _fork_line(fork: Fork, located: Sequence[Located]) -> str:
    """A fork: where each of its records is, and what it did."""
    branches = "; ".join(
        f"{located[index][0]}:{located[index][1]} {record.event} "
        f"{record.source} → {record.target} by {record.origin}"
        for index, record in zip(fork.indexes, fork.records, strict=True)
    )
    return (
        f"fork at generation {fork.generation} ({fork.life}): {branches} "
        "(the store lost one in a failover; the fleet went on from the one it kept)"
    )


def _duration(span: timedelta) -> str:
    """A span as ``3d 4h 5m 6.5s``, leading zero units left out."""
    seconds = span.total_seconds()
    parts: list[str] = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        count, seconds = divmod(seconds, size)
        if count or parts:
            parts.append(f"{int(count)}{unit}")
    parts.append(f"{seconds:.3g}s")
    return " ".join(parts)


@audit.command(name="schema")
def audit_schema() -> None:
    """Print the JSON Schema of an audit record (Transition), one line of a trail."""
    click.echo(json.dumps(Transition.model_json_schema(), indent=2))


# --------------------------------------------------------------------------- simulate

#: The plot formats ``--plot`` writes, by suffix.
PLOT_SUFFIXES = (".png", ".svg")


@cli.command(name="simulate")
@click.argument("calls_file", metavar="CALLS", type=click.Path(path_type=Path))
@click.option(
    "-p",
    "--policy",
    "policy_files",
    metavar="FILE",
    multiple=True,
    required=True,
    help="A candidate policy (JSON or TOML, as policy check reads it); repeat to compare.",
)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list, one object a policy.")
@click.option(
    "--plot",
    metavar="OUT.png|OUT.svg",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also draw one timeline per policy (needs matplotlib: the plot extra).",
)
@click.option("--seed", type=int, help="Seed of the open-duration jitter [default: 0].")
@click.option(
    "-b",
    "--breaker",
    metavar="NAME",
    help="Replay only this breaker's calls (needed when CALLS holds several breakers').",
)
@_section_option
def simulate_command(  # noqa: PLR0917 - click passes one parameter per option
    calls_file: Path,
    policy_files: tuple[str, ...],
    as_json: bool,
    plot: Path | None,
    seed: int | None,
    breaker: str | None,
    section: str | None,
) -> None:
    """Replay the calls recorded in CALLS against each --policy.

    CALLS is JSON Lines as CallLogSink writes it (at, outcome, duration, breaker), or CSV
    (.csv) with the same columns. Calls replay one after another on a simulated clock;
    calls recorded as refused are skipped (their outcome is unknown). One row (or JSON
    object) per policy, in the order given; --section applies to every policy file.
    """
    from .replay import plot as draw
    from .replay import read_calls, require_matplotlib, simulate

    if plot is not None:
        if plot.suffix.lower() not in PLOT_SUFFIXES:
            raise click.UsageError(f"--plot writes .png or .svg, not {plot.name!r}")
        try:
            require_matplotlib()
        except ImportError as exc:
            raise Fail(str(exc)) from None
    policies = _load_policies(policy_files, section)
    try:
        calls = read_calls(calls_file, breaker=breaker)
    except ReplayError as exc:
        raise Fail(str(exc)) from None
    if not calls:
        raise Fail(f"no calls in {calls_file}")
    replays = [simulate(candidate, calls, seed=seed) for candidate in policies]
    if plot is not None:
        try:
            draw(plot, calls, replays, labels=policy_files)
        except OSError as exc:
            raise Fail(f"{plot}: cannot write: {exc.strerror or exc}") from None
    if as_json:
        rows = [
            {"policy": name, **replay.as_dict()}
            for name, replay in zip(policy_files, replays, strict=True)
        ]
        click.echo(json.dumps(rows, indent=2))
    else:
        _replay_table(calls_file, policy_files, replays)
    if plot is not None:
        click.echo(f"wrote {plot}", err=True)


def _load_policies(files: Sequence[str], section: str | None) -> list[BreakerPolicy]:
    """Load every policy file, or fail naming every bad one (not only the first)."""
    policies, problems = [], []
    for name in files:
        try:
            policies.append(_load_policy(Path(name), section))
        except Fail as exc:
            problems.append(exc.message)
    if problems:
        raise Fail("\n".join(problems))
    return policies


def _replay_table(calls_file: Path, names: Sequence[str], replays: Sequence[Replay]) -> None:
    """One row per policy: plain text when piped, a rich table on a terminal."""
    header = (
        "policy",
        "calls",
        "ran",
        "refused",
        "trips",
        "retrips",
        "recovers",
        "first trip",
        "open s",
        "failures let through",
        "successes refused",
    )
    rows = [
        (
            name,
            str(replay.calls),
            str(replay.ran),
            str(replay.refused),
            str(replay.transitions["trip"]),
            str(replay.transitions["retrip"]),
            str(replay.transitions["recover"]),
            "-" if replay.first_trip_after is None else f"+{_seconds(replay.first_trip_after)}s",
            _seconds(replay.open_seconds),
            str(replay.failures_let_through),
            str(replay.successes_refused),
        )
        for name, replay in zip(names, replays, strict=True)
    ]
    notes = []
    skipped, overlapped = replays[0].skipped, replays[0].overlapped  # the same for every policy
    if skipped:
        notes.append(f"{_plural(skipped, 'call')} recorded as refused skipped (outcome unknown)")
    if overlapped:
        notes.append(
            f"{_plural(overlapped, 'call')} started while an earlier call was still running "
            "(replayed one after another, each at its own start)"
        )
    console = _console()
    if console is not None:
        from rich import box
        from rich.table import Table
        from rich.text import Text

        # Narrow enough for 80 columns: each policy's path in full above the table (folded
        # when longer than a line, never cut short), its number in the table; two-line
        # headings; one space between columns.
        console.print(Text(str(calls_file), overflow="fold"))
        for number, name in enumerate(names, start=1):
            console.print(Text(f"  {number}: {name}", overflow="fold"))
        table = Table(box=box.SIMPLE_HEAD, padding=0, pad_edge=False, show_edge=False)
        for i, name in enumerate(header):
            table.add_column(
                "#" if i == 0 else _HEADINGS.get(name, name), justify="right", no_wrap=i == 0
            )
        for number, row in enumerate(rows, start=1):
            table.add_row(*(Text(cell) for cell in (str(number), *row[1:])))
        console.print(table)
        for note in notes:
            console.print(Text(f"note: {note}"))
        return
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        cells = [row[0].ljust(widths[0])]
        cells += [cell.rjust(width) for cell, width in zip(row[1:], widths[1:], strict=True)]
        click.echo("  ".join(cells).rstrip())
    for note in notes:
        click.echo(f"note: {note}")


#: The replay table's headings on a terminal, on two lines to fit 80 columns.
_HEADINGS = {
    "first trip": "first\ntrip",
    "open s": "open\ns",
    "failures let through": "failures\nlet through",
    "successes refused": "successes\nrefused",
}


def _seconds(value: float) -> str:
    """Seconds to the millisecond, without trailing zeros."""
    return f"{value:.3f}".rstrip("0").rstrip(".")


# --------------------------------------------------------------------------- demo


@cli.command()
def demo() -> None:
    """Run the demo: a flaky service behind a breaker.

    Time is simulated, so it is instant and the same every run; it ends with the audit trail.
    """
    from ._demo import run as run_demo

    run_demo()
