"""Raising ``KeyboardInterrupt`` for a signal only where Python can handle it (no torch import).

A Python signal handler runs between any two bytecodes of the main thread, so an exception it
raises can land anywhere. In these places that goes wrong:

- inside the import system: importlib's module-lock bookkeeping runs in weakref callbacks, where an
  exception is printed as "Exception ignored" and dropped (the command runs on as if no signal had
  come), and one raised between taking and releasing the global import lock leaves it held (the
  next import in another thread, e.g. PIL loading a decoder in a data-loading thread, waits
  forever); a double Ctrl-C during ``import torch`` once also ended a run with "ImportError: cannot
  load module more than once per process" (an extension module interrupted while it initialised);
- inside ``__del__`` or a weakref callback (``weakref.py``, ``_weakrefset.py``): the exception is
  dropped the same way. A thread pool's bookkeeping (``concurrent.futures``' ``WeakKeyDictionary``
  of its threads) runs such callbacks in the main thread while images are decoded at start-up;
  an interrupt dropped there left a fit running;
- inside the threading module's lock bookkeeping (``Condition._release_save``, ``Thread.start``
  waiting for its thread, ``Thread.join``): a ``KeyboardInterrupt`` between releasing a lock and
  the ``try`` that restores it ends in ``RuntimeError: release unlocked lock`` (exit 1), and one in
  ``join`` can mark a live thread as stopped. The same goes for ``queue``, ``concurrent.futures``
  and ``logging``'s locks.

:func:`interrupt` raises at once when the interrupted code is in none of these, and otherwise
retries every :data:`RETRY_S` seconds (a one-shot ``SIGALRM`` timer) until it is, so an interrupt
that arrives during ``import torch`` takes effect when that import is done. Code of the last
group (threading and its users) also blocks, and there the place to interrupt is known: a main
thread waiting in ``Condition.wait`` (under ``Event.wait``, ``Queue.get``, ``Future.result``:
``predict -`` waiting for lines on stdin) is interrupted at once, that wait being written for it.
Any other wait in threading code (a ``join`` on a thread that never ends) is interrupted after
:data:`BLOCKED_S` seconds, as a last resort.

Wherever it was raised, an interrupt that Python still drops (a weakref callback of another
module, a ``gc`` callback: reported through ``sys.unraisablehook``) is raised again, the same way.

Example:
    >>> def handler(signum, frame):
    ...     interrupt(frame)  # instead of: raise KeyboardInterrupt
"""

from __future__ import annotations

import importlib._bootstrap
import importlib._bootstrap_external
import os
import signal
import sys
import time
from types import FrameType
from typing import Any

RETRY_S = 0.02
BLOCKED_S = 5.0
"""Seconds an interrupt waits for the main thread to leave threading code (see the module doc)."""

# the import system's code: "<frozen importlib._bootstrap>" and "..._external>" in a normal build,
# their .py files where Python runs without frozen modules
_IMPORT_SYSTEM = frozenset(
    f.__code__.co_filename
    for f in (importlib._bootstrap._find_and_load, importlib._bootstrap_external.SourceLoader.get_code)
)
_STDLIB = os.path.dirname(os.__file__)
_CALLBACKS = frozenset(os.path.join(_STDLIB, name) for name in ("weakref.py", "_weakrefset.py"))
_LOCKING = frozenset(
    os.path.join(_STDLIB, *name.split("/"))
    for name in (
        "threading.py",
        "queue.py",
        "concurrent/futures/_base.py",
        "concurrent/futures/thread.py",
        "logging/__init__.py",
    )
)

_pending = False
_pending_since = 0.0
_raised = False  # whether an interrupt was raised (an unraisable KeyboardInterrupt is then ours)
_previous_alarm: object = None
_previous_hook: Any = None


def interrupt(frame: FrameType | None) -> None:
    """Raise ``KeyboardInterrupt`` now if ``frame`` (where a signal handler found the main thread)
    is safe to interrupt; otherwise raise it as soon as the main thread is somewhere safe.

    Call it from a signal handler, with the handler's ``frame``. A call while an interrupt is
    already waiting for a safe point does nothing (it is the same interrupt).
    """
    if _pending:
        return
    if not hasattr(signal, "setitimer"):  # Windows: no timer to retry
        raise KeyboardInterrupt
    if unsafe_code(frame) is None:
        _raise()
    _defer()


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
    """Whether ``frame`` or a caller of it is in code an interrupt must not land in."""
    return unsafe_code(frame) is not None


def unsafe_code(frame: FrameType | None) -> str | None:
    """Why ``frame`` (or a caller of it) must not be interrupted now: ``"import"``, ``"callback"``
    (``__del__``, a weakref callback), ``"locking"`` (threading and its users), or None.

    A main thread blocked in ``Condition.wait`` (under ``Event.wait``, ``Queue.get``,
    ``Thread.start``, ``Future.result``) is not "locking": that wait is written to be interrupted
    (its ``try``/``finally`` takes the lock back), and the code above it holds its locks in ``with``
    blocks.
    """
    locking = False
    if frame is not None and _blocked_in_wait(frame):
        frame = frame.f_back
        while frame is not None and frame.f_code.co_filename in _LOCKING:
            frame = frame.f_back
    while frame is not None:
        code = frame.f_code
        name = code.co_filename
        if name in _IMPORT_SYSTEM:
            return "import"
        if code.co_name == "__del__" or name in _CALLBACKS:
            return "callback"
        locking = locking or name in _LOCKING
        frame = frame.f_back
    return "locking" if locking else None


def _blocked_in_wait(frame: FrameType) -> bool:
    """Whether ``frame`` is ``threading.Condition.wait`` waiting in its ``waiter.acquire(...)``."""
    import linecache
    import threading

    return frame.f_code is threading.Condition.wait.__code__ and "waiter.acquire(" in linecache.getline(
        frame.f_code.co_filename, frame.f_lineno
    )


def _defer() -> None:
    """Raise the interrupt from the retry timer, once the main thread is somewhere safe."""
    global _pending, _pending_since, _previous_alarm
    _pending, _pending_since = True, time.monotonic()
    _previous_alarm = signal.signal(signal.SIGALRM, _retry)
    signal.setitimer(signal.ITIMER_REAL, RETRY_S)


def _retry(signum: int, frame: FrameType | None) -> None:
    global _pending
    if not _pending:
        return
    why = unsafe_code(frame)
    if why is not None and (why != "locking" or time.monotonic() - _pending_since < BLOCKED_S):
        signal.setitimer(signal.ITIMER_REAL, RETRY_S)
        return
    _pending = False
    previous = _previous_alarm if _previous_alarm is not None else signal.SIG_DFL
    signal.signal(signal.SIGALRM, previous)  # the timer is spent: no alarm can hit SIG_DFL
    _raise()


def _raise() -> None:
    global _raised, _previous_hook
    _raised = True
    if sys.unraisablehook is not _unraisable:
        _previous_hook = sys.unraisablehook
        sys.unraisablehook = _unraisable
    raise KeyboardInterrupt


def _unraisable(args: Any) -> None:
    """``sys.unraisablehook``: our interrupt, dropped where Python cannot raise it, is raised again
    (from the retry timer); anything else goes to the hook that was there."""
    if _raised and isinstance(args.exc_value, KeyboardInterrupt) and _in_main_thread():
        if not _pending:
            _defer()
        return
    _previous_hook(args)


def _in_main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()
