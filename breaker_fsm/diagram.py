"""The state diagram of :class:`~breaker_fsm.BreakerMachine`, derived, never drawn by hand.

Built on python-statemachine's own pipeline (``extract`` → diagram model → Mermaid or DOT
renderer); this module only rewrites the transition labels into words (``trip — failure
threshold reached``, from the guard docstrings of :class:`~breaker_fsm.BreakerPolicy`),
highlights a state, and makes the DOT output deterministic.

>>> from breaker_fsm import BreakerMachine
>>> print(render(BreakerMachine).splitlines()[3])
    closed --> open : trip — failure threshold reached

Mermaid needs nothing beyond the core dependencies; DOT needs ``pydot`` (the ``diagrams``
extra); SVG and PNG also need Graphviz's ``dot`` program, and raise
:class:`~breaker_fsm.DiagramError` saying how to install it when it is missing.
"""

from __future__ import annotations

import re
import shutil
from typing import TYPE_CHECKING, Literal, overload

from statemachine.contrib.diagram.extract import extract
from statemachine.contrib.diagram.renderers.mermaid import MermaidRenderer

from ._breaker import CircuitBreaker
from ._machine import BreakerMachine
from ._policy import BreakerPolicy
from .exceptions import DiagramError

if TYPE_CHECKING:
    from statemachine.contrib.diagram.model import DiagramGraph

__all__ = ["FORMATS", "Target", "guard_words", "render"]

#: The formats :func:`render` produces.
FORMATS: tuple[str, ...] = ("mermaid", "dot", "svg", "png")

Format = Literal["mermaid", "dot", "svg", "png"]

#: What :func:`render` draws: the machine class, a machine, or a live breaker.
Target = type[BreakerMachine] | BreakerMachine | CircuitBreaker

#: Label of a transition without a guard: in this machine only the operator fires those.
OPERATOR = "by the operator"

GRAPHVIZ_HINT = (
    "install Graphviz (Debian/Ubuntu: apt-get install graphviz; macOS: brew install "
    "graphviz; others: https://graphviz.org/download/), or use the mermaid or dot format"
)
PYDOT_HINT = "pip install 'breaker-fsm[diagrams]'"

# python-statemachine names two helper nodes after id() of a graph object: a memory address.
_ADDRESS_IDS = re.compile(r"\b(__initial_|cluster___atomic_)(\d+)")


def guard_words(guard: str, owner: type = BreakerPolicy) -> str:
    """A guard in words: the first docstring line of ``owner``'s method, else its name.

    >>> guard_words("failure_threshold_reached")
    'failure threshold reached'
    >>> guard_words("!some_flag")
    'not some flag'
    """
    negated = guard.startswith("!")
    name = guard.lstrip("!").strip()
    method = getattr(owner, name, None)
    doc = (method.__doc__ or "").strip() if callable(method) else ""
    if doc:
        words = doc.splitlines()[0].strip().rstrip(".")
        if not words[1:2].isupper():  # keep acronyms such as "HTTP ..." as they are
            words = words[:1].lower() + words[1:]
    else:
        words = name.replace("_", " ")
    return f"not {words}" if negated else words


@overload
def render(
    target: Target,
    fmt: Literal["mermaid", "dot", "svg"] = ...,
    *,
    state: str | None = None,
) -> str: ...
@overload
def render(target: Target, fmt: Literal["png"], *, state: str | None = None) -> bytes: ...
@overload
def render(target: Target, fmt: str, *, state: str | None = None) -> str | bytes: ...


def render(target: Target, fmt: str = "mermaid", *, state: str | None = None) -> str | bytes:
    """Render the breaker's state diagram.

    Args:
        target: :class:`~breaker_fsm.BreakerMachine` (or a subclass), a machine instance
            (its current state is highlighted), or a live
            :class:`~breaker_fsm.CircuitBreaker` (its current state is highlighted).
        fmt: ``"mermaid"`` or ``"dot"`` (text), ``"svg"`` (text) or ``"png"`` (bytes).
        state: highlight this state instead (``"open"``, …).

    Raises:
        ValueError: ``fmt`` or ``state`` is unknown.
        TypeError: ``target`` is none of the above.
        DiagramError: ``pydot`` (dot, svg, png) or Graphviz's ``dot`` (svg, png) is missing,
            or Graphviz failed.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown diagram format {fmt!r}: use one of {', '.join(FORMATS)}")
    graph = _graph(target, state)
    if fmt == "mermaid":
        return MermaidRenderer().render(graph)
    source = _dot(graph)
    if fmt == "dot":
        return source
    image = _graphviz(source, fmt)
    return image.decode("utf-8") if fmt == "svg" else image


def _graph(target: Target, state: str | None) -> DiagramGraph:
    """The diagram model of ``target``, labelled in words, with one state highlighted."""
    if isinstance(target, CircuitBreaker):
        machine_class: type[BreakerMachine] = BreakerMachine
        active = target.state
    elif isinstance(target, BreakerMachine):
        machine_class = type(target)
        active = str(target.current_state_value)
    elif isinstance(target, type) and issubclass(target, BreakerMachine):
        machine_class = target
        active = None
    else:
        raise TypeError(
            "render() draws BreakerMachine, a BreakerMachine instance or a CircuitBreaker, "
            f"not {type(target).__name__}"
        )
    if state is not None:
        known = [str(s.id) for s in machine_class.states]
        if state not in known:
            raise ValueError(f"unknown state {state!r}: use one of {', '.join(known)}")
        active = state

    graph = extract(machine_class)  # the class: structure only, highlighting is ours
    for diagram_state in graph.states:
        diagram_state.is_active = diagram_state.id == active
    # extract() walks the states, and each state's transitions, in declaration order.
    ours = [t for s in machine_class.states for t in s.transitions]
    for drawn, transition in zip(graph.transitions, ours, strict=True):
        events = " / ".join(dict.fromkeys(str(e) for e in transition.events))
        guards = " and ".join(guard_words(str(c)) for c in transition.cond) or OPERATOR
        drawn.event = f"{events} — {guards}"
        drawn.guards = []
    return graph


def _dot(graph: DiagramGraph) -> str:
    """DOT source for ``graph``, with stable helper-node names."""
    try:
        from statemachine.contrib.diagram.renderers.dot import DotRenderer
    except ImportError:
        raise DiagramError(f"DOT, SVG and PNG diagrams need pydot: {PYDOT_HINT}") from None
    source = str(DotRenderer().render(graph).to_string())
    numbers: dict[str, int] = {}

    def stable(match: re.Match[str]) -> str:
        return f"{match[1]}{numbers.setdefault(match[2], len(numbers))}"

    return _ADDRESS_IDS.sub(stable, source)


def _graphviz(source: str, fmt: str) -> bytes:
    """Run Graphviz's ``dot`` on ``source``; a missing or failing ``dot`` is a DiagramError."""
    from statemachine.contrib.diagram.graphviz import GraphvizError, run_graphviz

    program = shutil.which("dot")
    if program is None:
        raise DiagramError(
            f"{fmt.upper()} diagrams need Graphviz's 'dot' program, which is not on PATH: "
            f"{GRAPHVIZ_HINT}"
        )
    try:
        return run_graphviz(source, fmt, prog=program)
    except GraphvizError as exc:
        first = str(exc).strip().splitlines()[0]
        raise DiagramError(f"Graphviz could not render the diagram: {first}") from None
