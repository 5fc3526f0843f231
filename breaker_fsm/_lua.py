"""The Lua side of :class:`~breaker_fsm.redis.RedisStore`: scripts, layouts, constants.

Each decision a shared breaker makes is one of three scripts (*record*, *acquire*,
*operator*), built per policy from the pieces here: the policy's figures as Lua constants
(:func:`header`), the argument layout, and the state and event codes and the transition
table, which are generated from :class:`~breaker_fsm.BreakerMachine`.
"""

from __future__ import annotations

import hashlib
import struct
from typing import TYPE_CHECKING

from ._machine import STATES, legal_moves
from ._policy import CountWindow, TimeWindow
from ._store import EVENT_CODES, EVENTS

if TYPE_CHECKING:
    from ._policy import BreakerPolicy

__all__ = [
    "ACQUIRE",
    "ACQUIRE_ARGS",
    "ACQUIRE_LAYOUT",
    "COMMON",
    "FIELDS",
    "OPERATOR",
    "OPERATOR_ARGS",
    "OPERATOR_LAYOUT",
    "PEEK",
    "PEEK_ARGS",
    "PRELUDE",
    "RECORD",
    "RECORD_ARGS",
    "RECORD_FAST",
    "RECORD_LAYOUT",
    "REPLY",
    "SEED_LAYOUT",
    "START",
    "STATE",
    "SYNC",
    "SYNC_ARGS",
    "SYNC_LAYOUT",
    "UNPINNED",
    "fingerprint",
    "header",
    "lua_arguments",
    "lua_string",
    "trial_lease",
    "ttl_seconds",
]

# ------------------------------------------------------------------------ the Lua scripts
#
# Everything crosses the wire packed as little-endian doubles with Redis' built-in
# ``struct`` library: one argument in (redis-py packs one argument far faster than a
# dozen), one string out, and the state itself is one string value. Number <-> text
# conversions are what a Lua script spends most of its time on; binary has none.
#
# ARGV[1], unpacked into A:
#   A[1]  "now" in seconds (NaN = the server's TIME; tests may pin it)
#   A[2..7]  the seed: state, gen, episode, open duration, seconds left open, epoch
#   A[8..]  the script's own arguments, then the caller's origin (8 bytes, last)
# The state (key H) is 18 numbers, laid out as STATE (a state written before the policy
# fingerprint existed has 16, before the trial lease 17: the missing ones read as 0);
# every reply is 17, as StoreReply.
# Layouts are written once, for Python's struct ("q" 8-byte integer, "d" double), and
# translated for Redis' (which has no repeat counts and spells the integer "i8").
#
# A script that makes a transition (or recreates a lost entry) PUBLISHes it on the
# store's channel: its reply, the caller's origin and the state key, so that every
# member's mirror follows at once (breaker_fsm._push); the caller itself skips its own.


STATE_LAYOUT = "qqqqqqqqqqdddqqqqd"  # st g ep k wc wf ws wp wh n | d o h | p to tf | fp | lt
REPLY_LAYOUT = "qqqqqqqqqqqqqdddq"  # st g ep ev src ok k wc wf ws to tf n | d t x | fp
SEED_LAYOUT = "dqqqddq"  # now | seed: st g n d rem ep
RECORD_LAYOUT = SEED_LAYOUT + "qqddq"  # gen seen, outcome, u, hint, origin
ACQUIRE_LAYOUT = SEED_LAYOUT + "dq"  # u, origin
OPERATOR_LAYOUT = SEED_LAYOUT + "qdq"  # event, u, origin
SYNC_LAYOUT = SEED_LAYOUT + "q"  # origin
PEEK_LAYOUT = "d"  # now


def lua_layout(layout: str) -> str:
    """A struct layout for Redis' Lua (little-endian, ``q`` spelled ``i8``)."""
    return "<" + layout.replace("q", "i8")


def lua_arguments(layout: str) -> str:
    """Declare the formats a script unpacks and packs."""
    return (
        f"local ARGS = '{lua_layout(layout)}'\n"
        f"local STATE = '{lua_layout(STATE_LAYOUT)}'\n"
        f"local REPLY = '{lua_layout(REPLY_LAYOUT)}'\n"
    )


