"""TimeDistributed (a layer applied to every time step) and Lambda (a function as a layer)."""

from __future__ import annotations

import inspect
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from nnjax.layers.base import Layer, layer_config, layer_from_config, shape_str


class TimeDistributed(Layer):
    """Applies `layer` to each slice `x[:, t]` of a `(batch, time, ...)` input, with the same weights.

    The time axis is folded into the batch axis (`(batch * time, ...)`), the layer runs once, and
    the result is unfolded: one kernel launch instead of one per step. For layers whose output for
    an example depends only on that example (Dense, Conv2D, Dropout, ...) this is exactly Keras's
    per-step loop. A layer that mixes the batch (BatchNormalization in training) sees statistics
    over all `batch * time` slices at once, where Keras's loop takes one step at a time.

    Args:
      layer: an nnjax `Layer` (built on the first call from the shape of one time step).

    Input `(batch, time, *inner_input)`; output `(batch, time, *inner_output)`.
    """

    _checked_axes = ()
    _jit_eager_calls = True
    _min_ndim = 3

    def __init__(self, layer: Layer, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(layer, Layer):
            raise ValueError(
                f'TimeDistributed "{self.name}": `layer` must be an nnjax Layer (nj.layers.*); '
                f"received {type(layer).__name__}"
            )
        self.layer = layer

    def first_sublayer(self) -> Layer | None:
        return self.layer

    def check_host_inputs(self, x) -> None:
        values = np.asarray(x)
        if values.ndim >= 2:
            self.layer.check_host_inputs(values.reshape((-1,) + values.shape[2:]))

    @staticmethod
    def _fold(shape):
        return (shape[0] * shape[1] if shape[0] is not None and shape[1] is not None else None,) + tuple(shape[2:])

    def build(self, input_shape, key):
        self.layer.ensure_built(self._fold(input_shape), key)

    def _check_input(self, x) -> None:
        if x.ndim < 3:
            raise ValueError(
                f'Input 0 of layer "{self.name}" is incompatible with the layer: expected min_ndim=3 '
                f"(batch, time, ...), found ndim={x.ndim}. Full shape received: {shape_str(x.shape)}"
            )

    def call(self, x, *, training=False, key=None):
        batch, time = x.shape[0], x.shape[1]
        flat = jnp.reshape(x, (batch * time,) + tuple(x.shape[2:]))
        y = self.layer(flat, training=training, key=key)
        return jax.tree.map(lambda a: jnp.reshape(a, (batch, time) + tuple(a.shape[1:])), y)

    def compute_output_shape(self, input_shape):
        inner = self.layer.compute_output_shape((None,) + tuple(input_shape[2:]))
        return (input_shape[0], input_shape[1]) + tuple(inner[1:])

    def get_config(self) -> dict:
        return {"name": self.name, "layer": layer_config(self.layer)}

    @classmethod
    def from_config(cls, config: dict):
        """Rebuilds the wrapper from `get_config()` (its layer given as a config or as a layer)."""
        config = dict(config)
        config["layer"] = layer_from_config(config["layer"], "TimeDistributed.from_config")
        return cls(**config)


class Lambda(Layer):
    """Wraps a function of arrays as a layer: `Lambda(lambda x: x ** 2)`, as Keras's `Lambda`.

    The function is called as `function(x, **arguments)`, plus `training=` when its signature has a
    `training` argument. It must be traceable by JAX (jnp operations, no Python branches on values)
    for `jit`, `fit` and `vmap`. A Lambda holds Python code, so a saved model keeps only its weights;
    the function itself is never serialised or deserialised.

    Args:
      function: the function to wrap.
      output_shape: the output shape without the batch axis (a tuple, or a callable of the input
        shape), used by `compute_output_shape`; inferred by tracing when None.
      mask: not supported (nnjax has no mask propagation); must be None.
      arguments: extra keyword arguments of `function` (Python values).
    """

    _checked_axes = ()

    def __init__(self, function: Callable, output_shape=None, mask=None, arguments: dict | None = None, **kwargs):
        super().__init__(**kwargs)
        if not callable(function):
            raise TypeError(f'Lambda "{self.name}": `function` must be callable; got {function!r}')
        if mask is not None:
            raise ValueError(f'Lambda "{self.name}": `mask` is not supported (nnjax layers do not propagate masks); got {mask!r}')
        self.function = function
        self.output_shape = output_shape
        self.arguments = dict(arguments or {})
        try:
            self._takes_training = "training" in inspect.signature(function).parameters
        except (TypeError, ValueError):
            self._takes_training = False

    def call(self, x, *, training=False, key=None):
        kwargs = dict(self.arguments)
        if self._takes_training:
            kwargs["training"] = training
        return self.function(x, **kwargs)

    def compute_output_shape(self, input_shape):
        if self.output_shape is None:
            return super().compute_output_shape(input_shape)
        if callable(self.output_shape):
            return tuple(self.output_shape(tuple(input_shape)))
        return (input_shape[0],) + tuple(self.output_shape)

    def get_config(self) -> dict:
        return {"name": self.name, "function": getattr(self.function, "__name__", repr(self.function)),
                "arguments": self.arguments}


__all__ = ["Lambda", "TimeDistributed"]
