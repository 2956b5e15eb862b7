"""The jobs of ``learnkit summary``, ``learnkit sample`` and ``learnkit version``."""

from __future__ import annotations

import difflib
import platform
from pathlib import Path
from typing import Any

from learnkit.errors import UsageError
from learnkit.version import __version__


def summary(
    arch: str | None = None,
    model: str | Path | None = None,
    *,
    n_out: int = 10,
    size: int = 64,
    path: str | Path = ".",
) -> dict[str, Any]:
    """The layer table of ``arch`` (built for ``n_out`` outputs) or of checkpoint ``model``.

    Returns ``text`` (the table), ``layers`` (one dict per layer), the parameter counts and the
    layer groups; for a ``best`` checkpoint also ``epoch``, ``monitor`` and ``value`` (what made it
    best).
    """
    import torch

    from learnkit.jobs import setup
    from learnkit.jobs.evaluate import read_model_metadata
    from learnkit.summary import layer_rows, model_summary
    from learnkit.vision.models import build_model, model_spec_for

    if (arch is None) == (model is None):
        raise UsageError("give exactly one of --arch or --model")
    meta: dict[str, Any] = {}
    if arch is not None:
        entry = setup.check_arch(arch, size)
        spec, source = model_spec_for(arch, n_out, **entry.size_kwargs(size)), arch
    else:
        file, meta = read_model_metadata(model, path)
        spec, source, size = meta["model_spec"], str(file), int(meta.get("size") or size)
    net, groups = build_model(spec)
    if model is not None:
        from learnkit.vision.learners import check_rgb_stem

        check_rgb_stem(net, source)
    view = _SummaryView(net, groups, size)
    total = sum(p.numel() for p in net.parameters())
    best = meta.get("best") if model is not None else None
    made_best = {k: best.get(k) for k in ("epoch", "monitor", "value")} if isinstance(best, dict) else {}
    return {
        **made_best,
        "model": source,
        "arch": spec.get("arch"),
        "n_out": spec.get("n_out"),
        "size": size,
        "params": total,
        "trainable_params": sum(p.numel() for p in net.parameters() if p.requires_grad),
        "layer_groups": len(groups),
        "layers": layer_rows(net, groups, torch.zeros(1, 3, size, size)),
        "text": model_summary(view),
    }


class _SummaryView:
    """What :func:`learnkit.summary.model_summary` reads of a Learner, for a model without data."""

    def __init__(self, model: Any, layer_groups: list[Any], size: int) -> None:
        import torch

        self.model, self.layer_groups, self.opt = model, layer_groups, None
        self.data = type("Data", (), {"size": size})()
        self.loss_func = torch.nn.CrossEntropyLoss()


def write_sample(name: str, folder: str | Path) -> dict[str, Any]:
    """Write the built-in sample ``name`` (``shapes`` or ``sample:shapes``) into ``folder``."""
    from learnkit.data.samples import SAMPLES
    from learnkit.data.samples import write_sample as write

    name = name.removeprefix("sample:")
    if name not in SAMPLES:
        close = difflib.get_close_matches(name, SAMPLES, n=2, cutoff=0.5)
        hint = f"did you mean: {', '.join(close)}?" if close else f"known: {', '.join(SAMPLES)}"
        raise UsageError(f"unknown sample '{name}'; {hint}")
    out = write(name, folder)
    images = sum(1 for p in Path(out).rglob("*") if p.suffix.lower() in {".png", ".jpg", ".jpeg"})
    return {"sample": name, "folder": str(out), "images": images}


def versions(devices: bool = False) -> dict[str, Any]:
    """learnkit, torch, torchvision and Python versions (read from the installed packages' metadata,
    so no torch import: instant); with ``devices``, also the accelerators torch sees (imports torch).
    """
    import importlib.metadata

    def installed(name: str) -> str | None:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            return None

    found: dict[str, Any] = {
        "learnkit": __version__,
        "torch": installed("torch"),
        "torchvision": installed("torchvision"),
        "python": platform.python_version(),
    }
    if devices:
        import torch

        cuda = torch.cuda.is_available()
        found.update(
            cuda=torch.version.cuda if cuda else None,
            cuda_devices=torch.cuda.device_count() if cuda else 0,
            mps=torch.backends.mps.is_available(),
        )
    return found
