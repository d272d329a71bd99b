"""Metrics by Keras name, as pure per-element functions.

Each metric maps `(y_true, y_pred)` to per-element values; an epoch's value is
their (weighted) mean over every example seen, which is what Keras reports
(`weighted_sum_and_count` gives one batch's part of it). Metrics whose epoch
value is not a mean of per-element values (precision, recall, AUC, ...) are
accumulators in `nnjax.train.confusion`.
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
    if labels.ndim == y_pred.ndim and labels.shape[-1] == 1:
        labels = jnp.squeeze(labels, -1)
    return (jnp.argmax(y_pred, axis=-1) == labels.astype(jnp.int32)).astype(jnp.float32)


def categorical_accuracy(y_true, y_pred):
    """1.0 where argmax(y_pred) equals argmax(y_true)."""
    return (jnp.argmax(y_pred, axis=-1) == jnp.argmax(y_true, axis=-1)).astype(jnp.float32)


def binary_accuracy(y_true, y_pred, threshold=0.5):
    """Mean over the last axis of (y_pred > threshold) == y_true."""
    y_true, y_pred = losses_lib.squeeze_or_expand_to_same_rank(jnp.asarray(y_true, jnp.float32), jnp.asarray(y_pred))
    matches = ((y_pred > threshold).astype(jnp.float32) == y_true).astype(jnp.float32)
    return jnp.mean(matches, axis=-1) if matches.ndim > 1 else matches


def top_k_categorical_accuracy(y_true, y_pred, k=5):
    """1.0 where the one-hot label's class is among the `k` highest scores."""
    labels = jnp.argmax(y_true, axis=-1)
    return _in_top_k(labels, y_pred, k)


def sparse_top_k_categorical_accuracy(y_true, y_pred, k=5, from_sorted_ids=False):
    """1.0 where the integer label is among the `k` highest scores (`from_sorted_ids`: among the first `k` ids of
    `y_pred`, which holds class ids sorted best first, shape `(B, N)`)."""
    labels = jnp.asarray(y_true)
    if labels.ndim == y_pred.ndim:
        labels = jnp.squeeze(labels, -1)
    if from_sorted_ids:
        return jnp.any(labels[..., None].astype(y_pred.dtype) == y_pred[..., :k], axis=-1).astype(jnp.float32)
    return _in_top_k(labels.astype(jnp.int32), y_pred, k)


def _in_top_k(labels, y_pred, k):
    target = jnp.take_along_axis(y_pred, labels[..., None], axis=-1)
    return (jnp.sum(y_pred > target, axis=-1) < k).astype(jnp.float32)


def accuracy_kind(y_true_shape, y_pred_shape) -> str:
    """Which accuracy Keras's `compile(metrics=["accuracy"])` picks for these shapes.

    Keras's rule (`keras.src.trainers.compile_utils.get_metric`): one output
    unit (`y_pred.shape[-1] == 1`) is binary; labels of lower rank than the
    predictions, or a trailing label axis of 1 against several outputs, are
    sparse; anything else is categorical (one-hot labels).

    Args:
      y_true_shape: the labels' shape, e.g. `(B,)`, `(B, 1)` or `(B, C)`.
      y_pred_shape: the model output's shape, e.g. `(B, C)`.

    Returns:
      "binary", "sparse" or "categorical".
    """
    y_true_shape, y_pred_shape = tuple(y_true_shape), tuple(y_pred_shape)
    y_t_last = y_true_shape[-1] if y_true_shape else None
    y_p_last = y_pred_shape[-1] if y_pred_shape else None
    if y_p_last == 1:
        return "binary"
    if len(y_true_shape) < len(y_pred_shape) or (y_t_last == 1 and y_p_last is not None and y_p_last > 1):
        return "sparse"
    return "categorical"


_ACCURACY_BY_KIND = {
    "binary": binary_accuracy,
    "sparse": sparse_categorical_accuracy,
    "categorical": categorical_accuracy,
}


def resolve_accuracy(y_true_shape, y_pred_shape, y_true_dtype=None) -> Callable:
    """The per-element accuracy function Keras resolves "accuracy" to for these shapes (see `accuracy_kind`).

    `y_true_dtype` is accepted for callers that have it; Keras's rule looks at shapes only.
    """
    del y_true_dtype
    return _ACCURACY_BY_KIND[accuracy_kind(y_true_shape, y_pred_shape)]


def accuracy(y_true, y_pred):
    """Keras's "accuracy" name: binary, sparse categorical or categorical accuracy, picked from the shapes at trace time."""
    y_true, y_pred = jnp.asarray(y_true), jnp.asarray(y_pred)
    return resolve_accuracy(y_true.shape, y_pred.shape)(y_true, y_pred)


