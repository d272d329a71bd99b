"""Exponential moving average (EMA) of the weights, kept in the optimizer state.

As Keras's `use_ema=True`: after every applied update,

    ema = momentum * ema + (1 - momentum) * params      (ema = params after the first update)

The average lives in the optimizer state (`EmaState`), so it is jitted with
the step, sharded like the parameters and checkpointed with the optimizer.
`nj.optimizers.Adam(use_ema=True, ema_momentum=0.999)` builds it by name; any
optax transformation can be wrapped:

    tx = ema.with_ema(optax.adam(1e-3), momentum=0.999)
    ...
    eval_state = ema.swap(state)        # the EMA weights in the parameters' place
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax


class EmaState(NamedTuple):
    """State of `with_ema`."""

    inner: Any  # the wrapped optimizer's state
    count: jax.Array  # int32 []: updates applied so far
    ema: Any  # like the params: their moving average


def with_ema(
    inner: optax.GradientTransformation, momentum: float = 0.99, overwrite_frequency: int | None = None
) -> optax.GradientTransformation:
    """Wraps an optimizer so that its state tracks an EMA of the parameters.

    Args:
      inner: the optimizer whose updates are applied.
      momentum: the EMA's decay, in [0, 1).
      overwrite_frequency: as Keras's `ema_overwrite_frequency`: every this many
        updates the parameters are replaced by their average; None never does.

    Returns:
      An `optax.GradientTransformation` (it needs `params` in `update`).

    Raises:
      ValueError: for a momentum outside [0, 1) or a non-positive frequency.
    """
    if not 0.0 <= float(momentum) < 1.0:
        raise ValueError(f"ema: `momentum` must be in [0, 1); got {momentum!r}")
    if overwrite_frequency is not None and (not isinstance(overwrite_frequency, int) or overwrite_frequency < 1):
        raise ValueError(f"ema: `overwrite_frequency` must be a positive int or None; got {overwrite_frequency!r}")

    def init_fn(params):
        return EmaState(inner.init(params), jnp.zeros((), jnp.int32), jax.tree.map(lambda p: jnp.array(p, copy=True), params))

    def update_fn(updates, state, params=None):
        if params is None:
            raise ValueError("ema.with_ema: `update` needs the current params; call tx.update(grads, opt_state, params)")
        updates, inner_state = inner.update(updates, state.inner, params)
        new_params = optax.apply_updates(params, updates)
        m = jnp.where(state.count == 0, 0.0, momentum)
        ema = jax.tree.map(lambda e, p: (m * e + (1.0 - m) * p).astype(e.dtype), state.ema, new_params)
        count = state.count + 1
        if overwrite_frequency is not None:
            overwrite = count % overwrite_frequency == 0
            updates = jax.tree.map(lambda u, e, p: jnp.where(overwrite, (e - p).astype(u.dtype), u), updates, ema, params)
        return updates, EmaState(inner_state, count, ema)

    return optax.GradientTransformation(init_fn, update_fn)


def _is_ema(node) -> bool:
    return isinstance(node, EmaState)


def ema_params(opt_state):
    """The moving average of the parameters held in `opt_state`, or None without `with_ema`."""
    found = [s for s in jax.tree.leaves(opt_state, is_leaf=_is_ema) if _is_ema(s)]
    return found[0].ema if found else None


def _require_ema(state, what: str):
    ema = ema_params(state.opt_state)
    if ema is None:
        raise ValueError(f"ema.{what}: the optimizer keeps no EMA of the weights; build it with use_ema=True or ema.with_ema(tx)")
    return ema


def set_ema(opt_state, ema):
    """`opt_state` with the moving average replaced by `ema` (same structure as the params)."""
    return jax.tree.map(lambda node: node._replace(ema=ema) if _is_ema(node) else node, opt_state, is_leaf=_is_ema)


def swap(state):
    """A `TrainState` with the parameters and their EMA exchanged (swap twice to undo).

    Raises:
      ValueError: if the optimizer keeps no EMA.
    """
    ema = _require_ema(state, "swap")
    return state.replace(params=ema, opt_state=set_ema(state.opt_state, state.params))


def finalize(state):
    """A `TrainState` whose parameters are the EMA (the average itself is kept), as Keras at the end of `fit`.

    Raises:
      ValueError: if the optimizer keeps no EMA.
    """
    ema = _require_ema(state, "finalize")
    return state.replace(params=jax.tree.map(lambda e: jnp.array(e, copy=True), ema))


__all__ = ["EmaState", "ema_params", "finalize", "set_ema", "swap", "with_ema"]
