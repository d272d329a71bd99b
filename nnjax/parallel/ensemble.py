"""`Ensemble`: many models (seeds, hyperparameters) trained in one compiled step with `jax.vmap`.

The members' `TrainState`s are stacked along a leading axis of size `size`, and
the core's `train_step` runs under `jax.vmap` over that axis: one XLA program
updates every member, each with its own parameters, optimizer state, BatchNorm
statistics, dropout key and data order. An `Ensemble` is a `Model` whose
execution has the members option, so it runs the same `FitLoop` (generators,
streaming data, prefetch, `steps_per_execution`, every callback). Member `i`
trains exactly as the single model

    nj.utils.set_random_seed(seeds[i])
    model = build_fn()                     # or build_fn(seeds[i])
    model.compile(..., seed=seeds[i])
    model.fit(x, y, ...)

would on in-memory arrays (within float tolerance: batched matrix products may
sum in another order). Streaming sources feed the same batches to every member.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax.numpy as jnp
import numpy as np
from flax import nnx

from nnjax.data.arrays import ArraySource, epoch_permutation
from nnjax.parallel.history import EnsembleHistory
from nnjax.parallel.hyperparams import set_hyperparams
from nnjax.shell import Model
from nnjax.train import nonfinite as nonfinite_lib
from nnjax.train import optimizers as optimizers_lib
from nnjax.train.execution import Execution, FlatState
from nnjax.train.state import TrainState, stack_states, unstack_state
from nnjax.utils.random import set_random_seed


def _takes_seed(build_fn: Callable) -> bool:
    try:
        params = inspect.signature(build_fn).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL) and p.default is p.empty for p in params)


class _Probe(nnx.Module):
    """A parameterless module: the ensemble's own `Model` part holds no weights (its members do)."""

    def __call__(self, x):
        return x


