"""``DynamicUnet``: a U-Net decoder grown over any encoder, as fastai v1 builds it.

The encoder (a zoo arch's body up to its cut) runs once on a dummy image with hooks on its stages;
where the feature map shrinks, the stage before the change is a skip connection. The decoder is
then one :class:`UnetBlock` per skip, deepest first: pixel-shuffle upsampling (ICNR-initialised, so
it starts free of checkerboard artefacts), the skip's features (batch-normed) concatenated, two
convs. The skips' hooks keep their outputs attached to the graph, so the encoder learns through
them too. The output always has the input's height and width, whatever they are.

Example:
    >>> encoder = create_body(torchvision.models.resnet18(), -2)  # doctest: +SKIP
    >>> net = DynamicUnet(encoder, n_out=4, self_attention=True)  # doctest: +SKIP
    >>> net(torch.zeros(2, 3, 37, 45)).shape  # doctest: +SKIP
    torch.Size([2, 4, 37, 45])
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm, weight_norm

from learnkit.errors import UsageError

NORM_TYPES = (None, "batch", "weight")
"""The decoder's normalisation: none (fastai v1's default), BatchNorm after each conv, or weight norm."""


def check_norm_type(norm_type: str | None) -> str | None:
    """``norm_type`` lower-cased if it is one of :data:`NORM_TYPES` (``"none"`` means None)."""
    value = None if norm_type is None else str(norm_type).strip().lower()
    value = None if value == "none" else value
    if value not in NORM_TYPES:
        raise UsageError(f"norm_type must be none, batch or weight, not {norm_type!r}")
    return value


def icnr_(weight: torch.Tensor, scale: int = 2, init: Callable = nn.init.kaiming_normal_) -> torch.Tensor:
    """ICNR init (Aitken et al. 2017) of a conv weight that feeds ``PixelShuffle(scale)``, in place.

    Each group of ``scale**2`` output channels that the shuffle spreads over one output pixel's
    neighbourhood gets the same kernel, so the upsampled map starts as a nearest-neighbour
    upsampling of one conv: no checkerboard pattern at initialisation.
    """
    n_out, n_in, h, w = weight.shape
    sub = scale**2
    if n_out % sub:
        raise ValueError(f"ICNR needs output channels divisible by {sub}, got {n_out}")
    kernel = init(torch.zeros(n_out // sub, n_in, h, w))
    with torch.no_grad():
        weight.copy_(kernel.repeat_interleave(sub, dim=0))  # channel c*sub+k -> subpixel k of channel c
    return weight


def batchnorm_2d(n_features: int) -> nn.BatchNorm2d:
    """A ``BatchNorm2d`` whose bias starts at 1e-3 (scale 1), as fastai v1's ``batchnorm_2d``:
    the U-Net's skip connections and middle are normalised with it."""
    bn = nn.BatchNorm2d(n_features)
    with torch.no_grad():
        bn.bias.fill_(1e-3)
        bn.weight.fill_(1.0)
    return bn


def conv_layer(
    n_in: int,
    n_out: int,
    ks: int = 3,
    norm_type: str | None = None,
    use_activ: bool = True,
    self_attention: bool = False,
    init: Callable[[torch.Tensor], Any] = nn.init.kaiming_normal_,
    zero_bn: bool = False,
) -> nn.Sequential:
    """Conv (same padding), ReLU, BatchNorm (with ``norm_type="batch"``), then self-attention:
    fastai v1's order (the norm comes after the activation).

    ``norm_type="weight"`` wraps the conv in weight normalisation instead. ``init`` sets the conv
    weight (before weight norm); the bias starts at zero. ``zero_bn`` starts the BatchNorm's scale
    at zero, so a residual branch ending here starts as the identity.
    """
    conv = nn.Conv2d(n_in, n_out, ks, padding=ks // 2, bias=norm_type != "batch")
    init(conv.weight)
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)
    layers: list[nn.Module] = [weight_norm(conv) if norm_type == "weight" else conv]
    if use_activ:
        layers.append(nn.ReLU(inplace=True))
    if norm_type == "batch":
        bn = nn.BatchNorm2d(n_out)
        if zero_bn:
            nn.init.zeros_(bn.weight)
        layers.append(bn)
    if self_attention:
        layers.append(SelfAttention(n_out))
    return nn.Sequential(*layers)


