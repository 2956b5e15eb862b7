"""Vision models from the zoo: transfer-learning heads (``cnn_learner``) and specs that rebuild models."""

from learnkit.vision.cnn import (
    AdaptiveConcatPool2d,
    cnn_learner,
    create_body,
    create_cnn,
    create_cnn_model,
    create_head,
    num_features_model,
)
from learnkit.vision.models import build_model, model_spec_for

__all__ = [
    "AdaptiveConcatPool2d",
    "build_model",
    "cnn_learner",
    "create_body",
    "create_cnn",
    "create_cnn_model",
    "create_head",
    "model_spec_for",
    "num_features_model",
]
