"""Losses by Keras name, as pure functions, with Keras 3's arithmetic and reductions.

A loss function maps `(y_true, y_pred)` to per-element losses, e.g. shape
`y_pred.shape[:-1]` for class losses, or reduced over the last axis for
regression losses, as Keras does. A `Loss` object (what `get` and the Keras-named
constructors return) is called as Keras's: `loss(y_true, y_pred, sample_weight)`
is one scalar, reduced as its `reduction` says (Keras's default
"sum_over_batch_size": the weighted sum divided by the number of elements, not
by the sum of the weights).
"""

from __future__ import annotations

import functools
import inspect
import math
import re
from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax

EPSILON = 1e-7  # Keras's backend epsilon: probabilities are clipped to [eps, 1 - eps].
REDUCTIONS = ("sum_over_batch_size", "sum", "mean", "mean_with_sample_weight", "none", None)


def at_least_f32(a):
    """Upcasts bfloat16/float16 (and integers) to float32; float64 stays float64."""
    a = jnp.asarray(a)
    return a.astype(jnp.promote_types(a.dtype, jnp.float32)) if a.dtype != jnp.float64 else a


def squeeze_or_expand_to_same_rank(x1, x2, expand_rank_1: bool = True):
    """Keras's rank matching: drops (or, for rank 1, adds) a trailing axis of size 1 when ranks differ by one."""
    x1, x2 = jnp.asarray(x1), jnp.asarray(x2)
    if x1.ndim == x2.ndim + 1 and x1.shape[-1] == 1:
        if x2.ndim == 1 and expand_rank_1:
            x2 = x2[..., None]
        else:
            x1 = jnp.squeeze(x1, -1)
    if x2.ndim == x1.ndim + 1 and x2.shape[-1] == 1:
        if x1.ndim == 1 and expand_rank_1:
            x1 = x1[..., None]
        else:
            x2 = jnp.squeeze(x2, -1)
    return x1, x2


def _prepare(y_true, y_pred):
    y_pred = at_least_f32(y_pred)
    y_true = jnp.asarray(y_true).astype(y_pred.dtype)
    return squeeze_or_expand_to_same_rank(y_true, y_pred)


# ------------------------------------------------------------------------------------------------ probabilistic
def sparse_categorical_crossentropy(y_true, y_pred, from_logits=False, ignore_class=None, axis=-1):
    """Cross-entropy with integer labels.

    Args:
      y_true: integer class ids, shape `(...)` (or `(..., 1)`).
      y_pred: probabilities (or logits with `from_logits=True`), shape `(..., C)`.
      from_logits: `y_pred` holds logits.
      ignore_class: a label whose elements get loss 0 (a `Loss` object also
        leaves them out of the mean, as Keras masks them).
      axis: the class axis (-1 only).

    Returns:
      Per-element losses, shape `(...)`.
    """
    if axis != -1:
        raise ValueError(f"sparse_categorical_crossentropy: only axis=-1 is supported; got axis={axis!r}")
    y_pred = at_least_f32(y_pred)
    labels = jnp.asarray(y_true)
    if labels.ndim == y_pred.ndim and labels.shape[-1] == 1:
        labels = jnp.squeeze(labels, -1)
    valid = None
    if ignore_class is not None:
        valid = labels != ignore_class
        labels = jnp.where(valid, labels, 0)
        y_pred = jnp.where(valid[..., None], y_pred, 0.0)
    labels = labels.astype(jnp.int32)
    if from_logits:
        log_prob = jax.nn.log_softmax(y_pred, axis=-1)
    else:
        probs = y_pred / jnp.sum(y_pred, axis=-1, keepdims=True)
        log_prob = jnp.log(jnp.clip(probs, EPSILON, 1.0 - EPSILON))
    loss = -jnp.take_along_axis(log_prob, labels[..., None], axis=-1)[..., 0]
    return loss if valid is None else jnp.where(valid, loss, 0.0)


def _smooth_categorical(y_true, label_smoothing):
    if label_smoothing:
        num_classes = jnp.asarray(y_true.shape[-1], y_true.dtype)
        y_true = y_true * (1.0 - label_smoothing) + (label_smoothing / num_classes)
    return y_true


def categorical_crossentropy(y_true, y_pred, from_logits=False, label_smoothing=0.0, axis=-1):
    """Cross-entropy with one-hot (or soft) labels of shape `(..., C)`; Keras normalises, then clips."""
    y_true, y_pred = _prepare(y_true, y_pred)
    y_true = _smooth_categorical(y_true, label_smoothing)
    if from_logits:
        log_prob = jax.nn.log_softmax(y_pred, axis=axis)
    else:
        output = y_pred / jnp.sum(y_pred, axis, keepdims=True)
        log_prob = jnp.log(jnp.clip(output, EPSILON, 1.0 - EPSILON))
    return -jnp.sum(y_true * log_prob, axis=axis)


def _binary_crossentropy_elementwise(target, output, from_logits):
    if from_logits:
        return -1.0 * target * jax.nn.log_sigmoid(output) - (1.0 - target) * jax.nn.log_sigmoid(-output)
    output = jnp.clip(output, EPSILON, 1.0 - EPSILON)
    bce = target * jnp.log(output)
    bce += (1.0 - target) * jnp.log(1.0 - output)
    return -bce


