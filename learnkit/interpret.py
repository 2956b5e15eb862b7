"""``ClassificationInterpretation``: where a classifier goes wrong (fastai v1's names).

Built from a learner (``learn.interpret()``, one pass of ``get_preds`` with losses) or from a
prediction set made by hand: ``ClassificationInterpretation(preds, targets, losses, classes)``.

- ``confusion_matrix()``: counts, rows the actual class, columns the predicted one;
- ``most_confused(min_val)``: the off-diagonal cells, largest first;
- ``top_losses(k)``: the items with the largest losses;
- ``plot_confusion_matrix()`` and ``plot_top_losses(k)`` save PNGs under ``<path>/plots/``.

For a segmentation model the confusion matrix counts pixels, and an item's loss is its mean
pixel loss. Targets outside ``0 .. C-1`` (no label, an ``ignore_index``) are left out of the counts.

Example:
    >>> interp = learn.interpret()  # doctest: +SKIP
    >>> interp.most_confused(min_val=2)  # doctest: +SKIP
    [('cat', 'dog', 5), ('dog', 'cat', 2)]
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from learnkit.data.bunch import DatasetType
from learnkit.errors import UsageError
from learnkit.show import plots_dir, to_display

if TYPE_CHECKING:
    from learnkit.learner import Learner


def _is_learner(obj: Any) -> bool:
    return hasattr(obj, "model") and hasattr(obj, "data") and hasattr(obj, "get_preds")


class ClassificationInterpretation:
    """Predictions, targets and losses of a data set, with the views that explain them.

    Args:
        preds: probabilities (or scores), ``N x C`` (``N x C x H x W`` for segmentation).
        targets: class indices, ``N`` (``N x H x W``).
        losses: per-item losses, ``N`` (per-pixel ``N x H x W`` are averaged per item).
        classes: the class names (default ``"0" .. "C-1"``).
        items: what ``plot_top_losses`` draws: indexable, ``items[i]`` an image tensor or an
            ``(image, target)`` pair (a data set); ``None`` draws titles only.
        norm_stats: to denormalise float images of ``items``.
        path: figures go to ``<path>/plots/``.
    """

    def __init__(
        self,
        preds: Any,
        targets: Any,
        losses: Any,
        classes: Any = None,
        ds_type: DatasetType = DatasetType.Valid,
        *,
        items: Any = None,
        norm_stats: dict | None = None,
        path: str | Path = ".",
    ) -> None:
        self.learn = None
        if _is_learner(preds):  # fastai v1's order: (learn, preds, y_true, losses, ds_type)
            learn, preds, targets, losses = preds, targets, losses, classes
            ds_type = DatasetType.Fix if ds_type == DatasetType.Train else ds_type
            data, dl = learn.data, learn.dl(ds_type)
            self.learn, self.ds_type = learn, ds_type
            classes = getattr(data, "classes", None)
            items = dl.dataset if dl is not None else None
            norm_stats, path = getattr(data, "norm_stats", None), learn.path
        preds, targets, losses = torch.as_tensor(preds), torch.as_tensor(targets), torch.as_tensor(losses)
        if preds.dim() < 2 or preds.shape[0] != targets.shape[0] or losses.shape[0] != targets.shape[0]:
            raise UsageError(
                f"preds (N x C), targets (N) and losses (N) must agree: got {tuple(preds.shape)}, "
                f"{tuple(targets.shape)}, {tuple(losses.shape)}"
            )
        self.preds, self.y_true, self.losses_raw = preds.float(), targets.long(), losses.float()
        self.pred_class = self.preds.argmax(1)
        self.losses = (
            self.losses_raw.reshape(len(targets), -1).mean(1) if losses.dim() > 1 else self.losses_raw
        )
        n_classes = preds.shape[1]
        self.classes = (
            [str(c) for c in classes] if classes is not None else [str(i) for i in range(n_classes)]
        )
        if len(self.classes) != n_classes:
            raise UsageError(f"{len(self.classes)} class names for predictions over {n_classes} classes")
        self.items, self.norm_stats, self.path = items, norm_stats, Path(path)

    @classmethod
    def from_learner(
        cls, learn: Learner, ds_type: DatasetType = DatasetType.Valid, activ: Any = None, tta: bool = False
    ) -> ClassificationInterpretation:
        """From ``learn.get_preds(ds_type, with_loss=True)`` (with ``tta``: from
        ``learn.TTA(ds_type=ds_type, with_loss=True)``); images for the plots from its data set.

        ``Train`` is read as ``Fix`` (the training set in order, without augmentation), so that item
        ``i`` of the predictions is item ``i`` of the data set.
        """
        ds_type = DatasetType.Fix if ds_type == DatasetType.Train else ds_type
        dl = learn.dl(ds_type)
        if dl is None:
            raise UsageError(f"the learner's data has no {ds_type.name} set to interpret")
        if tta:
            preds, targets, losses = learn.TTA(ds_type=ds_type, with_loss=True)
        else:
            preds, targets, losses = learn.get_preds(ds_type, with_loss=True, activ=activ)
        data = learn.data
        del data
        return cls(learn, preds, targets, losses, ds_type)

    def confusion_matrix(self, slice_size: int = 1) -> np.ndarray:
        """``C x C`` counts (an int64 ndarray, as fastai v1's): ``cm[actual, predicted]``.

        ``slice_size`` is v1's memory knob; the counts are one ``bincount`` here, so it changes
        nothing.
        """
        return self._cm().numpy()

    def _cm(self) -> torch.Tensor:
        c = len(self.classes)
        actual, predicted = self.y_true.flatten(), self.pred_class.flatten()
        keep = (actual >= 0) & (actual < c)
        flat = actual[keep] * c + predicted[keep]
        return torch.bincount(flat, minlength=c * c).view(c, c)

    def most_confused(self, min_val: int = 1) -> list[tuple[str, str, int]]:
        """``(actual, predicted, count)`` for each off-diagonal cell with ``count >= min_val``,
        largest count first (ties in class order)."""
        cm = self._cm()
        cells = [
            (self.classes[i], self.classes[j], int(cm[i, j]))
            for i in range(len(self.classes))
            for j in range(len(self.classes))
            if i != j and cm[i, j] >= min_val
        ]
        return sorted(cells, key=lambda cell: -cell[2])  # stable: ties keep class order

    def top_losses(self, k: int | None = None, largest: bool = True) -> Any:
        """The ``k`` items with the largest (or smallest) loss, all by default, as fastai v1's: torch's
        ``topk`` result, ``(values, indices)`` unpacked or ``.values``/``.indices``."""
        k = len(self.losses) if k is None else min(k, len(self.losses))
        return self.losses.topk(k, largest=largest)

    def plot_confusion_matrix(
        self,
        normalize: bool = False,
        title: str = "Confusion matrix",
        cmap: str = "Blues",
        slice_size: int = 1,
        norm_dec: int = 2,
        plot_txt: bool = True,
        return_fig: bool | None = None,
        *,
        name: str = "confusion_matrix",
        figsize: tuple | None = None,
        dpi: int | None = 100,
    ) -> Any:
        """Save the confusion matrix (rows normalised to 1 with ``normalize``) as
        ``<path>/plots/<name>.png`` (fastai v1's keywords: ``figsize``, ``dpi``, ``plot_txt``,
        ``return_fig``); returns the path (the ``Figure`` with ``return_fig``)."""
        from learnkit.plots import finish_figure, new_figure

        cm = self._cm().double()
        if normalize:
            cm = cm / cm.sum(1, keepdim=True).clamp_min(1)
        c = len(self.classes)
        side = max(4.0, 0.6 * c + 2)
        fig, ax = new_figure(figsize=figsize or (side, side), dpi=dpi)
        im = ax.imshow(cm.numpy(), interpolation="nearest", cmap=cmap)
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
        ax.set_title(title)
        ax.set_xticks(range(c), self.classes, rotation=90)
        ax.set_yticks(range(c), self.classes)
        if plot_txt and c <= 30:  # numbers in the cells while they still fit
            top = float(cm.max()) if cm.numel() else 0.0
            for i in range(c):
                for j in range(c):
                    v = float(cm[i, j])
                    text = f"{v:.{norm_dec}f}" if normalize else f"{int(v)}"
                    ax.text(j, i, text, ha="center", va="center", color="white" if v > top / 2 else "black")
        ax.set_ylabel("Actual")
        ax.set_xlabel("Predicted")
        return finish_figure(fig, plots_dir(self.path) / f"{name}.png", dpi, return_fig)

    def _image(self, i: int) -> Any:
        if self.items is None:
            return None
        item = self.items[i]
        x = item[0] if isinstance(item, (tuple, list)) else item
        if not isinstance(x, torch.Tensor) or x.dim() != 3:
            return None
        return to_display(x, self.norm_stats)

    def _mask_losses_figure(self, values: list[float], indices: list[int], largest: bool) -> Any:
        """Segmentation: one row per item: the image, its true mask, the predicted mask."""
        from learnkit.plots import new_figure
        from learnkit.show import mask_palette

        n_classes = self.preds.shape[1]
        palette = mask_palette(n_classes)
        fig, axes = new_figure(len(indices), 3, figsize=(7.5, 2.6 * len(indices)), squeeze=False)
        for ax_row, loss, idx in zip(axes, values, indices):
            truth, pred = self.y_true[idx], self.pred_class[idx]
            right = float((truth == pred).float().mean())
            img = self._image(idx)
            panels = [
                (img, f"item {idx}: image"),
                (palette[truth.clamp(0, n_classes - 1).numpy()], f"true mask (loss {loss:.2f})"),
                (palette[pred.numpy()], f"predicted ({right:.0%} right)"),
            ]
            for ax, (pic, title) in zip(ax_row, panels):
                if pic is not None:
                    ax.imshow(pic, interpolation="nearest")
                ax.set_title(title, fontsize=9)
                ax.axis("off")
        which = "largest" if largest else "smallest"
        fig.suptitle(f"image / true mask / predicted mask, {which} losses first", fontsize=10)
        return fig

    def plot_top_losses(
        self,
        k: int = 9,
        largest: bool = True,
        figsize: tuple | None = None,
        heatmap: bool = False,
        heatmap_thresh: int = 16,
        alpha: float = 0.6,
        cmap: str = "magma",
        show_text: bool = True,
        return_fig: bool | None = None,
        *,
        name: str = "top_losses",
        dpi: int | None = 100,
    ) -> Any:
        """Save the ``k`` items with the largest losses, each titled
        ``prediction / actual / loss / probability of the actual class`` (segmentation: one row per
        item with the image, the true mask and the predicted mask); returns the PNG's path (the
        ``Figure`` with ``return_fig``).

        fastai v1's keywords: ``figsize``; ``heatmap`` overlays the mean activation of the model's
        body (``model[0]``, the learner's) when its map is at least ``heatmap_thresh`` wide, with
        ``alpha`` and ``cmap``; ``show_text=False`` leaves the titles out.
        """
        from learnkit.plots import finish_figure, new_figure

        values, indices = self.top_losses(k, largest)
        n = len(indices)
        if n == 0:
            raise UsageError("no items to plot")
        if self.preds.dim() > 2:
            fig = self._mask_losses_figure(values.tolist(), indices.tolist(), largest)
            return finish_figure(fig, plots_dir(self.path) / f"{name}.png", dpi, return_fig)
        cols = min(n, max(1, int(n**0.5 + 0.999)))
        rows = -(-n // cols)
        fig, axes = new_figure(rows, cols, figsize=figsize or (2.8 * cols, 3.0 * rows), squeeze=False)
        for ax, loss, idx in zip(axes.flat, values.tolist(), indices.tolist()):
            img = self._image(idx)
            if img is not None:
                ax.imshow(img)
                if heatmap:
                    acts = self._heatmap(idx, heatmap_thresh)
                    if acts is not None:
                        h, w = img.shape[:2]
                        ax.imshow(acts, alpha=alpha, extent=(0, w, h, 0), interpolation="bilinear", cmap=cmap)
            pred, actual = int(self.pred_class[idx]), int(self.y_true[idx])
            known = 0 <= actual < len(self.classes)
            p_actual = float(self.preds[idx, actual]) if known else float("nan")
            if show_text:
                title = (
                    f"{self.classes[pred]} / {self.classes[actual] if known else '?'}\n"
                    f"{loss:.2f} / {p_actual:.2f}"
                )
                ax.set_title(title, fontsize=9)
        for ax in axes.flat:
            ax.axis("off")
        if show_text:
            fig.suptitle("prediction / actual / loss / probability", fontsize=10)
        return finish_figure(fig, plots_dir(self.path) / f"{name}.png", dpi, return_fig)

    def _heatmap(self, idx: int, thresh: int) -> Any:
        """The mean over channels of ``model[0]``'s output for item ``idx`` (fastai v1's heatmap),
        or ``None`` without a learner, a body, or a map narrower than ``thresh``."""
        learn = self.learn
        model = getattr(learn, "model", None)
        if model is None or not isinstance(model, torch.nn.Sequential) or self.items is None:
            return None
        item = self.items[idx]
        x = item[0] if isinstance(item, (tuple, list)) else item
        dl = learn.dl(self.ds_type)
        xb = x[None].to(dl.device)
        for tfm in dl.tfms:  # the loader's (validation) transforms: normalisation
            xb, _ = tfm(xb, None)
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                acts = model[0](xb.to(next(model.parameters()).device).float())
        finally:
            model.train(was_training)
        if acts.dim() != 4 or acts.shape[-1] < thresh:
            return None
        return acts[0].mean(0).float().cpu().numpy()
