"""``RunConfig``: the one description of a training run that ``fit``, ``fit-one-cycle`` and ``unet`` build.

A run is data + model + schedule + checkpointing + runtime. The command line fills one (its
options over an optional ``--config`` file over its defaults), :func:`learnkit.jobs.train.run`
trains from it, and the run folder keeps it as ``config.yaml`` (the checkpoints carry it too), so
``--config PATH/config.yaml`` repeats the run. Commands differ only in ``model`` (a CNN or a U-Net)
and ``schedule.kind`` (``fit``: constant rate, ``one_cycle``: 1cycle).

Example:
    >>> cfg = RunConfig.from_flat("fit", data="sample:shapes", arch="simple_cnn", epochs=2, seed=0)
    >>> cfg.schedule.epochs, cfg.checkpoint.monitor
    (2, 'valid_loss')
    >>> RunConfig.from_dict(cfg.to_dict()) == cfg
    True
"""

from __future__ import annotations

import dataclasses
import secrets
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from learnkit.data.aug_config import DEFAULT_PRESET, PRESETS, AugmentConfig
from learnkit.errors import UsageError
from learnkit.schedules import OneCycleSchedule

COMMANDS = {"fit": "fit", "fit-one-cycle": "one_cycle", "unet": "one_cycle"}  # command -> schedule kind
# the 1cycle's hyper-parameters and their defaults are OneCycleSchedule's own
_CYCLE = {f.name: f.default for f in fields(OneCycleSchedule) if f.name not in ("n_iter", "max_lrs")}


@dataclass(frozen=True)
class DataConfig:
    """What the model learns from."""

    data: str | None = None  # an image folder or a built-in sample (sample:shapes, sample:shapes-seg)
    bs: int = 64  # batch size per process (under --nproc the effective batch is bs x nproc)
    size: int = 64  # images (and masks) are resized to size x size
    valid_pct: float | None = None  # hold this share out when DATA has no valid/ (segmentation: 0.2)
    cache: str = "auto"  # decoded images in RAM: auto (under 2 GiB), ram, none; no effect on results
    # train-time augmentation: a preset (none, light, fastai = fastai v1's get_transforms()) and
    # fastai's knobs over it (None: the preset's value); see learnkit.data.aug_config
    aug: str = DEFAULT_PRESET
    flip: bool | None = None
    flip_vert: bool | None = None
    max_rotate: float | None = None
    max_zoom: float | None = None
    max_lighting: float | None = None
    max_warp: float | None = None
    label_delim: str | None = None  # DATA/labels.csv: several classes per image, split on this (multi-label)
    thresh: float = 0.5  # multi-label: a class is predicted above this probability (kept in checkpoints)

    def augment(self) -> AugmentConfig:
        """The augmentation these fields describe."""
        names = ("flip", "flip_vert", "max_rotate", "max_zoom", "max_lighting", "max_warp")
        return AugmentConfig(self.aug, **{n: getattr(self, n) for n in names})


@dataclass(frozen=True)
class UnetConfig:
    """The DynamicUnet's decoder options (``learnkit unet`` only)."""

    self_attention: bool = False  # a self-attention layer in the decoder
    blur: bool = False  # blur after each pixel-shuffle upsampling (fewer checkerboard artefacts)
    blur_final: bool = True  # with blur, blur the last upsamplings too
    bottle: bool = False  # a bottleneck in the res block after the last cross connection
    last_cross: bool = True  # feed the input image to the last res block
    norm_type: str = "none"  # the decoder convs' normalisation: none, batch or weight
    y_range: tuple[float, float] | None = None  # squeeze the outputs into (lo, hi)


@dataclass(frozen=True)
class ModelConfig:
    """What is trained: a zoo arch (a CNN classifier, or the encoder of a U-Net)."""

    arch: str | None = None  # a zoo name (learnkit zoo list)
    pretrained: str | None = None  # imagenet (torchvision's weights from torch's cache) or a state-dict file
    freeze: bool | None = None  # freeze the body (None: frozen when pretrained, as fastai)
    unet: UnetConfig | None = None  # set for a U-Net (learnkit unet), None for a classifier


