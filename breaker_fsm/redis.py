"""Breaker state shared by a fleet of processes through Redis (or Valkey).

::

    from breaker_fsm import BreakerPolicy, CircuitBreaker
    from breaker_fsm.redis import RedisStore

    store = RedisStore("redis://cache:6379/0")
    breaker = CircuitBreaker("users-api", BreakerPolicy(), store=store)

Every breaker of that name, in every process that uses the same Redis and namespace,
shares one state, open timing, half-open permits and window.

**Atomicity.** Each decision that reads and writes shared state is one Lua script, run by
``EVALSHA``: *record* (count an outcome; trip, recover or retrip when it makes one due),
*acquire* (move open to half_open once the open duration has elapsed on the server's
clock, take a half-open permit, retrip a timed-out episode) and *operator* (an event sent
with ``breaker.send``, or ``await breaker.asend`` on the asyncio client). Redis runs a
script alone, so exactly one process wins each transition and no count is lost. Every
transition adds one to the shared generation; the process whose script made it records it
in its own audit trail with ``seq`` and ``generation`` equal to that number, so the
fleet's trails merged and sorted by ``seq`` are one walk that
:func:`breaker_fsm.audit.verify` accepts.

**Push.** A script that makes a transition also publishes it on
``{namespace}:transitions``; the store subscribes (one connection and one daemon thread,
:mod:`breaker_fsm._push`) and moves the mirror of every breaker bound to it, so that each
process learns every other process's transitions within milliseconds, without a round
trip. While the subscription is down, every call asks Redis first; when it is back, every
bound breaker's state is re-read before its mirror is trusted again.

**Round trips.** A call in ``closed`` costs one ``EVALSHA`` (its outcome); nothing is
read before the call: the live mirror is current. While ``open`` a call costs none: the
process learned how long the episode has left (measured on the server's clock, never by
comparing two hosts' clocks) and rejects locally until then. After that, one *acquire*
round trip admits a trial (plus its *record*). Without push (``push=False``) a mirror in
``forced_open`` or ``disabled`` asks again at most every ``sync_interval`` seconds.

**Degrading.** When Redis fails or does not answer within ``timeout``, the call goes on
with the breaker's local state under the same policy, continuing from the state last
mirrored; the breaker logs one warning per outage (logger ``breaker_fsm``), counts the
failures in ``metrics().store_errors``, reports ``metrics().degraded`` and records the
transitions it makes alone with ``generation=None`` and a reason starting ``local (shared
store unavailable)``. Every ``retry_interval`` seconds a call tries Redis again; the
first answer puts the breaker back on the shared state. No call fails because Redis did.

**Keys and expiry.** A breaker has a state key, ``{namespace}:{<name>}`` (18 numbers
packed in one string: :meth:`RedisStore.describe` decodes it), and with a window a window
key, ``{namespace}:{<name>}:w`` (a count window's ring, one byte a call, or a time
window's one-second buckets); both hash to one slot in a cluster, and every script
touches only them. They expire ``ttl`` seconds (at least twice the longest open duration
and the window) after their last write; the state of an operator override
(``forced_open``, ``disabled``) does not expire. A missing entry, or one behind the
caller's mirror of that same entry (a failover lost transitions), is recreated from the
state the first process to reach it had mirrored.

**Cluster and Sentinel.** ``RedisStore("redis+cluster://h1:7000,h2:7001")`` shares
breakers through a Redis Cluster: each breaker lives on the node that owns its slot, and
the push subscription (a ``PUBLISH`` reaches every node over the cluster bus) moves to
another node when its node dies. ``RedisStore("redis+sentinel://s1:26379,s2:26379/mymaster")``
follows the primary that the sentinels name. A dead node or primary degrades only the
breakers it held, as any outage does.
"""

from __future__ import annotations

import hashlib
import numbers
import struct
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ._clients import Clients
from ._entry import Entry, Script, unpack
from ._lua import (
    ACQUIRE,
    ACQUIRE_LAYOUT,
    COMMON,
    FIELDS,
    OPERATOR,
    OPERATOR_LAYOUT,
    PEEK,
    PEEK_ARGS,
    PRELUDE,
    RECORD,
    RECORD_FAST,
    RECORD_LAYOUT,
    SEED_LAYOUT,
    START,
    STATE,
    SYNC,
    SYNC_LAYOUT,
    UNPINNED,
    header,
    lua_arguments,
    trial_lease,
    ttl_seconds,
)
from ._machine import STATES
from ._push import PushChannel
from ._replicas import Replicas
from ._topology import (
    CLUSTER,
    SENTINEL,
    SERVER,
    Topology,
    check_async_client,
    decodes,
    service_of,
    topology_of,
    where,
)
from ._urls import check_url

