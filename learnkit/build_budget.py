"""What a checkpoint's model will cost, estimated on the ``meta`` device before any real allocation.

A checkpoint's ``size`` (and a U-Net's ``img_size``) decide the memory of the dummy forward pass of a
build and of every inference, though the weights do not depend on them: a size-agnostic net
recorded at 4096 px needs gigabytes per image. So, once the spec's model has been built on the
``meta`` device (no memory) and matched with the file's tensors,
:func:`check_budget` runs one item through it, still on ``meta``, at the recorded side(s), and
compares:

- the parameter count with :data:`PARAM_BUDGET`;
- the activation memory of one item (float32; the sum of the input and of every layer's output,
  what a forward pass with gradients keeps, so an upper bound of what inference needs) with
  :data:`ACTIVATION_BUDGET`.

Beyond either, or when the model cannot run one item at that size at all, the checkpoint is refused
(:class:`~learnkit.errors.CheckpointError`, exit 4) naming the field. ``--trust-size`` on the
model-reading commands (:func:`trust_size` in the library) lifts the budget, never the checks of
the spec itself.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from learnkit.safetensors_header import bad_field

ACTIVATION_BUDGET = 1536 * 2**20  # bytes for one item's forward pass (float32): 1.5 GiB
PARAM_BUDGET = 1_000_000_000  # parameters (4 GB of float32)
_TRUST = ContextVar("learnkit_trust_size", default=False)


def trust_size(on: bool = True) -> None:
    """Lift (``on``) or restore the budget for what follows in this context (the CLI's ``--trust-size``)."""
    _TRUST.set(bool(on))


@contextmanager
def trusting_size(on: bool = True) -> Iterator[None]:
    """:func:`trust_size` within a ``with`` block."""
    token = _TRUST.set(bool(on))
    try:
        yield
    finally:
        _TRUST.reset(token)


def size_trusted() -> bool:
    """True when the budget is lifted."""
    return _TRUST.get()


def sides(meta: Mapping[str, Any]) -> list[tuple[int, int]]:
    """The input sides a model from this checkpoint will run at: its ``size``, a U-Net's ``img_size``."""
    found = []
    if isinstance(meta.get("size"), int):
        found.append((meta["size"], meta["size"]))
    spec = meta.get("model_spec")
    img = (spec.get("kwargs") or {}).get("img_size") if isinstance(spec, dict) else None
    if isinstance(img, int):
        found.append((img, img))
    elif isinstance(img, list) and len(img) == 2:
        found.append((int(img[0]), int(img[1])))
    return sorted(set(found))


def activation_bytes(model: Any, side: tuple[int, int]) -> int:
    """The input plus every leaf module's output, in bytes, for one float32 item of ``side`` (h, w),
    run on the ``meta`` device (``model`` must be there: nothing is allocated)."""
    import torch
    from torch import nn

    total = 0

    def count(module: Any, inputs: Any, output: Any) -> None:
        nonlocal total
        stack = [output]
        while stack:
            item = stack.pop()
            if isinstance(item, torch.Tensor):
                total += item.numel() * 4
            elif isinstance(item, list | tuple):
                stack.extend(item)

    conv = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
    channels = conv.in_channels if conv is not None else 3
    leaves = [m for m in model.modules() if not any(True for _ in m.children())]
    handles = [m.register_forward_hook(count) for m in leaves]
    training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, channels, *side, device="meta"))
    finally:
        model.train(training)
        for handle in handles:
            handle.remove()
    return total + channels * side[0] * side[1] * 4


def on_meta(model: Any) -> bool:
    """True when every parameter and buffer of ``model`` is on the ``meta`` device."""
    return all(t.is_meta for t in (*model.parameters(), *model.buffers()))


def check_budget(model: Any, meta: Mapping[str, Any], where: str | Path) -> None:
    """Refuse the checkpoint when its model (built on ``meta``) is over the budget at its sides."""
    if size_trusted():
        return
    params = sum(p.numel() for p in model.parameters())
    if params > PARAM_BUDGET:
        raise bad_field(
            where, "model_spec", f"{params:,} parameters, over the budget of {PARAM_BUDGET:,} (--trust-size)"
        )
    for side in sides(meta):
        field = "size" if (meta.get("size"), meta.get("size")) == side else "model_spec.kwargs.img_size"
        label = f"{side[0]}" if side[0] == side[1] else f"{side[0]}x{side[1]}"
        try:
            need = activation_bytes(model, side)
        except Exception as exc:  # noqa: BLE001 - any failure of the model at this size is the spec's lie
            why = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
            raise bad_field(where, field, f"the model cannot run one item at {label} px ({why})") from None
        if need > ACTIVATION_BUDGET:
            raise bad_field(
                where,
                field,
                f"one item at {label} px needs about {need / 2**20:,.0f} MB of activations, over the "
                f"budget of {ACTIVATION_BUDGET / 2**20:,.0f} MB (--trust-size lifts it)",
            )
