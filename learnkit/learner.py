"""The Learner: data + model + optimizer + loss + metrics + callbacks, and the loop around them.

Training features that are more than a few lines (1cycle, the LR finder, TTA, interpretation,
mixup, clipping, checkpoints) live in their own modules; the methods here are thin entry points
with the seed's (fastai v1) names.

Example:
    >>> learn = Learner(data, model, metrics=[accuracy])
    >>> learn.fit(2, slice(1e-4, 1e-3))
    >>> learn.save("stage-1")
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from learnkit.callback import Callback, CallbackHandler, Event, RunState
from learnkit.callbacks.epoch_table import default_progress
from learnkit.core import listify
from learnkit.data import DatasetType
from learnkit.layers import check_layer_groups, init_weights, is_norm, split_model
from learnkit.loop import get_preds, run_epochs, validate
from learnkit.losses import default_activation
from learnkit.metrics import AverageMetric, metric_name
from learnkit.optim import AdamW, LRLike, OptimWrapper, lr_range, match_state_layout
from learnkit.precision import BF16, FP16, Precision
from learnkit.recorder import Recorder

if TYPE_CHECKING:
    from learnkit.interpret import ClassificationInterpretation


class _RunPosition(Callback):
    """Keeps the learner's position in its run (epoch, iteration, batch) current, before anyone
    else's ``on_batch_end``/``on_epoch_end`` reads it (a checkpoint written there must be exact)."""

    order = -1000

    def __init__(self, learn: Learner):
        self.learn = learn

    def on_batch_end(self, state: RunState) -> None:
        if state.train:
            self.learn.iteration = state.iteration
            self.learn.batch = state.num_batch + 1

    def on_epoch_end(self, state: RunState) -> None:
        self.learn.epoch, self.learn.batch = state.epoch + 1, 0