if TYPE_CHECKING:
    import redis as redis_sync
    import redis.asyncio as redis_async

    from ._policy import BreakerPolicy
    from ._store import StoreReply

__all__ = ["RedisStore"]


def _check_types(
    *,
    namespace: object,
    service_name: object,
    push: object,
    wait_replicas: object,
    seconds: dict[str, object],
) -> None:
    """Refuse an argument of the wrong type, naming it (before any comparison fails on it).

    Raises:
        TypeError: naming the argument, what it must be and what it got.
    """
    if not isinstance(namespace, str):
        raise TypeError(f"RedisStore's namespace must be a str, got {_got(namespace)}")
    if service_name is not None and not isinstance(service_name, str):
        raise TypeError(
            f"RedisStore's service_name must be a str (the Sentinel service's name, as in "
            f"'mymaster'), got {_got(service_name)}"
        )
    if not isinstance(push, bool):
        raise TypeError(f"RedisStore's push must be True or False, got {_got(push)}")
    if isinstance(wait_replicas, bool) or not isinstance(wait_replicas, int):
        raise TypeError(
            "RedisStore's wait_replicas must be an int (how many replicas a transition "
            f"waits for; 0: none), got {_got(wait_replicas)}"
        )
    for label, value in seconds.items():
        if value is None and label == "wait_timeout":
            continue
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise TypeError(f"RedisStore's {label} must be a number of seconds, got {_got(value)}")


def _topology(client: Any, async_client: Any, service_name: str | None) -> Topology | None:
    """The topology of ``client``, once it and ``async_client`` are checked (no I/O).

    Raises:
        TypeError: ``client`` or ``async_client`` is not what a store takes.
        ValueError: a client decodes responses, is a Sentinel replica's, or does not reach
            the Redis the other one does; ``service_name`` does not go with ``client``.
    """
    for label, given in (("client", client), ("async_client", async_client)):
        if given is not None and not isinstance(given, str) and decodes(given):
            raise ValueError(
                f"RedisStore needs a {label} without decode_responses (replies are "
                f"binary): build the {type(given).__name__} without it"
            )
    topology = topology_of(client, service_name)
    if service_name is not None and (topology is None or topology.kind != SENTINEL):
        raise ValueError("service_name= is for a Sentinel (or a redis+sentinel:// URL)")
    named = service_of(client)  # the URL's, or a master_for client's
    if service_name is not None and named is not None and service_name != named:
        raise ValueError(
            f"service_name={service_name!r} conflicts with the service {named!r} that "
            f"{'the URL' if isinstance(client, str) else 'the master_for client'} names: "
            "name the service in one place"
        )
    if async_client is not None:
        kind = SERVER if topology is None else topology.kind
        check_async_client(async_client, client, kind, service_name or named)
        topology_of(async_client, None)  # a slave_for client is refused
    return topology


def _got(value: object) -> str:
    """``type value`` for an error message, short."""
    return f"{type(value).__name__} {value!r}"[:80]


