"""`Layer`: a Flax NNX module that builds itself from its first input, as in Keras."""

from __future__ import annotations

import collections
import contextlib
import functools
import inspect
import re
import threading
import weakref
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from nnjax import constraints, initializers, regularizers
from nnjax.layers.init_args import recording_init
from nnjax.layers.utils import is_prng_key
from nnjax.utils.random import as_key, call_frame, current_call_frame, next_call_key

_name_lock = threading.Lock()
_name_counts: collections.Counter = collections.Counter()


def unique_name(base: str) -> str:
    """Keras-style unique names: "dense", "dense_1", "dense_2", ..."""
    with _name_lock:
        count = _name_counts[base]
        _name_counts[base] += 1
    return base if count == 0 else f"{base}_{count}"


def snake_case(name: str) -> str:
    """Keras's layer-name rule: "Dense" -> "dense", "Conv2D" -> "conv2d", "MaxPooling2D" -> "max_pooling2d"."""
    name = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", name).lower().replace("__", "_")


def shape_str(shape) -> str:
    return "(" + ", ".join("None" if d is None else str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"


def _key_seed(key) -> Any:
    """Stores a key or seed as plain Python ints (a module's static data)."""
    if key is None:
        return None
    if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
        return int(key)
    return tuple(int(v) for v in np.asarray(as_key(key)))


def _seed_to_key(seed) -> jax.Array:
    if isinstance(seed, tuple):
        return jnp.asarray(seed, dtype=jnp.uint32)
    return as_key(seed)


# While a layer builds, the sublayers it builds draw their keys from it: fold_in(parent_key, n) for the
# n-th sublayer built, so a composite model initialises the same way from the same key.
_build_stack = threading.local()


@contextlib.contextmanager
def _building(key):
    stack = _build_stack.__dict__.setdefault("frames", [])
    stack.append([key, 0])
    try:
        yield
    finally:
        stack.pop()


def _child_key():
    """The next sublayer key of the layer being built, or None outside a build."""
    stack = _build_stack.__dict__.get("frames")
    if not stack:
        return None
    frame = stack[-1]
    frame[1] += 1
    return jax.random.fold_in(frame[0], frame[1])


@contextlib.contextmanager
def _collecting_weights(layer, key):
    """Defers the `add_weight` calls of `layer.build` so that they run as one compiled program.

    `key` seeds the weights that `build` creates without a key (Keras's `add_weight(shape, initializer)`):
    the n-th gets `fold_in(fold_in(key, _WEIGHT_STREAM), n)`, apart from the sublayer keys `fold_in(key, n)`.
    """
    frames = _build_stack.__dict__.setdefault("weights", [])
    pending: list = []
    frames.append((layer, pending, [key, 0]))
    try:
        yield pending
    finally:
        frames.pop()


# Initialisation programs run once: compiling them without backend optimisation takes a
# fraction of the time and gives the same values (the PRNG is integer arithmetic).
_FAST_COMPILE = {"xla_backend_optimization_level": 0}


@functools.lru_cache(maxsize=1024)
def _materialiser(specs: tuple):
    def make(keys):
        return tuple(init(k, shape, dtype) for k, (init, shape, dtype) in zip(keys, specs, strict=True))

    jitted = jax.jit(make)
    compiled = {}

    def run(keys):
        if isinstance(keys, jax.core.Tracer):  # built inside a trace: initialise inline
            return make(keys)
        if "fn" not in compiled:
            lowered = jitted.lower(keys)
            try:
                compiled["fn"] = lowered.compile(_FAST_COMPILE)
            except Exception:  # noqa: BLE001 - a backend without the option compiles normally
                compiled["fn"] = lowered.compile()
        return compiled["fn"](keys)

    return run


def _materialise(pending: list) -> None:
    specs = tuple((init, shape, dtype) for _, init, shape, dtype, _ in pending)
    keys = jnp.stack([key for *_, key in pending])
    try:
        values = _materialiser(specs)(keys)
    except TypeError:  # an unhashable initialiser: initialise one by one
        values = [init(key, shape, dtype) for _, init, shape, dtype, key in pending]
    for (variable, *_), value in zip(pending, values, strict=True):
        variable.set_value(value)


def is_building() -> bool:
    """True while some layer's `build` runs (its example forward pass uses synthetic zeros)."""
    return bool(_build_stack.__dict__.get("frames"))


def _has_tracer(tree) -> bool:
    return any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree.leaves(tree))


def _trace_state():
    from jax.extend.core import get_opaque_trace_state

    return get_opaque_trace_state(convention="nnx")


_TOP_LEVEL_TRACE = _trace_state()


def _inside_a_trace() -> bool:
    """True inside `jit`/`vmap`/`grad`/`eval_shape`, even when the layer's own inputs are constants."""
    return _trace_state() != _TOP_LEVEL_TRACE


def _is_array_tree(value) -> bool:
    leaves = jax.tree.leaves(value)
    return bool(leaves) and all(hasattr(leaf, "shape") and hasattr(leaf, "dtype") for leaf in leaves)


def _is_shape(value) -> bool:
    """True for one shape (a tuple/list of ints and Nones), False for a nested structure of shapes."""
    return isinstance(value, (tuple, list)) and all(
        d is None or (isinstance(d, (int, np.integer)) and not isinstance(d, bool)) for d in value
    )


def _map_shapes(fn, shapes):
    """Applies `fn` to every shape of a nested structure of shapes (a single shape included)."""
    if _is_shape(shapes):
        return fn(tuple(shapes))
    return jax.tree.map(lambda s: fn(tuple(s)), shapes, is_leaf=_is_shape)


def _spec(leaf):
    """An abstract stand-in of an array argument (`ShapeDtypeStruct`); other values unchanged."""
    if hasattr(leaf, "shape") and hasattr(leaf, "dtype"):
        return jax.ShapeDtypeStruct(tuple(leaf.shape), jnp.dtype(leaf.dtype))
    return leaf


