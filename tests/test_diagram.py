"""The state diagram: golden files, determinism, words for labels, highlighting, Graphviz."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from breaker_fsm import BreakerMachine, BreakerPolicy, CircuitBreaker, DiagramError
from breaker_fsm.diagram import FORMATS, guard_words, render
from breaker_fsm.testing import FakeClock

ROOT = Path(__file__).resolve().parent.parent
DIAGRAMS = ROOT / "diagrams"
HAS_DOT = shutil.which("dot") is not None
NEEDS_DOT = pytest.mark.skipif(
    not HAS_DOT, reason="Graphviz's dot is not on PATH (apt-get install graphviz)"
)
STALE = "stale: run `make diagrams` and commit diagrams/"


def tripped_breaker() -> CircuitBreaker:
    breaker = CircuitBreaker("users-api", BreakerPolicy(failure_threshold=1), clock=FakeClock())

    def fail() -> None:
        raise ConnectionError("down")

    with pytest.raises(ConnectionError):
        breaker.call(fail)
    assert breaker.state == "open"
    return breaker


def active_states(mermaid: str) -> list[str]:
    return re.findall(r"^    (\w+):::active$", mermaid, flags=re.MULTILINE)


def dot_fill(dot: str, state: str) -> str:
    found = re.search(rf"^{state} \[.*fillcolor=(\w+)", dot, flags=re.MULTILINE)
    assert found is not None, state
    return found[1]


# --------------------------------------------------------------------------- golden files


def test_mermaid_matches_committed_file() -> None:
    """diagrams/breaker.mmd is exactly what the code renders."""
    assert render(BreakerMachine) == (DIAGRAMS / "breaker.mmd").read_text("utf-8"), STALE


def test_dot_matches_committed_file() -> None:
    """diagrams/breaker.dot is exactly what the code renders."""
    assert render(BreakerMachine, "dot") == (DIAGRAMS / "breaker.dot").read_text("utf-8"), STALE


def test_readme_mermaid_block_matches_rendered_diagram() -> None:
    """The README's ```mermaid block is the rendered diagram, byte for byte."""
    readme = (ROOT / "README.md").read_text("utf-8")
    blocks = re.findall(r"^```mermaid\n(stateDiagram.*?)^```$", readme, re.MULTILINE | re.DOTALL)
    assert len(blocks) == 1  # the machine's; the architecture's flowchart is not derived
    assert blocks[0] == render(BreakerMachine), "README diagram " + STALE


def test_committed_svg_carries_every_label() -> None:
    """diagrams/breaker.svg draws every state and every transition label of the machine."""
    svg = (DIAGRAMS / "breaker.svg").read_text("utf-8").replace("&#45;", "-")
    labels = re.findall(r" : (.+)$", render(BreakerMachine), flags=re.MULTILINE)
    for text in [*labels, "closed", "half_open", "forced_open", "disabled"]:
        assert text in svg, STALE


# --------------------------------------------------------------------------- content


def test_every_transition_is_drawn_with_event_and_guard_in_words() -> None:
    """Each transition is one arrow labelled 'event — guard in words', no Python identifiers."""
    mermaid = render(BreakerMachine)
    arrows = re.findall(r"^    (\w+) --> (\w+) : (\w+) — (.+)$", mermaid, flags=re.MULTILINE)
    drawn = {(event, source): target for source, target, event, _ in arrows}
    expected = {
        (str(event), str(state.id)): str(t.target.id)
        for state in BreakerMachine.states
        for t in state.transitions
        for event in t.events
    }
    assert drawn == expected
    assert "    closed --> open : trip — failure threshold reached" in mermaid
    assert "open --> half_open : attempt_reset — open duration elapsed" in mermaid
    assert "forced_open --> closed : reset — by the operator" in mermaid
    dot = render(BreakerMachine, "dot")
    for guard in ("failure_threshold_reached", "open_duration_elapsed", "trial_failed"):
        assert guard not in mermaid
        assert guard not in dot
    assert "[trip" not in mermaid  # no bracketed guard expressions either
    assert "<br/>[" not in dot


def test_guard_words_come_from_policy_docstrings_else_names() -> None:
    """Guards read as their docstring's first line, else their name in words."""
    assert guard_words("success_threshold_reached") == "enough trial calls succeeded"
    assert guard_words("trial_failed") == "a trial call failed or half-open timed out"
    assert guard_words("no_such_guard") == "no such guard"
    assert guard_words("!open_duration_elapsed") == "not open duration elapsed"
    assert guard_words("model_config") == "model config"  # not a method: no docstring

    class Guards:
        def http_failed(self) -> bool:
            """HTTP 5xx rate reached."""
            return False

    assert guard_words("http_failed", Guards) == "HTTP 5xx rate reached"


