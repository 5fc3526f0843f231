"""Bad constructor arguments fail at construction, naming the argument and what it got."""

from __future__ import annotations

import random
import re
from pathlib import Path
from typing import Any

import pytest

from breaker_fsm import BreakerPolicy, BreakerRegistry, CircuitBreaker, CircuitOpenError
from breaker_fsm.audit import JsonlSink
from breaker_fsm.testing import FakeClock


class OnlyMonotonic:
    """A clock missing ``wall()``."""

    def monotonic(self) -> float:
        return 0.0


class DuckClock:
    """A clock that is not a FakeClock, with both methods."""

    def monotonic(self) -> float:
        return 0.0

    def wall(self) -> float:
        return 0.0


class DuckRandom:
    """A random source that is not a random.Random, with ``uniform``."""

    def uniform(self, a: float, b: float) -> float:
        return (a + b) / 2


BAD: list[tuple[dict[str, Any], type[Exception], list[str]]] = [
    ({"name": 123}, TypeError, ["name must be a str", "got int 123"]),
    ({"name": None}, TypeError, ["name must be a str", "got NoneType None"]),
    ({"name": ""}, ValueError, ["name must be a non-empty str", "got ''"]),
    (
        {"policy": {"failure_threshold": 3}},
        TypeError,
        ["policy must be a BreakerPolicy", "got dict", "BreakerPolicy.model_validate"],
    ),
    ({"policy": 3}, TypeError, ["policy must be a BreakerPolicy", "got int 3"]),
    ({"fallback": "cached"}, TypeError, ["fallback must be callable", "got str 'cached'"]),
    ({"is_failure": 503}, TypeError, ["is_failure must be callable", "got int 503"]),
    (
        {"sinks": ["file.jsonl"]},
        TypeError,
        ["sinks[0] must be callable", "got str 'file.jsonl'", "JsonlSink('file.jsonl')"],
    ),
    (
        {"sinks": [print, Path("audit.jsonl")]},
        TypeError,
        ["sinks[1] must be callable", "PosixPath", "JsonlSink('audit.jsonl')"],
    ),
    (
        {"sinks": "file.jsonl"},
        TypeError,
        ["sinks must be an iterable of callables", "JsonlSink('file.jsonl')"],
    ),
    ({"sinks": print}, TypeError, ["sinks must be an iterable of callables", "got builtin"]),
    ({"clock": lambda: 0}, TypeError, ["clock must have monotonic() and wall()", "function"]),
    ({"clock": OnlyMonotonic()}, TypeError, ["clock must have", "got OnlyMonotonic"]),
    ({"clock": FakeClock}, TypeError, ["clock must be an instance", "write clock=FakeClock()"]),
    ({"rng": random.Random}, TypeError, ["rng must be an instance", "write rng=Random()"]),
    ({"rng": 42}, TypeError, ["rng must have a uniform(a, b) method", "got int 42"]),
    ({"rng": random.random}, TypeError, ["rng must have", "builtin_function_or_method"]),
    ({"audit_capacity": 0}, ValueError, ["audit_capacity must be an int >= 1", "got 0"]),
    ({"audit_capacity": -5}, ValueError, ["audit_capacity must be an int >= 1", "got -5"]),
    ({"audit_capacity": 10.0}, TypeError, ["audit_capacity must be an int", "got float 10.0"]),
    ({"audit_capacity": "100"}, TypeError, ["audit_capacity must be an int", "got str '100'"]),
    ({"audit_capacity": True}, TypeError, ["audit_capacity must be an int", "got bool True"]),
    ({"store": "redis://localhost"}, TypeError, ["store must be a shared store", "got str"]),
]


@pytest.mark.parametrize(
    ("kwargs", "error", "fragments"),
    BAD,
    ids=[next(iter(kw)) + "=" + repr(kw[next(iter(kw))])[:20] for kw, _, _ in BAD],
)
def test_bad_argument_fails_at_construction(
    kwargs: dict[str, Any], error: type[Exception], fragments: list[str]
) -> None:
    """Each bad argument raises at construction, with its name and what it got."""
    arguments: dict[str, Any] = {"name": "users-api", **kwargs}
    with pytest.raises(error) as raised:
        CircuitBreaker(**arguments)
    for fragment in fragments:
        assert fragment in str(raised.value)


def test_the_error_names_the_argument_first() -> None:
    """The message starts with the argument's name, so it reads as one line in a log."""
    with pytest.raises(TypeError, match=r"^CircuitBreaker fallback must be callable or None, "):
        CircuitBreaker("users-api", fallback="cached")  # type: ignore[arg-type]


