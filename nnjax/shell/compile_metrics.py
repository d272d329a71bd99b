"""Keras's `CompileMetrics`: the metrics of `compile(metrics=..., weighted_metrics=...)` as one metric object.

It is the entry named "compile_metrics" of `model.metrics` (after the loss tracker "loss"), as in Keras 3: a
Keras-form `train_step` updates it with `stateless_update_state(vars, y, y_pred, sample_weight=...)` and its
`stateless_result(vars)` is a dict `{"mae": ..., ...}`, which the logs flatten. Unweighted metrics ignore the
sample weights; `weighted_metrics` use them (named as `fit` logs them, "weighted_<name>" on a clash).
"""

from __future__ import annotations

from nnjax.train import steps
from nnjax.train.metric_base import Metric
from nnjax.train.metric_confusion import AccumulatorMetric
from nnjax.train.metric_means import MeanMetricWrapper
from nnjax.train.state import StepConfig


class CompileMetrics(Metric):
    """The compiled metrics of a model, one `MeanMetricWrapper` each.

    Args:
      entries: `(logged name, compiled metric, weighted)` per compiled metric: a per-element one
        (`nnjax.train.metrics.Metric`), a functional accumulator (`nnjax.train.confusion`: Precision, AUC, ...)
        or a metric object given to `compile` (then that object itself is updated, as in Keras).
    """

    def __init__(self, entries):
        super().__init__(name="compile_metrics")
        self._entries = []
        for index, (name, compiled, weighted) in enumerate(entries):
            source = getattr(compiled, "source", None)
            if hasattr(source, "stateless_update_state"):  # a metric object given to compile: Keras updates it itself
                metric = source
            elif hasattr(compiled, "fn"):
                metric = MeanMetricWrapper(compiled, name=name)
            else:
                metric = _Counts(compiled, name)
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


class _Counts(AccumulatorMetric):
    """A compiled functional accumulator (`nnjax.train.confusion`) as a metric object with variables."""

    def __init__(self, accumulator, name: str):
        super().__init__(name=name)
        self._use(accumulator, {})


def compile_metrics(compiled) -> CompileMetrics | None:
    """The `CompileMetrics` of a `CompileConfig`, or None when it has no metrics (as Keras).

    Raises:
      NotImplementedError: for several outputs, or a metric whose state's shape depends on the data (F-scores,
        multi-label AUC), which a Keras-form step cannot update yet.
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
        if not hasattr(metric, "fn") and not hasattr(getattr(metric, "source", None), "stateless_update_state"):
            try:
                metric.init(None)
            except Exception as err:  # noqa: BLE001 - its state's shape depends on the data
                raise NotImplementedError(
                    f"model.metrics: the compiled metric {name!r} ({type(metric).__name__}) sizes its state from the "
                    "data, which a Keras-form train_step/test_step cannot do through compile_metrics; expected a "
                    "metric with a fixed state. Supported instead: create the metric object in __init__, build it "
                    "(metric.build_from_shapes(y_true_shape, y_pred_shape)) and update it in your step"
                ) from err
        entries.append((name, metric, weighted))
    return CompileMetrics(entries)


__all__ = ["CompileMetrics", "compile_metrics"]
