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

Each rank sees ``bs`` items a batch: the effective batch size is ``bs x world size``. BatchNorm
normalises each rank's ``bs`` items by their own statistics, unless ``sync_bn``: the model's
BatchNorm layers then become ``SyncBatchNorm`` (statistics over the whole ``bs x world size``
batch, as one process with that batch; CUDA only, torch's kernels).

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
        sync_bn: turn the model's BatchNorm layers into ``SyncBatchNorm`` while distributed
            (:func:`sync_batchnorm`); they stay so after the fit (the same parameters and buffers).
    """

    order = -900  # before everything but the run position: the model is swapped in first

    def __init__(self, learn: Learner, find_unused_parameters: bool = False, sync_bn: bool = False):
        super().__init__(learn)
        self.find_unused_parameters = find_unused_parameters
        self.sync_bn = sync_bn
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
            if self.sync_bn:
                sync_batchnorm(self.learn)
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


def sync_batchnorm(learn: Learner) -> int:
    """Replace every BatchNorm layer of ``learn.model`` (and in its layer groups, which hold the
    same modules) by a ``SyncBatchNorm`` sharing its parameters and buffers; returns how many."""
    from torch import nn

    swapped: dict[int, nn.Module] = {}
    for module in list(learn.model.modules()):
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and not isinstance(module, nn.SyncBatchNorm):
            swapped[id(module)] = nn.SyncBatchNorm.convert_sync_batchnorm(module)
    if not swapped:
        return 0
    for root in [learn.model, *learn.layer_groups]:
        for parent in root.modules():
            for name, child in list(parent.named_children()):
                if id(child) in swapped:
                    setattr(parent, name, swapped[id(child)])
    return len(swapped)
