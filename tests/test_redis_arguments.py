"""RedisStore's arguments: each wrong one is refused at construction, naming it (no I/O).

No server is needed: a store does no network I/O when it is built, and none of these
clients (a sync ``RedisCluster`` aside, which the cluster tests check) connects before
its first command. The ports are never listened on.
"""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("redis", reason="redis-py is not installed: pip install redis")

import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.asyncio.sentinel
import redis.sentinel

from breaker_fsm.redis import RedisStore

URL = "redis://127.0.0.1:1/0"
SENTINELS = [("127.0.0.1", 1)]


def refused(error: type[Exception], *words: str, client: Any = URL, **options: Any) -> None:
    """``RedisStore(client, **options)`` raises ``error`` with every one of ``words``."""
    with pytest.raises(error) as info:
        RedisStore(client, push=options.pop("push", False), **options)
    for word in words:
        assert word in str(info.value), str(info.value)


@pytest.mark.parametrize(
    ("options", "error", "words"),
    [
        ({"namespace": 5}, TypeError, ["namespace must be a str, got int 5"]),
        ({"timeout": "fast"}, TypeError, ["timeout must be a number of seconds, got str 'fast'"]),
        ({"ttl": None}, TypeError, ["ttl must be a number of seconds"]),
        ({"retry_interval": True}, TypeError, ["retry_interval must be a number", "bool True"]),
        ({"sync_interval": [1]}, TypeError, ["sync_interval must be a number"]),
        ({"trial_lease": "60"}, TypeError, ["trial_lease must be a number"]),
        ({"wait_timeout": "x", "wait_replicas": 1}, TypeError, ["wait_timeout must be a number"]),
        ({"wait_replicas": "1"}, TypeError, ["wait_replicas must be an int", "got str '1'"]),
        ({"wait_replicas": True}, TypeError, ["wait_replicas must be an int", "got bool True"]),
        ({"wait_replicas": 1.5}, TypeError, ["wait_replicas must be an int", "float 1.5"]),
        ({"wait_replicas": -1}, ValueError, ["wait_replicas must be >= 0"]),
        ({"push": "no"}, TypeError, ["push must be True or False, got str 'no'"]),
        ({"push": 0}, TypeError, ["push must be True or False, got int 0"]),
        (
            {"wait_timeout": 0.01},
            ValueError,
            ["wait_timeout=0.01 bounds the WAIT", "wait_replicas is 0", "set wait_replicas=1"],
        ),
        ({"service_name": 5}, TypeError, ["service_name must be a str", "got int 5"]),
    ],
)
def test_an_argument_of_the_wrong_type_is_refused_naming_it(
    options: dict[str, Any], error: type[Exception], words: list[str]
) -> None:
    """Each argument's type is checked before it is compared or used: no raw TypeError."""
    refused(error, *words, **options)


def test_the_right_types_are_taken() -> None:
    """Ints where seconds go, a wait_timeout with wait_replicas, push as a bool."""
    store = RedisStore(URL, timeout=1, ttl=60, wait_replicas=1, wait_timeout=0.5, push=False)
    assert (store.timeout, store.wait_replicas, store.wait_timeout) == (1.0, 1, 0.5)


def test_a_sentinel_replicas_client_is_refused() -> None:
    """slave_for reaches a read-only replica: every transition would fail there."""
    for sentinel in (
        redis.sentinel.Sentinel(SENTINELS),
        redis.asyncio.sentinel.Sentinel(SENTINELS),
    ):
        refused(ValueError, "Sentinel.slave_for('mymaster')", "read-only replica", "master_for",
                client=sentinel.slave_for("mymaster"))  # fmt: skip
    replica = redis.asyncio.sentinel.Sentinel(SENTINELS).slave_for("mymaster")
    refused(ValueError, "slave_for('mymaster')", "read-only replica",
            client=redis.sentinel.Sentinel(SENTINELS).master_for("mymaster"),
            async_client=replica)  # fmt: skip
    RedisStore(redis.sentinel.Sentinel(SENTINELS).master_for("mymaster"), push=False)


def test_a_service_name_that_conflicts_with_the_url_or_client_is_refused() -> None:
    """The service is named in one place: a second, other name is refused."""
    url = "redis+sentinel://127.0.0.1:1/mymaster/0"
    refused(ValueError, "service_name='other' conflicts with the service 'mymaster'", "the URL",
            client=url, service_name="other")  # fmt: skip
    primary = redis.sentinel.Sentinel(SENTINELS).master_for("mymaster")
    refused(ValueError, "conflicts", "the master_for client", client=primary, service_name="x")
    assert RedisStore(url, service_name="mymaster", push=False).topology == "sentinel"


