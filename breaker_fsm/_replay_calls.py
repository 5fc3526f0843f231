"""Recorded calls for a replay: the ``Call`` record and ``read_calls``, which reads a call log.

Part of :mod:`breaker_fsm.replay`, which re-exports the public names.
"""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path
from typing import Final, NamedTuple, cast

from ._trail import jsonl_lines
from .exceptions import ReplayError

#: The outcomes a call record may have. ``"refused"`` means the recorded breaker refused the
#: call, so what the service would have answered is unknown: such calls are skipped.
OUTCOMES: Final = ("success", "failure", "ignored", "refused")

_NAMES: Final = ", ".join(OUTCOMES)
_OUTCOME_SET: Final = frozenset(OUTCOMES)

#: The largest ``at`` (in magnitude) and ``duration`` replayed: about 31 years.
MAX_SECONDS: Final = 1e9
_RANGE: Final = f"from {-MAX_SECONDS:g} to {MAX_SECONDS:g}"
_DURATION: Final = f"a number of seconds from 0 to {MAX_SECONDS:g}"


class Call(NamedTuple):
    """One recorded call.

    ``at`` is when it started (monotonic seconds), ``outcome`` one of :data:`OUTCOMES` and
    ``duration`` how long it ran in seconds (``None``: unknown, replayed as instantaneous and
    never slow).
    """

    at: float
    outcome: str
    duration: float | None = None


def read_calls(path: str | os.PathLike[str], *, breaker: str | None = None) -> list[Call]:
    """Read a call log: JSON Lines as ``CallLogSink`` writes it, or CSV (``.csv``).

    A JSON line is an object with ``"at"`` (seconds), ``"outcome"`` (one of
    :data:`OUTCOMES`) and optionally ``"duration"`` (seconds, or null) and ``"breaker"``;
    other keys are ignored and blank lines skipped. A CSV file (a UTF-8 byte-order mark, as
    Excel writes, is allowed) has a header row naming at least the ``at`` and ``outcome``
    columns (``duration`` and ``breaker`` optional, an empty duration meaning unknown); other
    columns are ignored. The calls come back sorted by ``at`` (stably): a sink writes a call
    when it ends, so calls that overlapped are logged out of start order.

    Args:
        path: the call log.
        breaker: keep only the calls of this breaker. Without it, a log whose calls name
            more than one breaker is refused (one breaker, or none named, is read whole).

    Raises:
        ReplayError: the file cannot be read, a line is not a valid call record (the message
            names the file and the line, also in ``path`` and ``line``), the calls name
            several breakers and none is picked, or none is of the ``breaker`` picked.
    """
    if not isinstance(path, str | os.PathLike):
        raise TypeError(f"read_calls() takes a path (str or Path), got {type(path).__name__}")
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ReplayError(f"{file}: no such file", path=str(file)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ReplayError(f"{file}: cannot read: {exc}", path=str(file)) from None
    reader = _csv_calls if file.suffix.lower() == ".csv" else _jsonl_calls
    calls, names = reader(file, text)
    calls = _pick(file, calls, names, breaker)
    calls.sort(key=_start)  # timsort: one pass over a log already in order
    return calls


def _pick(file: Path, calls: list[Call], names: list[object], breaker: str | None) -> list[Call]:
    """The calls of ``breaker`` (``names`` holds each call's breaker, or None)."""
    found = sorted({str(name) for name in names if name is not None})
    if breaker is None:
        if len(found) > 1:
            raise ReplayError(
                f"{file}: the calls name {len(found)} breakers ({', '.join(found)}): pick one "
                "with breaker=NAME (--breaker NAME on the command line)",
                path=str(file),
            )
        return calls
    picked = [call for call, name in zip(calls, names, strict=True) if name == breaker]
    if not picked:
        named = f"the calls name {', '.join(found)}" if found else "no call names a breaker"
        raise ReplayError(f"{file}: no calls of breaker {breaker!r} ({named})", path=str(file))
    return picked


def _start(call: Call) -> float:
    return call.at


def _jsonl_calls(file: Path, text: str) -> tuple[list[Call], list[object]]:
    calls: list[Call] = []
    names: list[object] = []
    append = calls.append
    name = names.append
    loads = json.loads
    for number, line in enumerate(jsonl_lines(text), start=1):
        if not line.strip():
            continue
        try:
            record = loads(line)
        except (ValueError, RecursionError) as exc:  # JSONDecodeError is a ValueError
            raise _bad_line(file, number, f"not valid JSON ({exc})") from None
        if not isinstance(record, dict):
            raise _bad_line(file, number, f"not a JSON object: {_clip(line)}")
        if "outcome" not in record and "seq" in record and "event" in record:
            raise _bad_line(
                file, number, "this looks like an audit trail (it has seq/event), not a call log"
            )
        if "at" not in record or "outcome" not in record:
            missing = " and ".join(repr(key) for key in ("at", "outcome") if key not in record)
            raise _bad_line(file, number, f"no {missing} field")
        at, outcome, duration = record["at"], record["outcome"], record.get("duration")
        # Fast acceptance of a well-formed record; anything else is diagnosed in full.
        if (
            type(at) is float
            and -MAX_SECONDS <= at <= MAX_SECONDS
            and outcome in _OUTCOME_SET
            and (duration is None or (type(duration) is float and 0.0 <= duration <= MAX_SECONDS))
        ):
            append(Call(at, outcome, duration))
        else:
            append(_check_record(file, number, at, outcome, duration))
        name(record.get("breaker"))
    return calls, names


def _check_record(file: Path, number: int, at: object, outcome: object, duration: object) -> Call:
    """Validate one record's values, or raise naming the first bad one."""
    if not _is_seconds(at, -MAX_SECONDS):
        raise _bad_line(file, number, f"'at' must be a number of seconds {_RANGE}, got {_clip(at)}")
    if not isinstance(outcome, str) or outcome not in _OUTCOME_SET:
        raise _bad_line(
            file, number, f"'outcome' must be one of {', '.join(OUTCOMES)}, got {_clip(outcome)}"
        )
    if duration is not None and not _is_seconds(duration, 0.0):
        raise _bad_line(
            file,
            number,
            f"'duration' must be null or a number of seconds from 0 to {MAX_SECONDS:g}, "
            f"got {_clip(duration)}",
        )
    seconds = float(cast("float", at))
    return Call(seconds, outcome, None if duration is None else float(cast("float", duration)))


def _is_seconds(value: object, low: float) -> bool:
    """Whether ``value`` is a number (not a bool) from ``low`` to ``MAX_SECONDS``."""
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and low <= value <= MAX_SECONDS  # false for NaN
    )


