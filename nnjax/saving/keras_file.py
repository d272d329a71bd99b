"""Keras 3 ".keras" files (a zip of config.json, metadata.json and model.weights.h5), read and written without pickle.

Reading builds the nnjax model from Keras's config: each Keras layer becomes the `nj.layers` class of
the same name with the same arguments (Keras-only arguments at their inactive values, such as
`kernel_regularizer=None`, are dropped; an active one stops with an error naming it), a functional
model's nodes are replayed on `nj.Input`s, and `keras.ops` nodes (`x[:, :4]`, `x + 1`) become `nj.ops`
calls. The weights are copied from the HDF5 file, where Keras keeps each layer's variables under
`layers/<snake_case class name, numbered>/vars/<i>` in the layer's `weights` order (an RNN's under
`cell/vars`, a Bidirectional's under `forward_layer` and `backward_layer`), which is the order of
the nnjax layer's `weights`.

The compile state comes along both ways: `compile_config` (optimizer, losses, metrics) and the optimizer's
variables under `optimizer/vars` (see `nnjax.saving.keras_optimizer`), so training continues as in Keras.

Writing does the reverse for models whose layers all have a Keras counterpart: `keras.models.load_model`
reads the file. Only JSON, zipfile and h5py are used; nothing is unpickled, imported or evaluated.
"""

from __future__ import annotations

import contextlib
import inspect
import io
import json
import os
import re
import sys
import zipfile
from typing import Any

import numpy as np

from nnjax.saving.objects import SerializationError, custom_object_scope, get_registered_object

CONFIG_FILE = "config.json"
METADATA_FILE = "metadata.json"
WEIGHTS_FILE = "model.weights.h5"

# Keras-only arguments nnjax drops when they have these (inactive) values.
_INACTIVE = {
    "data_format": ("channels_last",),
    "synchronized": (False,),
    "renorm": (False,),
    "renorm_momentum": (0.99,),
    "stateful": (False,),
    "use_gate": (False,),
    "sparse": (False,),
    "ragged": (False,),
    "optional": (False,),
    "use_cudnn": ("auto",),
}
_MODEL_CLASSES = ("Sequential", "Functional", "Model")


def keras_snake_case(name: str) -> str:
    """Keras's `naming.to_snake_case`: the key of a layer in a ".keras" weights file ("Conv2D" -> "conv2d")."""
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def _is_op(data: dict) -> bool:
    return str(data.get("module", "")).startswith("keras.src.ops")


# ---------------------------------------------------------------------------------- config -> nnjax
def _accepted(cls) -> set[str] | None:
    """Keyword arguments `cls(...)` accepts, following `**kwargs` up the classes (None: anything)."""
    from nnjax.layers.base import Layer

    names: set[str] = set()
    classes = [cls]
    cell = getattr(cls, "_cell_type", None)
    if isinstance(cell, type):
        classes.append(cell)
    for start in classes:
        for klass in start.__mro__:
            init = klass.__dict__.get("__init__")
            if init is None:
                continue
            params = inspect.signature(getattr(init, "__wrapped__", init)).parameters.values()
            names |= {p.name for p in params if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}
            if not any(p.kind is p.VAR_KEYWORD for p in params) or klass is Layer:
                break
    for start in classes:  # `{prefix}_regularizer=` / `{prefix}_constraint=` reach the base Layer through **kwargs
        names |= {f"{prefix}_{kind}" for prefix, _ in getattr(start, "_weight_options", ()) for kind in ("regularizer", "constraint")}
    names.discard("self")
    return names


