"""Push: every member of a fleet learns each transition without a round trip of its own.

Each RedisStore here is one member (its own clients, its own subscription), all in this
process and on a real redis-server; the scripts read a FakeClock. Waiting for a push is
polling for an event with a generous bound (``tests.helpers.PATIENCE``); how fast pushes
arrive is measured in ``make bench``, never asserted here.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import shlex
import signal
import ssl
import threading
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from breaker_fsm import BreakerPolicy, CircuitBreaker, CircuitOpenError, IllegalTransitionError
from breaker_fsm._lua import fingerprint
from breaker_fsm.audit import verify
from breaker_fsm.testing import FakeClock
from tests.helpers import (
    PATIENCE,
    Boom,
    CommandLog,
    aok,
    fail,
    merged,
    refused,
    run_closing,
    wait_live,
    wait_until,
)
from tests.redis_server import RedisServer, StoreFactory, require_redis_server

if TYPE_CHECKING:
    from collections.abc import Callable

    from breaker_fsm.redis import RedisStore

redis = pytest.importorskip("redis", reason="redis-py is not installed: pip install redis")

POLICY = BreakerPolicy(failure_threshold=1, reset_timeout=30)


class Never:
    """An operation that must not run: counts the times it did."""

    def __init__(self) -> None:
        self.ran = 0

    def __call__(self) -> str:
        self.ran += 1
        return "ran"


def members(
    redis_stores: StoreFactory,
    clock: FakeClock,
    policy: BreakerPolicy = POLICY,
    n: int = 2,
    **store_options: Any,
) -> list[CircuitBreaker]:
    """``n`` members of breaker "svc", each on its own pushing store, all of them live."""
    breakers = [
        CircuitBreaker(
            "svc", policy, clock=clock, store=redis_stores(now=clock.monotonic, **store_options)
        )
        for _ in range(n)
    ]
    wait_live(*breakers)
    return breakers


def state_is(breaker: CircuitBreaker, state: str) -> Callable[[], bool]:
    return lambda: breaker.state == state


# ---------------------------------------------------------------------------- transitions


def test_a_trip_reaches_the_other_member_before_its_next_call(
    redis_stores: StoreFactory, clock: FakeClock
) -> None:
    """A trips the fleet; B, which never called, refuses without running its operation."""
    a, b = members(redis_stores, clock)
    fail(a)
    wait_until(state_is(b, "open"), "b mirrors the trip")
    never = Never()
    with pytest.raises(CircuitOpenError) as info:
        b.call(never)
    assert never.ran == 0
    assert info.value.retry_after == 30
    assert (b.metrics().transitions, len(b.audit)) == (1, 0)  # mirrored, not recorded
    assert b.machine.current_state_value == "open"


def test_an_asyncio_member_follows_pushes_too(redis_stores: StoreFactory, clock: FakeClock) -> None:
    """A member that only uses acall learns a trip by push, and refuses without running."""
    [a] = members(redis_stores, clock, n=1)
    store = redis_stores(now=clock.monotonic)
    b = CircuitBreaker("svc", POLICY, clock=clock, store=store)
    wait_live(b)
    never_ran: list[str] = []

    async def never() -> str:
        never_ran.append("ran")
        return "ran"

    async def scenario() -> None:
        assert await b.acall(aok) == "ok"
        fail(a)
        deadline = asyncio.get_running_loop().time() + PATIENCE
        while b.state != "open":  # the push arrives on another thread: the loop runs on
            assert asyncio.get_running_loop().time() < deadline, "b never mirrored the trip"
            await asyncio.sleep(0.001)
        with pytest.raises(CircuitOpenError):
            await b.acall(never)

    run_closing(store, scenario)
    assert never_ran == []


def test_every_automatic_transition_is_pushed_and_recorded_once(
    redis_stores: StoreFactory, clock: FakeClock
) -> None:
    """trip, attempt_reset, retrip, recover: B follows each; only A records them; trails merge."""
    policy = BreakerPolicy(failure_threshold=1, reset_timeout=5, success_threshold=1)
    a, b = members(redis_stores, clock, policy)
    fail(a)  # trip
    wait_until(state_is(b, "open"), "trip")
    clock.advance(5)

    def trial() -> str:
        wait_until(state_is(b, "half_open"), "attempt_reset")
        raise Boom("still down")

    with pytest.raises(Boom):
        a.call(trial)  # attempt_reset, then retrip
    wait_until(lambda: b.state == "open" and b.metrics().transitions == 3, "retrip")
    assert b.metrics().open_duration == 5
    clock.advance(5)
    assert a.call(lambda: "trial") == "trial"  # attempt_reset, recover
    wait_until(lambda: b.state == "closed" and b.metrics().transitions == 5, "recover")
    assert b.call(lambda: "runs") == "runs"
    events = [r.event for r in a.audit]
    assert events == ["trip", "attempt_reset", "retrip", "attempt_reset", "recover"]
    assert list(b.audit) == []
    assert verify(merged(a, b)) == 5


def test_a_new_member_learns_an_open_fleet_before_its_first_call(
    redis_stores: StoreFactory, clock: FakeClock
) -> None:
    """A member created while the fleet is open refuses its very first call without running it."""
    [a] = members(redis_stores, clock, n=1)
    fail(a)
    for _ in range(3):  # whether or not its subscription is up yet
        late = CircuitBreaker("svc", POLICY, clock=clock, store=redis_stores(now=clock.monotonic))
        never = Never()
        with pytest.raises(CircuitOpenError):
            late.call(never)
        assert never.ran == 0
        assert late.state == "open"


def test_a_new_member_reads_the_state_once(
    redis_server: RedisServer, redis_stores: StoreFactory, clock: FakeClock
) -> None:
    """MONITOR: a live new member made one read in its life; then 1 round trip per call."""
    [a] = members(redis_stores, clock, n=1)
    assert a.call(lambda: "loads the scripts") == "loads the scripts"
    log = CommandLog(redis_server)
    try:
        log.begin()
        b = CircuitBreaker("svc", POLICY, clock=clock, store=redis_stores(now=clock.monotonic))
        wait_live(b)
        assert log.end().count("EVALSHA") == 1  # the re-read when its subscription came up
        log.begin()
        for _ in range(5):
            assert b.call(lambda: "ok") == "ok"
        assert log.round_trips() == 5
    finally:
        log.close()


# ---------------------------------------------------------------------------- operators


@pytest.mark.parametrize("event", ["force_open", "disable"])
def test_an_override_reaches_every_member(
    redis_stores: StoreFactory, clock: FakeClock, event: str
) -> None:
    """A's force_open makes B refuse, A's disable makes B run unrecorded: without a round trip."""
    a, b = members(redis_stores, clock)
    assert b.call(lambda: "ok") == "ok"
    assert a.send(event) == STATE_AFTER[event]
    wait_until(state_is(b, STATE_AFTER[event]), event)
    never = Never()
    if event == "force_open":
        with pytest.raises(CircuitOpenError):
            b.call(never)
        assert never.ran == 0
    else:
        with pytest.raises(Boom):
            b.call(lambda: (_ for _ in ()).throw(Boom("not recorded")))
        assert b.metrics().error_count == 0
    assert b.send("reset") == "closed"  # and B's reset reaches A
    wait_until(state_is(a, "closed"), "reset")


STATE_AFTER = {"force_open": "forced_open", "disable": "disabled"}


def test_a_fleet_reset_ends_every_mirrored_open_episode(
    redis_stores: StoreFactory, clock: FakeClock
) -> None:
    """After B's reset, A calls again at once: nobody waits out a mirrored open time."""
    policy = BreakerPolicy(failure_threshold=1, reset_timeout=600)
    a, b = members(redis_stores, clock, policy)
    fail(a)
    wait_until(state_is(b, "open"), "trip")
    assert b.send("reset") == "closed"
    wait_until(state_is(a, "closed"), "reset")
    assert a.call(lambda: "runs") == "runs"
    assert [(r.event, r.seq) for r in b.audit] == [("reset", 2)]
    assert verify(merged(a, b)) == 2


