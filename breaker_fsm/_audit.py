"""The audit trail: transition records, the bounded in-memory log, sinks, reading, verifying."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from ._machine import STATES, legal_moves
from .exceptions import AuditError

__all__ = [
    "AuditLog",
    "JsonlSink",
    "LoggingSink",
    "Sink",
    "Transition",
    "read_jsonl",
    "verify",
]

#: Anything that takes a :class:`Transition`; called synchronously for every record.
Sink = Callable[["Transition"], object]


class Transition(BaseModel):
    """One transition of one breaker, as recorded in its audit trail."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    seq: int = Field(ge=1, description="1, 2, … per breaker, gapless")
    breaker: str = Field(min_length=1, description="the breaker's name")
    event: str = Field(description="the event that fired")
    source: str = Field(description="state before")
    target: str = Field(description="state after")
    at: AwareDatetime = Field(description="wall-clock time, UTC")
    monotonic: float = Field(description="the breaker's monotonic clock reading")
    reason: str = Field(default="", description="why, in words")
    counters: dict[str, float] = Field(
        default_factory=dict, description="the counters that justified the transition"
    )
    generation: int | None = Field(
        default=None, description="episode generation (shared across a fleet on Redis)"
    )

    def to_json(self) -> str:
        """One compact JSON line (without the newline)."""
        return self.model_dump_json()

    @classmethod
    def at_wall(cls, wall: float, **fields: Any) -> Transition:
        """Build a record stamped with ``wall`` seconds since the epoch, in UTC."""
        return cls(at=datetime.fromtimestamp(wall, UTC), **fields)


#: The counters of every record a breaker makes (``BreakerStats.as_counters``), in order: the
#: audit log keeps their values only.
COUNTERS = (
    "consecutive_failures",
    "window_calls",
    "window_failures",
    "window_slow",
    "trial_successes",
    "trial_failures",
)
#: One canonical object per state and event name, so rows share them.
_NAMES = {name: name for name in (*STATES, *(event for event, _ in legal_moves()))}

#: A record as the log keeps it: seq, breaker, event, source, target, at, monotonic,
#: reason, generation, then the values of :data:`COUNTERS` (whole numbers as ints).
_Row = tuple[Any, ...]


def _pack(record: Transition) -> _Row | Transition:
    """``record`` as a row of its values (about 400 bytes, against 1.4 KB for the model).

    A record whose counters are not exactly :data:`COUNTERS` is kept as it is.
    """
    counters = record.counters
    if tuple(counters) != COUNTERS:
        return record
    return (
        record.seq,
        record.breaker,
        _NAMES.get(record.event, record.event),
        _NAMES.get(record.source, record.source),
        _NAMES.get(record.target, record.target),
        record.at,
        record.monotonic,
        record.reason,
        record.generation,
        *[_compact(value) for value in counters.values()],
    )


