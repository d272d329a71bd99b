"""Keras's confusion-based metrics as classes: Precision, Recall, AUC, F-scores, IoUs, condition counts and the
operating-point metrics (`SensitivityAtSpecificity`, ...).

Each class keeps the state of a functional accumulator (`nnjax.train.confusion`) in its variables, one
per leaf, named after the state's fields (`true_positives`, ...), so the arithmetic is written once:

    m = nj.metrics.AUC()
    m.update_state(labels, scores, sample_weight=w)       # (B, 1), (B, 1), (B,)
    float(m.result())

Precision and Recall keep all four threshold counts (Keras keeps the two they need); the values are Keras's.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from nnjax.train import confusion
from nnjax.train.metric_base import Metric


class AccumulatorMetric(Metric):
    """A `Metric` whose state is a functional accumulator's (`nnjax.train.confusion.StatefulMetric`).

    Subclasses call `_use(accumulator, config, lazy)` in `__init__`. A lazy accumulator (its state's
    shape depends on the inputs: F-scores, multi-label AUC) creates its variables on the first
    `update_state`, or on `build_from_shapes`.
    """

    def _use(self, accumulator: confusion.StatefulMetric, config: dict, lazy: bool = False) -> None:
        self._accumulator, self._config = accumulator, dict(config)
        self._state_variables, self._treedef = [], None
        if not lazy:
            self._build(None)

    def _build(self, y_pred_shape) -> None:
        with jax.ensure_compile_time_eval():
            state = self._accumulator.init(None if y_pred_shape is None else tuple(y_pred_shape))
        leaves, self._treedef = jax.tree.flatten(state)
        fields = getattr(state, "_fields", None) or [getattr(self, "_state_name", "state")]
        self._state_variables = [
            self.add_variable(leaf.shape, "zeros", dtype=leaf.dtype, name=field) for leaf, field in zip(leaves, fields)
        ]

    @property
    def built(self) -> bool:
        return self._treedef is not None

    def build_from_shapes(self, y_true_shape, y_pred_shape) -> None:
        """Creates the variables for inputs of these shapes (once)."""
        del y_true_shape
        if not self.built:
            self._build(y_pred_shape)

    def _state(self):
        return jax.tree.unflatten(self._treedef, [variable.value for variable in self._state_variables])

    def update_state(self, y_true, y_pred, sample_weight=None):
        """Adds the batch's counts to the variables."""
        if not self.built:
            self._build(jnp.shape(y_pred))
        new = self._accumulator.update(self._state(), y_true, y_pred, sample_weight)
        for variable, value in zip(self._state_variables, jax.tree.leaves(new)):
            variable.assign(value)

    def result(self):
        if not self.built:
            return jnp.zeros((), self.dtype)
        return self._accumulator.result(self._state())

    def get_config(self) -> dict:
        return {"name": self.name, "dtype": self.dtype, **self._config}


class Precision(AccumulatorMetric):
    """Keras's `Precision`: `TP / (TP + FP)` over everything seen (one value per threshold for several).

    Example:
      >>> m = nj.metrics.Precision()
      >>> round(float(m([0, 1, 1, 1], [1, 0, 1, 1])), 4)
      0.6667
    """

    def __init__(self, thresholds=None, top_k: int | None = None, class_id: int | None = None, name=None, dtype=None):
        super().__init__(name=name, dtype=dtype)
        self._use(
            confusion.Precision(thresholds, top_k, class_id, name=self.name),
            {"thresholds": thresholds, "top_k": top_k, "class_id": class_id},
        )


class Recall(AccumulatorMetric):
    """Keras's `Recall`: `TP / (TP + FN)` over everything seen."""

    def __init__(self, thresholds=None, top_k: int | None = None, class_id: int | None = None, name=None, dtype=None):
        super().__init__(name=name, dtype=dtype)
        self._use(
            confusion.Recall(thresholds, top_k, class_id, name=self.name),
            {"thresholds": thresholds, "top_k": top_k, "class_id": class_id},
        )


class AUC(AccumulatorMetric):
    """Keras's `AUC`: the area under the ROC or PR curve (see `nnjax.train.confusion.AUC`)."""

    def __init__(
        self,
        num_thresholds: int = 200,
        curve: str = "ROC",
        summation_method: str = "interpolation",
        name=None,
        dtype=None,
        thresholds=None,
        multi_label: bool = False,
        num_labels: int | None = None,
        label_weights=None,
        from_logits: bool = False,
    ):
        super().__init__(name=name, dtype=dtype)
        config = {
            "num_thresholds": num_thresholds,
            "curve": curve,
            "summation_method": summation_method,
            "thresholds": thresholds,
            "multi_label": multi_label,
            "num_labels": num_labels,
            "label_weights": None if label_weights is None else list(np.ravel(label_weights)),
            "from_logits": from_logits,
        }
        self._use(
            confusion.AUC(name=self.name, **{**config, "label_weights": label_weights}),
            config,
            lazy=multi_label and not num_labels,
        )


