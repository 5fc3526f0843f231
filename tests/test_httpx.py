"""BreakerTransport and AsyncBreakerTransport against a real flaky HTTP server on loopback."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from email.utils import format_datetime

import httpx
import pytest

from breaker_fsm import BreakerPolicy, BreakerRegistry, CircuitOpenError, RegistryError
from breaker_fsm._flaky_server import FlakyServer
from breaker_fsm.httpx import (
    DEFAULT_FAILURE_STATUSES,
    AsyncBreakerTransport,
    BreakerTransport,
    StatusJudge,
    host_key,
    parse_retry_after,
)
from breaker_fsm.testing import FakeClock

POLICY = BreakerPolicy(failure_threshold=3, reset_timeout=5)
# One TLS context for every transport: loading the CA bundle costs ~0.1 s per transport, and
# these tests speak plain HTTP to loopback anyway.
TLS = ssl.create_default_context()


def plain() -> httpx.HTTPTransport:
    """A real HTTP transport that does not retry connects."""
    return httpx.HTTPTransport(retries=0, verify=TLS)


def aplain() -> httpx.AsyncHTTPTransport:
    """The async twin of plain()."""
    return httpx.AsyncHTTPTransport(retries=0, verify=TLS)


@pytest.fixture
def server() -> Iterator[FlakyServer]:
    """A healthy (never failing) flaky server on 127.0.0.1."""
    with FlakyServer(0.0, seed=1) as running:
        yield running


@pytest.fixture
def other_server() -> Iterator[FlakyServer]:
    """A second healthy server on another port."""
    with FlakyServer(0.0, seed=2) as running:
        yield running


@pytest.fixture
def registry(clock: FakeClock) -> BreakerRegistry:
    """A registry whose breakers run on the fake clock."""
    return BreakerRegistry(POLICY, clock=clock)


@pytest.fixture
def make_client(registry: BreakerRegistry) -> Iterator[Callable[..., httpx.Client]]:
    """Build clients over a BreakerTransport on the registry; all are closed afterwards."""
    clients: list[httpx.Client] = []

    def make(**kwargs: object) -> httpx.Client:
        kwargs.setdefault("registry", registry)
        timeout = kwargs.pop("timeout", 5.0)
        transport = BreakerTransport(plain(), **kwargs)  # type: ignore[arg-type]
        client = httpx.Client(transport=transport, timeout=timeout, trust_env=False)  # type: ignore[arg-type]
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


def key_of(server: FlakyServer) -> str:
    return f"{server.host}:{server.port}"


def trip(client: httpx.Client, server: FlakyServer) -> None:
    """Take ``server`` down: the 503s of ``POLICY.failure_threshold`` requests open its breaker."""
    server.go_down()
    for _ in range(POLICY.failure_threshold or 0):
        assert client.get(server.url).status_code == 503


def test_5xx_trips_and_the_failed_responses_are_returned_readable(
    server: FlakyServer, make_client: Callable[..., httpx.Client], registry: BreakerRegistry
) -> None:
    """Three 500s trip the breaker; each 500 is still returned to the caller, body readable."""
    client = make_client()
    server.set_failure_rate(1.0)
    responses = [client.get(server.url + "/x") for _ in range(3)]
    assert [r.status_code for r in responses] == [500, 500, 500]
    assert [r.json() for r in responses] == [{"error": "flaky"}] * 3
    breaker = registry[key_of(server)]
    assert breaker.state == "open"
    assert breaker.metrics().error_count == 3


def test_open_breaker_fails_fast_without_a_connection(
    server: FlakyServer, make_client: Callable[..., httpx.Client], registry: BreakerRegistry
) -> None:
    """While open, a request raises CircuitOpenError and the server never sees it."""
    client = make_client()
    server.status_override(502)
    for _ in range(3):
        assert client.get(server.url).status_code == 502
    seen = server.request_count
    for _ in range(5):
        with pytest.raises(CircuitOpenError) as info:
            client.get(server.url + "/never")
    assert server.request_count == seen
    assert server.requests_by_path.get("/never") is None
    assert info.value.breaker == key_of(server)
    assert info.value.state == "open"
    assert info.value.retry_after == pytest.approx(5.0)
    assert registry[key_of(server)].metrics().rejected_count == 5


def test_recovers_when_the_server_heals(
    server: FlakyServer,
    make_client: Callable[..., httpx.Client],
    registry: BreakerRegistry,
    clock: FakeClock,
) -> None:
    """After the open duration a trial request to the healed server closes the breaker."""
    client = make_client()
    trip(client, server)
    server.come_back()
    clock.advance(4.9)
    with pytest.raises(CircuitOpenError):
        client.get(server.url)
    clock.advance(0.1)
    response = client.get(server.url)
    assert response.status_code == 200
    breaker = registry[key_of(server)]
    assert breaker.state == "closed"
    assert [r.event for r in breaker.audit] == ["trip", "attempt_reset", "recover"]


def test_a_failed_trial_retrips(
    server: FlakyServer,
    make_client: Callable[..., httpx.Client],
    registry: BreakerRegistry,
    clock: FakeClock,
) -> None:
    """A trial request that still gets a 503 sends the breaker back to open."""
    client = make_client()
    trip(client, server)
    clock.advance(5)
    assert client.get(server.url).status_code == 503
    breaker = registry[key_of(server)]
    assert breaker.state == "open"
    assert [r.event for r in breaker.audit] == ["trip", "attempt_reset", "retrip"]


def test_each_host_has_its_own_breaker(
    server: FlakyServer,
    other_server: FlakyServer,
    make_client: Callable[..., httpx.Client],
    registry: BreakerRegistry,
) -> None:
    """Tripping the breaker of one host leaves requests to another host flowing."""
    client = make_client()
    trip(client, server)
    with pytest.raises(CircuitOpenError):
        client.get(server.url)
    assert client.get(other_server.url).status_code == 200
    assert registry.names() == sorted([key_of(server), key_of(other_server)])
    assert registry[key_of(other_server)].state == "closed"
    assert registry[key_of(server)].state == "open"


def test_key_can_group_hosts_into_one_breaker(
    server: FlakyServer, other_server: FlakyServer, make_client: Callable[..., httpx.Client]
) -> None:
    """A custom key puts two hosts behind one breaker."""
    client = make_client(key=lambda request: "backend")
    trip(client, server)
    seen = other_server.request_count
    with pytest.raises(CircuitOpenError, match="'backend'"):
        client.get(other_server.url)
    assert other_server.request_count == seen


@pytest.mark.parametrize(
    ("retry_after", "max_reset_timeout", "expected"),
    [
        (20, None, 20.0),  # longer than the policy's 5 s: honoured
        (2, None, 5.0),  # shorter: the policy's open duration stands
        (100, 30, 30.0),  # capped by max_reset_timeout
        (0, None, 5.0),  # "retry now" is just a failure
    ],
)
def test_retry_after_on_503_sets_the_open_duration(
    server: FlakyServer,
    clock: FakeClock,
    retry_after: float,
    max_reset_timeout: float | None,
    expected: float,
) -> None:
    """A 503 with Retry-After that trips opens for max(policy, Retry-After), capped."""
    policy = BreakerPolicy(
        failure_threshold=1, reset_timeout=5, max_reset_timeout=max_reset_timeout
    )
    registry = BreakerRegistry(policy, clock=clock)
    transport = BreakerTransport(plain(), registry=registry)
    with httpx.Client(transport=transport, trust_env=False) as client:
        server.go_down(retry_after=retry_after)
        response = client.get(server.url)
        assert response.status_code == 503
        assert response.headers["Retry-After"] == str(retry_after)
        breaker = registry[key_of(server)]
        assert breaker.metrics().open_duration == pytest.approx(expected)
        server.come_back()
        seen = server.request_count
        clock.advance(expected - 0.5)
        with pytest.raises(CircuitOpenError) as info:
            client.get(server.url)
        assert info.value.retry_after == pytest.approx(0.5)
        assert server.request_count == seen
        clock.advance(0.5)
        assert client.get(server.url).status_code == 200
        assert breaker.state == "closed"


def test_retry_after_http_date_on_429(server: FlakyServer, clock: FakeClock) -> None:
    """A 429 whose Retry-After is an HTTP-date opens the breaker until that date."""
    registry = BreakerRegistry(BreakerPolicy(failure_threshold=1, reset_timeout=1), clock=clock)
    when = datetime.fromtimestamp(clock.wall() + 42, UTC)
    server.status_override(429, {"Retry-After": format_datetime(when, usegmt=True)})
    with httpx.Client(
        transport=BreakerTransport(plain(), registry=registry), trust_env=False
    ) as client:
        assert client.get(server.url).status_code == 429
    assert registry[key_of(server)].metrics().open_duration == pytest.approx(42.0)


def test_retry_after_on_500_is_ignored(server: FlakyServer, clock: FakeClock) -> None:
    """Retry-After lengthens the open duration only on 429 and 503."""
    registry = BreakerRegistry(BreakerPolicy(failure_threshold=1, reset_timeout=1), clock=clock)
    server.status_override(500, {"Retry-After": "99"})
    with httpx.Client(
        transport=BreakerTransport(plain(), registry=registry), trust_env=False
    ) as client:
        assert client.get(server.url).status_code == 500
    assert registry[key_of(server)].metrics().open_duration == 1.0


def test_connect_error_counts_as_a_failure_and_is_reraised(
    make_client: Callable[..., httpx.Client], registry: BreakerRegistry
) -> None:
    """A refused connection is re-raised as httpx.ConnectError and trips the breaker."""
    with FlakyServer() as gone:
        url, key = gone.url, key_of(gone)
    client = make_client()
    for _ in range(3):
        with pytest.raises(httpx.ConnectError):
            client.get(url)
    assert registry[key].state == "open"
    with pytest.raises(CircuitOpenError):
        client.get(url)


def test_read_timeout_counts_as_a_failure(make_client: Callable[..., httpx.Client]) -> None:
    """A read timeout is re-raised and recorded as a failure."""
    registry = BreakerRegistry(BreakerPolicy(failure_threshold=1))
    client = make_client(registry=registry, timeout=0.05)
    with FlakyServer(0.0, latency=2.0) as slow:
        with pytest.raises(httpx.ReadTimeout):
            client.get(slow.url)
        assert registry[key_of(slow)].state == "open"


def test_failure_statuses_are_configurable(
    server: FlakyServer, make_client: Callable[..., httpx.Client], registry: BreakerRegistry
) -> None:
    """With failure_statuses={404}, a 404 is a failure and a 500 a success."""
    client = make_client(failure_statuses={404})
    server.status_override(500)
    client.get(server.url)
    breaker = registry[key_of(server)]
    assert breaker.metrics().success_count == 1
    server.status_override(404)
    client.get(server.url)
    assert breaker.metrics().error_count == 1


def test_fallback_answers_a_refused_request_without_a_connection(
    server: FlakyServer, make_client: Callable[..., httpx.Client]
) -> None:
    """A fallback receives the request and the CircuitOpenError and its response is returned."""
    errors: list[CircuitOpenError] = []

    def fallback(request: httpx.Request, error: CircuitOpenError) -> httpx.Response:
        errors.append(error)
        return httpx.Response(200, json={"cached": request.url.path})

    client = make_client(fallback=fallback)
    trip(client, server)
    seen = server.request_count
    response = client.get(server.url + "/users/1")
    assert response.json() == {"cached": "/users/1"}
    assert server.request_count == seen
    assert errors[0].state == "open"


def test_a_circuit_open_error_from_an_inner_breaker_is_not_this_ones_rejection(
    server: FlakyServer,
) -> None:
    """An inner transport's CircuitOpenError is re-raised, not answered by the outer fallback."""
    inner = BreakerTransport(plain(), policy=BreakerPolicy(failure_threshold=1))
    outer = BreakerTransport(
        inner,
        key=lambda request: "outer",
        fallback=lambda request, error: httpx.Response(200),  # pragma: no cover
    )
    with httpx.Client(transport=outer, trust_env=False) as client:
        server.go_down()
        assert client.get(server.url).status_code == 503
        with pytest.raises(CircuitOpenError) as info:
            client.get(server.url)
    assert info.value.breaker == key_of(server)
    assert outer.registry["outer"].metrics().error_count == 2


