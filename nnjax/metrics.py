"""Metrics by Keras name: Keras's metric classes (`Metric` and its subclasses), the per-element functions
(`nnjax.train.metrics`), and `get`/`serialize`/`deserialize`.

The classes hold their state in variables (`update_state`, `result`, `reset_state`, and the stateless
forms that work under `jax.jit`); `compile(metrics=[...])` takes them, user subclasses of `Metric` and
flax `nnx.metrics` objects. The functional accumulators behind the confusion classes (`StatefulMetric`:
`init`/`update`/`result`) are in `nnjax.train.confusion` (`nj.train.confusion.Precision()`, ...).
"""

from __future__ import annotations

from nnjax.train import confusion  # noqa: F401
from nnjax.train import metric_base as _metric_base
from nnjax.train import metrics as _per_element_lib
from nnjax.train.confusion import StatefulMetric, mean_metric, merge  # noqa: F401
from nnjax.train.metric_adapters import ObjectAccumulator, from_flax  # noqa: F401
from nnjax.train.metric_base import MetricVariable, StatelessScope, in_stateless_scope  # noqa: F401
from nnjax.train.metric_classes import *  # noqa: F401,F403
from nnjax.train.metric_classes import __all__ as _classes
from nnjax.train.metric_confusion import *  # noqa: F401,F403
from nnjax.train.metric_confusion import __all__ as _confusion_classes
from nnjax.train.metric_means import Mean, MeanMetricWrapper, Sum  # noqa: F401
from nnjax.train.metrics import *  # noqa: F403
from nnjax.train.metrics import __all__ as _per_element

# Keras's base class (nnjax.train.metrics.Metric is the (name, fn) pair that compile uses for functions).
Metric = _metric_base.Metric
# The per-element functions of the same names stay reachable by their snake-case names.
top_k_categorical_accuracy = _per_element_lib.top_k_categorical_accuracy
sparse_top_k_categorical_accuracy = _per_element_lib.sparse_top_k_categorical_accuracy

CLASSES = sorted(
    {*_classes, *(n for n in _confusion_classes if n != "AccumulatorMetric"), "Mean", "MeanMetricWrapper", "Metric", "Sum"}
)


def _class_named(name: str):
    """The nnjax metric class of a Keras class name or its snake-case form ("AUC", "auc", "mean_squared_error")."""
    from nnjax.train.metric_base import _to_snake_case

    found = globals().get(name)
    if name in CLASSES and isinstance(found, type):
        return found
    by_snake = {_to_snake_case(n): n for n in CLASSES}
    return globals()[by_snake[name]] if name in by_snake else None


def serialize(metric) -> dict:
    """A metric object as `{"module", "class_name", "registered_name", "config"}` (Keras's `serialize`).

    Raises:
      TypeError: for something that is not a metric object.
    """
    from nnjax.saving import objects

    if not isinstance(metric, Metric):
        raise TypeError(
            f"metrics.serialize: expected a metric object (an nj.metrics.Metric); received {type(metric).__name__} {metric!r}"
        )
    return objects.serialize_object(metric, f"metric {metric.name!r}")


def _functions() -> dict:
    from nnjax.train import losses

    found = {
        name: getattr(losses, name)
        for name in losses.__dict__
        if callable(getattr(losses, name)) and not name.startswith("_") and not name[0].isupper()
    }
    found.update(
        {
            name: getattr(_per_element_lib, name)
            for name in _per_element_lib.__all__
            if callable(getattr(_per_element_lib, name)) and not name[0].isupper()
        }
    )
    return found


def deserialize(config: dict, custom_objects: dict | None = None):
    """The metric object `serialize` wrote (user classes: registered, or given in `custom_objects`).

    Raises:
      ValueError: for a class that is neither nnjax's, registered nor in `custom_objects`.
    """
    from nnjax.saving import objects

    if not isinstance(config, dict) or "class_name" not in config:
        raise ValueError(
            f"metrics.deserialize: expected a dict with 'class_name' and 'config' (what serialize writes); received {config!r}"
        )
    cls = None
    for name in (config.get("registered_name"), config["class_name"]):
        if name and cls is None:
            cls = objects.get_registered_object(name, custom_objects)
    cls = cls or _class_named(config["class_name"])
    if cls is None:
        raise ValueError(
            f"metrics.deserialize: unknown metric class {config['class_name']!r}; expected one of "
            f"{CLASSES}, a class registered with @nj.saving.register_keras_serializable(), or one passed "
            "in custom_objects"
        )
    with objects.custom_object_scope({**_functions(), **(custom_objects or {})}):
        arguments = {k: objects.decode(v, f"metric {config['class_name']}.{k}") for k, v in config.get("config", {}).items()}
    return cls.from_config(arguments)


def get(identifier):
    """A metric from a name, a config, an object or a function.

    - a metric object (or a flax `nnx.metrics` object, or a functional `StatefulMetric`): itself;
    - a config dict (`serialize`'s): the object it describes;
    - a Keras class name ("AUC", "SparseCategoricalAccuracy", a registered class's name) or the snake-case name of a
      metric kept in counts ("precision", "auc", "f1_score"): a new object;
    - another snake-case name ("mse", "accuracy", "sparse_categorical_accuracy") or a function: the per-element
      `(name, fn)` pair (`nnjax.train.metrics.get`), whose call gives per-element values.

    Raises:
      ValueError: for an unknown name (the message lists the valid ones).
    """
    from nnjax.saving import objects

    if isinstance(identifier, (Metric, StatefulMetric, ObjectAccumulator)) or _is_flax_metric(identifier):
        return identifier
    if isinstance(identifier, dict):
        return deserialize(identifier)
    if isinstance(identifier, str):
        registered = objects.get_registered_object(identifier)
        if isinstance(registered, type) and issubclass(registered, Metric):
            return registered()
        if identifier in CLASSES or identifier.lower() in ("precision", "recall", "auc", "f1_score", "fbeta_score"):
            cls = _class_named(identifier)
            if cls is not None and cls is not Metric:
                return cls()
    return _per_element_lib.get(identifier)


def _is_flax_metric(value) -> bool:
    from flax import nnx

    return isinstance(value, nnx.metrics.Metric)


__all__ = [
    *(name for name in _per_element if name != "Metric"),
    *_classes,
    *_confusion_classes,
    "CLASSES",
    "Mean",
    "MeanMetricWrapper",
    "Metric",
    "MetricVariable",
    "StatefulMetric",
    "StatelessScope",
    "Sum",
    "confusion",
    "deserialize",
    "from_flax",
    "get",
    "in_stateless_scope",
    "mean_metric",
    "merge",
    "serialize",
]
