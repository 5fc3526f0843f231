"""``BreakerRegistry``: named breakers that share a default policy, a clock and sinks.

A service keeps one registry and asks it for the breaker of each dependency by name
(``registry.get("users-api")``); the HTTP transport asks it for one breaker per host.
"""

from __future__ import annotations

import collections
import logging
import threading
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from ._arguments import check_arguments, check_sink, check_sinks
from ._breaker import BreakerMetrics, CircuitBreaker
from ._machine import legal_moves
from ._policy import BreakerPolicy
from .exceptions import RegistryError

if TYPE_CHECKING:
    from ._audit import Sink, Transition
    from ._clock import Clock
    from ._store import SharedStore

__all__ = ["BreakerRegistry"]

_log = logging.getLogger("breaker_fsm")

#: Every event of the machine, so that transition counts start at zero for each.
EVENTS: tuple[str, ...] = tuple(sorted({event for event, _ in legal_moves()}))
_EVENT_INDEX = {event: index for index, event in enumerate(EVENTS)}

#: ``CircuitBreaker`` keyword arguments a registry (or ``get``) may set for new breakers.
_BREAKER_KWARGS = frozenset(
    {"fallback", "is_failure", "is_failure_exception", "rng", "audit_capacity", "call_sinks"}
)


class _Entry:
    """One registered breaker, what it was created with, and its transition counts.

    ``pinned``: taken out of the eviction order because it was not closed when its turn
    came (see ``BreakerRegistry._make_room``). When a pinned breaker closes again, its
    sink puts the entry on the registry's ``recovered`` queue (once: ``queued``), and the
    registry puts it back in the eviction order the next time it makes room.
    """

    __slots__ = ("breaker", "counts", "kwargs", "pinned", "queued", "recovered")

    def __init__(
        self, breaker: CircuitBreaker, kwargs: dict[str, Any], recovered: collections.deque[_Entry]
    ) -> None:
        self.breaker = breaker
        self.kwargs = kwargs
        self.counts = [0] * len(EVENTS)  # by event, in EVENTS order: smaller than a dict
        self.recovered = recovered
        self.pinned = False
        self.queued = False

    @property
    def transitions(self) -> dict[str, int]:
        """Transitions so far, by event (zeros included)."""
        return dict(zip(EVENTS, self.counts, strict=True))

    def count(self, record: Transition) -> None:
        """The first sink of every registered breaker: count its transitions by event."""
        self.counts[_EVENT_INDEX[record.event]] += 1
        if record.target == "closed" and self.pinned and not self.queued:
            self.queued = True
            self.recovered.append(self)  # atomic: no registry lock under a breaker's


