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
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from learnkit.data.aug_config import DEFAULT_PRESET, PRESETS, AugmentConfig
from learnkit.errors import UsageError
from learnkit.jobs.schema import (
    CHECKPOINTS,
    CLASSIFY,
    CONVERTERS,
    CYCLE,
    DATA,
    MODEL,
    RECIPE,
    RUNTIME,
    SCHEDULE,
    check_value,
    flag_of,
    lr_text,
    lr_value,
    opt_of,
    option,
)
from learnkit.schedules import OneCycleSchedule

COMMANDS = {"fit": "fit", "fit-one-cycle": "one_cycle", "unet": "one_cycle"}  # command -> schedule kind
# the 1cycle's hyper-parameters and their defaults are OneCycleSchedule's own
_CYCLE = {f.name: f.default for f in fields(OneCycleSchedule) if f.name not in ("n_iter", "max_lrs")}


@dataclass(frozen=True)
class DataConfig:
    """What the model learns from."""

    data: str | None = option(
        None,
        "Image folder or sample:NAME (shapes; unet: shapes-seg).",
        DATA,
        argument=True,
        metavar="DATA",
    )
    # batch size per process (under --nproc the effective batch is bs x nproc). unet's defaults (bs 8,
    # 3 epochs, lr 1e-3) were measured on sample:shapes-seg (64 px, 160 training images) with resnet18
    # from random weights on 2 CPU cores: 20 steps an epoch and a mean dice of about 0.9 (3e-3 and
    # 1e-2 were no better; norm_type "batch" was slower to learn)
    bs: int = option(64, "Batch size.", DATA, low=1, defaults={"unet": 8})
    # images (and masks) resized to size x size; the max keeps a typo (64000) from asking for gigabytes
    size: int = option(64, "Images resized to SIZE x SIZE.", DATA, low=8, high=8192)
    # hold this share out when DATA has no valid/ (segmentation: 0.2)
    valid_pct: float | None = option(
        None,
        "Validate on this share of DATA.",
        DATA,
        low=0.0,
        high=1.0,
        low_open=True,
        high_open=True,
        metavar="FRACTION",
    )
    # decoded images in RAM: auto (under 2 GiB), ram, none; no effect on results
    cache: str = option(
        "auto", "Keep decoded images in RAM.", DATA, choices=("auto", "ram", "none"), resume_free=True
    )
    # train-time augmentation: a preset (none, light, fastai = fastai v1's get_transforms()) and
    # fastai's knobs over it (None: the preset's value); see learnkit.data.aug_config
    aug: str = option(DEFAULT_PRESET, "Augmentation (knobs: README).", RECIPE, choices=tuple(PRESETS))
    flip: bool | None = option(
        None, "Flip left-right (default: the preset's).", RECIPE, flag="--flip/--no-flip", hidden=True
    )
    flip_vert: bool | None = option(
        None, "Also flip top-bottom and rotate by 90 degrees.", RECIPE, hidden=True
    )
    max_rotate: float | None = option(
        None, "Rotate by up to DEGREES.", RECIPE, low=0.0, high=180.0, metavar="DEGREES", hidden=True
    )
    max_zoom: float | None = option(
        None, "Zoom in by up to FACTOR.", RECIPE, low=1.0, metavar="FACTOR", hidden=True
    )
    max_lighting: float | None = option(
        None, "Brightness/contrast.", RECIPE, low=0.0, high=1.0, high_open=True, metavar="AMOUNT", hidden=True
    )
    max_warp: float | None = option(None, "Perspective warp.", RECIPE, low=0.0, metavar="AMOUNT", hidden=True)
    # DATA/labels.csv: several classes per image, split on this (multi-label)
    label_delim: str | None = option(
        None, "Multi-label: labels.csv classes split by DELIM.", DATA, commands=CLASSIFY, metavar="DELIM"
    )
    # multi-label: a class is predicted above this probability (kept in checkpoints)
    thresh: float = option(
        0.5,
        "Multi-label threshold.",
        DATA,
        low=0.0,
        high=1.0,
        low_open=True,
        high_open=True,
        commands=CLASSIFY,
        resume_free=True,
    )

    def augment(self) -> AugmentConfig:
        """The augmentation these fields describe."""
        names = ("flip", "flip_vert", "max_rotate", "max_zoom", "max_lighting", "max_warp")
        return AugmentConfig(self.aug, **{n: getattr(self, n) for n in names})


_U = frozenset({"unet"})


