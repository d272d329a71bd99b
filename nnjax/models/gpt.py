"""`GPT`: a decoder-only transformer language model (Radford et al., 2018/2019), nanoGPT-style."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from nnjax import layers
from nnjax.layers.base import shape_str
from nnjax.layers.utils import cast_like
from nnjax.models.base import Composite, build_chain, output_shape
from nnjax.utils.random import as_key

_NORMAL_002 = jax.nn.initializers.normal(0.02)  # GPT-2's initialisation of embeddings and weights


class TransformerBlock(Composite):
    """A pre-norm decoder block: `x + drop(attn(ln1(x)))`, then `x + drop(mlp(ln2(x)))`, with causal attention.

    Args:
      embed_dim: width D.
      num_heads: attention heads (must divide D).
      mlp_ratio: hidden width of the MLP as a multiple of D (4).
      dropout: dropout on the attention probabilities and on both residual branches.
      activation: MLP activation ("gelu").
      epsilon: layer-norm epsilon (1e-5, GPT-2's).
      attention_implementation: `jax.nn.dot_product_attention`'s implementation (None, "xla", "cudnn").

    Input and output `(batch, T, D)`.
    """

    def __init__(self, embed_dim: int, num_heads: int, mlp_ratio: int = 4, dropout: float = 0.0, activation="gelu",
                 epsilon: float = 1e-5, attention_implementation: str | None = None, **kwargs):
        super().__init__(**kwargs)
        if embed_dim % num_heads:
            raise ValueError(
                f'TransformerBlock "{self.name}": num_heads={num_heads} must divide embed_dim={embed_dim}; '
                f"received embed_dim % num_heads = {embed_dim % num_heads}"
            )
        self.ln1 = layers.LayerNormalization(epsilon=epsilon)
        self.attention = layers.MultiHeadAttention(num_heads, key_dim=embed_dim // num_heads, dropout=dropout,
                                                   kernel_initializer=_NORMAL_002, implementation=attention_implementation)
        self.ln2 = layers.LayerNormalization(epsilon=epsilon)
        self.fc = layers.Dense(mlp_ratio * embed_dim, activation=activation, kernel_initializer=_NORMAL_002)
        self.proj = layers.Dense(embed_dim, kernel_initializer=_NORMAL_002)
        self.dropout = layers.Dropout(dropout)
        self._ndim = 3

    def build(self, input_shape, key):
        shape = output_shape(self.ln1, input_shape)
        self.attention.build_for(shape)
        build_chain([self.ln2, self.fc, self.proj, self.dropout], input_shape)

    def call(self, x, *, training=False, key=None):
        keys = [None] * 3 if key is None else [jax.random.fold_in(key, i) for i in range(3)]
        h = self.attention(self.ln1(x), use_causal_mask=True, training=training, rng=keys[0])
        x = x + self.dropout(h, training=training, key=keys[1])
        h = self.proj(self.fc(self.ln2(x)))
        return x + self.dropout(h, training=training, key=keys[2])


class GPT(Composite):
    """A GPT language model: token + position embeddings, pre-norm causal transformer blocks, final layer norm, LM head.

    Maps token ids `(batch, T)` (T <= block_size) to next-token logits `(batch, T, vocab_size)`;
    train it with `loss=nj.losses.SparseCategoricalCrossentropy(from_logits=True)` on targets shifted
    by one. With `tie_embeddings=True` (the default, as GPT-2) the head reuses the token embedding
    matrix.

    Parameters at the default size (vocab 256, block 256, 6 layers, 6 heads, width 384 -- nanoGPT's
    "baby GPT"): **10,844,160** (token 98,304 + position 98,304 + 6 x 1,774,464 per block + final
    norm 768; tied head).

    Args:
      vocab_size: number of token ids (256: bytes).
      block_size: longest context (256).
      num_layers / num_heads / embed_dim: depth, heads and width (6 / 6 / 384).
      mlp_ratio: MLP width multiple (4).
      dropout: embedding, attention and residual dropout (0.0).
      tie_embeddings: share the token embedding with the output head (True).
      attention_implementation: "cudnn" for cuDNN's fused attention on NVIDIA GPUs (bfloat16/float16);
        None lets JAX choose.

    Example:
      >>> gpt = nj.models.GPT(vocab_size=65, block_size=64, num_layers=2, num_heads=2, embed_dim=64)
      >>> ids = np.zeros((2, 16), np.int32)         # int32 (batch, T)
      >>> gpt(ids).shape
      (2, 16, 65)
      >>> model = nj.Model(gpt)
      >>> model.build((None, 64), dtype="int32")     # (or let fit build it from the data)
      >>> gpt.generate(ids[:1, :4], 8, key=jax.random.key(0)).shape
      (1, 12)
    """

    def __init__(self, vocab_size: int = 256, block_size: int = 256, num_layers: int = 6, num_heads: int = 6,
                 embed_dim: int = 384, mlp_ratio: int = 4, dropout: float = 0.0, tie_embeddings: bool = True,
                 attention_implementation: str | None = None, **kwargs):
        super().__init__(**kwargs)
        if embed_dim % num_heads:
            raise ValueError(
                f'GPT "{self.name}": num_heads={num_heads} must divide embed_dim={embed_dim}; '
                f"received embed_dim % num_heads = {embed_dim % num_heads}"
            )
        self.vocab_size, self.block_size, self.embed_dim = int(vocab_size), int(block_size), int(embed_dim)
        self.tie_embeddings = bool(tie_embeddings)
        self.token_embedding = layers.Embedding(vocab_size, embed_dim, embeddings_initializer=_NORMAL_002)
        self.dropout = layers.Dropout(dropout)
        self.blocks = nnx.List([TransformerBlock(embed_dim, num_heads, mlp_ratio, dropout, attention_implementation=attention_implementation)
                                for _ in range(num_layers)])
        self.ln_f = layers.LayerNormalization(epsilon=1e-5)
        if not self.tie_embeddings:
            self.head = layers.Dense(vocab_size, use_bias=False, kernel_initializer=_NORMAL_002)
        self._ndim = 2

    def _check_length(self, shape) -> None:
        if shape[1] is not None and shape[1] > self.block_size:
            raise ValueError(
                f'Input 0 of layer "{self.name}" is incompatible with the layer: expected at most block_size='
                f"{self.block_size} tokens, but received input with shape {shape_str(tuple(shape))}"
            )

    def first_sublayer(self):
        return self.token_embedding

    def build(self, input_shape, key):
        self._check_length(input_shape)
        shape = output_shape(self.token_embedding, input_shape)
        self.position_embedding = self.add_weight((self.block_size, self.embed_dim), _NORMAL_002, key=jax.random.fold_in(key, 0))
        shape = build_chain([self.dropout, *self.blocks, self.ln_f], shape)
        if not self.tie_embeddings:
            output_shape(self.head, shape)

    def __call__(self, x, training: bool = False, key=None):
        """Next-token logits `(batch, T, vocab_size)` for ids `(batch, T)`; ids are range-checked on the host when concrete."""
        self.token_embedding._check_ids(x)
        self._check_length(jnp.shape(x))
        return super().__call__(x, training=training, key=key)

    def call(self, ids, *, training=False, key=None):
        keys = [None] * (len(self.blocks) + 1) if key is None else [jax.random.fold_in(key, i) for i in range(len(self.blocks) + 1)]
        x = self.token_embedding(ids)
        x = x + cast_like(self.position_embedding[...][: ids.shape[1]], x)
        x = self.dropout(x, training=training, key=keys[0])
        for block, block_key in zip(self.blocks, keys[1:], strict=True):
            x = block(x, training=training, key=block_key)
        x = self.ln_f(x)
        if self.tie_embeddings:
            return x @ cast_like(self.token_embedding.embeddings[...], x).T
        return self.head(x)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape) + (self.vocab_size,)

    def generate(self, prompt, max_new_tokens: int, *, key, temperature: float = 1.0, top_k: int | None = None) -> np.ndarray:
        """Samples `max_new_tokens` tokens after `prompt`, one compiled loop (`lax.fori_loop`) for all steps.

        Args:
          prompt: int ids `(T,)` or `(batch, T)`, T >= 1.
          max_new_tokens: tokens to add.
          key: PRNG key (or int seed) for sampling.
          temperature: divides the logits; 0 picks the most likely token (greedy).
          top_k: sample among the k most likely tokens only.

        Returns:
          int32 ids `(batch, T + max_new_tokens)` (or `(T + max_new_tokens,)` for a 1-D prompt). When the
          sequence outgrows `block_size`, the model sees the last `block_size` tokens.
        """
        prompt = np.asarray(prompt)
        squeeze = prompt.ndim == 1
        prompt = prompt[None] if squeeze else prompt
        if prompt.ndim != 2 or prompt.shape[1] < 1:
            raise ValueError(f'GPT "{self.name}".generate: expected a prompt of shape (T,) or (batch, T) with T >= 1; received shape {prompt.shape}')
        self.token_embedding._check_ids(prompt)
        if not self.built:
            self(prompt[:, : self.block_size].astype(np.int32))
        graphdef, state = nnx.split(self)
        sample = _sampler(graphdef, prompt.shape, int(max_new_tokens), float(temperature), top_k, self.block_size)
        tokens = np.asarray(sample(state, jnp.asarray(prompt, jnp.int32), as_key(key)))
        return tokens[0] if squeeze else tokens


@functools.lru_cache(maxsize=32)
def _sampler(graphdef, prompt_shape, steps, temperature, top_k, block_size):
    batch, length = prompt_shape
    total = length + steps
    window = min(block_size, total)

    def run(state, prompt, key):
        model = nnx.merge(graphdef, state)
        tokens = jnp.zeros((batch, total), jnp.int32).at[:, :length].set(prompt)

        def step(i, tokens):
            n = length + i  # tokens so far
            start = jnp.maximum(n - window, 0)
            context = jax.lax.dynamic_slice(tokens, (0, start), (batch, window))
            logits = model(context)  # causal: positions >= n do not affect position n - 1
            last = jax.lax.dynamic_index_in_dim(logits, n - 1 - start, axis=1, keepdims=False).astype(jnp.float32)
            if temperature <= 0:
                choice = jnp.argmax(last, axis=-1)
            else:
                last = last / temperature
                if top_k is not None:
                    kth = jax.lax.top_k(last, top_k)[0][:, -1:]
                    last = jnp.where(last < kth, -jnp.inf, last)
                choice = jax.random.categorical(jax.random.fold_in(key, i), last, axis=-1)
            return jax.lax.dynamic_update_slice(tokens, choice.astype(jnp.int32)[:, None], (0, n))

        return jax.lax.fori_loop(0, steps, step, tokens)

    return jax.jit(run)


__all__ = ["GPT", "TransformerBlock"]