def binary_crossentropy(y_true, y_pred, from_logits=False, label_smoothing=0.0, axis=-1):
    """Binary cross-entropy averaged over the last axis, as Keras does."""
    y_true, y_pred = _prepare(y_true, y_pred)
    if label_smoothing:
        y_true = y_true * (1.0 - label_smoothing) + 0.5 * label_smoothing
    return jnp.mean(_binary_crossentropy_elementwise(y_true, y_pred, from_logits), axis=axis)


def binary_focal_crossentropy(
    y_true, y_pred, apply_class_balancing=False, alpha=0.25, gamma=2.0, from_logits=False, label_smoothing=0.0, axis=-1
):
    """Keras's binary focal cross-entropy: `(1 - p_t)^gamma * bce`, optionally class-balanced by `alpha`."""
    y_true, y_pred = _prepare(y_true, y_pred)
    if label_smoothing:
        y_true = y_true * (1.0 - label_smoothing) + 0.5 * label_smoothing
    if from_logits:
        y_pred = jax.nn.sigmoid(y_pred)
    bce = _binary_crossentropy_elementwise(y_true, y_pred, from_logits=False)
    p_t = y_true * y_pred + (1 - y_true) * (1 - y_pred)
    focal_bce = jnp.power(1.0 - p_t, gamma) * bce
    if apply_class_balancing:
        focal_bce = (y_true * alpha + (1 - y_true) * (1 - alpha)) * focal_bce
    return jnp.mean(focal_bce, axis=axis)


def categorical_focal_crossentropy(y_true, y_pred, alpha=0.25, gamma=2.0, from_logits=False, label_smoothing=0.0, axis=-1):
    """Keras's categorical focal cross-entropy: `sum(alpha * (1 - p)^gamma * -y log p)` over classes."""
    y_true, y_pred = _prepare(y_true, y_pred)
    y_true = _smooth_categorical(y_true, label_smoothing)
    if from_logits:
        y_pred = jax.nn.softmax(y_pred, axis=axis)
    output = y_pred / jnp.sum(y_pred, axis=axis, keepdims=True)
    output = jnp.clip(output, EPSILON, 1.0 - EPSILON)
    cce = -y_true * jnp.log(output)
    weighting_factor = jnp.power(1.0 - output, gamma) * alpha
    return jnp.sum(weighting_factor * cce, axis=axis)


def kl_divergence(y_true, y_pred):
    """KL(y_true || y_pred) over the last axis, both clipped to `[eps, 1]`."""
    y_true, y_pred = _prepare(y_true, y_pred)
    y_true = jnp.clip(y_true, EPSILON, 1)
    y_pred = jnp.clip(y_pred, EPSILON, 1)
    return jnp.sum(y_true * jnp.log(y_true / y_pred), axis=-1)


def poisson(y_true, y_pred):
    """`mean(y_pred - y_true * log(y_pred + eps))` over the last axis."""
    y_true, y_pred = _prepare(y_true, y_pred)
    return jnp.mean(y_pred - y_true * jnp.log(y_pred + EPSILON), axis=-1)


# ------------------------------------------------------------------------------------------------ regression
def mean_squared_error(y_true, y_pred):
    """Mean over the last axis of the squared error."""
    y_true, y_pred = _prepare(y_true, y_pred)
    return jnp.mean(jnp.square(y_true - y_pred), axis=-1)


def mean_absolute_error(y_true, y_pred):
    """Mean over the last axis of the absolute error."""
    y_true, y_pred = _prepare(y_true, y_pred)
    return jnp.mean(jnp.abs(y_true - y_pred), axis=-1)


def mean_absolute_percentage_error(y_true, y_pred):
    """`100 * mean(|y_true - y_pred| / max(|y_true|, eps))` over the last axis."""
    y_true, y_pred = _prepare(y_true, y_pred)
    diff = jnp.abs((y_true - y_pred) / jnp.maximum(jnp.abs(y_true), EPSILON))
    return 100.0 * jnp.mean(diff, axis=-1)


def mean_squared_logarithmic_error(y_true, y_pred):
    """`mean((log(max(y_pred, eps) + 1) - log(max(y_true, eps) + 1))^2)` over the last axis."""
    y_true, y_pred = _prepare(y_true, y_pred)
    first_log = jnp.log(jnp.maximum(y_pred, EPSILON) + 1.0)
    second_log = jnp.log(jnp.maximum(y_true, EPSILON) + 1.0)
    return jnp.mean(jnp.square(first_log - second_log), axis=-1)


def _l2_normalize(x, axis):
    inv_norm = jax.lax.rsqrt(jnp.sum(jnp.square(x), axis=axis, keepdims=True))
    return x * jnp.minimum(inv_norm, 1.0 / EPSILON)


def cosine_similarity(y_true, y_pred, axis=-1):
    """Minus the cosine similarity along `axis` (-1 for identical directions), as Keras's loss."""
    y_true, y_pred = _prepare(y_true, y_pred)
    return -jnp.sum(_l2_normalize(y_true, axis) * _l2_normalize(y_pred, axis), axis=axis)


def huber(y_true, y_pred, delta=1.0):
    """Huber loss averaged over the last axis."""
    y_true, y_pred = _prepare(y_true, y_pred)
    delta = jnp.asarray(delta, y_pred.dtype)
    error = y_pred - y_true
    abs_error = jnp.abs(error)
    half = jnp.asarray(0.5, y_pred.dtype)
    return jnp.mean(
        jnp.where(abs_error <= delta, half * jnp.square(error), delta * abs_error - half * jnp.square(delta)), axis=-1
    )


