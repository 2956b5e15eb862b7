"""A graph of the losses, redrawn after each epoch (fastai v1's ``ShowGraph``).

In a notebook the graph shows under the cell and is updated in place; elsewhere it is written to
``<learn.path>/plots/show_graph.png`` after each epoch (the path is in :attr:`ShowGraph.path`).
It draws on a :class:`matplotlib.figure.Figure` of its own: the process's matplotlib backend and
pyplot's figures are left alone.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING, Any

from learnkit.callback import LearnerCallback, RunState
from learnkit.interactive import in_notebook

if TYPE_CHECKING:
    from learnkit.learner import Learner


class ShowGraph(LearnerCallback):
    """After each epoch with a validation loss: the smoothed training loss of every batch and the
    validation loss of every epoch, the x axis spanning the whole fit, as v1's."""

    order = 20  # after the Recorder has the epoch

    def __init__(self, learn: Learner, name: str = "show_graph", figsize: tuple = (6, 4)):
        super().__init__(learn)
        self.name, self.figsize = name, figsize
        self.path: Path | None = None
        self._display: Any = None

    def on_train_begin(self, state: RunState) -> None:
        self._display = None
        self._first = len(self.learn.recorder.nb_batches)  # this fit's epochs start here

    def figure(self, n_epochs: int) -> Any:
        """The graph as a Figure (no pyplot): train loss per batch, valid loss per epoch."""
        from matplotlib.figure import Figure

        rec = self.learn.recorder
        rec.flush()
        fig = Figure(figsize=self.figsize)
        ax = fig.subplots()
        ax.plot(range(len(rec.losses)), rec.losses, label="train")
        ends, total = [], 0
        for n in rec.nb_batches:
            total += n
            ends.append(total)
        valid = [(e, row["valid_loss"]) for e, row in zip(ends, rec.history) if row["valid_loss"] is not None]
        if valid:
            ax.plot([e for e, _ in valid], [v for _, v in valid], label="valid")
        done = len(rec.nb_batches) - self._first
        per_epoch = rec.nb_batches[-1] if rec.nb_batches else 1
        ax.set_xlim(0, max(1, (n_epochs - done) * per_epoch + len(rec.losses)))
        top = max([*rec.losses, *(v for _, v in valid)], default=1.0)
        ax.set_ylim(0, top if top > 0 else 1.0)
        ax.set_xlabel("batches processed")
        ax.set_ylabel("loss")
        ax.legend()
        return fig

    def on_epoch_end(self, state: RunState) -> None:
        if not state.last_metrics or state.last_metrics[0] is None:
            return
        fig = self.figure(state.n_epochs)
        if in_notebook():
            self._show(fig)
            return
        from learnkit.atomic import write_atomically

        self.path = Path(self.learn.path) / "plots" / f"{self.name}.png"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(self.path, lambda f: fig.savefig(f, format="png", bbox_inches="tight"))

    def _show(self, fig: Any) -> None:
        from IPython.display import Image, display

        buf = io.BytesIO()
        fig.savefig(buf, format="png", bbox_inches="tight")
        image = Image(data=buf.getvalue())
        if self._display is None:
            self._display = display(image, display_id=True)
        else:
            self._display.update(image)
