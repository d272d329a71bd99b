"""`Layer`: a Flax NNX module that builds itself from its first input, as in Keras."""

from __future__ import annotations

import collections
import contextlib
import functools
import re
import threading
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from nnjax import initializers
from nnjax.utils.random import as_key

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
def _collecting_weights(layer):
    """Defers the `add_weight` calls of `layer.build` so that they run as one compiled program."""
    frames = _build_stack.__dict__.setdefault("weights", [])
    pending: list = []
    frames.append((layer, pending))
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


@functools.lru_cache(maxsize=512)
def _compiled_call(graphdef, static_kwargs: tuple):
    """One jitted `call` per layer structure and static keyword arguments (jit caches per input shape)."""

    def run(state, args, kwargs):
        module = nnx.merge(graphdef, state)
        out = module.call(*args, **kwargs, **dict(static_kwargs))
        return out, nnx.state(module)

    return jax.jit(run)


# --- functional API hook (nnjax.layers.functional) -------------------------------------------------
# Set by nnjax.layers.functional to `(any_symbolic, record_call)`: a layer called on symbolic tensors
# (`nj.Input`) records a graph node instead of computing. Every `__call__` of a Layer subclass is wrapped.
_symbolic_hook = None


def _route_symbolic(call):
    @functools.wraps(call)
    def __call__(self, *args, **kwargs):  # noqa: N807 - stands for the wrapped __call__
        hook = _symbolic_hook
        if hook is not None and hook[0](args, kwargs):
            return hook[1](self, call, args, kwargs)
        return call(self, *args, **kwargs)

    __call__._routes_symbolic = True
    return __call__
# --- end of functional API hook ---------------------------------------------------------------------