def test_shared_registry_needs_the_same_failure_statuses(registry: BreakerRegistry) -> None:
    """Two transports may share breakers only if they judge responses alike."""
    first = BreakerTransport(plain(), registry=registry)
    second = AsyncBreakerTransport(aplain(), registry=registry)
    assert first.breaker_for("http://api:8080/") is second.breaker_for(httpx.URL("http://api:8080"))
    third = BreakerTransport(plain(), registry=registry, failure_statuses={500})
    with pytest.raises(RegistryError, match="is_failure"):
        third.breaker_for("http://api:8080/")
    first.close()
    asyncio.run(second.aclose())
    third.close()


def test_registry_get_before_the_transport_is_reported(registry: BreakerRegistry) -> None:
    """A breaker created without the transport's predicate is a conflict, not a silent gap."""
    registry.get("api:80")
    transport = BreakerTransport(plain(), registry=registry)
    with pytest.raises(RegistryError):
        transport.breaker_for("http://api/")
    transport.close()


def test_defaults_make_their_own_registry_and_transport() -> None:
    """Without arguments a transport wraps httpx.HTTPTransport and has its own registry."""
    transport = BreakerTransport()
    assert isinstance(transport.transport, httpx.HTTPTransport)
    assert isinstance(transport.registry, BreakerRegistry)
    assert transport.failure_statuses == DEFAULT_FAILURE_STATUSES
    assert repr(transport).startswith("<BreakerTransport over HTTPTransport")
    with transport:
        pass
    async_transport = AsyncBreakerTransport(policy=POLICY)
    assert isinstance(async_transport.transport, httpx.AsyncHTTPTransport)
    assert async_transport.breaker_for("https://x/").policy is POLICY
    assert repr(async_transport).startswith("<AsyncBreakerTransport over AsyncHTTPTransport")
    asyncio.run(async_transport.aclose())


