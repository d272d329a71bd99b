"""`Model` and `Sequential`: Keras's compile/fit/evaluate/predict, a facade over the core and the fit loop.

The shell owns no training logic: `compile` resolves names into a `StepConfig` and an
`Execution` (the compiled k-step programs of `nnjax.train.execution`), `fit` hands
both to a `FitLoop`, and `evaluate`/`predict` run the same execution's programs.
Once compiled, the `TrainState` is the one place the weights live; `model.module`
is a view of it (its variables are written from the state when it is read).
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from nnjax.callbacks.base import CallbackList, History
from nnjax.layers.base import Layer, shape_str, unique_name
from nnjax.layers.core import InputLayer
from nnjax.layers.sequential import LinenLayer, SequentialModule, is_linen
from nnjax.shell import checks, inputs
from nnjax.shell.batches import BatchMixin
from nnjax.shell.compile_config import CompileConfig, resolve
from nnjax.shell.fit_loop import FitLoop, FitMemory, LoopHooks
from nnjax.shell.inference import InferenceMixin
from nnjax.shell.input_checks import InputChecks
from nnjax.shell.keras_api import KerasStatelessAPI
from nnjax.shell.optimizer_view import ModelOptimizer
from nnjax.shell.overrides import StepOverrides
from nnjax.shell.saving_mixin import SavingMixin
from nnjax.shell.subclassing import SubclassingMixin, module_for
from nnjax.shell.weights import WeightsMixin
from nnjax.train import ema as ema_lib
from nnjax.train import freeze, steps
from nnjax.train.execution import Execution, FlatState
from nnjax.train.state import StepConfig, TrainState
from nnjax.utils.random import as_key

_FUNCTIONAL_SUBCLASSES: dict = {}  # a Model subclass -> the functional model class with its methods
_NO_OPTIMIZER = optax.identity()  # one object: an uncompiled model's inference state keeps one jit cache entry


class Model(SubclassingMixin, StepOverrides, KerasStatelessAPI, InputChecks, BatchMixin, InferenceMixin, LoopHooks,
            WeightsMixin, SavingMixin):
    """A trainable model: a Flax NNX module plus Keras's training methods.

    Args:
      module: an nnjax layer, a Flax NNX module or a Flax Linen module.
      name: the model's name.
      input_shape: shape of one example; builds the model at once.
      input_dtype: dtype of the inputs when building from `input_shape`
        (e.g. "int32" for token ids); float32 by default.

    How a user Flax module is called (see `nnjax.layers.calling.call_module`, `nnjax.layers.LinenLayer`):

    - Mode: `fit` runs it in training mode, `evaluate` and `predict` in inference mode. An NNX module
      is switched with `module.train()` / `module.eval()` (so a BatchNorm or Dropout that follows the
      module's mode does) and also gets the flag its `__call__` accepts: `training=`, `train=`,
      `is_training=` or `deterministic=` (negated). A Linen module gets that flag. In inference,
      BatchNorm uses its running statistics and Dropout is off, so one example's prediction does
      not depend on the rest of the batch.
    - Randomness: `rngs=` (an `nnx.Rngs` of the step's key; a fixed one in inference when it is
      required); a required parameter whose name ends in `rng` or `key` (a VAE's `z_rng`) gets a
      key, new each step in training and `jax.random.PRNGKey(0)` in inference. A Linen module's
      rng streams (`self.make_rng(name)`) each get their own key; name streams that a trace in
      training mode cannot find with `nj.Model(nj.layers.LinenLayer(module, rng_streams=("noise",)))`.
    - State: a Linen module's collections are mutable in the call (`batch_stats` are updated in
      training). Values the call sows (`nnx.sow`, Linen's `self.sow`) or stores in a Variable it
      creates (`self.kl = nnx.Variable(...)`) are not kept; a `loss_fn` declaring
      `intermediates=` receives them (see `compile`).

    Subclassing, as in Keras: `class M(nj.Model)` with layers made in `__init__` (after `super().__init__()`) and a
    `call(inputs, training=False)` method (see `nnjax.shell.subclassing`), or built as `M(inputs, outputs)`; an
    overridden `compute_loss(x, y, y_pred, sample_weight, training)` is what `fit` minimises and `evaluate` reports.
    Keras's JAX-form `train_step(self, state, data)` (`fit`), `test_step(self, state, data)` (`evaluate`, validation)
    and `predict_step(self, state, data)` (`predict`) overrides run inside the compiled executions on Keras's
    variable lists, with `stateless_call`, `stateless_compute_loss`, `compute_loss_and_updates`,
    `optimizer.stateless_apply`, `metrics` and `metrics_variables` (see `nnjax.shell.overrides`,
    `nnjax.shell.keras_form`); what the step returns becomes the model's weights, optimizer state and metric values.
    What nnjax cannot honour (a `compute_metrics` override without a step calling it, ...) raises NotImplementedError.

    Attributes:
      history: the `History` of the last `fit` call (a new one per call, as in Keras).
      fit_loop: the `FitLoop` of the current (or last) `fit`; callbacks read its public `state`.

    Example:
      >>> class Linear(nnx.Module):
      ...     def __init__(self, rngs):
      ...         self.dense = nnx.Linear(8, 3, rngs=rngs)
      ...     def __call__(self, x):
      ...         return self.dense(x)
      >>> model = nj.Model(Linear(rngs=nnx.Rngs(0)))
      >>> model.compile(optimizer="adam", loss="mse")
      >>> history = model.fit(x, np.eye(3)[y], epochs=3, verbose=0)
    """

    # --- functional API dispatch (nnjax.shell.functional registers itself) --------------------------
    _functional_dispatch = None  # (is_functional_call, FunctionalModel), set when nnjax.shell.functional is imported

    def __new__(cls, *args, **kwargs):
        """`Model(inputs, outputs, name=...)` on symbolic tensors makes a `FunctionalModel`."""
        dispatch = Model._functional_dispatch
        # a user's subclass of Model itself (not of Sequential, FunctionalModel, Ensemble, ...)
        nnjax_base = next(klass for klass in cls.__mro__ if klass.__module__.startswith("nnjax."))
        if dispatch is not None and nnjax_base is Model and dispatch[0](*args, **kwargs):
            if cls is Model:
                return super().__new__(dispatch[1])
            # a subclass built as Keras's `CustomModel(inputs, outputs)`: a functional model with its overrides
            if cls not in _FUNCTIONAL_SUBCLASSES:
                _FUNCTIONAL_SUBCLASSES[cls] = type(cls.__name__, (cls, dispatch[1]),
                                                   {"__module__": cls.__module__, "__qualname__": cls.__qualname__})
            return super().__new__(_FUNCTIONAL_SUBCLASSES[cls])
        return super().__new__(cls)
    # --- end of functional API dispatch -------------------------------------------------------------

    def __init__(self, module: Any = None, *, name: str | None = None, input_shape: Sequence[int] | None = None,
                 input_dtype=None):
        module = module_for(self, module, name)  # a subclass with `call` (Keras's subclassing API) passes none
        if module is None:
            raise TypeError("Model(module): expected an nnjax layer, a Flax NNX module or a Flax Linen module; got None")
        if is_linen(module):
            module = LinenLayer(module)
        if not isinstance(module, nnx.Module):
            raise TypeError(
                f"Model(module): expected an nnjax layer, a Flax NNX module or a Flax Linen module; got {type(module).__name__}"
            )
        self._module = module
        self.name = name or getattr(module, "name", None) or unique_name("model")
        self.history = History()
        self.stop_training = False
        self.fit_loop: FitLoop | None = None
        self._compiled: CompileConfig | None = None
        self._execution: Execution | None = None
        self._state: TrainState | FlatState | None = None
        self._input_spec = None  # (shape with None batch, dtype)
        self._output_shape = None
        self._data_seed: int | None = None
        self._eval_cache = None
        self.fit_memory = FitMemory()  # what fit calls keep between them: data on the device, measured choices
        if isinstance(module, Layer) and module.built:
            self._input_spec = (module.built_input_shape, jnp.dtype(jnp.float32))
        elif not isinstance(module, Layer) and jax.tree.leaves(nnx.state(module, nnx.Param)):
            self._input_spec = (None, None)  # a user module is built by its constructor
        hint = input_shape or (module.input_shape_hint if isinstance(module, Layer) else None)
        if hint is not None and not self.built:
            self.build((None,) + tuple(hint), dtype=input_dtype or jnp.float32)
        self._subclass_attributes = True  # what a subclass's __init__ assigns from here on belongs to its module

    # ------------------------------------------------------------------ the module, a view of the state
    @property
    def module(self) -> nnx.Module:
        """The Flax module, holding the current weights (written from the `TrainState` when there is one)."""
        if self._state is not None:
            state = self.state
            nnx.update(self._module, state.params, state.model_state)
        return self._module

    # ------------------------------------------------------------------ building
    @property
    def built(self) -> bool:
        if isinstance(self._module, Layer):
            return self._module.built
        return self._input_spec is not None

    def build(self, input_shape: Sequence[int | None], dtype=jnp.float32, key=None) -> None:
        """Creates the parameters for inputs of `input_shape` (batch axis first, may be None)."""
        input_shape = tuple(input_shape)
        module = self._module
        if isinstance(module, Layer) and not module.built:
            concrete = (1,) + tuple(input_shape[1:])
            if any(d is None for d in concrete):
                raise ValueError(f'Model "{self.name}": build needs every axis but the batch axis; got {shape_str(input_shape)}')
            if isinstance(module, SequentialModule):
                module.input_dtype = jnp.dtype(dtype).name
            module.ensure_built(concrete, None if key is None else as_key(key), dtype)
            self._state = None
        self._input_spec = ((None,) + tuple(input_shape[1:]), jnp.dtype(dtype))
        self._output_shape = None

    def _ensure_built(self, sample_x) -> None:
        if self.built and self._input_spec is not None and self._input_spec[0] is not None:
            return
        leaves = jax.tree.leaves(sample_x)
        if isinstance(self._module, Layer) and not self._module.built:
            if len(leaves) != 1:
                raise ValueError(f'Model "{self.name}": cannot infer the input shape of a multi-input model; call build()')
            self.build((None,) + tuple(leaves[0].shape[1:]), leaves[0].dtype)
        else:
            self._input_spec = ((None,) + tuple(leaves[0].shape[1:]), jnp.dtype(leaves[0].dtype))

    def _require_built(self, what: str) -> None:
        self._refuse_overrides(what)
        if not self.built:
            raise ValueError(
                f'{what}: model "{self.name}" has not been built yet: its input shape is unknown. Call '
                f"model.build(input_shape), pass input_shape= to the first layer, or fit the model first"
            )

    # ------------------------------------------------------------------ compiling
    def compile(self, optimizer="rmsprop", loss=None, metrics=None, *, weighted_metrics=None, loss_weights=None,
                loss_fn: Callable | None = None,
                steps_per_execution: int | str = "auto", dtype_policy: str | None = None, distribution=None, seed=None,
                jit_compile: bool = True, nonfinite=None) -> None:
        """Configures training, as Keras's `compile`.

        Args:
          optimizer: a name ("adam", "sgd", ...), an `optax.GradientTransformation`
            or an `nj.optimizers` constructor's result.
          loss: a Keras loss name, an `nj.losses` object or `fn(y_true, y_pred)`. A functional model with several
            outputs takes a list (one per output, None for none) or a dict keyed by the output names; one loss
            applies to every output. Logs then hold "loss" (the weighted sum) and "<output>_loss" per output.
            Optional for a subclass overriding Keras's JAX-form `train_step` (its `compute_loss` is then 0).
          metrics: a list of metric names, metric objects (`nj.metrics.Precision()`, a subclass of
            `nj.metrics.Metric`, a flax `nnx.metrics` object, updated with `logits=y_pred, labels=y_true`) or
            `fn(y_true, y_pred)` callables; unweighted, as in Keras, and logged under the object's `name`. The
            objects hold the values of the last epoch (or `evaluate`) afterwards, as Keras's do. Several outputs: a
            list with one list per output or a dict keyed by the output names (logged as "<output>_<metric>").
          weighted_metrics: metrics weighted by `sample_weight` (and `class_weight`): each epoch value is
            `sum(w * v) / sum(w)`; named "weighted_<name>" when `metrics` has the same name. Per output as `metrics`.
          loss_weights: a list or dict of each output's factor in the objective; one output: a float (Keras's).
          loss_fn: a custom objective `fn(outputs, batch) -> loss | (loss, aux)` used instead of `loss`.
            When it declares the keyword arguments, it also gets `intermediates=` (a nested dict of the
            values the forward pass sowed or stored in Variables it created, e.g. a VAE's KL term) and
            `params=` (a nested dict of the differentiated parameters, for weight penalties); a Linen
            module's are laid out as Linen's `variables["params"]` / `variables["intermediates"]`.
          steps_per_execution: steps per compiled dispatch (`lax.scan`); "auto" (the default) measures sizes
            during the first epoch and keeps the fastest (see `nnjax.shell.steps_policy`).
          dtype_policy: "float32", "mixed_bfloat16" or "mixed_float16" (bf16/fp16 compute; float32
            parameters, optimizer state and loss; "mixed_float16" adds dynamic loss scaling).
          distribution: an `nj.parallel` strategy (e.g. `DataParallel()`).
          seed: shuffling and dropout seed (int or key); global seed when None.
          jit_compile: accepted for Keras compatibility; steps are always compiled.
          nonfinite: None (no check, no cost), "halt" or "skip": what to do with a non-finite loss,
            gradient or parameter (see `nnjax.train.nonfinite`).

        Raises:
          ValueError / TypeError: for unknown names, before anything is compiled.
        """
        previous = getattr(self, "_compile_arguments", None) or {}
        if loss is None and loss_fn is None and previous.get("loss") is not None:
            loss = previous["loss"]  # Keras keeps the earlier compile's loss when `loss` is not given again
            warnings.warn(f'compile: no `loss` given; model "{self.name}" keeps the loss of its previous compile '
                          f"({loss!r}), as Keras does. To minimise only the layers' add_loss values, build a new "
                          "model, or pass a loss of zero", UserWarning, stacklevel=2)  # fmt: skip
        self._compile_arguments = {k: v for k, v in locals().items() if k not in ("self", "previous")}  # what model.save writes
        if self._keras_form_overrides()[0]:
            self._check_keras_form_compile(nonfinite=nonfinite, dtype_policy=dtype_policy)
        del jit_compile
        self._compiled = resolve(optimizer, loss, metrics, loss_fn=loss_fn, steps_per_execution=steps_per_execution,
                                 dtype_policy=dtype_policy, distribution=distribution, seed=seed, nonfinite=nonfinite,
                                 weighted_metrics=weighted_metrics, loss_weights=loss_weights,
                                 outputs=checks.output_structure(self))
        if self._state is not None:  # recompiling keeps the weights, not the optimizer state
            nnx.update(self._module, self.state.params, self.state.model_state)
        self._state = None
        self._execution = self._make_execution()

    def _make_execution(self) -> Execution:
        config = self._compiled
        skip = config is not None and config.nonfinite is not None and config.nonfinite.mode == "skip"
        return Execution(distribution=None if config is None else config.distribution, skip_nonfinite=skip,
                         step_functions=self._keras_steps())

    @property
    def compiled(self) -> bool:
        return self._compiled is not None

    @property
    def optimizer(self) -> ModelOptimizer | None:
        """The compiled optax transformation, with Keras's `learning_rate` (readable, settable) and `iterations`."""
        return None if self._compiled is None else ModelOptimizer.of(self)

    @property
    def distribution(self):
        return None if self._compiled is None else self._compiled.distribution

    @property
    def steps_per_execution(self) -> int | str:
        """What `compile` was given ("auto" or an int); the last fit's choice is `fit_loop.steps_choice`."""
        return "auto" if self._compiled is None else self._compiled.steps_per_execution

    @property
    def optimizer_has_schedule(self) -> bool:
        """True when the learning rate is a schedule of the step (callbacks cannot set it)."""
        return bool(self._compiled is not None and self._compiled.log_learning_rate)

    @property
    def execution(self) -> Execution:
        """The compiled programs `fit`, `evaluate` and `predict` run (one device, or the `distribution`)."""
        if self._execution is None:
            self._execution = self._make_execution()
        return self._execution

    def metric_names(self) -> list[str]:
        """`["loss", *metric names]`: the keys of `evaluate`'s and `fit`'s logs."""
        config = self._require_compiled("metric_names")
        return steps.logged_names(StepConfig(loss=config.loss, metrics=config.metrics,
                                             weighted_metrics=config.weighted_metrics, outputs=config.outputs))

    def _require_compiled(self, what: str) -> CompileConfig:
        self._refuse_overrides(what)
        if self._compiled is None:
            raise RuntimeError(f'{what}: you must call compile() on model "{self.name}" before {what}()')
        return self._compiled

    # ------------------------------------------------------------------ the TrainState
    def _make_state(self) -> TrainState:
        config = self._compiled
        graphdef, params, model_state = nnx.split(self._module, nnx.Param, ...)
        # Copies: training donates the state's buffers, and the module (which layers the user holds belong to)
        # must keep readable arrays until fit writes the trained ones back into it.
        params, model_state = jax.tree.map(jnp.copy, (params, model_state))
        state = TrainState(
            step=jnp.zeros((), jnp.int32), params=params, model_state=model_state, opt_state=config.tx.init(params),
            rng=jax.random.PRNGKey(config.seed), graphdef=graphdef, tx=config.tx,
            config=StepConfig(loss=config.loss, metrics=config.metrics, weighted_metrics=config.weighted_metrics,
                              loss_fn=config.loss_fn, outputs=config.outputs, compute_loss=self._compute_loss_override(),
                              compute_dtype=config.compute_dtype, nonfinite=config.nonfinite,
                              trainable=freeze.trainable_leaves(self._module, params)),
        )
        return self.execution.place_state(state)

    @property
    def state(self) -> TrainState:
        """The current `TrainState` (created at the first use after `compile`).

        The next training step may reuse (donate) its buffers: copy what you keep
        (`get_weights()` returns host copies).
        """
        self._require_compiled("state")
        self._require_built("state")
        if self._state is None:
            self._state = self._make_state()
        elif isinstance(self._state, FlatState):  # rebuilt once, when someone reads it during or after fit
            self._state = self._state.tree()
        return self._state

    @state.setter
    def state(self, new_state: TrainState) -> None:
        self._require_compiled("state")
        self._state = new_state

    def _stored_state(self):
        """The state as stored (a `FlatState` between executions), created on first use."""
        return self._state if isinstance(self._state, FlatState) else self.state

    def _store_state(self, state) -> None:
        self._state = state

    def _inference_state(self) -> TrainState:
        if self._compiled is not None:
            return self.state
        graphdef, params, model_state = nnx.split(self._module, nnx.Param, ...)
        return TrainState(
            step=jnp.zeros((), jnp.int32), params=params, model_state=model_state, opt_state=(),
            rng=jax.random.PRNGKey(0), graphdef=graphdef, tx=_NO_OPTIMIZER, config=StepConfig(),
        )

    # ------------------------------------------------------------------ fit
    def fit(self, x=None, y=None, batch_size: int | None = None, epochs: int = 1, verbose="auto", callbacks=None,
            validation_split: float = 0.0, validation_data=None, shuffle: bool = True, class_weight=None,
            sample_weight=None, initial_epoch: int = 0, steps_per_epoch: int | None = None, validation_batch_size: int | None = None,
            validation_freq: int = 1) -> History:
        """Trains the model, as Keras's `fit`.

        Args:
          x: inputs (array or pytree of arrays) or a dataset yielding batches.
          y: targets, or None when `x` is a dataset.
          batch_size: examples per step (32 by default).
          epochs: index of the last epoch (Keras semantics with `initial_epoch`).
          verbose: 0 silent, 1 progress bar, 2 one line per epoch; "auto" is 1 in a terminal and 2 when piped.
          callbacks: `nj.callbacks.Callback` instances.
          validation_split: fraction of the arrays (taken from the end, before shuffling) held out for validation.
          validation_data: `(x_val, y_val)`, `(x_val, y_val, sample_weight)` or a dataset.
          shuffle: reshuffle every epoch (the order is a function of the seed and epoch).
          class_weight: `{class id: weight}`: each training example weighted by its label's weight (Keras's
            rule; not with `sample_weight`). Applies to the loss and to `weighted_metrics`.
          sample_weight: per-example weights `(N,)` (the loss and `weighted_metrics`).
          initial_epoch: epoch to start from.
          steps_per_epoch: stop each epoch after this many steps.
          validation_batch_size: batch size for validation (`batch_size` by default).
          validation_freq: validate every this many epochs.

        Returns:
          A new `History` (also `model.history`), whose `.history` maps "loss", each metric and their
          "val_" versions to per-epoch values.
        """
        self._require_compiled("fit")
        checks.check_fit_arguments(epochs=epochs, initial_epoch=initial_epoch, steps_per_epoch=steps_per_epoch,
                                   validation_freq=validation_freq, batch_size=batch_size)
        checks.check_class_weight(class_weight, self._compiled)
        source, val_source = inputs.fit_sources(
            x, y, sample_weight, batch_size=batch_size, shuffle=shuffle, seed=self._seed_for_data(),
            validation_split=validation_split, validation_data=validation_data, validation_batch_size=validation_batch_size,
            class_weight=class_weight)
        self._check_source(source, "fit")
        if val_source is not None:
            self._refuse_overrides("fit(validation_data)")
            self._check_source(val_source, "fit(validation_data)")
        if verbose == "auto":
            verbose = 1 if sys.stdout.isatty() else 2
        self.history = self._new_history()
        self.stop_training = False
        stop = inputs.stop_when_exhausted(source, epochs)  # Keras: a one-pass generator that runs out ends training
        if stop is not None:
            callbacks = [*(callbacks or []), stop]
        callback_list = CallbackList(callbacks, model=self, history=self.history, verbose=verbose, epochs=epochs)
        loop = FitLoop(self, source, val_source, callback_list, epochs=epochs, initial_epoch=initial_epoch,
                       steps_per_epoch=steps_per_epoch, validation_freq=validation_freq)
        callback_list.set_params({"epochs": epochs, "steps": loop.state.steps_per_epoch, "verbose": verbose})
        self.fit_loop = loop
        self._stored_state()  # creates the TrainState on first use
        try:
            logs = loop.run()
        except BaseException:
            callback_list.close()  # on_train_end will not run: release resources, keep what was saved
            raise
        finally:
            self._eval_cache = None  # the validation data placed on the device for this fit
        if ema_lib.ema_params(self.state.opt_state) is not None:  # as Keras with use_ema: fit ends on the EMA weights
            self.state = ema_lib.finalize(self.state)
        self.module  # noqa: B018 - writes the trained weights into the module: layers the user holds see them
        self._store_keras_metrics()  # a Keras-form step's metric values, into model.metrics
        callback_list.call("on_train_end", logs)
        return self.history

    def _new_history(self):
        return History()

    @property
    def fit_position(self) -> dict:
        """`{"epoch", "step"}` of the current (or last) fit: `fit_loop.state.position`."""
        return {"epoch": 0, "step": 0} if self.fit_loop is None else self.fit_loop.state.position

    def __call__(self, x, training: bool = False, key=None):
        """Calls the underlying module eagerly (Keras's `model(x)`); on symbolic tensors, records it as a layer
        of a functional model (`nj.Model(inputs, outputs)`)."""
        from nnjax.layers.functional import any_symbolic

        if any_symbolic((x,), {}):
            return self.module(x)
        x = jnp.asarray(x) if not isinstance(x, (dict, tuple, list)) else x
        if not self.built:
            self._ensure_built(x)
        return steps.call_module(self.module, x, training=training, key=key)

    # ------------------------------------------------------------------ introspection
    @property
    def layers(self) -> list:
        """A Sequential's layers (its `Input` left out, as Keras), or the module itself."""
        module = self.module  # holds the current weights
        if isinstance(module, SequentialModule):
            return [layer for layer in module.layers if not isinstance(layer, InputLayer)]
        return [module]

    @property
    def input_shape(self):
        return None if self._input_spec is None else self._input_spec[0]

    @property
    def output_shape(self):
        if self._output_shape is None and self.built and self._input_spec[0] is not None:
            spec = jax.ShapeDtypeStruct((1,) + tuple(self._input_spec[0][1:]), self._input_spec[1])
            out = checks.output_spec(self._inference_state(), spec)
            self._output_shape = (None,) + tuple(out.shape[1:])
        return self._output_shape

    def summary(self, line_length: int | None = None, positions=None, print_fn: Callable[[str], None] | None = None,
                expand_nested: bool = False, show_trainable: bool = False, layer_range=None, flops: bool = False) -> None:
        """Prints a table of layers, output shapes and parameter counts, once; returns None, as Keras.

        Args:
          line_length: the table's width; with `positions`, cells wrap within Keras's fixed columns (by default
            the columns fit their contents).
          positions: where each column ends, as fractions of `line_length` (or absolute positions).
          print_fn: called once with the whole table instead of `print` (`print_fn=lines.append` keeps the
            text); `nj.viz.summary_text(model)` returns it.
          expand_nested: also list the layers of nested models (a Sequential or functional model used as a
            layer), indented under it as Keras's "   └ name (Type)".
          show_trainable: add Keras's "Trainable" column ("Y", "N", or "-" for a layer without weights).
          layer_range: `[first, last]` regexes matched (`re.match`) against top-level layer names: only the rows
            from the first match of `first` to the last match of `last` are shown.
          flops: add the model's FLOPs per example.

        Raises:
          ValueError: for a `layer_range` that matches no layer, or columns too narrow (Keras's rules).
        """
        from nnjax.viz.summary import summary_text

        (print_fn or print)(summary_text(self, flops=flops, expand_nested=expand_nested, show_trainable=show_trainable,
                                         line_length=line_length, positions=positions, layer_range=layer_range))


__all__ = ["CompileConfig", "Model"]
