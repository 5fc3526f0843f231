"""Every public exception survives pickling: multiprocessing, Celery and RQ move errors."""

from __future__ import annotations

import inspect
import pickle

import pytest

from breaker_fsm import exceptions
from breaker_fsm.exceptions import (
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

#: Every public exception class ``breaker_fsm.exceptions`` defines, found by looking: a
#: new one fails the test below until it has an example here (``_Located``, the private base
#: of the errors about one item of an input, is pickled through them).
CLASSES = sorted(
    (
        obj
        for obj in vars(exceptions).values()
        if inspect.isclass(obj)
        and issubclass(obj, BaseException)
        and obj.__module__ == exceptions.__name__
        and not obj.__name__.startswith("_")
    ),
    key=lambda cls: cls.__name__,
)

#: One instance of each, built with every attribute set to something other than its default.
EXAMPLES: dict[type[BaseException], BaseException] = {
    AuditError: AuditError("trail.jsonl:3: bad record", seq=7, path="trail.jsonl", line=3, index=2),
    BreakerError: BreakerError("something went wrong"),
    CallTimeoutError: CallTimeoutError("users-api", 2.5),
    CircuitOpenError: CircuitOpenError("users-api", "open", 4.5),
    DiagramError: DiagramError("SVG diagrams need Graphviz's 'dot' program"),
    IllegalTransitionError: IllegalTransitionError("disable", "forced_open", "operator"),
    PolicyFileError: PolicyFileError("policy.toml", "invalid TOML", line=4),
    RegistryError: RegistryError("breaker 'payments' already exists"),
    ReplayError: ReplayError("calls.jsonl:2: bad call", seq=5, path="calls.jsonl", line=2, index=1),
}


def public_attributes(exc: BaseException) -> dict[str, object]:
    """The public data attributes of ``exc`` (properties included), by name."""
    names = {name for name in dir(exc) if not name.startswith("_")} - {"args"}
    # OSError's characters_written (a TimeoutError's too) raises until it is set.
    values = {name: getattr(exc, name) for name in names if hasattr(exc, name)}
    return {name: value for name, value in values.items() if not callable(value)}


def test_the_module_defines_the_documented_exceptions() -> None:
    """The discovery below finds every exception of the module (so none escapes the test)."""
    assert set(CLASSES) == {getattr(exceptions, name) for name in exceptions.__all__}
    assert len(CLASSES) == 9


@pytest.mark.parametrize("cls", CLASSES, ids=lambda cls: cls.__name__)
@pytest.mark.parametrize("protocol", [0, 2, pickle.HIGHEST_PROTOCOL])
def test_exception_round_trips_through_pickle(cls: type[BaseException], protocol: int) -> None:
    """Unpickled, an exception has the same type, message, args and attributes."""
    assert cls in EXAMPLES, f"add an example of {cls.__name__} to EXAMPLES"
    original = EXAMPLES[cls]
    assert type(original) is cls
    copy = pickle.loads(pickle.dumps(original, protocol))
    assert type(copy) is cls
    assert str(copy) == str(original)
    assert copy.args == original.args
    assert public_attributes(copy) == public_attributes(original)
    assert public_attributes(original) or cls in (BreakerError, DiagramError, RegistryError)


def test_attributes_survive_pickling_by_name() -> None:
    """The attributes a caller reads (event, state, path, line, retry_after) come back."""
    illegal = pickle.loads(pickle.dumps(IllegalTransitionError("trip", "open")))
    assert (illegal.event, illegal.state, illegal.detail) == ("trip", "open", "")
    assert str(illegal) == "event 'trip' is not allowed in state 'open'"
    bad_file = pickle.loads(pickle.dumps(PolicyFileError("p.json", "no such file")))
    assert (bad_file.path, bad_file.line, str(bad_file)) == ("p.json", None, "p.json: no such file")
    refused = pickle.loads(pickle.dumps(CircuitOpenError("db", "forced_open", None)))
    assert (refused.breaker, refused.state, refused.retry_after) == ("db", "forced_open", None)


def test_notes_survive_pickling() -> None:
    """Notes added to an error after it was raised are kept."""
    exc = PolicyFileError("p.toml", "invalid TOML", line=2)
    exc.add_note("while loading the payments policy")
    copy = pickle.loads(pickle.dumps(exc))
    assert copy.__notes__ == ["while loading the payments policy"]
    assert copy.line == 2
