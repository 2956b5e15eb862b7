"""Options shared by the commands, named as in the library (``--lr``, ``--wd``, ``--bs`` ...).

The ``parse_*`` functions are pure: any text gives a value or raises
:class:`learnkit.errors.UsageError` with a message fit for the user, never another exception.
The ``*Opt`` aliases wrap them as Typer options, so a bad value exits 2 with that message.
"""

import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal

import typer

from learnkit.errors import UsageError

LearningRate = float | slice
_DEVICE = re.compile(r"(auto|cpu|mps|cuda(:[0-9]+)?)")


def _number(text: str, what: str, *, allow_zero: bool = False) -> float:
    """``text`` as a finite float > 0 (or >= 0 when ``allow_zero``)."""
    try:
        value = float(text.strip())
    except ValueError:
        raise UsageError(f"{what}: {text.strip()!r} is not a number") from None
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise UsageError(f"{what}: {text.strip()!r} is not a finite number {bound}")
    return value


def _float_or_slice(text: Any, what: str, *, allow_zero: bool) -> LearningRate:
    if isinstance(text, float | int | slice) and not isinstance(text, bool):
        text = _format(text)  # a default given as a value goes through the same checks
    if not isinstance(text, str):
        raise UsageError(f"{what}: {text!r} is not text")
    if ":" not in text:
        return _number(text, what, allow_zero=allow_zero)
    start, _, stop = text.partition(":")
    if ":" in stop or not stop.strip():
        raise UsageError(f"{what}: {text.strip()!r} is not a value or a slice such as 1e-5:1e-3 or :1e-3")
    high = _number(stop, what, allow_zero=allow_zero)
    if not start.strip():
        return slice(None, high)
    low = _number(start, what, allow_zero=allow_zero)
    if low > high:
        raise UsageError(f"{what}: the slice {text.strip()!r} starts above its end")
    return slice(low, high)


def _format(value: float | int | slice) -> str:
    if isinstance(value, slice):
        start = "" if value.start is None else repr(value.start)
        return f"{start}:{value.stop!r}"
    return repr(value)


def parse_lr(text: Any) -> LearningRate:
    """A learning rate: ``1e-3`` -> 0.001, ``1e-5:1e-3`` -> ``slice(1e-5, 1e-3)``,
    ``:1e-3`` -> ``slice(None, 1e-3)`` (the library's ``slice(1e-3)``: 1e-4 for the body, 1e-3
    for the head).

    Example:
        >>> parse_lr("1e-5:1e-3")
        slice(1e-05, 0.001, None)
    """
    return _float_or_slice(text, "--lr", allow_zero=False)


def parse_wd(text: Any) -> LearningRate:
    """A weight decay: as :func:`parse_lr`, but 0 is allowed (no weight decay)."""
    return _float_or_slice(text, "--wd", allow_zero=True)


def parse_device(text: Any) -> str:
    """``auto``, ``cpu``, ``mps``, ``cuda`` or ``cuda:<index>``, lower-cased."""
    value = str(text).strip().lower()
    if not _DEVICE.fullmatch(value):
        raise UsageError(f"--device: {str(text).strip()!r} is not auto, cpu, cuda, cuda:<index> or mps")
    return value


def parse_fraction(text: Any) -> float:
    """A fraction strictly between 0 and 1, e.g. ``0.2`` for ``--valid-pct``."""
    value = text if isinstance(text, float) else _number(str(text), "--valid-pct")
    if not 0 < value < 1:
        raise UsageError(f"--valid-pct: {value!r} is not between 0 and 1")
    return value


def parse_moms(text: Any) -> tuple[float, float]:
    """Two momentums, written ``0.95,0.85`` (or ``0.95:0.85``): the 1cycle's start/middle values."""
    if isinstance(text, tuple | list) and len(text) == 2:
        text = f"{text[0]},{text[1]}"
    parts = str(text).replace(":", ",").split(",")
    if len(parts) != 2:
        raise UsageError(f"--moms: {str(text).strip()!r} is not two momentums such as 0.95,0.85")
    high, low = (_number(p, "--moms", allow_zero=True) for p in parts)
    if high >= 1 or low >= 1:
        raise UsageError(f"--moms: {str(text).strip()!r}: momentums must be below 1")
    return high, low