def log_cosh(y_true, y_pred):
    """`mean(log(cosh(y_pred - y_true)))` over the last axis, computed stably as Keras does."""
    y_true, y_pred = _prepare(y_true, y_pred)
    x = y_pred - y_true
    return jnp.mean(x + jax.nn.softplus(x * -2.0) - jnp.asarray(math.log(2.0), y_pred.dtype), axis=-1)


# ------------------------------------------------------------------------------------------------ hinge
def _hinge_labels(y_true):
    # Keras converts {0, 1} labels to {-1, 1} only when every label is 0 or 1.
    is_binary = jnp.all((y_true == 0) | (y_true == 1))
    return jnp.where(is_binary, 2.0 * y_true - 1.0, y_true)


def hinge(y_true, y_pred):
    """`mean(max(1 - y_true * y_pred, 0))` over the last axis; labels in {-1, 1}, or all in {0, 1} (converted)."""
    y_true, y_pred = _prepare(y_true, y_pred)
    return jnp.mean(jnp.maximum(1.0 - _hinge_labels(y_true) * y_pred, 0.0), axis=-1)


def squared_hinge(y_true, y_pred):
    """`mean(max(1 - y_true * y_pred, 0)^2)` over the last axis, labels as in `hinge`."""
    y_true, y_pred = _prepare(y_true, y_pred)
    return jnp.mean(jnp.square(jnp.maximum(1.0 - _hinge_labels(y_true) * y_pred, 0.0)), axis=-1)


def categorical_hinge(y_true, y_pred):
    """`max(max((1 - y_true) * y_pred) - sum(y_true * y_pred) + 1, 0)` over the last axis (one-hot labels)."""
    y_true, y_pred = _prepare(y_true, y_pred)
    pos = jnp.sum(y_true * y_pred, axis=-1)
    neg = jnp.max((1.0 - y_true) * y_pred, axis=-1)
    return jnp.maximum(neg - pos + 1.0, jnp.zeros((), y_pred.dtype))


# ------------------------------------------------------------------------------------------------ segmentation, sequences
def dice(y_true, y_pred, axis=None):
    """`1 - 2 * sum(y_true * y_pred) / (sum(y_true) + sum(y_pred) + eps)` over `axis` (None: the whole batch, a scalar)."""
    y_true, y_pred = _prepare(y_true, y_pred)
    intersection = jnp.sum(y_true * y_pred, axis=axis)
    return 1 - (2.0 * intersection) / (jnp.sum(y_true, axis=axis) + jnp.sum(y_pred, axis=axis) + EPSILON)


def tversky(y_true, y_pred, alpha=0.5, beta=0.5, axis=None):
    """`1 - TP / (TP + alpha * FP + beta * FN + eps)` over `axis` (None: the whole batch), Keras's argument order."""
    y_true, y_pred = _prepare(y_true, y_pred)
    intersection = jnp.sum(y_true * y_pred, axis=axis)
    fp = jnp.sum((1 - y_pred) * y_true, axis=axis)
    fn = jnp.sum(y_pred * (1 - y_true), axis=axis)
    return 1 - intersection / (intersection + fp * alpha + fn * beta + EPSILON)


def ctc(y_true, y_pred):
    """Connectionist temporal classification loss, as Keras's `ctc` (blank and padding label 0, logits in).

    Args:
      y_true: integer labels, shape `(B, max_label_length)`, padded with 0 at the end.
      y_pred: logits, shape `(B, T, num_classes)`; class 0 is the blank.

    Returns:
      Per-sequence losses, shape `(B,)`.

    Raises:
      ValueError: for labels that are not rank 2 or logits that are not rank 3.
    """
    y_true, y_pred = jnp.asarray(y_true), at_least_f32(y_pred)
    if y_true.ndim != 2:
        raise ValueError(f"ctc: `y_true` must have shape (batch_size, max_length) of integers; got shape {y_true.shape}")
    if y_pred.ndim != 3:
        raise ValueError(f"ctc: `y_pred` must have shape (batch_size, max_length, num_classes); got shape {y_pred.shape}")
    labels = y_true.astype(jnp.int32)
    label_length = jnp.sum(labels != 0, axis=-1)
    label_paddings = (jnp.arange(labels.shape[1])[None, :] >= label_length[:, None]).astype(y_pred.dtype)
    logit_paddings = jnp.zeros(y_pred.shape[:2], y_pred.dtype)
    return optax.ctc_loss(y_pred, logit_paddings, labels, label_paddings, blank_id=0, log_epsilon=-1e5)


# ------------------------------------------------------------------------------------------------ reduction
def _check_reduction(reduction):
    if reduction not in REDUCTIONS:
        raise ValueError(f"loss: `reduction` must be one of {list(REDUCTIONS)}; got {reduction!r}")
    return reduction


def _mask_weights(sample_weight, mask, dtype, reduction):
    """Keras's `apply_mask`: a mask becomes weights `total / valid` (mean reductions) or 0/1."""
    if mask is None:
        return sample_weight
    if reduction in ("mean", "sum_over_batch_size"):
        total = jnp.asarray(mask.size, dtype)
        valid = jnp.sum(mask.astype(dtype))
        float_mask = jnp.where(mask, jnp.where(valid > 0, total / jnp.where(valid > 0, valid, 1), 0), 0).astype(dtype)
    else:
        float_mask = mask.astype(dtype)
    if sample_weight is None:
        return float_mask
    float_mask, sample_weight = squeeze_or_expand_to_same_rank(float_mask, jnp.asarray(sample_weight, dtype))
    return sample_weight * float_mask


