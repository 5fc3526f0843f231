"""Breaker state shared by a fleet of processes through Redis (or Valkey).

::

    from breaker_fsm import BreakerPolicy, CircuitBreaker
    from breaker_fsm.redis import RedisStore

    store = RedisStore("redis://cache:6379/0")
    breaker = CircuitBreaker("users-api", BreakerPolicy(), store=store)

Every breaker of that name, in every process that uses the same Redis and namespace,
shares one state, open timing, half-open permits and window.

**Atomicity.** Each decision that reads and writes shared state is one Lua script, run by
``EVALSHA``: *record* (count an outcome; trip, recover or retrip when it makes one due),
*acquire* (move open to half_open once the open duration has elapsed on the server's
clock, take a half-open permit, retrip a timed-out episode) and *operator* (an event sent
with ``breaker.send``, or ``await breaker.asend`` on the asyncio client). Redis runs a
script alone, so exactly one process wins each transition and no count is lost. Every
transition adds one to the shared generation; the process whose script made it records it
in its own audit trail with ``seq`` and ``generation`` equal to that number, so the
fleet's trails merged and sorted by ``seq`` are one walk that
:func:`breaker_fsm.audit.verify` accepts.

**Round trips.** A call in ``closed`` costs one ``EVALSHA`` (its outcome); nothing is
read before the call: the process trusts the state it mirrors. While ``open`` a call
costs none: the process learned how long the episode has left (measured on the server's
clock, never by comparing two hosts' clocks) and rejects locally until then. After that,
one *acquire* round trip admits a trial (plus its *record*). A mirror in ``forced_open``
or ``disabled`` asks again at most every ``sync_interval`` seconds.

**Degrading.** When Redis fails or does not answer within ``timeout``, the call goes on
with the breaker's local state under the same policy, continuing from the state last
mirrored; the breaker logs one warning per outage (logger ``breaker_fsm``), counts the
failures in ``metrics().store_errors``, reports ``metrics().degraded`` and records the
transitions it makes alone with ``generation=None`` and a reason starting ``local (shared
store unavailable)``. Every ``retry_interval`` seconds a call tries Redis again; the
first answer puts the breaker back on the shared state. No call fails because Redis did.

**Keys and expiry.** A breaker has a state key, ``{namespace}:{<name>}`` (16 numbers
packed in one string: :meth:`RedisStore.describe` decodes it), and with a window a window
key, ``{namespace}:{<name>}:w`` (a count window's ring, one byte a call, or a time
window's one-second buckets); both hash to one slot in a cluster. They expire ``ttl``
seconds (at least twice the longest open duration and the window) after their last write;
the state of an operator override (``forced_open``, ``disabled``) does not expire. A
missing entry is recreated from the state the first process to reach it had mirrored.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import struct
import threading
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ._policy import CountWindow, TimeWindow
from ._store import Seed, StoreReply

if TYPE_CHECKING:
    import redis as redis_sync
    import redis.asyncio as redis_async

    from ._policy import BreakerPolicy

__all__ = ["RedisStore"]

_log = logging.getLogger("breaker_fsm")

# ------------------------------------------------------------------------ the Lua scripts
#
# Everything crosses the wire packed as little-endian doubles with Redis' built-in
# ``struct`` library: one argument in (redis-py packs one argument far faster than a
# dozen), one string out, and the state itself is one string value. Number <-> text
# conversions are what a Lua script spends most of its time on; binary has none.
#
# ARGV[1], unpacked into A:
#   A[1]  "now" in seconds (NaN = the server's TIME; tests may pin it)
#   A[2..6]  the seed: state, gen, episode, open duration, seconds left open
#   A[7..]  the script's own arguments
# The state (key H) and every reply are 16 numbers, laid out as _STATE and StoreReply.
# Layouts are written once, for Python's struct ("q" 8-byte integer, "d" double), and
# translated for Redis' (which has no repeat counts and spells the integer "i8").


_STATE_LAYOUT = "qqqqqqqqqqdddqqq"  # st g ep k wc wf ws wp wh n | d o h | p to tf
_REPLY_LAYOUT = "qqqqqqqqqqqqqddd"  # st g ep ev src ok k wc wf ws to tf n | d t x
_SEED_LAYOUT = "dqqqdd"  # now | seed: st g n d rem
_RECORD_LAYOUT = _SEED_LAYOUT + "qqdd"  # gen seen, outcome, u, hint
_ACQUIRE_LAYOUT = _SEED_LAYOUT + "d"  # u
_OPERATOR_LAYOUT = _SEED_LAYOUT + "qd"  # event, u


def _lua_layout(layout: str) -> str:
    """A struct layout for Redis' Lua (little-endian, ``q`` spelled ``i8``)."""
    return "<" + layout.replace("q", "i8")


