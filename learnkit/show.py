"""Pictures of predictions: ``show_results`` saves a grid of images with truth and prediction.

Images come from the loader (normalised), so they are denormalised with the data's ``norm_stats``
before they are drawn. Figures are saved as PNG under ``<learn.path>/plots/`` (matplotlib, Agg);
nothing is ever shown in a window. matplotlib is imported only when a figure is drawn.

Example:
    >>> learn.show_results(rows=3)  # doctest: +SKIP
    PosixPath('plots/results.png')
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from learnkit.atomic import open_no_follow
from learnkit.data.augment import Normalize
from learnkit.data.bunch import DatasetType
from learnkit.errors import UsageError

if TYPE_CHECKING:
    from learnkit.learner import Learner


def mask_palette(n: int) -> np.ndarray:
    """``n`` distinct RGB colours (uint8 ``n x 3``) for class indices; class 0 is black.

    The colours are spread around the hue circle by the golden ratio, so neighbouring indices
    differ clearly whatever ``n`` is.
    """
    import colorsys

    colours = [(0, 0, 0)]
    for i in range(1, n):
        hue = (i * 0.618033988749895) % 1.0
        value = 0.95 if i % 2 else 0.75
        colours.append(tuple(round(255 * c) for c in colorsys.hsv_to_rgb(hue, 0.85, value)))
    return np.array(colours[:n], dtype=np.uint8).reshape(-1, 3)


def to_display(x: torch.Tensor, norm_stats: dict | None = None) -> np.ndarray:
    """An image tensor (``C x H x W``) as a float ``H x W x 3`` array in 0..1 for ``imshow``.

    uint8 images are scaled; float images are denormalised with ``norm_stats`` (float images
    without stats are taken as 0..1). One channel is repeated to three.
    """
    x = x.detach().cpu()
    if x.dim() != 3:
        raise UsageError(f"cannot show a tensor of shape {tuple(x.shape)} as an image")
    if x.dtype == torch.uint8:
        x = x.float() / 255.0
    elif norm_stats is not None:
        x = Normalize.from_stats(norm_stats).denormalize(x[None])[0]
    x = x.float().clamp(0, 1)
    if x.shape[0] == 1:
        x = x.expand(3, -1, -1)
    return x[:3].permute(1, 2, 0).numpy()


def overlay(image: np.ndarray, mask: torch.Tensor, n_classes: int, alpha: float = 0.5) -> np.ndarray:
    """``image`` (``H x W x 3`` in 0..1) with ``mask``'s class colours blended in (class 0 clear)."""
    m = mask.detach().cpu().numpy().astype(np.int64).clip(0, max(n_classes - 1, 0))
    colour = mask_palette(max(n_classes, 1))[m].astype(np.float32) / 255.0
    a = np.where(m[..., None] > 0, alpha, 0.0)
    return image * (1 - a) + colour * a


def save_mask(
    mask: torch.Tensor,
    dest: str | Path,
    image: str | Path | Any = None,
    alpha: float = 0.5,
    *,
    exclusive: bool = False,
) -> tuple[Path, Path | None]:
    """Write a class-index mask (``H x W``) as a palette PNG: pixel value = class index, in colour.

    With ``image`` (a file or PIL image), also write ``<dest stem>.overlay.png``: the picture, at
    the mask's size, with the class colours blended in at ``alpha`` (class 0, the background, left
    clear). Returns the paths written: ``(mask, overlay or None)``. With ``exclusive`` an existing
    file (or a symlink) is never written over: ``FileExistsError`` instead.

    Example:
        >>> mask, _, _ = learn.predict("street.png")  # doctest: +SKIP
        >>> save_mask(mask, "out/street.png", image="street.png")  # doctest: +SKIP
    """
    from PIL import Image

    from learnkit.data.images import open_image, to_rgb

    dest = Path(dest)
    arr = mask.detach().cpu().numpy()
    if arr.ndim != 2 or (arr.size and (int(arr.max()) > 255 or int(arr.min()) < 0)):
        raise UsageError("a mask PNG holds one class index 0..255 per pixel (an H x W mask)")
    arr = arr.astype(np.uint8)
    out = Image.fromarray(arr)  # mode "L"; the palette makes it "P" with the same values
    out.putpalette(mask_palette(256).flatten().tolist())
    dest.parent.mkdir(parents=True, exist_ok=True)
    mode = "xb" if exclusive else "wb"
    with open_no_follow(dest, mode) as f:
        out.save(f, format="PNG")
    if image is None:
        return dest, None
    pic = open_image(image) if isinstance(image, (str, Path)) else to_rgb(image)
    if pic.size != (arr.shape[1], arr.shape[0]):
        pic = pic.resize((arr.shape[1], arr.shape[0]), Image.Resampling.BILINEAR)
    blended = overlay(np.asarray(pic, dtype=np.float32) / 255.0, torch.from_numpy(arr), 256, alpha)
    overlay_path = dest.with_name(f"{dest.stem}.overlay.png")
    with open_no_follow(overlay_path, mode) as f:
        Image.fromarray((blended * 255.0).round().clip(0, 255).astype(np.uint8)).save(f, format="PNG")
    return dest, overlay_path


