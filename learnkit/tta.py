"""Test-time augmentation: fastai v1's 8 deterministic versions of each image, averaged.

The versions (``tta_versions``) of a batch ``x`` (``N x C x H x W``) are built by zooming it in by
``scale`` (bilinear, to ``round(H * scale) x round(W * scale)``) and cropping an ``H x W`` window
at one of the four corners; the four crops are then also flipped left-right. Version ``i`` takes
its crop at the bottom when ``i & 1``, at the right when ``i & 2``, and is flipped when ``i & 4``
(the seed's order). No random augmentation is added on top.

``tta`` returns ``beta * plain + (1 - beta) * mean(8 versions)`` of the *probabilities* (the
activation's outputs: softmax for cross-entropy, sigmoid for BCE, raw outputs otherwise).

Dense (segmentation) outputs are mapped back to the original frame before they are averaged
(``tta_restore``: un-flip, then undo the crop and the zoom by bilinear resampling). A corner crop
sees only part of the image, so a version says nothing about the pixels outside its crop: those
pixels are averaged over the versions whose crop covers them (``tta_restore`` returns that
coverage). With ``scale <= 2`` every pixel is covered by at least two versions (a corner crop and its
flip); a pixel no version covers (possible only with ``scale > 2``) keeps the plain prediction.

Losses are computed from the combined probabilities the way the loss function defines them: the
probabilities are turned back into logits that give them (``log p`` for softmax, ``logit(p)`` for
sigmoid) and fed to the learner's own loss, so cross-entropy becomes the negative log-likelihood
of the combined probabilities. Probabilities are never fed to a loss that expects logits.

Example:
    >>> preds, targets, losses = learn.TTA(beta=0.4, scale=1.35, with_loss=True)  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F

from learnkit.callback import CallbackHandler, Event, RunState
from learnkit.data.bunch import DatasetType
from learnkit.errors import UsageError
from learnkit.loop import loss_batch, unreduced_loss
from learnkit.losses import default_activation
from learnkit.metrics import metric_name

if TYPE_CHECKING:
    from learnkit.learner import Learner

N_VERSIONS = 8


def zoomed_size(height: int, width: int, scale: float) -> tuple[int, int]:
    """The side lengths an ``height x width`` image is zoomed to before the corner crops."""
    if scale < 1.0:
        raise UsageError(f"TTA scale must be >= 1 (a zoom in), got {scale}")
    return max(height, round(height * scale)), max(width, round(width * scale))


def tta_boxes(height: int, width: int, scale: float) -> list[tuple[int, int]]:
    """``(top, left)`` of the four ``height x width`` crops in the zoomed frame, in version order.

    Version ``i`` (and its flip ``i + 4``) uses box ``i``: top-left, bottom-left, top-right,
    bottom-right. Example: a 4 x 4 image at scale 2 is zoomed to 8 x 8 and the boxes are
    ``[(0, 0), (4, 0), (0, 4), (4, 4)]``.
    """
    zh, zw = zoomed_size(height, width, scale)
    return [((zh - height) if i & 1 else 0, (zw - width) if i & 2 else 0) for i in range(4)]


def _zoom(x: torch.Tensor, scale: float) -> torch.Tensor:
    zh, zw = zoomed_size(x.shape[-2], x.shape[-1], scale)
    if (zh, zw) == tuple(x.shape[-2:]):
        return x
    dtype = x.dtype if x.is_floating_point() else torch.float32
    return F.interpolate(x.to(dtype), size=(zh, zw), mode="bilinear", align_corners=False)


def tta_versions(x: torch.Tensor, scale: float = 1.35, flip: bool = True) -> list[torch.Tensor]:
    """The 8 TTA versions of the batch ``x`` (``N x C x H x W``), each the shape of ``x``; without
    ``flip`` only the 4 corner crops (for a model trained without flips, a flip is not a view it
    knows).

    Bilinear zoom commutes with per-channel normalisation, so ``x`` may be the normalised batch a
    loader yields.
    """
    if x.dim() != 4:
        raise UsageError(f"TTA works on image batches (N x C x H x W), not shape {tuple(x.shape)}")
    h, w = x.shape[-2:]
    zoomed = _zoom(x, scale)
    crops = [zoomed[..., top : top + h, left : left + w] for top, left in tta_boxes(h, w, scale)]
    return [*crops, *(c.flip(-1) for c in crops)] if flip else crops


def tta_restore(
    out: torch.Tensor, version: int, scale: float, in_size: tuple[int, int] | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Map a dense output of TTA version ``version`` back to the original frame.

    Args:
        out: ``N x C x h x w``, the model's output (or probabilities) on that version.
        version: 0..7, as in :func:`tta_versions`.
        scale: the zoom the version was made with.
        in_size: the input's ``(H, W)`` when the output has another resolution (default: the same).

    Returns:
        ``(restored, covered)``: ``restored`` (``N x C x h x w``, float) resamples ``out`` at each
        original pixel's place in the crop (bilinear); ``covered`` (``h x w`` bool) marks the
        pixels inside the crop. Values at uncovered pixels are meaningless (edge-clamped).
    """
    h, w = out.shape[-2:]
    in_h, in_w = in_size if in_size is not None else (h, w)
    if version & 4:
        out = out.flip(-1)
    zh, zw = zoomed_size(in_h, in_w, scale)
    top, left = tta_boxes(in_h, in_w, scale)[version & 3]
    # output pixel j's centre, as a fraction of the original frame, is (j + 0.5) / w; the crop
    # holds the zoomed frame's pixels left .. left + in_w, so in crop fractions it sits at:
    dev = out.device
    xs = ((torch.arange(w, device=dev, dtype=torch.float64) + 0.5) / w * zw - left) / in_w
    ys = ((torch.arange(h, device=dev, dtype=torch.float64) + 0.5) / h * zh - top) / in_h
    grid = torch.stack(torch.meshgrid(xs * 2 - 1, ys * 2 - 1, indexing="xy"), dim=-1)
    grid = grid.float().expand(out.shape[0], h, w, 2)
    restored = F.grid_sample(out.float(), grid, mode="bilinear", padding_mode="border", align_corners=False)
    covered = ((ys >= 0) & (ys <= 1))[:, None] & ((xs >= 0) & (xs <= 1))[None, :]
    return restored, covered


