"""Learners over vision models: the one module of :mod:`learnkit.vision` that imports :class:`Learner`.

The vision modules below it build models only (:mod:`~learnkit.vision.cnn`: bodies and heads,
:mod:`~learnkit.vision.unet_learner`: the U-Net's spec and builder, :mod:`~learnkit.vision.models`:
a model from its spec); this module wraps them in a Learner:

- :func:`cnn_learner` (fastai v1's; ``create_cnn`` is its old name): a zoo body and a new head;
- :func:`unet_learner`: a DynamicUnet over a zoo encoder, for segmentation;
- :func:`load_learner`: a Learner rebuilt from a checkpoint alone (its ``model_spec``), ready to
  predict.

``learnkit.vision.cnn.cnn_learner``, ``learnkit.vision.unet_learner.unet_learner`` and
``learnkit.inference.load_learner`` still work: those modules re-export the names lazily (PEP 562),
so that they themselves never import the Learner (see docs/internals.md, "Layering").

Example:
    >>> learn = cnn_learner(data, "resnet18", metrics=[accuracy])  # doctest: +SKIP
    >>> learn = load_learner("best", path="run1")  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from learnkit import registry
from learnkit.checkpoint import read_model_header, resolve_checkpoint
from learnkit.data.bunch import DataBunch
from learnkit.errors import CheckpointError, UsageError
from learnkit.layers import input_channels
from learnkit.learner import Learner
from learnkit.vision.cnn import build_cnn
from learnkit.vision.models import build_model, check_layer_groups, model_spec_for
from learnkit.vision.unet_learner import build_unet, unet_spec_for
from learnkit.weights import load_weights, read_tensors

__all__ = ["cnn_learner", "create_cnn", "load_learner", "unet_learner", "zoo_learner"]


def zoo_learner(
    data: Any,
    model: Any,
    groups: list[Any],
    spec: dict | None,
    *,
    split_on: Any = None,
    pretrained: Any = None,
    **learner_kwargs: Any,
) -> Learner:
    """A Learner over a zoo-built model: its layer groups and spec (so checkpoints rebuild it), then
    the caller's ``split_on``, and the body frozen when it starts from ``pretrained`` weights."""
    check_layer_groups(model, groups, spec["arch"] if spec else "model")
    learn = Learner(data, model, layer_groups=groups, model_spec=spec, **learner_kwargs)
    if split_on is not None:
        learn.split(split_on)
    if pretrained is not None and len(learn.layer_groups) > 1:  # one group: nothing to freeze
        learn.freeze()
    return learn


def arch_name(arch: Any) -> str | None:
    """The zoo name ``arch`` stands for: a name as it is, a torchvision model function (fastai v1's
    ``models.resnet34``) by its name; ``None`` for any other callable (a model factory)."""
    from learnkit import registry

    if isinstance(arch, str):
        return arch
    name = getattr(arch, "__name__", None)
    module = getattr(arch, "__module__", "") or ""
    if callable(arch) and name and module.startswith("torchvision") and name in registry.names():
        return name
    if not callable(arch):
        raise UsageError(f"arch must be a zoo name or a function that builds a model, not {arch!r}")
    return None


def weights_file(pretrained: Any, arch: str) -> Path | str | None:
    """The weights ``pretrained`` stands for, for zoo arch ``arch``.

    ``True`` (fastai v1's default): torchvision's ImageNet weights from torch's hub cache
    (``$TORCH_HOME/hub/checkpoints/<file>``, never downloaded: a missing file is a ``DataError``
    naming the file and the folder); an arch with no published weights (``simple_cnn``, a
    plugin's) starts from scratch. ``False``/``None``: from scratch. Anything else: a weights
    file (or a word the arch's own resolver knows), as before.
    """
    if pretrained is True:
        from learnkit.pretrained import imagenet_weights, imagenet_weights_file

        try:
            imagenet_weights(arch)
        except UsageError:  # no published weights for this arch: nothing to start from
            return None
        return imagenet_weights_file(arch)
    if pretrained is False or pretrained is None:
        return None
    return pretrained


