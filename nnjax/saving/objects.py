"""Layers and their arguments as JSON data, and back: Keras's `serialize`/`deserialize`, without code.

A layer is written as `{"module", "class_name", "registered_name", "config"}`. Its config is what
its constructor was given (recorded by `nnjax.layers.init_args`), or, for a user class that
overrides `get_config`, what that returns (Keras's rule). Reading looks the class up by name in
`custom_objects`, in the classes registered with `register_keras_serializable` and in `nj.layers` /
`nj.models`, and calls `cls.from_config(config)`. Nothing is imported from a module named in a file
and no code is read from one (Keras's `safe_mode`): a `Lambda` function or any other Python function
is found again by name among `custom_objects` and the registered functions, or loading stops.
"""

from __future__ import annotations

import contextlib
import inspect
import sys
import threading
from collections.abc import Callable
from typing import Any

import jax.numpy as jnp
import numpy as np
from flax import nnx

from nnjax.layers.init_args import init_arguments

# Set by nnjax.saving.graph when it is imported: how a nested functional graph is written and read
# ({"config": functional_config, "from_config": functional_from_config}).
_FUNCTIONAL: dict = {}

_registered: dict[str, Any] = {}  # "package>name" -> class or function
_names: dict[int, str] = {}  # id(object) -> "package>name"
_scope = threading.local()


class SerializationError(ValueError):
    """A model, layer or argument that cannot be written as (or read from) a config."""


def register_keras_serializable(package: str = "Custom", name: str | None = None) -> Callable:
    """Registers a class or function under `"package>name"` so that saved models can name it.

    Args:
      package: a namespace for the name.
      name: the registered name; the class's or function's `__name__` by default.

    Returns:
      A decorator that registers its argument and returns it unchanged.

    Raises:
      ValueError: if `package` contains ">".

    Example:
      >>> @nj.saving.register_keras_serializable(package="my_project")
      ... class Scale(nj.layers.Layer): ...
    """
    if ">" in package:
        raise ValueError(f"register_keras_serializable: `package` must not contain '>'; got {package!r}")

    def decorator(obj):
        key = f"{package}>{name or obj.__name__}"
        _registered[key] = obj
        _names[id(obj)] = key
        return obj

    return decorator


def get_registered_name(obj) -> str:
    """The name `obj` was registered under, or its `__name__`."""
    return _names.get(id(obj), getattr(obj, "__name__", type(obj).__name__))


def get_registered_object(name: str, custom_objects: dict | None = None):
    """The object registered (or passed in `custom_objects`) under `name`, or None."""
    custom = dict(_current_custom_objects())
    custom.update(custom_objects or {})
    if name in custom:
        return custom[name]
    if name in _registered:
        return _registered[name]
    short = name.split(">")[-1]
    return custom.get(short)


@contextlib.contextmanager
def custom_object_scope(custom_objects: dict | None):
    """Makes `custom_objects` visible to every lookup inside the `with` block (Keras's `CustomObjectScope`)."""
    stack = _scope.__dict__.setdefault("stack", [])
    stack.append(dict(custom_objects or {}))
    try:
        yield
    finally:
        stack.pop()


def _current_custom_objects() -> dict:
    merged: dict = {}
    for entry in _scope.__dict__.get("stack", []):
        merged.update(entry)
    return merged


# ---------------------------------------------------------------------------------- values
def _builtin_function_name(fn) -> str | None:
    """`activation:<name>` / `initializer:<name>` for nnjax's own functions, found by identity."""
    from nnjax import activations, initializers

    candidates = {fn, getattr(fn, "__wrapped__", None)}
    for name, candidate in activations.ACTIVATIONS.items():
        if candidate in candidates:
            return f"activation:{name}"
    for name, candidate in initializers.INITIALIZERS.items():
        if candidate in candidates:
            return f"initializer:{name}"
    return None


