"""Seeds and keys: one global seed for convenience, explicit keys everywhere."""

from __future__ import annotations

import contextlib
import random as _py_random
import threading
import warnings
from collections.abc import Sequence

import jax
import jax.numpy as jnp
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


# -- keys of nested layer calls ------------------------------------------------------------------
# A layer call pushes a frame holding its `training` flag and PRNG key. A sublayer called inside it
# without an explicit key gets `fold_in(frame.key, n)` for the n-th draw, so every stochastic
# sublayer has its own randomness, reproducible from the outer call's key (in `fit`: the step key).
_frames = threading.local()


class CallFrame:
    """The `training` flag and PRNG key of the layer call in progress."""

    __slots__ = ("count", "key", "training")

    def __init__(self, training: bool | None, key):
        self.training = training
        self.key = key
        self.count = 0

    def next_key(self):
        """`fold_in(key, n)` for the n-th draw of this call, or None when the call has no key."""
        if self.key is None:
            return None
        self.count += 1
        return jax.random.fold_in(self.key, self.count)


@contextlib.contextmanager
def call_frame(training: bool | None, key):
    """Runs the body as the layer call with this `training` flag and key (see `current_call_frame`)."""
    stack = _frames.__dict__.setdefault("stack", [])
    stack.append(CallFrame(training, key))
    try:
        yield stack[-1]
    finally:
        stack.pop()


def current_call_frame() -> CallFrame | None:
    """The innermost layer call in progress, or None outside any layer call."""
    stack = _frames.__dict__.get("stack")
    return stack[-1] if stack else None


def next_call_key():
    """A fresh key derived from the layer call in progress, or None (no call, or a call without a key)."""
    frame = current_call_frame()
    return None if frame is None else frame.next_key()


def _top_level_trace_state():
    from jax.extend.core import get_opaque_trace_state

    return get_opaque_trace_state(convention="nnx")


_TOP_LEVEL = _top_level_trace_state()


def inside_a_trace() -> bool:
    """True inside `jit`/`vmap`/`grad`/`eval_shape`."""
    return _top_level_trace_state() != _TOP_LEVEL


class SeedGenerator:
    """Keras's `SeedGenerator`: a source of fresh keys for random ops inside a layer's `call`.

    Inside a layer call that has a key (every call `fit` makes, or `layer(x, key=k)`), each draw is
    derived from that key, so training is reproducible from the step key and `jit` sees fresh
    randomness at every step. Outside such a call (eager use), draws come from the generator's own
    seed and a counter, as in Keras.

    Args:
      seed: int seed; drawn from the global seed (`set_random_seed`) when None.
      name: accepted for Keras compatibility.

    Example:
      >>> gen = nj.random.SeedGenerator(1337)
      >>> nj.random.normal((2, 3), seed=gen).shape
      (2, 3)
    """

    def __init__(self, seed: int | None = None, name: str | None = None):
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer))):
            raise TypeError(f"SeedGenerator: `seed` must be an int or None; got {seed!r}")
        self.seed = next_seed() if seed is None else int(seed)
        self.name = name or "seed_generator"
        self._draws = 0
        self._warned = False

    def next(self) -> jax.Array:
        """A raw `uint32[2]` key: from the layer call in progress, else from the own seed and counter.

        Inside `jit`/`grad`/`vmap` without a key from the enclosing layer call, the counter advances
        once per trace, so the compiled function reuses that draw at every run: a `UserWarning` says so
        (once per generator). `fit` passes a key to every training step; give `evaluate`/`predict`-time
        randomness a key by calling the model with `key=`.
        """
        key = next_call_key()
        if key is not None:
            return key
        if inside_a_trace() and not self._warned:
            self._warned = True
            warnings.warn(
                f'SeedGenerator "{self.name}": random draw inside jit/grad/vmap without a key from the layer call; the '
                "compiled function reuses this draw every time it runs. Call the outermost layer with `key=` (fit "
                "passes one to every training step) for fresh randomness.",
                stacklevel=2,
            )
        self._draws += 1
        return jax.random.fold_in(jax.random.PRNGKey(self.seed), self._draws)


def draw_key(seed=None) -> jax.Array:
    """The key a random op uses for Keras's `seed=` argument.

    Args:
      seed: None (a key from the layer call in progress, else the global generator), an int (always the
        same key, as Keras's stateless seeds), a `SeedGenerator`, or a PRNG key.

    Returns:
      A raw `uint32[2]` key.
    """
    if isinstance(seed, SeedGenerator):
        return seed.next()
    if seed is None:
        key = next_call_key()
        if key is not None:
            return key
        if inside_a_trace():
            raise ValueError(
                "random op with seed=None inside jit/grad/vmap and no key from a layer call: pass `seed=` (a "
                "SeedGenerator or a key) or call the outermost layer with `key=`"
            )
        return as_key(None)
    return as_key(seed)


def normal(shape: Sequence[int], mean: float = 0.0, stddev: float = 1.0, dtype=None, seed=None) -> jax.Array:
    """Keras's `random.normal`: samples of shape `shape` from N(mean, stddev**2) (float32 by default)."""
    dtype = jnp.float32 if dtype is None else jnp.dtype(dtype)
    return mean + stddev * jax.random.normal(draw_key(seed), tuple(int(d) for d in shape), dtype)


def uniform(shape: Sequence[int], minval: float = 0.0, maxval: float = 1.0, dtype=None, seed=None) -> jax.Array:
    """Keras's `random.uniform`: samples of shape `shape` on `[minval, maxval)` (float32 by default)."""
    dtype = jnp.float32 if dtype is None else jnp.dtype(dtype)
    return jax.random.uniform(draw_key(seed), tuple(int(d) for d in shape), dtype, minval, maxval)
