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

import contextvars
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
from nnjax.train.constraints import apply_constraints
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
    them (see `StepConfig.loss_fn`). With per-output losses (`StepConfig.outputs`) the objective is
    Keras's: the sum of each output's loss times its weight, and each output's unweighted loss is
    reported as "<output>_loss" when there are several. A `StepConfig.compute_loss` replaces the
    objective; `default_loss` inside it is the compiled one.

    Returns:
      `(loss, (outputs, new_model_state, aux))` where `aux` is a dict of extra
      scalars from a custom `loss_fn` or the per-output losses (empty otherwise).
    """
    x, y, sample_weight = unpack_batch(batch)
    (outputs, new_model_state, intermediates), added_losses = call_with_added_losses(
        apply_model, state, params, x, training=training, key=key, return_intermediates=True
    )
    config = state.config

    def extras(loss):
        if added_losses:  # Keras's `add_loss`: the layers' losses join the objective
            loss = loss + sum(at_least_f32(value) for value in added_losses)
        return loss + activity_loss(new_model_state)  # ActivityRegularization's penalties (0 when there are none)

    aux = {}
    if config.compute_loss is not None:
        captured: dict = {}

        def default(y_true, y_pred, weights):
            value, parts = compiled_loss(config, y_true, y_pred, weights)
            captured.update(parts)
            return extras(value)

        token = _DEFAULT_LOSS.set(default)
        try:
            loss = at_least_f32(config.compute_loss(x, y, outputs, sample_weight, training))
        finally:
            _DEFAULT_LOSS.reset(token)
        if jnp.ndim(loss) != 0:
            raise ValueError(f"compute_loss: expected a scalar loss; received an array of shape {jnp.shape(loss)}")
        aux = {name: captured.get(name, jnp.zeros((), jnp.float32)) for name in output_loss_names(config)}
        return loss, (outputs, new_model_state, aux)
    if config.loss_fn is not None:
        extra_args = _loss_fn_extras(config.loss_fn)
        kwargs = {}
        if "intermediates" in extra_args:
            kwargs["intermediates"] = intermediates
        if "params" in extra_args:
            kwargs["params"] = _pure(dict(params.flat_state()), _unwrapped(nnx.merge(state.graphdef, params, state.model_state)))
        result = config.loss_fn(outputs, batch, **kwargs)
        loss, aux = result if isinstance(result, tuple) else (result, {})
    elif config.loss is None and not config.outputs:  # compile(optimizer=...) alone: the layers' add_loss is the objective
        if not added_losses:
            raise ValueError("No loss to compute: the model was compiled without `loss` and none of its layers called "
                             "`add_loss`; pass `loss` to compile() (e.g. loss='mse')")  # fmt: skip
        loss = jnp.zeros((), jnp.float32)
    else:
        loss, aux = compiled_loss(config, y, outputs, sample_weight)
    return extras(at_least_f32(loss)), (outputs, new_model_state, dict(aux))


_DEFAULT_LOSS: contextvars.ContextVar = contextvars.ContextVar("nnjax_default_loss", default=None)


def default_loss_available() -> bool:
    """Whether a step is being traced whose compiled objective `default_loss` gives."""
    return _DEFAULT_LOSS.get() is not None


def default_loss(y, y_pred, sample_weight=None):
    """The compiled objective (loss, per-output losses, the layers' added losses) of the step being traced.

    What a subclassed model's `compute_loss` override gets from `super().compute_loss(...)`.

    Raises:
      RuntimeError: outside a training or evaluation step.
    """
    default = _DEFAULT_LOSS.get()
    if default is None:
        raise RuntimeError("compute_loss: the compiled loss is only available inside fit/evaluate's steps "
                           "(a compute_loss override calling super().compute_loss)")
    return default(y, y_pred, sample_weight)


def compiled_loss(config, y, outputs, sample_weight) -> tuple[jax.Array, dict]:
    """`compile(loss=...)`'s objective without the layers' added losses: `(loss, {"<output>_loss": value})`.

    One output: `config.loss`, reduced as Keras does (an output's mask leaves masked steps out).
    Several (`config.outputs`): `sum(weight_i * loss_i)` over the outputs with a loss; the unweighted
    `loss_i` are returned by name when there are several of them (Keras's per-output loss trackers).
    """
    if not config.outputs:
        if config.loss is None:
            raise ValueError("compute_loss: the model was compiled without `loss`; the compiled loss is undefined")
        return at_least_f32(config.loss(y, outputs, sample_weight, mask=masking.get_mask(outputs))), {}
    heads = [head for head in config.outputs if head.loss is not None]
    targets = output_targets(config, y, "y")
    weights = output_sample_weights(config, sample_weight)
    total, parts = jnp.zeros((), jnp.float32), {}
    for head in heads:
        prediction = outputs[head.key]
        value = at_least_f32(head.loss(targets[head.position], prediction, weights[head.position],
                                       mask=masking.get_mask(prediction)))
        if len(heads) > 1:
            parts[f"{head.name}_loss"] = value
        total = total + (value if head.loss_weight is None else value * head.loss_weight)
    return total, parts


def output_loss_names(config) -> list[str]:
    """The per-output loss names Keras logs ("<output>_loss"), only when several outputs have a loss."""
    heads = [head for head in config.outputs if head.loss is not None]
    return [f"{head.name}_loss" for head in heads] if len(heads) > 1 else []


def _structure_text(value) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k!r}: ..." for k in value) + "}"
    if isinstance(value, (list, tuple)):
        return f"a {type(value).__name__} of {len(value)}"
    return f"one array of shape {jnp.shape(value)}" if value is not None else "None"


def output_targets(config, y, argument: str) -> list:
    """`y` as one entry per output (in `config.outputs` order): a list/tuple pairs by position, a dict by output name.

    Raises:
      ValueError: naming the model's outputs and what `y` holds, when the structures do not match.
    """
    heads = config.outputs
    names = [head.name for head in heads]
    used = [head.name for head in heads if head.loss is not None or head.metrics or head.weighted_metrics]
    if isinstance(y, dict):
        unknown = [key for key in y if key not in names]
        missing = [name for name in used if name not in y]
        if unknown or missing:
            raise ValueError(
                f"{argument}: expected a dict with keys {names} (the model's outputs); received keys {list(y)}"
                + (f" (not outputs: {unknown})" if unknown else "") + (f" (missing: {missing})" if missing else ""))
        return [y.get(name) for name in names]
    if isinstance(y, (list, tuple)):
        if len(y) != len(heads):
            raise ValueError(f"{argument}: expected {len(heads)} entries, one per output {names}, or a dict keyed by "
                             f"them; received {_structure_text(y)}")
        return list(y)
    raise ValueError(f"{argument}: the model has {len(heads)} outputs {names}: expected a list of {len(heads)} "
                     f"or a dict keyed by the output names; received {_structure_text(y)}")


def output_sample_weights(config, sample_weight) -> list:
    """Sample weights per output: a list/dict as `output_targets`, one array (or None) for every output (Keras)."""
    if sample_weight is None or not isinstance(sample_weight, (dict, list, tuple)):
        return [sample_weight] * len(config.outputs)
    if isinstance(sample_weight, dict):
        names = [head.name for head in config.outputs]
        unknown = [key for key in sample_weight if key not in names]
        if unknown:
            raise ValueError(f"sample_weight: expected a dict keyed by the model's outputs {names}; received keys "
                             f"{list(sample_weight)} (not outputs: {unknown})")
        return [sample_weight.get(name) for name in names]
    return output_targets(config, sample_weight, "sample_weight")


def _is_stateful(metric) -> bool:
    return all(hasattr(metric, attr) for attr in ("init", "update", "result"))


def logged_metrics(config) -> list[tuple[str, Any, bool]]:
    """`(logged name, metric, weighted)` of every compiled metric, named as Keras names them: a metric of
    `weighted_metrics` whose name is already taken by one of `metrics` is logged as "weighted_<name>";
    with several outputs each name is prefixed with its output's ("a_accuracy", "a_weighted_accuracy")."""
    return [(name, metric, weighted) for name, metric, weighted, _ in _metric_entries(config)]


def _metric_entries(config) -> list[tuple[str, Any, bool, Any]]:
    """`logged_metrics` with the `OutputHead` each metric reads (None for a single-output model)."""
    if config.outputs:
        return _output_metric_entries(config.outputs)
    entries, taken, repeats = [], {"loss"}, {}
    for metric in config.metrics:
        name = metric.name
        if name in taken:  # Keras: "accuracy", "accuracy_1", ...
            repeats[name] = repeats.get(name, 0) + 1
            name = f"{name}_{repeats[name]}"
        entries.append((name, metric, False, None))
        taken.add(name)
    for metric in config.weighted_metrics:
        name = metric.name if metric.name not in taken else f"weighted_{metric.name}"
        entries.append((name, metric, True, None))
        taken.add(name)
    return entries


def _output_metric_entries(heads) -> list[tuple[str, Any, bool, Any]]:
    """Keras's `CompileMetrics.result` names: "<output>_<metric>", repeats numbered "_1", "_2", ...; a weighted
    metric whose name is taken becomes "<output>_weighted_<metric>"."""
    entries, counters = [], {}

    def numbered(name):
        if name not in counters:
            counters[name] = 1
            return name
        index = counters[name]
        counters[name] += 1
        return f"{name}_{index}"

    for head in heads:
        for metric in head.metrics:
            entries.append((numbered(f"{head.name}_{metric.name}"), metric, False, head))
    for head in heads:
        for metric in head.weighted_metrics:
            name = f"{head.name}_{metric.name}"
            if name in counters:
                name = f"{head.name}_weighted_{metric.name}"
            entries.append((numbered(name), metric, True, head))
    return entries


def logged_names(config) -> list[str]:
    """Every value `fit` and `evaluate` log, in the order of Keras's `evaluate` list: "loss", the per-output losses,
    then the metrics (with several outputs Keras lists the metrics by sorted name)."""
    metric_names = [name for name, _, _, _ in _metric_entries(config)]
    if config.outputs:
        raw = {metric.name for head in config.outputs for metric in (*head.metrics, *head.weighted_metrics)}
        first = [name for name in metric_names if name in raw]  # Keras lists names equal to a metric's own first
        return ["loss", *output_loss_names(config), *first, *sorted(n for n in metric_names if n not in raw)]
    return ["loss", *metric_names]


def metric_contributions(state: TrainState, batch, outputs, loss, aux=None, mask=None) -> dict[str, Any]:
    """One batch's additive contribution to every logged value; an epoch's value sums them (Keras's rules).

    - "loss", the per-output losses and the scalars a `loss_fn` returns beside it: `(value * B, B)`, the mean
      over examples of the batch values (Keras's loss tracker, weighted by batch size, not by sample weights).
    - a metric of `compile(metrics=)`: `(sum of values, count)`, unweighted (Keras's `Mean`).
    - a metric of `compile(weighted_metrics=)`: `(sum of w * values, sum of w)`.
    - a stateful metric (Precision, AUC, ...): its counts for this batch (states add up).

    With several outputs each metric reads its output, its targets and its sample weights.
    `mask` (default: the mask `outputs` carries, see `nnjax.layers.masking`) weights the per-element
    metrics as Keras's `MeanMetricWrapper` does: masked elements count neither in the sum nor in the count.
    """
    _, y, sample_weight = unpack_batch(batch)
    config = state.config
    size = jnp.asarray(jax.tree.leaves(outputs)[0].shape[0], jnp.float32)
    parts = {"loss": (jnp.asarray(loss, jnp.float32) * size, size)}
    for name, value in (aux or {}).items():
        parts[name] = (jnp.asarray(value, jnp.float32) * size, size)
    entries = _metric_entries(config)
    if config.outputs and entries:
        targets = output_targets(config, y, "y")
        weights_per_output = output_sample_weights(config, sample_weight)
    for name, metric, weighted, head in entries:
        if head is None:
            y_true, y_pred, weights = y, outputs, sample_weight if weighted else None
            head_mask = masking.get_mask(outputs) if mask is None else mask
        else:
            y_true, y_pred = targets[head.position], outputs[head.key]
            weights = weights_per_output[head.position] if weighted else None
            head_mask = masking.get_mask(y_pred)
        if _is_stateful(metric):
            leaves = jax.tree.leaves(y_pred)
            parts[name] = metric.update(metric.init(leaves[0].shape if len(leaves) == 1 else None), y_true, y_pred, weights)
        else:
            parts[name] = weighted_sum_and_count(metric(y_true, y_pred), _masked_weights(weights, head_mask))
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
    new_params = apply_constraints(new_params, trainable=state.config.trainable)  # Keras: after each update
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
    "compiled_loss",
    "compute_metrics",
    "default_loss",
    "default_loss_available",
    "eval_step",
    "eval_step_totals",
    "logged_metrics",
    "logged_names",
    "metric_contributions",
    "output_loss_names",
    "output_sample_weights",
    "output_targets",
    "predict_step",
    "step_key",
    "results",
    "train_step",
    "train_step_totals",
    "unpack_batch",
]