@dataclass(frozen=True)
class UnetConfig:
    """The DynamicUnet's decoder options (``learnkit unet`` only)."""

    self_attention: bool = option(False, "A self-attention layer in the decoder.", MODEL, commands=_U)
    # blur after each pixel-shuffle upsampling (fewer checkerboard artefacts)
    blur: bool = option(False, "Blur after each pixel-shuffle upsampling.", MODEL, commands=_U)
    blur_final: bool = option(
        True,
        "With --blur, blur the last upsamplings too.",
        MODEL,
        commands=_U,
        flag="--blur-final/--no-blur-final",
    )
    bottle: bool = option(False, "A bottleneck in the last res block.", MODEL, commands=_U)
    last_cross: bool = option(
        True,
        "Feed the input image to the last res block.",
        MODEL,
        commands=_U,
        flag="--last-cross/--no-last-cross",
    )
    norm_type: str = option(
        "none", "Decoder conv norm.", MODEL, commands=_U, choices=("none", "batch", "weight")
    )
    y_range: tuple[float, float] | None = option(
        None, "Squeeze the outputs into (LO, HI).", MODEL, commands=_U, kind="pair", metavar="LO,HI"
    )


@dataclass(frozen=True)
class ModelConfig:
    """What is trained: a zoo arch (a CNN classifier, or the encoder of a U-Net)."""

    arch: str | None = option(None, "Architecture from the zoo.", MODEL, complete="arch")  # learnkit zoo list
    # imagenet (torchvision's weights from torch's cache) or a state-dict file
    pretrained: str | None = option(
        None, "imagenet (TORCH_HOME cache) or a file.", MODEL, metavar="imagenet|FILE"
    )
    # freeze the body (None: frozen when pretrained, as fastai)
    freeze: bool | None = option(
        None, "Freeze the body (default: when --pretrained).", MODEL, flag="--freeze/--no-freeze"
    )
    unet: UnetConfig | None = None  # set for a U-Net (learnkit unet), None for a classifier


@dataclass(frozen=True)
class ScheduleConfig:
    """How the weights move: the epochs, the rate and, for 1cycle, OneCycleSchedule's parameters."""

    kind: str = "fit"  # fit (constant rate) or one_cycle (fastai's 1cycle policy); set by the command
    # the run's total; a resumed run does what is left, a larger value extends it
    epochs: int = option(1, "Number of epochs.", SCHEDULE, low=1, defaults={"unet": 3}, resume_free=True)
    # a float, or a slice over the layer groups written "1e-5:1e-3" / ":1e-3"
    lr: float | str = option(
        3e-3,
        "Learning rate, or a slice: 1e-5:1e-3.",
        SCHEDULE,
        kind="rate",
        metavar="LR",
        defaults={"unet": 1e-3},
    )
    wd: float | str | None = option(
        None, "Weight decay (default 0.01).", SCHEDULE, kind="rate0", metavar="WD"
    )
    moms: tuple[float, float] = option(
        _CYCLE["moms"],
        "1cycle momentums.",
        SCHEDULE,
        commands=CYCLE,
        kind="pair",
        low=0.0,
        high=1.0,
        high_open=True,
        metavar="HI,LO",
    )
    pct_start: float = option(
        _CYCLE["pct_start"], "Share of the cycle warming up.", SCHEDULE, commands=CYCLE, low=0.0, high=1.0
    )
    div_factor: float = option(
        _CYCLE["div_factor"], "Start at LR / DIV_FACTOR.", SCHEDULE, commands=CYCLE, low=1.0
    )
    final_div: float | None = option(
        _CYCLE["final_div"],
        "End at LR / FINAL_DIV (default DIV_FACTOR*1e4).",
        SCHEDULE,
        commands=CYCLE,
        low=1.0,
    )
    label_smoothing: float = option(
        0.0, "Label smoothing.", RECIPE, commands=CLASSIFY, low=0.0, high=1.0, high_open=True, metavar="EPS"
    )
    # balanced: loss weights n / (classes x count) from the train set
    class_weights: str | None = option(
        None, "Weight the loss by inverse class counts.", RECIPE, commands=CLASSIFY, choices=("balanced",)
    )
    mixup: float | None = option(
        None, "Mixup, Beta(ALPHA, ALPHA).", RECIPE, commands=CLASSIFY, low=0.0, low_open=True, metavar="ALPHA"
    )
    cutmix: float | None = option(
        None,
        "CutMix, Beta(ALPHA, ALPHA).",
        RECIPE,
        commands=CLASSIFY,
        low=0.0,
        low_open=True,
        metavar="ALPHA",
    )
    clip: float | None = option(
        None, "Clip the gradient norm.", RECIPE, low=0.0, low_open=True, metavar="NORM"
    )
    # batches per optimizer step; the schedule still moves per batch
    accum: int = option(1, "One optimizer step per N batches.", RECIPE, low=1, metavar="N")
    ema: float | None = option(
        None,
        "Evaluate and save an EMA of the weights.",
        RECIPE,
        low=0.0,
        high=1.0,
        low_open=True,
        high_open=True,
        metavar="DECAY",
    )

    def cycle_kwargs(self) -> dict[str, Any]:
        """The keyword arguments of ``Learner.fit_one_cycle`` besides the epochs and the rate."""
        return {name: getattr(self, name) for name in _CYCLE}


