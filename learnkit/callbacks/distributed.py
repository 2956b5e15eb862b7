"""Data-parallel training over the processes of a ``torch.distributed`` group (DDP).

:class:`DistributedTrainer` runs the training batches through a ``DistributedDataParallel``
wrapper of ``learn.model``, so gradients are averaged over the ranks during the backward pass and
every rank takes the same step. ``learn.model`` itself stays the plain module: checkpoints keep
their parameter names (no ``module.`` prefix), and validation runs on it without any collective
inside the forward pass, so ranks may hold different numbers of validation batches (the data
layer shards validation without padding; losses and metrics are then summed over the ranks, which
makes them equal to a single-process evaluation of the same weights).

Buffers (BatchNorm running statistics) are not averaged by DDP: each rank updates its own. Before
validation and before any checkpoint, rank 0's buffers are given to every rank, so all ranks
evaluate the same model and the saved model is the one they evaluated.

Each rank sees ``bs`` items a batch: the effective batch size is ``bs x world size``.

Example (under ``torchrun --nproc-per-node 2``)::

    learn.fit(3, 1e-3, callbacks=[DistributedTrainer(learn)])
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch.nn.parallel import DistributedDataParallel

from learnkit.callback import LearnerCallback, RunState
from learnkit.distributed import broadcast_buffers, is_distributed

if TYPE_CHECKING:
    from learnkit.learner import Learner


class DistributedTrainer(LearnerCallback):
    """Trains through ``DistributedDataParallel(learn.model)``; a no-op in a single process.

    Args:
        learn: the Learner (its model already on this rank's device).
        find_unused_parameters: passed to DDP (needed when some parameters get no gradient, e.g.
            a frozen part).
    """

    order = -900  # before everything but the run position: the model is swapped in first

    def __init__(self, learn: Learner, find_unused_parameters: bool = False):
        super().__init__(learn)
        self.find_unused_parameters = find_unused_parameters
        self.ddp: DistributedDataParallel | None = None

    def _wrapped(self) -> DistributedDataParallel:
        model = self.learn.model
        if self.ddp is None or self.ddp.module is not model:
            param = next(model.parameters())
            ids = [param.device.index] if param.device.type == "cuda" else None
            self.ddp = DistributedDataParallel(
                model, device_ids=ids, find_unused_parameters=self.find_unused_parameters
            )
        return self.ddp

    def on_train_begin(self, state: RunState) -> None:
        if is_distributed():
            self._wrapped()  # DDP broadcasts rank 0's parameters and buffers here

    def on_epoch_begin(self, state: RunState) -> None:
        if self.ddp is not None and state.num_batch < state.n_batches:
            state.model = self.ddp

    def _to_plain(self, state: RunState) -> None:
        if self.ddp is not None:
            state.model = self.learn.model
            broadcast_buffers(self.learn.model)

    def on_batch_end(self, state: RunState) -> None:
        if state.train and state.num_batch + 1 >= state.n_batches:
            self._to_plain(state)  # the epoch's last training batch: validation comes next

    def on_cancel_epoch(self, state: RunState) -> None:
        self._to_plain(state)

    def on_train_end(self, state: RunState) -> None:
        if self.ddp is not None:
            state.model = self.learn.model
