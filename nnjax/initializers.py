"""Initialisers by Keras name (jax.nn.initializers underneath)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.nn import initializers as init

INITIALIZERS = {
    "glorot_uniform": init.glorot_uniform(),
    "glorot_normal": init.glorot_normal(),
    "he_uniform": init.he_uniform(),
    "he_normal": init.he_normal(),
    "lecun_uniform": init.lecun_uniform(),
    "lecun_normal": init.lecun_normal(),
    "orthogonal": init.orthogonal(),
    "zeros": init.zeros,
    "ones": init.ones,
    "random_normal": init.normal(0.05),
    "random_uniform": None,  # set below: Keras's RandomUniform samples [-0.05, 0.05)
    "truncated_normal": init.truncated_normal(0.05),
}


def random_uniform(minval: float = -0.05, maxval: float = 0.05):
    """Keras's `RandomUniform`: uniform on `[minval, maxval)`."""

    def initializer(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, minval, maxval)

    return initializer


INITIALIZERS["random_uniform"] = random_uniform()


def get(identifier, *, where: str = "initializer"):
    """Resolves an initialiser name or a callable `(key, shape, dtype) -> array`.

    Raises:
      ValueError: for an unknown name; the message lists the valid names.
    """
    if callable(identifier):
        return identifier
    if isinstance(identifier, str) and identifier.lower() in INITIALIZERS:
        return INITIALIZERS[identifier.lower()]
    raise ValueError(f"{where}: unknown initializer {identifier!r}; expected one of {sorted(INITIALIZERS)} or a callable")


def constant(value):
    def initializer(key, shape, dtype=jnp.float32):
        return jnp.full(shape, value, dtype)

    return initializer


__all__ = ["INITIALIZERS", "constant", "get", "random_uniform"]
