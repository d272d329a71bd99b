"""Core layers: Dense, Flatten, Reshape, Activation, Dropout, InputLayer."""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp

from nnjax import activations, initializers
from nnjax.layers.base import Layer, shape_str
from nnjax.layers.utils import check_data_format


def _same_float(w, x):
    """Casts a parameter to the input's floating dtype so bf16 in gives bf16 out."""
    return w.astype(x.dtype) if jnp.issubdtype(x.dtype, jnp.floating) else w


class Dense(Layer):
    """A fully connected layer: `activation(x @ kernel + bias)`.

    The input width is inferred on the first call (or from `input_shape=`).

    Args:
      units: output width.
      activation: a name ("relu", "softmax", ...) or callable; linear when None.
      use_bias: whether to add a bias.
      kernel_initializer / bias_initializer: Keras names or callables.

    Input `(batch, ..., in_features)`, output `(batch, ..., units)`.
    Parameter count: `in_features * units + units`.
    """

    supports_masking = True  # passes its input's mask on (Keras)

    _checked_axes = (-1,)
    _min_ndim = 2
    _jit_eager_calls = True
    _weight_options = (("kernel", "kernel"), ("bias", "bias"))
    _activity_in_config = False  # Keras's Dense writes `activity_regularizer` only when set

    def __init__(self, units: int, activation=None, use_bias: bool = True, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", **kwargs):
        super().__init__(**kwargs)
        if not isinstance(units, int) or isinstance(units, bool) or units <= 0:
            raise ValueError(f'Dense "{self.name}": `units` must be a positive int; got {units!r}')
        self.units = units
        self.activation = activations.get(activation, where=f'Dense "{self.name}"')
        self.use_bias = use_bias
        self.kernel_initializer = initializers.get(kernel_initializer, where=f'Dense "{self.name}"')
        self.bias_initializer = initializers.get(bias_initializer, where=f'Dense "{self.name}"')

    def build(self, input_shape, key):
        kernel_key, bias_key = jax.random.split(key)
        self.kernel = self.add_weight((input_shape[-1], self.units), self.kernel_initializer, key=kernel_key)
        if self.use_bias:
            self.bias = self.add_weight((self.units,), self.bias_initializer, key=bias_key)

    def call(self, x, *, training=False, key=None):
        y = x @ _same_float(self.kernel[...], x)
        if self.use_bias:
            y = y + _same_float(self.bias[...], y)
        return self.activation(y)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.units,)

    def get_config(self):
        return {"name": self.name, "units": self.units, "activation": activations.name_of(self.activation)}


class Flatten(Layer):
    """Flattens every axis but the batch axis: `(batch, d1, d2, ...) -> (batch, d1*d2*...)`.

    Args:
      data_format: "channels_last" (default) or "channels_first". With "channels_first" the channel
        axis 1 is moved last before flattening (Keras's rule), so the flattened order is that of the
        channels_last layout and a following `Dense` sees the same features either way.
    """

    _jit_eager_calls = True

    def __init__(self, data_format: str | None = None, **kwargs):
        super().__init__(**kwargs)
        self.data_format = check_data_format(data_format, f'Flatten "{self.name}"')

    def call(self, x, *, training=False, key=None):
        if self.data_format == "channels_first" and x.ndim > 2:
            x = jnp.moveaxis(x, 1, -1)
        return jnp.reshape(x, (x.shape[0], -1))

    def compute_output_shape(self, input_shape):
        rest = input_shape[1:]
        return (input_shape[0], None if any(d is None for d in rest) else math.prod(rest))

    def get_config(self):
        return super().get_config() | {"data_format": self.data_format}


class Reshape(Layer):
    """Reshapes each example to `target_shape` (one entry may be -1)."""

    _jit_eager_calls = True

    def __init__(self, target_shape: Sequence[int], **kwargs):
        super().__init__(**kwargs)
        self.target_shape = tuple(int(d) for d in target_shape)

    def build(self, input_shape, key):
        size = math.prod(input_shape[1:])
        target = self.target_shape
        known = math.prod(d for d in target if d != -1)
        if (-1 not in target and known != size) or (-1 in target and size % known):
            raise ValueError(
                f'Reshape "{self.name}": cannot reshape input of shape {shape_str((None,) + tuple(input_shape[1:]))} '
                f"({size} values per example) to target_shape {target}"
            )

    def call(self, x, *, training=False, key=None):
        return jnp.reshape(x, (x.shape[0],) + self.target_shape)


class Activation(Layer):
    """Applies an activation by name or callable."""

    supports_masking = True  # passes its input's mask on (Keras)

    _checked_axes = ()
    _jit_eager_calls = True

    def __init__(self, activation, **kwargs):
        super().__init__(**kwargs)
        self.activation = activations.get(activation, where=f'Activation "{self.name}"')

    def call(self, x, *, training=False, key=None):
        return self.activation(x)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)


class Dropout(Layer):
    """Zeroes a fraction `rate` of inputs during training and rescales the rest by `1 / (1 - rate)`.

    Randomness comes from the `key` passed to `__call__` (the training step passes
    `fold_in(state.rng, step)`, split per layer). In inference it is the identity.

    Args:
      rate: fraction to drop, in [0, 1).
      noise_shape: optional broadcast shape of the mask, as in Keras.
    """

    supports_masking = True  # passes its input's mask on (Keras)

    _checked_axes = ()
    _jit_eager_calls = True

    def __init__(self, rate: float, noise_shape=None, **kwargs):
        super().__init__(**kwargs)
        if not 0.0 <= float(rate) < 1.0:
            raise ValueError(f'Dropout "{self.name}": `rate` must be in [0, 1); got {rate!r}')
        self.rate = float(rate)
        self.noise_shape = None if noise_shape is None else tuple(noise_shape)

    def call(self, x, *, training=False, key=None):
        if not training or self.rate == 0.0:
            return x
        if key is None:
            raise ValueError(
                f'Dropout "{self.name}": training=True needs a PRNG key; call layer(x, training=True, key=key) '
                "(fit and train_step pass one for you)"
            )
        shape = x.shape if self.noise_shape is None else tuple(
            x.shape[i] if d is None else d for i, d in enumerate(self.noise_shape)
        )
        keep = jax.random.bernoulli(key, 1.0 - self.rate, shape)
        return jnp.where(keep, x / (1.0 - self.rate), jnp.zeros_like(x)).astype(x.dtype)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)


class InputLayer(Layer):
    """Declares the input shape of a `Sequential` model (Keras's `Input(shape=...)`)."""

    def __init__(self, shape: Sequence[int] | None = None, *, input_shape=None, dtype=None, **kwargs):
        shape = shape if shape is not None else input_shape
        super().__init__(input_shape=shape, **kwargs)
        self.input_dtype = None if dtype is None else jnp.dtype(dtype).name

    def call(self, x, *, training=False, key=None):
        return x

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)


def Input(shape: Sequence[int], dtype=None, name: str | None = None) -> InputLayer:  # noqa: N802 - Keras name
    """Keras's `Input(shape=...)`, usable as the first entry of `Sequential`."""
    return InputLayer(shape, dtype=dtype, name=name)


__all__ = ["Activation", "Dense", "Dropout", "Flatten", "Input", "InputLayer", "Reshape"]
