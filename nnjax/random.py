"""`nj.random`: Keras 3's random ops (`keras.random.*`) with explicit JAX keys underneath.

    z = nj.random.normal((4, 8), seed=42)          # the same numbers as keras.random.normal((4, 8), seed=42)
    gen = nj.random.SeedGenerator(1337)            # a key state that hands out a new key per call
    a = nj.random.uniform((3,), seed=gen)
    b = nj.random.uniform((3,), seed=gen)          # different from a

`seed` may be an int (the key `[seed, 0]`, as Keras's JAX backend makes it, so the numbers match
Keras's), a `SeedGenerator` (its next key), a JAX key (used as it is) or None (the next key of nnjax's
global generator, `nj.utils.set_random_seed`; not allowed inside `jit`, where it would be a constant).

A `SeedGenerator` is a Flax NNX module holding its state in a variable: set as an attribute of a layer,
its state lives in the model's non-trainable state, so each training step advances it and a
checkpoint saves it.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from nnjax.utils.random import next_seed


class SeedState(nnx.Variable):
    """The `uint32[2]` key state of a `SeedGenerator` (non-trainable model state)."""


class SeedGenerator(nnx.Module):
    """A key state that hands out a new key on each call of a random op, as `keras.random.SeedGenerator`.

    Args:
      seed: int initial seed; drawn from nnjax's global generator when None.
      name: the generator's name.

    `next()` returns the current key `[seed, n]` and advances the state to `[seed, n + 1]`, as Keras does.
    """

    def __init__(self, seed: int | None = None, name: str | None = None):
        if seed is None:
            seed = next_seed()
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
            raise ValueError(f"SeedGenerator: `seed` must be an int or None; got {seed!r}")
        self.name = name or "seed_generator"
        self.initial_seed = int(seed)
        self.state = SeedState(jnp.asarray(_key_from_int(int(seed))))

    def next(self, ordered: bool = True) -> jax.Array:
        """The next key (`uint32[2]`)."""
        current = self.state[...]
        if ordered:
            self.state[...] = current + jnp.asarray([0, 1], jnp.uint32)
        else:
            self.state[...] = ((current + 1) * 5387 % 933199).astype(jnp.uint32)
        return current

    def get_config(self) -> dict:
        return {"seed": self.initial_seed, "name": self.name}


def _key_from_int(seed: int) -> np.ndarray:
    return np.asarray([seed & 0xFFFFFFFF, 0], dtype=np.uint32)


def _inside_a_trace() -> bool:
    from nnjax.layers.base import _inside_a_trace as inside

    return inside()


def draw_seed(seed) -> jax.Array:
    """The key for `seed`: an int, a `SeedGenerator`, a JAX key or None (see the module docstring).

    Raises:
      ValueError: for None inside a JAX trace, and for any other type.
    """
    if isinstance(seed, SeedGenerator):
        return seed.next()
    if isinstance(seed, (int, np.integer)) and not isinstance(seed, bool):
        return jnp.asarray(_key_from_int(int(seed)))
    if seed is None:
        if _inside_a_trace():
            raise ValueError(
                "nj.random: seed=None inside jit/grad/vmap would make the numbers a constant of the compiled program; "
                "pass seed=nj.random.SeedGenerator(...) (an attribute of your layer) or a key"
            )
        return jnp.asarray(_key_from_int(next_seed()))
    if hasattr(seed, "dtype") and jax.dtypes.issubdtype(seed.dtype, jax.dtypes.prng_key):
        return seed
    if getattr(seed, "shape", None) == (2,):
        return jnp.asarray(seed, jnp.uint32)
    raise ValueError(f"nj.random: `seed` must be an int, a SeedGenerator, a JAX key or None; got {seed!r} of type {type(seed).__name__}")


def _float(dtype):
    return jnp.dtype(dtype or "float32")


def normal(shape: Sequence[int], mean=0.0, stddev=1.0, dtype=None, seed=None) -> jax.Array:
    """Normal samples of `shape`: `mean + stddev * N(0, 1)` (float32 by default)."""
    return jax.random.normal(draw_seed(seed), shape=tuple(shape), dtype=_float(dtype)) * stddev + mean


def uniform(shape: Sequence[int], minval=0.0, maxval=1.0, dtype=None, seed=None) -> jax.Array:
    """Uniform samples of `shape` in `[minval, maxval)`."""
    return jax.random.uniform(draw_seed(seed), shape=tuple(shape), dtype=_float(dtype), minval=minval, maxval=maxval)


def truncated_normal(shape: Sequence[int], mean=0.0, stddev=1.0, dtype=None, seed=None) -> jax.Array:
    """Normal samples truncated to two standard deviations."""
    sample = jax.random.truncated_normal(draw_seed(seed), -2.0, 2.0, shape=tuple(shape), dtype=_float(dtype))
    return sample * stddev + mean


def randint(shape: Sequence[int], minval, maxval, dtype="int32", seed=None) -> jax.Array:
    """Integers of `shape` in `[minval, maxval)`."""
    return jax.random.randint(draw_seed(seed), shape=tuple(shape), minval=minval, maxval=maxval, dtype=jnp.dtype(dtype))


def categorical(logits, num_samples: int, dtype="int32", seed=None) -> jax.Array:
    """`num_samples` class indices per row of `logits` `(batch, num_classes)` -> `(batch, num_samples)`."""
    logits = jnp.asarray(logits)
    out_shape = list(logits.shape)
    out_shape[1] = num_samples
    sample = jax.random.categorical(draw_seed(seed), logits[..., None], shape=tuple(out_shape), axis=1)
    return sample.astype(dtype)


def dropout(inputs, rate: float, noise_shape=None, seed=None) -> jax.Array:
    """Zeroes a fraction `rate` of `inputs` and scales the rest by `1 / (1 - rate)`."""
    inputs = jnp.asarray(inputs)
    if rate == 1.0:
        return jnp.zeros_like(inputs)
    if rate == 0.0:
        return inputs
    keep = 1.0 - rate
    shape = inputs.shape if noise_shape is None else tuple(
        inputs.shape[i] if d is None else d for i, d in enumerate(noise_shape))
    mask = jnp.broadcast_to(jax.random.bernoulli(draw_seed(seed), p=keep, shape=shape), inputs.shape)
    return jax.lax.select(mask, inputs / keep, jnp.zeros_like(inputs))


def shuffle(x, axis: int = 0, seed=None) -> jax.Array:
    """`x` permuted along `axis`."""
    return jax.random.permutation(draw_seed(seed), jnp.asarray(x), axis, independent=True)


def gamma(shape: Sequence[int], alpha, dtype=None, seed=None) -> jax.Array:
    """Gamma samples with concentration `alpha`."""
    return jax.random.gamma(draw_seed(seed), alpha, shape=tuple(shape), dtype=_float(dtype))


def beta(shape: Sequence[int], alpha, beta, dtype=None, seed=None) -> jax.Array:
    """Beta samples with concentrations `alpha` and `beta`."""
    return jax.random.beta(draw_seed(seed), jnp.asarray(alpha), jnp.asarray(beta), shape=tuple(shape), dtype=_float(dtype))


def binomial(shape: Sequence[int], counts, probabilities, dtype=None, seed=None) -> jax.Array:
    """Binomial samples: successes in `counts` trials of probability `probabilities`."""
    return jax.random.binomial(draw_seed(seed), jnp.asarray(counts), jnp.asarray(probabilities), shape=tuple(shape),
                               dtype=_float(dtype))


__all__ = ["SeedGenerator", "SeedState", "beta", "binomial", "categorical", "draw_seed", "dropout", "gamma", "normal",
           "randint", "shuffle", "truncated_normal", "uniform"]
