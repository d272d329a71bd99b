"""Weight constraints after the optimizer update, as Keras applies them: a pure function over the parameters.

A layer's `kernel_constraint=` (or `add_weight(constraint=...)`) is kept in the metadata of its Variable,
so the parameters of a `TrainState` carry their constraints with them. `apply_constraints` projects
every constrained parameter; the train step calls it on the updated parameters:

    new_params = optax.apply_updates(state.params, updates)
    new_params = apply_constraints(new_params, trainable=state.config.trainable)
"""

from __future__ import annotations

from collections.abc import Callable

import jax
from flax import nnx


def _is_variable(x) -> bool:
    return isinstance(x, nnx.Variable)


def _constraint_of(variable) -> Callable | None:
    return variable.get_metadata().get("constraint") if isinstance(variable, nnx.Variable) else None


def has_constraints(params) -> bool:
    """Whether any parameter of `params` (an `nnx.State` or pytree of Variables) carries a constraint."""
    return any(_constraint_of(v) is not None for v in jax.tree.leaves(params, is_leaf=_is_variable))


def constraints_of(params) -> dict[tuple, Callable]:
    """`{path: constraint}` of the constrained parameters of `params` (an `nnx.State`)."""
    if not isinstance(params, nnx.State):
        return {}
    return {tuple(path): c for path, v in params.flat_state() if (c := _constraint_of(v)) is not None}


def apply_constraints(params, constraints: dict[tuple, Callable] | None = None, trainable: tuple[bool, ...] | None = None):
    """`params` with each constrained parameter replaced by `constraint(value)`.

    Args:
      params: an `nnx.State` of Variables (a `TrainState`'s `params`), or any pytree of Variables.
      constraints: `{path: constraint}` to use instead of the Variables' own `constraint` metadata
        (paths as `nnx.State.flat_state()` gives them); None reads the metadata.
      trainable: the per-leaf trainable flags of `StepConfig.trainable` (None: all trainable); a frozen
        parameter is left as it is, as Keras constrains only the variables its optimizer updates.

    Returns:
      A pytree of the same structure (and metadata); the same object when nothing is constrained.
    """
    if constraints is None and not has_constraints(params):
        return params
    if constraints is not None and not constraints:
        return params
    if constraints is not None:
        flat = dict(params.flat_state())
        unknown = [p for p in constraints if tuple(p) not in {tuple(k) for k in flat}]
        if unknown:
            raise ValueError(f"apply_constraints: no parameter at the paths {unknown}; expected paths of {sorted(flat)}")
    leaves, treedef = jax.tree.flatten(params, is_leaf=_is_variable)
    flags = [True] * len(leaves) if trainable is None else list(trainable)
    if len(flags) != len(leaves):
        raise ValueError(f"apply_constraints: `trainable` has {len(flags)} flags; expected one per parameter ({len(leaves)})")
    by_id = {}
    if constraints is not None:
        by_id = {id(v): constraints[tuple(path)] for path, v in params.flat_state() if tuple(path) in constraints}
    out = []
    for leaf, keep in zip(leaves, flags, strict=True):
        constraint = by_id.get(id(leaf)) if constraints is not None else _constraint_of(leaf)
        if constraint is None or not keep:
            out.append(leaf)
        elif isinstance(leaf, nnx.Variable):
            out.append(leaf.replace(constraint(leaf.get_value())))
        else:
            out.append(constraint(leaf))
    return jax.tree.unflatten(treedef, out)


__all__ = ["apply_constraints", "constraints_of", "has_constraints"]
