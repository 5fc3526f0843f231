"""Optional extras stay optional: the core imports and works without any of them."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

OPTIONAL = ("httpx", "prometheus_client", "redis", "click", "rich", "pydot")

BLOCKER = f"""
import sys

BLOCKED = {set(OPTIONAL)!r}


class Blocker:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {{name!r}} (blocked)", name=name)
        return None


sys.meta_path.insert(0, Blocker())
"""


def python(code: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter."""
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_import_breaker_fsm_imports_no_optional_library() -> None:
    """`import breaker_fsm` (and its always-available modules) loads none of the extras."""
    result = python(
        f"""
        import sys
        import breaker_fsm, breaker_fsm.audit, breaker_fsm.testing, breaker_fsm.exceptions
        loaded = {set(OPTIONAL)!r} & set(sys.modules)
        assert not loaded, loaded
        """
    )
    assert result.returncode == 0, result.stderr


def test_core_works_with_the_extras_blocked() -> None:
    """With every extra unimportable the core runs, and the integrations say what to install."""
    result = python(
        BLOCKER
        + """
import io

import breaker_fsm
from breaker_fsm import BreakerPolicy, BreakerRegistry
from breaker_fsm._demo import run

registry = BreakerRegistry(BreakerPolicy(failure_threshold=1))
assert registry.get("a").call(lambda: 42) == 42

for module, extra in [
    ("breaker_fsm.httpx", "httpx"),
    ("breaker_fsm.prometheus", "prometheus"),
    ("breaker_fsm.redis", "redis"),
]:
    try:
        __import__(module)
    except ImportError as exc:
        assert f"breaker-fsm[{extra}]" in str(exc), exc
    else:
        raise AssertionError(f"{module} imported without its extra")

out = io.StringIO()
run(out=out)
assert out.getvalue().startswith("httpx is not installed"), out.getvalue()[:200]
print("ok")
"""
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("ok")


@pytest.mark.parametrize(
    "module", ["breaker_fsm.httpx", "breaker_fsm.prometheus", "breaker_fsm.redis"]
)
def test_integrations_import_with_their_extra(module: str) -> None:
    """The integration modules import when their library is there (it is, in dev installs)."""
    result = python(f"import {module}")
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    ("library", "module", "extra"),
    [
        ("httpx", "breaker_fsm.httpx", "httpx"),
        ("prometheus_client", "breaker_fsm.prometheus", "prometheus"),
        ("redis", "breaker_fsm.redis", "redis"),
    ],
)
def test_each_integration_names_its_extra_when_only_its_library_is_missing(
    library: str, module: str, extra: str
) -> None:
    """Importing an integration without its library raises ImportError with the pip command."""
    result = python(
        BLOCKER.replace(repr(set(OPTIONAL)), repr({library}))
        + f"""
try:
    import {module}
except ImportError as exc:
    print(exc)
"""
    )
    assert result.returncode == 0, result.stderr
    assert f"pip install 'breaker-fsm[{extra}]'" in result.stdout
    assert module in result.stdout


def test_command_line_names_the_cli_extra() -> None:
    """Without click the command line exits 2 and says to install the cli extra."""
    result = python(
        BLOCKER.replace(repr(set(OPTIONAL)), repr({"click"}))
        + """
from breaker_fsm.__main__ import main

print("status", main(["policy", "schema"]))
"""
    )
    assert result.returncode == 0, result.stderr
    assert "status 2" in result.stdout
    assert "pip install 'breaker-fsm[cli]'" in result.stderr


def test_command_line_runs_without_rich() -> None:
    """rich is only for terminals: without it the command line prints plain text."""
    result = python(
        BLOCKER.replace(repr(set(OPTIONAL)), repr({"rich"}))
        + """
from breaker_fsm.__main__ import main

print("status", main(["policy", "schema"]))
"""
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.rstrip().endswith("status 0")
    assert '"failure_threshold"' in result.stdout


def test_dot_diagram_names_the_diagrams_extra() -> None:
    """Without pydot a DOT diagram raises DiagramError with the pip command; Mermaid works."""
    result = python(
        BLOCKER
        + """
from breaker_fsm import BreakerMachine, DiagramError
from breaker_fsm.diagram import render

assert render(BreakerMachine).startswith("stateDiagram-v2")
try:
    render(BreakerMachine, "dot")
except DiagramError as exc:
    print(exc)
"""
    )
    assert result.returncode == 0, result.stderr
    assert "pip install 'breaker-fsm[diagrams]'" in result.stdout
