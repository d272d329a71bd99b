"""Losses by Keras name, as pure functions.

A loss maps `(y_true, y_pred)` to per-element losses, shape `y_pred.shape[:-1]`
for class losses or `y_true.shape` reduced over the last axis for regression
losses, as Keras does. `reduce_loss` turns them into one weighted mean.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax.numpy as jnp
import optax

EPSILON = 1e-7  # Keras's backend epsilon: probabilities are clipped to [eps, 1 - eps].


def at_least_f32(a):
    """Upcasts bfloat16/float16 (and integers) to float32; float64 stays float64."""
    a = jnp.asarray(a)
    return a.astype(jnp.promote_types(a.dtype, jnp.float32)) if a.dtype != jnp.float64 else a


@dataclasses.dataclass(frozen=True)
class Loss:
    """A named loss: `fn(y_true, y_pred) -> per-element losses`.

    Attributes:
      name: the Keras name, e.g. "sparse_categorical_crossentropy".
      fn: the pure per-element loss.
      sparse_labels: True when `y_true` holds integer class ids, so nnjax checks
        them on the host against the model's number of outputs.
      kind: "sparse", "categorical", "binary" or "regression"; picks the
        accuracy variant for the metric name "accuracy".
    """

    name: str
    fn: Callable
    sparse_labels: bool = False
    kind: str = "regression"

    def __call__(self, y_true, y_pred):
        return self.fn(y_true, y_pred)


def sparse_categorical_crossentropy(y_true, y_pred, from_logits=False, axis=-1):
    """Cross-entropy with integer labels.

    Args:
      y_true: integer class ids, shape `(...)`.
      y_pred: probabilities (or logits with `from_logits=True`), shape `(..., C)`.

    Returns:
      Per-element losses, shape `(...)`.
    """
    labels = jnp.asarray(y_true)
    if labels.ndim == y_pred.ndim:  # Keras accepts labels of shape (..., 1)
        labels = jnp.squeeze(labels, axis)
    labels = labels.astype(jnp.int32)
    if from_logits:
        return optax.softmax_cross_entropy_with_integer_labels(at_least_f32(y_pred), labels)
    probs = jnp.clip(at_least_f32(y_pred), EPSILON, 1.0 - EPSILON)
    log_probs = jnp.log(probs / jnp.sum(probs, axis=axis, keepdims=True))
    return -jnp.take_along_axis(log_probs, labels[..., None], axis=-1)[..., 0]


def categorical_crossentropy(y_true, y_pred, from_logits=False, label_smoothing=0.0, axis=-1):
    """Cross-entropy with one-hot (or soft) labels of shape `(..., C)`."""
    y_true = jnp.asarray(y_true, jnp.float32)
    if label_smoothing:
        num_classes = y_true.shape[-1]
        y_true = y_true * (1.0 - label_smoothing) + label_smoothing / num_classes
    if from_logits:
        return optax.softmax_cross_entropy(at_least_f32(y_pred), y_true)
    probs = jnp.clip(at_least_f32(y_pred), EPSILON, 1.0 - EPSILON)
    probs = probs / jnp.sum(probs, axis=axis, keepdims=True)
    return -jnp.sum(y_true * jnp.log(probs), axis=axis)


def binary_crossentropy(y_true, y_pred, from_logits=False, label_smoothing=0.0, axis=-1):
    """Binary cross-entropy averaged over the last axis, as Keras does."""
    y_true = jnp.asarray(y_true, jnp.float32)
    y_pred = at_least_f32(y_pred)
    if y_true.ndim == y_pred.ndim - 1:
        y_true = y_true[..., None]
    if label_smoothing:
        y_true = y_true * (1.0 - label_smoothing) + 0.5 * label_smoothing
    if from_logits:
        per = optax.sigmoid_binary_cross_entropy(y_pred, y_true)
    else:
        p = jnp.clip(y_pred, EPSILON, 1.0 - EPSILON)
        per = -(y_true * jnp.log(p) + (1.0 - y_true) * jnp.log1p(-p))
    return jnp.mean(per, axis=axis)


def _match(y_true, y_pred):
    y_true = jnp.asarray(y_true, jnp.float32)
    if y_true.ndim == y_pred.ndim - 1:
        y_true = y_true[..., None]
    return y_true, at_least_f32(y_pred)


def mean_squared_error(y_true, y_pred):
    """Mean over the last axis of the squared error."""
    y_true, y_pred = _match(y_true, y_pred)
    return jnp.mean(jnp.square(y_pred - y_true), axis=-1)


def mean_absolute_error(y_true, y_pred):
    """Mean over the last axis of the absolute error."""
    y_true, y_pred = _match(y_true, y_pred)
    return jnp.mean(jnp.abs(y_pred - y_true), axis=-1)


def huber(y_true, y_pred, delta=1.0):
    """Huber loss averaged over the last axis."""
    y_true, y_pred = _match(y_true, y_pred)
    return jnp.mean(optax.huber_loss(y_pred, y_true, delta=delta), axis=-1)


def hinge(y_true, y_pred):
    """Hinge loss for labels in {-1, 1} (or {0, 1}, converted as Keras does)."""
    y_true, y_pred = _match(y_true, y_pred)
    y_true = jnp.where(y_true == 0, -1.0, y_true)
    return jnp.mean(jnp.maximum(1.0 - y_true * y_pred, 0.0), axis=-1)


def kl_divergence(y_true, y_pred):
    """KL(y_true || y_pred) over the last axis."""
    y_true = jnp.clip(jnp.asarray(y_true, jnp.float32), EPSILON, 1.0)
    y_pred = jnp.clip(at_least_f32(y_pred), EPSILON, 1.0)
    return jnp.sum(y_true * jnp.log(y_true / y_pred), axis=-1)


_KINDS = {
    "sparse_categorical_crossentropy": (sparse_categorical_crossentropy, True, "sparse"),
    "categorical_crossentropy": (categorical_crossentropy, False, "categorical"),
    "binary_crossentropy": (binary_crossentropy, False, "binary"),
    "mean_squared_error": (mean_squared_error, False, "regression"),
    "mean_absolute_error": (mean_absolute_error, False, "regression"),
    "huber": (huber, False, "regression"),
    "hinge": (hinge, False, "binary"),
    "kl_divergence": (kl_divergence, False, "regression"),
}
ALIASES = {"mse": "mean_squared_error", "mae": "mean_absolute_error", "kld": "kl_divergence", "huber_loss": "huber"}
LOSSES = sorted(list(_KINDS) + list(ALIASES))


def _make(name: str, **kwargs) -> Loss:
    fn, sparse, kind = _KINDS[name]
    if kwargs:
        base = fn

        def fn(y_true, y_pred):
            return base(y_true, y_pred, **kwargs)

    return Loss(name=name, fn=fn, sparse_labels=sparse, kind=kind)


def SparseCategoricalCrossentropy(from_logits: bool = False) -> Loss:  # noqa: N802 - Keras name
    """Keras's `SparseCategoricalCrossentropy` loss object."""
    return _make("sparse_categorical_crossentropy", from_logits=from_logits) if from_logits else _make(
        "sparse_categorical_crossentropy"
    )