def _first_items(dl: Any, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``n`` items of a loader as one ``(x, y)`` batch; the loader's position is kept."""
    epoch, start = getattr(dl, "epoch", 0), getattr(dl, "start_batch", 0)
    xs, ys, got = [], [], 0
    try:
        for xb, yb in dl:
            xs.append(xb)
            ys.append(yb[0] if isinstance(yb, (list, tuple)) else yb)
            got += xb.shape[0]
            if got >= n:
                break
    finally:
        if hasattr(dl, "set_epoch"):
            dl.set_epoch(epoch, start)
    if not xs:
        raise UsageError("no items to show")
    return torch.cat(xs)[:n], torch.cat(ys)[:n]


def plots_dir(learn_or_path: Any) -> Path:
    """``<path>/plots``: where a learner's (or a path's) figures go."""
    base = getattr(learn_or_path, "path", learn_or_path)
    return Path(base) / "plots"


def show_results(
    learn: Learner,
    ds_type: DatasetType = DatasetType.Valid,
    rows: int = 3,
    *,
    name: str = "results",
    dpi: int = 100,
    alpha: float = 0.5,
) -> Path:
    """Save a grid of ``ds_type``'s first images with their truth, prediction and probability.

    Classification: ``rows x rows`` pictures titled ``truth / prediction probability`` (green
    when right, red when wrong). Segmentation: ``rows`` lines of picture, truth overlay,
    prediction overlay. Returns the PNG's path, ``<learn.path>/plots/<name>.png``.
    """
    from learnkit.plots import new_figure, save_figure

    if rows < 1:
        raise UsageError(f"rows must be >= 1, got {rows}")
    dl = learn.dl(ds_type)
    if dl is None:
        raise UsageError(f"the learner's data has no {ds_type.name} set to show")
    dense = getattr(learn.data, "task", None) == "segmentation"
    n = rows if dense else rows * rows
    x, y = _first_items(dl, n)
    probs = learn.pred_batch(ds_type, (x, y))  # Learner.pred_batch: learnkit.inference's
    stats = getattr(learn.data, "norm_stats", None)
    classes = getattr(learn.data, "classes", None) or [str(i) for i in range(probs.shape[1])]
    if dense or probs.dim() == 4:
        fig, axes = new_figure(len(x), 3, figsize=(9, 3 * len(x)), squeeze=False)
        for i, ax_row in enumerate(axes):
            img = to_display(x[i], stats)
            pred = probs[i].argmax(0)
            right = float((pred.cpu() == y[i].cpu()).float().mean())
            panels = [(img, "image"), (overlay(img, y[i], len(classes), alpha), "true mask")]
            panels.append((overlay(img, pred, len(classes), alpha), f"predicted mask ({right:.0%} right)"))
            for ax, (pic, title) in zip(ax_row, panels):
                ax.imshow(pic)
                ax.set_title(title, fontsize=9)
                ax.axis("off")
        fig.suptitle("image / true mask / predicted mask", fontsize=10)
    else:
        cols = rows
        fig, axes = new_figure(rows, cols, figsize=(2.6 * cols, 2.9 * rows), squeeze=False)
        for i, ax in enumerate(axes.flat):
            ax.axis("off")
            if i >= len(x):
                continue
            ax.imshow(to_display(x[i], stats))
            index = int(probs[i].argmax())
            truth = int(y[i]) if y.dim() == 1 else -1
            known = 0 <= truth < len(classes)
            title = f"{classes[truth] if known else '?'} / {classes[index]} {float(probs[i][index]):.2f}"
            colour = "black" if not known else ("green" if truth == index else "red")
            ax.set_title(title, fontsize=9, color=colour)
    return save_figure(fig, plots_dir(learn) / f"{name}.png", dpi=dpi)
