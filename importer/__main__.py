"""The command line's entry point (`importer`, `python -m importer`): Ctrl-C gets its one-line
answer from the first moment, also while the command line's modules are still loading."""

from __future__ import annotations

import signal
from types import FrameType


def main() -> None:
    """Console-script entry point."""
    pressed: list[int] = []

    def hold(signum: int, _frame: FrameType | None) -> None:
        pressed.append(signum)

    # An interrupt inside a module's import would end in a traceback: it is held until the
    # modules are loaded (a moment), then answered like an interrupt anywhere else.
    previous = signal.getsignal(signal.SIGINT)
    if previous is not signal.SIG_IGN:  # a job started with Ctrl-C ignored keeps ignoring it
        signal.signal(signal.SIGINT, hold)
    try:
        from importer.cli import main as run
    finally:
        if previous is not signal.SIG_IGN:
            signal.signal(signal.SIGINT, previous or signal.default_int_handler)
    run(interrupted=bool(pressed))


if __name__ == "__main__":
    main()
