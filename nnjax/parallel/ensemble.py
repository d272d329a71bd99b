"""`Ensemble`: many models (seeds, hyperparameters) trained in one compiled step with `jax.vmap`.

The members' `TrainState`s are stacked along a leading axis of size `size`, and
the core's `train_step` runs under `jax.vmap` over that axis: one XLA program
updates every member, each with its own parameters, optimizer state, BatchNorm
statistics, dropout key and data order. Nothing else changes, so member `i`
trains exactly as the single model

    nj.utils.set_random_seed(seeds[i])
    model = build_fn()                     # or build_fn(seeds[i])
    model.compile(..., seed=seeds[i])
    model.fit(x, y, ...)

would (within float tolerance: batched matrix products may sum in another order).
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from nnjax.callbacks.base import CallbackList
from nnjax.data.arrays import ArraySource, epoch_permutation, split_validation
from nnjax.parallel.history import EnsembleHistory
from nnjax.parallel.hyperparams import set_hyperparams
from nnjax.shell import Model, checks
from nnjax.train import steps
from nnjax.train.state import TrainState, stack_states, unstack_state
from nnjax.utils.random import set_random_seed


def _takes_seed(build_fn: Callable) -> bool:
    try:
        params = inspect.signature(build_fn).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL) and p.default is p.empty for p in params)


def _take(data, idx):
    return tuple(None if part is None else jax.tree.map(lambda a: a[idx], part) for part in data)


def _zeros_totals(names) -> dict:
    return {name: jnp.zeros((), jnp.float32) for name in names} | {"_count": jnp.zeros((), jnp.float32)}


def _accumulate(totals: dict, metrics: dict, weight) -> dict:
    weight = jnp.asarray(weight, jnp.float32)
    new = {name: totals[name] + metrics[name].astype(jnp.float32) * weight for name in totals if name != "_count"}
    new["_count"] = totals["_count"] + weight
    return new


def _member_means(totals: dict) -> dict[str, np.ndarray]:
    host = jax.device_get(totals)
    count = np.maximum(np.asarray(host["_count"], np.float64), 1e-12)
    return {name: np.asarray(value, np.float64) / count for name, value in host.items() if name != "_count"}


def _batch_size(batch) -> int:
    return int(jax.tree.leaves(batch[0])[0].shape[0])


class Ensemble:
    """`size` copies of a model, trained together in one compiled, vmapped step.

    Members differ by seed (initialisation, dropout masks, data order) and,
    optionally, by optimizer hyperparameters (a sweep). BatchNorm statistics and
    dropout keys are per member. The API is Keras's: `compile`, `fit`,
    `evaluate` (one value per member), `predict` (outputs stacked to
    `(size, N, ...)`).

    Args:
      build_fn: returns a new `nj.Model`/`nj.Sequential` or a Flax NNX module.
        It is called once per member after `nj.utils.set_random_seed(seed)`; if it
        takes a positional argument it receives the member's seed.
      size: the number of members.
      seeds: one int per member; an int gives every member that seed (for a
        hyperparameter sweep from one initialisation); `range(size)` when None.
      name: the ensemble's name.

    Building the members reseeds nnjax's global generator with each member's
    seed, as the single-model recipe in the module docstring does.

    Example:
      >>> ens = nj.parallel.Ensemble(lambda: nj.Sequential([nj.layers.Dense(32, activation="relu"),
      ...                                                    nj.layers.Dense(10, activation="softmax")]), size=8)
      >>> ens.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
      >>> ens.fit(x, y, epochs=5)
      >>> ens.evaluate(x_test, y_test)       # [loss of each member, accuracy of each member]
      >>> ens.predict(x_test).shape          # (8, N, 10)

      A learning-rate sweep from one initialisation:

      >>> sweep = nj.parallel.Ensemble(build, size=4, seeds=0)
      >>> sweep.compile(optimizer="adam", loss="mse", hyperparams={"learning_rate": [1e-4, 3e-4, 1e-3, 3e-3]})
    """

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
        self.build_fn = build_fn
        self.size = size
        self.seeds = seeds
        self.name = name or "ensemble"
        self.history = EnsembleHistory()
        self.members: list[Model] = []
        self.stop_training = False
        self._compile_args: dict | None = None
        self._hyperparams: dict = {}
        self._state: TrainState | None = None
        self._fns: dict = {}

    # ------------------------------------------------------------------ compile / build
    def compile(
        self, optimizer="rmsprop", loss=None, metrics=None, *, hyperparams: Mapping[str, Any] | None = None, **compile_kwargs
    ) -> None:
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
        probe = Model(_Probe())
        probe.compile(optimizer, loss, metrics, **compile_kwargs)  # validates names and options once, up front
        self._compile_args = dict(optimizer=optimizer, loss=loss, metrics=metrics, **compile_kwargs)
        self._hyperparams = hyperparams
        self.members = []
        self._state = None
        self._fns = {}

    @property
    def compiled(self) -> bool:
        return self._compile_args is not None

    def _require_compiled(self, what: str) -> None:
        if self._compile_args is None:
            raise RuntimeError(f'{what}: you must call compile() on ensemble "{self.name}" before {what}()')

    def _make_members(self, source, what: str) -> None:
        """Builds, compiles and checks every member against `source`, then stacks their states."""
        members = []
        for index, seed in enumerate(self.seeds):
            set_random_seed(seed)
            built = self.build_fn(seed) if _takes_seed(self.build_fn) else self.build_fn()
            model = built if isinstance(built, Model) else Model(built)
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

    @property
    def state(self) -> TrainState:
        """The stacked `TrainState` (every array has a leading member axis of size `size`)."""
        if self._state is None:
            raise RuntimeError(f'state: ensemble "{self.name}" has no members yet; call fit (or build) first')
        return self._state

    @state.setter
    def state(self, new_state: TrainState) -> None:
        self._state = new_state

    def build(self, input_shape: Sequence[int | None], dtype=jnp.float32) -> None:
        """Creates the members for inputs of `input_shape` (batch axis first, may be None)."""
        self._require_compiled("build")
        shape = tuple(1 if d is None else d for d in input_shape)
        self._make_members(ArraySource(np.zeros(shape, dtype)), "build")

    def member(self, index: int) -> Model:
        """Member `index` as an ordinary `nj.Model` holding its current weights."""
        if not self.members:
            raise RuntimeError(f'member: ensemble "{self.name}" has no members yet; call fit (or build) first')
        if not -self.size <= index < self.size:
            raise IndexError(f"member: index must be in [0, {self.size}); got {index}")
        model = self.members[index]
        mine = unstack_state(self.state, index)
        model.state = model.state.replace(
            step=mine.step, params=mine.params, model_state=mine.model_state, opt_state=mine.opt_state, rng=mine.rng
        )
        return model

    # ------------------------------------------------------------------ compiled functions
    def _fn(self, name: str) -> Callable:
        if name in self._fns:
            return self._fns[name]

        def one_step(state, totals, batch):
            state, metrics = steps.train_step(state, batch)
            return state, _accumulate(totals, metrics, _batch_size(batch))

        def train_indexed(states, totals, data, orders, offset, num_steps, batch_size):
            """`num_steps` steps; member m's batch j is `data[orders[m, offset + j*B : ... + B]]`."""

            def body(carry, i):
                states, totals = carry
                idx = jax.lax.dynamic_slice_in_dim(orders, offset + i * batch_size, batch_size, axis=1)
                member_step = lambda s, t, ix: one_step(s, t, _take(data, ix))  # noqa: E731
                return jax.vmap(member_step)(states, totals, idx), None

            return jax.lax.scan(body, (states, totals), jnp.arange(num_steps))[0]

        def train_shared(states, totals, batches):
            """Host batches `(k, B, ...)`, the same for every member."""

            def body(carry, batch):
                return jax.vmap(one_step, in_axes=(0, 0, None))(*carry, batch), None

            return jax.lax.scan(body, (states, totals), batches)[0]

        def eval_shared(states, totals, batches):
            def one(state, totals, batch):
                return _accumulate(totals, steps.eval_step(state, batch), _batch_size(batch))

            def body(totals, batch):
                return jax.vmap(one, in_axes=(0, 0, None))(states, totals, batch), None

            return jax.lax.scan(body, totals, batches)[0]

        def predict_shared(states, xs):
            out = jax.lax.map(lambda x: jax.vmap(steps.predict_step, in_axes=(0, None))(states, x), xs)
            return jax.tree.map(lambda a: jnp.moveaxis(a, 1, 0), out)  # (size, k, B, ...)

        self._fns.update(
            {
                "train_indexed": jax.jit(train_indexed, donate_argnums=(0, 1), static_argnums=(5, 6)),
                "train_shared": jax.jit(train_shared, donate_argnums=(0, 1)),
                "eval_shared": jax.jit(eval_shared),
                "predict_shared": jax.jit(predict_shared),
            }
        )
        return self._fns[name]

    # ------------------------------------------------------------------ data
    def _source(self, x, y, sample_weight, batch_size, shuffle, what: str):
        if x is None:
            raise ValueError(f"{what}: `x` is required; got None")
        if hasattr(x, "batches") and hasattr(x, "steps_per_epoch"):
            if y is not None:
                raise ValueError(
                    f"{what}: `y` must be None when `x` is a dataset (it yields (x, y) batches); got y={type(y).__name__}"
                )
            return x
        x = checks.as_array_tree(x, "x")
        y = checks.as_array_tree(y, "y")
        sample_weight = checks.as_array_tree(sample_weight, "sample_weight")
        checks.check_lengths(x, y, sample_weight)
        return ArraySource(x, y, sample_weight, batch_size=batch_size or 32, shuffle=shuffle, seed=self.seeds[0])

    def _prepare(self, source, what: str) -> None:
        if not self.members:
            self._make_members(source, what)
        else:
            self.members[0]._check_source(source, what)

    def _names(self) -> list[str]:
        return ["loss"] + [m.name for m in self.members[0]._compiled.metrics]

    def _zeros(self):
        return jax.tree.map(lambda a: jnp.zeros((self.size,) + a.shape, a.dtype), _zeros_totals(self._names()))

    @staticmethod
    def _stack_host(batches: list[tuple]):
        return tuple(
            None if batches[0][i] is None else jax.tree.map(lambda *a: np.stack(a), *[b[i] for b in batches]) for i in range(3)
        )

    # ------------------------------------------------------------------ fit
    def fit(
        self,
        x=None,
        y=None,
        batch_size: int | None = None,
        epochs: int = 1,
        verbose="auto",
        callbacks=None,
        validation_split: float = 0.0,
        validation_data=None,
        shuffle: bool = True,
        sample_weight=None,
        initial_epoch: int = 0,
        steps_per_epoch: int | None = None,
        validation_batch_size: int | None = None,
        validation_freq: int = 1,
    ) -> EnsembleHistory:
        """Trains every member, as `Model.fit`.

        Array inputs live on the device; member `m` visits them in the order of
        its own seed (`nj.data.epoch_permutation(seeds[m], epoch, N)`), exactly as
        a single model compiled with `seed=seeds[m]`. A dataset object
        (`batches`/`steps_per_epoch`) feeds the same batches to every member.

        Callbacks and the progress bar see the mean over members; the per-member
        values are in the returned `EnsembleHistory`.

        Returns:
          `self.history`, an `EnsembleHistory`.
        """
        self._require_compiled("fit")
        if validation_split and validation_data is None:
            if hasattr(x, "batches"):
                raise ValueError("fit: `validation_split` needs array inputs; with a dataset pass validation_data")
            x, y, sample_weight = (checks.as_array_tree(v, n) for v, n in ((x, "x"), (y, "y"), (sample_weight, "sample_weight")))
            checks.check_lengths(x, y, sample_weight)
            (x, y, sample_weight), validation_data = split_validation(x, y, sample_weight, validation_split)
        source = self._source(x, y, sample_weight, batch_size, shuffle, "fit")
        self._prepare(source, "fit")
        val_source = None
        if validation_data is not None:
            if hasattr(validation_data, "batches"):
                val_source = validation_data
            else:
                if not isinstance(validation_data, (tuple, list)) or len(validation_data) not in (2, 3):
                    raise ValueError("fit: `validation_data` must be (x_val, y_val) or (x_val, y_val, sample_weight)")
                vx, vy, *vw = validation_data
                val_source = self._source(
                    vx, vy, vw[0] if vw else None, validation_batch_size or batch_size, False, "fit(validation_data)"
                )
            self.members[0]._check_source(val_source, "fit(validation_data)")
        if verbose == "auto":
            verbose = 1 if sys.stdout.isatty() else 2
        steps_total = (
            source.steps_per_epoch if steps_per_epoch is None else min(steps_per_epoch, source.steps_per_epoch or steps_per_epoch)
        )
        callback_list = CallbackList(callbacks, model=self, verbose=verbose, epochs=epochs, steps=steps_total)
        self.stop_training = False
        device_data = jax.device_put(source.arrays) if isinstance(source, ArraySource) else None
        callback_list.call("on_train_begin", None)
        mean_logs: dict = {}
        for epoch in range(initial_epoch, epochs):
            callback_list.call("on_epoch_begin", epoch, None)
            member_logs = self._train_epoch(source, device_data, epoch, steps_total, callback_list)
            if val_source is not None and (epoch + 1) % validation_freq == 0:
                member_logs.update({f"val_{k}": v for k, v in self._evaluate_source(val_source).items()})
            self.history.record(epoch, member_logs)
            mean_logs = {k: float(np.mean(v)) for k, v in member_logs.items()}
            callback_list.call("on_epoch_end", epoch, mean_logs)
            if self.stop_training:
                break
        callback_list.call("on_train_end", mean_logs)
        return self.history

    def _train_epoch(self, source, device_data, epoch, steps_total, callback_list) -> dict[str, np.ndarray]:
        k = self.members[0]._compiled.steps_per_execution
        totals = self._zeros()
        step = 0
        if device_data is not None:
            bs = source.batch_size
            if source.shuffle:
                orders = np.stack([epoch_permutation(seed, epoch, source.num_examples) for seed in self.seeds])
            else:
                orders = np.tile(np.arange(source.num_examples), (self.size, 1))
            orders = jnp.asarray(orders, jnp.int32)
            full_steps = min(steps_total, source.num_examples // bs)
            while step < steps_total and not self.stop_training:
                callback_list.call("on_train_batch_begin", step, None)
                if step < full_steps:
                    n = k if step + k <= full_steps else 1
                    self._state, totals = self._fn("train_indexed")(self._state, totals, device_data, orders, step * bs, n, bs)
                else:  # the last, shorter batch: its own (cached) shape
                    n = 1
                    rest = source.num_examples - step * bs
                    self._state, totals = self._fn("train_indexed")(self._state, totals, device_data, orders, step * bs, 1, rest)
                step += n
                self._batch_end(step, totals, callback_list)
        else:
            pending: list = []

            def flush(group):
                nonlocal totals, step
                callback_list.call("on_train_batch_begin", step, None)
                self._state, totals = self._fn("train_shared")(self._state, totals, jax.device_put(self._stack_host(group)))
                step += len(group)
                self._batch_end(step, totals, callback_list)

            for batch in source.batches(epoch, 0):
                if step + len(pending) >= steps_total or self.stop_training:
                    break
                if pending and _batch_size(batch) != _batch_size(pending[0]):
                    flush(pending)
                    pending = []
                pending.append(batch)
                if len(pending) == k:
                    flush(pending)
                    pending = []
            if pending and not self.stop_training:
                flush(pending)
        if step == 0:
            raise ValueError("fit: the dataset yielded no batches: expected at least one batch per epoch; received 0")
        return _member_means(totals)

    def _batch_end(self, step, totals, callback_list) -> None:
        if callback_list.batch_end_hooks:
            logs = {k: float(np.mean(v)) for k, v in _member_means(totals).items()} if callback_list.needs_batch_logs() else None
            callback_list.on_train_batch_end(step - 1, logs)

    # ------------------------------------------------------------------ evaluate / predict
    def _evaluate_source(self, source) -> dict[str, np.ndarray]:
        totals = self._zeros()
        if isinstance(source, ArraySource):
            batches = [source.take(idx) for idx in source.batch_indices(0)]
        else:
            batches = list(source.batches(0))
        if not batches:
            raise ValueError("evaluate: the dataset yielded no batches: expected at least one; received 0")
        full = [b for b in batches if _batch_size(b) == _batch_size(batches[0])]
        totals = self._fn("eval_shared")(self._state, totals, jax.device_put(self._stack_host(full)))
        for batch in batches[len(full) :]:
            totals = self._fn("eval_shared")(self._state, totals, jax.device_put(self._stack_host([batch])))
        return _member_means(totals)

    def evaluate(
        self, x=None, y=None, batch_size: int | None = None, verbose="auto", sample_weight=None, return_dict: bool = False
    ):
        """Loss and metrics of every member, in inference mode.

        Returns:
          `[loss, *metrics]` where each entry is an array of shape `(size,)` (just
          the loss array when there are no metrics), or with `return_dict=True`
          a dict of such arrays.
        """
        self._require_compiled("evaluate")
        source = self._source(x, y, sample_weight, batch_size, False, "evaluate")
        self._prepare(source, "evaluate")
        logs = self._evaluate_source(source)
        if verbose == "auto":
            verbose = 1
        if verbose:
            print(" - ".join(f"{k}: {v.mean():.4f} ± {v.std():.4f}" for k, v in logs.items()))
        if return_dict:
            return logs
        values = [logs[name] for name in self._names()]
        return values[0] if len(values) == 1 else values

    def predict(self, x, batch_size: int | None = None, verbose="auto"):
        """Every member's outputs for `x`, in inference mode.

        Args:
          x: inputs `(N, ...)` (array or pytree of arrays).
          batch_size: examples per compiled step (32 by default).

        Returns:
          NumPy outputs stacked over members: shape `(size, N, ...)` (a pytree of
          such arrays for models with several outputs).

        Raises:
          RuntimeError: if the ensemble has not been built (fit, evaluate or build first).
        """
        del verbose
        if not self.members:
            raise RuntimeError(f'predict: ensemble "{self.name}" has no members yet; call fit (or build) first')
        x = checks.as_array_tree(x, "x")
        n = checks.num_examples(x, "x")
        if n == 0:
            raise ValueError("predict: the dataset is empty: expected at least one example in `x`; received 0")
        source = ArraySource(x, batch_size=batch_size or 32, shuffle=False)
        self.members[0]._check_source(source, "predict")
        bs = source.batch_size
        full = n // bs
        outputs = []
        if full:
            stacked = jax.tree.map(lambda a: np.asarray(a[: full * bs]).reshape((full, bs) + a.shape[1:]), x)
            out = self._fn("predict_shared")(self._state, jax.device_put(stacked))
            outputs.append(jax.tree.map(lambda a: np.asarray(a).reshape((self.size, -1) + a.shape[3:]), out))
        if n % bs:
            tail = jax.tree.map(lambda a: np.asarray(a[full * bs :])[None], x)
            out = self._fn("predict_shared")(self._state, jax.device_put(tail))
            outputs.append(jax.tree.map(lambda a: np.asarray(a)[:, 0], out))
        return jax.tree.map(lambda *o: np.concatenate(o, axis=1), *outputs)

    # ------------------------------------------------------------------ weights
    def get_weights(self) -> list[np.ndarray]:
        """Host copies of every variable, stacked over members: each has shape `(size, ...)`."""
        state = self.state
        return [np.array(a) for a in jax.tree.leaves(state.params) + jax.tree.leaves(state.model_state)]

    def save_weights(self, filepath: str, overwrite: bool = True) -> str:
        """Writes every member's variables (stacked) to the folder `filepath` with Orbax."""
        from nnjax.checkpoint.pytree import save_pytree

        state = self.state
        tree = {"params": state.params.to_pure_dict(), "model_state": state.model_state.to_pure_dict()}
        return save_pytree(filepath, tree, overwrite=overwrite)

    def load_weights(self, filepath: str) -> None:
        """Reads variables written by `save_weights` into the members.

        Raises:
          FileNotFoundError: if nothing was saved at `filepath`.
          ValueError: if the saved weights do not match this ensemble.
        """
        from nnjax.checkpoint.pytree import restore_pytree

        state = self.state
        params, model_state = state.params, state.model_state
        target = {"params": params.to_pure_dict(), "model_state": model_state.to_pure_dict()}
        restored = restore_pytree(filepath, target)
        nnx.replace_by_pure_dict(params, restored["params"])
        nnx.replace_by_pure_dict(model_state, restored["model_state"])
        self._state = state.replace(params=params, model_state=model_state)

    def count_params(self) -> int:
        """Scalars over all members."""
        return int(
            sum(np.prod(np.shape(a)) for a in jax.tree.leaves(self.state.params) + jax.tree.leaves(self.state.model_state))
        )


class _Probe(nnx.Module):
    """A parameterless module used only to validate compile arguments early."""

    def __call__(self, x):
        return x


__all__ = ["Ensemble"]
