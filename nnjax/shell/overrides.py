"""Keras's overridable training methods on a `Model` subclass: honoured, or refused with a clear error.

Keras 3 lets a `keras.Model` subclass override `compute_loss(x, y, y_pred, sample_weight, training)`; `fit` and
`evaluate` then minimise and report what it returns. nnjax does the same: the override runs inside the compiled step
(it must be traceable: `jnp`/`nj.ops` on its arguments), and `super().compute_loss(...)` inside it is the compiled
loss (per-output losses and the layers' added losses included), as in Keras.

Keras's JAX-form `train_step(self, state, data)` (called by `fit`), `test_step(self, state, data)` (`evaluate`,
`fit(validation_data=...)`) and `predict_step(self, state, data)` (`predict`, `predict_on_batch`) are honoured too:
they run inside nnjax's compiled executions on Keras's lists of arrays (see `nnjax.shell.keras_form` for what
`state` holds and in which order), with the stateless API they call (`stateless_call`, `stateless_compute_loss`,
`compute_loss_and_updates`, `optimizer.stateless_apply`, `metrics`, `metrics_variables`:
`nnjax.shell.keras_api`); what they return becomes the model's weights, optimizer state and metric values.

`train_on_batch` and `test_on_batch` run the same steps on one batch. What is still refused, by the method that
would call it (never silently trained the default way), with the supported alternative: overrides of
`compute_metrics`, `compute_loss_and_updates`, `stateless_call` or a `metrics` property without the step that
calls them (nnjax's built-in steps do not call them, Keras's default steps would).
"""

from __future__ import annotations

import inspect
from typing import Any

from nnjax.shell.subclassing import user_defined
from nnjax.train import steps

# a JAX-form step -> the entry points that run it
_STEPS = {
    "train_step": ("fit", "train_on_batch"),
    "test_step": ("evaluate", "fit(validation_data)", "test_on_batch"),
    "predict_step": ("predict", "predict_on_batch"),
}

# an overridable helper -> the entry points whose Keras default step would call it
_HELPERS = {
    "compute_metrics": ("fit", "evaluate", "fit(validation_data)", "train_on_batch", "test_on_batch"),
    "compute_loss_and_updates": ("fit", "evaluate", "fit(validation_data)", "train_on_batch", "test_on_batch"),
    "stateless_call": ("fit", "evaluate", "fit(validation_data)", "predict", "predict_on_batch", "train_on_batch",
                       "test_on_batch"),
    "metrics": ("fit", "evaluate", "fit(validation_data)", "train_on_batch", "test_on_batch"),
}

_STEP_OF = {what: name for name, callers in _STEPS.items() for what in callers}

_ALTERNATIVES = {
    "compute_metrics": "override {step}(self, state, data) and update your metric objects there, or pass metrics "
                       "to compile (metrics=, weighted_metrics=)",
    "compute_loss_and_updates": "override {step}(self, state, data) calling it, or override "
                                "compute_loss(self, x, y, y_pred, sample_weight, training)",
    "stateless_call": "override {step}(self, state, data) calling it, or put the computation in the model's call",
    "metrics": "override {step}(self, state, data) updating them, or pass metrics to compile",
}


class StepOverrides:
    """The `Model` side of Keras's overridable training methods."""

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training: bool = True):
        """Keras's `compute_loss`: the compiled loss of `(y, y_pred, sample_weight)`.

        Inside `fit`/`evaluate` (from an override's `super().compute_loss(...)`) it includes the layers'
        added losses of the step's forward pass, as Keras's does; called eagerly it is the compiled loss alone.

        Args:
          x: the inputs (unused by the default).
          y: the targets (a list or dict per output for several outputs).
          y_pred: the model's outputs.
          sample_weight: `(B,)` weights (or one per output).
          training: whether the step trains (unused by the default).

        Returns:
          A float32 scalar.
        """
        from nnjax.shell.keras_form import current_context

        if current_context() is not None:  # inside a Keras-form step
            return self._keras_compute_loss(x, y, y_pred, sample_weight, training)
        del x, training
        if steps.default_loss_available():
            return steps.default_loss(y, y_pred, sample_weight)
        return steps.compiled_loss(self.state.config, y, y_pred, sample_weight)[0]

    def _compute_loss_override(self):
        """`fn(x, y, y_pred, sample_weight, training)` calling an overridden `compute_loss`, or None."""
        if getattr(type(self), "compute_loss", None) is StepOverrides.compute_loss:
            return None
        return _OverriddenLoss(self)

    def _refuse_overrides(self, what: str) -> None:
        """Raises NotImplementedError if this subclass overrides a Keras method that `what` would call but nnjax
        cannot honour there."""
        cls, name_of = type(self), f'model "{getattr(self, "name", type(self).__name__)}" ({type(self).__name__})'
        step = _STEP_OF.get(what)
        if step is not None and user_defined(cls, step):
            return
        for name, callers in _HELPERS.items():
            if what in callers and user_defined(cls, name):
                step_name = step or "train_step"
                raise NotImplementedError(
                    f"{what}: {name_of} overrides `{name}`, which nnjax calls only from your own JAX-form "
                    f"`{step_name}` (Keras's default {step_name} would call it, nnjax's built-in step does not); "
                    f"expected `{step_name}` to be overridden too. Supported instead: "
                    f"{_ALTERNATIVES[name].format(step=step_name)}")

    def compute_loss_and_updates(self, trainable_variables, non_trainable_variables, metrics_variables, x, y,
                                 sample_weight, training: bool = False, optimizer_variables=None):
        """Keras's stateless loss for `jax.value_and_grad(self.compute_loss_and_updates, has_aux=True)`.

        Returns:
          `(loss, (loss, y_pred, non_trainable_variables, metrics_variables))`, as Keras's (no loss scaling).
        """
        del optimizer_variables
        y_pred, non_trainable_variables = self.stateless_call(trainable_variables, non_trainable_variables, x,
                                                              training=training)
        loss, (_, non_trainable_variables, metrics_variables) = self.stateless_compute_loss(
            trainable_variables, non_trainable_variables, metrics_variables, x=x, y=y, y_pred=y_pred,
            sample_weight=sample_weight, training=training)
        return loss, (loss, y_pred, non_trainable_variables, metrics_variables)


class _OverriddenLoss:
    """An overridden `compute_loss` as the step calls it (`training` only when the override declares it, as Keras)."""

    def __init__(self, model):
        self.model = model
        try:
            parameters = inspect.signature(type(model).compute_loss).parameters
        except (TypeError, ValueError):
            parameters = {}
        self.takes_training = "training" in parameters or any(
            p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())

    def __call__(self, x, y, y_pred, sample_weight, training: bool) -> Any:
        if self.takes_training:
            return self.model.compute_loss(x, y, y_pred, sample_weight, training=training)
        return self.model.compute_loss(x, y, y_pred, sample_weight)

    def __hash__(self) -> int:
        return id(self.model)

    def __eq__(self, other) -> bool:
        return isinstance(other, _OverriddenLoss) and other.model is self.model


__all__ = ["StepOverrides"]
