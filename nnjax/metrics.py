"""Metrics by Keras name: Keras's metric classes (`Metric` and its subclasses), the per-element functions
(`nnjax.train.metrics`) and the functional accumulators behind them (`nnjax.train.confusion`)."""

from nnjax.train import confusion  # noqa: F401
from nnjax.train import metric_base as _metric_base
from nnjax.train.confusion import (  # noqa: F401  (functional accumulators, also in nnjax.train.confusion)
    AUC,
    F1Score,
    FBetaScore,
    MeanIoU,
    Precision,
    Recall,
    SparseTopKCategoricalAccuracy,
    StatefulMetric,
    TopKCategoricalAccuracy,
    mean_metric,
    merge,
)
from nnjax.train.metric_base import MetricVariable, StatelessScope, in_stateless_scope  # noqa: F401
from nnjax.train.metric_means import Mean, MeanMetricWrapper, Sum  # noqa: F401
from nnjax.train.metrics import *  # noqa: F401,F403
from nnjax.train.metrics import __all__ as _per_element

Metric = _metric_base.Metric  # Keras's base class (nnjax.train.metrics.Metric is the per-element pair)

__all__ = [
    *(name for name in _per_element if name != "Metric"),
    "AUC",
    "F1Score",
    "FBetaScore",
    "Mean",
    "MeanIoU",
    "MeanMetricWrapper",
    "Metric",
    "MetricVariable",
    "Precision",
    "Recall",
    "SparseTopKCategoricalAccuracy",
    "StatefulMetric",
    "StatelessScope",
    "Sum",
    "TopKCategoricalAccuracy",
    "confusion",
    "in_stateless_scope",
    "mean_metric",
    "merge",
]