def CategoricalCrossentropy(from_logits: bool = False, label_smoothing: float = 0.0) -> Loss:  # noqa: N802
    """Keras's `CategoricalCrossentropy` loss object."""
    return _make("categorical_crossentropy", from_logits=from_logits, label_smoothing=label_smoothing)


def BinaryCrossentropy(from_logits: bool = False, label_smoothing: float = 0.0) -> Loss:  # noqa: N802
    """Keras's `BinaryCrossentropy` loss object."""
    return _make("binary_crossentropy", from_logits=from_logits, label_smoothing=label_smoothing)


def MeanSquaredError() -> Loss:  # noqa: N802
    return _make("mean_squared_error")


def MeanAbsoluteError() -> Loss:  # noqa: N802
    return _make("mean_absolute_error")


def Huber(delta: float = 1.0) -> Loss:  # noqa: N802
    return _make("huber", delta=delta)


def get(identifier) -> Loss:
    """Resolves a loss name, a `Loss`, or a callable `(y_true, y_pred) -> losses`.

    Raises:
      ValueError: for an unknown name; the message lists the valid names.
      TypeError: for anything else.
    """
    if isinstance(identifier, Loss):
        return identifier
    if isinstance(identifier, str):
        name = ALIASES.get(identifier.lower(), identifier.lower())
        if name in _KINDS:
            return _make(name)
        raise ValueError(f"compile(loss=...): unknown loss {identifier!r}; expected one of {LOSSES} or a callable")
    if callable(identifier):
        return Loss(name=getattr(identifier, "__name__", "loss"), fn=identifier)
    raise TypeError(f"compile(loss=...): expected a loss name or a callable (y_true, y_pred); got {identifier!r}")


def reduce_loss(per_element, sample_weight=None):
    """Weighted mean of per-element losses (Keras's "sum_over_batch_size").

    Args:
      per_element: losses of shape `(B, ...)`.
      sample_weight: None or weights of shape `(B,)` (broadcast over the rest).

    Returns:
      A float32 scalar.
    """
    per_element = at_least_f32(per_element)
    if sample_weight is None:
        return jnp.mean(per_element)
    weights = jnp.asarray(sample_weight, per_element.dtype)
    weights = jnp.reshape(weights, weights.shape + (1,) * (per_element.ndim - weights.ndim))
    weights = jnp.broadcast_to(weights, per_element.shape)
    return jnp.sum(per_element * weights) / jnp.maximum(jnp.sum(weights), 1e-12)


__all__ = [
    "LOSSES",
    "BinaryCrossentropy",
    "CategoricalCrossentropy",
    "Huber",
    "Loss",
    "MeanAbsoluteError",
    "MeanSquaredError",
    "SparseCategoricalCrossentropy",
    "binary_crossentropy",
    "categorical_crossentropy",
    "get",
    "hinge",
    "huber",
    "kl_divergence",
    "mean_absolute_error",
    "mean_squared_error",
    "reduce_loss",
    "sparse_categorical_crossentropy",
]
