"""Is someone watching? Whether live progress suits the process: a terminal or a notebook, not CI.

Shared by the library (the per-epoch table a ``Learner`` prints by default) and the command line
(live bars versus plain lines). Imports no torch.
"""

from __future__ import annotations

import os
import sys
from typing import Any

_TRUE = {"1", "true", "yes", "on", "y"}


def under_ci(environ: Any = None) -> bool:
    """Whether the ``CI`` environment variable is set to a true value (``1``, ``true``, ``yes``,
    ``on``; any case). ``CI=false``, ``CI=0`` or an empty ``CI`` do not count.

    Example:
        >>> under_ci({"CI": "false"}), under_ci({"CI": "True"})
        (False, True)
    """
    value = (os.environ if environ is None else environ).get("CI", "")
    return str(value).strip().lower() in _TRUE


def in_notebook() -> bool:
    """Whether this runs inside a Jupyter kernel (IPython's ZMQ shell)."""
    shell = sys.modules.get("IPython")
    if shell is None:
        return False
    try:
        ip = shell.get_ipython()  # type: ignore[attr-defined]
    except AttributeError:
        return False
    return ip is not None and type(ip).__name__ == "ZMQInteractiveShell"


def is_interactive(stream: Any = None) -> bool:
    """Whether ``stream`` (default ``sys.stdout``) is watched live: a notebook, or a terminal when
    not under CI."""
    if in_notebook():
        return True
    stream = sys.stdout if stream is None else stream
    try:
        tty = stream.isatty()
    except (AttributeError, ValueError):
        return False
    return bool(tty) and not under_ci()
