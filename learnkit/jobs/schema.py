"""The option schema: what each RunConfig field says about itself, in one place.

Every field of :mod:`learnkit.jobs.config` that a user sets carries an :class:`Opt` (through
:func:`option`): its help line and panel, its bounds or choices, the commands it applies to and a
default per command where commands differ. From that one description

- the command line generates ``fit``, ``fit-one-cycle`` and ``unet`` (``learnkit.cli.training``),
- :func:`check_value` checks a value however it came (default, ``--config`` file, command line),
  with one message and :class:`~learnkit.errors.UsageError` (exit 2),
- a config field that does not apply to a command is refused before anything is read.

This module imports no torch (``learnkit --help`` builds the commands from it).

Example:
    >>> o = Opt("Label smoothing.", "Recipe", low=0.0, high=1.0, high_open=True)
    >>> o.bounds_text()
    'in [0, 1)'
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from learnkit.errors import UsageError

TRAINING_COMMANDS = ("fit", "fit-one-cycle", "unet")
CLASSIFY = frozenset({"fit", "fit-one-cycle"})  # a classifier's commands
CYCLE = frozenset({"fit-one-cycle", "unet"})  # the commands that train with 1cycle
ALL = frozenset(TRAINING_COMMANDS)
DATA, MODEL, SCHEDULE, CHECKPOINTS, RUNTIME, RECIPE = (
    "Data",
    "Model",
    "Schedule",
    "Checkpoints",
    "Runtime",
    "Recipe",
)
MAX_INT = 2**53
"""The largest whole number any option takes (exactly a float, so it reads back from JSON and YAML)."""
_DEVICE = re.compile(r"(auto|cpu|mps|cuda(:[0-9]+)?)")


@dataclass(frozen=True)
class Opt:
    """What one RunConfig field says about itself (see the module docstring).

    Args:
        help: the one-line help of its option.
        panel: the ``--help`` panel it is listed in.
        commands: the training commands it applies to.
        defaults: a default per command, where it differs from the field's own.
        flag: the option's spelling when not ``--<name-with-dashes>`` (``--save-best/--no-save-best``).
        metavar: the value's name in ``--help``.
        low, high: bounds (``None``: none); ``low_open``/``high_open`` make them strict.
        choices: the allowed values of a text field.
        kind: how text becomes the value: ``rate`` (float or slice, > 0), ``rate0`` (>= 0),
            ``pair`` (two numbers), ``device``, ``names`` (a list of names).
        argument: a positional argument (DATA) rather than an option.
        hidden: left out of ``--help`` (documented in the README).
        resume_free: a resumed run may change it (where and how it runs, not what it computes).
        complete: the name of the command line's completion for it (``arch``, ``logger``).
    """

    help: str
    panel: str
    commands: frozenset[str] = ALL
    defaults: Mapping[str, Any] = field(default_factory=dict)
    flag: str | None = None
    metavar: str | None = None
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    choices: tuple[str, ...] | None = None
    kind: str | None = None
    argument: bool = False
    hidden: bool = False
    resume_free: bool = False
    complete: str | None = None

    def applies(self, command: str) -> bool:
        """Whether the option belongs to ``command``."""
        return command in self.commands

    def bounds_text(self) -> str:
        """The bounds in words (``in [0, 1)``, ``>= 1``), or ``""`` when there are none."""
        if self.choices:
            return "one of " + ", ".join(self.choices)
        low, high = _num(self.low), _num(self.high)
        if low is not None and high is not None:
            return f"in {'(' if self.low_open else '['}{low}, {high}{')' if self.high_open else ']'}"
        if low is not None:
            return f"{'>' if self.low_open else '>='} {low}"
        if high is not None:
            return f"{'<' if self.high_open else '<='} {high}"
        return ""


def option(default: Any, help: str, panel: str, **opt: Any) -> Any:
    """A dataclass field with its :class:`Opt`: ``size: int = option(64, "Image size.", DATA, low=8)``."""
    return field(default=default, metadata={"opt": Opt(help, panel, **opt)})


def opt_of(f: Any) -> Opt | None:
    """The :class:`Opt` of a dataclass field, or None for a field that is no option."""
    return f.metadata.get("opt")


def flag_of(name: str, o: Opt) -> str:
    """The option's first spelling on the command line: ``--save-best`` for ``save_best``."""
    return (o.flag or "--" + name.replace("_", "-")).split("/")[0]


