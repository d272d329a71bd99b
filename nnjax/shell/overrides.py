"""Keras's overridable training methods on a `Model` subclass: honoured, or refused with a clear error.

Keras 3 lets a `keras.Model` subclass override `compute_loss(x, y, y_pred, sample_weight, training)`; `fit` and
`evaluate` then minimise and report what it returns. nnjax does the same: the override runs inside the compiled step
(it must be traceable: `jnp`/`nj.ops` on its arguments), and `super().compute_loss(...)` inside it is the compiled
loss (per-output losses and the layers' added losses included), as in Keras.

Keras's JAX-form `train_step(self, state, data)`, `test_step`, `predict_step`, `compute_metrics`,
`compute_loss_and_updates`, `stateless_call` and a `metrics` property work on Keras's own variables, optimizer and
metric objects, which nnjax does not have; a subclass that overrides one of them is refused by the method that would
call it (never silently trained the default way), with the supported alternative.
"""

from __future__ import annotations

import inspect
from typing import Any

from nnjax.train import steps

# method name -> the entry points that would call it in Keras
_REFUSED = {
    "train_step": ("fit",),
    "test_step": ("evaluate", "fit(validation_data)"),
    "predict_step": ("predict", "predict_on_batch"),
    "compute_metrics": ("fit", "evaluate", "fit(validation_data)"),
    "compute_loss_and_updates": ("fit", "evaluate", "fit(validation_data)"),
    "stateless_call": ("fit", "evaluate", "fit(validation_data)", "predict", "predict_on_batch"),
    "metrics": ("fit", "evaluate", "fit(validation_data)"),
}

_ALTERNATIVES = {
    "train_step": "override compute_loss(self, x, y, y_pred, sample_weight, training) for a custom objective, or "
                  "compile(loss_fn=fn(outputs, batch)); for a custom update write your own loop over "
                  "nj.train.train_step's parts (nj.train.compute_loss, optax)",
    "test_step": "override compute_loss (evaluate reports it), or call nj.train.eval_step in your own loop",
    "predict_step": "post-process model.predict(x)'s outputs, or call nj.train.predict_step in your own loop",
    "compute_metrics": "pass metrics to compile (metrics=, weighted_metrics=, per output for several outputs), or "
                       "return extra values from compile(loss_fn=...) as (loss, {name: value})",
    "compute_loss_and_updates": "override compute_loss(self, x, y, y_pred, sample_weight, training)",
    "stateless_call": "put the computation in the model's module (or a layer's call)",
    "metrics": "pass metrics to compile, or return extra values from compile(loss_fn=...) as (loss, {name: value})",
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
        """Raises NotImplementedError if this subclass overrides a Keras method that `what` would call."""
        for name, callers in _REFUSED.items():
            if what not in callers:
                continue
            mine = inspect.getattr_static(type(self), name, None)
            base = inspect.getattr_static(StepOverrides, name, None)
            defined_by_user = any(name in vars(klass) for klass in type(self).__mro__
                                  if not klass.__module__.startswith("nnjax."))
            if mine is not base and defined_by_user:
                raise NotImplementedError(
                    f'{what}: model "{getattr(self, "name", type(self).__name__)}" ({type(self).__name__}) overrides '
                    f"`{name}`, which nnjax does not call: Keras's form works on Keras's own variables, optimizer and "
                    f"metric objects. Supported instead: {_ALTERNATIVES[name]}"
                )


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
