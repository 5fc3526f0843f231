"""Circuit breakers for httpx clients: one breaker per host, in the transport.

Needs the ``httpx`` extra (``pip install 'breaker-fsm[httpx]'``). ``import breaker_fsm``
never imports this module, so the core works without httpx.

>>> import httpx
>>> from breaker_fsm import BreakerPolicy
>>> from breaker_fsm.httpx import BreakerTransport
>>> backend = httpx.MockTransport(lambda request: httpx.Response(503))
>>> transport = BreakerTransport(backend, policy=BreakerPolicy(failure_threshold=2))
>>> client = httpx.Client(transport=transport)
>>> [client.get("http://users.internal/u/42").status_code for _ in range(2)]
[503, 503]
>>> client.get("http://users.internal/u/42")
Traceback (most recent call last):
...
breaker_fsm.exceptions.CircuitOpenError: circuit 'users.internal:80' is open; retry after ...
>>> transport.registry.names()
['users.internal:80']
>>> client.close()
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

try:
    import httpx
except ImportError as exc:  # pragma: no cover - exercised in a subprocess without httpx
    raise ImportError("breaker_fsm.httpx needs httpx: pip install 'breaker-fsm[httpx]'") from exc

from ._clock import SYSTEM_CLOCK
from ._registry import BreakerRegistry
from .exceptions import CircuitOpenError

if TYPE_CHECKING:
    from ._breaker import CircuitBreaker
    from ._clock import Clock
    from ._policy import BreakerPolicy

__all__ = [
    "DEFAULT_FAILURE_STATUSES",
    "RETRY_AFTER_STATUSES",
    "AsyncBreakerTransport",
    "BreakerTransport",
    "StatusJudge",
    "host_key",
    "parse_retry_after",
]

#: Statuses that count as a failure of the dependency (the response is still returned).
DEFAULT_FAILURE_STATUSES: frozenset[int] = frozenset({429, 500, 502, 503, 504})

#: Statuses whose ``Retry-After`` header can lengthen the open episode they trip.
RETRY_AFTER_STATUSES: frozenset[int] = frozenset({429, 503})

_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}
_DELTA_SECONDS = re.compile(r"\d{1,12}(\.\d{1,9})?")

Fallback = Callable[["httpx.Request", CircuitOpenError], "httpx.Response"]
AsyncFallback = Callable[
    ["httpx.Request", CircuitOpenError], "httpx.Response | Awaitable[httpx.Response]"
]


def host_key(request: httpx.Request) -> str:
    """The default breaker name of a request: ``"host:port"`` (``"[::1]:8080"`` for IPv6).

    The port is the URL's, or the scheme's default, so ``http://api`` and
    ``http://api:80`` share a breaker while ``https://api`` has its own.

    >>> host_key(httpx.Request("GET", "https://api.example.com/v1/users"))
    'api.example.com:443'
    """
    url = request.url
    host = url.host
    if ":" in host:
        host = f"[{host}]"
    port = url.port or _DEFAULT_PORTS.get(url.scheme)
    return host if port is None else f"{host}:{port}"


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds a ``Retry-After`` header value asks to wait, or ``None`` if it is invalid.

    Accepts delta-seconds (``"120"``, leniently also ``"1.5"``) and an HTTP-date
    (``"Wed, 21 Oct 2015 07:28:00 GMT"``), read against ``now`` (wall seconds since the
    epoch); a date in the past means 0.

    >>> parse_retry_after("120", now=0.0)
    120.0
    >>> parse_retry_after("Thu, 01 Jan 1970 00:01:00 GMT", now=30.0)
    30.0
    >>> parse_retry_after("soon", now=0.0) is None
    True
    """
    if value is None:
        return None
    text = value.strip()
    if _DELTA_SECONDS.fullmatch(text):
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # RFC 9110 dates are GMT; obsolete forms may omit the zone
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now)


class StatusJudge:
    """The breakers' ``is_failure`` predicate: a response with a failure status fails.

    On a 429 or 503 with a positive ``Retry-After``, the verdict is that many seconds,
    which the breaker uses as the open duration if this failure trips it and it is longer
    than the policy's (capped by ``max_reset_timeout``). Two judges with the same statuses
    and clock are equal, so sync and async transports can share a registry.
    """

    __slots__ = ("clock", "statuses")

    def __init__(self, statuses: Iterable[int], clock: Clock | None = None) -> None:
        self.statuses = frozenset(statuses)
        self.clock = clock if clock is not None else SYSTEM_CLOCK

    def __call__(self, response: httpx.Response) -> bool | float:
        """``False`` (success), ``True`` (failure) or a Retry-After in seconds (failure)."""
        status = response.status_code
        if status not in self.statuses:
            return False
        if status in RETRY_AFTER_STATUSES:
            delay = parse_retry_after(response.headers.get("Retry-After"), self.clock.wall())
            if delay is not None and delay > 0:
                return delay
        return True

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, StatusJudge):
            return NotImplemented
        return self.statuses == other.statuses and self.clock is other.clock

    def __hash__(self) -> int:
        return hash((self.statuses, id(self.clock)))

    def __repr__(self) -> str:
        return f"StatusJudge({sorted(self.statuses)})"