def check_value(value: Any, o: Opt, key: str, name: str) -> None:
    """A UsageError when ``value`` is outside ``o``'s bounds or choices (``None`` passes: unset).

    ``key`` is the config's dotted name and ``name`` the field's; the message names both the
    option and the config key, so it reads the same whichever source gave the value.
    """
    if value is None:
        return
    where = f"{flag_of(name, o)} ({key})"
    if o.choices is not None:
        if value not in o.choices:
            raise UsageError(f"{where}: {value!r} is not {o.bounds_text()}")
        return
    if o.kind == "device":
        if not _DEVICE.fullmatch(str(value)):
            raise UsageError(f"{where}: {value!r} is not auto, cpu, cuda, cuda:<index> or mps")
        return
    numbers = value if isinstance(value, tuple | list) else (value,)
    for v in numbers:
        if isinstance(v, bool) or not isinstance(v, int | float):
            continue
        if isinstance(v, float) and not math.isfinite(v):
            raise UsageError(f"{where}: {v!r} is not a finite number")
        if isinstance(v, int) and abs(v) > MAX_INT:  # before: OverflowError deep in torch (exit 1)
            raise UsageError(f"{where}: {v!r} is too large (at most 2**53)")
        too_low = o.low is not None and (v <= o.low if o.low_open else v < o.low)
        too_high = o.high is not None and (v >= o.high if o.high_open else v > o.high)
        if too_low or too_high:
            raise UsageError(f"{where}: {v!r} is not {o.bounds_text()}")


# --- text to values: the same for the command line and config files ---
def lr_value(value: Any, what: str = "lr", *, allow_zero: bool = False) -> float | slice:
    """A rate as the Learner takes it: a float, or ``slice`` from the text ``"1e-5:1e-3"``/``":1e-3"``.

    Example:
        >>> lr_value("1e-5:1e-3")
        slice(1e-05, 0.001, None)
    """
    if isinstance(value, slice):
        return value
    if isinstance(value, bool):
        raise UsageError(f"{what}: {value!r} is not a number")
    if isinstance(value, int | float):
        return _positive(float(value), what, allow_zero)
    text = str(value).strip()
    if ":" not in text:
        return _positive(_float(text, what), what, allow_zero)
    start, _, stop = text.partition(":")
    if ":" in stop or not stop.strip():
        raise UsageError(f"{what}: {text!r} is not a value or a slice such as 1e-5:1e-3 or :1e-3")
    high = _positive(_float(stop, what), what, allow_zero)
    if not start.strip():
        return slice(None, high)
    low = _positive(_float(start, what), what, allow_zero)
    if low > high:
        raise UsageError(f"{what}: the slice {text!r} starts above its end")
    return slice(low, high)


def lr_text(value: Any) -> float | str:
    """How a rate is kept in a config: a float, or a slice as ``"start:stop"`` text."""
    if isinstance(value, slice):
        start = "" if value.start is None else repr(float(value.start))
        return f"{start}:{float(value.stop)!r}"
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return value


def pair(value: Any, what: str) -> tuple[float, float]:
    """Two numbers from ``"0.95,0.85"``, ``"0.95:0.85"`` or a two-item list."""
    parts = str(value).replace(":", ",").split(",") if isinstance(value, str) else list(value)
    if len(parts) != 2 or any(isinstance(p, bool) for p in parts):
        raise UsageError(f"{what}: {value!r} is not two numbers such as 0.95,0.85")
    return _float(str(parts[0]), what), _float(str(parts[1]), what)


CONVERTERS: dict[str, Callable[[Any, str], Any]] = {
    "rate": lambda v, what: lr_text(lr_value(v, what)),
    "rate0": lambda v, what: lr_text(lr_value(v, what, allow_zero=True)),
    "pair": pair,
    "device": lambda v, what: str(v).strip().lower(),
}


def _float(text: str, what: str) -> float:
    try:
        return float(text.strip())
    except ValueError:
        raise UsageError(f"{what}: {text.strip()!r} is not a number") from None


def _positive(value: float, what: str, allow_zero: bool) -> float:
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        raise UsageError(f"{what}: {value!r} is not a finite number {'>= 0' if allow_zero else '> 0'}")
    return value


def _num(x: float | None) -> str | None:
    if x is None:
        return None
    return str(int(x)) if float(x).is_integer() and abs(x) < 1e15 else repr(x)