def _zeros(spec):
    if isinstance(spec, jax.ShapeDtypeStruct):
        return jnp.zeros(spec.shape, spec.dtype)
    return spec


# The stream of `add_weight` keys within a build key (sublayers use fold_in(key, 1), fold_in(key, 2), ...).
_WEIGHT_STREAM = 2**31 - 1


@functools.lru_cache(maxsize=512)
def _compiled_call(graphdef, static_kwargs: tuple, frame_training):
    """One jitted `call` per layer structure and static keyword arguments (jit caches per input shape)."""

    def run(state, args, kwargs, frame_key):
        module = nnx.merge(graphdef, state)
        with call_frame(frame_training, frame_key):
            out = module.call(*args, **kwargs, **dict(static_kwargs))
        return out, nnx.state(module)

    return jax.jit(run)


# --- functional API hook (nnjax.layers.functional) -------------------------------------------------
# Set by nnjax.layers.functional to `(any_symbolic, record_call)`: a layer called on symbolic tensors
# (`nj.Input`) records a graph node instead of computing. Every `__call__` of a Layer subclass is wrapped.
_symbolic_hook = None
# Set by nnjax.layers.masking to `call_with_masks(layer, call, args, kwargs)`: Keras's mask propagation.
_mask_hook = None
# The symbolic inputs and outputs of each recorded call of a layer (written by nnjax.layers.functional):
# Keras's `layer.input` / `layer.output`.
_recorded_calls: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _route_symbolic(call):
    @functools.wraps(call)
    def __call__(self, *args, **kwargs):  # noqa: N807 - stands for the wrapped __call__
        hook = _symbolic_hook
        if hook is not None and hook[0](args, kwargs):
            return hook[1](self, call, args, kwargs)
        if _mask_hook is not None:
            return _mask_hook(self, call, args, kwargs)
        return call(self, *args, **kwargs)

    __call__._routes_symbolic = True
    return __call__
# --- end of functional API hook ---------------------------------------------------------------------


class _CallSpec:
    """What a `call` method accepts: read once per class from its signature."""

    def __init__(self, fn):
        try:
            params = inspect.signature(fn).parameters
        except (TypeError, ValueError):  # pragma: no cover - builtins
            params = {}
        var_keyword = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
        self.training = "training" in params or var_keyword
        self.training_required = "training" in params and params["training"].default is inspect.Parameter.empty
        self.key = "key" in params
        self.names = frozenset(params)
        self.var_keyword = var_keyword


@functools.cache
def _call_spec(cls) -> _CallSpec:
    return _CallSpec(cls.call)


@functools.cache
def _build_takes_key(cls) -> bool:
    """nnjax's `build(input_shape, key)` or Keras's `build(input_shape)`."""
    try:
        params = list(inspect.signature(cls.build).parameters.values())[1:]  # without self
    except (TypeError, ValueError):  # pragma: no cover
        return True
    if any(p.name == "key" for p in params):
        return True
    positional = [p for p in params if p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    return len(positional) >= 2 or any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in params)


def _frame_key(kwargs: dict):
    """The PRNG key among a call's keyword arguments (`key=` or, for attention, `rng=`)."""
    for name in ("key", "rng"):
        value = kwargs.get(name)
        if value is not None and is_prng_key(value):
            return value
    return None


def _with_context(call_method):
    """Wraps a subclass's own `__call__`: `training`/PRNG key not given are taken from the enclosing layer call."""
    try:
        signature = inspect.signature(call_method)
    except (TypeError, ValueError):  # pragma: no cover
        return call_method
    params = signature.parameters
    rng_name = "rng" if "rng" in params else ("key" if "key" in params else None)

    @functools.wraps(call_method)
    def __call__(self, *args, **kwargs):  # noqa: N807 - it replaces the class's __call__
        frame = current_call_frame()
        if frame is not None:
            try:
                given = signature.bind_partial(self, *args, **kwargs).arguments
            except TypeError:
                given = None  # let the method report the bad arguments
            if given is not None:
                if "training" in params and given.get("training") is None and frame.training is not None:
                    if "training" in kwargs or "training" not in given:
                        kwargs["training"] = frame.training
                if rng_name is not None and given.get(rng_name) is None and frame.key is not None:
                    if rng_name in kwargs or rng_name not in given:
                        kwargs[rng_name] = frame.next_key()
        return call_method(self, *args, **kwargs)

    __call__._nnjax_context = True
    return __call__


def _trackable(value):
    """Keras tracks sublayers held in attributes, lists and dicts; Flax needs `nnx.List`/`nnx.Dict` for that."""
    if isinstance(value, (nnx.Module, nnx.Variable)):
        return value
    inner = getattr(value, "module", None)
    if isinstance(inner, nnx.Module) and callable(getattr(value, "fit", None)):
        return inner  # an `nj.Model`/`nj.Sequential` facade: its module is what holds the parameters
    if isinstance(value, list) and not isinstance(value, nnx.List):
        if not value or any(_holds_state(v) for v in value):
            return nnx.List([_trackable(v) for v in value])
    elif isinstance(value, tuple) and any(_holds_state(v) for v in value):
        return nnx.List([_trackable(v) for v in value])
    elif isinstance(value, dict) and not isinstance(value, nnx.Dict) and any(_holds_state(v) for v in value.values()):
        return nnx.Dict({k: _trackable(v) for k, v in value.items()})
    return value


def _holds_state(value) -> bool:
    if isinstance(value, (nnx.Module, nnx.Variable)):
        return True
    if isinstance(getattr(value, "module", None), nnx.Module) and callable(getattr(value, "fit", None)):
        return True
    if isinstance(value, (list, tuple)):
        return any(_holds_state(v) for v in value)
    if isinstance(value, dict):
        return any(_holds_state(v) for v in value.values())
    return False


