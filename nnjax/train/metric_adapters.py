"""Metric objects inside compiled steps: an `nj.metrics.Metric` (or a flax `nnx.metrics` object) as a
`StatefulMetric`-shaped accumulator, pure functions over a tuple of its variables' values.

    acc = as_accumulator(nj.metrics.AUC())
    state = acc.init()                                   # zeros: no batch seen
    state = acc.update(state, y_true, y_pred, sample_weight)
    value = acc.result(state)

The state is held relative to the metric's reset values `R` (`stateless_reset_state()`, zeros for every
Keras metric): `update(s) = stateless_update_state(s + R) - R` and `result(s) = stateless_result(s + R)`.
So a sequence of updates is exactly the metric's, and one batch's `update(init())` is its contribution,
which `fit` and `evaluate` add up over an epoch (`nnjax.train.totals`): exact for metrics whose updates add
to their variables (`assign_add`, as every Keras metric does); a metric that assigns a non-additive value
(a running max) needs the stateless API in a custom loop instead.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from nnjax.train.metric_base import Metric


@dataclasses.dataclass(frozen=True, eq=False)
class ObjectAccumulator:
    """A metric object's `init`/`update`/`result` (see the module docstring); `source` is the object.

    Attributes:
      name: the logged name (the object's `name`).
      source: the `nj.metrics.Metric` or flax metric it runs.
      init, update, result: the `StatefulMetric` protocol.
      write_back: `(state) -> None`: sets the object's variables to the values after the batches of `state`.
    """

    name: str
    source: Any
    init: Callable
    update: Callable
    result: Callable
    write_back: Callable


def _plus(a, b):
    return tuple(jnp.asarray(x) + jnp.asarray(y, jnp.asarray(x).dtype) for x, y in zip(a, b))


def _minus(a, b):
    return tuple(jnp.asarray(x) - jnp.asarray(y, jnp.asarray(x).dtype) for x, y in zip(a, b))


def _keras_accumulator(metric: Metric) -> ObjectAccumulator:
    def build(y_pred_shape):
        if not metric.variables and hasattr(metric, "build_from_shapes") and y_pred_shape is not None:
            metric.build_from_shapes(None, y_pred_shape)
        if not metric.variables:
            raise ValueError(
                f"metric {metric.name!r} ({type(metric).__name__}): it has no variables yet and cannot "
                "make them without the output's shape (a model with several outputs: pass it per output, "
                "compile(metrics={'output_name': [...]}))"
            )

    def init(y_pred_shape=None):
        build(y_pred_shape)
        return tuple(jnp.zeros(jnp.shape(v), jnp.asarray(v).dtype) for v in metric.stateless_reset_state())

    def update(state, y_true, y_pred, sample_weight=None):
        reset = metric.stateless_reset_state()
        weights = () if sample_weight is None else (sample_weight,)  # as Keras: weighted metrics get a third argument
        new = metric.stateless_update_state(list(_plus(state, reset)), y_true, y_pred, *weights)
        return _minus(new, reset)

    def result(state):
        value = metric.stateless_result(list(_plus(state, metric.stateless_reset_state())))
        return jax.tree.map(jnp.asarray, value)  # a returned variable: its value

    def write_back(state):
        for variable, value in zip(metric.variables, _plus(state, metric.stateless_reset_state())):
            variable.assign(value)

    return ObjectAccumulator(metric.name, metric, init, update, result, write_back)


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _flax_accumulator(metric, name: str | None = None, arguments: Callable | None = None) -> ObjectAccumulator:
    from flax import nnx

    graphdef, start = nnx.split(metric)
    fresh = nnx.clone(metric)
    fresh.reset()
    reset_leaves, treedef = jax.tree.flatten(nnx.split(fresh)[1])
    del start
    label = name or _snake(type(metric).__name__)

    def merged(state):
        return nnx.merge(graphdef, jax.tree.unflatten(treedef, list(_plus(state, reset_leaves))))

    def init(y_pred_shape=None):
        del y_pred_shape
        return tuple(jnp.zeros_like(leaf) for leaf in reset_leaves)

    def update(state, y_true, y_pred, sample_weight=None):
        copy = merged(state)
        kwargs = dict(arguments(y_true, y_pred)) if arguments else {"logits": y_pred, "labels": y_true, "values": y_pred}
        if sample_weight is not None:  # flax's mask: values * mask summed, over the sum of the mask
            kwargs["mask"] = jnp.asarray(sample_weight)
        try:
            copy.update(**kwargs)
        except (TypeError, KeyError) as err:
            raise TypeError(
                f"compile(metrics=...): the flax metric {label!r} ({type(metric).__name__}) could not be "
                f"updated with {sorted(kwargs)}: {err}. nnjax calls update(logits=y_pred, labels=y_true, "
                "values=y_pred); for other arguments wrap it: nj.metrics.from_flax(metric, "
                "arguments=lambda y_true, y_pred: {...}, name=...)"
            ) from err
        return _minus(jax.tree.leaves(nnx.split(copy)[1]), reset_leaves)

    def result(state):
        value = merged(state).compute()
        if not isinstance(value, jax.Array) and not hasattr(value, "dtype"):
            raise TypeError(
                f"compile(metrics=...): the flax metric {label!r} computes a {type(value).__name__}; "
                "compile logs metrics that compute an array (Average, Accuracy, ...)"
            )
        return value

    def write_back(state):
        nnx.update(metric, jax.tree.unflatten(treedef, list(_plus(state, reset_leaves))))

    return ObjectAccumulator(label, metric, init, update, result, write_back)


def from_flax(metric, arguments: Callable | None = None, name: str | None = None) -> ObjectAccumulator:
    """A flax `nnx.metrics` object for `compile(metrics=...)`, updated with `arguments(y_true, y_pred)`.

    Args:
      metric: e.g. `nnx.metrics.Average()`, `nnx.metrics.Accuracy()`.
      arguments: `(y_true, y_pred) -> dict` of `update`'s keyword arguments (default:
        `{"logits": y_pred, "labels": y_true, "values": y_pred}`).
      name: the logged name (default: the class name in snake case, "average").

    Example:
      >>> per_example = lambda y_true, y_pred: {"values": jnp.max(y_pred, axis=-1)}
      >>> confidence = nj.metrics.from_flax(nnx.metrics.Average(), per_example, name="confidence")
      >>> model.compile(loss="sparse_categorical_crossentropy", metrics=[confidence])
    """
    return _flax_accumulator(metric, name=name, arguments=arguments)


def is_flax_metric(value) -> bool:
    """Whether `value` is a flax `nnx.metrics.Metric`."""
    from flax import nnx

    return isinstance(value, nnx.metrics.Metric)


def as_accumulator(value):
    """A metric object (`nj.metrics.Metric`, a flax metric) as an `ObjectAccumulator`, or None for anything else."""
    if isinstance(value, ObjectAccumulator):
        return value
    if isinstance(value, Metric):
        value._check_super_called()
        return _keras_accumulator(value)
    if is_flax_metric(value):
        return _flax_accumulator(value)
    return None


__all__ = ["ObjectAccumulator", "as_accumulator", "from_flax", "is_flax_metric"]
