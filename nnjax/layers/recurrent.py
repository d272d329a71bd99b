"""Recurrent layers: SimpleRNN, LSTM, GRU (and their cells), the generic `RNN`, and `Bidirectional`.

The equations, gate orders and weight shapes are Keras's, so weights copied from Keras give the
same outputs:

- SimpleRNN: `h_t = activation(x_t W + h_{t-1} U + b)`.
- LSTM (gates i, f, c, o): `z = x_t W + h_{t-1} U + b`; `i, f, o = sigmoid(z_i, z_f, z_o)`;
  `c_t = f * c_{t-1} + i * tanh(z_c)`; `h_t = o * tanh(c_t)`.
- GRU (gates z, r, h; `reset_after=True`, Keras's default): `inner = h_{t-1} U + b_rec`;
  `z = sigmoid(x W_z + b_z + inner_z)`; `r = sigmoid(x W_r + b_r + inner_r)`;
  `hh = tanh(x W_h + b_h + r * inner_h)`; `h_t = z * h_{t-1} + (1 - z) * hh`.

The input projection `x W + b` of every step is one matmul before the loop; the loop itself is a
`jax.lax.scan` over time, so the layer compiles once whatever the sequence length's value.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp

from nnjax import activations, initializers, regularizers
from nnjax.layers.base import Layer, layer_config, layer_from_config, snake_case, unique_name
from nnjax.layers.masking import check_mask_shape
from nnjax.layers.utils import cast_like, check_choice


@dataclasses.dataclass(frozen=True)
class _ForgetGateOnes:
    """Keras's `unit_forget_bias`: the LSTM bias `[init(u), ones(u), init(2u)]` (gates i, f, c, o)."""

    base: Callable

    def __call__(self, key, shape, dtype=jnp.float32):
        units = shape[0] // 4
        first, rest = jax.random.split(key)
        return jnp.concatenate([self.base(first, (units,), dtype), jnp.ones((units,), dtype), self.base(rest, (2 * units,), dtype)])


def _dropout_mask(key, rate: float, shape, dtype):
    keep = jax.random.bernoulli(key, 1.0 - rate, shape)
    return keep.astype(dtype) / jnp.asarray(1.0 - rate, dtype)


