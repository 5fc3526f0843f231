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

import asyncio
import hashlib
import logging
import math
import secrets
import struct
import threading
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ._lua import (
    ACQUIRE,
    ACQUIRE_ARGS,
    ACQUIRE_LAYOUT,
    COMMON,
    FIELDS,
    OPERATOR,
    OPERATOR_ARGS,
    OPERATOR_LAYOUT,
    PEEK,
    PEEK_ARGS,
    PRELUDE,
    RECORD,
    RECORD_ARGS,
    RECORD_FAST,
    RECORD_LAYOUT,
    REPLY,
    SEED_LAYOUT,
    START,
    STATE,
    SYNC,
    SYNC_ARGS,
    SYNC_LAYOUT,
    UNPINNED,
    fingerprint,
    header,
    lua_arguments,
    trial_lease,
    ttl_seconds,
)
from ._machine import STATES
from ._push import PushChannel
from ._store import Seed, StoreReply
from ._topology import (
    CARRIED,
    CLUSTER,
    SENTINEL,
    SERVER,
    Topology,
    check_url,
    topology_of,
    where,
)

if TYPE_CHECKING:
    import redis as redis_sync
    import redis.asyncio as redis_async

    from ._mirror import Mirror, StoreLink
    from ._policy import BreakerPolicy

__all__ = ["RedisStore"]

_log = logging.getLogger("breaker_fsm")


class _Script:
    """One Lua script: its text and SHA1, run with EVALSHA (loaded on NOSCRIPT)."""

    __slots__ = ("sha", "store", "text")

    def __init__(self, store: RedisStore, text: str) -> None:
        self.store = store
        self.text = text
        # bytes: redis-py sends them as they are (no encoding per call)
        self.sha = hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest().encode()

    def run(self, keys: tuple[bytes, ...], args: bytes) -> bytes:
        """EVALSHA on the store's sync client."""
        client = self.store._sync_client()
        try:
            reply: bytes = client.execute_command("EVALSHA", self.sha, len(keys), *keys, args)
        except self.store.no_script:  # a new or restarted server: EVAL caches it there
            reply = client.execute_command("EVAL", self.text, len(keys), *keys, args)
        return reply

    async def arun(self, keys: tuple[bytes, ...], args: bytes) -> bytes:
        """EVALSHA on the store's asyncio client for the running loop."""
        client = self.store._async_client()
        try:
            reply: bytes = await client.execute_command("EVALSHA", self.sha, len(keys), *keys, args)
        except self.store.no_script:
            reply = await client.execute_command("EVAL", self.text, len(keys), *keys, args)
        return reply


def _reply(raw: bytes) -> StoreReply:
    """Unpack a script's reply into a :class:`StoreReply`."""
    return StoreReply._make(REPLY.unpack(raw))


