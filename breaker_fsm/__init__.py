"""breaker_fsm: a circuit breaker built as an explicit, audited finite-state machine.

>>> from breaker_fsm import BreakerPolicy, CircuitBreaker
>>> breaker = CircuitBreaker("users-api", BreakerPolicy(failure_threshold=3))
>>> breaker.state
'closed'
"""

from ._audit import Transition
from ._breaker import BreakerMetrics, CircuitBreaker
from ._calls import CallRecord
from ._circuit import circuit, circuit_registry
from ._clock import Clock, SystemClock
from ._guard import Permit
from ._machine import BreakerMachine
from ._policy import BreakerPolicy, BreakerStats, CountWindow, TimeWindow
from ._registry import BreakerRegistry
from .exceptions import (
    AuditError,
    BreakerError,
    CallTimeoutError,
    CircuitOpenError,
    DiagramError,
    IllegalTransitionError,
    PolicyFileError,
    RegistryError,
    ReplayError,
)

__version__ = "0.1.0"

__all__ = [
    "AuditError",
    "BreakerError",
    "BreakerMachine",
    "BreakerMetrics",
    "BreakerPolicy",
    "BreakerRegistry",
    "BreakerStats",
    "CallRecord",
    "CallTimeoutError",
    "CircuitBreaker",
    "CircuitOpenError",
    "Clock",
    "CountWindow",
    "DiagramError",
    "IllegalTransitionError",
    "Permit",
    "PolicyFileError",
    "RegistryError",
    "ReplayError",
    "SystemClock",
    "TimeWindow",
    "Transition",
    "__version__",
    "circuit",
    "circuit_registry",
]
