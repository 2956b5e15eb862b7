"""The errors a user can meet, each with the exit code of docs/design.md section 5.

The command line prints ``str(error)`` as one line and exits with ``error.exit_code``; the library
raises these so that a caller can tell bad input from a failed run. This module imports no torch.
"""


class LearnkitError(Exception):
    """Base of the errors learnkit raises on purpose. Exit code 1: the run failed."""

    exit_code = 1


class UsageError(LearnkitError, ValueError):
    """A bad argument: an unknown arch, a malformed learning rate. Exit code 2."""

    exit_code = 2


class DataError(LearnkitError, ValueError):
    """Unusable data or input: a missing folder, no images, an unreadable image. Exit code 3."""

    exit_code = 3


class CheckpointError(LearnkitError, ValueError):
    """A checkpoint that cannot be used: malformed, truncated, of another model. Exit code 4."""

    exit_code = 4


class RunInterrupted(LearnkitError):
    """The run was stopped by SIGINT/SIGTERM after saving what could be saved. Exit code 130."""

    exit_code = 130