class FBetaScore(AccumulatorMetric):
    """Keras's `FBetaScore` over `(B, C)` one-hot or multi-hot labels; variables are made on first use."""

    def __init__(self, average=None, beta: float = 1.0, threshold=None, name: str = "fbeta_score", dtype=None):
        super().__init__(name=name, dtype=dtype)
        self._use(
            confusion.FBetaScore(average=average, beta=beta, threshold=threshold, name=self.name),
            {"average": average, "beta": beta, "threshold": threshold},
            lazy=True,
        )


class F1Score(FBetaScore):
    """Keras's `F1Score` (`FBetaScore` with beta 1)."""

    def __init__(self, average=None, threshold=None, name: str = "f1_score", dtype=None):
        super().__init__(average=average, beta=1.0, threshold=threshold, name=name, dtype=dtype)
        del self._config["beta"]


class IoU(AccumulatorMetric):
    """Keras's `IoU`: the mean of `TP / (TP + FP + FN)` over `target_class_ids`, from a weighted confusion matrix.

    The matrix is float32 (Keras's is an integer matrix: it truncates fractional sample weights).

    Raises:
      ValueError: for a target class id outside `[0, num_classes)`.
    """

    _state_name = "total_confusion_matrix"

    def __init__(
        self,
        num_classes: int,
        target_class_ids,
        name=None,
        dtype=None,
        ignore_class=None,
        sparse_y_true: bool = True,
        sparse_y_pred: bool = True,
        axis: int = -1,
    ):
        super().__init__(name=name, dtype=dtype)
        target_class_ids = [int(i) for i in target_class_ids]
        if max(target_class_ids) >= num_classes:
            raise ValueError(
                f"{type(self).__name__}: target class id {max(target_class_ids)} is out of range, which is [0, {num_classes})"
            )
        self.num_classes, self.target_class_ids = num_classes, target_class_ids
        self._use(
            confusion.MeanIoU(
                num_classes,
                name=self.name,
                ignore_class=ignore_class,
                sparse_y_true=sparse_y_true,
                sparse_y_pred=sparse_y_pred,
                axis=axis,
                target_class_ids=target_class_ids,
            ),
            {
                "num_classes": num_classes,
                "target_class_ids": target_class_ids,
                "ignore_class": ignore_class,
                "sparse_y_true": sparse_y_true,
                "sparse_y_pred": sparse_y_pred,
                "axis": axis,
            },
        )


class MeanIoU(IoU):
    """Keras's `MeanIoU`: `IoU` over every class."""

    def __init__(
        self,
        num_classes: int,
        name=None,
        dtype=None,
        ignore_class=None,
        sparse_y_true: bool = True,
        sparse_y_pred: bool = True,
        axis: int = -1,
    ):
        super().__init__(
            num_classes,
            list(range(num_classes)),
            name=name,
            dtype=dtype,
            ignore_class=ignore_class,
            sparse_y_true=sparse_y_true,
            sparse_y_pred=sparse_y_pred,
            axis=axis,
        )
        del self._config["target_class_ids"]


class OneHotIoU(IoU):
    """Keras's `OneHotIoU`: `IoU` of one-hot labels (and scores unless `sparse_y_pred`)."""

    def __init__(
        self,
        num_classes: int,
        target_class_ids,
        name=None,
        dtype=None,
        ignore_class=None,
        sparse_y_pred: bool = False,
        axis: int = -1,
    ):
        super().__init__(
            num_classes,
            target_class_ids,
            name=name,
            dtype=dtype,
            ignore_class=ignore_class,
            sparse_y_true=False,
            sparse_y_pred=sparse_y_pred,
            axis=axis,
        )
        del self._config["sparse_y_true"]


class OneHotMeanIoU(MeanIoU):
    """Keras's `OneHotMeanIoU`: `MeanIoU` of one-hot labels (and scores unless `sparse_y_pred`)."""

    def __init__(self, num_classes: int, name=None, dtype=None, ignore_class=None, sparse_y_pred: bool = False, axis: int = -1):
        super().__init__(
            num_classes,
            name=name,
            dtype=dtype,
            ignore_class=ignore_class,
            sparse_y_true=False,
            sparse_y_pred=sparse_y_pred,
            axis=axis,
        )
        del self._config["sparse_y_true"]


class BinaryIoU(IoU):
    """Keras's `BinaryIoU`: `IoU` of 0/1 labels and scores, a score `>= threshold` predicting 1."""

    def __init__(self, target_class_ids=(0, 1), threshold: float = 0.5, name=None, dtype=None):
        super().__init__(2, target_class_ids, name=name, dtype=dtype)
        self.threshold = threshold
        self._config = {"target_class_ids": self.target_class_ids, "threshold": threshold}

    def update_state(self, y_true, y_pred, sample_weight=None):
        """Adds the batch's confusion matrix of `y_true` against `y_pred >= threshold`."""
        y_pred = (jnp.asarray(y_pred, jnp.float32) >= self.threshold).astype(jnp.int32)
        super().update_state(jnp.asarray(y_true).astype(jnp.int32), y_pred, sample_weight)


