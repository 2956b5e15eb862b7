"""Pure geometry for batch augmentation: 3x3 matrices in normalised coordinates, and one warp.

Coordinates are ``affine_grid``'s: ``x`` and ``y`` in ``[-1, 1]`` across the image (pixel centres,
``align_corners=False``). A matrix ``M`` maps an *output* point to the *input* point it is read
from (the convention of ``affine_grid``), so composing ``A @ B`` reads through ``A`` after ``B``.
Every function takes per-image parameters as 1-d tensors and returns ``(n, 3, 3)`` float64
matrices; :func:`warp` applies them with one ``grid_sample`` per batch.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def identity(n: int) -> torch.Tensor:
    """``n`` identity matrices."""
    return torch.eye(3, dtype=torch.float64).repeat(n, 1, 1)


def flip_matrix(flip_x: torch.Tensor, flip_y: torch.Tensor, transpose: torch.Tensor) -> torch.Tensor:
    """Left-right flips, top-bottom flips and x/y swaps (bool tensors): the dihedral group's 8."""
    m = identity(flip_x.shape[0])
    m[:, 0, 0] = torch.where(flip_x, -1.0, 1.0)
    m[:, 1, 1] = torch.where(flip_y, -1.0, 1.0)
    swap = identity(flip_x.shape[0])
    swap[transpose] = torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]], dtype=torch.float64)
    return m @ swap


def rotation_matrix(degrees: torch.Tensor) -> torch.Tensor:
    """Rotations by ``degrees`` about the image centre."""
    rad = degrees.double() * math.pi / 180.0
    cos, sin = torch.cos(rad), torch.sin(rad)
    m = identity(degrees.shape[0])
    m[:, 0, 0], m[:, 0, 1], m[:, 1, 0], m[:, 1, 1] = cos, -sin, sin, cos
    return m


def zoom_matrix(scale: torch.Tensor, row_pct: torch.Tensor, col_pct: torch.Tensor) -> torch.Tensor:
    """Zoom *in* by ``scale >= 1`` on a window placed at ``(col_pct, row_pct)`` in ``[0, 1]``.

    The window ``1 / scale`` of the image wide is moved at most as far as it stays inside the
    image (as fastai's ``zoom``), so no border is ever invented.
    """
    inv = 1.0 / scale.double()
    m = identity(scale.shape[0])
    m[:, 0, 0], m[:, 1, 1] = inv, inv
    m[:, 0, 2] = (1 - inv) * (2 * col_pct.double() - 1)
    m[:, 1, 2] = (1 - inv) * (2 * row_pct.double() - 1)
    return m


def homography(src: torch.Tensor, dst: torch.Tensor) -> torch.Tensor:
    """The perspective matrices taking the 4 points ``src`` to ``dst`` (both ``n x 4 x 2``)."""
    n = src.shape[0]
    a = torch.zeros(n, 8, 8, dtype=torch.float64)
    b = torch.zeros(n, 8, dtype=torch.float64)
    for i in range(4):
        x, y = src[:, i, 0].double(), src[:, i, 1].double()
        u, v = dst[:, i, 0].double(), dst[:, i, 1].double()
        a[:, 2 * i, 0], a[:, 2 * i, 1], a[:, 2 * i, 2] = x, y, 1.0
        a[:, 2 * i, 6], a[:, 2 * i, 7] = -u * x, -u * y
        a[:, 2 * i + 1, 3], a[:, 2 * i + 1, 4], a[:, 2 * i + 1, 5] = x, y, 1.0
        a[:, 2 * i + 1, 6], a[:, 2 * i + 1, 7] = -v * x, -v * y
        b[:, 2 * i], b[:, 2 * i + 1] = u, v
    h = torch.linalg.solve(a, b)
    return torch.cat([h, torch.ones(n, 1, dtype=torch.float64)], dim=1).view(n, 3, 3)


CORNERS = torch.tensor([[-1.0, -1.0], [-1.0, 1.0], [1.0, -1.0], [1.0, 1.0]], dtype=torch.float64)


def symmetric_warp_matrix(magnitude: torch.Tensor) -> torch.Tensor:
    """fastai's ``symmetric_warp``: each image's corners pulled in or out by 4 magnitudes (``n x 4``).

    Opposite edges move symmetrically (a keystone tilt), as in fastai v1's ``symmetric_warp``.
    """
    m = magnitude.double()
    n = m.shape[0]
    dst = torch.stack(
        [
            torch.stack([-1 - m[:, 3], -1 - m[:, 1]], dim=1),
            torch.stack([-1 - m[:, 2], 1 + m[:, 1]], dim=1),
            torch.stack([1 + m[:, 3], -1 - m[:, 0]], dim=1),
            torch.stack([1 + m[:, 2], 1 + m[:, 0]], dim=1),
        ],
        dim=1,
    )
    return homography(CORNERS.expand(n, 4, 2), dst)


def warp(
    t: torch.Tensor, matrices: torch.Tensor, mode: str = "bilinear", padding_mode: str = "reflection"
) -> torch.Tensor:
    """``t`` (``n x c x h x w``, float) read through ``matrices`` (output point -> input point).

    An affine batch (last rows ``0 0 1``) goes through ``affine_grid``; otherwise the points are
    divided by their third coordinate (a perspective warp). Then one ``grid_sample``.
    """
    n, _, h, w = t.shape
    mats = matrices.to(device=t.device, dtype=torch.float32, non_blocking=True)
    if bool((matrices[:, 2, :2] == 0).all()) and bool((matrices[:, 2, 2] == 1).all()):
        grid = F.affine_grid(mats[:, :2, :], [n, 1, h, w], align_corners=False)
    else:
        eye = torch.eye(3, device=t.device)[:2].expand(n, 2, 3)
        base = F.affine_grid(eye, [n, 1, h, w], align_corners=False)
        ones = torch.ones(n, h, w, 1, device=t.device)
        points = torch.cat([base, ones], dim=-1) @ mats.transpose(1, 2).view(n, 1, 3, 3)
        grid = points[..., :2] / points[..., 2:].clamp_min(1e-6)
    return F.grid_sample(t, grid, mode=mode, padding_mode=padding_mode, align_corners=False)