def encode(value, where: str) -> Any:
    """A constructor argument as JSON data (tuples, dtypes, arrays, layers and named functions marked).

    Raises:
      SerializationError: for a value that has no JSON form (naming `where`).
    """
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (np.dtype, type)) and _is_dtype(value):
        return {"__dtype__": jnp.dtype(value).name}
    if isinstance(value, tuple):
        return {"__tuple__": [encode(v, where) for v in value]}
    if isinstance(value, list) or type(value).__name__ == "List" and isinstance(value, nnx.Module):
        return [encode(v, where) for v in value]
    if isinstance(value, dict):
        if not all(isinstance(k, str) for k in value):
            raise SerializationError(f"{where}: a dict with keys that are not strings cannot be saved; got keys {list(value)}")
        return {"__dict__": {k: encode(v, f"{where}[{k!r}]") for k, v in value.items()}}
    if isinstance(value, (np.ndarray, jnp.ndarray)) and not isinstance(value, nnx.Variable):
        array = np.asarray(value)
        if array.size > 65536:
            raise SerializationError(f"{where}: an array of {array.size} values is too large for a config; make it a weight")
        return {"__array__": array.tolist(), "dtype": array.dtype.name}
    if isinstance(value, nnx.Module):
        return serialize_layer(value, where)
    if callable(value):
        builtin = _builtin_function_name(value)
        if builtin is not None:
            return {"__function__": builtin}
        if id(value) in _names:
            return {"__function__": _names[id(value)]}
        config = getattr(value, "get_config", None)
        if config is not None and not isinstance(value, type):  # an object with a config (a registered class's instance)
            return serialize_object(value, where)
        if inspect.isfunction(value) or inspect.isbuiltin(value) or inspect.ismethod(value):
            return {"__function__": getattr(value, "__name__", repr(value)), "python_code": True}
    raise SerializationError(
        f"{where}: a value of type {type(value).__name__} cannot be written to a config; pass JSON data (numbers, strings, "
        "lists), a Keras name, or an object whose class is registered with nj.saving.register_keras_serializable and has get_config"
    )


def _is_dtype(value) -> bool:
    try:
        jnp.dtype(value)
    except TypeError:
        return False
    return True


def decode(data, where: str) -> Any:
    """The inverse of `encode`.

    Raises:
      SerializationError: for a function or class that is neither nnjax's, registered nor in `custom_objects`.
    """
    if isinstance(data, list):
        return [decode(v, where) for v in data]
    if not isinstance(data, dict):
        return data
    if "__tuple__" in data:
        return tuple(decode(v, where) for v in data["__tuple__"])
    if "__dict__" in data:
        return {k: decode(v, f"{where}[{k!r}]") for k, v in data["__dict__"].items()}
    if "__dtype__" in data:
        return jnp.dtype(data["__dtype__"])
    if "__array__" in data:
        return np.asarray(data["__array__"], dtype=data["dtype"])
    if "__function__" in data:
        return _decode_function(data, where)
    if "class_name" in data and "config" in data:
        return deserialize_layer(data, where)
    return {k: decode(v, where) for k, v in data.items()}


def _decode_function(data: dict, where: str):
    from nnjax import activations, initializers

    name = data["__function__"]
    kind, _, short = name.partition(":")
    if kind == "activation" and short in activations.ACTIVATIONS:
        return activations.ACTIVATIONS[short]
    if kind == "initializer" and short in initializers.INITIALIZERS:
        return initializers.INITIALIZERS[short]
    found = get_registered_object(name)
    if found is not None:
        return found
    raise SerializationError(
        f"{where}: the saved model refers to the Python function {name!r}, whose code is not stored in the file (safe "
        f"mode: nnjax never loads code from a file). Pass it when loading: load_model(path, custom_objects={{{name!r}: "
        f"{name.split('>')[-1]}}}), or register it with @nj.saving.register_keras_serializable()"
    )


# ---------------------------------------------------------------------------------- objects and layers
def serialize_object(obj, where: str) -> dict:
    """`{"module", "class_name", "registered_name", "config"}` of an object with `get_config`."""
    cls = type(obj)
    config = obj.get_config()
    return {"module": cls.__module__, "class_name": cls.__name__, "registered_name": _names.get(id(cls)),
            "config": {k: encode(v, f"{where}.{k}") for k, v in config.items()}}


def _overrides_get_config(cls) -> bool:
    from nnjax.layers.base import Layer

    for klass in cls.__mro__:
        if klass is Layer:
            return False
        if "get_config" in klass.__dict__ and not klass.__module__.startswith("nnjax."):
            return True
    return False


def layer_config(layer, where: str) -> dict:
    """The config a layer is rebuilt from: its constructor's arguments, or a user class's `get_config()`.

    Raises:
      SerializationError: for a module that is not an nnjax `Layer` and whose class has no `get_config`.
    """
    from nnjax.layers.base import Layer
    from nnjax.layers.sequential import SequentialModule

    cls = type(layer)
    if isinstance(layer, SequentialModule):  # `add` changes it after construction
        return {"name": layer.name, "layers": list(layer.layers), "input_shape": layer.input_shape_hint}
    if _overrides_get_config(cls):
        return dict(layer.get_config())
    arguments = init_arguments(layer) if isinstance(layer, Layer) else None
    if arguments is None:
        raise SerializationError(
            f"{where}: a {cls.__name__} cannot be saved as a config: it is "
            + ("not an nnjax Layer" if not isinstance(layer, Layer) else "made with positional *args, which have no names")
            + f". Give {cls.__name__} a `get_config()` that returns its constructor arguments and register it with "
            "@nj.saving.register_keras_serializable(), or save the weights only (model.save_weights)"
        )
    if "key" in arguments and not isinstance(arguments["key"], (int, type(None))):
        arguments.pop("key")  # a PRNG key array: the saved weights replace what it initialised
    arguments["name"] = layer.name
    return arguments


