"""`nj.ops`: Keras 3's op names (`keras.ops.*`) over `jax.numpy`, `jax.nn` and `jax.lax`.

    from nnjax import ops
    x = ops.mean(ops.square(y_true - y_pred), axis=-1)

Each op takes and returns JAX arrays and has `keras.ops`'s signature and defaults (for example
`ops.gelu(x, approximate=True)`, `ops.leaky_relu(x, negative_slope=0.2)`, the crossentropies with
Keras's `epsilon` clipping). On symbolic tensors (`nj.Input` and what is computed from it) an op
records a node of the functional graph instead of computing.

Why a module of our own rather than re-exporting `keras.ops` when Keras is installed: nnjax must work
without Keras; `import keras` (JAX backend) costs 3.9-4.3 s on top of jax+flax+optax (2.9 s), measured
on the project's 2-core CPU machine (three runs each: `python -c "import jax, flax.nnx; t=...; import
keras"`), while this module imports in 3.6 ms once jax is loaded (`python -X importtime -c "import
nnjax"`: nnjax.ops 3.6 ms, nnjax.layers.functional 8.5 ms); and `keras.ops` on nnjax's
symbolic tensors would not record nnjax graph nodes. `tests/test_namespace.py` checks these ops
against `keras.ops` itself. Keras's `ops.image`, `ops.linalg`, the convolution and pooling ops,
`ctc_loss` and `dot_product_attention` are not here yet.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import jax.scipy.special as jsp
import numpy as np

from nnjax.layers import functional as _functional

_EPSILON = 1e-7  # keras.config.epsilon()


def _symbolic(fn: Callable, name: str) -> Callable:
    """`fn` computing on arrays, recording a graph node on symbolic tensors."""

    @functools.wraps(fn)
    def op(*args, **kwargs):
        if _functional.any_symbolic(args, kwargs):
            return _functional.record_op(fn, args, kwargs, name)
        return fn(*args, **kwargs)

    op.__name__ = op.__qualname__ = name
    op.__module__ = __name__
    return op


# -- ops whose jax.numpy counterpart has Keras's signature and defaults --------------------------------
_NUMPY = (
    "abs", "absolute", "add", "all", "any", "append", "arccos", "arccosh", "arcsin", "arcsinh", "arctan", "arctan2",
    "arctanh", "argmax", "argmin", "argsort", "average", "bincount", "broadcast_to", "ceil", "clip", "concatenate",
    "conj", "copy", "cos", "cosh", "count_nonzero", "cross", "cumprod", "cumsum", "diag", "diagonal", "diff", "digitize",
    "divide", "dot", "einsum", "equal", "exp", "exp2", "expand_dims", "expm1", "eye", "flip", "floor", "floor_divide",
    "full", "full_like", "greater", "greater_equal", "hstack", "hypot", "identity", "imag", "inner", "isclose", "isfinite",
    "isinf", "isnan", "less", "less_equal", "linspace", "log", "log10", "log1p", "log2", "logaddexp", "logical_and",
    "logical_not", "logical_or", "logical_xor", "logspace", "matmul", "max", "maximum", "mean", "median", "meshgrid",
    "min", "minimum", "mod", "moveaxis", "multiply", "nan_to_num", "negative", "nonzero", "not_equal", "ones", "ones_like",
    "outer", "power", "prod", "quantile", "ravel", "real", "reciprocal", "repeat", "reshape", "roll", "round",
    "searchsorted", "sign", "sin", "sinh", "sort", "split", "sqrt", "square", "squeeze", "stack", "std", "subtract", "sum",
    "swapaxes", "take", "take_along_axis", "tan", "tanh", "tensordot", "tile", "trace", "transpose", "tri", "tril", "triu",
    "true_divide", "trunc", "var", "vdot", "vstack", "zeros", "zeros_like",
)


def _pad(x, pad_width, mode="constant", constant_values=None):
    if constant_values is not None:
        return jnp.pad(x, pad_width, mode=mode, constant_values=constant_values)
    return jnp.pad(x, pad_width, mode=mode)


def _where(condition, x1=None, x2=None):
    if x1 is None and x2 is None:
        return jnp.nonzero(condition)
    return jnp.where(condition, x1, x2)


def _divide_no_nan(x1, x2):
    safe = jnp.where(x2 == 0, 1, x2)
    return jnp.where(x2 == 0, jnp.zeros((), jnp.result_type(x1, x2)), jnp.true_divide(x1, safe))


def _select(condlist, choicelist, default=0):
    return jnp.select(condlist, choicelist, default)


def _unstack(x, num=None, axis=0):
    return [jnp.squeeze(part, axis) for part in jnp.split(x, x.shape[axis], axis=axis)]


def _norm(x, ord=None, axis=None, keepdims=False):  # noqa: A002 - Keras's argument name
    return jnp.linalg.norm(x, ord=ord, axis=axis, keepdims=keepdims)


def _arange(start, stop=None, step=1, dtype=None):
    return jnp.arange(start, stop, step, dtype=dtype)


def _empty(shape, dtype=None):
    return jnp.zeros(shape, dtype=dtype or "float32")


def _cast(x, dtype):
    return jnp.asarray(x).astype(dtype)


def _convert_to_tensor(x, dtype=None, sparse=None, ragged=None):
    if sparse or ragged:
        raise ValueError("convert_to_tensor: sparse and ragged tensors are not supported by nnjax; pass dense arrays")
    return jnp.asarray(x, dtype=dtype)


def _logsumexp(x, axis=None, keepdims=False):
    return jsp.logsumexp(x, axis=axis, keepdims=keepdims)


def _top_k(x, k, sorted=True):  # noqa: A002 - Keras's argument name
    return jax.lax.top_k(x, k)


def _in_top_k(targets, predictions, k):
    targets = jnp.asarray(targets, jnp.int32)
    target_values = jnp.take_along_axis(predictions, targets[:, None], axis=-1)
    return jnp.sum(predictions > target_values, axis=-1) < k


def _moments(x, axes, keepdims=False, synchronized=False):
    if synchronized:
        raise ValueError("moments: synchronized=True is not supported; compute the statistics inside the sharded step")
    mean_value = jnp.mean(x, axes, keepdims=keepdims)
    variance = jnp.var(x, axis=axes, keepdims=keepdims)
    return mean_value, variance


def _slice(inputs, start_indices, shape):
    return jax.lax.dynamic_slice(inputs, start_indices, shape)


def _slice_update(inputs, start_indices, updates):
    return jax.lax.dynamic_update_slice(inputs, updates, start_indices)


def _scatter(indices, values, shape):
    indices = jnp.asarray(indices)
    return jnp.zeros(shape, jnp.asarray(values).dtype).at[tuple(jnp.moveaxis(indices, -1, 0))].add(values)


def _scatter_update(inputs, indices, updates):
    indices = jnp.asarray(indices)
    return jnp.asarray(inputs).at[tuple(jnp.moveaxis(indices, -1, 0))].set(updates)


def _segment_sum(data, segment_ids, num_segments=None, sorted=False):  # noqa: A002 - Keras's argument name
    return jax.ops.segment_sum(data, segment_ids, num_segments, indices_are_sorted=sorted)


def _segment_max(data, segment_ids, num_segments=None, sorted=False):  # noqa: A002 - Keras's argument name
    return jax.ops.segment_max(data, segment_ids, num_segments, indices_are_sorted=sorted)


# -- activations (keras.ops's defaults, which differ from jax.nn's in places) ---------------------------
def _relu(x):
    return jax.nn.relu(x)


def _leaky_relu(x, negative_slope=0.2):
    return jax.nn.leaky_relu(x, negative_slope)


def _elu(x, alpha=1.0):
    return jax.nn.elu(x, alpha)


def _gelu(x, approximate=True):
    return jax.nn.gelu(x, approximate=approximate)


def _softmax(x, axis=-1):
    return jax.nn.softmax(x, axis=axis)


def _log_softmax(x, axis=-1):
    return jax.nn.log_softmax(x, axis=axis)


def _one_hot(x, num_classes, axis=-1, dtype=None, sparse=False):
    if sparse:
        raise ValueError("one_hot: sparse=True is not supported by nnjax; use the dense result")
    return jax.nn.one_hot(x, num_classes, dtype=dtype or "float32", axis=axis)


def _normalize(x, axis=-1, order=2, epsilon=None):
    norm_value = jnp.linalg.norm(x, ord=order, axis=axis, keepdims=True)
    return x / jnp.maximum(norm_value, _EPSILON if epsilon is None else epsilon)


# -- losses, as keras.ops computes them ----------------------------------------------------------------
def _binary_crossentropy(target, output, from_logits=False):
    target, output = jnp.asarray(target), jnp.asarray(output)
    if target.shape != output.shape:
        raise ValueError(f"binary_crossentropy: `target` and `output` must have the same shape; received {target.shape} and {output.shape}")
    if from_logits:
        return -target * jax.nn.log_sigmoid(output) - (1.0 - target) * jax.nn.log_sigmoid(-output)
    output = jnp.clip(output, _EPSILON, 1.0 - _EPSILON)
    return -(target * jnp.log(output) + (1.0 - target) * jnp.log(1.0 - output))


def _log_probabilities(output, from_logits, axis):
    if from_logits:
        return jax.nn.log_softmax(output, axis=axis)
    output = output / jnp.sum(output, axis, keepdims=True)
    return jnp.log(jnp.clip(output, _EPSILON, 1.0 - _EPSILON))


def _categorical_crossentropy(target, output, from_logits=False, axis=-1):
    target, output = jnp.asarray(target), jnp.asarray(output)
    if target.shape != output.shape:
        raise ValueError(f"categorical_crossentropy: `target` and `output` must have the same shape; received {target.shape} and {output.shape}")
    return -jnp.sum(target * _log_probabilities(output, from_logits, axis), axis=axis)


def _sparse_categorical_crossentropy(target, output, from_logits=False, axis=-1):
    target, output = jnp.asarray(target, jnp.int32), jnp.asarray(output)
    if target.ndim == output.ndim and target.shape[-1] == 1:
        target = jnp.squeeze(target, -1)
    if target.shape != output.shape[:-1]:
        raise ValueError(
            "sparse_categorical_crossentropy: `target` must have the shape of `output` without its last axis; received "
            f"{target.shape} and {output.shape}"
        )
    log_prob = _log_probabilities(output, from_logits, axis)
    return -jnp.sum(jax.nn.one_hot(target, output.shape[axis], axis=axis) * log_prob, axis=axis)


# -- control flow and shapes ----------------------------------------------------------------------------
def cond(pred, true_fn, false_fn):
    """`true_fn()` if `pred` else `false_fn()`, traced both ways (`jax.lax.cond`)."""
    return jax.lax.cond(pred, true_fn, false_fn)


def scan(f, init, xs=None, length=None, reverse=False, unroll=1):
    """`jax.lax.scan(f, init, xs)`: `f(carry, x) -> (carry, y)`; returns `(carry, stacked ys)`."""
    return jax.lax.scan(f, init, xs, length=length, reverse=reverse, unroll=unroll)


def fori_loop(lower, upper, body_fun, init_val):
    """`body_fun(i, value)` for `i` in `[lower, upper)` (`jax.lax.fori_loop`)."""
    return jax.lax.fori_loop(lower, upper, body_fun, init_val)


def while_loop(cond, body, loop_vars, maximum_iterations=None):  # noqa: A002 - Keras's argument names
    """Keras's `while_loop`: `cond(*loop_vars)` / `body(*loop_vars)` for a tuple or list of loop variables."""
    is_sequence = isinstance(loop_vars, (tuple, list))
    state = (tuple(loop_vars) if is_sequence else (loop_vars,), 0)

    def keep_going(carry):
        values, count = carry
        ok = cond(*values)
        return ok if maximum_iterations is None else jnp.logical_and(ok, count < maximum_iterations)

    def step(carry):
        values, count = carry
        new = body(*values)
        return (tuple(new) if is_sequence else (new,), count + 1)

    values, _ = jax.lax.while_loop(keep_going, step, state)
    return (type(loop_vars)(values) if is_sequence else values[0])


