"""Convolutional LSTMs: ConvLSTM1D/2D/3D (Shi et al., 2015) with Keras's equations and weight layout.

The input convolutions of all time steps run as one convolution (time folded into the batch);
`jax.lax.scan` then runs the recurrent convolutions step by step, so the layer compiles once for
any sequence length.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp

from nnjax import activations, initializers
from nnjax.layers.base import Layer, shape_str
from nnjax.layers.conv import _dimension_numbers
from nnjax.layers.recurrent import _ForgetGateOnes
from nnjax.layers.utils import cast_like, check_choice, check_data_format, normalize_tuple


class _ConvLSTM(Layer):
    rank = 2
    _jit_eager_calls = True

    def __init__(self, filters: int, kernel_size, strides=1, padding: str = "valid", data_format: str | None = None,
                 dilation_rate=1, activation="tanh", recurrent_activation="sigmoid", use_bias: bool = True,
                 kernel_initializer="glorot_uniform", recurrent_initializer="orthogonal", bias_initializer="zeros",
                 unit_forget_bias: bool = True, dropout: float = 0.0, recurrent_dropout: float = 0.0,
                 return_sequences: bool = False, return_state: bool = False, go_backwards: bool = False,
                 stateful: bool = False, **kwargs):
        super().__init__(**kwargs)
        where = self._where
        if isinstance(filters, bool) or not isinstance(filters, int) or filters <= 0:
            raise ValueError(f"{where}: `filters` must be a positive int; got {filters!r}")
        if stateful:
            raise ValueError(f"{where}: `stateful=True` is not supported; pass the last states as `initial_state` instead")
        self.filters = filters
        self.kernel_size = normalize_tuple(kernel_size, self.rank, "kernel_size", where)
        self.strides = normalize_tuple(strides, self.rank, "strides", where)
        self.dilation_rate = normalize_tuple(dilation_rate, self.rank, "dilation_rate", where)
        self.padding = check_choice(padding, ("valid", "same"), "padding", where)
        self.data_format = check_data_format(data_format, where)
        self.activation = activations.get(activation, where=where)
        self.recurrent_activation = activations.get(recurrent_activation, where=where)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = initializers.get(kernel_initializer, where=where)
        self.recurrent_initializer = initializers.get(recurrent_initializer, where=where)
        self.bias_initializer = initializers.get(bias_initializer, where=where)
        self.unit_forget_bias = bool(unit_forget_bias)
        for arg, rate in (("dropout", dropout), ("recurrent_dropout", recurrent_dropout)):
            if isinstance(rate, bool) or not 0.0 <= float(rate) < 1.0:
                raise ValueError(f"{where}: `{arg}` must be in [0, 1); got {rate!r}")
        self.dropout = float(dropout)
        self.recurrent_dropout = float(recurrent_dropout)
        self.return_sequences = bool(return_sequences)
        self.return_state = bool(return_state)
        self.go_backwards = bool(go_backwards)
        self._ndim = self.rank + 3
        self._checked_axes = (self.channel_axis,)

    @property
    def _where(self) -> str:
        return f'{type(self).__name__} "{self.name}"'

    @property
    def channel_axis(self) -> int:
        return -1 if self.data_format == "channels_last" else 2

    def _spatial(self, shape) -> tuple:
        """Spatial sizes of one time step `(batch, *spatial, channels)` / `(batch, channels, *spatial)`."""
        return tuple(shape[1:-1]) if self.data_format == "channels_last" else tuple(shape[2:])

    def _dilated_kernel(self) -> tuple[int, ...]:
        return tuple((k - 1) * d + 1 for k, d in zip(self.kernel_size, self.dilation_rate, strict=True))

    def _state_spatial(self, spatial) -> tuple:
        out = []
        for size, k, s in zip(spatial, self._dilated_kernel(), self.strides, strict=True):
            if size is None:
                out.append(None)
            else:
                out.append(-(-size // s) if self.padding == "same" else (size - k) // s + 1)
        return tuple(out)

    def _state_shape(self, step_shape) -> tuple:
        spatial = self._state_spatial(self._spatial(step_shape))
        if self.data_format == "channels_last":
            return (step_shape[0],) + spatial + (self.filters,)
        return (step_shape[0], self.filters) + spatial

    def build(self, input_shape, key):
        step_shape = (input_shape[0],) + tuple(input_shape[2:])
        channels = input_shape[self.channel_axis]
        if any(d is None for d in self._spatial(step_shape)) or channels is None:
            raise ValueError(f"{self._where}: spatial sizes and channels must be known; received input of shape "
                             f"{shape_str(input_shape)}")
        if any(d is not None and d <= 0 for d in self._state_spatial(self._spatial(step_shape))):
            raise ValueError(
                f'Input 0 of layer "{self.name}" is incompatible with the layer: with padding="valid" each spatial axis '
                f"must be at least the (dilated) kernel size {self._dilated_kernel()}; received input of shape "
                f"{shape_str((None,) + tuple(input_shape[1:]))}"
            )
        kernel_key, recurrent_key, bias_key = jax.random.split(key, 3)
        self.kernel = self.add_weight(self.kernel_size + (channels, 4 * self.filters), self.kernel_initializer, key=kernel_key)
        self.recurrent_kernel = self.add_weight(self.kernel_size + (self.filters, 4 * self.filters), self.recurrent_initializer,
                                                key=recurrent_key)
        if self.use_bias:
            init = _ForgetGateOnes(self.bias_initializer) if self.unit_forget_bias else self.bias_initializer
            self.bias = self.add_weight((4 * self.filters,), init, key=bias_key)

    def __call__(self, x, training: bool = False, key=None, initial_state: Sequence | None = None):
        """Runs the sequence `x`; `initial_state` is `[h, c]` (zeros by default)."""
        if not self.built:
            self.ensure_built(x.shape)
        else:
            self._check_input(x)
        if initial_state is not None:
            initial_state = [jnp.asarray(s) for s in initial_state]
            if len(initial_state) != 2:
                raise ValueError(f"{self._where}: `initial_state` must be [h, c]; got {len(initial_state)} arrays")
            expected = self._state_shape((x.shape[0],) + tuple(x.shape[2:]))
            for s in initial_state:
                if tuple(s.shape) != expected:
                    raise ValueError(f"{self._where}: each initial state must have shape {shape_str(expected)}; "
                                     f"received {shape_str(s.shape)}")
        return self._invoke(x, training=training, key=key, initial_state=initial_state)

    def _conv(self, x, kernel, strides, padding, dilation):
        return jax.lax.conv_general_dilated(x, kernel, window_strides=strides, padding=padding, rhs_dilation=dilation,
                                            dimension_numbers=_dimension_numbers(self.rank, self.data_format))

    def call(self, x, *, training=False, key=None, initial_state=None):
        batch, time = x.shape[0], x.shape[1]
        step_shape = (batch,) + tuple(x.shape[2:])
        dropout = training and self.dropout > 0.0
        recurrent_dropout = training and self.recurrent_dropout > 0.0
        if (dropout or recurrent_dropout) and key is None:
            raise ValueError(f"{self._where}: training=True with dropout needs a PRNG key; call layer(x, training=True, "
                             "key=key) (fit and train_step pass one for you)")
        input_key, recurrent_key = jax.random.split(key) if key is not None else (None, None)
        if dropout:  # one mask per sequence, as Keras's DropoutRNNCell
            keep = jax.random.bernoulli(input_key, 1.0 - self.dropout, step_shape)
            x = jnp.where(keep[:, None], x / (1.0 - self.dropout), jnp.zeros_like(x)).astype(x.dtype)
        if self.go_backwards:
            x = jnp.flip(x, axis=1)
        kernel = cast_like(self.kernel[...], x)
        flat = jnp.reshape(x, (batch * time,) + tuple(x.shape[2:]))
        projected = self._conv(flat, kernel, self.strides, self.padding.upper(), self.dilation_rate)
        if self.use_bias:
            bias = cast_like(self.bias[...], projected)
            projected = projected + (bias if self.data_format == "channels_last" else bias.reshape((-1,) + (1,) * self.rank))
        projected = jnp.reshape(projected, (batch, time) + tuple(projected.shape[1:]))
        state_shape = self._state_shape(step_shape)
        if initial_state is None:
            h0 = jnp.zeros(state_shape, projected.dtype)
            c0 = jnp.zeros(state_shape, projected.dtype)
        else:
            h0, c0 = (s.astype(projected.dtype) for s in initial_state)
        recurrent_kernel = cast_like(self.recurrent_kernel[...], projected)
        recurrent_keep = (jax.random.bernoulli(recurrent_key, 1.0 - self.recurrent_dropout, state_shape)
                          if recurrent_dropout else None)
        gate_axis = -1 if self.data_format == "channels_last" else 1
        ones = (1,) * self.rank

        def step(carry, z_x):
            h, c = carry
            if recurrent_keep is not None:
                h = jnp.where(recurrent_keep, h / (1.0 - self.recurrent_dropout), jnp.zeros_like(h)).astype(h.dtype)
            z = z_x + self._conv(h, recurrent_kernel, ones, "SAME", ones)
            z_i, z_f, z_c, z_o = jnp.split(z, 4, axis=gate_axis)
            i = self.recurrent_activation(z_i)
            f = self.recurrent_activation(z_f)
            c_new = f * c + i * self.activation(z_c)
            h_new = self.recurrent_activation(z_o) * self.activation(c_new)
            return (h_new, c_new), h_new

        (h, c), outputs = jax.lax.scan(step, (h0, c0), jnp.swapaxes(projected, 0, 1))
        output = jnp.swapaxes(outputs, 0, 1) if self.return_sequences else h
        return [output, h, c] if self.return_state else output

    def compute_output_shape(self, input_shape):
        state = self._state_shape((input_shape[0],) + tuple(input_shape[2:]))
        output = (state[0], input_shape[1]) + tuple(state[1:]) if self.return_sequences else state
        return [output, state, state] if self.return_state else output

    def get_config(self) -> dict:
        return {
            "name": self.name, "filters": self.filters, "kernel_size": self.kernel_size, "strides": self.strides,
            "padding": self.padding, "data_format": self.data_format, "dilation_rate": self.dilation_rate,
            "activation": activations.name_of(self.activation),
            "recurrent_activation": activations.name_of(self.recurrent_activation), "use_bias": self.use_bias,
            "unit_forget_bias": self.unit_forget_bias, "dropout": self.dropout, "recurrent_dropout": self.recurrent_dropout,
            "return_sequences": self.return_sequences, "return_state": self.return_state, "go_backwards": self.go_backwards,
        }


class ConvLSTM1D(_ConvLSTM):
    """1-D convolutional LSTM over `(batch, time, steps, channels)`; arguments as `ConvLSTM2D`."""

    rank = 1


class ConvLSTM2D(_ConvLSTM):
    """Convolutional LSTM over sequences of images `(batch, time, h, w, channels)`, as Keras's `ConvLSTM2D`.

    The LSTM's matrix products become convolutions: gates `i, f, c, o` from
    `conv(x_t, kernel) + conv_same(h_{t-1}, recurrent_kernel) + bias`, then
    `c_t = f * c_{t-1} + i * tanh(.)`, `h_t = o * tanh(c_t)`.

    Args:
      filters: channels of the state.
      kernel_size / strides / padding ("valid"/"same") / dilation_rate / data_format: of the input
        convolution (the recurrent convolution is stride 1, "same").
      activation ("tanh") / recurrent_activation ("sigmoid") / use_bias / unit_forget_bias (True).
      kernel_initializer / recurrent_initializer ("orthogonal") / bias_initializer.
      dropout / recurrent_dropout: one mask per sequence (of the input step / of the state), from
        the call's `key`, in training only.
      return_sequences: return every step `(batch, time, h', w', filters)` (else the last).
      return_state: also return the final `h` and `c`: `[output, h, c]`.
      go_backwards: read the sequence in reverse.
      stateful: not supported (raises); pass `initial_state=[h, c]` instead.

    Weights: `kernel` `kernel_size + (channels, 4 * filters)`, `recurrent_kernel`
    `kernel_size + (filters, 4 * filters)`, `bias` `(4 * filters,)`; gate order i, f, c, o.
    """

    rank = 2


class ConvLSTM3D(_ConvLSTM):
    """3-D convolutional LSTM over sequences of volumes `(batch, time, d, h, w, channels)`; arguments as `ConvLSTM2D`."""

    rank = 3


__all__ = ["ConvLSTM1D", "ConvLSTM2D", "ConvLSTM3D"]