# ---------------------------------------------------------------------------- lost pushes


def test_a_killed_push_connection_is_resubscribed_and_nothing_is_missed(
    redis_server: RedisServer,
    redis_stores: StoreFactory,
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """CLIENT KILL of the subscriptions: a trip meanwhile is still refused; push resumes, logged."""
    caplog.set_level(logging.WARNING, logger="breaker_fsm")
    a, b = members(redis_stores, clock)
    assert b.call(lambda: "ok") == "ok"

    def said(text: str) -> Callable[[], bool]:
        return lambda: sum(text in r.getMessage() for r in caplog.records) == 2

    with redis_server.client() as admin:
        assert admin.execute_command("CLIENT", "KILL", "TYPE", "pubsub") == 2
    wait_until(said("push channel lost"), "both members notice the loss")
    fail(a)  # while B is resubscribing, re-reading, or back: whichever, it must learn
    wait_until(state_is(b, "open"), "b learns the trip")
    never = Never()
    with pytest.raises(CircuitOpenError):
        b.call(never)
    assert never.ran == 0
    wait_until(said("push channel back"), "both members resubscribe and re-read")
    wait_live(a, b)
    assert b.send("reset") == "closed"  # and pushes flow again
    wait_until(state_is(a, "closed"), "reset after the resubscription")


def test_a_re_read_that_finds_the_store_behind_the_mirrors_puts_the_lost_trip_back(
    redis_server: RedisServer,
    redis_stores: StoreFactory,
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The entry rewritten to an older generation (a lost write): the re-read re-seeds it.

    Both members called (generation 0), A tripped (1); the trip is then lost by the store.
    After their push channels come back, neither adopts the older state, the store holds
    the trip again without a call of theirs, and a new member refuses its first call.
    """
    caplog.set_level(logging.WARNING, logger="breaker_fsm")
    a, b = members(redis_stores, clock)
    assert a.call(lambda: "ok") == b.call(lambda: "ok") == "ok"
    with redis_server.client() as admin:
        before = admin.get("breaker_fsm:{svc}")
        fail(a)
        wait_until(state_is(b, "open"), "b mirrors the trip")
        admin.set("breaker_fsm:{svc}", before)  # generation 0 of the same entry: trip lost
        assert admin.execute_command("CLIENT", "KILL", "TYPE", "pubsub") == 2
    wait_until(
        lambda: sum("push channel back" in r.getMessage() for r in caplog.records) == 2,
        "both members re-read",
    )
    wait_live(a, b)
    assert (a.state, b.state) == ("open", "open")
    state = redis_stores().describe("svc")
    assert state is not None
    assert (state["state"], state["gen"]) == (1, 1)  # open, at the generation they saw
    c = CircuitBreaker("svc", POLICY, clock=clock, store=redis_stores(now=clock.monotonic))
    wait_live(c)
    never = Never()
    with pytest.raises(CircuitOpenError):
        c.call(never)
    assert never.ran == 0


def test_a_re_read_that_finds_no_entry_puts_an_open_mirror_back(
    redis_server: RedisServer, redis_stores: StoreFactory, clock: FakeClock
) -> None:
    """Redis restarted empty under an open fleet: the re-read recreates the open entry."""
    a, b = members(redis_stores, clock)
    fail(a)
    wait_until(state_is(b, "open"), "b mirrors the trip")
    redis_server.kill()
    redis_server.restart()
    wait_until(lambda: redis_stores().describe("svc") is not None, "re-seeded by a re-read")
    wait_live(a, b)
    state = redis_stores().describe("svc")
    assert state is not None
    assert (state["state"], state["gen"]) == (1, 1)
    assert (a.state, b.state) == ("open", "open")


def test_a_trip_made_alone_while_the_store_was_away_seeds_it_when_it_comes_back_empty(
    redis_server: RedisServer, redis_stores: StoreFactory, clock: FakeClock
) -> None:
    """A trips on its local state while Redis is down; Redis restarts empty: the fleet is open.

    The newest state any member saw is A's open episode: A's first round trip (or its
    re-read) recreates the entry open, B follows by push, and neither runs the operation.
    """
    policy = BreakerPolicy(failure_threshold=1, reset_timeout=600)
    a, b = members(redis_stores, clock, policy)
    assert a.call(lambda: "ok") == "ok"
    redis_server.kill()
    wait_until(lambda: not a.metrics().live, "a's push channel is lost")
    fail(a)  # asks the dead server: degraded, trips on its local state
    assert a.metrics().degraded
    assert a.state == "open"
    redis_server.restart()
    clock.advance(1)  # past retry_interval: a degraded member asks again
    never = Never()
    with pytest.raises(CircuitOpenError):
        a.call(never)  # the store, recreated from a's open episode, refuses too
    wait_until(state_is(b, "open"), "b follows the recreated open entry")
    with pytest.raises(CircuitOpenError):
        b.call(never)
    assert never.ran == 0
    state = redis_stores().describe("svc")
    assert state is not None
    assert state["state_name"] == "open"
    assert not a.metrics().degraded
    assert [(r.event, r.generation) for r in a.audit] == [("trip", None)]  # made alone
    verify(merged(a, b))


def test_a_re_read_older_than_an_outage_leaves_what_the_breaker_did_alone(
    redis_server: RedisServer,
    redis_stores: StoreFactory,
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The push thread reads the state, then Redis goes away and the breaker goes on alone;
    the read, taken late, is not the store answering again: the local state stands.

    The thread is held between its read and its use of it, so that the interleaving a
    loaded machine once made (the degraded ``asend`` test failed twice in full runs) is
    made every time.
    """
    caplog.set_level(logging.INFO, logger="breaker_fsm")
    store = redis_stores(now=clock.monotonic)
    may_read, read, release = threading.Event(), threading.Event(), threading.Event()
    peek = store._peek

    def held_peek(keys: list[bytes]) -> Any:
        assert may_read.wait(PATIENCE)
        replies = peek(keys)
        read.set()
        assert release.wait(PATIENCE)
        return replies

    monkeypatch.setattr(store, "_peek", held_peek)
    a = CircuitBreaker("svc", POLICY, clock=clock, store=store)
    assert a.call(lambda: "ok") == "ok"  # the entry exists, closed
    may_read.set()
    assert read.wait(PATIENCE)  # the push thread has read it: closed
    redis_server.kill()
    assert a.send("force_open") == "forced_open"  # degraded: applied alone
    release.set()
    wait_until(lambda: "push channel lost" in caplog.text, "the push thread is past its re-read")
    metrics = a.metrics()
    assert (a.state, metrics.degraded, metrics.live, metrics.store_errors) == (
        "forced_open",
        True,
        False,
        1,
    )
    with pytest.raises(IllegalTransitionError, match="not allowed in state 'forced_open'"):
        a.send("disable")  # refused by the local state, not applied to an old "closed"
    assert "shared store answers again" not in caplog.text


def test_without_a_subscription_each_call_asks_first(
    redis_stores: StoreFactory, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """A server that refuses SUBSCRIBE: members are never live, ask before each call, stay exact."""
    caplog.set_level(logging.WARNING, logger="breaker_fsm")
    server = RedisServer(require_redis_server(), extra_args=("--rename-command", "SUBSCRIBE", ""))
    with server:
        a, b = (
            CircuitBreaker(
                "svc", POLICY, clock=clock, store=redis_stores(url=server.url, now=clock.monotonic)
            )
            for _ in range(2)
        )
        assert b.call(lambda: "ok") == "ok"
        wait_until(
            lambda: any("push channel unavailable" in r.getMessage() for r in caplog.records),
            "warned",
        )
        log = CommandLog(server)
        try:  # (EVALSHA alone: the subscriptions' own attempts come and go meanwhile)
            log.begin()
            assert b.call(lambda: "ok") == "ok"
            assert log.end().count("EVALSHA") == 2  # acquire, then record
            fail(a)
            log.begin()
            never = Never()
            with pytest.raises(CircuitOpenError):
                b.call(never)
            assert log.end().count("EVALSHA") == 1  # the acquire that refused
            assert never.ran == 0
        finally:
            log.close()
        assert not b.metrics().live
        assert b.metrics().store_errors == 0


def test_a_server_restarted_empty_converges(
    redis_server: RedisServer, redis_stores: StoreFactory, clock: FakeClock
) -> None:
    """Redis restarted empty: no call fails, the first script recreates the entry, all follow."""
    policy = BreakerPolicy(failure_threshold=1, reset_timeout=600)
    a, b = members(redis_stores, clock, policy)
    redis_server.kill()
    redis_server.restart()
    assert a.call(lambda: "ok") == "ok"  # degraded or not, it ran
    assert b.call(lambda: "ok") == "ok"
    clock.advance(1)  # past retry_interval: a degraded member asks again
    wait_live(a, b)  # resubscribed; the re-read found no entry: the mirrors stand
    fail(a)  # recreates the entry from a's mirror, and trips it
    wait_until(state_is(b, "open"), "the fleet converges on open")
    refused(b)
    state = redis_stores().describe("svc")
    assert state is not None
    assert (state["state"], state["gen"]) == (1, 1)


def test_a_paused_server_fails_no_call_and_the_fleet_converges(
    redis_server: RedisServer, redis_stores: StoreFactory, clock: FakeClock
) -> None:
    """SIGSTOP: calls time out into local state (never fail); after SIGCONT the fleet follows."""
    policy = BreakerPolicy(failure_threshold=1, reset_timeout=600)
    a, b = (
        CircuitBreaker(
            "svc", policy, clock=clock, store=redis_stores(now=clock.monotonic, timeout=0.2)
        )
        for _ in range(2)
    )
    wait_live(a, b)
    assert redis_server.pid is not None
    os.kill(redis_server.pid, signal.SIGSTOP)
    try:
        assert a.call(lambda: "ok") == "ok"  # times out: local
        assert b.call(lambda: "ok") == "ok"
        assert a.metrics().degraded
        assert b.metrics().degraded
    finally:
        os.kill(redis_server.pid, signal.SIGCONT)
    clock.advance(1)  # past retry_interval
    fail(a)  # back on the shared state: the trip is the fleet's
    wait_until(state_is(b, "open"), "b follows the fleet again")
    refused(b)
    assert [(r.event, r.generation) for r in a.audit] == [("trip", 1)]
    assert not a.metrics().degraded


# ---------------------------------------------------------------------------- policies


def test_members_with_different_policies_are_warned_about_once(
    redis_stores: StoreFactory, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """A policy fingerprint in the shared state: a member that sees another one warns, once."""
    caplog.set_level(logging.WARNING, logger="breaker_fsm")
    one, other = (
        BreakerPolicy(failure_threshold=10),
        BreakerPolicy(failure_threshold=10, reset_timeout=31),
    )
    [a] = members(redis_stores, clock, one, n=1)
    [b] = members(redis_stores, clock, other, n=1)
    [c] = members(redis_stores, clock, one, n=1)
    for breaker in (a, b, c, b, a, b, c, a):  # each failure writes the writer's fingerprint
        fail(breaker)
    warnings = [r.getMessage() for r in caplog.records if "different policy" in r.getMessage()]
    assert len(warnings) == 3, warnings  # one per member, however many replies showed it
    assert all(w.startswith("breaker 'svc': another member") for w in warnings)
    state = redis_stores().describe("svc")
    assert state is not None
    assert state["fingerprint"] == fingerprint(one)  # the last writer's
    assert fingerprint(one) != fingerprint(other)
    assert fingerprint(one) == fingerprint(BreakerPolicy.model_validate_json(one.model_dump_json()))


# ---------------------------------------------------------------------------- security


def test_a_password_url_passes_through(clock: FakeClock, redis_stores: StoreFactory) -> None:
    """requirepass: a URL with the password shares the state and pushes; the repr hides it."""
    with RedisServer(require_redis_server(), password="s3cret pw") as server:
        url = f"redis://:s3cret%20pw@{server.host}:{server.port}/0"
        a, b = members(redis_stores, clock, url=url)
        fail(a)
        wait_until(state_is(b, "open"), "push under a password")
        assert "s3cret" not in repr(b._link.entry.push.store)  # type: ignore[attr-defined]


def test_an_acl_user_url_passes_through(clock: FakeClock, redis_stores: StoreFactory) -> None:
    """An ACL user with only what a store needs (its keys, its channel, scripts) is enough.

    The user is made with the README's own ``ACL SETUSER`` line, word for word.
    """
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text("utf-8")
    [line] = [x for x in readme.splitlines() if x.startswith("ACL SETUSER ")]
    with RedisServer(require_redis_server(), password="admin") as server:
        with server.client() as admin:
            assert admin.execute_command(*shlex.split(line)) in (b"OK", "OK", True)
        url = f"redis://breaker:fleet-pw@{server.host}:{server.port}/0"
        a, b = members(redis_stores, clock, url=url)
        fail(a)
        wait_until(state_is(b, "open"), "push for an ACL user")
        refused(b)
        assert a.metrics().store_errors == b.metrics().store_errors == 0
        assert "fleet-pw" not in repr(a._link.entry.push.store)  # type: ignore[attr-defined]


def test_a_wrong_password_degrades_with_a_warning_about_authentication(
    clock: FakeClock, redis_stores: StoreFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """A wrong password never fails a call: the breaker runs locally and says why."""
    caplog.set_level(logging.WARNING, logger="breaker_fsm")
    with RedisServer(require_redis_server(), password="right") as server:
        url = f"redis://:hunter2@{server.host}:{server.port}/0"
        breaker = CircuitBreaker(
            "svc", POLICY, clock=clock, store=redis_stores(url=url, now=clock.monotonic)
        )
        assert breaker.call(lambda: "runs") == "runs"
        with pytest.raises(Boom):
            breaker.call(lambda: (_ for _ in ()).throw(Boom("down")))
        refused(breaker)  # the local rules trip it
        assert breaker.metrics().degraded
        wait_until(lambda: len(caplog.records) >= 2, "both warnings")
    messages = [r.getMessage().lower() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(messages) == 2, messages  # the breaker's, and the push channel's
    assert all("authentication" in m for m in messages), messages
    assert all("hunter2" not in m for m in messages)  # the password itself is never logged


def test_tls_options_pass_through_to_both_clients(redis_stores: StoreFactory) -> None:
    """rediss:// and its query options reach the sync client and the derived asyncio one."""
    store: RedisStore = redis_stores(
        url="rediss://user:pw@cache.invalid:6380/2?ssl_cert_reqs=none&ssl_ca_certs=/ca.pem",
        push=False,
    )
    sync_pool = store._clients.sync().connection_pool
    assert sync_pool.connection_class.__name__ == "SSLConnection"
    kwargs: dict[str, Any] = sync_pool.connection_kwargs
    assert (kwargs["username"], kwargs["password"], kwargs["db"]) == ("user", "pw", 2)
    assert kwargs["ssl_cert_reqs"] in ("none", ssl.CERT_NONE)
    assert kwargs["ssl_ca_certs"] == "/ca.pem"

    async def derived() -> None:
        pool = store._clients.for_loop().connection_pool
        assert pool.connection_class.__name__ == "SSLConnection"
        assert pool.connection_kwargs["ssl_ca_certs"] == "/ca.pem"
        assert pool.connection_kwargs["password"] == "pw"

    run_closing(store, derived)
    assert repr(store) == (
        "RedisStore(rediss://user:***@cache.invalid:6380/2?ssl_cert_reqs=none"
        "&ssl_ca_certs=/ca.pem, namespace='breaker_fsm')"
    )


def test_the_subscription_ends_with_its_last_breaker(
    redis_server: RedisServer, redis_stores: StoreFactory, clock: FakeClock
) -> None:
    """The push thread holds breakers weakly and ends when none is left; a new one restarts it."""
    store = redis_stores(now=clock.monotonic)
    breaker = CircuitBreaker("svc", POLICY, clock=clock, store=store)
    wait_live(breaker)
    push = store._push
    assert push is not None
    thread = push._thread
    assert thread is not None
    del breaker
    gc.collect()
    wait_until(lambda: not thread.is_alive(), "the thread ends")
    again = CircuitBreaker("svc", POLICY, clock=clock, store=store)
    wait_live(again)
    assert push._thread is not thread
    assert store.pushing


def test_a_forked_child_asks_until_its_own_subscription_is_up(
    redis_stores: StoreFactory, clock: FakeClock
) -> None:
    """After fork (a pre-forking server) the child's mirrors are not live: it asks, resubscribes."""
    a, b = members(redis_stores, clock)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # 3.12+: fork with threads
        pid = os.fork()
    if pid == 0:  # the child: report through the exit code, never return into pytest
        code = 1
        try:
            if not b.metrics().live and b.call(lambda: "asks") == "asks":  # and subscribes
                deadline = time.monotonic() + PATIENCE
                while not b.metrics().live:
                    if time.monotonic() > deadline:
                        raise TimeoutError("no subscription in the child")
                    time.sleep(0.001)
                fail(a)  # the child's a trips the fleet: its b follows by push
                while b.state != "open":
                    if time.monotonic() > deadline:
                        raise TimeoutError("no push in the child")
                    time.sleep(0.001)
                code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    wait_until(state_is(b, "open"), "the parent follows the child's trip")