@dataclass(frozen=True)
class ScheduleConfig:
    """How the weights move: the epochs, the rate and, for 1cycle, OneCycleSchedule's parameters."""

    kind: str = "fit"  # fit (constant rate) or one_cycle (fastai's 1cycle policy)
    epochs: int = 1  # the run's total; a resumed run does what is left, a larger value extends it
    lr: float | str = 3e-3  # a float, or a slice over the layer groups written "1e-5:1e-3" / ":1e-3"
    wd: float | str | None = None  # weight decay (None: the Learner's 0.01), float or slice text
    moms: tuple[float, float] = _CYCLE["moms"]  # 1cycle: momentum at the ends and at the peak
    pct_start: float = _CYCLE["pct_start"]  # 1cycle: share of the iterations warming the rate up
    div_factor: float = _CYCLE["div_factor"]  # 1cycle: the cycle starts at lr / div_factor
    final_div: float | None = _CYCLE["final_div"]  # 1cycle: ends at lr / final_div (div_factor * 1e4)
    label_smoothing: float = 0.0  # cross-entropy label smoothing
    class_weights: str | None = None  # balanced: loss weights n / (classes x count) from the train set
    mixup: float | None = None  # mixup's Beta(alpha, alpha) (None: off)
    cutmix: float | None = None  # CutMix's Beta(alpha, alpha) (None: off)
    clip: float | None = None  # clip the gradients' global norm to this (None: off)
    accum: int = 1  # batches per optimizer step; the schedule still moves per batch
    ema: float | None = None  # decay of an EMA of the weights (validated and saved); None: off

    def cycle_kwargs(self) -> dict[str, Any]:
        """The keyword arguments of ``Learner.fit_one_cycle`` besides the epochs and the rate."""
        return {name: getattr(self, name) for name in _CYCLE}


@dataclass(frozen=True)
class CheckpointConfig:
    """Where the run is kept and what it keeps."""

    path: str = "."  # the run folder: models/, history.csv, config.yaml, plots/
    monitor: str = "valid_loss"  # what `best` (and --patience) follows: a loss or a metric's name
    save_best: bool = True  # keep models/best, the weights of the monitor's best epoch
    patience: int | None = None  # stop after this many epochs without improvement (None: never)
    resume: str | None = None  # continue the run saved in this checkpoint (weights, optimizer, RNG...)
    init_from: str | None = None  # start a new run from this checkpoint's weights only
    exist_ok: bool = False  # replace a run already in path (else a fit there is refused)
    loggers: tuple[str, ...] = ("csv",)  # trackers (learnkit.loggers): csv is history.csv, always kept


@dataclass(frozen=True)
class RuntimeConfig:
    """How and where the run executes; with the same seed and deterministic, it repeats."""

    seed: int | None = None  # drawn and recorded when not given, so config.yaml replays the run
    deterministic: bool = False  # torch's deterministic algorithms (identical weights on a replay)
    precision: str = "fp32"  # fp32, or mixed precision bf16 / fp16 (fp32 master weights)
    device: str = "auto"  # auto, cpu, cuda, cuda:<i>, mps
    workers: int | None = None  # data-loader processes (None: none with the RAM cache, else up to 4)
    nproc: int | None = None  # processes under torchrun (DistributedDataParallel), None: this one
    compile: bool = False  # torch.compile the model (a warning and eager mode where it cannot)


SECTIONS: dict[str, type] = {
    "data": DataConfig,
    "model": ModelConfig,
    "schedule": ScheduleConfig,
    "checkpoint": CheckpointConfig,
    "runtime": RuntimeConfig,
}
# fields a resumed run may change: where and how it runs, not what it computes (epochs: see
# learnkit.jobs.train.run, a larger value extends a finished run)
RESUME_FREE = {
    "data.cache",
    "schedule.epochs",
    "checkpoint.path",
    "checkpoint.resume",
    "checkpoint.init_from",
    "checkpoint.exist_ok",
    "checkpoint.patience",
    "checkpoint.loggers",
    "runtime.device",
    "runtime.workers",
    "runtime.nproc",
    "runtime.compile",  # compiled or eager, the same computation
    "data.thresh",  # used by predictions only
}
_CYCLE_ONLY = set(_CYCLE)


