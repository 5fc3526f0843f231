"""One breaker's entry in a :class:`~breaker_fsm.redis.RedisStore`: its round trips.

An :class:`Entry` is what ``RedisStore.bind`` returns: the breaker's keys, the scripts of
its policy (:mod:`breaker_fsm._lua`) and its push channel. Each operation is plan (pack
the arguments, no I/O) → run one script (``EVALSHA``; the one line by which the sync and
asyncio twins differ) → handle the reply (unpack it; after a transition, ``WAIT`` for the
replicas when the store asks for them: :mod:`breaker_fsm._replicas`).
"""

from __future__ import annotations

import hashlib
import math
import secrets
from typing import TYPE_CHECKING

from ._lua import (
    ACQUIRE_ARGS,
    OPERATOR_ARGS,
    RECORD_ARGS,
    REPLY,
    SYNC_ARGS,
    UNPINNED,
    fingerprint,
)
from ._store import Seed, StoreReply
from ._topology import explain

if TYPE_CHECKING:
    from ._clients import Clients
    from ._mirror import Mirror, StoreLink
    from ._policy import BreakerPolicy
    from .redis import RedisStore

__all__ = ["Entry", "Script", "unpack"]


class Script:
    """One Lua script: its text and SHA1, run with EVALSHA (loaded on NOSCRIPT)."""

    __slots__ = ("clients", "no_script", "sha", "text")

    def __init__(self, clients: Clients, text: str, no_script: type[Exception]) -> None:
        self.clients = clients
        self.text = text
        self.no_script = no_script  # redis-py's NoScriptError
        # bytes: redis-py sends them as they are (no encoding per call)
        self.sha = hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest().encode()

    def run(self, keys: tuple[bytes, ...], args: bytes) -> bytes:
        """EVALSHA on the store's sync client.

        Raises:
            Exception: redis-py's, its message given the likely cause where one is known
                (:func:`~breaker_fsm._topology.explain`): a replica, a cluster's node.
        """
        try:
            client = self.clients.sync()
            try:
                reply: bytes = client.execute_command("EVALSHA", self.sha, len(keys), *keys, args)
            except self.no_script:  # a new or restarted server: EVAL caches it there
                reply = client.execute_command("EVAL", self.text, len(keys), *keys, args)
        except Exception as exc:
            explain(exc, self.clients.kind)
            raise
        return reply

    async def arun(self, keys: tuple[bytes, ...], args: bytes) -> bytes:
        """EVALSHA on the store's asyncio client for the running loop (see :meth:`run`)."""
        try:
            client = self.clients.for_loop()
            try:
                reply: bytes = await client.execute_command(
                    "EVALSHA", self.sha, len(keys), *keys, args
                )
            except self.no_script:
                reply = await client.execute_command("EVAL", self.text, len(keys), *keys, args)
        except Exception as exc:
            explain(exc, self.clients.kind)
            raise
        return reply


def unpack(raw: bytes) -> StoreReply:
    """Unpack a script's reply into a :class:`StoreReply`."""
    return StoreReply._make(REPLY.unpack(raw))


class Entry:
    """One breaker's two keys, the scripts of its policy, and its push channel."""

    __slots__ = (
        "_acquire",
        "_operator",
        "_record",
        "_sync",
        "fingerprint",
        "keys",
        "now",
        "origin",
        "push",
        "replicas",
        "retry_interval",
        "store",
        "sync_interval",
    )

    def __init__(self, store: RedisStore, name: str, policy: BreakerPolicy) -> None:
        # Without a window a breaker has one key: one argument less to send per call.
        keys = store.keys(name)[: 1 if policy.window is None else 2]
        self.keys = tuple(key.encode() for key in keys)
        self._record, self._acquire, self._operator, self._sync = store._scripts(policy)
        self.now = store.now
        self.retry_interval = store.retry_interval
        self.push = store._push
        # With pushes an override's mirror is as fresh as any other: never asked again.
        self.sync_interval = store.sync_interval if self.push is None else math.inf
        self.fingerprint = fingerprint(policy)
        self.origin = secrets.randbits(63)  # names this entry's own pushes, to skip them
        self.replicas = store._replicas  # WAIT after each transition this entry makes
        self.store = store

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

    # ------------------------------------------------------------------ plans (no I/O)

    def _now(self) -> float:
        """The time the scripts use: the server's (``UNPINNED``), or the tests' clock."""
        return UNPINNED if self.now is None else self.now()

    def _record_args(
        self, gen: int, outcome: int, u: float, hint: float | None, seed: Seed
    ) -> bytes:
        hint = -1.0 if hint is None else hint
        return RECORD_ARGS.pack(self._now(), *seed, gen, outcome, u, hint, self.origin)

    def _acquire_args(self, u: float, seed: Seed) -> bytes:
        return ACQUIRE_ARGS.pack(self._now(), *seed, u, self.origin)

    def _operator_args(self, event: int, u: float, seed: Seed) -> bytes:
        return OPERATOR_ARGS.pack(self._now(), *seed, event, u, self.origin)

    # ------------------------------------------------------------------ sync round trips

    def record(
        self, gen: int, outcome: int, u: float, hint: float | None, seed: Seed
    ) -> StoreReply | None:
        """Count one outcome; see :class:`~breaker_fsm._store.SharedState`."""
        raw = self._record.run(self.keys, self._record_args(gen, outcome, u, hint, seed))
        return self._confirmed(unpack(raw)) if raw else None

    def acquire(self, u: float, seed: Seed) -> StoreReply:
        """Admit a call the mirror cannot admit alone."""
        return self._confirmed(unpack(self._acquire.run(self.keys, self._acquire_args(u, seed))))

    def operator(self, event: int, u: float, seed: Seed) -> StoreReply:
        """Apply an operator event."""
        args = self._operator_args(event, u, seed)
        return self._confirmed(unpack(self._operator.run(self.keys, args)))

    def sync(self, seed: Seed) -> StoreReply:
        """The state, after re-seeding it if ``seed`` shows the store lost it (push thread)."""
        args = SYNC_ARGS.pack(self._now(), *seed, self.origin)
        return unpack(self._sync.run(self.keys, args))

    def _confirmed(self, reply: StoreReply) -> StoreReply:
        """``reply``, after waiting for the replicas if it reports a transition."""
        if self.replicas is not None and reply.event:
            self.replicas.confirm(self.keys[0])
        return reply

    # ------------------------------------------------------------------ asyncio twins

    async def arecord(
        self, gen: int, outcome: int, u: float, hint: float | None, seed: Seed
    ) -> StoreReply | None:
        """:meth:`record` on the asyncio client."""
        raw = await self._record.arun(self.keys, self._record_args(gen, outcome, u, hint, seed))
        return await self._aconfirmed(unpack(raw)) if raw else None

    async def aacquire(self, u: float, seed: Seed) -> StoreReply:
        """:meth:`acquire` on the asyncio client."""
        raw = await self._acquire.arun(self.keys, self._acquire_args(u, seed))
        return await self._aconfirmed(unpack(raw))

    async def aoperator(self, event: int, u: float, seed: Seed) -> StoreReply:
        """:meth:`operator` on the asyncio client."""
        args = self._operator_args(event, u, seed)
        return await self._aconfirmed(unpack(await self._operator.arun(self.keys, args)))

    async def _aconfirmed(self, reply: StoreReply) -> StoreReply:
        """:meth:`_confirmed` on the asyncio client."""
        if self.replicas is not None and reply.event:
            await self.replicas.aconfirm(self.keys[0])
        return reply