def test_long_values_are_shortened_in_the_message() -> None:
    """A huge bad value does not flood the message."""
    with pytest.raises(TypeError) as raised:
        CircuitBreaker("users-api", fallback="x" * 10_000)  # type: ignore[arg-type]
    assert len(str(raised.value)) < 200


def test_duck_typed_arguments_are_accepted() -> None:
    """A clock, rng and sinks are judged by what the breaker uses, not by their class."""
    seen: list[str] = []
    breaker = CircuitBreaker(
        "users-api",
        BreakerPolicy(failure_threshold=1, reset_timeout_jitter=0.5),
        clock=DuckClock(),
        rng=DuckRandom(),  # type: ignore[arg-type]
        sinks=(sink for sink in [lambda record: seen.append(record.event)]),
        fallback=lambda: "cached",
        is_failure=lambda result: result is None,
        audit_capacity=1,
    )
    assert breaker.call(lambda: None) is None  # a failure by is_failure: trips
    assert breaker.call(lambda: "fresh") == "cached"  # refused: the fallback answers
    assert seen == ["trip"]
    assert breaker.metrics().open_duration == 30.0  # DuckRandom's uniform is the midpoint, 0


def test_sinks_given_as_a_generator_are_all_kept() -> None:
    """A generator of sinks is read once, completely: every sink receives every record."""
    first: list[int] = []
    second: list[int] = []
    sinks = (sink for sink in (lambda r: first.append(r.seq), lambda r: second.append(r.seq)))
    breaker = CircuitBreaker("users-api", sinks=sinks)
    breaker.send("force_open")
    assert len(breaker.sinks) == 2
    assert first == second == [1]


def test_a_policy_dict_is_refused_rather_than_copied() -> None:
    """A dict is not a policy: the error says how to build one, and nothing is created."""
    with pytest.raises(TypeError, match=re.escape("BreakerPolicy(**fields)")):
        CircuitBreaker("users-api", {"failure_threshold": 3})  # type: ignore[arg-type]
    policy = BreakerPolicy.model_validate({"failure_threshold": 3})
    assert CircuitBreaker("users-api", policy).policy is policy


def test_a_breaker_keeps_1000_audit_records_by_default() -> None:
    """With no audit_capacity, ``breaker.audit`` keeps the newest 1000 records, as documented."""
    breaker = CircuitBreaker("users-api")
    assert breaker.audit.capacity == 1000
    for _ in range(501):  # 1002 transitions
        breaker.send("force_open")
        breaker.send("reset")
    assert (len(breaker.audit), breaker.audit.dropped, breaker.audit[0].seq) == (1000, 2, 3)


class UnboundStore:
    """A store-shaped object (it has ``bind``) that must never be bound."""

    def bind(self, name: str, policy: BreakerPolicy) -> Any:
        raise AssertionError("a breaker that takes no store bound one")  # pragma: no cover


def test_a_subclass_keeping_its_state_in_memory_refuses_a_store_naming_itself() -> None:
    """``store=`` shares only a plain ``CircuitBreaker``: a subclass of it keeps its state in
    memory, so it refuses a store at construction, naming its own class."""

    class LocalBreaker(CircuitBreaker):
        __slots__ = ()

    message = r"^LocalBreaker keeps its state in memory: it takes no store$"
    with pytest.raises(TypeError, match=message):
        LocalBreaker("users-api", store=UnboundStore())
    assert LocalBreaker("users-api").state == "closed"


def test_bad_fallback_no_longer_waits_for_the_outage(clock: FakeClock) -> None:
    """Before, a str fallback raised only when a call was refused; a good one still answers."""
    with pytest.raises(TypeError, match="fallback"):
        CircuitBreaker("users-api", BreakerPolicy(failure_threshold=1), fallback="cached")  # type: ignore[arg-type]
    breaker = CircuitBreaker(
        "users-api", BreakerPolicy(failure_threshold=1), clock=clock, fallback=lambda: "cached"
    )
    breaker.send("force_open")
    assert breaker.call(lambda: "fresh") == "cached"
    refusing = CircuitBreaker("plain", BreakerPolicy(failure_threshold=1), clock=clock)
    refusing.send("force_open")
    with pytest.raises(CircuitOpenError):
        refusing.call(lambda: "fresh")


async def async_sink(record: object) -> None:
    """A sink written ``async def``: its coroutine would never run."""