def _factory_cnn(
    factory: Callable[..., nn.Module], n_out: int, pretrained: Any, cut: Any, head_kwargs: dict
) -> tuple[nn.Module, list[nn.Module]]:
    """fastai v1's ``create_cnn_model`` for a model function outside the zoo: ``factory(pretrained)``
    when it takes an argument (v1's protocol), else ``factory()``; the body up to its last pooling
    child (v1's default cut) or ``cut``; a new head; layer groups ``[body, head]``."""
    import inspect

    from learnkit.vision.cnn import _init_linear, create_body, create_head, num_features_model

    try:
        takes_arg = bool(inspect.signature(factory).parameters)
    except (TypeError, ValueError):
        takes_arg = False
    model = factory(bool(pretrained)) if takes_arg else factory()
    if not isinstance(model, nn.Module):
        raise UsageError(f"{getattr(factory, '__name__', factory)!r} did not return an nn.Module")
    if cut is None:
        children = list(model.children())
        pools = [i for i, m in enumerate(children) if _has_pool(m)]
        if not pools:
            raise UsageError("cannot find where to cut the model (no pooling layer): pass cut=")
        cut = pools[-1]
    body = create_body(model, cut)
    nf = num_features_model(body)
    concat = head_kwargs.get("concat_pool", True)
    head = create_head(nf * (2 if concat else 1), n_out, **{k: v for k, v in head_kwargs.items()})
    _init_linear(head)
    return nn.Sequential(body, head), [body, head]


def _has_pool(module: nn.Module) -> bool:
    pools = (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.AvgPool2d, nn.MaxPool2d)
    return any(isinstance(m, pools) for m in module.modules())


def cnn_learner(
    data: Any,
    arch: Any,
    pretrained: Any = True,
    cut: int | Callable[[nn.Module], nn.Module] | None = None,
    split_on: Callable | Sequence[nn.Module] | None = None,
    lin_ftrs: Sequence[int] | None = None,
    ps: float | Sequence[float] = 0.5,
    concat_pool: bool = True,
    bn_final: bool = False,
    **learner_kwargs: Any,
) -> Learner:
    """A Learner for ``data`` on zoo arch ``arch``: body + new head, split into the zoo's groups.

    ``arch``: a zoo name, a torchvision model function (``models.resnet34``, fastai v1's way) or
    any function returning an ``nn.Module`` (cut at its last pooling layer, as v1; such a model
    cannot be rebuilt from a checkpoint alone). ``pretrained``: ``True`` (the default, as v1):
    torchvision's ImageNet weights from torch's hub cache (see :func:`weights_file`); ``False``:
    from scratch; or a local state-dict file. With weights the body is frozen
    (``learn.freeze()``): only the head trains until ``learn.unfreeze()``. ``split_on``
    overrides the zoo's split (see ``Learner.split``). An arch without a cut (``simple_cnn``) is
    used as it is, with ``data.c`` outputs. The other keyword arguments go to
    :class:`~learnkit.learner.Learner`.

    Example:
        >>> learn = cnn_learner(data, "resnet18", pretrained="weights/resnet18.pth", metrics=[accuracy])
    """
    n_out = getattr(data, "c", None)
    if not n_out:
        raise UsageError("cnn_learner needs data with classes (data.c)")
    head_kwargs = {"lin_ftrs": lin_ftrs, "ps": ps, "concat_pool": concat_pool, "bn_final": bn_final}
    name = arch_name(arch)
    if name is None:  # a model function outside the zoo
        model, groups = _factory_cnn(arch, n_out, pretrained, cut, head_kwargs)
        return zoo_learner(
            data, model, groups, None, split_on=split_on, pretrained=pretrained or None, **learner_kwargs
        )
    arch, pretrained = name, weights_file(pretrained, name)
    size_kwargs = registry.get(arch).size_kwargs(getattr(data, "size", None))  # timm's img_size
    if callable(cut):  # a function cannot go in a checkpoint's spec: the model cannot rebuild itself
        model, groups = build_cnn(arch, n_out, pretrained, cut, **head_kwargs, **size_kwargs)
        spec = None
    else:
        spec = model_spec_for(arch, n_out, cut=cut, **head_kwargs, **size_kwargs)
        model, groups = build_model(spec, pretrained=pretrained)
    return zoo_learner(data, model, groups, spec, split_on=split_on, pretrained=pretrained, **learner_kwargs)


