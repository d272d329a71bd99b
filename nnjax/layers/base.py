"""`Layer`: a Flax NNX module that builds itself from its first input, as in Keras."""

from __future__ import annotations

import collections
import re
import threading
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

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
    name = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name).lower().replace("__", "_")


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
    """

    # Which input axes `__call__` checks against the built shape: "all" or a tuple of axes.
    _checked_axes: Any = "all"
    _min_ndim: int | None = None

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

    # -- machinery ---------------------------------------------------------------------
    def ensure_built(self, input_shape, key=None, dtype=None) -> None:
        """Builds the layer for `input_shape` if it is not built yet."""
        if self.built:
            return
        input_shape = tuple(input_shape)
        if self._min_ndim is not None and len(input_shape) < self._min_ndim:
            raise ValueError(
                f'Input 0 of layer "{self.name}" is incompatible with the layer: expected min_ndim={self._min_ndim}, '
                f"found ndim={len(input_shape)}. Full shape received: {shape_str(input_shape)}"
            )
        if key is None:
            key = _seed_to_key(self._init_seed) if self._init_seed is not None else as_key(None)
        self.build(input_shape, as_key(key))
        self.built_input_shape = (None,) + tuple(input_shape[1:])
        self.built = True

    def _check_input(self, x) -> None:
        expected = self.built_input_shape
        shape = tuple(x.shape)
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

    def __call__(self, x, training: bool = False, key=None):
        """Builds on first use, checks the input shape, then runs `call`."""
        if not self.built:
            self.ensure_built(jnp.shape(x) if not hasattr(x, "shape") else x.shape)
        else:
            self._check_input(x)
        y = self.call(x, training=training, key=key)
        if self.built_output_shape is None and hasattr(y, "shape"):
            self.built_output_shape = (None,) + tuple(y.shape[1:])
        return y

    # -- introspection -----------------------------------------------------------------
    @property
    def trainable_weights(self) -> list:
        return [v.value for _, v in nnx.iter_graph(self) if isinstance(v, nnx.Param)] if self.built else []

    def count_params(self) -> int:
        """Number of scalars in this layer's variables (trainable and not)."""
        state = nnx.state(self, nnx.Variable)
        return int(sum(np.prod(np.shape(a)) for a in jax.tree.leaves(state)))

    def get_config(self) -> dict:
        return {"name": self.name}


def param(key, shape, initializer, dtype) -> nnx.Param:
    """An `nnx.Param` initialised by `initializer(key, shape, dtype)`."""
    return nnx.Param(initializer(key, shape, dtype))


__all__ = ["Layer", "param", "shape_str", "snake_case", "unique_name"]
