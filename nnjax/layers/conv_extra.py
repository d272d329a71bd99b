"""Depthwise and separable convolutions: DepthwiseConv1D/2D and SeparableConv1D/2D.

Weights are stored in Keras's layout, so weights copied from Keras give the same outputs:
depthwise kernel `kernel_size + (in_channels, depth_multiplier)`, pointwise kernel
`(1,) * rank + (in_channels * depth_multiplier, filters)`. The depthwise step is one grouped
`jax.lax.conv_general_dilated` (a group per input channel), as in Keras's JAX backend.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from nnjax import activations, initializers
from nnjax.layers.base import Layer, shape_str
from nnjax.layers.conv import _dimension_numbers
from nnjax.layers.utils import cast_like, check_choice, check_data_format, normalize_tuple


def _positive_int(value, arg: str, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{where}: `{arg}` must be a positive int; got {value!r}")
    return value


class _DepthwiseBase(Layer):
    rank: int = 2
    _jit_eager_calls = True

    def __init__(self, kernel_size, strides=1, padding: str = "valid", depth_multiplier: int = 1,
                 data_format: str | None = None, dilation_rate=1, activation=None, use_bias: bool = True,
                 depthwise_initializer="glorot_uniform", bias_initializer="zeros", **kwargs):
        super().__init__(**kwargs)
        where = self._where
        self.kernel_size = normalize_tuple(kernel_size, self.rank, "kernel_size", where)
        self.strides = normalize_tuple(strides, self.rank, "strides", where)
        self.dilation_rate = normalize_tuple(dilation_rate, self.rank, "dilation_rate", where)
        if max(self.strides) > 1 and max(self.dilation_rate) > 1:
            raise ValueError(
                f"{where}: `strides` > 1 is not compatible with `dilation_rate` > 1; got strides={self.strides} "
                f"and dilation_rate={self.dilation_rate}"
            )
        self.padding = check_choice(padding, ("valid", "same"), "padding", where)
        self.depth_multiplier = _positive_int(depth_multiplier, "depth_multiplier", where)
        self.data_format = check_data_format(data_format, where)
        self.activation = activations.get(activation, where=where)
        self.use_bias = bool(use_bias)
        self.depthwise_initializer = initializers.get(depthwise_initializer, where=where)
        self.bias_initializer = initializers.get(bias_initializer, where=where)
        self._ndim = self.rank + 2
        self._checked_axes = (self.channel_axis,)

    @property
    def _where(self) -> str:
        return f'{type(self).__name__} "{self.name}"'

    @property
    def channel_axis(self) -> int:
        return -1 if self.data_format == "channels_last" else 1

    def _spatial(self, shape) -> tuple:
        return tuple(shape[1:-1]) if self.data_format == "channels_last" else tuple(shape[2:])

    def _dilated_kernel(self) -> tuple[int, ...]:
        return tuple((k - 1) * d + 1 for k, d in zip(self.kernel_size, self.dilation_rate, strict=True))

    def _check_spatial(self, input_shape) -> None:
        if self.padding != "valid":
            return
        for size, k in zip(self._spatial(input_shape), self._dilated_kernel(), strict=True):
            if size is not None and size < k:
                raise ValueError(
                    f'Input 0 of layer "{self.name}" is incompatible with the layer: with padding="valid" each spatial '
                    f"axis must be at least the (dilated) kernel size {self._dilated_kernel()}, but received input with "
                    f"shape {shape_str((None,) + tuple(input_shape[1:]))}"
                )

    def _depthwise(self, x, kernel):
        channels = x.shape[self.channel_axis]
        kernel = jnp.reshape(kernel, kernel.shape[:-2] + (1, channels * kernel.shape[-1]))
        return jax.lax.conv_general_dilated(
            x, kernel, window_strides=self.strides, padding=self.padding.upper(), rhs_dilation=self.dilation_rate,
            dimension_numbers=_dimension_numbers(self.rank, self.data_format), feature_group_count=channels,
        )

    def _finish(self, y):
        if self.use_bias:
            bias = cast_like(self.bias[...], y)
            y = y + (bias if self.data_format == "channels_last" else bias.reshape((-1,) + (1,) * self.rank))
        return self.activation(y)

    def _output_spatial(self, input_shape) -> list:
        spatial = []
        for size, k, s in zip(self._spatial(input_shape), self._dilated_kernel(), self.strides, strict=True):
            if size is None:
                spatial.append(None)
            elif self.padding == "same":
                spatial.append(-(-size // s))
            else:
                spatial.append((size - k) // s + 1)
        return spatial

    def _output_shape(self, input_shape, channels):
        spatial = self._output_spatial(input_shape)
        if self.data_format == "channels_last":
            return (input_shape[0],) + tuple(spatial) + (channels,)
        return (input_shape[0], channels) + tuple(spatial)

    def get_config(self) -> dict:
        return {
            "name": self.name, "kernel_size": self.kernel_size, "strides": self.strides, "padding": self.padding,
            "depth_multiplier": self.depth_multiplier, "data_format": self.data_format,
            "dilation_rate": self.dilation_rate, "activation": activations.name_of(self.activation),
            "use_bias": self.use_bias,
        }


class _DepthwiseConv(_DepthwiseBase):
    def build(self, input_shape, key):
        self._check_spatial(input_shape)
        channels = input_shape[self.channel_axis]
        kernel_key, bias_key = jax.random.split(key)
        self.kernel = self.add_weight(self.kernel_size + (channels, self.depth_multiplier), self.depthwise_initializer,
                                      key=kernel_key)
        if self.use_bias:
            self.bias = self.add_weight((channels * self.depth_multiplier,), self.bias_initializer, key=bias_key)

    def call(self, x, *, training=False, key=None):
        return self._finish(self._depthwise(x, cast_like(self.kernel[...], x)))

    def compute_output_shape(self, input_shape):
        return self._output_shape(input_shape, input_shape[self.channel_axis] * self.depth_multiplier)


class DepthwiseConv1D(_DepthwiseConv):
    """Depthwise 1-D convolution: each input channel is convolved with its own `depth_multiplier` filters.

    Args:
      kernel_size: int or 1-tuple.
      strides: int or 1-tuple (1).
      padding: "valid" or "same".
      depth_multiplier: output channels per input channel (1).
      data_format: "channels_last" (default) or "channels_first".
      dilation_rate: int or 1-tuple (not together with strides > 1).
      activation: a name or callable; linear when None.
      use_bias: add a bias of shape `(channels * depth_multiplier,)`.
      depthwise_initializer / bias_initializer: Keras names or callables.

    Input `(batch, steps, channels)`; output `(batch, new_steps, channels * depth_multiplier)`.
    Kernel shape `(k, channels, depth_multiplier)`.
    """

    rank = 1


class DepthwiseConv2D(_DepthwiseConv):
    """Depthwise 2-D convolution over images `(batch, h, w, channels)`; arguments as `DepthwiseConv1D`.

    Output `(batch, new_h, new_w, channels * depth_multiplier)`; kernel shape
    `(kh, kw, channels, depth_multiplier)`.

    Example:
      >>> x = np.zeros((8, 28, 28, 16), np.float32)
      >>> nj.layers.DepthwiseConv2D(3, padding="same")(x).shape
      (8, 28, 28, 16)
    """

    rank = 2


class _SeparableConv(_DepthwiseBase):
    def __init__(self, filters: int, kernel_size, strides=1, padding: str = "valid", data_format: str | None = None,
                 dilation_rate=1, depth_multiplier: int = 1, activation=None, use_bias: bool = True,
                 depthwise_initializer="glorot_uniform", pointwise_initializer="glorot_uniform",
                 bias_initializer="zeros", **kwargs):
        super().__init__(kernel_size, strides=strides, padding=padding, depth_multiplier=depth_multiplier,
                         data_format=data_format, dilation_rate=dilation_rate, activation=activation, use_bias=use_bias,
                         depthwise_initializer=depthwise_initializer, bias_initializer=bias_initializer, **kwargs)
        self.filters = _positive_int(filters, "filters", self._where)
        self.pointwise_initializer = initializers.get(pointwise_initializer, where=self._where)

    def build(self, input_shape, key):
        self._check_spatial(input_shape)
        channels = input_shape[self.channel_axis]
        depthwise_key, pointwise_key, bias_key = jax.random.split(key, 3)
        self.depthwise_kernel = self.add_weight(self.kernel_size + (channels, self.depth_multiplier),
                                                self.depthwise_initializer, key=depthwise_key)
        self.pointwise_kernel = self.add_weight((1,) * self.rank + (channels * self.depth_multiplier, self.filters),
                                                self.pointwise_initializer, key=pointwise_key)
        if self.use_bias:
            self.bias = self.add_weight((self.filters,), self.bias_initializer, key=bias_key)

    def call(self, x, *, training=False, key=None):
        y = self._depthwise(x, cast_like(self.depthwise_kernel[...], x))
        y = jax.lax.conv_general_dilated(
            y, cast_like(self.pointwise_kernel[...], y), window_strides=(1,) * self.rank, padding="VALID",
            dimension_numbers=_dimension_numbers(self.rank, self.data_format),
        )
        return self._finish(y)

    def compute_output_shape(self, input_shape):
        return self._output_shape(input_shape, self.filters)

    def get_config(self) -> dict:
        return super().get_config() | {"filters": self.filters}


class SeparableConv1D(_SeparableConv):
    """Depthwise separable 1-D convolution: a depthwise convolution, then a 1x1 (pointwise) one.

    Args:
      filters: output channels.
      kernel_size, strides, padding ("valid"/"same"), data_format, dilation_rate: as `Conv1D`.
      depth_multiplier: depthwise output channels per input channel (1).
      activation / use_bias: as `Conv1D`.
      depthwise_initializer / pointwise_initializer / bias_initializer: Keras names or callables.

    Weights: `depthwise_kernel` `(k, channels, depth_multiplier)`, `pointwise_kernel`
    `(1, channels * depth_multiplier, filters)`, `bias` `(filters,)`.
    """

    rank = 1


class SeparableConv2D(_SeparableConv):
    """Depthwise separable 2-D convolution over images; arguments as `SeparableConv1D`.

    Weights: `depthwise_kernel` `(kh, kw, channels, depth_multiplier)`, `pointwise_kernel`
    `(1, 1, channels * depth_multiplier, filters)`, `bias` `(filters,)`.
    """

    rank = 2


__all__ = ["DepthwiseConv1D", "DepthwiseConv2D", "SeparableConv1D", "SeparableConv2D"]
