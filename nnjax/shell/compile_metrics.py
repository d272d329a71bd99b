"""Keras's `CompileMetrics`: the metrics of `compile(metrics=..., weighted_metrics=...)` as one metric object.

It is the entry named "compile_metrics" of `model.metrics` (after the loss tracker "loss"), as in Keras 3: a
Keras-form `train_step` updates it with `stateless_update_state(vars, y, y_pred, sample_weight=...)` and its
`stateless_result(vars)` is a dict `{"mae": ..., ...}`, which the logs flatten. Unweighted metrics ignore the
sample weights; `weighted_metrics` use them (named as `fit` logs them, "weighted_<name>" on a clash).
"""

from __future__ import annotations

from nnjax.train import steps
from nnjax.train.metric_base import Metric
from nnjax.train.metric_means import MeanMetricWrapper
from nnjax.train.state import StepConfig


class CompileMetrics(Metric):
    """The compiled metrics of a model, one `MeanMetricWrapper` each.

    Args:
      entries: `(logged name, per-element fn, weighted)` per compiled metric.
    """

    def __init__(self, entries):
        super().__init__(name="compile_metrics")
        self._entries = []
        for index, (name, fn, weighted) in enumerate(entries):
            metric = MeanMetricWrapper(fn, name=name)
            setattr(self, f"metric_{index}", metric)  # tracked: its variables follow in `variables`
            self._entries.append((metric, weighted))

    @property
    def metrics(self) -> list:
        """The compiled metrics' objects, in logging order."""
        return [metric for metric, _ in self._entries]

    def update_state(self, y_true, y_pred, sample_weight=None):
        for metric, weighted in self._entries:
            metric.update_state(y_true, y_pred, sample_weight if weighted else None)

    def result(self) -> dict:
        return {metric.name: metric.result() for metric, _ in self._entries}

    def reset_state(self) -> None:
        for metric, _ in self._entries:
            metric.reset_state()


def compile_metrics(compiled) -> CompileMetrics | None:
    """The `CompileMetrics` of a `CompileConfig`, or None when it has no metrics (as Keras).

    Raises:
      NotImplementedError: for several outputs or a stateful metric (Precision, AUC, ...), which a Keras-form
        step cannot update yet.
    """
    if not (compiled.metrics or compiled.weighted_metrics or any(h.metrics or h.weighted_metrics for h in compiled.outputs)):
        return None
    if compiled.outputs:
        raise NotImplementedError(
            "model.metrics: the compile metrics of a model with several outputs are not available to a Keras-form "
            "train_step/test_step yet; expected one output. Supported instead: create metric objects in __init__ "
            "(self.mae = nj.metrics.MeanAbsoluteError(name='mae')) and update them in your step"
        )
    config = StepConfig(metrics=compiled.metrics, weighted_metrics=compiled.weighted_metrics)
    entries = []
    for name, metric, weighted in steps.logged_metrics(config):
        if not hasattr(metric, "fn"):
            raise NotImplementedError(
                f"model.metrics: the compiled metric {name!r} ({type(metric).__name__}) keeps counts, which a "
                "Keras-form train_step/test_step cannot update through compile_metrics yet; expected per-element "
                "metrics (mae, mse, accuracy, ...). Supported instead: create the metric object in __init__ and "
                "update it in your step, or drop the train_step override"
            )
        entries.append((name, metric, weighted))
    return CompileMetrics(entries)


__all__ = ["CompileMetrics", "compile_metrics"]
