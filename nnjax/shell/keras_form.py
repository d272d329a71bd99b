"""Keras 3's JAX-form steps on nnjax's `TrainState`: `train_step(self, state, data)`, `test_step`, `predict_step`.

Keras's JAX trainer hands a subclass's `train_step` a `state` of four lists of arrays,
`(trainable_variables, non_trainable_variables, optimizer_variables, metrics_variables)`, and takes back
`(logs, state)`. nnjax keeps one `TrainState` instead; `KerasLayout` says where each list's entries sit in it:

- `trainable_variables`: the model's trainable `nnx.Param`s, in Keras's order (layer by layer, each layer's
  weights in creation order: a Dense's kernel, then its bias), as `model.trainable_variables` lists them;
- `non_trainable_variables`: the frozen parameters and the rest of the model state, in the same order;
- `optimizer_variables`: the leaves of the optax state (`model.optimizer.variables`);
- `metrics_variables`: the variables of `model.metrics`, metric by metric (`model.metrics_variables`).

`KerasSteps` runs the user's methods inside nnjax's compiled executions (`nnjax.train.execution`), so
`steps_per_execution`, device-resident data and callbacks work as for the built-in step. The epoch's "totals" are
`KerasTotals(metrics, logs)`: the metric variables the last step returned and its logs; each epoch (and each
evaluation) starts from the metrics' `stateless_reset_state()`, as Keras resets `model.metrics`. Callbacks' batch
logs are the step's logs, flattened as Keras flattens them (nested dicts merged); an epoch or evaluation ends on
the results of `model.metrics` when the step's logs have exactly their names, else on the last step's logs (Keras's
rule), and the metric objects then hold the last step's variables.
"""

from __future__ import annotations

import contextlib
import contextvars
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from nnjax.shell.weights import keras_leaf_order
from nnjax.train import steps


class KerasTotals(NamedTuple):
    """What a Keras-form step carries between steps: the metric variables and the last step's logs."""

    metrics: list
    logs: Any


class KerasLayout:
    """Keras's variable lists of one `TrainState` structure.

    Args:
      module: the model's module (its `weights` give Keras's order when it is an nnjax layer).
      state: a `TrainState` of that module.
    """

    def __init__(self, module, state):
        self.num_params = len(jax.tree.leaves(state.params))
        self.params_def = jax.tree.structure(state.params)
        self.state_def = jax.tree.structure(state.model_state)
        order = keras_leaf_order(module, state.params, state.model_state)
        trainable = state.config.trainable or (True,) * self.num_params
        self.trainable = [slot for slot in order if slot < self.num_params and trainable[slot]]
        self.non_trainable = [slot for slot in order if slot not in self.trainable]
        self.opt_def = jax.tree.structure(state.opt_state)

    def lists(self, params, model_state) -> tuple[list, list]:
        """`(trainable_variables, non_trainable_variables)` of `params` and `model_state`."""
        leaves = jax.tree.leaves(params) + jax.tree.leaves(model_state)
        return [leaves[i] for i in self.trainable], [leaves[i] for i in self.non_trainable]

    def trees(self, state, trainable, non_trainable, what: str) -> tuple[Any, Any]:
        """`(params, model_state)` holding the values of the two lists (shapes and dtypes as in `state`)."""
        current = jax.tree.leaves(state.params) + jax.tree.leaves(state.model_state)
        new = list(current)
        for name, slots, values in (
            ("trainable_variables", self.trainable, trainable),
            ("non_trainable_variables", self.non_trainable, non_trainable),
        ):
            values = _as_list(values, f"{what}: {name}")
            if len(values) != len(slots):
                raise ValueError(
                    f"{what}: expected {name} to be a list of {len(slots)} arrays (the model's "
                    f"{name}, in order); received {len(values)}"
                )
            for index, (slot, value) in enumerate(zip(slots, values)):
                new[slot] = _matching(value, current[slot], f"{what}: {name}[{index}]")
        return (
            jax.tree.unflatten(self.params_def, new[: self.num_params]),
            jax.tree.unflatten(self.state_def, new[self.num_params :]),
        )

    def opt_state(self, state, values, what: str):
        """The optax state holding `values` (the leaves of `state.opt_state`, in order)."""
        current = jax.tree.leaves(state.opt_state)
        values = _as_list(values, f"{what}: optimizer_variables")
        if len(values) != len(current):
            raise ValueError(
                f"{what}: expected optimizer_variables to be a list of {len(current)} arrays "
                f"(model.optimizer.variables); received {len(values)}"
            )
        return jax.tree.unflatten(
            self.opt_def, [_matching(v, c, f"{what}: optimizer_variables[{i}]") for i, (v, c) in enumerate(zip(values, current))]
        )


