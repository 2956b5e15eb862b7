"""The console script's first code: Ctrl-C and SIGTERM are handled before anything heavy is imported.

``learnkit`` starts here rather than in :mod:`learnkit.cli.app` so that a SIGTERM arriving while
typer, rich or torch are still being imported ends the command like Ctrl-C (one ``error:
interrupted`` line, exit 130) instead of killing it silently (exit 143). Both signals raise
``KeyboardInterrupt`` through :func:`learnkit.safe_interrupt.interrupt`, so never inside an
import (where Python would drop it, or deadlock on the import lock). A fit replaces these
handlers with its stop-at-the-next-batch ones while it trains. Once the command has ended (its
result or its error line printed), both signals are ignored: the exit code stays the command's.
"""

import signal
import time

from learnkit.safe_interrupt import interrupt

GRACE_S = 1.0  # a signal this soon after the one that interrupted is part of it (a double Ctrl-C)

_interrupted_at: float | None = None


def _on_signal(signum: int, frame: object) -> None:
    global _interrupted_at
    now = time.monotonic()
    if _interrupted_at is not None and now - _interrupted_at < GRACE_S:
        return  # the interrupt under way is being reported: a second KeyboardInterrupt would cut it
    _interrupted_at = now
    interrupt(frame)  # type: ignore[arg-type]


def _ended() -> None:
    """The command has ended and said so (its result, or its one error line): a signal from now on,
    while the interpreter shuts down, must not turn that into a death by signal (status -2/-15)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def main() -> None:
    """Install the start-up signal handling, then run :func:`learnkit.cli.app.main`."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _on_signal)
    try:
        from .app import main as run

        run()
        _ended()
    except SystemExit:
        _ended()
        raise
    except KeyboardInterrupt:  # while importing the command line or after it ended: nothing to save
        import sys

        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print("error: interrupted", file=sys.stderr, flush=True)
        sys.exit(130)
