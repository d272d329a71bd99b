"""Keras's mean metrics as classes: accuracies, regression errors, crossentropies, hinges, and `R2Score`.

Each is a `MeanMetricWrapper` of nnjax's per-element function (`nnjax.train.metrics`,
`nnjax.train.losses`), with Keras 3's constructor arguments, default name and `get_config`:

    m = nj.metrics.SparseCategoricalAccuracy()
    m.update_state(labels, probabilities, sample_weight=w)   # (B,), (B, C), (B,)
    float(m.result())
"""

from __future__ import annotations

import jax.numpy as jnp

from nnjax.train import losses as losses_lib
from nnjax.train import metrics as metrics_lib
from nnjax.train.metric_base import Metric
from nnjax.train.metric_means import Mean, MeanMetricWrapper


def _equal(y_true, y_pred):
    y_pred = jnp.asarray(y_pred)
    y_true, y_pred = losses_lib.squeeze_or_expand_to_same_rank(jnp.asarray(y_true, y_pred.dtype), y_pred)
    return (y_true == y_pred).astype(jnp.float32)


def _cosine_similarity(y_true, y_pred, axis=-1):
    return -losses_lib.cosine_similarity(y_true, y_pred, axis=axis)


def _wrapper(class_name: str, fn, default_name: str, doc: str, order=("name", "dtype"), **arguments):
    """A `MeanMetricWrapper` subclass named `class_name` whose constructor takes `name`, `dtype` and `arguments`
    (with these defaults; positionally in Keras's `order`), passed to `fn`; `get_config` returns them all."""
    expected = ["name", "dtype", *arguments]

    def __init__(self, *args, **kwargs):  # noqa: N807 - the constructor of the class made below
        if len(args) > len(order):
            raise TypeError(
                f"{class_name}: takes at most {len(order)} positional arguments ({', '.join(order)}); received {len(args)}"
            )
        given = dict(zip(order, args))
        unknown = sorted(set(kwargs) - set(expected))
        twice = sorted(set(kwargs) & set(given))
        if unknown or twice:
            raise TypeError(f"{class_name}: unexpected arguments {unknown or twice}; expected {expected}")
        given.update(kwargs)
        name, dtype = given.pop("name", default_name), given.pop("dtype", None)
        MeanMetricWrapper.__init__(self, fn, name=name, dtype=dtype, **{**arguments, **given})

    def get_config(self) -> dict:
        return {"name": self.name, "dtype": self.dtype, **self._fn_kwargs}

    return type(
        class_name,
        (MeanMetricWrapper,),
        {"__init__": __init__, "get_config": get_config, "__doc__": f"Keras's `{class_name}`: {doc}", "__module__": __name__},
    )