def _compact(value: float) -> float:
    """A whole number as an int: the small ones are shared objects, a float is 24 bytes."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _unpack(row: _Row | Transition) -> Transition:
    """The record a row was packed from (an equal one: it was validated when made)."""
    if isinstance(row, Transition):
        return row
    seq, breaker, event, source, target, at, monotonic, reason, generation, *values = row
    return Transition.model_construct(
        seq=seq,
        breaker=breaker,
        event=event,
        source=source,
        target=target,
        at=at,
        monotonic=monotonic,
        reason=reason,
        counters={key: float(value) for key, value in zip(COUNTERS, values, strict=True)},
        generation=generation,
    )


class AuditLog:
    """The most recent ``capacity`` records of one breaker, counting what it dropped.

    Records are kept as rows of their values, about a quarter of a record's size, and
    built again as they are read: ``log[i]`` equals the record that was appended, and is a
    new object at each read.
    """

    __slots__ = ("_capacity", "_rows", "dropped")

    def __init__(self, capacity: int = 1000) -> None:
        if capacity < 1:
            raise ValueError(f"audit capacity must be >= 1, got {capacity}")
        self._capacity = capacity
        # A list, not a deque: a deque allocates a 64-slot block for its first record.
        self._rows: list[_Row | Transition] = []
        self.dropped = 0

    @property
    def capacity(self) -> int:
        """How many records the log keeps."""
        return self._capacity

    def append(self, record: Transition) -> None:
        """Keep ``record``, dropping the oldest when full."""
        rows = self._rows
        if len(rows) >= self._capacity:
            # O(capacity) pointer moves, on a transition: rare, and a reader's copy of the
            # list (atomic) always sees the rows in order.
            del rows[0]
            self.dropped += 1
        rows.append(_pack(record))

    def __iter__(self) -> Iterator[Transition]:
        return map(_unpack, self._rows[:])

    def __len__(self) -> int:
        return len(self._rows)

    def __getitem__(self, index: int) -> Transition:
        return _unpack(self._rows[index])

    def __repr__(self) -> str:
        return f"AuditLog(len={len(self)}, dropped={self.dropped}, capacity={self.capacity})"


class JsonlSink:
    """Append each record to a JSON Lines file, one object a line, flushed as written.

    The file is opened for each record (transitions are rare), so a rotated or recreated
    file is picked up and a vanished directory is reported on the next write.
    """

    __slots__ = ("path",)

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

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
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise AuditError(f"{file}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise AuditError(f"{file}: cannot read: {exc}") from None
    records: list[Transition] = []
    for number, line in enumerate(jsonl_lines(text), start=1):
        if not line.strip():
            continue
        try:
            records.append(Transition.model_validate_json(line))
        except ValidationError as exc:
            raise AuditError(f"{file}:{number}: {_describe(exc)}", line=number) from None
    return records


def _describe(exc: ValidationError) -> str:
    first = exc.errors(include_url=False)[0]
    if first["type"] == "json_invalid":
        return f"not valid JSON ({first['msg']})"
    where = ".".join(str(part) for part in first["loc"]) or "record"
    more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return f"field {where!r}: {first['msg']}{more}"


def verify(records: Iterable[Transition]) -> int:
    """Check that ``records`` are a legal walk of :class:`~breaker_fsm.BreakerMachine`.

    Records of several breakers may be interleaved (a registry-wide sink); each breaker's
    records are checked as their own walk, from its first record: ``seq`` gapless, every
    ``source`` equal to the previous ``target``, every event legal from its source and
    leading to the recorded target.

    A breaker that shares its state through a store (``breaker_fsm.redis``) numbers its
    records with the shared generation (``generation == seq``), and records the
    transitions it made alone, while the store was unreachable, with ``generation=None``.
    So, per breaker, the records with a generation are one walk, and each run of records
    without one that follows a record with one is a walk of its own, from its first record
    (it started from the state the process had mirrored). A trail without any generation,
    or with a generation on every record, is one walk, as always.

    Returns:
        The number of records checked.

    Raises:
        AuditError: naming the first bad record's ``seq`` (and its position in ``index``).
    """
    moves = legal_moves()
    last: dict[str, Transition] = {}  # the last record with a generation, per breaker
    local: dict[str, Transition] = {}  # the last record of the current run without one
    count = 0
    for index, record in enumerate(records):
        prev = (local if record.generation is None else last).get(record.breaker)
        problem = None
        if record.source not in STATES or record.target not in STATES:
            problem = f"unknown state in {record.source!r} -> {record.target!r}"
        elif moves.get((record.event, record.source)) != record.target:
            problem = f"{record.event!r} does not lead from {record.source!r} to {record.target!r}"
        elif prev is not None and record.seq != prev.seq + 1:
            problem = f"seq {record.seq} follows seq {prev.seq}: expected {prev.seq + 1}"
        elif prev is not None and record.source != prev.target:
            problem = f"source {record.source!r} is not the previous target {prev.target!r}"
        if problem is not None:
            raise AuditError(
                f"breaker {record.breaker!r}, seq {record.seq}: {problem}",
                seq=record.seq,
                index=index,
            )
        if record.generation is None:
            local[record.breaker] = record
        else:
            last[record.breaker] = record
            local.pop(record.breaker, None)  # a later record without one starts a new walk
        count += 1
    return count


def dump_jsonl(records: Iterable[Transition]) -> str:
    """Records as JSON Lines text (what :class:`JsonlSink` writes)."""
    return "".join(record.to_json() + "\n" for record in records)
