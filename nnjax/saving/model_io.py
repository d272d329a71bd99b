"""Whole-model saving: the architecture as JSON plus the weights and optimizer state, through nnjax's checkpoints.

`save_model(model, path)` writes one nnjax checkpoint folder (Orbax arrays, SHA-256 manifest, atomic
commit; see `nnjax.checkpoint`) whose JSON metadata holds the model's config, how it was built and
what it was compiled with (optimizer name and arguments, a schedule, losses and metrics as names or
in Keras's serialized form; see `nnjax.saving.compile_objects`). `load_model(path)`
rebuilds the model from the config, restores the arrays and, with `compile=True`, compiles it again and
restores the optimizer state, step and RNG key, so that `fit` continues exactly. A path ending in
".keras" is a Keras 3 zip file instead (see `nnjax.saving.keras_file`).
"""

from __future__ import annotations

import json
import os
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from nnjax.saving.objects import (
    SerializationError,
    _names,
    custom_object_scope,
    decode,
    deserialize_layer,
    encode,
    resolve_class,
    serialize_layer,
)

FORMAT = "nnjax.model"
VERSION = 1


# ---------------------------------------------------------------------------------- architecture
def model_config(model) -> dict:
    """`{"class_name", "config", ...}` of a `Model`: the JSON `to_json` writes.

    Raises:
      SerializationError: for a model or layer that cannot be written as a config (the message names it).
    """
    from nnjax.shell.functional import FunctionalModel
    from nnjax.shell.model import Model
    from nnjax.shell.sequential import Sequential

    cls = type(model)
    build = None
    if model._input_spec is not None and model._input_spec[0] is not None:
        build = {"input_shape": list(model._input_spec[0]), "dtype": jnp.dtype(model._input_spec[1]).name}
    where = f'{cls.__name__} "{model.name}"'
    if cls is Sequential:
        body = serialize_layer(model._module, where)["config"]
        return {"class_name": "Sequential", "module": "nnjax", "config": body, "build": build}
    if cls is FunctionalModel:
        return {"class_name": "Functional", "module": "nnjax", "config": serialize_layer(model._module, where)["config"],
                "build": build}
    if cls is Model:
        return {"class_name": "Model", "module": "nnjax", "config": {"module": serialize_layer(model._module, where),
                                                                      "name": model.name}, "build": build}
    get_config = cls.__dict__.get("get_config") or next(
        (k.__dict__["get_config"] for k in cls.__mro__ if "get_config" in k.__dict__ and not k.__module__.startswith("nnjax.")),
        None)
    if get_config is None or id(cls) not in _names:
        missing = [what for what, ok in (("a get_config() returning its constructor arguments", get_config is not None),
                                         ("@nj.saving.register_keras_serializable()", id(cls) in _names)) if not ok]
        raise SerializationError(
            f"{where}: the subclassed model {cls.__name__} cannot be saved whole: it needs {' and '.join(missing)}, so that "
            f"load_model can call {cls.__name__}.from_config(config). Or save the weights only (model.save_weights)"
        )
    config = model.get_config()
    return {"class_name": cls.__name__, "module": cls.__module__, "registered_name": _names[id(cls)],
            "config": {k: encode(v, f"{where}.{k}") for k, v in config.items()}, "build": build}


