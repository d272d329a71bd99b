"""Merge layers: Add, Subtract, Multiply, Average, Maximum, Minimum, Concatenate.

Each takes a list of arrays, as in Keras: `nj.layers.Add()([x1, x2])`. They have no weights; use
them inside your own module (a residual block, a two-branch network).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from nnjax.layers.base import Layer, shape_str


class _Merge(Layer):
    _checked_axes = ()
    _jit_eager_calls = True
    _min_inputs = 2
    _max_inputs: int | None = None

    def _check_inputs(self, inputs) -> list:
        if not isinstance(inputs, (list, tuple)):
            raise ValueError(
                f'Layer "{self.name}" ({type(self).__name__}) expects a list of at least {self._min_inputs} arrays; '
                f"received a single input of type {type(inputs).__name__}"
            )
        inputs = list(inputs)
        count = len(inputs)
        if count < self._min_inputs or (self._max_inputs is not None and count > self._max_inputs):
            expected = self._min_inputs if self._max_inputs == self._min_inputs else f"at least {self._min_inputs}"
            raise ValueError(f'Layer "{self.name}" ({type(self).__name__}) expects {expected} inputs; received {count} inputs')
        return inputs

    def _check_shapes(self, shapes: list[tuple]) -> None:
        try:
            np.broadcast_shapes(*shapes)
        except ValueError:
            raise ValueError(
                f'Layer "{self.name}" ({type(self).__name__}): inputs must have the same (or broadcastable) shapes; '
                f"received shapes {', '.join(shape_str(s) for s in shapes)}"
            ) from None

    def __call__(self, inputs, training: bool = False, key=None):
        """Merges a list of arrays; see the class docstring."""
        inputs = self._check_inputs(inputs)
        self._check_shapes([tuple(jnp.shape(x)) for x in inputs])
        if not self.built:
            self.ensure_built(jnp.shape(inputs[0]))
        y = self._invoke(inputs, training=training, key=key)
        if self.built_output_shape is None and not isinstance(y, jax.core.Tracer):
            self.built_output_shape = (None,) + tuple(y.shape[1:])
        return y

    def compute_output_shape(self, input_shapes):
        shapes = [tuple(1 if d is None else d for d in s) for s in input_shapes]
        return (None,) + tuple(np.broadcast_shapes(*shapes)[1:])


class Add(_Merge):
    """Elementwise sum of a list of arrays of the same shape."""

    def call(self, inputs, *, training=False, key=None):
        return functools.reduce(lambda a, b: a + b, inputs)


class Subtract(_Merge):
    """`inputs[0] - inputs[1]` (exactly two inputs)."""

    _max_inputs = 2

    def call(self, inputs, *, training=False, key=None):
        return inputs[0] - inputs[1]


class Multiply(_Merge):
    """Elementwise product of a list of arrays."""

    def call(self, inputs, *, training=False, key=None):
        return functools.reduce(lambda a, b: a * b, inputs)


class Average(_Merge):
    """Elementwise mean of a list of arrays."""

    def call(self, inputs, *, training=False, key=None):
        return functools.reduce(lambda a, b: a + b, inputs) / len(inputs)


class Maximum(_Merge):
    """Elementwise maximum of a list of arrays."""

    def call(self, inputs, *, training=False, key=None):
        return functools.reduce(jnp.maximum, inputs)


class Minimum(_Merge):
    """Elementwise minimum of a list of arrays."""

    def call(self, inputs, *, training=False, key=None):
        return functools.reduce(jnp.minimum, inputs)


class Concatenate(_Merge):
    """Joins a list of arrays along `axis` (-1); every other axis must match.

    Example:
      >>> y = nj.layers.Concatenate()([a, b])  # (B, 3) and (B, 5) -> (B, 8)
    """

    def __init__(self, axis: int = -1, **kwargs):
        super().__init__(**kwargs)
        self.axis = int(axis)

    def _check_shapes(self, shapes: list[tuple]) -> None:
        ranks = {len(s) for s in shapes}
        bad = len(ranks) != 1
        if not bad:
            ndim = ranks.pop()
            if not -ndim <= self.axis < ndim:
                raise ValueError(f'Layer "{self.name}" (Concatenate): `axis`={self.axis} is out of range for inputs of rank {ndim}')
            axis = self.axis % ndim
            bad = any(tuple(d for i, d in enumerate(s) if i != axis) != tuple(d for i, d in enumerate(shapes[0]) if i != axis)
                      for s in shapes)
        if bad:
            raise ValueError(
                f'Layer "{self.name}" (Concatenate): expected inputs with matching shapes except for the concatenation '
                f"axis {self.axis}; received shapes {', '.join(shape_str(s) for s in shapes)}"
            )

    def call(self, inputs, *, training=False, key=None):
        return jnp.concatenate(inputs, axis=self.axis)

    def compute_output_shape(self, input_shapes):
        first = list(input_shapes[0])
        sizes = [s[self.axis] for s in input_shapes]
        first[self.axis] = None if any(d is None for d in sizes) else sum(sizes)
        return tuple(first)

    def get_config(self) -> dict:
        return {"name": self.name, "axis": self.axis}


__all__ = ["Add", "Average", "Concatenate", "Maximum", "Minimum", "Multiply", "Subtract"]