class _Entry:
    """One breaker's two keys, the three scripts of its policy, and its push channel."""

    __slots__ = (
        "_acquire",
        "_operator",
        "_record",
        "_sync",
        "fingerprint",
        "keys",
        "now",
        "origin",
        "push",
        "retry_interval",
        "store",
        "sync_interval",
        "wait",
    )

    def __init__(self, store: RedisStore, name: str, policy: BreakerPolicy) -> None:
        # Without a window a breaker has one key: one argument less to send per call.
        keys = store.keys(name)[: 1 if policy.window is None else 2]
        self.keys = tuple(key.encode() for key in keys)
        self._record, self._acquire, self._operator, self._sync = store._scripts(policy)
        self.now = store.now
        self.retry_interval = store.retry_interval
        self.push = store._push
        # With pushes an override's mirror is as fresh as any other: never asked again.
        self.sync_interval = store.sync_interval if self.push is None else math.inf
        self.fingerprint = fingerprint(policy)
        self.origin = secrets.randbits(63)  # names this entry's own pushes, to skip them
        self.store = store
        self.wait = store.wait_replicas > 0  # WAIT after each transition this entry makes

    def __repr__(self) -> str:
        return f"<RedisStore entry {self.keys[0].decode()!r}>"

    def follow(self, mirror: Mirror) -> None:
        """Push every transition of this entry to ``mirror`` (made by others than itself)."""
        if self.push is None:
            mirror._link.live = True  # no pushes: the mirror is trusted as it stands
        else:
            self.push.follow(self.keys[0], mirror, self.origin)

    def push_token(self) -> int | None:
        """Before a round trip that reads the state: see :meth:`confirm_push`."""
        return None if self.push is None else self.push.begin()

    def confirm_push(self, link: StoreLink, token: int | None) -> None:
        """The state was read under push ``token``: the link's mirror is live (if it holds)."""
        if self.push is not None:
            self.push.confirm(link, token)

    def record(
        self, gen: int, outcome: int, u: float, hint: float | None, seed: Seed
    ) -> StoreReply | None:
        """Count one outcome; see :class:`~breaker_fsm._store.SharedState`."""
        now = UNPINNED if self.now is None else self.now()
        hint = -1.0 if hint is None else hint
        args = RECORD_ARGS.pack(now, *seed, gen, outcome, u, hint, self.origin)
        raw = self._record.run(self.keys, args)
        if not raw:
            return None
        reply = _reply(raw)
        if self.wait and reply.event:  # inline: a call with a window gets a reply each time
            self.store._confirm(self.keys[0])
        return reply

    def acquire(self, u: float, seed: Seed) -> StoreReply:
        """Admit a call the mirror cannot admit alone."""
        now = UNPINNED if self.now is None else self.now()
        args = ACQUIRE_ARGS.pack(now, *seed, u, self.origin)
        return self._confirmed(_reply(self._acquire.run(self.keys, args)))

    def operator(self, event: int, u: float, seed: Seed) -> StoreReply:
        """Apply an operator event."""
        now = UNPINNED if self.now is None else self.now()
        args = OPERATOR_ARGS.pack(now, *seed, event, u, self.origin)
        return self._confirmed(_reply(self._operator.run(self.keys, args)))

    def sync(self, seed: Seed) -> StoreReply:
        """The state, after re-seeding it if ``seed`` shows the store lost it (push thread)."""
        now = UNPINNED if self.now is None else self.now()
        args = SYNC_ARGS.pack(now, *seed, self.origin)
        return _reply(self._sync.run(self.keys, args))

    async def arecord(
        self, gen: int, outcome: int, u: float, hint: float | None, seed: Seed
    ) -> StoreReply | None:
        """:meth:`record` on the asyncio client."""
        now = UNPINNED if self.now is None else self.now()
        hint = -1.0 if hint is None else hint
        args = RECORD_ARGS.pack(now, *seed, gen, outcome, u, hint, self.origin)
        raw = await self._record.arun(self.keys, args)
        if not raw:
            return None
        reply = _reply(raw)
        if self.wait and reply.event:
            await self.store._aconfirm(self.keys[0])
        return reply

    async def aacquire(self, u: float, seed: Seed) -> StoreReply:
        """:meth:`acquire` on the asyncio client."""
        now = UNPINNED if self.now is None else self.now()
        args = ACQUIRE_ARGS.pack(now, *seed, u, self.origin)
        return await self._aconfirmed(_reply(await self._acquire.arun(self.keys, args)))

    async def aoperator(self, event: int, u: float, seed: Seed) -> StoreReply:
        """:meth:`operator` on the asyncio client."""
        now = UNPINNED if self.now is None else self.now()
        args = OPERATOR_ARGS.pack(now, *seed, event, u, self.origin)
        return await self._aconfirmed(_reply(await self._operator.arun(self.keys, args)))

    def _confirmed(self, reply: StoreReply) -> StoreReply:
        """``reply``, after waiting for the replicas if it reports a transition."""
        if self.wait and reply.event:
            self.store._confirm(self.keys[0])
        return reply

    async def _aconfirmed(self, reply: StoreReply) -> StoreReply:
        """:meth:`_confirmed` on the asyncio client."""
        if self.wait and reply.event:
            await self.store._aconfirm(self.keys[0])
        return reply


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
        service_name: with a ``redis.sentinel.Sentinel``: the name of the primary.
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
        async_client: the ``redis.asyncio.Redis`` client for ``acall`` and ``asend``.
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
        self.namespace = namespace
        self.timeout = float(timeout)
        self.ttl = float(ttl)
        self.retry_interval = float(retry_interval)
        self.sync_interval = float(sync_interval)
        self.trial_lease = float(trial_lease)
        if wait_replicas < 0:
            raise ValueError(f"wait_replicas must be >= 0, got {wait_replicas!r}")
        self.wait_replicas = int(wait_replicas)
        self.wait_timeout = self.timeout / 2 if wait_timeout is None else float(wait_timeout)
        if self.wait_timeout >= self.timeout:
            raise ValueError(  # WAIT would outlast the socket's timeout: an error, every time
                f"wait_timeout ({self.wait_timeout:g}s) must be shorter than timeout "
                f"({self.timeout:g}s)"
            )
        self._confirming = True  # the last WAIT was answered: warn when one is not
        #: Transitions that fewer than ``wait_replicas`` replicas confirmed in time.
        self.unconfirmed = 0
        self.now = now
        self.no_script: type[Exception] = redis.exceptions.NoScriptError
        self._url: str | None = None
        self._client: Any = None  # a redis.Redis or a RedisCluster
        self._owns_client = False
        self._shared_aclient: Any = async_client
        self._aclients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, redis_async.Redis]
        self._aclients = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()
        self._script_cache: dict[tuple[BreakerPolicy, int], tuple[_Script, ...]] = {}
        self._peek_script = _Script(self, PEEK)
        self.channel = f"{namespace}:transitions"  # where the scripts publish transitions
        self._push = PushChannel(self, self.channel) if push else None
        pool = getattr(client, "connection_pool", None)
        if pool is not None and pool.connection_kwargs.get("decode_responses"):
            raise ValueError(
                "RedisStore needs a client without decode_responses: replies are binary"
            )
        self._topology: Topology | None = topology_of(client, service_name)
        if service_name is not None and (self._topology is None or self._topology.kind != SENTINEL):
            raise ValueError("service_name= is for a Sentinel (or a redis+sentinel:// URL)")
        self._take(client, async_client)
        self.topology = SERVER if self._topology is None else self._topology.kind
        #: What the store was given, shortly (the URL without its password, host:port/db,
        #: the nodes, the sentinels and service): for its repr, and so for its warnings.
        self._where = where(client, service_name)

    def _take(self, client: Any, async_client: Any) -> None:
        """Keep the client the user passed, as the sync one or the asyncio one."""
        import redis as redis_module
        import redis.asyncio as redis_asyncio

        if isinstance(client, str):
            self._url = client
        elif self._topology is not None and self._topology.build_sync is None:
            self._client = client  # a sync client of a Cluster or of Sentinel's primary
        elif self._topology is not None and self._topology.build_async is None:
            if async_client is None:
                self._shared_aclient = client
        elif self._topology is not None:
            pass  # a Sentinel: the store builds both kinds of client
        elif isinstance(client, redis_asyncio.Redis):
            if async_client is None:
                self._shared_aclient = client
        elif isinstance(client, redis_module.Redis):
            self._client = client
        else:
            raise TypeError(
                "RedisStore needs a redis:// URL (or redis+cluster://, redis+sentinel://), a "
                "redis.Redis, a redis.cluster.RedisCluster, a redis.sentinel.Sentinel (with "
                "service_name=) or their asyncio twins, "
                f"got {type(client).__name__}"
            )

    def __repr__(self) -> str:
        return f"RedisStore({self._where}, namespace={self.namespace!r})"

    @property
    def pushing(self) -> bool:
        """Whether the push subscription is up (every breaker's mirror follows the fleet)."""
        return self._push is not None and self._push.up

    # ------------------------------------------------------------------ SharedStore

    def bind(self, name: str, policy: BreakerPolicy) -> _Entry:
        """The shared entry of breaker ``name`` under ``policy``."""
        return _Entry(self, name, policy)

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
        raw: bytes | None = self._sync_client().get(self.keys(name)[0])
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
        return _reply(raw) if raw else None

    def _peek_args(self) -> bytes:
        return PEEK_ARGS.pack(UNPINNED if self.now is None else self.now())

    def _peek_pipelined(self, keys: list[bytes]) -> list[StoreReply | Exception | None]:
        client = self._sync_client()
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
        return [_reply(raw) if raw else None for raw in raws]

    def _pubsub(self, attempt: int) -> Any:
        """A new Pub/Sub object for the push thread's ``attempt``-th subscription.

        In a cluster a ``PUBLISH`` reaches every node over the cluster bus, so one
        subscription on any node hears every breaker's transitions; each attempt takes the
        next node, so that a dead one is passed over.
        """
        client: Any = self._sync_client()
        if self.topology == CLUSTER:
            nodes = client.get_nodes()
            return client.pubsub(node=nodes[attempt % len(nodes)])
        return client.pubsub()

    # ------------------------------------------------------------------ WAIT

    def _confirm(self, key: bytes) -> None:
        """After a transition on ``key``: wait until ``wait_replicas`` replicas have it."""
        try:
            acked = self._wait_sync(key)
        except Exception as exc:
            self._unconfirmed(key, exc)
            return
        self._confirmed(key, acked)

    def _confirmed(self, key: bytes, acked: int) -> None:
        """Take ``WAIT``'s answer: ``acked`` replicas have the transition on ``key``."""
        if acked < self.wait_replicas:
            self._unconfirmed(key, acked)
        else:
            self._confirming = True

    async def _aconfirm(self, key: bytes) -> None:
        """:meth:`_confirm` on the asyncio client (a cluster's: the sync one, in a thread)."""
        try:
            if self.topology == CLUSTER:
                acked = await asyncio.to_thread(self._wait_sync, key)
            else:
                pipe = self._async_client().pipeline(transaction=False)
                self._wait_commands(pipe, key)
                acked = int((await pipe.execute())[-1])
        except Exception as exc:
            self._unconfirmed(key, exc)
            return
        self._confirmed(key, acked)

    def _wait_sync(self, key: bytes) -> int:
        client: Any = self._sync_client()
        if self.topology == CLUSTER:  # the primary that owns the key, on one connection
            client = client.get_redis_connection(client.get_node_from_key(key))
        pipe = client.pipeline(transaction=False)
        self._wait_commands(pipe, key)
        return int(pipe.execute()[-1])

    def _wait_commands(self, pipe: Any, key: bytes) -> None:
        """A write, then WAIT, on one connection.

        WAIT counts the replicas that have every write its own connection made; a pooled
        connection may not be the one that ran the script, so it first writes a small key
        of the breaker's own (same slot), which replicates after the transition.
        """
        pipe.execute_command("SET", key + b":ack", b"1", "PX", int(self.ttl * 1000))
        pipe.execute_command("WAIT", self.wait_replicas, int(self.wait_timeout * 1000))

    def _unconfirmed(self, key: bytes, why: int | BaseException) -> None:
        """Count a transition the replicas did not confirm; warn once until one is."""
        self.unconfirmed += 1
        if not self._confirming:
            return
        self._confirming = False
        if isinstance(why, int):
            detail = f"{why} replica(s) acknowledged"
        elif "timeout" in type(why).__name__.lower():
            detail = (  # WAIT's own timeout is checked on the server's cron tick (1/hz s)
                f"no answer to WAIT within the store's timeout of {self.timeout:g}s: fewer "
                f"than {self.wait_replicas} replica(s) acknowledged, and Redis answers a WAIT "
                "that timed out only on its next cron tick (up to 100 ms late at the default "
                "hz 10); is a replica attached?"
            )
        else:
            detail = f"{type(why).__name__}: {why}"
        _log.warning(
            "%r: a transition of %s is not confirmed by %d replica(s) within %gs (%s): a "
            "failover now may lose it (the fleet re-seeds it from the members that saw it); "
            "counted in .unconfirmed, and said again once a transition is confirmed",
            self,
            key.decode(errors="replace"),
            self.wait_replicas,
            self.wait_timeout,
            detail,
        )

    def _scripts(self, policy: BreakerPolicy) -> tuple[_Script, ...]:
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
                _Script(self, START + fast + record),
                _Script(self, START + acquire),
                _Script(self, START + operator),
                _Script(self, START + sync),
            )
            self._script_cache[key] = scripts
        return scripts

    # ------------------------------------------------------------------ clients

    def _options(self, *, asyncio: bool) -> dict[str, Any]:
        """Client options for the clients the store builds: its timeout and no retries.

        Each kind of client gets its own kind of ``Retry``: redis-py 8 warns when an asyncio
        client is handed a sync one (and converts it), redis-py 5 to 7 silently accept both.
        """
        from redis.asyncio.retry import Retry as AsyncRetry
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        retry = AsyncRetry(NoBackoff(), 0) if asyncio else Retry(NoBackoff(), 0)
        return {
            "socket_timeout": self.timeout,
            "socket_connect_timeout": self.timeout,
            "retry": retry,
        }

    def _sync_client(self) -> Any:  # a redis.Redis or a RedisCluster
        client = self._client
        if client is None:
            with self._lock:
                client = self._client
                if client is None:
                    import redis

                    topology = self._topology
                    if topology is not None and topology.build_sync is not None:
                        client = topology.build_sync(self._options(asyncio=False))
                    elif self._url is not None:
                        client = redis.Redis.from_url(self._url, **self._options(asyncio=False))
                    else:
                        client = redis.Redis.from_pool(  # owns the pool: closes it
                            redis.ConnectionPool(
                                **self._derive(self._shared_aclient, asyncio=False)
                            )
                        )
                    self._client = client
                    self._owns_client = True
        return client

    def _async_client(self) -> Any:  # a redis.asyncio.Redis or its RedisCluster
        if self._shared_aclient is not None:
            return self._shared_aclient
        loop = asyncio.get_running_loop()
        client = self._aclients.get(loop)
        if client is None:
            import redis.asyncio

            topology = self._topology
            if topology is not None and topology.build_async is not None:
                client = topology.build_async(self._options(asyncio=True))
            elif self._url is not None:
                client = redis.asyncio.Redis.from_url(self._url, **self._options(asyncio=True))
            else:
                client = redis.asyncio.Redis.from_pool(  # owns the pool: closes it
                    redis.asyncio.ConnectionPool(**self._derive(self._client, asyncio=True))
                )
            self._aclients[loop] = client
        return client

    def _derive(self, source: Any, *, asyncio: bool) -> dict[str, Any]:
        """Connection-pool arguments for the other kind of client than ``source``."""
        import redis.asyncio.connection
        import redis.connection

        if source is None:  # pragma: no cover - the constructor always sets one
            raise TypeError("RedisStore has no client to derive another one from")
        pool = source.connection_pool
        target = redis.asyncio.connection if asyncio else redis.connection
        name = pool.connection_class.__name__
        connection_class = getattr(target, name, None)
        if name not in ("Connection", "SSLConnection", "UnixDomainSocketConnection") or (
            connection_class is None
        ):
            raise TypeError(
                f"RedisStore cannot derive a {'asyncio' if asyncio else 'sync'} client from a "
                f"{name} pool: pass {'async_client=' if asyncio else 'a redis.Redis'} too"
            )
        kwargs = {k: v for k, v in pool.connection_kwargs.items() if k in CARRIED}
        if name == "UnixDomainSocketConnection":
            kwargs.pop("host", None)
            kwargs.pop("port", None)
        options = self._options(asyncio=asyncio)  # fail fast: no retries; a timeout if none
        for key in ("socket_timeout", "socket_connect_timeout"):
            if kwargs.get(key) is not None:
                del options[key]
        return {"connection_class": connection_class, **kwargs, **options}

    # ------------------------------------------------------------------ closing

    def close(self) -> None:
        """Stop the push subscription; close the sync client the store built.

        A client you passed stays open. A breaker that calls on after ``close`` starts the
        subscription again.
        """
        if self._push is not None:
            self._push.close()
        with self._lock:
            client = self._client if self._owns_client else None
            if client is not None:
                self._client = None
                self._owns_client = False
        if client is not None:
            client.close()
            for sentinel in _sentinels_of(client):  # the ones the store asked, built with it
                sentinel.close()

    async def aclose(self) -> None:
        """Close the asyncio client the store built for the running event loop."""
        loop = asyncio.get_running_loop()
        client = self._aclients.pop(loop, None)
        if client is not None:
            await client.aclose()
            for sentinel in _sentinels_of(client):
                await sentinel.aclose()


def _sentinels_of(client: Any) -> list[Any]:
    """The sentinel clients behind a client from ``Sentinel.master_for`` (else none)."""
    manager = getattr(getattr(client, "connection_pool", None), "sentinel_manager", None)
    return list(getattr(manager, "sentinels", ()))
