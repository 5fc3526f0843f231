"""How a :class:`~breaker_fsm.redis.RedisStore` reaches Redis: one server, a Cluster, Sentinel.

A store needs two kinds of client, a sync one (``call``, ``send``, the push thread) and an
asyncio one per event loop (``acall``, ``asend``), and builds whichever it was not given
(:class:`~breaker_fsm._clients.Clients`). A :class:`Topology` knows how to build both for
one kind of deployment, from a URL or from the client (or :class:`redis.sentinel.Sentinel`)
the user passed:

- one server: ``redis://``, ``rediss://``, ``unix://``; a ``redis.Redis`` or
  ``redis.asyncio.Redis``;
- a Redis Cluster: ``redis+cluster://host:port[,host:port...]``; a
  ``redis.cluster.RedisCluster`` or ``redis.asyncio.cluster.RedisCluster``. Every script
  touches one breaker's keys, which share one hash tag, so the client routes it to the
  node that owns that slot;
- a primary behind Sentinel: ``redis+sentinel://host:port[,host:port...]/service[/db]``; a
  ``redis.sentinel.Sentinel`` (sync or asyncio) and the service name, or a client from its
  ``master_for``. Every new connection asks the sentinels where the primary is, so the
  store follows a failover by itself.

redis-py is imported here lazily, inside functions: ``breaker_fsm`` imports without it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote, urlsplit

from ._urls import redacted

__all__ = [
    "CLUSTER",
    "SENTINEL",
    "SERVER",
    "Topology",
    "check_async_client",
    "decodes",
    "explain",
    "kind_of",
    "service_of",
    "topology_of",
    "where",
]

SERVER, CLUSTER, SENTINEL = "server", "cluster", "sentinel"

#: Connection settings carried over when one client (sync or asyncio) is derived from the
#: other; anything fancier: pass both clients.
CARRIED = frozenset(
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
#: What a Cluster or Sentinel client carries to the other kind (the nodes are its own).
_NODE_CARRIED = CARRIED - {"host", "port", "path"}

#: ``build(options)``: a new client; ``options`` are the store's timeouts and retries.
Builder = Callable[[dict[str, Any]], Any]


class Topology:
    """One kind of deployment, and how to build its sync and asyncio clients."""

    __slots__ = ("build_async", "build_sync", "kind")

    def __init__(self, kind: str, build_sync: Builder | None, build_async: Builder | None) -> None:
        self.kind = kind
        self.build_sync = build_sync  # None: derived from the given asyncio client
        self.build_async = build_async  # None: derived from the given sync client

    def __repr__(self) -> str:
        return f"<{self.kind} topology>"


def _kept(options: dict[str, Any], carried: dict[str, Any]) -> dict[str, Any]:
    """``options`` (the store's) under ``carried`` (the user's), except its own timeouts."""
    merged = {**options}
    for key in ("socket_timeout", "socket_connect_timeout"):
        if carried.get(key) is not None:
            del merged[key]
    return {**carried, **merged}


def _hosts(netloc: str, default_port: int) -> tuple[str | None, str | None, list[tuple[str, int]]]:
    """A URL's user, password and comma-separated ``host:port`` list."""
    user = password = None
    if "@" in netloc:
        auth, _, netloc = netloc.rpartition("@")
        user, _, pw = auth.partition(":")
        user, password = unquote(user) or None, unquote(pw) if pw else None
    hosts = []
    for item in netloc.split(","):
        host, _, port = item.strip().rpartition(":")
        if not host:
            host, port = port, ""
        hosts.append((host.strip("[]") or "localhost", int(port) if port else default_port))
    return user, password, hosts


def _cluster_from(nodes: list[tuple[str, int]], carried: dict[str, Any]) -> Topology:
    """A Cluster topology on ``nodes`` (its startup nodes), with ``carried`` settings."""

    def sync(options: dict[str, Any]) -> Any:
        from redis.cluster import ClusterNode, RedisCluster

        startup = [ClusterNode(h, p) for h, p in nodes]  # type: ignore[no-untyped-call]
        return RedisCluster(startup_nodes=startup, **_kept(options, carried))

    def asyncio(options: dict[str, Any]) -> Any:
        from redis.asyncio.cluster import ClusterNode, RedisCluster

        return RedisCluster(
            startup_nodes=[ClusterNode(h, p) for h, p in nodes], **_kept(options, carried)
        )

    return Topology(CLUSTER, sync, asyncio)


