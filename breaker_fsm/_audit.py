"""The audit trail: transition records, the bounded in-memory log, sinks, reading, verifying.

Each record says which breaker instance wrote it (``origin``), which numbering its ``seq``
belongs to (``life``) and the hash of the record its writer wrote before it (``prev``), so
that a file several lives of a service appended to, or a fleet's merged trails, verify as
the walks they are, and an edited, deleted or moved record is caught. Records written
before these fields existed (all three ``None``) read and verify as they always did.
"""

from __future__ import annotations

import collections
import hashlib
import json
import logging
import os
import secrets
import socket
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from ._machine import STATES, legal_moves
from .exceptions import AuditError

__all__ = [
    "SHARED_LIFE",
    "AuditLog",
    "AuditSummary",
    "BreakerSummary",
    "Chain",
    "JsonlSink",
    "LoggingSink",
    "Sink",
    "Transition",
    "digest",
    "is_shared",
    "read_jsonl",
    "shared_life",
    "verify",
]

#: Anything that takes a :class:`Transition`; called synchronously for every record.
Sink = Callable[["Transition"], object]

#: The ``life`` of the records of a breaker that shares its state through a store: the
#: fleet's one numbering (the shared generation), whoever wrote them. A store entry that
#: was lost (a Redis restarted empty) and recreated begins a new numbering: such records
#: say which, ``"shared:<epoch>"`` (:func:`shared_life`).
SHARED_LIFE = "shared"


def shared_life(epoch: int) -> str:
    """The ``life`` of a fleet's records in the store entry's incarnation ``epoch``.

    ``epoch`` is the server's time, in µs, when the entry was created: a store that
    restarted empty recreates it with a new one. Negative (not known yet): the plain
    :data:`SHARED_LIFE`.
    """
    return SHARED_LIFE if epoch < 0 else f"{SHARED_LIFE}:{epoch}"


def is_shared(life: str | None) -> bool:
    """Whether ``life`` is a fleet's shared numbering (of any incarnation of the store)."""
    return life is not None and (life == SHARED_LIFE or life.startswith(SHARED_LIFE + ":"))


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
    origin: str | None = Field(
        default=None,
        min_length=1,
        description='the breaker instance that wrote the record: "host:pid:token"',
    )
    life: str | None = Field(
        default=None,
        min_length=1,
        description="the numbering seq belongs to: the writer's origin (a new instance "
        f"starts a new life at seq 1), or {SHARED_LIFE!r} for a fleet sharing one store "
        f"({SHARED_LIFE!r}:<epoch> names the store entry's incarnation: a store that "
        "restarted empty begins a new one)",
    )
    prev: str | None = Field(
        default=None,
        pattern="^[0-9a-f]{64}$",
        description="hex sha256 of the canonical form of the record the same origin wrote "
        "before this one (none for its first)",
    )

    def to_json(self) -> str:
        """One compact JSON line (without the newline)."""
        return self.model_dump_json()

    @classmethod
    def at_wall(cls, wall: float, **fields: Any) -> Transition:
        """Build a record stamped with ``wall`` seconds since the epoch, in UTC."""
        return cls(at=datetime.fromtimestamp(wall, UTC), **fields)


#: pydantic's own serializer of a record: what ``model_dump_json`` calls, without its
#: argument handling (about a third of its cost), returning the UTF-8 bytes themselves.
_to_json = Transition.__pydantic_serializer__.to_json

#: The order in which a breaker writes a record's counters (``BreakerStats.as_counters``).
COUNTERS: tuple[str, ...] = (
    "consecutive_failures",
    "window_calls",
    "window_failures",
    "window_slow",
    "trial_successes",
    "trial_failures",
)
_COUNTER_RANK = {name: rank for rank, name in enumerate(COUNTERS)}


