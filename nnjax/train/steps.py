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

import inspect
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from nnjax.layers import masking
from nnjax.layers.base import call_with_added_losses
from nnjax.layers.calling import call_module
from nnjax.layers.noise import activity_loss
from nnjax.train import freeze, nonfinite, precision
from nnjax.train import losses as losses_lib
from nnjax.train.losses import at_least_f32
from nnjax.train.metrics import weighted_sum_and_count
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


def apply_model(state: TrainState, params, x, *, training: bool, key=None, model_state=None,
                return_intermediates: bool = False):
    """Runs the model as a pure function.

    Args:
      state: supplies the graph definition, the model state and the config.
      params: the parameters to use (pass `state.params`, or the differentiated copy).
      x: the model's input pytree.
      training: Keras's `training` flag (dropout on, BatchNorm batch statistics).
      key: PRNG key for stochastic layers.
      model_state: overrides `state.model_state`.
      return_intermediates: also return the values the call produced but the state does not keep.

    Returns:
      `(outputs, new_model_state)`, or `(outputs, new_model_state, intermediates)` with
      `return_intermediates`; outputs are cast back to float32 under a mixed-precision
      `compute_dtype`. `new_model_state` has exactly the layout of the model state;
      `intermediates` is a nested dict (by attribute path) of what the call sowed
      (`nnx.sow`, Linen's `self.sow`: tuples, as Flax sows them) and of the Variables it
      created (`self.kl = nnx.Variable(...)` inside `__call__`).

    Raises:
      ValueError: if the call changed the shape or dtype of a Variable the state keeps, or deleted one.
    """
    compute_dtype = state.config.compute_dtype
    model_state = state.model_state if model_state is None else model_state
    module = nnx.merge(state.graphdef, _cast_floats(params, compute_dtype), model_state, copy=True)
    outputs = call_module(module, _cast_floats(x, compute_dtype), training=training, key=key)
    new_model_state, intermediates = _split_call_state(module, model_state)
    if compute_dtype is not None:
        mask = masking.get_mask(outputs)
        outputs = _cast_floats(outputs, jnp.float32)
        masking.set_mask(outputs, mask)
        new_model_state = jax.tree.map(lambda new, old: new.astype(old.dtype), new_model_state, model_state)
    if return_intermediates:
        return outputs, new_model_state, intermediates
    return outputs, new_model_state


def _unwrapped(module) -> tuple[str, ...]:
    """The path prefix that hides nnjax's wrapper of a Linen module (its variables live under `inner`)."""
    from nnjax.layers.sequential import LinenLayer

    return ("inner",) if isinstance(module, LinenLayer) else ()


def _pure(flat: dict, prefix: tuple) -> dict:
    """A nested dict of the Variables' values of `{path: Variable}`, without `prefix`."""
    nested: dict = {}
    for path, variable in flat.items():
        if prefix and tuple(path[: len(prefix)]) == prefix:
            path = tuple(path[len(prefix):])
        node = nested
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = variable.get_value() if hasattr(variable, "get_value") else variable
    return nested


def _value(leaf):
    """A state leaf's array: a Variable's value, or the leaf itself where the state holds plain arrays."""
    return leaf.get_value() if isinstance(leaf, nnx.Variable) else leaf


def _split_call_state(module, model_state):
    """(the model state after the call, in the layout of `model_state`; the call's intermediates)."""
    sown = nnx.pop(module, nnx.Intermediate)
    _, _, after = nnx.split(module, nnx.Param, ...)
    before_flat, after_flat = dict(model_state.flat_state()), dict(after.flat_state())
    missing = [path for path in before_flat if path not in after_flat]
    if missing:
        raise ValueError(
            f"the model's call removed state it held: expected the Variables {['/'.join(map(str, p)) for p in missing]} "
            "to remain after the call; received none"
        )
    for path, old in before_flat.items():
        old_value, new_value = _value(old), _value(after_flat[path])
        if jnp.shape(old_value) != jnp.shape(new_value) or jnp.result_type(old_value) != jnp.result_type(new_value):
            raise ValueError(
                f"the model's call changed the Variable {'/'.join(map(str, path))}: expected shape {jnp.shape(old_value)} "
                f"{jnp.result_type(old_value)} (as the model held it before training), received {jnp.shape(new_value)} "
                f"{jnp.result_type(new_value)}. A value of the call (a loss term, an activation) belongs in a Variable "
                "created by the call or in `nnx.sow`, not in one the module creates at construction"
            )
    kept = nnx.State.from_flat_path({path: after_flat[path] for path in before_flat})
    created = {path: variable for path, variable in after_flat.items() if path not in before_flat}
    prefix = _unwrapped(module)
    intermediates = _pure({**dict(sown.flat_state()), **created}, prefix)
    return kept, intermediates


