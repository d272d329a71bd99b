"""Activations by Keras name."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp


def linear(x):
    """The identity."""
    return x


def _softmax(x, axis=-1):
    return jax.nn.softmax(x, axis=axis)


def _gelu(x, approximate=False):
    # Keras's default gelu is the exact one.
    return jax.nn.gelu(x, approximate=approximate)


ACTIVATIONS: dict[str, Callable] = {
    "linear": linear,
    "relu": jax.nn.relu,
    "relu6": jax.nn.relu6,
    "leaky_relu": jax.nn.leaky_relu,
    "elu": jax.nn.elu,
    "selu": jax.nn.selu,
    "gelu": _gelu,
    "silu": jax.nn.silu,
    "swish": jax.nn.silu,
    "mish": jax.nn.mish,
    "sigmoid": jax.nn.sigmoid,
    "hard_sigmoid": jax.nn.hard_sigmoid,
    "softplus": jax.nn.softplus,
    "softsign": jax.nn.soft_sign,
    "tanh": jnp.tanh,
    "exponential": jnp.exp,
    "softmax": _softmax,
    "log_softmax": jax.nn.log_softmax,
}


def get(identifier, *, where: str = "activation") -> Callable:
    """Resolves an activation name, a callable, or None (linear).

    Raises:
      ValueError: for an unknown name; the message lists the valid names.
      TypeError: for anything that is neither a string nor a callable.
    """
    if identifier is None:
        return linear
    if callable(identifier):
        return identifier
    if isinstance(identifier, str):
        name = identifier.lower()
        if name in ACTIVATIONS:
            return ACTIVATIONS[name]
        raise ValueError(
            f"{where}: unknown activation {identifier!r}; expected one of {sorted(ACTIVATIONS)} or a callable"
        )
    raise TypeError(f"{where}: expected an activation name or a callable; got {identifier!r}")


def name_of(fn: Callable) -> str:
    """The Keras name of an activation function, or its `__name__`."""
    for name, candidate in ACTIVATIONS.items():
        if candidate is fn:
            return name
    return getattr(fn, "__name__", type(fn).__name__)


def serialize(fn: Callable) -> str:
    return name_of(fn)


__all__ = ["ACTIVATIONS", "get", "linear", "name_of", "serialize"]