def canonical(record: Transition) -> bytes:
    """The bytes a record's hash covers: its JSON line without the fields that are ``None``.

    Leaving ``None`` out keeps a record's hash the same when a later version adds an
    optional field (which must default to ``None``). The form is pydantic's serialization,
    with the counters in the order a breaker writes them (:data:`COUNTERS`, then any other
    by name), so a log pipeline that re-serialises JSON with its keys sorted changes
    nothing. ``tests/fixtures/trail-v2.jsonl`` pins the form, so a change that would
    orphan the chains of trails already written fails a test.
    """
    counters = record.counters
    if counters and tuple(counters) != COUNTERS:  # written elsewhere, or read back re-sorted
        ordered = sorted(counters, key=lambda name: (_COUNTER_RANK.get(name, len(COUNTERS)), name))
        record = record.model_copy(update={"counters": {name: counters[name] for name in ordered}})
    return _to_json(record, exclude_none=True)


def digest(record: Transition) -> str:
    """The hex sha256 of ``record``'s canonical form: the ``prev`` of the record after it.

    The digest of a trail's newest record is its *head*: write it somewhere the trail's
    writer cannot rewrite (a log line, a metric) to anchor the chain.
    """
    if not isinstance(record, Transition):
        raise TypeError(
            f"digest() takes a Transition, got {type(record).__name__} "
            "(Transition.model_validate(...) builds one from a dict)"
        )
    return hashlib.sha256(canonical(record)).hexdigest()


_host: str | None = None


def _origin() -> str:
    """A new ``host:pid:token`` naming one breaker instance in this process."""
    global _host  # noqa: PLW0603 - looked up once per process, not once per breaker
    if _host is None:
        _host = socket.gethostname() or "localhost"
    return f"{_host}:{os.getpid()}:{secrets.token_hex(4)}"


class Chain:
    """Stamps the records of one breaker instance with ``origin``, ``life`` and ``prev``.

    The writer's records form one hash chain: each one's ``prev`` is the :func:`digest` of
    the record it stamped before (``None`` for the first). A forked child gets an origin
    (and a chain) of its own on its first record.
    """

    __slots__ = ("_lock", "_pid", "head", "origin")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self.origin = _origin()
        #: The digest of the last record stamped, or ``None`` before the first.
        self.head: str | None = None

    def stamp(self, record: Transition, *, shared: bool | str = False) -> Transition:
        """``record`` with this instance's origin, its life and the hash of the previous one.

        Args:
            record: a record built and validated by the breaker.
            shared: the breaker shares its state through a store: ``seq`` counts in the
                fleet's numbering, not in this instance's own: the record's own ``life``
                if it has one, else ``shared`` if it is a life (:func:`shared_life`),
                else :data:`SHARED_LIFE`.

        Stamp and emit under the breaker's transition lock, so that a file holds an
        instance's records in the order of their ``seq``.
        """
        with self._lock:
            if os.getpid() != self._pid:  # a forked child: a new writer
                self._pid = os.getpid()
                self.origin = _origin()
                self.head = None
            origin = self.origin
            life: str = origin
            if shared:
                life = record.life or (shared if isinstance(shared, str) else SHARED_LIFE)
            stamped = record.model_copy(update={"origin": origin, "life": life, "prev": self.head})
            self.head = digest(stamped)
        return stamped

    def __repr__(self) -> str:
        return f"Chain(origin={self.origin!r}, head={self.head!r})"


_FIELD_NAMES = tuple(Transition.model_fields)
_FIELDS_SET = frozenset(_FIELD_NAMES)
#: One object per state and event name, so that kept records share them.
_NAMES = {name: name for name in (*STATES, *(event for event, _ in legal_moves()))}

#: A kept record: ``seq, breaker, event, source, target, at, monotonic, reason``, the six
#: :data:`COUNTERS`, ``generation, origin, life, prev``. ``at`` is the wall clock's float
#: (a record the breaker made) or the record's ``datetime`` (one kept as it was given);
#: ``prev`` is the 32 bytes of the digest. About 190 bytes, against 1.4 KB for the model.
_Row = tuple[Any, ...]