def _loss_fn_extras(loss_fn) -> frozenset:
    """Which of `intermediates=` / `params=` a `loss_fn` declares (by name; `**kwargs` alone gets none)."""
    try:
        names = inspect.signature(loss_fn).parameters
    except (TypeError, ValueError):
        return frozenset()
    return frozenset(n for n in ("intermediates", "params") if n in names)


def compute_loss(state: TrainState, params, batch, *, training: bool, key=None):
    """The scalar objective and its by-products.

    The loss includes the values layers passed to `add_loss` during the forward pass. A `loss_fn`
    is called as `loss_fn(outputs, batch)`, with `intermediates=` and/or `params=` when it declares
    them (see `StepConfig.loss_fn`).

    Returns:
      `(loss, (outputs, new_model_state, aux))` where `aux` is a dict of extra
      scalars from a custom `loss_fn` (empty otherwise).
    """
    x, y, sample_weight = unpack_batch(batch)
    (outputs, new_model_state, intermediates), added_losses = call_with_added_losses(
        apply_model, state, params, x, training=training, key=key, return_intermediates=True
    )
    config = state.config
    aux = {}
    if config.loss_fn is not None:
        extras = _loss_fn_extras(config.loss_fn)
        kwargs = {}
        if "intermediates" in extras:
            kwargs["intermediates"] = intermediates
        if "params" in extras:
            kwargs["params"] = _pure(dict(params.flat_state()), _unwrapped(nnx.merge(state.graphdef, params, state.model_state)))
        result = config.loss_fn(outputs, batch, **kwargs)
        loss, aux = result if isinstance(result, tuple) else (result, {})
    else:
        # A Loss reduces as Keras does (sum_over_batch_size); an output's mask leaves masked steps out.
        loss = config.loss(y, outputs, sample_weight, mask=masking.get_mask(outputs))
    loss = at_least_f32(loss)
    if added_losses:  # Keras's `add_loss`: the layers' losses join the objective
        loss = loss + sum(at_least_f32(value) for value in added_losses)
    loss = loss + activity_loss(new_model_state)  # ActivityRegularization's penalties (0 when there are none)
    return loss, (outputs, new_model_state, dict(aux))


def _is_stateful(metric) -> bool:
    return all(hasattr(metric, attr) for attr in ("init", "update", "result"))


def logged_metrics(config) -> list[tuple[str, Any, bool]]:
    """`(logged name, metric, weighted)` of every compiled metric, named as Keras names them: a metric of
    `weighted_metrics` whose name is already taken by one of `metrics` is logged as "weighted_<name>"."""
    entries, taken, repeats = [], {"loss"}, {}
    for metric in config.metrics:
        name = metric.name
        if name in taken:  # Keras: "accuracy", "accuracy_1", ...
            repeats[name] = repeats.get(name, 0) + 1
            name = f"{name}_{repeats[name]}"
        entries.append((name, metric, False))
        taken.add(name)
    for metric in config.weighted_metrics:
        name = metric.name if metric.name not in taken else f"weighted_{metric.name}"
        entries.append((name, metric, True))
        taken.add(name)
    return entries


def metric_contributions(state: TrainState, batch, outputs, loss, aux=None, mask=None) -> dict[str, Any]:
    """One batch's additive contribution to every logged value; an epoch's value sums them (Keras's rules).

    - "loss" and the scalars a `loss_fn` returns beside it: `(value * B, B)`, the mean over examples
      of the batch values (Keras's loss tracker, weighted by batch size, not by sample weights).
    - a metric of `compile(metrics=)`: `(sum of values, count)`, unweighted (Keras's `Mean`).
    - a metric of `compile(weighted_metrics=)`: `(sum of w * values, sum of w)`.
    - a stateful metric (Precision, AUC, ...): its counts for this batch (states add up).

    `mask` (default: the mask `outputs` carries, see `nnjax.layers.masking`) weights the per-element
    metrics as Keras's `MeanMetricWrapper` does: masked elements count neither in the sum nor in the count.
    """
    _, y, sample_weight = unpack_batch(batch)
    mask = masking.get_mask(outputs) if mask is None else mask
    size = jnp.asarray(jax.tree.leaves(outputs)[0].shape[0], jnp.float32)
    parts = {"loss": (jnp.asarray(loss, jnp.float32) * size, size)}
    for name, value in (aux or {}).items():
        parts[name] = (jnp.asarray(value, jnp.float32) * size, size)
    for name, metric, weighted in logged_metrics(state.config):
        weights = sample_weight if weighted else None
        if _is_stateful(metric):
            leaves = jax.tree.leaves(outputs)
            parts[name] = metric.update(metric.init(leaves[0].shape if len(leaves) == 1 else None), y, outputs, weights)
        else:
            parts[name] = weighted_sum_and_count(metric(y, outputs), _masked_weights(weights, mask))
    return parts


