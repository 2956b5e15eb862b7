"""fastai v1's ``open_image`` / ``open_mask`` and the ``Image`` / ``ImageSegment`` they return.

An ``Image`` holds the picture as v1's does (``data``/``px``: float ``3 x H x W`` on the 0..1
scale), prints as v1's (``Image (3, 64, 64)``), draws itself with ``show`` (on a given axis, or a
new ``Figure`` that a notebook shows) and can be passed to ``learn.predict``. An ``ImageSegment``
holds a mask (long ``1 x H x W``).

Example:
    >>> img = open_image("data/valid/circle/0.png")  # doctest: +SKIP
    >>> img
    Image (3, 32, 32)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = ["Image", "ImageSegment", "open_image", "open_mask"]


class Image:
    """A picture: ``data`` float ``C x H x W`` on the 0..1 scale (fastai v1's ``Image``)."""

    def __init__(self, px: torch.Tensor) -> None:
        self.px = px

    @property
    def data(self) -> torch.Tensor:
        return self.px

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.px.shape)

    @property
    def size(self) -> tuple[int, int]:
        """``(height, width)``, as v1's."""
        return tuple(self.px.shape[-2:])

    @property
    def device(self) -> torch.device:
        return self.px.device

    def __repr__(self) -> str:
        return f"{type(self).__name__} {self.shape}"

    def to_pil(self) -> Any:
        """The picture as an RGB PIL image (what ``learn.predict`` resizes and normalises)."""
        from PIL import Image as PILImage

        arr = (self.px.clamp(0, 1) * 255 + 0.5).to(torch.uint8).permute(1, 2, 0).cpu().numpy()
        if arr.shape[-1] == 1:
            arr = np.repeat(arr, 3, axis=-1)
        return PILImage.fromarray(np.ascontiguousarray(arr)).convert("RGB")

    def _display(self) -> np.ndarray:
        return self.px.permute(1, 2, 0).clamp(0, 1).cpu().numpy()

    def show(
        self,
        ax: Any = None,
        figsize: tuple = (3, 3),
        title: str | None = None,
        hide_axis: bool = True,
        cmap: str | None = None,
        y: Any = None,
        **kwargs: Any,
    ) -> Any:
        """Draw on ``ax`` (a new ``Figure``'s when ``None``), with ``y`` (a mask) over it; returns the
        axis, as v1's. The new figure is shown inline in a notebook."""
        from learnkit.plots import in_notebook, new_figure

        fig = None
        if ax is None:
            fig, ax = new_figure(figsize=figsize)
        ax.imshow(self._display(), cmap=cmap, **kwargs)
        if y is not None:
            y.show(ax=ax, alpha=0.5)
        if hide_axis:
            ax.axis("off")
        if title:
            ax.set_title(title)
        if fig is not None and in_notebook():
            from IPython.display import display

            display(fig)
        return ax

    def _repr_png_(self) -> bytes:
        """A notebook shows an ``Image`` that ends a cell as a picture, as v1's does."""
        import io

        buf = io.BytesIO()
        self.to_pil().save(buf, format="PNG")
        return buf.getvalue()


class ImageSegment(Image):
    """A mask: ``data`` long ``1 x H x W`` of class indices (fastai v1's ``ImageSegment``)."""

    def _display(self) -> np.ndarray:
        return self.px[0].cpu().numpy()

    def show(self, ax: Any = None, figsize: tuple = (3, 3), title: str | None = None, hide_axis: bool = True,
             cmap: str = "tab20", alpha: float = 0.5, **kwargs: Any) -> Any:  # fmt: skip
        """Draw the mask (``cmap``, ``alpha``) on ``ax``, or a new figure's."""
        kwargs.setdefault("interpolation", "nearest")
        return super().show(ax, figsize, title, hide_axis, cmap, alpha=alpha, **kwargs)

    def to_pil(self) -> Any:
        from PIL import Image as PILImage

        return PILImage.fromarray(self.px[0].to(torch.uint8).cpu().numpy())


def open_image(fn: str | Path, div: bool = True, convert_mode: str = "RGB", **kwargs: Any) -> Image:
    """fastai v1's ``open_image``: the picture at ``fn`` (EXIF-rotated; 16-bit and palette images
    handled as learnkit's loaders handle them), 0..1 floats with ``div``, else 0..255."""
    from learnkit.data.images import open_image as open_pil

    pil = open_pil(fn)
    if convert_mode != "RGB":
        pil = pil.convert(convert_mode)
    arr = np.asarray(pil, dtype=np.float32)
    arr = arr[..., None] if arr.ndim == 2 else arr
    px = torch.from_numpy(np.ascontiguousarray(arr)).permute(2, 0, 1)
    return Image(px / 255.0 if div else px)


def open_mask(
    fn: str | Path, div: bool = False, convert_mode: str = "L", after_open: Any = None
) -> ImageSegment:
    """fastai v1's ``open_mask``: the mask at ``fn`` as class indices (long ``1 x H x W``); ``div``
    maps 255 to 1 (v1's two-class masks saved as 0/255)."""
    from PIL import Image as PILImage

    with PILImage.open(fn) as img:
        if after_open is not None:
            img = after_open(img)
        arr = np.asarray(img if img.mode in ("L", "P", "I", "I;16") else img.convert(convert_mode))
    px = torch.from_numpy(np.array(arr, dtype=np.int64))[None]
    return ImageSegment(px // 255 if div else px)
