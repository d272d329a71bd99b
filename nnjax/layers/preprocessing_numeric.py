"""Numeric preprocessing layers: Normalization (with `adapt`), Discretization (with `adapt`), CategoryEncoding.

What `adapt` learns is kept as non-trainable state (`nnx.BatchStat` variables), so it is part of
the model's state: saved and restored with checkpoints, sharded and donated like BatchNorm
statistics, and never touched by the optimizer. `adapt` itself runs on the host (NumPy), once,
before training, as in Keras.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from nnjax.layers.base import Layer, shape_str
from nnjax.layers.utils import check_choice, is_concrete

_EPSILON = 1e-7  # keras.backend.epsilon()


def _batches(data) -> Iterable[np.ndarray]:
    """An array as one batch, or the batches of an iterable (`(x, y)` batches give their x)."""
    if hasattr(data, "shape") and hasattr(data, "dtype"):
        return [np.asarray(data)]
    if isinstance(data, (list, tuple)) and data and all(isinstance(v, (int, float, np.number)) for v in data):
        return [np.asarray(data)]
    if not hasattr(data, "__iter__"):
        raise TypeError(f"adapt() expects an array or an iterable of batches (arrays); got {type(data).__name__}")

    def first(batch):
        return np.asarray(batch[0] if isinstance(batch, (tuple, list)) and len(batch) in (2, 3) and hasattr(batch[0], "shape")
                          else batch)

    return (first(b) for b in data)


def _encode(indices, output_mode: str, depth: int, dtype, count_weights=None):
    """Keras's `encode_categorical_inputs` (JAX backend) for "one_hot", "multi_hot" and "count"."""
    if indices.ndim == 0:
        indices = indices[None]
    if output_mode == "one_hot":
        if indices.ndim > 1 and indices.shape[-1] == 1:
            indices = indices[..., 0]
        return jax.nn.one_hot(indices, depth, dtype=dtype)
    reduction_axis = 1 if indices.ndim > 1 else 0
    if output_mode == "multi_hot":
        return jnp.max(jax.nn.one_hot(indices.astype(jnp.int32), depth, dtype=dtype), axis=reduction_axis)
    encoded = jax.nn.one_hot(indices, depth, dtype=dtype if count_weights is None else count_weights.dtype)
    if count_weights is not None:
        encoded = encoded * count_weights[..., None]
    return jnp.sum(encoded, axis=reduction_axis)


def _encoded_shape(input_shape, output_mode: str, depth: int) -> tuple:
    shape = tuple(input_shape)
    if output_mode == "one_hot":
        return (shape[:-1] if len(shape) > 1 and shape[-1] == 1 else shape) + (depth,)
    return ((shape[0],) + shape[2:] if len(shape) >= 2 else ()) + (depth,)


