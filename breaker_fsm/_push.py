"""The push channel of a :class:`~breaker_fsm.redis.RedisStore`: every member learns at once.

A script that makes a transition publishes it (its reply, the caller's origin and the
state key) on the store's channel. Each store runs one subscription for its process, on
its own connection and a daemon thread, whatever mix of sync and asyncio code the
breakers serve: a pushed reply moves the bound breakers' mirrors (plain attributes, read
by ``call`` and ``acall`` alike) and is recorded in no audit trail, since the process
whose script made the transition records it from its own reply (or from this push, when
that reply was lost: a timeout, a cancelled ``acall``).

A mirror is *live* while the channel is up and nothing was missed since it last read the
state; only a live mirror decides alone (a closed call's one round trip, an open
rejection's none). While the channel is down (not yet subscribed, reconnecting, a server
that forbids Pub/Sub) each call asks the store first. When the channel comes back, the
thread re-reads the state of every bound breaker before their mirrors are live again, and
says so in the log: a lost push is never silent.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
import weakref
from typing import TYPE_CHECKING, Any

from ._lua import REPLY
from ._store import StoreReply
from ._topology import explain

if TYPE_CHECKING:
    from ._mirror import Mirror, StoreLink
    from .redis import RedisStore

__all__ = ["PushChannel"]

_log = logging.getLogger("breaker_fsm.redis")  # a child of the breakers' logger

POLL = 0.1  # seconds a read waits before the thread looks at its stop flag again
PING = 1.0  # seconds between PINGs on an idle subscription
SILENCE = 3.0  # seconds without a word from the server: the subscription is dead
CHUNK = 500  # breakers re-read per pipelined round trip

_CHANNELS: weakref.WeakSet[PushChannel] = weakref.WeakSet()  # for the fork hook


def _after_fork_in_child() -> None:
    """A forked child has no subscription thread: every mirror asks until it has one."""
    for channel in list(_CHANNELS):
        channel._forked()


if hasattr(os, "register_at_fork"):  # pragma: no branch - every POSIX Python has it
    os.register_at_fork(after_in_child=_after_fork_in_child)


class PushChannel:
    """One store's subscription to its transitions, and the mirrors it moves."""

    def __init__(self, store: RedisStore, channel: str) -> None:
        self.store = store
        self.channel = channel.encode()
        self.up = False
        self.token = 0  # changes each time the channel goes up or down
        self._lock = threading.Lock()
        self._followers: dict[bytes, weakref.WeakKeyDictionary[Mirror, int]] = {}
        self._thread: threading.Thread | None = None
        self._pid = 0
        self._stop = threading.Event()
        self._closed = False
        self._outage = False  # a loss was logged; the next subscription says it is back
        _CHANNELS.add(self)

    def __repr__(self) -> str:
        return f"<push channel {self.channel.decode()!r} {'up' if self.up else 'down'}>"

    # ------------------------------------------------------------------ the mirrors' side

    def follow(self, key: bytes, mirror: Mirror, origin: int) -> None:
        """Move ``mirror`` on every transition of ``key`` that ``origin`` did not make."""
        with self._lock:
            self._followers.setdefault(key, weakref.WeakKeyDictionary())[mirror] = origin
        self._ensure()

    def begin(self) -> int | None:
        """Before a round trip that reads the state: a token for :meth:`confirm`."""
        self._ensure()
        return self.token if self.up else None

    def confirm(self, link: StoreLink, token: int | None) -> None:
        """The state read since :meth:`begin` is current: the link is live, if still so."""
        if token is not None:
            with self._lock:
                if self.up and self.token == token:
                    link.live = True

    def close(self) -> None:
        """Stop the subscription (its thread ends within ``POLL`` seconds)."""
        self._stop.set()
        self._closed = True
        self._went_down(None)

    def _ensure(self) -> None:
        """Start the subscription thread unless it runs (in this process: after a fork)."""
        if self._running():
            return
        with self._lock:
            if self._running():
                return
            self._stop.set()  # a thread of a closed channel, still winding down
            self._stop = stop = threading.Event()
            self._closed = False
            self._pid = os.getpid()
            self.up = False
            self.token += 1
            self._thread = threading.Thread(
                target=self._run, args=(stop,), name="breaker_fsm push", daemon=True
            )
            self._thread.start()

    def _forked(self) -> None:
        """In a forked child: nothing is live, and no lock is held by a thread that is gone."""
        self._lock = threading.Lock()
        self._thread = None
        self._stop = threading.Event()
        self.up = False
        self.token += 1
        for followers in self._followers.values():
            for mirror in list(followers):
                mirror._link.live = False

    def _running(self) -> bool:
        """Whether this process's subscription thread runs, and is not winding down."""
        thread = self._thread
        return (
            thread is not None
            and self._pid == os.getpid()
            and not self._stop.is_set()
            and thread.is_alive()
        )

    # ------------------------------------------------------------------ the thread

    def _run(self, stop: threading.Event) -> None:
        """Subscribe, re-read, listen; after a loss, again (backing off to retry_interval).

        The thread ends when the store is closed or no breaker follows it any longer (a
        new one starts it again).
        """
        delay = 0.0
        attempt = 0
        while not stop.is_set() and self._following(stop):
            pubsub: Any = None
            try:
                pubsub = self.store._pubsub(attempt)
                attempt += 1  # a cluster's next attempt subscribes on another node
                pubsub.subscribe(self.channel)
                self._subscribed(pubsub, stop)
                delay = 0.0
                self._listen(pubsub, stop)
            except Exception as exc:
                if not stop.is_set():
                    self._went_down(exc)
            finally:
                if pubsub is not None:
                    with contextlib.suppress(Exception):
                        pubsub.close()
            if stop.wait(delay):
                break
            delay = min(max(2 * delay, 0.01), self.store.retry_interval)

    def _subscribed(self, pubsub: Any, stop: threading.Event) -> None:
        """Wait for the server's confirmation; then the channel is up: re-read everything."""
        deadline = time.monotonic() + max(1.0, 10 * self.store.timeout)
        while not stop.is_set():
            message = pubsub.get_message(timeout=POLL)
            if message is not None and message["type"] == "subscribe":
                self._went_up(stop)
                return
            if time.monotonic() > deadline:
                raise TimeoutError("no confirmation of SUBSCRIBE")

    def _listen(self, pubsub: Any, stop: threading.Event) -> None:
        """Dispatch pushes until the connection fails or stays silent past ``SILENCE``."""
        heard = time.monotonic()
        next_ping = heard + PING
        while not stop.is_set() and self._following(stop):
            message = pubsub.get_message(timeout=POLL)
            now = time.monotonic()
            if message is not None:
                heard = now
                kind = message["type"]
                if kind == "message":
                    self._dispatch(message["data"])
                elif kind == "subscribe":  # the client reconnected on its own: pushes lost
                    self._went_down(ConnectionError("the push connection was re-established"))
                    self._went_up(stop)
            if now >= next_ping:
                pubsub.ping()
                next_ping = now + PING
            elif now - heard > SILENCE:
                raise TimeoutError(f"the server has not answered for {SILENCE:g}s")

    def _following(self, stop: threading.Event) -> bool:
        """Whether any breaker still follows; if none, this thread is done."""
        with self._lock:
            if any(self._followers.values()):
                return True
            stop.set()
            return False

    def _dispatch(self, data: bytes) -> None:
        """Move every follower of the key but the one whose script made the transition."""
        size = REPLY.size
        reply = StoreReply._make(REPLY.unpack_from(data))
        origin = int.from_bytes(data[size : size + 8], "little", signed=True)
        with self._lock:
            followers = self._followers.get(data[size + 8 :])
            targets = [] if followers is None else list(followers.items())
        for mirror, own in targets:
            if own != origin:
                mirror._pushed(reply)
            elif reply.event:  # its reply records it, unless that reply was lost
                mirror._own_pushed(reply)

    def _went_up(self, stop: threading.Event) -> None:
        """Subscribed: re-read every follower's state, then their mirrors are live.

        Not once the channel is closed: a re-read may write (a re-seed), and a closed
        store's thread must not.
        """
        with self._lock:
            self.up = True
            self.token += 1
            token = self.token
            for key in [key for key, followers in self._followers.items() if not followers]:
                del self._followers[key]
            snapshot = [(key, list(followers)) for key, followers in self._followers.items()]
        if self._outage:
            self._outage = False
            _log.warning(
                "%r: push channel back; re-reading the shared state of %d breaker(s)",
                self.store,
                sum(len(mirrors) for _, mirrors in snapshot),
            )
        for start in range(0, len(snapshot), CHUNK):
            chunk = snapshot[start : start + CHUNK]
            if stop.is_set():
                return
            # Each breaker's failed round trips before the read: one failing after it
            # makes the read too old to take (the breaker may have gone on alone since).
            errors = [[mirror._link.errors for mirror in mirrors] for _, mirrors in chunk]
            replies = self.store._peek([key for key, _ in chunk])
            for (_, mirrors), counts, reply in zip(chunk, errors, replies, strict=True):
                if isinstance(reply, Exception):
                    continue  # a cluster node that is down: its breakers ask until it is back
                for mirror, count in zip(mirrors, counts, strict=True):
                    if stop.is_set() or not mirror._reread(reply, count):
                        continue  # not current (lost, not re-seeded; or too old): it asks
                    with self._lock:
                        if self.up and self.token == token:
                            mirror._link.live = True

    def _went_down(self, exc: BaseException | None) -> None:
        """No pushes from now on: every follower asks the store until the channel is back."""
        with self._lock:
            was_up = self.up
            self.up = False
            self.token += 1
            for followers in self._followers.values():
                for mirror in list(followers):
                    mirror._link.live = False
        if exc is None or self._outage:
            return
        self._outage = True
        explain(exc, self.store.topology)
        auth = "authentication" in f"{type(exc).__name__} {exc}".lower()
        _log.warning(
            "%r: push channel %s (%s: %s)%s; its breakers ask the store before each call "
            "until it is back",
            self.store,
            "lost" if was_up else "unavailable",
            type(exc).__name__,
            exc,
            ": authentication failed, check the URL's user and password" if auth else "",
        )