def _csv_calls(file: Path, text: str) -> tuple[list[Call], list[object]]:
    rows = csv.reader(io.StringIO(text, newline=""), strict=True)
    names: list[object] = []
    try:
        header = next(rows, None)
        if header is None:
            return [], names
        columns = {name.strip().lower(): i for i, name in enumerate(header)}
        if "at" not in columns or "outcome" not in columns:
            raise _bad_line(file, 1, "the header row must name the 'at' and 'outcome' columns")
        at_col, outcome_col = columns["at"], columns["outcome"]
        duration_col = columns.get("duration")
        breaker_col = columns.get("breaker")
        width = max(at_col, outcome_col, -1 if duration_col is None else duration_col) + 1
        calls: list[Call] = []
        for row in rows:
            number = rows.line_num
            if not row or (len(row) == 1 and not row[0].strip()):
                continue  # a blank line
            if len(row) < width:
                raise _bad_line(file, number, f"{len(row)} columns, the header names {width}")
            cell = row[duration_col].strip() if duration_col is not None else ""
            try:
                at = float(row[at_col])
                duration = float(cell) if cell else None
            except ValueError as exc:
                raise _bad_line(file, number, f"not a number: {exc}") from None
            calls.append(_check_record(file, number, at, row[outcome_col].strip(), duration))
            name = ""
            if breaker_col is not None and breaker_col < len(row):
                name = row[breaker_col].strip()
            names.append(name or None)
    except csv.Error as exc:
        raise _bad_line(file, rows.line_num, f"malformed CSV ({exc})") from None
    return calls, names


def _bad_line(file: Path, number: int, problem: str) -> ReplayError:
    return ReplayError(f"{file}:{number}: {problem}", path=str(file), line=number)


def _clip(value: object, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"