def test_async_transport_trips_fails_fast_and_recovers(
    server: FlakyServer, registry: BreakerRegistry, clock: FakeClock
) -> None:
    """The async transport trips on 5xx, rejects without a connection, then recovers."""

    async def scenario() -> list[int]:
        transport = AsyncBreakerTransport(aplain(), registry=registry)
        async with httpx.AsyncClient(transport=transport, trust_env=False) as client:
            server.go_down()
            statuses = [(await client.get(server.url)).status_code for _ in range(3)]
            seen = server.request_count
            with pytest.raises(CircuitOpenError):
                await client.get(server.url)
            assert server.request_count == seen
            server.come_back()
            clock.advance(5)
            response = await client.get(server.url)
            statuses.append(response.status_code)
            assert response.json()["ok"] is True
            return statuses

    assert asyncio.run(scenario()) == [503, 503, 503, 200]
    assert [r.event for r in registry[key_of(server)].audit] == ["trip", "attempt_reset", "recover"]


def test_async_transport_error_and_fallbacks(registry: BreakerRegistry) -> None:
    """Async: a connect error is a failure; sync and coroutine fallbacks answer rejections."""
    with FlakyServer() as gone:
        url = gone.url

    async def cached(request: httpx.Request, error: CircuitOpenError) -> httpx.Response:
        return httpx.Response(200, text="cached (async)")

    def stale(request: httpx.Request, error: CircuitOpenError) -> httpx.Response:
        return httpx.Response(200, text="stale (sync)")

    async def scenario() -> tuple[str, str]:
        answers = []
        for fallback in (cached, stale):
            transport = AsyncBreakerTransport(
                aplain(),
                registry=BreakerRegistry(BreakerPolicy(failure_threshold=1)),
                fallback=fallback,
            )
            async with httpx.AsyncClient(transport=transport, trust_env=False) as client:
                with pytest.raises(httpx.ConnectError):
                    await client.get(url)
                answers.append((await client.get(url)).text)
        return answers[0], answers[1]

    assert asyncio.run(scenario()) == ("cached (async)", "stale (sync)")