_new_record = Transition.__new__
_set = object.__setattr__


def _record_of(row: _Row) -> Transition:
    """The record a row holds: a new, equal object at each call.

    Built without validation (every row was validated, or made from checked values, when
    it was kept) and without :meth:`~pydantic.BaseModel.model_construct`, which costs
    seven times as much.
    """
    seq, breaker, event, source, target, at, mono, reason, c0, c1, c2, c3, c4, c5, *rest = row
    generation, origin, life, prev = rest
    record = _new_record(Transition)
    _set(
        record,
        "__dict__",
        {
            "seq": seq,
            "breaker": breaker,
            "event": event,
            "source": source,
            "target": target,
            "at": datetime.fromtimestamp(at, UTC) if type(at) is float else at,
            "monotonic": mono,
            "reason": reason,
            "counters": {
                "consecutive_failures": float(c0),
                "window_calls": float(c1),
                "window_failures": float(c2),
                "window_slow": float(c3),
                "trial_successes": float(c4),
                "trial_failures": float(c5),
            },
            "generation": generation,
            "origin": origin,
            "life": life,
            "prev": None if prev is None else prev.hex(),
        },
    )
    _set(record, "__pydantic_fields_set__", set(_FIELDS_SET))  # model_copy updates it
    _set(record, "__pydantic_extra__", None)
    _set(record, "__pydantic_private__", None)
    return record


