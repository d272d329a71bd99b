"""Keras's reduction metrics as `Metric` objects: `Sum`, `Mean` and `MeanMetricWrapper`.

Their arithmetic is `nnjax.train.metrics.weighted_sum_and_count` (Keras's
`reduce_to_samplewise_values`); every per-element metric class (`MeanSquaredError`,
`SparseCategoricalAccuracy`, ...) is a `MeanMetricWrapper` of its function.
"""

from __future__ import annotations

from collections.abc import Callable

import jax.numpy as jnp

from nnjax.train import metrics as metrics_lib
from nnjax.train.metric_base import Metric


def _divide_no_nan(x, y):
    return jnp.where(y == 0, 0.0, x / jnp.where(y == 0, 1.0, y))


class Sum(Metric):
    """Keras's `Sum`: the (weighted) sum of every value seen; one variable, `total`.

    Example:
      >>> m = nj.metrics.Sum()
      >>> m.update_state([1.0, 3.0, 5.0, 7.0], sample_weight=[1.0, 1.0, 0.0, 0.0])
      >>> float(m.result())
      4.0
    """

    def __init__(self, name: str = "sum", dtype=None):
        super().__init__(name=name, dtype=dtype)
        self.total = self.add_variable(shape=(), initializer="zeros", dtype=self.dtype, name="total")

    def update_state(self, values, sample_weight=None):
        """Adds `sum(w * values)` (trailing axes summed down to the weights' rank)."""
        total, _ = metrics_lib.weighted_sum_and_count(jnp.asarray(values, self.dtype), sample_weight, reduce=jnp.sum)
        self.total.assign_add(total)

    def result(self):
        return self.total.value.astype(self.dtype)


class Mean(Metric):
    """Keras's `Mean`: `sum(w * values) / sum(w)` over everything seen; variables `total` and `count`.

    Values of rank > 1 are averaged over their trailing axes first (down to the weights' rank).
    `nj.metrics.Mean(name="loss")` is Keras's loss tracker.

    Example:
      >>> m = nj.metrics.Mean()
      >>> m.update_state([1.0, 3.0, 5.0, 7.0], sample_weight=[1.0, 1.0, 0.0, 0.0])
      >>> float(m.result())
      2.0
    """

    def __init__(self, name: str = "mean", dtype=None):
        super().__init__(name=name, dtype=dtype)
        self.total = self.add_variable(shape=(), initializer="zeros", dtype=self.dtype, name="total")
        self.count = self.add_variable(shape=(), initializer="zeros", dtype=self.dtype, name="count")

    def update_state(self, values, sample_weight=None):
        """Adds `sum(w * values)` to `total` and `sum(w)` (the batch size without weights) to `count`."""
        total, count = metrics_lib.weighted_sum_and_count(jnp.asarray(values, self.dtype), sample_weight)
        self.total.assign_add(total)
        self.count.assign_add(count)

    def result(self):
        return _divide_no_nan(self.total.value, self.count.value).astype(self.dtype)


class MeanMetricWrapper(Mean):
    """Keras's `MeanMetricWrapper`: the weighted mean of a per-element function `fn(y_true, y_pred, **kwargs)`.

    Masked elements of `y_pred` (`nj.layers.Masking`, ...) count neither in the total nor in the count.

    Args:
      fn: `fn(y_true, y_pred, **kwargs) -> values`, shape `(B, ...)`.
      name: the logged name (default: `fn`'s name).
      dtype: the dtype of the values.
      **kwargs: passed to `fn` on every call.

    Example:
      >>> m = nj.metrics.MeanMetricWrapper(lambda t, p: (t - p) ** 2, name="squared")
      >>> float(m(jnp.array([0.0, 1.0]), jnp.array([1.0, 3.0])))
      2.5
    """

    def __init__(self, fn: Callable, name: str | None = None, dtype=None, **kwargs):
        super().__init__(name=name or getattr(fn, "__name__", None) or "mean_metric_wrapper", dtype=dtype)
        self._fn = fn
        self._fn_kwargs = kwargs

    def update_state(self, y_true, y_pred, sample_weight=None):
        """Adds the batch's `fn(y_true, y_pred)` values, weighted by `sample_weight` and the mask of `y_pred`."""
        from nnjax.layers import masking

        mask = masking.get_mask(y_pred)
        y_true, y_pred = jnp.asarray(y_true), jnp.asarray(y_pred)
        values = jnp.asarray(self._fn(y_true, y_pred, **self._fn_kwargs), self.dtype)
        if mask is not None:
            mask = jnp.asarray(mask, self.dtype)
            if sample_weight is not None:
                mask, weights = metrics_lib.losses_lib.squeeze_or_expand_to_same_rank(
                    mask, jnp.asarray(sample_weight, self.dtype)
                )
                mask = mask * weights
            sample_weight = mask
        total, count = metrics_lib.weighted_sum_and_count(values, sample_weight)
        self.total.assign_add(total)
        self.count.assign_add(count)

    def get_config(self) -> dict:
        """`name`, `dtype`, `fn` and its keyword arguments."""
        return {**super().get_config(), "fn": self._fn, **self._fn_kwargs}


__all__ = ["Mean", "MeanMetricWrapper", "Sum"]