class RedisStore:
    """Breaker state shared through Redis: pass it as ``CircuitBreaker(..., store=...)``.

    Args:
        client: where the shared state lives, one of

            - one server: a ``redis://`` (``rediss://``, ``unix://``) URL, a
              ``redis.Redis`` or a ``redis.asyncio.Redis``;
            - a Redis Cluster: ``redis+cluster://host:port[,host:port...]`` (the startup
              nodes), a ``redis.cluster.RedisCluster`` or a
              ``redis.asyncio.cluster.RedisCluster``;
            - a primary behind Sentinel:
              ``redis+sentinel://host:port[,host:port...]/SERVICE[/DB]`` (the sentinels),
              a ``redis.sentinel.Sentinel`` (or its asyncio twin) with ``service_name``,
              or a client from its ``master_for``. Each new connection asks the sentinels
              where the primary is: the store follows a failover by itself.

            From a URL (or a Sentinel) the store builds its own clients with ``timeout``
            and no retries. A client you pass is used as it is: give it a short
            ``socket_timeout`` and no retries (``retry=Retry(NoBackoff(), 0)``), or a dead
            Redis slows every call down. The other kind of client (sync for ``call`` and
            ``send``, asyncio for ``acall`` and ``asend``) is derived from it unless you
            pass it too.
        service_name: with a ``redis.sentinel.Sentinel``: the name of the primary (a URL
            or a ``master_for`` client names it already: another name is refused).
        namespace: prefix of every key.
        timeout: seconds to wait for Redis (connect and reply) before degrading, for the
            clients the store builds.
        ttl: seconds the keys of an unused breaker live (at least; refreshed on write).
        retry_interval: seconds a degraded breaker runs locally before it asks Redis again.
        sync_interval: without ``push``: seconds a breaker mirroring ``forced_open`` or
            ``disabled`` trusts its mirror before asking Redis again.
        trial_lease: seconds a half-open trial permit stays taken when its holder never
            reports (it died mid-trial, or its acquire reply was lost): then the next
            acquire retrips the episode. Used when the policy sets neither
            ``half_open_timeout`` (which ends the episode itself) nor ``call_timeout``
            (the lease is then ``call_timeout`` plus ``timeout``).
        async_client: the asyncio client for ``acall`` and ``asend`` (else built or derived):
            a ``redis.asyncio.Redis``, a ``redis.asyncio.cluster.RedisCluster`` or an
            asyncio ``Sentinel``'s ``master_for`` client, of the same kind of deployment as
            ``client`` and, where the settings show it without I/O, the same server and
            database or Sentinel service (else refused: ``call`` and ``acall`` would share
            breakers on two different Redis).
        push: subscribe (one connection and one daemon thread per store) to the
            transitions every script publishes, so that each breaker's mirror follows the
            fleet at once; while the subscription is down a call asks Redis first. With
            ``False`` a breaker learns the fleet's transitions only from the replies to
            its own round trips (a closed breaker runs one call after another process
            tripped the fleet): for servers without Pub/Sub, or tests of that path.
        wait_replicas: after each transition a script makes (never after a plain call),
            wait until this many replicas have it (``WAIT``), at most ``wait_timeout``
            seconds. Redis replicates asynchronously: a transition that the primary
            acknowledged and died before sending is lost by Redis. With ``wait_replicas=1``
            a confirmed transition is on a replica; one that is not confirmed in time (no
            replica, a lagging one) is counted in :attr:`unconfirmed` and logged. Either
            way, a member that saw a lost transition re-seeds it when it next reaches the
            promoted replica. 0 (the default): no ``WAIT``.
        wait_timeout: seconds a ``WAIT`` may block; shorter than ``timeout`` (half of it
            by default).
        now: for tests only: a function whose value the scripts use instead of the
            server's ``TIME`` (every process sharing a breaker must use the same one).

    Attributes:
        topology: ``"server"``, ``"cluster"`` or ``"sentinel"``: what ``client`` named.
        unconfirmed: transitions that fewer than ``wait_replicas`` replicas confirmed.
    """

    def __init__(
        self,
        client: str | redis_sync.Redis | redis_async.Redis | Any,
        *,
        service_name: str | None = None,
        namespace: str = "breaker_fsm",
        timeout: float = 0.05,
        ttl: float = 3600.0,
        retry_interval: float = 1.0,
        sync_interval: float = 1.0,
        trial_lease: float = 60.0,
        async_client: redis_async.Redis | None = None,
        push: bool = True,
        wait_replicas: int = 0,
        wait_timeout: float | None = None,
        now: Callable[[], float] | None = None,
    ) -> None:
        try:  # here, not at import: the module imports without redis-py
            import redis
            import redis.asyncio
        except ImportError as exc:
            raise ImportError(
                "breaker_fsm.redis needs redis-py: pip install 'breaker-fsm[redis]'"
            ) from exc

        _check_types(
            namespace=namespace,
            service_name=service_name,
            push=push,
            wait_replicas=wait_replicas,
            seconds={
                "timeout": timeout,
                "ttl": ttl,
                "retry_interval": retry_interval,
                "sync_interval": sync_interval,
                "trial_lease": trial_lease,
                "wait_timeout": wait_timeout,
            },
        )
        if not namespace:
            raise ValueError("a RedisStore needs a non-empty namespace")
        if "{" in namespace or "}" in namespace:
            raise ValueError(  # a tag in it would be every key's: all breakers in one slot
                f"a RedisStore's namespace must not hold '{{' or '}}' (a Redis Cluster would "
                f"hash every breaker's keys by it, into one slot): {namespace!r}"
            )
        if isinstance(client, str):
            check_url(client)
        for label, value in (
            ("timeout", timeout),
            ("ttl", ttl),
            ("retry_interval", retry_interval),
            ("sync_interval", sync_interval),
            ("trial_lease", trial_lease),
            ("wait_timeout", timeout / 2 if wait_timeout is None else wait_timeout),
        ):
            if not value > 0:
                raise ValueError(f"{label} must be > 0, got {value!r}")
        if wait_replicas < 0:
            raise ValueError(f"wait_replicas must be >= 0, got {wait_replicas!r}")
        if wait_timeout is not None and not wait_replicas:
            raise ValueError(
                f"wait_timeout={wait_timeout!r} bounds the WAIT that wait_replicas= asks for, "
                "and wait_replicas is 0 (no WAIT): set wait_replicas=1 too, or drop wait_timeout"
            )
        self.namespace = namespace
        self.timeout = float(timeout)
        self.ttl = float(ttl)
        self.retry_interval = float(retry_interval)
        self.sync_interval = float(sync_interval)
        self.trial_lease = float(trial_lease)
        self.wait_replicas = int(wait_replicas)
        self.wait_timeout = self.timeout / 2 if wait_timeout is None else float(wait_timeout)
        if self.wait_timeout >= self.timeout:
            raise ValueError(  # WAIT would outlast the socket's timeout: an error, every time
                f"wait_timeout ({self.wait_timeout:g}s) must be shorter than timeout "
                f"({self.timeout:g}s)"
            )
        self.now = now
        self.no_script: type[Exception] = redis.exceptions.NoScriptError
        topology = _topology(client, async_client, service_name)
        self.topology = SERVER if topology is None else topology.kind
        self._clients = Clients(client, async_client, topology, self.timeout)
        self._replicas = (  # WAIT after each transition: only when asked for
            Replicas(
                self, self._clients, self.wait_replicas, self.wait_timeout, self.ttl, self.topology
            )
            if self.wait_replicas
            else None
        )
        self._script_cache: dict[tuple[BreakerPolicy, int], tuple[Script, ...]] = {}
        self._peek_script = self._script(PEEK)
        self.channel = f"{namespace}:transitions"  # where the scripts publish transitions
        self._push = PushChannel(self, self.channel) if push else None
        #: What the store was given, shortly (the URL without its password, host:port/db,
        #: the nodes, the sentinels and service): for its repr, and so for its warnings.
        self._where = where(client, service_name)

    def __repr__(self) -> str:
        return f"RedisStore({self._where}, namespace={self.namespace!r})"

    @property
    def pushing(self) -> bool:
        """Whether the push subscription is up (every breaker's mirror follows the fleet)."""
        return self._push is not None and self._push.up

    @property
    def unconfirmed(self) -> int:
        """Transitions that fewer than ``wait_replicas`` replicas confirmed in time."""
        return 0 if self._replicas is None else self._replicas.unconfirmed

    # ------------------------------------------------------------------ SharedStore

    def bind(self, name: str, policy: BreakerPolicy) -> Entry:
        """The shared entry of breaker ``name`` under ``policy``."""
        return Entry(self, name, policy)

    def keys(self, name: str) -> tuple[str, str]:
        """The two Redis keys of breaker ``name``: its state and its window.

        Both carry the state key's hash tag, ``{<name>}``, so that in a cluster they share
        one slot (a script may touch only one). A name that would make that tag empty or
        cut it short (empty, or holding ``}``) is tagged with a digest of the name instead.
        """
        tag = name
        if not name or "}" in name:
            tag = "#" + hashlib.sha1(name.encode(), usedforsecurity=False).hexdigest()[:20]
        base = f"{self.namespace}:{{{tag}}}"
        return base, base + ":w"

    def describe(self, name: str) -> dict[str, float | str] | None:
        """Breaker ``name``'s shared state, decoded (``None`` when it has none).

        The state is one string of 18 packed numbers, which is what makes a script cheap;
        this reads it for people (an operator's console, a test): every field by its name,
        plus ``state_name`` (``"forced_open"`` for ``state`` 3) and ``fingerprint_hex`` (the
        policy fingerprint as the warnings spell it, 12 hex digits).
        """
        raw: bytes | None = self._clients.sync().get(self.keys(name)[0])
        if raw is None:
            return None
        raw = raw.ljust(STATE.size, b"\0")  # written before fingerprints: 0
        fields: dict[str, float | str] = dict(zip(FIELDS, STATE.unpack(raw), strict=True))
        state = int(fields["state"])
        fields["state_name"] = STATES[state] if 0 <= state < len(STATES) else str(state)
        fields["fingerprint_hex"] = f"{int(fields['fingerprint']):012x}"
        return fields

    def _peek(self, keys: list[bytes]) -> list[StoreReply | Exception | None]:
        """The state of each key as a reply (``None`` if it has none): one pipelined trip.

        In a cluster a node that fails fails its own keys only: the pipeline is retried key
        by key, and each key whose node does not answer gets the exception instead.
        """
        try:
            return self._peek_pipelined(keys)
        except Exception:
            if self.topology != CLUSTER:
                raise
        return [self._peek_one(key) for key in keys]

    def _peek_one(self, key: bytes) -> StoreReply | Exception | None:
        try:
            raw = self._peek_script.run((key,), self._peek_args())
        except Exception as exc:
            return exc
        return unpack(raw) if raw else None

    def _peek_args(self) -> bytes:
        return PEEK_ARGS.pack(UNPINNED if self.now is None else self.now())

    def _peek_pipelined(self, keys: list[bytes]) -> list[StoreReply | Exception | None]:
        client = self._clients.sync()
        script = self._peek_script
        args = self._peek_args()
        command: tuple[str, str | bytes] = ("EVALSHA", script.sha)
        for attempt in range(2):
            pipe = client.pipeline(transaction=False)
            for key in keys:
                pipe.execute_command(*command, 1, key, args)
            raws = pipe.execute(raise_on_error=False)
            if attempt == 0 and any(isinstance(raw, self.no_script) for raw in raws):
                command = ("EVAL", script.text)  # a new or restarted server: caches it
                continue
            break
        for raw in raws:
            if isinstance(raw, Exception):
                raise raw
        return [unpack(raw) if raw else None for raw in raws]

    def _pubsub(self, attempt: int) -> Any:
        """A new Pub/Sub object for the push thread's ``attempt``-th subscription.

        In a cluster a ``PUBLISH`` reaches every node over the cluster bus, so one
        subscription on any node hears every breaker's transitions; each attempt takes the
        next node, so that a dead one is passed over.
        """
        client: Any = self._clients.sync()
        if self.topology == CLUSTER:
            nodes = client.get_nodes()
            return client.pubsub(node=nodes[attempt % len(nodes)])
        return client.pubsub()

    def _scripts(self, policy: BreakerPolicy) -> tuple[Script, ...]:
        """The four scripts (record, acquire, operator, sync) of ``policy``, made once."""
        ttl_ms = int(min(ttl_seconds(policy, self.ttl), 10 * 365 * 86400.0) * 1000)
        key = (policy, ttl_ms)
        scripts = self._script_cache.get(key)
        if scripts is None:
            lease = trial_lease(policy, self.timeout, self.trial_lease)
            head = header(policy, ttl_ms, self.channel, lease)
            fast = ""
            if policy.window is None:  # where the gen seen starts in record's argument
                offset = 1 + struct.calcsize("<" + SEED_LAYOUT)
                fast = RECORD_FAST.replace("{offset}", str(offset))
            record = head + lua_arguments(RECORD_LAYOUT) + COMMON + PRELUDE + RECORD
            acquire = head + lua_arguments(ACQUIRE_LAYOUT) + COMMON + PRELUDE + ACQUIRE
            operator = head + lua_arguments(OPERATOR_LAYOUT) + COMMON + PRELUDE + OPERATOR
            sync = head + lua_arguments(SYNC_LAYOUT) + COMMON + PRELUDE + SYNC
            scripts = (  # the fast path first: it needs none of the rest
                self._script(START + fast + record),
                self._script(START + acquire),
                self._script(START + operator),
                self._script(START + sync),
            )
            self._script_cache[key] = scripts
        return scripts

    def _script(self, text: str) -> Script:
        return Script(self._clients, text, self.no_script)

    # ------------------------------------------------------------------ closing

    def close(self) -> None:
        """Stop the push subscription; close the sync client the store built.

        A client you passed stays open. A breaker that calls on after ``close`` starts the
        subscription again.
        """
        if self._push is not None:
            self._push.close()
        self._clients.close()

    async def aclose(self) -> None:
        """Close the asyncio client the store built for the running event loop."""
        await self._clients.aclose()
