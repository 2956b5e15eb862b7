"""Using a trained model: a Learner rebuilt from its checkpoint alone, and predictions on images.

- :func:`load_learner` (in :mod:`learnkit.vision.learners`) reads
  ``<path>/<model_dir>/NAME.safetensors`` (or a file given as such), rebuilds the model from the
  zoo spec in its metadata, and the data's settings (classes, input size, normalisation, task)
  from the rest; no training data is needed.
- :func:`predict` runs one item (a file, a PIL image or a tensor) through exactly the validation
  pipeline, so its probabilities equal ``get_preds``'s for the same image inside a data set.
- :func:`predict_images` runs many files in batches (decoding ahead in threads) and yields one
  :class:`Prediction` per path, in order; an unreadable file yields an error result, not an
  exception. This is what ``learnkit predict`` calls.
- Segmentation models predict a class-index mask; :func:`save_mask` (from :mod:`learnkit.show`)
  writes it as a PNG (and a colour overlay on the picture).

Example:
    >>> learn = load_learner("best", path="run1")  # doctest: +SKIP
    >>> label, index, probs = learn.predict("cat.png")  # doctest: +SKIP
    >>> for row in predict_images(learn, paths, bs=64, topk=3): print(row.to_dict())  # doctest: +SKIP
"""

from __future__ import annotations

import glob
import os
import queue
import sys
import threading
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from learnkit.callback import CallbackHandler, RunState
from learnkit.data.augment import Normalize
from learnkit.data.bunch import DatasetType
from learnkit.data.images import image_to_tensor, read_image, resize_tensor, to_rgb
from learnkit.errors import DataError, UsageError
from learnkit.loop import loss_batch
from learnkit.losses import default_activation
from learnkit.show import save_mask

if TYPE_CHECKING:
    from learnkit.learner import Learner

__all__ = [
    "Prediction",
    "expand_items",
    "pred_batch",
    "predict",
    "predict_images",
    "save_mask",
    "upsample_mask",
]


# --- the pieces every prediction goes through ---
def _device(learn: Learner) -> torch.device:
    param = next(learn.model.parameters(), None)
    return param.device if param is not None else torch.device(getattr(learn.data, "device", "cpu"))


def _item_tfms(learn: Learner) -> list:
    """The validation loader's transforms (normalisation), or those the metadata describes."""
    valid_dl = getattr(learn.data, "valid_dl", None)
    if valid_dl is not None:
        return [t for t in valid_dl.tfms if not getattr(t, "train_only", False)]
    if getattr(learn.data, "size", None) is not None:
        return [Normalize.from_stats(learn.data.norm_stats)]
    return []


def _prepare(learn: Learner, batch: torch.Tensor) -> torch.Tensor:
    """A batch as a data set yields it (uint8 images) -> what the model sees, on its device."""
    x = batch.to(_device(learn))
    if x.is_floating_point():
        x = x.clone()  # transforms work in place; never change the caller's tensor
    for tfm in _item_tfms(learn):
        x, _ = tfm(x, None)
    return x


def _probabilities(
    learn: Learner, x: torch.Tensor, tta: bool = False, beta: float = 0.4, scale: float = 1.35
) -> torch.Tensor:
    """The activation of the model's output on ``x`` (as ``get_preds`` computes it), on the CPU."""
    activ = default_activation(learn.loss_func)
    model = learn.model
    state = RunState(learn=learn, model=model, precision=learn.precision, train=False)
    cbh = CallbackHandler(learn.callbacks, state)
    dummy = torch.zeros(x.shape[0], device=x.device)
    model.eval()

    def predict(xb: torch.Tensor) -> torch.Tensor:
        out, _ = loss_batch(model, xb, dummy, None, None, cbh)
        return activ(out.float()) if activ is not None else out

    with torch.no_grad():
        probs = predict(x)
        if tta:
            from learnkit.tta import combine, tta_average

            probs = combine(probs, tta_average(predict, x, scale), beta)
    return probs.cpu()


def _image_size(learn: Learner) -> int:
    size = getattr(learn.data, "size", None)
    if size is None:
        raise UsageError("this learner's data has no image size; pass the item as a tensor")
    return size


def _as_image(learn: Learner, img: Image.Image) -> torch.Tensor:
    return resize_tensor(image_to_tensor(to_rgb(img)), _image_size(learn))