START = """
local V = redis.call('GET', KEYS[1])
"""

# record's common case, answered first, before anything else is set up (window-less
# policies only): a success that leaves a closed breaker as it is, with no streak to
# reset. The empty reply means "counted; the state is as you mirror it".
RECORD_FAST = """
if V then
  local st, g, ep, k = struct.unpack('<i8i8i8i8', V)
  local g0, o = struct.unpack('<i8i8', ARGV[1], {offset})
  if st == 0 and k == 0 and o == 0 and g == g0 then return '' end
end
"""

COMMON = """
local H, W = KEYS[1], KEYS[2]
{states}
local A = {struct.unpack(ARGS, ARGV[1])}
if V then
  if #V < 144 then V = V .. string.rep('\\0', 144 - #V) end  -- older layouts: 0
  V = {struct.unpack(STATE, V)}
end
"""

PRELUDE = """
{events}
local S, J = nil, nil
local EV, SRC, X, DIRTY, WDIRTY, CREATED = 0, 0, 0, false, false, false
local FP0 = FP  -- the fingerprint of the policy that last wrote the state
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
  if V and (V[2] >= A[3] or V[3] ~= A[7]) then
    S = {st = V[1], g = V[2], ep = V[3], k = V[4], wc = V[5], wf = V[6], ws = V[7],
      wp = V[8], wh = V[9], n = V[10], d = V[11], o = V[12], h = V[13], p = V[14],
      to = V[15], tf = V[16], lt = V[18]}
    FP0 = V[17]
    return
  end
  -- Missing (expired, or a server that restarted empty), or behind the caller's mirror of
  -- this same entry (a failover lost transitions that the primary had acknowledged):
  -- recreate it from the seed, so that the fleet goes on from the newest state a member
  -- saw. (A mirror of an older entry, one that expired, follows the new entry instead.)
  local t = redis.call('TIME')
  S = {st = A[2], g = A[3], ep = tonumber(t[1]) * 1000000 + tonumber(t[2]), k = 0,
    wc = 0, wf = 0, ws = 0, wp = 0, wh = -1, n = A[4], d = A[5], o = 0, h = 0, p = 0,
    to = 0, tf = 0, lt = 0}
  if S.st == OPEN then S.o = now() - (S.d - A[6]) end
  if S.st == HALF then S.h = now() end
  if W then redis.call('DEL', W) end
  DIRTY, CREATED = true, true
end

local function save()
  local v = struct.pack(STATE, S.st, S.g, S.ep, S.k, S.wc, S.wf, S.ws, S.wp, S.wh, S.n,
    S.d, S.o, S.h, S.p, S.to, S.tf, FP, S.lt)
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
    c[6], S.n, S.d, t, X, FP0)
end

-- The reply; a transition (or a recreated entry) is published to every member too.
local function finish(ok)
  local r = reply(ok)
  if EV ~= 0 or CREATED then
    redis.call('PUBLISH', CHANNEL, r .. string.sub(ARGV[1], -8) .. H)
  end
  return r
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
  S.p, S.to, S.tf, S.lt = 0, 0, 0, 0
  if target == OPEN then
    if ev == E_RETRIP then S.n = S.n + 1 else S.n = 1 end
    S.d = open_for(S.n)
    S.o = now()
  elseif target == HALF then
    S.h = now()
  elseif target == CLOSED then
    S.k, S.n, S.d = 0, 0, RESET_TIMEOUT
  end
  if target == HALF or target == CLOSED then  -- a fresh measurement
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

-- Every trial permit of the episode is out, the newest for LEASE seconds, and none of
-- them decided the episode: their holders are taken for lost (a process that died
-- mid-trial, an acquire whose reply was lost). Off (-1) with a half-open timeout.
local function lease_lapsed()
  if LEASE > 0 and S.p >= MAXCALLS then
    local since = math.max(S.h, S.lt)
    if now() - since >= LEASE then
      X = now() - since
      return true
    end
  end
  return false
end
"""