class AsyncCallSink:
    """A sink object whose ``__call__`` is ``async def``."""

    async def __call__(self, record: object) -> None:
        """Would never run."""


@pytest.mark.parametrize("sink", [async_sink, AsyncCallSink()], ids=["function", "object"])
def test_an_async_sink_is_refused_wherever_it_is_given(sink: Any) -> None:
    """Sinks run synchronously where the record is made: an ``async def`` one would only
    leave coroutines that never run, so every way of adding one refuses it, naming it."""
    message = r"is an async function .* sinks are called synchronously"
    with pytest.raises(TypeError, match=r"CircuitBreaker sinks\[0\] " + message):
        CircuitBreaker("users-api", sinks=[sink])
    with pytest.raises(TypeError, match=r"CircuitBreaker call_sinks\[0\] " + message):
        CircuitBreaker("users-api", call_sinks=[sink])
    breaker = CircuitBreaker("users-api")
    with pytest.raises(TypeError, match="add_sink's sink " + message):
        breaker.add_sink(sink)
    with pytest.raises(TypeError, match="add_call_sink's sink " + message):
        breaker.add_call_sink(sink)
    registry = BreakerRegistry()
    with pytest.raises(TypeError, match="BreakerRegistry.add_sink sink " + message):
        registry.add_sink(sink)
    assert (breaker.sinks, breaker.call_sinks, registry.sinks) == ((), (), ())


# ----------------------------------------------------------------------------- registry


def test_registry_checks_its_defaults_and_sinks_at_construction() -> None:
    """A registry refuses bad breaker defaults and sinks when it is built, not at first get."""
    with pytest.raises(TypeError, match="fallback must be callable"):
        BreakerRegistry(fallback="cached")
    with pytest.raises(ValueError, match="audit_capacity must be an int >= 1, got 0"):
        BreakerRegistry(audit_capacity=0)
    with pytest.raises(TypeError, match="policy must be a BreakerPolicy"):
        BreakerRegistry({"failure_threshold": 3})  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="clock must have"):
        BreakerRegistry(clock=lambda: 0.0)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=re.escape(r"BreakerRegistry sinks[0] must be callable")):
        BreakerRegistry(sinks=["file.jsonl"])  # type: ignore[list-item]


def test_registry_add_sink_refuses_a_file_name() -> None:
    """registry.add_sink("file.jsonl") fails there, and points at JsonlSink."""
    registry = BreakerRegistry()
    registry.get("users-api")
    with pytest.raises(TypeError, match=re.escape("JsonlSink('file.jsonl')")):
        registry.add_sink("file.jsonl")  # type: ignore[arg-type]
    assert registry.sinks == ()
    assert len(registry["users-api"].sinks) == 1  # only the registry's own counter


# ----------------------------------------------------------------------------- JsonlSink


def test_jsonl_sink_needs_an_existing_directory(tmp_path: Path) -> None:
    """A JsonlSink in a missing directory fails at construction, naming the directory."""
    missing = tmp_path / "missing" / "audit.jsonl"
    with pytest.raises(FileNotFoundError, match=re.escape(f"{str(tmp_path / 'missing')!r}")):
        JsonlSink(missing)
    assert not missing.parent.exists()  # nothing was created


def test_jsonl_sink_directory_must_be_a_directory(tmp_path: Path) -> None:
    """A JsonlSink whose "directory" is a file fails at construction."""
    (tmp_path / "plain-file").write_text("x")
    with pytest.raises(NotADirectoryError, match="is not a directory"):
        JsonlSink(tmp_path / "plain-file" / "audit.jsonl")


def test_jsonl_sink_on_a_directory_fails_at_construction(tmp_path: Path) -> None:
    """A JsonlSink pointed at a directory (not a file in it) fails at construction."""
    with pytest.raises(IsADirectoryError, match="is a directory: name a file in it"):
        JsonlSink(tmp_path)


def test_jsonl_sink_file_may_not_exist_yet(tmp_path: Path) -> None:
    """Only the directory must exist: the sink creates the file, empty, the record appends."""
    path = tmp_path / "audit.jsonl"
    breaker = CircuitBreaker("users-api", sinks=[JsonlSink(path)])
    assert path.read_text() == ""  # a member that records nothing still leaves its trail
    breaker.send("force_open")
    assert path.read_text().count("\n") == 1
    JsonlSink(path)  # an existing trail is kept as it is
    assert path.read_text().count("\n") == 1