class _Cell(Layer):
    """A recurrent cell: one time step of a recurrent layer, with Keras's `cell(inputs, states)` call.

    Subclasses define the weights (`build`), `num_gates`, and `recur(states, projected_t, recurrent_mask)`
    (one step from the projected inputs, returning `(output, new_states)`); `project(x)` computes the
    input part `x W + b` for all steps at once.
    """

    _ndim = 2
    _checked_axes = (-1,)
    _jit_eager_calls = True
    num_gates: int = 1
    _weight_options = (("kernel", "kernel"), ("recurrent", "recurrent_kernel"), ("bias", "bias"))
    _activity_in_config = False

    def __init__(self, units: int, activation="tanh", use_bias: bool = True, kernel_initializer="glorot_uniform",
                 recurrent_initializer="orthogonal", bias_initializer="zeros", dropout: float = 0.0,
                 recurrent_dropout: float = 0.0, **kwargs):
        name, key, seed, dtype, input_shape = (kwargs.pop(k, None) for k in ("name", "key", "seed", "dtype", "input_shape"))
        weight_options = {f"{prefix}_{kind}": kwargs[f"{prefix}_{kind}"] for prefix, _ in self._weight_options
                          for kind in ("regularizer", "constraint") if f"{prefix}_{kind}" in kwargs}
        super().__init__(name=name, key=key, seed=seed, dtype=dtype, input_shape=input_shape, **weight_options)
        where = f'{type(self).__name__} "{self.name}"'
        if isinstance(units, bool) or not isinstance(units, int) or units <= 0:
            raise ValueError(f"{where}: `units` must be a positive int; got {units!r}")
        for arg, rate in (("dropout", dropout), ("recurrent_dropout", recurrent_dropout)):
            if not 0.0 <= float(rate) < 1.0:
                raise ValueError(f"{where}: `{arg}` must be in [0, 1); got {rate!r}")
        self.units = units
        self.activation = activations.get(activation, where=where)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = initializers.get(kernel_initializer, where=where)
        self.recurrent_initializer = initializers.get(recurrent_initializer, where=where)
        self.bias_initializer = initializers.get(bias_initializer, where=where)
        self.dropout = float(dropout)
        self.recurrent_dropout = float(recurrent_dropout)
        self._ctor = tuple(sorted(
            {"units": units, "activation": activation, "use_bias": use_bias, "kernel_initializer": kernel_initializer,
             "recurrent_initializer": recurrent_initializer, "bias_initializer": bias_initializer, "dropout": dropout,
             "recurrent_dropout": recurrent_dropout, "dtype": dtype, **kwargs}.items()
        ))

    @property
    def state_size(self) -> tuple[int, ...]:
        return (self.units,)

    def _build_kernels(self, features: int, key) -> tuple:
        kernel_key, recurrent_key, bias_key = jax.random.split(key, 3)
        width = self.num_gates * self.units
        self.kernel = self.add_weight((features, width), self.kernel_initializer, key=kernel_key)
        self.recurrent_kernel = self.add_weight((self.units, width), self.recurrent_initializer, key=recurrent_key)
        return bias_key

    def build(self, input_shape, key):
        bias_key = self._build_kernels(input_shape[-1], key)
        if self.use_bias:
            self.bias = self.add_weight((self.num_gates * self.units,), self.bias_initializer, key=bias_key)

    def initial_states(self, batch: int, dtype) -> list:
        return [jnp.zeros((batch, size), dtype) for size in self.state_size]

    def project(self, x):
        """The input part of every step, `x W + b`: `(..., features) -> (..., num_gates * units)`."""
        y = x @ cast_like(self.kernel[...], x)
        if self.use_bias:
            y = y + cast_like(self._input_bias(), y)
        return y

    def _input_bias(self):
        return self.bias[...]

    def masks(self, batch: int, features: int, dtype, training: bool, key):
        """Keras's dropout masks, drawn once per sequence: `(input_mask, recurrent_mask)` or Nones."""
        need_in = training and self.dropout > 0.0
        need_rec = training and self.recurrent_dropout > 0.0
        if (need_in or need_rec) and key is None:
            raise ValueError(
                f'{type(self).__name__} "{self.name}": training=True with dropout needs a PRNG key; call '
                "layer(x, training=True, key=key) (fit and train_step pass one for you)"
            )
        in_key, rec_key = jax.random.split(key) if (need_in or need_rec) else (None, None)
        in_mask = _dropout_mask(in_key, self.dropout, (batch, features), dtype) if need_in else None
        rec_mask = _dropout_mask(rec_key, self.recurrent_dropout, (batch, self.units), dtype) if need_rec else None
        return in_mask, rec_mask

    def __call__(self, inputs, states=None, training: bool = False, key=None):
        """One step, as Keras's `cell(inputs, states)`: `(batch, features) -> (output, new_states)`."""
        if not self.built:
            self.ensure_built(inputs.shape)
        else:
            self._check_input(inputs)
        return self._invoke(inputs, states, training=training, key=key)

    def call(self, inputs, states=None, *, training=False, key=None):
        states = self.initial_states(inputs.shape[0], inputs.dtype) if states is None else list(states)
        in_mask, rec_mask = self.masks(inputs.shape[0], inputs.shape[-1], inputs.dtype, training, key)
        if in_mask is not None:
            inputs = inputs * in_mask
        return self.recur(states, self.project(inputs), rec_mask)

    def get_config(self) -> dict:
        return {"name": self.name, **dict(self._ctor)}