def _children(value):
    """Modules and variables directly inside an attribute value (through `nnx.List`/`nnx.Dict`)."""
    if isinstance(value, (nnx.Module, nnx.Variable)) and not isinstance(value, (nnx.List, nnx.Dict)):
        yield value
    elif isinstance(value, (nnx.List, list, tuple)):
        for v in value:
            yield from _children(v)
    elif isinstance(value, (nnx.Dict, dict)):
        for v in value.values():
            yield from _children(v)


# -- Keras variables ---------------------------------------------------------------------


class _KerasVariableMethods:
    """Keras's variable interface on a Flax variable: `assign`, `assign_add`, `numpy()`, `trainable`."""

    def assign(self, value):
        """Replaces the value (same shape; cast to the variable's dtype), as Keras's `Variable.assign`.

        Raises:
          ValueError: if `value`'s shape differs from the variable's.
        """
        value = jnp.asarray(value, dtype=self.dtype)
        if tuple(value.shape) != tuple(self.shape):
            raise ValueError(
                f'Variable "{self.path}": assign expected a value of shape {tuple(self.shape)}; received shape '
                f"{tuple(value.shape)}"
            )
        self.set_value(value)
        return self

    def assign_add(self, delta):
        """`variable += delta`."""
        return self.assign(self.get_value() + jnp.asarray(delta, dtype=self.dtype))

    def assign_sub(self, delta):
        """`variable -= delta`."""
        return self.assign(self.get_value() - jnp.asarray(delta, dtype=self.dtype))

    def numpy(self) -> np.ndarray:
        """A host copy of the value."""
        return np.asarray(self.get_value())

    @property
    def trainable(self) -> bool:
        return isinstance(self, nnx.Param)

    @property
    def path(self) -> str:
        return self.name or "variable"


class TrainableVariable(_KerasVariableMethods, nnx.Param):
    """A trainable weight made by `Layer.add_weight`: an `nnx.Param` with Keras's variable methods."""


class NonTrainableVariable(_KerasVariableMethods, nnx.BatchStat):
    """A non-trainable weight made by `Layer.add_weight(trainable=False)`: model state, not optimised."""


# -- losses added by layers (Keras's `add_loss`) ---------------------------------------------

_loss_stack = threading.local()
_layer_losses: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


class _LossCollector:
    __slots__ = ("losses", "regularized")

    def __init__(self):
        self.losses: list = []
        self.regularized: set = set()  # layers whose weight penalties are counted (once per collection)


@contextlib.contextmanager
def collecting_added_losses():
    """Collects the `add_loss` values of every layer called inside the body.

    Yields:
      The list of collected float scalars (filled when the body returns).
    """
    stack = _loss_stack.__dict__.setdefault("collectors", [])
    collector = _LossCollector()
    stack.append(collector)
    try:
        yield collector.losses
    finally:
        stack.pop()


def _current_collector() -> _LossCollector | None:
    stack = _loss_stack.__dict__.get("collectors")
    return stack[-1] if stack else None


def call_with_added_losses(fn, *args, **kwargs) -> tuple[Any, list]:
    """Runs `fn(*args, **kwargs)` and returns `(result, losses)`: the `add_loss` values of its layer calls.

    Pure: the losses are values of this call (traced inside `jit`/`grad`), not state kept on the
    layers, so a training objective adds `sum(losses)` to its loss (Keras adds them to the compiled loss).

    Returns:
      `(result, losses)`; `losses` is a list of float scalars (empty when no layer added any).
    """
    with collecting_added_losses() as losses:
        result = fn(*args, **kwargs)
    return result, list(losses)


def _record_loss(layer, value) -> None:
    _layer_losses.setdefault(layer, []).append(value)
    collector = _current_collector()
    if collector is not None:
        collector.losses.append(value)


def _show_init_signature(cls) -> None:
    """`help(cls)` and Jupyter show the constructor's arguments (Flax's metaclass `__call__` would hide them
    behind `(*args, **kwargs)`)."""
    try:
        signature = inspect.signature(cls.__init__)
    except (TypeError, ValueError):  # pragma: no cover
        return
    params = list(signature.parameters.values())[1:]  # without self
    cls.__signature__ = signature.replace(parameters=params, return_annotation=inspect.Signature.empty)