def _broadcast_weights(values, sample_weight):
    """`values * sample_weight` with Keras's rank matching; weights of shape `(B,)` broadcast over trailing axes."""
    sample_weight = jnp.asarray(sample_weight, values.dtype)
    values, sample_weight = squeeze_or_expand_to_same_rank(values, sample_weight)
    if sample_weight.ndim < values.ndim and sample_weight.shape == values.shape[: sample_weight.ndim]:
        sample_weight = jnp.reshape(sample_weight, sample_weight.shape + (1,) * (values.ndim - sample_weight.ndim))
    return values, sample_weight


def reduce_loss(per_element, sample_weight=None, reduction: str | None = "sum_over_batch_size", mask=None):
    """Reduces per-element losses to a scalar as Keras's `Loss` does.

    Args:
      per_element: losses of shape `(B, ...)`.
      sample_weight: None or weights of shape `(B,)` (broadcast over the rest)
        or of `per_element`'s shape. Deliberate difference: Keras multiplies
        `(B,)` weights into `(B, T)` losses by trailing-axis broadcasting (an
        error, or a wrong pairing when `T == B`); nnjax pairs them by the
        leading (batch) axis. Equal-rank weights are Keras's exactly.
      reduction: "sum_over_batch_size" (Keras's default) and "mean": the weighted
        sum divided by the number of elements; "sum": the weighted sum;
        "mean_with_sample_weight": divided by the sum of the weights; "none" or
        None: the weighted per-element losses.
      mask: None or a boolean array of `per_element`'s shape; masked-out elements
        count neither in the sum nor in the element count (Keras's masking).

    Returns:
      A float32 scalar (or the weighted losses for "none").

    Raises:
      ValueError: for an unknown reduction.
    """
    _check_reduction(reduction)
    values = at_least_f32(per_element)
    sample_weight = _mask_weights(sample_weight, None if mask is None else jnp.asarray(mask, bool), values.dtype, reduction)
    if sample_weight is not None:
        values, sample_weight = _broadcast_weights(values, sample_weight)
        values = values * sample_weight
    if reduction in (None, "none") or values.shape in ((), (0,)):
        return values
    loss = jnp.sum(values)
    if reduction == "sum":
        return loss
    if reduction == "mean_with_sample_weight" and sample_weight is not None:
        divisor = jnp.sum(sample_weight).astype(loss.dtype)
    else:
        divisor = jnp.asarray(values.size, loss.dtype)
    return jnp.where(divisor != 0, loss / jnp.where(divisor != 0, divisor, 1), 0.0)


def class_weight_to_sample_weight(y, class_weight, sample_weight=None):
    """Keras's `fit(class_weight=...)`: per-sample weights `class_weight.get(label, 1.0)`, on the host.

    Labels are `argmax` over a last axis larger than 1 (one-hot), otherwise the
    (squeezed) values rounded to integers, as Keras's
    `class_weight_to_sample_weights`. The weights then act as `sample_weight`
    on the loss and on `weighted_metrics` only.

    Args:
      y: labels, shape `(B,)`, `(B, 1)` or `(B, C)` (NumPy or JAX).
      class_weight: a mapping from class id to weight.
      sample_weight: must be None: Keras refuses both together.

    Returns:
      float32 NumPy array of shape `(B,)`.

    Raises:
      ValueError: when `sample_weight` is also given, or `class_weight` is not a mapping.
    """
    import numpy as np

    if sample_weight is not None:
        raise ValueError("fit: `class_weight` and `sample_weight` cannot be given together (as in Keras); pass one of them")
    if not hasattr(class_weight, "get"):
        raise ValueError(f"fit: `class_weight` must be a dict from class id to weight; got {class_weight!r}")
    labels = np.asarray(y)
    if labels.ndim > 1:
        labels = np.argmax(labels, axis=-1) if labels.shape[-1] != 1 else np.squeeze(labels, axis=-1)
    labels = np.round(labels).astype(np.int32)
    return np.array([class_weight.get(int(label), 1.0) for label in labels.reshape(-1)], np.float32)


# ------------------------------------------------------------------------------------------------ Loss objects
_MIXED_POLICIES = {"mixed_float16": "float16", "mixed_bfloat16": "bfloat16"}


def _compute_dtype(dtype):
    """Keras's `dtype_policies.get(dtype).compute_dtype` for a dtype name or a mixed policy name."""
    if dtype is None:
        return jnp.float32
    name = getattr(dtype, "compute_dtype", None) or _MIXED_POLICIES.get(dtype, dtype)
    try:
        return jnp.dtype(name)
    except TypeError:
        raise ValueError(
            f"Loss: `dtype` must be None, a float dtype name ('float32') or a mixed policy name "
            f"({sorted(_MIXED_POLICIES)}); got {dtype!r}"
        ) from None