def _divide_no_nan(x, y):
    return jnp.where(y == 0, 0.0, x / jnp.where(y == 0, 1.0, y))


class _ConditionCount(AccumulatorMetric):
    _field = ""

    def __init__(self, thresholds=None, name=None, dtype=None):
        super().__init__(name=name, dtype=dtype)
        field = self._field
        self._use(
            confusion._threshold_metric(
                self.name,
                confusion._parse_thresholds(type(self).__name__, thresholds, None),
                None,
                None,
                lambda s: getattr(s, field),
            ),
            {"thresholds": thresholds},
        )


class TruePositives(_ConditionCount):
    """Keras's `TruePositives`: the weighted count of positives predicted positive (`y_pred > threshold`)."""

    _field = "true_positives"


class FalsePositives(_ConditionCount):
    """Keras's `FalsePositives`: the weighted count of negatives predicted positive."""

    _field = "false_positives"


class TrueNegatives(_ConditionCount):
    """Keras's `TrueNegatives`: the weighted count of negatives predicted negative."""

    _field = "true_negatives"


class FalseNegatives(_ConditionCount):
    """Keras's `FalseNegatives`: the weighted count of positives predicted negative."""

    _field = "false_negatives"


def _rates(s):
    """(recall = sensitivity, specificity, precision) at each threshold."""
    tp, fp, tn, fn = s
    return _divide_no_nan(tp, tp + fn), _divide_no_nan(tn, tn + fp), _divide_no_nan(tp, tp + fp)


class _OperatingPoint(AccumulatorMetric):
    """The best `dependent` rate among thresholds whose `constrained` rate is at least `value` (0 if none)."""

    _argument, _constrained, _dependent = "", 0, 0

    def __init__(self, value: float, num_thresholds: int = 200, class_id: int | None = None, name=None, dtype=None):
        if not 0 <= value <= 1:
            raise ValueError(f"{type(self).__name__}: `{self._argument}` must be in the range [0, 1]; received {value!r}")
        if num_thresholds <= 0:
            raise ValueError(f"{type(self).__name__}: `num_thresholds` must be an integer > 0; received {num_thresholds!r}")
        super().__init__(name=name, dtype=dtype)
        setattr(self, self._argument, value)
        self.num_thresholds = num_thresholds
        if num_thresholds == 1:
            thresholds = [0.5]
        else:
            thresholds = [0.0] + [(i + 1) / (num_thresholds - 1) for i in range(num_thresholds - 2)] + [1.0]
        constrained, dependent = self._constrained, self._dependent

        def result(s):
            rates = _rates(s)
            return jnp.max(jnp.where(rates[constrained] >= value, rates[dependent], 0.0), initial=0.0)

        self._use(
            confusion._threshold_metric(self.name, thresholds, None, class_id, result),
            {"num_thresholds": num_thresholds, "class_id": class_id, self._argument: value},
        )


class SensitivityAtSpecificity(_OperatingPoint):
    """Keras's `SensitivityAtSpecificity(specificity, num_thresholds=200, class_id=None)`."""

    _argument, _constrained, _dependent = "specificity", 1, 0

    def __init__(self, specificity: float, num_thresholds: int = 200, class_id=None, name=None, dtype=None):
        super().__init__(specificity, num_thresholds, class_id, name, dtype)


class SpecificityAtSensitivity(_OperatingPoint):
    """Keras's `SpecificityAtSensitivity(sensitivity, num_thresholds=200, class_id=None)`."""

    _argument, _constrained, _dependent = "sensitivity", 0, 1

    def __init__(self, sensitivity: float, num_thresholds: int = 200, class_id=None, name=None, dtype=None):
        super().__init__(sensitivity, num_thresholds, class_id, name, dtype)


class PrecisionAtRecall(_OperatingPoint):
    """Keras's `PrecisionAtRecall(recall, num_thresholds=200, class_id=None)`."""

    _argument, _constrained, _dependent = "recall", 0, 2

    def __init__(self, recall: float, num_thresholds: int = 200, class_id=None, name=None, dtype=None):
        super().__init__(recall, num_thresholds, class_id, name, dtype)


class RecallAtPrecision(_OperatingPoint):
    """Keras's `RecallAtPrecision(precision, num_thresholds=200, class_id=None)`."""

    _argument, _constrained, _dependent = "precision", 2, 0

    def __init__(self, precision: float, num_thresholds: int = 200, class_id=None, name=None, dtype=None):
        super().__init__(precision, num_thresholds, class_id, name, dtype)


__all__ = [
    "AUC",
    "AccumulatorMetric",
    "BinaryIoU",
    "F1Score",
    "FBetaScore",
    "FalseNegatives",
    "FalsePositives",
    "IoU",
    "MeanIoU",
    "OneHotIoU",
    "OneHotMeanIoU",
    "Precision",
    "PrecisionAtRecall",
    "Recall",
    "RecallAtPrecision",
    "SensitivityAtSpecificity",
    "SpecificityAtSensitivity",
    "TrueNegatives",
    "TruePositives",
]
