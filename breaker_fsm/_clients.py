"""The clients of a :class:`~breaker_fsm.redis.RedisStore`: one sync, one asyncio per loop.

A store needs a sync client (``call``, ``send``, the push thread) and an asyncio client
for each event loop it serves (``acall``, ``asend``). :class:`Clients` keeps the one the
user passed and builds the others when first needed: from the :class:`Topology` (a
Cluster, Sentinel), from the URL, or derived from the other kind of client (same server,
same credentials and TLS settings). The clients it builds fail fast: the store's timeout,
no retries. It closes what it built, never what it was given.

redis-py is imported here lazily, inside functions: ``breaker_fsm`` imports without it.
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from typing import TYPE_CHECKING, Any

from ._topology import CARRIED, SERVER, Topology

if TYPE_CHECKING:
    import redis.asyncio as redis_async

__all__ = ["Clients"]


class Clients:
    """A store's sync client and its asyncio clients, built lazily; closes what it built."""

    __slots__ = (
        "_aclients",
        "_lock",
        "_owned",
        "_shared_async",
        "_sync",
        "_topology",
        "_url",
        "timeout",
    )

    def __init__(
        self, client: Any, async_client: Any, topology: Topology | None, timeout: float
    ) -> None:
        """Keep ``client`` (a URL, a client or a Sentinel) and ``async_client`` as given.

        Raises:
            TypeError: ``client`` is none of the things a store takes.
        """
        import redis
        import redis.asyncio

        self.timeout = timeout
        self._url: str | None = None
        self._sync: Any = None  # a redis.Redis or a RedisCluster
        self._owned = False  # the sync client was built here: close() closes it
        self._shared_async: Any = async_client  # the asyncio client of every loop
        self._aclients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, redis_async.Redis]
        self._aclients = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()
        self._topology = topology
        if isinstance(client, str):
            self._url = client
        elif topology is not None and topology.build_sync is None:
            self._sync = client  # a sync client of a Cluster or of Sentinel's primary
        elif topology is not None and topology.build_async is None:
            if async_client is None:
                self._shared_async = client
        elif topology is not None:
            pass  # a Sentinel: both kinds of client are built
        elif isinstance(client, redis.asyncio.Redis):
            if async_client is None:
                self._shared_async = client
        elif isinstance(client, redis.Redis):
            self._sync = client
        else:
            raise TypeError(
                "RedisStore needs a redis:// URL (or redis+cluster://, redis+sentinel://), a "
                "redis.Redis, a redis.cluster.RedisCluster, a redis.sentinel.Sentinel (with "
                "service_name=) or their asyncio twins, "
                f"got {type(client).__name__}"
            )

    @property
    def kind(self) -> str:
        """``SERVER``, ``CLUSTER`` or ``SENTINEL``: what the clients reach."""
        return SERVER if self._topology is None else self._topology.kind

    def sync(self) -> Any:  # a redis.Redis or a RedisCluster
        """The sync client, built on first use."""
        client = self._sync
        if client is None:
            with self._lock:
                client = self._sync
                if client is None:
                    client = self._sync = self._build(asyncio=False)
                    self._owned = True
        return client

    def for_loop(self) -> Any:  # a redis.asyncio.Redis or its RedisCluster
        """The asyncio client for the running event loop, built on first use there."""
        if self._shared_async is not None:
            return self._shared_async
        loop = asyncio.get_running_loop()
        client = self._aclients.get(loop)
        if client is None:
            client = self._aclients[loop] = self._build(asyncio=True)
        return client

    def _build(self, *, asyncio: bool) -> Any:
        """A new client of one kind: from the topology, the URL, or the other kind's pool."""
        import redis
        import redis.asyncio

        topology = self._topology
        build = (
            None if topology is None else topology.build_async if asyncio else topology.build_sync
        )
        if build is not None:
            return build(self._options(asyncio=asyncio))
        kind: Any = redis.asyncio if asyncio else redis
        if self._url is not None:
            return kind.Redis.from_url(self._url, **self._options(asyncio=asyncio))
        source = self._sync if asyncio else self._shared_async
        return kind.Redis.from_pool(  # owns the pool: closes it
            kind.ConnectionPool(**self._derive(source, asyncio=asyncio))
        )

    def _options(self, *, asyncio: bool) -> dict[str, Any]:
        """Client options for the clients built here: the store's timeout and no retries.

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

    def _derive(self, source: Any, *, asyncio: bool) -> dict[str, Any]:
        """Connection-pool arguments for the other kind of client than ``source``."""
        import redis.asyncio.connection
        import redis.connection

        if source is None:  # pragma: no cover - the constructor always keeps one
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

    def close(self) -> None:
        """Close the sync client built here (and the sentinels it asked); a given one stays."""
        with self._lock:
            client = self._sync if self._owned else None
            if client is not None:
                self._sync = None
                self._owned = False
        if client is not None:
            client.close()
            for sentinel in _sentinels_of(client):  # the ones asked, built with it
                sentinel.close()

    async def aclose(self) -> None:
        """Close the asyncio client built for the running event loop."""
        client = self._aclients.pop(asyncio.get_running_loop(), None)
        if client is not None:
            await client.aclose()
            for sentinel in _sentinels_of(client):
                await sentinel.aclose()


def _sentinels_of(client: Any) -> list[Any]:
    """The sentinel clients behind a client from ``Sentinel.master_for`` (else none)."""
    manager = getattr(getattr(client, "connection_pool", None), "sentinel_manager", None)
    return list(getattr(manager, "sentinels", ()))
