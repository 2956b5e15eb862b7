"""Vision models from the zoo: transfer-learning heads (``cnn_learner``) and specs that rebuild models.

``cnn_learner`` and ``create_cnn`` are exported lazily (PEP 562) from :mod:`learnkit.vision.learners`,
so importing a model-building module (``learnkit.vision.models``) never imports the Learner.
"""

from typing import Any

import learnkit
from learnkit.vision.cnn import (
    AdaptiveConcatPool2d,
    create_body,
    create_cnn_model,
    create_head,
    num_features_model,
)
from learnkit.vision.models import build_model, model_spec_for

__all__ = [
    "AdaptiveConcatPool2d",
    "build_model",
    "cnn_learner",  # noqa: F822 - a lazy alias: see __getattr__
    "create_body",
    "create_cnn",  # noqa: F822 - a lazy alias: see __getattr__
    "create_cnn_model",
    "create_head",
    "model_spec_for",
    "num_features_model",
]


# ``from learnkit.vision import *`` gives what ``from learnkit import *`` gives (fastai v1's
# ``from fastai.vision import *``), and the model builders above
__all__ += [n for n in learnkit.__all__ if n not in __all__]


def __getattr__(name: str) -> Any:
    """PEP 562: the learner factories live in :mod:`learnkit.vision.learners`; learnkit's other
    names (its ``__all__``) come from :mod:`learnkit`."""
    if name in ("cnn_learner", "create_cnn"):
        import learnkit.vision.learners as learners

        return getattr(learners, name)
    if name in learnkit.__all__:
        return getattr(learnkit, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
