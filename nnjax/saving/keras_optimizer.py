"""The compile state in Keras 3 ".keras" files: `compile_config` and the optimizer's variables, both ways.

Keras writes `model.compile`'s arguments to config.json's `compile_config` (the optimizer, loss and
metrics serialized) and the optimizer's variables to model.weights.h5 under `optimizer/vars/<i>`, in
the order of `optimizer.variables`: `iteration`, `learning_rate` (unless it is a schedule), then the
per-variable slots. The slots follow the model's `trainable_variables` (its layers in the weights
file's order), in groups that differ per optimizer: Adam adds `momentum` and `velocity` together
(interleaved per variable), then amsgrad's `velocity_hat`; RMSprop adds `velocity`, `momentum` and
`average_gradient` one group after another; Nadam ends with its momentum product. nnjax's
`KerasOptimizerState` keeps the same slots per parameter (`nnjax.train.optimizer_rules`), so the
arrays are copied across in that order.
"""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np

from nnjax.saving.objects import SerializationError
from nnjax.train.optimizers import CONSTRUCTORS

# Keras's class name of each nnjax optimizer name ("adamw" -> "AdamW"): the Keras-named constructor's own name.
KERAS_CLASSES = {name: constructor.__name__ for name, constructor in CONSTRUCTORS.items()}


def _slot_groups(name: str, slots: tuple[str, ...]) -> list[tuple[str, ...]] | None:
    """Keras's grouping of an optimizer's slots (each group interleaved per variable), or None when not known."""
    if name in ("sgd", "lion", "adagrad"):
        return [slots] if slots else []
    if name in ("adam", "adamw"):
        return [("momentum", "velocity")] + ([("velocity_hat",)] if "velocity_hat" in slots else [])
    if name in ("adamax", "nadam"):
        return [slots]
    if name == "rmsprop":
        return [(slot,) for slot in slots]
    return None


# ---------------------------------------------------------------------------------- nnjax's optimizer state
def _parts(opt_state):
    """`(inject_state, keras_state)` of a `build` transformation's state (clipping in front allowed), or None."""
    from nnjax.train.optimizer_rules import KerasOptimizerState
    from nnjax.train.optimizers import _INJECT_STATES

    states = opt_state if isinstance(opt_state, tuple) and not hasattr(opt_state, "_fields") else (opt_state,)
    *front, last = states
    if any(jax.tree.leaves(s) for s in front) or not isinstance(last, _INJECT_STATES):
        return None
    if not isinstance(last.inner_state, KerasOptimizerState):
        return None
    return last, last.inner_state


def _param_paths(params) -> list[tuple]:
    """The path of each leaf of a params `nnx.State`, in leaf order (`('layers', 0, 'kernel')`)."""
    paths = []
    for keys, _ in jax.tree_util.tree_flatten_with_path(params)[0]:
        parts = []
        for key in keys:
            if isinstance(key, jax.tree_util.DictKey):
                parts.append(key.key)
            elif isinstance(key, jax.tree_util.SequenceKey):
                parts.append(key.idx)
            elif isinstance(key, jax.tree_util.GetAttrKey) and key.name != "value":
                parts.append(key.name)
        paths.append(tuple(parts))
    return paths


def _keras_trainable_order(model, variables: list) -> list[int]:
    """For each of Keras's `trainable_variables` (in order), the index of the nnjax params leaf it is.

    `variables` are the model's variables in Keras's `model.weights` order (`keras_write.keras_variables`).
    """
    from flax import nnx

    from nnjax.train import freeze

    where_is = {id(node): tuple(path) for path, node in nnx.iter_graph(model._module) if isinstance(node, nnx.Variable)}
    flags = freeze.trainable_leaves(model._module, model.state.params)  # Keras leaves frozen layers out of its slots
    leaf_of = {path: index for index, path in enumerate(_param_paths(model.state.params)) if flags is None or flags[index]}
    order: list[int] = []
    for variable in variables:
        index = leaf_of.get(where_is.get(id(variable)))
        if index is not None and index not in order:
            order.append(index)
    return order