create_cnn = cnn_learner


def unet_learner(
    data: Any,
    arch: Any,
    pretrained: Any = True,
    blur_final: bool = True,
    norm_type: str | None = None,
    split_on: Callable | Sequence[nn.Module] | None = None,
    blur: bool = False,
    self_attention: bool = False,
    y_range: Sequence[float] | None = None,
    last_cross: bool = True,
    bottle: bool = False,
    cut: int | Callable[[nn.Module], nn.Module] | None = None,
    **learner_kwargs: Any,
) -> Learner:
    """A Learner for segmentation ``data`` with a U-Net over zoo arch ``arch`` (fastai v1's ``unet_learner``).

    The net has ``data.c`` outputs (one per class of the masks). ``arch`` is a zoo name or a
    torchvision model function (``models.resnet34``); ``pretrained`` is as for :func:`cnn_learner`
    (``True``, the default: ImageNet weights from torch's hub cache). With weights the encoder is
    frozen (``learn.freeze()``): the decoder trains alone until ``learn.unfreeze()``.
    ``split_on`` overrides the split (see ``Learner.split``). The flags are those of
    :class:`~learnkit.vision.unet.DynamicUnet`; the other keyword arguments go to
    :class:`~learnkit.learner.Learner` (``metrics=segmentation_metrics()`` for dice, IoU and pixel
    accuracy over the whole validation set).

    Example:
        >>> learn = unet_learner(data, "resnet34", self_attention=True, norm_type="batch")  # doctest: +SKIP
    """
    n_out = getattr(data, "c", None)
    if not n_out:
        raise UsageError("unet_learner needs data with classes (data.c), e.g. a SegmentationDataBunch")
    name = arch_name(arch)
    if name is None:
        raise UsageError("unet_learner takes a zoo name or a torchvision model function (models.resnet34)")
    arch, pretrained = name, weights_file(pretrained, name)
    options = {
        "blur": blur,
        "blur_final": blur_final,
        "self_attention": self_attention,
        "y_range": y_range,
        "last_cross": last_cross,
        "bottle": bottle,
        "norm_type": norm_type,
    }
    if callable(cut):  # a function cannot go in a checkpoint's spec: the model cannot rebuild itself
        model, groups = build_unet(arch, n_out, pretrained, cut, **options)
        spec = None
    else:
        spec = unet_spec_for(arch, n_out, cut=cut, **options)
        model, groups = build_model(spec, pretrained=pretrained)
    return zoo_learner(data, model, groups, spec, split_on=split_on, pretrained=pretrained, **learner_kwargs)


def check_rgb_stem(model: nn.Module, where: str | Path) -> None:
    """A CheckpointError (exit 4) unless the model's first convolution takes the 3-channel (RGB)
    images learnkit feeds every model it reads back."""
    channels = input_channels(model)
    if channels is not None and channels != 3:
        raise CheckpointError(
            f"{where}: not a usable learnkit checkpoint (model_spec: its stem takes {channels}-channel "
            "images; learnkit feeds RGB, 3 channels)"
        )


