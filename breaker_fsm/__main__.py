"""``python -m breaker_fsm`` and the ``breaker-fsm`` console script."""

from __future__ import annotations

import sys

CLI_EXTRA = "pip install 'breaker-fsm[cli]'"


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status.

    The command line needs the ``cli`` extra (click and rich); without it only
    ``breaker-fsm demo`` runs, and anything else says which extra to install.
    """
    args = sys.argv[1:] if argv is None else list(argv)
    try:
        from ._cli import run
    except ImportError as exc:
        if args == ["demo"]:
            from ._demo import run as run_demo

            run_demo()
            return 0
        missing = exc.name or "click"
        print(
            f"breaker-fsm: the command line needs {missing} (the cli extra): {CLI_EXTRA}",
            file=sys.stderr,
        )
        return 2
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