def optimizer_arrays(model, variables: list) -> tuple[list[np.ndarray], str] | tuple[None, str]:
    """The arrays Keras keeps under `optimizer/vars`, in its order, and the optimizer's Keras name.

    Returns `(None, reason)` when the optimizer's state has no Keras layout (a plain optax transformation,
    EMA, gradient accumulation, loss scaling, or an optimizer whose layout nnjax does not know).
    """
    from nnjax.train import freeze
    from nnjax.train import optimizers as optimizers_lib

    arguments = optimizers_lib.build_arguments(model._compiled.tx)
    parts = _parts(model.state.opt_state)
    if arguments is None or parts is None:
        return None, "its optimizer is not a plain nj.optimizers one (EMA, gradient accumulation and loss scaling add state)"
    name = arguments["name"]
    inject, keras_state = parts
    rule_slots = _rule_slots(arguments)
    groups = _slot_groups(name, rule_slots)
    if groups is None:
        return None, f"nnjax does not know Keras's layout of {KERAS_CLASSES[name]}'s variables"
    order = _keras_trainable_order(model, variables)
    slot_leaves = [jax.tree.leaves(slot) for slot in keras_state.slots]
    trainable = freeze.trainable_leaves(model._module, model.state.params)
    if any(len(leaves) != len(order) + (0 if trainable is None else trainable.count(False)) for leaves in slot_leaves):
        return None, "its trainable parameters do not match the layers Keras would train"
    arrays = [np.asarray(keras_state.count, np.int32)]
    if not callable(arguments.get("learning_rate")):
        arrays.append(np.asarray(inject.hyperparams["learning_rate"], np.float32))
    for group in groups:
        for index in order:
            arrays.extend(np.asarray(slot_leaves[rule_slots.index(slot)][index]) for slot in group)
    if name == "nadam":
        arrays.append(np.asarray(keras_state.extra, np.float32))
    return arrays, KERAS_CLASSES[name]


def _rule_slots(arguments: dict) -> tuple[str, ...]:
    from nnjax.train import optimizers as optimizers_lib

    factory, defaults = optimizers_lib._HYPERPARAMETERS[arguments["name"]]
    hyper = {k: arguments[k] for k in defaults if k in arguments}
    return factory(**{**defaults, **hyper}).slots


def restore_optimizer(model, arrays: list[np.ndarray], variables: list, where: str) -> None:
    """Puts Keras's `optimizer/vars` arrays into the compiled model's optimizer state (the inverse of `optimizer_arrays`).

    Raises:
      SerializationError: when the number or shapes of the arrays are not what the optimizer keeps.
    """
    from nnjax.train import optimizers as optimizers_lib

    arguments = optimizers_lib.build_arguments(model._compiled.tx)
    state = model.state
    parts = _parts(state.opt_state)
    if arguments is None or parts is None or _slot_groups(arguments["name"], _rule_slots(arguments)) is None:
        warnings.warn(
            f"{where}: the file's optimizer variables were not restored (nnjax does not know their layout for "
            "this optimizer); training starts with a fresh optimizer state",
            stacklevel=3,
        )
        return
    inject, keras_state = parts
    rule_slots = _rule_slots(arguments)
    groups = _slot_groups(arguments["name"], rule_slots)
    order = _keras_trainable_order(model, variables)
    scheduled = callable(arguments.get("learning_rate"))
    expected = 1 + (not scheduled) + sum(len(g) for g in groups) * len(order) + (arguments["name"] == "nadam")
    if len(arrays) != expected:
        raise SerializationError(
            f"{where}: the file has {len(arrays)} optimizer variables; nnjax's "
            f"{KERAS_CLASSES[arguments['name']]} for this model keeps {expected}"
        )
    slot_leaves = [list(jax.tree.leaves(slot)) for slot in keras_state.slots]
    position = 1 + (not scheduled)
    for group in groups:
        for index in order:
            for slot in group:
                leaves = slot_leaves[rule_slots.index(slot)]
                value = arrays[position]
                if tuple(value.shape) != tuple(leaves[index].shape):
                    raise SerializationError(
                        f"{where}: optimizer variable {position} ({slot}) has shape {value.shape}; "
                        f"the parameter it belongs to has shape {tuple(leaves[index].shape)}"
                    )
                leaves[index] = jnp.asarray(value, leaves[index].dtype)
                position += 1
    count = jnp.asarray(arrays[0], keras_state.count.dtype)
    extra = jnp.asarray(arrays[-1], keras_state.extra.dtype) if arguments["name"] == "nadam" else keras_state.extra
    slots = tuple(
        jax.tree.unflatten(jax.tree.structure(s), leaves) for s, leaves in zip(keras_state.slots, slot_leaves, strict=True)
    )
    hyperparams = dict(inject.hyperparams)
    if not scheduled:
        old = hyperparams["learning_rate"]
        hyperparams["learning_rate"] = jnp.asarray(arrays[1], jnp.asarray(old).dtype).reshape(jnp.shape(old))
    changes = {
        "count": jnp.asarray(arrays[0], inject.count.dtype),
        "hyperparams": hyperparams,
        "inner_state": keras_state._replace(count=count, extra=extra, slots=slots),
    }
    if hasattr(inject, "hyperparams_states"):  # a schedule's own step counter (optax's WrappedScheduleState)
        changes["hyperparams_states"] = {
            key: value._replace(count=jnp.asarray(arrays[0], value.count.dtype)) if hasattr(value, "count") else value
            for key, value in inject.hyperparams_states.items()
        }
    new_inject = inject._replace(**changes)
    opt_state = state.opt_state
    if isinstance(opt_state, tuple) and not hasattr(opt_state, "_fields"):
        opt_state = (*opt_state[:-1], new_inject)
    else:
        opt_state = new_inject
    model.state = model.execution.place_state(state.replace(opt_state=opt_state, step=jnp.asarray(arrays[0], state.step.dtype)))