def _as_list(values, what: str) -> list:
    if not isinstance(values, (list, tuple)):
        raise TypeError(f"{what}: expected a list of arrays; received {type(values).__name__}")
    return list(values)


def _matching(value, like, what: str):
    value = jnp.asarray(value)
    if value.shape != jnp.shape(like):
        raise ValueError(f"{what}: expected an array of shape {jnp.shape(like)}; received shape {value.shape}")
    return value.astype(jnp.result_type(like))


class StepContext:
    """The `TrainState` a Keras-form step is traced on, and where its random keys come from."""

    def __init__(self, state, key):
        self.state = state
        self._key = key
        self.added_losses: list = []  # the layers' `add_loss` values of the last `stateless_call`

    def next_key(self):
        self._key, key = jax.random.split(self._key)
        return key


_CONTEXT: contextvars.ContextVar = contextvars.ContextVar("nnjax_keras_step", default=None)


def current_context() -> StepContext | None:
    """The context of the Keras-form step being traced, or None (an eager call)."""
    return _CONTEXT.get()


@contextlib.contextmanager
def stepping(state, key):
    token = _CONTEXT.set(StepContext(state, key))
    try:
        yield
    finally:
        _CONTEXT.reset(token)


def pack(batch) -> tuple:
    """Keras's `data`: `(x,)`, `(x, y)` or `(x, y, sample_weight)` (trailing Nones left out)."""
    x, y, sample_weight = steps.unpack_batch(batch)
    if sample_weight is not None:
        return (x, y, sample_weight)
    return (x,) if y is None else (x, y)


def _pair(result, what: str, expected: str) -> tuple:
    if not isinstance(result, (tuple, list)) or len(result) != 2:
        got = f"a {type(result).__name__}" + (f" of length {len(result)}" if isinstance(result, (tuple, list)) else "")
        raise TypeError(f"{what}: expected it to return {expected}; received {got}")
    return tuple(result)


def _state_parts(state, count: int, what: str, names: str) -> tuple:
    if not isinstance(state, (tuple, list)) or len(state) != count:
        got = f"a {type(state).__name__}" + (f" of length {len(state)}" if isinstance(state, (tuple, list)) else "")
        raise TypeError(f"{what}: expected the returned state to be a tuple of {count} lists ({names}); received {got}")
    return tuple(state)


def _check_logs(logs, what: str) -> dict:
    if not isinstance(logs, dict):
        raise TypeError(
            f"{what}: expected the returned logs to be a dict of scalars (e.g. {{'loss': loss}}); received {type(logs).__name__}"
        )
    return logs