def _keras_object(value: dict, where: str):
    """An initializer, regularizer, constraint or layer serialized by Keras, as nnjax's counterpart."""
    module = str(value.get("module") or "")
    class_name = value["class_name"]
    config = value.get("config") or {}
    if module.startswith("keras.layers") or module in ("keras", "keras.src.models.functional") or class_name in _MODEL_CLASSES:
        return layer_from_keras(value, where)
    if module == "keras.initializers":
        from nnjax import initializers

        cls = initializers.CLASSES.get(class_name)
        if cls is None:
            raise SerializationError(f"{where}: Keras initializer {class_name!r} has no nnjax counterpart")
        args = {k: v for k, v in config.items() if v is not None and k not in ("input_axes", "output_axes")}
        try:
            return cls(**args)
        except TypeError:
            return class_name  # the same distribution; the weights are read from the file anyway
    kind = module.rsplit(".", 1)[-1]
    package = sys.modules.get(f"nnjax.{kind}")  # nnjax.regularizers / nnjax.constraints, loaded by nnjax's __init__
    found = get_registered_object(value.get("registered_name") or class_name)
    if found is None and package is not None and class_name in getattr(package, "__all__", ()):
        found = getattr(package, class_name)
    if found is None:
        raise SerializationError(
            f"{where}: Keras's {kind} {class_name!r} has no nnjax counterpart; remove it in Keras before saving, or pass an "
            f"equivalent in custom_objects={{{class_name!r}: ...}}"
        )
    return found(**config) if isinstance(found, type) else found


def _value(value, where: str):
    if isinstance(value, dict) and "class_name" in value:
        if value["class_name"] in ("__tuple__",):
            return tuple(_value(v, where) for v in value["config"]["value"])
        if value["class_name"] == "__lambda__":
            raise SerializationError(
                f"{where}: a Keras Lambda whose function is stored as Python bytecode; nnjax never loads code from a file "
                "(safe mode). Give the function a name, register it (nj.saving.register_keras_serializable) and pass it in "
                "custom_objects, or replace the Lambda with a layer"
            )
        if value["class_name"] == "function":
            name = value.get("registered_name") or value.get("config")
            found = get_registered_object(str(name))
            if found is None:
                raise SerializationError(f"{where}: the saved model calls the Python function {name!r}, whose code is not in "
                                         f"the file; pass it in load_model(path, custom_objects={{{name!r}: fn}})")
            return found
        return _keras_object(value, where)
    if isinstance(value, dict):
        return {k: _value(v, where) for k, v in value.items()}
    if isinstance(value, list):
        return [_value(v, where) for v in value]
    return value


def _layer_class(data: dict, where: str):
    from nnjax.saving.objects import _nnjax_class

    class_name = data["class_name"]
    found = get_registered_object(data.get("registered_name") or class_name) or get_registered_object(class_name)
    if found is None and str(data.get("module", "")).startswith("keras"):
        found = _nnjax_class(class_name)
    if found is None:
        raise SerializationError(
            f"{where}: Keras layer class {class_name!r} has no nnjax counterpart in nj.layers. Pass one in "
            f"custom_objects={{{class_name!r}: MyLayer}} (a layer taking the same config), or rebuild the model in nnjax "
            "and copy the weights"
        )
    return found


def layer_from_keras(data: dict, where: str = "model"):
    """An nnjax layer (or model) from one entry of a Keras config (weights new).

    Raises:
      SerializationError: for a class or an active argument nnjax does not have (the message names it).
    """
    class_name = data["class_name"]
    config = dict(data.get("config") or {})
    here = f'{where} > {class_name} "{config.get("name", "?")}"'
    if class_name == "Sequential":
        return _sequential_from_keras(config, here)
    if class_name == "Functional" or (class_name == "Model" and "layers" in config):
        return _functional_from_keras(config, here)
    if class_name == "InputLayer":
        from nnjax.layers.core import InputLayer

        shape = config.get("batch_shape") or [None, *config.get("shape", ())]
        return InputLayer(tuple(shape[1:]), dtype=config.get("dtype") or None, name=config.get("name"))
    cls = _layer_class(data, here)
    accepted = _accepted(cls)
    args = {}
    for key, value in config.items():
        if key not in accepted:
            if value is None or value in _INACTIVE.get(key, ()) or (key == "renorm_momentum" and not config.get("renorm")):
                continue
            raise SerializationError(
                f"{here}: Keras's argument {key}={value!r} has no counterpart in nnjax's {cls.__name__} (it takes "
                f"{sorted(accepted)}); remove it in Keras before saving"
            )
        if key == "dtype":  # a dtype name or Keras's DTypePolicy config: nnjax's layers read both
            args[key] = value
            continue
        args[key] = _value(value, f"{here}.{key}")
    try:
        return cls(**args)
    except (TypeError, ValueError) as err:
        raise SerializationError(f"{here}: nnjax's {cls.__name__} does not take Keras's config: {err}") from err