def _compact(value: float) -> float:
    """A counter as kept: an integral float as an ``int`` (small ones are shared objects)."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _pack(record: Transition) -> _Row | Transition:
    """``record`` as a row of its values (:data:`_Row`), or itself.

    A record whose counters are not exactly :data:`COUNTERS` is kept as it is.
    """
    if tuple(record.counters) != COUNTERS:
        return record
    prev = record.prev
    raw = None
    if prev is not None:
        try:
            raw = bytes.fromhex(prev)
        except ValueError:
            return record  # not a digest (a record made without validation): kept whole
        if raw.hex() != prev:
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
        *map(_compact, record.counters.values()),
        record.generation,
        record.origin,
        record.life,
        raw,
    )


def _unpack(row: _Row | Transition) -> Transition:
    """The record a row was packed from (an equal one: it was validated when made)."""
    return row if isinstance(row, Transition) else _record_of(row)


#: A log keeps its rows in a list up to this many (a deque's first block alone is about
#: 520 bytes: most breakers keep a few records), then in a deque (dropping the oldest of a
#: long list would move all the others).
_LIST_ROWS = 64
#: The wall-clock readings a record's ``at`` takes without asking ``datetime`` first.
_WALL_MIN, _WALL_MAX = 0.0, 253402300799.0  # 1970-01-01 .. 9999-12-31T23:59:59 UTC


def check_wall(wall: float) -> float:
    """``wall`` as a record's ``at`` keeps it: a float that ``datetime`` can represent.

    Raises:
        OverflowError, OSError, ValueError, TypeError: as ``datetime.fromtimestamp`` does
            (before the transition changes anything).
    """
    wall = float(wall)
    if not _WALL_MIN <= wall <= _WALL_MAX:  # NaN too
        datetime.fromtimestamp(wall, UTC)
    return wall


def _life(shared: bool | str, origin: str) -> str:
    """The ``life`` of a record a breaker writes (see :meth:`AuditLog.record`)."""
    if not shared:
        return origin
    return shared if isinstance(shared, str) else SHARED_LIFE


class AuditLog:
    """The most recent ``capacity`` records of one breaker, counting what it dropped.

    It also chains the breaker instance's records (the ``origin``, ``life`` and ``prev``
    that :class:`Chain` stamps): :meth:`record` stamps a record, keeps it and returns it for
    the sinks. Records are kept as tuples of their values (a per-host breaker in a mass
    outage must stay small) and built again as they are read: ``log[i]`` equals the record
    that was kept, and is a new object at each read.

    Writes are serialised by the caller (a breaker writes under its transition lock);
    reads may run beside them.
    """

    __slots__ = ("_capacity", "_head", "_origin", "_pid", "_records", "dropped")

    _records: list[_Row | Transition] | collections.deque[_Row | Transition]

    def __init__(self, capacity: int = 1000) -> None:
        if capacity < 1:
            raise ValueError(f"audit capacity must be >= 1, got {capacity}")
        self._capacity = capacity
        self._records = []
        self.dropped = 0
        self._pid = os.getpid()
        self._origin = _origin()
        self._head: bytes | None = None  # the digest of the last record stamped

    @property
    def capacity(self) -> int:
        """How many records the log keeps."""
        return self._capacity

    @property
    def origin(self) -> str:
        """The ``origin`` this breaker instance writes into its records."""
        return self._origin

    @property
    def head(self) -> str | None:
        """The :func:`digest` of the newest record, or ``None`` while the log is empty.

        Anchor it outside the trail (log it now and then, or export it as a metric): a
        trail whose newest record no longer hashes to an anchored head was rewritten.
        """
        records = self._records
        return digest(_unpack(records[-1])) if records else None

    def _writer(self) -> str:
        """The origin of this instance; a forked child becomes a new writer, with a new chain."""
        if os.getpid() != self._pid:
            self._pid = os.getpid()
            self._origin = _origin()
            self._head = None
        return self._origin

    def record(self, record: Transition, *, shared: bool | str = False) -> Transition:
        """Stamp ``record`` (as :meth:`Chain.stamp` does), keep it, and return it.

        Args:
            record: a record built and validated by the breaker.
            shared: the breaker shares its state through a store: ``seq`` counts in the
                fleet's numbering, not in this instance's own: the record's own ``life``
                if it has one, else ``shared`` if it is a life (:func:`shared_life`),
                else :data:`SHARED_LIFE`.
        """
        origin = self._writer()
        head = self._head
        life = origin
        if shared:
            life = record.life or (shared if isinstance(shared, str) else SHARED_LIFE)
        stamped = record.model_copy(
            update={
                "origin": origin,
                "life": life,
                "prev": None if head is None else head.hex(),
            }
        )
        self._head = hashlib.sha256(canonical(stamped)).digest()
        self.append(stamped)
        return stamped

    def keep(  # noqa: PLR0917 - a record's fields, as a breaker's transition has them
        self,
        seq: int,
        breaker: str,
        event: str,
        source: str,
        target: str,
        wall: float,
        monotonic: float,
        reason: str,
        counters: tuple[int, int, int, int, int, int],
        generation: int | None,
        *,
        shared: bool | str = False,
    ) -> Transition:
        """:meth:`record` for a record the breaker made from checked values: stamp, keep it.

        The values are a valid record's (``wall`` through :func:`check_wall`, the
        ``counters`` as :data:`COUNTERS` orders them): no model is validated or copied.
        Returns the stamped record, for the sinks.
        """
        origin = self._writer()
        head = self._head
        names = _NAMES
        row = (
            seq, breaker, names.get(event, event), names.get(source, source),
            names.get(target, target), wall, monotonic, reason, *counters,
            generation, origin, _life(shared, origin), head,
        )  # fmt: skip
        record = _record_of(row)
        # Its counters are in COUNTERS order: its canonical form is its JSON as it is.
        self._head = hashlib.sha256(_to_json(record, exclude_none=True)).digest()
        self._keep(row)
        return record

    def append(self, record: Transition) -> None:
        """Keep ``record`` as it is (unstamped), dropping the oldest when full."""
        self._keep(_pack(record))

    def _keep(self, row: _Row | Transition) -> None:
        records = self._records
        if len(records) == self._capacity:
            self.dropped += 1
            if type(records) is list:
                del records[0]
        elif len(records) == _LIST_ROWS and type(records) is list:
            records = self._records = collections.deque(records, maxlen=self._capacity)
        records.append(row)

    def __iter__(self) -> Iterator[Transition]:
        return map(_unpack, list(self._records))

    def __len__(self) -> int:
        return len(self._records)

    def __getitem__(self, index: int) -> Transition:
        return _unpack(self._records[index])

    def __repr__(self) -> str:
        return f"AuditLog(len={len(self)}, dropped={self.dropped}, capacity={self.capacity})"


class JsonlSink:
    """Append each record to a JSON Lines file, one object a line, flushed as written.

    The file is opened for each record (transitions are rare), so a rotated or recreated
    file is picked up and a vanished directory is reported on the next write.

    Raises:
        FileNotFoundError: the file's directory does not exist (checked here, not at the
            first transition, which would be during an outage).
        NotADirectoryError: what should be the file's directory is not one.
        IsADirectoryError: the path is a directory, not a file.
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


