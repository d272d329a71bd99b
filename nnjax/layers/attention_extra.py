"""Attention (Luong-style dot-product) and AdditiveAttention (Bahdanau-style), and the Dot merge layer.

`Attention` and `AdditiveAttention` take `[query, value]` or `[query, value, key]`, as in Keras:
query `(batch, Tq, dim)`, value `(batch, Tv, dim)`, key `(batch, Tv, dim)` (value when absent),
and return `(batch, Tq, dim)`. Attention dropout is active only with `training=True` and uses the
PRNG `key=` argument (the layer's inputs are a list, so `key` is free to be the PRNG key as for
every other nnjax layer).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from nnjax.layers.base import Layer, shape_str
from nnjax.layers.merge import _Merge
from nnjax.layers.utils import cast_like, check_choice


class _BaseAttention(Layer):
    _checked_axes = ()
    _jit_eager_calls = True

    def __init__(self, use_scale: bool, dropout: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        if isinstance(dropout, bool) or not 0.0 <= float(dropout) < 1.0:
            raise ValueError(f"{self._where}: `dropout` must be in [0, 1); got {dropout!r}")
        self.use_scale = bool(use_scale)
        self.dropout = float(dropout)

    @property
    def _where(self) -> str:
        return f'{type(self).__name__} "{self.name}"'

    supports_masking = True

    def compute_mask(self, inputs, previous_mask=None):
        """The query's mask (Keras)."""
        if previous_mask is None or not isinstance(previous_mask, (list, tuple)):
            return None
        return previous_mask[0]

    def _split(self, inputs):
        if not isinstance(inputs, (list, tuple)) or not 2 <= len(inputs) <= 3:
            got = f"a list of {len(inputs)}" if isinstance(inputs, (list, tuple)) else f"a single {type(inputs).__name__}"
            raise ValueError(f"{self._where} must be called on a list [query, value] or [query, value, key]; received {got}")
        query, value = inputs[0], inputs[1]
        key = inputs[2] if len(inputs) > 2 else value
        for which, tensor in (("query", query), ("value", value), ("key", key)):
            if jnp.ndim(tensor) < 3:
                raise ValueError(
                    f"{self._where}: {which} must have rank >= 3 (batch, steps, dim); received shape {shape_str(jnp.shape(tensor))}"
                )
        if jnp.shape(key)[-2] != jnp.shape(value)[-2]:
            raise ValueError(
                f"{self._where}: key and value must have the same number of steps; received key of shape "
                f"{shape_str(jnp.shape(key))} and value of shape {shape_str(jnp.shape(value))}"
            )
        return query, value, key

    def __call__(self, inputs, mask=None, training: bool = False, return_attention_scores: bool = False,
                 use_causal_mask: bool = False, key=None):
        """Attends `query` to `value` (see the module docstring).

        Args:
          inputs: `[query, value]` or `[query, value, key]`.
          mask: `[query_mask, value_mask]`, booleans `(batch, Tq)` and `(batch, Tv)` (either may be
            None): masked value steps get no weight, masked query steps give zeros.
          training: enables attention dropout.
          return_attention_scores: also return the attention weights `(batch, Tq, Tv)`.
          use_causal_mask: query step i attends only to value steps <= i.
          key: PRNG key for attention dropout.
        """
        query, value, attn_key = self._split(inputs)
        if mask is not None and (not isinstance(mask, (list, tuple)) or not 2 <= len(mask) <= 3):
            raise ValueError(f"{self._where}: `mask` must be a list [query_mask, value_mask]; received {mask!r}")
        if not self.built:
            self.ensure_built(jnp.shape(query))
        masks = None if mask is None else [None if m is None else jnp.asarray(m).astype(bool) for m in mask[:2]]
        return self._invoke([query, value, attn_key], mask=masks, training=training,
                            return_attention_scores=return_attention_scores, use_causal_mask=use_causal_mask, key=key)

    def _scores(self, query, key):
        raise NotImplementedError

    def call(self, inputs, *, mask=None, training=False, return_attention_scores=False, use_causal_mask=False, key=None):
        query, value, attn_key = inputs
        scores = self._scores(query, attn_key)
        q_mask, v_mask = (None, None) if mask is None else (mask[0], mask[1])
        score_mask = None if v_mask is None else v_mask[..., None, :]
        if use_causal_mask:
            causal = jnp.tril(jnp.ones(scores.shape[-2:], bool))
            score_mask = causal if score_mask is None else score_mask & causal
        if score_mask is not None:
            # Keras's rule: masked scores are lowered by a large constant (not set to -inf).
            big = 65504.0 if scores.dtype == jnp.float16 else 1.0e9
            scores = jnp.where(score_mask, scores, scores - jnp.asarray(big, scores.dtype))
        weights = jax.nn.softmax(scores, axis=-1)
        if training and self.dropout > 0.0:
            if key is None:
                raise ValueError(
                    f"{self._where}: training=True with dropout={self.dropout} needs a PRNG key; call "
                    "layer([query, value], training=True, key=key) (fit and train_step pass one for you)"
                )
            keep = jax.random.bernoulli(key, 1.0 - self.dropout, weights.shape)
            weights = jnp.where(keep, weights / (1.0 - self.dropout), jnp.zeros_like(weights)).astype(weights.dtype)
        out = jnp.matmul(weights, value)
        if q_mask is not None:
            out = jnp.where(q_mask[..., None], out, jnp.zeros_like(out))
        return (out, weights) if return_attention_scores else out

    def compute_output_shape(self, input_shapes):
        return tuple(input_shapes[0][:-1]) + (input_shapes[1][-1],)

    def get_config(self) -> dict:
        return {"name": self.name, "use_scale": self.use_scale, "dropout": self.dropout}