def _args(layout: str) -> str:
    """Declare the formats a script unpacks and packs."""
    return (
        f"local ARGS = '{_lua_layout(layout)}'\n"
        f"local STATE = '{_lua_layout(_STATE_LAYOUT)}'\n"
        f"local REPLY = '{_lua_layout(_REPLY_LAYOUT)}'\n"
    )


_START = """
local V = redis.call('GET', KEYS[1])
"""

# record's common case, answered first, before anything else is set up (window-less
# policies only): a success that leaves a closed breaker as it is, with no streak to
# reset. The empty reply means "counted; the state is as you mirror it".
_RECORD_FAST = """
if V then
  local st, g, ep, k = struct.unpack('<i8i8i8i8', V)
  local g0, o = struct.unpack('<i8i8', ARGV[1], {offset})
  if st == 0 and k == 0 and o == 0 and g == g0 then return '' end
end
"""

_COMMON = """
local H, W = KEYS[1], KEYS[2]
local CLOSED, OPEN, HALF, FORCED, DISABLED = 0, 1, 2, 3, 4
local A = {struct.unpack(ARGS, ARGV[1])}
if V then V = {struct.unpack(STATE, V)} end
"""

_PRELUDE = """
local E_TRIP, E_ATTEMPT, E_RECOVER, E_RETRIP, E_FORCE, E_DISABLE, E_RESET = 1, 2, 3, 4, 5, 6, 7
local S, J = nil, nil
local EV, SRC, X, DIRTY, WDIRTY = 0, 0, 0, false, false
local U, HINT = 0, -1
local NOW = nil

local function now()
  if NOW == nil then
    if A[1] == A[1] then  -- pinned by a test; NaN means the server's clock
      NOW = A[1]
    else
      local t = redis.call('TIME')
      NOW = tonumber(t[1]) + tonumber(t[2]) / 1000000
    end
  end
  return NOW
end

local function load()
  if V then
    S = {st = V[1], g = V[2], ep = V[3], k = V[4], wc = V[5], wf = V[6], ws = V[7],
      wp = V[8], wh = V[9], n = V[10], d = V[11], o = V[12], h = V[13], p = V[14],
      to = V[15], tf = V[16]}
    return
  end
  -- Missing (expired, or a server that restarted empty): recreate it from the seed.
  local t = redis.call('TIME')
  S = {st = A[2], g = A[3], ep = tonumber(t[1]) * 1000000 + tonumber(t[2]), k = 0,
    wc = 0, wf = 0, ws = 0, wp = 0, wh = -1, n = A[4], d = A[5], o = 0, h = 0, p = 0,
    to = 0, tf = 0}
  if S.st == OPEN then S.o = now() - (S.d - A[6]) end
  if S.st == HALF then S.h = now() end
  if W then redis.call('DEL', W) end
  DIRTY = true
end

local function save()
  local v = struct.pack(STATE, S.st, S.g, S.ep, S.k, S.wc, S.wf, S.ws, S.wp, S.wh, S.n,
    S.d, S.o, S.h, S.p, S.to, S.tf)
  if S.st >= FORCED then
    redis.call('SET', H, v)  -- an operator override does not expire
  else
    redis.call('SET', H, v, 'PX', TTL)
  end
  if WDIRTY then redis.call('PEXPIRE', W, TTL) end
end

local function reply(ok)
  local c = J or {S.k, S.wc, S.wf, S.ws, S.to, S.tf}
  local t = 0
  if S.st == OPEN then t = now() - S.o elseif S.st == HALF then t = now() - S.h end
  local src = S.st
  if EV ~= 0 then src = SRC end
  return struct.pack(REPLY, S.st, S.g, S.ep, EV, src, ok, c[1], c[2], c[3], c[4], c[5],
    c[6], S.n, S.d, t, X)
end

-- The trip rules, exactly as BreakerPolicy.trip_reason decides them.
local function trip_due()
  if THRESHOLD > 0 and S.k >= THRESHOLD then return true end
  if WKIND > 0 and S.wc > 0 and S.wc >= MINCALLS then
    if S.wf / S.wc >= RATE then return true end
    if SLOWRATE > 0 and S.ws / S.wc >= SLOWRATE then return true end
  end
  return false
end

-- BreakerPolicy.open_duration, with the jitter U drawn by the caller; HINT is a floor.
local function open_for(n)
  local base = RESET_TIMEOUT
  if MULT ~= 1 and n > 1 then base = base * MULT ^ (n - 1) end
  if MAXRESET > 0 and base > MAXRESET then base = MAXRESET end
  base = base * (1 + U)
  local hint = HINT
  if MAXRESET > 0 and hint > MAXRESET then hint = MAXRESET end
  if hint > base then base = hint end
  return base
end

local function go(target, ev)
  J = {S.k, S.wc, S.wf, S.ws, S.to, S.tf}
  SRC, EV, DIRTY = S.st, ev, true
  S.g = S.g + 1
  S.p, S.to, S.tf = 0, 0, 0
  if target == OPEN then
    if ev == E_RETRIP then S.n = S.n + 1 else S.n = 1 end
    S.d = open_for(S.n)
    S.o = now()
  elseif target == HALF then
    S.h = now()
  elseif target == CLOSED then
    S.k, S.n, S.d = 0, 0, RESET_TIMEOUT
    S.wc, S.wf, S.ws, S.wp, S.wh = 0, 0, 0, 0, -1
    if W then redis.call('DEL', W) end
    WDIRTY = false
  end
  S.st = target
end

-- Count window: one byte per slot in the string W (bit 1 failed, bit 2 slow).
local function count_add(o)
  if S.wc == WSIZE then
    local old = string.byte(redis.call('GETRANGE', W, S.wp, S.wp))
    if old then
      S.wf = S.wf - old % 2
      S.ws = S.ws - math.floor(old / 2) % 2
    end
  else
    S.wc = S.wc + 1
  end
  redis.call('SETRANGE', W, S.wp, string.char(o))
  S.wf = S.wf + o % 2
  S.ws = S.ws + math.floor(o / 2) % 2
  S.wp = (S.wp + 1) % WSIZE
  DIRTY, WDIRTY = true, true
end

-- Time window: one-second buckets c<i>, f<i>, s<i> in the hash W, i = second % WSIZE.
local function time_roll()
  local sec = math.floor(now())
  if S.wh < 0 or sec - S.wh >= WSIZE then
    if S.wc > 0 then
      redis.call('DEL', W)
      S.wc, S.wf, S.ws = 0, 0, 0
    end
    S.wh = sec
    DIRTY = true
  elseif sec > S.wh then
    for s = S.wh + 1, sec do
      local i = s % WSIZE
      local b = redis.call('HMGET', W, 'c' .. i, 'f' .. i, 's' .. i)
      if b[1] then
        S.wc = S.wc - tonumber(b[1])
        S.wf = S.wf - (tonumber(b[2]) or 0)
        S.ws = S.ws - (tonumber(b[3]) or 0)
        redis.call('HDEL', W, 'c' .. i, 'f' .. i, 's' .. i)
      end
    end
    S.wh = sec
    DIRTY = true
  end
  return S.wh % WSIZE
end

local function time_add(o)
  local i = time_roll()
  redis.call('HINCRBY', W, 'c' .. i, 1)
  if o % 2 == 1 then redis.call('HINCRBY', W, 'f' .. i, 1) end
  if math.floor(o / 2) % 2 == 1 then redis.call('HINCRBY', W, 's' .. i, 1) end
  S.wc = S.wc + 1
  S.wf = S.wf + o % 2
  S.ws = S.ws + math.floor(o / 2) % 2
  DIRTY, WDIRTY = true, true
end

local function half_open_timed_out()
  if HOTIMEOUT > 0 and now() - S.h >= HOTIMEOUT then
    X = now() - S.h
    return true
  end
  return false
end
"""

