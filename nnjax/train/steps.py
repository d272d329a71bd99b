"""Pure step functions over a `TrainState`.

`train_step(state, batch) -> (state, metrics)`, `eval_step(state, batch) ->
metrics` and `predict_step(state, x) -> outputs` hold no nnjax object beyond the
state pytree, so `jax.jit`, `jax.vmap`, `jax.grad`, sharding and `shard_map`
apply to them directly. `Model.fit` compiles exactly these functions.

A batch is `(x, y)`, `(x, y, sample_weight)` or a dict with keys `"x"`, `"y"`
and optionally `"sample_weight"`; with a custom `loss_fn`, any pytree whose
inputs are under `"x"` or first.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from nnjax.layers.base import call_with_added_losses
from nnjax.layers.calling import call_module
from nnjax.train import nonfinite, precision
from nnjax.train.losses import at_least_f32
from nnjax.train.metrics import weighted_mean
from nnjax.train.state import TrainState


def unpack_batch(batch) -> tuple[Any, Any, Any]:
    """Splits a batch into `(x, y, sample_weight)`; missing parts are None."""
    if isinstance(batch, dict):
        return batch.get("x"), batch.get("y"), batch.get("sample_weight")
    if isinstance(batch, (tuple, list)):
        parts = tuple(batch) + (None,) * (3 - len(batch))
        return parts[0], parts[1], parts[2]
    return batch, None, None


def _cast_floats(tree, dtype):
    if dtype is None:
        return tree
    return jax.tree.map(lambda a: a.astype(dtype) if jnp.issubdtype(jnp.result_type(a), jnp.floating) else a, tree)


def apply_model(state: TrainState, params, x, *, training: bool, key=None, model_state=None):
    """Runs the model as a pure function.

    Args:
      state: supplies the graph definition, the model state and the config.
      params: the parameters to use (pass `state.params`, or the differentiated copy).
      x: the model's input pytree.
      training: Keras's `training` flag (dropout on, BatchNorm batch statistics).
      key: PRNG key for stochastic layers.
      model_state: overrides `state.model_state`.

    Returns:
      `(outputs, new_model_state)`; outputs are cast back to float32 under a
      mixed-precision `compute_dtype`.
    """
    compute_dtype = state.config.compute_dtype
    model_state = state.model_state if model_state is None else model_state
    module = nnx.merge(state.graphdef, _cast_floats(params, compute_dtype), model_state, copy=True)
    outputs = call_module(module, _cast_floats(x, compute_dtype), training=training, key=key)
    _, _, new_model_state = nnx.split(module, nnx.Param, ...)
    if compute_dtype is not None:
        outputs = _cast_floats(outputs, jnp.float32)
        new_model_state = jax.tree.map(lambda new, old: new.astype(old.dtype), new_model_state, model_state)
    return outputs, new_model_state


def compute_loss(state: TrainState, params, batch, *, training: bool, key=None):
    """The scalar objective and its by-products.

    The loss includes the values layers passed to `add_loss` during the forward pass.

    Returns:
      `(loss, (outputs, new_model_state, aux))` where `aux` is a dict of extra
      scalars from a custom `loss_fn` (empty otherwise).
    """
    x, y, sample_weight = unpack_batch(batch)
    (outputs, new_model_state), added_losses = call_with_added_losses(
        apply_model, state, params, x, training=training, key=key
    )
    config = state.config
    aux = {}
    if config.loss_fn is not None:
        result = config.loss_fn(outputs, batch)
        loss, aux = result if isinstance(result, tuple) else (result, {})
    else:
        loss = config.loss(y, outputs, sample_weight)  # a Loss reduces as Keras does (sum_over_batch_size)
    loss = at_least_f32(loss)
    if added_losses:  # Keras's `add_loss`: the layers' losses join the objective
        loss = loss + sum(at_least_f32(value) for value in added_losses)
    return loss, (outputs, new_model_state, dict(aux))


def compute_metrics(state: TrainState, batch, outputs, loss, aux=None) -> dict[str, jax.Array]:
    """`{"loss": loss, **aux, metric_name: weighted mean, ...}` for one batch."""
    _, y, sample_weight = unpack_batch(batch)
    metrics = {"loss": loss, **(aux or {})}
    for metric in state.config.metrics:
        metrics[metric.name] = weighted_mean(metric(y, outputs), sample_weight)
    return metrics


def step_key(state: TrainState) -> jax.Array:
    """The dropout key of the current step: `fold_in(state.rng, state.step)`."""
    return jax.random.fold_in(state.rng, state.step)


def train_step(state: TrainState, batch) -> tuple[TrainState, dict[str, jax.Array]]:
    """One optimizer update.

    Args:
      state: the current `TrainState`.
      batch: `(x, y)`, `(x, y, sample_weight)` or a dict (see module docstring).

    Returns:
      `(new_state, metrics)` where metrics maps "loss" and each metric name to a
      float32 scalar (the batch mean).
    """
    key = step_key(state)

    def objective(params):
        return compute_loss(state, params, batch, training=True, key=key)

    scale = precision.loss_scale(state.opt_state)  # None (decided at trace time) unless float16 loss scaling is on
    if scale is not None:
        objective = precision.scale_objective(objective, scale)
    (loss, (outputs, new_model_state, aux)), grads = jax.value_and_grad(objective, has_aux=True)(state.params)
    if scale is not None:
        loss = loss / scale
    updates, new_opt_state = state.tx.update(grads, state.opt_state, state.params)
    new_params = optax.apply_updates(state.params, updates)
    new_state = state.replace(
        step=state.step + 1, params=new_params, model_state=new_model_state, opt_state=new_opt_state
    )
    if state.config.nonfinite is not None:  # see nnjax.train.nonfinite
        new_state = nonfinite.guard(state, new_state, loss, grads if scale is None else None)
    return new_state, compute_metrics(state, batch, outputs, loss, aux)


def eval_step(state: TrainState, batch) -> dict[str, jax.Array]:
    """Loss and metrics of one batch in inference mode; the state is unchanged."""
    loss, (outputs, _, aux) = compute_loss(state, state.params, batch, training=False)
    return compute_metrics(state, batch, outputs, loss, aux)


def predict_step(state: TrainState, x):
    """The model's outputs for inputs `x`, in inference mode."""
    outputs, _ = apply_model(state, state.params, x, training=False)
    return outputs


__all__ = [
    "apply_model",
    "call_module",
    "compute_loss",
    "compute_metrics",
    "eval_step",
    "predict_step",
    "step_key",
    "train_step",
    "unpack_batch",
]