@dataclass(frozen=True)
class CheckpointConfig:
    """Where the run is kept and what it keeps."""

    # the run folder: models/, history.csv, config.yaml, plots/; None: a new runs/<command>/<n>
    # (runs/<name> with a name), or for a resume the latest run (learnkit.jobs.runs.place_run)
    path: str | None = option(
        None, "Run folder (default: new runs/COMMAND/N).", CHECKPOINTS, metavar="DIR", resume_free=True
    )
    name: str | None = option(
        None, "Name the new run folder runs/NAME.", CHECKPOINTS, metavar="NAME", resume_free=True
    )
    # what `best` (and --patience) follows: a loss or a metric's name
    monitor: str = option("valid_loss", "Keep models/best by NAME.", CHECKPOINTS, metavar="NAME")
    save_best: bool = option(True, "Keep models/best.", CHECKPOINTS, flag="--save-best/--no-save-best")
    patience: int | None = option(
        None, "Stop after N epochs without improvement.", CHECKPOINTS, low=0, resume_free=True
    )
    # continue the run saved in this checkpoint (weights, optimizer, RNG...)
    resume: str | None = option(
        None,
        "Continue checkpoint NAME (default last) exactly.",
        CHECKPOINTS,
        metavar="[NAME]",
        resume_free=True,
    )
    init_from: str | None = option(
        None, "Start from the weights of checkpoint NAME.", CHECKPOINTS, metavar="NAME", resume_free=True
    )
    exist_ok: bool = option(False, "Replace a run already in PATH.", CHECKPOINTS, resume_free=True)
    # with --resume: continue on another number of processes than the run saved (the epoch's
    # position re-planned for the new count, said in a note); without it that resume is refused
    reshard: bool = option(
        False, "With --resume: continue on another process count.", CHECKPOINTS, resume_free=True
    )
    # --resume on data that differs from what the checkpoint's fit saw: a warning instead of exit 3
    allow_changed_data: bool = option(
        False, "Resume even if DATA changed since the checkpoint.", CHECKPOINTS, resume_free=True
    )
    # trackers (learnkit.loggers): csv is history.csv, always kept
    loggers: tuple[str, ...] = option(
        ("csv",),
        "Also log to tensorboard or a plug-in.",
        CHECKPOINTS,
        flag="--logger",
        kind="names",
        metavar="NAME",
        complete="logger",
        resume_free=True,
    )


@dataclass(frozen=True)
class RuntimeConfig:
    """How and where the run executes; with the same seed and deterministic, it repeats."""

    # drawn and recorded when not given, so config.yaml replays the run
    seed: int | None = option(
        None,
        "Seed: a repeatable run (split, shuffle, init).",
        RUNTIME,
        low=0,
        high=2**63,
        high_open=True,
        metavar="N",
    )
    # torch's deterministic algorithms (identical weights on a replay)
    deterministic: bool = option(False, "Deterministic algorithms.", RUNTIME)
    # fp32, or mixed precision bf16 / fp16 (fp32 master weights)
    precision: str = option("fp32", "Mixed: bf16, or fp16 (GPU).", RUNTIME, choices=("fp32", "bf16", "fp16"))
    device: str = option(
        "auto", "auto, cpu, cuda[:i] or mps.", RUNTIME, kind="device", metavar="DEVICE", resume_free=True
    )
    # data-loader processes (None: none with the RAM cache, else up to 4)
    workers: int | None = option(
        None, "Loader processes (0 if cached, else <= 4).", RUNTIME, low=0, resume_free=True
    )
    # processes under torchrun (DistributedDataParallel), None: this one
    nproc: int | None = option(
        None, "Train over N processes (torchrun, DDP).", RUNTIME, low=1, high=1024, resume_free=True
    )
    # under DDP: BatchNorm statistics over the whole batch of every process (SyncBatchNorm), so
    # --bs divided by the process count normalises as one process does; nothing in one process
    sync_bn: bool = option(False, "Under --nproc: BatchNorm over all processes.", RUNTIME, hidden=True)
    # CPU runs only: the batched weight gradient of small convolutions (learnkit.conv_grad, the
    # SmallConvGrad callback: a resnet18 step at 32 px about 2x faster; it acts on no convolution
    # with more than 4 output positions, so not at all past ~128 px) and a thread count that follows
    # the machine's load (CpuThreads); bench/README.md table F. Off: torch's own kernels and threads.
    cpu_tuning: bool = option(
        True, "CPU: batched small-conv gradients, load-following threads.", RUNTIME,
        flag="--cpu-tuning/--no-cpu-tuning", resume_free=True, hidden=True,
    )  # fmt: skip
    # torch.compile the model (a warning and eager mode where it cannot); the same computation
    compile: bool = option(False, "torch.compile the model (eager if it cannot).", RECIPE, resume_free=True)


