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

out = io.StringIO()
run(out=out)
assert out.getvalue().startswith("httpx is not installed"), out.getvalue()[:200]
print("ok")
"""
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("ok")


@pytest.mark.parametrize("module", ["breaker_fsm.httpx", "breaker_fsm.prometheus"])
def test_integrations_import_with_their_extra(module: str) -> None:
    """The integration modules import when their library is there (it is, in dev installs)."""
    result = python(f"import {module}")
    assert result.returncode == 0, result.stderr
