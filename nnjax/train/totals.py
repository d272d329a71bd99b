"""Epoch metric totals: a pure accumulator of weighted sums (init / update / result).

`fit` and `evaluate` report, for each metric, the example-weighted mean over the
epoch. The running sums live on the device inside the compiled step and cross to
the host only when a callback or the epoch's end reads them:

    totals = init(["loss", "accuracy"])               # {"loss": 0., "accuracy": 0., "_count": 0.}
    totals = update(totals, {"loss": l, "accuracy": a}, weight=batch_size)
    result(totals)                                    # {"loss": float, "accuracy": float}

With `members=M` (an ensemble) every leaf has a leading member axis `(M,)` and
`result` gives arrays of shape `(M,)`.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

COUNT = "_count"


def init(names: Sequence[str], members: int | None = None) -> dict[str, jax.Array]:
    """Zero totals for `names` (plus the example count), float32 scalars or `(members,)` vectors."""
    shape = () if members is None else (int(members),)
    return {name: jnp.zeros(shape, jnp.float32) for name in names} | {COUNT: jnp.zeros(shape, jnp.float32)}


def update(totals: dict, metrics: dict, weight) -> dict:
    """Adds `weight * metrics[name]` to each total and `weight` to the count (pure; jit/vmap friendly).

    Args:
      totals: what `init` (or a previous `update`) returned.
      metrics: the batch's mean value of each metric; names not in `totals` are ignored.
      weight: the batch's weight, usually its number of examples.
    """
    weight = jnp.asarray(weight, jnp.float32)
    new = {name: totals[name] + metrics[name].astype(jnp.float32) * weight for name in totals if name != COUNT}
    new[COUNT] = totals[COUNT] + weight
    return new


def result(totals: dict) -> dict:
    """The weighted means on the host: floats, or float64 arrays `(members,)` for an ensemble's totals."""
    host = jax.device_get(totals)
    count = np.asarray(host[COUNT], np.float64)
    if count.ndim == 0:
        return {name: float(value) / max(float(count), 1e-12) for name, value in host.items() if name != COUNT}
    count = np.maximum(count, 1e-12)
    return {name: np.asarray(value, np.float64) / count for name, value in host.items() if name != COUNT}


def names(totals: dict) -> list[str]:
    """The metric names `totals` accumulates (the count excluded)."""
    return [name for name in totals if name != COUNT]


__all__ = ["COUNT", "init", "names", "result", "update"]
