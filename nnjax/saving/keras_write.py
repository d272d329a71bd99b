"""Writing Keras 3 ".keras" files from nnjax Sequential and functional models (see `nnjax.saving.keras_file`).

The config names each layer by its `nj.layers` class (Keras's name) with the arguments it was made with;
a functional graph's calls become Keras's `inbound_nodes` and its operations `keras.ops` nodes. The
weights go to `layers/<snake_case class name, numbered>/vars/<i>` in the order Keras walks the model
when it loads it (`keras.src.ops.function.map_graph`), so `keras.models.load_model` finds them.
"""

from __future__ import annotations

import contextlib
import datetime
import inspect
import io
import json
import os
import tempfile
import warnings
import zipfile

import numpy as np

from nnjax.saving.keras_file import CONFIG_FILE, METADATA_FILE, WEIGHTS_FILE, keras_snake_case
from nnjax.saving.keras_order import keras_operation_order, keras_variables
from nnjax.saving.objects import SerializationError, get_registered_name, get_registered_object


def _keras_value(value, where: str):
    from nnjax import activations
    from nnjax.saving.objects import _builtin_function_name

    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (list, tuple)):
        return [_keras_value(v, where) for v in value]
    if isinstance(value, dict):
        return {k: _keras_value(v, f"{where}.{k}") for k, v in value.items()}
    if _is_dtype_like(value):
        return np.dtype(value).name
    from nnjax.layers.base import Layer

    if isinstance(value, Layer):
        return _keras_layer_config(value, where)
    from nnjax import constraints, regularizers

    for package in (regularizers, constraints):  # Keras's own classes: written as Keras writes them
        serialized = package.serialize(value) if callable(value) else None
        if isinstance(serialized, dict) and serialized["module"].startswith("keras."):
            return _keras_value(serialized, where)
    if callable(value):
        name = _builtin_function_name(value)
        if name is not None and name.startswith("activation:"):
            return activations.name_of(value)
        if name is not None and name.startswith("initializer:"):
            return name.split(":", 1)[1]
    raise SerializationError(f"{where}: {value!r} has no Keras form; pass Keras names (activation='relu', "
                             "kernel_initializer='he_normal') to write a '.keras' file")


def _is_dtype_like(value) -> bool:
    if isinstance(value, np.dtype):
        return True
    try:
        return isinstance(value, type) and np.dtype(value) is not None
    except TypeError:
        return False


def _keras_layer_config(layer, where: str) -> dict:
    from nnjax.layers.core import InputLayer
    from nnjax.layers.functional import Functional
    from nnjax.layers.init_args import init_arguments
    from nnjax.layers.sequential import SequentialModule

    cls = type(layer)
    here = f'{where} > {cls.__name__} "{layer.name}"'
    if isinstance(layer, SequentialModule):
        return _keras_sequential(layer, here)[0]
    if cls is Functional:
        return _keras_functional(layer, here)[0]
    if isinstance(layer, InputLayer):
        shape = [None, *(layer.input_shape_hint or ())]
        return {"module": "keras.layers", "class_name": "InputLayer", "registered_name": None,
                "config": {"batch_shape": shape, "dtype": layer.input_dtype or "float32", "name": layer.name}}
    registered = get_registered_name(cls)
    if ">" in registered and get_registered_object(registered) is cls:  # a user layer, as Keras writes one
        return _keras_custom_layer(layer, registered, here)
    arguments = init_arguments(layer)
    if arguments is None or not cls.__module__.startswith("nnjax.layers") or cls.__name__.startswith("_"):
        raise SerializationError(f"{here}: only nnjax's Keras-named layers and layers registered with "
                                 "@nj.saving.register_keras_serializable can be written to a '.keras' file")  # fmt: skip
    for key in ("key", "seed", "input_shape", "batch_input_shape", "batch_size"):
        arguments.pop(key, None)
    if "input_dim" not in inspect.signature(cls.__init__).parameters:  # the base Layer's shape hint, not Embedding's size
        arguments.pop("input_dim", None)
    arguments["name"] = layer.name
    if getattr(layer, "trainable", True) is False:  # frozen after it was made: Keras's config keeps the flag
        arguments["trainable"] = False
    config = {k: _keras_value(v, f"{here}.{k}") for k, v in arguments.items()}
    entry = {"module": "keras.layers", "class_name": cls.__name__, "registered_name": None, "config": config}
    if getattr(layer, "built_input_shape", None) is not None:
        entry["build_config"] = {"input_shape": list(layer.built_input_shape)}
    return entry


def _keras_custom_layer(layer, registered: str, here: str) -> dict:
    """A registered user layer: its own `get_config()`, under its registered name (Keras reads it back by that name)."""
    if any(sub.weights for sub in layer._sublayers() if hasattr(sub, "weights")):
        raise SerializationError(f"{here}: a registered layer whose sublayers hold weights cannot be written to a "
                                 "'.keras' file yet (Keras stores them per attribute); save to a folder "
                                 "(model.save('path')) instead")  # fmt: skip
    config = {k: _keras_value(v, f"{here}.{k}") for k, v in layer.get_config().items()}
    entry = {"module": None, "class_name": type(layer).__name__, "registered_name": registered, "config": config}
    if getattr(layer, "built_input_shape", None) is not None:
        entry["build_config"] = {"input_shape": list(layer.built_input_shape)}
    return entry


