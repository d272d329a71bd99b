"""`Model` and `Sequential`: Keras's compile/fit/evaluate/predict over the functional core.

The shell owns no training logic of its own: `fit` compiles `nnjax.train.train_step`
(scanned over `steps_per_execution` steps), feeds it batches and calls callbacks
between executions.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from nnjax.callbacks.base import CallbackList, History
from nnjax.data.arrays import ArraySource, split_validation
from nnjax.layers.base import Layer, shape_str, unique_name
from nnjax.shell import checks
from nnjax.shell.sequential import LinenLayer, SequentialModule, is_linen
from nnjax.train import ema as ema_lib
from nnjax.train import losses as losses_lib
from nnjax.train import metrics as metrics_lib
from nnjax.train import nonfinite as nonfinite_lib
from nnjax.train import optimizers as optimizers_lib
from nnjax.train import precision, steps
from nnjax.train.state import StepConfig, TrainState
from nnjax.utils.random import as_key, next_seed

# In-memory datasets up to this size live on the device for the whole fit.
DEVICE_RESIDENT_BYTES = 2 << 30


@dataclasses.dataclass
class CompileConfig:
    """What `compile` was given, resolved."""

    tx: optax.GradientTransformation
    loss: losses_lib.Loss | None
    metrics: tuple
    loss_fn: Callable | None
    steps_per_execution: int
    compute_dtype: Any
    distribution: Any
    seed: int
    nonfinite: Any = None  # an nnjax.train.nonfinite.NonFinitePolicy or None
    log_learning_rate: bool = False  # the optimizer's rate is a schedule: log it each epoch


def _tree_bytes(tree) -> int:
    return sum(int(np.asarray(a).nbytes) if not hasattr(a, "nbytes") else int(a.nbytes) for a in jax.tree.leaves(tree))


def _zeros_totals(names) -> dict:
    return {name: jnp.zeros((), jnp.float32) for name in names} | {"_count": jnp.zeros((), jnp.float32)}


def _accumulate(totals: dict, metrics: dict, weight) -> dict:
    weight = jnp.asarray(weight, jnp.float32)
    new = {name: totals[name] + metrics[name].astype(jnp.float32) * weight for name in metrics}
    new["_count"] = totals["_count"] + weight
    return new


def _means(totals: dict) -> dict:
    host = jax.device_get(totals)
    count = float(host["_count"])
    return {name: float(value) / max(count, 1e-12) for name, value in host.items() if name != "_count"}


def _take(data, idx):
    return tuple(None if part is None else jax.tree.map(lambda a: a[idx], part) for part in data)


def _batch_size(batch) -> int:
    return int(jax.tree.leaves(batch[0])[0].shape[0])


class _FlatState(NamedTuple):
    """A `TrainState` kept as its leaves between fit's executions.

    Flattening and rebuilding a TrainState (nnx.State of Variables, optax states)
    costs ~0.1 ms per call in Python: more than a small model's whole step on a
    CPU. fit hands the compiled step the leaves and rebuilds the tree only when
    someone reads `model.state` (see `Model._train_state`).
    """

    treedef: Any
    leaves: list


class Model:
    """A trainable model: a Flax NNX module plus Keras's training methods.

    Args:
      module: an nnjax layer, a Flax NNX module or a Flax Linen module.
      name: the model's name.
      input_shape: shape of one example; builds the model at once.
      input_dtype: dtype of the inputs when building from `input_shape`
        (e.g. "int32" for token ids); float32 by default.

    Example:
      >>> model = nj.Model(MyNNXModule(rngs=nnx.Rngs(0)))
      >>> model.compile(optimizer="adam", loss="mse")
      >>> model.fit(x, y, epochs=3)
    """

    # --- functional API dispatch (nnjax.shell.functional) -------------------------------------------
    def __new__(cls, *args, **kwargs):
        """`Model(inputs, outputs, name=...)` on symbolic tensors makes a `FunctionalModel`."""
        if cls is Model:
            from nnjax.shell.functional import FunctionalModel, is_functional_call

            if is_functional_call(*args, **kwargs):
                return super().__new__(FunctionalModel)
        return super().__new__(cls)
    # --- end of functional API dispatch -------------------------------------------------------------

    def __init__(self, module: Any = None, *, name: str | None = None, input_shape: Sequence[int] | None = None,
                 input_dtype=None):
        if module is None:
            raise TypeError("Model(module): expected an nnjax layer, a Flax NNX module or a Flax Linen module; got None")
        if is_linen(module):
            module = LinenLayer(module)
        if not isinstance(module, nnx.Module):
            raise TypeError(
                f"Model(module): expected an nnjax layer, a Flax NNX module or a Flax Linen module; got {type(module).__name__}"
            )
        self.module = module
        self.name = name or getattr(module, "name", None) or unique_name("model")
        self.history = History()
        self.stop_training = False
        self._compiled: CompileConfig | None = None
        self._train_state: TrainState | None = None
        self._fns: dict = {}
        self._input_spec = None  # (shape with None batch, dtype)
        self._output_shape = None
        self._data_seed: int | None = None
        # Where fit is: {"epoch", "step"}; callbacks that resume set `resume_position` in on_train_begin.
        self.fit_position = {"epoch": 0, "step": 0}
        self.resume_position = None
        if isinstance(module, Layer) and module.built:
            self._input_spec = (module.built_input_shape, jnp.dtype(jnp.float32))
        elif not isinstance(module, Layer) and jax.tree.leaves(nnx.state(module, nnx.Param)):
            self._input_spec = (None, None)  # a user module is built by its constructor
        hint = input_shape or (module.input_shape_hint if isinstance(module, Layer) else None)
        if hint is not None and not self.built:
            self.build((None,) + tuple(hint), dtype=input_dtype or jnp.float32)

    # ------------------------------------------------------------------ building
    @property
    def built(self) -> bool:
        if isinstance(self.module, Layer):
            return self.module.built
        return self._input_spec is not None

    def build(self, input_shape: Sequence[int | None], dtype=jnp.float32, key=None) -> None:
        """Creates the parameters for inputs of `input_shape` (batch axis first, may be None)."""
        input_shape = tuple(input_shape)
        if isinstance(self.module, Layer) and not self.module.built:
            concrete = (1,) + tuple(input_shape[1:])
            if any(d is None for d in concrete):
                raise ValueError(f'Model "{self.name}": build needs every axis but the batch axis; got {shape_str(input_shape)}')
            if isinstance(self.module, SequentialModule):
                self.module.input_dtype = jnp.dtype(dtype).name
            self.module.ensure_built(concrete, None if key is None else as_key(key), dtype)
        self._input_spec = ((None,) + tuple(input_shape[1:]), jnp.dtype(dtype))
        self._output_shape = None
        self._train_state = None if self._compiled is None else self._train_state

    def _ensure_built(self, sample_x) -> None:
        if self.built and self._input_spec[0] is not None:
            return
        leaves = jax.tree.leaves(sample_x)
        if isinstance(self.module, Layer) and not self.module.built:
            if len(leaves) != 1:
                raise ValueError(f'Model "{self.name}": cannot infer the input shape of a multi-input model; call build()')
            self.build((None,) + tuple(leaves[0].shape[1:]), leaves[0].dtype)
        else:
            self._input_spec = ((None,) + tuple(leaves[0].shape[1:]), jnp.dtype(leaves[0].dtype))

    def _require_built(self, what: str) -> None:
        if not self.built:
            raise ValueError(
                f'{what}: model "{self.name}" has not been built yet: its input shape is unknown. Call '
                f"model.build(input_shape), pass input_shape= to the first layer, or fit the model first"
            )

    # ------------------------------------------------------------------ compiling
    def compile(
        self,
        optimizer="rmsprop",
        loss=None,
        metrics=None,
        *,
        loss_fn: Callable | None = None,
        steps_per_execution: int = 1,
        dtype_policy: str | None = None,
        distribution=None,
        seed=None,
        jit_compile: bool = True,
        nonfinite=None,
    ) -> None:
        """Configures training, as Keras's `compile`.

        Args:
          optimizer: a name ("adam", "sgd", ...), an `optax.GradientTransformation`
            or an `nj.optimizers` constructor's result.
          loss: a Keras loss name, an `nj.losses` object or `fn(y_true, y_pred)`.
          metrics: a list of metric names or `fn(y_true, y_pred)` callables.
          loss_fn: a custom objective `fn(outputs, batch) -> loss | (loss, aux)`
            used instead of `loss`.
          steps_per_execution: steps per compiled dispatch (`lax.scan`).
          dtype_policy: "float32", "mixed_bfloat16" or "mixed_float16" (bf16/fp16
            compute; float32 parameters, optimizer state and loss; "mixed_float16"
            adds dynamic loss scaling, see `nnjax.train.precision`).
          distribution: an `nj.parallel` strategy (e.g. `DataParallel()`).
          seed: shuffling and dropout seed (int or key); global seed when None.
          jit_compile: accepted for Keras compatibility; steps are always compiled.
          nonfinite: None (no check, no cost), "halt" or "skip": what to do with a
            non-finite loss, gradient or parameter (see `nnjax.train.nonfinite`).

        Raises:
          ValueError / TypeError: for unknown names, before anything is compiled.
        """
        del jit_compile
        tx = optimizers_lib.get(optimizer)
        loss_obj = losses_lib.get(loss) if loss is not None else None
        if loss_obj is None and loss_fn is None:
            raise ValueError("compile: pass `loss` (e.g. loss='sparse_categorical_crossentropy') or `loss_fn`; got neither")
        metric_objs = tuple(metrics_lib.get(m, loss_obj) for m in (metrics or []))
        if isinstance(steps_per_execution, bool) or not isinstance(steps_per_execution, int) or steps_per_execution < 1:
            raise ValueError(f"compile: `steps_per_execution` must be a positive int; got {steps_per_execution!r}")
        log_learning_rate = optimizers_lib.has_schedule(tx)
        policy = precision.get_policy(dtype_policy)
        if policy.loss_scaling:
            tx = precision.dynamic_loss_scale(tx)
        nonfinite_policy = nonfinite_lib.get_policy(nonfinite)
        if nonfinite_policy is not None:
            tx = nonfinite_lib.tracked(tx)
        data_seed = next_seed() if seed is None else (int(seed) if isinstance(seed, (int, np.integer)) else int(np.asarray(as_key(seed))[-1]))
        self._compiled = CompileConfig(
            tx=tx,
            loss=loss_obj,
            metrics=metric_objs,
            loss_fn=loss_fn,
            steps_per_execution=steps_per_execution,
            compute_dtype=policy.compute_dtype,
            distribution=distribution,
            seed=data_seed,
            nonfinite=nonfinite_policy,
            log_learning_rate=log_learning_rate,
        )
        self._train_state = None
        self._fns = {}

    @property
    def compiled(self) -> bool:
        return self._compiled is not None

    @property
    def optimizer(self):
        return None if self._compiled is None else self._compiled.tx

    @property
    def distribution(self):
        return None if self._compiled is None else self._compiled.distribution

    def _require_compiled(self, what: str) -> CompileConfig:
        if self._compiled is None:
            raise RuntimeError(f'{what}: you must call compile() on model "{self.name}" before {what}()')
        return self._compiled

    def _make_state(self) -> TrainState:
        config = self._compiled
        graphdef, params, model_state = nnx.split(self.module, nnx.Param, ...)
        state = TrainState(
            step=jnp.zeros((), jnp.int32),
            params=params,
            model_state=model_state,
            opt_state=config.tx.init(params),
            rng=jax.random.PRNGKey(config.seed),
            graphdef=graphdef,
            tx=config.tx,
            config=StepConfig(loss=config.loss, metrics=config.metrics, loss_fn=config.loss_fn, compute_dtype=config.compute_dtype,
                              nonfinite=config.nonfinite),
        )
        if config.distribution is not None:
            state = config.distribution.place_state(state)
        return state

    @property
    def state(self) -> TrainState:
        """The current `TrainState` (created at the first use after `compile`).

        The next training step may reuse (donate) its buffers: copy what you keep
        (`get_weights()` returns host copies).
        """
        self._require_compiled("state")
        self._require_built("state")
        if self._train_state is None:
            self._train_state = self._make_state()
        return self._train_state

    @state.setter
    def state(self, new_state: TrainState) -> None:
        self._require_compiled("state")
        self._train_state = new_state
        self._sync_module()

    def _sync_module(self) -> None:
        if self._train_state is not None:
            nnx.update(self.module, self._train_state.params, self._train_state.model_state)

    def _variables(self):
        """`(params, model_state)` from the train state if there is one, else from the module."""
        if self._train_state is not None:
            return self._train_state.params, self._train_state.model_state
        _, params, model_state = nnx.split(self.module, nnx.Param, ...)
        return params, model_state

    def _inference_state(self) -> TrainState:
        if self._compiled is not None:
            return self.state
        graphdef, params, model_state = nnx.split(self.module, nnx.Param, ...)
        return TrainState(
            step=jnp.zeros((), jnp.int32), params=params, model_state=model_state, opt_state=(),
            rng=jax.random.PRNGKey(0), graphdef=graphdef, tx=optax.identity(), config=StepConfig(),
        )

    # ------------------------------------------------------------------ compiled functions
    def _fn(self, name: str) -> Callable:
        if name in self._fns:
            return self._fns[name]
        distribution = self._compiled.distribution if self._compiled else None

        def constrain(batch):
            return batch if distribution is None else distribution.constrain_batch(batch)

        def keep_layout(carry):  # a strategy pins its state layout (FSDP, model axes): the next call reuses this compilation
            state, totals = carry
            return (state if not hasattr(distribution, "constrain_state") else distribution.constrain_state(state)), totals

        skip_nonfinite = self._compiled is not None and self._compiled.nonfinite is not None and self._compiled.nonfinite.mode == "skip"

        def accumulate_train(totals, metrics, weight):
            if skip_nonfinite:  # a skipped step does not turn the epoch's mean into NaN
                metrics, weight = nonfinite_lib.mask_metrics(metrics, weight)
            return _accumulate(totals, metrics, weight)

        def train_scan(state, totals, batches):
            def body(carry, batch):
                state, totals = carry
                batch = constrain(batch)
                state, metrics = steps.train_step(state, batch)
                return (state, accumulate_train(totals, metrics, _batch_size(batch))), None

            if jax.tree.leaves(batches)[0].shape[0] == 1:  # one step: no loop (see train_indexed)
                return keep_layout(body((state, totals), jax.tree.map(lambda a: a[0], batches))[0])
            return keep_layout(jax.lax.scan(body, (state, totals), batches)[0])

        def train_indexed(state, totals, data, order, start, num_steps, batch_size):
            def body(carry, i):
                idx = jax.lax.dynamic_slice_in_dim(order, (start + i) * batch_size, batch_size)
                return train_scan_one(carry, _take(data, idx)), None

            def train_scan_one(carry, batch):
                state, totals = carry
                batch = constrain(batch)
                state, metrics = steps.train_step(state, batch)
                return state, accumulate_train(totals, metrics, batch_size)

            if num_steps == 1:  # one step: no loop (XLA:CPU runs convolutions inside a while loop 3-5x slower)
                return keep_layout(body((state, totals), 0)[0])
            return keep_layout(jax.lax.scan(body, (state, totals), jnp.arange(num_steps))[0])

        def eval_scan(state, totals, batches):
            def body(totals, batch):
                batch = constrain(batch)
                return _accumulate(totals, steps.eval_step(state, batch), _batch_size(batch)), None

            return jax.lax.scan(body, totals, batches)[0]

        def predict_scan(state, xs):
            return jax.lax.map(lambda x: steps.predict_step(state, constrain((x,))[0]), xs)

        fns = {
            "train_scan": jax.jit(train_scan, donate_argnums=(0, 1)),
            "train_indexed": jax.jit(train_indexed, donate_argnums=(0, 1), static_argnums=(5, 6)),
            "eval_scan": jax.jit(eval_scan),
            "predict_scan": jax.jit(predict_scan),
        }
        self._fns.update(fns)
        return self._fns[name]

    @property
    def _train_state(self) -> TrainState | None:
        flat = self.__dict__.get("_flat_state")
        if flat is not None:  # rebuilt once, when someone reads the state during or after fit
            self.__dict__["_state_tree"] = jax.tree.unflatten(flat.treedef, flat.leaves)
            self.__dict__["_flat_state"] = None
        return self.__dict__.get("_state_tree")

    @_train_state.setter
    def _train_state(self, value) -> None:
        flat = value if isinstance(value, _FlatState) else None
        self.__dict__["_flat_state"], self.__dict__["_state_tree"] = flat, None if flat is not None else value

    def _run_flat(self, name: str, *args) -> tuple[_FlatState, Any]:
        """Calls the compiled train function `name` ("train_indexed" / "train_scan") on the flat state.

        Same computation, donation and compilation cache as `self._fn(name)(state, *args)`;
        only the TrainState crosses the jit boundary as a list of leaves.
        """
        flat = self.__dict__.get("_flat_state")
        if flat is None:  # the first execution, or a callback read or replaced model.state
            leaves, treedef = jax.tree.flatten(self._train_state)
            flat = _FlatState(treedef, leaves)
        last = self.__dict__.get("_flat_last")
        if last is not None and last[0] == name and last[1] is flat.treedef:
            fn, out = last[2], last[3]
        else:
            key = ("flat", name, flat.treedef)
            if key not in self._fns:
                inner, treedef, out = self._fn(name).__wrapped__, flat.treedef, {"in": flat.treedef}

                def run(leaves, *rest):
                    state, totals = inner(jax.tree.unflatten(treedef, leaves), *rest)
                    new_leaves, out["treedef"] = jax.tree.flatten(state)
                    return new_leaves, totals

                static = (5, 6) if name == "train_indexed" else ()
                self._fns[key] = (jax.jit(run, donate_argnums=(0, 1), static_argnums=static), out)
            fn, out = self._fns[key]
        leaves, totals = fn(flat.leaves, *args)
        if "same" not in out:  # whether the step keeps the tree's structure (it does): then skip the lookup next call
            out["same"] = out["treedef"] == out["in"]
        self.__dict__["_flat_last"] = (name, out["treedef"], fn, out) if out["same"] else None
        return _FlatState(out["treedef"], leaves), totals

    # ------------------------------------------------------------------ data
    def _source(self, x, y, sample_weight, batch_size, shuffle, what: str, drop_remainder=False):
        """Turns fit/evaluate/predict inputs into a batch source (ArraySource or a user source)."""
        if x is None:
            raise ValueError(f"{what}: `x` is required; got None")
        if hasattr(x, "batches") and hasattr(x, "steps_per_epoch"):
            if y is not None:
                raise ValueError(f"{what}: `y` must be None when `x` is a dataset (it yields (x, y) batches); got y={type(y).__name__}")
            return x
        from nnjax import data as data_lib

        try:  # generators and TFDS / Grain sources become batch sources; arrays give None
            adapted = data_lib.adapt(x, y, sample_weight=sample_weight, batch_size=batch_size, shuffle=shuffle, seed=self._seed_for_data())
        except ValueError as err:
            raise ValueError(f"{what}: {err}") from err
        if adapted is not None:
            return adapted
        x = checks.as_array_tree(x, "x")
        y = checks.as_array_tree(y, "y")
        sample_weight = checks.as_array_tree(sample_weight, "sample_weight")
        checks.check_lengths(x, y, sample_weight)
        return ArraySource(x, y, sample_weight, batch_size=batch_size or 32, shuffle=shuffle, seed=self._seed_for_data(), drop_remainder=drop_remainder)

    def _seed_for_data(self) -> int:
        if self._compiled is not None:
            return self._compiled.seed
        if self._data_seed is None:
            self._data_seed = next_seed()
        return self._data_seed

    def _check_source(self, source, what: str) -> None:
        """Builds the model if needed and checks inputs and labels, all before compiling."""
        batch_size = getattr(source, "batch_size", None)
        if self.distribution is not None and hasattr(self.distribution, "check_batch_size") and isinstance(batch_size, int):
            self.distribution.check_batch_size(batch_size, what)  # e.g. a batch that the devices cannot split evenly
        sample = source.peek()
        self._ensure_built(sample[0])
        state = self._inference_state()
        spec = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), sample[0])
        expected = self._input_spec[0]
        leaves = jax.tree.leaves(sample[0])
        if expected is not None and len(leaves) == 1:
            got = tuple(leaves[0].shape)
            if len(got) != len(expected) or any(e is not None and e != g for e, g in zip(expected[1:], got[1:])):
                raise ValueError(
                    f'{what}: input of model "{self.name}" is incompatible: expected shape {shape_str(expected)}, '
                    f"received input with shape {shape_str((None,) + got[1:])}"
                )
        if isinstance(self.module, Layer):
            self.module.check_host_inputs(source.x if isinstance(source, ArraySource) else sample[0])
        out = self._output_spec(state, spec)
        if hasattr(out, "shape"):
            self._output_shape = (None,) + tuple(out.shape[1:])
        if self._compiled is not None and sample[1] is not None and isinstance(source, ArraySource):
            checks.check_labels(source.y, self._output_shape, self._compiled.loss, what)
        elif self._compiled is not None and sample[1] is not None:
            checks.check_labels(sample[1], self._output_shape, self._compiled.loss, what)

    def _output_spec(self, state, spec):
        """`jax.eval_shape` of `predict_step`, remembered per input spec and state layout.

        Tracing the model costs ~1.5 ms per layer (0.16 s for 100 layers) on every fit call;
        the answer only changes with the input spec, the model's structure or a parameter shape.
        """
        try:
            key = (jax.tree.structure(spec), tuple((a.shape, a.dtype) for a in jax.tree.leaves(spec)),
                   jax.tree.structure(state), tuple((np.shape(a), jnp.result_type(a)) for a in jax.tree.leaves(state)))
            hash(key)
        except TypeError:  # some static part of the state is unhashable: do not remember
            key = None
        cache = self.__dict__.setdefault("_output_spec_cache", {})
        if key is not None and key in cache:
            return cache[key]
        out = jax.eval_shape(lambda s, v: steps.predict_step(s, v), state, spec)
        if key is not None:
            if len(cache) >= 8:
                cache.clear()
            cache[key] = out
        return out

    def _device_data(self, source: ArraySource):
        distribution = self.distribution
        if distribution is not None:
            return distribution.place_data(source.arrays)
        return jax.device_put(source.arrays)

    def _put_batches(self, batches: list[tuple]):
        """Stacks host batches to `(k, B, ...)` and places them (sharded under a distribution)."""
        stack = (lambda a: np.expand_dims(a, 0)) if len(batches) == 1 else (lambda *a: np.stack(a))  # one batch: a view, no copy
        stacked = tuple(None if batches[0][i] is None else jax.tree.map(stack, *[b[i] for b in batches]) for i in range(3))
        distribution = self.distribution
        if distribution is not None:
            return distribution.place_batches(stacked)
        return jax.device_put(stacked)

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
    ) -> History:
        """Trains the model, as Keras's `fit`.

        Args:
          x: inputs (array or pytree of arrays) or a dataset yielding batches.
          y: targets, or None when `x` is a dataset.
          batch_size: examples per step (32 by default).
          epochs: index of the last epoch (Keras semantics with `initial_epoch`).
          verbose: 0 silent, 1 progress bar, 2 one line per epoch; "auto" is 1 in a
            terminal and 2 when piped.
          callbacks: `nj.callbacks.Callback` instances.
          validation_split: fraction of the arrays (taken from the end, before
            shuffling) held out for validation.
          validation_data: `(x_val, y_val)` or `(x_val, y_val, sample_weight)`.
          shuffle: reshuffle every epoch (the order is a function of the seed and epoch).
          sample_weight: per-example weights `(N,)`.
          initial_epoch: epoch to start from.
          steps_per_epoch: stop each epoch after this many steps.
          validation_batch_size: batch size for validation (`batch_size` by default).
          validation_freq: validate every this many epochs.

        Returns:
          `History`, whose `.history` maps "loss", each metric and their "val_"
          versions to per-epoch values.
        """
        config = self._require_compiled("fit")
        if validation_split and validation_data is not None:
            validation_split = 0.0  # Keras: validation_data wins
        if validation_split:
            if hasattr(x, "batches"):
                raise ValueError("fit: `validation_split` needs array inputs; with a dataset pass validation_data")
            x, y, sample_weight = (checks.as_array_tree(v, n) for v, n in ((x, "x"), (y, "y"), (sample_weight, "sample_weight")))
            checks.check_lengths(x, y, sample_weight)
            (x, y, sample_weight), validation_data = split_validation(x, y, sample_weight, validation_split)
        source = self._source(x, y, sample_weight, batch_size, shuffle, "fit")
        self._check_source(source, "fit")
        val_source = None
        if validation_data is not None:
            if hasattr(validation_data, "batches"):
                val_source = validation_data
            else:
                if not isinstance(validation_data, (tuple, list)) or len(validation_data) not in (2, 3):
                    raise ValueError("fit: `validation_data` must be (x_val, y_val) or (x_val, y_val, sample_weight)")
                vx, vy, *vw = validation_data
                val_source = self._source(vx, vy, vw[0] if vw else None, validation_batch_size or batch_size, False, "fit(validation_data)")
            self._check_source(val_source, "fit(validation_data)")
        if verbose == "auto":
            verbose = 1 if sys.stdout.isatty() else 2
        steps_total = source.steps_per_epoch if steps_per_epoch is None else min(steps_per_epoch, source.steps_per_epoch or steps_per_epoch)
        callback_list = CallbackList(callbacks, model=self, history=self.history, verbose=verbose, epochs=epochs, steps=steps_total)
        self.fit_source, self.fit_callbacks = source, callback_list  # read by backups (nj.callbacks.BackupAndRestore)
        state = self.state  # creates the TrainState on first use
        del state
        self.stop_training = False
        self.resume_position = None
        resident = isinstance(source, ArraySource) and _tree_bytes(source.arrays) <= DEVICE_RESIDENT_BYTES
        device_data = self._device_data(source) if resident else None
        names = ["loss"] + [m.name for m in config.metrics]
        callback_list.call("on_train_begin", None)
        epoch_logs: dict = {}
        try:
            start_epoch, start_step = initial_epoch, 0
            if self.resume_position is not None:
                start_epoch, start_step = self.resume_position["epoch"], self.resume_position["step"]
            for epoch in range(start_epoch, epochs):
                self.fit_position = {"epoch": epoch, "step": start_step}
                callback_list.call("on_epoch_begin", epoch, None)
                epoch_logs = self._train_epoch(source, device_data, epoch, start_step, steps_total, names, callback_list)
                start_step = 0
                if val_source is not None and (epoch + 1) % validation_freq == 0 and not self.stop_training_now:
                    callback_list.call("on_test_begin", None)
                    val_logs = self._evaluate_source(val_source, keep_on_device=True)
                    callback_list.call("on_test_end", val_logs)
                    epoch_logs.update({f"val_{k}": v for k, v in val_logs.items()})
                epoch_logs.update(self._optimizer_logs(callback_list))
                callback_list.call("on_epoch_end", epoch, epoch_logs)
                self.fit_position = {"epoch": epoch + 1, "step": 0}
                if self.stop_training:
                    break
        except BaseException:
            # on_train_end will not run: let callbacks that hold resources (signal handlers, a backup
            # in flight) release them, keeping what they saved; the original error propagates.
            for callback in callback_list:
                close = getattr(callback, "close", None)
                if callable(close):
                    try:
                        close()
                    except Exception:  # noqa: BLE001 - the first error is the one to report
                        pass
            raise
        finally:
            self._eval_cache = None  # the validation data placed on the device for this fit
            self._sync_module()
        if ema_lib.ema_params(self._train_state.opt_state) is not None:  # as Keras with use_ema: fit ends on the EMA weights
            self.state = ema_lib.finalize(self._train_state)
        callback_list.call("on_train_end", epoch_logs)
        return self.history

    @property
    def stop_training_now(self) -> bool:
        return bool(getattr(self, "_halt", False))

    def epoch_totals(self):
        """The running metric sums of the current epoch (for backups that resume mid-epoch)."""
        return getattr(self, "_totals", None)

    def _train_epoch(self, source, device_data, epoch, start_step, steps_total, names, callback_list) -> dict:
        k = self._compiled.steps_per_execution
        totals = self.__dict__.pop("_restored_totals", None) or _zeros_totals(names)
        self._totals = totals
        step = start_step
        if device_data is not None:
            order_np = source.order(epoch)
            order = jnp.asarray(order_np[: (steps_total * source.batch_size)], dtype=jnp.int32)
            bs = source.batch_size
            full_steps = min(steps_total, source.num_examples // bs)
            while step < steps_total and not self.stop_training:
                if step < full_steps:
                    n = min(k, full_steps - step)  # the remaining < k full steps run as one execution, as when streaming
                    callback_list.call("on_train_batch_begin", step, None)
                    state, totals = self._run_flat("train_indexed", totals, device_data, order, step, n, bs)
                else:  # the last partial batch: its own (cached) shape
                    n = 1
                    idx = order_np[step * bs:(step + 1) * bs]
                    callback_list.call("on_train_batch_begin", step, None)
                    state, totals = self._run_flat("train_scan", totals, self._put_batches([source.take(idx)]))
                step = self._after_execution(state, totals, step, n, epoch, callback_list)
        else:
            from nnjax.data.prefetch import group_executions, prefetch_to_device

            # Groups of up to k equal-size batches (a short last batch alone), stacked and placed on a
            # background thread two executions ahead (double buffering) while the current one trains.
            groups = group_executions(source.batches(epoch, start_step), k, None if steps_total is None else steps_total - start_step)
            with prefetch_to_device(groups, put=lambda g: (len(g), self._put_batches(g)), size=2) as placed_groups:
                for n, placed in placed_groups:
                    callback_list.call("on_train_batch_begin", step, None)
                    state, totals = self._run_flat("train_scan", totals, placed)
                    step = self._after_execution(state, totals, step, n, epoch, callback_list)
                    if self.stop_training:
                        break
        if step == start_step and start_step == 0:
            raise ValueError("fit: the dataset yielded no batches: expected at least one batch per epoch; received 0")
        return _means(self._totals)

    def _optimizer_logs(self, callback_list) -> dict:
        """`learning_rate` (when a schedule or a callback changes it) and, under nonfinite="skip", `skipped_steps`."""
        logs = {}
        opt_state = self._train_state.opt_state
        logged = self._compiled.log_learning_rate or callback_list.logs_learning_rate
        rate = optimizers_lib.get_learning_rate(opt_state) if logged else None
        if rate is not None:
            logs["learning_rate"] = float(np.asarray(rate))
        if self._compiled.nonfinite is not None and self._compiled.nonfinite.mode == "skip":
            logs["skipped_steps"] = nonfinite_lib.skipped_steps(opt_state)
        return logs

    def _after_execution(self, state, totals, step, n, epoch, callback_list) -> int:
        if self._compiled.nonfinite is not None:  # one host sync per execution, only with a policy
            if isinstance(state, _FlatState):
                state = jax.tree.unflatten(state.treedef, state.leaves)
            error = nonfinite_lib.halt_error(state)
            if error is not None:
                self._train_state = nonfinite_lib.clear_halt(state)
                raise error
        self._train_state = state
        self._totals = totals
        step += n
        self.fit_position = {"epoch": epoch, "step": step}
        if callback_list.batch_end_hooks:
            logs = _means(totals) if callback_list.needs_batch_logs() else None
            callback_list.on_train_batch_end(step - 1, logs)
        return step

    # ------------------------------------------------------------------ evaluate / predict
    def _evaluate_source(self, source, keep_on_device: bool = False) -> dict:
        """Loss and metrics over `source`. With `keep_on_device`, in-memory data placed on the device
        once is reused by the next call with the same source (fit validates every epoch)."""
        state = self.state
        config = self._compiled
        names = ["loss"] + [m.name for m in config.metrics]
        totals = _zeros_totals(names)
        cached = getattr(self, "_eval_cache", None)
        if cached is not None and cached[0] is source:
            placed = cached[1]
        else:
            if isinstance(source, ArraySource):
                batches = [source.take(idx) for idx in source.batch_indices(0)]
            else:
                batches = list(source.batches(0))
            if not batches:
                raise ValueError("evaluate: the dataset yielded no batches: expected at least one; received 0")
            full = [b for b in batches if _batch_size(b) == _batch_size(batches[0])]
            placed = [self._put_batches(full)] + [self._put_batches([batch]) for batch in batches[len(full):]]
            if keep_on_device and isinstance(source, ArraySource):
                self._eval_cache = (source, placed)
        for stacked in placed:
            totals = self._fn("eval_scan")(state, totals, stacked)
        return _means(totals)

    def evaluate(self, x=None, y=None, batch_size: int | None = None, verbose="auto", sample_weight=None,
                 steps: int | None = None, callbacks=None, return_dict: bool = False):
        """Loss and metrics on data, in inference mode.

        Returns:
          `[loss, *metrics]` (a float when there are no metrics), or a dict with
          `return_dict=True`.
        """
        config = self._require_compiled("evaluate")
        source = self._source(x, y, sample_weight, batch_size, False, "evaluate")
        self._check_source(source, "evaluate")
        callback_list = CallbackList(callbacks, model=self, verbose=0)
        callback_list.call("on_test_begin", None)
        logs = self._evaluate_source(source)
        callback_list.call("on_test_end", logs)
        if verbose == "auto":
            verbose = 1
        if verbose:
            print(" - ".join(f"{k}: {v:.4f}" for k, v in logs.items()))
        if return_dict:
            return logs
        values = [logs["loss"]] + [logs[m.name] for m in config.metrics]
        return values[0] if len(values) == 1 else values

    def predict(self, x, batch_size: int | None = None, verbose="auto", steps: int | None = None, callbacks=None):
        """The model's outputs for `x`, in inference mode, as NumPy arrays.

        Raises:
          ValueError: if the model is not built (its input shape is unknown).
        """
        del verbose, steps, callbacks
        self._require_built("predict")
        if not hasattr(x, "batches"):
            from nnjax.data import adapt

            x = adapt(x, shuffle=False) or x
        if hasattr(x, "batches"):
            outputs = [self.predict_on_batch(b[0]) for b in x.batches(0)]
            return jax.tree.map(lambda *o: np.concatenate(o), *outputs)
        x = checks.as_array_tree(x, "x")
        n = checks.num_examples(x, "x")
        if n == 0:
            raise ValueError("predict: the dataset is empty: expected at least one example in `x`; received 0")
        source = ArraySource(x, batch_size=batch_size or 32, shuffle=False)
        self._check_source(source, "predict")
        state = self._inference_state()
        bs = source.batch_size
        full = n // bs
        outputs = []
        if full:
            stacked = jax.tree.map(lambda a: np.asarray(a[: full * bs]).reshape((full, bs) + a.shape[1:]), x)
            out = self._fn("predict_scan")(state, self._put_x(stacked))
            outputs.append(jax.tree.map(lambda a: np.asarray(a).reshape((-1,) + a.shape[2:]), out))
        if n % bs:
            tail = jax.tree.map(lambda a: np.asarray(a[full * bs:])[None], x)
            out = self._fn("predict_scan")(state, self._put_x(tail))
            outputs.append(jax.tree.map(lambda a: np.asarray(a)[0], out))
        return jax.tree.map(lambda *o: np.concatenate(o), *outputs)

    def _put_x(self, xs):
        distribution = self.distribution
        if distribution is not None:
            return distribution.place_batches((xs, None, None))[0]
        return jax.device_put(xs)

    def predict_on_batch(self, x):
        """Outputs for one batch (no batching, no checks beyond the layers')."""
        self._require_built("predict_on_batch")
        return jax.device_get(jax.jit(steps.predict_step)(self._inference_state(), x))

    def __call__(self, x, training: bool = False, key=None):
        """Calls the underlying module eagerly (Keras's `model(x)`)."""
        x = jnp.asarray(x) if not isinstance(x, (dict, tuple, list)) else x
        if not self.built:
            self._ensure_built(x)
        self._sync_module()
        return steps.call_module(self.module, x, training=training, key=key)

    # ------------------------------------------------------------------ weights
    def get_weights(self) -> list[np.ndarray]:
        """Host copies of every variable: trainable leaves, then non-trainable ones."""
        self._require_built("get_weights")
        params, model_state = self._variables()
        return [np.array(a) for a in jax.tree.leaves(params) + jax.tree.leaves(model_state)]

    def set_weights(self, weights: Sequence) -> None:
        """Replaces every variable, in `get_weights()` order.

        Raises:
          ValueError: if the count or a shape differs from the model's.
        """
        self._require_built("set_weights")
        params, model_state = self._variables()
        leaves_p, tree_p = jax.tree.flatten(params)
        leaves_s, tree_s = jax.tree.flatten(model_state)
        current = leaves_p + leaves_s
        weights = list(weights)
        if len(weights) != len(current):
            raise ValueError(f'set_weights: model "{self.name}" has {len(current)} weight arrays; received {len(weights)}')
        new = []
        for i, (old, w) in enumerate(zip(current, weights)):
            w = np.asarray(w)
            if w.shape != tuple(old.shape):
                raise ValueError(f"set_weights: weight {i} must have shape {tuple(old.shape)}; received shape {w.shape}")
            new.append(jnp.asarray(w, dtype=old.dtype))
        params = jax.tree.unflatten(tree_p, new[: len(leaves_p)])
        model_state = jax.tree.unflatten(tree_s, new[len(leaves_p):])
        self._set_variables(params, model_state)

    def _set_variables(self, params, model_state) -> None:
        if self._train_state is not None:
            state = self._train_state.replace(params=params, model_state=model_state)
            if self.distribution is not None:
                state = self.distribution.place_state(state)
            self._train_state = state
        nnx.update(self.module, params, model_state)

    def save_weights(self, filepath: str, overwrite: bool = True) -> str:
        """Writes all variables to the folder `filepath` with Orbax. Returns the absolute path."""
        from nnjax.checkpoint.pytree import save_pytree

        self._require_built("save_weights")
        params, model_state = self._variables()
        return save_pytree(filepath, {"params": params.to_pure_dict(), "model_state": model_state.to_pure_dict()}, overwrite=overwrite)

    def load_weights(self, filepath: str) -> None:
        """Reads variables written by `save_weights`.

        Raises:
          FileNotFoundError: if nothing was saved at `filepath`.
          ValueError: if the saved weights do not match this model.
        """
        from nnjax.checkpoint.pytree import restore_pytree

        self._require_built("load_weights")
        params, model_state = self._variables()
        target = {"params": params.to_pure_dict(), "model_state": model_state.to_pure_dict()}
        restored = restore_pytree(filepath, target)
        nnx.replace_by_pure_dict(params, restored["params"])
        nnx.replace_by_pure_dict(model_state, restored["model_state"])
        self._set_variables(params, model_state)

    # ------------------------------------------------------------------ introspection
    @property
    def layers(self) -> list:
        if isinstance(self.module, SequentialModule):
            return list(self.module.layers)
        return [self.module]

    def count_params(self) -> int:
        self._require_built("count_params")
        params, model_state = self._variables()
        return int(sum(np.prod(np.shape(a)) for a in jax.tree.leaves(params) + jax.tree.leaves(model_state)))

    @property
    def input_shape(self):
        return None if self._input_spec is None else self._input_spec[0]

    @property
    def output_shape(self):
        if self._output_shape is None and self.built and self._input_spec[0] is not None:
            spec = jax.ShapeDtypeStruct((1,) + tuple(self._input_spec[0][1:]), self._input_spec[1])
            out = jax.eval_shape(lambda s, v: steps.predict_step(s, v), self._inference_state(), spec)
            self._output_shape = (None,) + tuple(out.shape[1:])
        return self._output_shape

    def summary(self, print_fn: Callable[[str], None] | None = None, flops: bool = False) -> str:
        """Prints (and returns) a table of layers, output shapes and parameter counts."""
        from nnjax.viz.summary import summary_text

        text = summary_text(self, flops=flops)
        (print_fn or print)(text)
        return text


class Sequential(Model):
    """A linear stack of layers, as Keras's `Sequential`.

    Example:
      >>> model = nj.Sequential([
      ...     nj.layers.Flatten(input_shape=(28, 28)),
      ...     nj.layers.Dense(128, activation="relu"),
      ...     nj.layers.Dense(10, activation="softmax"),
      ... ])
    """

    def __init__(self, layers: Sequence[nnx.Module] | None = None, name: str | None = None):
        super().__init__(SequentialModule(layers or [], name=name or unique_name("sequential")))

    def add(self, layer) -> None:
        """Appends a layer (Keras's `model.add`)."""
        if is_linen(layer):
            layer = LinenLayer(layer)
        self.module.add(layer)
        if not self.built and self.module.input_shape_hint is not None:
            self.build((None,) + tuple(self.module.input_shape_hint))

    def pop(self) -> None:
        if self.built:
            raise ValueError(f'Sequential "{self.name}": cannot remove a layer from a built model')
        self.module.layers.pop()


__all__ = ["CompileConfig", "Model", "Sequential"]
