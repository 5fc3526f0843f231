"""Every error breaker_fsm raises, under one base class.

::

    BreakerError
    ├── CircuitOpenError        a call was refused (open, forced_open, half-open full)
    ├── CallTimeoutError        an acall ran past call_timeout (also a TimeoutError)
    ├── IllegalTransitionError  an event that is not legal in the current state
    ├── AuditError              an audit trail that is not a legal walk, or a corrupt line
    ├── DiagramError            a diagram format that needs a missing tool (Graphviz, pydot)
    ├── PolicyFileError         a policy file that is missing, unreadable or malformed
    ├── RegistryError           a registry asked for a breaker that conflicts with its own
    └── ReplayError             a call log (or call) that cannot be read or replayed

Invalid policy *values* raise pydantic's ``ValidationError``, which names the field.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

__all__ = [
    "AuditError",
    "BreakerError",
    "CallTimeoutError",
    "CircuitOpenError",
    "DiagramError",
    "IllegalTransitionError",
    "PolicyFileError",
    "RegistryError",
    "ReplayError",
]


class BreakerError(Exception):
    """Base class of every breaker_fsm error.

    Every breaker_fsm error pickles (multiprocessing, Celery and RQ move errors between
    processes) whatever its ``__init__`` takes.
    """

    def __reduce__(self) -> tuple[Any, ...]:
        # Exception's own reduce calls ``cls(*args)``, and ``args`` holds the formatted
        # message, not what ``__init__`` takes. Rebuild without ``__init__`` instead, the
        # way pickle rebuilds any plain object: the same ``args``, then the attributes.
        return (_rebuild, (type(self), self.args), self.__dict__ or None)


def _rebuild(cls: type[BreakerError], args: tuple[Any, ...]) -> BreakerError:
    """An unpickled error before its attributes are restored: ``args`` set, no ``__init__``."""
    error = cls.__new__(cls, *args)
    error.args = args  # OSError's __new__ leaves them to an overriding __init__
    return error


class CircuitOpenError(BreakerError):
    """A call was refused because the breaker does not admit it.

    Attributes:
        breaker: name of the breaker that refused the call.
        state: the state it was in (``"open"``, ``"forced_open"`` or ``"half_open"``).
        retry_after: seconds until a trial call may be admitted, or ``None`` when unknown
            (forced open, or half-open with every trial permit taken).
    """

    # Built as ``CircuitOpenError(breaker, state, retry_after)``. The attributes read
    # ``args``: no Python ``__init__`` runs when a refused call raises one, which halves
    # the cost of a refusal (the hot path of an open breaker).
    __slots__ = ()

    if TYPE_CHECKING:

        def __init__(self, breaker: str, state: str, retry_after: float | None) -> None: ...

    @property
    def breaker(self) -> str:
        """Name of the breaker that refused the call."""
        return cast(str, self.args[0])

    @property
    def state(self) -> str:
        """The state it was in."""
        return cast(str, self.args[1])

    @property
    def retry_after(self) -> float | None:
        """Seconds until a trial call may be admitted, or ``None`` when unknown."""
        return cast("float | None", self.args[2])

    def __str__(self) -> str:
        when = "" if self.retry_after is None else f"; retry after {self.retry_after:.3f}s"
        return f"circuit {self.breaker!r} is {self.state}{when}"


class CallTimeoutError(BreakerError, TimeoutError):
    """An ``acall`` ran past the policy's ``call_timeout`` and was cancelled.

    Always a failure of the dependency, whatever ``ignore_exceptions`` says: the breaker
    set the limit. It is a ``TimeoutError`` too, so ``except TimeoutError`` catches it.

    Attributes:
        breaker: name of the breaker whose limit it was.
        timeout: the limit, in seconds.
    """

    def __init__(self, breaker: str, timeout: float) -> None:
        self.breaker = breaker
        self.timeout = timeout
        super().__init__(f"breaker {breaker!r}: the call took call_timeout ({timeout:g} s)")


class IllegalTransitionError(BreakerError):
    """An event was sent that is not legal from the current state; nothing changed.

    Attributes:
        event: the event's name.
        state: the state the breaker was (and still is) in.
    """

    def __init__(self, event: str, state: str, detail: str = "") -> None:
        self.event = event
        self.state = state
        self.detail = detail
        suffix = f" ({detail})" if detail else ""
        super().__init__(f"event {event!r} is not allowed in state {state!r}{suffix}")


class _Located(BreakerError):
    """An error about one item of an input, and where it is (``None`` where unknown)."""

    def __init__(
        self,
        message: str,
        *,
        seq: int | None = None,
        path: str | None = None,
        line: int | None = None,
        index: int | None = None,
    ) -> None:
        self.seq = seq
        self.path = path
        self.line = line
        self.index = index
        super().__init__(message)


class AuditError(_Located):
    """An audit trail is not a legal walk of the machine, or could not be read.

    Attributes:
        seq: ``seq`` of the first bad record, when the problem is a record.
        line: 1-based line number in the file, when the problem is a line.
        index: 0-based position of the bad record in what was verified.
        path: ``None`` (the file is named in the message).
    """


class DiagramError(BreakerError):
    """A diagram could not be rendered: Graphviz's ``dot`` or ``pydot`` is missing or failed.

    The message says what to install (``apt-get install graphviz``, ``brew install
    graphviz``, ``pip install 'breaker-fsm[diagrams]'``).
    """


class PolicyFileError(BreakerError):
    """A policy file could not be read or parsed.

    Attributes:
        path: the file.
        line: 1-based line of the parse error, when the parser reports one.
    """

    def __init__(self, path: str, message: str, *, line: int | None = None) -> None:
        self.path = path
        self.line = line
        where = f"{path}:{line}" if line is not None else path
        super().__init__(f"{where}: {message}")


class RegistryError(BreakerError):
    """A :class:`~breaker_fsm.BreakerRegistry` was asked for a breaker it cannot give.

    Raised when ``registry.get(name, policy)`` names an existing breaker with a different
    policy (or different creation arguments): the existing breaker is never replaced
    silently.
    """


class ReplayError(_Located):
    """Recorded calls could not be read or replayed (:mod:`breaker_fsm.replay`).

    Attributes:
        path: the call log, when the calls came from a file.
        line: 1-based line of the bad record in that file.
        index: 0-based position of the bad call among those given to ``simulate``.
        seq: ``None`` (calls have no sequence numbers).
    """