class Attention(_BaseAttention):
    """Dot-product attention (Luong-style): `softmax(scale * query @ key^T) @ value`.

    Args:
      use_scale: learn a scalar `scale` multiplying the scores (False: no scaling).
      score_mode: "dot" (default) or "concat" (`concat_score_weight * sum(tanh(scale * (q + k)))`).
      dropout: dropout rate on the attention weights (training only; needs `key=`).

    Weights: `scale` `()` (with `use_scale`), `concat_score_weight` `()` (with "concat"), both ones.
    """

    def __init__(self, use_scale: bool = False, score_mode: str = "dot", dropout: float = 0.0, **kwargs):
        super().__init__(use_scale, dropout, **kwargs)
        self.score_mode = check_choice(score_mode, ("dot", "concat"), "score_mode", self._where)

    def build(self, input_shape, key):
        if self.use_scale:
            self.scale = self.add_weight((), "ones", key=key)
        if self.score_mode == "concat":
            self.concat_score_weight = self.add_weight((), "ones", key=key)

    def _scores(self, query, key):
        if self.score_mode == "dot":
            scores = jnp.matmul(query, jnp.swapaxes(key, -2, -1))
            return scores * cast_like(self.scale[...], scores) if self.use_scale else scores
        summed = query[..., :, None, :] + key[..., None, :, :]
        if self.use_scale:
            summed = cast_like(self.scale[...], summed) * summed
        return cast_like(self.concat_score_weight[...], summed) * jnp.sum(jnp.tanh(summed), axis=-1)

    def get_config(self) -> dict:
        return super().get_config() | {"score_mode": self.score_mode}


def _glorot_uniform_vector(key, shape, dtype=jnp.float32):
    """Keras's glorot_uniform for a vector (fan_in = fan_out = its length): U(-sqrt(3 / n), sqrt(3 / n))."""
    limit = (3.0 / shape[0]) ** 0.5
    return jax.random.uniform(key, shape, dtype, -limit, limit)


class AdditiveAttention(_BaseAttention):
    """Additive attention (Bahdanau-style): `softmax(sum(scale * tanh(q_i + k_j))) @ value`.

    Args:
      use_scale: learn a per-dimension `scale` of shape `(dim,)` (True, glorot_uniform).
      dropout: dropout rate on the attention weights (training only; needs `key=`).
    """

    def __init__(self, use_scale: bool = True, dropout: float = 0.0, **kwargs):
        super().__init__(use_scale, dropout, **kwargs)

    def build(self, input_shape, key):
        if self.use_scale:
            self.scale = self.add_weight((input_shape[-1],), _glorot_uniform_vector, key=key)

    def _scores(self, query, key):
        summed = jnp.tanh(query[..., :, None, :] + key[..., None, :, :])
        if self.use_scale:
            summed = cast_like(self.scale[...], summed) * summed
        return jnp.sum(summed, axis=-1)


