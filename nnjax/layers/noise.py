"""Stochastic regularisation layers and ActivityRegularization.

SpatialDropout1D/2D/3D, GaussianNoise, GaussianDropout and AlphaDropout are active only with
`training=True` and draw their randomness from the `key` passed to `__call__`, as `Dropout` does
(the training step passes `fold_in(state.rng, step)`, and `Sequential` gives layer i
`fold_in(key, i)`). In inference they are the identity.

`ActivityRegularization` records Keras's activity penalty in an `ActivityLoss` variable (part of
the model's non-trainable state); `activity_loss(state_or_module)` sums those penalties so that a
training step can add them to its objective.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from nnjax.layers.base import Layer
from nnjax.layers.utils import check_data_format


def _rate(value, where: str, arg: str = "rate") -> float:
    if isinstance(value, bool) or not 0.0 <= float(value) < 1.0:
        raise ValueError(f"{where}: `{arg}` must be in [0, 1); got {value!r}")
    return float(value)


class _Stochastic(Layer):
    _checked_axes = ()
    _jit_eager_calls = True

    @property
    def _where(self) -> str:
        return f'{type(self).__name__} "{self.name}"'

    def _require_key(self, key):
        if key is None:
            raise ValueError(
                f"{self._where}: training=True needs a PRNG key; call layer(x, training=True, key=key) "
                "(fit and train_step pass one for you)"
            )
        return key

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)


class _SpatialDropout(_Stochastic):
    rank = 1

    def __init__(self, rate: float, data_format: str | None = None, **kwargs):
        super().__init__(**kwargs)
        self.rate = _rate(rate, self._where)
        self.data_format = check_data_format(data_format, self._where)
        self._ndim = self.rank + 2

    def noise_shape(self, shape) -> tuple[int, ...]:
        """One draw per example and channel, shared over the spatial axes."""
        ones = (1,) * self.rank
        if self.data_format == "channels_last":
            return (shape[0],) + ones + (shape[-1],)
        return (shape[0], shape[1]) + ones

    def call(self, x, *, training=False, key=None):
        if not training or self.rate == 0.0:
            return x
        keep = jax.random.bernoulli(self._require_key(key), 1.0 - self.rate, self.noise_shape(x.shape))
        return jnp.where(keep, x / (1.0 - self.rate), jnp.zeros_like(x)).astype(x.dtype)

    def get_config(self) -> dict:
        return {"name": self.name, "rate": self.rate, "data_format": self.data_format}


class SpatialDropout1D(_SpatialDropout):
    """Drops whole feature channels of `(batch, steps, channels)`: one draw per example and channel.

    Args:
      rate: fraction of channels to drop, in [0, 1); kept channels are scaled by `1 / (1 - rate)`.
    """

    rank = 1

    def __init__(self, rate: float, **kwargs):
        super().__init__(rate, **kwargs)


class SpatialDropout2D(_SpatialDropout):
    """Drops whole feature maps of `(batch, h, w, channels)`: one draw per example and channel.

    Args:
      rate: fraction of channels to drop, in [0, 1).
      data_format: "channels_last" or "channels_first".
    """

    rank = 2


class SpatialDropout3D(_SpatialDropout):
    """Drops whole feature volumes of `(batch, d, h, w, channels)`: one draw per example and channel.

    Args:
      rate: fraction of channels to drop, in [0, 1).
      data_format: "channels_last" or "channels_first".
    """

    rank = 3


class GaussianNoise(_Stochastic):
    """Adds zero-mean Gaussian noise of standard deviation `stddev` in training.

    Args:
      stddev: the noise's standard deviation, in [0, 1] (as Keras checks).
    """

    supports_masking = True  # passes its input's mask on (Keras)

    def __init__(self, stddev: float, **kwargs):
        super().__init__(**kwargs)
        if isinstance(stddev, bool) or not 0.0 <= float(stddev) <= 1.0:
            raise ValueError(f"{self._where}: `stddev` must be in [0, 1]; got {stddev!r}")
        self.stddev = float(stddev)

    def call(self, x, *, training=False, key=None):
        if not training or self.stddev == 0.0:
            return x
        noise = jax.random.normal(self._require_key(key), x.shape, x.dtype)
        return x + jnp.asarray(self.stddev, x.dtype) * noise

    def get_config(self) -> dict:
        return {"name": self.name, "stddev": self.stddev}


class GaussianDropout(_Stochastic):
    """Multiplies by 1-centred Gaussian noise of standard deviation `sqrt(rate / (1 - rate))` in training.

    Args:
      rate: the equivalent dropout rate, in [0, 1).
    """

    supports_masking = True  # passes its input's mask on (Keras)

    def __init__(self, rate: float, **kwargs):
        super().__init__(**kwargs)
        self.rate = _rate(rate, self._where)

    def call(self, x, *, training=False, key=None):
        if not training or self.rate == 0.0:
            return x
        stddev = math.sqrt(self.rate / (1.0 - self.rate))
        noise = jax.random.normal(self._require_key(key), x.shape, x.dtype)
        return x * (1.0 + jnp.asarray(stddev, x.dtype) * noise)

    def get_config(self) -> dict:
        return {"name": self.name, "rate": self.rate}


class AlphaDropout(_Stochastic):
    """Dropout that keeps SELU's self-normalising mean and variance (Klambauer et al., 2017).

    Dropped entries are set to SELU's negative saturation `-alpha * scale`, then the result is
    transformed by `a * x + b` so that zero-mean unit-variance inputs keep their mean and
    variance, with Keras's `a = ((1 - rate) * (1 + rate * alpha_p**2)) ** -0.5`, `b = -a * alpha_p * rate`.

    Args:
      rate: fraction to drop, in [0, 1).
      noise_shape: optional broadcast shape of the mask (None entries take the input's size).
    """

    supports_masking = True  # passes its input's mask on (Keras)

    _ALPHA = 1.6732632423543772848170429916717
    _SCALE = 1.0507009873554804934193349852946

    def __init__(self, rate: float, noise_shape=None, **kwargs):
        super().__init__(**kwargs)
        self.rate = _rate(rate, self._where)
        self.noise_shape = None if noise_shape is None else tuple(noise_shape)

    def call(self, x, *, training=False, key=None):
        if not training or self.rate == 0.0:
            return x
        shape = x.shape if self.noise_shape is None else tuple(
            x.shape[i] if d is None else d for i, d in enumerate(self.noise_shape)
        )
        keep = jax.random.uniform(self._require_key(key), shape) >= self.rate
        alpha_p = -self._ALPHA * self._SCALE
        a = ((1.0 - self.rate) * (1.0 + self.rate * alpha_p**2)) ** -0.5
        b = -a * alpha_p * self.rate
        y = jnp.where(keep, x, jnp.asarray(alpha_p, x.dtype))
        return (a * y + b).astype(x.dtype)

    def get_config(self) -> dict:
        return {"name": self.name, "rate": self.rate, "noise_shape": self.noise_shape}


class ActivityLoss(nnx.Variable):
    """A scalar penalty a layer computed on its last call (non-trainable model state)."""


class ActivityRegularization(Layer):
    """The identity, recording Keras's activity penalty `(l1 * sum|x| + l2 * sum x**2) / batch`.

    The penalty of the last call is stored in `self.loss` (an `ActivityLoss` variable, float32).
    `activity_loss(model)` (or of the model's non-trainable state) sums every such penalty; add it
    to the objective to regularise, as Keras adds `layer.losses` to the loss.

    Args:
      l1: L1 factor (0.0).
      l2: L2 factor (0.0).
    """

    supports_masking = True  # passes its input's mask on (Keras)

    _checked_axes = ()
    _jit_eager_calls = True

    def __init__(self, l1: float = 0.0, l2: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        for arg, value in (("l1", l1), ("l2", l2)):
            if isinstance(value, bool) or not float(value) >= 0.0:
                raise ValueError(f'ActivityRegularization "{self.name}": `{arg}` must be a non-negative number; got {value!r}')
        self.l1 = float(l1)
        self.l2 = float(l2)

    def build(self, input_shape, key):
        self.loss = ActivityLoss(jnp.zeros((), jnp.float32))

    def penalty(self, x) -> jax.Array:
        """Keras's `L1L2(l1, l2)(x) / batch_size` in float32."""
        xf = x.astype(jnp.promote_types(x.dtype, jnp.float32))
        value = jnp.zeros((), xf.dtype)
        if self.l1:
            value = value + self.l1 * jnp.sum(jnp.abs(xf))
        if self.l2:
            value = value + self.l2 * jnp.sum(jnp.square(xf))
        return (value / x.shape[0] if x.ndim > 0 and x.shape[0] else value).astype(jnp.float32)

    def call(self, x, *, training=False, key=None):
        self.loss[...] = self.penalty(x)
        return x

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self) -> dict:
        return {"name": self.name, "l1": self.l1, "l2": self.l2}


def activity_loss(tree) -> jax.Array:
    """The sum of the `ActivityLoss` penalties in a module or an `nnx.State` (0.0 when there are none).

    Args:
      tree: an NNX module, a model of the shell (`nj.Sequential`, `nj.Model`: its `module` is used),
        or the state from `nnx.split`/`nnx.state` (e.g. the new model state a forward pass returns).

    Returns:
      A float32 scalar.
    """
    if not isinstance(tree, (nnx.Module, nnx.State)) and isinstance(getattr(tree, "module", None), nnx.Module):
        tree = tree.module
    state = nnx.state(tree, ActivityLoss) if isinstance(tree, nnx.Module) else nnx.filter_state(tree, ActivityLoss)
    leaves = jax.tree.leaves(state)
    return sum((jnp.asarray(v, jnp.float32) for v in leaves), jnp.zeros((), jnp.float32))


__all__ = [
    "ActivityLoss",
    "ActivityRegularization",
    "AlphaDropout",
    "GaussianDropout",
    "GaussianNoise",
    "SpatialDropout1D",
    "SpatialDropout2D",
    "SpatialDropout3D",
    "activity_loss",
]
