"""Experiment trackers ("loggers"): where a fit's losses, metrics and schedule go besides the screen.

A logger is a factory ``factory(learn, *, append=False) -> Callback`` named by an entry point of
the group ``learnkit.loggers``, as archs are named in ``learnkit.zoo``: an MLflow or W&B plug-in
declares one in its own pyproject and ``--logger NAME`` finds it. learnkit's built-ins come the
same way (``csv``: ``history.csv``; ``tensorboard``: event files under the run folder); a source
checkout that is not installed falls back to :mod:`learnkit.loggers.builtin` directly.

This module imports no torch. Example::

    # pyproject.toml of a plug-in:  [project.entry-points."learnkit.loggers"]  mlflow = "mylog:make"
    from learnkit.loggers import create_loggers
    callbacks = create_loggers(["csv", "tensorboard"], learn)
"""

from __future__ import annotations

import difflib
import importlib.metadata
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from learnkit.errors import UsageError

if TYPE_CHECKING:
    from learnkit.learner import Learner

ENTRY_POINT_GROUP = "learnkit.loggers"
DEFAULT = ("csv",)

LoggerFactory = Callable[..., Any]


def _entry_points() -> dict[str, importlib.metadata.EntryPoint]:
    eps: dict[str, importlib.metadata.EntryPoint] = {}
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        eps.setdefault(ep.name, ep)
    return eps


def _builtins() -> dict[str, str]:
    from learnkit.loggers import builtin

    return {name: f"learnkit.loggers.builtin:{name}" for name in builtin.NAMES}


def names() -> list[str]:
    """The logger names available: the built-ins and every installed plug-in, sorted."""
    return sorted(set(_builtins()) | set(_entry_points()))


def get_logger(name: str) -> LoggerFactory:
    """The factory of logger ``name``; an unknown name raises :class:`UsageError` with close names."""
    ep = _entry_points().get(name)
    if ep is not None:
        return ep.load()
    if name in _builtins():
        from learnkit.loggers import builtin

        return getattr(builtin, name)
    close = difflib.get_close_matches(str(name), names(), n=3, cutoff=0.5)
    hint = f"did you mean {', '.join(close)}? " if close else ""
    raise UsageError(f"unknown logger {name!r}; {hint}available: {', '.join(names())}")


def check_names(loggers: Iterable[str]) -> list[str]:
    """``loggers`` without repeats, in order, each checked to exist (before any training starts)."""
    chosen = list(dict.fromkeys(loggers))
    known = names()
    for name in chosen:
        if name not in known:
            get_logger(name)  # raises with the close names
    return chosen


def create_loggers(
    loggers: Iterable[str] = DEFAULT, learn: Learner | None = None, *, append: bool = False
) -> list[Any]:
    """One callback per logger name, for ``learn``; ``append`` continues a resumed run's records."""
    return [get_logger(name)(learn, append=append) for name in check_names(loggers)]
