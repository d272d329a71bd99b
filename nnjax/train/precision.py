"""Mixed precision: dtype policies and dynamic loss scaling for float16.

A policy says in which dtype the forward and backward passes run. Parameters,
optimizer state and the loss always stay float32 (`apply_model` casts the
parameters and inputs to the compute dtype and the outputs back to float32).

float16 has a narrow exponent range: small gradients underflow to zero. The
`"mixed_float16"` policy therefore scales the loss by a large power of two
before differentiating and divides the gradients by it afterwards (dynamic
loss scaling, as in Keras's `LossScaleOptimizer` and `jmp`). The scale lives in
the optimizer state (`LossScaleState`), so it is checkpointed with it:

    tx = precision.dynamic_loss_scale(optax.adam(1e-3))
    # train_step finds the scale in state.opt_state and multiplies the loss by it.

When the scaled gradients overflow, the update is skipped (parameters and inner
optimizer state unchanged) and the scale is halved; after `period` finite steps
in a row it is doubled.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax


@dataclasses.dataclass(frozen=True)
class Policy:
    """A dtype policy.

    Attributes:
      name: the Keras name ("float32", "mixed_bfloat16", "mixed_float16").
      compute_dtype: dtype of the forward and backward pass; None keeps the
        parameters' own dtype (float32).
      loss_scaling: whether the optimizer is wrapped in `dynamic_loss_scale`.
    """

    name: str
    compute_dtype: Any = None
    loss_scaling: bool = False


POLICIES = {
    "float32": Policy("float32"),
    "mixed_bfloat16": Policy("mixed_bfloat16", jnp.bfloat16),
    # Kept for compatibility: bfloat16 compute with float32 variables, as "mixed_bfloat16".
    "bfloat16": Policy("bfloat16", jnp.bfloat16),
    "mixed_float16": Policy("mixed_float16", jnp.float16, loss_scaling=True),
}


def get_policy(name: str | Policy | None) -> Policy:
    """Resolves a policy name (None means "float32").

    Raises:
      ValueError: for an unknown name; the message lists the valid ones.
    """
    if name is None:
        return POLICIES["float32"]
    if isinstance(name, Policy):
        return name
    if name not in POLICIES:
        raise ValueError(f"compile: unknown dtype_policy {name!r}; expected one of {sorted(POLICIES)}")
    return POLICIES[name]


class LossScaleState(NamedTuple):
    """State of `dynamic_loss_scale`."""

    inner: Any  # the wrapped optimizer's state
    scale: jax.Array  # float32 []: the current loss scale (a power of two)
    good_steps: jax.Array  # int32 []: finite steps since the scale last changed


def all_finite(tree) -> jax.Array:
    """A bool scalar: every element of every floating leaf of `tree` is finite."""
    leaves = [jnp.all(jnp.isfinite(a)) for a in jax.tree.leaves(tree) if jnp.issubdtype(jnp.result_type(a), jnp.inexact)]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.asarray(True)


def select_tree(condition, on_true, on_false):
    """`jnp.where(condition, a, b)` leaf by leaf over two pytrees of the same structure."""
    return jax.tree.map(lambda a, b: jnp.where(condition, a, b), on_true, on_false)


def dynamic_loss_scale(
    inner: optax.GradientTransformation,
    *,
    initial_scale: float = 2.0**15,
    period: int = 2000,
    factor: float = 2.0,
    min_scale: float = 1.0,
) -> optax.GradientTransformation:
    """Wraps an optimizer so that it receives gradients of a scaled loss.

    `train_step` multiplies the loss by `loss_scale(opt_state)` before
    differentiating; this transformation divides the gradients by the same
    scale, applies `inner` if they are all finite and skips the update (zero
    updates, `inner`'s state unchanged) if not.

    Args:
      inner: the optimizer to wrap.
      initial_scale: the first loss scale (Keras uses 2**15).
      period: finite steps in a row after which the scale is multiplied by `factor`.
      factor: growth and shrink factor of the scale.
      min_scale: the scale never drops below this.

    Returns:
      An `optax.GradientTransformation` whose state is a `LossScaleState`.
    """

    def init_fn(params):
        return LossScaleState(inner.init(params), jnp.asarray(initial_scale, jnp.float32), jnp.zeros((), jnp.int32))

    def update_fn(updates, state, params=None):
        grads = jax.tree.map(lambda g: (g / state.scale).astype(g.dtype), updates)
        finite = all_finite(grads)
        new_updates, new_inner = inner.update(grads, state.inner, params)
        new_updates = jax.tree.map(lambda u: jnp.where(finite, u, jnp.zeros_like(u)), new_updates)
        new_inner = select_tree(finite, new_inner, state.inner)
        good = jnp.where(finite, state.good_steps + 1, 0)
        grow = good >= period
        scale = jnp.where(finite, jnp.where(grow, state.scale * factor, state.scale), jnp.maximum(state.scale / factor, min_scale))
        good = jnp.where(grow, 0, good)
        return new_updates, LossScaleState(new_inner, scale.astype(jnp.float32), good.astype(jnp.int32))

    return optax.GradientTransformation(init_fn, update_fn)


def _is_loss_scale(node) -> bool:
    return isinstance(node, LossScaleState)


def loss_scale(opt_state) -> jax.Array | None:
    """The current loss scale in an optimizer state, or None when the loss is not scaled.

    The answer depends only on the state's structure, so inside `jax.jit` it is
    decided at trace time: an optimizer without loss scaling costs nothing.
    """
    found = [s for s in jax.tree.leaves(opt_state, is_leaf=_is_loss_scale) if _is_loss_scale(s)]
    return found[0].scale if found else None


def scale_objective(objective: Callable, scale) -> Callable:
    """`objective(params) -> (loss, aux)` with the loss multiplied by `scale`."""

    def scaled(params):
        loss, aux = objective(params)
        return loss * scale, aux

    return scaled


__all__ = [
    "POLICIES",
    "LossScaleState",
    "Policy",
    "all_finite",
    "dynamic_loss_scale",
    "get_policy",
    "loss_scale",
    "scale_objective",
    "select_tree",
]
