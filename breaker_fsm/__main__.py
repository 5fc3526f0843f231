"""``python -m breaker_fsm`` and the ``breaker-fsm`` console script."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args = sys.argv[1:] if argv is None else argv
    if args == ["demo"]:
        from ._demo import run

        run()
        return 0
    print("usage: breaker-fsm demo", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
