"""The audit trail: records, sinks, and the tools to read a trail back and verify it.

>>> from breaker_fsm import CircuitBreaker
>>> from breaker_fsm.audit import verify
>>> breaker = CircuitBreaker("docs")
>>> _ = breaker.send("force_open"); _ = breaker.send("reset")
>>> [(r.seq, r.event, r.target) for r in breaker.audit]
[(1, 'force_open', 'forced_open'), (2, 'reset', 'closed')]
>>> verify(breaker.audit)
2
"""

from ._audit import (
    AuditLog,
    JsonlSink,
    LoggingSink,
    Sink,
    Transition,
    dump_jsonl,
    read_jsonl,
    verify,
)
from ._calls import CallLogSink, CallRecord, CallSink
from .exceptions import AuditError

__all__ = [
    "AuditError",
    "AuditLog",
    "CallLogSink",
    "CallRecord",
    "CallSink",
    "JsonlSink",
    "LoggingSink",
    "Sink",
    "Transition",
    "dump_jsonl",
    "read_jsonl",
    "verify",
]