def serialize_layer(layer, where: str = "model") -> dict:
    """A layer (or nested model) as `{"module", "class_name", "registered_name", "config"}`.

    Raises:
      SerializationError: for layers or arguments without a JSON form.
    """
    from nnjax.layers.functional import Functional

    cls = type(layer)
    name = getattr(layer, "name", cls.__name__)
    here = f'{where} > {cls.__name__} "{name}"'
    if isinstance(layer, Functional) and cls is Functional:
        return {"module": "nnjax.layers", "class_name": "Functional", "registered_name": None,
                "config": _FUNCTIONAL["config"](layer, here)}
    config = layer_config(layer, here)
    module = cls.__module__
    registered = _names.get(id(cls))
    if registered is None and not module.startswith("nnjax.") and cls.__name__ not in _current_custom_objects():
        raise SerializationError(
            f"{here}: the class {cls.__name__} (module {module}) is not registered, so a saved model could not name it. "
            f"Decorate it with @nj.saving.register_keras_serializable(package='my_package') (and give it a get_config() "
            "if its constructor takes arguments)"
        )
    return {"module": module, "class_name": cls.__name__, "registered_name": registered,
            "config": {k: encode(v, f"{here}.{k}") for k, v in config.items()}}


def _nnjax_class(class_name: str):
    from nnjax import layers, models
    from nnjax.layers.functional import SymbolicInput
    from nnjax.layers.sequential import LinenLayer, SequentialModule

    special = {"SequentialModule": SequentialModule, "SymbolicInput": SymbolicInput, "LinenLayer": LinenLayer}
    if class_name in special:
        return special[class_name]
    # Layers and models, and the argument objects with a config (regularizers, constraints) where nnjax has them
    # (loaded by nnjax's __init__).
    packages = (layers, models, *(sys.modules.get(f"nnjax.{name}") for name in ("regularizers", "constraints")))
    for package in packages:
        if package is not None and class_name in getattr(package, "__all__", ()) and isinstance(getattr(package, class_name, None), type):
            return getattr(package, class_name)
    return None


def resolve_class(data: dict, where: str, custom_objects: dict | None = None):
    """The class a serialized layer names, from `custom_objects`, the registry or nnjax's public layers.

    Raises:
      SerializationError: for a class that is none of these (the message says how to make it known).
    """
    class_name = data["class_name"]
    registered = data.get("registered_name")
    for name in (registered, class_name):
        if name:
            found = get_registered_object(name, custom_objects)
            if found is not None:
                return found
    module = str(data.get("module") or "")
    if module.startswith("nnjax") or module in ("keras.layers", "keras.src.layers") or not registered:
        found = _nnjax_class(class_name)
        if found is not None:
            return found
    raise SerializationError(
        f"{where}: unknown layer class {class_name!r} (module {module or '?'}). nnjax does not import classes named in a "
        f"file (safe mode); pass it when loading: load_model(path, custom_objects={{{class_name!r}: {class_name}}}), or "
        "register it with @nj.saving.register_keras_serializable()"
    )


def deserialize_layer(data: dict, where: str = "model", custom_objects: dict | None = None):
    """The layer `serialize_layer` wrote, rebuilt from its config (weights are new)."""
    class_name = data["class_name"]
    here = f'{where} > {class_name} "{data.get("config", {}).get("name", "?")}"'
    if class_name == "Functional" and str(data.get("module", "")).startswith("nnjax"):
        return _FUNCTIONAL["from_config"](data["config"], here)
    cls = resolve_class(data, here, custom_objects)
    config = {k: decode(v, f"{here}.{k}") for k, v in data["config"].items()}
    if class_name == "Lambda" and "function" not in config:
        raise SerializationError(f"{here}: the Lambda's function is missing from the config")
    from_config = getattr(cls, "from_config", None)
    try:
        return from_config(config) if from_config is not None else cls(**config)
    except TypeError as err:
        raise SerializationError(f"{here}: {class_name}.from_config(config) failed: {err}. config keys: {sorted(config)}") from err


__all__ = [
    "SerializationError",
    "custom_object_scope",
    "decode",
    "deserialize_layer",
    "encode",
    "get_registered_name",
    "get_registered_object",
    "layer_config",
    "register_keras_serializable",
    "resolve_class",
    "serialize_layer",
]