def _sequential_from_keras(config: dict, where: str):
    from nnjax.shell.sequential import Sequential

    layers = [layer_from_keras(entry, where) for entry in config.get("layers", [])]
    model = Sequential(layers, name=config.get("name"))
    shape = config.get("build_input_shape")
    first = (config.get("layers") or [{}])[0]
    dtype = (first.get("config") or {}).get("dtype") if first.get("class_name") == "InputLayer" else None
    if not model.built and shape is not None:
        model.build(tuple(shape), dtype=dtype if isinstance(dtype, str) else "float32")
    elif model.built and isinstance(dtype, str) and dtype != "float32":
        model.build(tuple(model.input_shape), dtype=dtype)
    return model


def _history(value) -> tuple[str, int, int] | None:
    if isinstance(value, dict) and value.get("class_name") == "__keras_tensor__":
        name, node, index = value["config"]["keras_history"]
        return name, int(node), int(index)
    return None


def _replace_tensors(value, tensors: dict, where: str):
    ref = _history(value)
    if ref is not None:
        if ref not in tensors:
            raise KeyError(ref)
        return tensors[ref]
    if isinstance(value, dict) and value.get("class_name") == "__slice__":
        c = value["config"]
        return slice(c.get("start"), c.get("stop"), c.get("step"))
    if isinstance(value, dict) and value.get("class_name") == "__ellipsis__":
        return Ellipsis
    if isinstance(value, list):
        return [_replace_tensors(v, tensors, where) for v in value]
    if isinstance(value, dict) and "class_name" not in value:
        return {k: _replace_tensors(v, tensors, where) for k, v in value.items()}
    return _value(value, where)


def _call_op(data: dict, args, kwargs, where: str):
    from nnjax import ops
    from nnjax.layers import functional as functional_lib

    class_name = data["class_name"]
    if class_name == "GetItem":
        x, key = args
        key = tuple(key) if isinstance(key, list) else key
        return x[key]
    fn = getattr(ops, keras_snake_case(class_name), None)
    if fn is None or not hasattr(fn, "__wrapped__"):
        raise SerializationError(f"{where}: the Keras operation {class_name!r} has no nj.ops counterpart; wrap it in a layer")
    options = {k: v for k, v in (data.get("config") or {}).items() if k != "name"}
    del functional_lib
    return fn(*args, **kwargs, **options)


def _functional_from_keras(config: dict, where: str):
    import jax

    from nnjax.layers.functional import Input, KerasTensor
    from nnjax.shell.functional import FunctionalModel

    entries = config["layers"]
    layers: dict[str, Any] = {}
    tensors: dict[tuple[str, int, int], Any] = {}
    inputs: dict[str, Any] = {}
    pending = []
    for entry in entries:
        name = entry.get("name") or entry["config"]["name"]
        here = f'{where} > {entry["class_name"]} "{name}"'
        if entry["class_name"] == "InputLayer":
            c = entry["config"]
            shape = c.get("batch_shape") or [None, *c.get("shape", ())]
            tensor = Input(batch_shape=tuple(shape), dtype=c.get("dtype") or "float32", name=name)
            inputs[name] = tensor
            tensors[(name, 0, 0)] = tensor
            continue
        if not _is_op(entry):
            layers[name] = layer_from_keras(entry, where)
        pending.extend((entry, name, node_index, node, here) for node_index, node in enumerate(entry.get("inbound_nodes", [])))
    while pending:
        progressed, waiting = False, []
        for entry, name, node_index, node, here in pending:
            try:
                args = _replace_tensors(node.get("args", []), tensors, here)
                kwargs = {k: _replace_tensors(v, tensors, here) for k, v in (node.get("kwargs") or {}).items()
                          if not (k == "mask" and v is None)}
            except KeyError:
                waiting.append((entry, name, node_index, node, here))
                continue
            if _is_op(entry):
                out = _call_op(entry, args, kwargs, here)
            else:
                out = layers[name](*args, **kwargs)
            for index, tensor in enumerate(jax.tree.leaves(out, is_leaf=lambda v: isinstance(v, KerasTensor))):
                tensors[(name, node_index, index)] = tensor
            progressed = True
        if not progressed:
            raise SerializationError(f"{where}: the graph's nodes cannot be ordered (an input of "
                                     f"{waiting[0][1]!r} is never produced)")
        pending = waiting

    def structure(spec):
        if isinstance(spec, dict):
            return {k: structure(v) for k, v in spec.items()}
        if isinstance(spec, list) and spec and isinstance(spec[0], str) and len(spec) == 3:
            return tensors[(spec[0], int(spec[1]), int(spec[2]))]
        return [structure(v) for v in spec]

    model_inputs = structure(config["input_layers"])
    outputs = structure(config["output_layers"])
    if isinstance(model_inputs, list) and len(model_inputs) == 1:
        model_inputs = model_inputs[0]
    if isinstance(outputs, list) and len(outputs) == 1:
        outputs = outputs[0]
    model = FunctionalModel(model_inputs, outputs, name=config.get("name"))
    model._keras_layers = layers  # by Keras name: where load_keras_file copies the weights to
    return model