def _auto_name(class_name: str) -> str:
    """Keras's loss name for a class: `MyLoss` -> "my_loss" (its `to_snake_case`, without the uniquifying suffix)."""
    name = re.sub(r"\W+", "", class_name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


class Loss:
    """A named loss, called as Keras's: `loss(y_true, y_pred, sample_weight=None) -> scalar`.

    Subclass it as Keras's `keras.losses.Loss`: implement `call(y_true, y_pred)`
    returning per-element losses; `__call__` casts both to the loss's dtype,
    calls `call` and reduces as `reduction` says, with sample weights and masks
    (Keras's `Loss.__call__`). `compile(loss=MyLoss())` accepts the instance.

    Example:
      >>> import jax.numpy as jnp
      >>> import nnjax as nj
      >>> class MyMeanAbsolute(nj.losses.Loss):
      ...     def call(self, y_true, y_pred):
      ...         return jnp.mean(jnp.abs(y_pred - y_true), axis=-1)
      >>> loss = MyMeanAbsolute(reduction="sum")
      >>> float(loss(jnp.zeros((2, 3)), jnp.ones((2, 3)), sample_weight=jnp.array([1.0, 0.5])))
      1.5
      >>> loss.name, loss.get_config()
      ('my_mean_absolute', {'name': 'my_mean_absolute', 'reduction': 'sum'})

    Args:
      name: the loss's name (a subclass defaults to its class name in snake case).
      reduction: one of `REDUCTIONS` (Keras's default "sum_over_batch_size").
      dtype: the dtype `y_true` and `y_pred` are cast to before `call` (None:
        float32); a mixed policy name uses its compute dtype.
      fn: (built-in losses) the pure per-element loss `(y_true, y_pred) -> losses`;
        defaults to the subclass's `call`.
      sparse_labels: True when `y_true` holds integer class ids, so nnjax checks
        them on the host against the model's number of outputs.
      kind: "sparse", "categorical", "binary" or "regression"; what the labels are.
      mask_fn: None or `(y_true, y_pred) -> bool mask` of the per-element
        losses' shape; masked-out elements are left out of the reduction
        (`SparseCategoricalCrossentropy(ignore_class=...)`).

    Raises:
      ValueError: for an unknown reduction or dtype.
      TypeError: for a `Loss` with neither `fn` nor a `call` method.
    """

    def __init__(
        self,
        name: str | None = None,
        reduction: str | None = "sum_over_batch_size",
        dtype=None,
        *,
        fn: Callable | None = None,
        sparse_labels: bool = False,
        kind: str = "regression",
        mask_fn: Callable | None = None,
    ):
        self._subclassed = fn is None
        if fn is None and type(self).call is Loss.call:
            raise TypeError(
                "Loss: pass `fn` (a function (y_true, y_pred) -> losses) or subclass Loss and implement "
                f"`call(self, y_true, y_pred)`; {type(self).__name__} has neither"
            )
        self.name = name or _auto_name(type(self).__name__)
        self.reduction = _check_reduction(reduction)
        self.dtype = _compute_dtype(dtype)
        self.fn = self.call if fn is None else fn
        self.sparse_labels = sparse_labels
        self.kind = kind
        self.mask_fn = mask_fn
        # Keras's serialized form `{"module", "class_name", "config", ...}` when a Keras-named constructor made it.
        self.serialized: dict | None = None

    def call(self, y_true, y_pred):
        """The per-element losses; subclasses implement it (Keras's `Loss.call`)."""
        raise NotImplementedError(f"{type(self).__name__}: a Loss subclass must implement call(y_true, y_pred)")

    def per_element(self, y_true, y_pred):
        """The unreduced losses. Built-in losses first match the ranks of `y_true` and `y_pred` (Keras's
        `LossFunctionWrapper`); a subclass's `call` gets both cast to `dtype`, as Keras's `Loss.__call__`."""
        if self._subclassed:
            cast = functools.partial(jnp.asarray, dtype=self.dtype)
            return self.fn(jax.tree.map(cast, y_true), jax.tree.map(cast, y_pred))
        if hasattr(y_true, "shape") and hasattr(y_pred, "shape"):
            y_true, y_pred = squeeze_or_expand_to_same_rank(y_true, y_pred)
        return self.fn(y_true, y_pred)

    def __call__(self, y_true, y_pred, sample_weight=None, mask=None):
        """The reduced loss. `mask` (booleans of the per-element losses' shape, e.g. the `(batch, timesteps)`
        mask a model output carries from `Embedding(mask_zero=True)`) leaves masked elements out, as
        Keras's mask on `y_pred` does; it is AND-ed with the loss's own mask (`ignore_class`)."""
        own = self.mask_fn(y_true, y_pred) if self.mask_fn is not None else None
        if mask is not None:
            mask = jnp.asarray(mask, bool)
            own = mask if own is None else own & mask
        return reduce_loss(self.per_element(y_true, y_pred), sample_weight, self.reduction, own)

    def get_config(self) -> dict:
        """Keras's `Loss.get_config`: `{"name": ..., "reduction": ...}`; subclasses add their own arguments. A loss a
        Keras-named constructor made returns all the constructor's arguments (`{"from_logits": True, ...}`)."""
        if self.serialized is not None:
            return dict(self.serialized["config"])
        return {"name": self.name, "reduction": self.reduction}

    @classmethod
    def from_config(cls, config: dict):
        """`cls(**config)`, as Keras's."""
        return cls(**config)

    def _key(self):
        return (type(self), self.name, self.fn, self.sparse_labels, self.kind, self.reduction, self.mask_fn, self.dtype)

    # Built-in losses compare by value (compiling twice with loss="mse" reuses the compiled step); a subclass
    # instance may hold mutable state of its own, so it compares by identity.
    def __eq__(self, other):
        if self._subclassed or not isinstance(other, Loss) or other._subclassed:
            return self is other
        return self._key() == other._key()

    def __hash__(self):
        return id(self) if self._subclassed else hash(self._key())

    def __repr__(self):
        return f"<{type(self).__name__} name={self.name!r} reduction={self.reduction!r}>"


_KINDS = {
    "sparse_categorical_crossentropy": (sparse_categorical_crossentropy, True, "sparse"),
    "categorical_crossentropy": (categorical_crossentropy, False, "categorical"),
    "categorical_focal_crossentropy": (categorical_focal_crossentropy, False, "categorical"),
    "categorical_hinge": (categorical_hinge, False, "categorical"),
    "binary_crossentropy": (binary_crossentropy, False, "binary"),
    "binary_focal_crossentropy": (binary_focal_crossentropy, False, "binary"),
    "hinge": (hinge, False, "binary"),
    "squared_hinge": (squared_hinge, False, "binary"),
    "dice": (dice, False, "binary"),
    "tversky": (tversky, False, "binary"),
    "mean_squared_error": (mean_squared_error, False, "regression"),
    "mean_absolute_error": (mean_absolute_error, False, "regression"),
    "mean_absolute_percentage_error": (mean_absolute_percentage_error, False, "regression"),
    "mean_squared_logarithmic_error": (mean_squared_logarithmic_error, False, "regression"),
    "cosine_similarity": (cosine_similarity, False, "regression"),
    "huber": (huber, False, "regression"),
    "log_cosh": (log_cosh, False, "regression"),
    "kl_divergence": (kl_divergence, False, "regression"),
    "poisson": (poisson, False, "regression"),
    "ctc": (ctc, False, "sequence"),
}
ALIASES = {
    "mse": "mean_squared_error",
    "mae": "mean_absolute_error",
    "mape": "mean_absolute_percentage_error",
    "msle": "mean_squared_logarithmic_error",
    "kld": "kl_divergence",
    "bce": "binary_crossentropy",
    "huber_loss": "huber",
    "logcosh": "log_cosh",
}
LOSSES = sorted(list(_KINDS) + list(ALIASES))


def _make(name: str, reduction="sum_over_batch_size", display_name: str | None = None, mask_fn=None, **kwargs) -> Loss:
    fn, sparse, kind = _KINDS[name]
    if kwargs:
        base = fn

        def fn(y_true, y_pred):
            return base(y_true, y_pred, **kwargs)

    return Loss(display_name or name, reduction, fn=fn, sparse_labels=sparse, kind=kind, mask_fn=mask_fn)


def _check_dtype(where: str, dtype) -> None:
    if dtype not in (None, "float32", jnp.float32):
        raise ValueError(f"{where}: only dtype=None or 'float32' is supported; got {dtype!r}")


def SparseCategoricalCrossentropy(  # noqa: N802 - Keras name
    from_logits: bool = False,
    ignore_class: int | None = None,
    reduction: str | None = "sum_over_batch_size",
    axis: int = -1,
    name: str = "sparse_categorical_crossentropy",
    dtype=None,
) -> Loss:
    """Keras's `SparseCategoricalCrossentropy`; `ignore_class` labels are masked out of the reduction."""
    _check_dtype("SparseCategoricalCrossentropy", dtype)
    kwargs = {"axis": axis}
    if from_logits:
        kwargs["from_logits"] = True
    if ignore_class is not None:
        kwargs["ignore_class"] = ignore_class
    mask_fn = None
    if ignore_class is not None:

        def mask_fn(y_true, y_pred):
            labels = jnp.asarray(y_true)
            if labels.ndim == jnp.ndim(y_pred) and labels.shape[-1] == 1:
                labels = jnp.squeeze(labels, -1)
            return labels != ignore_class

    return _make("sparse_categorical_crossentropy", reduction, name, mask_fn, **kwargs)


def CategoricalCrossentropy(  # noqa: N802
    from_logits=False, label_smoothing=0.0, axis=-1, reduction="sum_over_batch_size", name="categorical_crossentropy", dtype=None
) -> Loss:
    """Keras's `CategoricalCrossentropy` loss object."""
    _check_dtype("CategoricalCrossentropy", dtype)
    return _make("categorical_crossentropy", reduction, name, from_logits=from_logits, label_smoothing=label_smoothing, axis=axis)


def BinaryCrossentropy(  # noqa: N802
    from_logits=False, label_smoothing=0.0, axis=-1, reduction="sum_over_batch_size", name="binary_crossentropy", dtype=None
) -> Loss:
    """Keras's `BinaryCrossentropy` loss object."""
    _check_dtype("BinaryCrossentropy", dtype)
    return _make("binary_crossentropy", reduction, name, from_logits=from_logits, label_smoothing=label_smoothing, axis=axis)


def BinaryFocalCrossentropy(  # noqa: N802
    apply_class_balancing=False,
    alpha=0.25,
    gamma=2.0,
    from_logits=False,
    label_smoothing=0.0,
    axis=-1,
    reduction="sum_over_batch_size",
    name="binary_focal_crossentropy",
    dtype=None,
) -> Loss:
    """Keras's `BinaryFocalCrossentropy` loss object."""
    _check_dtype("BinaryFocalCrossentropy", dtype)
    return _make(
        "binary_focal_crossentropy",
        reduction,
        name,
        apply_class_balancing=apply_class_balancing,
        alpha=alpha,
        gamma=gamma,
        from_logits=from_logits,
        label_smoothing=label_smoothing,
        axis=axis,
    )


def CategoricalFocalCrossentropy(  # noqa: N802
    alpha=0.25,
    gamma=2.0,
    from_logits=False,
    label_smoothing=0.0,
    axis=-1,
    reduction="sum_over_batch_size",
    name="categorical_focal_crossentropy",
    dtype=None,
) -> Loss:
    """Keras's `CategoricalFocalCrossentropy` loss object."""
    _check_dtype("CategoricalFocalCrossentropy", dtype)
    return _make(
        "categorical_focal_crossentropy",
        reduction,
        name,
        alpha=alpha,
        gamma=gamma,
        from_logits=from_logits,
        label_smoothing=label_smoothing,
        axis=axis,
    )


def _simple(canonical: str, class_name: str, doc: str) -> Callable[..., Loss]:
    def constructor(reduction="sum_over_batch_size", name=canonical, dtype=None) -> Loss:
        _check_dtype(class_name, dtype)
        return _make(canonical, reduction, name)

    constructor.__name__ = constructor.__qualname__ = class_name
    constructor.__doc__ = doc
    return constructor


MeanSquaredError = _simple("mean_squared_error", "MeanSquaredError", "Keras's `MeanSquaredError` loss object.")
MeanAbsoluteError = _simple("mean_absolute_error", "MeanAbsoluteError", "Keras's `MeanAbsoluteError` loss object.")
MeanAbsolutePercentageError = _simple(
    "mean_absolute_percentage_error", "MeanAbsolutePercentageError", "Keras's `MeanAbsolutePercentageError` loss object."
)
MeanSquaredLogarithmicError = _simple(
    "mean_squared_logarithmic_error", "MeanSquaredLogarithmicError", "Keras's `MeanSquaredLogarithmicError` loss object."
)
LogCosh = _simple("log_cosh", "LogCosh", "Keras's `LogCosh` loss object.")
Hinge = _simple("hinge", "Hinge", "Keras's `Hinge` loss object.")
SquaredHinge = _simple("squared_hinge", "SquaredHinge", "Keras's `SquaredHinge` loss object.")
CategoricalHinge = _simple("categorical_hinge", "CategoricalHinge", "Keras's `CategoricalHinge` loss object.")
KLDivergence = _simple("kl_divergence", "KLDivergence", "Keras's `KLDivergence` loss object.")
Poisson = _simple("poisson", "Poisson", "Keras's `Poisson` loss object.")
CTC = _simple("ctc", "CTC", "Keras's `CTC` loss object (labels padded with 0, logits in).")


def Huber(delta: float = 1.0, reduction="sum_over_batch_size", name="huber_loss", dtype=None) -> Loss:  # noqa: N802
    """Keras's `Huber` loss object."""
    _check_dtype("Huber", dtype)
    return _make("huber", reduction, name, delta=delta)


def CosineSimilarity(axis=-1, reduction="sum_over_batch_size", name="cosine_similarity", dtype=None) -> Loss:  # noqa: N802
    """Keras's `CosineSimilarity` loss object (minus the cosine similarity)."""
    _check_dtype("CosineSimilarity", dtype)
    return _make("cosine_similarity", reduction, name, axis=axis)


def Dice(reduction="sum_over_batch_size", name="dice", axis=None, dtype=None) -> Loss:  # noqa: N802
    """Keras's `Dice` loss object (`axis=None`: one value for the whole batch)."""
    _check_dtype("Dice", dtype)
    return _make("dice", reduction, name, axis=axis)


def Tversky(alpha=0.5, beta=0.5, reduction="sum_over_batch_size", name="tversky", axis=None, dtype=None) -> Loss:  # noqa: N802
    """Keras's `Tversky` loss object."""
    _check_dtype("Tversky", dtype)
    return _make("tversky", reduction, name, alpha=alpha, beta=beta, axis=axis)


def _recording(class_name: str, constructor: Callable[..., Loss]) -> Callable[..., Loss]:
    """`constructor`, whose results carry Keras's serialized form of the call (for saving a compiled model)."""
    signature = inspect.signature(constructor)

    @functools.wraps(constructor)
    def keras_class(*args, **kwargs) -> Loss:
        loss = constructor(*args, **kwargs)
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        config = {k: v for k, v in bound.arguments.items() if k != "dtype"}
        loss.serialized = {"module": "keras.losses", "class_name": class_name, "config": config, "registered_name": None}
        return loss

    return keras_class


# Keras class name -> constructor, for every loss name.
CLASSES = {
    "BinaryCrossentropy": BinaryCrossentropy,
    "BinaryFocalCrossentropy": BinaryFocalCrossentropy,
    "CTC": CTC,
    "CategoricalCrossentropy": CategoricalCrossentropy,
    "CategoricalFocalCrossentropy": CategoricalFocalCrossentropy,
    "CategoricalHinge": CategoricalHinge,
    "CosineSimilarity": CosineSimilarity,
    "Dice": Dice,
    "Hinge": Hinge,
    "Huber": Huber,
    "KLDivergence": KLDivergence,
    "LogCosh": LogCosh,
    "MeanAbsoluteError": MeanAbsoluteError,
    "MeanAbsolutePercentageError": MeanAbsolutePercentageError,
    "MeanSquaredError": MeanSquaredError,
    "MeanSquaredLogarithmicError": MeanSquaredLogarithmicError,
    "Poisson": Poisson,
    "SparseCategoricalCrossentropy": SparseCategoricalCrossentropy,
    "SquaredHinge": SquaredHinge,
    "Tversky": Tversky,
}
for _class_name, _constructor in list(CLASSES.items()):
    CLASSES[_class_name] = globals()[_class_name] = _recording(_class_name, _constructor)
del _class_name, _constructor


# optax (and Flax) name a loss's arguments; nnjax calls `fn(y_true, y_pred)`.
PREDICTION_NAMES = frozenset(
    {"logits", "predictions", "log_predictions", "predictor_outputs", "scores", "preds", "y_pred", "outputs", "output"}
)
TARGET_NAMES = frozenset({"labels", "targets", "log_targets", "label", "target", "y_true", "y"})


def _argument_order(fn) -> str | None:
    """'prediction_first', 'target_first' or None (unnamed: Keras's `(y_true, y_pred)` is assumed).

    Raises:
      ValueError: when the first two arguments' names say predictions and
        targets but not which is which (both of one kind, or one of them unknown).
    """
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return None
    positional = [p.name for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)][:2]
    if len(positional) < 2:
        return None
    first, second = positional
    if first in PREDICTION_NAMES and second in TARGET_NAMES:
        return "prediction_first"
    if first in TARGET_NAMES and second in PREDICTION_NAMES:
        return "target_first"
    named = [n for n in positional if n in PREDICTION_NAMES | TARGET_NAMES]
    if named:
        raise ValueError(
            f"compile(loss=...): cannot tell the argument order of {getattr(fn, '__name__', fn)!r} from its arguments "
            f"({first!r}, {second!r}); nnjax calls a loss as loss(y_true, y_pred) (Keras's order). Pass a function "
            "with that order, e.g. `lambda y_true, y_pred: my_loss(y_pred, y_true)`."
        )
    return None