Accuracy = _wrapper("Accuracy", _equal, "accuracy", "how often `y_pred` equals `y_true`.")
BinaryAccuracy = _wrapper(
    "BinaryAccuracy",
    metrics_lib.binary_accuracy,
    "binary_accuracy",
    "how often `y_pred > threshold` equals the 0/1 label.",
    order=("name", "dtype", "threshold"),
    threshold=0.5,
)
CategoricalAccuracy = _wrapper(
    "CategoricalAccuracy",
    metrics_lib.categorical_accuracy,
    "categorical_accuracy",
    "how often the argmax of `y_pred` is the one-hot label's class.",
)
SparseCategoricalAccuracy = _wrapper(
    "SparseCategoricalAccuracy",
    metrics_lib.sparse_categorical_accuracy,
    "sparse_categorical_accuracy",
    "how often the argmax of `y_pred` is the integer label.",
)
TopKCategoricalAccuracy = _wrapper(
    "TopKCategoricalAccuracy",
    metrics_lib.top_k_categorical_accuracy,
    "top_k_categorical_accuracy",
    "how often the one-hot label is in the top `k`.",
    order=("k", "name", "dtype"),
    k=5,
)
SparseTopKCategoricalAccuracy = _wrapper(
    "SparseTopKCategoricalAccuracy",
    metrics_lib.sparse_top_k_categorical_accuracy,
    "sparse_top_k_categorical_accuracy",
    "how often the integer label is in the top `k` (`from_sorted_ids`: `y_pred` holds ids, best first).",
    order=("k", "name", "dtype", "from_sorted_ids"),
    k=5,
    from_sorted_ids=False,
)
MeanSquaredError = _wrapper(
    "MeanSquaredError", losses_lib.mean_squared_error, "mean_squared_error", "the mean of `(y_true - y_pred) ** 2`."
)
MeanAbsoluteError = _wrapper(
    "MeanAbsoluteError", losses_lib.mean_absolute_error, "mean_absolute_error", "the mean of `|y_true - y_pred|`."
)
MeanAbsolutePercentageError = _wrapper(
    "MeanAbsolutePercentageError",
    losses_lib.mean_absolute_percentage_error,
    "mean_absolute_percentage_error",
    "the mean absolute percentage error.",
)
MeanSquaredLogarithmicError = _wrapper(
    "MeanSquaredLogarithmicError",
    losses_lib.mean_squared_logarithmic_error,
    "mean_squared_logarithmic_error",
    "the mean of `(log1p(y_true) - log1p(y_pred)) ** 2`.",
)
CosineSimilarity = _wrapper(
    "CosineSimilarity",
    _cosine_similarity,
    "cosine_similarity",
    "the mean cosine similarity along `axis` (1 for identical directions).",
    order=("name", "dtype", "axis"),
    axis=-1,
)
LogCoshError = _wrapper("LogCoshError", losses_lib.log_cosh, "logcosh", "the mean of `log(cosh(y_pred - y_true))`.")
Poisson = _wrapper("Poisson", losses_lib.poisson, "poisson", "the mean of `y_pred - y_true * log(y_pred)`.")
KLDivergence = _wrapper("KLDivergence", losses_lib.kl_divergence, "kl_divergence", "the mean KL divergence.")
Hinge = _wrapper("Hinge", losses_lib.hinge, "hinge", "the mean hinge loss (labels in {-1, 1} or {0, 1}).")
SquaredHinge = _wrapper("SquaredHinge", losses_lib.squared_hinge, "squared_hinge", "the mean squared hinge loss.")
CategoricalHinge = _wrapper(
    "CategoricalHinge", losses_lib.categorical_hinge, "categorical_hinge", "the mean categorical hinge loss."
)
BinaryCrossentropy = _wrapper(
    "BinaryCrossentropy",
    losses_lib.binary_crossentropy,
    "binary_crossentropy",
    "the mean binary crossentropy.",
    order=("name", "dtype", "from_logits", "label_smoothing"),
    from_logits=False,
    label_smoothing=0,
)
CategoricalCrossentropy = _wrapper(
    "CategoricalCrossentropy",
    losses_lib.categorical_crossentropy,
    "categorical_crossentropy",
    "the mean crossentropy of one-hot labels.",
    order=("name", "dtype", "from_logits", "label_smoothing", "axis"),
    from_logits=False,
    label_smoothing=0,
    axis=-1,
)
SparseCategoricalCrossentropy = _wrapper(
    "SparseCategoricalCrossentropy",
    losses_lib.sparse_categorical_crossentropy,
    "sparse_categorical_crossentropy",
    "the mean crossentropy of integer labels.",
    order=("name", "dtype", "from_logits", "ignore_class", "axis"),
    from_logits=False,
    ignore_class=None,
    axis=-1,
)


class RootMeanSquaredError(Mean):
    """Keras's `RootMeanSquaredError`: `sqrt(sum(w * (y_true - y_pred) ** 2) / sum(w))` over everything seen.

    Example:
      >>> m = nj.metrics.RootMeanSquaredError()
      >>> float(m(jnp.array([0.0, 0.0]), jnp.array([3.0, 4.0])) ** 2)
      12.5
    """

    def __init__(self, name: str = "root_mean_squared_error", dtype=None):
        super().__init__(name=name, dtype=dtype)

    def update_state(self, y_true, y_pred, sample_weight=None):
        """Adds the batch's squared errors (averaged over trailing axes down to the weights' rank)."""
        y_true, y_pred = jnp.asarray(y_true, self.dtype), jnp.asarray(y_pred, self.dtype)
        y_true, y_pred = losses_lib.squeeze_or_expand_to_same_rank(y_true, y_pred)
        super().update_state(jnp.square(y_pred - y_true), sample_weight=sample_weight)

    def result(self):
        return jnp.sqrt(super().result())