class Normalization(Layer):
    """Standardises features: `(x - mean) / max(sqrt(variance), 1e-7)`, as Keras's `Normalization`.

    Give `mean` and `variance`, or call `adapt(data)` to compute them from data (per position of
    the kept `axis`, reducing every other axis). `invert=True` maps standardised values back:
    `mean + x * max(sqrt(variance), 1e-7)`.

    Args:
      axis: the axis or axes to keep (one mean per feature of the last axis by default); None
        computes a single mean and variance.
      mean, variance: fixed statistics (scalars or arrays broadcastable to the kept axes).
      invert: apply the inverse transformation.

    Variables: `mean`, `variance` (`nnx.BatchStat`, float32, of shape `input_shape[axis]`), saved
    with the model.

    Example:
      >>> x_train = np.random.default_rng(0).normal(3.0, 2.0, size=(1000, 8)).astype(np.float32)
      >>> norm = nj.layers.Normalization()
      >>> norm.adapt(x_train)
      >>> norm.mean[...].shape
      (8,)
      >>> model = nj.Sequential([norm, nj.layers.Dense(1)])
    """

    supports_masking = True  # passes its input's mask on (Keras)

    _checked_axes = ()
    _jit_eager_calls = True

    def __init__(self, axis: int | Sequence[int] | None = -1, mean=None, variance=None, invert: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.axis = () if axis is None else ((axis,) if isinstance(axis, int) else tuple(axis))
        if (mean is None) != (variance is None):
            raise ValueError(f"{self._where}: give both `mean` and `variance`, or neither; got mean={mean!r}, variance={variance!r}")
        if mean is not None and np.shape(mean) != np.shape(variance):
            raise ValueError(
                f"{self._where}: `mean` and `variance` must have the same shape; got {np.shape(mean)} and {np.shape(variance)}"
            )
        if mean is not None and np.ndim(mean) > len(self.axis):
            raise ValueError(
                f"{self._where}: `mean` has rank {np.ndim(mean)}, more than the {len(self.axis)} kept axes axis={axis!r}"
            )
        self.input_mean = None if mean is None else np.asarray(mean, np.float32)
        self.input_variance = None if variance is None else np.asarray(variance, np.float32)
        self.invert = bool(invert)

    @property
    def _where(self) -> str:
        return f'Normalization "{self.name}"'

    def build(self, input_shape, key):
        ndim = len(input_shape)
        if any(not -ndim <= a < ndim for a in self.axis):
            raise ValueError(f"{self._where}: `axis` {self.axis} is out of range for inputs of rank {ndim}")
        self.keep_axes = tuple(sorted(a % ndim for a in self.axis))
        if 0 in self.keep_axes:
            raise ValueError(f"{self._where}: `axis` must not include the batch axis 0; got {self.axis}")
        self.reduce_axes = tuple(d for d in range(ndim) if d not in self.keep_axes)
        shape = tuple(input_shape[d] for d in self.keep_axes)
        if any(d is None for d in shape):
            raise ValueError(f"{self._where}: the kept axes {self.axis} must be known; received shape {shape_str(input_shape)}")
        if self.input_mean is None:
            mean, variance = np.zeros(shape, np.float32), np.ones(shape, np.float32)
        else:
            mean, variance = self._expand(self.input_mean, shape), self._expand(self.input_variance, shape)
        self.mean = nnx.BatchStat(jnp.asarray(mean))
        self.variance = nnx.BatchStat(jnp.asarray(variance))

    @staticmethod
    def _expand(value, shape):
        """Aligns the given statistic with the trailing kept axes and broadcasts it (Keras's rule)."""
        value = np.asarray(value, np.float32)
        return np.broadcast_to(value.reshape((1,) * (len(shape) - value.ndim) + value.shape), shape).copy()

    def adapt(self, data) -> None:
        """Computes `mean` and `variance` from `data` (an array, or an iterable of batches), as Keras.

        Batches are combined with Keras's streaming update, so an iterable gives the statistics of
        the whole data.

        Raises:
          ValueError: for data whose kept axes do not match the layer's, or no data.
        """
        batches = iter(_batches(data))
        first = next(batches, None)
        if first is None:
            raise ValueError(f"{self._where}: adapt() received no data")
        if not self.built:
            self.ensure_built(first.shape)
        expected = tuple(self.mean.shape)
        total_mean = total_var = None
        total_count = 0
        for batch in _chain(first, batches):
            batch = np.asarray(batch, np.float64)
            if batch.ndim != len(self.built_input_shape) or tuple(batch.shape[d] for d in self.keep_axes) != expected:
                raise ValueError(
                    f"{self._where}: adapt() got a batch of shape {shape_str(batch.shape)}; the layer keeps axes "
                    f"{self.keep_axes} of size {expected} (built for {shape_str(self.built_input_shape)})"
                )
            batch_mean = batch.mean(axis=self.reduce_axes)
            batch_var = batch.var(axis=self.reduce_axes)
            count = math.prod(batch.shape[d] for d in self.reduce_axes)
            if total_mean is None:
                total_mean, total_var, total_count = batch_mean, batch_var, count
                continue
            total_count += count
            weight = count / total_count
            new_mean = total_mean * (1 - weight) + batch_mean * weight
            total_var = (total_var + (total_mean - new_mean) ** 2) * (1 - weight) + (batch_var + (batch_mean - new_mean) ** 2) * weight
            total_mean = new_mean
        self.mean[...] = jnp.asarray(total_mean, jnp.float32)
        self.variance[...] = jnp.asarray(total_var, jnp.float32)

    def _broadcast(self, v, ndim: int):
        shape = [1] * ndim
        for i, d in enumerate(self.keep_axes):
            shape[d] = v.shape[i]
        return jnp.reshape(v, shape)

    def call(self, x, *, training=False, key=None):
        x = x if jnp.issubdtype(x.dtype, jnp.floating) else x.astype(jnp.float32)
        mean = self._broadcast(self.mean[...], x.ndim).astype(x.dtype)
        std = jnp.maximum(jnp.sqrt(self._broadcast(self.variance[...], x.ndim)), _EPSILON).astype(x.dtype)
        return mean + x * std if self.invert else (x - mean) / std

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self) -> dict:
        return {"name": self.name, "axis": self.axis, "invert": self.invert,
                "mean": None if self.input_mean is None else self.input_mean.tolist(),
                "variance": None if self.input_variance is None else self.input_variance.tolist()}


def _chain(first, rest):
    yield first
    yield from rest


