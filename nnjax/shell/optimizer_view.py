"""`model.optimizer`: the compiled optax transformation, with Keras's `learning_rate` and `iterations` on it.

The transformation is plain optax (its `init`/`update` are the compiled ones); the learning rate lives in
the model's optimizer state (`optax.inject_hyperparams`), so reading it reads the state and setting it
writes the state: the next step uses the new rate and nothing is recompiled.

    model.optimizer.learning_rate = 0.01          # as Keras
    model.optimizer.learning_rate.assign(0.01)    # as Keras's Variable
    float(model.optimizer.learning_rate)
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

from nnjax.train.optimizers import get_learning_rate


def _rate_of(model):
    """The current rate: from the state when there is one, else from the transformation's initial state."""
    if model._state is not None or model.built:
        rate = get_learning_rate(model.state.opt_state)
    else:
        rate = get_learning_rate(model._compiled.tx.init({}))
    if rate is None:
        raise ValueError(
            "model.optimizer.learning_rate: the optimizer keeps no learning rate in its state; use an nnjax optimizer "
            "(e.g. 'sgd', nj.optimizers.SGD(0.01)) or wrap an optax one with optax.inject_hyperparams"
        )
    return rate


def _assign(model, value) -> None:
    from nnjax.callbacks.learning_rate import assign_learning_rate

    if not model.built:
        raise ValueError(
            f'model.optimizer.learning_rate = {value!r}: model "{model.name}" is not built yet, so it has no optimizer '
            "state to hold the rate; build it first (model.build(input_shape), input_shape= on the first layer, or one "
            "train_on_batch / fit call)"
        )
    if model.optimizer_has_schedule:
        raise TypeError(
            "This optimizer was created with a learning-rate schedule as its `learning_rate`, hence its learning rate "
            f"is not settable; received learning_rate={value!r}"
        )
    _rate_of(model)  # a clear error when the optimizer keeps no rate
    assign_learning_rate(model, float(np.asarray(value)))


class LearningRate:
    """Keras's learning-rate Variable of a compiled model: reads and writes the optimizer state.

    `float(lr)`, `np.asarray(lr)`, `lr.numpy()`, `lr.value` read the current rate; `lr.assign(v)` sets it.
    """

    def __init__(self, model):
        self._model = model

    @property
    def value(self) -> np.ndarray:
        return np.asarray(_rate_of(self._model))

    def numpy(self) -> np.ndarray:
        return self.value

    def assign(self, value) -> LearningRate:
        """Sets the rate of the following steps to `value` (a float)."""
        _assign(self._model, value)
        return self

    def __float__(self) -> float:
        rates = self.value.reshape(-1)
        if not np.all(rates == rates[0]):  # an ensemble sweeping the rate: no single float
            raise ValueError(f"model.optimizer.learning_rate: the members' rates differ ({rates.tolist()}); read them with "
                             "np.asarray(model.optimizer.learning_rate)")
        return float(rates[0])

    def __array__(self, dtype=None, copy=None):
        return self.value if dtype is None else self.value.astype(dtype)

    def __eq__(self, other):
        return bool(np.all(self.value == np.asarray(other)))

    __hash__ = None

    def __repr__(self) -> str:
        return f"<LearningRate value={self.value}>"


class ModelOptimizer(optax.GradientTransformation):
    """The transformation a model was compiled with (an `optax.GradientTransformation`), bound to the model's state.

    Attributes:
      learning_rate: a `LearningRate` (read, `assign`, or set: `model.optimizer.learning_rate = 0.01`).
      iterations: the number of optimizer steps taken (Keras's `optimizer.iterations`).
    """

    @classmethod
    def of(cls, model) -> ModelOptimizer:
        tx = model._compiled.tx
        view = cls(tx.init, tx.update)
        object.__setattr__(view, "_model", model)
        return view

    @property
    def learning_rate(self) -> LearningRate:
        return LearningRate(self._model)

    @learning_rate.setter
    def learning_rate(self, value) -> None:
        _assign(self._model, value)

    @property
    def variables(self) -> list:
        """The optimizer state's arrays (the optax state's leaves, in its flattening order): Keras's
        `optimizer.variables`, the `optimizer_variables` of a Keras-form `train_step`."""
        return jax.tree.leaves(self._model._step_state().opt_state)

    def stateless_apply(self, optimizer_variables, grads, trainable_variables) -> tuple[list, list]:
        """One update without side effects, as Keras's `optimizer.stateless_apply`.

        Args:
          optimizer_variables: one array per entry of `variables`.
          grads: one gradient per entry of `trainable_variables`.
          trainable_variables: the values to update, one per entry of `model.trainable_variables`.

        Returns:
          `(new trainable_variables, new optimizer_variables)`; frozen parameters stay as they are and the layers'
          constraints apply after the update, as in `fit`.
        """
        from nnjax.train import freeze
        from nnjax.train.constraints import apply_constraints

        what = "optimizer.stateless_apply"
        state = self._model._step_state()
        layout = self._model._keras_layout(state)
        _, non_trainable = layout.lists(state.params, state.model_state)
        params, _ = layout.trees(state, trainable_variables, non_trainable, what)
        grads_tree, _ = layout.trees(state, _grad_list(grads, what), [jnp.zeros_like(v) for v in non_trainable], what)
        opt_state = layout.opt_state(state, optimizer_variables, what)
        trainable = state.config.trainable
        updates, new_opt_state = state.tx.update(freeze.zero_frozen(grads_tree, trainable), opt_state, params)
        new_params = optax.apply_updates(params, freeze.zero_frozen(updates, trainable))
        new_params = apply_constraints(new_params, trainable=trainable)
        return layout.lists(new_params, state.model_state)[0], jax.tree.leaves(new_opt_state)

    @property
    def iterations(self) -> int:
        model = self._model
        return int(np.asarray(model.state.step).reshape(-1)[0]) if model.built else 0


def _grad_list(grads, what: str) -> list:
    if isinstance(grads, dict) or not isinstance(grads, (list, tuple)):
        raise TypeError(f"{what}: expected `grads` to be a list of arrays, one per trainable variable (the gradient "
                        f"of a function of the trainable_variables list); received {type(grads).__name__}")
    return list(grads)


__all__ = ["LearningRate", "ModelOptimizer"]