class Ensemble(Model):
    """`size` copies of a model, trained together in one compiled, vmapped step.

    Members differ by seed (initialisation, dropout masks, data order) and,
    optionally, by optimizer hyperparameters (a sweep). BatchNorm statistics and
    dropout keys are per member. The API is Keras's: `compile`, `fit`,
    `evaluate` (one value per member), `predict` (outputs stacked to
    `(size, N, ...)`). Callbacks see the mean over members; `history` keeps every member's curves.
    `get_weights()` lists the stacked `(size, ...)` arrays: trainable ones, then the others.

    Args:
      build_fn: returns a new `nj.Model`/`nj.Sequential` or a Flax NNX module.
        It is called once per member after `nj.utils.set_random_seed(seed)`; if it
        takes a positional argument it receives the member's seed.
      size: the number of members.
      seeds: one int per member; an int gives every member that seed (for a
        hyperparameter sweep from one initialisation); `range(size)` when None.
      name: the ensemble's name.

    Example:
      >>> ens = nj.parallel.Ensemble(lambda: nj.Sequential([nj.layers.Dense(32, activation="relu"),
      ...                                                    nj.layers.Dense(10, activation="softmax")]), size=8)
      >>> ens.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
      >>> history = ens.fit(x, y, epochs=5, verbose=0)
      >>> loss, accuracy = ens.evaluate(x_test, y_test, verbose=0)   # one value per member each
      >>> loss.shape, ens.predict(x_test, verbose=0).shape
      ((8,), (8, 16, 10))

      A learning-rate sweep from one initialisation:

      >>> build = lambda: nj.Sequential([nj.layers.Dense(1)])
      >>> sweep = nj.parallel.Ensemble(build, size=4, seeds=0)
      >>> sweep.compile(optimizer="adam", loss="mse", hyperparams={"learning_rate": [1e-4, 3e-4, 1e-3, 3e-3]})
    """

    _stacked_weights = True

    def __init__(self, build_fn: Callable, size: int = 8, *, seeds: int | Sequence[int] | None = None, name: str | None = None):
        if not callable(build_fn):
            raise TypeError(f"Ensemble(build_fn): expected a function returning a model; got {type(build_fn).__name__}")
        if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
            raise ValueError(f"Ensemble: `size` must be a positive int; got {size!r}")
        size = int(size)
        if seeds is None:
            seeds = list(range(size))
        elif isinstance(seeds, (int, np.integer)) and not isinstance(seeds, bool):
            seeds = [int(seeds)] * size
        else:
            seeds = [int(s) for s in seeds]
            if len(seeds) != size:
                raise ValueError(f"Ensemble: expected {size} seeds (one per member); received {len(seeds)}")
        super().__init__(_Probe(), name=name or "ensemble")
        self.build_fn = build_fn
        self.size = size
        self.seeds = seeds
        self.members: list[Model] = []
        self.history = EnsembleHistory()
        self._compile_args: dict | None = None
        self._hyperparams: dict = {}

    # ------------------------------------------------------------------ compile / build
    def compile(self, optimizer="rmsprop", loss=None, metrics=None, *, hyperparams: Mapping[str, Any] | None = None,
                **compile_kwargs) -> None:
        """Configures every member, as `Model.compile`.

        Args:
          optimizer, loss, metrics: as in `Model.compile`; one optimizer for all.
          hyperparams: per-member values of hyperparameters injected into the
            optimizer state, e.g. `{"learning_rate": [1e-3, 3e-3, 1e-2, 3e-2]}`.
          **compile_kwargs: any other `Model.compile` argument (`loss_fn`,
            `steps_per_execution`, `dtype_policy`, ...), except `seed` (members use
            their own) and `distribution`.

        Raises:
          ValueError: for arguments `Model.compile` rejects, `seed`/`distribution`,
            or hyperparameter lists of the wrong length (checked before compiling).
        """
        for banned in ("seed", "distribution"):
            if compile_kwargs.get(banned) is not None:
                raise ValueError(f"Ensemble.compile: `{banned}` is not accepted: members use their own seeds ({self.seeds})")
            compile_kwargs.pop(banned, None)
        hyperparams = dict(hyperparams or {})
        for name, value in hyperparams.items():
            count = np.asarray(value).size
            if count not in (1, self.size):
                raise ValueError(
                    f"Ensemble.compile: hyperparams[{name!r}] needs {self.size} values (one per member); received {count}"
                )
        self._state = None
        super().compile(optimizer, loss, metrics, seed=self.seeds[0], **compile_kwargs)  # validates everything up front
        self._compile_args = dict(optimizer=optimizer, loss=loss, metrics=metrics, **compile_kwargs)
        self._hyperparams = hyperparams
        self.members = []

    def _make_execution(self) -> Execution:
        config = self._compiled
        skip = config is not None and config.nonfinite is not None and config.nonfinite.mode == "skip"
        return Execution(members=self.size, skip_nonfinite=skip)

    @property
    def module(self):
        """The ensemble's own (weightless) module; each member's weights are in `member(i)` and the stacked `state`."""
        return self._module

    @property
    def built(self) -> bool:
        return bool(self.members)

    def build(self, input_shape: Sequence[int | None], dtype=jnp.float32, key=None) -> None:
        """Creates the members for inputs of `input_shape` (batch axis first, may be None)."""
        self._require_compiled("build")
        shape = tuple(1 if d is None else d for d in input_shape)
        self._make_members(ArraySource(np.zeros(shape, dtype)), "build")

    def _require_built(self, what: str) -> None:
        if not self.members:
            raise RuntimeError(f'{what}: ensemble "{self.name}" has no members yet; call fit (or build) first')

    def _make_members(self, source, what: str) -> None:
        """Builds, compiles and checks every member against `source`, then stacks their states."""
        members = []
        for index, seed in enumerate(self.seeds):
            set_random_seed(seed)
            built = self.build_fn(seed) if _takes_seed(self.build_fn) else self.build_fn()
            model = built if isinstance(built, Model) else Model(built)
            overridden = [n for n, o in zip(("train_step", "test_step", "predict_step"), model._keras_form_overrides()) if o]
            if overridden:
                raise NotImplementedError(
                    f"Ensemble: member {index} ({type(model).__name__}) overrides Keras's JAX-form {overridden}, which an "
                    "ensemble's stacked (vmapped) steps cannot run; expected members without them. Supported instead: "
                    "fit each model on its own, or override compute_loss(self, x, y, y_pred, sample_weight, training)")
            model.compile(**self._compile_args, seed=seed)
            if index == 0:
                model._check_source(source, what)  # builds; checks inputs and labels once
            else:
                model._ensure_built(source.peek()[0])
            members.append(model)
        self.members = members
        state = stack_states([m.state for m in members])
        if self._hyperparams:
            state = state.replace(opt_state=set_hyperparams(state.opt_state, self._hyperparams, self.size))
        self._state = state
        self._input_spec = members[0]._input_spec

    def _make_state(self) -> TrainState:
        raise RuntimeError(f'state: ensemble "{self.name}" has no members yet; call fit (or build) first')

    def _check_source(self, source, what: str) -> None:
        if not self.members and what == "predict":
            self._require_built(what)
        if not self.members:
            self._make_members(source, what)
        else:
            self.members[0]._check_source(source, what)
        self._output_shape = self.members[0]._output_shape

    def _inference_state(self) -> TrainState:
        return self.state

    def member(self, index: int) -> Model:
        """Member `index` as an ordinary `nj.Model` holding its current weights."""
        self._require_built("member")
        if not -self.size <= index < self.size:
            raise IndexError(f"member: index must be in [0, {self.size}); got {index}")
        model = self.members[index]
        mine = unstack_state(self.state, index)
        model.state = model.state.replace(
            step=mine.step, params=mine.params, model_state=mine.model_state, opt_state=mine.opt_state, rng=mine.rng
        )
        return model

    # ------------------------------------------------------------------ what the fit loop asks
    def _orders(self, source, epoch: int):
        """One order per member: member m visits the data as a model compiled with `seed=seeds[m]` would."""
        if source.shuffle:
            orders = np.stack([epoch_permutation(seed, epoch, source.num_examples) for seed in self.seeds])
        else:
            orders = np.tile(np.arange(source.num_examples), (self.size, 1))
        return jnp.asarray(orders, jnp.int32)

    def _check_halt(self, stored) -> Exception | None:
        """Under `nonfinite="halt"`: the first halted member's error, naming the member (one host sync)."""
        if self._compiled.nonfinite is None:
            return None
        state = stored.tree() if isinstance(stored, FlatState) else stored
        tracker = state.opt_state
        halted = np.asarray(getattr(tracker, "halted_step", -np.ones(self.size))).reshape(-1)
        if not (halted >= 0).any():
            return None
        member = int(np.argmax(halted >= 0))
        error = nonfinite_lib.halt_error(unstack_state(state, member))
        self._state = state
        if error is None:
            return None
        return type(error)(f"ensemble member {member} (seed {self.seeds[member]}): {error}", step=error.step,
                           loss=error.loss, path=error.path)

    def _optimizer_logs(self, callbacks) -> dict:
        logs = {}
        rate = optimizers_lib.get_learning_rate(self.state.opt_state)
        if rate is not None and (self._compiled.log_learning_rate or callbacks.logs_learning_rate):
            logs["learning_rate"] = np.asarray(rate, np.float64).reshape(-1)
        tracker = self.state.opt_state
        if self._compiled.nonfinite is not None and self._compiled.nonfinite.mode == "skip" and hasattr(tracker, "skipped"):
            logs["skipped_steps"] = np.asarray(tracker.skipped, np.float64).reshape(-1)
        return logs

    @staticmethod
    def _reduce_value(value):
        return np.asarray(value, np.float64).reshape(-1)

    def _reduce(self, logs: dict) -> dict:
        return {k: float(np.mean(v)) for k, v in logs.items()}

    def _epoch_logs(self, epoch: int, raw: dict) -> dict:
        self.history.record(epoch, raw)
        return self._reduce(raw)

    def _new_history(self):
        return EnsembleHistory()

    @property
    def layers(self) -> list:
        return self.members[0].layers if self.members else []


__all__ = ["Ensemble"]