@pytest.mark.parametrize(
    "client",
    [
        redis.Redis(port=1, decode_responses=True),
        redis.asyncio.Redis(port=1, decode_responses=True),
        redis.asyncio.cluster.RedisCluster(
            startup_nodes=[redis.asyncio.cluster.ClusterNode("127.0.0.1", 1)],
            decode_responses=True,
        ),
        redis.sentinel.Sentinel(SENTINELS, decode_responses=True),
        redis.asyncio.sentinel.Sentinel(SENTINELS, decode_responses=True),
        redis.sentinel.Sentinel(SENTINELS).master_for("mymaster", decode_responses=True),
    ],
    ids=lambda client: type(client).__module__ + "." + type(client).__name__,
)
def test_a_client_that_decodes_responses_is_refused(client: Any) -> None:
    """Every kind of client that decodes is refused alike, as client= and as async_client=."""
    service = {"service_name": "mymaster"} if isinstance(
        client, redis.sentinel.Sentinel | redis.asyncio.sentinel.Sentinel
    ) else {}  # fmt: skip
    refused(ValueError, "needs a client without decode_responses", type(client).__name__,
            client=client, **service)  # fmt: skip


def test_an_async_client_that_decodes_responses_is_refused() -> None:
    refused(ValueError, "needs a async_client without decode_responses",
            async_client=redis.asyncio.Redis(port=1, decode_responses=True))  # fmt: skip


ASYNC_CLUSTER = redis.asyncio.cluster.RedisCluster(
    startup_nodes=[redis.asyncio.cluster.ClusterNode("127.0.0.1", 1)]
)


@pytest.mark.parametrize(
    ("client", "async_client", "words"),
    [
        (URL, "redis://127.0.0.1:1/0", ["must be a redis.asyncio.Redis", "got str"]),
        (URL, redis.Redis(port=1), ["must be a redis.asyncio.Redis", "got Redis"]),
        ("redis+cluster://127.0.0.1:1", redis.asyncio.Redis(port=1),
         ["async_client= reaches a single server, client= a Redis Cluster"]),
        (URL, ASYNC_CLUSTER, ["async_client= reaches a Redis Cluster, client= a single server"]),
        ("redis+sentinel://127.0.0.1:1/mymaster", redis.asyncio.Redis(port=1),
         ["reaches a single server, client= a Sentinel primary"]),
    ],
)  # fmt: skip
def test_an_async_client_of_the_wrong_kind_is_refused(
    client: Any, async_client: Any, words: list[str]
) -> None:
    """async_client= is an asyncio client of the same kind of deployment as client=."""
    refused(TypeError, *words, client=client, async_client=async_client)


@pytest.mark.parametrize(
    ("client", "async_client", "words"),
    [
        (URL, redis.asyncio.Redis(port=2), ["reaches 127.0.0.1:2/0, client= 127.0.0.1:1/0"]),
        (URL, redis.asyncio.Redis(host="127.0.0.1", port=1, db=3), ["127.0.0.1:1/3"]),
        (redis.Redis(port=1), redis.asyncio.Redis(host="10.0.0.1", port=1), ["10.0.0.1:1/0"]),
        ("unix:///tmp/a.sock", redis.asyncio.Redis(unix_socket_path="/tmp/b.sock"),
         ["unix:/tmp/b.sock/0, client= unix:/tmp/a.sock/0"]),
        ("redis+sentinel://127.0.0.1:1/mymaster",
         redis.asyncio.sentinel.Sentinel(SENTINELS).master_for("other"),
         ["follows the Sentinel service 'other', client= 'mymaster'"]),
        (redis.sentinel.Sentinel(SENTINELS),
         redis.asyncio.sentinel.Sentinel(SENTINELS).master_for("other"), ["'other'"]),
        (redis.asyncio.Redis(port=1), redis.asyncio.Redis(port=1),
         ["client= is an asyncio client already"]),
    ],
)  # fmt: skip
def test_an_async_client_of_another_server_or_service_is_refused(
    client: Any, async_client: Any, words: list[str]
) -> None:
    """Where the settings show it without I/O, both clients must reach one Redis."""
    service = {"service_name": "mymaster"} if isinstance(client, redis.sentinel.Sentinel) else {}
    refused(ValueError, *words, client=client, async_client=async_client, **service)


@pytest.mark.parametrize(
    ("client", "async_client"),
    [
        (URL, redis.asyncio.Redis(port=1)),
        ("redis://localhost:1", redis.asyncio.Redis(host="127.0.0.1", port=1)),
        (redis.Redis(port=1, db=2), redis.asyncio.Redis(port=1, db=2)),
        ("redis+cluster://127.0.0.1:1", ASYNC_CLUSTER),
        ("redis+sentinel://127.0.0.1:1/mymaster",
         redis.asyncio.sentinel.Sentinel(SENTINELS).master_for("mymaster")),
    ],
)  # fmt: skip
def test_an_async_client_of_the_same_redis_is_taken(client: Any, async_client: Any) -> None:
    store = RedisStore(client, async_client=async_client, push=False)
    assert store._clients._shared_async is async_client
