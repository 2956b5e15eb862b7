"""The training loop as free functions, with the seed's (fastai v1) names and signatures.

``loss_batch`` runs one batch (forward, loss and, given an optimizer, the step); ``validate`` and
``get_preds`` run a loader without gradients; ``train_epoch`` is the bare loop with no callbacks;
``fit`` is the whole run with callbacks. Nothing here calls ``.item()`` per batch: losses stay on
the device until an epoch's end, so the loop costs what a hand-written PyTorch loop costs.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from learnkit.callback import (
    CallbackHandler,
    CancelBatch,
    CancelEpoch,
    CancelFit,
    Event,
    RunState,
)
from learnkit.distributed import all_reduce_sum
from learnkit.precision import FP32

if TYPE_CHECKING:
    from learnkit.learner import Learner


def _listify(x: Any) -> list:
    return list(x) if isinstance(x, (list, tuple)) else [x]


def loss_batch(
    model: nn.Module,
    xb: Any,
    yb: Any,
    loss_func: Callable | None = None,
    opt: Any = None,
    cb_handler: CallbackHandler | None = None,
) -> Any:
    """Compute the loss of one batch and, when ``opt`` is given, take the optimizer step.

    Returns the detached loss tensor (on the batch's device), or ``(output, target)`` when there
    is no ``loss_func``. Callbacks may replace the output (``on_loss_begin``) and the loss
    (``on_backward_begin``), and skip the backward pass, the step or the zeroing of gradients
    (``state.skip_*``, which the fit loop clears at each training batch's start, as fastai v1).
    """
    cbh = cb_handler if cb_handler is not None else CallbackHandler()
    state = cbh.state
    precision = state.precision or FP32
    xb, yb = _listify(xb), _listify(yb)
    with precision.autocast(xb[0].device.type):
        out = model(*xb)
        state.last_output = out
        cbh(Event.loss_begin)
        out = state.last_output
        if loss_func is None:
            return out.detach(), yb[0].detach()
        loss = loss_func(out, *yb)
    if opt is None:
        return loss.detach()
    state.last_loss = loss
    cbh(Event.backward_begin)
    if not state.skip_backward:
        precision.backward(state.last_loss)
    cbh(Event.backward_end)
    if not state.skip_step:
        precision.step(opt)
    cbh(Event.step_end)
    if not state.skip_zero:
        opt.zero_grad()
    return state.last_loss.detach()


def _batch_size(yb: Any) -> int:
    return _listify(yb)[0].shape[0]


def validate(
    model: nn.Module,
    dl: Iterable,
    loss_func: Callable | None = None,
    cb_handler: CallbackHandler | None = None,
    pbar: Any = None,
    average: bool = True,
    n_batch: int | None = None,
) -> Any:
    """Run ``dl`` through ``model`` without gradients; return the mean loss (a float).

    With ``average=False`` return each batch's mean loss instead, as fastai v1 does: a list of 0-d
    CPU tensors, one per batch (this process's batches only). Callbacks get ``on_batch_begin``/
    ``on_loss_begin``/``on_batch_end`` with ``state.train`` False, which is how metrics accumulate.
    """
    cbh = cb_handler if cb_handler is not None else CallbackHandler()
    state = cbh.state
    model.eval()
    state.train = False
    losses, sizes = [], []
    with torch.no_grad():
        for i, (xb, yb) in enumerate(dl):
            state.num_batch, state.last_input, state.last_target = i, xb, yb
            cbh(Event.batch_begin)
            loss = loss_batch(model, state.last_input, state.last_target, loss_func, None, cbh)
            state.last_loss = loss
            bs = _batch_size(state.last_target)
            losses.append(loss.float() * bs)
            sizes.append(bs)
            cbh(Event.batch_end)
            if state.stop_epoch or (n_batch is not None and len(sizes) >= n_batch):
                break
    if not average:
        if not losses:
            return []
        per_batch = torch.stack(losses).cpu() / torch.tensor(sizes, dtype=torch.float32)
        return list(per_batch.unbind())
    total, count = all_reduce_sum(torch.stack(losses).sum() if losses else 0.0, sum(sizes))
    return float(total) / count if count else None


def unreduced_loss(loss_func: Callable) -> Callable:
    """A copy of ``loss_func`` that returns one loss per item (``reduction='none'``).

    The caller's loss object is never changed.
    """
    if hasattr(loss_func, "reduction"):
        per_item = copy.copy(loss_func)
        per_item.reduction = "none"
        return per_item
    return lambda out, *yb: loss_func(out, *yb, reduction="none")


def get_preds(
    model: nn.Module,
    dl: Iterable,
    pbar: Any = None,
    cb_handler: CallbackHandler | None = None,
    activ: Callable | None = None,
    loss_func: Callable | None = None,
    n_batch: int | None = None,
) -> list[torch.Tensor]:
    """Predictions and targets of ``dl`` as CPU tensors: ``[preds, targets]`` (+ ``losses``).

    Outputs move to the CPU batch by batch, so a large set never fills device memory. ``activ``
    is applied to the outputs; with ``loss_func`` the per-item losses of the raw outputs follow.
    """
    cbh = cb_handler if cb_handler is not None else CallbackHandler()
    state = cbh.state
    model.eval()
    state.train = False
    outs, targets, losses = [], [], []
    per_item = unreduced_loss(loss_func) if loss_func is not None else None
    with torch.no_grad():
        for i, (xb, yb) in enumerate(dl):
            state.num_batch, state.last_input, state.last_target = i, xb, yb
            cbh(Event.batch_begin)
            out, _ = loss_batch(model, state.last_input, state.last_target, None, None, cbh)
            target = _listify(state.last_target)
            if per_item is not None:
                losses.append(per_item(out.float(), *target).cpu())
            outs.append((activ(out.float()) if activ is not None else out).cpu())
            targets.append(target[0].cpu())
            cbh(Event.batch_end)
            if n_batch is not None and i + 1 >= n_batch:
                break
    res = [torch.cat(outs), torch.cat(targets)] if outs else [torch.empty(0), torch.empty(0)]
    if per_item is not None:
        res.append(torch.cat(losses) if losses else torch.empty(0))
    return res


def train_epoch(model: nn.Module, dl: Iterable, opt: Any, loss_func: Callable) -> None:
    """One epoch of plain training with no callbacks (the simplest loop there is)."""
    model.train()
    for xb, yb in dl:
        loss = loss_func(model(xb), yb)
        loss.backward()
        opt.step()
        opt.zero_grad()


def _train_batches(dl: Iterable, state: RunState, cbh: CallbackHandler) -> None:
    model, opt = state.model, state.opt
    for i, (xb, yb) in enumerate(dl, start=state.num_batch):
        state.num_batch, state.last_input, state.last_target = i, xb, yb
        # reset as v1's on_batch_begin does: a callback may set them from on_batch_begin on
        state.stop_epoch = state.skip_backward = state.skip_step = state.skip_zero = False
        try:
            cbh(Event.batch_begin)
            state.last_loss = loss_batch(
                model, state.last_input, state.last_target, state.loss_func, opt, cbh
            )
            state.iteration += 1
            cbh(Event.batch_end)
        except CancelBatch:
            cbh(Event.cancel_batch)
        state.num_batch = i + 1
        if state.stop_epoch:  # fastai v1's way to end an epoch from a callback
            break


def run_epochs(epochs: int, state: RunState, cbh: CallbackHandler, start_batch: int = 0) -> None:
    """The fit loop proper over a prepared ``state``: epochs ``state.start_epoch`` onwards.

    ``start_batch`` skips that many batches of the first epoch (a resumed run). ``on_train_end``
    runs whatever happens, with ``state.exception`` set when the fit failed or was interrupted.
    A callback ends the fit by raising :class:`CancelFit`, or, fastai v1's way, by setting
    ``state.stop_training`` (the fit ends after that epoch's ``on_epoch_end``).
    """
    data = state.data
    try:
        cbh(Event.train_begin)
        for epoch in range(state.start_epoch, state.start_epoch + epochs):
            state.epoch, state.last_metrics, state.skip_validate = epoch, None, False
            state.stop_training = state.stop_epoch = False
            first = start_batch if epoch == state.start_epoch else 0
            if hasattr(data.train_dl, "set_epoch"):
                data.train_dl.set_epoch(epoch, first)
            state.num_batch, state.n_batches = first, first + len(data.train_dl)
            state.model.train()
            state.train = True
            try:
                cbh(Event.epoch_begin)
                _train_batches(data.train_dl, state, cbh)
            except CancelEpoch:
                cbh(Event.cancel_epoch)
            if not state.skip_validate and data.valid_dl is not None and len(data.valid_dl) > 0:
                cbh(Event.validate_begin)
                state.last_metrics = [validate(state.model, data.valid_dl, state.loss_func, cbh)]
            state.train = True
            cbh(Event.epoch_end)
            if state.stop_training:
                break
    except CancelFit:
        cbh(Event.cancel_train)
    except BaseException as exc:
        state.exception = exc
        cbh(Event.exception)
        raise
    finally:
        cbh(Event.train_end)


def fit(
    epochs: int, learn: Learner, callbacks: Iterable | None = None, metrics: Iterable | None = None
) -> None:
    """Fit ``learn.model`` for ``epochs`` epochs with ``learn``'s data, optimizer and loss.

    This is the seed's module-level ``fit``: ``learn`` is any object with fastai v1's
    ``BasicLearner`` fields, ``model``, ``loss_func``, ``opt`` (a torch optimizer or an
    :class:`~learnkit.optim.OptimWrapper`) and ``data`` (with ``train_dl`` and ``valid_dl``), or a
    :class:`~learnkit.learner.Learner` (whose own callbacks and position in the run then apply).
    ``callbacks`` and ``metrics`` may be one item or a list.
    """
    from learnkit.core import listify
    from learnkit.errors import DataError
    from learnkit.metrics import AverageMetric, metric_name

    callbacks, metrics = listify(callbacks), (None if metrics is None else listify(metrics))
    if hasattr(learn, "_run"):
        learn._run(epochs, callbacks=callbacks, metrics=metrics)
        return
    if len(learn.data.train_dl) == 0:
        raise DataError("the training loader is empty: there is nothing to train on")
    metrics = metrics or []
    state = RunState(
        learn=learn,
        model=learn.model,
        opt=learn.opt,
        loss_func=learn.loss_func,
        data=learn.data,
        metrics=metrics,
        metrics_names=[metric_name(m) for m in metrics],
        n_epochs=epochs,
    )
    as_cb = [m if hasattr(m, "order") else AverageMetric(m) for m in metrics]
    run_epochs(epochs, state, CallbackHandler(callbacks, state, metrics=as_cb))