# -- Discretization's quantile summaries (Keras's algorithm, on the host) -------------------------
def _summarize(values: np.ndarray, epsilon: float) -> np.ndarray:
    values = np.sort(np.reshape(values, [-1]))
    step = max(np.size(values) / (1.0 / epsilon), 1)
    boundaries = values[int(step - 1)::int(step)]
    return np.stack([boundaries, np.ones_like(boundaries) * step])


def _compress(summary: np.ndarray, epsilon: float) -> np.ndarray:
    if summary.shape[1] * epsilon < 1:
        return summary
    percents = epsilon + np.arange(0.0, 1.0, epsilon)
    cum_weights = summary[1].cumsum()
    cum_percents = cum_weights / cum_weights[-1]
    new_bins = np.interp(percents, cum_percents, summary[0])
    cum_weights = np.interp(percents, cum_percents, cum_weights)
    new_weights = cum_weights - np.concatenate((np.array([0]), cum_weights[:-1]))
    return np.stack((new_bins, new_weights)).astype("float32")


def _merge(previous: np.ndarray, new: np.ndarray, epsilon: float) -> np.ndarray:
    merged = np.concatenate((previous, new), axis=1)
    return _compress(np.take(merged, np.argsort(merged[0]), axis=1), epsilon)


class Discretization(Layer):
    """Buckets values by `bin_boundaries`: bucket i holds `boundaries[i-1] <= x < boundaries[i]`.

    Give `bin_boundaries`, or `num_bins` and call `adapt(data)` to place the boundaries at
    approximate quantiles (Keras's summary algorithm, within `epsilon`).

    Args:
      bin_boundaries: sorted boundaries (n boundaries make n + 1 buckets).
      num_bins: number of buckets for `adapt`.
      epsilon: quantile error tolerance of `adapt` (0.01).
      output_mode: "int" (bucket index, int32, default), "one_hot", "multi_hot" or "count"
        (float32 encodings of depth `len(bin_boundaries) + 1`).
      sparse: not supported (dense outputs only, as Keras's JAX backend for "int").

    Variable: `boundaries` (`nnx.BatchStat`, float32), saved with the model.
    """

    _checked_axes = ()
    _jit_eager_calls = True

    def __init__(self, bin_boundaries: Sequence[float] | None = None, num_bins: int | None = None, epsilon: float = 0.01,
                 output_mode: str = "int", sparse: bool = False, **kwargs):
        super().__init__(**kwargs)
        where = self._where
        self.output_mode = check_choice(output_mode, ("int", "one_hot", "multi_hot", "count"), "output_mode", where)
        if sparse:
            raise ValueError(f"{where}: `sparse=True` is not supported; nnjax returns dense encodings")
        if (num_bins is None) == (bin_boundaries is None):
            raise ValueError(f"{where}: give exactly one of `bin_boundaries` and `num_bins`; got bin_boundaries={bin_boundaries!r}, "
                             f"num_bins={num_bins!r}")
        if num_bins is not None and (isinstance(num_bins, bool) or not isinstance(num_bins, int) or num_bins < 1):
            raise ValueError(f"{where}: `num_bins` must be a positive int; got {num_bins!r}")
        self.num_bins = num_bins
        self.epsilon = float(epsilon)
        self.sparse = False
        if bin_boundaries is not None:
            values = np.asarray(bin_boundaries, np.float32)
            if values.ndim != 1 or np.any(np.diff(values) < 0):
                raise ValueError(f"{where}: `bin_boundaries` must be a sorted list of numbers; got {bin_boundaries!r}")
            self.boundaries = nnx.BatchStat(jnp.asarray(values))
        else:
            # NaN until adapted: a call before `adapt` is reported (for concrete inputs).
            self.boundaries = nnx.BatchStat(jnp.full((num_bins - 1,), jnp.nan, jnp.float32))

    @property
    def _where(self) -> str:
        return f'Discretization "{self.name}"'

    @property
    def depth(self) -> int:
        return int(self.boundaries.shape[0]) + 1

    def adapt(self, data) -> None:
        """Places `num_bins - 1` boundaries at approximate quantiles of `data` (array or iterable of batches).

        Raises:
          ValueError: for a layer built with `bin_boundaries`, or fewer values than `num_bins`.
        """
        if self.num_bins is None:
            raise ValueError(f"{self._where}: cannot adapt a layer built with `bin_boundaries`; use `num_bins`")
        summary = np.array([[], []], dtype="float32")
        for batch in _batches(data):
            summary = _merge(_summarize(np.asarray(batch, np.float32), self.epsilon), summary, self.epsilon)
        boundaries = _compress(summary, 1.0 / self.num_bins)[0, :-1]
        if boundaries.shape[0] != self.num_bins - 1:
            raise ValueError(
                f"{self._where}: adapt() needs at least num_bins={self.num_bins} values to place {self.num_bins - 1} "
                f"boundaries; received {int(summary[1].sum())} values"
            )
        self.boundaries[...] = jnp.asarray(boundaries, jnp.float32)

    def check_host_inputs(self, x) -> None:
        if bool(np.isnan(np.asarray(self.boundaries[...])).any()):
            raise ValueError(f"{self._where}: call adapt(data) (or give `bin_boundaries`) before using the layer")

    def __call__(self, x, training: bool = False, key=None):
        if is_concrete(self.boundaries[...]) and is_concrete(x):
            self.check_host_inputs(x)
        return super().__call__(x, training=training, key=key)

    def call(self, x, *, training=False, key=None):
        indices = jnp.digitize(x, self.boundaries[...].astype(jnp.promote_types(x.dtype, jnp.float32))).astype(jnp.int32)
        if self.output_mode == "int":
            return indices
        return _encode(indices, self.output_mode, self.depth, jnp.float32)

    def compute_output_shape(self, input_shape):
        if self.output_mode == "int":
            return tuple(input_shape)
        return _encoded_shape(input_shape, self.output_mode, self.depth)

    def get_config(self) -> dict:
        return {"name": self.name, "bin_boundaries": np.asarray(self.boundaries[...]).tolist(), "num_bins": self.num_bins,
                "epsilon": self.epsilon, "output_mode": self.output_mode}


