"""Pooling: Max/AveragePooling1D/2D/3D and GlobalAverage/GlobalMaxPooling1D/2D/3D, as in Keras.

Windowed pools use `jax.lax.reduce_window`. With padding="same", an average counts only the
input positions inside its window (Keras's rule), and a max ignores the padding.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from nnjax.layers.base import Layer, shape_str
from nnjax.layers.utils import check_choice, check_data_format, normalize_tuple


class _Pooling(Layer):
    _jit_eager_calls = True
    rank: int = 2
    _reduce: str = "max"

    def __init__(self, pool_size=2, strides=None, padding: str = "valid", data_format: str | None = None, **kwargs):
        super().__init__(**kwargs)
        where = f'{type(self).__name__} "{self.name}"'
        self.pool_size = normalize_tuple(pool_size, self.rank, "pool_size", where)
        self.strides = self.pool_size if strides is None else normalize_tuple(strides, self.rank, "strides", where)
        self.padding = check_choice(padding, ("valid", "same"), "padding", where)
        self.data_format = check_data_format(data_format, where)
        self._ndim = self.rank + 2
        self._checked_axes = ()

    def _window(self, values) -> tuple[int, ...]:
        if self.data_format == "channels_last":
            return (1,) + tuple(values) + (1,)
        return (1, 1) + tuple(values)

    def _spatial(self, shape) -> tuple:
        return tuple(shape[1:-1]) if self.data_format == "channels_last" else tuple(shape[2:])

    def build(self, input_shape, key):
        if self.padding == "valid":
            for size, p in zip(self._spatial(input_shape), self.pool_size, strict=False):
                if size < p:
                    raise ValueError(
                        f'Input 0 of layer "{self.name}" is incompatible with the layer: with padding="valid" each spatial '
                        f"axis must be at least pool_size={self.pool_size}, but received input with shape "
                        f"{shape_str((None,) + tuple(input_shape[1:]))}"
                    )

    def call(self, x, *, training=False, key=None):
        window, strides, padding = self._window(self.pool_size), self._window(self.strides), self.padding.upper()
        if self._reduce == "max":
            # A concrete NumPy identity lets JAX recognise the max monoid (and differentiate the pool).
            init = np.array(-np.inf if jnp.issubdtype(x.dtype, jnp.floating) else jnp.iinfo(x.dtype).min, x.dtype)
            return jax.lax.reduce_window(x, init, jax.lax.max, window, strides, padding)
        total = jax.lax.reduce_window(x, np.array(0, x.dtype), jax.lax.add, window, strides, padding)
        if self.padding == "valid":
            return total / jnp.array(math.prod(self.pool_size), x.dtype)
        # Count the input positions inside each window (the padding is not counted).
        ones_shape = tuple(d if w != 1 else 1 for d, w in zip(x.shape, window, strict=False))
        counts = jax.lax.reduce_window(jnp.ones(ones_shape, x.dtype), np.array(0, x.dtype), jax.lax.add, window, strides, padding)
        return total / counts

    def compute_output_shape(self, input_shape):
        spatial = []
        for size, p, s in zip(self._spatial(input_shape), self.pool_size, self.strides, strict=False):
            if size is None:
                spatial.append(None)
            else:
                spatial.append(-(-size // s) if self.padding == "same" else (size - p) // s + 1)
        channels_last = self.data_format == "channels_last"
        return (input_shape[0],) + (tuple(spatial) + (input_shape[-1],) if channels_last else (input_shape[1],) + tuple(spatial))

    def get_config(self) -> dict:
        return {"name": self.name, "pool_size": self.pool_size, "strides": self.strides, "padding": self.padding,
                "data_format": self.data_format}


class MaxPooling1D(_Pooling):
    """Max over windows of `pool_size` steps: `(batch, steps, channels) -> (batch, new_steps, channels)`.

    Args:
      pool_size: window length (2).
      strides: step between windows; `pool_size` when None.
      padding: "valid" (new_steps = `(steps - pool_size) // strides + 1`) or "same" (`ceil(steps / strides)`).
      data_format: "channels_last" (default) or "channels_first".
    """

    rank = 1
    _reduce = "max"


class MaxPooling2D(_Pooling):
    """Max over `pool_size` windows of an image `(batch, h, w, channels)`.

    Args:
      pool_size: int or 2-tuple (2).
      strides: int or 2-tuple; `pool_size` when None.
      padding: "valid" (`(size - pool) // stride + 1`) or "same" (`ceil(size / stride)`).
      data_format: "channels_last" (default) or "channels_first".
    """

    rank = 2
    _reduce = "max"


class MaxPooling3D(_Pooling):
    """Max over `pool_size` windows of a volume `(batch, d, h, w, channels)`; arguments as `MaxPooling2D`."""

    rank = 3
    _reduce = "max"


class AveragePooling1D(_Pooling):
    """Mean over windows of `pool_size` steps; arguments and output shape as `MaxPooling1D`."""

    rank = 1
    _reduce = "average"


class AveragePooling2D(_Pooling):
    """Mean over `pool_size` windows of an image; arguments and output shape as `MaxPooling2D`.

    With padding="same", border windows average only the input positions they cover.
    """

    rank = 2
    _reduce = "average"


class AveragePooling3D(_Pooling):
    """Mean over `pool_size` windows of a volume; arguments as `MaxPooling2D`."""

    rank = 3
    _reduce = "average"


class _GlobalPooling(Layer):
    _jit_eager_calls = True
    rank: int = 2
    _reduce: str = "average"

    def __init__(self, data_format: str | None = None, keepdims: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.data_format = check_data_format(data_format, f'{type(self).__name__} "{self.name}"')
        self.keepdims = bool(keepdims)
        self._ndim = self.rank + 2
        self._checked_axes = ()

    def _axes(self) -> tuple[int, ...]:
        start = 1 if self.data_format == "channels_last" else 2
        return tuple(range(start, start + self.rank))

    def call(self, x, *, training=False, key=None):
        if self._reduce == "max":
            return jnp.max(x, axis=self._axes(), keepdims=self.keepdims)
        return jnp.mean(x, axis=self._axes(), keepdims=self.keepdims)

    def compute_output_shape(self, input_shape):
        axes = self._axes()
        if self.keepdims:
            return tuple(1 if i in axes else d for i, d in enumerate(input_shape))
        return tuple(d for i, d in enumerate(input_shape) if i not in axes)

    def get_config(self) -> dict:
        return {"name": self.name, "data_format": self.data_format, "keepdims": self.keepdims}


class GlobalAveragePooling1D(_GlobalPooling):
    """Mean over the steps: `(batch, steps, channels) -> (batch, channels)` (`(batch, 1, channels)` with keepdims).

    With a mask (booleans `(batch, steps)`, given as `mask=` or carried from `Embedding(mask_zero=True)`),
    the mean is over the unmasked steps only, as in Keras; the output carries no mask.
    """

    rank = 1
    _reduce = "average"
    supports_masking = True

    def call(self, x, *, training=False, key=None, mask=None):
        if mask is None:
            return super().call(x, training=training, key=key)
        steps_axis = 1 if self.data_format == "channels_last" else 2
        keep = jnp.expand_dims(jnp.asarray(mask).astype(bool), 2 if self.data_format == "channels_last" else 1)
        total = jnp.sum(jnp.where(keep, x, jnp.zeros_like(x)), axis=steps_axis, keepdims=self.keepdims)
        return total / jnp.sum(keep.astype(x.dtype), axis=steps_axis, keepdims=self.keepdims)

    def compute_mask(self, inputs, previous_mask=None):
        return None


class GlobalAveragePooling2D(_GlobalPooling):
    """Mean over height and width: `(batch, h, w, channels) -> (batch, channels)`."""

    rank = 2
    _reduce = "average"


class GlobalAveragePooling3D(_GlobalPooling):
    """Mean over depth, height and width: `(batch, d, h, w, channels) -> (batch, channels)`."""

    rank = 3
    _reduce = "average"


class GlobalMaxPooling1D(_GlobalPooling):
    """Max over the steps: `(batch, steps, channels) -> (batch, channels)`."""

    rank = 1
    _reduce = "max"


class GlobalMaxPooling2D(_GlobalPooling):
    """Max over height and width: `(batch, h, w, channels) -> (batch, channels)`."""

    rank = 2
    _reduce = "max"


class GlobalMaxPooling3D(_GlobalPooling):
    """Max over depth, height and width: `(batch, d, h, w, channels) -> (batch, channels)`."""

    rank = 3
    _reduce = "max"


__all__ = [
    "AveragePooling1D", "AveragePooling2D", "AveragePooling3D", "GlobalAveragePooling1D", "GlobalAveragePooling2D",
    "GlobalAveragePooling3D", "GlobalMaxPooling1D", "GlobalMaxPooling2D", "GlobalMaxPooling3D", "MaxPooling1D",
    "MaxPooling2D", "MaxPooling3D",
]