@dataclass(frozen=True)
class RunConfig:
    """A whole training run: ``command`` and its five sections (see the module docstring)."""

    command: str = "fit"  # the command that trains it: fit, fit-one-cycle or unet
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)

    # --- building ---
    @classmethod
    def from_flat(cls, command: str, **values: Any) -> RunConfig:
        """A config from option names (``bs=32, lr=1e-3, blur=True`` ...) for ``command``.

        A name no section of ``command`` has is a UsageError naming it; ``None`` for a field whose
        default is not None (``monitor``) means that default.
        """
        kind = _kind(command)
        owner = flat_names(command)
        unknown = sorted(set(values) - set(owner))
        if unknown:
            raise UsageError(f"unknown option(s) for `{command}`: {', '.join(unknown)}")
        nested: dict[str, dict[str, Any]] = {name: {} for name in SECTIONS}
        unet: dict[str, Any] = {}
        for name, value in values.items():
            section = owner[name]
            (unet if section == "unet" else nested[section])[name] = value
        nested["schedule"]["kind"] = kind
        if command == "unet":
            nested["model"]["unet"] = unet
        return cls.from_dict({"command": command, **nested})

    @classmethod
    def from_dict(cls, d: dict[str, Any], command: str | None = None) -> RunConfig:
        """The config written by :meth:`to_dict` (or read from YAML); ``command``: the one that must
        have made it. An unknown key, a bad value or another command's config is a UsageError."""
        if not isinstance(d, dict):
            raise UsageError("a config is a mapping of sections (data, model, schedule, checkpoint, runtime)")
        made_by = d.get("command", command or "fit")
        if made_by not in COMMANDS:
            raise UsageError(f"config key 'command': {made_by!r} is not one of {', '.join(COMMANDS)}")
        if command is not None and made_by != command:
            raise UsageError(f"the config is for `learnkit {made_by}` (command: {made_by}), not `{command}`")
        unknown = sorted(set(d) - {"command", "versions", *SECTIONS})
        if unknown:
            raise UsageError(f"unknown config key {unknown[0]!r}")
        sections = {}
        for name, kind in SECTIONS.items():
            raw = d.get(name) or {}
            if not isinstance(raw, dict):
                raise UsageError(f"config key {name!r} must be a mapping")
            sections[name] = _section(kind, raw, name, made_by)
        cfg = cls(command=made_by, **sections)
        cfg.validate()
        return cfg

    @classmethod
    def load(cls, file: str | Path, command: str | None = None) -> RunConfig:
        """Read a YAML config file (``config.yaml`` of a run); a UsageError if it cannot be used."""
        from learnkit.safe_yaml import read_yaml_file

        return cls.from_dict(read_yaml_file(file) or {}, command)  # bounded bytes, aliases, depth

    def validate(self) -> None:
        """UsageError for values no run can take (the CLI's ranges, checked again for config files)."""
        checks = [
            (self.data.bs >= 1, "data.bs must be >= 1"),
            (8 <= self.data.size <= 8192, "data.size must be between 8 and 8192"),
            (self.data.valid_pct is None or 0 < self.data.valid_pct < 1, "data.valid_pct must be in (0, 1)"),
            (self.data.cache in ("auto", "ram", "none"), "data.cache must be auto, ram or none"),
            (self.schedule.kind in ("fit", "one_cycle"), "schedule.kind must be fit or one_cycle"),
            (self.schedule.epochs >= 1, "schedule.epochs must be >= 1"),
            (0 <= self.schedule.pct_start <= 1, "schedule.pct_start must be between 0 and 1"),
            (self.schedule.div_factor >= 1, "schedule.div_factor must be >= 1"),
            (self.checkpoint.patience is None or self.checkpoint.patience >= 0, "patience must be >= 0"),
            (self.runtime.precision in ("fp32", "bf16", "fp16"), "runtime.precision: fp32, bf16 or fp16"),
            (self.runtime.seed is None or self.runtime.seed >= 0, "runtime.seed must be >= 0"),
            (self.runtime.workers is None or self.runtime.workers >= 0, "runtime.workers must be >= 0"),
            (self.runtime.nproc is None or self.runtime.nproc >= 1, "runtime.nproc must be >= 1"),
            (self.data.aug in PRESETS, f"data.aug must be one of {', '.join(PRESETS)}"),
            (0 < self.data.thresh < 1, "data.thresh must be in (0, 1)"),
            (0 <= self.schedule.label_smoothing < 1, "schedule.label_smoothing must be in [0, 1)"),
            (self.schedule.class_weights in (None, "balanced"), "schedule.class_weights must be balanced"),
            (self.schedule.accum >= 1, "schedule.accum must be >= 1"),
            (self.schedule.ema is None or 0 < self.schedule.ema < 1, "schedule.ema must be in (0, 1)"),
            (self.schedule.clip is None or self.schedule.clip > 0, "schedule.clip must be > 0"),
            (self.schedule.mixup is None or self.schedule.mixup > 0, "schedule.mixup must be > 0"),
            (self.schedule.cutmix is None or self.schedule.cutmix > 0, "schedule.cutmix must be > 0"),
            (not (self.schedule.mixup and self.schedule.cutmix), "give mixup or cutmix, not both"),
        ]
        missing = [n for n, v in (("DATA", self.data.data), ("--arch", self.model.arch)) if v is None]
        if missing:
            raise UsageError(f"missing {' and '.join(missing)}: give it on the command line or in --config")
        for ok, message in checks:
            if not ok:
                raise UsageError(message)
        if self.checkpoint.resume is not None and self.checkpoint.init_from is not None:
            raise UsageError("give --resume or --init-from, not both")
        self.data.augment().settings()  # knob values in range
        from learnkit.loggers import check_names

        check_names(self.checkpoint.loggers)
        lr_value(self.schedule.lr, "schedule.lr")
        if self.schedule.wd is not None:
            lr_value(self.schedule.wd, "schedule.wd", allow_zero=True)

    def with_seed(self) -> RunConfig:
        """This config with a concrete seed: the given one, else a fresh draw (recorded, so a
        replay of the saved config repeats the run)."""
        if self.runtime.seed is not None:
            return self
        return replace(self, runtime=replace(self.runtime, seed=secrets.randbelow(2**31)))

    # --- writing ---
    def to_dict(self) -> dict[str, Any]:
        """The config as plain data (what ``config.yaml`` and the checkpoints' ``config`` hold).

        Every field is there, defaults included; a classifier's config has no ``model.unet`` and a
        constant-rate one no 1cycle parameters.
        """
        out: dict[str, Any] = {"command": self.command}
        for name in SECTIONS:
            section = dataclasses.asdict(getattr(self, name))
            if name == "model" and section["unet"] is None:
                del section["unet"]
            if name == "schedule" and self.schedule.kind != "one_cycle":
                section = {k: v for k, v in section.items() if k not in _CYCLE_ONLY}
            out[name] = _plain(section)
        return out

    def to_yaml(self, versions: dict[str, str] | None = None) -> str:
        """YAML text of :meth:`to_dict` (plus ``versions``, informative, ignored when read back)."""
        import yaml

        d = self.to_dict()
        if versions:
            d["versions"] = {k: str(v) for k, v in versions.items()}  # torch's is a str subclass
        return yaml.safe_dump(d, sort_keys=False, default_flow_style=False)

    def flat(self) -> dict[str, Any]:
        """``{"section.field": value}`` of :meth:`to_dict` (``model.unet.blur`` for the U-Net's)."""
        return dict(_flatten(self.to_dict()))

    def options(self) -> dict[str, Any]:
        """The option names and values :meth:`from_flat` takes back (``{"bs": 64, "blur": False...}``)."""
        out: dict[str, Any] = {}
        for name, owner in flat_names(self.command).items():
            section = self.model.unet if owner == "unet" else getattr(self, owner)
            out[name] = getattr(section, name)
        return out

    def diff(self, other: RunConfig) -> list[str]:
        """The dotted names of the fields whose values differ between ``self`` and ``other``."""
        a, b = self.flat(), other.flat()
        return sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))


