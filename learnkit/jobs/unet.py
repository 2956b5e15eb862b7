"""The U-Net of ``learnkit unet``: a DynamicUnet over a zoo encoder on segmentation data.

:func:`learnkit.jobs.train.run` trains it like any other run (a :class:`RunConfig` whose
``model.unet`` is set); this module builds its Learner and adds the per-class scores to the result.

Example:
    >>> from learnkit.jobs.config import RunConfig
    >>> from learnkit.jobs.train import run
    >>> cfg = RunConfig.from_flat("unet", data="sample:shapes-seg", arch="resnet18", seed=0, path="run",
    ...                           **DEFAULTS)
    >>> result = run(cfg)  # doctest: +SKIP
    >>> result["dice"], result["checkpoint"]  # doctest: +SKIP
    (0.83, 'run/models/last.safetensors')
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from learnkit.jobs import setup
from learnkit.jobs.config import RunConfig

if TYPE_CHECKING:
    from learnkit.learner import Learner

# Defaults measured on sample:shapes-seg (64 px, 160 training images) with resnet18 from random
# weights on 2 CPU cores: bs 8 gives 20 steps an epoch, and a 3-epoch cycle peaking at 1e-3 reaches
# a mean dice of about 0.9 (3e-3 and 1e-2 were no better; norm_type "batch" was slower to learn).
DEFAULTS: dict[str, Any] = {"lr": 1e-3, "bs": 8, "size": 64, "epochs": 3}


def build_unet_learner(config: RunConfig, device: str = "auto") -> Learner:
    """The U-Net Learner of ``config`` (its ``model.unet`` options), with the segmentation metrics
    (dice, iou, pixel_accuracy), on ``device``; channels-last on CUDA."""
    from learnkit.pretrained import resolve_pretrained
    from learnkit.seg_metrics import segmentation_metrics
    from learnkit.vision.learners import unet_learner
    from learnkit.vision.unet_learner import encoder_cut

    d, r, u = config.data, config.runtime, config.model.unet
    arch = str(config.model.arch)
    setup.check_arch(arch, d.size)
    encoder_cut(arch)  # an arch that cannot serve fails before the data is read
    dev = setup.resolve_device(device)
    setup.seed_everything(r.seed)
    bunch = setup.load_data(
        d.data, bs=d.bs, size=d.size, seed=r.seed, workers=r.workers, device=dev, valid_pct=d.valid_pct,
        task="segmentation", cache=d.cache, augment=d.augment().settings(),
    )  # fmt: skip
    learn = unet_learner(
        bunch,
        arch,
        pretrained=resolve_pretrained(config.model.pretrained, arch),
        blur=u.blur,
        blur_final=u.blur_final,
        self_attention=u.self_attention,
        bottle=u.bottle,
        last_cross=u.last_cross,
        norm_type=None if u.norm_type == "none" else u.norm_type,
        y_range=u.y_range,
        metrics=segmentation_metrics(),
        path=config.checkpoint.path,
    )
    learn.quiet = True  # the command reports through its own reporter, never the default table
    learn.restart_epochs = False  # a run's epochs (history.csv, resume) count on across its fits
    setup.set_precision(learn, r.precision)
    if dev.type == "cuda":
        learn.to_channels_last()
    setup.add_cpu_conv_grad(learn, dev)
    return learn


def segmentation_result(learn: Learner) -> dict[str, Any]:
    """``dice_per_class`` and ``iou_per_class`` (by class name) of the last validation, and ``classes``."""
    from learnkit.seg_metrics import ConfusionMetric

    found = {m.name: m for m in learn.metrics if isinstance(m, ConfusionMetric)}
    classes = list(learn.data.classes)
    return {
        "dice_per_class": found["dice"].per_class(classes) if "dice" in found else {},
        "iou_per_class": found["iou"].per_class(classes) if "iou" in found else {},
        "classes": classes,
    }
