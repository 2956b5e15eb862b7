"""The job ``learnkit unet`` runs: train a U-Net on segmentation data with 1cycle, options in, a dict out.

Example:
    >>> from learnkit.jobs.unet import train_unet
    >>> result = train_unet("sample:shapes-seg", "resnet18", epochs=3, seed=0, path="run")  # doctest: +SKIP
    >>> result["dice"], result["checkpoint"]  # doctest: +SKIP
    (0.83, 'run/models/last.safetensors')
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from learnkit import runner
from learnkit.errors import UsageError

BEST = "best"  # the checkpoint kept at the monitor's best epoch, when a monitor is given

# Defaults measured on sample:shapes-seg (64 px, 160 training images) with resnet18 from random
# weights on 2 CPU cores: bs 8 gives 20 steps an epoch, and a 3-epoch cycle peaking at 1e-3 reaches
# a mean dice of about 0.9 (3e-3 and 1e-2 were no better; norm_type "batch" was slower to learn).
DEFAULTS: dict[str, Any] = {"lr": 1e-3, "bs": 8, "size": 64, "epochs": 3}


def train_unet(
    data: str | Path,
    arch: str,
    epochs: int = DEFAULTS["epochs"],
    lr: Any = DEFAULTS["lr"],
    wd: Any = None,
    *,
    bs: int = DEFAULTS["bs"],
    size: int = DEFAULTS["size"],
    seed: int | None = None,
    path: str | Path = ".",
    workers: int = 0,
    device: str = "auto",
    valid_pct: float | None = None,
    pretrained: str | Path | None = None,
    precision: str = "fp32",
    blur: bool = False,
    blur_final: bool = True,
    self_attention: bool = False,
    bottle: bool = False,
    last_cross: bool = True,
    norm_type: str | None = None,
    y_range: Sequence[float] | None = None,
    monitor: str | None = None,
    reporter: Any = None,
    **one_cycle: Any,
) -> dict[str, Any]:
    """Train a U-Net over ``arch`` on segmentation ``data`` for one cycle of ``epochs`` epochs.

    Args:
        data: a segmentation folder (``images/``, ``masks/``, ``codes.txt``) or ``sample:shapes-seg``.
        arch: a zoo encoder with a cut (``resnet34``, ``mobilenet_v3_small``, ...).
        lr, wd: the cycle's peak rate and the weight decay (float, per-group sequence or slice).
        valid_pct: share of the pairs held out for validation (0.2 when None), drawn with ``seed``.
        pretrained: a local state-dict file for the encoder (which then starts frozen).
        blur, blur_final, self_attention, bottle, last_cross, norm_type, y_range: the
            :class:`~learnkit.vision.unet.DynamicUnet`'s options.
        monitor: ``dice``, ``iou``, ``pixel_accuracy`` or ``valid_loss``: also keep ``best``.
        reporter: progress reporter (see ``ProgressCallback``), or None.
        one_cycle: ``moms``, ``pct_start``, ``div_factor``, ``final_div`` for ``fit_one_cycle``.

    Returns:
        The final epoch's ``train_loss``, ``valid_loss``, ``dice`` (mean over the classes),
        ``iou`` and ``pixel_accuracy`` on top, ``dice_per_class`` and ``iou_per_class`` (by class
        name), ``classes``, ``epochs``, ``history`` (one row per epoch), ``checkpoint`` (``last``)
        and, with a monitor, ``best``.
    """
    from learnkit.jobs.train import run_fit
    from learnkit.seg_metrics import segmentation_metrics
    from learnkit.vision.unet_learner import encoder_cut, unet_learner

    runner._check_arch(arch, size)
    encoder_cut(arch)  # an arch that cannot serve fails before the data is read
    metrics = segmentation_metrics()
    names = ["valid_loss", *(m.name for m in metrics)]
    if monitor is not None and monitor not in names:
        raise UsageError(f"cannot monitor {monitor!r}; choose one of {', '.join(names)}")
    dev = runner.resolve_device(device)
    runner.check_run_folder(path)
    runner.seed_everything(seed)
    bunch = runner.load_data(
        data,
        bs=bs,
        size=size,
        seed=seed,
        workers=workers,
        device=dev,
        valid_pct=valid_pct,
        task="segmentation",
    )
    learn = unet_learner(
        bunch,
        arch,
        pretrained=pretrained,
        blur=blur,
        blur_final=blur_final,
        self_attention=self_attention,
        bottle=bottle,
        last_cross=last_cross,
        norm_type=norm_type,
        y_range=y_range,
        metrics=metrics,
        path=path,
    )
    learn.quiet = True  # the command reports through its own reporter, never the default table
    runner.set_precision(learn, precision)
    result = run_fit(
        learn,
        epochs,
        lr,
        wd,
        schedule="one_cycle",
        reporter=reporter,
        monitor=monitor,
        save_best=monitor is not None,
        **{k: v for k, v in one_cycle.items() if v is not None},
    )
    dice, iou = metrics[0], metrics[1]
    result.update(
        dice_per_class=dice.per_class(bunch.classes),
        iou_per_class=iou.per_class(bunch.classes),
        classes=list(bunch.classes),
    )
    if monitor is not None:
        result["best"] = str(Path(learn.path) / learn.model_dir / f"{BEST}.safetensors")
    return result