@dataclass(frozen=True, slots=True)
class BreakerSummary:
    """What :func:`verify` found in one breaker's records."""

    breaker: str
    #: Records checked.
    transitions: int
    #: Numberings (``life``) the records belong to: one per instance of a breaker on its
    #: own, one for a fleet's shared walk, one for records without a life (the first format).
    lives: int
    #: Runs of records a fleet member made alone while its store did not answer.
    outages: int
    #: Earliest and latest ``at``, and the time between them.
    first: datetime
    last: datetime
    span: timedelta
    #: The :func:`digest` of its last record, in trail order.
    head: str
    #: Each writer's (``origin``'s) head: the digest of the newest record of its chain,
    #: which is what that instance's ``breaker.audit.head`` said when it wrote it.
    heads: dict[str, str] = field(default_factory=dict)
    #: Lives that began before an earlier one's last record: instances writing at the same
    #: time (two processes with one breaker name and no store), not restarts.
    concurrent: int = 0
    #: Shared numberings after a fleet's first: each began when its store lost the
    #: breaker's entry (a Redis restarted empty) and a member recreated it.
    store_restarts: int = 0

    @property
    def restarts(self) -> int:
        """Lives that began after every earlier one had ended: a new instance, restarted."""
        return self.lives - 1 - self.concurrent - self.store_restarts


class AuditSummary(int):
    """The number of records :func:`verify` checked (an ``int``, as it always was).

    ``breakers`` maps each breaker's name to its :class:`BreakerSummary`, in trail order.
    """

    breakers: dict[str, BreakerSummary]

    def __new__(cls, breakers: dict[str, BreakerSummary]) -> AuditSummary:
        """The total of ``breakers``' transitions, with them attached."""
        summary = super().__new__(cls, sum(b.transitions for b in breakers.values()))
        summary.breakers = breakers
        return summary


def instant(at: datetime) -> timedelta:
    """``at`` as a distance from 0001-01-01 UTC: comparable, and never overflows."""
    return (at.replace(tzinfo=None) - datetime.min) - (at.utcoffset() or timedelta(0))


@dataclass(slots=True)
class _Tally:
    """One breaker's running totals while :func:`verify` walks a trail."""

    first: tuple[timedelta, datetime]
    last: tuple[timedelta, datetime]
    record: Transition
    transitions: int = 0
    outages: int = 0
    lives: dict[str | None, list[timedelta]] = field(default_factory=dict)  # first, last
    shared_lives: set[str] = field(default_factory=set)  # a fleet's numberings

    def add(self, record: Transition) -> None:
        when = (instant(record.at), record.at)
        self.first = min(self.first, when, key=lambda pair: pair[0])
        self.last = max(self.last, when, key=lambda pair: pair[0])
        self.record = record
        self.transitions += 1
        span = self.lives.setdefault(record.life or record.origin, [when[0], when[0]])
        span[0], span[1] = min(span[0], when[0]), max(span[1], when[0])
        if record.origin is not None and is_shared(record.life):
            self.shared_lives.add(record.life or SHARED_LIFE)

    def concurrent(self) -> int:
        """Lives that began before an earlier-begun one had written its last record.

        An instance's own lives only: a fleet's numberings are store restarts.
        """
        count = 0
        ended: timedelta | None = None
        spans = (span for life, span in self.lives.items() if life not in self.shared_lives)
        for first, last in sorted(spans):
            if ended is not None and first < ended:
                count += 1
            ended = last if ended is None else max(ended, last)
        return count

    def summary(self, breaker: str, heads: dict[str, str]) -> BreakerSummary:
        return BreakerSummary(
            breaker=breaker,
            transitions=self.transitions,
            lives=len(self.lives),
            outages=self.outages,
            first=self.first[1],
            last=self.last[1],
            span=self.last[0] - self.first[0],
            head=digest(self.record),
            heads=heads,
            concurrent=self.concurrent(),
            store_restarts=max(0, len(self.shared_lives) - 1),
        )


