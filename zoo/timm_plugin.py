"""timm's models in learnkit's zoo, as ``timm/<name>`` (the ``learnkit[timm]`` extra).

learnkit's pyproject names this module in the ``learnkit.zoo`` entry-point group. When timm is
installed it registers one lazy family (:func:`learnkit.registry.register_family`): the names come
from ``timm.list_models()`` (no model is built to list them) and an arch's entry is made on its
first use. Without timm nothing is registered and nothing fails. Importing this module imports
neither timm nor torch.

Each ``timm/<name>`` arch has:

- a builder: ``timm.create_model(name, pretrained=False, num_classes=n_out, **kwargs)``, where
  ``kwargs`` may only be those of :data:`TIMM_KWARGS` (the architecture's shape: ``in_chans``,
  ``img_size``, ``drop_rate``, ``drop_path_rate``, ``global_pool``); any other (timm's
  ``checkpoint_path``, ``pretrained_cfg_overlay``, ``cache_dir``, ``device``...) is refused before
  timm is called, from a checkpoint's spec (:mod:`learnkit.spec_kwargs`) or from code;
- a cut for a new head (:func:`timm_body`: the model's ``forward_features``, its classifier
  dropped; token models give their pooled features as a 1 x 1 map);
- a cut for the U-Net encoder (:func:`unet_encoder`: the children up to the last feature stage,
  the stage containers opened so each stage can be hooked);
- a split: the stem and the first half of timm's feature stages, the second half, then the head;
- ``--pretrained imagenet`` (or a timm tag such as ``r160_in1k``): the weights from the local
  Hugging Face cache only, never downloaded; a missing file is one line naming it and its folder.

Example::

    learnkit zoo list 'timm/*'
    learnkit fit-one-cycle DATA --arch timm/resnet18
"""

from __future__ import annotations

import functools
import importlib.util
import os
from pathlib import Path
from typing import Any

from learnkit.errors import DataError, UsageError
from learnkit.registry import ArchEntry, arch_entry, register_family
from learnkit.spec_kwargs import MAX_SIDE, PROB, Kwarg

PREFIX = "timm/"
_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
# the create_model options learnkit passes on: the shape of the architecture, nothing that names a
# file, a URL, a hub, a cache, a device or weights (a model that does not take one fails to build)
TIMM_KWARGS: dict[str, Kwarg] = {
    "in_chans": Kwarg("int", 1, 64),
    "img_size": Kwarg("int", 1, MAX_SIDE, lengths=(2, 2)),
    "drop_rate": PROB,
    "drop_path_rate": PROB,
    "global_pool": Kwarg("str", choices=("", "avg", "max", "avgmax", "catavgmax", "token", "map")),
}


@functools.cache
def list_names() -> tuple[str, ...]:
    """Every timm model name, as ``timm/<name>`` (timm's registry only: nothing is built)."""
    import timm

    return tuple(PREFIX + name for name in timm.list_models())


def make_entry(name: str) -> ArchEntry | None:
    """The zoo entry of ``timm/<model>``; None when timm has no such model."""
    import timm

    model_name = name.removeprefix(PREFIX)
    if not timm.is_model(model_name):
        return None
    cfg = _pretrained_cfg(model_name)
    input_size = cfg.get("input_size") or (3, 224, 224)
    meta = {
        "description": f"timm {model_name} (default input {input_size[-1]} px)",
        "min_size": 32,
        "list_build": False,  # `zoo list` gives no parameter counts: building 1,000+ models is slow
        "unet_cut": unet_encoder,
        "weights": functools.partial(pretrained_weights, model_name),
        "kwargs": dict(TIMM_KWARGS),
    }
    return arch_entry(name, _builder(model_name), split=split_timm, cut=timm_body, meta=meta)


def _pretrained_cfg(model_name: str) -> dict[str, Any]:
    import timm

    try:
        cfg = timm.models.get_pretrained_cfg(model_name)
    except Exception:  # noqa: BLE001 - a model without a pretrained config still builds
        cfg = None
    return cfg.to_dict() if cfg is not None and hasattr(cfg, "to_dict") else dict(cfg or {})


def _builder(model_name: str) -> Any:
    def build(n_out: int, **kwargs: Any) -> Any:
        import timm

        refused = sorted(k for k in kwargs if k not in TIMM_KWARGS)
        if refused:
            raise UsageError(
                f"timm/{model_name} takes no option {', '.join(refused)} from learnkit "
                f"(options: {', '.join(TIMM_KWARGS)})"
            )
        return timm.create_model(model_name, pretrained=False, num_classes=n_out, **kwargs)

    build.__name__ = build.__qualname__ = model_name.replace(".", "_").replace("-", "_")
    build.__doc__ = f"timm's {model_name} with ``n_out`` classes, built without weights."
    return build