def test_async_rejection_without_fallback_raises(server: FlakyServer) -> None:
    """Async: with no fallback a rejected request raises CircuitOpenError."""
    transport = AsyncBreakerTransport(aplain(), policy=BreakerPolicy(failure_threshold=1))

    async def scenario() -> None:
        async with httpx.AsyncClient(transport=transport, trust_env=False) as client:
            server.status_override(504)
            assert (await client.get(server.url)).status_code == 504
            with pytest.raises(CircuitOpenError):
                await client.get(server.url)

    asyncio.run(scenario())


@pytest.mark.parametrize(
    ("url", "key"),
    [
        ("http://api.example.com/a", "api.example.com:80"),
        ("https://api.example.com/a", "api.example.com:443"),
        ("http://api.example.com:8080/a", "api.example.com:8080"),
        ("http://127.0.0.1:9/", "127.0.0.1:9"),
        ("http://[::1]:8080/", "[::1]:8080"),
        ("ftp://files.example.com/x", "files.example.com"),
    ],
)
def test_host_key(url: str, key: str) -> None:
    """The default key is host:port, with the scheme's default port and bracketed IPv6."""
    assert host_key(httpx.Request("GET", url)) == key


@pytest.mark.parametrize(
    ("value", "now", "expected"),
    [
        ("120", 0.0, 120.0),
        (" 7 ", 0.0, 7.0),
        ("1.5", 0.0, 1.5),
        ("Thu, 01 Jan 1970 00:01:00 GMT", 30.0, 30.0),
        ("Thu, 01 Jan 1970 00:01:00 -0000", 0.0, 60.0),  # no zone: read as GMT
        ("Thu, 01 Jan 1970 00:01:00 GMT", 100.0, 0.0),  # in the past
        (None, 0.0, None),
        ("", 0.0, None),
        ("soon", 0.0, None),
        ("-5", 0.0, None),
        ("inf", 0.0, None),
        ("Thu, 99 Jan 1970 00:01:00 GMT", 0.0, None),
    ],
)
def test_parse_retry_after(value: str | None, now: float, expected: float | None) -> None:
    """Retry-After parses delta-seconds and HTTP-dates; anything else is None."""
    assert parse_retry_after(value, now) == expected


def test_status_judge_equality_and_verdicts(clock: FakeClock) -> None:
    """Judges compare by statuses and clock; verdicts are False, True or seconds."""
    judge = StatusJudge({503, 500}, clock)
    assert judge == StatusJudge([500, 503], clock)
    assert hash(judge) == hash(StatusJudge([500, 503], clock))
    assert judge != StatusJudge([500], clock)
    assert judge != StatusJudge([500, 503])
    assert judge != "judge"
    assert repr(judge) == "StatusJudge([500, 503])"
    assert judge(httpx.Response(200)) is False
    assert judge(httpx.Response(500, headers={"Retry-After": "9"})) is True
    assert judge(httpx.Response(503)) is True
    assert judge(httpx.Response(503, headers={"Retry-After": "9"})) == 9.0
