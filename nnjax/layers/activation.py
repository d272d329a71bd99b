"""Activation layers: ReLU, LeakyReLU, PReLU, ELU, Softmax, Identity, with Keras's arguments and defaults."""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp

from nnjax import initializers
from nnjax.layers.base import Layer, shape_str
from nnjax.layers.utils import cast_like


class _Elementwise(Layer):
    """A layer whose output has its input's shape and dtype."""

    supports_masking = True  # passes its input's mask on (Keras)

    _checked_axes = ()
    _jit_eager_calls = True

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)


def _non_negative(value, arg: str, where: str, allow_none: bool = False):
    if value is None and allow_none:
        return None
    if value is None or isinstance(value, bool) or not float(value) >= 0.0:
        raise ValueError(f"{where}: `{arg}` must be a non-negative number; got {value!r}")
    return float(value)


class ReLU(_Elementwise):
    """Rectified linear unit with Keras's optional slope, ceiling and threshold.

    `f(x) = max_value` for `x >= max_value`, `x` for `threshold <= x < max_value`,
    `negative_slope * (x - threshold)` otherwise.

    Args:
      max_value: the ceiling of the output (None: no ceiling).
      negative_slope: slope below the threshold (0.0).
      threshold: values below it are damped (0.0).

    Input any shape `(batch, ...)`; output the same shape and dtype.
    """

    def __init__(self, max_value: float | None = None, negative_slope: float = 0.0, threshold: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        where = f'ReLU "{self.name}"'
        self.max_value = _non_negative(max_value, "max_value", where, allow_none=True)
        self.negative_slope = _non_negative(negative_slope, "negative_slope", where)
        self.threshold = _non_negative(threshold, "threshold", where)

    def call(self, x, *, training=False, key=None):
        # Keras's formula (keras.activations.relu), term by term.
        negative = jax.nn.relu(self.threshold - x) if self.negative_slope != 0.0 else None
        y = jnp.where(x > self.threshold, x, jnp.zeros_like(x)) if self.threshold != 0.0 else jax.nn.relu(x)
        if self.max_value is not None:
            y = jnp.clip(y, 0.0, self.max_value).astype(x.dtype)
        if negative is not None:
            y = y - jnp.asarray(self.negative_slope, x.dtype) * negative
        return y

    def get_config(self) -> dict:
        return {"name": self.name, "max_value": self.max_value, "negative_slope": self.negative_slope,
                "threshold": self.threshold}


class LeakyReLU(_Elementwise):
    """Leaky ReLU: `x` for `x >= 0`, `negative_slope * x` otherwise.

    Args:
      negative_slope: slope for negative inputs (0.3, Keras's default).
    """

    def __init__(self, negative_slope: float = 0.3, **kwargs):
        super().__init__(**kwargs)
        self.negative_slope = _non_negative(negative_slope, "negative_slope", f'LeakyReLU "{self.name}"')

    def call(self, x, *, training=False, key=None):
        return jax.nn.leaky_relu(x, negative_slope=self.negative_slope)

    def get_config(self) -> dict:
        return {"name": self.name, "negative_slope": self.negative_slope}


class PReLU(Layer):
    """Parametric ReLU: `max(x, 0) - alpha * max(-x, 0)` with a learned `alpha`.

    Args:
      alpha_initializer: initialiser of `alpha` ("zeros", Keras's default).
      shared_axes: input axes (1-based, the batch axis is 0) along which `alpha` is shared
        (size 1), e.g. `[1, 2]` for one slope per channel of an image.

    Weight `alpha` of shape `input_shape[1:]`, with the shared axes set to 1.
    """

    supports_masking = True  # passes its input's mask on (Keras)

    _jit_eager_calls = True

    def __init__(self, alpha_initializer="zeros", shared_axes: int | Sequence[int] | None = None, **kwargs):
        super().__init__(**kwargs)
        where = f'PReLU "{self.name}"'
        self.alpha_initializer = initializers.get(alpha_initializer, where=where)
        if shared_axes is None:
            self.shared_axes = None
        else:
            axes = [shared_axes] if isinstance(shared_axes, int) else list(shared_axes)
            if any(isinstance(a, bool) or not isinstance(a, int) or a < 1 for a in axes):
                raise ValueError(f"{where}: `shared_axes` must be positive ints (the batch axis is 0); got {shared_axes!r}")
            self.shared_axes = tuple(axes)

    def build(self, input_shape, key):
        shape = list(input_shape[1:])
        for axis in self.shared_axes or ():
            if axis >= len(input_shape):
                raise ValueError(
                    f'PReLU "{self.name}": `shared_axes` {self.shared_axes} is out of range for input of shape '
                    f"{shape_str((None,) + tuple(input_shape[1:]))}"
                )
            shape[axis - 1] = 1
        self.alpha = self.add_weight(tuple(shape), self.alpha_initializer, key=key)

    def call(self, x, *, training=False, key=None):
        return jax.nn.relu(x) - cast_like(self.alpha[...], x) * jax.nn.relu(-x)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self) -> dict:
        return {"name": self.name, "shared_axes": self.shared_axes}


