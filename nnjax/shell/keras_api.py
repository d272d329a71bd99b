"""The `Model` side of Keras 3's stateless JAX API: what a JAX-form `train_step(self, state, data)` calls.

    model.trainable_variables        # lists of arrays in Keras's order (see `nnjax.shell.keras_form`)
    model.non_trainable_variables
    model.optimizer.variables        # the optax state's leaves
    model.metrics                    # [loss tracker "loss", compile metrics, metrics assigned as attributes]
    model.metrics_variables          # the variables of `model.metrics`, metric by metric
    y_pred, non_trainable_variables = model.stateless_call(trainable_variables, non_trainable_variables, x)
    loss, (trainable, non_trainable, metrics_vars) = model.stateless_compute_loss(trainable, non_trainable,
                                                                                  metrics_vars, x, y, y_pred)
    trainable, optimizer_variables = model.optimizer.stateless_apply(optimizer_variables, grads, trainable)

Inside a Keras-form step these read and write the lists the step was given; called eagerly they work on the
model's current `TrainState` (nothing is written back: the lists they return are new values).
"""

from __future__ import annotations

import inspect

import jax
import jax.numpy as jnp
import numpy as np

from nnjax.layers.base import call_with_added_losses
from nnjax.shell import keras_form
from nnjax.shell.subclassing import user_defined
from nnjax.train import steps
from nnjax.train.losses import at_least_f32