# record: A[7..10] = gen seen, outcome (-1 neutral, else FAILED|SLOW), u, hint.
_RECORD = """
local g0, o = A[7], A[8]
U, HINT = A[9], A[10]
load()
local ok = 0
if S.g == g0 then
  ok = 1
  if S.st == CLOSED then
    if o >= 0 then
      local k = 0
      if o % 2 == 1 then k = S.k + 1 end
      if k ~= S.k then
        S.k = k
        DIRTY = true
      end
      if WKIND == 1 then count_add(o) elseif WKIND == 2 then time_add(o) end
      if trip_due() then go(OPEN, E_TRIP) end
    end
  elseif S.st == HALF then
    if o < 0 then
      if S.p > 0 then
        S.p = S.p - 1
        DIRTY = true
      end
    elseif o % 2 == 1 then
      S.tf = S.tf + 1
      go(OPEN, E_RETRIP)
    else
      S.to = S.to + 1
      DIRTY = true
      if S.to >= SUCCESS then go(CLOSED, E_RECOVER) end
    end
  end
end
if DIRTY then save() end
return reply(ok)
"""

# acquire: A[7] = u. Admits a call the caller's mirror cannot admit alone.
_ACQUIRE = """
U = A[7]
load()
local ok = 0
if S.st == OPEN then
  local e = now() - S.o
  if e >= S.d then
    X = e
    go(HALF, E_ATTEMPT)
  end
end
if S.st == CLOSED then
  ok = 1
elseif S.st == HALF then
  if EV == 0 and half_open_timed_out() then
    go(OPEN, E_RETRIP)
  elseif S.p < MAXCALLS then
    S.p = S.p + 1
    DIRTY = true
    ok = 1
  end
end
if DIRTY then save() end
return reply(ok)
"""