def _item_batch(learn: Learner, item: Any) -> tuple[torch.Tensor, tuple[int, int]]:
    """``(batch of one, (height, width) of the original)`` for a path, a PIL image or a tensor."""
    if isinstance(item, (str, Path)):  # decoded as a data set decodes its files
        size = _image_size(learn)
        x = read_image(item)
        return resize_tensor(x, size)[None], (x.shape[1], x.shape[2])
    if hasattr(item, "to_pil") and hasattr(item, "px"):  # fastai v1's Image (learnkit.vision.image)
        item = item.to_pil()
    if isinstance(item, Image.Image):
        return _item_batch_from_image(learn, item)
    if not isinstance(item, torch.Tensor):
        raise UsageError(f"predict takes a path, a PIL image or a tensor, not {type(item).__name__}")
    size = getattr(learn.data, "size", None)
    if item.dim() == 3 and size is not None and tuple(item.shape[-2:]) != (size, size):
        if item.dtype != torch.uint8:
            raise UsageError(f"a float image tensor must already be {size} x {size}; pass uint8 to resize")
        arr = item.permute(1, 2, 0).cpu().numpy()
        pil = Image.fromarray(np.ascontiguousarray(arr[..., 0] if arr.shape[-1] == 1 else arr))
        return _item_batch_from_image(learn, pil)
    orig = tuple(item.shape[-2:]) if item.dim() >= 2 else ()
    return item[None], orig


def _item_batch_from_image(learn: Learner, img: Image.Image) -> tuple[torch.Tensor, tuple[int, int]]:
    return _as_image(learn, img)[None], (img.height, img.width)


def _label(learn: Learner, index: int) -> str:
    classes = getattr(learn.data, "classes", None)
    return str(classes[index]) if classes is not None and index < len(classes) else str(index)