# record: A[8..11] = gen seen, outcome (-1 neutral, else FAILED|SLOW), u, hint.
RECORD = """
local g0, o = A[8], A[9]
U, HINT = A[10], A[11]
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
      S.tf, S.k = S.tf + 1, S.k + 1
      go(OPEN, E_RETRIP)
    else
      S.to, S.k = S.to + 1, 0
      DIRTY = true
      if S.to >= SUCCESS then go(CLOSED, E_RECOVER) end
    end
  end
end
if DIRTY then save() end
return finish(ok)
"""

# acquire: A[8] = u. Admits a call the caller's mirror cannot admit alone.
ACQUIRE = """
U = A[8]
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
    S.p, S.lt = S.p + 1, now()
    DIRTY = true
    ok = 1
  elseif EV == 0 and lease_lapsed() then
    go(OPEN, E_RETRIP)  -- a new episode; a lost trial's late outcome is stale
  end
end
if DIRTY then save() end
return finish(ok)
"""

# operator: A[7..8] = event code, u. MOVES (the machine's transition table) says whether
# the event is legal from the state and where it goes; guarded events obey the policy's
# guards (ok = 2 when a guard does not hold), the operator's own events have none.
OPERATOR = """
local ev = A[8]
U = A[9]
load()
local to = MOVES[ev * 8 + S.st]
local ok = 1
if to == nil then
  ok = 0
elseif ev == E_TRIP then
  if WKIND == 2 then time_roll() end
  if trip_due() then go(to, ev) else ok = 2 end
elseif ev == E_ATTEMPT then
  if now() - S.o >= S.d then
    X = now() - S.o
    go(to, ev)
  else
    ok = 2
  end
elseif ev == E_RECOVER then
  if S.to >= SUCCESS then go(to, ev) else ok = 2 end
elseif ev == E_RETRIP then
  if S.tf > 0 or half_open_timed_out() then go(to, ev) else ok = 2 end
else
  go(to, ev)
end
if DIRTY then save() end
return finish(ok)
"""

# sync: the state as a reply, after putting back what the caller's seed shows it lost
# (missing, or behind the caller's mirror of this same entry: load() recreates it, and
# finish() publishes that). A member whose re-read after a lost push found the store
# behind its mirror sends it, so that no member adopts the older state (breaker_fsm._push).
SYNC = """
load()
if DIRTY then save() end
return finish(0)
"""


# peek: the state as a reply, changing nothing (a member re-reading after a lost push).
# Policy-free, so one script serves every breaker; '' when the entry does not exist.
PEEK = """
local V = redis.call('GET', KEYS[1])
if not V then return '' end
if #V < 144 then V = V .. string.rep('\\0', 144 - #V) end
{states}
local s = {struct.unpack(STATE, V)}
local now = struct.unpack(ARGS, ARGV[1])
if now ~= now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local t = 0
if s[1] == OPEN then t = now - s[12] elseif s[1] == HALF then t = now - s[13] end
if t < 0 then t = 0 end  -- "now" was read before a script that began the state
return struct.pack(REPLY, s[1], s[2], s[3], 0, s[1], 0, s[4], s[5], s[6], s[7], s[15],
  s[16], s[10], s[11], t, 0, s[17])
"""


def lua_tables() -> tuple[str, str, str]:
    """The state codes, the event codes and the transition table, as Lua, from the machine.

    The scripts name states and events with these locals; ``MOVES[event * 8 + source]``
    is the target of every legal move, so the operator script's table is the machine's.
    """
    state_names = {"closed": "CLOSED", "open": "OPEN", "half_open": "HALF"}
    state_names |= {"forced_open": "FORCED", "disabled": "DISABLED"}
    event_names = {"trip": "E_TRIP", "attempt_reset": "E_ATTEMPT", "recover": "E_RECOVER"}
    event_names |= {"retrip": "E_RETRIP", "force_open": "E_FORCE", "disable": "E_DISABLE"}
    event_names |= {"reset": "E_RESET"}
    states = ", ".join(state_names[name] for name in STATES)
    events = ", ".join(event_names[name] for name in EVENTS[1:])
    moves = ", ".join(
        f"[{EVENT_CODES[event] * 8 + STATES.index(source)}] = {STATES.index(target)}"
        for (event, source), target in sorted(legal_moves().items())
    )
    return (
        f"local {states} = {', '.join(str(code) for code in range(len(STATES)))}",
        f"local {events} = {', '.join(str(code) for code in range(1, len(EVENTS)))}",
        f"local MOVES = {{{moves}}}",
    )