class R2Score(Metric):
    """Keras's `R2Score`: the coefficient of determination of `(B, D)` targets, per column then aggregated.

    The per-column sums are created on the first `update_state` (their size is `y_pred.shape[-1]`).
    An adjusted score (`num_regressors > 0`) falls back to the plain one when there are too few
    samples, as Keras (without its warning, so that it traces).

    Args:
      class_aggregation: "uniform_average" (default), "variance_weighted_average" or None (one score per column).
      num_regressors: the number of independent regressors of the adjusted score (0: not adjusted).

    Raises:
      ValueError: for a bad `class_aggregation` or `num_regressors`, or inputs that are not 2-D.
    """

    _AGGREGATIONS = (None, "uniform_average", "variance_weighted_average")

    def __init__(self, class_aggregation="uniform_average", num_regressors: int = 0, name: str = "r2_score", dtype=None):
        super().__init__(name=name, dtype=dtype)
        if class_aggregation not in self._AGGREGATIONS:
            raise ValueError(
                f"R2Score: `class_aggregation` must be one of {list(self._AGGREGATIONS)}; received {class_aggregation!r}"
            )
        if num_regressors < 0:
            raise ValueError(f"R2Score: `num_regressors` must be >= 0; received {num_regressors!r}")
        self.class_aggregation, self.num_regressors = class_aggregation, num_regressors
        self.num_samples = self.add_variable(shape=(), initializer="zeros", name="num_samples")
        self._built = False

    def build_from_shapes(self, y_true_shape, y_pred_shape) -> None:
        """Creates the per-column variables for `(B, D)` inputs (`update_state` calls it on first use)."""
        if len(y_pred_shape) != 2 or (y_true_shape is not None and len(y_true_shape) != 2):
            raise ValueError(
                f"R2Score expects 2D inputs with shape (batch_size, output_dim); received y_pred.shape="
                f"{tuple(y_pred_shape)} and y_true.shape={y_true_shape and tuple(y_true_shape)}"
            )
        columns = (int(y_pred_shape[-1]),)
        self.squared_sum = self.add_variable(columns, "zeros", name="squared_sum")
        self.sum = self.add_variable(columns, "zeros", name="sum")
        self.total_mse = self.add_variable(columns, "zeros", name="residual")
        self.count = self.add_variable(columns, "zeros", name="count")
        self._built = True

    def update_state(self, y_true, y_pred, sample_weight=None):
        """Adds the batch's weighted column sums, squared sums, squared residuals and weights."""
        y_true, y_pred = jnp.asarray(y_true, self.dtype), jnp.asarray(y_pred, self.dtype)
        y_true, y_pred = losses_lib.squeeze_or_expand_to_same_rank(y_true, y_pred)
        if not self._built:
            self.build_from_shapes(y_true.shape, y_pred.shape)
        weights = jnp.asarray(1.0 if sample_weight is None else sample_weight, self.dtype)
        if weights.ndim == 1:
            weights = weights[:, None]
        weights = jnp.broadcast_to(weights, y_true.shape)
        weighted = y_true * weights
        self.sum.assign_add(jnp.sum(weighted, axis=0))
        self.squared_sum.assign_add(jnp.sum(y_true * weighted, axis=0))
        self.total_mse.assign_add(jnp.sum(jnp.square(y_true - y_pred) * weights, axis=0))
        self.count.assign_add(jnp.sum(weights, axis=0))
        self.num_samples.assign_add(y_true.size)

    def result(self):
        if not self._built:
            return jnp.zeros((), self.dtype)
        mean = self.sum.value / self.count.value
        total = self.squared_sum.value - self.sum.value * mean
        raw = 1 - self.total_mse.value / total
        raw = jnp.where(jnp.isinf(raw), 0.0, raw)
        if self.class_aggregation == "uniform_average":
            score = jnp.mean(raw)
        elif self.class_aggregation == "variance_weighted_average":
            score = jnp.sum(total * raw) / jnp.sum(total)
        else:
            score = raw
        if self.num_regressors:
            n, p = self.num_samples.value, float(self.num_regressors)
            adjusted = 1.0 - (1.0 - score) * (n - 1.0) / (n - p - 1.0)
            score = jnp.where(p < n - 1, adjusted, score)
        return score

    def get_config(self) -> dict:
        return {
            "name": self.name,
            "dtype": self.dtype,
            "class_aggregation": self.class_aggregation,
            "num_regressors": self.num_regressors,
        }


__all__ = [
    "Accuracy",
    "BinaryAccuracy",
    "BinaryCrossentropy",
    "CategoricalAccuracy",
    "CategoricalCrossentropy",
    "CategoricalHinge",
    "CosineSimilarity",
    "Hinge",
    "KLDivergence",
    "LogCoshError",
    "MeanAbsoluteError",
    "MeanAbsolutePercentageError",
    "MeanSquaredError",
    "MeanSquaredLogarithmicError",
    "Poisson",
    "R2Score",
    "RootMeanSquaredError",
    "SparseCategoricalAccuracy",
    "SparseCategoricalCrossentropy",
    "SparseTopKCategoricalAccuracy",
    "SquaredHinge",
    "TopKCategoricalAccuracy",
]
