"""Seeds and keys: one global seed for convenience, explicit keys everywhere."""

from __future__ import annotations

import random as _py_random
import threading

import jax
import numpy as np

_lock = threading.Lock()
_seed = 0
_counter = 0


def set_random_seed(seed: int) -> None:
    """Makes initialisation, dropout and shuffling repeatable, as in Keras.

    Seeds nnjax's key generator, Python's `random` and NumPy's global generator.
    Every layer or model built afterwards without an explicit `key=`/`seed=` draws
    its key from this generator in creation order.

    Args:
      seed: a non-negative integer.

    Raises:
      TypeError: if `seed` is not an integer.
    """
    global _seed, _counter
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"set_random_seed: `seed` must be an int; got {seed!r} of type {type(seed).__name__}")
    with _lock:
        _seed = int(seed)
        _counter = 0
    _py_random.seed(int(seed))
    np.random.seed(int(seed) % (2**32))


def global_seed() -> int:
    """The seed last given to `set_random_seed` (0 by default)."""
    return _seed


def next_seed() -> int:
    """Draws the next integer seed from the global generator."""
    global _counter
    with _lock:
        _counter += 1
        return (_seed * 1_000_003 + _counter) % (2**31 - 1)


def as_key(key_or_seed=None) -> jax.Array:
    """Returns a raw `uint32[2]` PRNG key from a key, an integer seed or None.

    None draws the next seed from the global generator (see `set_random_seed`).
    Typed keys (`jax.random.key`) are converted to raw key data so that they can
    be stored in checkpoints like any other array.
    """
    if key_or_seed is None:
        return jax.random.PRNGKey(next_seed())
    if isinstance(key_or_seed, (int, np.integer)) and not isinstance(key_or_seed, bool):
        return jax.random.PRNGKey(int(key_or_seed))
    key = key_or_seed
    if hasattr(key, "dtype") and jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):
        return jax.random.key_data(key)
    if getattr(key, "shape", None) == (2,):
        return key
    raise TypeError(f"expected a PRNG key (jax.random.key / PRNGKey) or an int seed; got {key_or_seed!r}")
