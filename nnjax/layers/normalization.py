"""BatchNormalization and LayerNormalization, with Keras's arguments and defaults.

BatchNormalization keeps its running statistics as `nnx.BatchStat` variables: they are not
trained, so `nnx.split(module, nnx.Param, ...)` puts them in `TrainState.model_state`, and
`train_step` returns their new values with the new state (the step re-splits the module after the
forward pass). Nothing is updated in place outside the step.
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
        if not isinstance(a, int) or not -ndim <= a < ndim:
            raise ValueError(f"{where}: `axis` {axis!r} is out of range for inputs of rank {ndim}; expected ints in [{-ndim}, {ndim})")
        out.append(a % ndim)
    if 0 in out:
        raise ValueError(f"{where}: `axis` must not include the batch axis 0; got {axis!r}")
    return tuple(sorted(set(out)))


class BatchNormalization(Layer):
    """Normalises each feature by the batch statistics in training and by running statistics in inference.

    Training (`training=True`): `y = gamma * (x - mean_B) / sqrt(var_B + epsilon) + beta`, where
    `mean_B`, `var_B` (biased) are taken over every axis but `axis`, and the running statistics move as
    in Keras: `moving = moving * momentum + batch_stat * (1 - momentum)`. Inference uses
    `moving_mean`/`moving_variance` instead. Statistics are computed in float32; the output keeps the
    input's dtype. A frozen layer (`trainable = False`) runs in inference mode even in training (Keras).

    Under `jit` with a batch sharded over devices, the mean is over the whole (global) batch, since
    XLA sees the global array. Under `jax.vmap`/`shard_map`/`pmap` over a named axis, pass that name as
    `axis_name` to average the statistics across it (as Flax's `axis_name`).

    Args:
      axis: the feature axis (or axes); -1 for channels_last.
      momentum: running-average momentum (0.99, Keras's default).
      epsilon: added to the variance (1e-3, Keras's default).
      center: learn `beta`; scale: learn `gamma`.
      axis_name: named mapped axis to average statistics over, or None.

    Variables: `gamma`, `beta` (trainable, shape `(features,)`), `moving_mean`, `moving_variance`
    (`nnx.BatchStat`, float32).
    """

    _jit_eager_calls = True
    supports_masking = True  # with a mask, training statistics are over the unmasked positions (Keras)

    def __init__(self, axis: int | Sequence[int] = -1, momentum: float = 0.99, epsilon: float = 1e-3, center: bool = True,
                 scale: bool = True, beta_initializer="zeros", gamma_initializer="ones", moving_mean_initializer="zeros",
                 moving_variance_initializer="ones", axis_name: str | None = None, **kwargs):
        super().__init__(**kwargs)
        where = f'BatchNormalization "{self.name}"'
        if not 0.0 <= float(momentum) <= 1.0:
            raise ValueError(f"{where}: `momentum` must be in [0, 1]; got {momentum!r}")
        if not float(epsilon) > 0.0:
            raise ValueError(f"{where}: `epsilon` must be positive; got {epsilon!r}")
        self.axis = axis if isinstance(axis, int) else tuple(axis)
        self.momentum = float(momentum)
        self.epsilon = float(epsilon)
        self.center = bool(center)
        self.scale = bool(scale)
        self.axis_name = axis_name
        self.beta_initializer = initializers.get(beta_initializer, where=where)
        self.gamma_initializer = initializers.get(gamma_initializer, where=where)
        self.moving_mean_initializer = initializers.get(moving_mean_initializer, where=where)
        self.moving_variance_initializer = initializers.get(moving_variance_initializer, where=where)
        self._checked_axes = (axis,) if isinstance(axis, int) else tuple(axis)
        self._min_ndim = 2

    def build(self, input_shape, key):
        self.feature_axes = _axes(self.axis, len(input_shape), f'BatchNormalization "{self.name}"')
        shape = tuple(input_shape[a] for a in self.feature_axes)
        gamma_key, beta_key, mean_key, var_key = jax.random.split(key, 4)
        if self.scale:
            self.gamma = self.add_weight(shape, self.gamma_initializer, key=gamma_key)
        if self.center:
            self.beta = self.add_weight(shape, self.beta_initializer, key=beta_key)
        self.moving_mean = self.add_weight(shape, self.moving_mean_initializer, key=mean_key, dtype=jnp.float32, trainable=False)
        self.moving_variance = self.add_weight(shape, self.moving_variance_initializer, key=var_key, dtype=jnp.float32,
                                               trainable=False)

    def _broadcast(self, v, ndim: int):
        shape = [1] * ndim
        for i, a in enumerate(self.feature_axes):
            shape[a] = v.shape[i]
        return v.reshape(shape)

    def _masked_moments(self, xf, mask, reduce_axes):
        """Keras's masked statistics: the weighted mean and variance over the unmasked positions."""
        if mask.ndim != xf.ndim - 1:
            raise ValueError(
                f'BatchNormalization "{self.name}": the mask must have one axis less than the input; received mask of '
                f"shape {shape_str(mask.shape)} and input of shape {shape_str(xf.shape)}"
            )
        weights = jnp.broadcast_to(jnp.expand_dims(mask.astype(xf.dtype), -1), xf.shape)
        total = jnp.sum(weights, axis=reduce_axes, keepdims=True)
        weighted = weights * xf
        mean = jnp.sum(weighted, axis=reduce_axes, keepdims=True) / (total + 1e-7)
        variance = jnp.sum(weights * jnp.square(weighted - mean), axis=reduce_axes, keepdims=True) / (total + 1e-7)
        return jnp.squeeze(mean, reduce_axes), jnp.squeeze(variance, reduce_axes)

    def call(self, x, *, training=False, key=None, mask=None):
        ndim = x.ndim
        reduce_axes = tuple(a for a in range(ndim) if a not in self.feature_axes)
        xf = x.astype(jnp.promote_types(x.dtype, jnp.float32))
        if training and self.trainable and mask is not None:
            if self.axis_name is not None:
                raise ValueError(f'BatchNormalization "{self.name}": a mask with `axis_name` is not supported')
            mean, variance = self._masked_moments(xf, jnp.asarray(mask), reduce_axes)
            m = self.momentum
            self.moving_mean[...] = self.moving_mean[...] * m + mean.astype(jnp.float32) * (1.0 - m)
            self.moving_variance[...] = self.moving_variance[...] * m + variance.astype(jnp.float32) * (1.0 - m)
        elif training and self.trainable:  # Keras: a frozen BatchNormalization runs in inference mode
            mean = jnp.mean(xf, axis=reduce_axes)
            if self.axis_name is not None:
                mean = jax.lax.pmean(mean, self.axis_name)
            variance = jnp.mean(jnp.square(xf - self._broadcast(mean, ndim)), axis=reduce_axes)
            if self.axis_name is not None:
                variance = jax.lax.pmean(variance, self.axis_name)
            m = self.momentum
            self.moving_mean[...] = self.moving_mean[...] * m + mean.astype(jnp.float32) * (1.0 - m)
            self.moving_variance[...] = self.moving_variance[...] * m + variance.astype(jnp.float32) * (1.0 - m)
        else:
            mean, variance = self.moving_mean[...], self.moving_variance[...]
        inv = jax.lax.rsqrt(variance + self.epsilon)
        if self.scale:
            inv = inv * self.gamma[...].astype(inv.dtype)
        y = (xf - self._broadcast(mean, ndim)) * self._broadcast(inv, ndim)
        if self.center:
            y = y + self._broadcast(self.beta[...].astype(y.dtype), ndim)
        return y.astype(x.dtype)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self) -> dict:
        return {"name": self.name, "axis": self.axis, "momentum": self.momentum, "epsilon": self.epsilon,
                "center": self.center, "scale": self.scale}


class LayerNormalization(Layer):
    """Normalises each example over `axis`: `gamma * (x - mean) / sqrt(var + epsilon) + beta`.

    Args:
      axis: axis or axes to normalise over (-1).
      epsilon: added to the variance (1e-3, Keras's default).
      center: learn `beta`; scale: learn `gamma` (both of shape `input_shape[axis]`).
      rms_scaling: Keras 3's (deprecated) `rms_scaling=True`, computed as Keras computes it:
        `gamma * x / sqrt(var(x) + epsilon)` (the input is not centred; the divisor is the variance,
        not the mean square). For root-mean-square normalisation use `RMSNormalization`.

    Statistics are computed in float32; the output keeps the input's dtype.
    """

    supports_masking = True  # passes its input's mask on (Keras)

    _jit_eager_calls = True

    def __init__(self, axis: int | Sequence[int] = -1, epsilon: float = 1e-3, center: bool = True, scale: bool = True,
                 rms_scaling: bool = False, beta_initializer="zeros", gamma_initializer="ones", **kwargs):
        super().__init__(**kwargs)
        where = f'LayerNormalization "{self.name}"'
        if not float(epsilon) > 0.0:
            raise ValueError(f"{where}: `epsilon` must be positive; got {epsilon!r}")
        self.axis = axis if isinstance(axis, int) else tuple(axis)
        self.epsilon = float(epsilon)
        self.rms_scaling = bool(rms_scaling)
        self.center = bool(center) and not self.rms_scaling
        self.scale = bool(scale)
        self.beta_initializer = initializers.get(beta_initializer, where=where)
        self.gamma_initializer = initializers.get(gamma_initializer, where=where)
        self._checked_axes = (axis,) if isinstance(axis, int) else tuple(axis)
        self._min_ndim = 2

    def build(self, input_shape, key):
        self.feature_axes = _axes(self.axis, len(input_shape), f'LayerNormalization "{self.name}"')
        if any(input_shape[a] is None for a in self.feature_axes):
            raise ValueError(
                f'LayerNormalization "{self.name}": the normalised axes {self.axis} must be known; received input '
                f"with shape {shape_str(input_shape)}"
            )
        shape = tuple(input_shape[a] for a in self.feature_axes)
        gamma_key, beta_key = jax.random.split(key)
        if self.scale:
            self.gamma = self.add_weight(shape, self.gamma_initializer, key=gamma_key)
        if self.center:
            self.beta = self.add_weight(shape, self.beta_initializer, key=beta_key)

    def _broadcast(self, v, ndim: int):
        shape = [1] * ndim
        for i, a in enumerate(self.feature_axes):
            shape[a] = v.shape[i]
        return v.reshape(shape)

    def call(self, x, *, training=False, key=None):
        xf = x.astype(jnp.promote_types(x.dtype, jnp.float32))
        axes = self.feature_axes
        if self.rms_scaling:
            y = xf * jax.lax.rsqrt(jnp.var(xf, axis=axes, keepdims=True) + self.epsilon)  # as Keras 3 does
        else:
            mean = jnp.mean(xf, axis=axes, keepdims=True)
            variance = jnp.mean(jnp.square(xf - mean), axis=axes, keepdims=True)
            y = (xf - mean) * jax.lax.rsqrt(variance + self.epsilon)
        if self.scale:
            y = y * self._broadcast(self.gamma[...].astype(y.dtype), x.ndim)
        if self.center:
            y = y + self._broadcast(self.beta[...].astype(y.dtype), x.ndim)
        return y.astype(x.dtype)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self) -> dict:
        return {"name": self.name, "axis": self.axis, "epsilon": self.epsilon, "center": self.center,
                "scale": self.scale, "rms_scaling": self.rms_scaling}


__all__ = ["BatchNormalization", "LayerNormalization"]