def _keras_sequential(module, where: str) -> tuple[dict, list]:
    """Keras's config of a `SequentialModule`, and its layers in the weights file's order."""
    shape = module.built_input_shape
    if shape is None:
        raise SerializationError(f'{where}: Sequential "{module.name}" is not built; build it before saving')
    dtype = module.input_dtype or "float32"
    body = [layer for layer in module.layers if type(layer).__name__ not in ("InputLayer", "SymbolicInput")]
    entries = [{"module": "keras.layers", "class_name": "InputLayer", "registered_name": None,
                "config": {"batch_shape": list(shape), "dtype": np.dtype(dtype).name, "name": f"{module.name}_input"}}]
    entries += [_keras_layer_config(layer, where) for layer in body]
    config = {"module": "keras", "class_name": "Sequential", "registered_name": None,
              "config": {"name": module.name, "trainable": bool(getattr(module, "trainable", True)), "layers": entries, "build_input_shape": list(shape)},
              "build_config": {"input_shape": list(shape)}}
    return config, body


def _keras_index(value, where: str):
    if isinstance(value, tuple):
        return [_keras_index(v, where) for v in value]
    if isinstance(value, slice):
        return {"class_name": "__slice__", "config": {"start": value.start, "stop": value.stop, "step": value.step}}
    if value is None or isinstance(value, int):
        return value
    raise SerializationError(f"{where}: the index {value!r} has no Keras form; use ints and slices")