def model_from_config(data: dict, custom_objects: dict | None = None):
    """A new, uncompiled model (new weights) from `model_config`'s data.

    Raises:
      SerializationError: for classes that are neither nnjax's nor registered nor in `custom_objects`.
    """
    from nnjax.shell.functional import FunctionalModel
    from nnjax.shell.model import Model
    from nnjax.shell.sequential import Sequential

    with custom_object_scope(custom_objects):
        class_name = data["class_name"]
        nnjax_made = data.get("module") == "nnjax"
        if nnjax_made and class_name == "Sequential":
            inner = deserialize_layer({"module": "nnjax.layers", "class_name": "SequentialModule", "config": data["config"]})
            model = Sequential(list(inner.layers), name=inner.name)
        elif nnjax_made and class_name == "Functional":
            from nnjax.saving.graph import functional_from_config

            graph = functional_from_config(data["config"], f'model "{data["config"].get("name")}"')
            model = FunctionalModel.__new__(FunctionalModel)
            _wrap_functional(model, graph)
        elif nnjax_made and class_name == "Model":
            module = deserialize_layer(data["config"]["module"])
            model = Model(module, name=data["config"].get("name"))
        else:
            cls = resolve_class(data, f"model {class_name!r}", custom_objects)
            config = {k: decode(v, f"model {class_name!r}.{k}") for k, v in data["config"].items()}
            from_config = getattr(cls, "from_config", None)
            model = from_config(config) if from_config is not None and "from_config" in _own_methods(cls) else cls(**config)
        build = data.get("build")
        if build is not None and not model.built:
            model.build(tuple(build["input_shape"]), dtype=jnp.dtype(build["dtype"]))
        elif build is not None and model._input_spec is None:
            model._input_spec = (tuple(build["input_shape"]), jnp.dtype(build["dtype"]))
        if build is not None and not isinstance(model._module, nnx.Module):
            raise SerializationError(f"model {class_name!r}: rebuilt without a module")
        if build is not None and _needs_forward(model):
            model(jnp.zeros((1, *build["input_shape"][1:]), build["dtype"]))  # builds weights created on the first call
    return model


def _own_methods(cls) -> set:
    return {name for k in cls.__mro__ if not k.__module__.startswith("nnjax.") for name in k.__dict__}


def _needs_forward(model) -> bool:
    from nnjax.layers.base import Layer

    module = model._module
    return isinstance(module, Layer) and not module.built


def _wrap_functional(model, graph) -> None:
    """`FunctionalModel.__init__` on an existing graph module."""
    from nnjax.shell import functional as shell_functional
    from nnjax.shell.model import Model

    Model.__init__(model, graph, name=graph.name)
    shell_functional._models[graph] = model
    tensors = graph._program.graph["input_tensors"]
    if len(tensors) == 1:
        model._input_spec = (tensors[0].shape, jnp.dtype(tensors[0].dtype))


def to_json(model, **kwargs) -> str:
    """The model's architecture as a JSON string (`model_from_json` rebuilds it). `kwargs` go to `json.dumps`."""
    return json.dumps(model_config(model), **kwargs)


def model_from_json(json_string: str, custom_objects: dict | None = None):
    """A new model (new weights, not compiled) from `model.to_json()`'s string.

    Raises:
      SerializationError: for an unknown class or function (pass it in `custom_objects`).
    """
    return model_from_config(json.loads(json_string), custom_objects)


def clone_model(model, custom_objects: dict | None = None):
    """A new model with the same architecture and newly initialised weights (Keras's `clone_model`).

    Args:
      model: an `nj.Model`, `nj.Sequential` or functional model.
      custom_objects: classes and functions the architecture names, by name.

    Returns:
      An uncompiled model; its weights are drawn from the initialisers again.
    """
    return model_from_config(json.loads(to_json(model)), custom_objects)