# ---------------------------------------------------------------------------------- weights
def _vars(group) -> list[np.ndarray]:
    if group is None or "vars" not in group:
        return []
    variables = group["vars"]
    return [np.asarray(variables[key]) for key in sorted(variables, key=int)]


_CHILD_ORDER = ("cell", "layer", "forward_layer", "backward_layer")


def _layer_arrays(group) -> list[np.ndarray]:
    """A Keras layer's variables from its HDF5 group, in the layer's `weights` order."""
    arrays = _vars(group)
    children = [k for k in group if k not in ("vars", "layers")]
    for key in sorted(children, key=lambda k: (_CHILD_ORDER.index(k) if k in _CHILD_ORDER else len(_CHILD_ORDER), k)):
        arrays += _layer_arrays(group[key])
    return arrays


def _assign_model(model, config_entries: list, group, where: str, *, sequential: bool) -> None:
    """Copies the arrays of one Keras model level (`layers/<key>`) into the nnjax model's layers."""
    if sequential:
        nnjax_layers = [layer for layer in model.layers if type(layer).__name__ not in ("InputLayer", "SymbolicInput")]
        entries = [e for e in config_entries if e["class_name"] != "InputLayer"]
        by_entry = list(zip(entries, nnjax_layers, strict=True))
    else:
        named = model._keras_layers
        by_entry = [(e, named.get(e.get("name") or e["config"]["name"])) for e in config_entries if not _is_op(e)]
    used: dict[str, int] = {}
    container = group["layers"] if group is not None and "layers" in group else None
    for entry, layer in by_entry:
        base = keras_snake_case(entry["class_name"])
        count = used.get(base, 0)
        used[base] = count + 1
        key = base if count == 0 else f"{base}_{count}"
        if entry["class_name"] == "InputLayer" or layer is None:
            continue
        sub = container[key] if container is not None and key in container else None
        name = entry["config"].get("name")
        if entry["class_name"] in _MODEL_CLASSES:
            _assign_model(layer, entry["config"]["layers"], sub, f'{where} > "{name}"',
                          sequential=entry["class_name"] == "Sequential")
            continue
        arrays = _layer_arrays(sub) if sub is not None else []
        weights = list(layer.weights) if hasattr(layer, "weights") else []
        if len(arrays) != len(weights):
            raise SerializationError(f'{where} > {entry["class_name"]} "{name}": the file has {len(arrays)} arrays for it '
                                     f"(layers/{key}); nnjax's layer has {len(weights)} weights")
        for index, (variable, value) in enumerate(zip(weights, arrays, strict=True)):
            if tuple(variable.shape) != value.shape:
                raise SerializationError(f'{where} > {entry["class_name"]} "{name}": weight {index} has shape {value.shape} '
                                         f"in the file; nnjax's layer expects {tuple(variable.shape)}")
            variable.set_value(np.asarray(value, dtype=variable.dtype))