def vectorized_map(function, elements):
    """`jax.vmap(function)(elements)`."""
    return jax.vmap(function)(elements)


def map(f, xs):  # noqa: A001 - Keras's name
    """`jax.lax.map(f, xs)`: `f` over the leading axis, one element at a time."""
    return jax.lax.map(f, xs)


def stop_gradient(variable):
    """The value, with a zero gradient (`jax.lax.stop_gradient`)."""
    return jax.lax.stop_gradient(variable)


def shape(x) -> tuple:
    """The shape as a tuple; None for an unknown axis of a symbolic tensor."""
    return tuple(x.shape) if hasattr(x, "shape") else tuple(np.shape(x))


def ndim(x) -> int:
    """The number of axes."""
    return len(shape(x))


def size(x) -> int:
    """The number of elements."""
    return int(np.prod(shape(x)))


def dtype(x) -> str:
    """The dtype's name ("float32", "int32", ...)."""
    return jnp.dtype(x.dtype).name


def is_tensor(x) -> bool:
    """Whether `x` is a JAX array (or a symbolic tensor)."""
    return isinstance(x, (jax.Array, _functional.KerasTensor))


def convert_to_numpy(x) -> np.ndarray:
    """A host NumPy copy."""
    return np.asarray(x)


_CUSTOM = {
    "pad": _pad, "where": _where, "divide_no_nan": _divide_no_nan, "select": _select, "unstack": _unstack, "norm": _norm,
    "arange": _arange, "empty": _empty, "cast": _cast, "convert_to_tensor": _convert_to_tensor, "logsumexp": _logsumexp,
    "top_k": _top_k, "in_top_k": _in_top_k, "moments": _moments, "slice": _slice, "slice_update": _slice_update,
    "scatter": _scatter, "scatter_update": _scatter_update, "segment_sum": _segment_sum, "segment_max": _segment_max,
    "erf": jax.lax.erf, "erfinv": jax.lax.erf_inv, "rsqrt": jax.lax.rsqrt,
    "relu": _relu, "relu6": jax.nn.relu6, "sigmoid": jax.nn.sigmoid, "softplus": jax.nn.softplus, "softsign": jax.nn.soft_sign,
    "silu": jax.nn.silu, "swish": jax.nn.silu, "log_sigmoid": jax.nn.log_sigmoid, "leaky_relu": _leaky_relu,
    "hard_sigmoid": jax.nn.hard_sigmoid, "hard_silu": jax.nn.hard_silu, "hard_swish": jax.nn.hard_silu, "elu": _elu,
    "selu": jax.nn.selu, "gelu": _gelu, "softmax": _softmax, "log_softmax": _log_softmax, "one_hot": _one_hot,
    "normalize": _normalize, "binary_crossentropy": _binary_crossentropy, "categorical_crossentropy": _categorical_crossentropy,
    "sparse_categorical_crossentropy": _sparse_categorical_crossentropy,
}

_OPS: dict[str, Callable] = {name: _symbolic(getattr(jnp, name), name) for name in _NUMPY}
_OPS.update({name: _symbolic(fn, name) for name, fn in _CUSTOM.items()})
globals().update(_OPS)

_PLAIN = ["cond", "convert_to_numpy", "dtype", "fori_loop", "is_tensor", "map", "ndim", "scan", "shape", "size",
          "stop_gradient", "vectorized_map", "while_loop"]

__all__ = sorted([*_OPS, *_PLAIN])