def _masked_weights(sample_weight, mask):
    """Keras's `apply_mask(..., reduction="sum")`: the mask as 0/1 weights, times the sample weights."""
    if mask is None:
        return sample_weight
    float_mask = jnp.asarray(mask, jnp.float32)
    if sample_weight is None:
        return float_mask
    float_mask, weights = losses_lib.squeeze_or_expand_to_same_rank(float_mask, jnp.asarray(sample_weight, jnp.float32))
    return weights * float_mask


def results(config, totals: dict) -> dict[str, jax.Array]:
    """The value of every entry of summed contributions: total / count (0 for no count) or the metric's result."""
    stateful = {name: metric for name, metric, _ in logged_metrics(config) if _is_stateful(metric)}
    values = {}
    for name, total in totals.items():
        if name in stateful:
            values[name] = stateful[name].result(total)
        else:
            num, den = total
            values[name] = jnp.where(den != 0, num / jnp.where(den != 0, den, 1), 0.0)
    return values


def compute_metrics(state: TrainState, batch, outputs, loss, aux=None) -> dict[str, jax.Array]:
    """`{"loss": loss, **aux, metric_name: value, ...}` of one batch, by Keras's rules (see `metric_contributions`)."""
    return results(state.config, metric_contributions(state, batch, outputs, loss, aux))


def step_key(state: TrainState) -> jax.Array:
    """The dropout key of the current step: `fold_in(state.rng, state.step)`."""
    return jax.random.fold_in(state.rng, state.step)


def train_step_totals(state: TrainState, batch) -> tuple[TrainState, dict[str, Any]]:
    """`train_step` returning the batch's additive contributions (`metric_contributions`) instead of its values:
    what `fit` sums over an epoch.
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
    grads = freeze.zero_frozen(grads, state.config.trainable)  # frozen parameters: no gradient, no update
    updates, new_opt_state = state.tx.update(grads, state.opt_state, state.params)
    updates = freeze.zero_frozen(updates, state.config.trainable)
    new_params = optax.apply_updates(state.params, updates)
    new_state = state.replace(
        step=state.step + 1, params=new_params, model_state=new_model_state, opt_state=new_opt_state
    )
    if state.config.nonfinite is not None:  # see nnjax.train.nonfinite
        new_state = nonfinite.guard(state, new_state, loss, grads if scale is None else None)
    return new_state, metric_contributions(state, batch, outputs, loss, aux)


def train_step(state: TrainState, batch) -> tuple[TrainState, dict[str, jax.Array]]:
    """One optimizer update.

    Args:
      state: the current `TrainState`.
      batch: `(x, y)`, `(x, y, sample_weight)` or a dict (see module docstring).

    Returns:
      `(new_state, metrics)` where metrics maps "loss" and each metric name to a
      float32 value of this batch (Keras's rules: see `metric_contributions`).
    """
    new_state, contributions = train_step_totals(state, batch)
    return new_state, results(state.config, contributions)


def eval_step_totals(state: TrainState, batch) -> dict[str, Any]:
    """`eval_step`'s additive contributions (`metric_contributions`), for summing over a dataset."""
    loss, (outputs, _, aux) = compute_loss(state, state.params, batch, training=False)
    return metric_contributions(state, batch, outputs, loss, aux)


def eval_step(state: TrainState, batch) -> dict[str, jax.Array]:
    """Loss and metrics of one batch in inference mode; the state is unchanged."""
    return results(state.config, eval_step_totals(state, batch))


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
    "eval_step_totals",
    "logged_metrics",
    "metric_contributions",
    "predict_step",
    "step_key",
    "results",
    "train_step",
    "train_step_totals",
    "unpack_batch",
]