def load_keras_file(path: str, custom_objects: dict | None = None, compile: bool = True):  # noqa: A002 - Keras's name
    """An nnjax model from a Keras 3 ".keras" file (architecture, weights, compile state; see the module docstring).

    Args:
      path: the ".keras" file.
      custom_objects: `{name: class or function}` for classes and functions the file names.
      compile: compile with the file's `compile_config` (optimizer, losses and metrics, by name or Keras's
        serialized form) and restore the optimizer's variables (`nnjax.saving.keras_optimizer`), so that `fit`
        continues as Keras's would.

    Raises:
      FileNotFoundError: if there is no file at `path`.
      SerializationError: for layers, arguments or operations nnjax does not have (named in the message).
    """
    import h5py

    if not os.path.isfile(path):
        raise FileNotFoundError(f"load_model: no file at {path!r}")
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        if CONFIG_FILE not in names:
            raise ValueError(f"load_model: {path!r} is not a Keras 3 file: it has no {CONFIG_FILE} (entries {names[:5]})")
        config = json.loads(archive.read(CONFIG_FILE))
        weights = archive.read(WEIGHTS_FILE) if WEIGHTS_FILE in names else None
    with custom_object_scope(custom_objects):
        model = layer_from_keras(config, "load_model")
        from nnjax.shell.model import Model

        if not isinstance(model, Model):
            model = Model(model)
        with contextlib.ExitStack() as stack:
            h5 = stack.enter_context(h5py.File(io.BytesIO(weights), "r")) if weights is not None else None
            _assign_model(model, config["config"].get("layers", []), h5, f'model "{model.name}"',
                          sequential=config["class_name"] == "Sequential")
    if compile and config.get("compile_config") and _compile_from_keras(model, config["compile_config"]):
        _restore_optimizer(model, weights, f'load_model: model "{model.name}"')
    return model


def _compile_from_keras(model, compile_config: dict) -> bool:
    """`model.compile` with a Keras compile_config (names and Keras's serialized losses, metrics and schedules).

    Returns True when it was applied; otherwise the model stays uncompiled, with a warning that says why.
    """
    import warnings

    from nnjax.saving import compile_objects

    optimizer = compile_config.get("optimizer")
    try:
        if isinstance(optimizer, dict):
            from nnjax.train import optimizers as optimizers_lib

            options = {k: v for k, v in (optimizer.get("config") or {}).items()
                       if k not in ("name", "loss_scale_factor", "is_legacy_optimizer") and v is not None}
            options.pop("use_ema", None) if not options.get("use_ema") else None
            if "learning_rate" in options:
                options["learning_rate"] = compile_objects.deserialize_learning_rate(options["learning_rate"])
            tx = optimizers_lib.build(keras_snake_case(optimizer["class_name"]).replace("_", ""), **options)
        else:
            tx = optimizer
        arguments = {key: compile_objects.deserialize(compile_config.get(key), f"load_model: compile_config {key}")
                     for key in ("loss", "metrics", "weighted_metrics", "loss_weights")}
        steps = compile_config.get("steps_per_execution")
        model.compile(optimizer=tx, **{k: v for k, v in arguments.items() if v is not None},
                      steps_per_execution=steps if isinstance(steps, int) and steps > 1 else "auto")
    except (TypeError, ValueError) as err:
        warnings.warn(f"load_model: the Keras file's compile_config could not be applied ({err}); the model is not "
                      "compiled: call model.compile(...)", stacklevel=3)
        return False
    return True


def _restore_optimizer(model, weights: bytes | None, where: str) -> None:
    """The optimizer variables Keras wrote under `optimizer/vars`, into the compiled model's optimizer state."""
    import h5py

    from nnjax.saving import keras_optimizer, keras_order

    if weights is None:
        return
    with h5py.File(io.BytesIO(weights), "r") as h5:
        if "optimizer" not in h5 or "vars" not in h5["optimizer"] or not len(h5["optimizer"]["vars"]):
            return
        arrays = _vars(h5["optimizer"])
    variables = keras_order.keras_variables(model._module, keras_order.keras_layer_order(model._module))
    keras_optimizer.restore_optimizer(model, arrays, variables, where)


__all__ = ["keras_snake_case", "layer_from_keras", "load_keras_file"]