class Learner:
    """Trains ``model`` on ``data``.

    Args:
        data: a DataBunch (train/valid loaders, classes, device).
        model: the module to train; moved to ``data.device``.
        opt_func: makes the optimizer from parameter groups (default Adam, betas (0.9, 0.99)).
        loss_func: defaults to ``data.loss_func`` (cross-entropy for classes and masks).
        metrics: functions ``metric(output, target)`` averaged over the validation set (one, or a list).
        true_wd: decoupled weight decay (AdamW style) if True, else L2 in the gradient.
        bn_wd: weight decay on norm layers and biases too.
        wd: default weight decay of ``fit``.
        train_bn: norm layers in frozen groups keep training.
        path, model_dir: checkpoints go to ``path/model_dir``, plots to ``path/plots``.
        callback_fns: callables ``fn(learn) -> Callback`` (one, or a list) made once; each is exposed as
            ``learn.<snake_case class name>`` (the Recorder always is: ``learn.recorder``).
        callbacks: callbacks used in every fit (one, or a list).
        layer_groups: the modules the model is split into (default: the whole model).
        model_spec: how the zoo built the model (stored in checkpoints to rebuild it).
        quiet: print nothing while fitting; otherwise ``fit``, ``fit_one_cycle`` and ``lr_find``
            print the per-epoch table on a terminal or in a notebook (see
            :mod:`learnkit.callbacks.epoch_table`).
    """

    def __init__(
        self,
        data: Any,
        model: nn.Module,
        opt_func: Callable = AdamW,
        loss_func: Callable | None = None,
        metrics: Sequence[Callable] | Callable | None = None,
        true_wd: bool = True,
        bn_wd: bool = True,
        wd: LRLike = 0.01,
        train_bn: bool = True,
        path: str | Path | None = None,
        model_dir: str | Path = "models",
        callback_fns: Sequence[Callable] | Callable | None = None,
        callbacks: Sequence[Callback] | Callback = (),
        layer_groups: Sequence[nn.Module] | None = None,
        model_spec: dict | None = None,
        quiet: bool = False,
    ):
        self.data, self.opt_func = data, opt_func
        self.model = model.to(data.device) if getattr(data, "device", None) is not None else model
        self.loss_func = loss_func if loss_func is not None else getattr(data, "loss_func", None)
        if self.loss_func is None:
            from learnkit.errors import UsageError

            raise UsageError("no loss_func given and the data has no default loss")
        self.metrics = listify(metrics)
        self.true_wd, self.bn_wd, self.wd, self.train_bn = true_wd, bn_wd, wd, train_bn
        if path is None:  # fastai v1: the data's folder (DataBunch.create / from_folder set it), else "."
            path = getattr(data, "path", None) or "."
        self.path, self.model_dir = Path(path), Path(model_dir)
        self.callbacks = listify(callbacks)
        self.run_metadata: dict = {}  # more model-file metadata for every save (a job puts its config here)
        self.layer_groups = list(layer_groups) if layer_groups else [self.model]
        self.model_spec = model_spec
        self.quiet = quiet
        self.opt: OptimWrapper | None = None
        self.precision: Precision = Precision()
        self.epoch = self.iteration = self.batch = 0  # position in the run: see _RunPosition
        self.callback_fns = [Recorder, *listify(callback_fns)]
        self.fn_callbacks = [fn(self) for fn in self.callback_fns]
        for cb in self.fn_callbacks:  # the one place callbacks become attributes
            setattr(self, cb.cb_name, cb)

    # --- optimizer and layer groups ---
    def lr_range(self, lr: LRLike) -> list[float]:
        """One learning rate per layer group from a float, a sequence or a slice."""
        return lr_range(lr, len(self.layer_groups))

    def create_opt(self, lr: LRLike, wd: LRLike = 0.0) -> OptimWrapper:
        """Make the optimizer over the layer groups (replacing any existing one and its state)."""
        self.opt = OptimWrapper(self.opt_func, self.layer_groups, lr, wd, self.true_wd, self.bn_wd)
        return self.opt

    def _prepare_opt(self, lr: LRLike, wd: LRLike | None) -> None:
        wd = self.wd if wd is None else wd
        if self.opt is None:
            self.create_opt(lr, wd)
        else:
            self.opt.lr, self.opt.wd = lr, wd

    def split(self, split_on: Callable | Sequence[nn.Module] | nn.Module) -> Learner:
        """Split the model into layer groups, as fastai v1 does (see :func:`~learnkit.layers.split_model`).

        ``split_on`` is the modules where each group *starts* (``(m[0][6], m[1])``: the leaves
        before ``m[0][6]``, then up to ``m[1]``, then ``m[1]`` on), or a function returning them
        from the model (``lambda m: (m[0][6], m[1])``); it may instead give the groups themselves as
        lists of modules. Every parameter must end up in exactly one group (``UsageError`` naming
        the others). The optimizer is rebuilt at the next fit (its state does not carry over a new
        split). Returns the learner.
        """
        if callable(split_on) and not isinstance(split_on, nn.Module):
            split_on = split_on(self.model)
        groups = split_model(self.model, split_on)
        check_layer_groups(self.model, groups, "split")
        self.layer_groups = groups
        self.opt = None
        return self

    def freeze_to(self, n: int) -> None:
        """Freeze the layer groups ``layer_groups[:n]``; train the rest (``layer_groups[n:]``).

        Python's slicing, as fastai v1: a negative ``n`` counts from the end, and ``freeze_to(-k)``
        with ``k`` beyond the number of groups freezes nothing. With ``train_bn`` the norm layers of
        frozen groups keep training. The groups must hold every parameter exactly once
        (``UsageError`` otherwise). The optimizer and its state are kept.
        """
        check_layer_groups(self.model, self.layer_groups, "the layer groups")
        frozen_ids = {id(g) for g in self.layer_groups[:n]}
        for group in self.layer_groups:
            frozen = id(group) in frozen_ids
            for m in group.modules():
                train = not frozen or (self.train_bn and is_norm(m))
                for p in m.parameters(recurse=False):
                    p.requires_grad_(train)

    def freeze(self) -> None:
        """Freeze every layer group but the last (the head); ``UsageError`` with a single group."""
        if len(self.layer_groups) < 2:
            from learnkit.errors import UsageError

            raise UsageError("freeze needs two layer groups or more (split the model first)")
        self.freeze_to(-1)

    def unfreeze(self) -> None:
        """Train every layer group."""
        self.freeze_to(0)

    def init(self, fn: Callable) -> None:
        """Initialise every weight but the norm layers' with ``fn`` (biases to zero); frozen layers
        (whose first parameter does not require a gradient) are left as they are, as fastai v1 does."""
        init_weights(self.model, fn)

    # --- training ---
    def fit(
        self,
        epochs: int,
        lr: LRLike = slice(3e-3),
        wd: LRLike | None = None,
        callbacks: Sequence[Callback] | Callback | None = None,
    ) -> None:
        """Train for ``epochs`` epochs at ``lr`` (float, per-group sequence or slice).

        The default ``slice(3e-3)`` is fastai v1's: 3e-3 for the last group, 3e-4 for the others.
        """
        self._prepare_opt(lr, wd)
        self._run(epochs, callbacks=listify(callbacks))

    def _run(self, epochs: int, callbacks: list, metrics: Sequence[Callable] | None = None) -> None:
        if self.opt is None:
            self.create_opt(slice(3e-3), self.wd)
        metrics = self.metrics if metrics is None else listify(metrics)
        cbs = [_RunPosition(self), *self.callbacks, *self.fn_callbacks, *listify(callbacks)]
        cbs += default_progress(self, cbs)
        state = RunState(
            learn=self,
            model=self.model,
            opt=self.opt,
            loss_func=self.loss_func,
            data=self.data,
            precision=self.precision,
            metrics=metrics,
            metrics_names=[metric_name(m) for m in metrics],
            n_epochs=epochs,
            start_epoch=self.epoch,
            epoch=self.epoch,
            iteration=self.iteration,
        )
        cbh = CallbackHandler(cbs + [_as_callback(m) for m in metrics], state)
        run_epochs(epochs, state, cbh, start_batch=self.batch)

    def fit_one_cycle(self, cyc_len: int, max_lr: LRLike = slice(3e-3), **kwargs: Any) -> None:
        """1cycle training (see :func:`learnkit.callbacks.one_cycle.fit_one_cycle`)."""
        from learnkit.callbacks.one_cycle import fit_one_cycle

        fit_one_cycle(self, cyc_len, max_lr, **kwargs)

    def lr_find(self, start_lr: LRLike = 1e-7, end_lr: LRLike = 10, num_it: int = 100, **kwargs: Any) -> Any:
        """LR range test; restores the model and optimizer (see :mod:`learnkit.callbacks.lr_finder`)."""
        from learnkit.callbacks.lr_finder import lr_find

        return lr_find(self, start_lr, end_lr, num_it, **kwargs)

    def clip_grad(self, clip: float = 0.1) -> Learner:
        """Clip the gradient norm at ``clip`` in every following fit."""
        from learnkit.callbacks.clip_grad import GradientClipping

        self.callbacks.append(GradientClipping(self, clip))
        return self

    def mixup(self, alpha: float = 0.4, stack_x: bool = False, stack_y: bool = True) -> Learner:
        """Train with mixup in every following fit."""
        from learnkit.callbacks.mixup import MixUpCallback

        self.callbacks.append(MixUpCallback(self, alpha, stack_x, stack_y))
        return self

    # --- precision ---
    def to_fp16(self, loss_scale: float = 512.0, dynamic: bool = True) -> Learner:
        """float16 autocast with (dynamic) loss scaling; weights stay fp32."""
        self.precision = FP16(loss_scale, dynamic, device=str(getattr(self.data, "device", None) or "cpu"))
        return self

    def to_bf16(self) -> Learner:
        """bfloat16 autocast (CPU or CUDA); weights stay fp32."""
        self.precision = BF16()
        return self

    def to_fp32(self) -> Learner:
        """Back to full precision."""
        self.precision = Precision()
        return self

    def to_channels_last(self) -> Learner:
        """Keep the model's 4-d weights (convolutions) in the channels-last memory format.

        cuDNN's convolutions are faster so on recent GPUs, above all under mixed precision (tensor
        cores); inputs follow at the first convolution. The command line does this on CUDA. The
        model must not ``view`` activations as contiguous NCHW (``flatten``/``reshape`` are fine,
        and the zoo's models use them). Parameters keep their identity (the optimizer is kept).
        """
        self.model = self.model.to(memory_format=torch.channels_last)
        if self.opt is not None:  # the moments must follow their weights (fused Adam)
            match_state_layout(self.opt.opt)
        return self

    # --- evaluation ---
    def dl(self, ds_type: DatasetType = DatasetType.Valid) -> Any:
        """The loader of ``ds_type``."""
        return self.data.dl(ds_type)

    def validate(
        self, dl: Any = None, callbacks: Sequence[Callback] | None = None, metrics: Sequence | None = None
    ) -> list[float]:
        """``[valid_loss, *metrics]`` over ``dl`` (default: the validation set)."""
        dl = self.data.valid_dl if dl is None else dl
        metrics = self.metrics if metrics is None else listify(metrics)
        state = RunState(
            learn=self,
            model=self.model,
            loss_func=self.loss_func,
            data=self.data,
            precision=self.precision,
            metrics=metrics,
            n_epochs=1,
            metrics_names=[metric_name(m) for m in metrics],
        )
        cbh = CallbackHandler([*self.callbacks, *listify(callbacks), *map(_as_callback, metrics)], state)
        cbh(Event.train_begin)
        cbh(Event.epoch_begin)
        state.last_metrics = [validate(self.model, dl, self.loss_func, cbh)]
        cbh(Event.epoch_end)
        cbh(Event.train_end)
        return state.last_metrics

    def get_preds(
        self,
        ds_type: DatasetType = DatasetType.Valid,
        with_loss: bool = False,
        n_batch: int | None = None,
        activ: Callable | None = None,
    ) -> list[torch.Tensor]:
        """``[predictions, targets]`` (+ per-item losses) of ``ds_type``, on the CPU.

        ``activ`` defaults to the one that fits the loss (softmax for cross-entropy, ...).
        """
        activ = activ if activ is not None else default_activation(self.loss_func)
        cbh = CallbackHandler(
            self.callbacks, RunState(learn=self, model=self.model, precision=self.precision)
        )
        loss = self.loss_func if with_loss else None
        return get_preds(
            self.model, self.dl(ds_type), cb_handler=cbh, activ=activ, loss_func=loss, n_batch=n_batch
        )

    def backward(self, item: Any) -> torch.Tensor:
        """Forward and backward on one ``(x, y)`` item (no step), e.g. to inspect gradients by hooks."""
        x, y = item
        device = next(self.model.parameters()).device
        xb, yb = torch.as_tensor(x)[None].to(device), torch.as_tensor(y)[None].to(device)
        self.model.eval()
        with self.precision.autocast(device.type):
            loss = self.loss_func(self.model(xb), yb)
        self.precision.backward(loss)
        return loss.detach()

    def predict(self, item: Any, **kwargs: Any) -> tuple:
        """``(label, index, probabilities)`` for one item (see :mod:`learnkit.inference`)."""
        from learnkit.inference import predict

        return predict(self, item, **kwargs)

    def pred_batch(
        self, ds_type: DatasetType = DatasetType.Valid, batch: Any = None, reconstruct: bool = False
    ):
        """Predictions of one batch (see :mod:`learnkit.inference`)."""
        from learnkit.inference import pred_batch

        return pred_batch(self, ds_type, batch, reconstruct)

    def TTA(
        self,
        beta: float = 0.4,
        scale: float = 1.35,
        ds_type: DatasetType = DatasetType.Valid,
        with_loss: bool = False,
    ):  # noqa: N802 - the seed's name
        """Test-time augmentation (see :mod:`learnkit.tta`)."""
        from learnkit.tta import tta

        return tta(self, beta=beta, scale=scale, ds_type=ds_type, with_loss=with_loss)

    def show_results(self, ds_type: DatasetType = DatasetType.Valid, rows: int = 3, **kwargs: Any) -> Path:
        """Save a grid of pictures with truth and prediction; returns the PNG's path."""
        from learnkit.show import show_results

        return show_results(self, ds_type, rows, **kwargs)

    def interpret(
        self, ds_type: DatasetType = DatasetType.Valid, tta: bool = False
    ) -> ClassificationInterpretation:
        """A ClassificationInterpretation (confusion matrix, top losses) of ``ds_type``; with ``tta``
        from the test-time-augmented predictions and their losses (see :meth:`TTA`)."""
        from learnkit.interpret import ClassificationInterpretation

        return ClassificationInterpretation.from_learner(self, ds_type, tta=tta)

    def model_summary(self, n: int = 70) -> str:
        """Layer-by-layer table: output shape, parameters, trainable, layer group."""
        from learnkit.summary import model_summary

        return model_summary(self, n)

    def summary(self) -> str:
        """fastai v1's ``learn.summary()``: the layer table (a string that a notebook shows as text)."""
        from learnkit.summary import PrettyString, model_summary

        return PrettyString(model_summary(self))

    def export(self, file: str | Path = "export.safetensors", destroy: bool = False) -> Path:
        """fastai v1's ``export``: everything :func:`~learnkit.vision.learners.load_learner` needs to
        predict, in ``<path>/<file>``: the weights, the classes, the image size and normalisation,
        and how to rebuild the model (its ``model_spec``). Safetensors, never pickle: a ``.pkl``
        name is written as ``.safetensors``. A model built outside the zoo has no spec; its file
        loads with ``load_learner(path, model=<the same architecture>)``. ``destroy`` frees the
        model and optimizer afterwards, as v1's. Returns the file's path."""
        from learnkit.persist import save_learner

        target = Path(self.path) / Path(file)
        if target.suffix != ".safetensors":
            target = target.with_suffix(".safetensors")
        saved = save_learner(self, target, with_opt=False)
        if destroy:
            self.opt = None
            self.model = nn.Module()
        return saved

    # --- checkpoints ---
    def save(
        self,
        name: str | Path,
        return_path: bool = False,
        with_opt: bool = True,
        metadata: dict | None = None,
    ) -> Path:
        """Save to ``path/model_dir/name.safetensors`` (+ ``name.opt.safetensors``); atomic.

        Returns the model file's path (fastai v1 returns it only with ``return_path=True``; the
        argument is accepted for its calls, and the path is always returned). ``metadata``: more
        JSON-able keys for the model file (besides ``run_metadata``'s).
        """
        from learnkit.checkpoint_writer import wait_for_writers
        from learnkit.persist import save_learner

        wait_for_writers()  # a background write of the same name must not overlap this one
        return save_learner(self, name, with_opt, metadata)

    def load(
        self,
        name: str | Path,
        device: torch.device | str | int | None = None,
        strict: bool = True,
        with_opt: bool | None = None,
        purge: bool = False,
        remove_module: bool = False,
    ) -> Learner:
        """Load weights (and, if present or asked, optimizer state and the run's position).

        ``device`` (fastai v1's argument: a device, its name, or a CUDA index) moves the model
        there first (``data.device`` by default: the model stays where it is); the optimizer state
        follows its parameters. ``purge`` and ``remove_module`` are fastai v1's and change nothing
        here: no memory needs purging (nothing is pickled), and checkpoints never hold a
        ``DataParallel`` ``module.`` prefix.
        """
        from learnkit.checkpoint_writer import wait_for_writers
        from learnkit.persist import load_into

        wait_for_writers()  # never read a save that is still being written
        if device is not None:
            device = torch.device("cuda", device) if isinstance(device, int) else torch.device(device)
            self.model.to(device)
        load_into(self, name, strict, with_opt)
        return self

    def __repr__(self) -> str:
        return (
            f"Learner(model={type(self.model).__name__}, groups={len(self.layer_groups)}, opt={self.opt!r})"
        )


def _as_callback(metric: Any) -> Callback:
    return metric if isinstance(metric, Callback) else AverageMetric(metric)