class BreakerRegistry:
    """Named circuit breakers, created on first use and shared by name.

    Args:
        default_policy: the policy of breakers created without one; ``BreakerPolicy()``
            when omitted.
        clock: the clock every breaker of this registry uses (a
            :class:`~breaker_fsm.testing.FakeClock` in tests).
        sinks: audit sinks that see every transition of every breaker of this registry,
            after that breaker's own.
        max_breakers: keep at most this many breakers. When a new name would exceed the
            bound, the least recently used breakers that are ``closed`` are evicted first.
            A breaker in any other state (open, half-open, forced open, disabled) is never
            evicted: if every breaker is in such a state, the registry grows past the bound
            for as long as needed and logs a warning (refusing to create a breaker would
            fail calls to a healthy dependency because others are down).
        store: the shared store of every breaker of this registry (for example a
            :class:`breaker_fsm.redis.RedisStore`); ``None`` keeps their state in memory.
        **breaker_kwargs: default ``CircuitBreaker`` keyword arguments for new breakers:
            ``fallback``, ``is_failure``, ``rng``, ``audit_capacity``.

    >>> from breaker_fsm import BreakerPolicy, BreakerRegistry
    >>> registry = BreakerRegistry(BreakerPolicy(failure_threshold=3))
    >>> users = registry.get("users-api")
    >>> registry.get("users-api") is users
    True
    >>> registry.names(), len(registry)
    (['users-api'], 1)
    """

    def __init__(
        self,
        default_policy: BreakerPolicy | None = None,
        *,
        clock: Clock | None = None,
        sinks: Iterable[Sink] = (),
        max_breakers: int | None = None,
        store: SharedStore | None = None,
        **breaker_kwargs: Any,
    ) -> None:
        if max_breakers is not None and max_breakers < 1:
            raise ValueError(f"max_breakers must be >= 1 or None, got {max_breakers!r}")
        _check_kwargs(breaker_kwargs)
        check_arguments("default", default_policy, clock=clock, store=store, **breaker_kwargs)
        self.default_policy = default_policy if default_policy is not None else BreakerPolicy()
        self.clock = clock
        self.store = store
        self.max_breakers = max_breakers
        self._sinks: tuple[Sink, ...] = check_sinks(sinks, "BreakerRegistry sinks")
        self._defaults = breaker_kwargs
        self._entries: dict[str, _Entry] = {}
        # With max_breakers: the entries that may be evicted (closed when last looked at),
        # least recently used first. The others are pinned until they close again.
        self._lru: collections.OrderedDict[str, _Entry] = collections.OrderedDict()
        self._recovered: collections.deque[_Entry] = collections.deque()
        self._lock = threading.Lock()
        self._evicted = 0
        self._over_bound = False

    def __repr__(self) -> str:
        bound = "" if self.max_breakers is None else f"/{self.max_breakers}"
        return f"<BreakerRegistry {len(self)}{bound} breakers>"

    # ------------------------------------------------------------------ lookup

    def get(
        self, name: str, policy: BreakerPolicy | None = None, **breaker_kwargs: Any
    ) -> CircuitBreaker:
        """The breaker called ``name``, created with ``policy`` on first use.

        Racing callers get the same object: creation happens once, under the registry's
        lock; a lookup of an existing name takes no lock unless ``max_breakers`` is set
        (then it marks the breaker as recently used).

        Args:
            name: the breaker's name.
            policy: the policy for a new breaker (the registry's default when ``None``).
                For an existing breaker it must equal the one it has, or be ``None``.
            **breaker_kwargs: ``CircuitBreaker`` keyword arguments for a new breaker
                (``fallback``, ``is_failure``, ``is_failure_exception``, ``rng``,
                ``audit_capacity``, ``call_sinks``), over the
                registry's defaults. For an existing breaker each must equal what it was
                created with.

        Raises:
            RegistryError: ``policy`` or a keyword argument conflicts with the existing
                breaker of that name; the existing breaker is left as it is.
        """
        entry = self._entries.get(name)
        if entry is None or self.max_breakers is not None:
            entry = self._get_or_create(name, policy, breaker_kwargs)
        elif policy is not None or breaker_kwargs:
            self._check(entry, name, policy, breaker_kwargs)
        return entry.breaker

    def _get_or_create(
        self, name: str, policy: BreakerPolicy | None, breaker_kwargs: dict[str, Any]
    ) -> _Entry:
        """Look ``name`` up under the lock, creating (and evicting) when it is new."""
        _check_kwargs(breaker_kwargs)
        with self._lock:
            entry = self._entries.get(name)
            if entry is not None:
                if self.max_breakers is not None:
                    self._used(name, entry)
            else:
                kwargs = {**self._defaults, **breaker_kwargs} if breaker_kwargs else self._defaults
                breaker = CircuitBreaker(
                    name,
                    policy if policy is not None else self.default_policy,
                    clock=self.clock,
                    store=self.store,
                    **kwargs,
                )
                entry = _Entry(breaker, kwargs, self._recovered)
                breaker.add_sink(entry.count)
                for sink in self._sinks:
                    breaker.add_sink(sink)
                if self.max_breakers is not None:
                    self._make_room(self.max_breakers - 1)
                    self._lru[name] = entry
                self._entries[name] = entry
                return entry
        if policy is not None or breaker_kwargs:
            self._check(entry, name, policy, breaker_kwargs)
        return entry

    def _used(self, name: str, entry: _Entry) -> None:
        """Mark ``entry`` as the most recently used (under the lock)."""
        if not entry.pinned:
            self._lru.move_to_end(name)
        elif entry.breaker.state == "closed":  # closed again, and in use
            entry.pinned = False
            self._lru[name] = entry

    @staticmethod
    def _check(
        entry: _Entry, name: str, policy: BreakerPolicy | None, breaker_kwargs: dict[str, Any]
    ) -> None:
        """Raise ``RegistryError`` if the request conflicts with the existing breaker."""
        existing = entry.breaker.policy
        if policy is not None and policy is not existing and policy != existing:
            old, new = existing.model_dump(), policy.model_dump()
            diff = "; ".join(
                f"{field} is {old[field]!r}, asked for {new[field]!r}"
                for field in old
                if old[field] != new[field]
            )
            raise RegistryError(f"breaker {name!r} already exists with a different policy ({diff})")
        for key, value in breaker_kwargs.items():
            have = entry.kwargs.get(key)
            if value is not have and value != have:
                raise RegistryError(
                    f"breaker {name!r} already exists with {key}={have!r}; asked for {value!r}"
                )

    def _make_room(self, limit: int) -> None:
        """Evict least recently used closed breakers until at most ``limit`` remain.

        O(1) per breaker evicted or pinned: the eviction order holds only breakers that
        were closed when last looked at. One found not closed is pinned (taken out of the
        order) rather than skipped, so a mass outage never makes each new name scan the
        breakers that are open; it comes back when it closes (``_Entry.count``).
        """
        lru, entries = self._lru, self._entries
        while self._recovered:  # pinned breakers that have closed since: evictable again
            entry = self._recovered.popleft()
            entry.queued = False
            name = entry.breaker.name
            if entry.pinned and entries.get(name) is entry and entry.breaker.state == "closed":
                entry.pinned = False
                lru[name] = entry
                lru.move_to_end(name, last=False)  # unused since it was pinned
        evicted = 0
        while len(entries) > limit and lru:
            name, entry = lru.popitem(last=False)
            entry.pinned = True  # before the state is read: see _Entry.count
            if entry.breaker.state == "closed":
                del entries[name]
                evicted += 1
        self._evicted += evicted
        if len(entries) > limit:
            if not self._over_bound:
                _log.warning(
                    "breaker registry over its bound of %d: no closed breaker to evict "
                    "(every other one is open, half-open or overridden); now %d breakers",
                    self.max_breakers,
                    len(entries) + 1,
                )
            self._over_bound = True
        else:
            self._over_bound = False

    def __getitem__(self, name: str) -> CircuitBreaker:
        """The existing breaker called ``name`` (``KeyError`` if none); not a use for LRU."""
        return self._entries[name].breaker

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    # ------------------------------------------------------------------ the collection

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[CircuitBreaker]:
        """The breakers, in the order of :meth:`names`."""
        entries = dict(self._entries)
        return iter([entries[name].breaker for name in sorted(entries)])

    @property
    def evicted(self) -> int:
        """How many breakers ``max_breakers`` has evicted so far."""
        return self._evicted

    def names(self) -> list[str]:
        """The breakers' names, sorted."""
        return sorted(self._entries)

    def snapshot(self) -> dict[str, BreakerMetrics]:
        """Every breaker's :meth:`~breaker_fsm.CircuitBreaker.metrics`, by name, sorted."""
        return {breaker.name: breaker.metrics() for breaker in self}

    def transition_counts(self) -> dict[str, dict[str, int]]:
        """Transitions of every breaker so far, by name, then by event (zeros included).

        Counted by a sink the registry gives each breaker it creates, so nothing is missed
        even when the bounded in-memory audit log drops records.
        """
        entries = dict(self._entries)
        return {name: dict(entries[name].transitions) for name in sorted(entries)}

    def reset_all(self, *, reason: str = "registry reset_all") -> int:
        """Send ``reset`` to every breaker (each one's streak, window and backoff cleared).

        Returns:
            How many breakers were reset.
        """
        breakers = list(self)
        for breaker in breakers:
            breaker.send("reset", reason=reason)
        return len(breakers)

    # ------------------------------------------------------------------ sinks

    @property
    def sinks(self) -> tuple[Sink, ...]:
        """The registry-level audit sinks."""
        return self._sinks

    def add_sink(self, sink: Sink) -> None:
        """Send every later transition of every breaker, existing and future, to ``sink``."""
        check_sink(sink, "BreakerRegistry.add_sink sink")
        with self._lock:
            self._sinks = (*self._sinks, sink)
            for entry in self._entries.values():
                entry.breaker.add_sink(sink)


def _check_kwargs(kwargs: dict[str, Any]) -> None:
    """Refuse keyword arguments a registry cannot pass on to ``CircuitBreaker``."""
    unknown = set(kwargs) - _BREAKER_KWARGS
    if unknown:
        raise TypeError(
            f"unexpected breaker argument(s) {sorted(unknown)}: "
            f"a registry passes on {sorted(_BREAKER_KWARGS)}"
        )