Entry = tuple[int, Transition]  # a record and its position in the trail


def _generation(record: Transition) -> int:
    """The generation of a record known to have one."""
    return record.generation if record.generation is not None else 0


def verify(records: Iterable[Transition]) -> AuditSummary:
    """Check that ``records`` are legal walks of :class:`~breaker_fsm.BreakerMachine`.

    Every record's event must lead from its ``source`` to its ``target``. Records of several
    breakers may be interleaved (a registry-wide sink, several files merged); each breaker
    is checked on its own, and within a breaker each numbering (``life``) is a walk of its
    own, from its first record: ``seq`` gapless, each ``source`` the previous ``target``.

    - A breaker on its own numbers its records in its instance's life: a file that several
      lives of a service appended to holds several walks, and the gaps between them are
      restarts, not errors.
    - A fleet sharing one store (``life`` :data:`SHARED_LIFE`, or ``shared_life(epoch)``):
      the records with a generation are one walk in generation order, whoever wrote them.
      A store that lost the breaker's entry (a Redis restarted empty) begins a new
      numbering when a member recreates it, whose walk is checked on its own: a restart
      of the store (``store_restarts``), never a continuation of the walk before it.
      Those without a generation, which a member made alone while the store did not
      answer, are that member's runs: each run is a walk that starts from the state the
      shared walk (of the same numbering) had at the generation it continues
      (checked when that record is in the trail), and a member never goes back to an
      older generation when it rejoins or degrades again.
    - Records that carry an ``origin`` are checked against their writer's hash chain: each
      ``prev`` must be the :func:`digest` of the record the same origin wrote before it. So
      an edited record, or a deleted or moved one, fails even when the walk stays legal.
    - Records without ``origin`` (written before origins existed) are checked as they
      always were: per breaker, records with a generation form one walk, and each run
      without one after a record with one is a walk of its own.

    Returns:
        An :class:`AuditSummary`: the number of records checked, with ``breakers``.

    Raises:
        AuditError: naming the first bad record's ``seq`` (and its position in ``index``).
    """
    if isinstance(records, str | bytes | os.PathLike):
        raise TypeError(
            f"verify() takes records, not a path ({records!r}): read a trail with "
            "read_jsonl(path) and verify what it returns"
        )
    checker = _Verifier()
    for index, record in enumerate(records):
        if not isinstance(record, Transition):
            raise TypeError(f"verify(): record {index} is a {type(record).__name__}, "
                            "not a Transition")  # fmt: skip
        checker.check(index, record)
    return checker.finish()


