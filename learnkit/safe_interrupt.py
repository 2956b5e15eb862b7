"""Raising ``KeyboardInterrupt`` for a signal only where Python can handle it (no torch import).

A Python signal handler runs between any two bytecodes of the main thread, so an exception it
raises can land anywhere. In two places that goes wrong:

- inside the import system: importlib's module-lock bookkeeping runs in weakref callbacks, where an
  exception is printed as "Exception ignored" and dropped (the command runs on as if no signal had
  come), and one raised between taking and releasing the global import lock leaves it held (the
  next import in another thread, e.g. PIL loading a decoder in a data-loading thread, waits
  forever); a double Ctrl-C during ``import torch`` once also ended a run with "ImportError: cannot
  load module more than once per process" (an extension module interrupted while it initialised);
- inside ``__del__``: the exception is dropped the same way.

:func:`interrupt` raises at once when the interrupted code is in neither, and otherwise retries
every :data:`RETRY_S` seconds (a one-shot ``SIGALRM`` timer) until it is, so an interrupt that
arrives during ``import torch`` takes effect when that import is done.

Example:
    >>> def handler(signum, frame):
    ...     interrupt(frame)  # instead of: raise KeyboardInterrupt
"""

from __future__ import annotations

import importlib._bootstrap
import importlib._bootstrap_external
import signal
from types import FrameType

RETRY_S = 0.02

# the import system's code: "<frozen importlib._bootstrap>" and "..._external>" in a normal build,
# their .py files where Python runs without frozen modules
_IMPORT_SYSTEM = frozenset(
    f.__code__.co_filename
    for f in (importlib._bootstrap._find_and_load, importlib._bootstrap_external.SourceLoader.get_code)
)

_pending = False
_previous_alarm: object = None


def interrupt(frame: FrameType | None) -> None:
    """Raise ``KeyboardInterrupt`` now if ``frame`` (where a signal handler found the main thread)
    is safe to interrupt; otherwise raise it as soon as the main thread is somewhere safe.

    Call it from a signal handler, with the handler's ``frame``. A call while an interrupt is
    already waiting for a safe point does nothing (it is the same interrupt).
    """
    global _pending, _previous_alarm
    if _pending:
        return
    if not in_unsafe_code(frame) or not hasattr(signal, "setitimer"):  # Windows: no timer to retry
        raise KeyboardInterrupt
    _pending = True
    _previous_alarm = signal.signal(signal.SIGALRM, _retry)
    signal.setitimer(signal.ITIMER_REAL, RETRY_S)


def cancel() -> None:
    """Drop an interrupt still waiting for a safe point (the command has ended: nothing to stop)."""
    global _pending
    if _pending:
        _pending = False
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, _previous_alarm if _previous_alarm is not None else signal.SIG_DFL)


def pending() -> bool:
    """Whether an interrupt is waiting for a safe point."""
    return _pending


def in_unsafe_code(frame: FrameType | None) -> bool:
    """Whether ``frame`` or a caller of it is in the import system or in a ``__del__``."""
    while frame is not None:
        code = frame.f_code
        if code.co_filename in _IMPORT_SYSTEM or code.co_name == "__del__":
            return True
        frame = frame.f_back
    return False


def _retry(signum: int, frame: FrameType | None) -> None:
    global _pending
    if not _pending:
        return
    if in_unsafe_code(frame):
        signal.setitimer(signal.ITIMER_REAL, RETRY_S)
        return
    _pending = False
    previous = _previous_alarm if _previous_alarm is not None else signal.SIG_DFL
    signal.signal(signal.SIGALRM, previous)  # the timer is spent: no alarm can hit SIG_DFL
    raise KeyboardInterrupt
