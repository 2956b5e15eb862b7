"""Files written safely: a unique temporary name beside the target, then one atomic rename.

- :func:`temp_beside` creates the temporary file with ``mkstemp`` (``O_CREAT | O_EXCL``: never
  opens an existing file or follows a planted symlink; an unpredictable name holding the pid), and
  gives it the mode the target would get with ``fchmod`` (the process umask is read, never set to 0).
- :func:`write_atomically` writes through a callback and renames over the target: readers and
  crashes see the old file or the new one, never a torn one.
- :func:`open_no_follow` opens a file written in place (appended to, or created new) without
  following a symlink planted at its name.
- :func:`fsync_dir` makes a rename durable.
- :data:`crash_hook` lets tests stop a save between any two of its steps, as a SIGKILL would.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO

crash_hook: Callable[[str], None] | None = None
"""Called with the name of each step of a checkpoint save (tests raise there to simulate a kill)."""


def step(name: str) -> None:
    """Mark a step of a multi-file save for :data:`crash_hook`."""
    if crash_hook is not None:
        crash_hook(name)


def current_umask() -> int:
    """The process umask, read without changing it (``/proc``), else the usual 0o022."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return 0o022


def new_file_mode(path: Path) -> int:
    """The mode the new file gets: the old file's, else what ``open()`` would have given."""
    try:
        return path.stat().st_mode & 0o777
    except OSError:
        return 0o666 & ~current_umask()


def temp_beside(path: str | Path) -> tuple[int, str]:
    """``(fd, name)`` of a new, empty temporary file in ``path``'s folder (``.<name>.<pid>.*.tmp``)."""
    path = Path(path)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, new_file_mode(path))
    except OSError:
        pass
    return fd, name


def write_atomically(path: str | Path, write: Callable[[IO], None], *, binary: bool = True) -> Path:
    """Write ``path`` through ``write(file)`` under a temporary name, fsync, rename over ``path``."""
    path = Path(path)
    fd, name = temp_beside(path)
    try:
        with os.fdopen(fd, "wb" if binary else "w", **({} if binary else {"newline": ""})) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(name, path)
    except OSError as exc:
        Path(name).unlink(missing_ok=True)
        if exc.filename is None:  # a failed write names no file: name the one being written
            raise OSError(exc.errno, exc.strerror or str(exc), str(path)) from exc
        raise
    except BaseException:
        Path(name).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
    return path


_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
_MODES = {"xb": os.O_EXCL, "wb": os.O_TRUNC, "ab": os.O_APPEND}


def open_no_follow(path: str | Path, mode: str = "xb") -> IO[bytes]:
    """Open ``path`` for writing (``xb``: a new file only; ``wb``: truncate; ``ab``: append) without
    following a symlink planted at its name (``O_NOFOLLOW``): such a link is an OSError (ELOOP)."""
    flags = os.O_WRONLY | os.O_CREAT | _NOFOLLOW | _MODES[mode]
    fd = os.open(path, flags, 0o666)
    return os.fdopen(fd, mode.replace("x", "w"))


def fsync_dir(directory: str | Path) -> None:
    """Make a rename durable; some platforms cannot open a directory, which is fine there."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
