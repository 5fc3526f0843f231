"""The audit trail: records, sinks, and the tools to read a trail back and verify it.

>>> from breaker_fsm import CircuitBreaker
>>> from breaker_fsm.audit import digest, verify
>>> breaker = CircuitBreaker("docs")
>>> _ = breaker.send("force_open"); _ = breaker.send("reset")
>>> [(r.seq, r.event, r.target) for r in breaker.audit]
[(1, 'force_open', 'forced_open'), (2, 'reset', 'closed')]
>>> first, second = breaker.audit
>>> first.origin == second.origin == breaker.audit.origin, second.prev == digest(first)
(True, True)
>>> summary = verify(breaker.audit)
>>> summary, summary.breakers["docs"].lives
(2, 1)
"""

from ._audit import AuditLog, Chain, Sink, Transition, digest
from ._calls import CallLogSink, CallRecord, CallSink
from ._trail import JsonlSink, LoggingSink, dump_jsonl, read_jsonl
from ._verify import AuditSummary, BreakerSummary, Fork, verify
from .exceptions import AuditError

__all__ = [
    "AuditError",
    "AuditLog",
    "AuditSummary",
    "BreakerSummary",
    "CallLogSink",
    "CallRecord",
    "CallSink",
    "Chain",
    "Fork",
    "JsonlSink",
    "LoggingSink",
    "Sink",
    "Transition",
    "digest",
    "dump_jsonl",
    "read_jsonl",
    "verify",
]
