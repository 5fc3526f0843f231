"""``Layout``: every slot of a breaker, declared once, with its type and its first value.

The engines (:mod:`~breaker_fsm._transitions`, :mod:`~breaker_fsm._judging`,
:mod:`~breaker_fsm._local`, :mod:`~breaker_fsm._guard`) and the runner
(:mod:`~breaker_fsm._breaker`) are one object: each of those modules adds behaviour and no
slot, so an in-memory breaker is one flat ``__slots__`` layout (``benchmarks/compare.py``
counts the bytes of an idle one; a shared breaker's mirror adds its own two). A new slot
is declared, typed and given its first value here, in one place.

Three kinds of slot: the constructor's arguments (checked by :mod:`~breaker_fsm._arguments`
first); the policy's figures the hot paths read, resolved once, with the flags derived from
them (:meth:`Layout._derive_flags`); and the state, its counters and its lazily built parts
(the transition lock, the audit log, the machine). Once built, the state, the generation
and ``_hot`` are written where :mod:`~breaker_fsm._transitions` says, in its order.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ._arguments import is_async_callable
from ._window import make_window

if TYPE_CHECKING:
    import random

    from ._audit import AuditLog, Sink
    from ._calls import CallSink
    from ._clock import Clock
    from ._machine import BreakerMachine
    from ._policy import BreakerPolicy
    from ._window import CountRing, TimeBuckets

__all__ = ["CLOSED", "DISABLED", "FORCED_OPEN", "HALF_OPEN", "OPEN", "Layout"]

# State codes: indexes into STATES, compared on the hot path instead of strings.
CLOSED, OPEN, HALF_OPEN, FORCED_OPEN, DISABLED = range(5)
_NO_THRESHOLD = 1 << 62  # failure_threshold=None: a streak that is never reached


class Layout:
    """A breaker's slots and their first values (see the module)."""

    __slots__ = (
        "__weakref__",
        "_audit_capacity",
        "_audit_log",
        "_call_sinks",
        "_call_timeout",
        "_clock",
        "_enforce",
        "_err",
        "_fallback",
        "_fast",
        "_gen",
        "_half_open_since",
        "_hot",
        "_ignored",
        "_is_failure",
        "_is_failure_exception",
        "_lock",
        "_machine",
        "_min_calls",
        "_neutral",
        "_ok",
        "_open_duration",
        "_open_episodes",
        "_open_hint",
        "_opened_at",
        "_permits",
        "_plain",
        "_rate",
        "_recorded",
        "_rejections",
        "_rejects_inline",
        "_rng",
        "_seq",
        "_shadowed",
        "_sink_errors",
        "_sinks",
        "_slow",
        "_slow_calls",
        "_slow_rate",
        "_state",
        "_streak",
        "_sync_fallback",
        "_threshold",
        "_timed",
        "_tlock_obj",
        "_trial_fail",
        "_trial_ok",
        "_window",
        "name",
        "policy",
    )

    name: str
    policy: BreakerPolicy
    _audit_capacity: int
    _audit_log: AuditLog | None
    _call_sinks: tuple[CallSink, ...]
    _call_timeout: float | None
    _clock: Clock
    _enforce: bool
    _err: int
    _fallback: Callable[..., Any] | None
    _fast: bool
    _gen: int
    _half_open_since: float
    _hot: bool
    _ignored: tuple[type[BaseException], ...]
    _is_failure: Callable[[Any], bool | float | None] | None
    _is_failure_exception: Callable[[BaseException], bool | float | None] | None
    _lock: threading.Lock
    _machine: BreakerMachine | None
    _min_calls: int
    _neutral: int
    _ok: itertools.count[int]
    _open_duration: float
    _open_episodes: int
    _open_hint: float | None
    _opened_at: float
    _permits: int
    _plain: bool
    _rate: float
    _recorded: tuple[type[BaseException], ...]
    _rejections: itertools.count[int] | None
    _rejects_inline: bool
    _rng: random.Random | None
    _seq: int
    _shadowed: itertools.count[int] | None
    _sink_errors: int
    _sinks: tuple[Sink, ...]
    _slow: float | None
    _slow_calls: int
    _slow_rate: float
    _state: int
    _streak: int
    _sync_fallback: Callable[..., Any] | None
    _threshold: int
    _timed: bool
    _tlock_obj: threading.RLock | None
    _trial_fail: int
    _trial_ok: int
    _window: CountRing | TimeBuckets | None

    #: Whether a closed call may take the inlined fast path (``_fast``); a shared
    #: breaker's every call goes through its mirror.
    _closed_inline = True

    def __init__(
        self,
        name: str,
        policy: BreakerPolicy,
        clock: Clock,
        *,
        fallback: Callable[..., Any] | None,
        sinks: tuple[Sink, ...],
        is_failure: Callable[[Any], bool | float | None] | None,
        is_failure_exception: Callable[[BaseException], bool | float | None] | None,
        rng: random.Random | None,
        audit_capacity: int,
        call_sinks: tuple[CallSink, ...],
    ) -> None:
        self.name = name
        self.policy = policy
        self._clock = clock
        self._fallback = fallback
        self._sync_fallback = fallback  # what call() runs: an async one cannot answer it
        if fallback is not None and is_async_callable(fallback):
            self._sync_fallback = _awaited_only(name, fallback)
        self._sinks = sinks
        self._call_sinks = call_sinks
        self._is_failure = is_failure
        self._is_failure_exception = is_failure_exception
        self._rng = rng
        self._audit_capacity = audit_capacity  # the log itself is built on the first transition
        self._audit_log = None
        self._lock = threading.Lock()
        self._tlock_obj = None
        self._machine = None

        # Policy figures the hot paths read, resolved once.
        self._recorded = policy.record_exceptions
        self._ignored = policy.ignore_exceptions
        # Every Exception is a failure (the default): the fast path classifies nothing.
        self._plain = (
            not self._ignored and Exception in self._recorded and is_failure_exception is None
        )
        self._threshold = (
            policy.failure_threshold if policy.failure_threshold is not None else _NO_THRESHOLD
        )
        self._window = make_window(policy.window)
        self._min_calls = policy.effective_minimum_calls
        self._rate = policy.failure_rate_threshold
        self._slow = policy.slow_call_duration
        self._slow_rate = policy.slow_call_rate_threshold
        self._enforce = policy.enforce
        self._call_timeout = policy.call_timeout
        self._derive_flags()

        # The state: closed in generation 0, nothing counted yet.
        self._state = CLOSED
        self._hot = self._fast
        self._gen = 0
        self._seq = 0
        self._streak = 0
        self._ok = itertools.count()
        self._rejections = None  # built on the first refusal: LocalEngine._rejected
        self._shadowed = None  # built on the first shadowed call: LocalEngine._shadow_count
        self._err = 0
        self._neutral = 0
        self._slow_calls = 0
        self._sink_errors = 0
        self._opened_at = 0.0
        self._open_duration = policy.reset_timeout
        self._open_episodes = 0
        self._open_hint = None
        self._half_open_since = 0.0
        self._permits = 0
        self._trial_ok = 0
        self._trial_fail = 0

    def _derive_flags(self) -> None:
        """Derive the flags the hot paths test from the policy's figures and the call sinks.

        ``_timed``: a call's start is read (slow-call timing, the call timeout, call sinks).
        ``_fast``: the inlined closed path covers the breaker: nothing timed, no result
        predicate, no time buckets (and not a shared breaker). ``_rejects_inline``: an open
        breaker refuses right in ``call``: it enforces, and no call sink hears of refusals.
        ``_hot`` is the caller's to set (see ``Transitions._apply``).
        """
        sinks = bool(self._call_sinks)
        window = self.policy.window
        self._timed = self._slow is not None or self._call_timeout is not None or sinks
        self._fast = (
            self._closed_inline
            and not self._timed
            and self._is_failure is None
            and (window is None or window.kind == "count")
        )
        self._rejects_inline = self._enforce and not sinks


def _awaited_only(name: str, fallback: Callable[..., Any]) -> Callable[..., Any]:
    """What ``call`` runs in place of an ``async def`` fallback, which only ``acall`` awaits.

    A clear ``TypeError``; the fallback is not called, so no coroutine is left unawaited.
    """
    label = getattr(fallback, "__qualname__", None) or repr(fallback)

    def awaited_only(*args: object, **kwargs: object) -> Any:
        raise TypeError(
            f"breaker {name!r}: its fallback {label} is an async function, which call() "
            "cannot await: use `await breaker.acall(...)`, or give a plain fallback"
        )

    return awaited_only
