"""`LeNet`: LeCun et al.'s LeNet-5 convolutional network (1998)."""

from __future__ import annotations

from flax import nnx

from nnjax import layers
from nnjax.layers.utils import check_choice
from nnjax.models.base import Stack
from nnjax.models.mlp import _classifier_activation


class LeNet(Stack):
    """LeNet-5: conv(6, 5x5, same) - pool - conv(16, 5x5) - pool - dense(120) - dense(84) - classifier.

    The classic network for 28x28 (or 32x32) grey images. Parameters at the default size, for
    28x28x1 inputs: **61,706** (156 + 2,416 + 48,120 + 10,164 + 850), as in the paper's
    C1/C3/C5/F6/output layers.

    Args:
      num_classes: outputs (10).
      activation: "relu" (the modern choice) or "tanh" (the paper's).
      pooling: "max" or "average" (the paper's subsampling).
      classifier_activation: "softmax" by default ("auto"), None for logits.

    Input `(batch, height, width, channels)`, output `(batch, num_classes)`.
    """

    def __init__(self, num_classes: int = 10, activation="relu", pooling: str = "max", classifier_activation="auto", **kwargs):
        super().__init__(**kwargs)
        pooling = check_choice(pooling, ("max", "average"), "pooling", f'LeNet "{self.name}"')
        pool = layers.MaxPooling2D if pooling == "max" else layers.AveragePooling2D
        self.stack = nnx.List([
            layers.Conv2D(6, 5, padding="same", activation=activation),
            pool(2),
            layers.Conv2D(16, 5, activation=activation),
            pool(2),
            layers.Flatten(),
            layers.Dense(120, activation=activation),
            layers.Dense(84, activation=activation),
            layers.Dense(num_classes, activation=_classifier_activation(classifier_activation, num_classes)),
        ])
        self._ndim = 4


__all__ = ["LeNet"]