def test_dot_is_deterministic_across_interpreters() -> None:
    """DOT has no memory addresses: two fresh interpreters render identical bytes."""
    code = "from breaker_fsm import BreakerMachine as M; from breaker_fsm.diagram import render\n"
    code += "import sys; sys.stdout.write(render(M, 'dot'))"
    outputs = {
        subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
        ).stdout
        for _ in range(2)
    }
    outputs.add(render(BreakerMachine, "dot"))
    outputs.add(render(BreakerMachine, "dot"))
    assert len(outputs) == 1
    dot = outputs.pop()
    assert not re.search(r"\d{5,}", dot), "a memory address leaked into the DOT source"
    assert "__initial_0 -> closed" in dot
    assert render(BreakerMachine) == render(BreakerMachine)


def test_mermaid_needs_neither_pydot_nor_graphviz() -> None:
    """Mermaid renders in an interpreter where pydot cannot be imported and PATH is empty."""
    code = (
        "import sys; sys.modules['pydot'] = None\n"
        "from breaker_fsm import BreakerMachine; from breaker_fsm.diagram import render\n"
        "sys.stdout.write(render(BreakerMachine))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        env={"PATH": "", "PYTHONIOENCODING": "utf-8"},
    )
    assert done.stdout == render(BreakerMachine)


def test_dot_without_pydot_says_which_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    """DOT without pydot raises DiagramError naming the diagrams extra."""
    monkeypatch.setitem(sys.modules, "pydot", None)
    monkeypatch.delitem(sys.modules, "statemachine.contrib.diagram.renderers.dot", raising=False)
    with pytest.raises(DiagramError, match=re.escape("pip install 'breaker-fsm[diagrams]'")):
        render(BreakerMachine, "dot")


# --------------------------------------------------------------------------- highlighting


def test_class_highlights_nothing() -> None:
    """The machine class is drawn with no state highlighted."""
    assert active_states(render(BreakerMachine)) == []
    assert "turquoise" not in render(BreakerMachine, "dot")


def test_live_breaker_highlights_its_current_state() -> None:
    """A live breaker's current state is highlighted, in Mermaid and in DOT."""
    breaker = tripped_breaker()
    assert active_states(render(breaker)) == ["open"]
    dot = render(breaker, "dot")
    assert dot_fill(dot, "open") == "turquoise"
    assert {dot_fill(dot, s) for s in ("closed", "half_open", "forced_open", "disabled")} == {
        "white"
    }
    breaker.send("force_open")
    assert active_states(render(breaker)) == ["forced_open"]


def test_machine_instance_highlights_its_current_state() -> None:
    """A BreakerMachine instance is drawn with its current state highlighted."""
    machine = BreakerMachine(listeners=[BreakerPolicy()])
    assert active_states(render(machine)) == ["closed"]
    machine.send("disable")
    assert active_states(render(machine)) == ["disabled"]


def test_state_option_highlights_a_named_state() -> None:
    """state= highlights that state, and wins over a live breaker's own."""
    assert active_states(render(BreakerMachine, state="half_open")) == ["half_open"]
    assert active_states(render(tripped_breaker(), state="closed")) == ["closed"]
    assert dot_fill(render(BreakerMachine, "dot", state="disabled"), "disabled") == "turquoise"


def test_bad_arguments_are_rejected() -> None:
    """An unknown format or state is a ValueError, an unknown target a TypeError."""
    with pytest.raises(ValueError, match="unknown diagram format 'jpeg'"):
        render(BreakerMachine, "jpeg")
    with pytest.raises(ValueError, match="unknown state 'ajar'"):
        render(BreakerMachine, state="ajar")
    with pytest.raises(TypeError, match="not str"):
        render("BreakerMachine")  # type: ignore[call-overload]
    assert FORMATS == ("mermaid", "dot", "svg", "png")


# --------------------------------------------------------------------------- Graphviz


@NEEDS_DOT
def test_svg_and_png_render_with_graphviz() -> None:
    """With Graphviz, SVG is an SVG document with the labels, PNG a PNG image."""
    svg = render(tripped_breaker(), "svg")
    assert "<svg" in svg
    assert "trip — failure threshold reached" in svg
    assert "turquoise" in svg
    png = render(BreakerMachine, "png")
    assert png.startswith(b"\x89PNG\r\n\x1a\n")


@pytest.mark.parametrize("fmt", ["svg", "png"])
def test_missing_dot_says_how_to_install_graphviz(
    monkeypatch: pytest.MonkeyPatch, fmt: str
) -> None:
    """Without dot on PATH, SVG and PNG raise DiagramError saying how to install Graphviz."""
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(DiagramError) as caught:
        render(BreakerMachine, fmt)
    message = str(caught.value)
    assert f"{fmt.upper()} diagrams need Graphviz's 'dot' program" in message
    assert "apt-get install graphviz" in message
    assert "brew install graphviz" in message


def test_failing_dot_is_a_diagram_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A dot that runs but fails surfaces as one DiagramError line."""
    broken = tmp_path / "dot"
    broken.write_text(
        f"#!{sys.executable}\nimport sys\nsys.stderr.write('bad graph')\nsys.exit(3)\n"
    )
    broken.chmod(0o755)
    monkeypatch.setattr(shutil, "which", lambda name: str(broken))
    with pytest.raises(DiagramError) as caught:
        render(BreakerMachine, "svg")
    assert str(caught.value) == (
        f"Graphviz could not render the diagram: {broken} -Tsvg failed with exit code 3."
    )