class Layer(nnx.Module):
    """Base class of nnjax layers: Keras's build/call split on a Flax NNX module.

    Subclasses implement `build(input_shape)` (Keras's form) or `build(input_shape, key)` (nnjax's:
    an explicit key for the initialisers) and create weights with `add_weight`; `call` may take any of
    Keras's signatures, `call(inputs)`, `call(inputs, training=None)`, `call(inputs, training=None,
    mask=None)`, or nnjax's `call(x, *, training, key)`: it receives only what it accepts. The first
    `__call__` builds the layer from its input (a tuple or dict of arrays too: `build` then receives
    the same structure of shapes); later calls check the input against the built shape and raise a
    Keras-style error on a mismatch.

    Sublayers assigned in `__init__` (directly, in lists or dicts, or an `nj.Sequential`) are built for
    real when the layer builds (one forward pass on zeros if `build` leaves them unbuilt), so they
    are part of the model's parameters and train. Calling a sublayer inside `call` without `training=`
    or a key gives it the outer call's `training` flag and a key `fold_in(outer_key, n)` for the n-th
    draw (an explicit argument wins), as Keras propagates the training flag and seeds.

    Args:
      name: the layer's name (unique by default: "dense", "dense_1", ...).
      input_shape: shape of one example, without the batch axis; lets a model
        build before it sees data (Keras's `input_shape=`).
      key: PRNG key or int seed for the initialisers; drawn from the global seed
        (`nj.utils.set_random_seed`) when None.
      dtype: parameter dtype (float32 by default); a Keras dtype policy name or config is accepted
        when it names a single dtype.
      trainable: Keras's flag, stored as `layer.trainable` (and returned by `get_config`).
      input_dim: Keras's shorthand for `input_shape=(input_dim,)`.
      activity_regularizer: `fn(outputs) -> scalar` or a name ("l2"); at every call its value on each output,
        divided by the output's batch size (Keras 3), is added as a loss.

    Eager calls of nnjax's own layers run compiled: one XLA program per layer and input shape (cached),
    instead of one per operation, which makes a first standalone call several times faster. Inside
    `jit`/`vmap`/`grad` a layer is traced as usual. A subclass whose `call` is traceable may set
    `_jit_eager_calls = True` to get the same; the default (False) keeps a user's `call` eager, with
    Python control flow on values allowed.
    """

    _jit_eager_calls: bool = False
    # Keras's flag: the layer passes its input's mask on (`compute_mask`); see nnjax.layers.masking.
    supports_masking: bool = False

    # Which input axes `__call__` checks against the built shape: "all" or a tuple of axes.
    _checked_axes: Any = "all"
    # Keras's per-weight options: `(prefix, attribute)` pairs; `{prefix}_regularizer=` and `{prefix}_constraint=`
    # of the constructor apply to the weight stored as `self.{attribute}` (e.g. ("recurrent", "recurrent_kernel")).
    _weight_options: tuple[tuple[str, str], ...] = ()
    _activity_in_config: bool = True  # Keras's weight layers write `activity_regularizer` (None too); its RNN cells do not
    _min_ndim: int | None = None
    _ndim: int | None = None  # the exact rank the layer needs, batch axis included

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.__module__.startswith("nnjax.layers") and not cls.__name__.startswith("_"):
            _LAYER_CLASSES.setdefault(cls.__name__, cls)
        if "__init__" in cls.__dict__:  # whole-model saving writes the arguments a layer was made with
            cls.__init__ = recording_init(cls.__dict__["__init__"])
        _show_init_signature(cls)
        owner = next(c for c in cls.__mro__ if "_checked_axes" in c.__dict__)
        if owner is Layer and not cls.__module__.startswith("nnjax."):
            cls._checked_axes = ()  # a user's layer has no input spec, as in Keras: any input shape is accepted
        own_config = cls.__dict__.get("get_config")
        if own_config is not None and cls.__module__.startswith("nnjax.") and not hasattr(own_config, "_with_penalties"):
            cls.get_config = _with_penalty_config(own_config)  # nnjax's layers: regularizers/constraints in Keras's form
        own_call = cls.__dict__.get("__call__")
        if own_call is not None and not getattr(own_call, "_routes_symbolic", False):
            if not getattr(own_call, "_nnjax_context", False):
                own_call = _with_context(own_call)
            cls.__call__ = _route_symbolic(own_call)  # functional API hook: symbolic inputs record a graph node

    def __init__(self, *, name: str | None = None, input_shape: Sequence[int] | None = None, key=None, seed=None,
                 dtype=None, trainable: bool = True, autocast: bool = True, input_dim: int | None = None,
                 activity_regularizer=None, **kwargs):
        where = f"{type(self).__name__}.__init__"
        weight_options = {}
        for prefix, _ in type(self)._weight_options:
            weight_options[f"{prefix}_regularizer"] = regularizers.get(kwargs.pop(f"{prefix}_regularizer", None), where)
            weight_options[f"{prefix}_constraint"] = constraints.get(kwargs.pop(f"{prefix}_constraint", None), where)
        unknown = sorted(set(kwargs) - {"batch_size", "batch_input_shape"})
        if unknown:
            raise TypeError(f"{where}: unrecognized keyword arguments {unknown}")
        if kwargs.get("batch_input_shape") is not None and input_shape is None:
            input_shape = tuple(kwargs["batch_input_shape"])[1:]
        if input_dim is not None and input_shape is None:
            input_shape = (int(input_dim),)
        self.name = name or unique_name(snake_case(type(self).__name__))
        self.input_shape_hint = None if input_shape is None else tuple(int(d) for d in input_shape)
        self.param_dtype = _param_dtype(dtype, where)
        self.trainable = bool(trainable)
        self.autocast = bool(autocast)
        self.activity_regularizer = regularizers.get(activity_regularizer, where)
        for option, value in weight_options.items():
            setattr(self, option, value)
        self.built = False
        self.built_input_shape = None  # batch axis as None
        self.built_output_shape = None
        self._init_seed = _key_seed(key if key is not None else seed)
        self._init_weight_count = 0

    def __setattr__(self, name: str, value) -> None:
        if isinstance(value, _KerasVariableMethods) and value.get_metadata().get("name") is None:
            value.set_metadata(name=name)  # an unnamed weight takes its attribute's name ("kernel", "bias")
        if isinstance(value, _KerasVariableMethods):
            for prefix, attribute in type(self)._weight_options:  # kernel_regularizer=, kernel_constraint=, ...
                if attribute == name:
                    for kind in ("regularizer", "constraint"):
                        option = getattr(self, f"{prefix}_{kind}", None)
                        if option is not None and value.get_metadata().get(kind) is None:
                            value.set_metadata(**{kind: option})
        super().__setattr__(name, _trackable(value))
        if name == "trainable" and "built" in vars(self):  # Keras: freezing a layer freezes its sublayers
            for sub in self._sublayers():
                if isinstance(sub, Layer):
                    sub.trainable = value

    # -- to override -------------------------------------------------------------------
    def build(self, input_shape: tuple, key: jax.Array | None = None) -> None:
        """Creates the weights for inputs of `input_shape` (batch axis included).

        Override as Keras's `build(self, input_shape)` (weights from `add_weight(shape, initializer)`,
        keys supplied by the framework) or as `build(self, input_shape, key)` for explicit keys.
        """

    def call(self, x, *, training: bool = False, key=None):
        raise NotImplementedError(f"{type(self).__name__} must implement call()")

    def compute_mask(self, inputs, previous_mask=None):
        """The mask of the output (Keras's): the input's mask when the layer supports masking, else None.

        Override it to create or change a mask (`Embedding(mask_zero=True)`, an RNN without
        `return_sequences`); see `nnjax.layers.masking`.
        """
        return previous_mask if self.supports_masking else None

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        """Output shape for `input_shape`, traced abstractly (no FLOPs, no parameters)."""
        x = jax.ShapeDtypeStruct(tuple(1 if d is None else d for d in input_shape), jnp.float32)
        kwargs = self._call_kwargs(False, None)
        out = jax.eval_shape(lambda v: self.call(v, **kwargs), x)
        return (None,) + tuple(out.shape[1:])

    def add_weight(self, shape: Sequence[int] | None = None, initializer=None, dtype=None, trainable: bool = True,
                   autocast: bool = True, regularizer=None, constraint=None, aggregation: str = "none",
                   overwrite_with_gradient: bool = False, name: str | None = None, *, key=None) -> nnx.Variable:
        """Creates a weight, as Keras's `add_weight`: `self.w = self.add_weight(shape=(3, 4), initializer="he_normal")`.

        Inside `build`, the weights are created together by one compiled program when `build`
        returns (one XLA compilation per layer instead of several per weight).

        Args:
          shape: the weight's shape (`()` when None).
          initializer: a Keras initialiser name or a callable `(key, shape, dtype) -> array`;
            "glorot_uniform" for floats and "zeros" otherwise when None, as in Keras.
          dtype: the weight's dtype (the layer's `dtype` by default).
          trainable: a `TrainableVariable` (an `nnx.Param`) when True; a `NonTrainableVariable` (an
            `nnx.BatchStat`: non-trainable state, kept in `TrainState.model_state`) when False.
          autocast, aggregation: accepted for Keras compatibility (no effect).
          regularizer: `fn(weight) -> scalar` or a name ("l2"), added to the loss once per forward pass.
          constraint: `fn(weight) -> weight` or a name ("max_norm"), applied after every optimizer update
            (`nnjax.train.constraints.apply_constraints`), as in Keras.
          overwrite_with_gradient: not supported (raises).
          name: the weight's name (`variable.name`).
          key: PRNG key for the initialiser; without one, inside `build` the key comes from the
            layer's build key (its `key=`/`seed=`, its parent's key, or the global seed), outside
            `build` from the layer's seed or the global seed.

        Returns:
          The `TrainableVariable` / `NonTrainableVariable`.

        Raises:
          NotImplementedError: for `overwrite_with_gradient=True`.
        """
        where = f'Layer "{self.name}": add_weight'
        regularizer = regularizers.get(regularizer, where) if isinstance(regularizer, (str, dict)) else regularizer
        constraint = constraints.get(constraint, where)
        if overwrite_with_gradient:
            raise NotImplementedError(f"{where}: `overwrite_with_gradient=True` is not supported")
        del autocast, aggregation
        dtype = jnp.dtype(self.param_dtype if dtype is None else dtype)
        if initializer is None:
            initializer = "glorot_uniform" if jnp.issubdtype(dtype, jnp.floating) else "zeros"
        init = initializers.get(initializer, where=where)
        shape = () if shape is None else tuple(int(d) for d in shape)
        if regularizer is not None and not callable(regularizer):
            raise ValueError(f"{where}: `regularizer` must be a callable `fn(weight) -> scalar`; got {regularizer!r}")
        kind = TrainableVariable if trainable else NonTrainableVariable
        metadata = {"name": name}  # None: named after the attribute that holds it (see __setattr__)
        if regularizer is not None:
            metadata["regularizer"] = regularizer
        if constraint is not None:
            metadata["constraint"] = constraint
        frames = _build_stack.__dict__.get("weights")
        building = bool(frames) and frames[-1][0] is self
        if key is None:
            key = self._weight_key(frames[-1][2] if building else None)
        if building:
            variable = kind(jax.ShapeDtypeStruct(shape, dtype), **metadata)
            frames[-1][1].append((variable, init, shape, dtype, as_key(key)))
            return variable
        with jax.ensure_compile_time_eval():  # created in __init__ or inside a trace: a concrete value
            return kind(init(as_key(key), shape, dtype), **metadata)

    def _weight_key(self, build_frame):
        """The key of a weight created without one (see `add_weight`)."""
        if build_frame is not None:
            build_frame[1] += 1
            return jax.random.fold_in(jax.random.fold_in(build_frame[0], _WEIGHT_STREAM), build_frame[1])
        if self._init_seed is None:
            return as_key(None)
        self._init_weight_count += 1
        return jax.random.fold_in(jax.random.fold_in(_seed_to_key(self._init_seed), _WEIGHT_STREAM),
                                  self._init_weight_count + 2**20)

    def add_loss(self, loss) -> None:
        """Adds `sum(loss)` to the training objective of the current forward pass (Keras's `add_loss`).

        Call it inside `call`. `fit`/`evaluate` add the collected values to the loss (see
        `call_with_added_losses`); `layer.losses` lists those of the layer's last call.
        """
        value = jnp.sum(jnp.asarray(loss))
        if not jnp.issubdtype(value.dtype, jnp.floating):
            value = value.astype(jnp.float32)
        _record_loss(self, value)

    @property
    def losses(self) -> list:
        """The values added by `add_loss` during the last call of this layer and its sublayers."""
        out = list(_layer_losses.get(self, ()))
        for sub in self._sublayers():
            if isinstance(sub, Layer):
                out.extend(sub.losses)
        return out

    # -- machinery ---------------------------------------------------------------------
    def ensure_built(self, input_shape, key=None, dtype=None, *, example=None) -> None:
        """Builds the layer for `input_shape` if it is not built yet.

        Args:
          input_shape: a shape (batch axis included) or a tuple/list/dict of shapes.
          key: the build key (default: the layer's seed, its parent's key or the global seed).
          dtype: dtype of the example inputs used to build sublayers (float32 by default).
          example: `(args, kwargs)` of the call being made, as `ShapeDtypeStruct`s; sublayers that
            `build` leaves unbuilt are built by calling the layer on zeros of these.
        """
        if self.built:
            return
        single = _is_shape(input_shape)
        input_shape = tuple(input_shape) if single else input_shape
        if single:
            self._check_rank(input_shape)
        if key is None and self._init_seed is not None:
            key = _seed_to_key(self._init_seed)
        if key is None:
            key = _child_key()
        # Even when first called inside jit/grad, the weights are made as concrete values.
        with jax.ensure_compile_time_eval():
            key = as_key(key)
            with _building(key):
                with _collecting_weights(self, key) as pending:
                    if _build_takes_key(type(self)):
                        self.build(input_shape, key)
                    else:
                        self.build(input_shape)
                if pending:
                    _materialise(pending)
                self.built_input_shape = _map_shapes(lambda s: (None,) + s[1:] if s else s, input_shape)
                self.built = True
                if self._has_unbuilt_sublayers():
                    try:
                        self._build_sublayers(input_shape, dtype, example)
                    except BaseException:
                        self.built = False
                        raise

    def _has_unbuilt_sublayers(self) -> bool:
        return any(isinstance(sub, Layer) and not sub.built for sub in self._sublayers())

    def _build_sublayers(self, input_shape, dtype, example) -> None:
        """Keras builds sublayers by a symbolic call; here: one call on zeros of the input's shapes."""
        if example is None:
            def spec(s):
                return jax.ShapeDtypeStruct(tuple(1 if d is None else d for d in s), jnp.dtype(dtype or jnp.float32))

            example = ((_map_shapes(spec, input_shape),), {})
        args, kwargs = jax.tree.map(_zeros, example)
        kwargs = {k: v for k, v in kwargs.items() if k not in ("training", "key")}
        with call_frame(False, None), collecting_added_losses():
            self.call(*args, **kwargs, **self._call_kwargs(False, None))

    def _call_kwargs(self, training, key) -> dict:
        """`training`/`key` keyword arguments for this class's `call`, only those it accepts."""
        spec = _call_spec(type(self))
        kwargs = {}
        if spec.training and (training is not None or spec.training_required):
            kwargs["training"] = bool(training)
        if spec.key:
            kwargs["key"] = key
        return kwargs

    def _check_rank(self, shape) -> None:
        shape = tuple(shape)
        if self._ndim is not None and len(shape) != self._ndim:
            raise ValueError(
                f'Input 0 of layer "{self.name}" is incompatible with the layer: expected ndim={self._ndim}, '
                f"found ndim={len(shape)}. Full shape received: {shape_str(shape)}"
            )
        if self._min_ndim is not None and len(shape) < self._min_ndim:
            raise ValueError(
                f'Input 0 of layer "{self.name}" is incompatible with the layer: expected min_ndim={self._min_ndim}, '
                f"found ndim={len(shape)}. Full shape received: {shape_str(shape)}"
            )

    def _check_input(self, x) -> None:
        expected = self.built_input_shape
        if not hasattr(x, "shape") or (expected is not None and not _is_shape(expected)):
            return  # nested inputs: each sublayer checks its own
        shape = tuple(x.shape)
        self._check_rank(shape)
        if expected is None:
            return
        if len(shape) != len(expected) and self._checked_axes == "all":
            raise ValueError(
                f'Input 0 of layer "{self.name}" is incompatible with the layer: expected ndim={len(expected)}, '
                f"found ndim={len(shape)}. Full shape received: {shape_str(shape)}"
            )
        axes = range(1, len(expected)) if self._checked_axes == "all" else self._checked_axes
        for axis in axes:
            if abs(axis) > len(shape) - (0 if axis < 0 else 1) or abs(axis) > len(expected):
                continue
            want = expected[axis]
            if want is not None and shape[axis] != want:
                raise ValueError(
                    f'Input 0 of layer "{self.name}" is incompatible with the layer: expected axis {axis} of input '
                    f"shape to have value {want}, but received input with shape {shape_str(shape)}"
                )

    def first_sublayer(self) -> Layer | None:
        """The sublayer that sees this layer's input first (containers override it)."""
        return None

    def check_host_inputs(self, x) -> None:
        """Checks a whole dataset's inputs on the host before anything is compiled.

        `fit`, `evaluate` and `predict` call it with the full input arrays, so a
        value that the compiled step could not report (an `Embedding` id out of
        range) fails before training. Containers delegate to `first_sublayer()`.
        """
        first = self.first_sublayer()
        if first is not None:
            first.check_host_inputs(x)

    @_route_symbolic  # functional API hook
    def __call__(self, *args, training: bool | None = None, key=None, **kwargs):
        """Builds on first use, checks the input shape, then runs `call`.

        Args:
          *args: the inputs (an array, or a tuple/list/dict of arrays), then any further positional
            arguments of `call`.
          training: Keras's flag; when None, the enclosing layer call's flag.
          key: PRNG key for stochastic layers; when None, one derived from the enclosing call's key.
          **kwargs: further keyword arguments of `call` (`mask=`, ...).
        """
        if not args:
            raise TypeError(f'Layer "{self.name}": missing the inputs (call the layer as `layer(inputs)`)')
        x = args[0]
        frame = current_call_frame()
        if training is None and frame is not None:
            training = frame.training
        if key is None:
            key = next_call_key()
        if not self.built:
            if not self._pytree__state.trace_state.is_valid():
                raise RuntimeError(
                    f'Layer "{self.name}" is called for the first time inside a jax.jit/grad/vmap trace of a function that '
                    "closes over it; Flax modules cannot be modified from inside such a trace, so the layer cannot build "
                    "there. Call it once outside the trace first (`layer(example_inputs)`), or pass it through `nnx.jit`"
                )
            shapes = jax.tree.map(lambda a: tuple(a.shape) if hasattr(a, "shape") else tuple(np.shape(a)), x)
            self.ensure_built(shapes, example=jax.tree.map(_spec, (args, kwargs)))
        else:
            self._check_input(x)
        _layer_losses[self] = []
        call_kwargs = {**kwargs, **self._call_kwargs(training, key)}
        y = self._run_call(args, call_kwargs, training, key)
        self._add_penalties(y)
        if self.built_output_shape is None and hasattr(y, "shape") and not isinstance(y, jax.core.Tracer):
            self.built_output_shape = (None,) + tuple(y.shape[1:])  # (a traced call may not mutate the layer)
        return y

    def _add_penalties(self, outputs) -> None:
        """Activity and weight regularizers, as Keras adds them to the layer's losses."""
        if self.activity_regularizer is not None:  # Keras 3: per output, divided by its batch size
            for output in jax.tree.leaves(outputs):
                if isinstance(output, jax.Array):
                    penalty = self.activity_regularizer(output)
                    if output.ndim > 0:
                        size = jnp.asarray(output.shape[0], jnp.result_type(penalty))
                        penalty = jnp.where(size != 0, penalty / jnp.where(size != 0, size, 1), 0)
                    self.add_loss(penalty)
        self._add_weight_penalties()

    def _add_weight_penalties(self) -> None:
        """The regularizers of this layer's own weights, once per loss collection (a forward pass); an eager call
        outside any collection records them in `layer.losses`, as Keras's `layer.losses` holds them."""
        collector = _current_collector()
        if collector is not None:
            if id(self) in collector.regularized:
                return
            collector.regularized.add(id(self))
        for variable in self._own_variables():
            regularizer = getattr(variable, "regularizer", None) if isinstance(variable, _KerasVariableMethods) else None
            if regularizer is not None:
                self.add_loss(regularizer(variable.get_value()))

    def _invoke(self, *args, **kwargs):
        """Runs `self.call(*args, **kwargs)`, compiled for concrete inputs when `_jit_eager_calls` is set.

        Array arguments (and `key`, `initial_state`, masks) are traced; other keyword arguments
        (`training`, flags) are static. Variables the call updates (BatchNorm statistics) are written
        back to the layer, as an eager call would. Sublayers called inside see this call's `training`
        and key (`key=` or `rng=`).
        """
        spec = _call_spec(type(self))
        if not spec.var_keyword:
            kwargs = {k: v for k, v in kwargs.items() if k in spec.names or k not in ("training", "key")}
        return self._run_call(args, kwargs, kwargs.get("training"), _frame_key(kwargs))

    def _run_call(self, args, kwargs, training, key):
        if not self._jit_eager_calls or _has_tracer((args, kwargs)) or _inside_a_trace():
            with call_frame(training, key):
                return self.call(*args, **kwargs)
        dynamic = {k: v for k, v in kwargs.items() if _is_array_tree(v)}
        static = tuple(sorted((k, v) for k, v in kwargs.items() if k not in dynamic))
        graphdef, state = nnx.split(self)
        try:
            fn = _compiled_call(graphdef, static, training)
        except TypeError:  # an unhashable static argument: run eagerly
            with call_frame(training, key):
                return self.call(*args, **kwargs)
        out, new_state = fn(state, args, dynamic, key)
        nnx.update(self, new_state)
        return out

    # -- introspection -----------------------------------------------------------------
    def _recorded(self, what: str):
        calls = _recorded_calls.get(self, [])
        if not calls:
            raise AttributeError(
                f'Layer "{self.name}" has never been called on symbolic inputs (`nj.Input`) and thus has no defined {what}'
            )
        inputs, outputs = calls[0]
        return inputs if what == "input" else outputs

    @property
    def output(self):
        """Keras's `layer.output`: the symbolic output of the layer's first call in a functional graph."""
        return self._recorded("output")

    @property
    def input(self):
        """Keras's `layer.input`: the symbolic input of the layer's first call in a functional graph."""
        return self._recorded("input")

    def _attribute_values(self):
        return [v for k, v in vars(self).items() if not k.startswith("_pytree__")]

    def _own_variables(self) -> list:
        return [c for v in self._attribute_values() for c in _children(v) if isinstance(c, nnx.Variable)]

    def _sublayers(self) -> list:
        return [c for v in self._attribute_values() for c in _children(v) if isinstance(c, nnx.Module)]

    @property
    def weights(self) -> list:
        """Every weight, as Keras orders them: this layer's own (in creation order), then each sublayer's."""
        out, seen = [], set()

        def add(variable):
            if id(variable) not in seen:
                seen.add(id(variable))
                out.append(variable)

        for variable in self._own_variables():
            add(variable)
        for sub in self._sublayers():
            if isinstance(sub, Layer):
                for variable in sub.weights:
                    add(variable)
            else:
                for _, variable in nnx.iter_graph(sub):
                    if isinstance(variable, nnx.Variable):
                        add(variable)
        return out

    @property
    def variables(self) -> list:
        return self.weights

    @property
    def trainable_weights(self) -> list:
        """The `nnx.Param`s of `weights` (trained by the optimizer); none when `trainable` is False (Keras)."""
        if not self.trainable:
            return []
        return [v for v in self.weights if isinstance(v, nnx.Param)]

    @property
    def non_trainable_weights(self) -> list:
        """The other variables of `weights` (BatchNorm statistics, `add_weight(trainable=False)`); all of them
        when `trainable` is False."""
        if not self.trainable:
            return list(self.weights)
        return [v for v in self.weights if not isinstance(v, nnx.Param)]

    @property
    def trainable_variables(self) -> list:
        return self.trainable_weights

    @property
    def non_trainable_variables(self) -> list:
        return self.non_trainable_weights

    def get_weights(self) -> list[np.ndarray]:
        """Host copies of `weights`, in that order."""
        return [np.asarray(v.get_value()) for v in self.weights]

    def set_weights(self, weights: Sequence) -> None:
        """Replaces the values of `weights`, in that order.

        Raises:
          ValueError: if the number of arrays or a shape differs.
        """
        variables = self.weights
        weights = list(weights)
        if len(weights) != len(variables):
            raise ValueError(
                f'Layer "{self.name}": set_weights expected {len(variables)} arrays (the layer\'s weights); '
                f"received {len(weights)}"
            )
        for index, (variable, value) in enumerate(zip(variables, weights, strict=True)):
            value = np.asarray(value)
            if value.shape != tuple(variable.shape):
                raise ValueError(
                    f'Layer "{self.name}": set_weights: weight {index} must have shape {tuple(variable.shape)}; '
                    f"received shape {value.shape}"
                )
            variable.set_value(jnp.asarray(value, dtype=variable.dtype))

    def count_params(self) -> int:
        """Number of scalars in this layer's variables (trainable and not)."""
        state = nnx.state(self, nnx.Variable)
        return int(sum(np.prod(np.shape(a)) for a in jax.tree.leaves(state)))

    def get_config(self) -> dict:
        """Keras's base config: `name`, `trainable`, `dtype` (and `activity_regularizer` when set, in Keras's
        serialized form); subclasses add their constructor arguments.

        A class that does not override `get_config` also gets the arguments it was constructed with (Keras 3's
        automatic config), so `type(layer).from_config(layer.get_config())` rebuilds it.
        """
        config = {"name": self.name, "trainable": self.trainable, "dtype": self.param_dtype.name}
        if getattr(self, "activity_regularizer", None) is not None:
            config["activity_regularizer"] = regularizers.serialize(self.activity_regularizer)
        if type(self).get_config is Layer.get_config:
            from nnjax.layers.init_args import init_arguments

            for key, value in (init_arguments(self) or {}).items():
                if key not in config and key != "key":
                    config[key] = value
        return config

    def _penalty_config(self) -> dict:
        """The weight options' `{prefix}_regularizer` / `{prefix}_constraint` and `activity_regularizer`, serialized as
        Keras's `get_config` writes them: every weight option (None when unset) and the activity regularizer of a
        layer with weight options; for other layers the activity regularizer only when set (Keras's base `Layer`)."""
        config = {}
        for prefix, _ in type(self)._weight_options:
            config[f"{prefix}_regularizer"] = regularizers.serialize(getattr(self, f"{prefix}_regularizer", None))
            config[f"{prefix}_constraint"] = constraints.serialize(getattr(self, f"{prefix}_constraint", None))
        activity = getattr(self, "activity_regularizer", None)
        if (type(self)._weight_options and type(self)._activity_in_config) or activity is not None:
            config["activity_regularizer"] = regularizers.serialize(activity)
        return config

    @classmethod
    def from_config(cls, config: dict):
        """`cls(**config)`, as Keras's default `from_config`."""
        return cls(**config)


