"""Audit trails on disk: the sinks that write records, and reading a trail back."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable
from pathlib import Path

from pydantic import ValidationError

from ._audit import Transition
from .exceptions import AuditError

__all__ = [
    "JsonlSink",
    "LoggingSink",
    "dump_jsonl",
    "jsonl_lines",
    "read_jsonl",
    "read_numbered",
]


class JsonlSink:
    """Append each record to a JSON Lines file, one object a line, flushed as written.

    The file is created (empty) here, if it does not exist yet: a process that records
    nothing (a fleet member that only mirrors other members' transitions) still leaves a
    trail that ``breaker-fsm audit verify`` reads, as "no records". It is then opened for
    each record (transitions are rare), so a rotated or recreated file is picked up and a
    vanished directory is reported on the next write.

    Raises:
        FileNotFoundError: the file's directory does not exist (checked here, not at the
            first transition, which would be during an outage).
        NotADirectoryError: what should be the file's directory is not one.
        IsADirectoryError: the path is a directory, not a file.
        PermissionError: the file cannot be created or written.
    """

    __slots__ = ("path",)

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        folder = self.path.parent
        if not folder.is_dir():
            where = f"JsonlSink({str(self.path)!r}): its directory {str(folder)!r}"
            if folder.exists():
                raise NotADirectoryError(f"{where} is not a directory")
            raise FileNotFoundError(f"{where} does not exist")
        if self.path.is_dir():
            raise IsADirectoryError(
                f"JsonlSink({str(self.path)!r}) is a directory: name a file in it"
            )
        with self.path.open("a", encoding="utf-8"):  # created empty, an existing one kept
            pass

    def __call__(self, record: Transition) -> None:
        """Write ``record`` as one line."""
        with self.path.open("a", encoding="utf-8") as file:
            file.write(record.to_json() + "\n")
            file.flush()

    def __repr__(self) -> str:
        return f"JsonlSink({str(self.path)!r})"


class LoggingSink:
    """Log each record with :mod:`logging` (logger ``breaker_fsm.audit`` by default)."""

    __slots__ = ("level", "logger")

    def __init__(self, logger: logging.Logger | None = None, level: int = logging.INFO) -> None:
        self.logger = logger if logger is not None else logging.getLogger("breaker_fsm.audit")
        self.level = level

    def __call__(self, record: Transition) -> None:
        """Log ``record`` as one line, with the record itself in ``extra``."""
        self.logger.log(
            self.level,
            "breaker %s #%d: %s %s -> %s (%s)",
            record.breaker,
            record.seq,
            record.event,
            record.source,
            record.target,
            record.reason,
            extra={"transition": record.model_dump(mode="json")},
        )

    def __repr__(self) -> str:
        return f"LoggingSink({self.logger.name!r})"


def jsonl_lines(text: str) -> list[str]:
    """The lines of a JSON Lines text read in universal-newline mode (as ``read_text`` does).

    Only ``"\n"`` ends a line: ``str.splitlines`` would also break at U+2028, U+0085 and
    others, which JSON leaves unescaped inside strings.
    """
    return text.split("\n")


def read_jsonl(path: str | os.PathLike[str]) -> list[Transition]:
    """Read a JSON Lines audit trail back as records; blank lines are skipped.

    Raises:
        AuditError: the file cannot be read, or a line is not a valid record (the error
            names the line number in ``line``).
    """
    return [record for _, record in read_numbered(path)]


def read_numbered(path: str | os.PathLike[str]) -> list[tuple[int, Transition]]:
    """:func:`read_jsonl`, each record with its 1-based line number in the file."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise AuditError(f"{file}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise AuditError(f"{file}: cannot read: {exc}") from None
    records: list[tuple[int, Transition]] = []
    for number, line in enumerate(jsonl_lines(text), start=1):
        if not line.strip():
            continue
        try:
            records.append((number, Transition.model_validate_json(line)))
        except ValidationError as exc:
            problem = _call_log_hint(line) or _describe(exc)
            raise AuditError(f"{file}:{number}: {problem}", line=number) from None
    return records


def _call_log_hint(line: str) -> str | None:
    """What to say when a line that is not a record is a call log's line instead."""
    try:
        value = json.loads(line)
    except (ValueError, RecursionError):
        return None
    if isinstance(value, dict) and "outcome" in value and "event" not in value:
        return "this looks like a call log (it has at/outcome), not an audit trail"
    return None


def _describe(exc: ValidationError) -> str:
    first = exc.errors(include_url=False)[0]
    if first["type"] == "json_invalid":
        return f"not valid JSON ({first['msg']})"
    where = ".".join(str(part) for part in first["loc"]) or "record"
    more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return f"field {where!r}: {first['msg']}{more}"


def dump_jsonl(records: Iterable[Transition]) -> str:
    """Records as JSON Lines text (what :class:`JsonlSink` writes)."""
    return "".join(record.to_json() + "\n" for record in records)