class SimpleRNNCell(_Cell):
    """One step of `SimpleRNN`: `h = activation(x W + h_prev U + b)`.

    Args:
      units: state width.
      activation: "tanh" by default.
      use_bias / kernel_initializer / recurrent_initializer ("orthogonal") / bias_initializer.
      dropout / recurrent_dropout: fractions of inputs / states dropped in training (one mask per sequence).

    Weights: kernel `(features, units)`, recurrent_kernel `(units, units)`, bias `(units,)`.
    """

    num_gates = 1

    def recur(self, states, projected, recurrent_mask=None):
        h = states[0]
        h_in = h if recurrent_mask is None else h * recurrent_mask
        h = self.activation(projected + h_in @ cast_like(self.recurrent_kernel[...], h))
        return h, [h]


class LSTMCell(_Cell):
    """One step of `LSTM` (gates i, f, c, o in that order, as Keras).

    Args:
      units: state width.
      activation: for the candidate and the output ("tanh").
      recurrent_activation: for the gates ("sigmoid").
      unit_forget_bias: initialise the forget gate's bias to 1 (Keras's default).
      others: as `SimpleRNNCell`.

    Weights: kernel `(features, 4 * units)`, recurrent_kernel `(units, 4 * units)`, bias `(4 * units,)`.
    States: `[h, c]`.
    """

    num_gates = 4

    def __init__(self, units: int, activation="tanh", recurrent_activation="sigmoid", use_bias: bool = True,
                 kernel_initializer="glorot_uniform", recurrent_initializer="orthogonal", bias_initializer="zeros",
                 unit_forget_bias: bool = True, dropout: float = 0.0, recurrent_dropout: float = 0.0, **kwargs):
        super().__init__(units, activation, use_bias, kernel_initializer, recurrent_initializer, bias_initializer, dropout,
                         recurrent_dropout, recurrent_activation=recurrent_activation, unit_forget_bias=unit_forget_bias,
                         **kwargs)
        self.recurrent_activation = activations.get(recurrent_activation, where=f'LSTMCell "{self.name}"')
        self.unit_forget_bias = bool(unit_forget_bias)

    @property
    def state_size(self):
        return (self.units, self.units)

    def build(self, input_shape, key):
        bias_key = self._build_kernels(input_shape[-1], key)
        if self.use_bias:
            init = _ForgetGateOnes(self.bias_initializer) if self.unit_forget_bias else self.bias_initializer
            self.bias = self.add_weight((4 * self.units,), init, key=bias_key)

    def recur(self, states, projected, recurrent_mask=None):
        h, c = states
        h_in = h if recurrent_mask is None else h * recurrent_mask
        z = projected + h_in @ cast_like(self.recurrent_kernel[...], h)
        z_i, z_f, z_c, z_o = jnp.split(z, 4, axis=-1)
        i = self.recurrent_activation(z_i)
        f = self.recurrent_activation(z_f)
        c = f * c + i * self.activation(z_c)
        o = self.recurrent_activation(z_o)
        h = o * self.activation(c)
        return h, [h, c]


