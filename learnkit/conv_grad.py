"""A faster weight gradient on the CPU for convolutions whose output has few positions.

oneDNN (torch's CPU convolutions) computes the weight gradient of a convolution with its
``gemm:jit`` backward-weights, one small matrix product per image. When the output has one to
four positions (a resnet's last stage at 32 px: 512 channels at 1x1 or 2x2, or any net on small
images) those products are nearly vector products and the weight gradient takes 5-15x the
convolution's forward time: a resnet18 step at 32 px spent about 40% of its time in three such
convolutions (bench/README.md, table F). One matrix product over the whole batch,
``grad_out (O x N*L) @ unfold(x) (N*L x C*kh*kw)``, computes the same sums (in another order)
in a fraction of the time. The input gradient and everything else stay torch's own.

:func:`small_output_grads` switches this on for the convolutions of a model (a context manager);
:class:`learnkit.callbacks.conv_grad.SmallConvGrad` does it for the length of a fit. A
convolution takes the new path only while training on the CPU in float32 with gradients enabled,
with ``groups == 1``, zero padding and at most :data:`MAX_POSITIONS` output positions; in every
other case (evaluation, CUDA, autocast, tracing, export) its forward is torch's.

Example:
    >>> with small_output_grads(model):  # doctest: +SKIP
    ...     loss_func(model(x), y).backward()
"""

from __future__ import annotations

import contextlib
import types
from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

Pair = tuple[int, ...]  # a convolution's stride, padding or dilation

MAX_POSITIONS = 4
"""The most output positions (H_out x W_out) that take the batched path. Measured on a 2-core AMD
EPYC (bench/README.md, table F): with 256-512 channels the batched product is 1.6-14x faster
than oneDNN's at 1 and 4 positions (about even with 32-64 channels), still faster at 9, and slower
from 16 (4x4) on."""


class _SmallOutputConv2d(torch.autograd.Function):
    """``F.conv2d`` whose weight gradient is one matrix product over the batch."""

    @staticmethod
    def forward(
        ctx: Any,
        x: torch.Tensor,
        weight: torch.Tensor,
        bias: Any,
        stride: Pair,
        padding: Pair,
        dilation: Pair,
    ) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        ctx.geometry = (stride, padding, dilation)
        return F.conv2d(x, weight, bias, stride, padding, dilation)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[Any, ...]:
        x, weight = ctx.saved_tensors
        stride, padding, dilation = ctx.geometry
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        grad_x = grad_w = grad_b = None
        if need_x:
            grad_x = torch.ops.aten.convolution_backward(
                grad, x, weight, None, list(stride), list(padding), list(dilation), False, [0, 0], 1,
                [True, False, False],
            )[0]  # fmt: skip
        if need_w:
            grad_w = _with_strides_of(weight, _weight_grad(grad, x, weight, stride, padding, dilation))
        if need_b:
            grad_b = grad.sum((0, 2, 3))
        return grad_x, grad_w, grad_b, None, None, None


def _weight_grad(
    grad: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, stride: Pair, padding: Pair, dilation: Pair
) -> torch.Tensor:
    """dL/dweight as one product over the batch, in the weight's own memory format (so that
    autograd need not copy it into the parameter's layout)."""
    n, out_ch = grad.shape[:2]
    in_ch, taps = weight.shape[1], weight.shape[2] * weight.shape[3]
    cols = F.unfold(x, weight.shape[2:], dilation=dilation, padding=padding, stride=stride)  # N x C*k x L
    grad_rows = grad.reshape(n, out_ch, -1).transpose(0, 1).reshape(out_ch, -1)  # O x N*L
    if weight.is_contiguous(memory_format=torch.channels_last) and not weight.is_contiguous():
        # rows ordered (kh, kw, C): the product is then the channels-last weight's memory
        cols = cols.view(n, in_ch, taps, -1).transpose(1, 2)
        grad_w = grad_rows @ cols.permute(0, 3, 1, 2).reshape(-1, taps * in_ch)
        return grad_w.view(out_ch, *weight.shape[2:], in_ch).permute(0, 3, 1, 2)
    return (grad_rows @ cols.transpose(1, 2).reshape(-1, in_ch * taps)).view(weight.shape)


def _with_strides_of(weight: torch.Tensor, grad_w: torch.Tensor) -> torch.Tensor:
    """``grad_w`` with exactly ``weight``'s strides, as DistributedDataParallel's gradient buckets
    expect (they are views with the parameter's strides; a mismatch warns and copies every step).

    A 1 x 1 kernel's weight is both contiguous and channels-last, and its strides along the
    size-1 dimensions can differ from the product's: the same memory then, so only the strides
    are restated; a gradient in another layout is copied into the weight's."""
    if grad_w.stride() == weight.stride():
        return grad_w
    for layout in (torch.contiguous_format, torch.channels_last):
        if grad_w.is_contiguous(memory_format=layout) and weight.is_contiguous(memory_format=layout):
            return grad_w.as_strided(weight.shape, weight.stride())
    return torch.empty_like(weight, memory_format=torch.preserve_format).copy_(grad_w)


def output_positions(conv: nn.Conv2d, x: torch.Tensor) -> int:
    """H_out x W_out of ``conv`` applied to ``x`` (an N x C x H x W tensor)."""
    size = 1
    geometry = (x.shape[-2:], conv.kernel_size, conv.stride, conv.padding, conv.dilation)
    for dim, k, s, p, d in zip(*geometry, strict=True):
        size *= (dim + 2 * p - d * (k - 1) - 1) // s + 1
    return size


def takes_small_output_path(conv: nn.Conv2d, x: torch.Tensor) -> bool:
    """Whether this call of ``conv`` on ``x`` uses the batched weight gradient."""
    return (
        x.device.type == "cpu"
        and x.dim() == 4
        and x.dtype == torch.float32
        and conv.weight.dtype == torch.float32
        and conv.weight.requires_grad
        and torch.is_grad_enabled()
        and conv.groups == 1
        and conv.padding_mode == "zeros"
        and not isinstance(conv.padding, str)
        and not torch.is_autocast_enabled("cpu")
        and not torch.jit.is_tracing()
        and not torch.compiler.is_compiling()
        and output_positions(conv, x) <= MAX_POSITIONS
    )


def _forward(self: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    if takes_small_output_path(self, x):
        return _SmallOutputConv2d.apply(x, self.weight, self.bias, self.stride, self.padding, self.dilation)
    return nn.Conv2d.forward(self, x)


def install(model: nn.Module) -> list[nn.Conv2d]:
    """Give every plain ``nn.Conv2d`` of ``model`` the batched weight gradient; returns them.

    Subclasses with their own ``forward`` (e.g. "same"-padding convolutions) are left alone.
    """
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d) and type(m).forward is nn.Conv2d.forward]
    for conv in convs:
        conv.forward = types.MethodType(_forward, conv)
    return convs


def uninstall(convs: list[nn.Conv2d]) -> None:
    """Give ``convs`` back torch's forward."""
    for conv in convs:
        conv.__dict__.pop("forward", None)


@contextlib.contextmanager
def small_output_grads(model: nn.Module) -> Iterator[nn.Module]:
    """Within the block, ``model``'s convolutions use the batched weight gradient (see above)."""
    convs = install(model)
    try:
        yield model
    finally:
        uninstall(convs)