def tta_average(
    predict: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, scale: float, flip: bool = True
) -> torch.Tensor:
    """The mean of ``predict`` over the 8 versions of ``x`` (4 without ``flip``).

    ``predict(batch) -> predictions`` (probabilities). Predictions of shape ``N x C x h x w`` (at
    any resolution) are dense: each is mapped back with :func:`tta_restore` and every pixel is
    averaged over the versions that cover it (a pixel none covers is NaN; :func:`combine` then
    keeps the plain prediction there).
    """
    versions = tta_versions(x, scale, flip)
    outs = [predict(v) for v in versions]
    if outs[0].dim() != 4:
        return torch.stack([o.float() for o in outs]).mean(0)
    total = count = None
    for i, out in enumerate(outs):
        restored, covered = tta_restore(out, i, scale, in_size=tuple(x.shape[-2:]))
        weight = covered.to(restored.dtype)
        total = restored * weight if total is None else total + restored * weight
        count = weight if count is None else count + weight
    return total / count  # 0 / 0 = NaN where no version covers a pixel


def combine(plain: torch.Tensor, avg: torch.Tensor, beta: float) -> torch.Tensor:
    """``beta * plain + (1 - beta) * avg``; where ``avg`` is NaN (not covered), ``plain``."""
    if not 0.0 <= beta <= 1.0:
        raise UsageError(f"TTA beta must be between 0 and 1, got {beta}")
    avg = torch.where(torch.isnan(avg), plain, avg)
    return plain * beta + avg * (1 - beta)


def activation_kind(loss_func: Any) -> str:
    """``"softmax"``, ``"sigmoid"`` or ``"none"``: the activation ``get_preds`` uses for ``loss_func``."""
    activ = default_activation(loss_func)
    if activ is None:
        return "none"
    if activ is torch.sigmoid:
        return "sigmoid"
    if isinstance(activ, partial) and activ.func is torch.softmax:
        return "softmax"
    return "none"


def preds_to_logits(preds: torch.Tensor, kind: str) -> torch.Tensor:
    """Logits whose activation gives ``preds``: ``log p`` (softmax), ``logit(p)`` (sigmoid), ``preds``.

    ``softmax(log p) = p`` whenever ``p`` sums to 1, which a mix of probability vectors does.
    Zero probabilities are clamped to the smallest positive float, so the result stays finite.
    """
    tiny = torch.finfo(torch.float32).tiny
    if kind == "softmax":
        return torch.log(preds.float().clamp_min(tiny))
    if kind == "sigmoid":
        p = preds.float()
        return torch.log(p.clamp_min(tiny)) - torch.log((1 - p).clamp_min(tiny))
    return preds