def _sentinel_from(
    sentinels: list[tuple[str, int]],
    service: str,
    sentinel_kwargs: dict[str, Any],
    carried: dict[str, Any],
) -> Topology:
    """A Sentinel topology: the primary of ``service``, as ``sentinels`` name it."""

    def sync(options: dict[str, Any]) -> Any:
        import redis.sentinel

        kwargs = _kept(options, carried)
        manager = redis.sentinel.Sentinel(
            sentinels, sentinel_kwargs=sentinel_kwargs or _sentinel_options(kwargs)
        )
        return manager.master_for(service, **kwargs)

    def asyncio(options: dict[str, Any]) -> Any:
        import redis.asyncio.sentinel

        kwargs = _kept(options, carried)
        manager = redis.asyncio.sentinel.Sentinel(
            sentinels, sentinel_kwargs=sentinel_kwargs or _sentinel_options(kwargs)
        )
        return manager.master_for(service, **kwargs)

    return Topology(SENTINEL, sync, asyncio)


def _sentinel_options(kwargs: dict[str, Any]) -> dict[str, Any]:
    """The sentinels' own connections: the store's timeouts (redis-py adds no retries)."""
    return {k: v for k, v in kwargs.items() if k.startswith("socket_")}


def _parse(url: str) -> Topology:
    """The topology a ``redis+cluster://`` or ``redis+sentinel://`` URL names."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    user, password, hosts = _hosts(parts.netloc, 26379 if scheme.endswith("sentinel") else 6379)
    carried: dict[str, Any] = {"username": user, "password": password}
    carried = {k: v for k, v in carried.items() if v is not None}
    if scheme == "redis+cluster":
        return _cluster_from(hosts, carried)
    service, _, db = parts.path.strip("/").partition("/")  # checked by check_url
    if db:
        carried["db"] = int(db)
    return _sentinel_from(hosts, unquote(service), {}, carried)


def _address(client: Any) -> tuple[str, int]:
    kwargs = client.connection_pool.connection_kwargs
    return kwargs.get("host", "localhost"), int(kwargs.get("port", 26379))


def topology_of(client: Any, service_name: str | None) -> Topology | None:  # noqa: PLR0911
    """The topology of what the user passed, or ``None`` for one server (or a bad type).

    Raises:
        ValueError: a Sentinel without a ``service_name``, or a URL that names none.
    """
    import redis
    import redis.asyncio
    import redis.asyncio.cluster
    import redis.asyncio.sentinel
    import redis.cluster
    import redis.sentinel

    if isinstance(client, str):
        scheme = urlsplit(client).scheme.lower()
        if scheme in ("redis+cluster", "redis+sentinel"):  # TLS: pass a client
            return _parse(client)
        return None
    if isinstance(client, redis.cluster.RedisCluster):
        nodes = [(n.host, n.port) for n in client.get_nodes()]  # type: ignore[no-untyped-call]
        carried = client.nodes_manager.connection_kwargs
        return Topology(
            CLUSTER,
            None,
            _cluster_from(
                nodes, {k: v for k, v in carried.items() if k in _NODE_CARRIED}
            ).build_async,
        )
    if isinstance(client, redis.asyncio.cluster.RedisCluster):
        known = client.get_nodes() or client.nodes_manager.startup_nodes.values()  # not yet up
        nodes = [(n.host, n.port) for n in known]
        carried = client.connection_kwargs
        return Topology(
            CLUSTER,
            _cluster_from(
                nodes, {k: v for k, v in carried.items() if k in _NODE_CARRIED}
            ).build_sync,
            None,
        )
    if isinstance(client, redis.sentinel.Sentinel | redis.asyncio.sentinel.Sentinel):
        if not service_name:
            raise ValueError("a RedisStore on a Sentinel needs service_name= (the primary's)")
        sentinels = [_address(s) for s in client.sentinels]
        carried = {k: v for k, v in client.connection_kwargs.items() if k in _NODE_CARRIED}
        sentinel_kwargs = {k: v for k, v in client.sentinel_kwargs.items() if k in CARRIED}
        return _sentinel_from(sentinels, service_name, sentinel_kwargs, carried)
    pool = getattr(client, "connection_pool", None)
    manager = getattr(pool, "sentinel_manager", None)
    if manager is not None:  # a client from Sentinel.master_for: follows the same primary
        if not getattr(pool, "is_master", True):
            raise ValueError(
                f"RedisStore was given a client from Sentinel.slave_for({pool.service_name!r}) "  # type: ignore[union-attr]
                "(or an asyncio one): it reaches a read-only replica, and every transition "
                "would fail there. Pass Sentinel.master_for(...) (it follows failovers), or "
                "the Sentinel with service_name="
            )
        derived = topology_of(manager, pool.service_name)  # type: ignore[union-attr]
        assert derived is not None  # a Sentinel always has one
        if isinstance(client, redis.asyncio.Redis):
            return Topology(SENTINEL, derived.build_sync, None)
        return Topology(SENTINEL, None, derived.build_async)
    return None


def decodes(client: Any) -> bool:
    """Whether ``client`` (any kind, a Sentinel too) decodes replies to ``str``."""
    for owner in (
        getattr(client, "connection_pool", None),  # redis.Redis, a master_for client
        getattr(client, "nodes_manager", None),  # a sync RedisCluster
        client,  # an asyncio RedisCluster, a Sentinel
    ):
        kwargs = getattr(owner, "connection_kwargs", None)
        if isinstance(kwargs, dict) and kwargs.get("decode_responses"):
            return True
    return False


def kind_of(client: Any) -> str:
    """``SERVER``, ``CLUSTER`` or ``SENTINEL``: what a client (not a URL) reaches."""
    import redis.asyncio.cluster
    import redis.asyncio.sentinel
    import redis.cluster
    import redis.sentinel

    if isinstance(client, redis.cluster.RedisCluster | redis.asyncio.cluster.RedisCluster):
        return CLUSTER
    if isinstance(client, redis.sentinel.Sentinel | redis.asyncio.sentinel.Sentinel):
        return SENTINEL
    pool = getattr(client, "connection_pool", None)
    return SENTINEL if getattr(pool, "sentinel_manager", None) is not None else SERVER


def service_of(client: Any) -> str | None:
    """The Sentinel service a ``redis+sentinel://`` URL or a ``master_for`` client names."""
    if isinstance(client, str):
        if urlsplit(client).scheme.lower() != "redis+sentinel":
            return None
        return unquote(urlsplit(client).path.strip("/").partition("/")[0]) or None
    pool = getattr(client, "connection_pool", None)
    service = getattr(pool, "service_name", None)
    return service if isinstance(service, str) else None