# ---------------------------------------------------------------------------------- compile state
def _compile_config(model) -> dict | None:
    """What `model.compile` was given, as JSON data: names as they are, objects in Keras's serialized form.

    Raises:
      SerializationError: for a compile argument that has no config (the message names it and says what to do).
    """
    from nnjax.saving import compile_objects
    from nnjax.train import optimizers as optimizers_lib

    arguments = getattr(model, "_compile_arguments", None)
    if model._compiled is None or arguments is None:
        return None
    where = f'model.save: model "{model.name}" was compiled with'
    optimizer = arguments.get("optimizer")
    if isinstance(optimizer, str):
        optimizer_config = {"name": optimizer}
    else:
        optimizer_config = optimizers_lib.build_arguments(optimizer)
        if optimizer_config is None:
            raise SerializationError(
                f"{where} an optimizer that has no name and arguments ({type(optimizer).__name__}); compile with a name or an "
                "nj.optimizers constructor (nj.optimizers.Adam(learning_rate=...)) to save it, or pass "
                "include_optimizer=False to save the model without its compile state"
            )
        optimizer_config = compile_objects.serialize_optimizer_arguments(optimizer_config, where)
    if arguments.get("loss_fn") is not None:
        raise SerializationError(f"{where} a custom loss_fn (Python code); pass include_optimizer=False and compile after loading")
    if arguments.get("distribution") is not None:
        raise SerializationError(
            f"{where} distribution={type(arguments['distribution']).__name__}(...), which names this machine's devices and "
            "is not saved; pass include_optimizer=False and compile(..., distribution=...) again after loading"
        )
    other = {"seed": int(model._compiled.seed)}  # the resolved data seed: the next epoch shuffles as it would have
    for key in ("steps_per_execution", "dtype_policy", "nonfinite", "loss_weights"):
        value = arguments.get(key)
        if value is not None and value != "auto":
            other[key] = encode(value, f"compile({key}=...)")
    return {
        "optimizer": {k: v if k == "learning_rate" else encode(v, f"optimizer.{k}") for k, v in optimizer_config.items()},
        "loss": compile_objects.serialize(arguments.get("loss"), f"{where} loss"),
        "metrics": compile_objects.serialize(arguments.get("metrics"), f"{where} metrics"),
        "weighted_metrics": compile_objects.serialize(arguments.get("weighted_metrics"), f"{where} weighted_metrics"),
        **other,
    }


def compile_from_config(model, config: dict, custom_objects: dict | None = None) -> None:
    """`model.compile(...)` with what `_compile_config` saved."""
    from nnjax.saving import compile_objects
    from nnjax.train import optimizers as optimizers_lib

    with custom_object_scope(custom_objects):
        optimizer = {k: compile_objects.deserialize_learning_rate(v) if k == "learning_rate" else decode(v, "optimizer")
                     for k, v in config["optimizer"].items()}
        name = optimizer.pop("name")
        tx = name if not optimizer else optimizers_lib.build(name, **optimizer)
        objects = {key: compile_objects.deserialize(config.get(key), f"load_model: compile({key}=...)")
                   for key in ("loss", "metrics", "weighted_metrics")}
    kwargs = {k: decode(v, k) for k, v in config.items() if k not in ("optimizer", "loss", "metrics", "weighted_metrics")}
    if objects["weighted_metrics"]:
        kwargs["weighted_metrics"] = objects["weighted_metrics"]
    model.compile(optimizer=tx, loss=objects["loss"], metrics=objects["metrics"], **kwargs)


# ---------------------------------------------------------------------------------- save / load
def _arrays(model, with_optimizer: bool) -> dict:
    params, model_state = model._variables()
    tree: dict[str, Any] = {"params": params.to_pure_dict(), "model_state": model_state.to_pure_dict()}
    if with_optimizer:
        state = model.state
        tree["opt_state"] = list(jax.tree.leaves(state.opt_state))
        tree["step"] = state.step
        tree["rng"] = state.rng
    return tree