# ---------------------------------------------------------------------------------- compile_config
def keras_compile_config(model) -> dict | None:
    """Keras's `compile_config` of a compiled nnjax model, or None when it cannot be written in Keras's terms."""
    from nnjax.saving import compile_objects
    from nnjax.train import optimizers as optimizers_lib

    arguments = getattr(model, "_compile_arguments", None)
    if model._compiled is None or arguments is None or arguments.get("loss_fn") is not None:
        return None
    optimizer = arguments.get("optimizer")
    built = optimizers_lib.build(optimizer) if isinstance(optimizer, str) else optimizer
    options = optimizers_lib.build_arguments(built)
    if options is None or options.get("exclude_from_weight_decay") or options["name"] not in KERAS_CLASSES:
        return None
    where = f'model.save(".keras"): model "{model.name}" was compiled with'
    options = compile_objects.serialize_optimizer_arguments(options, where)
    name = options.pop("name")
    options.pop("exclude_from_weight_decay", None)
    config = {
        "name": name,
        "learning_rate": options.pop("learning_rate", None),
        "weight_decay": None,
        "clipnorm": None,
        "global_clipnorm": None,
        "clipvalue": None,
        "use_ema": False,
        "ema_momentum": 0.99,
        "ema_overwrite_frequency": None,
        "loss_scale_factor": None,
        "gradient_accumulation_steps": None,
        **{k: compile_objects.plain(v, where) for k, v in options.items()},
    }
    steps = arguments.get("steps_per_execution")
    return {
        "optimizer": {"module": "keras.optimizers", "class_name": KERAS_CLASSES[name], "config": config, "registered_name": None},
        "loss": _named(compile_objects.serialize(arguments.get("loss"), f"{where} loss")),
        "loss_weights": compile_objects.plain(arguments.get("loss_weights"), f"{where} loss_weights"),
        "metrics": _named(compile_objects.serialize(arguments.get("metrics"), f"{where} metrics")),
        "weighted_metrics": _named(compile_objects.serialize(arguments.get("weighted_metrics"), f"{where} weighted_metrics")),
        "run_eagerly": False,
        "steps_per_execution": steps if isinstance(steps, int) else 1,
        "jit_compile": True,
    }


def _named(value):
    """nnjax's own loss and metric functions by their Keras name (which Keras resolves to the same computation)."""
    from nnjax.saving.compile_objects import _builtin_functions

    if isinstance(value, list):
        return [_named(v) for v in value]
    if isinstance(value, dict) and value.get("class_name") == "function" and value.get("config") in _builtin_functions().values():
        return value["config"]
    if isinstance(value, dict) and "class_name" not in value:
        return {k: _named(v) for k, v in value.items()}
    return value


__all__ = ["keras_compile_config", "optimizer_arrays", "restore_optimizer"]
