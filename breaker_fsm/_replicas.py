"""``WAIT`` after a transition: a :class:`~breaker_fsm.redis.RedisStore`'s ``wait_replicas``.

Redis replicates asynchronously: a transition the primary acknowledged and died before
sending is lost by Redis. With ``wait_replicas=N`` each transition a script makes (never a
plain call) is followed by ``WAIT N``, at most ``wait_timeout`` seconds; one that fewer
replicas confirmed is counted and logged (once, until one is confirmed again). Either way a
member that saw a lost transition re-seeds it when it next reaches the promoted replica.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from ._topology import CLUSTER

if TYPE_CHECKING:
    from ._clients import Clients

__all__ = ["Replicas"]

_log = logging.getLogger("breaker_fsm")


class Replicas:
    """Waits until ``count`` replicas have each transition; counts those they did not."""

    __slots__ = (
        "_clients",
        "_confirming",
        "cluster",
        "count",
        "owner",
        "timeout",
        "ttl",
        "unconfirmed",
    )

    def __init__(  # noqa: PLR0917 - the store's settings, passed on as they are
        self, owner: object, clients: Clients, count: int, timeout: float, ttl: float, topology: str
    ) -> None:
        self.owner = owner  # the store: it names itself in the warning
        self._clients = clients
        self.count = count
        self.timeout = timeout  # seconds a WAIT may block
        self.ttl = ttl  # of the small key written before the WAIT
        self.cluster = topology == CLUSTER
        self._confirming = True  # the last WAIT was answered: warn when one is not
        self.unconfirmed = 0

    def confirm(self, key: bytes) -> None:
        """After a transition on ``key``: wait until ``count`` replicas have it."""
        try:
            acked = self._wait_sync(key)
        except Exception as exc:
            self._unconfirmed(key, exc)
            return
        self._confirmed(key, acked)

    async def aconfirm(self, key: bytes) -> None:
        """:meth:`confirm` on the asyncio client (a cluster's: the sync one, in a thread)."""
        try:
            if self.cluster:
                acked = await asyncio.to_thread(self._wait_sync, key)
            else:
                pipe = self._clients.for_loop().pipeline(transaction=False)
                self._wait_commands(pipe, key)
                acked = int((await pipe.execute())[-1])
        except Exception as exc:
            self._unconfirmed(key, exc)
            return
        self._confirmed(key, acked)

    def _confirmed(self, key: bytes, acked: int) -> None:
        """Take ``WAIT``'s answer: ``acked`` replicas have the transition on ``key``."""
        if acked < self.count:
            self._unconfirmed(key, acked)
        else:
            self._confirming = True

    def _wait_sync(self, key: bytes) -> int:
        client: Any = self._clients.sync()
        if self.cluster:  # the primary that owns the key, on one connection
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
        pipe.execute_command("WAIT", self.count, int(self.timeout * 1000))

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
                f"no answer to WAIT within the store's timeout of {self._clients.timeout:g}s: "
                f"fewer than {self.count} replica(s) acknowledged, and Redis answers a WAIT "
                "that timed out only on its next cron tick (up to 100 ms late at the default "
                "hz 10); is a replica attached?"
            )
        else:
            detail = f"{type(why).__name__}: {why}"
        _log.warning(
            "%r: a transition of %s is not confirmed by %d replica(s) within %gs (%s): a "
            "failover now may lose it (the fleet re-seeds it from the members that saw it); "
            "counted in .unconfirmed, and said again once a transition is confirmed",
            self.owner,
            key.decode(errors="replace"),
            self.count,
            self.timeout,
            detail,
        )
