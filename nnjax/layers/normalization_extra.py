"""GroupNormalization, RMSNormalization and UnitNormalization, with Keras's arguments and defaults.

Statistics are computed in float32 (or wider); the output keeps the input's dtype.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp

from nnjax import initializers
from nnjax.layers.base import Layer, shape_str


def _axes(axis, ndim: int, where: str) -> tuple[int, ...]:
    values = (axis,) if isinstance(axis, int) else tuple(axis)
    out = []
    for a in values:
        if isinstance(a, bool) or not isinstance(a, int) or not -ndim <= a < ndim:
            raise ValueError(f"{where}: `axis` {axis!r} is out of range for inputs of rank {ndim}; expected ints in [{-ndim}, {ndim})")
        out.append(a % ndim)
    return tuple(sorted(set(out)))


def _compute_dtype(x):
    return jnp.promote_types(x.dtype, jnp.float32)


class GroupNormalization(Layer):
    """Group normalisation (Wu & He, 2018): channels split into `groups`, each normalised per example.

    `y = gamma * (x - mean_g) / sqrt(var_g + epsilon) + beta`, where the statistics of group `g`
    are taken over its channels and every non-batch axis. `groups=1` is layer normalisation over
    all axes; `groups=-1` (one channel per group) is instance normalisation.

    Args:
      groups: number of groups (32, Keras's default); must divide the channels; -1 for one group
        per channel.
      axis: the channel axis (-1).
      epsilon: added to the variance (1e-3).
      center: learn `beta`; scale: learn `gamma` (both of shape `(channels,)`).
      beta_initializer / gamma_initializer: Keras names or callables.
    """

    supports_masking = True  # passes its input's mask on (Keras)

    _jit_eager_calls = True
    _min_ndim = 2

    def __init__(self, groups: int = 32, axis: int = -1, epsilon: float = 1e-3, center: bool = True, scale: bool = True,
                 beta_initializer="zeros", gamma_initializer="ones", **kwargs):
        super().__init__(**kwargs)
        where = self._where
        if isinstance(groups, bool) or not isinstance(groups, int) or (groups <= 0 and groups != -1):
            raise ValueError(f"{where}: `groups` must be a positive int (or -1 for instance normalisation); got {groups!r}")
        if isinstance(axis, bool) or not isinstance(axis, int):
            raise ValueError(f"{where}: `axis` must be an int; got {axis!r}")
        self.groups = groups
        self.axis = axis
        self.epsilon = float(epsilon)
        self.center = bool(center)
        self.scale = bool(scale)
        self.beta_initializer = initializers.get(beta_initializer, where=where)
        self.gamma_initializer = initializers.get(gamma_initializer, where=where)
        self._checked_axes = (axis,)

    @property
    def _where(self) -> str:
        return f'GroupNormalization "{self.name}"'

    def build(self, input_shape, key):
        self.channel_axis = _axes(self.axis, len(input_shape), self._where)[0]
        if self.channel_axis == 0:
            raise ValueError(f"{self._where}: `axis` must not be the batch axis 0; got {self.axis!r}")
        channels = input_shape[self.channel_axis]
        if self.groups == -1:
            self.groups = channels
        if channels < self.groups or channels % self.groups:
            raise ValueError(
                f"{self._where}: the number of channels must be a multiple of groups={self.groups} (and at least it); "
                f"received input of shape {shape_str((None,) + tuple(input_shape[1:]))} with {channels} channels"
            )
        gamma_key, beta_key = jax.random.split(key)
        if self.scale:
            self.gamma = self.add_weight((channels,), self.gamma_initializer, key=gamma_key)
        if self.center:
            self.beta = self.add_weight((channels,), self.beta_initializer, key=beta_key)

    def call(self, x, *, training=False, key=None):
        axis = self.channel_axis
        channels = x.shape[axis]
        grouped_shape = x.shape[:axis] + (self.groups, channels // self.groups) + x.shape[axis + 1:]
        xg = jnp.reshape(x.astype(_compute_dtype(x)), grouped_shape)
        reduce_axes = tuple(a for a in range(1, xg.ndim) if a != axis)
        mean = jnp.mean(xg, axis=reduce_axes, keepdims=True)
        variance = jnp.var(xg, axis=reduce_axes, keepdims=True)
        param_shape = [1] * xg.ndim
        param_shape[axis], param_shape[axis + 1] = self.groups, channels // self.groups
        inv = jax.lax.rsqrt(variance + self.epsilon)
        if self.scale:
            inv = inv * jnp.reshape(self.gamma[...].astype(xg.dtype), param_shape)
        shift = -mean * inv
        if self.center:
            shift = shift + jnp.reshape(self.beta[...].astype(xg.dtype), param_shape)
        return jnp.reshape(xg * inv + shift, x.shape).astype(x.dtype)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self) -> dict:
        return {"name": self.name, "groups": self.groups, "axis": self.axis, "epsilon": self.epsilon,
                "center": self.center, "scale": self.scale}


class RMSNormalization(Layer):
    """Root-mean-square normalisation (Zhang & Sennrich, 2019): `scale * x / sqrt(mean(x**2) + epsilon)`.

    Args:
      axis: axis or axes to normalise over (-1).
      epsilon: added to the mean square (1e-6, Keras's default).

    Weight `scale` of shape `input_shape[axis]` (ones).
    """

    _jit_eager_calls = True
    _min_ndim = 2

    def __init__(self, axis: int | Sequence[int] = -1, epsilon: float = 1e-6, **kwargs):
        super().__init__(**kwargs)
        self.axis = axis if isinstance(axis, int) else tuple(axis)
        self.epsilon = float(epsilon)
        self._checked_axes = (axis,) if isinstance(axis, int) else tuple(axis)

    def build(self, input_shape, key):
        self.feature_axes = _axes(self.axis, len(input_shape), f'RMSNormalization "{self.name}"')
        self.scale = self.add_weight(tuple(input_shape[a] for a in self.feature_axes), "ones", key=key)

    def call(self, x, *, training=False, key=None):
        xf = x.astype(_compute_dtype(x))
        y = xf * jax.lax.rsqrt(jnp.mean(jnp.square(xf), axis=self.feature_axes, keepdims=True) + self.epsilon)
        shape = [1] * x.ndim
        for i, a in enumerate(self.feature_axes):
            shape[a] = self.scale.shape[i]
        return (y * jnp.reshape(self.scale[...].astype(y.dtype), shape)).astype(x.dtype)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self) -> dict:
        return {"name": self.name, "axis": self.axis, "epsilon": self.epsilon}


class UnitNormalization(Layer):
    """Scales each example to unit L2 norm over `axis`: `x / max(||x||, 1e-12)`, as Keras.

    Args:
      axis: axis or axes over which the norm is taken (-1).
    """

    supports_masking = True  # passes its input's mask on (Keras)

    _checked_axes = ()
    _jit_eager_calls = True

    def __init__(self, axis: int | Sequence[int] = -1, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(axis, (int, list, tuple)) or isinstance(axis, bool):
            raise TypeError(f'UnitNormalization "{self.name}": `axis` must be an int or a list/tuple of ints; got {axis!r}')
        self.axis = axis if isinstance(axis, int) else tuple(axis)

    def call(self, x, *, training=False, key=None):
        axes = _axes(self.axis, x.ndim, f'UnitNormalization "{self.name}"')
        xf = x.astype(_compute_dtype(x))
        inv_norm = jnp.minimum(jax.lax.rsqrt(jnp.sum(jnp.square(xf), axis=axes, keepdims=True)), 1e12)
        return (xf * inv_norm).astype(x.dtype)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self) -> dict:
        return {"name": self.name, "axis": self.axis}


__all__ = ["GroupNormalization", "RMSNormalization", "UnitNormalization"]
