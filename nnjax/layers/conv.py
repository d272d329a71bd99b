"""Convolutions: Conv1D/2D/3D and Conv1DTranspose/2D/3D, with Keras's arguments and weight layout.

Kernels are stored as Keras stores them: `kernel_size + (in_channels // groups, filters)` for
convolutions and `kernel_size + (filters, in_channels)` for transposed convolutions, so weights
copied from Keras give the same outputs. `jax.lax.conv_general_dilated` does the work.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from nnjax import activations, initializers
from nnjax.layers.base import Layer, shape_str
from nnjax.layers.utils import cast_like, check_choice, check_data_format, normalize_tuple

_SPATIAL = {1: "W", 2: "HW", 3: "DHW"}


def _dimension_numbers(rank: int, data_format: str) -> tuple[str, str, str]:
    spatial = _SPATIAL[rank]
    lhs = "N" + spatial + "C" if data_format == "channels_last" else "NC" + spatial
    return lhs, spatial + "IO", lhs


def _positive_int(value, arg: str, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{where}: `{arg}` must be a positive int; got {value!r}")
    return value


class _ConvBase(Layer):
    """What convolutions and transposed convolutions share: arguments, axes, bias, activation."""

    rank: int = 2
    _paddings: tuple[str, ...] = ("valid", "same")
    _jit_eager_calls = True
    _weight_options = (("kernel", "kernel"), ("bias", "bias"))

    def __init__(self, filters: int, kernel_size, strides=1, padding: str = "valid", data_format: str | None = None,
                 dilation_rate=1, activation=None, use_bias: bool = True, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", **kwargs):
        super().__init__(**kwargs)
        where = self._where
        self.filters = _positive_int(filters, "filters", where)
        self.kernel_size = normalize_tuple(kernel_size, self.rank, "kernel_size", where)
        self.strides = normalize_tuple(strides, self.rank, "strides", where)
        self.dilation_rate = normalize_tuple(dilation_rate, self.rank, "dilation_rate", where)
        if max(self.strides) > 1 and max(self.dilation_rate) > 1:
            raise ValueError(
                f"{where}: `strides` > 1 is not compatible with `dilation_rate` > 1; got strides={self.strides} "
                f"and dilation_rate={self.dilation_rate}"
            )
        self.padding = check_choice(padding, self._paddings, "padding", where)
        self.data_format = check_data_format(data_format, where)
        self.activation = activations.get(activation, where=where)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = initializers.get(kernel_initializer, where=where)
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
        return tuple((k - 1) * d + 1 for k, d in zip(self.kernel_size, self.dilation_rate, strict=False))

    def _add_bias_and_activate(self, y):
        if self.use_bias:
            bias = cast_like(self.bias[...], y)
            y = y + (bias if self.data_format == "channels_last" else bias.reshape((-1,) + (1,) * self.rank))
        return self.activation(y)

    def _make_output_shape(self, input_shape, spatial):
        batch = input_shape[0]
        if self.data_format == "channels_last":
            return (batch,) + tuple(spatial) + (self.filters,)
        return (batch, self.filters) + tuple(spatial)

    def get_config(self) -> dict:
        return {
            "name": self.name, "filters": self.filters, "kernel_size": self.kernel_size, "strides": self.strides,
            "padding": self.padding, "data_format": self.data_format, "dilation_rate": self.dilation_rate,
            "activation": activations.name_of(self.activation), "use_bias": self.use_bias,
        }


class _Conv(_ConvBase):
    def __init__(self, filters: int, kernel_size, strides=1, padding: str = "valid", data_format: str | None = None,
                 dilation_rate=1, groups: int = 1, activation=None, use_bias: bool = True,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros", **kwargs):
        super().__init__(filters, kernel_size, strides, padding, data_format, dilation_rate, activation, use_bias,
                         kernel_initializer, bias_initializer, **kwargs)
        self.groups = _positive_int(groups, "groups", self._where)
        if self.filters % self.groups:
            raise ValueError(f"{self._where}: `filters` must be divisible by `groups`; got filters={self.filters}, groups={self.groups}")

    def build(self, input_shape, key):
        channels = input_shape[self.channel_axis]
        if channels % self.groups:
            raise ValueError(
                f'Input 0 of layer "{self.name}" is incompatible with the layer: expected the number of input channels '
                f"to be divisible by groups={self.groups}, but received input with shape {shape_str((None,) + tuple(input_shape[1:]))}"
            )
        if self.padding == "valid":
            for size, k in zip(self._spatial(input_shape), self._dilated_kernel(), strict=False):
                if size < k:
                    raise ValueError(
                        f'Input 0 of layer "{self.name}" is incompatible with the layer: with padding="valid" each spatial '
                        f"axis must be at least the (dilated) kernel size {self._dilated_kernel()}, but received input "
                        f"with shape {shape_str((None,) + tuple(input_shape[1:]))}"
                    )
        kernel_key, bias_key = jax.random.split(key)
        shape = self.kernel_size + (channels // self.groups, self.filters)
        self.kernel = self.add_weight(shape, self.kernel_initializer, key=kernel_key)
        if self.use_bias:
            self.bias = self.add_weight((self.filters,), self.bias_initializer, key=bias_key)

    def _lax_padding(self):
        if self.padding == "causal":
            return [(k - 1, 0) for k in self._dilated_kernel()]
        return self.padding.upper()

    def call(self, x, *, training=False, key=None):
        y = jax.lax.conv_general_dilated(
            x,
            cast_like(self.kernel[...], x),
            window_strides=self.strides,
            padding=self._lax_padding(),
            rhs_dilation=self.dilation_rate,
            dimension_numbers=_dimension_numbers(self.rank, self.data_format),
            feature_group_count=self.groups,
        )
        return self._add_bias_and_activate(y)

    def compute_output_shape(self, input_shape):
        spatial = []
        for size, k, s in zip(self._spatial(input_shape), self._dilated_kernel(), self.strides, strict=False):
            if size is None:
                spatial.append(None)
            elif self.padding == "same":
                spatial.append(-(-size // s))
            elif self.padding == "causal":
                spatial.append(-(-size // s))
            else:
                spatial.append((size - k) // s + 1)
        return self._make_output_shape(input_shape, spatial)

    def get_config(self) -> dict:
        return super().get_config() | {"groups": self.groups}


class Conv1D(_Conv):
    """1-D convolution over `(batch, steps, channels)` (or `(batch, channels, steps)` with channels_first).

    Args:
      filters: number of output channels.
      kernel_size: int or 1-tuple.
      strides: int or 1-tuple.
      padding: "valid", "same" or "causal" (left padding, so output t sees inputs <= t).
      data_format: "channels_last" (default) or "channels_first".
      dilation_rate: int or 1-tuple (not together with strides > 1).
      groups: split the input channels into this many groups (filters must divide too).
      activation: a name or callable; linear when None.
      use_bias: add a bias of shape `(filters,)`.

    Output steps: `ceil(steps / stride)` for "same" and "causal",
    `(steps - dilated_kernel) // stride + 1` for "valid". Kernel shape `(k, channels // groups, filters)`.
    """

    rank = 1
    _paddings = ("valid", "same", "causal")


class Conv2D(_Conv):
    """2-D convolution over images `(batch, height, width, channels)`.

    Args:
      filters: number of output channels.
      kernel_size: int or 2-tuple `(kh, kw)`.
      strides: int or 2-tuple.
      padding: "valid" (no padding) or "same" (output size `ceil(size / stride)`; the extra
        padding goes to the bottom/right, as in Keras and TensorFlow).
      data_format: "channels_last" (default) or "channels_first" (`(batch, channels, height, width)`).
      dilation_rate: int or 2-tuple (not together with strides > 1).
      groups: grouped convolution; input channels and filters must be divisible by it.
      activation: a name or callable; linear when None.
      use_bias: add a bias of shape `(filters,)`.
      kernel_initializer / bias_initializer: Keras names or callables.

    Output `(batch, new_height, new_width, filters)`. Kernel shape `(kh, kw, channels // groups, filters)`;
    parameter count `kh * kw * channels // groups * filters + filters`.

    Example:
      >>> x = np.zeros((8, 28, 28, 1), np.float32)
      >>> nj.layers.Conv2D(32, 3, padding="same", activation="relu")(x).shape
      (8, 28, 28, 32)
    """

    rank = 2


class Conv3D(_Conv):
    """3-D convolution over volumes `(batch, depth, height, width, channels)`; arguments as `Conv2D`."""

    rank = 3


class _ConvTranspose(_ConvBase):
    def __init__(self, filters: int, kernel_size, strides=1, padding: str = "valid", output_padding=None,
                 data_format: str | None = None, dilation_rate=1, activation=None, use_bias: bool = True,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros", **kwargs):
        super().__init__(filters, kernel_size, strides, padding, data_format, dilation_rate, activation, use_bias,
                         kernel_initializer, bias_initializer, **kwargs)
        if output_padding is None:
            self.output_padding = None
        else:
            values = (output_padding,) * self.rank if isinstance(output_padding, int) else tuple(output_padding)
            if len(values) != self.rank or any(not isinstance(v, int) or v < 0 for v in values):
                raise ValueError(f"{self._where}: `output_padding` must be a non-negative int or a tuple of {self.rank}; got {output_padding!r}")
            for op, s in zip(values, self.strides, strict=False):
                if op >= s:
                    raise ValueError(f"{self._where}: `output_padding` must be smaller than `strides`; got output_padding={values}, strides={self.strides}")
            self.output_padding = values

    def build(self, input_shape, key):
        channels = input_shape[self.channel_axis]
        kernel_key, bias_key = jax.random.split(key)
        shape = self.kernel_size + (self.filters, channels)
        self.kernel = self.add_weight(shape, self.kernel_initializer, key=kernel_key)
        if self.use_bias:
            self.bias = self.add_weight((self.filters,), self.bias_initializer, key=bias_key)

    def _pads(self) -> list[tuple[int, int]]:
        """Padding of the stride-dilated input, as Keras's JAX backend computes it."""
        pads = []
        for axis, (k, s) in enumerate(zip(self._dilated_kernel(), self.strides, strict=False)):
            op = None if self.output_padding is None else self.output_padding[axis]
            if self.padding == "valid":
                op = max(k, s) - k if op is None else op
                pads.append((k - 1, k - 1 + op))
            else:
                total = s + k - 2 if op is None else k + k % 2 - 2 + op
                left = min(total // 2 + total % 2, k - 1)
                pads.append((left, total - left))
        return pads

    def call(self, x, *, training=False, key=None):
        # A transposed convolution is a convolution of the stride-dilated input with the spatially
        # flipped kernel, its in/out axes swapped.
        kernel = cast_like(self.kernel[...], x)
        kernel = jnp.flip(kernel, axis=tuple(range(self.rank)))
        kernel = jnp.swapaxes(kernel, -1, -2)
        y = jax.lax.conv_general_dilated(
            x,
            kernel,
            window_strides=(1,) * self.rank,
            padding=self._pads(),
            lhs_dilation=self.strides,
            rhs_dilation=self.dilation_rate,
            dimension_numbers=_dimension_numbers(self.rank, self.data_format),
        )
        return self._add_bias_and_activate(y)

    def compute_output_shape(self, input_shape):
        spatial = []
        for size, k, s, (lo, hi) in zip(self._spatial(input_shape), self._dilated_kernel(), self.strides, self._pads(), strict=False):
            spatial.append(None if size is None else (size - 1) * s + 1 + lo + hi - k + 1)
        return self._make_output_shape(input_shape, spatial)

    def get_config(self) -> dict:
        return super().get_config() | {"output_padding": self.output_padding}


class Conv1DTranspose(_ConvTranspose):
    """Transposed 1-D convolution (the adjoint of `Conv1D`); arguments as `Conv2DTranspose`."""

    rank = 1


class Conv2DTranspose(_ConvTranspose):
    """Transposed 2-D convolution ("deconvolution"): upsamples `(batch, h, w, channels)`.

    Args:
      filters: output channels.
      kernel_size: int or 2-tuple.
      strides: int or 2-tuple; the upsampling factor.
      padding: "valid" or "same".
      output_padding: extra size added to one side of each output axis (< strides); None lets
        Keras's rule pick it.
      data_format / dilation_rate / activation / use_bias / initializers: as `Conv2D`.

    Output size per axis (Keras): "same": `size * stride`; "valid":
    `(size - 1) * stride + max(dilated_kernel, stride)`. Kernel shape `(kh, kw, filters, channels)`.
    """

    rank = 2


class Conv3DTranspose(_ConvTranspose):
    """Transposed 3-D convolution: upsamples volumes `(batch, d, h, w, channels)`; arguments as `Conv2DTranspose`.

    Kernel shape `(kd, kh, kw, filters, channels)`.
    """

    rank = 3


__all__ = ["Conv1D", "Conv1DTranspose", "Conv2D", "Conv2DTranspose", "Conv3D", "Conv3DTranspose"]
