"""Containers: `SequentialModule` (a stack of layers) and `LinenLayer` (a Linen module as a layer)."""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from nnjax.layers.base import Layer, _trackable, layer_config, layer_from_config, unique_name
from nnjax.layers.calling import INFERENCE_KEY_SEED, call_module, call_signature, rng_arguments


class SequentialModule(Layer):
    """A Flax NNX module that applies its layers in order.

    Each layer gets its own dropout key, `fold_in(key, index)`.
    """

    _checked_axes = ()  # each layer checks its own input

    def __init__(self, layers: Sequence[nnx.Module] = (), *, name: str | None = None, input_shape=None):
        super().__init__(name=name or unique_name("sequential"), input_shape=input_shape)
        layers = [_trackable(layer) for layer in layers]  # an nj.Sequential/nj.Model inside: its module (Keras nests them)
        for index, layer in enumerate(layers):
            if not isinstance(layer, nnx.Module):
                raise TypeError(
                    f'Sequential "{self.name}": layer {index} must be an nnjax layer or a Flax NNX module; got {layer!r}'
                )
        self.layers = nnx.List(layers)
        if self.input_shape_hint is None and layers and isinstance(layers[0], Layer):
            self.input_shape_hint = layers[0].input_shape_hint
        self.input_dtype = None

    def get_config(self) -> dict:
        """Keras's Sequential config: `name` and each layer in Keras's serialized form."""
        return {"name": self.name, "layers": [layer_config(layer) for layer in self.layers]}

    @classmethod
    def from_config(cls, config: dict):
        config = dict(config)
        config["layers"] = [layer_from_config(layer, "Sequential.from_config") for layer in config.get("layers", ())]
        return cls(**config)

    def first_sublayer(self):
        from nnjax.layers.core import InputLayer

        for layer in self.layers:
            if isinstance(layer, Layer) and not isinstance(layer, InputLayer):
                return layer
        return None

    def add(self, layer: nnx.Module) -> None:
        if self.built:
            raise ValueError(f'Sequential "{self.name}": cannot add a layer to a built model')
        layer = _trackable(layer)
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

    - Mode: the Linen module's `__call__` may take `training`, `train`, `is_training` or
      `deterministic`; nnjax passes it (True in `fit`, inference in `evaluate`/`predict`).
    - Mutable collections: every collection is mutable during the call (`mutable=True`), so
      `nn.BatchNorm`'s `batch_stats` are updated in training and read in inference; values sown
      with `self.sow` reach a `loss_fn` as its `intermediates` (see `StepConfig.loss_fn`) and are not kept.
    - Randomness: every rng stream the module draws from (`self.make_rng(name)`, found by tracing it
      once in training mode when it is built) gets its own key: `fold_in(step key, i)` for the i-th
      stream name in training, `fold_in(PRNGKey(0), i)` in inference. `rng_streams=` adds names
      that tracing cannot find (streams used only in branches the build does not take).
    - Explicit keys: a required `__call__` parameter whose name ends in `rng` or `key` (the VAE's
      `z_rng`) gets a key as described in `nnjax.layers.calling.call_module`.
    """

    _checked_axes = ()
    _max_streams = 32

    def __init__(self, module, *, rng_streams=(), **kwargs):
        super().__init__(name=kwargs.pop("name", None) or unique_name(type(module).__name__.lower()), **kwargs)
        self.linen_module = module
        accepted, _, self.rng_args = call_signature(type(module))
        self.mode_arg = next((a for a in ("training", "train", "is_training", "deterministic") if a in accepted), None)
        self.rng_streams = tuple(dict.fromkeys(("dropout",) + tuple(rng_streams)))

    def build(self, input_shape, key):
        x = jnp.zeros((1,) + tuple(input_shape[1:]), jnp.float32)
        self.rng_streams = self._find_streams(x, key)
        self.inner = nnx.bridge.ToNNX(self.linen_module, rngs=nnx.Rngs(params=key, dropout=jax.random.fold_in(key, 1)))
        nnx.bridge.lazy_init(self.inner, x, **self._mode(False), **rng_arguments(self.rng_args, None))

    def _find_streams(self, x, key) -> tuple[str, ...]:
        """The rng stream names the module draws from in training mode (besides "params")."""
        import re

        from flax import errors

        module, kwargs = self.linen_module, {**self._mode(True), **rng_arguments(self.rng_args, key)}
        variables = jax.eval_shape(lambda: module.init({"params": key, "dropout": key}, x, **self._mode(False),
                                                       **rng_arguments(self.rng_args, None)))
        streams = list(self.rng_streams)
        for _ in range(self._max_streams):
            rngs = {name: key for name in streams}
            try:
                jax.eval_shape(lambda v, rngs=rngs: module.apply(v, x, rngs=rngs, mutable=True, **kwargs), variables)
                break
            except errors.InvalidRngError as error:
                found = re.search(r'needs PRNG for "([^"]+)"', str(error))
                if found is None or found.group(1) in streams:
                    raise
                streams.append(found.group(1))
        return tuple(streams)

    def _mode(self, training):
        if self.mode_arg is None:
            return {}
        return {self.mode_arg: (not training) if self.mode_arg == "deterministic" else training}

    def call(self, x, *, training=False, key=None):
        base = key if key is not None else jax.random.PRNGKey(INFERENCE_KEY_SEED)
        rngs = nnx.Rngs(**{name: jax.random.fold_in(base, index) for index, name in enumerate(self.rng_streams)})
        kwargs = {**self._mode(training), **rng_arguments(self.rng_args, key)}
        return self.inner(x, rngs=rngs, mutable=True, **kwargs)

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        """Output shape for `input_shape`, traced abstractly on a copy (the Linen call writes its collections)."""
        self.ensure_built(tuple(input_shape))
        x = jax.ShapeDtypeStruct(tuple(1 if d is None else d for d in input_shape), jnp.float32)
        graphdef, state = nnx.split(self)
        out = jax.eval_shape(lambda s, v: nnx.merge(graphdef, s).call(v), state, x)
        return (None,) + tuple(out.shape[1:])


def is_linen(module) -> bool:
    try:
        import flax.linen as nn
    except ImportError:  # pragma: no cover
        return False
    return isinstance(module, nn.Module)


__all__ = ["LinenLayer", "SequentialModule", "is_linen"]
