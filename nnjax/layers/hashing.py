"""Keras's `Hashing` layer: strings or integers to hash bins, with TensorFlow's hashes reproduced bit for bit.

Keras 3 hashes with TensorFlow: `tf.strings.to_hash_bucket_fast` (FarmHash `Fingerprint64`) without
a salt, `to_hash_bucket_strong` (SipHash-2-4 keyed by the salt's two words) with one; numbers are
first written as decimal strings (`tf.strings.as_string`; floats truncated to integers first). The
bin is `hash % num_bins`, or `hash % (num_bins - 1) + 1` with bin 0 kept for `mask_value`. nnjax
computes the same hashes on the host (`nnjax.layers.hash_functions`). Strings are hashed eagerly on
the host, as `StringLookup` does; integer inputs also work inside a compiled model (the hash runs
through `jax.pure_callback`), so `Hashing` can sit in front of an `Embedding` in a model.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from nnjax.layers.base import Layer
from nnjax.layers.hash_functions import fingerprint64, siphash24
from nnjax.layers.lookup import _host

OUTPUT_MODES = ("int", "one_hot", "multi_hot", "count")


def _token_bytes(value) -> bytes:
    """The bytes TensorFlow hashes for one input value (`as_string` for numbers)."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, (bool, np.bool_)):
        return b"true" if value else b"false"
    if isinstance(value, (float, np.floating)):
        value = int(value)  # TensorFlow casts floats to int64 (truncation) before `as_string`
    return str(int(value)).encode("ascii")