def _server_of(client: Any) -> tuple[Any, ...] | None:
    """``(host, port, db, path)`` of a one-server URL or client (no I/O), else ``None``."""
    if isinstance(client, str):
        from redis.connection import parse_url

        kwargs = parse_url(client)  # type: ignore[no-untyped-call]  # checked by check_url
    else:
        kwargs = getattr(getattr(client, "connection_pool", None), "connection_kwargs", None)
        if not isinstance(kwargs, dict):
            return None
    if kwargs.get("path"):
        return (None, None, int(kwargs.get("db") or 0), kwargs["path"])
    host = kwargs.get("host") or "localhost"
    host = "127.0.0.1" if host == "localhost" else host  # one server, two spellings
    return (host, int(kwargs.get("port") or 6379), int(kwargs.get("db") or 0), None)


def check_async_client(async_client: Any, client: Any, kind: str, service: str | None) -> None:
    """Refuse an ``async_client`` that is no asyncio client, or not of ``client``'s Redis.

    Its kind must be ``kind`` (a cluster's with a cluster, ...); where the settings show it
    without I/O, it must reach the same server (host, port and database) or the same
    Sentinel service: else ``call`` and ``acall`` would share state on two Redis.

    Raises:
        TypeError: not an asyncio client, or another kind of deployment than ``client``.
        ValueError: ``client`` is an asyncio client already, or another server or service.
    """
    import redis.asyncio
    import redis.asyncio.cluster

    got = f"{type(async_client).__name__} {async_client!r}"[:120]
    if not isinstance(async_client, redis.asyncio.Redis | redis.asyncio.cluster.RedisCluster):
        raise TypeError(
            "RedisStore's async_client= must be a redis.asyncio.Redis (or a "
            "redis.asyncio.cluster.RedisCluster, or a client from an asyncio Sentinel's "
            f"master_for) on the same Redis as client=, got {got}"
        )
    if isinstance(client, redis.asyncio.Redis | redis.asyncio.cluster.RedisCluster):
        raise ValueError(
            "RedisStore's client= is an asyncio client already: async_client= is for a store "
            "given a URL or a sync client (pass the asyncio client once)"
        )
    theirs = kind_of(async_client)
    if theirs != kind:
        raise TypeError(
            f"RedisStore's async_client= reaches a {_KINDS[theirs]}, client= a "
            f"{_KINDS[kind]}: both must reach the same Redis (else call and acall would "
            "share breakers on two different ones)"
        )
    if kind == SENTINEL:
        mine, other = service, service_of(async_client)
        if mine and other and mine != other:
            raise ValueError(
                f"RedisStore's async_client= follows the Sentinel service {other!r}, client= "
                f"{mine!r}: both must follow the same primary"
            )
    elif kind == SERVER:
        mine_at, other_at = _server_of(client), _server_of(async_client)
        if mine_at is not None and other_at is not None and mine_at != other_at:
            raise ValueError(
                f"RedisStore's async_client= reaches {_shown(other_at)}, client= "
                f"{_shown(mine_at)}: both must reach the same server and database (else call "
                "and acall would share breakers on two different ones)"
            )