class KerasSteps:
    """The step functions of an `Execution` that call a model's Keras-form `train_step`/`test_step`/`predict_step`.

    Args:
      model: an `nj.Model` subclass instance; each method it overrides replaces the core's step (others stay None).
    """

    def __init__(self, model, *, train: bool, test: bool, predict: bool):
        self.model = model
        self.train = self._train if train else None
        self.evaluate = self._evaluate if test else None
        self.predict = self._predict if predict else None
        self._logs_shapes: dict = {}

    def _layout(self, state) -> KerasLayout:
        return self.model._keras_layout(state)

    def _metric_values(self, state, totals, what: str) -> list:
        return list(totals.metrics)

    def _new_metrics(self, values, template, what: str) -> list:
        values = _as_list(values, f"{what}: metrics_variables")
        if len(values) != len(template):
            raise ValueError(
                f"{what}: expected metrics_variables to be a list of {len(template)} arrays "
                f"(model.metrics_variables, metric by metric); received {len(values)}"
            )
        return [_matching(v, t, f"{what}: metrics_variables[{i}]") for i, (v, t) in enumerate(zip(values, template))]

    def _train(self, state, totals, batch):
        what = f"train_step of {type(self.model).__name__}"
        layout = self._layout(state)
        trainable, non_trainable = layout.lists(state.params, state.model_state)
        metrics = list(totals.metrics)
        keras_state = (trainable, non_trainable, jax.tree.leaves(state.opt_state), metrics)
        with stepping(state, steps.step_key(state)):
            result = type(self.model).train_step(self.model, keras_state, pack(batch))
        logs, new = _pair(
            result,
            what,
            "(logs, state) with state = (trainable_variables, non_trainable_variables, optimizer_variables, metrics_variables)",
        )
        logs = _check_logs(logs, what)
        new = _state_parts(new, 4, what, "trainable_variables, non_trainable_variables, optimizer_variables, metrics_variables")
        params, model_state = layout.trees(state, new[0], new[1], what)
        opt_state = layout.opt_state(state, new[2], what)
        new_state = state.replace(step=state.step + 1, params=params, model_state=model_state, opt_state=opt_state)
        return new_state, KerasTotals(self._new_metrics(new[3], metrics, what), self._cast_logs(logs, totals.logs))

    def _evaluate(self, state, totals, batch):
        what = f"test_step of {type(self.model).__name__}"
        layout = self._layout(state)
        trainable, non_trainable = layout.lists(state.params, state.model_state)
        metrics = list(totals.metrics)
        with stepping(state, jax.random.PRNGKey(0)):
            result = type(self.model).test_step(self.model, (trainable, non_trainable, metrics), pack(batch))
        logs, new = _pair(
            result, what, "(logs, state) with state = (trainable_variables, non_trainable_variables, metrics_variables)"
        )
        logs = _check_logs(logs, what)
        new = _state_parts(new, 3, what, "trainable_variables, non_trainable_variables, metrics_variables")
        layout.trees(state, new[0], new[1], what)  # checked; evaluation leaves the model's weights as they are
        return KerasTotals(self._new_metrics(new[2], metrics, what), self._cast_logs(logs, totals.logs))

    def _predict(self, state, x):
        what = f"predict_step of {type(self.model).__name__}"
        trainable, non_trainable = self._layout(state).lists(state.params, state.model_state)
        with stepping(state, jax.random.PRNGKey(0)):
            result = type(self.model).predict_step(self.model, (trainable, non_trainable), (x,))
        outputs, _ = _pair(result, what, "(outputs, non_trainable_variables), as Keras's predict_step does")
        return outputs

    @staticmethod
    def _cast_logs(logs, template):
        if template is None:  # tracing for the logs' shapes
            return jax.tree.map(jnp.asarray, logs)
        try:
            return jax.tree.map(lambda v, t: jnp.asarray(v, t.dtype), logs, template)
        except ValueError as err:
            raise ValueError(
                f"the step's logs changed structure between steps: expected {jax.tree.structure(template)}; "
                f"received {jax.tree.structure(logs)}"
            ) from err

    # ------------------------------------------------------------------ epoch totals
    def zero_totals(self, state, batch, phase: str) -> KerasTotals:
        """Totals at the start of an epoch or evaluation: the metrics reset, zero logs shaped like a step's."""
        metrics = [jnp.asarray(v) for m in self.model.metrics for v in m.stateless_reset_state()]
        spec = jax.tree.map(lambda a: jax.ShapeDtypeStruct(np.shape(a), jnp.result_type(a)), batch)
        key = (
            phase,
            jax.tree.structure(state),
            jax.tree.structure(spec),
            tuple((a.shape, a.dtype) for a in jax.tree.leaves(spec)),
            tuple((m.shape, m.dtype) for m in metrics),
        )
        if key not in self._logs_shapes:
            start = KerasTotals(metrics, None)
            if phase == "train":
                shapes = jax.eval_shape(lambda s, t, b: self._train(s, t, b)[1], state, start, spec)
            else:
                shapes = jax.eval_shape(self._evaluate, state, start, spec)
            self._logs_shapes[key] = shapes.logs
        logs = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), self._logs_shapes[key])
        return KerasTotals(metrics, logs)


def flat_logs(logs) -> dict:
    """Keras's flattening of a step's logs: nested dicts merged into one, keys sorted, scalars as floats."""
    out: dict = {}
    for key, value in sorted(logs.items()):
        if isinstance(value, dict):
            out.update(flat_logs(value))
            continue
        array = np.asarray(value)
        out[key] = float(array) if array.ndim == 0 else array
    return out


__all__ = ["KerasLayout", "KerasSteps", "KerasTotals", "current_context", "flat_logs", "pack", "stepping"]
