"""Activations by Keras name."""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp


def linear(x):
    """The identity."""
    return x


def _records_symbolic(fn: Callable) -> Callable:
    """On a symbolic tensor (functional API), records `fn` as a graph node instead of computing."""

    @functools.wraps(fn)
    def activation(x, *args, **kwargs):
        if hasattr(x, "_ks_shape"):
            from nnjax.layers.functional import record_op

            return record_op(fn, (x, *args), kwargs, fn.__name__)
        return fn(x, *args, **kwargs)

    return activation


# -- Keras's activation functions (`keras.activations.relu(x)`), with Keras's signatures and defaults ----
@_records_symbolic
def relu(x, negative_slope: float = 0.0, max_value: float | None = None, threshold: float = 0.0):
    """Keras's `relu`: `max(x, 0)`, optionally leaky below `threshold` and clipped at `max_value`."""
    if negative_slope != 0.0:
        if max_value is None and threshold == 0:
            return jax.nn.leaky_relu(x, negative_slope)
        negative_part = jax.nn.relu(-x + threshold) if threshold != 0 else jax.nn.relu(-x)
    clip_max = max_value is not None
    if threshold != 0:
        x = x * (x > jnp.asarray(threshold, x.dtype)).astype(x.dtype)
    elif max_value == 6:
        x, clip_max = jax.nn.relu6(x), False
    else:
        x = jax.nn.relu(x)
    if clip_max:
        x = jnp.clip(x, 0.0, max_value)
    if negative_slope != 0.0:
        x = x - negative_slope * negative_part
    return x


@_records_symbolic
def leaky_relu(x, negative_slope: float = 0.2):
    """`x` if `x > 0` else `negative_slope * x` (Keras's default slope is 0.2)."""
    return jax.nn.leaky_relu(x, negative_slope)


@_records_symbolic
def elu(x, alpha: float = 1.0):
    """`x` if `x > 0` else `alpha * (exp(x) - 1)`."""
    return jax.nn.elu(x, alpha)


@_records_symbolic
def gelu(x, approximate: bool = False):
    """Gaussian error linear unit (exact by default, as Keras's `activations.gelu`)."""
    return jax.nn.gelu(x, approximate=approximate)


@_records_symbolic
def softmax(x, axis: int = -1):
    """`exp(x) / sum(exp(x))` along `axis`."""
    return jax.nn.softmax(x, axis=axis)


@_records_symbolic
def log_softmax(x, axis: int = -1):
    """`log(softmax(x))` along `axis`, computed stably."""
    return jax.nn.log_softmax(x, axis=axis)


relu6 = _records_symbolic(jax.nn.relu6)
selu = _records_symbolic(jax.nn.selu)
silu = _records_symbolic(jax.nn.silu)
swish = silu
mish = _records_symbolic(jax.nn.mish)
sigmoid = _records_symbolic(jax.nn.sigmoid)
hard_sigmoid = _records_symbolic(jax.nn.hard_sigmoid)
hard_silu = _records_symbolic(jax.nn.hard_silu)
hard_swish = hard_silu
softplus = _records_symbolic(jax.nn.softplus)
softsign = _records_symbolic(jax.nn.soft_sign)
tanh = _records_symbolic(jnp.tanh)
exponential = _records_symbolic(jnp.exp)


def _softmax(x, axis=-1):
    return jax.nn.softmax(x, axis=axis)


def _gelu(x, approximate=False):
    # Keras's default gelu is the exact one.
    return jax.nn.gelu(x, approximate=approximate)


ACTIVATIONS: dict[str, Callable] = {
    "linear": linear,
    "relu": jax.nn.relu,
    "relu6": jax.nn.relu6,
    "leaky_relu": leaky_relu,  # Keras's slope, 0.2 (jax.nn's default is 0.01)
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


__all__ = ["ACTIVATIONS", "elu", "exponential", "gelu", "get", "hard_sigmoid", "hard_silu", "hard_swish", "leaky_relu", "linear",
           "log_softmax", "mish", "name_of", "relu", "relu6", "selu", "serialize", "sigmoid", "silu", "softmax", "softplus",
           "softsign", "swish", "tanh"]