class KerasStatelessAPI:
    """Keras's stateless methods and variable lists on `Model`."""

    # ------------------------------------------------------------------ which methods a subclass overrides
    def _keras_form_overrides(self) -> tuple[bool, bool, bool]:
        """Whether this subclass overrides Keras's JAX-form `(train_step, test_step, predict_step)`."""
        cls = type(self)
        return tuple(user_defined(cls, name) for name in ("train_step", "test_step", "predict_step"))

    def _keras_steps(self):
        """The `KerasSteps` of this model's execution, or None when it overrides none of the JAX-form steps."""
        train, test, predict = self._keras_form_overrides()
        if not (train or test or predict):
            return None
        return keras_form.KerasSteps(self, train=train, test=test, predict=predict)

    def _check_keras_form_compile(self, *, nonfinite, dtype_policy) -> None:
        """Refuses compile options a Keras-form `train_step` would bypass (it computes and applies the update itself)."""
        for option, value, alternative in (
            ("nonfinite", nonfinite, "check the loss in your train_step (jnp.isfinite) or drop the override"),
            (
                "dtype_policy",
                dtype_policy if dtype_policy == "mixed_float16" else None,
                'dtype_policy="mixed_bfloat16" (no loss scaling)',
            ),
        ):
            if value is not None:
                raise NotImplementedError(
                    f"compile: model {self.name!r} ({type(self).__name__}) overrides train_step, which applies its own "
                    f"updates, so {option}={value!r} would not act on them; expected {option}=None. Supported "
                    f"instead: {alternative}"
                )

    def _keras_layout(self, state) -> keras_form.KerasLayout:
        key = (
            jax.tree.structure(state.params),
            jax.tree.structure(state.model_state),
            jax.tree.structure(state.opt_state),
            state.config.trainable,
        )
        cache = self.__dict__.setdefault("_keras_layouts", {})
        if key not in cache:
            cache[key] = keras_form.KerasLayout(self._module, state)
        return cache[key]

    def _step_state(self):
        context = keras_form.current_context()
        return self.state if context is None else context.state

    # ------------------------------------------------------------------ the fit loop's totals (LoopHooks)
    def _zero_totals(self, source):
        custom = self.execution.step_functions
        if custom is not None and custom.train is not None:
            return custom.zero_totals(self._stored_state_tree(), source.peek(), "train")
        return super()._zero_totals(source)

    def _zero_eval_totals(self, source):
        custom = self.execution.step_functions
        if custom is not None and custom.evaluate is not None:
            return custom.zero_totals(self._stored_state_tree(), source.peek(), "test")
        return super()._zero_totals(source)

    def _totals_result(self, totals) -> dict:
        if isinstance(totals, keras_form.KerasTotals):
            self.__dict__["_keras_totals"] = totals  # the metric values fit/evaluate store in the metrics at the end
            return keras_form.flat_logs(jax.device_get(totals.logs))
        return super()._totals_result(totals)

    def _batch_totals(self, state, batch, phase: str):
        custom = self.execution.step_functions
        if custom is not None and (custom.train if phase == "train" else custom.evaluate) is not None:
            return custom.zero_totals(state, batch, phase)
        return super()._batch_totals(state, batch, phase)

    def _log_order(self, logs: dict) -> list[str]:
        if self.execution.step_functions is not None:
            return self._keras_metric_order(logs)
        return super()._log_order(logs)

    def _epoch_result(self, totals) -> dict:
        """Keras's rule for the values an epoch or evaluation ends with: the results of `model.metrics` (from the
        last step's metric variables) when the step's logs have exactly their names, else the last step's logs."""
        logs = self._totals_result(totals)
        if not isinstance(totals, keras_form.KerasTotals):
            return logs
        values, results, start = jax.device_get(list(totals.metrics)), {}, 0
        for metric in self.metrics:
            count = len(metric.variables)
            result = metric.stateless_result(values[start : start + count])
            start += count
            if isinstance(result, dict):
                results.update(result)
            else:
                results[metric.name] = result
        if set(totals.logs) == set(results):
            return keras_form.flat_logs(results)
        return logs

    def _store_keras_metrics(self) -> None:
        """Writes the metric variables of the last Keras-form step into `model.metrics`' objects."""
        totals = self.__dict__.pop("_keras_totals", None)
        if totals is not None:
            self._write_metrics_variables(jax.device_get(list(totals.metrics)))

    def _keras_metric_order(self, logs: dict) -> list[str]:
        """Keras's `evaluate` list order: the names of `model.metrics` (compile metrics expanded), then the rest
        sorted."""
        names = []
        for metric in self.metrics:
            names += [m.name for m in metric.metrics] if metric.name == "compile_metrics" else [metric.name]
        return [n for n in names if n in logs] + sorted(n for n in logs if n not in names)

    # ------------------------------------------------------------------ variable lists
    @property
    def trainable_variables(self) -> list:
        """The trainable parameters' arrays, in Keras's order (each layer's weights in creation order)."""
        self._require_built("trainable_variables")
        state = self._step_state() if self._compiled is not None else self._inference_state()
        return self._keras_layout(state).lists(state.params, state.model_state)[0]

    @property
    def non_trainable_variables(self) -> list:
        """The frozen parameters and the rest of the model state (BatchNorm statistics, ...), in Keras's order."""
        self._require_built("non_trainable_variables")
        state = self._step_state() if self._compiled is not None else self._inference_state()
        return self._keras_layout(state).lists(state.params, state.model_state)[1]

    @property
    def metrics(self) -> list:
        """Keras's `model.metrics`: once compiled, the loss tracker `Mean(name="loss")` and the compile metrics
        (`name="compile_metrics"`, whose result is a dict of the compiled metrics), then the metric objects
        assigned to the model's attributes. `fit` and `evaluate` reset them at each epoch and evaluation."""
        found = []
        if self._compiled is not None:
            found += [m for m in (self._loss_tracker_metric(), self._compile_metrics_metric()) if m is not None]
        found += [m for m in self.__dict__.get("_tracked_metrics", ()) if m not in found]
        return found

    @property
    def metrics_names(self) -> list[str]:
        return [m.name for m in self.metrics]

    @property
    def metrics_variables(self) -> list:
        """The variables of `model.metrics`, metric by metric (Keras's `metrics_variables` layout)."""
        return [v for m in self.metrics for v in m.variables]

    def _loss_tracker_metric(self):
        tracker = self.__dict__.get("_loss_tracker")
        if tracker is None or tracker[0] is not self._compiled:
            from nnjax.train.metric_means import Mean

            tracker = (self._compiled, Mean(name="loss"))
            self.__dict__["_loss_tracker"] = tracker
        return tracker[1]

    def _compile_metrics_metric(self):
        cached = self.__dict__.get("_compile_metrics")
        if cached is None or cached[0] is not self._compiled:
            from nnjax.shell.compile_metrics import compile_metrics

            cached = (self._compiled, compile_metrics(self._compiled))
            self.__dict__["_compile_metrics"] = cached
        return cached[1]

    def reset_metrics(self) -> None:
        """Resets every metric of `model.metrics` (Keras's `reset_metrics`)."""
        for metric in self.metrics:
            metric.reset_state()

    def get_metrics_result(self) -> dict:
        """`{name: value}` of `model.metrics` (a dict result, as the compile metrics', merged in), as Keras."""
        out = {}
        for metric in self.metrics:
            value = metric.result()
            if isinstance(value, dict):
                out.update(value)
            else:
                out[metric.name] = value
        return out

    def _write_metrics_variables(self, values) -> None:
        """Stores `values` (one per entry of `metrics_variables`) in the metric objects, as host copies."""
        variables = self.metrics_variables
        if len(values) != len(variables):
            return
        for variable, value in zip(variables, values):
            variable.assign(np.asarray(value))

    # ------------------------------------------------------------------ stateless calls
    def stateless_call(self, trainable_variables, non_trainable_variables, *args, return_losses: bool = False, **kwargs):
        """The model's outputs for `trainable_variables` and `non_trainable_variables` (lists, as Keras orders them).

        Args:
          trainable_variables, non_trainable_variables: the values to use, one per entry of the model's lists.
          *args: the inputs `x`.
          return_losses: also return the layers' `add_loss` values of the call.
          **kwargs: `training=` (False by default).

        Returns:
          `(outputs, non_trainable_variables)` with the state the call updated (BatchNorm statistics in training),
          or `(outputs, non_trainable_variables, losses)` with `return_losses`.
        """
        if len(args) != 1:
            raise TypeError(f"stateless_call: expected one input argument `x` after the two variable lists; received {len(args)}")
        training = bool(kwargs.pop("training", False))
        if kwargs:
            raise TypeError(
                f"stateless_call: unexpected keyword arguments {sorted(kwargs)}; expected only `training` and `return_losses`"
            )
        context = keras_form.current_context()
        state = self._step_state() if self._compiled is not None else self._inference_state()
        layout = self._keras_layout(state)
        params, model_state = layout.trees(state, trainable_variables, non_trainable_variables, "stateless_call")
        key = context.next_key() if context is not None else jax.random.PRNGKey(0)
        (outputs, new_model_state), losses = call_with_added_losses(
            steps.apply_model, state, params, args[0], training=training, key=key, model_state=model_state
        )
        losses = [at_least_f32(value) for value in losses]
        if context is not None:
            context.added_losses = losses
        new_non_trainable = layout.lists(params, new_model_state)[1]
        if return_losses:
            return outputs, new_non_trainable, losses
        return outputs, new_non_trainable

    def _keras_compute_loss(self, x, y, y_pred, sample_weight, training: bool):
        """Keras's `compute_loss` inside a Keras-form step: the compiled loss (0 without one) plus the layers'
        added losses of the step's last `stateless_call`."""
        context = keras_form.current_context()
        config = context.state.config
        total = jnp.zeros((), jnp.float32)
        if config.loss is not None or any(head.loss is not None for head in config.outputs):
            total = steps.compiled_loss(config, y, y_pred, sample_weight)[0]
        for value in context.added_losses:
            total = total + value
        return total

    def stateless_compute_loss(
        self,
        trainable_variables,
        non_trainable_variables,
        metrics_variables,
        x=None,
        y=None,
        y_pred=None,
        sample_weight=None,
        training: bool = True,
    ):
        """Keras's `stateless_compute_loss`: `(loss, (trainable_variables, non_trainable_variables,
        metrics_variables))`, the loss of `compute_loss` (an override included) and the lists as given."""
        try:
            parameters = inspect.signature(self.compute_loss).parameters
        except (TypeError, ValueError):
            parameters = {}
        if "training" in parameters:
            loss = self.compute_loss(x, y, y_pred, sample_weight, training=training)
        else:
            loss = self.compute_loss(x, y, y_pred, sample_weight)
        return loss, (trainable_variables, non_trainable_variables, metrics_variables)


__all__ = ["KerasStatelessAPI"]
