"""Checking a :class:`~breaker_fsm.redis.RedisStore` URL before redis-py sees it.

redis-py takes many a mistaken URL quietly (no host means localhost, an unknown query option
fails only on the first connection, a second host is ignored): :func:`check_url` refuses
them up front, naming what is wrong. :func:`redacted` masks a URL's password wherever one is
shown. redis-py is imported lazily, inside functions.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlsplit, urlunsplit

if TYPE_CHECKING:
    from urllib.parse import SplitResult

__all__ = ["check_url", "redacted"]

_SCHEMES = ("redis", "rediss", "unix", "redis+cluster", "redis+sentinel")


def redacted(url: str) -> str:
    """``url`` without its password."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = f"{parts.username}:***@" if parts.username else ":***@"
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=user + host))


def check_url(url: str) -> None:
    """Refuse a URL that redis-py would take and only fail on later (or quietly re-aim).

    An empty string, another scheme, a missing host (redis-py would use localhost), a port
    that is not a number from 1 to 65535, several hosts in a one-server URL, a database
    that is not a number, a query option redis-py does not know (or one on a ``redis+``
    URL, which takes none); on ``redis+sentinel://``, a missing or numeric service name.

    Raises:
        ValueError: naming the URL (its password masked) and what is wrong with it.
    """
    if not url.strip():
        raise ValueError("a RedisStore needs a URL (redis://host:port/db, ...), got ''")
    shown = repr(redacted(url))
    scheme = url.partition("://")[0].lower() if "://" in url else ""
    if scheme not in _SCHEMES:
        raise ValueError(
            f"RedisStore URL {shown}: the scheme must be one of "
            f"{', '.join(s + '://' for s in _SCHEMES)}"
        )
    parts = urlsplit(url)
    problem = _query_problem(scheme, parts.query) or _where_problem(scheme, parts)
    if problem:
        raise ValueError(f"RedisStore URL {shown}: {problem}")
    if not scheme.startswith("redis+"):
        from redis.connection import parse_url

        try:  # no I/O: the values of the options it knows (?db=x, ?socket_timeout=y)
            parse_url(url)  # type: ignore[no-untyped-call]
        except ValueError as exc:
            raise ValueError(f"RedisStore URL {shown}: {exc}") from None


def _where_problem(scheme: str, parts: SplitResult) -> str | None:
    """What is wrong with a URL's hosts and path, or ``None``."""
    if scheme == "unix":
        return None if parts.path else "a unix:// URL names the socket's path"
    netloc = parts.netloc.rpartition("@")[2]
    if "," in netloc and not scheme.startswith("redis+"):
        return (
            f"a {scheme}:// URL names one server, not several ({netloc!r}): for a Redis "
            "Cluster's nodes use redis+cluster://host:port,host:port, for sentinels "
            "redis+sentinel://host:port,host:port/SERVICE"
        )
    for item in netloc.split(","):
        problem = _address_problem(item.strip())
        if problem:
            return problem
    return _path_problem(scheme, parts.path.strip("/"))


def _path_problem(scheme: str, path: str) -> str | None:
    """What is wrong with a URL's database (a sentinel URL's service), or ``None``."""
    if scheme in ("redis", "rediss"):
        return f"the database {path!r} is not a number" if path and not path.isdigit() else None
    if scheme == "redis+cluster":
        return (
            f"a Redis Cluster has only database 0, got {path!r}" if path not in ("", "0") else None
        )
    return _sentinel_path_problem(path)


def _sentinel_path_problem(path: str) -> str | None:
    """What is wrong with a ``redis+sentinel://`` URL's ``SERVICE[/DB]``, or ``None``."""
    service, _, db = path.partition("/")
    if not service:
        return "a redis+sentinel:// URL names its service (.../SERVICE[/DB]), as in /mymaster/0"
    if service.isdigit():
        return (
            f"{service!r} would be the service's name, but looks like a database: a "
            "redis+sentinel:// URL names its service first (.../SERVICE[/DB]), as in "
            f"/mymaster/{service}"
        )
    if "/" in db:
        return f"after the service, only a database may follow (.../SERVICE[/DB]), got {path!r}"
    if db and not db.isdigit():
        return f"the database {db!r} is not a number"
    return None


def _query_problem(scheme: str, query: str) -> str | None:
    """What is wrong with a URL's query options, or ``None``: unknown to redis-py."""
    names = list(parse_qs(query))
    if not names:
        return None
    if scheme.startswith("redis+"):
        kind = "RedisCluster" if scheme == "redis+cluster" else "Sentinel"
        return (
            f"a {scheme}:// URL takes no query options, got {', '.join(map(repr, names))}: "
            f"build a {kind} client with them and pass it instead"
        )
    unknown = [name for name in names if name not in _url_options(scheme)]
    if unknown:
        return (
            f"unknown query option{'s' if len(unknown) > 1 else ''} "
            f"{', '.join(map(repr, unknown))}: redis-py would pass "
            f"{'them' if len(unknown) > 1 else 'it'} to its connections, which refuse "
            "unknown keywords (check the spelling; see redis.connection.Connection)"
        )
    return None


def _url_options(scheme: str) -> frozenset[str]:
    """The query options redis-py takes in a ``scheme`` URL: its parsers' and keywords'."""
    import inspect

    import redis.connection

    connection = {
        "redis": redis.connection.Connection,
        "rediss": redis.connection.SSLConnection,
        "unix": redis.connection.UnixDomainSocketConnection,
    }[scheme]
    names = set(redis.connection.URL_QUERY_ARGUMENT_PARSERS)
    named = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    for cls in (*connection.__mro__, redis.connection.ConnectionPool):
        init = cls.__dict__.get("__init__")
        if init is not None and init is not object.__init__:
            names.update(
                p.name for p in inspect.signature(init).parameters.values() if p.kind in named
            )
    return frozenset(names - {"self", "connection_class"})


def _address_problem(item: str) -> str | None:
    """What is wrong with one ``host[:port]`` of a URL, or ``None``."""
    if item.startswith("["):  # an IPv6 literal: [::1]:6379
        host, _, rest = item[1:].partition("]")
        if rest and not rest.startswith(":"):
            return f"{item!r} is not host:port"
        port = rest[1:]
    else:
        host, _, port = item.rpartition(":") if ":" in item else (item, "", "")
    if not host:
        return f"no host in {item!r} (it would silently mean localhost)"
    if ":" in item and not (port.isdigit() and 0 < int(port) < 65536):
        return f"the port {port!r} is not a number from 1 to 65535"
    return None
