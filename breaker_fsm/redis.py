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
window's one-second buckets); both hash to one slot in a cluster. They expire ``ttl``
seconds (at least twice the longest open duration and the window) after their last write;
the state of an operator override (``forced_open``, ``disabled``) does not expire. A
missing entry is recreated from the state the first process to reach it had mirrored.
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
from urllib.parse import urlsplit, urlunsplit

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
    UNPINNED,
    fingerprint,
    header,
    lua_arguments,
    trial_lease,
    ttl_seconds,
)
from ._push import PushChannel
from ._store import Seed, StoreReply

if TYPE_CHECKING:
    import redis as redis_sync
    import redis.asyncio as redis_async

    from ._mirror import Mirror, StoreLink
    from ._policy import BreakerPolicy

__all__ = ["RedisStore"]

_log = logging.getLogger("breaker_fsm")


def _redacted(url: str) -> str:
    """``url`` without its password."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = f"{parts.username}:***@" if parts.username else ":***@"
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=user + host))


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
            reply: bytes = client.execute_command(  # type: ignore[no-untyped-call]
                "EVALSHA", self.sha, len(keys), *keys, args
            )
        except self.store.no_script:  # a new or restarted server: load it, once
            client.script_load(self.text)
            reply = client.execute_command(  # type: ignore[no-untyped-call]
                "EVALSHA", self.sha, len(keys), *keys, args
            )
        return reply

    async def arun(self, keys: tuple[bytes, ...], args: bytes) -> bytes:
        """EVALSHA on the store's asyncio client for the running loop."""
        client = self.store._async_client()
        try:
            reply: bytes = await client.execute_command(  # type: ignore[no-untyped-call]
                "EVALSHA", self.sha, len(keys), *keys, args
            )
        except self.store.no_script:
            await client.script_load(self.text)
            reply = await client.execute_command(  # type: ignore[no-untyped-call]
                "EVALSHA", self.sha, len(keys), *keys, args
            )
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
        "fingerprint",
        "keys",
        "now",
        "origin",
        "push",
        "retry_interval",
        "sync_interval",
    )

    def __init__(self, store: RedisStore, name: str, policy: BreakerPolicy) -> None:
        # Without a window a breaker has one key: one argument less to send per call.
        keys = store.keys(name)[: 1 if policy.window is None else 2]
        self.keys = tuple(key.encode() for key in keys)
        self._record, self._acquire, self._operator = store._scripts(policy)
        self.now = store.now
        self.retry_interval = store.retry_interval
        self.push = store._push
        # With pushes an override's mirror is as fresh as any other: never asked again.
        self.sync_interval = store.sync_interval if self.push is None else math.inf
        self.fingerprint = fingerprint(policy)
        self.origin = secrets.randbits(63)  # names this entry's own pushes, to skip them

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
        return _reply(raw) if raw else None

    def acquire(self, u: float, seed: Seed) -> StoreReply:
        """Admit a call the mirror cannot admit alone."""
        now = UNPINNED if self.now is None else self.now()
        args = ACQUIRE_ARGS.pack(now, *seed, u, self.origin)
        return _reply(self._acquire.run(self.keys, args))

    def operator(self, event: int, u: float, seed: Seed) -> StoreReply:
        """Apply an operator event."""
        now = UNPINNED if self.now is None else self.now()
        args = OPERATOR_ARGS.pack(now, *seed, event, u, self.origin)
        return _reply(self._operator.run(self.keys, args))

    async def arecord(
        self, gen: int, outcome: int, u: float, hint: float | None, seed: Seed
    ) -> StoreReply | None:
        """:meth:`record` on the asyncio client."""
        now = UNPINNED if self.now is None else self.now()
        hint = -1.0 if hint is None else hint
        args = RECORD_ARGS.pack(now, *seed, gen, outcome, u, hint, self.origin)
        raw = await self._record.arun(self.keys, args)
        return _reply(raw) if raw else None

    async def aacquire(self, u: float, seed: Seed) -> StoreReply:
        """:meth:`acquire` on the asyncio client."""
        now = UNPINNED if self.now is None else self.now()
        args = ACQUIRE_ARGS.pack(now, *seed, u, self.origin)
        return _reply(await self._acquire.arun(self.keys, args))

    async def aoperator(self, event: int, u: float, seed: Seed) -> StoreReply:
        """:meth:`operator` on the asyncio client."""
        now = UNPINNED if self.now is None else self.now()
        args = OPERATOR_ARGS.pack(now, *seed, event, u, self.origin)
        return _reply(await self._operator.arun(self.keys, args))


#: Connection settings carried over when one client (sync or asyncio) is derived from the
#: other; anything fancier: pass both clients.
_CARRIED = frozenset(
    {
        "host",
        "port",
        "path",
        "db",
        "username",
        "password",
        "credential_provider",
        "socket_timeout",
        "socket_connect_timeout",
        "client_name",
        "protocol",
        "ssl_keyfile",
        "ssl_certfile",
        "ssl_cert_reqs",
        "ssl_ca_certs",
        "ssl_ca_data",
        "ssl_ca_path",
        "ssl_check_hostname",
        "ssl_password",
        "ssl_min_version",
        "ssl_ciphers",
    }
)


