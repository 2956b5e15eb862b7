"""Checkpoints written in the background while training goes on: :class:`CheckpointWriter`.

At an epoch's end each :class:`~learnkit.callbacks.tracking.SaveModelCallback` given a writer asks
for its checkpoint: what the checkpoint holds is copied out of the learner at once
(:func:`learnkit.persist.snapshot_learner`: weights, optimizer state, RNG states, run position,
callbacks' state). After the savers (``order`` 55) the writer hands the epoch's snapshots to one
background thread, which serialises, writes and fsyncs them with the same crash-proof protocol as
a synchronous save (:func:`learnkit.persist.write_snapshot`), while the next epoch trains.

- At most one save is in flight: the next epoch's waits for it (a warning says so, once a run).
- A checkpoint asked for at the same run position as one already taken, and without optimizer
  state (the command line's ``best`` beside ``last``), takes no second snapshot: it becomes a hard
  link of that save's model file (:func:`learnkit.persist.link_checkpoint`), whose metadata gains
  the request's keys (``last`` then says that its epoch was the best so far).
- The fit waits for the write at its end (``on_train_end``, whatever ended it: a finished run, a
  stop on Ctrl-C/SIGTERM, an exception); :meth:`CheckpointWriter.close` waits too, and a process
  exiting waits for the thread (it is not a daemon). :meth:`Learner.save` and :meth:`Learner.load`
  wait for every writer first, so no two writes of a name overlap and nothing reads a half-done
  save.
- A write that fails is raised, as the synchronous save raises it (one line, exit 1, the previous
  checkpoint intact), at the next point the main thread meets the writer: the next epoch's end or
  the end of the fit.
"""

from __future__ import annotations

import threading
import time
import warnings
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from learnkit.callback import Callback, RunState

if TYPE_CHECKING:
    from learnkit.learner import Learner
    from learnkit.persist import Snapshot

__all__ = ["CheckpointWriter", "wait_for_writers"]

_writers: weakref.WeakSet[CheckpointWriter] = weakref.WeakSet()


def wait_for_writers() -> None:
    """Wait until no background checkpoint write is in flight (errors stay with their writer)."""
    for writer in list(_writers):
        writer.join()


@dataclass
class _Save:
    """One snapshot to write, and the names to link to its model file once written."""

    snapshot: Snapshot
    position: tuple[int, int, int]
    links: list[Path] = field(default_factory=list)


class CheckpointWriter(Callback):
    """Write the checkpoints :class:`SaveModelCallback` asks for on a background thread.

    Example:
        >>> writer = CheckpointWriter()
        >>> learn.fit(3, 1e-3, callbacks=[writer, SaveModelCallback(learn, every="epoch",
        ...     name="last", rolling=True, writer=writer)])
    """

    order = 55  # after the savers (50): the epoch's requests are all in

    def __init__(self) -> None:
        self._pending: list[_Save] = []
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self.waited = 0  # how many saves waited for the one before
        self.wait_seconds = 0.0
        _writers.add(self)

    # --- what the savers call ---
    def request(self, learn: Learner, name: str | Path, with_opt: bool, metadata: dict | None) -> None:
        """Take the snapshot of checkpoint ``name`` now; it is written after the savers are done."""
        from learnkit.checkpoint import resolve_checkpoint
        from learnkit.persist import snapshot_learner

        position = (learn.epoch, learn.iteration, learn.batch)
        if not with_opt:
            for save in self._pending:  # the same weights were just taken: link, not a copy
                if save.position == position:
                    save.snapshot.meta.update(metadata or {})
                    save.links.append(resolve_checkpoint(str(name), learn.path, learn.model_dir))
                    return
        self._pending.append(_Save(snapshot_learner(learn, name, with_opt, metadata), position))

    # --- the callback ---
    def on_epoch_end(self, state: RunState) -> None:
        self.flush()

    def on_train_end(self, state: RunState) -> None:
        if state.exception is None:
            self.wait()
        else:  # the fit's own exception is the one to report
            self.close()

    # --- the thread ---
    def flush(self) -> None:
        """Hand the requests taken so far to the background thread (after the save in flight)."""
        if not self._pending:
            return
        saves, self._pending = self._pending, []
        if self.busy:
            start = time.perf_counter()
            self.join()
            waited = time.perf_counter() - start
            self.waited += 1
            self.wait_seconds += waited
            if self.waited == 1:
                warnings.warn(
                    f"a checkpoint waited {waited:.2f}s for the previous one to be written "
                    "(writing takes longer than an epoch)",
                    stacklevel=2,
                )
        self._raise_error()
        self._thread = threading.Thread(target=self._write, args=(saves,), name="learnkit-checkpoint")
        self._thread.start()

    def _write(self, saves: list[_Save]) -> None:
        from learnkit.persist import link_checkpoint, write_snapshot

        try:
            for save in saves:
                path = write_snapshot(save.snapshot)
                for link in save.links:
                    link_checkpoint(path, link, save.snapshot.step)
        except BaseException as exc:  # raised in the main thread (flush, wait)
            self._error = exc

    @property
    def busy(self) -> bool:
        """Whether a write is in flight."""
        return self._thread is not None and self._thread.is_alive()

    def join(self) -> None:
        """Wait for the write in flight (its error, if any, is kept for :meth:`wait`)."""
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join()

    def wait(self) -> None:
        """Write what is asked, wait for it, and raise the error of a write that failed."""
        self.flush()
        self.join()
        self._raise_error()

    def close(self) -> BaseException | None:
        """Wait for the write in flight; return (not raise) an error not yet raised. Requests not
        yet handed over are dropped (a fit that failed between the savers and the writer)."""
        self._pending = []
        self.join()
        error, self._error = self._error, None
        return error

    def _raise_error(self) -> None:
        error, self._error = self._error, None
        if error is not None:
            raise error
