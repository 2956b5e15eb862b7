"""Export a checkpoint to ONNX or torch.export (``.pt2``): a graph that takes images, gives probabilities.

The exported graph takes a float32 ``N x 3 x size x size`` RGB batch on the 0..1 scale (any ``N``:
the batch axis is dynamic), normalises it with the checkpoint's statistics inside, and returns what
``learnkit predict`` computes: class probabilities (softmax; sigmoid for a multi-label model), or
per-pixel class probabilities ``N x C x size x size`` for a segmentation model.

- ONNX through ``torch.onnx.export``; the model's ``metadata_props`` hold ``classes`` (a JSON
  list), ``size``, ``task``, ``norm_stats`` (JSON), ``activation`` and ``learnkit_version``.
- ``pt2`` through ``torch.export.export`` and ``torch.export.save``.

After writing, the file is loaded back and run on a batch (onnxruntime for ONNX) and compared with
the PyTorch model: a largest difference over ``tolerance`` (1e-4) removes the file and raises
:class:`ExportError` (exit 1). The ONNX tools (``learnkit[export]``) are imported only here.

Example:
    >>> result = export_checkpoint("best", path="run1", fmt="onnx")  # doctest: +SKIP
    >>> result.file, result.max_diff  # doctest: +SKIP
    (PosixPath('run1/models/best.onnx'), 3.2e-07)
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from learnkit.atomic import write_atomically
from learnkit.errors import LearnkitError, UsageError
from learnkit.version import __version__

if TYPE_CHECKING:
    from learnkit.learner import Learner

FORMATS = ("onnx", "pt2")
INSTALL_HINT = "pip install 'learnkit[export]'"
TOLERANCE = 1e-4
CHECK_BATCH = 3  # the check runs a batch of another size than the export's: the axis is dynamic
MAX_BATCH = 4096


class ExportError(LearnkitError):
    """The exported model does not reproduce the PyTorch model (exit 1); its file was removed."""


@dataclass
class ExportResult:
    """What :func:`export_checkpoint` made: the file, its check, and what the graph expects."""

    file: Path
    format: str
    task: str
    size: int
    classes: list[str] | None
    activation: str
    max_diff: float
    checked_batch: int
    bytes: int
    metadata: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        row = asdict(self)
        row["file"] = str(self.file)
        return row


class ImageModel(nn.Module):
    """``model`` behind its preprocessing and activation: 0..1 RGB images in, probabilities out.

    Args:
        model: the trained network (in eval mode).
        mean, std: per-channel normalisation (``None``: images are used on the 0..1 scale).
        activation: ``softmax`` (over dim 1: classes, or each pixel's classes), ``sigmoid`` or
            ``none``.
    """

    def __init__(self, model: nn.Module, mean: Any, std: Any, activation: str = "softmax"):
        super().__init__()
        self.model = model
        self.activation = activation
        mean = torch.zeros(3) if mean is None else torch.as_tensor(mean, dtype=torch.float32)
        std = torch.ones(3) if std is None else torch.as_tensor(std, dtype=torch.float32)
        self.register_buffer("mean", mean.view(1, -1, 1, 1))
        self.register_buffer("std", std.view(1, -1, 1, 1))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        out = self.model((images - self.mean) / self.std).float()
        if self.activation == "softmax":
            return torch.softmax(out, dim=1)
        if self.activation == "sigmoid":
            return torch.sigmoid(out)
        return out


def _activation(learn: Learner, meta: dict[str, Any]) -> str:
    """The activation ``learnkit predict`` applies to this checkpoint's outputs."""
    from learnkit.losses import default_activation

    if meta.get("multi_label"):
        return "sigmoid"
    activ = default_activation(learn.loss_func)
    if activ is None:
        return "none"
    return "sigmoid" if activ is torch.sigmoid else "softmax"


def require_export_tools() -> None:
    """Import onnx, onnxscript and onnxruntime, or raise a one-line UsageError naming the extra."""
    missing = []
    for name in ("onnx", "onnxscript", "onnxruntime"):
        try:
            __import__(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise UsageError(f"--format onnx needs {', '.join(missing)}: {INSTALL_HINT}")


def export_checkpoint(
    model: str | Path,
    path: str | Path = ".",
    fmt: str = "onnx",
    out: str | Path | None = None,
    *,
    tolerance: float = TOLERANCE,
) -> ExportResult:
    """Export checkpoint ``model`` (a name under ``path/models`` or a file) as ``fmt``.

    Args:
        model, path: the checkpoint, as ``learnkit predict`` finds it.
        fmt: ``onnx`` or ``pt2``.
        out: the file to write (default: beside the checkpoint, ``<name>.onnx``/``<name>.pt2``).
        tolerance: the largest difference from the PyTorch model that passes the check.

    Raises:
        UsageError: an unknown format, or the ONNX tools missing (exit 2).
        CheckpointError: the checkpoint cannot be used (exit 4).
        ExportError: the exported model differs from the PyTorch one (exit 1; the file is removed).
    """
    from learnkit.checkpoint import MODEL_FORMAT, read_safetensors, resolve_checkpoint
    from learnkit.vision.learners import load_learner

    if fmt not in FORMATS:
        raise UsageError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if fmt == "onnx":
        require_export_tools()
    learn = load_learner(model, path=path, device="cpu")
    source = resolve_checkpoint(str(model), path)
    _, meta = read_safetensors(source, expect_format=MODEL_FORMAT, check_finite=False)
    data = learn.data
    size = int(data.size or meta.get("size") or 0)
    if size <= 0:
        raise UsageError(f"{source} records no input size; it cannot be exported")
    norm = data.norm_stats or {}
    activation = _activation(learn, meta)
    wrapper = ImageModel(learn.model, norm.get("mean"), norm.get("std"), activation).eval()
    target = Path(out) if out is not None else source.with_name(source.name.removesuffix(".safetensors"))
    if out is None:
        target = target.with_name(f"{target.name}.{fmt}")
    target.parent.mkdir(parents=True, exist_ok=True)
    task = str(getattr(data, "task", None) or meta.get("task") or "classification")
    classes = None if data.classes is None else [str(c) for c in data.classes]
    metadata = {
        "classes": json.dumps(classes),
        "size": str(size),
        "task": task,
        "norm_stats": json.dumps(norm or None),
        "activation": activation,
        "input": "float32 NCHW RGB on the 0..1 scale, dynamic batch",
        "learnkit_version": __version__,
        "source": source.name,
    }
    example = torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(0))
    writer = _write_onnx if fmt == "onnx" else _write_pt2
    try:
        writer(wrapper, example, target, metadata)
        check = torch.rand(CHECK_BATCH, 3, size, size, generator=torch.Generator().manual_seed(1))
        with torch.no_grad():
            expected = wrapper(check).numpy()
        got = (_run_onnx if fmt == "onnx" else _run_pt2)(target, check)
        max_diff = float(abs(got - expected).max()) if got.shape == expected.shape else float("inf")
    except BaseException:
        target.unlink(missing_ok=True)
        raise
    if not max_diff <= tolerance:
        target.unlink(missing_ok=True)
        raise ExportError(
            f"the exported {fmt} model differs from the PyTorch model by {max_diff:.3g} "
            f"(> {tolerance:g}); {target} removed"
        )
    return ExportResult(
        target, fmt, task, size, classes, activation, max_diff, CHECK_BATCH, target.stat().st_size, metadata
    )


def _dynamic_batch() -> tuple[dict[int, Any]]:
    return ({0: torch.export.Dim("batch", min=1, max=MAX_BATCH)},)


def _write_onnx(wrapper: nn.Module, example: torch.Tensor, target: Path, metadata: dict[str, str]) -> None:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's own deprecation and progress chatter
        program = torch.onnx.export(
            wrapper,
            (example,),
            dynamo=True,
            dynamic_shapes=_dynamic_batch(),
            input_names=["images"],
            output_names=["probabilities"],
            verbose=False,
        )
    proto = program.model_proto
    for key, value in metadata.items():
        prop = proto.metadata_props.add()
        prop.key, prop.value = key, value
    data = proto.SerializeToString()  # what onnx.save_model writes (protobuf, no external data)
    write_atomically(target, lambda f: f.write(data))  # a fresh temporary name: never a planted link


def _run_onnx(target: Path, batch: torch.Tensor) -> Any:
    import onnxruntime as ort

    session = ort.InferenceSession(str(target), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return session.run(None, {name: batch.numpy()})[0]


def _write_pt2(wrapper: nn.Module, example: torch.Tensor, target: Path, metadata: dict[str, str]) -> None:
    program = torch.export.export(wrapper, (example,), dynamic_shapes=_dynamic_batch())
    extra = {"learnkit.json": json.dumps(metadata)}
    write_atomically(target, lambda f: torch.export.save(program, f, extra_files=extra))


def _run_pt2(target: Path, batch: torch.Tensor) -> Any:
    program = torch.export.load(str(target))
    with torch.no_grad():
        return program.module()(batch).numpy()
