"""Metrics by Keras name, as pure per-element functions.

Each metric maps `(y_true, y_pred)` to per-element values; an epoch's value is
their (weighted) mean over every example seen, which is what Keras reports.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax.numpy as jnp

from nnjax.train import losses as losses_lib


@dataclasses.dataclass(frozen=True)
class Metric:
    """A named metric: `fn(y_true, y_pred) -> per-element values`."""

    name: str
    fn: Callable

    def __call__(self, y_true, y_pred):
        return self.fn(y_true, y_pred)


def sparse_categorical_accuracy(y_true, y_pred):
    """1.0 where argmax(y_pred) equals the integer label, shape `y_pred.shape[:-1]`."""
    labels = jnp.asarray(y_true)
    if labels.ndim == y_pred.ndim:
        labels = jnp.squeeze(labels, -1)
    return (jnp.argmax(y_pred, axis=-1) == labels.astype(jnp.int32)).astype(jnp.float32)


def categorical_accuracy(y_true, y_pred):
    """1.0 where argmax(y_pred) equals argmax(y_true)."""
    return (jnp.argmax(y_pred, axis=-1) == jnp.argmax(y_true, axis=-1)).astype(jnp.float32)


def binary_accuracy(y_true, y_pred, threshold=0.5):
    """Mean over the last axis of (y_pred > threshold) == y_true."""
    y_true = jnp.asarray(y_true, jnp.float32)
    if y_true.ndim == y_pred.ndim - 1:
        y_true = y_true[..., None]
    return jnp.mean(((y_pred > threshold).astype(jnp.float32) == y_true).astype(jnp.float32), axis=-1)


def top_k_categorical_accuracy(y_true, y_pred, k=5):
    labels = jnp.argmax(y_true, axis=-1)
    return _in_top_k(labels, y_pred, k)


def sparse_top_k_categorical_accuracy(y_true, y_pred, k=5):
    labels = jnp.asarray(y_true)
    if labels.ndim == y_pred.ndim:
        labels = jnp.squeeze(labels, -1)
    return _in_top_k(labels.astype(jnp.int32), y_pred, k)


def _in_top_k(labels, y_pred, k):
    target = jnp.take_along_axis(y_pred, labels[..., None], axis=-1)
    return (jnp.sum(y_pred > target, axis=-1) < k).astype(jnp.float32)


_METRICS = {
    "sparse_categorical_accuracy": sparse_categorical_accuracy,
    "categorical_accuracy": categorical_accuracy,
    "binary_accuracy": binary_accuracy,
    "top_k_categorical_accuracy": top_k_categorical_accuracy,
    "sparse_top_k_categorical_accuracy": sparse_top_k_categorical_accuracy,
    "mean_squared_error": losses_lib.mean_squared_error,
    "mean_absolute_error": losses_lib.mean_absolute_error,
    "sparse_categorical_crossentropy": losses_lib.sparse_categorical_crossentropy,
    "categorical_crossentropy": losses_lib.categorical_crossentropy,
    "binary_crossentropy": losses_lib.binary_crossentropy,
}
_ALIASES = {"mse": "mean_squared_error", "mae": "mean_absolute_error"}
METRICS = sorted(list(_METRICS) + list(_ALIASES) + ["accuracy", "acc"])


def get(identifier, loss: losses_lib.Loss | None = None) -> Metric:
    """Resolves a metric name or callable.

    "accuracy" picks the variant that matches the loss, as Keras does:
    sparse, categorical or binary.

    Raises:
      ValueError: for an unknown name; the message lists the valid names.
    """
    if isinstance(identifier, Metric):
        return identifier
    if isinstance(identifier, str):
        name = identifier.lower()
        if name in ("accuracy", "acc"):
            kind = loss.kind if loss is not None else "sparse"
            fn = {
                "sparse": sparse_categorical_accuracy,
                "categorical": categorical_accuracy,
                "binary": binary_accuracy,
            }.get(kind, sparse_categorical_accuracy)
            return Metric(name=identifier, fn=fn)
        canonical = _ALIASES.get(name, name)
        if canonical in _METRICS:
            return Metric(name=identifier, fn=_METRICS[canonical])
        raise ValueError(f"compile(metrics=...): unknown metric {identifier!r}; expected one of {METRICS} or a callable")
    if callable(identifier):
        return Metric(name=getattr(identifier, "__name__", "metric"), fn=identifier)
    raise TypeError(f"compile(metrics=...): expected a metric name or a callable; got {identifier!r}")


def weighted_mean(per_element, sample_weight=None):
    """The same weighted mean as `losses.reduce_loss`."""
    return losses_lib.reduce_loss(per_element, sample_weight)


__all__ = [
    "METRICS",
    "Metric",
    "binary_accuracy",
    "categorical_accuracy",
    "get",
    "sparse_categorical_accuracy",
    "sparse_top_k_categorical_accuracy",
    "top_k_categorical_accuracy",
    "weighted_mean",
]