LUA_STATES, LUA_EVENTS, LUA_MOVES = lua_tables()
COMMON = COMMON.replace("{states}", LUA_STATES)
PEEK = lua_arguments(PEEK_LAYOUT) + PEEK.replace("{states}", LUA_STATES)
PRELUDE = PRELUDE.replace("{events}", LUA_EVENTS + "\n" + LUA_MOVES)

STATE = struct.Struct("<" + STATE_LAYOUT)
REPLY = struct.Struct("<" + REPLY_LAYOUT)
RECORD_ARGS = struct.Struct("<" + RECORD_LAYOUT)
ACQUIRE_ARGS = struct.Struct("<" + ACQUIRE_LAYOUT)
OPERATOR_ARGS = struct.Struct("<" + OPERATOR_LAYOUT)
SYNC_ARGS = struct.Struct("<" + SYNC_LAYOUT)
PEEK_ARGS = struct.Struct("<" + PEEK_LAYOUT)
#: The names of the state's fields, for :meth:`RedisStore.describe`.
FIELDS = (
    "state", "gen", "epoch", "streak", "window_calls", "window_failures", "window_slow",
    "window_slot", "window_head", "episode", "open_duration", "opened_at",
    "half_open_since", "permits", "trial_successes", "trial_failures", "fingerprint",
    "permit_taken_at",
)  # fmt: skip
UNPINNED = float("nan")


def fingerprint(policy: BreakerPolicy) -> int:
    """A 48-bit digest of ``policy`` (exact as a Lua number), the same in every process."""
    digest = hashlib.sha256(policy.model_dump_json().encode()).digest()
    return int.from_bytes(digest[:6], "big") or 1  # 0 means "written before fingerprints"


def lua_string(text: str) -> str:
    """``text`` as a Lua string literal (every byte outside a safe set escaped)."""
    safe = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789:_-.{}")
    return '"' + "".join(chr(b) if b in safe else f"\\{b:03d}" for b in text.encode()) + '"'


def lua_number(value: float) -> str:
    text = repr(float(value))
    return text[:-2] if text.endswith(".0") else text


def ttl_seconds(policy: BreakerPolicy, floor: float) -> float:
    """At least ``floor``, twice the longest open duration, window and half-open timeout."""
    longest = policy.max_reset_timeout or policy.reset_timeout * (1.0 + policy.reset_timeout_jitter)
    window = policy.window.seconds if isinstance(policy.window, TimeWindow) else 0
    return max(floor, 2 * longest, 2 * window, 2 * (policy.half_open_timeout or 0.0))


def trial_lease(policy: BreakerPolicy, margin: float, default: float) -> float:
    """Seconds a fleet's half-open trial permit is held for a holder that never reports.

    Once every permit of an episode is out, the newest for this long, and no trial has
    decided the episode, the *acquire* script retrips it: a process that died mid-trial
    (or whose acquire reply was lost) cannot hold the fleet half-open for ever. It is
    ``-1`` (off) when the policy has a ``half_open_timeout``, which ends any undecided
    episode already; ``call_timeout`` plus ``margin`` (the store's round-trip bound) when
    the policy has one, since no trial can succeed later than that; else ``default``.
    """
    if policy.half_open_timeout is not None:
        return -1.0
    if policy.call_timeout is not None:
        return policy.call_timeout + margin
    return default


def header(policy: BreakerPolicy, ttl_ms: int, channel: str, lease: float = -1.0) -> str:
    """The policy's figures as Lua constants, prepended to every script of that policy.

    ``channel``: where the scripts publish the transitions they make; ``lease``: see
    :func:`trial_lease` (``-1``: off).
    """
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
        "LEASE": lease,
        "TTL": ttl_ms,
        "FP": fingerprint(policy),
    }
    constants = "".join(f"local {name} = {lua_number(value)}\n" for name, value in figures.items())
    return constants + f"local CHANNEL = {lua_string(channel)}\n"