class Hashing(Layer):
    """Hashes strings or integers into `num_bins` bins, as Keras's `Hashing`.

    Args:
      num_bins: the number of bins, the mask bin included when `mask_value` is set.
      mask_value: a value mapped to bin 0 (the others then hash into bins `1..num_bins-1`), or None.
      salt: None (FarmHash `Fingerprint64`), an int `s` (SipHash-2-4 keyed by `[s, s]`) or a pair of ints.
      output_mode: "int" (bin ids, the input's shape), "one_hot" (a trailing axis of size 1 is
        encoded in place), "multi_hot" or "count" (over the samples' axis, as Keras).
      sparse: must be False (Keras supports sparse outputs on TensorFlow only).
      dtype: the output dtype: "int64" (default) or "int32" for "int", float32 otherwise.
      name: the layer's name.

    Input shape:
      Strings (a list, a NumPy array of str/bytes/object) or numbers, any shape `(...)`.

    Output shape:
      "int": `(...)` of integers; "one_hot": `(..., num_bins)`; "multi_hot"/"count" of a
      `(B, S)` input: `(B, num_bins)`.

    Raises:
      ValueError: for a bad `num_bins`, `salt`, `output_mode`, `dtype` or `sparse=True`.

    Example:
      >>> layer = nj.layers.Hashing(num_bins=3)
      >>> layer([["A"], ["B"], ["C"], ["D"], ["E"]]).tolist()
      [[1], [0], [1], [1], [2]]
      >>> nj.layers.Hashing(num_bins=3, salt=133)([["A"], ["B"], ["C"]]).tolist()
      [[0], [0], [2]]
    """

    _checked_axes = ()

    def __init__(
        self, num_bins: int, mask_value=None, salt=None, output_mode: str = "int", sparse: bool = False, dtype=None, **kwargs
    ):
        if dtype is None:
            dtype = "int64" if output_mode == "int" else "float32"
        super().__init__(dtype=dtype, **kwargs)
        where = f'Hashing "{self.name}"'
        if num_bins is None or isinstance(num_bins, bool) or not isinstance(num_bins, (int, np.integer)) or num_bins <= 0:
            raise ValueError(f"{where}: `num_bins` must be a positive int; got num_bins={num_bins!r}")
        if output_mode not in OUTPUT_MODES:
            raise ValueError(f"{where}: `output_mode` must be one of {OUTPUT_MODES}; got output_mode={output_mode!r}")
        if output_mode == "int" and self.param_dtype.name not in ("int32", "int64"):
            raise ValueError(f"{where}: with output_mode='int', `dtype` must be 'int32' or 'int64'; got dtype={dtype!r}")
        if sparse and output_mode == "int":
            raise ValueError(
                f"{where}: `sparse=True` needs output_mode 'one_hot', 'multi_hot' or 'count'; got output_mode={output_mode!r}"
            )
        if sparse:
            raise ValueError(
                f"{where}: `sparse=True` is not supported (Keras supports it on TensorFlow only; nnjax has dense arrays)"
            )
        if salt is not None:
            if isinstance(salt, (tuple, list)) and len(salt) == 2 and all(isinstance(s, (int, np.integer)) for s in salt):
                salt = [int(s) for s in salt]
            elif isinstance(salt, (int, np.integer)) and not isinstance(salt, bool):
                salt = [int(salt), int(salt)]
            else:
                raise ValueError(f"{where}: `salt` must be an int or a pair of ints; got salt={salt!r}")
        self.num_bins, self.mask_value, self.salt = int(num_bins), mask_value, salt
        self.output_mode, self.sparse = output_mode, False

    # -- hashing on the host ------------------------------------------------------------
    def _hash(self, token: bytes) -> int:
        if self.salt is None:
            return fingerprint64(token)
        return siphash24(self.salt[0], self.salt[1], token)

    def _is_mask(self, value) -> bool:
        if isinstance(value, bytes):
            value = value.decode("utf-8", "surrogateescape")
        mask = self.mask_value.decode() if isinstance(self.mask_value, bytes) else self.mask_value
        if isinstance(value, str) != isinstance(mask, str):
            return False
        return bool(value == mask)

    def _bins(self, array: np.ndarray) -> np.ndarray:
        """Bin ids (int64) of a NumPy array of strings or numbers, same shape."""
        masked = self.mask_value is not None and self.num_bins > 1
        bins = self.num_bins - 1 if masked else self.num_bins
        values = array.reshape(-1).tolist()
        out = np.empty(len(values), np.int64)
        seen: dict = {}
        for i, value in enumerate(values):
            token = _token_bytes(value)
            bin_id = seen.get(token)
            if bin_id is None:
                bin_id = seen[token] = self._hash(token) % bins + (1 if masked else 0)
            out[i] = 0 if masked and self._is_mask(value) else bin_id
        return out.reshape(array.shape)

    def _encode(self, ids: np.ndarray) -> np.ndarray:
        """Keras's `encode_categorical_inputs` of bin ids, in the output dtype."""
        dtype = jax.dtypes.canonicalize_dtype(self.param_dtype)
        if self.output_mode == "int":
            return ids.astype(dtype)
        if self.output_mode == "one_hot":
            if ids.ndim and ids.shape[-1] == 1:
                ids = ids[..., 0]
            ids = ids.reshape(1) if ids.ndim == 0 else ids
            return np.eye(self.num_bins, dtype=dtype)[ids]
        ids = ids.reshape(1) if ids.ndim == 0 else ids
        encoded = np.eye(self.num_bins, dtype=dtype)[ids]
        axis = 1 if ids.ndim > 1 else 0  # Keras reduces axis 1 (the samples' axis of a (B, S) input)
        return encoded.max(axis=axis) if self.output_mode == "multi_hot" else encoded.sum(axis=axis)

    def _output_shape(self, shape: tuple) -> tuple:
        shape = tuple(shape)
        if self.output_mode == "int":
            return shape
        if self.output_mode == "one_hot":
            if shape and shape[-1] == 1:
                shape = shape[:-1]
            return (shape or (1,)) + (self.num_bins,)
        shape = shape or (1,)
        return (shape[:1] + shape[2:] if len(shape) > 1 else ()) + (self.num_bins,)

    def _host_call(self, array: np.ndarray) -> np.ndarray:
        return self._encode(self._bins(np.asarray(array)))

    def __call__(self, x, training=None, key=None):
        """Hashes `x`: strings on the host, numbers on the host or inside `jit` (through `jax.pure_callback`).

        Returns:
          A JAX array of `compute_output_shape`'s shape: int ids ("int") or float32 encodings.
        """
        del training, key
        if isinstance(x, jax.core.Tracer):
            if not (jnp.issubdtype(x.dtype, jnp.integer) or jnp.issubdtype(x.dtype, jnp.floating) or x.dtype == jnp.bool_):
                raise TypeError(
                    f'Hashing "{self.name}": expected integer, float or string inputs; received a traced value of dtype {x.dtype}'
                )
            spec = jax.ShapeDtypeStruct(self._output_shape(x.shape), jax.dtypes.canonicalize_dtype(self.param_dtype))
            return jax.pure_callback(self._host_call, spec, x, vmap_method="sequential")
        return jnp.asarray(self._host_call(_host(f'Hashing "{self.name}"', x)))

    def compute_output_shape(self, input_shape):
        return self._output_shape(tuple(input_shape))

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "num_bins": self.num_bins,
            "salt": self.salt,
            "mask_value": self.mask_value,
            "output_mode": self.output_mode,
            "sparse": self.sparse,
        }


__all__ = ["Hashing"]