def load_learner(
    path_or_name: str | Path,
    path: str | Path = ".",
    model_dir: str | Path = "models",
    device: torch.device | str | None = None,
    *,
    file: str | Path | None = None,
    data: DataBunch | None = None,
    model: nn.Module | None = None,
    **learner_kwargs: Any,
) -> Learner:
    """A Learner rebuilt from a checkpoint alone, ready to predict.

    Args:
        path_or_name: a checkpoint name (``best`` -> ``<path>/<model_dir>/best.safetensors``), a
            file (``run/models/best.safetensors``), or (fastai v1's ``load_learner(path)``) a
            folder holding ``file`` (default ``export.safetensors``, what ``learn.export()``
            writes; a ``.pkl`` name means the same file with the ``.safetensors`` suffix).
        model: the model to load the weights into, for a checkpoint without a ``model_spec``
            (a model built outside the zoo): the same architecture, built by the caller.
        path, model_dir: where names are looked up; also the learner's own (plots, saves).
        device: where the model runs (default: CUDA when available, else the CPU).
        data: a DataBunch to attach instead of the data-less one made from the metadata (its
            classes must be the checkpoint's), e.g. to validate or run TTA on a data set.
        learner_kwargs: passed to :class:`~learnkit.learner.Learner` (``metrics``, ``loss_func``).

    Raises:
        CheckpointError: no such file, not a learnkit model checkpoint, a checkpoint without the
            ``model_spec`` that rebuilds its model, an arch the zoo does not know, weights that
            do not fit.
    """
    folder = Path(path_or_name).expanduser()
    if file is not None or folder.is_dir():  # fastai v1: load_learner(path, file="export.pkl")
        name = Path(file or "export.safetensors")
        chosen = (folder if folder.is_dir() else Path(path)) / name
        file = chosen if chosen.suffix == ".safetensors" else chosen.with_suffix(".safetensors")
        if path == ".":
            path = file.parent
    else:
        file = resolve_checkpoint(str(path_or_name), path, str(model_dir))
    if not file.is_file():
        raise CheckpointError(f"no checkpoint {file}{_available(file.parent)}")
    _, meta = read_model_header(file)  # every field and the tensors' shapes checked first
    spec = meta.get("model_spec")
    if model is not None:
        groups, spec = [model], spec if isinstance(spec, dict) else None
    elif not isinstance(spec, dict):
        raise CheckpointError(
            f"{file} does not record how to build its model (no model_spec: the model was not built "
            "from the zoo); build the model yourself (the same architecture) and pass it: "
            "load_learner(..., model=model)"
        )
    else:
        try:
            model, groups = build_model(spec)
        except UsageError as exc:
            raise CheckpointError(f"{file}: its model cannot be rebuilt: {exc}") from None
        check_rgb_stem(model, file)
    classes = meta.get("classes")
    if data is None:
        data = DataBunch.for_inference(
            classes,
            meta.get("size"),
            meta.get("norm_stats"),
            meta.get("task") or "classification",
            device,
            multi_label=bool(meta.get("multi_label")),
        )
        if meta.get("thresh") is not None:
            data.thresh = float(meta["thresh"])
    else:
        found = None if data.classes is None else [str(c) for c in data.classes]
        if classes is not None and found is not None and found != list(classes):
            raise CheckpointError(f"{file} was trained on classes {classes}; the data has {found}")
        _check_preprocessing(file, meta, data)
        if device is not None:
            data.to(device)
    learn = Learner(
        data, model, path=path, model_dir=model_dir, layer_groups=groups, model_spec=spec, **learner_kwargs
    )
    load_weights(learn.model, read_tensors(file), file)
    learn.model.eval()
    return learn


def _check_preprocessing(file: Path, meta: dict, data: DataBunch) -> None:
    """Evaluation sees images as training did: the data's size and normalisation must be the
    checkpoint's (build the data with ``size=`` and ``norm_stats=`` from its metadata)."""
    for key in ("size", "norm_stats"):
        saved, given = meta.get(key), getattr(data, key, None)
        if saved is not None and given is not None and given != saved:
            raise UsageError(
                f"the data's {key} is {given}, but {file} was trained with {saved}; prepare the data "
                f"with the checkpoint's {key} (its metadata) to evaluate it"
            )


def _available(folder: Path) -> str:
    names = sorted(
        p.name.removesuffix(".safetensors")
        for p in folder.glob("*.safetensors")
        if not p.name.endswith(".opt.safetensors")
    )
    return f" (checkpoints in {folder}: {', '.join(names)})" if names else ""