_METRICS = {
    "sparse_categorical_accuracy": sparse_categorical_accuracy,
    "categorical_accuracy": categorical_accuracy,
    "binary_accuracy": binary_accuracy,
    "top_k_categorical_accuracy": top_k_categorical_accuracy,
    "sparse_top_k_categorical_accuracy": sparse_top_k_categorical_accuracy,
    "mean_squared_error": losses_lib.mean_squared_error,
    "mean_absolute_error": losses_lib.mean_absolute_error,
    "mean_absolute_percentage_error": losses_lib.mean_absolute_percentage_error,
    "mean_squared_logarithmic_error": losses_lib.mean_squared_logarithmic_error,
    "sparse_categorical_crossentropy": losses_lib.sparse_categorical_crossentropy,
    "categorical_crossentropy": losses_lib.categorical_crossentropy,
    "binary_crossentropy": losses_lib.binary_crossentropy,
    "kl_divergence": losses_lib.kl_divergence,
    "poisson": losses_lib.poisson,
    "hinge": losses_lib.hinge,
    "squared_hinge": losses_lib.squared_hinge,
    "categorical_hinge": losses_lib.categorical_hinge,
}
ALIASES = {"mse": "mean_squared_error", "mae": "mean_absolute_error", "mape": "mean_absolute_percentage_error",
            "msle": "mean_squared_logarithmic_error", "kld": "kl_divergence"}  # fmt: skip
METRICS = sorted(list(_METRICS) + list(ALIASES) + ["accuracy", "acc"])


def get(identifier, loss: losses_lib.Loss | None = None) -> Metric:
    """Resolves a metric name or callable.

    "accuracy" (or "acc") resolves as Keras does, from the shapes of the labels
    and the outputs when the metric is computed (`accuracy_kind`): one output
    unit gives binary accuracy, integer labels sparse categorical accuracy,
    one-hot labels categorical accuracy. `loss` is accepted for callers that
    pass it and is not needed.

    Raises:
      ValueError: for an unknown name; the message lists the valid names.
    """
    del loss
    if isinstance(identifier, Metric):
        return identifier
    if isinstance(identifier, str):
        name = identifier.lower()
        if name in ("accuracy", "acc"):
            return Metric(name=identifier, fn=accuracy)
        canonical = ALIASES.get(name, name)
        if canonical in _METRICS:
            return Metric(name=identifier, fn=_METRICS[canonical])
        raise ValueError(f"compile(metrics=...): unknown metric {identifier!r}; expected one of {METRICS} or a callable")
    if callable(identifier):
        return Metric(name=getattr(identifier, "__name__", "metric"), fn=identifier)
    raise TypeError(f"compile(metrics=...): expected a metric name (e.g. 'accuracy'), a metric object "
                    "(nj.metrics.AUC(), a subclass of nj.metrics.Metric, a flax nnx.metrics object) or a function "
                    f"fn(y_true, y_pred) -> per-example values; received {type(identifier).__name__} {identifier!r}")


def weighted_sum_and_count(values, sample_weight=None, reduce=jnp.mean):
    """One batch's contribution to Keras's `Mean` metric: `(sum of weighted per-sample values, sum of weights)`.

    As Keras's `reduce_to_samplewise_values`: values are first averaged (`reduce`; Keras's `Sum`
    metric sums) over their trailing axes down to the weights' rank, then multiplied by the
    weights; without weights the count is the batch size. An epoch's value is
    `sum(totals) / sum(counts)` over its batches (what Keras reports), not the
    mean of batch means.

    Args:
      values: per-element metric values, shape `(B, ...)`.
      sample_weight: None or weights of shape `(B,)` (or `(B, ...)`).
      reduce: how trailing axes are reduced (`jnp.mean`; `jnp.sum` for Keras's `Sum`).

    Returns:
      `(total, count)`: two float32 scalars.
    """
    values = losses_lib.at_least_f32(values)
    if sample_weight is not None:
        weights = jnp.asarray(sample_weight, values.dtype)
        values, weights = losses_lib.squeeze_or_expand_to_same_rank(values, weights)
        if values.ndim > weights.ndim:
            values = reduce(values, axis=tuple(range(weights.ndim, values.ndim)))
        weights = jnp.broadcast_to(weights, values.shape)
        values = values * weights
        if weights.ndim > 1:
            weights = reduce(weights, axis=tuple(range(1, weights.ndim)))
        count = jnp.sum(weights)
    else:
        count = jnp.asarray(values.shape[0] if values.ndim >= 1 else 1, values.dtype)
    if values.ndim > 1:
        values = reduce(values, axis=tuple(range(1, values.ndim)))
    return jnp.sum(values), count


def weighted_mean(values, sample_weight=None):
    """Keras's `Mean` metric over one batch: `sum(w * v) / sum(w)` (the plain mean without weights; 0 when all weights are 0)."""
    total, count = weighted_sum_and_count(values, sample_weight)
    return jnp.where(count != 0, total / jnp.where(count != 0, count, 1), 0.0)


__all__ = [
    "ALIASES",
    "METRICS",
    "Metric",
    "accuracy",
    "accuracy_kind",
    "binary_accuracy",
    "categorical_accuracy",
    "get",
    "resolve_accuracy",
    "sparse_categorical_accuracy",
    "sparse_top_k_categorical_accuracy",
    "top_k_categorical_accuracy",
    "weighted_mean",
    "weighted_sum_and_count",
]
