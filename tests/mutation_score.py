"""Print the mutation score per module from mutmut's results in mutants/ (`make mutation`).

Reads only the modules [tool.mutmut] mutates. The kill rate counts timeouts as killed (a
mutant that hangs the tests is caught) and leaves out mutants no selected test reaches.
"""

from __future__ import annotations

import json
import sys
import tomllib
from collections import Counter
from pathlib import Path

COLUMNS = ("killed", "timeout", "survived", "suspicious", "no tests", "not checked", "skipped")


def main() -> int:
    """Print one row per module and the overall kill rate; 1 when nothing has been run."""
    from mutmut.stats import status_by_exit_code  # a dev dependency: only `make mutation`

    config = tomllib.loads(Path("pyproject.toml").read_text(encoding="utf-8"))["tool"]["mutmut"]
    rows: dict[str, Counter[str]] = {}
    for module in config["only_mutate"]:
        meta = Path("mutants") / f"{module}.meta"
        if meta.exists():
            codes = json.loads(meta.read_text(encoding="utf-8"))["exit_code_by_key"]
            rows[module] = Counter(status_by_exit_code[code] for code in codes.values())
    if not rows:
        print("no mutmut results: run `make mutation`")
        return 1
    total: Counter[str] = Counter()
    print(f"{'module':28} {'total':>6} " + " ".join(f"{c:>11}" for c in COLUMNS))
    for module, counts in rows.items():
        total.update(counts)
        line = " ".join(f"{counts[c]:>11}" for c in COLUMNS)
        print(f"{module:28} {sum(counts.values()):>6} {line}")
    caught = total["killed"] + total["timeout"]
    tested = caught + total["survived"] + total["suspicious"]
    print(f"kill rate: {caught}/{tested} = {caught / max(tested, 1):.1%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