def _prediction_first(fn):
    """Adapts an optax-style `fn(predictions, targets)` to nnjax's `(y_true, y_pred)`."""

    @functools.wraps(fn)
    def keras_order(y_true, y_pred):
        return fn(y_pred, y_true)

    return keras_order


def get(identifier) -> Loss:
    """Resolves a loss name (function or Keras class name), a `Loss`, or a callable `(y_true, y_pred) -> losses`.

    A callable whose first two arguments are named as optax names them
    (`logits`/`predictions`/`log_predictions`/`scores`, then `labels`/`targets`)
    is called in its own order, `fn(y_pred, y_true)`; names in Keras's order
    (`y_true, y_pred`) or unnamed ones are called `fn(y_true, y_pred)`. The
    per-element losses are reduced with Keras's default, "sum_over_batch_size"
    (the mean over all elements). Example:
    `compile(loss=optax.sigmoid_binary_cross_entropy)` on a logits output.

    Raises:
      ValueError: for an unknown name (the message lists the valid names), or a
        callable whose argument names leave the order ambiguous.
      TypeError: for anything else.
    """
    if isinstance(identifier, Loss):
        return identifier
    if isinstance(identifier, str):
        if identifier in CLASSES:
            return CLASSES[identifier]()
        name = ALIASES.get(identifier.lower(), identifier.lower())
        if name in _KINDS:
            return _make(name)
        raise ValueError(
            f"compile(loss=...): unknown loss {identifier!r}; expected one of {LOSSES}, {sorted(CLASSES)} or a callable"
        )
    if callable(identifier):
        name = getattr(identifier, "__name__", "loss")
        order = _argument_order(identifier)
        if order == "prediction_first":
            return Loss(name=name, fn=_prediction_first(identifier))
        return Loss(name=name, fn=identifier)
    raise TypeError(f"compile(loss=...): expected a loss name or a callable (y_true, y_pred); got {identifier!r}")