# operator: A[7..8] = event code, u. Guarded events obey the policy's guards.
_OPERATOR = """
local ev = A[7]
U = A[8]
load()
local ok = 1
if ev == E_RESET then
  go(CLOSED, E_RESET)
elseif ev == E_FORCE or ev == E_DISABLE then
  if S.st > HALF then
    ok = 0
  elseif ev == E_FORCE then
    go(FORCED, E_FORCE)
  else
    go(DISABLED, E_DISABLE)
  end
elseif ev == E_TRIP then
  if S.st ~= CLOSED then
    ok = 0
  else
    if WKIND == 2 then time_roll() end
    if trip_due() then go(OPEN, E_TRIP) else ok = 2 end
  end
elseif ev == E_ATTEMPT then
  if S.st ~= OPEN then
    ok = 0
  elseif now() - S.o >= S.d then
    X = now() - S.o
    go(HALF, E_ATTEMPT)
  else
    ok = 2
  end
elseif ev == E_RECOVER then
  if S.st ~= HALF then
    ok = 0
  elseif S.to >= SUCCESS then
    go(CLOSED, E_RECOVER)
  else
    ok = 2
  end
elseif ev == E_RETRIP then
  if S.st ~= HALF then
    ok = 0
  elseif S.tf > 0 or half_open_timed_out() then
    go(OPEN, E_RETRIP)
  else
    ok = 2
  end
else
  ok = 0
end
if DIRTY then save() end
return reply(ok)
"""

_STATE = struct.Struct("<" + _STATE_LAYOUT)
_REPLY = struct.Struct("<" + _REPLY_LAYOUT)
_RECORD_ARGS = struct.Struct("<" + _RECORD_LAYOUT)
_ACQUIRE_ARGS = struct.Struct("<" + _ACQUIRE_LAYOUT)
_OPERATOR_ARGS = struct.Struct("<" + _OPERATOR_LAYOUT)
#: The names of the state's fields, for :meth:`RedisStore.describe`.
_FIELDS = (
    "state", "gen", "epoch", "streak", "window_calls", "window_failures", "window_slow",
    "window_slot", "window_head", "episode", "open_duration", "opened_at",
    "half_open_since", "permits", "trial_successes", "trial_failures",
)  # fmt: skip
_UNPINNED = float("nan")


