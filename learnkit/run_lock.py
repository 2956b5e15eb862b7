"""One writer per run folder, and a run folder checked before any training starts.

- :func:`check_run_folder` finds, before an epoch is spent, a ``--path`` that cannot hold a run: a
  file where the folder (or its ``models`` folder) should be, a checkpoint name taken by a folder,
  a folder that cannot be written (read-only, no permission). One :class:`UsageError` line (exit 2).
- :func:`run_folder_lock` holds an OS lock (``flock``) on the run folder itself and on
  ``<path>/.learnkit.lock`` for a whole fit (the folder's lock holds if the file is deleted).
  A second fit on the same folder is refused at once, naming the holder's pid (written into the
  file). The OS releases the lock when the process ends, however it ends: no stale lock survives
  a crash or a SIGKILL.
- :func:`claim_folder` does both for a run, and undoes them when the run fails before it wrote
  anything: the folders the check created (if still empty) and the lock file it created go, so a
  refused run leaves no files. Nothing that existed before, or that the run wrote, is removed.

Example:
    >>> with run_folder_lock("run1"):  # doctest: +SKIP
    ...     learn.fit(3)
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from learnkit.errors import UsageError

LOCK_NAME = ".learnkit.lock"
_held: set[Path] = set()
_fds: set[int] = set()


def _close_in_child() -> None:
    """A forked child (a data-loader worker) must not keep the parent's lock alive: were the parent
    killed, the lock would last as long as the worker."""
    for fd in list(_fds):
        try:
            os.close(fd)
        except OSError:
            pass
    _fds.clear()
    _held.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_close_in_child)


def check_run_folder(path: str | Path, model_dir: str | Path = "models", names: tuple[str, ...] = ()) -> None:
    """Refuse a run folder that cannot hold this run's files (see the module docstring).

    ``names`` are checkpoint names the run will write (``last``, ``best``): each must not be taken
    by a folder.
    """
    path = Path(path)
    models = path / model_dir
    for folder, what in ((path, "--path"), (models, "its checkpoint folder")):
        if folder.exists() and not folder.is_dir():
            raise UsageError(f"{what} {folder} is a file, not a folder")
    for name in names:
        for file in (models / f"{name}.safetensors", models / f"{name}.opt.safetensors"):
            if file.is_dir():
                raise UsageError(f"checkpoint {file} is a folder; move it away or choose another --path")
    for folder in (path, models):
        _check_writable(folder)


def _check_writable(folder: Path) -> None:
    """Create (if needed) and write a probe file in ``folder``; a UsageError names what failed."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".learnkit-probe.{os.getpid()}"
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
        os.close(fd)
        probe.unlink()
    except OSError as exc:
        reason = os.strerror(exc.errno) if exc.errno else str(exc)
        raise UsageError(f"cannot write in {folder}: {reason.lower()}; choose a writable --path") from None


def _holder(fd: int) -> str:
    try:
        text = os.pread(fd, 64, 0).decode("ascii", "replace").strip()
    except OSError:
        return "unknown"
    return text if text.isdigit() else "unknown"


@contextmanager
def run_folder_lock(path: str | Path, *, remove_on_error: bool = False) -> Iterator[Path]:
    """Hold the run folder's lock for the block; raise :class:`UsageError` (exit 2) at once when
    another process holds it. Yields the lock file's path.

    ``remove_on_error``: when the block raises, remove the lock file if this call created it
    (done while the lock is still held). The folder itself is locked too, so the lock holds even
    when its file is deleted while the run goes on.
    """

    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    lock = folder / LOCK_NAME
    dir_fd = _lock_folder_itself(folder, lock)
    try:
        with _lock_file(folder, lock, remove_on_error) as held:
            yield held
    finally:
        _fds.discard(dir_fd)
        os.close(dir_fd)