def _as_typer(parse: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """Wrap a ``parse_*`` function so that its UsageError becomes click's ``BadParameter``."""

    def parser(value: Any) -> Any:
        try:
            return parse(value)
        except UsageError as exc:
            raise typer.BadParameter(str(exc).partition(": ")[2] or str(exc)) from None

    parser.__name__ = parse.__name__
    return parser


def _check_seed(value: int | None) -> int | None:
    """A seed torch accepts: 0 .. 2**63 - 1."""
    if value is not None and not 0 <= value < 2**63:
        raise typer.BadParameter(f"{value} is not between 0 and 2**63 - 1")
    return value


def complete_arch(incomplete: str) -> list[str]:
    """The registered arch names that start with ``incomplete`` (imports no torch)."""
    from learnkit import registry

    return [name for name in registry.names() if name.startswith(incomplete)]


def complete_model(ctx: typer.Context, incomplete: str) -> list[str]:
    """The checkpoints under ``<--path>/models`` whose names start with ``incomplete``."""
    folder = Path(ctx.params.get("path") or ".") / "models"
    names = {p.name.removesuffix(".safetensors") for p in folder.glob("*.safetensors")}
    return sorted(n for n in names if not n.endswith(".opt") and n.startswith(incomplete))


DATA, MODEL, SCHEDULE, CHECKPOINTS, RUNTIME = "Data", "Model", "Schedule", "Checkpoints", "Runtime"

DataArg = Annotated[
    str | None,
    typer.Argument(
        metavar="DATA",
        help="Image folder or sample:shapes.",
        show_default=False,
        rich_help_panel=DATA,
    ),
]
ArchOpt = Annotated[
    str | None,
    typer.Option(
        "--arch", help="Architecture from the zoo.", autocompletion=complete_arch, rich_help_panel=MODEL
    ),
]
ModelOpt = Annotated[
    str,
    typer.Option(
        "--model",
        help="Checkpoint: a name under PATH/models, or a file.",
        autocompletion=complete_model,
        rich_help_panel=MODEL,
    ),
]
EpochsOpt = Annotated[
    int, typer.Option("--epochs", min=1, help="Number of epochs.", rich_help_panel=SCHEDULE)
]
LrOpt = Annotated[
    Any,
    typer.Option(
        "--lr",
        parser=_as_typer(parse_lr),
        metavar="LR",
        help="Learning rate, or a slice: 1e-5:1e-3.",
        rich_help_panel=SCHEDULE,
    ),
]
WdOpt = Annotated[
    Any,
    typer.Option(
        "--wd",
        parser=_as_typer(parse_wd),
        metavar="WD",
        help="Weight decay (default 0.01).",
        rich_help_panel=SCHEDULE,
    ),
]
BsOpt = Annotated[int, typer.Option("--bs", min=1, help="Batch size.", rich_help_panel=DATA)]
SizeOpt = Annotated[
    int, typer.Option("--size", min=8, max=8192, help="Images resized to SIZE x SIZE.", rich_help_panel=DATA)
]  # the max keeps a typo (--size 64000) from asking for gigabytes per image
SeedOpt = Annotated[
    int | None,
    typer.Option(
        "--seed",
        callback=_check_seed,  # not max=2**63-1: the help would print that giant range
        metavar="N",
        help="Seed: a repeatable run (split, shuffle, init).",
        rich_help_panel=RUNTIME,
    ),
]
PathOpt = Annotated[
    str,
    typer.Option(
        "--path", metavar="DIR", help="Run folder: DIR/models, DIR/plots.", rich_help_panel=CHECKPOINTS
    ),
]
WorkersOpt = Annotated[
    int | None,
    typer.Option(
        "--workers",
        min=0,
        help="Loader processes (0 if cached, else <= 4).",
        rich_help_panel=RUNTIME,
    ),
]
CacheOpt = Annotated[
    Literal["auto", "ram", "none"],
    typer.Option(
        "--cache",
        help="Keep decoded images in RAM.",
        rich_help_panel=DATA,
    ),
]
DeviceOpt = Annotated[
    str,
    typer.Option(
        "--device",
        parser=_as_typer(parse_device),
        metavar="DEVICE",
        help="auto, cpu, cuda[:i] or mps.",
        rich_help_panel=RUNTIME,
    ),
]
PrecisionOpt = Annotated[
    Literal["fp32", "bf16", "fp16"],
    typer.Option("--precision", help="Mixed: bf16, or fp16 (GPU).", rich_help_panel=RUNTIME),
]
PretrainedOpt = Annotated[
    str | None,
    typer.Option(
        "--pretrained",
        metavar="imagenet|FILE",
        help="imagenet (TORCH_HOME cache) or a file.",
        rich_help_panel=MODEL,
    ),
]
ValidPctOpt = Annotated[
    float | None,
    typer.Option(
        "--valid-pct",
        parser=_as_typer(parse_fraction),
        metavar="FRACTION",
        help="Validate on this share of DATA.",
        rich_help_panel=DATA,
    ),
]
MomsOpt = Annotated[
    Any,
    typer.Option(
        "--moms",
        parser=_as_typer(parse_moms),
        metavar="HI,LO",
        help="1cycle momentums.",
        rich_help_panel=SCHEDULE,
    ),
]
PctStartOpt = Annotated[
    float,
    typer.Option(
        "--pct-start", min=0.0, max=1.0, help="Share of the cycle warming up.", rich_help_panel=SCHEDULE
    ),
]
DivFactorOpt = Annotated[
    float,
    typer.Option("--div-factor", min=1.0, help="Start at LR / DIV_FACTOR.", rich_help_panel=SCHEDULE),
]
FinalDivOpt = Annotated[
    float | None,
    typer.Option(
        "--final-div",
        min=1.0,
        help="End at LR / FINAL_DIV (default DIV_FACTOR*1e4).",
        rich_help_panel=SCHEDULE,
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the result as JSON.", rich_help_panel=RUNTIME)]

# --- a training run's config, checkpoints, resuming and scale (fit, fit-one-cycle, unet) ---
ConfigOpt = Annotated[
    str | None,
    typer.Option(
        "--config",
        metavar="FILE",
        help="Options from YAML (replays config.yaml).",
        rich_help_panel=CHECKPOINTS,
    ),
]
PrintConfigOpt = Annotated[
    bool,
    typer.Option("--print-config", help="Print the config (YAML); no training.", rich_help_panel=CHECKPOINTS),
]
ExistOkOpt = Annotated[
    bool,
    typer.Option("--exist-ok", help="Replace a run already in PATH.", rich_help_panel=CHECKPOINTS),
]
MonitorOpt = Annotated[
    str,
    typer.Option(
        "--monitor",
        metavar="NAME",
        help="Keep models/best by NAME.",
        rich_help_panel=CHECKPOINTS,
    ),
]
PatienceOpt = Annotated[
    int | None,
    typer.Option(
        "--patience",
        min=0,
        help="Stop after N epochs without improvement.",
        rich_help_panel=CHECKPOINTS,
    ),
]


def complete_logger(incomplete: str) -> list[str]:
    """The logger names (learnkit.loggers entry points) that start with ``incomplete`` (no torch)."""
    from learnkit.loggers import names

    return [name for name in names() if name.startswith(incomplete)]


LoggerOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--logger",
        metavar="NAME",
        help="Also log to tensorboard or a plug-in.",
        rich_help_panel=CHECKPOINTS,
        autocompletion=complete_logger,
        show_default=False,
    ),
]
SaveBestOpt = Annotated[
    bool,
    typer.Option("--save-best/--no-save-best", help="Keep models/best.", rich_help_panel=CHECKPOINTS),
]
ResumeOpt = Annotated[
    str | None,
    typer.Option(
        "--resume",
        metavar="[NAME]",
        help="Continue checkpoint NAME (default last) exactly.",
        rich_help_panel=CHECKPOINTS,
    ),
]
InitFromOpt = Annotated[
    str | None,
    typer.Option(
        "--init-from",
        metavar="NAME",
        help="Start from the weights of checkpoint NAME.",
        rich_help_panel=CHECKPOINTS,
    ),
]
DeterministicOpt = Annotated[
    bool,
    typer.Option(
        "--deterministic",
        help="Deterministic algorithms.",
        rich_help_panel=RUNTIME,
    ),
]
NprocOpt = Annotated[
    int | None,
    typer.Option(
        "--nproc",
        min=1,
        max=1024,
        help="Train over N processes (torchrun, DDP).",
        rich_help_panel=RUNTIME,
    ),
]

# --- training recipes (fit, fit-one-cycle; unet where they apply) ---
# The augmentation knobs are hidden from --help (it stays one screen); --aug's help names them and
# the README documents them.
RECIPE = "Recipe"
AugOpt = Annotated[
    Literal["none", "light", "fastai"],
    typer.Option(
        "--aug",
        help="Augmentation (knobs: README).",
        rich_help_panel=RECIPE,
    ),
]
FlipOpt = Annotated[
    bool | None,
    typer.Option("--flip/--no-flip", help="Flip left-right (default: the preset's).", hidden=True),
]
FlipVertOpt = Annotated[
    bool | None,
    typer.Option("--flip-vert", help="Also flip top-bottom and rotate by 90 degrees.", hidden=True),
]
MaxRotateOpt = Annotated[
    float | None,
    typer.Option("--max-rotate", min=0.0, metavar="DEGREES", help="Rotate by up to DEGREES.", hidden=True),
]
MaxZoomOpt = Annotated[
    float | None,
    typer.Option("--max-zoom", min=1.0, metavar="FACTOR", help="Zoom in by up to FACTOR.", hidden=True),
]
MaxLightingOpt = Annotated[
    float | None,
    typer.Option(
        "--max-lighting", min=0.0, max=0.99, metavar="AMOUNT", help="Brightness/contrast.", hidden=True
    ),
]
MaxWarpOpt = Annotated[
    float | None,
    typer.Option("--max-warp", min=0.0, metavar="AMOUNT", help="Perspective warp.", hidden=True),
]
LabelSmoothingOpt = Annotated[
    float,
    typer.Option(
        "--label-smoothing", min=0.0, max=0.99, metavar="EPS", help="Label smoothing.", rich_help_panel=RECIPE
    ),
]
MixupOpt = Annotated[
    float | None,
    typer.Option(
        "--mixup", min=0.0, metavar="ALPHA", help="Mixup, Beta(ALPHA, ALPHA).", rich_help_panel=RECIPE
    ),
]
CutmixOpt = Annotated[
    float | None,
    typer.Option(
        "--cutmix", min=0.0, metavar="ALPHA", help="CutMix, Beta(ALPHA, ALPHA).", rich_help_panel=RECIPE
    ),
]
ClipOpt = Annotated[
    float | None,
    typer.Option("--clip", min=0.0, metavar="NORM", help="Clip the gradient norm.", rich_help_panel=RECIPE),
]
AccumOpt = Annotated[
    int,
    typer.Option(
        "--accum", min=1, metavar="N", help="One optimizer step per N batches.", rich_help_panel=RECIPE
    ),
]
EmaOpt = Annotated[
    float | None,
    typer.Option(
        "--ema",
        min=0.0,
        max=1.0,
        metavar="DECAY",
        help="Evaluate and save an EMA of the weights.",
        rich_help_panel=RECIPE,
    ),
]
ClassWeightsOpt = Annotated[
    Literal["balanced"] | None,
    typer.Option("--class-weights", help="Weight the loss by inverse class counts.", rich_help_panel=RECIPE),
]
CompileOpt = Annotated[
    bool,
    typer.Option("--compile", help="torch.compile the model (eager if it cannot).", rich_help_panel=RECIPE),
]
FreezeOpt = Annotated[
    bool | None,
    typer.Option(
        "--freeze/--no-freeze", help="Freeze the body (default: when --pretrained).", rich_help_panel=MODEL
    ),
]
LabelDelimOpt = Annotated[
    str | None,
    typer.Option(
        "--label-delim",
        metavar="DELIM",
        help="Multi-label: labels.csv classes split by DELIM.",
        rich_help_panel=DATA,
    ),
]
ThreshOpt = Annotated[
    float,
    typer.Option("--thresh", min=0.0, max=1.0, help="Multi-label threshold.", rich_help_panel=DATA),
]
