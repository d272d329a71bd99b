"""Explicit per-device training with `jax.shard_map` (or `jax.pmap`) around the core's `train_step`.

`Model.compile(distribution=DataParallel())` lets XLA insert the collectives.
This module is for code that wants to write them itself, pmap-style: each
device runs the core's unchanged `train_step` on its shard of the batch, and
the optimizer first averages the gradients with `lax.pmean`:

    step = nj.parallel.shard_map_train_step(mesh)          # jit(shard_map(...))
    for batch in batches:
        state, metrics = step(state, batch)                # batch split over mesh axis "data"

or by hand:

    per_device = functools.partial(nj.parallel.data_parallel_step, axis_name="data")
    step = jax.jit(jax.shard_map(per_device, mesh=mesh, in_specs=(P(), P("data")),
                                 out_specs=(P(), P()), check_vma=False))

With equal shards this computes the global-batch gradient, so it matches
`DataParallel` for models without batch-coupled layers. Differences, as in any
pmap-era code: BatchNorm normalises with per-device batch statistics (the
running statistics are then averaged over devices), and dropout draws an
independent mask on each device.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P

from nnjax.train.state import TrainState
from nnjax.train.steps import train_step


def pmean_gradients(tx: optax.GradientTransformation, axis_name: str = "data") -> optax.GradientTransformation:
    """Wraps `tx` so its update first averages the gradients over `axis_name` (`lax.pmean`).

    The state is `tx`'s own (same `init`), so a `TrainState` built for `tx` works
    unchanged. Use it only inside `shard_map`/`pmap` with that axis name.

    Args:
      tx: any optax transformation.
      axis_name: the mapped axis to average over.

    Returns:
      An `optax.GradientTransformation`.
    """

    def update(updates, state, params=None):
        return tx.update(jax.lax.pmean(updates, axis_name), state, params)

    return optax.GradientTransformation(tx.init, update)


def _pmean_floats(tree, axis_name: str):
    def mean(a):
        return jax.lax.pmean(a, axis_name) if jnp.issubdtype(a.dtype, jnp.inexact) else a

    return jax.tree.map(mean, tree)


def data_parallel_step(state: TrainState, batch, *, axis_name: str = "data") -> tuple[TrainState, dict]:
    """One data-parallel update, to be run on every device inside `shard_map`/`pmap`.

    Runs the core's `train_step` on the local shard with gradients averaged by
    `pmean_gradients`; then averages floating model state (BatchNorm running
    statistics) and the metrics, so every device returns the same values.

    Args:
      state: the replicated `TrainState`.
      batch: this device's shard of the batch, `(B / N, ...)`.
      axis_name: the mapped axis name.

    Returns:
      `(new_state, metrics)`, identical on every device.
    """
    device_rng = jax.random.fold_in(state.rng, jax.lax.axis_index(axis_name))
    local = state.replace(tx=pmean_gradients(state.tx, axis_name), rng=device_rng)
    new_state, metrics = train_step(local, batch)
    new_state = new_state.replace(tx=state.tx, rng=state.rng, model_state=_pmean_floats(new_state.model_state, axis_name))
    return new_state, _pmean_floats(metrics, axis_name)


def shard_map_train_step(mesh: Mesh | None = None, *, axis_name: str = "data", donate: bool = True) -> Callable:
    """`jax.jit(jax.shard_map(data_parallel_step))`: the state replicated, the batch split over `axis_name`.

    Args:
      mesh: a mesh with an axis `axis_name` (all devices in a 1-D mesh when None).
      axis_name: the mesh axis the batch is split over.
      donate: reuse the state's buffers for the new state.

    Returns:
      `step(state, batch) -> (state, metrics)`. The batch's first axis must be a
      multiple of the axis size.

    Raises:
      ValueError: if the mesh has no axis `axis_name`.
    """
    from nnjax.parallel.sharding import make_mesh

    mesh = make_mesh(None, (axis_name,)) if mesh is None else mesh
    if axis_name not in mesh.axis_names:
        raise ValueError(f"shard_map_train_step: the mesh has axes {tuple(mesh.axis_names)}; expected one named {axis_name!r}")
    per_device = functools.partial(data_parallel_step, axis_name=axis_name)
    # check_vma=False keeps pmap's semantics: gradients of replicated parameters
    # stay per-device until pmean_gradients averages them.
    mapped = jax.shard_map(per_device, mesh=mesh, in_specs=(P(), P(axis_name)), out_specs=(P(), P()), check_vma=False)
    return jax.jit(mapped, donate_argnums=(0,) if donate else ())


__all__ = ["data_parallel_step", "pmean_gradients", "shard_map_train_step"]
