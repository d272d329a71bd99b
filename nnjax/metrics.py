"""Metrics by Keras name: per-element functions (`nnjax.train.metrics`) and stateful accumulators (`nnjax.train.confusion`)."""

from nnjax.train import confusion  # noqa: F401
from nnjax.train.confusion import (  # noqa: F401
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
from nnjax.train.metrics import *  # noqa: F401,F403
from nnjax.train.metrics import __all__ as _per_element

__all__ = [
    *_per_element,
    "AUC",
    "F1Score",
    "FBetaScore",
    "MeanIoU",
    "Precision",
    "Recall",
    "SparseTopKCategoricalAccuracy",
    "StatefulMetric",
    "TopKCategoricalAccuracy",
    "confusion",
    "mean_metric",
    "merge",
]