def _lua_number(value: float) -> str:
    text = repr(float(value))
    return text[:-2] if text.endswith(".0") else text


def _ttl_seconds(policy: BreakerPolicy, floor: float) -> float:
    """At least ``floor``, twice the longest open duration, window and half-open timeout."""
    longest = policy.max_reset_timeout or policy.reset_timeout * (1.0 + policy.reset_timeout_jitter)
    window = policy.window.seconds if isinstance(policy.window, TimeWindow) else 0
    return max(floor, 2 * longest, 2 * window, 2 * (policy.half_open_timeout or 0.0))


def _header(policy: BreakerPolicy, ttl_ms: int) -> str:
    """The policy's figures as Lua constants, prepended to every script of that policy."""
    window = policy.window
    kind, size = 0, 0
    if isinstance(window, CountWindow):
        kind, size = 1, window.size
    elif isinstance(window, TimeWindow):
        kind, size = 2, window.seconds
    figures = {
        "THRESHOLD": policy.failure_threshold or -1,
        "WKIND": kind,
        "WSIZE": size,
        "MINCALLS": policy.effective_minimum_calls,
        "RATE": policy.failure_rate_threshold,
        "SLOWRATE": policy.slow_call_rate_threshold if policy.slow_call_duration else -1,
        "SUCCESS": policy.success_threshold,
        "MAXCALLS": policy.half_open_max_calls,
        "RESET_TIMEOUT": policy.reset_timeout,
        "MULT": policy.reset_timeout_multiplier,
        "MAXRESET": policy.max_reset_timeout or -1,
        "HOTIMEOUT": policy.half_open_timeout or -1,
        "TTL": ttl_ms,
    }
    return "".join(f"local {name} = {_lua_number(value)}\n" for name, value in figures.items())


class _Script:
    """One Lua script: its text and SHA1, run with EVALSHA (loaded on NOSCRIPT)."""

    __slots__ = ("sha", "store", "text")

    def __init__(self, store: RedisStore, text: str) -> None:
        self.store = store
        self.text = text
        # bytes: redis-py sends them as they are (no encoding per call)
        self.sha = hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest().encode()

    def run(self, keys: tuple[bytes, ...], args: bytes) -> bytes:
        """EVALSHA on the store's sync client."""
        client = self.store._sync_client()
        try:
            reply: bytes = client.execute_command(  # type: ignore[no-untyped-call]
                "EVALSHA", self.sha, len(keys), *keys, args
            )
        except self.store.no_script:  # a new or restarted server: load it, once
            client.script_load(self.text)
            reply = client.execute_command(  # type: ignore[no-untyped-call]
                "EVALSHA", self.sha, len(keys), *keys, args
            )
        return reply

    async def arun(self, keys: tuple[bytes, ...], args: bytes) -> bytes:
        """EVALSHA on the store's asyncio client for the running loop."""
        client = self.store._async_client()
        try:
            reply: bytes = await client.execute_command(  # type: ignore[no-untyped-call]
                "EVALSHA", self.sha, len(keys), *keys, args
            )
        except self.store.no_script:
            await client.script_load(self.text)
            reply = await client.execute_command(  # type: ignore[no-untyped-call]
                "EVALSHA", self.sha, len(keys), *keys, args
            )
        return reply


def _reply(raw: bytes) -> StoreReply:
    """Unpack a script's reply into a :class:`StoreReply`."""
    return StoreReply._make(_REPLY.unpack(raw))