SECTIONS: dict[str, type] = {
    "data": DataConfig,
    "model": ModelConfig,
    "schedule": ScheduleConfig,
    "checkpoint": CheckpointConfig,
    "runtime": RuntimeConfig,
}


def schema(command: str) -> dict[str, tuple[str, dataclasses.Field]]:
    """Every option of ``command``: its name -> (the config key's section, the field), in the
    sections' order (``model.unet`` for the U-Net's decoder options)."""
    _kind(command)
    out: dict[str, tuple[str, dataclasses.Field]] = {}
    groups = [(name, cls) for name, cls in SECTIONS.items()]
    groups.insert(2, ("model.unet", UnetConfig))
    for section, cls in groups:
        for f in fields(cls):
            o = opt_of(f)
            if o is not None and o.applies(command):
                out[f.name] = (section, f)
    return out


def default_for(f: dataclasses.Field, command: str) -> Any:
    """Field ``f``'s default for ``command``: its per-command default, else its own."""
    o = opt_of(f)
    if o is not None and command in o.defaults:
        return o.defaults[command]
    return f.default


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
        """A config from option names (``bs=32, lr=1e-3, blur=True`` ...) for ``command``; the
        options not given take ``command``'s defaults. A name that is no option of ``command`` is a
        UsageError naming it; ``None`` for a field whose default is not None (``monitor``) means
        that default."""
        return cls.merge(command, {}, values)

    @classmethod
    def merge(cls, command: str, base: dict[str, Any], given: dict[str, Any]) -> RunConfig:
        """``command``'s defaults < ``base`` (a config file's mapping) < ``given`` (option name ->
        value, from the command line), then one validation of the whole: the same bounds and
        messages whichever layer gave a value (a UsageError, exit 2)."""
        options = schema(command)
        unknown = sorted(set(given) - set(options))
        if unknown:
            raise UsageError(f"{_not_for(unknown, command)}")
        if not isinstance(base, dict):
            raise UsageError("a config is a mapping of sections (data, model, schedule, checkpoint, runtime)")
        nested = {k: dict(v) if isinstance(v, dict) else v for k, v in base.items()}
        nested.setdefault("command", command)
        for name, value in given.items():
            section = options[name][0]
            if section == "model.unet":
                model = nested.setdefault("model", {})
                if isinstance(model, dict):
                    model["unet"] = {**(model.get("unet") or {}), name: value}
                continue
            target = nested.setdefault(section, {})
            if not isinstance(target, dict):
                raise UsageError(f"config key {section!r} must be a mapping")
            target[name] = value
        return cls.from_dict(nested, command)

    @classmethod
    def from_dict(cls, d: dict[str, Any], command: str | None = None) -> RunConfig:
        """The config written by :meth:`to_dict` (or read from YAML); ``command``: the one that must
        have made it. Keys not given take the command's defaults; an unknown key, a key that does
        not apply to the command, a bad value or another command's config is a UsageError."""
        if not isinstance(d, dict):
            raise UsageError("a config is a mapping of sections (data, model, schedule, checkpoint, runtime)")
        made_by = d.get("command", command or "fit")
        if made_by not in COMMANDS:
            raise UsageError(f"config key 'command': {made_by!r} is not one of {', '.join(COMMANDS)}")
        if command is not None and made_by != command:
            raise UsageError(f"the config is for `learnkit {made_by}` (command: {made_by}), not `{command}`")
        # versions and segments (the --epochs of each training of the run) are informative
        unknown = sorted(set(d) - {"command", "versions", "segments", *SECTIONS})
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
        """Read a whole YAML config file (``config.yaml`` of a run); a UsageError if it cannot be used."""
        return cls.from_dict(read_config_file(file), command)

    def validate(self) -> None:
        """UsageError for values no run can take: each option's bounds from the schema, then the
        rules that join several options."""
        for name, (section, f) in schema(self.command).items():
            holder = self.model.unet if section == "model.unet" else getattr(self, section)
            check_value(getattr(holder, name), opt_of(f), f"{section}.{name}", name)
        if self.schedule.kind != COMMANDS[self.command]:
            raise UsageError(
                f"config key 'schedule.kind': `{self.command}` trains with {COMMANDS[self.command]!r}"
            )
        missing = [n for n, v in (("DATA", self.data.data), ("--arch", self.model.arch)) if v is None]
        if missing:
            raise UsageError(f"missing {' and '.join(missing)}: give it on the command line or in --config")
        if self.schedule.mixup and self.schedule.cutmix:
            raise UsageError("give --mixup or --cutmix, not both")
        if self.checkpoint.resume is not None and self.checkpoint.init_from is not None:
            raise UsageError("give --resume or --init-from, not both")
        y_range = self.model.unet.y_range if self.model.unet is not None else None
        if y_range is not None and not y_range[0] < y_range[1]:
            raise UsageError(f"--y-range (model.unet.y_range): {list(y_range)}: LO must be below HI")
        self.data.augment().settings()  # knob values in range
        from learnkit.loggers import check_names

        check_names(self.checkpoint.loggers)

    def with_seed(self) -> RunConfig:
        """This config with a concrete seed: the given one, else a fresh draw (recorded, so a
        replay of the saved config repeats the run)."""
        if self.runtime.seed is not None:
            return self
        import secrets

        return replace(self, runtime=replace(self.runtime, seed=secrets.randbelow(2**31)))

    # --- writing ---
    def to_dict(self) -> dict[str, Any]:
        """The config as plain data (what ``config.yaml`` and the checkpoints' ``config`` hold).

        Every option of the command is there, defaults included, and no other: a classifier's
        config has no ``model.unet``, a constant-rate one no 1cycle parameters, a U-Net's no
        multi-label ones.
        """
        own = schema(self.command)
        out: dict[str, Any] = {"command": self.command}
        for name in SECTIONS:
            section = dataclasses.asdict(getattr(self, name))
            keep = {k: v for k, v in section.items() if k in own or k == "kind" or (k == "unet" and v)}
            if "unet" in keep:
                keep["unet"] = {k: v for k, v in keep["unet"].items() if k in own}
            out[name] = _plain(keep)
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
        for name, (section, _) in schema(self.command).items():
            holder = self.model.unet if section == "model.unet" else getattr(self, section)
            out[name] = getattr(holder, name)
        return out

    def diff(self, other: RunConfig) -> list[str]:
        """The dotted names of the fields whose values differ between ``self`` and ``other``."""
        a, b = self.flat(), other.flat()
        return sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))


