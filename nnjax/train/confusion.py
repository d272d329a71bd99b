"""Stateful metrics whose epoch value is not a mean of batch values, as pure accumulators.

Precision over an epoch is `sum(TP) / sum(TP + FP)` over all its batches, not
the mean of per-batch precisions; AUC needs the whole epoch's counts at every
threshold. Each metric here is a `StatefulMetric`, optax-style: a NamedTuple of
pure functions over a small pytree of weighted counts,

    state = metric.init()                                   # zeros
    state = metric.update(state, y_true, y_pred, sample_weight)
    value = metric.result(state)                            # Keras's `result()`

`update` and `result` are jit-, vmap- and shard_map-friendly. States are sums,
so the states of several batches or devices combine by `merge` (a
`jax.lax.psum` inside `shard_map`/`pmap`). The arithmetic is Keras 3's
(`keras.metrics.Precision`, `AUC`, `F1Score`, `MeanIoU`, ...), and the names
are Keras's. `mean_metric` turns any per-element metric into the same
interface (Keras's `Mean` weighting), so a loop can treat every metric alike.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from nnjax.train import metrics as metrics_lib
from nnjax.train.losses import EPSILON, squeeze_or_expand_to_same_rank

NEG_INF = -1e10  # Keras's value for predictions outside the top k


class StatefulMetric(NamedTuple):
    """A metric accumulated over batches.

    Attributes:
      name: the name it is logged under (Keras's default names).
      init: `(y_pred_shape=None) -> state`, a pytree of zeros (only `F1Score`
        and `FBetaScore` without `num_classes` need `y_pred_shape`).
      update: `(state, y_true, y_pred, sample_weight=None) -> state`.
      result: `(state) -> value`, a float32 scalar (an array for per-class
        or per-threshold results, as Keras).
    """

    name: str
    init: Callable[..., Any]
    update: Callable[..., Any]
    result: Callable[[Any], jax.Array]


def merge(state_a, state_b):
    """The state of the union of two sets of batches (states are sums)."""
    return jax.tree.map(jnp.add, state_a, state_b)


def _divide_no_nan(x, y):
    safe = jnp.where(y == 0, 1.0, y)
    return jnp.where(y == 0, 0.0, x / safe)


# ------------------------------------------------------------------------------------------------ threshold counts
class ConfusionCounts(NamedTuple):
    """Weighted confusion counts at each threshold."""

    true_positives: jax.Array  # float32 [num_thresholds]
    false_positives: jax.Array  # float32 [num_thresholds]
    true_negatives: jax.Array  # float32 [num_thresholds]
    false_negatives: jax.Array  # float32 [num_thresholds]


def _evenly_distributed(thresholds: np.ndarray) -> bool:
    n = len(thresholds)
    if n < 3:
        return False
    even = np.arange(n, dtype=np.float32) / (n - 1)
    return bool(np.allclose(thresholds, even, atol=EPSILON))


def _filter_top_k(x, k):
    _, top_k_idx = jax.lax.top_k(x, k)
    top_k_mask = jnp.sum(jax.nn.one_hot(top_k_idx, x.shape[-1], dtype=x.dtype), axis=-2)
    return x * top_k_mask + NEG_INF * (1 - top_k_mask)


def confusion_counts(
    y_true,
    y_pred,
    thresholds,
    sample_weight=None,
    *,
    top_k: int | None = None,
    class_id: int | None = None,
    clip: bool = False,
    multi_label: bool = False,
    label_weights=None,
) -> ConfusionCounts:
    """One batch's weighted TP/FP/TN/FN at each threshold (`y_pred > threshold` is a positive), as Keras counts them.

    Args:
      y_true: labels in {0, 1} (any nonzero is positive), shape of `y_pred` (or without its trailing 1).
      y_pred: scores, shape `(B, ...)`.
      thresholds: shape `(T,)`.
      sample_weight: None or per-sample weights `(B,)`, broadcast over the trailing axes.
      top_k: only the `k` highest scores of the last axis can be positive.
      class_id: count only this column of the last axis.
      clip: clip `y_pred` to [0, 1] first (Keras does for evenly spaced thresholds).
      multi_label: keep the last axis apart: counts of shape `(T, L)` for `y_pred` of shape `(B, L)`.
      label_weights: None or weights `(L,)` of the last axis, multiplied into the
        sample weights (without `multi_label`, as Keras).

    Returns:
      `ConfusionCounts` with fields of shape `(T,)` (`(T, L)` with `multi_label`).
    """
    y_true = jnp.asarray(y_true, jnp.float32)
    y_pred = jnp.asarray(y_pred, jnp.float32)
    y_pred, y_true = squeeze_or_expand_to_same_rank(y_pred, y_true)
    weights = None
    if sample_weight is not None:
        weights = jnp.asarray(sample_weight, jnp.float32)
        weights = jnp.reshape(weights, weights.shape + (1,) * (y_pred.ndim - weights.ndim))
        weights = jnp.broadcast_to(weights, y_pred.shape)
    if top_k is not None:
        y_pred = _filter_top_k(y_pred, top_k)
    if class_id is not None:
        if y_pred.ndim == 1:
            raise ValueError(f"class_id: y_pred must have shape (num_samples, num_classes); got shape {y_pred.shape}")
        y_true, y_pred = y_true[..., class_id], y_pred[..., class_id]
        weights = None if weights is None else weights[..., class_id]
    if clip:
        y_pred = jnp.clip(y_pred, 0.0, 1.0)
    if label_weights is not None and not multi_label:
        lw = jnp.broadcast_to(jnp.asarray(label_weights, jnp.float32), y_pred.shape)
        weights = lw if weights is None else weights * lw
    thresholds = jnp.asarray(thresholds, jnp.float32)
    # [T, N] (or [T, B, L] with multi_label): is each prediction above each threshold?
    if multi_label:
        flat_pred, flat_true = y_pred.reshape(1, -1, y_pred.shape[-1]), y_true.reshape(1, -1, y_pred.shape[-1])
        t = thresholds.reshape(-1, 1, 1)
        w = jnp.ones_like(flat_pred) if weights is None else weights.reshape(flat_pred.shape)
    else:
        flat_pred, flat_true = y_pred.reshape(1, -1), y_true.reshape(1, -1)
        t = thresholds.reshape(-1, 1)
        w = jnp.ones_like(flat_pred) if weights is None else weights.reshape(1, -1)
    pred_is_pos = flat_pred > t
    label_is_pos = (flat_true != 0) & jnp.ones_like(pred_is_pos)

    def count(label, pred):
        return jnp.sum(jnp.where(label & pred, w, 0.0), axis=1)

    return ConfusionCounts(
        count(label_is_pos, pred_is_pos),
        count(~label_is_pos, pred_is_pos),
        count(~label_is_pos, ~pred_is_pos),
        count(label_is_pos, ~pred_is_pos),
    )


def _threshold_metric(name, thresholds, top_k, class_id, result_fn) -> StatefulMetric:
    thresholds = np.asarray(thresholds, np.float32).reshape(-1)
    clip = _evenly_distributed(thresholds)

    def init(y_pred_shape=None):
        del y_pred_shape
        zeros = jnp.zeros(thresholds.shape, jnp.float32)
        return ConfusionCounts(zeros, zeros, zeros, zeros)

    def update(state, y_true, y_pred, sample_weight=None):
        return merge(
            state, confusion_counts(y_true, y_pred, thresholds, sample_weight, top_k=top_k, class_id=class_id, clip=clip)
        )

    def result(state):
        value = result_fn(state)
        return value[0] if thresholds.shape[0] == 1 and value.ndim else value

    return StatefulMetric(name, init, update, result)


def _parse_thresholds(what: str, thresholds, top_k):
    if thresholds is None:
        return [0.5 if top_k is None else NEG_INF]
    values = list(np.ravel(thresholds))
    if any(not 0.0 <= t <= 1.0 for t in values):
        raise ValueError(f"{what}: thresholds must be in [0, 1]; got {values}")
    return values


def Precision(thresholds=None, top_k: int | None = None, class_id: int | None = None, name: str = "precision") -> StatefulMetric:  # noqa: N802
    """Keras's `Precision`: `TP / (TP + FP)` over everything seen (0.5 threshold; a list gives one value per threshold)."""
    values = _parse_thresholds("Precision", thresholds, top_k)
    return _threshold_metric(
        name, values, top_k, class_id, lambda s: _divide_no_nan(s.true_positives, s.true_positives + s.false_positives)
    )


def Recall(thresholds=None, top_k: int | None = None, class_id: int | None = None, name: str = "recall") -> StatefulMetric:  # noqa: N802
    """Keras's `Recall`: `TP / (TP + FN)` over everything seen."""
    values = _parse_thresholds("Recall", thresholds, top_k)
    return _threshold_metric(
        name, values, top_k, class_id, lambda s: _divide_no_nan(s.true_positives, s.true_positives + s.false_negatives)
    )


_CURVES = ("ROC", "PR", "PRGAIN")
_SUMMATIONS = ("interpolation", "minoring", "majoring")


def AUC(  # noqa: N802
    num_thresholds: int = 200,
    curve: str = "ROC",
    summation_method: str = "interpolation",
    name: str = "auc",
    thresholds: Sequence[float] | None = None,
    multi_label: bool = False,
    num_labels: int | None = None,
    label_weights=None,
    from_logits: bool = False,
) -> StatefulMetric:
    """Keras's `AUC`: the area under the ROC or PR curve from counts at `num_thresholds` thresholds.

    The thresholds are Keras's: `[-eps, 1/(n-1), ..., (n-2)/(n-1), 1 + eps]`;
    the ROC area is a trapezoid sum, the PR area Keras's (Davis & Goadrich)
    interpolation.

    With `multi_label=True`, each column of `(B, L)` predictions has its own
    curve and the result is their mean (weighted by `label_weights`); the
    state's counts are `(num_thresholds, L)`, so `init` needs `num_labels` or
    `y_pred_shape`.

    Raises:
      ValueError: for a bad curve, summation method or number of thresholds, or
        `num_labels` without `multi_label` (Keras's checks).
    """
    curve = curve.upper()
    summation_method = summation_method.lower()
    if curve not in _CURVES:
        raise ValueError(f"AUC: `curve` must be one of {list(_CURVES)}; got {curve!r}")
    if summation_method not in _SUMMATIONS:
        raise ValueError(f"AUC: `summation_method` must be one of {list(_SUMMATIONS)}; got {summation_method!r}")
    if num_labels and not multi_label:
        raise ValueError("AUC: `num_labels` is needed only when `multi_label` is True")
    weights_of_labels = None if label_weights is None else jnp.asarray(label_weights, jnp.float32)
    if thresholds is not None:
        inner = sorted(float(t) for t in thresholds)
        evenly = _evenly_distributed(np.array([0.0] + inner + [1.0]))
    else:
        if num_thresholds <= 1:
            raise ValueError(f"AUC: `num_thresholds` must be an integer > 1; got {num_thresholds!r}")
        inner = [(i + 1) * 1.0 / (num_thresholds - 1) for i in range(num_thresholds - 2)]
        evenly = True
    all_thresholds = np.array([0.0 - EPSILON] + inner + [1.0 + EPSILON], np.float32)
    n = len(all_thresholds)

    def init(y_pred_shape=None):
        shape = (n,)
        if multi_label:
            labels = num_labels or (y_pred_shape[-1] if y_pred_shape else None)
            if not labels:
                raise ValueError(
                    f"{name}: with multi_label=True, init needs `y_pred_shape` or num_labels=...; got {y_pred_shape!r}"
                )
            shape = (n, int(labels))
        zeros = jnp.zeros(shape, jnp.float32)
        return ConfusionCounts(zeros, zeros, zeros, zeros)

    def update(state, y_true, y_pred, sample_weight=None):
        y_pred = jnp.asarray(y_pred, jnp.float32)
        if from_logits:
            y_pred = jax.nn.sigmoid(y_pred)
        counts = confusion_counts(
            y_true,
            y_pred,
            all_thresholds,
            sample_weight,
            clip=evenly,
            multi_label=multi_label,
            label_weights=None if multi_label else weights_of_labels,
        )
        return merge(state, counts)

    def reduce_labels(terms):
        if not multi_label:
            return jnp.sum(terms)
        by_label = jnp.sum(terms, axis=0)
        if weights_of_labels is None:
            return jnp.mean(by_label)
        return _divide_no_nan(jnp.sum(by_label * weights_of_labels), jnp.sum(weights_of_labels))

    def interpolate_pr_auc(s):
        tp, fp, fn = s.true_positives, s.false_positives, s.false_negatives
        dtp = tp[: n - 1] - tp[1:]
        p = tp + fp
        dp = p[: n - 1] - p[1:]
        prec_slope = _divide_no_nan(dtp, jnp.maximum(dp, 0))
        intercept = tp[1:] - prec_slope * p[1:]
        safe_p_ratio = jnp.where(
            (p[: n - 1] > 0) & (p[1:] > 0), _divide_no_nan(p[: n - 1], jnp.maximum(p[1:], 0)), jnp.ones_like(p[1:])
        )
        increment = _divide_no_nan(prec_slope * (dtp + intercept * jnp.log(safe_p_ratio)), jnp.maximum(tp[1:] + fn[1:], 0))
        return reduce_labels(increment)

    def result(s):
        if curve == "PR" and summation_method == "interpolation":
            return interpolate_pr_auc(s)
        tp, fp, tn, fn = s
        recall = _divide_no_nan(tp, tp + fn)
        if curve == "ROC":
            x, y = _divide_no_nan(fp, fp + tn), recall
        elif curve == "PR":
            x, y = recall, _divide_no_nan(tp, tp + fp)
        else:
            scaling = _divide_no_nan(tp + fn, tn + fp)
            recall_gain = jnp.where(tp == 0, 0.0, 1.0 - scaling * _divide_no_nan(fn, tp))
            precision_gain = jnp.where(tp == 0, 1.0, 1.0 - scaling * _divide_no_nan(fp, tp))
            x, y = jnp.maximum(recall_gain, 0.0), precision_gain
        if summation_method == "interpolation":
            heights = (y[: n - 1] + y[1:]) / 2.0
        elif summation_method == "minoring":
            heights = jnp.minimum(y[: n - 1], y[1:])
        else:
            heights = jnp.maximum(y[: n - 1], y[1:])
        return reduce_labels((x[: n - 1] - x[1:]) * heights)

    return StatefulMetric(name, init, update, result)


# ------------------------------------------------------------------------------------------------ F-scores
class FScoreCounts(NamedTuple):
    """Per-class (or, for average="micro", summed) weighted counts of `FBetaScore`."""

    true_positives: jax.Array  # float32 [C] ([] for micro)
    false_positives: jax.Array  # float32 [C]
    false_negatives: jax.Array  # float32 [C]
    intermediate_weights: jax.Array  # float32 [C]: weighted count of positive labels


_AVERAGES = (None, "micro", "macro", "weighted")


def FBetaScore(  # noqa: N802
    average: str | None = None,
    beta: float = 1.0,
    threshold: float | None = None,
    name: str = "fbeta_score",
    num_classes: int | None = None,
) -> StatefulMetric:
    """Keras's `FBetaScore` over one-hot (or multi-hot) labels `(B, C)`.

    Without `threshold`, the highest score of each row is the prediction (Keras's rule);
    with it, every score above it. `num_classes` fixes the state's size; without
    it `init` needs `y_pred_shape`.

    Raises:
      ValueError: for a bad `average`, `beta` or `threshold` (Keras's checks).
    """
    if average not in _AVERAGES:
        raise ValueError(f"FBetaScore: `average` must be one of {list(_AVERAGES)}; got {average!r}")
    if not isinstance(beta, float) or beta <= 0.0:
        raise ValueError(f"FBetaScore: `beta` must be a Python float > 0; got {beta!r}")
    if threshold is not None and (not isinstance(threshold, float) or not 0.0 < threshold <= 1.0):
        raise ValueError(f"FBetaScore: `threshold` must be a Python float in (0, 1]; got {threshold!r}")
    axis = None if average == "micro" else 0

    def init(y_pred_shape=None):
        classes = num_classes
        if classes is None:
            if y_pred_shape is None or len(y_pred_shape) != 2:
                raise ValueError(
                    f"{name}: init needs `y_pred_shape` (batch_size, num_classes) or num_classes=...; got {y_pred_shape!r}"
                )
            classes = int(y_pred_shape[-1])
        zeros = jnp.zeros(() if average == "micro" else (classes,), jnp.float32)
        return FScoreCounts(zeros, zeros, zeros, zeros)

    def update(state, y_true, y_pred, sample_weight=None):
        y_true = jnp.asarray(y_true, jnp.float32)
        y_pred = jnp.asarray(y_pred, jnp.float32)
        if y_pred.ndim != 2 or y_true.ndim != 2:
            raise ValueError(
                f"{name}: expects 2-D inputs (batch_size, output_dim); got y_pred {y_pred.shape} and y_true {y_true.shape}"
            )
        if threshold is None:
            top = jnp.max(y_pred, axis=-1, keepdims=True)
            y_pred = ((y_pred >= top) & (jnp.abs(y_pred) > 1e-9)).astype(jnp.float32)
        else:
            y_pred = (y_pred > threshold).astype(jnp.float32)

        def weighted_sum(val):
            if sample_weight is not None:
                val = val * jnp.expand_dims(jnp.asarray(sample_weight, jnp.float32), 1)
            return jnp.sum(val, axis=axis)

        return merge(
            state,
            FScoreCounts(
                weighted_sum(y_pred * y_true),
                weighted_sum(y_pred * (1 - y_true)),
                weighted_sum((1 - y_pred) * y_true),
                weighted_sum(y_true),
            ),
        )

    def result(s):
        precision = s.true_positives / (s.true_positives + s.false_positives + EPSILON)
        recall = s.true_positives / (s.true_positives + s.false_negatives + EPSILON)
        f_score = (precision * recall) / (((beta**2) * precision) + recall + EPSILON) * (1 + (beta**2))
        if average == "weighted":
            return jnp.sum(f_score * (s.intermediate_weights / (jnp.sum(s.intermediate_weights) + EPSILON)))
        if average is not None:
            return jnp.mean(f_score)
        return f_score

    return StatefulMetric(name, init, update, result)


def F1Score(  # noqa: N802
    average: str | None = None, threshold: float | None = None, name: str = "f1_score", num_classes: int | None = None
) -> StatefulMetric:
    """Keras's `F1Score` (`FBetaScore` with beta 1)."""
    return FBetaScore(average=average, beta=1.0, threshold=threshold, name=name, num_classes=num_classes)


# ------------------------------------------------------------------------------------------------ IoU
def MeanIoU(  # noqa: N802
    num_classes: int,
    name: str = "mean_io_u",
    ignore_class: int | None = None,
    sparse_y_true: bool = True,
    sparse_y_pred: bool = True,
    axis: int = -1,
    target_class_ids: Sequence[int] | None = None,
) -> StatefulMetric:
    """Keras's `MeanIoU`: the mean over classes present of `TP / (TP + FP + FN)`, from a weighted confusion matrix.

    With `target_class_ids`, the mean is over those classes only (Keras's `IoU`).

    With `sparse_y_pred=False`, `y_pred` holds scores and its argmax is the
    prediction. The state is a `(num_classes, num_classes)` float32 matrix (rows:
    labels; columns: predictions); Keras keeps an integer matrix, so its
    fractional sample weights are truncated where nnjax's are not.
    """

    def init(y_pred_shape=None):
        del y_pred_shape
        return jnp.zeros((num_classes, num_classes), jnp.float32)

    def update(state, y_true, y_pred, sample_weight=None):
        y_true, y_pred = jnp.asarray(y_true), jnp.asarray(y_pred)
        if not sparse_y_true:
            y_true = jnp.argmax(y_true, axis=axis)
        if not sparse_y_pred:
            y_pred = jnp.argmax(y_pred, axis=axis)
        y_true = y_true.astype(jnp.int32).reshape(-1)
        y_pred = y_pred.astype(jnp.int32).reshape(-1)
        weights = (
            jnp.ones(y_true.shape, jnp.float32) if sample_weight is None else jnp.asarray(sample_weight, jnp.float32).reshape(-1)
        )
        weights = jnp.broadcast_to(weights, y_true.shape)
        valid = (y_true >= 0) & (y_true < num_classes) & (y_pred >= 0) & (y_pred < num_classes)
        if ignore_class is not None:
            valid = valid & (y_true != ignore_class)
        weights = jnp.where(valid, weights, 0.0)
        index = jnp.where(valid, y_true, 0) * num_classes + jnp.where(valid, y_pred, 0)
        cm = jnp.zeros((num_classes * num_classes,), jnp.float32).at[index].add(weights)
        return state + cm.reshape(num_classes, num_classes)

    def result(cm):
        true_positives = jnp.diag(cm)
        denominator = jnp.sum(cm, axis=0) + jnp.sum(cm, axis=1) - true_positives
        if target_class_ids is not None:
            ids = jnp.asarray(list(target_class_ids), jnp.int32)
            true_positives, denominator = true_positives[ids], denominator[ids]
        valid = denominator > 1e-9
        iou = jnp.where(valid, true_positives / (denominator + EPSILON), 0.0)
        return jnp.sum(iou) / (jnp.sum(valid.astype(jnp.float32)) + EPSILON)

    return StatefulMetric(name, init, update, result)


# ------------------------------------------------------------------------------------------------ means
class MeanState(NamedTuple):
    """Keras's `Mean` metric state."""

    total: jax.Array  # float32 []: sum of weighted per-sample values
    count: jax.Array  # float32 []: sum of weights (number of samples without weights)


def mean_metric(fn: Callable, name: str | None = None) -> StatefulMetric:
    """Any per-element metric `fn(y_true, y_pred) -> values` as an accumulator with Keras's `Mean` weighting.

    The result is `sum(w * v) / sum(w)` over everything seen
    (`nnjax.train.metrics.weighted_sum_and_count`).
    """

    def init(y_pred_shape=None):
        del y_pred_shape
        return MeanState(jnp.zeros((), jnp.float32), jnp.zeros((), jnp.float32))

    def update(state, y_true, y_pred, sample_weight=None):
        total, count = metrics_lib.weighted_sum_and_count(fn(y_true, y_pred), sample_weight)
        return MeanState(state.total + total, state.count + count)

    def result(state):
        return _divide_no_nan(state.total, state.count)

    return StatefulMetric(name or getattr(fn, "name", None) or getattr(fn, "__name__", "mean"), init, update, result)


def TopKCategoricalAccuracy(k: int = 5, name: str = "top_k_categorical_accuracy") -> StatefulMetric:  # noqa: N802
    """Keras's `TopKCategoricalAccuracy` (one-hot labels) as an accumulator."""
    return mean_metric(lambda y_true, y_pred: metrics_lib.top_k_categorical_accuracy(y_true, y_pred, k=k), name)


def SparseTopKCategoricalAccuracy(k: int = 5, name: str = "sparse_top_k_categorical_accuracy") -> StatefulMetric:  # noqa: N802
    """Keras's `SparseTopKCategoricalAccuracy` (integer labels) as an accumulator."""
    return mean_metric(lambda y_true, y_pred: metrics_lib.sparse_top_k_categorical_accuracy(y_true, y_pred, k=k), name)


# Keras class name -> constructor (those that need no argument also resolve by snake-case name in `get`).
CLASSES: dict[str, Callable[..., StatefulMetric]] = {
    "AUC": AUC,
    "F1Score": F1Score,
    "FBetaScore": FBetaScore,
    "MeanIoU": MeanIoU,
    "Precision": Precision,
    "Recall": Recall,
    "SparseTopKCategoricalAccuracy": SparseTopKCategoricalAccuracy,
    "TopKCategoricalAccuracy": TopKCategoricalAccuracy,
}
_NAMES = {"auc": AUC, "precision": Precision, "recall": Recall, "f1_score": F1Score, "fbeta_score": FBetaScore}


def get(identifier) -> StatefulMetric | None:
    """The stateful metric for a Keras name ("precision", "auc", "AUC", ...), a `StatefulMetric` as is, or None.

    None means the identifier is not a stateful metric (a per-element one such
    as "accuracy", resolved by `nnjax.train.metrics.get`).
    """
    if isinstance(identifier, StatefulMetric):
        return identifier
    if isinstance(identifier, str):
        constructor = CLASSES.get(identifier) or _NAMES.get(identifier.lower())
        if constructor is MeanIoU:
            raise ValueError("MeanIoU: needs `num_classes`; use nj.metrics.MeanIoU(num_classes=...)")
        return constructor() if constructor is not None else None
    return None


def _record_arguments() -> None:
    """Each Keras-named constructor records its arguments (for saving a compiled model; `nnjax.train.recorded`)."""
    from nnjax.train.recorded import recorded

    for class_name, constructor in list(CLASSES.items()):
        wrapper = recorded("keras.metrics", class_name, key=lambda metric: metric.update)(constructor)
        CLASSES[class_name] = globals()[class_name] = wrapper
        for name, value in list(_NAMES.items()):
            if value is constructor:
                _NAMES[name] = wrapper


_record_arguments()


__all__ = [
    "AUC",
    "CLASSES",
    "ConfusionCounts",
    "F1Score",
    "FBetaScore",
    "FScoreCounts",
    "MeanIoU",
    "MeanState",
    "Precision",
    "Recall",
    "SparseTopKCategoricalAccuracy",
    "StatefulMetric",
    "TopKCategoricalAccuracy",
    "confusion_counts",
    "get",
    "mean_metric",
    "merge",
]
