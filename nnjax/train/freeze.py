"""Which parameters train: Keras's `layer.trainable = False`, nnx filters, and labels by path for optax.

Frozen parameters stay in `TrainState.params` (checkpoints and `get_weights`
see them) but take no part in training: their gradients are zeroed before the
optimizer sees them and their updates after, so neither the rule, nor weight
decay, nor moments move them (Keras leaves them out of `trainable_weights`).

Paths are tuples of the keys leading to a parameter, without the trailing
`.value` of `nnx.Variable` leaves: `("layers", 0, "kernel")`, so a Linen-style
function of the path works on NNX parameters.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx


def _key_name(key) -> Any:
    for attr in ("key", "name", "idx"):
        if hasattr(key, attr):
            return getattr(key, attr)
    return str(key)


def path_of(key_path) -> tuple:
    """A JAX key path as a tuple of keys (strings, ints), without a trailing `.value` (an `nnx.Variable`'s leaf)."""
    names = tuple(_key_name(k) for k in key_path)
    if names and names[-1] == "value" and isinstance(key_path[-1], jax.tree_util.GetAttrKey):
        names = names[:-1]
    return names


def param_labels(params, fn: Callable[[tuple, Any], Any]):
    """A pytree of `params`' structure holding `fn(path, leaf)` for every parameter.

    Use it for `optax.multi_transform(transforms, param_labels=...)` or, with a
    boolean `fn`, as an `optax.masked` mask.

    Args:
      params: a parameter pytree (`TrainState.params`, an `nnx.State`, a dict).
      fn: `(path, leaf) -> label`, where `path` is a tuple such as
        `("layers", 0, "kernel")` (no trailing "value") and `leaf` the array.

    Returns:
      A pytree like `params` whose leaves are the labels.

    Example:
      `labels = param_labels(state.params, lambda path, _: "frozen" if path[1] == 0 else "train")`
    """
    return jax.tree_util.tree_map_with_path(lambda key_path, leaf: fn(path_of(key_path), leaf), params)


def trainable_leaves(module: nnx.Module, params, wrt=None) -> tuple[bool, ...] | None:
    """For each leaf of `params` (flattening order): whether it trains; None when all do.

    A parameter is frozen when it belongs to a `Layer` (at any depth) whose
    `trainable` is False, or when `wrt` (an nnx filter: a type, a path
    predicate such as `nnx.PathContains("dense")`, ...) does not select it.

    Args:
      module: the module `params` was split from.
      params: `nnx.state(module, nnx.Param)`.
      wrt: None (every parameter) or an nnx filter.

    Returns:
      A tuple of bools, or None when nothing is frozen.
    """
    frozen_prefixes = [tuple(path) for path, node in nnx.iter_graph(module)
                       if isinstance(node, nnx.Module) and getattr(node, "trainable", True) is False]
    selected = None
    if wrt is not None:
        predicate = nnx.filterlib.to_predicate(wrt)
        selected = {tuple(path) for path, variable in nnx.to_flat_state(params) if predicate(tuple(path), variable)}
    flags = []
    for key_path, _ in jax.tree_util.tree_flatten_with_path(params)[0]:
        path = path_of(key_path)
        frozen = any(path[: len(prefix)] == prefix for prefix in frozen_prefixes)
        flags.append(not frozen and (selected is None or path in selected))
    return None if all(flags) else tuple(flags)


def zero_frozen(tree, trainable: tuple[bool, ...] | None):
    """`tree` (shaped like the params) with the leaves of frozen parameters replaced by zeros."""
    if trainable is None:
        return tree
    leaves, treedef = jax.tree.flatten(tree)
    if len(leaves) != len(trainable):
        raise ValueError(
            f"frozen parameters: the mask has {len(trainable)} entries but the gradient tree has {len(leaves)} leaves; "
            "rebuild the TrainState (compile again) after changing the model"
        )
    return jax.tree.unflatten(treedef, [a if keep else jnp.zeros_like(a) for a, keep in zip(leaves, trainable)])


__all__ = ["param_labels", "path_of", "trainable_leaves", "zero_frozen"]
