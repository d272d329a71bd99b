"""Epoch totals: the sum of every batch's metric contributions (init / add / result), pure.

`fit` and `evaluate` report Keras's epoch values: the loss averaged over examples,
each metric by its own rule (`nnjax.train.steps.metric_contributions`: unweighted or
weighted means, stateful counts such as Precision's). Every batch contributes an
additive pytree; the running sums live on the device inside the compiled step and
cross to the host only when a callback or the epoch's end reads them:

    totals = init(spec)                       # zeros shaped like one batch's contributions
    totals = add(totals, contributions)       # inside the compiled step
    result(config, totals)                    # {"loss": float, "accuracy": float, ...}

With `members` (an ensemble) every leaf has a leading member axis and `result`
gives arrays of shape `(members,)`.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np


def init(spec):
    """Zero totals shaped like `spec` (what `jax.eval_shape` gives for one batch's contributions)."""
    return jax.tree.map(lambda s: jnp.zeros(s.shape, jnp.float32 if jnp.issubdtype(s.dtype, jnp.floating) else s.dtype), spec)


def add(totals, contributions):
    """`totals + contributions`, leaf by leaf (pure; jit/vmap friendly)."""
    return jax.tree.map(lambda t, c: t + jnp.asarray(c, t.dtype), totals, contributions)


def mask(contributions, keep):
    """Contributions of a step that counts (`keep` True) or zeros (a step skipped by `nonfinite="skip"`)."""
    return jax.tree.map(lambda c: jnp.where(keep, c, jnp.zeros_like(c)), contributions)


@functools.lru_cache(maxsize=64)
def _finalizer(config, members: bool):
    from nnjax.train.steps import results

    fn = functools.partial(results, config)
    return jax.jit(jax.vmap(fn) if members else fn)


def result(config, totals, *, members: bool = False) -> dict:
    """The epoch values on the host: floats (arrays for per-threshold metrics; `(members,)` for an ensemble)."""
    try:
        values = jax.device_get(_finalizer(config, members)(totals))
    except TypeError:  # an unhashable config: not cached
        from nnjax.train.steps import results

        values = jax.device_get((jax.vmap if members else (lambda f: f))(functools.partial(results, config))(totals))
    out = {}
    for name, value in values.items():
        value = np.asarray(value, np.float64)
        out[name] = float(value) if value.ndim == 0 else value
    return out


def write_back(config, totals) -> None:
    """Sets the variables of the compiled metric objects (`nnjax.train.metric_adapters`) to their values after the
    batches summed in `totals`, as Keras's compiled metrics hold them after `fit` and `evaluate`."""
    from nnjax.train.steps import logged_metrics

    for name, metric, _ in logged_metrics(config):
        write = getattr(metric, "write_back", None)
        if write is not None and name in totals:
            write(totals[name])


def to_leaves(totals) -> list[np.ndarray]:
    """The totals as host arrays, in a fixed order (for backups)."""
    return [np.asarray(a) for a in jax.tree.leaves(jax.device_get(totals))]


def from_leaves(template, leaves):
    """Totals with `template`'s structure from `to_leaves` output.

    Raises:
      ValueError: if the number or shapes of the leaves do not match.
    """
    flat, treedef = jax.tree.flatten(template)
    if len(flat) != len(leaves) or any(np.shape(a) != np.shape(b) for a, b in zip(flat, leaves)):
        raise ValueError(f"totals: expected {len(flat)} arrays of shapes {[np.shape(a) for a in flat]}; received "
                         f"{len(leaves)} of shapes {[np.shape(b) for b in leaves]}")
    return jax.tree.unflatten(treedef, [jnp.asarray(b, a.dtype) for a, b in zip(flat, leaves)])


__all__ = ["add", "from_leaves", "init", "mask", "result", "to_leaves", "write_back"]
