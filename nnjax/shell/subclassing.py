"""Keras's model subclassing: `class M(nj.Model)` with layers made in `__init__` and a `call` method.

    class TwoLayer(nj.Model):
        def __init__(self, units):
            super().__init__()
            self.hidden = nj.layers.Dense(units, activation="relu")
            self.out = nj.layers.Dense(1)

        def call(self, inputs, training=False):
            return self.out(self.hidden(inputs))

The model's module is a `SubclassedCall` layer: what `__init__` assigns to the model after `super().__init__()`
(layers, weights, settings) lives on that layer, so it is part of the model's state (trained, saved, split into the
`TrainState`), and the layer's `call` runs the subclass's `call` with `self` resolving attributes on the layer being
called, so the pure training step sees the weights it differentiates. Sublayers build on the first call, as in Keras.
"""

from __future__ import annotations

import inspect
import re

from nnjax.layers.base import Layer, unique_name


def user_defined(cls: type, name: str) -> bool:
    """Whether `name` is defined by a class of `cls`'s MRO outside nnjax (the user's subclass)."""
    return any(name in vars(klass) for klass in cls.__mro__ if not klass.__module__.startswith("nnjax."))


class SubclassedCall(Layer):
    """The module of a `Model` subclass that defines `call`: holds its attributes and runs its `call`.

    Args:
      model_class: the subclass (its `call` and methods are looked up on it).
      name: the layer's name (the model's).
    """

    _checked_axes = ()

    def __init__(self, model_class: type, name: str | None = None):
        super().__init__(name=name)
        self.model_class = model_class
        try:
            parameters = inspect.signature(model_class.call).parameters
        except (TypeError, ValueError):
            parameters = {}
        self.call_takes_training = "training" in parameters

    def call(self, inputs, training=False):
        kwargs = {"training": bool(training)} if self.call_takes_training else {}
        return self.model_class.call(_View(self), inputs, **kwargs)


class SubclassingMixin:
    """The `Model` side: attributes assigned after `Model.__init__` are set on the `SubclassedCall` module too (the
    same objects, so a layer read from the model holds the weights the module is updated with)."""

    def __setattr__(self, name: str, value) -> None:
        module = self.__dict__.get("_module")
        if is_metric_object(value) and not name.startswith("_"):  # Keras tracks it in `model.metrics`; not a weight
            tracked = self.__dict__.setdefault("_tracked_metrics", [])
            if value not in tracked:
                tracked.append(value)
            super().__setattr__(name, value)
            return
        if (isinstance(module, SubclassedCall) and self.__dict__.get("_subclass_attributes") and not name.startswith("_")
                and name not in _MODEL_ATTRIBUTES and not isinstance(inspect.getattr_static(type(self), name, None), property)):
            setattr(module, name, value)
        super().__setattr__(name, value)


def is_metric_object(value) -> bool:
    """Whether `value` is a Keras-style metric object (`nj.metrics.Mean()`, ...)."""
    return all(hasattr(value, attr) for attr in ("stateless_update_state", "stateless_result", "stateless_reset_state"))


_MODEL_ATTRIBUTES = frozenset({"name", "history", "stop_training", "fit_loop", "fit_memory"})


def module_for(model, module, name: str | None):
    """The module of `Model.__init__`: `module`, or a `SubclassedCall` when a subclass defining `call` passes none."""
    if module is None and user_defined(type(model), "call"):
        snake = re.sub(r"(?<!^)(?=[A-Z])", "_", type(model).__name__).lower()
        return SubclassedCall(type(model), name=name or unique_name(snake))  # Keras: "my_model", "my_model_1", ...
    return module


class _View:
    """`self` inside a subclass's `call`: its own methods from the class, everything else from the called layer."""

    __slots__ = ("_layer",)

    def __init__(self, layer: SubclassedCall):
        object.__setattr__(self, "_layer", layer)

    def __getattr__(self, name: str):
        layer = object.__getattribute__(self, "_layer")
        cls = layer.model_class
        if user_defined(cls, name):
            value = inspect.getattr_static(cls, name)
            return value.__get__(self, cls) if hasattr(value, "__get__") else value
        return getattr(layer, name)

    def __setattr__(self, name: str, value) -> None:
        setattr(object.__getattribute__(self, "_layer"), name, value)


__all__ = ["SubclassedCall", "SubclassingMixin", "is_metric_object", "module_for", "user_defined"]