def loss_from_preds(loss_func: Any, preds: torch.Tensor, target: torch.Tensor, reduce: bool = False):
    """The loss of predictions (activation outputs), as ``loss_func`` defines it on logits.

    Per item (``reduction='none'``) unless ``reduce``. For cross-entropy this is the negative log
    likelihood of ``preds`` (class weights, ``ignore_index`` and label smoothing included).
    """
    logits = preds_to_logits(preds, activation_kind(loss_func))
    fn = loss_func if reduce else unreduced_loss(loss_func)
    return fn(logits, target)


def _collect(
    learn: Learner, ds_type: DatasetType, scale: float, flip: bool = True
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One pass over ``ds_type``: ``(plain, average of the 8 versions, targets)`` on the CPU."""
    dl = learn.dl(ds_type)
    if dl is None:
        raise UsageError(f"the learner's data has no {ds_type.name} set to run TTA on")
    activ = default_activation(learn.loss_func)
    model = learn.model
    state = RunState(learn=learn, model=model, precision=learn.precision, train=False)
    cbh = CallbackHandler(learn.callbacks, state)
    model.eval()
    plains, avgs, targets = [], [], []
    with torch.no_grad():
        for i, (xb, yb) in enumerate(dl):
            state.num_batch, state.last_input, state.last_target = i, xb, yb
            cbh(Event.batch_begin)
            xb, yb = state.last_input, state.last_target

            def predict(x: torch.Tensor, yb: Any = yb) -> torch.Tensor:
                out, _ = loss_batch(model, x, yb, None, None, cbh)
                return activ(out.float()) if activ is not None else out

            plains.append(predict(xb).cpu())
            avgs.append(tta_average(predict, xb, scale, flip).cpu())
            targets.append((yb[0] if isinstance(yb, (list, tuple)) else yb).cpu())
            cbh(Event.batch_end)
    if not plains:
        raise UsageError(f"the {ds_type.name} set is empty")
    return torch.cat(plains), torch.cat(avgs), torch.cat(targets)


def tta(
    learn: Learner,
    beta: float | None = 0.4,
    scale: float = 1.35,
    ds_type: DatasetType = DatasetType.Valid,
    with_loss: bool = False,
    flip: bool = True,
) -> list[torch.Tensor]:
    """Predictions of ``ds_type`` with test-time augmentation, on the CPU.

    Args:
        learn: the Learner.
        beta: weight of the plain prediction; ``None`` returns ``[plain, tta_average, targets]``.
        scale: the zoom before the corner crops (>= 1).
        ds_type: which loader.
        with_loss: also return the per-item losses of the combined predictions.
        flip: also average the flipped crops (8 versions); ``False``: the 4 crops only.

    Returns:
        ``[preds, targets]`` (+ ``losses``), like ``get_preds``; ``beta=1`` gives ``get_preds``'s.
    """
    plain, avg, y = _collect(learn, ds_type, scale, flip)
    if beta is None:
        return [plain, avg, y]
    final = combine(plain, avg, beta)
    if with_loss:
        return [final, y, loss_from_preds(learn.loss_func, final, y)]
    return [final, y]


def _scores(learn: Learner, preds: torch.Tensor, y: torch.Tensor, metrics: Sequence[Callable]) -> dict:
    kind = activation_kind(learn.loss_func)
    logits = preds_to_logits(preds, kind)
    row = {"loss": float(loss_from_preds(learn.loss_func, preds, y, reduce=True))}
    for m in metrics:
        row[metric_name(m)] = float(m(logits, y))
    return row


def tta_report(
    learn: Learner,
    beta: float = 0.4,
    scale: float = 1.35,
    ds_type: DatasetType = DatasetType.Valid,
    metrics: Sequence[Callable] | None = None,
    flip: bool = True,
) -> dict[str, Any]:
    """Loss and metrics of ``ds_type`` without and with TTA, from one pass over the data.

    Metrics (default: the learner's) get logits that reproduce the predictions (see
    :func:`preds_to_logits`), so a metric written for raw outputs still applies.

    Returns:
        ``{"items", "beta", "scale", "flip", "plain": {"loss", <metric>...}, "tta": {...}}``.
    """
    metrics = list(learn.metrics if metrics is None else metrics)
    plain, avg, y = _collect(learn, ds_type, scale, flip)
    final = combine(plain, avg, beta)
    return {
        "items": int(y.shape[0]),
        "beta": beta,
        "scale": scale,
        "flip": flip,
        "plain": _scores(learn, plain, y, metrics),
        "tta": _scores(learn, final, y, metrics),
    }