TransportT = TypeVar("TransportT")
FallbackT = TypeVar("FallbackT")


class _Routing(Generic[TransportT, FallbackT]):
    """What both transports share: the registry, the key and the failure statuses.

    Also the wrapped transport and the fallback, of the sync or the asyncio kind.
    """

    _default_transport: ClassVar[type[Any]]

    def __init__(
        self,
        transport: TransportT | None = None,
        *,
        registry: BreakerRegistry | None = None,
        policy: BreakerPolicy | None = None,
        key: Callable[[httpx.Request], str] = host_key,
        failure_statuses: Iterable[int] = DEFAULT_FAILURE_STATUSES,
        fallback: FallbackT | None = None,
    ) -> None:
        self.registry = registry if registry is not None else BreakerRegistry(policy)
        self.policy = policy
        self.key = key
        self.failure_statuses = frozenset(failure_statuses)
        self._judge = StatusJudge(self.failure_statuses, self.registry.clock)
        self.transport: TransportT = (
            transport if transport is not None else self._default_transport()
        )
        self.fallback = fallback

    def breaker_for(self, request: httpx.Request | httpx.URL | str) -> CircuitBreaker:
        """The breaker that guards ``request`` (or a GET of that URL), created on first use.

        Ask the transport rather than the registry for the breaker of a host: a breaker
        the transport creates judges responses by status.

        Raises:
            RegistryError: the registry already has a breaker of that name with another
                policy or another failure predicate (other ``failure_statuses``).
        """
        if not isinstance(request, httpx.Request):
            request = httpx.Request("GET", request)
        return self.registry.get(self.key(request), self.policy, is_failure=self._judge)


class BreakerTransport(_Routing[httpx.BaseTransport, Fallback], httpx.BaseTransport):
    """An httpx transport that sends each request through its host's circuit breaker.

    Args:
        transport: the transport that really sends requests; ``httpx.HTTPTransport()``
            when omitted.
        registry: where the breakers live (shared with other transports, metrics...);
            a new :class:`~breaker_fsm.BreakerRegistry` when omitted.
        policy: the policy of the breakers this transport creates; the registry's
            default when omitted.
        key: names the breaker of a request; :func:`host_key` (``"host:port"``) by
            default, so each host has its own breaker.
        failure_statuses: response statuses that count as failures. The response is
            still returned, unread and open, for the caller to read and close.
        fallback: ``fallback(request, error)`` returns the response to give instead of
            raising :class:`~breaker_fsm.CircuitOpenError` when a request is refused.

    A transport error (``httpx.ConnectError``, ``httpx.ReadTimeout``...) is recorded as
    the policy says (a failure by default) and re-raised. A refused request raises
    ``CircuitOpenError`` (or gets the fallback's response) without opening a connection.
    """

    _default_transport = httpx.HTTPTransport

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        """Send ``request`` through its breaker."""
        breaker = self.breaker_for(request)
        try:
            return breaker.call(self.transport.handle_request, request)
        except CircuitOpenError as exc:
            if self.fallback is None or exc.breaker != breaker.name:
                raise
            return self.fallback(request, exc)

    def close(self) -> None:
        """Close the wrapped transport."""
        self.transport.close()

    def __repr__(self) -> str:
        return f"<BreakerTransport over {type(self.transport).__name__}, {self.registry!r}>"


class AsyncBreakerTransport(
    _Routing[httpx.AsyncBaseTransport, AsyncFallback], httpx.AsyncBaseTransport
):
    """The asyncio twin of :class:`BreakerTransport`, for ``httpx.AsyncClient``.

    Takes the same arguments; ``transport`` defaults to ``httpx.AsyncHTTPTransport()`` and
    ``fallback`` may be a coroutine function.
    """

    _default_transport = httpx.AsyncHTTPTransport

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send ``request`` through its breaker."""
        breaker = self.breaker_for(request)
        try:
            return await breaker.acall(self.transport.handle_async_request, request)
        except CircuitOpenError as exc:
            if self.fallback is None or exc.breaker != breaker.name:
                raise
            response: Any = self.fallback(request, exc)
            if inspect.isawaitable(response):
                response = await response
            return response  # type: ignore[no-any-return]

    async def aclose(self) -> None:
        """Close the wrapped transport."""
        await self.transport.aclose()

    def __repr__(self) -> str:
        return f"<AsyncBreakerTransport over {type(self.transport).__name__}, {self.registry!r}>"