def flat_names(command: str) -> dict[str, str]:
    """Option name -> the section holding it, for ``command`` (``unet`` for the U-Net's own)."""
    return {name: ("unet" if s == "model.unet" else s) for name, (s, _) in schema(command).items()}


def parse_option(name: str, value: Any, command: str = "fit") -> Any:
    """Option ``name`` of ``command`` from text (or a YAML value), converted and checked as a config
    checks it: the same conversions, bounds and messages (a UsageError naming the option).

    Example:
        >>> parse_option("valid_pct", "0.2"), parse_option("lr", "1e-5:1e-3")
        (0.2, '1e-05:0.001')
    """
    options = schema(command)
    if name not in options:
        raise UsageError(_not_for([name], command))
    section, f = options[name]
    key = f"{section}.{name}"
    value = _coerce(value, f, key)
    check_value(value, opt_of(f), key, name)
    return value


def read_config_file(file: str | Path) -> dict[str, Any]:
    """The mapping a YAML config file holds (not yet checked against a command): a UsageError when
    it cannot be read or is not a YAML mapping."""
    from learnkit.safe_yaml import read_yaml_file

    d = read_yaml_file(file)  # bounded: bytes, alias expansion, nesting (learnkit.safe_yaml)
    if d is None:
        return {}
    if not isinstance(d, dict):
        raise UsageError("a config is a mapping of sections (data, model, schedule, checkpoint, runtime)")
    return d