class _Entry:
    """One breaker's two keys and the three scripts of its policy."""

    __slots__ = (
        "_acquire",
        "_operator",
        "_record",
        "keys",
        "now",
        "retry_interval",
        "sync_interval",
    )

    def __init__(self, store: RedisStore, name: str, policy: BreakerPolicy) -> None:
        # Without a window a breaker has one key: one argument less to send per call.
        keys = store.keys(name)[: 1 if policy.window is None else 2]
        self.keys = tuple(key.encode() for key in keys)
        self._record, self._acquire, self._operator = store._scripts(policy)
        self.now = store.now
        self.retry_interval = store.retry_interval
        self.sync_interval = store.sync_interval

    def __repr__(self) -> str:
        return f"<RedisStore entry {self.keys[0].decode()!r}>"

    def record(
        self, gen: int, outcome: int, u: float, hint: float | None, seed: Seed
    ) -> StoreReply | None:
        """Count one outcome; see :class:`~breaker_fsm._store.SharedState`."""
        now = _UNPINNED if self.now is None else self.now()
        args = _RECORD_ARGS.pack(now, *seed, gen, outcome, u, -1.0 if hint is None else hint)
        raw = self._record.run(self.keys, args)
        return _reply(raw) if raw else None

    def acquire(self, u: float, seed: Seed) -> StoreReply:
        """Admit a call the mirror cannot admit alone."""
        now = _UNPINNED if self.now is None else self.now()
        return _reply(self._acquire.run(self.keys, _ACQUIRE_ARGS.pack(now, *seed, u)))

    def operator(self, event: int, u: float, seed: Seed) -> StoreReply:
        """Apply an operator event."""
        now = _UNPINNED if self.now is None else self.now()
        return _reply(self._operator.run(self.keys, _OPERATOR_ARGS.pack(now, *seed, event, u)))

    async def arecord(
        self, gen: int, outcome: int, u: float, hint: float | None, seed: Seed
    ) -> StoreReply | None:
        """:meth:`record` on the asyncio client."""
        now = _UNPINNED if self.now is None else self.now()
        args = _RECORD_ARGS.pack(now, *seed, gen, outcome, u, -1.0 if hint is None else hint)
        raw = await self._record.arun(self.keys, args)
        return _reply(raw) if raw else None

    async def aacquire(self, u: float, seed: Seed) -> StoreReply:
        """:meth:`acquire` on the asyncio client."""
        now = _UNPINNED if self.now is None else self.now()
        return _reply(await self._acquire.arun(self.keys, _ACQUIRE_ARGS.pack(now, *seed, u)))

    async def aoperator(self, event: int, u: float, seed: Seed) -> StoreReply:
        """:meth:`operator` on the asyncio client."""
        now = _UNPINNED if self.now is None else self.now()
        args = _OPERATOR_ARGS.pack(now, *seed, event, u)
        return _reply(await self._operator.arun(self.keys, args))


#: Connection settings carried over when one client (sync or asyncio) is derived from the
#: other; anything fancier: pass both clients.
_CARRIED = frozenset(
    {
        "host",
        "port",
        "path",
        "db",
        "username",
        "password",
        "credential_provider",
        "socket_timeout",
        "socket_connect_timeout",
        "client_name",
        "protocol",
        "ssl_keyfile",
        "ssl_certfile",
        "ssl_cert_reqs",
        "ssl_ca_certs",
        "ssl_ca_data",
        "ssl_ca_path",
        "ssl_check_hostname",
        "ssl_password",
        "ssl_min_version",
        "ssl_ciphers",
    }
)