def _with_penalty_config(get_config):
    """`get_config` plus the layer's regularizers and constraints in Keras's serialized form (`Layer._penalty_config`)."""

    @functools.wraps(get_config)
    def with_penalties(self) -> dict:
        return {**get_config(self), **self._penalty_config()}

    with_penalties._with_penalties = True
    return with_penalties


def layer_from_config(value, where: str):
    """A layer given to a wrapper's `from_config`: a layer as is, or Keras's `{"class_name", "config"}` of one of
    nnjax's layers (what `get_config` writes for a wrapped layer).

    Raises:
      ValueError: for a dict that names no nnjax layer class.
    """
    if not isinstance(value, dict):
        return value
    name = value.get("class_name")
    cls = _LAYER_CLASSES.get(name)
    if cls is None:
        raise ValueError(f"{where}: expected a layer or a layer config {{'class_name': ..., 'config': ...}} naming an "
                         f"nj.layers class; got class_name {name!r}")  # fmt: skip
    return cls.from_config(dict(value.get("config", {})))


def layer_config(layer) -> dict:
    """Keras's serialized form of a wrapped nnjax layer: `{"module", "class_name", "config", "registered_name"}`."""
    return {"module": "keras.layers", "class_name": type(layer).__name__, "config": layer.get_config(),
            "registered_name": None}  # fmt: skip


