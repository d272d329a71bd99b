"""`compile`'s losses and metrics as Keras's serialized form, and back (for saved models and `.keras` files).

A name stays a name. An object becomes what Keras's `serialize_keras_object` writes:

    {"module": "keras.losses", "class_name": "SparseCategoricalCrossentropy",
     "config": {"from_logits": True, "name": "sparse_categorical_crossentropy", ...}, "registered_name": None}

nnjax's Keras-named losses, stateful metrics (`nj.metrics.Precision(thresholds=0.3)`, ...) and
schedules record the arguments they were made with (`nnjax.train.recorded`); any other object with a
`get_config()` is written by its class's registered name (`nj.saving.register_keras_serializable`)
and rebuilt by `cls.from_config(config)`. A function is written by name, as Keras writes one
(`{"class_name": "function", "config": name}`): nnjax's own loss and metric functions, or a function
registered with `register_keras_serializable` (or passed in `custom_objects` when loading).
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

from nnjax.saving.objects import SerializationError, _names, get_registered_object


def plain(value, where: str) -> Any:
    """A config value as plain JSON data (tuples and arrays as lists), as Keras's JSON config holds it.

    Raises:
      SerializationError: for a value that is not numbers, strings, None or lists / dicts of them.
    """
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (list, tuple)):
        return [plain(v, where) for v in value]
    if isinstance(value, np.ndarray) or type(value).__module__.startswith("jax"):
        return np.asarray(value).tolist()
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return {k: plain(v, f"{where}.{k}") for k, v in value.items()}
    raise SerializationError(
        f"{where}: a value of type {type(value).__name__} ({value!r}) cannot be written to a config; "
        "expected numbers, strings, None or lists of them"
    )


def _builtin_functions() -> dict[int, str]:
    """id -> name of nnjax's loss and metric functions (what a name in `compile` resolves to)."""
    from nnjax.train import losses as losses_lib
    from nnjax.train import metrics as metrics_lib

    found = {id(fn): name for name, (fn, _, _) in losses_lib._KINDS.items()}
    found.update({id(fn): name for name, fn in metrics_lib._METRICS.items()})
    found[id(metrics_lib.accuracy)] = "accuracy"
    return found


def _function(fn, where: str) -> dict:
    name = _builtin_functions().get(id(fn)) or _names.get(id(fn))
    if name is None:
        raise SerializationError(
            f"{where}: the function {getattr(fn, '__name__', fn)!r} has no registered name, so a saved model could not "
            "find it again. Register it with @nj.saving.register_keras_serializable() (and pass it in custom_objects when "
            "loading), or pass include_optimizer=False and compile again after loading"
        )
    return {"module": "builtins", "class_name": "function", "config": name, "registered_name": "function"}


