"""Embedding: integer ids to dense vectors, as Keras's `Embedding`."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from nnjax import initializers
from nnjax.layers.base import Layer, is_building, shape_str
from nnjax.layers.utils import is_concrete


def _keras_uniform(key, shape, dtype=jnp.float32):
    """Keras's default "uniform" embedding initialiser: U(-0.05, 0.05)."""
    return jax.random.uniform(key, shape, dtype, minval=-0.05, maxval=0.05)


class Embedding(Layer):
    """Looks up a row of an `(input_dim, output_dim)` table for each integer id.

    Input: integer ids of any shape `(batch, ...)` in `[0, input_dim)`; output `(batch, ..., output_dim)`
    in the table's dtype. Parameter count `input_dim * output_dim`.

    Ids are checked on the host when the input is a concrete array (eager calls, `predict_on_batch`
    inputs before tracing): a float array or an id outside `[0, input_dim)` raises. Inside `jit`,
    where values are unknown, an out-of-range id (negative ones too) gives a row of NaN rather than a clamped or wrapped
    row, so a wrong id cannot train unnoticed.

    Args:
      input_dim: vocabulary size (largest id + 1).
      output_dim: embedding width.
      embeddings_initializer: "uniform" (Keras's U(-0.05, 0.05), the default), another Keras name or
        a callable.
      mask_zero: id 0 is padding: the output carries the mask `ids != 0` to the next layers (RNNs skip
        the padded steps, `GlobalAveragePooling1D` and attention leave them out, and so do the loss
        and metrics of a model output that keeps the mask); see `nnjax.layers.masking`. As in
        Keras, id 0 still has a row, so `input_dim` counts it.
    """

    _checked_axes = ()
    _jit_eager_calls = True
    _weight_options = (("embeddings", "embeddings"),)

    def __init__(self, input_dim: int, output_dim: int, embeddings_initializer="uniform", mask_zero: bool = False,
                 **kwargs):
        super().__init__(**kwargs)
        where = f'Embedding "{self.name}"'
        for arg, value in (("input_dim", input_dim), ("output_dim", output_dim)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
                raise ValueError(f"{where}: `{arg}` must be a positive int; got {value!r}")
        self.input_dim = int(input_dim)
        self.output_dim = int(output_dim)
        self.mask_zero = bool(mask_zero)
        if isinstance(embeddings_initializer, str) and embeddings_initializer.lower() == "uniform":
            self.embeddings_initializer = _keras_uniform
        else:
            self.embeddings_initializer = initializers.get(embeddings_initializer, where=where)

    def build(self, input_shape, key):
        shape = (self.input_dim, self.output_dim)
        self.embeddings = self.add_weight(shape, self.embeddings_initializer, key=key)

    def _check_ids(self, ids) -> None:
        dtype = jnp.result_type(ids)
        if not jnp.issubdtype(dtype, jnp.integer):
            raise TypeError(
                f'Input 0 of layer "{self.name}" is incompatible with the layer: expected integer ids (int32/int64), '
                f"but received input of dtype {jnp.dtype(dtype).name} with shape {shape_str(tuple(np.shape(ids)))}"
            )
        if is_concrete(ids) and np.size(ids):
            host = np.asarray(ids)
            low, high = int(host.min()), int(host.max())
            if low < 0 or high >= self.input_dim:
                raise ValueError(
                    f'Input 0 of layer "{self.name}" is incompatible with the layer: expected ids in '
                    f"[0, {self.input_dim}) (input_dim={self.input_dim}), but received ids in [{low}, {high}]"
                )

    def check_host_inputs(self, x) -> None:
        """Ids must be integers in `[0, input_dim)`: checked on the whole dataset before training."""
        self._check_ids(x)

    def __call__(self, x, training: bool = False, key=None):
        """Looks up `x` (integer ids, shape `(batch, ...)`); see the class docstring for the checks."""
        if is_building() and jnp.issubdtype(jnp.result_type(x), jnp.floating):
            # A container builds its layers with a synthetic float zero example; zeros are valid ids.
            x = jnp.zeros(jnp.shape(x), jnp.int32)
        self._check_ids(x)
        return super().__call__(x, training=training, key=key)

    def call(self, x, *, training=False, key=None):
        table = self.embeddings[...]
        ids = jnp.where(x < 0, self.input_dim, x)  # negative ids would wrap around; send them out of range
        return jnp.take(table, ids, axis=0, mode="fill", fill_value=jnp.nan)

    def compute_mask(self, inputs, previous_mask=None):
        if not self.mask_zero:
            return None
        return jnp.not_equal(inputs, 0)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape) + (self.output_dim,)

    def get_config(self) -> dict:
        return {"name": self.name, "input_dim": self.input_dim, "output_dim": self.output_dim, "mask_zero": self.mask_zero}


__all__ = ["Embedding"]
