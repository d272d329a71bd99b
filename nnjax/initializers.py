"""Initialisers by Keras name, as `(key, shape, dtype) -> array` functions with Keras 3's distributions.

Every Keras name resolves (`get("glorot_uniform")`, `get("GlorotUniform")`,
`get("normal")`), and the Keras classes are constructors with Keras's
arguments and defaults (`VarianceScaling(scale=1.0, mode="fan_in",
distribution="truncated_normal")`). Fans are Keras's: for a kernel of shape
`(..., in, out)` the receptive field is the product of the leading axes; a
vector has `fan_in = fan_out = len`.

The key is explicit (JAX's way). A Keras `seed=` makes the initializer use
`jax.random.key(seed)` on every call instead of the key it is given, so it
draws the same values each time, as a seeded Keras initializer does.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp

Initializer = Callable  # (key, shape, dtype=jnp.float32) -> array of `shape`


def _seeded(fn: Callable, seed: int | None) -> Callable:
    if seed is None:
        return fn

    def initializer(key, shape, dtype=jnp.float32):
        del key
        return fn(jax.random.key(seed), shape, dtype)

    return initializer


def compute_fans(shape: Sequence[int]) -> tuple[float, float]:
    """Keras's `(fan_in, fan_out)` of a weight shape (1, 1 for a scalar)."""
    shape = tuple(shape)
    if len(shape) == 0:
        return 1.0, 1.0
    if len(shape) == 1:
        return float(shape[0]), float(shape[0])
    if len(shape) == 2:
        return float(shape[0]), float(shape[1])
    receptive_field_size = math.prod(shape[:-2])
    return float(shape[-2] * receptive_field_size), float(shape[-1] * receptive_field_size)


def Zeros() -> Initializer:  # noqa: N802 - Keras name
    """All zeros."""

    def initializer(key, shape, dtype=jnp.float32):
        return jnp.zeros(shape, dtype)

    return initializer


def Ones() -> Initializer:  # noqa: N802
    """All ones."""

    def initializer(key, shape, dtype=jnp.float32):
        return jnp.ones(shape, dtype)

    return initializer


def Constant(value: float = 0.0) -> Initializer:  # noqa: N802
    """Every element `value`."""

    def initializer(key, shape, dtype=jnp.float32):
        return jnp.full(shape, value, dtype)

    return initializer


def Identity(gain: float = 1.0) -> Initializer:  # noqa: N802
    """`gain` times the identity matrix (2-D shapes only).

    Raises:
      ValueError: when called for a shape that is not 2-D.
    """

    def initializer(key, shape, dtype=jnp.float32):
        if len(shape) != 2:
            raise ValueError(f"Identity initializer: only 2-D shapes can be initialised; got shape {tuple(shape)}")
        return gain * jnp.eye(*shape, dtype=dtype)

    return initializer


def RandomNormal(mean: float = 0.0, stddev: float = 0.05, seed: int | None = None) -> Initializer:  # noqa: N802
    """Normal with `mean` and `stddev` (Keras's defaults 0 and 0.05)."""

    def initializer(key, shape, dtype=jnp.float32):
        return (mean + stddev * jax.random.normal(key, shape, jnp.float32)).astype(dtype)

    return _seeded(initializer, seed)


def RandomUniform(minval: float = -0.05, maxval: float = 0.05, seed: int | None = None) -> Initializer:  # noqa: N802
    """Uniform on `[minval, maxval)` (Keras's defaults -0.05 and 0.05)."""

    def initializer(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, jnp.float32, minval, maxval).astype(dtype)

    return _seeded(initializer, seed)


def TruncatedNormal(mean: float = 0.0, stddev: float = 0.05, seed: int | None = None) -> Initializer:  # noqa: N802
    """Normal with `mean` and `stddev`, redrawn outside two standard deviations (Keras's truncation)."""

    def initializer(key, shape, dtype=jnp.float32):
        return (mean + stddev * jax.random.truncated_normal(key, -2.0, 2.0, shape, jnp.float32)).astype(dtype)

    return _seeded(initializer, seed)


_MODES = ("fan_in", "fan_out", "fan_avg")
_DISTRIBUTIONS = ("truncated_normal", "untruncated_normal", "uniform")


def VarianceScaling(  # noqa: N802
    scale: float = 1.0, mode: str = "fan_in", distribution: str = "truncated_normal", seed: int | None = None
) -> Initializer:
    """Keras's `VarianceScaling`: variance `scale / n` with `n` the fan chosen by `mode`.

    Raises:
      ValueError: for a non-positive scale, or an unknown mode or distribution.
    """
    if not scale > 0.0:
        raise ValueError(f"VarianceScaling: `scale` must be positive; got {scale!r}")
    if mode not in _MODES:
        raise ValueError(f"VarianceScaling: `mode` must be one of {list(_MODES)}; got {mode!r}")
    distribution = distribution.lower()
    if distribution not in _DISTRIBUTIONS:
        raise ValueError(f"VarianceScaling: `distribution` must be one of {list(_DISTRIBUTIONS)}; got {distribution!r}")

    def initializer(key, shape, dtype=jnp.float32):
        fan_in, fan_out = compute_fans(shape)
        n = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2.0}[mode]
        variance = scale / max(1.0, n)
        if distribution == "truncated_normal":
            stddev = math.sqrt(variance) / 0.87962566103423978  # the std of a standard normal truncated at +-2
            values = stddev * jax.random.truncated_normal(key, -2.0, 2.0, shape, jnp.float32)
        elif distribution == "untruncated_normal":
            values = math.sqrt(variance) * jax.random.normal(key, shape, jnp.float32)
        else:
            values = jax.random.uniform(key, shape, jnp.float32, -1.0) * math.sqrt(3.0 * variance)  # uniform on +-limit
        return values.astype(dtype)

    return _seeded(initializer, seed)


