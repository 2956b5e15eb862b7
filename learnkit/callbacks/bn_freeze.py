"""Keep the running statistics of frozen batchnorm layers as they are (fastai v1's ``BnFreeze``)."""

from __future__ import annotations

from torch import nn

from learnkit.callback import LearnerCallback, RunState

BN_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def set_bn_eval(m: nn.Module) -> None:
    """Put every batchnorm layer of ``m`` whose parameters are frozen in eval mode (v1's)."""
    for layer in m.children():
        params = list(layer.parameters(recurse=False))
        if isinstance(layer, BN_TYPES) and params and not params[0].requires_grad:
            layer.eval()
        set_bn_eval(layer)


class BnFreeze(LearnerCallback):
    """At each epoch's start, after ``model.train()``, put the frozen batchnorm layers back in eval
    mode, so their running mean and variance stay the pretrained ones (use with
    ``train_bn=False``, else the norm layers are trainable and this does nothing)."""

    def on_epoch_begin(self, state: RunState) -> None:
        set_bn_eval(self.learn.model)
