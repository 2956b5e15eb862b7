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


def complete_arch(incomplete: str) -> list[str]:
    """The registered arch names that start with ``incomplete`` (imports no torch)."""
    from learnkit import registry

    return [name for name in registry.names() if name.startswith(incomplete)]


def complete_model(ctx: typer.Context, incomplete: str) -> list[str]:
    """The checkpoints under ``<--path>/models`` whose names start with ``incomplete``."""
    folder = Path(ctx.params.get("path") or ".") / "models"
    names = {p.name.removesuffix(".safetensors") for p in folder.glob("*.safetensors")}
    return sorted(n for n in names if not n.endswith(".opt") and n.startswith(incomplete))


DataArg = Annotated[
    str | None,
    typer.Argument(
        metavar="DATA",
        help="An image folder (train/ and valid/ inside), or a built-in sample: sample:shapes.",
        show_default=False,
    ),
]
ArchOpt = Annotated[
    str | None,
    typer.Option("--arch", help="Model architecture from the zoo.", autocompletion=complete_arch),
]
ModelOpt = Annotated[
    str,
    typer.Option(
        "--model",
        help="Checkpoint: a name under PATH/models, or a .safetensors file.",
        autocompletion=complete_model,
    ),
]
EpochsOpt = Annotated[int, typer.Option("--epochs", min=1, help="Number of epochs.")]
LrOpt = Annotated[
    Any,
    typer.Option(
        "--lr",
        parser=_as_typer(parse_lr),
        metavar="LR",
        help="Learning rate: 1e-3, or a slice over the layer groups: 1e-5:1e-3 or :1e-3.",
    ),
]
WdOpt = Annotated[
    Any,
    typer.Option(
        "--wd", parser=_as_typer(parse_wd), metavar="WD", help="Weight decay (default: the Learner's, 0.01)."
    ),
]
BsOpt = Annotated[int, typer.Option("--bs", min=1, help="Batch size.")]
SizeOpt = Annotated[
    int, typer.Option("--size", min=8, max=8192, help="Images are resized to SIZE x SIZE.")
]  # the max keeps a typo (--size 64000) from asking for gigabytes per image
SeedOpt = Annotated[
    int | None,
    typer.Option(
        "--seed",
        min=0,
        max=2**63 - 1,
        help="Random seed (Python, NumPy, torch, data-loader workers), for a repeatable run.",
    ),
]
PathOpt = Annotated[
    str, typer.Option("--path", metavar="DIR", help="Working folder: checkpoints go to DIR/models.")
]
WorkersOpt = Annotated[
    int | None,
    typer.Option(
        "--workers",
        min=0,
        help="Data-loading worker processes, kept for the whole run (default for training: none when "
        "the images are cached in RAM, else up to 4).",
    ),
]
CacheOpt = Annotated[
    Literal["auto", "ram", "none"],
    typer.Option(
        "--cache",
        help="Keep the decoded images in RAM, so no epoch after the first decodes a file: auto (when "
        "they take under 2 GiB), ram, or none (decode at every access).",
    ),
]
DeviceOpt = Annotated[
    str,
    typer.Option(
        "--device",
        parser=_as_typer(parse_device),
        metavar="DEVICE",
        help="auto (CUDA when there is one), cpu, cuda, cuda:<index> or mps.",
    ),
]
PrecisionOpt = Annotated[
    Literal["fp32", "bf16", "fp16"],
    typer.Option("--precision", help="fp32, or mixed precision: bf16 (CPU or GPU) or fp16 (GPU)."),
]
PretrainedOpt = Annotated[
    str | None,
    typer.Option("--pretrained", metavar="FILE", help="Start from the weights in a local state-dict file."),
]
ValidPctOpt = Annotated[
    float | None,
    typer.Option(
        "--valid-pct",
        parser=_as_typer(parse_fraction),
        metavar="FRACTION",
        help="Hold out this fraction of DATA for validation (a folder without train/ valid/; "
        "segmentation: 0.2 when not given).",
    ),
]
MomsOpt = Annotated[
    Any,
    typer.Option(
        "--moms", parser=_as_typer(parse_moms), metavar="HIGH,LOW", help="1cycle momentums, e.g. 0.95,0.85."
    ),
]
PctStartOpt = Annotated[
    float,
    typer.Option("--pct-start", min=0.0, max=1.0, help="Share of the cycle spent warming up the rate."),
]
DivFactorOpt = Annotated[
    float,
    typer.Option("--div-factor", min=1.0, help="The cycle starts at LR / DIV_FACTOR."),
]
FinalDivOpt = Annotated[
    float | None,
    typer.Option("--final-div", min=1.0, help="The cycle ends at LR / FINAL_DIV (default DIV_FACTOR * 1e4)."),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout.")]

# --- a training run's config, checkpoints, resuming and scale (fit, fit-one-cycle, unet) ---
ConfigOpt = Annotated[
    str | None,
    typer.Option(
        "--config",
        metavar="FILE",
        help="Read the run's options from a YAML file (a run's PATH/config.yaml replays it); options "
        "given on the command line override it.",
    ),
]
PrintConfigOpt = Annotated[
    bool,
    typer.Option("--print-config", help="Print the effective config as YAML and exit without training."),
]
ExistOkOpt = Annotated[
    bool,
    typer.Option("--exist-ok", help="Replace the run already in PATH (else a fit there is refused)."),
]
MonitorOpt = Annotated[
    str,
    typer.Option(
        "--monitor",
        metavar="NAME",
        help="What PATH/models/best (and --patience) follows: valid_loss, train_loss or a metric "
        "(accuracy; dice, iou, pixel_accuracy for unet).",
    ),
]
PatienceOpt = Annotated[
    int | None,
    typer.Option(
        "--patience",
        min=0,
        help="Stop when --monitor (default valid_loss) has not improved for PATIENCE epochs.",
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
        help="Also log to NAME (repeatable): tensorboard (event files under PATH/tensorboard; "
        "learnkit[tensorboard]) or an installed learnkit.loggers plug-in; csv (PATH/history.csv) is "
        "always written.",
        autocompletion=complete_logger,
        show_default=False,
    ),
]
SaveBestOpt = Annotated[
    bool,
    typer.Option(
        "--save-best/--no-save-best", help="Keep PATH/models/best, the weights of --monitor's best epoch."
    ),
]
ResumeOpt = Annotated[
    str | None,
    typer.Option(
        "--resume",
        metavar="[NAME]",
        help="Continue the run saved in checkpoint NAME (default last) exactly where it stopped: weights, "
        "optimizer, schedule position, RNG and history, with the run's saved config (options given "
        "here must agree with it). --epochs is the run's total; a finished run says so and exits 0, "
        "or with a larger --epochs trains the extra epochs (1cycle: a new cycle of them).",
    ),
]
InitFromOpt = Annotated[
    str | None,
    typer.Option(
        "--init-from",
        metavar="NAME",
        help="Start a new run from the weights of checkpoint NAME (a name under PATH/models, or a file).",
    ),
]
DeterministicOpt = Annotated[
    bool,
    typer.Option(
        "--deterministic",
        help="Use torch's deterministic algorithms (with --seed a CPU run repeats exactly).",
    ),
]
NprocOpt = Annotated[
    int | None,
    typer.Option(
        "--nproc",
        min=1,
        max=1024,
        help="Train over N processes on this machine (runs the command under torchrun: "
        "DistributedDataParallel; the effective batch size is BS x N).",
    ),
]