class CategoryEncoding(Layer):
    """Encodes integer ids in `[0, num_tokens)` as one-hot, multi-hot or count vectors (float32).

    Args:
      num_tokens: the number of ids (the output depth).
      output_mode: "multi_hot" (default; "binary" is an alias), "one_hot" or "count".
      sparse: not supported (dense outputs only).

    Call args:
      x: integer ids. "multi_hot"/"count": `(batch, n)` -> `(batch, num_tokens)`; "one_hot":
        `(batch,)` or `(batch, 1)` -> `(batch, num_tokens)`, `(batch, n)` -> `(batch, n, num_tokens)`.
        As in Keras, a rank-1 input to "multi_hot"/"count" is one sample.
      count_weights: weights of each id for "count" (same shape as `x`).

    Ids out of range are reported before compilation for host arrays (`fit` checks the whole
    dataset); inside `jit` they would encode as zeros.
    """

    _checked_axes = ()
    _jit_eager_calls = True

    def __init__(self, num_tokens: int | None = None, output_mode: str = "multi_hot", sparse: bool = False, **kwargs):
        super().__init__(**kwargs)
        where = f'CategoryEncoding "{self.name}"'
        if output_mode == "binary":
            output_mode = "multi_hot"
        self.output_mode = check_choice(output_mode, ("multi_hot", "one_hot", "count"), "output_mode", where)
        if isinstance(num_tokens, bool) or not isinstance(num_tokens, int) or num_tokens < 1:
            raise ValueError(f"{where}: `num_tokens` must be a positive int (use IntegerLookup when it is unknown); got {num_tokens!r}")
        if sparse:
            raise ValueError(f"{where}: `sparse=True` is not supported; nnjax returns dense encodings")
        self.num_tokens = num_tokens
        self.sparse = False

    def check_host_inputs(self, x) -> None:
        values = np.asarray(x)
        if values.size and (values.min() < 0 or values.max() >= self.num_tokens):
            raise ValueError(
                f'CategoryEncoding "{self.name}": ids must be in [0, {self.num_tokens}); received values in '
                f"[{values.min()}, {values.max()}]"
            )

    def __call__(self, x, count_weights=None, training: bool = False, key=None):
        """Encodes `x` (see the class docstring)."""
        if count_weights is not None and self.output_mode != "count":
            raise ValueError(f'CategoryEncoding "{self.name}": `count_weights` is only used with output_mode="count"')
        if is_concrete(x):
            self.check_host_inputs(x)
        if not self.built:
            self.ensure_built(jnp.shape(x))
        weights = None if count_weights is None else jnp.asarray(count_weights, jnp.float32)
        return self._invoke(x, count_weights=weights, training=training, key=key)

    def call(self, x, *, count_weights=None, training=False, key=None):
        return _encode(jnp.asarray(x), self.output_mode, self.num_tokens, jnp.float32, count_weights)

    def compute_output_shape(self, input_shape):
        return _encoded_shape(input_shape, self.output_mode, self.num_tokens)

    def get_config(self) -> dict:
        return {"name": self.name, "num_tokens": self.num_tokens, "output_mode": self.output_mode}


__all__ = ["CategoryEncoding", "Discretization", "Normalization"]
