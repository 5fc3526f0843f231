"""The audit trail's records: ``Transition``, its hash chain, and the bounded in-memory log.

Writing and reading trails is in ``_trail``, verifying them in ``_verify``.

Each record says which breaker instance wrote it (``origin``), which numbering its ``seq``
belongs to (``life``) and the hash of the record its writer wrote before it (``prev``), so
that a file several lives of a service appended to, or a fleet's merged trails, verify as
the walks they are, and an edited, deleted or moved record is caught. Records written
before these fields existed (all three ``None``) read and verify as they always did.
"""

from __future__ import annotations

import collections
import hashlib
import os
import secrets
import socket
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from ._machine import STATES, legal_moves

__all__ = [
    "COUNTERS",
    "SHARED_LIFE",
    "AuditLog",
    "Chain",
    "Sink",
    "Transition",
    "canonical",
    "check_wall",
    "digest",
    "is_shared",
    "shared_life",
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
        """Stamp ``record`` as :meth:`Chain.stamp` does (the same arguments), keep it."""
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