__all__ = [
    "ALIASES",
    "CLASSES",
    "CTC",
    "LOSSES",
    "REDUCTIONS",
    "BinaryCrossentropy",
    "BinaryFocalCrossentropy",
    "CategoricalCrossentropy",
    "CategoricalFocalCrossentropy",
    "CategoricalHinge",
    "CosineSimilarity",
    "Dice",
    "Hinge",
    "Huber",
    "KLDivergence",
    "LogCosh",
    "Loss",
    "MeanAbsoluteError",
    "MeanAbsolutePercentageError",
    "MeanSquaredError",
    "MeanSquaredLogarithmicError",
    "Poisson",
    "SparseCategoricalCrossentropy",
    "SquaredHinge",
    "Tversky",
    "binary_crossentropy",
    "binary_focal_crossentropy",
    "categorical_crossentropy",
    "categorical_focal_crossentropy",
    "categorical_hinge",
    "class_weight_to_sample_weight",
    "cosine_similarity",
    "ctc",
    "dice",
    "get",
    "hinge",
    "huber",
    "kl_divergence",
    "log_cosh",
    "mean_absolute_error",
    "mean_absolute_percentage_error",
    "mean_squared_error",
    "mean_squared_logarithmic_error",
    "poisson",
    "reduce_loss",
    "sparse_categorical_crossentropy",
    "squared_hinge",
    "tversky",
]