def GlorotUniform(seed: int | None = None) -> Initializer:  # noqa: N802
    """Uniform with variance `1 / fan_avg`."""
    return VarianceScaling(1.0, "fan_avg", "uniform", seed)


def GlorotNormal(seed: int | None = None) -> Initializer:  # noqa: N802
    """Truncated normal with variance `1 / fan_avg`."""
    return VarianceScaling(1.0, "fan_avg", "truncated_normal", seed)


def LecunUniform(seed: int | None = None) -> Initializer:  # noqa: N802
    """Uniform with variance `1 / fan_in`."""
    return VarianceScaling(1.0, "fan_in", "uniform", seed)


def LecunNormal(seed: int | None = None) -> Initializer:  # noqa: N802
    """Truncated normal with variance `1 / fan_in`."""
    return VarianceScaling(1.0, "fan_in", "truncated_normal", seed)


def HeUniform(seed: int | None = None) -> Initializer:  # noqa: N802
    """Uniform with variance `2 / fan_in`."""
    return VarianceScaling(2.0, "fan_in", "uniform", seed)


def HeNormal(seed: int | None = None) -> Initializer:  # noqa: N802
    """Truncated normal with variance `2 / fan_in`."""
    return VarianceScaling(2.0, "fan_in", "truncated_normal", seed)


def Orthogonal(gain: float = 1.0, seed: int | None = None) -> Initializer:  # noqa: N802
    """`gain` times a random orthogonal matrix over `(prod(shape[:-1]), shape[-1])`, as Keras.

    Raises:
      ValueError: when called for a shape of rank below 2.
    """

    def initializer(key, shape, dtype=jnp.float32):
        if len(shape) < 2:
            raise ValueError(f"Orthogonal initializer: the shape must be at least 2-D; got shape {tuple(shape)}")
        num_rows, num_cols = math.prod(shape[:-1]), shape[-1]
        a = jax.random.normal(key, (max(num_cols, num_rows), min(num_cols, num_rows)), jnp.float32)
        q, r = jnp.linalg.qr(a)
        q = q * jnp.sign(jnp.diag(r))
        if num_rows < num_cols:
            q = q.T
        return (gain * jnp.reshape(q, shape)).astype(dtype)

    return _seeded(initializer, seed)


# Keras class name -> constructor.
CLASSES: dict[str, Callable[..., Initializer]] = {
    "Constant": Constant,
    "GlorotNormal": GlorotNormal,
    "GlorotUniform": GlorotUniform,
    "HeNormal": HeNormal,
    "HeUniform": HeUniform,
    "Identity": Identity,
    "LecunNormal": LecunNormal,
    "LecunUniform": LecunUniform,
    "Ones": Ones,
    "Orthogonal": Orthogonal,
    "RandomNormal": RandomNormal,
    "RandomUniform": RandomUniform,
    "TruncatedNormal": TruncatedNormal,
    "VarianceScaling": VarianceScaling,
    "Zeros": Zeros,
}
# Keras's snake-case names and aliases -> class name.
_NAMES = {
    "constant": "Constant",
    "glorot_normal": "GlorotNormal",
    "glorot_uniform": "GlorotUniform",
    "he_normal": "HeNormal",
    "he_uniform": "HeUniform",
    "identity": "Identity",
    "lecun_normal": "LecunNormal",
    "lecun_uniform": "LecunUniform",
    "ones": "Ones",
    "orthogonal": "Orthogonal",
    "random_normal": "RandomNormal",
    "random_uniform": "RandomUniform",
    "truncated_normal": "TruncatedNormal",
    "variance_scaling": "VarianceScaling",
    "zeros": "Zeros",
    "normal": "RandomNormal",
    "uniform": "RandomUniform",
    "one": "Ones",
    "zero": "Zeros",
    "identity_initializer": "Identity",
    "orthogonal_initializer": "Orthogonal",
}
INITIALIZERS = {name: CLASSES[class_name]() for name, class_name in _NAMES.items()}


def random_uniform(minval: float = -0.05, maxval: float = 0.05) -> Initializer:
    """Keras's `RandomUniform`: uniform on `[minval, maxval)`."""
    return RandomUniform(minval, maxval)


def constant(value: float) -> Initializer:
    """Keras's `Constant`: every element `value`."""
    return Constant(value)


def get(identifier, *, where: str = "initializer") -> Initializer:
    """Resolves an initialiser name (snake case or Keras class name) or a callable `(key, shape, dtype) -> array`.

    Raises:
      ValueError: for an unknown name; the message lists the valid names.
    """
    if callable(identifier):
        return identifier
    if isinstance(identifier, str):
        if identifier in CLASSES:
            return CLASSES[identifier]()
        if identifier.lower() in INITIALIZERS:
            return INITIALIZERS[identifier.lower()]
    raise ValueError(
        f"{where}: unknown initializer {identifier!r}; expected one of {sorted(INITIALIZERS)}, {sorted(CLASSES)} or a callable"
    )


__all__ = [
    "CLASSES",
    "INITIALIZERS",
    "Constant",
    "GlorotNormal",
    "GlorotUniform",
    "HeNormal",
    "HeUniform",
    "Identity",
    "LecunNormal",
    "LecunUniform",
    "Ones",
    "Orthogonal",
    "RandomNormal",
    "RandomUniform",
    "TruncatedNormal",
    "VarianceScaling",
    "Zeros",
    "compute_fans",
    "constant",
    "get",
    "random_uniform",
]