class ELU(_Elementwise):
    """Exponential linear unit: `x` for `x > 0`, `alpha * (exp(x) - 1)` otherwise.

    Args:
      alpha: scale of the negative part (1.0).
    """

    def __init__(self, alpha: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        self.alpha = float(alpha)

    def call(self, x, *, training=False, key=None):
        return jax.nn.elu(x, alpha=self.alpha)

    def get_config(self) -> dict:
        return {"name": self.name, "alpha": self.alpha}


class Softmax(_Elementwise):
    """Softmax over `axis`, with Keras's optional `mask` (masked entries get probability 0).

    Args:
      axis: axis, or tuple of axes, to normalise over (-1).

    Call args:
      x: logits of any shape.
      mask: boolean (or 0/1) array broadcastable to `x`; False entries are excluded.
    """

    def __init__(self, axis: int | Sequence[int] = -1, **kwargs):
        super().__init__(**kwargs)
        self.axis = axis if isinstance(axis, int) else tuple(axis)

    def __call__(self, x, mask=None, training: bool = False, key=None):
        """Softmax of `x` (see the class docstring)."""
        if mask is None:
            return super().__call__(x, training=training, key=key)
        if not self.built:
            self.ensure_built(x.shape)
        mask = jnp.asarray(mask)
        try:
            jnp.broadcast_shapes(mask.shape, x.shape)
        except ValueError:
            raise ValueError(
                f'Softmax "{self.name}": `mask` must broadcast to the input; received mask of shape '
                f"{shape_str(mask.shape)} and input of shape {shape_str(x.shape)}"
            ) from None
        return self._invoke(x, mask=mask, training=training, key=key)

    def call(self, x, *, mask=None, training=False, key=None):
        if mask is not None:
            mask = mask if mask.dtype == jnp.bool_ else mask > 0.5
            x = jnp.where(mask, x, jnp.asarray(-3e4 if x.dtype == jnp.float16 else -1e9, x.dtype))
        if isinstance(self.axis, tuple) and len(self.axis) > 1:
            y = jnp.exp(x - jax.nn.logsumexp(x, axis=self.axis, keepdims=True))
        else:
            y = jax.nn.softmax(x, axis=self.axis if isinstance(self.axis, int) else self.axis[0])
        if mask is not None:
            y = jnp.where(mask, y, jnp.zeros_like(y))
        return y

    def get_config(self) -> dict:
        return {"name": self.name, "axis": self.axis}


class Identity(_Elementwise):
    """Returns its input unchanged (a placeholder layer, as Keras's `Identity`)."""

    def call(self, x, *, training=False, key=None):
        return x


__all__ = ["ELU", "Identity", "LeakyReLU", "PReLU", "ReLU", "Softmax"]
