"""`MLP` and `Perceptron`: fully connected classifiers."""

from __future__ import annotations

from collections.abc import Sequence

from flax import nnx

from nnjax import layers
from nnjax.models.base import Stack


def _classifier_activation(value, num_classes: int):
    if value == "auto":
        return "sigmoid" if num_classes == 1 else "softmax"
    return value


class MLP(Stack):
    """A multilayer perceptron: Flatten, then `Dense(units, activation)` (+ Dropout) per hidden layer, then the classifier.

    Parameters at the default size, for 28x28 inputs (MNIST, Fashion-MNIST): **101,770**
    (`784 * 128 + 128` hidden, `128 * 10 + 10` output); the quickstart's model.

    Args:
      hidden_units: width of each hidden layer ((128,)).
      num_classes: outputs (10).
      activation: hidden activation ("relu").
      dropout: dropout rate after each hidden layer (0: none).
      classifier_activation: "softmax" (probabilities, for `loss="sparse_categorical_crossentropy"`),
        None for logits, or "auto" (sigmoid for one output, softmax otherwise).

    Input `(batch, ...)`, output `(batch, num_classes)`.

    Example:
      >>> model = nj.Model(nj.models.MLP(), input_shape=(28, 28))
      >>> model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    """

    def __init__(self, hidden_units: Sequence[int] = (128,), num_classes: int = 10, activation="relu", dropout: float = 0.0,
                 classifier_activation="auto", **kwargs):
        super().__init__(**kwargs)
        stack = [layers.Flatten()]
        for units in hidden_units:
            stack.append(layers.Dense(units, activation=activation))
            if dropout:
                stack.append(layers.Dropout(dropout))
        stack.append(layers.Dense(num_classes, activation=_classifier_activation(classifier_activation, num_classes)))
        self.stack = nnx.List(stack)


class Perceptron(MLP):
    """Rosenblatt's perceptron as a classifier: one `Dense` layer on the flattened input (no hidden layer).

    Parameters at the default size, for 28x28 inputs: **7,850** (`784 * 10 + 10`).

    Args:
      num_classes: outputs (10; 1 gives a sigmoid binary classifier with "auto").
      classifier_activation: "auto", "softmax", "sigmoid" or None (logits).
    """

    def __init__(self, num_classes: int = 10, classifier_activation="auto", **kwargs):
        super().__init__(hidden_units=(), num_classes=num_classes, classifier_activation=classifier_activation, **kwargs)


__all__ = ["MLP", "Perceptron"]