class PixelShuffleICNR(nn.Module):
    """Upsample by ``scale``: 1x1 conv to ``n_out * scale**2`` channels (ICNR init), ReLU, pixel shuffle.

    With ``blur``, a replication pad and a 2x2 average pool (stride 1) follow, which smooths what
    is left of the checkerboard (Sugawara et al. 2019); without it the module has no blur layers.
    """

    def __init__(
        self,
        n_in: int,
        n_out: int | None = None,
        scale: int = 2,
        blur: bool = False,
        norm_type: str | None = None,
    ):
        super().__init__()
        n_out = n_in if n_out is None else n_out
        self.conv = conv_layer(
            n_in, n_out * scale**2, ks=1, norm_type=norm_type, use_activ=False, init=lambda w: icnr_(w, scale)
        )
        self.relu = nn.ReLU(inplace=True)
        self.shuffle = nn.PixelShuffle(scale)
        if blur:
            self.pad, self.blur = nn.ReplicationPad2d((1, 0, 1, 0)), nn.AvgPool2d(2, stride=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.shuffle(self.relu(self.conv(x)))
        return self.blur(self.pad(x)) if hasattr(self, "blur") else x


class SelfAttention(nn.Module):
    """Self-attention over the positions of a feature map (SAGAN, Zhang et al. 2018).

    The query, key and value are 1x1 convolutions under spectral normalisation (as fastai v1's,
    and SAGAN's); ``gamma`` starts at zero, so the layer starts as the identity and learns how much
    to attend.
    """

    def __init__(self, n_channels: int):
        super().__init__()
        n_key = max(1, n_channels // 8)
        self.query = nn.Conv1d(n_channels, n_key, 1, bias=False)
        self.key = nn.Conv1d(n_channels, n_key, 1, bias=False)
        self.value = nn.Conv1d(n_channels, n_channels, 1, bias=False)
        for conv in (self.query, self.key, self.value):
            nn.init.kaiming_normal_(conv.weight)
        self.query, self.key, self.value = (spectral_norm(c) for c in (self.query, self.key, self.value))
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.flatten(2)  # N x C x (H*W)
        f, g, h = self.query(flat), self.key(flat), self.value(flat)
        beta = F.softmax(torch.bmm(f.transpose(1, 2), g), dim=1)  # N x HW x HW
        return (self.gamma * torch.bmm(h, beta) + flat).view_as(x)


class SigmoidRange(nn.Module):
    """``sigmoid(x) * (high - low) + low``: outputs squeezed into ``(low, high)``."""

    def __init__(self, low: float, high: float):
        super().__init__()
        self.low, self.high = float(low), float(high)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(x) * (self.high - self.low) + self.low

    def extra_repr(self) -> str:
        return f"low={self.low}, high={self.high}"


class ResBlock(nn.Module):
    """``x + conv(conv(x))`` at ``n_channels``; with ``bottle`` the inner conv has half the channels."""

    def __init__(self, n_channels: int, norm_type: str | None = None, bottle: bool = False):
        super().__init__()
        inner = n_channels // 2 if bottle else n_channels
        self.convs = nn.Sequential(
            conv_layer(n_channels, inner, norm_type=norm_type),
            conv_layer(inner, n_channels, norm_type=norm_type, zero_bn=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.convs(x)


class UnetBlock(nn.Module):
    """One decoder step: upsample ``up_in``, concatenate the batch-normed skip, two convs.

    Args:
        up_in_c: channels coming up from the deeper block.
        x_in_c: channels of the skip connection.
        final_div: halve the channels after the concatenation (the last block does not).
        blur, norm_type: of the upsampling and the convs (see :class:`PixelShuffleICNR`).
        self_attention: end the second conv with a :class:`SelfAttention` layer.
    """

    def __init__(
        self,
        up_in_c: int,
        x_in_c: int,
        final_div: bool = True,
        blur: bool = False,
        self_attention: bool = False,
        norm_type: str | None = None,
    ):
        super().__init__()
        self.shuf = PixelShuffleICNR(up_in_c, up_in_c // 2, blur=blur, norm_type=norm_type)
        self.bn = batchnorm_2d(x_in_c)
        n_in = up_in_c // 2 + x_in_c
        self.n_out = n_in if final_div else n_in // 2
        self.conv1 = conv_layer(n_in, self.n_out, norm_type=norm_type)
        self.conv2 = conv_layer(self.n_out, self.n_out, norm_type=norm_type, self_attention=self_attention)
        self.relu = nn.ReLU()

    def forward(self, up_in: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        up = self.shuf(up_in)
        if up.shape[-2:] != skip.shape[-2:]:  # odd sizes: the encoder rounded down when it shrank
            up = F.interpolate(up, skip.shape[-2:], mode="nearest")
        x = self.relu(torch.cat([up, self.bn(skip)], dim=1))
        return self.conv2(self.conv1(x))


class _Hook:
    """Keeps a module's latest output, not detached (so gradients reach the encoder through it).

    A callable object rather than a closure: ``copy.deepcopy`` of the model then copies it along
    with the model, and the copy's hooks feed the copy.
    """

    def __init__(self) -> None:
        self.stored: torch.Tensor | None = None

    def __call__(self, module: nn.Module, inputs: Any, output: torch.Tensor) -> None:
        self.stored = output


def encoder_stages(encoder: nn.Module) -> list[nn.Module]:
    """The modules whose outputs follow one another through the encoder, in order.

    The encoder's children; a body that is one ``nn.Sequential`` (``Sequential(features)``, as
    MobileNet's and EfficientNet's cut leave it) is opened until there is more than one.
    """
    stages = list(encoder.children())
    while len(stages) == 1 and isinstance(stages[0], nn.Sequential):
        stages = list(stages[0].children())
    return stages


def stage_sizes(
    encoder: nn.Module, stages: Sequence[nn.Module], size: tuple[int, int], in_channels: int
) -> list:
    """The output shape of each stage on one dummy ``size`` image (eval mode, no gradients)."""
    shapes: list[Any] = [None] * len(stages)

    def keep(i: int) -> Callable:
        def hook(module: nn.Module, inputs: Any, output: Any) -> None:
            shapes[i] = tuple(output.shape) if isinstance(output, torch.Tensor) else None

        return hook

    handles = [stage.register_forward_hook(keep(i)) for i, stage in enumerate(stages)]
    param = next(encoder.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    training = encoder.training
    try:
        encoder.eval()
        with torch.no_grad():
            encoder(torch.zeros(1, in_channels, *size, device=device))
    finally:
        encoder.train(training)
        for handle in handles:
            handle.remove()
    return shapes


def skip_indices(shapes: Sequence[Any]) -> list[int]:
    """The stages whose output is followed by a smaller one: the last stage at each resolution."""
    return [i for i in range(len(shapes) - 1) if shapes[i][-2:] != shapes[i + 1][-2:]]


def in_channels_of(encoder: nn.Module) -> int:
    """The input channels of the encoder's first conv (3 when it has none)."""
    first = next((m for m in encoder.modules() if isinstance(m, nn.Conv2d)), None)
    return first.in_channels if first is not None else 3


class DynamicUnet(nn.Module):
    """A U-Net over ``encoder`` with ``n_out`` output channels (see the module docstring).

    Args:
        encoder: a module from images to feature maps (a zoo body); its stages are hooked.
        n_out: output channels (classes, or 1 for a regression mask).
        img_size: the dummy image that finds the skips; only the structure depends on it, not
            the input sizes the net accepts (every feature map must stay above 1 pixel in it).
        blur: blur after the pixel-shuffle upsampling of each block (never the final upsample's,
            as fastai v1).
        blur_final: with ``blur``, blur the last block's upsampling too.
        self_attention: a self-attention layer in the third block from the end (the first if
            there are fewer).
        y_range: ``(low, high)``: squeeze the outputs with a :class:`SigmoidRange`.
        last_cross: concatenate the input image to the upsampled features, then a :class:`ResBlock`.
        bottle: that ResBlock has a bottleneck (half the channels inside); only with ``last_cross``.
        norm_type: ``None``, ``"batch"`` or ``"weight"``: normalisation of the decoder's convs
            (the final 1x1 conv included); the skips and the middle are batch-normed regardless.
    """

    def __init__(
        self,
        encoder: nn.Module,
        n_out: int,
        img_size: tuple[int, int] | int = (128, 128),
        blur: bool = False,
        blur_final: bool = True,
        self_attention: bool = False,
        y_range: Sequence[float] | None = None,
        last_cross: bool = True,
        bottle: bool = False,
        norm_type: str | None = None,
    ):
        super().__init__()
        norm_type = check_norm_type(norm_type)
        size = (img_size, img_size) if isinstance(img_size, int) else tuple(img_size)
        self.encoder = encoder
        n_in_img = in_channels_of(encoder)
        stages = encoder_stages(encoder)
        shapes = stage_sizes(encoder, stages, size, n_in_img)
        if any(s is None or len(s) != 4 for s in shapes):
            raise UsageError("this encoder cannot serve a U-Net: its stages do not all output feature maps")
        idxs = skip_indices(shapes)
        if not idxs:
            raise UsageError(f"this encoder cannot serve a U-Net: its feature maps never shrink at {size}")
        self._hooks = [_Hook() for _ in idxs]  # deepest last
        for i, hook in zip(idxs, self._hooks):
            stages[i].register_forward_hook(hook)

        n_ch = shapes[-1][1]
        self.img_size, self.skip_size = size, tuple(shapes[idxs[0]][-2:])
        self.bn = batchnorm_2d(n_ch)
        self.middle_conv = nn.Sequential(
            conv_layer(n_ch, n_ch * 2, norm_type=norm_type), conv_layer(n_ch * 2, n_ch, norm_type=norm_type)
        )
        blocks, up_c = [], n_ch
        attention_at = max(0, len(idxs) - 3)
        for k, i in enumerate(reversed(idxs)):
            final = k == len(idxs) - 1
            block = UnetBlock(
                up_c,
                shapes[i][1],
                final_div=not final,
                blur=blur and (not final or blur_final),
                self_attention=self_attention and k == attention_at,
                norm_type=norm_type,
            )
            blocks.append(block)
            up_c = block.n_out
        self.blocks = nn.ModuleList(blocks)
        top = shapes[idxs[0]][-2:]  # the resolution of the shallowest skip, where the blocks end
        self.upsample = PixelShuffleICNR(up_c, norm_type=norm_type) if top != size else None
        self.last_cross = last_cross
        if last_cross:
            up_c += n_in_img
            self.cross = ResBlock(up_c, norm_type=norm_type, bottle=bottle)
        self.final_conv = conv_layer(up_c, n_out, ks=1, use_activ=False, norm_type=norm_type)
        self.y_range = SigmoidRange(*y_range) if y_range is not None else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        try:
            y = self.encoder(x)
            skips = [hook.stored for hook in self._hooks]
        finally:
            for hook in self._hooks:  # do not keep a batch's activations alive between calls
                hook.stored = None
        y = self.middle_conv(F.relu(self.bn(y)))
        for block, skip in zip(self.blocks, reversed(skips)):
            y = block(y, skip)
        if self.upsample is not None:
            y = self.upsample(y)
        if y.shape[-2:] != x.shape[-2:]:
            y = F.interpolate(y, x.shape[-2:], mode="nearest")
        if self.last_cross:
            y = self.cross(torch.cat([y, x], dim=1))
        y = self.final_conv(y)
        return self.y_range(y) if self.y_range is not None else y

    def decoder(self) -> list[nn.Module]:
        """The modules after the encoder, in order (the decoder's layer group)."""
        parts = [self.bn, self.middle_conv, self.blocks, self.upsample, getattr(self, "cross", None)]
        return [m for m in [*parts, self.final_conv, self.y_range] if m is not None]
