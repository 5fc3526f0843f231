"""Verifying a trail: each breaker's records are legal walks of the machine, and chained."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from ._audit import SHARED_LIFE, Transition, digest, is_shared
from ._machine import STATES, legal_moves
from .exceptions import AuditError

__all__ = ["AuditSummary", "BreakerSummary", "Fork", "instant", "verify"]


@dataclass(frozen=True, slots=True)
class Fork:
    """Records of one fleet's shared numbering at one generation, by different members.

    A store that lost a transition it had acknowledged (a failover to a replica that never
    received it, or an older copy restored) holds the generation before it; a member that
    had not seen the lost transition then makes another one at the same generation before
    any member that had seen it puts it back. Both are genuine records of the same walk:
    the store kept one, and the fleet went on from that one.
    """

    breaker: str
    #: The generation (``seq``) the records share, and the numbering (``life``) it is in.
    generation: int
    life: str
    #: The records, in trail order, and their positions in the trail (``index``).
    records: tuple[Transition, ...]
    indexes: tuple[int, ...]


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
    #: Generations that several members recorded a transition at: a failover lost one.
    forks: tuple[Fork, ...] = ()

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
        self.first = min(self.first, when)  # by instant: at one instant, equal datetimes
        self.last = max(self.last, when)
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

    def summary(
        self, breaker: str, heads: dict[str, str], forks: tuple[Fork, ...]
    ) -> BreakerSummary:
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
            forks=forks,
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
    - Two or more records at one generation of one numbering, each by a different member,
      are a fork (:class:`Fork`, in ``BreakerSummary.forks``), not an error: a store that
      lost an acknowledged transition (a failover) and another member that made another
      one at that generation. Each must follow a record of the generation before it, and
      each record after it must follow one of them.
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
        # One end when intact; never none: every record would then be another's ``prev``,
        # a cycle of hashes (records with one digest are one record, with one ``prev``).
        ends = [hashed for hashed in digests if hashed not in successors]
        self.heads.setdefault(breaker, {})[origin] = ends[-1]

    @staticmethod
    def _follows(before: Transition, record: Transition) -> bool:
        """``record`` is numbered right after ``before`` in the same life."""
        return record.seq == before.seq + 1 and record.life == before.life

    def finish(self) -> AuditSummary:
        """Check the chains, walk each fleet's shared records by generation, check the joins."""
        for (breaker, origin), entries in self.writers.items():
            self.chain(breaker, origin, entries)
        generations: dict[tuple[str, str], dict[int, list[Transition]]] = {}
        forks: dict[str, list[Fork]] = {}
        for numbering, entries in self.shared.items():
            walk = generations[numbering] = {}
            levels: dict[int, list[Entry]] = {}
            for entry in entries:
                levels.setdefault(_generation(entry[1]), []).append(entry)
            previous: list[Transition] = []
            for generation in sorted(levels):
                level = levels[generation]
                for index, record in level:
                    if record.seq != generation:
                        self.flag(index, record, f"seq {record.seq} is not its generation "
                                  f"{record.generation}")  # fmt: skip
                    self.follows(index, record, previous)
                if len(level) > 1 and self.distinct_writers(level):
                    forks.setdefault(numbering[0], []).append(self.fork(numbering, level))
                walk[generation] = previous = [record for _, record in level]
        for (index, record), strict in self.starts:
            numbering = (record.breaker, record.life or SHARED_LIFE)
            bases = generations.get(numbering, {}).get(record.seq - 1, [])
            if bases and record.source not in {base.target for base in bases}:
                self.flag(index, record, f"degraded at generation {record.seq - 1}, which "
                          f"left {_targets(bases)}, but starts from {record.source!r}")  # fmt: skip
            elif strict and not bases:
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
                name: tally.summary(name, self.heads.get(name, {}), tuple(forks.get(name, ())))
                for name, tally in self.tallies.items()
            }
        )

    def follows(self, index: int, record: Transition, previous: list[Transition]) -> None:
        """Check that a shared ``record`` follows the generation before it (``previous``).

        Several records there (a fork): it follows the one whose target is its source.
        """
        if not previous:
            return
        if len(previous) == 1:
            self.step(index, record, previous[0])
        elif record.seq != previous[0].seq + 1:
            self.step(index, record, previous[0])  # the same gap, whichever one is named
        elif record.source not in {base.target for base in previous}:
            self.flag(index, record, f"source {record.source!r} is not the target of any "
                      f"record at generation {previous[0].seq} ({_targets(previous)})")  # fmt: skip

    def distinct_writers(self, level: list[Entry]) -> bool:
        """Whether each record of one generation has its own writer; flag any that has not.

        One member never records one generation of one numbering twice: a fork is made by
        two members, each of which saw only its own branch.
        """
        seen: set[str | None] = set()
        for index, record in level:
            if record.origin in seen:
                self.flag(index, record, f"{record.origin} recorded generation "
                          f"{record.seq} twice")  # fmt: skip
                return False
            seen.add(record.origin)
        return True

    @staticmethod
    def fork(numbering: tuple[str, str], level: list[Entry]) -> Fork:
        """The fork that ``level``'s records (one generation, several writers) make."""
        ordered = sorted(level, key=lambda entry: entry[0])
        return Fork(
            breaker=numbering[0],
            generation=_generation(ordered[0][1]),
            life=numbering[1],
            records=tuple(record for _, record in ordered),
            indexes=tuple(index for index, _ in ordered),
        )


def _targets(records: list[Transition]) -> str:
    """The targets of ``records``, as a message names them: ``'open'`` or ``'open' or ...``."""
    return " or ".join(dict.fromkeys(repr(record.target) for record in records))