def timm_body(model: Any) -> Any:
    """The cut for a new head: :class:`~learnkit.zoo.timm_layers.TimmBody` over ``model``."""
    from learnkit.zoo.timm_layers import TimmBody

    return TimmBody(model)


def _stage_names(model: Any) -> list[str]:
    """The module names of timm's feature stages (``feature_info``), in order."""
    info = getattr(model, "feature_info", None) or []
    return [str(i["module"]) for i in info if isinstance(i, dict) and i.get("module")]


def unet_encoder(model: Any) -> Any:
    """The U-Net encoder of a timm CNN: its top-level children up to the last feature stage, with
    the containers holding stages (``stages``, ``blocks``) opened into their stages, so the U-Net
    can hook each stage. Fits the CNNs whose ``forward_features`` runs its children in order
    (ResNets, EfficientNets, ConvNeXts, RegNets...); not token models."""
    from torch import nn

    stages = _stage_names(model)
    last_top = stages[-1].split(".")[0] if stages else None
    parents = {s.rsplit(".", 1)[0] for s in stages if "." in s}
    layers: list[nn.Module] = []
    for name, child in model.named_children():
        layers.extend(child.children() if name in parents else [child])
        if name == last_top:
            break
    return nn.Sequential(*layers)


def split_timm(model: Any) -> list[Any]:
    """Body groups at the middle of timm's feature stages (as fastai cuts a ResNet after layer2),
    then the head: every parameter once, each group a list of modules.

    A module's own parameters (a ViT's ``cls_token``, ``pos_embed``) join the first group in a
    holder module, so a group never owns the whole model twice.
    """
    from torch import nn

    stages = _stage_names(model)
    mid = stages[len(stages) // 2] if stages else None
    classifier = str(getattr(model, "pretrained_cfg", {}).get("classifier") or "")
    heads = tuple(c for c in (classifier, classifier.split(".")[0]) if c)
    groups: list[list[nn.Module]] = [[], [], []]
    current, seen_mid = 0, False
    for name, module in model.named_modules():
        own = list(module.named_parameters(recurse=False))
        in_mid = mid is not None and (name == mid or name.startswith(mid + "."))
        if seen_mid and not in_mid and current == 0:
            current = 1
        seen_mid = seen_mid or in_mid
        if not own:
            continue
        group = 2 if heads and any(name == h or name.startswith(h + ".") for h in heads) else current
        if list(module.children()):
            holder = nn.Module()
            for pname, param in own:
                holder.register_parameter(pname, param)
            module = holder
        groups[group].append(module)
    return [g for g in groups if g] or [[model]]


def pretrained_weights(model_name: str, tag: str = "imagenet") -> Path:
    """The local file of timm's published weights for ``model_name``, from the Hugging Face cache.

    ``tag`` ``imagenet`` (or ``default``) means timm's default weights; another word is a timm
    pretrained tag (``resnet18.a1_in1k`` -> ``a1_in1k``). Nothing is downloaded: a file not in the
    cache raises :class:`DataError` naming the file and the folder to place it in.
    """
    import timm

    full = model_name if tag in ("imagenet", "default") else f"{model_name.split('.')[0]}.{tag}"
    cfg = timm.models.get_pretrained_cfg(full)
    repo = (cfg.hf_hub_id if cfg is not None else None) or f"timm/{full}"
    folder = _hub_cache() / f"models--{repo.replace('/', '--')}"
    for snapshot in sorted((folder / "snapshots").glob("*")):
        for file_name in _WEIGHT_FILES:
            if (snapshot / file_name).is_file():
                return snapshot / file_name
    raise DataError(
        f"no pretrained weights for timm/{model_name} in the local Hugging Face cache: "
        f"put {_WEIGHT_FILES[0]} in {folder}/snapshots/<revision>/ (nothing is downloaded)"
    )


def _hub_cache() -> Path:
    """The Hugging Face hub cache folder, as huggingface_hub finds it (HF_HUB_CACHE, HF_HOME)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME") or Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")) / "huggingface"
    return Path(home).expanduser() / "hub"


if importlib.util.find_spec("timm") is not None:
    register_family(PREFIX, list_names, make_entry)