def serialize(value, where: str) -> Any:
    """A `loss`, `metrics` or `weighted_metrics` argument of `compile` (nested per output) as JSON data.

    Raises:
      SerializationError: for an object with no recorded arguments and no `get_config`, or an unregistered
        function (the message says what to do).
    """
    from nnjax.train import losses as losses_lib
    from nnjax.train import metrics as metrics_lib
    from nnjax.train.confusion import StatefulMetric
    from nnjax.train.recorded import serialized

    if value is None or isinstance(value, str):
        return value
    if isinstance(value, (list, tuple)) and not isinstance(value, StatefulMetric):
        return [serialize(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, dict):
        return {k: serialize(v, f"{where}[{k!r}]") for k, v in value.items()}
    record = None
    if isinstance(value, losses_lib.Loss) and (value.serialized is not None or not value._subclassed):
        if value.serialized is None:
            return _function(value.fn, where)
        record = value.serialized
    elif isinstance(value, StatefulMetric):
        record = serialized(value, key=lambda metric: metric.update)
        if record is None:
            raise SerializationError(
                f"{where}: the metric {value.name!r} was not made by one of nj.metrics's Keras-named constructors, so its "
                "arguments are unknown; pass include_optimizer=False and compile again after loading"
            )
    elif isinstance(value, metrics_lib.Metric):
        return _function(value.fn, where)
    elif hasattr(value, "get_config") and not isinstance(value, type):
        # Any object with a config (e.g. a metric class): written by its class's (registered) name.
        cls = type(value)
        module = cls.__module__
        for package, keras_module in (("nnjax.metrics", "keras.metrics"), ("nnjax.losses", "keras.losses")):
            if getattr(sys.modules.get(package), cls.__name__, None) is cls:  # a Keras-named class: Keras's module
                module = keras_module
        record = {
            "module": module,
            "class_name": cls.__name__,
            "config": value.get_config(),
            "registered_name": _names.get(id(cls)),
        }
    elif callable(value):
        return _function(value, where)
    if record is None:
        raise SerializationError(f"{where}: a {type(value).__name__} cannot be written to a config")
    return {**record, "config": plain(record["config"], where)}


def _class(data: dict, where: str):
    """The class or constructor a serialized object names: registered, in `custom_objects`, or nnjax's."""
    from nnjax.train import confusion
    from nnjax.train import losses as losses_lib

    class_name = data["class_name"]
    for name in (data.get("registered_name"), class_name):
        found = get_registered_object(name) if name else None
        if found is not None:
            return found
    module = str(data.get("module") or "")
    if module in ("keras.losses", "keras.src.losses.losses") and class_name in losses_lib.CLASSES:
        return losses_lib.CLASSES[class_name]
    for package in ("nnjax.metrics", "nnjax.losses"):  # Keras-named classes with from_config (nj.metrics.Precision, ...)
        found = getattr(sys.modules.get(package), class_name, None)
        if isinstance(found, type) and hasattr(found, "from_config"):
            return found
    if class_name in confusion.CLASSES and module.startswith(("keras.metrics", "keras.src.metrics")):
        return confusion.CLASSES[class_name]  # the functional accumulators (`nnjax.train.confusion`)
    raise SerializationError(
        f"{where}: unknown class {class_name!r} (module {module or '?'}) in the saved compile arguments. nnjax does not "
        f"import classes named in a file; pass it when loading: load_model(path, custom_objects={{{class_name!r}: ...}}), or "
        "register it with @nj.saving.register_keras_serializable()"
    )


def deserialize(data, where: str) -> Any:
    """The inverse of `serialize`: names, lists and dicts as they are; serialized objects and functions rebuilt.

    Raises:
      SerializationError: for a class or function that is neither nnjax's, registered nor in `custom_objects`.
    """
    if data is None or isinstance(data, str):
        return data
    if isinstance(data, list):
        return [deserialize(v, f"{where}[{i}]") for i, v in enumerate(data)]
    if not isinstance(data, dict):
        return data
    if "class_name" not in data:
        return {k: deserialize(v, f"{where}[{k!r}]") for k, v in data.items()}
    if data["class_name"] == "function":
        return _deserialize_function(str(data.get("config")), where)
    cls = _class(data, where)
    config = dict(data.get("config") or {})
    if config.get("dtype") in (None, "float32") and not isinstance(cls, type):
        config.pop("dtype", None)  # Keras's metrics write their dtype; nnjax's compute in float32
    from_config = getattr(cls, "from_config", None)
    try:
        return from_config(config) if isinstance(cls, type) and from_config is not None else cls(**config)
    except (TypeError, ValueError) as err:
        raise SerializationError(f"{where}: {data['class_name']}({config}) failed: {err}") from err


def _deserialize_function(name: str, where: str):
    from nnjax.train import losses as losses_lib
    from nnjax.train import metrics as metrics_lib

    found = get_registered_object(name)
    if found is not None:
        return found
    if name == "accuracy":
        return metrics_lib.accuracy
    if name in metrics_lib._METRICS:
        return metrics_lib._METRICS[name]
    if name in losses_lib._KINDS:
        return losses_lib._KINDS[name][0]
    raise SerializationError(
        f"{where}: the saved model was compiled with the Python function {name!r}, whose code is not stored in the file "
        f"(safe mode). Pass it when loading: load_model(path, custom_objects={{{name!r}: fn}}), or register it with "
        "@nj.saving.register_keras_serializable()"
    )


def serialize_optimizer_arguments(arguments: dict, where: str) -> dict:
    """`nj.optimizers.build`'s arguments with a learning-rate schedule in Keras's serialized form.

    Raises:
      SerializationError: for a schedule that is not one of `nj.optimizers.schedules`.
    """
    from nnjax.train import schedules

    arguments = {k: v for k, v in arguments.items() if v is not None}
    rate = arguments.get("learning_rate")
    if callable(rate):
        record = schedules.serialize(rate)
        if record is None:
            raise SerializationError(
                f"{where} a learning-rate schedule that is not one of nj.optimizers.schedules (e.g. an optax schedule), whose "
                "arguments are unknown; use nj.optimizers.schedules.ExponentialDecay(...) etc., or pass "
                "include_optimizer=False and compile again after loading"
            )
        arguments["learning_rate"] = {**record, "config": plain(record["config"], f"{where} learning_rate")}
    return arguments


def deserialize_learning_rate(value):
    """A float, or the schedule a serialized `learning_rate` names."""
    from nnjax.train import schedules

    if isinstance(value, dict) and "class_name" in value:
        return schedules.deserialize(value)
    return value


__all__ = ["deserialize", "deserialize_learning_rate", "plain", "serialize", "serialize_optimizer_arguments"]