def _keras_functional(module, where: str) -> tuple[dict, list]:
    """Keras's config of a `Functional` graph, and its layers in the order Keras walks them (its weights file's order)."""
    import jax
    from flax import nnx

    from nnjax.layers import functional as functional_lib
    from nnjax.layers.functional import KerasTensor
    from nnjax.saving.graph import _op_name

    graph = module._program.graph
    in_tensors = graph["input_tensors"]
    node_index: dict[int, int] = {}  # id(_Node) -> its index among its layer's calls in this model
    calls: dict[int, int] = {}
    history: dict[int, list] = {id(t): [t.name, 0, 0] for t in in_tensors}
    entries: dict[int, dict] = {}
    for t in in_tensors:
        entries[id(t)] = {"module": "keras.layers", "class_name": "InputLayer", "registered_name": None, "name": t.name,
                          "config": {"batch_shape": list(t.shape), "dtype": np.dtype(t.dtype).name, "name": t.name},
                          "inbound_nodes": []}
    order: list[int] = [id(t) for t in in_tensors]
    for node in graph["nodes"]:
        here = f'{where} > call "{node.name}"'
        owner = id(node.op) if node.is_module else id(node)
        if node.is_module:
            index = calls.get(owner, 0)
            calls[owner] = index + 1
            name = node.op.name
        else:
            _op_name(node.op, here)  # an operation nnjax can name
            index, name = 0, node.name
        node_index[id(node)] = index
        leaves = []
        for leaf in node.leaves:
            if isinstance(leaf, KerasTensor):
                leaves.append({"class_name": "__keras_tensor__", "config": {
                    "shape": list(leaf.shape), "dtype": np.dtype(leaf.dtype).name, "keras_history": history[id(leaf)]}})
            elif isinstance(leaf, functional_lib._Static):
                leaves.append(_keras_index(leaf.value, here))
            else:
                leaves.append(_keras_value(leaf, here))
        args, kwargs = jax.tree.unflatten(node.treedef, leaves)
        inbound = {"args": _keras_value(list(args), here), "kwargs": _keras_value(dict(kwargs), here)}
        if owner not in entries:
            if node.is_module:
                entry = dict(_keras_layer_config(node.op, where))
                entry.pop("build_config", None)  # Keras builds the layers of a graph when it replays the calls
            else:
                entry = {"module": "keras.src.ops.numpy", "class_name": node.kind, "registered_name": node.kind,
                         "config": {"name": name}}
            entry["name"] = name
            entry["inbound_nodes"] = []
            entries[owner] = entry
            order.append(owner)
        entries[owner]["inbound_nodes"].append(inbound)
        for position, tensor in enumerate(node.outputs):
            history[id(tensor)] = [name, index, position]

    def refs(value):
        if isinstance(value, dict):
            return {k: refs(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [refs(v) for v in value]
        return history[id(value)]

    operations = keras_operation_order(graph)
    config = {"module": "keras.src.models.functional", "class_name": "Functional", "registered_name": "Functional",
              "config": {"name": module.name, "trainable": bool(getattr(module, "trainable", True)), "layers": [entries[id(op)] for op in operations],
                         "input_layers": refs(graph["inputs"]), "output_layers": refs(graph["outputs"])}}
    del order
    return config, [op for op in operations if isinstance(op, (KerasTensor, nnx.Module))]


def _keras_model_config(model) -> tuple[dict, list]:
    """Keras's config of an nnjax Sequential or functional model, and its layers in the weights file's order."""
    from nnjax.layers.functional import Functional
    from nnjax.layers.sequential import SequentialModule

    module = model._module
    where = f'model.save(".keras"): model "{model.name}"'
    if isinstance(module, SequentialModule):
        return _keras_sequential(module, where)
    if type(module) is Functional:
        return _keras_functional(module, where)
    raise SerializationError(
        f"{where} is a {type(model).__name__} over a {type(module).__name__}; a '.keras' file holds Sequential and "
        "functional models. Save it to a folder (model.save('path')) instead"
    )


def _write_model(group, module, layers: list) -> None:
    """The weights of one model level: `layers/<snake_case class name, numbered>/...`, as Keras lays them out."""
    from nnjax.layers.functional import Functional, KerasTensor
    from nnjax.layers.sequential import SequentialModule

    container = group.create_group("layers")
    used: dict[str, int] = {}
    for layer in layers:
        if isinstance(layer, KerasTensor):
            class_name = "InputLayer"
        elif isinstance(layer, SequentialModule):
            class_name = "Sequential"
        elif type(layer) is Functional:
            class_name = "Functional"
        else:
            class_name = type(layer).__name__
        base = keras_snake_case(class_name)
        count = used.get(base, 0)
        used[base] = count + 1
        sub = container.create_group(base if count == 0 else f"{base}_{count}")
        if class_name == "InputLayer":
            sub.create_group("vars")
        elif class_name == "Sequential":
            _write_model(sub, layer, _keras_sequential(layer, "model")[1])
        elif class_name == "Functional":
            _write_model(sub, layer, _keras_functional(layer, "model")[1])
        else:
            _write_layer_vars(sub, layer)
    group.create_group("vars")


def _write_layer_vars(group, layer) -> None:
    from nnjax.layers.recurrent import RNN, Bidirectional

    if isinstance(layer, Bidirectional):
        group.create_group("vars")
        for key in ("forward_layer", "backward_layer"):
            _write_layer_vars(group.create_group(key), getattr(layer, key))
        return
    if isinstance(layer, RNN):
        group.create_group("vars")
        _write_arrays(group.create_group("cell").create_group("vars"), layer.weights)
        return
    _write_arrays(group.create_group("vars"), layer.weights)


def _write_arrays(group, variables) -> None:
    for index, variable in enumerate(variables):
        group.create_dataset(str(index), data=np.asarray(variable.get_value()))


def save_keras_file(model, path: str, overwrite: bool = True, *, include_optimizer: bool = True) -> str:
    """Writes `model` as a Keras 3 ".keras" file: architecture, weights and, when compiled (and `include_optimizer`),
    Keras's `compile_config` and the optimizer's variables (see `nnjax.saving.keras_optimizer`).

    Raises:
      FileExistsError: if `path` exists and `overwrite` is False.
      SerializationError: for a model or layer that has no Keras form (the message names it).
    """
    import h5py

    if os.path.exists(path) and not overwrite:
        raise FileExistsError(f"model.save: {path!r} exists; pass overwrite=True to replace it")
    model._require_built("save")
    model.module  # noqa: B018 - the current weights, written into the layers
    config, layers = _keras_model_config(model)
    compile_config = optimizer = None
    if include_optimizer and model._compiled is not None:
        from nnjax.saving import keras_optimizer

        compile_config = keras_optimizer.keras_compile_config(model)
        if compile_config is None:
            warnings.warn(f'model.save(".keras"): model "{model.name}" was compiled with arguments Keras has no form for '
                          "(a loss_fn, an optax transformation, or an optimizer option only nnjax has); the file holds the "
                          "architecture and weights only", stacklevel=3)
        elif model._state is not None:
            optimizer, reason = keras_optimizer.optimizer_arrays(model, keras_variables(model._module, layers))
            if optimizer is None:
                warnings.warn(f'model.save(".keras"): the optimizer state of model "{model.name}" is not written: '
                              f"{reason}; Keras starts it afresh", stacklevel=3)
    if compile_config is not None:
        config["compile_config"] = compile_config
    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as h5:
        _write_model(h5, model._module, layers)
        if optimizer is not None:
            variables = h5.create_group("optimizer").create_group("vars")
            for index, value in enumerate(optimizer):
                variables.create_dataset(str(index), data=value)
    metadata = {"keras_version": "3.0.0", "date_saved": datetime.datetime.now().strftime("%Y-%m-%d@%H:%M:%S"),
                "written_by": "nnjax"}
    folder = os.path.dirname(path) or "."
    handle, temporary = tempfile.mkstemp(dir=folder, prefix=".nnjax-", suffix=".keras")
    try:
        with os.fdopen(handle, "wb") as raw, zipfile.ZipFile(raw, "w") as archive:
            archive.writestr(METADATA_FILE, json.dumps(metadata))
            archive.writestr(CONFIG_FILE, json.dumps(config))
            archive.writestr(WEIGHTS_FILE, buffer.getvalue())
        os.replace(temporary, path)  # the old file stays whole until the new one is complete
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(temporary)
        raise
    return path


__all__ = ["save_keras_file"]