class GRUCell(_Cell):
    """One step of `GRU` (gates z, r, h in that order, as Keras).

    Args:
      units: state width.
      activation: for the candidate ("tanh"); recurrent_activation: for the gates ("sigmoid").
      reset_after: apply the reset gate after the recurrent matmul (True, Keras's default and the
        cuDNN form; the bias is then `(2, 3 * units)`: input and recurrent biases) or before it
        (False; bias `(3 * units,)`).
      others: as `SimpleRNNCell`.

    Weights: kernel `(features, 3 * units)`, recurrent_kernel `(units, 3 * units)`.
    """

    num_gates = 3

    def __init__(self, units: int, activation="tanh", recurrent_activation="sigmoid", use_bias: bool = True,
                 kernel_initializer="glorot_uniform", recurrent_initializer="orthogonal", bias_initializer="zeros",
                 dropout: float = 0.0, recurrent_dropout: float = 0.0, reset_after: bool = True, **kwargs):
        super().__init__(units, activation, use_bias, kernel_initializer, recurrent_initializer, bias_initializer, dropout,
                         recurrent_dropout, recurrent_activation=recurrent_activation, reset_after=reset_after, **kwargs)
        self.recurrent_activation = activations.get(recurrent_activation, where=f'GRUCell "{self.name}"')
        self.reset_after = bool(reset_after)

    def build(self, input_shape, key):
        bias_key = self._build_kernels(input_shape[-1], key)
        if self.use_bias:
            shape = (2, 3 * self.units) if self.reset_after else (3 * self.units,)
            self.bias = self.add_weight(shape, self.bias_initializer, key=bias_key)

    def _input_bias(self):
        return self.bias[...][0] if self.reset_after else self.bias[...]

    def recur(self, states, projected, recurrent_mask=None):
        h = states[0]
        # Keras applies the recurrent dropout mask to h_{t-1} everywhere in the step, the update included.
        h = h if recurrent_mask is None else h * recurrent_mask
        u = self.units
        kernel = cast_like(self.recurrent_kernel[...], h)
        x_z, x_r, x_h = jnp.split(projected, 3, axis=-1)
        if self.reset_after:
            inner = h @ kernel
            if self.use_bias:
                inner = inner + cast_like(self.bias[...][1], inner)
            r_z, r_r, r_h = jnp.split(inner, 3, axis=-1)
            z = self.recurrent_activation(x_z + r_z)
            r = self.recurrent_activation(x_r + r_r)
            hh = self.activation(x_h + r * r_h)
        else:
            inner = h @ kernel[:, : 2 * u]
            z = self.recurrent_activation(x_z + inner[..., :u])
            r = self.recurrent_activation(x_r + inner[..., u:])
            hh = self.activation(x_h + (r * h) @ kernel[:, 2 * u:])
        h = z * h + (1.0 - z) * hh
        return h, [h]


