"""Per-member optimizer hyperparameters (sweeps) in a stacked optimizer state."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

# `optax.inject_hyperparams` returns the stateful variant since optax 0.2.4.
_INJECT_STATES = tuple(
    cls for cls in (getattr(optax, "InjectHyperparamsState", None), getattr(optax, "InjectStatefulHyperparamsState", None)) if cls
)


def set_hyperparams(opt_state, values: Mapping[str, Any], size: int):
    """Replaces injected optimizer hyperparameters of a stacked optimizer state, per member.

    Args:
      opt_state: an optimizer state stacked over members (leading axis `size`),
        built with `optax.inject_hyperparams` (all nnjax named optimizers inject
        `learning_rate`).
      values: hyperparameter name -> `size` values (or one value for all).
      size: the number of members.

    Returns:
      The optimizer state with those hyperparameters replaced.

    Raises:
      ValueError: if a name is not injected, or a value list has the wrong length.
    """
    found: set[str] = set()
    available: set[str] = set()
    columns = {}
    for name, value in values.items():
        column = np.asarray(value, dtype=np.float64).reshape(-1)
        if column.size == 1:
            column = np.repeat(column, size)
        if column.size != size:
            raise ValueError(f"hyperparams[{name!r}]: expected {size} values (one per member); received {column.size}")
        columns[name] = column

    def is_hyper(s) -> bool:
        return isinstance(s, _INJECT_STATES)

    def replace(s):
        if not is_hyper(s):
            return s
        hyper = dict(s.hyperparams)
        available.update(hyper)
        for name, column in columns.items():
            if name in hyper:
                old = jnp.asarray(hyper[name])
                hyper[name] = jnp.asarray(column, dtype=old.dtype).reshape(old.shape)
                found.add(name)
        return s._replace(hyperparams=hyper)

    new = jax.tree.map(replace, opt_state, is_leaf=is_hyper)
    missing = sorted(set(columns) - found)
    if missing:
        raise ValueError(
            f"hyperparams: the optimizer does not inject {missing}; it injects {sorted(available) or 'nothing'}. Build it "
            "with optax.inject_hyperparams (e.g. optax.inject_hyperparams(optax.adamw)(learning_rate=1e-3, weight_decay=1e-4)) "
            "or use an nnjax optimizer name, which injects learning_rate"
        )
    return new


__all__ = ["set_hyperparams"]