def _lock_folder_itself(folder: Path, lock: Path) -> int:
    """``flock`` on the run folder itself (its directory), held as long as the returned fd: a
    second run is refused even when the lock file was deleted while the first ran."""
    import fcntl

    try:
        dir_fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise UsageError(
            f"cannot lock the run folder {folder}: {os.strerror(exc.errno or errno.EIO)}"
        ) from None
    try:
        fcntl.flock(dir_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(dir_fd)
        holder = _holder_of(lock)
        raise UsageError(
            f"run folder {folder} is in use by another learnkit run (pid {holder}); wait for it "
            "to end or choose another --path"
        ) from None
    except BaseException:
        os.close(dir_fd)
        raise
    _fds.add(dir_fd)
    return dir_fd


def _holder_of(lock: Path) -> str:
    try:
        fd = os.open(lock, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return "unknown; its lock file was removed"
    try:
        return _holder(fd)
    finally:
        os.close(fd)


@contextmanager
def _lock_file(folder: Path, lock: Path, remove_on_error: bool) -> Iterator[Path]:
    """The lock file's ``flock`` (what older learnkit versions hold), with the pid written in it."""
    import fcntl

    flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    while True:
        created = not os.path.lexists(lock)
        try:
            fd = os.open(lock, flags, 0o644)
        except OSError as exc:
            raise UsageError(
                f"cannot lock the run folder {folder}: {os.strerror(exc.errno or errno.EIO)}"
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            raise UsageError(
                f"run folder {folder} is in use by another learnkit run (pid {holder}); wait for it "
                "to end or choose another --path"
            ) from None
        except BaseException:
            os.close(fd)
            raise
        if _same_file(fd, lock):
            break
        os.close(fd)  # a failed run removed this file after we opened it: lock the one there now
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        key = folder.resolve()
        _held.add(key)
        _fds.add(fd)
        try:
            yield lock
        except BaseException:
            if remove_on_error and created:
                try:
                    lock.unlink()  # still held: no other run can have locked this file
                except OSError:
                    pass
            raise
        finally:
            _held.discard(key)
    finally:
        _fds.discard(fd)
        os.close(fd)  # releases the lock (the OS does the same if the process dies)


def _same_file(fd: int, path: Path) -> bool:
    """True when ``path`` is still the file open as ``fd`` (not removed or replaced since)."""
    try:
        a, b = os.fstat(fd), os.stat(path, follow_symlinks=False)
    except OSError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def _missing_folders(folder: Path) -> list[Path]:
    """``folder`` and its ancestors that do not exist yet, deepest first."""
    missing = []
    for f in (folder, *folder.parents):
        if os.path.lexists(f):
            break
        missing.append(f)
    return missing


@contextmanager
def claim_folder(
    path: str | Path, model_dir: str | Path = "models", names: tuple[str, ...] = ()
) -> Iterator[Path]:
    """:func:`check_run_folder`, then :func:`run_folder_lock` for the block. When the check or the
    block raises, what they created is removed: the lock file, and the folders (``path``, its
    ``model_dir``, missing parents) that did not exist before and are still empty."""
    folder = Path(path)
    created = [*_missing_folders(folder / model_dir)]
    created += [f for f in _missing_folders(folder) if f not in created]
    try:
        check_run_folder(folder, model_dir, names=names)
        with run_folder_lock(folder, remove_on_error=True) as lock:
            yield lock
    except BaseException:
        for f in sorted(created, key=lambda p: len(p.parts), reverse=True):
            try:
                f.rmdir()  # only when empty: never what the run wrote
            except OSError:
                pass
        raise


def refuse_if_in_use(path: str | Path) -> None:
    """A :class:`UsageError` (exit 2) at once when another process holds the run folder's lock; a
    check, not a claim (the fit takes the lock later). Imports no torch, so a second fit on a folder
    in use is refused before the seconds that loading torch takes, during which the first could end."""
    folder = Path(path)
    if not folder.is_dir() or holds_lock(folder):
        return
    try:
        fd = _lock_folder_itself(folder, folder / LOCK_NAME)
    except UsageError as exc:
        if "in use" in str(exc):
            raise
        return  # not lockable here: the fit's own claim says why
    _fds.discard(fd)
    os.close(fd)


def holds_lock(path: str | Path) -> bool:
    """True while this process holds ``path``'s run-folder lock."""
    return Path(path).resolve() in _held
