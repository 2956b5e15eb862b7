"""learnkit: the fastai v1 Learner for today's PyTorch.

Names are exported lazily (PEP 562) so that ``import learnkit`` -- and so the command line's
``--help`` and TAB completion -- import no torch until a name that needs it is used.

``from learnkit import *`` gives a notebook what fastai v1's ``from fastai.vision import *`` gives
it (the v1 names above plus ``torch``, ``nn``, ``F``, ``np``, ``partial``, ``Path``, ``plt`` and
``models``); it imports torch, as v1's does.

Example:
    >>> from learnkit import Learner, DataBunch  # torch is imported here, not before
"""

from importlib import import_module

from learnkit.version import __version__

# public name -> module that defines it
_EXPORTS = {
    "Learner": "learnkit.learner",
    "load_learner": "learnkit.vision.learners",
    "lr_range": "learnkit.optim",
    "OptimWrapper": "learnkit.optim",
    "Callback": "learnkit.callback",
    "LearnerCallback": "learnkit.callback",
    "CallbackHandler": "learnkit.callback",
    "RunState": "learnkit.callback",
    "Event": "learnkit.callback",
    "CancelBatch": "learnkit.callback",
    "CancelEpoch": "learnkit.callback",
    "CancelFit": "learnkit.callback",
    "Recorder": "learnkit.recorder",
    "add_metrics": "learnkit.recorder",
    "listify": "learnkit.core",
    "split_model": "learnkit.layers",
    "RecordOnCPU": "learnkit.callback",
    "fit": "learnkit.loop",
    "train_epoch": "learnkit.loop",
    "validate": "learnkit.loop",
    "get_preds": "learnkit.loop",
    "loss_batch": "learnkit.loop",
    "accuracy": "learnkit.metrics",
    "error_rate": "learnkit.metrics",
    "top_k_accuracy": "learnkit.metrics",
    "DataBunch": "learnkit.data",
    "DatasetType": "learnkit.data",
    "ImageDataBunch": "learnkit.data",
    "SegmentationDataBunch": "learnkit.data",
    "fit_one_cycle": "learnkit.callbacks.one_cycle",
    "OneCycleScheduler": "learnkit.callbacks.one_cycle",
    "lr_find": "learnkit.callbacks.lr_finder",
    "LRFinder": "learnkit.callbacks.lr_finder",
    "SuggestedLRs": "learnkit.lr_suggest",
    "MixUpCallback": "learnkit.callbacks.mixup",
    "GradientClipping": "learnkit.callbacks.clip_grad",
    "SaveModelCallback": "learnkit.callbacks.tracking",
    "EarlyStoppingCallback": "learnkit.callbacks.tracking",
    "CSVLogger": "learnkit.callbacks.csv_logger",
    "TerminateOnNaN": "learnkit.callbacks.terminate_on_nan",
    "DistributedTrainer": "learnkit.callbacks.distributed",
    "StopOnSignal": "learnkit.interrupt",
    "catch_signals": "learnkit.interrupt",
    "annealing_cos": "learnkit.schedules",
    "annealing_linear": "learnkit.schedules",
    "annealing_exp": "learnkit.schedules",
    "annealing_no": "learnkit.schedules",
    "ClassificationInterpretation": "learnkit.interpret",
    "unet_learner": "learnkit.vision.learners",
    "DynamicUnet": "learnkit.vision.unet",
    "dice": "learnkit.seg_metrics",
    "iou": "learnkit.seg_metrics",
    "pixel_accuracy": "learnkit.seg_metrics",
    "segmentation_metrics": "learnkit.seg_metrics",
    "cnn_learner": "learnkit.vision.learners",
    "create_cnn": "learnkit.vision.learners",
    # fastai v1's data and image vocabulary (what ``from fastai.vision import *`` gives a notebook)
    "get_transforms": "learnkit.data.transforms",
    "imagenet_stats": "learnkit.data.transforms",
    "cifar_stats": "learnkit.data.transforms",
    "mnist_stats": "learnkit.data.transforms",
    "open_image": "learnkit.vision.image",
    "open_mask": "learnkit.vision.image",
    "Image": "learnkit.vision.image",
    "ImageSegment": "learnkit.vision.image",
    "accuracy_thresh": "learnkit.metrics",
    "fbeta": "learnkit.metrics",
}

# modules and objects a v1 notebook gets from its star import: name -> (module, attribute or None)
_LIBRARIES = {
    "models": ("learnkit.vision.models", None),  # torchvision's model functions, v1's namespace
    "torch": ("torch", None),
    "nn": ("torch.nn", None),
    "F": ("torch.nn.functional", None),
    "np": ("numpy", None),
    "plt": ("matplotlib.pyplot", None),  # importing pyplot leaves the backend as it is
    "partial": ("functools", "partial"),
    "Path": ("pathlib", "Path"),
}


__all__ = ["__version__", *_EXPORTS, *_LIBRARIES]


def __getattr__(name: str):
    if name in _LIBRARIES:
        module, attr = _LIBRARIES[name]
        value = import_module(module) if attr is None else getattr(import_module(module), attr)
    else:
        module = _EXPORTS.get(name)
        if module is None:
            raise AttributeError(f"module 'learnkit' has no attribute {name!r}")
        value = getattr(import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