_LAYER_CLASSES: dict[str, type] = {}  # nnjax's public layer classes by name (wrappers' from_config)
Layer.__init__ = recording_init(Layer.__init__)  # a subclass without its own __init__ records its arguments too
_show_init_signature(Layer)


def _param_dtype(dtype, where: str):
    """A layer's parameter dtype from a dtype, a Keras dtype-policy name or a serialized policy."""
    if dtype is None:
        return jnp.dtype(jnp.float32)
    if isinstance(dtype, dict):  # Keras's serialized DTypePolicy: {"class_name": "DTypePolicy", "config": {"name": ...}}
        dtype = dtype.get("config", {}).get("name", dtype)
    name = getattr(dtype, "name", dtype) if not isinstance(dtype, str) else dtype
    if isinstance(name, str) and name.startswith("mixed_"):
        raise ValueError(
            f"{where}: per-layer mixed-precision policy {name!r} is not supported; use "
            f"`model.compile(dtype_policy={name!r})` for the whole model"
        )
    try:
        return jnp.dtype(name)
    except TypeError as err:
        raise ValueError(f"{where}: `dtype` must be a dtype or a dtype name such as 'float32'; got {dtype!r}") from err


def param(key, shape, initializer, dtype) -> nnx.Param:
    """An `nnx.Param` initialised by `initializer(key, shape, dtype)`."""
    return nnx.Param(initializer(key, shape, dtype))


__all__ = [
    "Layer",
    "NonTrainableVariable",
    "TrainableVariable",
    "call_with_added_losses",
    "collecting_added_losses",
    "is_building",
    "param",
    "shape_str",
    "snake_case",
    "unique_name",
]
