"""Call events: one :class:`CallRecord` per call, for call sinks (``call_sinks=``).

Transitions are rare and go to the audit trail; calls are many, so a breaker builds a
call record only when a call sink is registered, and a breaker with one leaves its inlined
fast paths (they stay free of the check). :class:`CallLogSink` writes the records as JSON
Lines, the format that :mod:`breaker_fsm.replay` reads back.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ._outcome import FAILED, SLOW

__all__ = ["CallLogSink", "CallRecord", "CallSink", "Outcome", "call_record"]

#: What a call came to, as a call record names it.
Outcome = Literal["success", "failure", "ignored", "refused"]


@dataclass(frozen=True, slots=True)
class CallRecord:
    """One call through a breaker: its outcome and timing."""

    breaker: str
    """The breaker's name."""
    outcome: Outcome
    """``"success"``, ``"failure"``, ``"ignored"`` (counted neither way) or ``"refused"``."""
    slow: bool
    """Slower than the policy's ``slow_call_duration``."""
    start: float
    """The breaker's monotonic clock when the call was admitted (or refused)."""
    duration: float | None
    """Seconds the operation took; ``None`` for a refused call."""
    exception: BaseException | None = None
    """What the operation raised, if anything."""
    shadowed: bool = False
    """Shadow mode (``enforce=False``): an enforcing breaker would have refused this call;
    it ran, and only call sinks hear of its outcome."""

    def as_json(self) -> dict[str, object]:
        """The record as a JSON object (one line of :class:`CallLogSink`).

        ``at`` (monotonic seconds), ``outcome``, ``duration``, ``slow``, ``breaker`` and,
        after an exception, its type's name; ``"shadowed": true`` for a shadowed call.
        """
        line: dict[str, object] = {
            "at": self.start,
            "outcome": self.outcome,
            "duration": self.duration,
            "slow": self.slow,
            "breaker": self.breaker,
        }
        if self.exception is not None:
            line["exception"] = type(self.exception).__qualname__
        if self.shadowed:
            line["shadowed"] = True
        return line


#: Anything that takes a :class:`CallRecord`; called synchronously after each call.
CallSink = Callable[[CallRecord], object]


def call_record(
    breaker: str,
    outcome: int,
    start: float,
    end: float,
    exc: BaseException | None,
    *,
    shadowed: bool = False,
) -> CallRecord:
    """The record of a call that ran, from its outcome flags (see ``_outcome``)."""
    if outcome < 0:
        name: Outcome = "ignored"
    elif outcome & FAILED:
        name = "failure"
    else:
        name = "success"
    slow = outcome > 0 and bool(outcome & SLOW)
    return CallRecord(breaker, name, slow, start, end - start, exc, shadowed)


class CallLogSink:
    """Append each call record to a JSON Lines file, one object a line, flushed as written.

    The file stays open (calls are many); ``close()`` it, or use the sink as a context
    manager. Safe to share between threads and breakers.

    Raises:
        FileNotFoundError: the file's directory does not exist (checked here).
    """

    __slots__ = ("_file", "_lock", "path")

    def __init__(self, path: str | os.PathLike[str]) -> None:
        if not isinstance(path, str | os.PathLike):
            raise TypeError(f"CallLogSink path must be a str or a path, got {type(path).__name__}")
        self.path = Path(path)
        if not self.path.parent.is_dir():
            raise FileNotFoundError(
                f"CallLogSink({str(self.path)!r}): its directory {str(self.path.parent)!r} "
                "does not exist"
            )
        self._lock = threading.Lock()
        self._file = self.path.open("a", encoding="utf-8")

    def __call__(self, record: CallRecord) -> None:
        """Write ``record`` as one line."""
        line = json.dumps(record.as_json(), separators=(",", ":")) + "\n"
        with self._lock:
            self._file.write(line)
            self._file.flush()

    def close(self) -> None:
        """Close the file (later records raise ``ValueError``, which the breaker logs)."""
        with self._lock:
            self._file.close()

    def __enter__(self) -> CallLogSink:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"CallLogSink({str(self.path)!r})"