class _Verifier:
    """The state of one :func:`verify`: the last record of every walk, chain and run."""

    def __init__(self) -> None:
        self.moves = legal_moves()
        self.problems: dict[int, tuple[Transition, str]] = {}
        self.tallies: dict[str, _Tally] = {}
        self.walks: dict[tuple[str, str | None], Transition] = {}  # last record of each walk
        self.legacy_shared: dict[str, Transition] = {}  # first format, with a generation
        self.writers: dict[tuple[str, str], list[Entry]] = {}  # each writer's records
        self.heads: dict[str, dict[str, str]] = {}  # per breaker, each writer's head
        # Each fleet's shared records, per numbering (breaker, life): a store restarted
        # empty begins a new one. A member's runs and marks count within one numbering.
        self.shared: dict[tuple[str, str], list[Entry]] = {}
        self.runs: dict[tuple[str, str, str], Transition] = {}  # a member's current local run
        self.marks: dict[tuple[str, str, str], int] = {}  # the newest generation it reached
        self.starts: list[tuple[Entry, bool]] = []  # local runs' first records (and strict)

    def flag(self, index: int, record: Transition, problem: str) -> None:
        """Note the first problem found at ``index``."""
        self.problems.setdefault(index, (record, problem))

    def step(self, index: int, record: Transition, previous: Transition | None) -> None:
        """Check that ``record`` follows ``previous`` in one walk."""
        if previous is None:
            return
        if record.seq != previous.seq + 1:
            self.flag(index, record, f"seq {record.seq} follows seq {previous.seq}: "
                      f"expected {previous.seq + 1}")  # fmt: skip
        elif record.source != previous.target:
            self.flag(index, record, f"source {record.source!r} is not the previous target "
                      f"{previous.target!r}")  # fmt: skip

    def check(self, index: int, record: Transition) -> None:
        """Check one record, in trail order."""
        name = record.breaker
        tally = self.tallies.get(name)
        if tally is None:
            when = (instant(record.at), record.at)
            tally = self.tallies[name] = _Tally(when, when, record)
        tally.add(record)
        if record.source not in STATES or record.target not in STATES:
            self.flag(index, record, f"unknown state in {record.source!r} -> {record.target!r}")
        elif self.moves.get((record.event, record.source)) != record.target:
            self.flag(index, record, f"{record.event!r} does not lead from {record.source!r} "
                      f"to {record.target!r}")  # fmt: skip
        elif record.origin is None:
            self.first_format(index, record, tally)
        else:
            life = record.life or record.origin
            if not is_shared(life):  # an instance's own numbering
                self.step(index, record, self.walks.get((name, life)))
                self.walks[name, life] = record
            elif record.generation is not None:
                self.shared_record(index, record, record.origin, record.generation)
            else:
                self.local_record(index, record, record.origin, tally)
            self.writers.setdefault((name, record.origin), []).append((index, record))

    def first_format(self, index: int, record: Transition, tally: _Tally) -> None:
        """A record without origin: the rules trails were verified by before origins."""
        name = record.breaker
        if record.generation is None:
            if (name, None) not in self.walks and name in self.legacy_shared:
                tally.outages += 1
            self.step(index, record, self.walks.get((name, None)))
            self.walks[name, None] = record
        else:
            self.step(index, record, self.legacy_shared.get(name))
            self.legacy_shared[name] = record
            self.walks.pop((name, None), None)  # a later record without one starts a new walk

    def shared_record(self, index: int, record: Transition, origin: str, generation: int) -> None:
        """A fleet's shared record: walked by generation in :meth:`finish`."""
        life = record.life or SHARED_LIFE
        writer = (record.breaker, origin, life)
        self.shared.setdefault((record.breaker, life), []).append((index, record))
        # Not necessarily increasing: a reply that a newer one overtook is recorded late.
        self.marks[writer] = max(generation, self.marks.get(writer, generation))
        self.runs.pop(writer, None)

    def local_record(self, index: int, record: Transition, origin: str, tally: _Tally) -> None:
        """A fleet member's record made alone, numbered on from its mirror's generation."""
        writer = (record.breaker, origin, record.life or SHARED_LIFE)
        run = self.runs.get(writer)
        if run is None or record.seq != run.seq + 1:  # a new outage
            mark = self.marks.get(writer)
            if mark is not None and record.seq - 1 < mark:
                self.flag(index, record, f"degraded at generation {record.seq - 1} after "
                          f"{origin} had reached generation {mark}")  # fmt: skip
            self.marks[writer] = record.seq - 1
            self.starts.append(((index, record), False))
            tally.outages += 1
        elif record.source != run.target:
            # The same run gone wrong, or the next outage of a member that rejoined while
            # the fleet moved on by one: only the shared walk can tell (in finish).
            self.starts.append(((index, record), True))
            tally.outages += 1
        self.runs[writer] = record

    def chain(self, breaker: str, origin: str, entries: list[Entry]) -> None:
        """Check one writer's hash chain: its records linked by ``prev``, in any order.

        The links, not the trail's order, give the order the writer stamped its records
        (a fleet member may record a reply that a newer one overtook after it, and
        ``verify`` may be given a trail sorted by ``seq``). One record may start the chain
        (``prev`` None, or the hash of a record older than the trail); every other one must
        name a record of the trail, each a different one.
        """
        digests = [digest(record) for _, record in entries]  # a few µs each
        hashes = set(digests)
        begun = False
        successors: set[str] = set()
        for position, (index, record) in enumerate(entries):
            prev = record.prev
            if prev is not None and prev in hashes:
                if prev in successors:
                    self.flag(index, record, f"another record of {origin} chains to the same "
                              "one before it: one of them was inserted or copied")  # fmt: skip
                successors.add(prev)
            elif not begun:
                begun = True  # the first record the trail holds of this writer
            elif position and self._follows(entries[position - 1][1], record):
                before_index, before = entries[position - 1]
                self.flag(before_index, before, f"the hash chain breaks between this record "
                          f"and seq {record.seq}: this record was edited, or records after it "
                          "were removed")  # fmt: skip
            else:
                self.flag(index, record, f"prev is not the hash of any record {origin} wrote "
                          "in this trail: one before it was edited, removed or moved")  # fmt: skip
        ends = [hashed for hashed in digests if hashed not in successors]  # one, when intact
        self.heads.setdefault(breaker, {})[origin] = ends[-1] if ends else digests[-1]

    @staticmethod
    def _follows(before: Transition, record: Transition) -> bool:
        """``record`` is numbered right after ``before`` in the same life."""
        return record.seq == before.seq + 1 and record.life == before.life

    def finish(self) -> AuditSummary:
        """Check the chains, walk each fleet's shared records by generation, check the joins."""
        for (breaker, origin), entries in self.writers.items():
            self.chain(breaker, origin, entries)
        generations: dict[tuple[str, str], dict[int, Transition]] = {}
        for numbering, entries in self.shared.items():
            walk = generations[numbering] = {}
            previous: Transition | None = None
            for index, record in sorted(entries, key=lambda entry: _generation(entry[1])):
                if record.seq != _generation(record):
                    self.flag(index, record, f"seq {record.seq} is not its generation "
                              f"{record.generation}")  # fmt: skip
                self.step(index, record, previous)
                walk[_generation(record)] = previous = record
        for (index, record), strict in self.starts:
            numbering = (record.breaker, record.life or SHARED_LIFE)
            base = generations.get(numbering, {}).get(record.seq - 1)
            if base is not None and base.target != record.source:
                self.flag(index, record, f"degraded at generation {base.seq}, which left "
                          f"{base.target!r}, but starts from {record.source!r}")  # fmt: skip
            elif strict and base is None:
                self.flag(index, record, f"source {record.source!r} is not the previous "
                          "target of this member's run")  # fmt: skip
        if self.problems:
            index = min(self.problems)
            record, problem = self.problems[index]
            raise AuditError(
                f"breaker {record.breaker!r}, seq {record.seq}: {problem}",
                seq=record.seq,
                index=index,
            )
        return AuditSummary(
            {
                name: tally.summary(name, self.heads.get(name, {}))
                for name, tally in self.tallies.items()
            }
        )


def dump_jsonl(records: Iterable[Transition]) -> str:
    """Records as JSON Lines text (what :class:`JsonlSink` writes)."""
    return "".join(record.to_json() + "\n" for record in records)
