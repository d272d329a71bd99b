"""Activations by Keras name, with Keras 3's definitions and defaults (e.g. `leaky_relu`'s slope 0.2)."""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp


def linear(x):
    """The identity."""
    return x


def relu(x, negative_slope: float = 0.0, max_value: float | None = None, threshold: float = 0.0):
    """Keras's `relu`: `x` above `threshold` (else 0), capped at `max_value`, minus `negative_slope * relu(threshold - x)`."""
    x = jnp.asarray(x)
    if negative_slope != 0.0:
        if max_value is None and threshold == 0:
            return jax.nn.leaky_relu(x, negative_slope=negative_slope)
        negative_part = jax.nn.relu(-x + threshold) if threshold != 0 else jax.nn.relu(-x)
    else:
        negative_part = 1
    clip_max = max_value is not None
    if threshold != 0:
        x = jnp.where(x > jnp.asarray(threshold, x.dtype), x, 0)
    elif max_value == 6:
        x = jax.nn.relu6(x)
        clip_max = False
    else:
        x = jax.nn.relu(x)
    if clip_max:
        x = jnp.clip(x, jnp.asarray(0.0, x.dtype), jnp.asarray(max_value, x.dtype))
    if negative_slope != 0.0:
        x = x - negative_slope * negative_part
    return x


def leaky_relu(x, negative_slope: float = 0.2):
    """`x` for `x >= 0`, else `negative_slope * x` (Keras's default slope 0.2; jax.nn's is 0.01)."""
    return jax.nn.leaky_relu(x, negative_slope=negative_slope)


def relu6(x):
    """`min(max(x, 0), 6)`."""
    return jax.nn.relu6(x)


def elu(x, alpha: float = 1.0):
    """`x` for `x > 0`, else `alpha * (exp(x) - 1)`."""
    return jax.nn.elu(x, alpha=alpha)


def celu(x, alpha: float = 1.0):
    """`max(x, 0) + min(0, alpha * (exp(x / alpha) - 1))`."""
    return jax.nn.celu(x, alpha=alpha)


def selu(x):
    """Scaled ELU with the self-normalising constants."""
    return jax.nn.selu(x)


def gelu(x, approximate: bool = False):
    """Gaussian error linear unit; Keras's default is the exact (erf) form."""
    return jax.nn.gelu(x, approximate=approximate)


def glu(x, axis: int = -1):
    """Gated linear unit: the first half of `axis` times the sigmoid of the second half."""
    return jax.nn.glu(x, axis=axis)


def silu(x):
    """`x * sigmoid(x)` (also "swish")."""
    return jax.nn.silu(x)


def hard_silu(x):
    """`x * relu6(x + 3) / 6` (also "hard_swish")."""
    return jax.nn.hard_silu(x)


def mish(x):
    """`x * tanh(softplus(x))`."""
    return x * jnp.tanh(jax.nn.softplus(x))


def sigmoid(x):
    """`1 / (1 + exp(-x))`."""
    return jax.nn.sigmoid(x)


def hard_sigmoid(x):
    """`relu6(x + 3) / 6`."""
    return jax.nn.hard_sigmoid(x)


def sparse_sigmoid(x):
    """`clip((x + 1) / 2, 0, 1)`."""
    return jax.nn.sparse_sigmoid(x)


def log_sigmoid(x):
    """`log(sigmoid(x))`, computed stably."""
    return jax.nn.log_sigmoid(x)


def softplus(x):
    """`log(1 + exp(x))`."""
    return jax.nn.softplus(x)


def softsign(x):
    """`x / (1 + |x|)`."""
    return jax.nn.soft_sign(x)


def squareplus(x, b: float = 4):
    """`(x + sqrt(x^2 + b)) / 2`."""
    return jax.nn.squareplus(x, b=b)


def sparse_plus(x):
    """0 for `x <= -1`, `(x + 1)^2 / 4` for `|x| < 1`, `x` for `x >= 1`."""
    return jax.nn.sparse_plus(x)


def tanh(x):
    """The hyperbolic tangent."""
    return jnp.tanh(x)


def tanh_shrink(x):
    """`x - tanh(x)`."""
    return x - jnp.tanh(x)


def hard_tanh(x):
    """`clip(x, -1, 1)`."""
    return jax.nn.hard_tanh(x)


def soft_shrink(x, threshold: float = 0.5):
    """`x - threshold` above `threshold`, `x + threshold` below `-threshold`, else 0."""
    return jnp.where(x > threshold, x - threshold, jnp.where(x < -threshold, x + threshold, 0.0))


