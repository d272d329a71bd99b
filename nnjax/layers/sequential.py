"""Containers: `SequentialModule` (a stack of layers) and `LinenLayer` (a Linen module as a layer)."""

from __future__ import annotations

import inspect
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from nnjax.layers.base import Layer, unique_name
from nnjax.train.steps import call_module


class SequentialModule(Layer):
    """A Flax NNX module that applies its layers in order.

    Each layer gets its own dropout key, `fold_in(key, index)`.
    """

    _checked_axes = ()  # each layer checks its own input

    def __init__(self, layers: Sequence[nnx.Module] = (), *, name: str | None = None, input_shape=None):
        super().__init__(name=name or unique_name("sequential"), input_shape=input_shape)
        layers = list(layers)
        for index, layer in enumerate(layers):
            if not isinstance(layer, nnx.Module):
                raise TypeError(
                    f'Sequential "{self.name}": layer {index} must be an nnjax layer or a Flax NNX module; got {layer!r}'
                )
        self.layers = nnx.List(layers)
        if self.input_shape_hint is None and layers and isinstance(layers[0], Layer):
            self.input_shape_hint = layers[0].input_shape_hint
        self.input_dtype = None

    def first_sublayer(self):
        from nnjax.layers.core import InputLayer

        for layer in self.layers:
            if isinstance(layer, Layer) and not isinstance(layer, InputLayer):
                return layer
        return None

    def add(self, layer: nnx.Module) -> None:
        if self.built:
            raise ValueError(f'Sequential "{self.name}": cannot add a layer to a built model')
        if not isinstance(layer, nnx.Module):
            raise TypeError(f'Sequential "{self.name}": expected an nnjax layer or a Flax NNX module; got {layer!r}')
        self.layers.append(layer)
        if len(self.layers) == 1 and isinstance(layer, Layer) and self.input_shape_hint is None:
            self.input_shape_hint = layer.input_shape_hint

    def build(self, input_shape, key):
        # A concrete forward pass on one zero example builds every layer in turn.
        if not self.layers:
            raise ValueError(f'Sequential "{self.name}": cannot build a model with no layers')
        x = jnp.zeros((1,) + tuple(input_shape[1:]), jax.dtypes.canonicalize_dtype(self.input_dtype or jnp.float32))
        for index, layer in enumerate(self.layers):
            if isinstance(layer, Layer):
                layer.ensure_built(x.shape, jax.random.fold_in(key, index))
            x = call_module(layer, x, training=False)

    def call(self, x, *, training=False, key=None):
        for index, layer in enumerate(self.layers):
            layer_key = None if key is None else jax.random.fold_in(key, index)
            x = call_module(layer, x, training=training, key=layer_key)
        return x


class LinenLayer(Layer):
    """Wraps a Flax Linen module as an nnjax layer (through `flax.nnx.bridge.ToNNX`).

    The Linen module's `__call__` may take `training`, `train` or `deterministic`;
    dropout keys arrive as the "dropout" RNG stream.
    """

    _checked_axes = ()

    def __init__(self, module, **kwargs):
        super().__init__(name=kwargs.pop("name", None) or unique_name(type(module).__name__.lower()), **kwargs)
        self.linen_module = module
        params = inspect.signature(type(module).__call__).parameters
        self.mode_arg = next((a for a in ("training", "train", "deterministic") if a in params), None)

    def build(self, input_shape, key):
        self.inner = nnx.bridge.ToNNX(self.linen_module, rngs=nnx.Rngs(params=key, dropout=jax.random.fold_in(key, 1)))
        nnx.bridge.lazy_init(self.inner, jnp.zeros((1,) + tuple(input_shape[1:]), jnp.float32), **self._mode(False))

    def _mode(self, training):
        if self.mode_arg is None:
            return {}
        return {self.mode_arg: (not training) if self.mode_arg == "deterministic" else training}

    def call(self, x, *, training=False, key=None):
        kwargs = self._mode(training)
        if key is not None:
            kwargs["rngs"] = nnx.Rngs(dropout=key)
        return self.inner(x, **kwargs)


def is_linen(module) -> bool:
    try:
        import flax.linen as nn
    except ImportError:  # pragma: no cover
        return False
    return isinstance(module, nn.Module)


__all__ = ["LinenLayer", "SequentialModule", "is_linen"]