def flat_names(command: str) -> dict[str, str]:
    """Option name -> the section holding it, for ``command`` (``unet`` for the U-Net's own)."""
    kind = _kind(command)
    owner = {}
    for section, cls in SECTIONS.items():
        for f in fields(cls):
            if f.name == "unet" or (section == "schedule" and f.name == "kind"):
                continue
            if section == "schedule" and kind != "one_cycle" and f.name in _CYCLE_ONLY:
                continue
            owner[f.name] = section
    if command == "unet":
        owner.update({f.name: "unet" for f in fields(UnetConfig)})
    return owner


def lr_value(value: Any, what: str = "lr", *, allow_zero: bool = False) -> float | slice:
    """A rate as the Learner takes it: a float, or ``slice`` from the text ``"1e-5:1e-3"``/``":1e-3"``."""
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


# --- helpers ---
def _kind(command: str) -> str:
    if command not in COMMANDS:
        raise UsageError(f"unknown training command {command!r}: use {', '.join(COMMANDS)}")
    return COMMANDS[command]


def _float(text: str, what: str) -> float:
    try:
        return float(text.strip())
    except ValueError:
        raise UsageError(f"{what}: {text.strip()!r} is not a number") from None


def _positive(value: float, what: str, allow_zero: bool) -> float:
    import math

    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        raise UsageError(f"{what}: {value!r} is not a finite number {'>= 0' if allow_zero else '> 0'}")
    return value