def upsample_mask(probs: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """The class-index mask (long ``H x W``) of ``probs`` (``C x h x w``) resized to ``size``.

    Each class's map is resized bilinearly, one at a time (memory ``H x W``, not ``C x H x W``),
    and the arg-max kept, so boundaries are as smooth as the probabilities.
    """
    if tuple(probs.shape[-2:]) == tuple(size):
        return probs.argmax(0)
    best = torch.full(size, -float("inf"))
    mask = torch.zeros(size, dtype=torch.long)
    for c in range(probs.shape[0]):
        up = F.interpolate(probs[c][None, None].float(), size=size, mode="bilinear", align_corners=False)[
            0, 0
        ]
        better = up > best
        mask[better], best = c, torch.where(better, up, best)
    return mask


def predict(
    learn: Learner, item: Any, *, tta: bool = False, beta: float = 0.4, scale: float = 1.35
) -> tuple[Any, Any, torch.Tensor]:
    """``(label, index, probabilities)`` for one item.

    Args:
        learn: the Learner.
        item: an image file, a PIL image, or a tensor as a data set yields it (a uint8
            ``3 x H x W`` image is resized to the data's size; it then goes through the
            validation transforms, i.e. normalisation).
        tta: average with the 8 TTA versions (see :mod:`learnkit.tta`), weight ``beta`` on plain.

    Returns:
        Classification: the class name, its index (int) and the probability vector (``C``).
        Segmentation: the class-index mask at the image's original size (long ``H x W``), the mask
        at the model's size, and the probabilities (``C x size x size``).
    """
    batch, orig = _item_batch(learn, item)
    probs = _probabilities(learn, _prepare(learn, batch), tta, beta, scale)[0]
    if probs.dim() == 3:
        return upsample_mask(probs, orig), probs.argmax(0), probs
    if probs.dim() == 1:
        index = int(probs.argmax())
        return _label(learn, index), index, probs
    return probs, None, probs


def pred_batch(
    learn: Learner,
    ds_type: DatasetType = DatasetType.Valid,
    batch: Any = None,
    reconstruct: bool = False,
) -> Any:
    """The predictions (activations) of one batch: ``batch`` (``(x, y)`` or ``x``, as the loader
    yields it) or the first of ``ds_type``.

    With ``reconstruct``, a list with one decoded prediction per item: the class name
    (classification), a long class-index mask (segmentation), or the prediction itself.
    """
    if batch is None:
        batch = learn.data.one_batch(ds_type)
    xb = batch[0] if isinstance(batch, (list, tuple)) else batch
    probs = _probabilities(learn, xb.to(_device(learn)))
    if not reconstruct:
        return probs
    if probs.dim() == 2 and default_activation(learn.loss_func) is not None:
        return [_label(learn, int(i)) for i in probs.argmax(1)]
    if probs.dim() == 4:
        return list(probs.argmax(1))
    return list(probs)


# --- many files, batched ---
@dataclass
class Prediction:
    """The prediction for one file; ``error`` (one line) is set instead when it could not be read.

    Classification fills ``label``, ``index``, ``probability`` and ``topk`` (``[(label, p)]``, best
    first); segmentation fills ``mask`` (long ``H x W`` at the image's original size) and
    ``pixels`` (the share of the image predicted as each class).
    """

    path: str
    label: str | None = None
    index: int | None = None
    probability: float | None = None
    topk: list[tuple[str, float]] = field(default_factory=list)
    probs: torch.Tensor | None = None
    mask: torch.Tensor | None = None
    pixels: dict[str, float] | None = None
    labels: list[tuple[str, float]] | None = None  # multi-label: the classes above the threshold
    error: str | None = None

    @property
    def ok(self) -> bool:
        """True when the image was read and predicted."""
        return self.error is None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able row: ``path`` and ``label``/``index``/``probability`` (+ ``topk``), or ``error``."""
        if self.error is not None:
            return {"path": self.path, "error": self.error}
        if self.mask is not None:
            height, width = self.mask.shape
            return {"path": self.path, "height": int(height), "width": int(width), "pixels": self.pixels}
        row = {"path": self.path, "label": self.label, "index": self.index, "probability": self.probability}
        if self.labels is not None:
            row["labels"] = [{"label": lbl, "probability": p} for lbl, p in self.labels]
        if len(self.topk) > 1:
            row["topk"] = [{"label": lbl, "probability": p} for lbl, p in self.topk]
        return row


def _read(path: str, size: int) -> tuple[torch.Tensor, tuple[int, int]] | str:
    """``(uint8 image, (height, width) of the original)`` or the one-line reason it is unusable."""
    try:
        x = read_image(path)
    except DataError as exc:
        if _is_pattern(path) and not Path(path).exists():
            return f"no file matches {path}"
        return str(exc)
    return resize_tensor(x, size), (x.shape[1], x.shape[2])


def _chunks(items: Iterable, n: int) -> Iterator[list]:
    it = iter(items)
    while chunk := list(islice(it, n)):
        yield chunk


def _decode_rows(learn: Learner, paths: list[str], probs: torch.Tensor, origs: list, topk: int):
    for path, p, orig in zip(paths, probs, origs):
        if p.dim() == 3:
            mask = upsample_mask(p, orig)
            counts = torch.bincount(mask.flatten(), minlength=p.shape[0]).tolist()
            pixels = {_label(learn, c): n / mask.numel() for c, n in enumerate(counts) if n}
            yield Prediction(path, mask=mask, pixels=pixels)
            continue
        k = max(1, min(topk, p.shape[0]))
        values, indices = p.topk(k)
        top = [(_label(learn, int(i)), float(v)) for v, i in zip(values, indices)]
        labels = multi_labels(learn, p) if getattr(learn.data, "multi_label", False) else None
        yield Prediction(path, top[0][0], int(indices[0]), top[0][1], top, probs=p, labels=labels)


def multi_labels(learn: Learner, probs: torch.Tensor, thresh: float | None = None) -> list[tuple[str, float]]:
    """Multi-label: ``(class, probability)`` of every class above ``thresh`` (default: the data's,
    which a checkpoint records), most probable first."""
    thresh = getattr(learn.data, "thresh", 0.5) if thresh is None else thresh
    chosen = [(float(v), int(i)) for i, v in enumerate(probs) if float(v) > thresh]
    return [(_label(learn, i), v) for v, i in sorted(chosen, reverse=True)]


def expand_items(
    items: Iterable[str | Path], stdin: Iterable[str] | None = None, *, null: bool = False
) -> Iterator[Path]:
    """Image paths from command-line items, lazily and in order.

    A folder gives its images (any depth, sorted, hidden files left out); a glob pattern
    (``*``, ``?``, ``[``) that is not an existing path gives its sorted matches (``**`` recurses);
    ``-`` reads one item a line from ``stdin`` (default ``sys.stdin``), or, with ``null``, items
    separated by NUL characters (``find -print0``); anything else is taken as a file, so a missing
    one (or a pattern matching nothing) becomes an error row of :func:`predict_images`, not a
    silent skip.

    Raises:
        DataError: stdin holds NUL characters but ``null`` is not set.
    """
    from learnkit.data.folder import list_images

    for item in items:
        text = str(item)
        if text == "-":
            lines = sys.stdin if stdin is None else stdin
            yield from expand_items(_null_items(lines) if null else _line_items(lines))
            continue
        path = Path(text).expanduser()
        if path.is_dir():
            yield from map(Path, list_images(path))
        elif not path.exists() and _is_pattern(text):
            matches = sorted(Path(m) for m in glob.glob(str(path), recursive=True))
            yield from (m for m in matches if m.is_file()) if matches else [path]
        else:
            yield path


def _is_pattern(text: str) -> bool:
    return any(c in text for c in "*?[")


def _line_items(lines: Iterable[str]) -> Iterator[str]:
    for line in lines:
        if "\0" in line:
            raise DataError("stdin holds NUL characters (find -print0?): read it with --null (-0)")
        if line.strip():
            yield line.rstrip("\r\n")


def _null_items(chunks: Iterable[str]) -> Iterator[str]:
    """Items separated by NUL characters, read as they come (a chunk may split an item)."""
    rest = ""
    for chunk in chunks:
        *done, rest = (rest + chunk).split("\0")
        yield from (item for item in done if item)
    if rest.strip("\r\n"):
        yield rest.rstrip("\r\n")


def predict_images(
    learn: Learner,
    paths: Iterable[str | Path],
    bs: int = 64,
    topk: int = 1,
    *,
    tta: bool = False,
    beta: float = 0.4,
    scale: float = 1.35,
    workers: int | None = None,
) -> Iterator[Prediction]:
    """Predict image files ``bs`` at a time; yield one :class:`Prediction` per path, in order.

    ``paths`` may be any iterable (e.g. lines of stdin): it is read one batch at a time, and the
    next batch is decoded in ``workers`` threads (default: up to 4) while the model runs. A file
    that cannot be read yields ``Prediction(path, error=...)`` and the run goes on.
    """
    size = getattr(learn.data, "size", None)
    if size is None:
        raise UsageError("this learner's data has no image size, so it cannot read image files")
    if bs < 1:
        raise UsageError(f"batch size must be >= 1, got {bs}")
    workers = workers or min(4, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:

        def submit(chunk: list) -> list:
            return [(str(p), pool.submit(_read, str(p), size)) for p in chunk]

        for pending in _read_ahead(_chunks(paths, bs), submit):
            read = [(path, fut.result()) for path, fut in pending]
            good = [(path, r) for path, r in read if not isinstance(r, str)]
            rows: Iterator[Prediction] = iter(())
            if good:
                x = _prepare(learn, torch.stack([r[0] for _, r in good]))
                probs = _probabilities(learn, x, tta, beta, scale)
                rows = _decode_rows(learn, [p for p, _ in good], probs, [r[1] for _, r in good], topk)
            for path, r in read:
                yield Prediction(path, error=r) if isinstance(r, str) else next(rows)


def _read_ahead(chunks: Iterator[list], submit: Any) -> Iterator[list]:
    """``submit(chunk)`` for each chunk, one chunk ahead, read in a thread of its own.

    The next batch's paths are read (and its images decoded) while this batch runs, but a slow
    source (lines typed or piped into ``predict -``) never holds back the batch already read: its
    rows come out as soon as it is full.
    """
    ahead: queue.Queue = queue.Queue(maxsize=1)
    done = object()

    def produce() -> None:
        try:
            for chunk in chunks:
                ahead.put(submit(chunk))
        except BaseException as exc:  # handed to the consumer, raised there
            ahead.put(exc)
        ahead.put(done)

    threading.Thread(target=produce, name="learnkit-read-ahead", daemon=True).start()
    while (item := ahead.get()) is not done:
        if isinstance(item, BaseException):
            raise item
        yield item