def _l2_normalize(x, axis: int):
    """Keras's `ops.normalize(x, axis)`: `x / max(||x||, 1e-7)`."""
    return x * jnp.minimum(jax.lax.rsqrt(jnp.sum(jnp.square(x), axis=axis, keepdims=True)), 1e7)


class Dot(_Merge):
    """Batched dot product of two inputs along `axes`, as Keras's `Dot` (`batch_dot`).

    `Dot(axes=(1, 2))([x, y])` with x `(b, 3, 5)` and y `(b, 10, 3)` gives `(b, 5, 10)`: the
    free axes of x, then the free axes of y (batch excluded). A rank-1 result becomes `(b, 1)`.

    Args:
      axes: int, or a pair of ints (one per input); the batch axis 0 cannot be reduced.
      normalize: L2-normalise both inputs along `axes` first (the result is the cosine similarity).
    """

    def compute_mask(self, inputs, previous_mask=None):
        return None  # Keras: the product has no time axis to mask

    _min_inputs = 2
    _max_inputs = 2

    def __init__(self, axes, normalize: bool = False, **kwargs):
        super().__init__(**kwargs)
        if isinstance(axes, (list, tuple)):
            if len(axes) != 2 or not all(isinstance(a, (int, np.integer)) and not isinstance(a, bool) for a in axes):
                raise ValueError(f'Dot "{self.name}": `axes` must be an int or a pair of ints; got {axes!r}')
            self.axes = (int(axes[0]), int(axes[1]))
        elif isinstance(axes, (int, np.integer)) and not isinstance(axes, bool):
            self.axes = int(axes)
        else:
            raise TypeError(f'Dot "{self.name}": `axes` must be an int or a pair of ints; got {axes!r}')
        self.normalize = bool(normalize)

    def _resolved(self, shapes) -> tuple[int, int]:
        pair = (self.axes, self.axes) if isinstance(self.axes, int) else self.axes
        return tuple(a % len(s) if a < 0 else a for a, s in zip(pair, shapes, strict=True))

    def _check_shapes(self, shapes: list[tuple]) -> None:
        if any(len(s) < 2 for s in shapes):
            raise ValueError(f'Dot "{self.name}": both inputs need rank >= 2; received shapes {", ".join(map(shape_str, shapes))}')
        a0, a1 = self._resolved(shapes)
        if 0 in (a0, a1):
            raise ValueError(f'Dot "{self.name}": cannot take the dot product over the batch axis 0; got axes={self.axes!r}')
        if a0 >= len(shapes[0]) or a1 >= len(shapes[1]) or shapes[0][a0] != shapes[1][a1]:
            raise ValueError(
                f'Dot "{self.name}": incompatible input shapes for axes={self.axes!r}: received shapes '
                f"{shape_str(shapes[0])} and {shape_str(shapes[1])}"
            )
        if shapes[0][0] != shapes[1][0]:
            raise ValueError(
                f'Dot "{self.name}": inputs must have the same batch size; received shapes {shape_str(shapes[0])} and '
                f"{shape_str(shapes[1])}"
            )

    def call(self, inputs, *, training=False, key=None):
        x, y = inputs
        a0, a1 = self._resolved([x.shape, y.shape])
        if self.normalize:
            x, y = _l2_normalize(x, a0), _l2_normalize(y, a1)
        out = jax.lax.dot_general(x, y, (((a0,), (a1,)), ((0,), (0,))))
        return out[:, None] if out.ndim == 1 else out

    def compute_output_shape(self, input_shapes):
        first, second = (list(s) for s in input_shapes)
        a0, a1 = self._resolved([first, second])
        first.pop(a0)
        second.pop(a1)
        out = first + second[1:]
        return (None,) + tuple(out[1:]) if len(out) > 1 else (None, 1)

    def get_config(self) -> dict:
        return {"name": self.name, "axes": self.axes, "normalize": self.normalize}


__all__ = ["AdditiveAttention", "Attention", "Dot"]