def _section(cls: type, raw: dict[str, Any], name: str, command: str) -> Any:
    """``cls(**raw)`` with each value checked against the field's type; unknown keys refused."""
    allowed = {f.name: f for f in fields(cls)}
    if cls is ScheduleConfig and COMMANDS[command] != "one_cycle":
        allowed = {k: f for k, f in allowed.items() if k not in _CYCLE_ONLY}
    if cls is ModelConfig and command != "unet":
        allowed.pop("unet")
    unknown = sorted(set(raw) - set(allowed))
    if unknown:
        raise UsageError(f"unknown config key '{name}.{unknown[0]}' for `learnkit {command}`")
    values = {}
    for key, value in raw.items():
        if key == "unet":
            values[key] = _section(UnetConfig, value or {}, f"{name}.unet", command)
        elif key == "kind":
            if value != COMMANDS[command]:
                raise UsageError(f"config key 'schedule.kind': `{command}` trains with {COMMANDS[command]!r}")
            values[key] = value
        else:
            values[key] = _coerce(value, allowed[key], f"{name}.{key}")
    if cls is ModelConfig and command == "unet" and "unet" not in values:
        values["unet"] = UnetConfig()
    return cls(**values)


def _coerce(value: Any, f: dataclasses.Field, key: str) -> Any:
    """``value`` as field ``f`` holds it (the annotation is a string: ``from __future__``)."""
    kind = str(f.type)
    if value is None:
        if "None" in kind:
            return None
        if f.default is not dataclasses.MISSING and f.default is not None:
            return f.default  # e.g. monitor: None means the default, valid_loss
        raise UsageError(f"config key {key!r} cannot be empty")
    try:
        if kind.startswith("bool"):
            if not isinstance(value, bool):
                raise TypeError
            return value
        if kind.startswith("int"):
            if isinstance(value, bool):
                raise TypeError
            if isinstance(value, int):
                return value  # exact, however large (a float round trip would change a big seed)
            if isinstance(value, float) and not value.is_integer():
                raise TypeError
            return int(value)
        if kind.startswith("float | str") or key in ("schedule.lr", "schedule.wd"):
            return lr_text(lr_value(value, key, allow_zero=key.endswith("wd")))
        if kind.startswith("float"):
            if isinstance(value, bool):
                raise TypeError
            return float(value)
        if kind.startswith("tuple[str"):
            names = value.replace(",", " ").split() if isinstance(value, str) else list(value)
            if not all(isinstance(n, str) for n in names):
                raise TypeError
            return tuple(dict.fromkeys(["csv", *names]))  # history.csv is the run folder's record
        if kind.startswith("tuple"):
            if isinstance(value, str):
                value = value.replace(":", ",").split(",")
            pair = tuple(float(v) for v in value)
            if len(pair) != 2:
                raise TypeError
            return pair
        if kind.startswith("str"):
            if not isinstance(value, str | int | float) or isinstance(value, bool):
                raise TypeError
            return str(value)
    except UsageError:
        raise
    except (TypeError, ValueError):
        raise UsageError(f"config key {key!r}: {value!r} is not a valid {kind}") from None
    return value


def _plain(d: dict[str, Any]) -> dict[str, Any]:
    """Tuples as lists (YAML and JSON have no tuples), nested sections as mappings."""
    return {
        k: _plain(v) if isinstance(v, dict) else list(v) if isinstance(v, tuple) else v for k, v in d.items()
    }


def _flatten(d: dict[str, Any], prefix: str = ""):
    for key, value in d.items():
        if isinstance(value, dict):
            yield from _flatten(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


__all__ = [
    "CheckpointConfig",
    "DataConfig",
    "ModelConfig",
    "RunConfig",
    "RuntimeConfig",
    "ScheduleConfig",
    "UnetConfig",
    "flat_names",
    "lr_text",
    "lr_value",
]
