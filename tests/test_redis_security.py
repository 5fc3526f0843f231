"""A store behind TLS and authentication, on real servers: what passes through, what degrades.

TLS: the test redis-server has no TLS built in, so a TLS-terminating proxy on 127.0.0.1
(``tests.tls_proxy``, with a certificate from a throwaway ``trustme`` CA) stands in front
of it: a ``rediss://`` URL's options must reach redis-py for the handshake to succeed.
Authentication: servers started with ``--requirepass`` and with an ACL user. (The
password and ACL passes are in ``test_redis_push.py``; these are the refusals.) Whatever
the server refuses, no call fails: the breaker degrades and the warning says why.
"""

from __future__ import annotations

import gc
import logging
import ssl
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from breaker_fsm import BreakerPolicy, CircuitBreaker
from breaker_fsm.testing import FakeClock
from tests.helpers import (
    aok,
    fail,
    refused,
    run_closing,
    wait_live,
    wait_until,
)
from tests.redis_server import RedisServer, StoreFactory, require_redis_server
from tests.tls_proxy import TlsProxy

if TYPE_CHECKING:
    import trustme

pytest_plugins = ["tests.redis_server"]

pytest.importorskip("redis", reason="redis-py is not installed: pip install redis")

POLICY = BreakerPolicy(failure_threshold=1, reset_timeout=30)


@pytest.fixture
def ca() -> trustme.CA:
    """A certificate authority of the test's own."""
    trustme = pytest.importorskip("trustme", reason="the dev extra's trustme makes the certs")
    return trustme.CA()


@pytest.fixture
def tls_proxy(redis_server: RedisServer, ca: trustme.CA) -> Iterator[TlsProxy]:
    """TLS on 127.0.0.1 in front of the test's redis-server, certified by ``ca``."""
    if sys.version_info[:3] == (3, 13, 0):
        pytest.skip(
            "Python 3.13.0's asyncio.Server raises TypeError in Server._wakeup when a "
            "connection it counted is collected after it closed (an unraisable error at "
            "teardown); the TLS tests run on every other Python the matrix has"
        )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    with TlsProxy(redis_server.port, context) as proxy:
        yield proxy
    # A refused handshake leaves sockets for the garbage collector: redis-py's own
    # (SSLConnection._connect closes the plain socket, not the SSLSocket that took its file
    # descriptor over) and the proxy's side of it. Collected here, silently, rather than
    # as a ResourceWarning in whichever test happens to run the collector next.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()


def ca_file(ca: trustme.CA, folder: Path) -> Path:
    path = folder / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return path


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


def test_rediss_with_the_servers_ca_shares_the_state_and_pushes(
    tls_proxy: TlsProxy,
    ca: trustme.CA,
    redis_stores: StoreFactory,
    clock: FakeClock,
    tmp_path: Path,
) -> None:
    """rediss://...?ssl_ca_certs=: calls, the push subscription and acall all go over TLS."""
    url = f"rediss://127.0.0.1:{tls_proxy.port}/0?ssl_ca_certs={ca_file(ca, tmp_path)}"
    stores = [redis_stores(url=url, now=clock.monotonic) for _ in range(2)]
    a, b = (CircuitBreaker("svc", POLICY, clock=clock, store=store) for store in stores)
    wait_live(a, b)  # each subscription's TLS handshake succeeded, and its re-read
    assert tls_proxy.accepted >= 2
    fail(a)
    wait_until(lambda: b.state == "open", "b follows the trip through TLS")
    refused(b)
    assert a.send("reset") == "closed"
    wait_until(lambda: b.state == "closed", "b follows the reset")

    async def over_asyncio() -> None:  # the derived asyncio client keeps the TLS options
        assert await b.acall(aok) == "ok"
        assert await b.asend("force_open") == "forced_open"

    run_closing(stores[1], over_asyncio)
    wait_until(lambda: a.state == "forced_open", "a follows b's asyncio force_open")
    assert a.metrics().store_errors == b.metrics().store_errors == 0
    assert not a.metrics().degraded


def test_rediss_with_another_ca_degrades_with_a_clear_warning(
    tls_proxy: TlsProxy,
    redis_stores: StoreFactory,
    clock: FakeClock,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A certificate the CA file does not vouch for: no call fails; both warnings say so."""
    trustme = pytest.importorskip("trustme")
    caplog.set_level(logging.WARNING, logger="breaker_fsm")
    stranger = ca_file(trustme.CA(), tmp_path)
    url = f"rediss://127.0.0.1:{tls_proxy.port}/0?ssl_ca_certs={stranger}"
    breaker = CircuitBreaker(
        "svc", POLICY, clock=clock, store=redis_stores(url=url, now=clock.monotonic)
    )
    assert breaker.call(lambda: "runs") == "runs"  # on local state
    fail(breaker)
    refused(breaker)  # the local rules trip it
    assert breaker.metrics().degraded
    wait_until(lambda: len(warnings_of(caplog)) >= 2, "the breaker's and the channel's warnings")
    messages = warnings_of(caplog)
    assert len(messages) == 2, messages
    assert all("certificate verify failed" in m.lower() for m in messages), messages
    assert any(m.startswith("breaker 'svc': shared store unavailable") for m in messages)


def test_plain_redis_to_a_tls_port_degrades(
    tls_proxy: TlsProxy,
    redis_stores: StoreFactory,
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """redis:// where the server wants TLS: the calls run locally, with a warning."""
    caplog.set_level(logging.WARNING, logger="breaker_fsm")
    store = redis_stores(url=f"redis://127.0.0.1:{tls_proxy.port}/0", now=clock.monotonic)
    breaker = CircuitBreaker("svc", POLICY, clock=clock, store=store)
    assert breaker.call(lambda: "runs") == "runs"
    assert breaker.metrics().degraded
    assert any("shared store unavailable" in m for m in warnings_of(caplog))


@pytest.mark.parametrize(
    "case",
    ["no password", "wrong password for the default user", "wrong password for an ACL user"],
)
def test_each_refused_authentication_degrades_with_a_warning_that_says_so(
    clock: FakeClock, redis_stores: StoreFactory, caplog: pytest.LogCaptureFixture, case: str
) -> None:
    """NOAUTH, a wrong requirepass, WRONGPASS for an ACL user: no call fails, and the
    breaker's and the subscription's warnings both say "authentication"."""
    caplog.set_level(logging.WARNING, logger="breaker_fsm")
    with RedisServer(require_redis_server(), password="right") as server:
        with server.client() as admin:
            admin.acl_setuser(
                "breaker", enabled=True, passwords=["+fleet-pw"], keys=["*"], channels=["*"],
                categories=["+@all"],
            )  # fmt: skip
        auth = {
            "no password": "",
            "wrong password for the default user": ":hunter2@",
            "wrong password for an ACL user": "breaker:hunter2@",
        }[case]
        url = f"redis://{auth}{server.host}:{server.port}/0"
        breaker = CircuitBreaker(
            "svc", POLICY, clock=clock, store=redis_stores(url=url, now=clock.monotonic)
        )
        assert breaker.call(lambda: "runs") == "runs"
        fail(breaker)
        refused(breaker)
        assert breaker.metrics().degraded
        wait_until(lambda: len(warnings_of(caplog)) >= 2, "both warnings")
    messages = [m.lower() for m in warnings_of(caplog)]
    assert len(messages) == 2, messages
    assert all("authentication" in m for m in messages), messages
    assert all("hunter2" not in m for m in messages)