_KINDS = {SERVER: "single server", CLUSTER: "Redis Cluster", SENTINEL: "Sentinel primary"}


def _shown(at: tuple[Any, ...]) -> str:
    host, port, db, path = at
    return f"unix:{path}/{db}" if path else f"{host}:{port}/{db}"


def where(client: Any, service_name: str | None) -> str:
    """What a store was given, in a few words: never a client's repr (its whole pool).

    A URL without its password; ``host:port/db`` (``unix:path/db``) for a client of one
    server; ``cluster h:p,h:p`` for a Cluster; ``sentinel h:p,h:p/service`` for Sentinel
    (or a client from its ``master_for``).
    """
    import redis.asyncio.cluster
    import redis.asyncio.sentinel
    import redis.cluster
    import redis.sentinel

    if isinstance(client, str):
        return redacted(client)
    if isinstance(client, redis.cluster.RedisCluster | redis.asyncio.cluster.RedisCluster):
        nodes = client.get_nodes() or list(client.nodes_manager.startup_nodes.values())
        return "cluster " + _listed([f"{n.host}:{n.port}" for n in nodes])
    if isinstance(client, redis.sentinel.Sentinel | redis.asyncio.sentinel.Sentinel):
        sentinels = [f"{h}:{p}" for h, p in (_address(s) for s in client.sentinels)]
        return f"sentinel {_listed(sentinels)}/{service_name}"
    pool = getattr(client, "connection_pool", None)
    manager = getattr(pool, "sentinel_manager", None)
    if manager is not None:
        return where(manager, getattr(pool, "service_name", None))
    kwargs = getattr(pool, "connection_kwargs", {})
    db = kwargs.get("db", 0)
    if kwargs.get("path"):
        return f"unix:{kwargs['path']}/{db}"
    return f"{kwargs.get('host', 'localhost')}:{kwargs.get('port', 6379)}/{db}"


def _listed(items: list[str], most: int = 3) -> str:
    """``a,b,c`` (and how many more)."""
    shown = ",".join(items[:most])
    return shown if len(items) <= most else f"{shown} (+{len(items) - most})"


#: A sentinel's client as redis-py's MasterNotFoundError names it: its whole pool's repr.
_SENTINEL_REPR = re.compile(r"<redis\.[\w.]*Redis\((.*?)\)>\)>\)>(?: - )?", re.DOTALL)
_HINTED = "; hint: "


def explain(exc: BaseException, kind: str) -> BaseException:
    """``exc``, its message given the likely cause (in place, once): for the warnings.

    What a store on the wrong kind of server meets: a read-only replica (``READONLY``), a
    Redis Cluster's node (``MOVED``), a Sentinel (no ``EVALSHA``), reached as one server;
    no sentinel that names the primary (redis-py's message repeats each sentinel's whole
    pool: shortened to the addresses tried and the reasons).
    """
    import redis.exceptions as errors
    import redis.sentinel

    text = str(exc)
    if _HINTED in text or len(exc.args) != 1:
        return exc
    hint = None
    if isinstance(exc, redis.sentinel.MasterNotFoundError):
        text = _SENTINEL_REPR.sub(_sentinel_named, text)
        hint = (
            "no sentinel named a primary for it: check the sentinels' addresses, that they "
            "run and that they watch that service"
            if " : " in text
            else "the sentinels know no primary of that name: check the service name "
            "(SENTINEL MASTERS lists them)"
        )
    elif kind == SERVER and (isinstance(exc, errors.ReadOnlyError) or "READONLY" in text):
        hint = (
            "this client points at a read-only replica: use the primary (behind Sentinel: "
            "redis+sentinel://HOST:PORT/SERVICE or Sentinel(...).master_for(SERVICE))"
        )
    elif kind == SERVER and isinstance(exc, errors.MovedError | errors.AskError):
        hint = (
            "this server is part of a Redis Cluster: use redis+cluster://HOST:PORT or a "
            "redis.cluster.RedisCluster client"
        )
    elif kind == SERVER and "unknown command" in text.lower() and "eval" in text.lower():
        hint = (
            "this server runs no scripts: is it a Sentinel, not a primary? Use "
            "redis+sentinel://HOST:PORT/SERVICE or Sentinel(...).master_for(SERVICE)"
        )
    if hint is not None:
        exc.args = (f"{text}{_HINTED}{hint}",)
    return exc


def _sentinel_named(match: re.Match[str]) -> str:
    """One sentinel's client repr, as ``sentinel host:port: ``."""
    inner = match.group(1)
    host = re.search(r"\bhost=([^,)]+)", inner)
    port = re.search(r"\bport=(\d+)", inner)
    return f"sentinel {host.group(1)}:{port.group(1)}: " if host and port else "a sentinel: "