# --- helpers ---
def _kind(command: str) -> str:
    if command not in COMMANDS:
        raise UsageError(f"unknown training command {command!r}: use {', '.join(COMMANDS)}")
    return COMMANDS[command]


def _not_for(names: list[str], command: str) -> str:
    """The message for options ``command`` does not have: which commands do, when some do."""
    where = []
    for name in names:
        owners = [c for c in COMMANDS if name in schema(c)]
        where.append(f"{name} ({', '.join(owners)} only)" if owners else name)
    return f"option(s) that do not apply to `learnkit {command}`: {', '.join(where)}"


def _section(cls: type, raw: dict[str, Any], name: str, command: str) -> Any:
    """``cls(**raw)`` with each value checked against the field's type and the keys missing from
    ``raw`` at the command's defaults; a key that is no option of ``command`` is refused."""
    own = schema(command)
    allowed = {f.name: f for f in fields(cls)}
    values = {}
    for key, value in raw.items():
        f = allowed.get(key)
        if key == "unet" and cls is ModelConfig and command == "unet":
            if value is not None and not isinstance(value, dict):
                raise UsageError(f"config key '{name}.unet' must be a mapping")
            values[key] = _section(UnetConfig, value or {}, f"{name}.unet", command)
        elif key == "kind" and cls is ScheduleConfig:
            values[key] = value
        elif f is None or key not in own:
            owners = [c for c in COMMANDS if f is not None and key in schema(c)]
            if owners:
                raise UsageError(
                    f"config key '{name}.{key}' does not apply to `learnkit {command}` "
                    f"({', '.join(owners)} only)"
                )
            raise UsageError(f"unknown config key '{name}.{key}' for `learnkit {command}`")
        else:
            values[key] = _coerce(value, f, f"{name}.{key}")
    for f in fields(cls):
        if f.name not in values and f.name in own:
            default = default_for(f, command)
            values[f.name] = _coerce(default, f, f"{name}.{f.name}") if f.name in ("lr", "wd") else default
    if cls is ScheduleConfig:
        values.setdefault("kind", COMMANDS[command])
    if cls is ModelConfig and command == "unet" and "unet" not in values:
        values["unet"] = _section(UnetConfig, {}, f"{name}.unet", command)
    return cls(**values)


def _coerce(value: Any, f: dataclasses.Field, key: str) -> Any:
    """``value`` as field ``f`` holds it (the annotation is a string: ``from __future__``); text
    from the command line and YAML values go through the same conversions."""
    kind = str(f.type)
    o = opt_of(f)
    where = f"{flag_of(f.name, o)} ({key})" if o is not None else f"config key {key!r}"
    if value is None:
        if "None" in kind:
            return None
        if f.default is not dataclasses.MISSING and f.default is not None:
            return f.default  # e.g. monitor: None means the default, valid_loss
        raise UsageError(f"config key {key!r} cannot be empty")
    try:
        if o is not None and o.kind in CONVERTERS:
            return CONVERTERS[o.kind](value, where)
        if o is not None and o.kind == "names":
            names = value.replace(",", " ").split() if isinstance(value, str) else list(value)
            if not all(isinstance(n, str) for n in names):
                raise TypeError
            return tuple(dict.fromkeys(["csv", *names]))  # history.csv is the run folder's record
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
        if kind.startswith("float"):
            if isinstance(value, bool):
                raise TypeError
            return float(value)
        if kind.startswith("str"):
            if not isinstance(value, str | int | float) or isinstance(value, bool):
                raise TypeError
            return str(value)
    except UsageError:
        raise
    except (TypeError, ValueError, OverflowError):
        raise UsageError(f"{where}: {value!r} is not a valid {kind}") from None
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


# fields a resumed run may change: where and how it runs, not what it computes (epochs: see
# learnkit.jobs.train.run, a larger value extends a finished run)
RESUME_FREE = frozenset(
    f"{section}.{name}"
    for command in COMMANDS
    for name, (section, f) in schema(command).items()
    if opt_of(f).resume_free
)

__all__ = [
    "CheckpointConfig",
    "DataConfig",
    "ModelConfig",
    "RESUME_FREE",
    "RunConfig",
    "RuntimeConfig",
    "ScheduleConfig",
    "UnetConfig",
    "default_for",
    "flat_names",
    "lr_text",
    "lr_value",
    "parse_option",
    "read_config_file",
    "schema",
]
