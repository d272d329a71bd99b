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

    supports_masking = True

    def compute_mask(self, inputs, previous_mask=None):
        """Keras's rule for Add, Subtract, Multiply, Average, Maximum, Minimum: the OR of the masks,
        None when any input has none."""
        if previous_mask is None or not isinstance(previous_mask, (list, tuple)):
            return None
        if any(m is None for m in previous_mask):
            return None
        output = previous_mask[0]
        for m in previous_mask[1:]:
            output = jnp.logical_or(output, m)
        return output


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
      >>> a, b = np.ones((2, 3), np.float32), np.zeros((2, 5), np.float32)
      >>> nj.layers.Concatenate()([a, b]).shape
      (2, 8)
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

    def compute_mask(self, inputs, previous_mask=None):
        """Keras's rule: the inputs' masks (all True for an input without one) joined along `axis`,
        then reduced with `any` over the last axis."""
        if previous_mask is None or not isinstance(previous_mask, (list, tuple)):
            return None
        if all(m is None for m in previous_mask):
            return None
        masks = []
        for x, m in zip(inputs, previous_mask, strict=True):
            if m is None:
                masks.append(jnp.ones(jnp.shape(x), bool))
            elif jnp.ndim(m) < jnp.ndim(x):
                masks.append(jnp.broadcast_to(jnp.expand_dims(jnp.asarray(m, bool), -1), jnp.shape(x)))
            else:
                masks.append(jnp.asarray(m, bool))
        return jnp.any(jnp.concatenate(masks, axis=self.axis), axis=-1)

    def compute_output_shape(self, input_shapes):
        first = list(input_shapes[0])
        sizes = [s[self.axis] for s in input_shapes]
        first[self.axis] = None if any(d is None for d in sizes) else sum(sizes)
        return tuple(first)

    def get_config(self) -> dict:
        return {"name": self.name, "axis": self.axis}


class Dot(_Merge):
    """Dot product of two inputs along `axes` (per example), as Keras's `Dot`.

    Args:
      axes: an int or a pair of ints: the axis of each input to contract (the batch axis is 0 and
        never contracted).
      normalize: L2-normalise both inputs along `axes` first (the result is a cosine similarity).

    Input: two arrays `(batch, ...)`. Output: `(batch, rest_of_x, rest_of_y)`; a vector `(batch, 1)`
    when both inputs are `(batch, n)`.
    """

    def compute_mask(self, inputs, previous_mask=None):
        return None  # Keras: the product has no time axis to mask

    _min_inputs = 2
    _max_inputs = 2

    def __init__(self, axes, normalize: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.axes = tuple(int(a) for a in axes) if isinstance(axes, (list, tuple)) else int(axes)
        self.normalize = bool(normalize)

    def _check_shapes(self, shapes: list[tuple]) -> None:
        a_axis, b_axis = self._axes(shapes)
        if shapes[0][a_axis] is not None and shapes[1][b_axis] is not None and shapes[0][a_axis] != shapes[1][b_axis]:
            raise ValueError(
                f'Layer "{self.name}" (Dot): the contracted axes must have the same size; received shapes '
                f"{shape_str(shapes[0])} (axis {a_axis}) and {shape_str(shapes[1])} (axis {b_axis})"
            )

    def _axes(self, shapes) -> tuple[int, int]:
        axes = self.axes if isinstance(self.axes, tuple) else (self.axes, self.axes)
        return tuple(a % len(s) for a, s in zip(axes, shapes, strict=True))

    def call(self, inputs, *, training=False, key=None):
        x, y = inputs
        a_axis, b_axis = self._axes([x.shape, y.shape])
        if self.normalize:
            x = x / jnp.sqrt(jnp.maximum(jnp.sum(jnp.square(x), axis=a_axis, keepdims=True), 1e-12))
            y = y / jnp.sqrt(jnp.maximum(jnp.sum(jnp.square(y), axis=b_axis, keepdims=True), 1e-12))
        out = jax.vmap(lambda u, v: jnp.tensordot(u, v, axes=((a_axis - 1,), (b_axis - 1,))))(x, y)
        return out[:, None] if out.ndim == 1 else out

    def get_config(self) -> dict:
        return {"name": self.name, "axes": self.axes, "normalize": self.normalize}


# -- Keras's functional forms: `layers.add([x, y])` is `layers.Add()([x, y])` ---------------------------
def add(inputs, **kwargs):
    """`Add(**kwargs)(inputs)`: elementwise sum of a list of tensors."""
    return Add(**kwargs)(inputs)


def subtract(inputs, **kwargs):
    """`Subtract(**kwargs)(inputs)`: `inputs[0] - inputs[1]`."""
    return Subtract(**kwargs)(inputs)


def multiply(inputs, **kwargs):
    """`Multiply(**kwargs)(inputs)`: elementwise product of a list of tensors."""
    return Multiply(**kwargs)(inputs)


def average(inputs, **kwargs):
    """`Average(**kwargs)(inputs)`: elementwise mean of a list of tensors."""
    return Average(**kwargs)(inputs)


def maximum(inputs, **kwargs):
    """`Maximum(**kwargs)(inputs)`: elementwise maximum of a list of tensors."""
    return Maximum(**kwargs)(inputs)


def minimum(inputs, **kwargs):
    """`Minimum(**kwargs)(inputs)`: elementwise minimum of a list of tensors."""
    return Minimum(**kwargs)(inputs)


def concatenate(inputs, axis: int = -1, **kwargs):
    """`Concatenate(axis=axis, **kwargs)(inputs)`: joins a list of tensors along `axis`."""
    return Concatenate(axis=axis, **kwargs)(inputs)


def dot(inputs, axes=-1, normalize: bool = False, **kwargs):
    """`Dot(axes, normalize, **kwargs)(inputs)`: per-example dot product of two tensors."""
    return Dot(axes=axes, normalize=normalize, **kwargs)(inputs)


__all__ = ["Add", "Average", "Concatenate", "Dot", "Maximum", "Minimum", "Multiply", "Subtract", "add", "average", "concatenate",
           "dot", "maximum", "minimum", "multiply", "subtract"]