class Layer(nnx.Module):
    """Base class of nnjax layers: Keras's build/call split on a Flax NNX module.

    Subclasses implement `build(input_shape, key)` (create `nnx.Param`s from the
    input shape, batch axis included) and `call(x, training=False, key=None)`.
    The first `__call__` builds the layer from its input; later calls check the
    input against the built shape and raise a Keras-style error on a mismatch.

    Args:
      name: the layer's name (unique by default: "dense", "dense_1", ...).
      input_shape: shape of one example, without the batch axis; lets a model
        build before it sees data (Keras's `input_shape=`).
      key: PRNG key or int seed for the initialisers; drawn from the global seed
        (`nj.utils.set_random_seed`) when None.
      dtype: parameter dtype (float32 by default).

    Eager calls of nnjax's own layers run compiled: one XLA program per layer and input shape (cached),
    instead of one per operation, which makes a first standalone call several times faster. Inside
    `jit`/`vmap`/`grad` a layer is traced as usual. A subclass whose `call` is traceable may set
    `_jit_eager_calls = True` to get the same; the default (False) keeps a user's `call` eager, with
    Python control flow on values allowed.
    """

    _jit_eager_calls: bool = False

    def __init_subclass__(cls, **kwargs):  # functional API hook: route symbolic calls of every subclass
        super().__init_subclass__(**kwargs)
        call = cls.__dict__.get("__call__")
        if call is not None and not getattr(call, "_routes_symbolic", False):
            cls.__call__ = _route_symbolic(call)

    # Which input axes `__call__` checks against the built shape: "all" or a tuple of axes.
    _checked_axes: Any = "all"
    _min_ndim: int | None = None
    _ndim: int | None = None  # the exact rank the layer needs, batch axis included

    def __init__(self, *, name: str | None = None, input_shape: Sequence[int] | None = None, key=None, seed=None, dtype=jnp.float32):
        self.name = name or unique_name(snake_case(type(self).__name__))
        self.input_shape_hint = None if input_shape is None else tuple(int(d) for d in input_shape)
        self.param_dtype = jnp.dtype(dtype) if dtype is not None else jnp.dtype(jnp.float32)
        self.built = False
        self.built_input_shape = None  # batch axis as None
        self.built_output_shape = None
        self._init_seed = _key_seed(key if key is not None else seed)

    # -- to override -------------------------------------------------------------------
    def build(self, input_shape: tuple, key: jax.Array) -> None:
        """Creates the parameters for inputs of `input_shape` (batch axis included)."""

    def call(self, x, *, training: bool = False, key=None):
        raise NotImplementedError(f"{type(self).__name__} must implement call()")

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        """Output shape for `input_shape`, traced abstractly (no FLOPs, no parameters)."""
        x = jax.ShapeDtypeStruct(tuple(1 if d is None else d for d in input_shape), jnp.float32)
        out = jax.eval_shape(lambda v: self.call(v, training=False), x)
        return (None,) + tuple(out.shape[1:])

    def add_weight(self, shape: Sequence[int], initializer="glorot_uniform", *, key, dtype=None, trainable: bool = True) -> nnx.Variable:
        """Creates a weight, as Keras's `add_weight`: `self.kernel = self.add_weight((3, 4), "he_normal", key=k)`.

        Inside `build`, the weights are created together by one compiled program when `build`
        returns (one XLA compilation per layer instead of several per weight).

        Args:
          shape: the weight's shape.
          initializer: a Keras initialiser name or a callable `(key, shape, dtype) -> array`.
          key: PRNG key for the initialiser.
          dtype: the weight's dtype (the layer's `dtype` by default).
          trainable: an `nnx.Param` when True; an `nnx.BatchStat` (non-trainable state, kept in
            `TrainState.model_state`) when False.

        Returns:
          The `nnx.Param` / `nnx.BatchStat`.
        """
        init = initializers.get(initializer, where=f'Layer "{self.name}"')
        dtype = jnp.dtype(self.param_dtype if dtype is None else dtype)
        shape = tuple(int(d) for d in shape)
        kind = nnx.Param if trainable else nnx.BatchStat
        frames = _build_stack.__dict__.get("weights")
        if frames and frames[-1][0] is self:
            variable = kind(jax.ShapeDtypeStruct(shape, dtype))
            frames[-1][1].append((variable, init, shape, dtype, as_key(key)))
            return variable
        return kind(init(as_key(key), shape, dtype))

    # -- machinery ---------------------------------------------------------------------
    def ensure_built(self, input_shape, key=None, dtype=None) -> None:
        """Builds the layer for `input_shape` if it is not built yet."""
        if self.built:
            return
        input_shape = tuple(input_shape)
        self._check_rank(input_shape)
        if key is None and self._init_seed is not None:
            key = _seed_to_key(self._init_seed)
        if key is None:
            key = _child_key()
        key = as_key(key)
        with _building(key), _collecting_weights(self) as pending:
            self.build(input_shape, key)
        if pending:
            _materialise(pending)
        self.built_input_shape = (None,) + tuple(input_shape[1:])
        self.built = True

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
    def __call__(self, x, training: bool = False, key=None):
        """Builds on first use, checks the input shape, then runs `call`."""
        if not self.built:
            self.ensure_built(jnp.shape(x) if not hasattr(x, "shape") else x.shape)
        else:
            self._check_input(x)
        y = self._invoke(x, training=training, key=key)
        if self.built_output_shape is None and hasattr(y, "shape") and not isinstance(y, jax.core.Tracer):
            self.built_output_shape = (None,) + tuple(y.shape[1:])  # (a traced call may not mutate the layer)
        return y

    def _invoke(self, *args, **kwargs):
        """Runs `self.call(*args, **kwargs)`, compiled for concrete inputs when `_jit_eager_calls` is set.

        Array arguments (and `key`, `initial_state`, masks) are traced; other keyword arguments
        (`training`, flags) are static. Variables the call updates (BatchNorm statistics) are written
        back to the layer, as an eager call would.
        """
        if not self._jit_eager_calls or _has_tracer((args, kwargs)) or _inside_a_trace():
            return self.call(*args, **kwargs)
        dynamic = {k: v for k, v in kwargs.items() if _is_array_tree(v)}
        static = tuple(sorted((k, v) for k, v in kwargs.items() if k not in dynamic))
        graphdef, state = nnx.split(self)
        try:
            fn = _compiled_call(graphdef, static)
        except TypeError:  # an unhashable static argument: run eagerly
            return self.call(*args, **kwargs)
        out, new_state = fn(state, args, dynamic)
        nnx.update(self, new_state)
        return out

    # -- introspection -----------------------------------------------------------------
    @property
    def trainable_weights(self) -> list:
        return [v[...] for _, v in nnx.iter_graph(self) if isinstance(v, nnx.Param)] if self.built else []

    def count_params(self) -> int:
        """Number of scalars in this layer's variables (trainable and not)."""
        state = nnx.state(self, nnx.Variable)
        return int(sum(np.prod(np.shape(a)) for a in jax.tree.leaves(state)))

    def get_config(self) -> dict:
        return {"name": self.name}


def param(key, shape, initializer, dtype) -> nnx.Param:
    """An `nnx.Param` initialised by `initializer(key, shape, dtype)`."""
    return nnx.Param(initializer(key, shape, dtype))


__all__ = ["Layer", "is_building", "param", "shape_str", "snake_case", "unique_name"]
