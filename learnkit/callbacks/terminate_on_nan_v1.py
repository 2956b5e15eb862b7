"""fastai v1's ``TerminateOnNaNCallback`` (``fastai/callbacks/tracker.py``): no learner needed,
checks every training loss, prints v1's line and ends the fit without validating.

learnkit's own :class:`~learnkit.callbacks.terminate_on_nan.TerminateOnNaN` does more for less
(the weights and the validation loss too, one host sync every ``check_every`` batches); this one
keeps v1's name, signature and output.
"""

from __future__ import annotations

import torch

from learnkit.callback import Callback, RunState


class TerminateOnNaNCallback(Callback):
    """End the fit at the first training batch whose loss is NaN (one host sync per batch, as v1):
    prints ``Epoch/Batch (epoch/batch): Invalid loss, terminating training.``; :attr:`stop` is then
    True."""

    def __init__(self) -> None:
        self.stop = False

    def on_train_begin(self, state: RunState) -> None:
        self.stop = False

    def on_batch_end(self, state: RunState) -> None:
        if not state.train or state.last_loss is None:
            return
        if self.stop or bool(torch.isnan(torch.as_tensor(state.last_loss)).any()):
            if not self.stop:
                print(
                    f"Epoch/Batch ({state.fit_epoch}/{state.num_batch}): Invalid loss, terminating training."
                )
            self.stop = True
            state.stop_epoch = state.stop_training = state.skip_validate = True