class RedisStore:
    """Breaker state shared through Redis: pass it as ``CircuitBreaker(..., store=...)``.

    Args:
        client: a ``redis://`` URL, a ``redis.Redis`` or a ``redis.asyncio.Redis``. From a
            URL the store builds its own clients with ``timeout`` and no retries. A client
            you pass is used as it is: give it a short ``socket_timeout`` and no retries
            (``retry=Retry(NoBackoff(), 0)``), or a dead Redis slows every call down.
            The other kind of client (sync for ``call`` and ``send``, asyncio for
            ``acall`` and ``asend``) is derived from it unless you pass it too.
        namespace: prefix of every key.
        timeout: seconds to wait for Redis (connect and reply) before degrading, for the
            clients the store builds.
        ttl: seconds the keys of an unused breaker live (at least; refreshed on write).
        retry_interval: seconds a degraded breaker runs locally before it asks Redis again.
        sync_interval: seconds a breaker mirroring ``forced_open`` or ``disabled`` trusts
            its mirror before asking Redis again.
        async_client: the ``redis.asyncio.Redis`` client for ``acall`` and ``asend``.
        now: for tests only: a function whose value the scripts use instead of the
            server's ``TIME`` (every process sharing a breaker must use the same one).
    """

    def __init__(
        self,
        client: str | redis_sync.Redis | redis_async.Redis,
        *,
        namespace: str = "breaker_fsm",
        timeout: float = 0.05,
        ttl: float = 3600.0,
        retry_interval: float = 1.0,
        sync_interval: float = 1.0,
        async_client: redis_async.Redis | None = None,
        now: Callable[[], float] | None = None,
    ) -> None:
        import redis
        import redis.asyncio

        if not namespace:
            raise ValueError("a RedisStore needs a non-empty namespace")
        for label, value in (
            ("timeout", timeout),
            ("ttl", ttl),
            ("retry_interval", retry_interval),
            ("sync_interval", sync_interval),
        ):
            if not value > 0:
                raise ValueError(f"{label} must be > 0, got {value!r}")
        self.namespace = namespace
        self.timeout = float(timeout)
        self.ttl = float(ttl)
        self.retry_interval = float(retry_interval)
        self.sync_interval = float(sync_interval)
        self.now = now
        self.no_script: type[Exception] = redis.exceptions.NoScriptError
        self._url: str | None = None
        self._client: redis_sync.Redis | None = None
        self._owns_client = False
        self._shared_aclient: redis_async.Redis | None = async_client
        self._aclients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, redis_async.Redis]
        self._aclients = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()
        self._script_cache: dict[tuple[BreakerPolicy, int], tuple[_Script, _Script, _Script]] = {}
        pool = getattr(client, "connection_pool", None)
        if pool is not None and pool.connection_kwargs.get("decode_responses"):
            raise ValueError(
                "RedisStore needs a client without decode_responses: replies are binary"
            )
        if isinstance(client, str):
            self._url = client
        elif isinstance(client, redis.asyncio.Redis):
            if async_client is None:
                self._shared_aclient = client
        elif isinstance(client, redis.Redis):
            self._client = client
        else:
            raise TypeError(
                f"RedisStore needs a redis:// URL, a redis.Redis or a redis.asyncio.Redis, "
                f"got {type(client).__name__}"
            )

    def __repr__(self) -> str:
        where = self._url or repr(self._client or self._shared_aclient)
        return f"RedisStore({where}, namespace={self.namespace!r})"

    # ------------------------------------------------------------------ SharedStore

    def bind(self, name: str, policy: BreakerPolicy) -> _Entry:
        """The shared entry of breaker ``name`` under ``policy``."""
        return _Entry(self, name, policy)

    def keys(self, name: str) -> tuple[str, str]:
        """The two Redis keys of breaker ``name``: its state and its window."""
        base = f"{self.namespace}:{{{name}}}"
        return base, base + ":w"

    def describe(self, name: str) -> dict[str, float] | None:
        """Breaker ``name``'s shared state, decoded (``None`` when it has none).

        The state is one string of 16 packed doubles, which is what makes a script cheap;
        this reads it for people (an operator's console, a test).
        """
        raw = self._sync_client().get(self.keys(name)[0])
        if raw is None:
            return None
        return dict(zip(_FIELDS, _STATE.unpack(raw), strict=True))  # type: ignore[arg-type]

    def _scripts(self, policy: BreakerPolicy) -> tuple[_Script, _Script, _Script]:
        ttl_ms = int(min(_ttl_seconds(policy, self.ttl), 10 * 365 * 86400.0) * 1000)
        key = (policy, ttl_ms)
        scripts = self._script_cache.get(key)
        if scripts is None:
            head = _header(policy, ttl_ms)
            fast = ""
            if policy.window is None:  # where the gen seen starts in record's argument
                offset = 1 + struct.calcsize("<" + _SEED_LAYOUT)
                fast = _RECORD_FAST.replace("{offset}", str(offset))
            record = head + _args(_RECORD_LAYOUT) + _COMMON + _PRELUDE + _RECORD
            acquire = head + _args(_ACQUIRE_LAYOUT) + _COMMON + _PRELUDE + _ACQUIRE
            operator = head + _args(_OPERATOR_LAYOUT) + _COMMON + _PRELUDE + _OPERATOR
            scripts = (  # the fast path first: it needs none of the rest
                _Script(self, _START + fast + record),
                _Script(self, _START + acquire),
                _Script(self, _START + operator),
            )
            self._script_cache[key] = scripts
        return scripts

    # ------------------------------------------------------------------ clients

    def _options(self, *, asyncio: bool) -> dict[str, Any]:
        """Client options for the clients the store builds: its timeout and no retries.

        Each kind of client gets its own kind of ``Retry``: redis-py 8 warns when an asyncio
        client is handed a sync one (and converts it), redis-py 5 to 7 silently accept both.
        """
        from redis.asyncio.retry import Retry as AsyncRetry
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        retry = AsyncRetry(NoBackoff(), 0) if asyncio else Retry(NoBackoff(), 0)
        return {
            "socket_timeout": self.timeout,
            "socket_connect_timeout": self.timeout,
            "retry": retry,
        }

    def _sync_client(self) -> redis_sync.Redis:
        client = self._client
        if client is None:
            with self._lock:
                client = self._client
                if client is None:
                    import redis

                    if self._url is not None:
                        client = redis.Redis.from_url(self._url, **self._options(asyncio=False))
                    else:
                        client = redis.Redis.from_pool(  # owns the pool: closes it
                            redis.ConnectionPool(
                                **self._derive(self._shared_aclient, asyncio=False)
                            )
                        )
                    self._client = client
                    self._owns_client = True
        return client

    def _async_client(self) -> redis_async.Redis:
        if self._shared_aclient is not None:
            return self._shared_aclient
        loop = asyncio.get_running_loop()
        client = self._aclients.get(loop)
        if client is None:
            import redis.asyncio

            if self._url is not None:
                client = redis.asyncio.Redis.from_url(self._url, **self._options(asyncio=True))
            else:
                client = redis.asyncio.Redis.from_pool(  # owns the pool: closes it
                    redis.asyncio.ConnectionPool(**self._derive(self._client, asyncio=True))
                )
            self._aclients[loop] = client
        return client

    def _derive(self, source: Any, *, asyncio: bool) -> dict[str, Any]:
        """Connection-pool arguments for the other kind of client than ``source``."""
        import redis.asyncio.connection
        import redis.connection

        if source is None:  # pragma: no cover - the constructor always sets one
            raise TypeError("RedisStore has no client to derive another one from")
        pool = source.connection_pool
        target = redis.asyncio.connection if asyncio else redis.connection
        name = pool.connection_class.__name__
        connection_class = getattr(target, name, None)
        if name not in ("Connection", "SSLConnection", "UnixDomainSocketConnection") or (
            connection_class is None
        ):
            raise TypeError(
                f"RedisStore cannot derive a {'asyncio' if asyncio else 'sync'} client from a "
                f"{name} pool: pass {'async_client=' if asyncio else 'a redis.Redis'} too"
            )
        kwargs = {k: v for k, v in pool.connection_kwargs.items() if k in _CARRIED}
        if name == "UnixDomainSocketConnection":
            kwargs.pop("host", None)
            kwargs.pop("port", None)
        options = self._options(asyncio=asyncio)  # fail fast: no retries, and a timeout if it had none
        for key in ("socket_timeout", "socket_connect_timeout"):
            if kwargs.get(key) is not None:
                del options[key]
        return {"connection_class": connection_class, **kwargs, **options}

    # ------------------------------------------------------------------ closing

    def close(self) -> None:
        """Close the sync client the store built (a client you passed stays open)."""
        with self._lock:
            client = self._client if self._owns_client else None
            if client is not None:
                self._client = None
                self._owns_client = False
        if client is not None:
            client.close()

    async def aclose(self) -> None:
        """Close the asyncio client the store built for the running event loop."""
        loop = asyncio.get_running_loop()
        client = self._aclients.pop(loop, None)
        if client is not None:
            await client.aclose()
