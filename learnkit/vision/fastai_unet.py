"""Map a fastai v1 ``DynamicUnet``'s state dict onto learnkit's :class:`~learnkit.vision.unet.DynamicUnet`.

fastai v1 builds its U-Net as one ``SequentialEx`` whose ``layers`` are, in order: the encoder, a
BatchNorm, a ReLU, the middle convs, one ``UnetBlock`` per skip, the final pixel-shuffle upsample
(when the skips stop short of the input size), an interpolation (when the upsample does not reach
the input size), a merge and a residual block (``last_cross``), the final 1x1 conv and an optional
sigmoid range. learnkit names those parts (``encoder``, ``bn``, ``middle_conv``, ``blocks.<i>``,
``upsample``, ``cross``, ``final_conv``) and builds the same layers inside them, so the two state
dicts match key for key once the prefixes are renamed. Weight and spectral norms differ in naming
only: fastai v1 used the old hooks (``weight_g``/``weight_v``, ``weight_orig``/``weight_u``/
``weight_v``), learnkit torch's parametrizations.

Example:
    >>> net, _ = build_unet("resnet34", n_out=4, img_size=256)  # doctest: +SKIP
    >>> state = torch.load("fastai_unet.pth", weights_only=True)["model"]  # doctest: +SKIP
    >>> load_fastai_unet_state(net, state)  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from learnkit.errors import CheckpointError
from learnkit.vision.unet import DynamicUnet

# learnkit's parametrization names -> fastai v1's hook names, per kind of norm
_WEIGHT_NORM = {
    "parametrizations.weight.original0": "weight_g",
    "parametrizations.weight.original1": "weight_v",
}
_SPECTRAL_NORM = {
    "parametrizations.weight.original": "weight_orig",
    "parametrizations.weight.0._u": "weight_u",
    "parametrizations.weight.0._v": "weight_v",
}


def fastai_layer_prefixes(net: DynamicUnet) -> dict[str, str]:
    """learnkit's top-level part (``"bn."``, ``"blocks.2."``, ...) -> fastai v1's ``"layers.<i>."``."""
    parts = ["encoder", "bn", None, "middle_conv", *[f"blocks.{i}" for i in range(len(net.blocks))]]
    if net.upsample is not None:
        parts.append("upsample")
    if tuple(2 * s for s in net.skip_size) != tuple(net.img_size):
        parts.append(None)  # fastai's Lambda interpolating to the input size
    if net.last_cross:
        parts += [None, "cross"]  # MergeLayer, res_block
    parts.append("final_conv")
    return {f"{p}.": f"layers.{i}." for i, p in enumerate(parts) if p is not None}


def _rename_inside(part: str, rest: str) -> str:
    if part == "cross." and rest.startswith("convs."):  # fastai's res_block is a SequentialEx
        rest = "layers." + rest.removeprefix("convs.")
    for table in (_WEIGHT_NORM, _SPECTRAL_NORM):
        for ours, theirs in table.items():
            if rest.endswith(ours):
                return rest[: -len(ours)] + theirs
    return rest


def fastai_unet_keys(net: DynamicUnet) -> dict[str, str]:
    """Each key of ``net.state_dict()`` -> the key fastai v1's DynamicUnet has for the same tensor."""
    prefixes = fastai_layer_prefixes(net)
    out = {}
    for key in net.state_dict():
        part = next(p for p in prefixes if key.startswith(p))
        out[key] = prefixes[part] + _rename_inside(part, key[len(part) :])
    return out


def from_fastai_unet_state(net: DynamicUnet, state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """fastai v1's U-Net state dict (``learn.save`` writes it under ``"model"``) keyed for ``net``.

    Raises :class:`CheckpointError` naming the keys that are missing, left over or of another shape.
    """
    keys = fastai_unet_keys(net)
    theirs = set(state)
    missing = [k for k in keys.values() if k not in theirs]
    extra = sorted(theirs - set(keys.values()))
    ours = net.state_dict()
    wrong = [t for o, t in keys.items() if t in theirs and tuple(state[t].shape) != tuple(ours[o].shape)]
    if missing or extra or wrong:
        detail = "; ".join(
            f"{what}: {', '.join(names[:4])}{', ...' if len(names) > 4 else ''}"
            for what, names in (("missing", missing), ("unexpected", extra), ("other shape", wrong))
            if names
        )
        raise CheckpointError(f"not a fastai v1 U-Net state for this model ({detail})")
    return {o: state[t] for o, t in keys.items()}


def load_fastai_unet_state(net: DynamicUnet, state: Mapping[str, torch.Tensor]) -> DynamicUnet:
    """Load fastai v1's U-Net state dict into ``net`` (see :func:`from_fastai_unet_state`)."""
    net.load_state_dict(from_fastai_unet_state(net, state))
    return net
