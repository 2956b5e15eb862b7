"""The console script's first code: Ctrl-C and SIGTERM are handled before anything heavy is imported.

``learnkit`` starts here rather than in :mod:`learnkit.cli.app` so that a SIGTERM arriving while
typer, rich or torch are still being imported ends the command like Ctrl-C (one ``error:
interrupted`` line, exit 130) instead of killing it silently (exit 143).
"""

import signal


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main() -> None:
    """Install the start-up signal handling, then run :func:`learnkit.cli.app.main`."""
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        from .app import main as run
    except KeyboardInterrupt:  # still importing: nothing has started, nothing to save
        import sys

        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print("error: interrupted", file=sys.stderr, flush=True)
        sys.exit(130)
    run()