def hard_shrink(x, threshold: float = 0.5):
    """`x` where `|x| > threshold`, else 0."""
    return jnp.where(jnp.abs(x) > threshold, x, 0.0)


def threshold(x, threshold: float, default_value: float):
    """`x` where `x > threshold`, else `default_value` (Keras's `threshold`; both arguments required)."""
    return jnp.where(x > threshold, x, default_value)


def exponential(x):
    """`exp(x)`."""
    return jnp.exp(x)


def softmax(x, axis: int = -1):
    """`exp(x) / sum(exp(x))` along `axis`."""
    return jax.nn.softmax(x, axis=axis)


def log_softmax(x, axis: int = -1):
    """`x - logsumexp(x)` along `axis`."""
    return jax.nn.log_softmax(x, axis=axis)


def sparsemax(x, axis: int = -1):
    """Sparsemax (Martins & Astudillo, 2016): the Euclidean projection of `x` onto the simplex along `axis`, as Keras computes it."""
    logits = jnp.asarray(x)
    logits_sorted = -1.0 * jnp.sort(logits * -1.0, axis=axis)
    logits_cumsum = jnp.cumsum(logits_sorted, axis=axis)
    r_shape = [1] * logits.ndim
    r_shape[axis] = -1
    r = jnp.arange(1, logits.shape[axis] + 1).reshape(r_shape)
    support = logits_sorted - (logits_cumsum - 1) / r > 0
    k = jnp.sum(support, axis=axis, keepdims=True)
    tau = (jnp.sum(jnp.where(support, logits_cumsum, 0.0), axis=axis, keepdims=True) - 1) / k
    return jnp.maximum(logits - tau, 0.0)


ACTIVATIONS: dict[str, Callable] = {
    "linear": linear,
    "relu": relu,
    "relu6": relu6,
    "leaky_relu": leaky_relu,
    "elu": elu,
    "celu": celu,
    "selu": selu,
    "gelu": gelu,
    "glu": glu,
    "silu": silu,
    "swish": silu,
    "hard_silu": hard_silu,
    "hard_swish": hard_silu,
    "mish": mish,
    "sigmoid": sigmoid,
    "hard_sigmoid": hard_sigmoid,
    "sparse_sigmoid": sparse_sigmoid,
    "log_sigmoid": log_sigmoid,
    "softplus": softplus,
    "softsign": softsign,
    "squareplus": squareplus,
    "sparse_plus": sparse_plus,
    "tanh": tanh,
    "tanh_shrink": tanh_shrink,
    "hard_tanh": hard_tanh,
    "soft_shrink": soft_shrink,
    "hard_shrink": hard_shrink,
    "threshold": threshold,
    "exponential": exponential,
    "softmax": softmax,
    "log_softmax": log_softmax,
    "sparsemax": sparsemax,
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
        raise ValueError(f"{where}: unknown activation {identifier!r}; expected one of {sorted(ACTIVATIONS)} or a callable")
    raise TypeError(f"{where}: expected an activation name or a callable; got {identifier!r}")


def name_of(fn: Callable) -> str:
    """The Keras name of an activation function, or its `__name__`."""
    for name, candidate in ACTIVATIONS.items():
        if candidate is fn:
            return name
    return getattr(fn, "__name__", type(fn).__name__)


def serialize(fn: Callable) -> str:
    """The name under which `get` finds `fn` again."""
    return name_of(fn)


_symbolic_recorder = None  # nnjax.layers.functional's `record_op`, registered when it is imported


def _records_symbolic(fn: Callable) -> Callable:
    """On a symbolic tensor (functional API), records `fn` as a graph node instead of computing."""

    @functools.wraps(fn)
    def activation(x, *args, **kwargs):
        if hasattr(x, "_ks_shape") and _symbolic_recorder is not None:
            return _symbolic_recorder(fn, (x, *args), kwargs, fn.__name__)
        return fn(x, *args, **kwargs)

    return activation


# `nj.activations.relu(t)` on a symbolic tensor `t` records a node; `get(name)` gives the plain functions.
for _name, _fn in list(ACTIVATIONS.items()):
    if globals().get(_name) is _fn:
        globals()[_name] = _records_symbolic(_fn)
swish, hard_swish = silu, hard_silu
del _name, _fn


__all__ = ["ACTIVATIONS", "get", "name_of", "serialize", *sorted(set(ACTIVATIONS) - {"swish", "hard_swish"})]