class RedisStore:
    """Breaker state shared through Redis: pass it as ``CircuitBreaker(..., store=...)``.

    Args:
        client: a ``redis://`` URL, a ``redis.Redis`` or a ``redis.asyncio.Redis``. From a
            URL the store builds its own clients with ``timeout`` and no retries. A client
            you pass is used as it is: give it a short ``socket_timeout`` and no retries
            (``retry=Retry(NoBackoff(), 0)``), or a dead Redis slows every call down.
            The other kind of client (sync for ``call`` and ``send``, asyncio for
            ``acall`` and ``asend``) is derived from it unless you pass it too.
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
        now: for tests only: a function whose value the scripts use instead of the
            server's ``TIME`` (every process sharing a breaker must use the same one).
    """

    def __init__(
        self,
        client: str | redis_sync.Redis | redis_async.Redis,
        *,
        namespace: str = "breaker_fsm",
        timeout: float = 0.05,
        ttl: float = 3600.0,
        retry_interval: float = 1.0,
        sync_interval: float = 1.0,
        trial_lease: float = 60.0,
        async_client: redis_async.Redis | None = None,
        push: bool = True,
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
        for label, value in (
            ("timeout", timeout),
            ("ttl", ttl),
            ("retry_interval", retry_interval),
            ("sync_interval", sync_interval),
            ("trial_lease", trial_lease),
        ):
            if not value > 0:
                raise ValueError(f"{label} must be > 0, got {value!r}")
        self.namespace = namespace
        self.timeout = float(timeout)
        self.ttl = float(ttl)
        self.retry_interval = float(retry_interval)
        self.sync_interval = float(sync_interval)
        self.trial_lease = float(trial_lease)
        self.now = now
        self.no_script: type[Exception] = redis.exceptions.NoScriptError
        self._url: str | None = None
        self._client: redis_sync.Redis | None = None
        self._owns_client = False
        self._shared_aclient: redis_async.Redis | None = async_client
        self._aclients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, redis_async.Redis]
        self._aclients = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()
        self._script_cache: dict[tuple[BreakerPolicy, int], tuple[_Script, _Script, _Script]] = {}
        self._peek_script = _Script(self, PEEK)
        self.channel = f"{namespace}:transitions"  # where the scripts publish transitions
        self._push = PushChannel(self, self.channel) if push else None
        pool = getattr(client, "connection_pool", None)
        if pool is not None and pool.connection_kwargs.get("decode_responses"):
            raise ValueError(
                "RedisStore needs a client without decode_responses: replies are binary"
            )
        if isinstance(client, str):
            self._url = client
        elif isinstance(client, redis.asyncio.Redis):
            if async_client is None:
                self._shared_aclient = client
        elif isinstance(client, redis.Redis):
            self._client = client
        else:
            raise TypeError(
                f"RedisStore needs a redis:// URL, a redis.Redis or a redis.asyncio.Redis, "
                f"got {type(client).__name__}"
            )

    def __repr__(self) -> str:
        where = _redacted(self._url) if self._url else repr(self._client or self._shared_aclient)
        return f"RedisStore({where}, namespace={self.namespace!r})"

    @property
    def pushing(self) -> bool:
        """Whether the push subscription is up (every breaker's mirror follows the fleet)."""
        return self._push is not None and self._push.up

    # ------------------------------------------------------------------ SharedStore

    def bind(self, name: str, policy: BreakerPolicy) -> _Entry:
        """The shared entry of breaker ``name`` under ``policy``."""
        return _Entry(self, name, policy)

    def keys(self, name: str) -> tuple[str, str]:
        """The two Redis keys of breaker ``name``: its state and its window."""
        base = f"{self.namespace}:{{{name}}}"
        return base, base + ":w"

    def describe(self, name: str) -> dict[str, float] | None:
        """Breaker ``name``'s shared state, decoded (``None`` when it has none).

        The state is one string of 18 packed numbers, which is what makes a script cheap;
        this reads it for people (an operator's console, a test).
        """
        raw: bytes | None = self._sync_client().get(self.keys(name)[0])  # type: ignore[assignment]
        if raw is None:
            return None
        raw = raw.ljust(STATE.size, b"\0")  # written before fingerprints: 0
        return dict(zip(FIELDS, STATE.unpack(raw), strict=True))

    def _peek(self, keys: list[bytes]) -> list[StoreReply | None]:
        """The state of each key as a reply (``None`` if it has none): one pipelined trip."""
        client = self._sync_client()
        script = self._peek_script
        args = PEEK_ARGS.pack(UNPINNED if self.now is None else self.now())
        for attempt in range(2):
            pipe = client.pipeline(transaction=False)
            for key in keys:
                pipe.execute_command("EVALSHA", script.sha, 1, key, args)  # type: ignore[no-untyped-call]
            raws = pipe.execute(raise_on_error=False)
            if attempt == 0 and any(isinstance(raw, self.no_script) for raw in raws):
                client.script_load(script.text)  # a new or restarted server: once
                continue
            break
        for raw in raws:
            if isinstance(raw, Exception):
                raise raw
        return [_reply(raw) if raw else None for raw in raws]

    def _scripts(self, policy: BreakerPolicy) -> tuple[_Script, _Script, _Script]:
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
            scripts = (  # the fast path first: it needs none of the rest
                _Script(self, START + fast + record),
                _Script(self, START + acquire),
                _Script(self, START + operator),
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

    def _sync_client(self) -> redis_sync.Redis:
        client = self._client
        if client is None:
            with self._lock:
                client = self._client
                if client is None:
                    import redis

                    if self._url is not None:
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

    def _async_client(self) -> redis_async.Redis:
        if self._shared_aclient is not None:
            return self._shared_aclient
        loop = asyncio.get_running_loop()
        client = self._aclients.get(loop)
        if client is None:
            import redis.asyncio

            if self._url is not None:
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
        kwargs = {k: v for k, v in pool.connection_kwargs.items() if k in _CARRIED}
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

    async def aclose(self) -> None:
        """Close the asyncio client the store built for the running event loop."""
        loop = asyncio.get_running_loop()
        client = self._aclients.pop(loop, None)
        if client is not None:
            await client.aclose()
