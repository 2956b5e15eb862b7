"""learnkit's built-in loggers, declared in its pyproject under ``learnkit.loggers``.

- ``csv``: :class:`~learnkit.callbacks.csv_logger.CSVLogger`, one row per epoch in ``history.csv``.
- ``tensorboard``: :class:`~learnkit.callbacks.tensorboard.TensorBoardLogger`, event files under
  ``<run>/tensorboard`` (needs the ``tensorboard`` package: ``pip install 'learnkit[tensorboard]'``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from learnkit.learner import Learner

NAMES = ("csv", "tensorboard")


def csv(learn: Learner, *, append: bool = False) -> Any:
    """``history.csv`` in the run folder (the default logger)."""
    from learnkit.callbacks.csv_logger import CSVLogger

    return CSVLogger(learn, append=append)


def tensorboard(learn: Learner, *, append: bool = False) -> Any:
    """TensorBoard event files under ``<run>/tensorboard`` (a resumed run writes a new file)."""
    from learnkit.callbacks.tensorboard import TensorBoardLogger

    return TensorBoardLogger(learn)