def save_model(model, filepath: str | os.PathLike, overwrite: bool = True, *, include_optimizer: bool = True) -> str:
    """Saves the architecture, weights and compile state of `model` (Keras's `model.save`).

    Args:
      model: an nnjax model.
      filepath: a folder (an nnjax checkpoint: JSON config + Orbax arrays), or a path ending in ".keras" for a
        Keras 3 zip file that `keras.models.load_model` reads.
      overwrite: replace what is at `filepath` (only something nnjax wrote).
      include_optimizer: also save the compile arguments and the optimizer state (for `fit` to resume).

    Returns:
      The absolute path written.

    Raises:
      SerializationError: for a model, layer or compile argument that has no config (the message says what to add).
      FileExistsError: if `filepath` exists and `overwrite` is False.
    """
    path = os.path.abspath(os.fspath(filepath))
    if path.endswith(".keras"):
        from nnjax.saving import keras_write

        return keras_write.save_keras_file(model, path, overwrite=overwrite, include_optimizer=include_optimizer)
    if path.endswith(".h5") or path.endswith(".hdf5"):
        raise ValueError(f"save_model: the legacy HDF5 format ({os.path.basename(path)}) is not supported; save to a folder "
                         "or to a '.keras' file")
    model._require_built("save")
    compile_config = _compile_config(model) if include_optimizer else None
    metadata = {"format": FORMAT, "version": VERSION, "model": model_config(model), "compile": compile_config}
    from nnjax.checkpoint import core

    return core.save(path, _arrays(model, compile_config is not None), metadata=metadata, overwrite=overwrite)


def load_model(filepath: str | os.PathLike, custom_objects: dict | None = None, compile: bool = True,  # noqa: A002 - Keras's name
               safe_mode: bool = True):
    """Loads a model saved by `save_model` (a folder) or by Keras 3 (a ".keras" file).

    Args:
      filepath: the folder or ".keras" file.
      custom_objects: `{name: class or function}` for the user classes and functions the config names.
      compile: compile the model as it was saved and restore its optimizer state, step and RNG key (so `fit`
        resumes exactly).
      safe_mode: accepted for Keras compatibility; nnjax never runs code from a file whatever its value (a
        Lambda's function must come from `custom_objects` or the registry).

    Returns:
      The model.

    Raises:
      FileNotFoundError: if nothing is at `filepath`.
      SerializationError: for an unknown class or function (the message says how to pass it).
      ValueError: if the saved arrays do not match the rebuilt model, or the files are damaged.
    """
    del safe_mode
    path = os.path.abspath(os.fspath(filepath))
    if path.endswith(".keras"):
        from nnjax.saving import keras_file

        return keras_file.load_keras_file(path, custom_objects=custom_objects, compile=compile)
    if not os.path.exists(path):
        raise FileNotFoundError(f"load_model: nothing at {path!r}; expected a folder written by model.save or a '.keras' file")
    from nnjax.checkpoint import core

    metadata = core.read_metadata(path)
    if metadata.get("format") != FORMAT:
        raise ValueError(f"load_model: {path!r} is an nnjax checkpoint but not a saved model (no model config); "
                         "use model.load_weights or nj.checkpoint.restore")
    model = model_from_config(metadata["model"], custom_objects)
    compile_config = metadata.get("compile")
    if compile_config:  # the stored tree has the optimizer arrays: compile to have their structure
        compile_from_config(model, compile_config, custom_objects)
    restored = core.restore(path, _arrays(model, bool(compile_config)))
    params, model_state = model._variables()
    nnx.replace_by_pure_dict(params, restored["params"])
    nnx.replace_by_pure_dict(model_state, restored["model_state"])
    model._set_variables(params, model_state)
    if compile_config and compile:
        state = model.state
        opt_state = jax.tree.unflatten(jax.tree.structure(state.opt_state), restored["opt_state"])
        model.state = model.execution.place_state(state.replace(opt_state=opt_state, step=restored["step"],
                                                                rng=restored["rng"]))
    elif compile_config:  # compile=False: the weights only, as an uncompiled model
        model.module  # noqa: B018 - writes the state's weights into the module
        model._compiled = model._state = model._execution = None
    return model


__all__ = ["clone_model", "compile_from_config", "load_model", "model_config", "model_from_config", "model_from_json",
           "save_model", "to_json"]


def _register() -> None:
    import sys

    from nnjax.shell import saving_mixin

    saving_mixin._io = sys.modules[__name__]


_register()
