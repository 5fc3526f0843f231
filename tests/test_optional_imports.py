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

for module, extra in [("breaker_fsm.httpx", "httpx"), ("breaker_fsm.prometheus", "prometheus")]:
    try:
        __import__(module)
    except ImportError as exc:
        assert f"breaker-fsm[{extra}]" in str(exc), exc
    else:
        raise AssertionError(f"{module} imported without its extra")

import breaker_fsm.redis  # imports without redis-py: only a store needs it

try:
    breaker_fsm.redis.RedisStore("redis://localhost")
except ImportError as exc:
    assert "breaker-fsm[redis]" in str(exc), exc
else:
    raise AssertionError("RedisStore built without redis-py")

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
    ("library", "use", "extra"),
    [
        ("httpx", "import breaker_fsm.httpx", "httpx"),
        ("prometheus_client", "import breaker_fsm.prometheus", "prometheus"),
        ("redis", "import breaker_fsm.redis; breaker_fsm.redis.RedisStore('redis://x')", "redis"),
    ],
)
def test_each_integration_names_its_extra_when_only_its_library_is_missing(
    library: str, use: str, extra: str
) -> None:
    """Using an integration without its library raises ImportError with the pip command."""
    result = python(
        BLOCKER.replace(repr(set(OPTIONAL)), repr({library}))
        + f"""
try:
    {use}
except ImportError as exc:
    print(exc)
"""
    )
    assert result.returncode == 0, result.stderr
    assert f"needs {library.partition('_')[0]}" in result.stdout
    assert f"pip install 'breaker-fsm[{extra}]'" in result.stdout


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
