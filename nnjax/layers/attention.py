"""MultiHeadAttention with Keras's call signature, on `jax.nn.dot_product_attention`."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from nnjax import initializers
from nnjax.layers.base import Layer, shape_str
from nnjax.layers.utils import cast_like, is_prng_key


def _positive_int_or_none(value, arg: str, where: str):
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValueError(f"{where}: `{arg}` must be a positive int; got {value!r}")
    return int(value)


class MultiHeadAttention(Layer):
    """Multi-head attention (Vaswani et al., 2017) with Keras's arguments and weight layout.

    `mha(query, value, key=None, attention_mask=None, use_causal_mask=False)` projects `query`
    `(batch, T, dq)`, `key` and `value` `(batch, S, dv)` to `num_heads` heads, computes
    `softmax(Q K^T / sqrt(key_dim)) V` per head and projects back to `(batch, T, output_dim)`.
    Without attention dropout in training and without `return_attention_scores`, the heads go
    through `jax.nn.dot_product_attention`: `implementation="cudnn"` selects cuDNN's fused (flash)
    kernel on NVIDIA GPUs (bfloat16/float16 inputs); None lets JAX choose (XLA in JAX 0.10).
    A query whose `attention_mask` row allows no key gets what Keras 3 gives it: zero attention
    weights (and zero heads) when the scores are returned or `dropout > 0`, the mean of the values
    otherwise (Keras's fused path).

    Args:
      num_heads: number of heads.
      key_dim: width of each query/key head; when None, `query_width // num_heads` (which must
        divide evenly).
      value_dim: width of each value head (`key_dim` when None).
      dropout: dropout rate on the attention probabilities (training only; needs a key).
      use_bias: biases in the four projections.
      output_shape: output width (`query_width` when None).
      implementation: passed to `jax.nn.dot_product_attention`: None, "xla" or "cudnn".

    Call args:
      query: `(batch, T, dq)`.
      value: `(batch, S, dv)`; `query` when None (self-attention).
      key: `(batch, S, dk)`; `value` when None.
      attention_mask: boolean `(batch, T, S)` (or broadcastable); True where attention is allowed.
      return_attention_scores: also return the probabilities `(batch, num_heads, T, S)`.
      use_causal_mask: position t attends only to positions <= t (combined with `attention_mask`).
      training: enables attention dropout.
      rng: PRNG key for attention dropout. (Inside `Sequential`, whose layers get their key as
        `key=`, a PRNG key passed as `key` is taken as `rng`; an attention key tensor is never a
        `uint32[2]` array.)

    Weights: query/key/value kernels `(width, num_heads, head_dim)`, biases `(num_heads, head_dim)`,
    output kernel `(num_heads, value_dim, output_dim)`, bias `(output_dim,)`.
    """

    _checked_axes = ()
    _jit_eager_calls = True

    def __init__(self, num_heads: int, key_dim: int | None = None, value_dim: int | None = None, dropout: float = 0.0,
                 use_bias: bool = True, output_shape: int | None = None, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", implementation: str | None = None, **kwargs):
        super().__init__(**kwargs)
        where = self._where
        self.num_heads = _positive_int_or_none(num_heads, "num_heads", where)
        if self.num_heads is None:
            raise ValueError(f"{where}: `num_heads` must be a positive int; got None")
        self.key_dim = _positive_int_or_none(key_dim, "key_dim", where)
        self.value_dim = _positive_int_or_none(value_dim, "value_dim", where)
        self.output_dim = _positive_int_or_none(output_shape, "output_shape", where)
        if not 0.0 <= float(dropout) < 1.0:
            raise ValueError(f"{where}: `dropout` must be in [0, 1); got {dropout!r}")
        self.dropout = float(dropout)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = initializers.get(kernel_initializer, where=where)
        self.bias_initializer = initializers.get(bias_initializer, where=where)
        if implementation not in (None, "xla", "cudnn"):
            raise ValueError(f"{where}: `implementation` must be None, 'xla' or 'cudnn'; got {implementation!r}")
        self.implementation = implementation
        self._build_shapes = None

    @property
    def _where(self) -> str:
        return f'MultiHeadAttention "{self.name}"'

    def _check_rank(self, shape) -> None:
        if len(shape) != 3:
            raise ValueError(
                f'Input 0 of layer "{self.name}" is incompatible with the layer: expected query, key and value of '
                f"rank 3 (batch, sequence, features), found ndim={len(shape)}. Full shape received: {shape_str(tuple(shape))}"
            )

    def build(self, input_shape, key):
        query_shape, value_shape, key_shape = self._build_shapes
        width = query_shape[-1]
        if self.key_dim is None:
            if width % self.num_heads:
                raise ValueError(
                    f"{self._where}: num_heads={self.num_heads} must divide the query width when key_dim is not given; "
                    f"received query of shape {shape_str((None,) + tuple(query_shape[1:]))} (width {width})"
                )
            self.key_dim = width // self.num_heads
        value_dim = self.value_dim or self.key_dim
        self.value_dim = value_dim
        output_dim = self.output_dim or width
        self.output_dim = output_dim
        keys = jax.random.split(key, 8)
        init, zeros = self.kernel_initializer, self.bias_initializer
        n, h = self.num_heads, self.key_dim
        self.query_kernel = self.add_weight((width, n, h), init, key=keys[0])
        self.key_kernel = self.add_weight((key_shape[-1], n, h), init, key=keys[1])
        self.value_kernel = self.add_weight((value_shape[-1], n, value_dim), init, key=keys[2])
        self.output_kernel = self.add_weight((n, value_dim, output_dim), init, key=keys[3])
        if self.use_bias:
            self.query_bias = self.add_weight((n, h), zeros, key=keys[4])
            self.key_bias = self.add_weight((n, h), zeros, key=keys[5])
            self.value_bias = self.add_weight((n, value_dim), zeros, key=keys[6])
            self.output_bias = self.add_weight((output_dim,), zeros, key=keys[7])

    def build_for(self, query_shape, value_shape=None, key_shape=None) -> None:
        """Builds the weights for inputs of these shapes (Keras's `build(query_shape, value_shape, key_shape)`).

        `value_shape` defaults to `query_shape` (self-attention) and `key_shape` to `value_shape`.
        """
        value_shape = tuple(query_shape if value_shape is None else value_shape)
        key_shape = tuple(value_shape if key_shape is None else key_shape)
        for shape in (query_shape, value_shape, key_shape):
            self._check_rank(shape)
        if not self.built:
            self._build_shapes = (tuple(query_shape), value_shape, key_shape)
            self.ensure_built(tuple(query_shape))

    def __call__(self, query, value=None, key=None, attention_mask=None, return_attention_scores: bool = False,
                 training: bool = False, use_causal_mask: bool = False, rng=None, query_mask=None, value_mask=None,
                 key_mask=None):
        """See the class docstring. Returns `(batch, T, output_dim)` (and the scores when asked)."""
        if key is not None and is_prng_key(key):
            key, rng = None, key if rng is None else rng
        value = query if value is None else value
        key = value if key is None else key
        for tensor in (query, value, key):
            self._check_rank(tensor.shape)
        if value.shape[1] != key.shape[1]:
            raise ValueError(
                f"{self._where}: key and value must have the same sequence length; received key of shape "
                f"{shape_str(key.shape)} and value of shape {shape_str(value.shape)}"
            )
        if not self.built:
            self.build_for(query.shape, value.shape, key.shape)
        else:
            expected = (self.query_kernel.shape[0], self.value_kernel.shape[0], self.key_kernel.shape[0])
            for which, tensor, width in zip(("query", "value", "key"), (query, value, key), expected, strict=False):
                if tensor.shape[-1] != width:
                    raise ValueError(
                        f'Input {which} of layer "{self.name}" is incompatible with the layer: expected axis -1 of input '
                        f"shape to have value {width}, but received input with shape {shape_str(tensor.shape)}"
                    )
        attention_mask = self._with_input_masks(query, value, attention_mask, query_mask, value_mask, key_mask)
        return self._invoke(query, value, key, attention_mask=attention_mask, return_attention_scores=return_attention_scores,
                         training=training, use_causal_mask=use_causal_mask, rng=rng)

    supports_masking = True

    def _with_input_masks(self, query, value, attention_mask, query_mask, value_mask, key_mask):
        """Keras's rule: the inputs' masks (`(batch, T)` query, `(batch, S)` value and key) AND-ed into
        the attention mask `(batch, T, S)`."""
        auto = None
        for mask, axis, length, which in ((query_mask, -1, query.shape[1], "query"), (value_mask, -2, value.shape[1], "value"),
                                          (key_mask, -2, value.shape[1], "key")):
            if mask is None:
                continue
            mask = jnp.asarray(mask).astype(bool)
            if mask.shape != (query.shape[0], length):
                raise ValueError(
                    f"{self._where}: `{which}_mask` must have shape (batch, steps) = {(query.shape[0], length)}; "
                    f"received {shape_str(mask.shape)}"
                )
            mask = jnp.expand_dims(mask, axis)
            auto = mask if auto is None else auto & mask
        if auto is None:
            return attention_mask
        return auto if attention_mask is None else jnp.asarray(attention_mask).astype(bool) & auto

    def compute_mask(self, inputs, previous_mask=None):
        """The query's mask (Keras)."""
        return previous_mask[0] if isinstance(previous_mask, (list, tuple)) else previous_mask

    def _mask(self, query, value, attention_mask, use_causal_mask):
        """Boolean `(batch, T, S)` mask (or None) from `attention_mask` and the causal mask."""
        mask = None
        t, s = query.shape[1], value.shape[1]
        if attention_mask is not None:
            mask = jnp.asarray(attention_mask).astype(bool)
            try:
                mask = jnp.broadcast_to(mask, (query.shape[0], t, s))
            except ValueError as err:
                raise ValueError(
                    f"{self._where}: `attention_mask` must broadcast to (batch, T, S) = {(query.shape[0], t, s)}; "
                    f"received shape {shape_str(jnp.shape(attention_mask))}"
                ) from err
        if use_causal_mask:
            causal = jnp.tril(jnp.ones((t, s), bool))
            mask = causal[None] if mask is None else mask & causal[None]
        return mask

    def call(self, query, value, key=None, *, attention_mask=None, return_attention_scores=False, training=False,
             use_causal_mask=False, rng=None):
        key = value if key is None else key
        q = jnp.einsum("btd,dnh->btnh", query, cast_like(self.query_kernel[...], query))
        k = jnp.einsum("bsd,dnh->bsnh", key, cast_like(self.key_kernel[...], key))
        v = jnp.einsum("bsd,dnh->bsnh", value, cast_like(self.value_kernel[...], value))
        if self.use_bias:
            q = q + cast_like(self.query_bias[...], q)
            k = k + cast_like(self.key_bias[...], k)
            v = v + cast_like(self.value_bias[...], v)
        dropout = training and self.dropout > 0.0
        if dropout and rng is None:
            raise ValueError(
                f"{self._where}: training=True with dropout={self.dropout} needs a PRNG key; call "
                "mha(query, value, training=True, rng=key) (fit and train_step pass one for you)"
            )
        only_causal = use_causal_mask and attention_mask is None
        mask = None if only_causal else self._mask(query, value, attention_mask, use_causal_mask)
        scores = None
        if dropout or return_attention_scores or self.key_dim != self.value_dim:
            mask = self._mask(query, value, attention_mask, use_causal_mask)
            logits = jnp.einsum("btnh,bsnh->bnts", q, k).astype(jnp.float32) / math.sqrt(self.key_dim)
            if mask is not None:
                logits = jnp.where(mask[:, None], logits, jnp.finfo(jnp.float32).min * 0.7)
            scores = jax.nn.softmax(logits, axis=-1)
            if mask is not None:
                # Keras's softmax zeroes the masked positions: a query that may attend to no key gets zero weights
                # (a plain softmax would spread them evenly).
                scores = jnp.where(mask[:, None], scores, 0.0)
            scores = scores.astype(q.dtype)
            probs = scores
            if dropout:
                keep = jax.random.bernoulli(rng, 1.0 - self.dropout, probs.shape)
                probs = jnp.where(keep, probs / (1.0 - self.dropout), 0).astype(q.dtype)
            heads = jnp.einsum("bnts,bsnh->btnh", probs, v)
        else:
            heads = jax.nn.dot_product_attention(
                q, k, v, mask=None if mask is None else mask[:, None], is_causal=only_causal,
                implementation=self.implementation,
            )
            if mask is not None and self.dropout > 0.0:
                # With dropout > 0 Keras takes its masked-softmax path even in inference, so a query that may
                # attend to no key gets zero heads there; its fused path (dropout 0) averages the values.
                heads = jnp.where(jnp.any(mask, axis=-1)[:, :, None, None], heads, jnp.zeros_like(heads))
        out = jnp.einsum("btnh,nho->bto", heads, cast_like(self.output_kernel[...], heads))
        if self.use_bias:
            out = out + cast_like(self.output_bias[...], out)
        return (out, scores) if return_attention_scores else out

    def compute_output_shape(self, query_shape, value_shape=None, key_shape=None):
        return tuple(query_shape[:-1]) + (self.output_dim or query_shape[-1],)

    def get_config(self) -> dict:
        return {"name": self.name, "num_heads": self.num_heads, "key_dim": self.key_dim, "value_dim": self.value_dim,
                "dropout": self.dropout, "use_bias": self.use_bias, "output_shape": self.output_dim}


__all__ = ["MultiHeadAttention"]