class RNN(Layer):
    """Runs a cell over the time axis of `(batch, timesteps, features)` with `jax.lax.scan`.

    Args:
      cell: an nnjax cell (`SimpleRNNCell`, `LSTMCell`, `GRUCell`).
      return_sequences: return every step's output `(batch, timesteps, units)` instead of the last
        `(batch, units)`.
      return_state: also return the final states: `[output, *states]` (LSTM: `[output, h, c]`).
      go_backwards: read the sequence from the end; with `return_sequences`, outputs stay in the order
        they were computed (reversed), as in Keras.
      unroll: unroll the scan (True: fully; an int: that many steps per iteration).
      zero_output_for_mask: with a mask, masked steps output zeros instead of the previous step's output.

    Call: `layer(x, training=False, key=None, initial_state=None, mask=None)`; `initial_state` is a list
    of `(batch, units)` arrays. Dropout masks come from `key` (one per sequence). `mask` (booleans
    `(batch, timesteps)`, from `Embedding(mask_zero=True)` or `Masking` when not given) skips steps
    as Keras does: a masked step keeps the states and repeats the previous output. The output
    carries the mask on with `return_sequences`.
    """

    supports_masking = True

    _ndim = 3
    _jit_eager_calls = True

    def __init__(self, cell: _Cell, return_sequences: bool = False, return_state: bool = False,
                 go_backwards: bool = False, unroll: bool | int = False, zero_output_for_mask: bool = False, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(cell, _Cell):
            raise TypeError(
                f'RNN "{self.name}": `cell` must be an nnjax cell (SimpleRNNCell, LSTMCell, GRUCell); got {type(cell).__name__}'
            )
        self.cell = cell
        self.return_sequences = bool(return_sequences)
        self.return_state = bool(return_state)
        self.go_backwards = bool(go_backwards)
        self.unroll = unroll
        self.zero_output_for_mask = bool(zero_output_for_mask)
        self._checked_axes = (-1,)

    @property
    def units(self) -> int:
        return self.cell.units

    def build(self, input_shape, key):
        self.cell.ensure_built((input_shape[0], input_shape[-1]), key)

    def __call__(self, x, training: bool = False, key=None, initial_state: Sequence | None = None, mask=None):
        """`(batch, timesteps, features)` -> output (and final states with `return_state`)."""
        if not self.built:
            self.ensure_built(x.shape)
        else:
            self._check_input(x)
        if mask is not None:
            mask = check_mask_shape(f'Layer "{self.name}"', mask, x)
        outputs = self._invoke(x, training=training, key=key, initial_state=initial_state, mask=mask)
        self._add_penalties(outputs)
        return outputs

    def compute_mask(self, inputs, previous_mask=None):
        mask = previous_mask[0] if isinstance(previous_mask, (list, tuple)) else previous_mask
        output_mask = mask if self.return_sequences else None
        if self.return_state:
            return [output_mask] + [None] * len(self.cell.state_size)
        return output_mask

    def _initial(self, x, initial_state):
        batch = x.shape[0]
        if initial_state is None:
            return self.cell.initial_states(batch, x.dtype)
        states = list(initial_state) if isinstance(initial_state, (list, tuple)) else [initial_state]
        expected = [(batch, size) for size in self.cell.state_size]
        received = [tuple(jnp.shape(s)) for s in states]
        if received != expected:
            raise ValueError(
                f'Layer "{self.name}": `initial_state` must be {len(expected)} array(s) of shapes {expected}; '
                f"received shapes {received}"
            )
        return [jnp.asarray(s).astype(x.dtype) for s in states]

    def call(self, x, *, training=False, key=None, initial_state=None, mask=None):
        cell = self.cell
        states = self._initial(x, initial_state)
        if self.go_backwards:
            x = jnp.flip(x, axis=1)
            mask = None if mask is None else jnp.flip(mask, axis=1)
        in_mask, rec_mask = cell.masks(x.shape[0], x.shape[-1], x.dtype, training, key)
        if in_mask is not None:
            x = x * in_mask[:, None, :]
        projected = jnp.swapaxes(cell.project(x), 0, 1)  # (timesteps, batch, gates * units)

        def step(carry, projected_t):
            output, new_states = cell.recur(carry, projected_t, rec_mask)
            return new_states, output

        def masked_step(carry, inputs_t):
            # Keras's rule: a masked step keeps every state and outputs the previous output (the first
            # state) or zeros (`zero_output_for_mask`).
            projected_t, keep = inputs_t
            output, new_states = cell.recur(carry, projected_t, rec_mask)
            keep = keep[:, None]
            previous = jnp.zeros_like(output) if self.zero_output_for_mask else carry[0]
            new_states = [jnp.where(keep, new, old) for new, old in zip(new_states, carry, strict=True)]
            return new_states, jnp.where(keep, output, previous)

        unroll = x.shape[1] if self.unroll is True else max(int(self.unroll), 1)
        if mask is None:
            final_states, outputs = jax.lax.scan(step, states, projected, unroll=unroll)
        else:
            final_states, outputs = jax.lax.scan(masked_step, states, (projected, jnp.swapaxes(mask, 0, 1)), unroll=unroll)
        output = jnp.swapaxes(outputs, 0, 1) if self.return_sequences else outputs[-1]
        if self.return_state:
            return [output, *final_states]
        return output

    def compute_output_shape(self, input_shape):
        batch, steps = input_shape[0], input_shape[1]
        output = (batch, steps, self.units) if self.return_sequences else (batch, self.units)
        if self.return_state:
            return [output] + [(batch, size) for size in self.cell.state_size]
        return output

    def _add_penalties(self, outputs) -> None:
        super()._add_penalties(outputs)
        self.cell._add_weight_penalties()  # the cell's weights are used through `project`/`recur`, not its `__call__`

    def _clone_args(self) -> dict:
        return {"return_sequences": self.return_sequences, "return_state": self.return_state,
                "go_backwards": self.go_backwards, "unroll": self.unroll, "zero_output_for_mask": self.zero_output_for_mask}

    def reversed_copy(self, name: str) -> RNN:
        """An unbuilt copy of this layer that reads the other way (`go_backwards` flipped), with fresh weights."""
        args = self._clone_args() | {"go_backwards": not self.go_backwards, "name": name}
        cell = type(self.cell)(**dict(self.cell._ctor))
        return RNN(cell, **args)

    def get_config(self) -> dict:
        return {"name": self.name, "cell": layer_config(self.cell), **self._clone_args()}

    @classmethod
    def from_config(cls, config: dict):
        """Rebuilds the layer from `get_config()` (its cell given as a config or as a cell)."""
        config = dict(config)
        if "cell" in config:  # RNN(cell); SimpleRNN/LSTM/GRU write their cell's arguments flat, as Keras
            config["cell"] = layer_from_config(config["cell"], f"{cls.__name__}.from_config")
        return cls(**config)


class _KerasRNN(RNN):
    """SimpleRNN/LSTM/GRU: an `RNN` whose constructor takes the cell's arguments directly."""

    _cell_type: type = _Cell

    def __init__(self, units: int, *, return_sequences: bool = False, return_state: bool = False,
                 go_backwards: bool = False, unroll: bool | int = False, zero_output_for_mask: bool = False,
                 name: str | None = None, key=None, seed=None, dtype=None, input_shape=None, activity_regularizer=None,
                 **cell_kwargs):
        name = name or unique_name(snake_case(type(self).__name__))
        try:
            cell = self._cell_type(units, dtype=dtype, name=f"{name}_cell", **cell_kwargs)
        except (TypeError, ValueError) as err:
            raise type(err)(f'{type(self).__name__} "{name}": {err}') from None
        super().__init__(cell, return_sequences=return_sequences, return_state=return_state, go_backwards=go_backwards,
                         unroll=unroll, zero_output_for_mask=zero_output_for_mask, name=name, key=key, seed=seed, dtype=dtype,
                         input_shape=input_shape, activity_regularizer=activity_regularizer)
        self._cell_args = tuple(sorted({"units": units, "dtype": dtype, **cell_kwargs}.items()))

    def reversed_copy(self, name: str) -> RNN:
        args = self._clone_args() | {"go_backwards": not self.go_backwards, "name": name}
        return type(self)(**dict(self._cell_args), **args)

    def get_config(self) -> dict:
        """Keras's flat config: the cell's arguments (regularizers and constraints serialized), the layer's own."""
        cell = {k: v for k, v in self.cell.get_config().items() if k != "name" and not (k == "dtype" and v is None)}
        return {"name": self.name, **cell, **self._clone_args(),
                "activity_regularizer": regularizers.serialize(self.activity_regularizer)}


class SimpleRNN(_KerasRNN):
    """A fully connected recurrent layer: `h_t = activation(x_t W + h_{t-1} U + b)`.

    Args:
      units: state width.
      activation: "tanh" by default.
      return_sequences / return_state / go_backwards / unroll: as `RNN`.
      dropout / recurrent_dropout / initializers: as `SimpleRNNCell`.

    Input `(batch, timesteps, features)`; output `(batch, units)` or `(batch, timesteps, units)`.
    Parameter count `units * (features + units + 1)`.
    """

    _cell_type = SimpleRNNCell


class LSTM(_KerasRNN):
    """Long short-term memory (Hochreiter & Schmidhuber, 1997), with Keras's equations and weight layout.

    Args:
      units: state width.
      activation ("tanh") / recurrent_activation ("sigmoid") / unit_forget_bias (True).
      return_sequences / return_state / go_backwards / unroll: as `RNN`.
      dropout / recurrent_dropout: one mask per sequence, from the call's `key`.

    Input `(batch, timesteps, features)`; output `(batch, units)` or `(batch, timesteps, units)`;
    with `return_state`, `[output, h, c]`. Parameter count `4 * units * (features + units + 1)`.

    Example:
      >>> x = np.zeros((4, 8, 8), np.float32)
      >>> nj.layers.LSTM(32)(x).shape
      (4, 32)
    """

    _cell_type = LSTMCell


class GRU(_KerasRNN):
    """Gated recurrent unit (Cho et al., 2014), Keras's `reset_after=True` form by default.

    Args:
      units: state width.
      activation / recurrent_activation / reset_after: as `GRUCell`.
      return_sequences / return_state / go_backwards / unroll: as `RNN`.

    Input `(batch, timesteps, features)`; output `(batch, units)` or `(batch, timesteps, units)`;
    with `return_state`, `[output, h]`. Parameter count `3 * units * (features + units + 2)`
    (`reset_after=True`).
    """

    _cell_type = GRUCell


class Bidirectional(Layer):
    """Runs a recurrent layer forwards and a copy of it backwards, and merges the two outputs.

    Args:
      layer: an `RNN`/`SimpleRNN`/`LSTM`/`GRU` (unbuilt).
      merge_mode: "concat" (default), "sum", "mul", "ave" or None (a list of the two outputs).
      backward_layer: the backward layer; by default a copy of `layer` with `go_backwards` flipped.

    With `return_sequences`, the backward outputs are flipped back to time order before merging, so
    step t of the output sees the whole sequence. With `return_state`, returns
    `[output, *forward_states, *backward_states]`. Forward and backward layers draw their dropout
    keys from `fold_in(key, 0)` and `fold_in(key, 1)`.
    """

    _ndim = 3
    _jit_eager_calls = True
    supports_masking = True

    def __init__(self, layer: RNN, merge_mode: str | None = "concat", backward_layer: RNN | None = None, **kwargs):
        super().__init__(**kwargs)
        where = f'Bidirectional "{self.name}"'
        if not isinstance(layer, RNN):
            raise TypeError(f"{where}: `layer` must be an nnjax recurrent layer (SimpleRNN, LSTM, GRU, RNN); got {type(layer).__name__}")
        if merge_mode is not None:
            merge_mode = check_choice(merge_mode, ("concat", "sum", "mul", "ave"), "merge_mode", where)
        self.merge_mode = merge_mode
        self.forward_layer = layer
        if backward_layer is None:
            backward_layer = layer.reversed_copy(name=f"backward_{layer.name}")
        elif not isinstance(backward_layer, RNN):
            raise TypeError(f"{where}: `backward_layer` must be an nnjax recurrent layer; got {type(backward_layer).__name__}")
        if backward_layer.return_sequences != layer.return_sequences or backward_layer.return_state != layer.return_state:
            raise ValueError(f"{where}: `backward_layer` must have the same return_sequences and return_state as `layer`")
        if backward_layer.go_backwards == layer.go_backwards:
            raise ValueError(f"{where}: `backward_layer` must read the other way (`go_backwards` = {not layer.go_backwards})")
        self.backward_layer = backward_layer
        for sub in (self.forward_layer, self.backward_layer):  # Keras: masked steps output zeros in both directions
            sub.zero_output_for_mask = sub.return_sequences
        self.return_sequences = layer.return_sequences
        self.return_state = layer.return_state
        self._checked_axes = (-1,)

    def build(self, input_shape, key):
        forward_key, backward_key = jax.random.split(key)
        self.forward_layer.ensure_built(input_shape, forward_key)
        self.backward_layer.ensure_built(input_shape, backward_key)

    def __call__(self, x, training: bool = False, key=None, initial_state: Sequence | None = None, mask=None):
        """`(batch, timesteps, features)` -> merged output (and states with `return_state`)."""
        if not self.built:
            self.ensure_built(x.shape)
        else:
            self._check_input(x)
        if mask is not None:
            mask = check_mask_shape(f'Layer "{self.name}"', mask, x)
        return self._invoke(x, training=training, key=key, initial_state=initial_state, mask=mask)

    def compute_mask(self, inputs, previous_mask=None):
        mask = previous_mask[0] if isinstance(previous_mask, (list, tuple)) else previous_mask
        if self.return_sequences:
            output_mask = [mask, mask] if self.merge_mode is None else [mask]
        else:
            output_mask = [None, None] if self.merge_mode is None else [None]
        if self.return_state:
            states = len(self.forward_layer.cell.state_size) + len(self.backward_layer.cell.state_size)
            return output_mask + [None] * states
        return output_mask if self.merge_mode is None else output_mask[0]

    def call(self, x, *, training=False, key=None, initial_state=None, mask=None):
        forward_init = backward_init = None
        if initial_state is not None:
            states = list(initial_state)
            half = len(states) // 2
            if len(states) % 2:
                raise ValueError(
                    f'Bidirectional "{self.name}": `initial_state` must hold the forward then the backward states '
                    f"(an even number of arrays); received {len(states)}"
                )
            forward_init, backward_init = states[:half], states[half:]
        forward_key = None if key is None else jax.random.fold_in(key, 0)
        backward_key = None if key is None else jax.random.fold_in(key, 1)
        forward = self.forward_layer(x, training=training, key=forward_key, initial_state=forward_init, mask=mask)
        backward = self.backward_layer(x, training=training, key=backward_key, initial_state=backward_init, mask=mask)
        forward_states = backward_states = []
        if self.return_state:
            forward, *forward_states = forward
            backward, *backward_states = backward
        if self.return_sequences:
            backward = jnp.flip(backward, axis=1)
        if self.merge_mode == "concat":
            output = jnp.concatenate([forward, backward], axis=-1)
        elif self.merge_mode == "sum":
            output = forward + backward
        elif self.merge_mode == "mul":
            output = forward * backward
        elif self.merge_mode == "ave":
            output = (forward + backward) / 2
        else:
            output = [forward, backward]
        if self.return_state:
            return ([*output] if self.merge_mode is None else [output]) + forward_states + backward_states
        return output

    def compute_output_shape(self, input_shape):
        forward = self.forward_layer.compute_output_shape(input_shape)
        output = forward[0] if self.return_state else forward
        if self.merge_mode == "concat":
            output = tuple(output[:-1]) + (output[-1] + self.backward_layer.units,)
        outputs = [output, tuple(output[:-1]) + (self.backward_layer.units,)] if self.merge_mode is None else [output]
        if self.return_state:
            states = list(forward[1:]) + [(input_shape[0], s) for s in self.backward_layer.cell.state_size]
            return outputs + states
        return outputs if self.merge_mode is None else output

    def get_config(self) -> dict:
        """Keras's config: the forward and backward layers as `{"module", "class_name", "config", "registered_name"}`."""
        return {"name": self.name, "trainable": self.trainable, "dtype": self.param_dtype.name, "merge_mode": self.merge_mode,
                "layer": layer_config(self.forward_layer), "backward_layer": layer_config(self.backward_layer)}  # fmt: skip

    @classmethod
    def from_config(cls, config: dict):
        """Rebuilds the layer from `get_config()` (the recurrent layers given as configs, or as layers)."""
        config = dict(config)

        def layer_of(value):
            return layer_from_config(value, "Bidirectional.from_config")

        config["layer"] = layer_of(config["layer"])
        if config.get("backward_layer") is not None:
            config["backward_layer"] = layer_of(config["backward_layer"])
        return cls(**config)


__all__ = ["GRU", "GRUCell", "LSTM", "LSTMCell", "RNN", "SimpleRNN", "SimpleRNNCell", "Bidirectional"]
