"""Host-side checks of user data, run before anything is traced or compiled."""

from __future__ import annotations

import jax
import numpy as np

from nnjax.layers.base import shape_str


def as_array_tree(value, name: str):
    """Converts lists and array-likes to NumPy (leaves of dicts/tuples too)."""
    if value is None:
        return None

    def convert(leaf):
        if isinstance(leaf, (np.ndarray, jax.Array)):
            return leaf
        try:
            return np.asarray(leaf)
        except Exception as err:  # noqa: BLE001 - any conversion failure is the user's input
            raise TypeError(f"`{name}` must be an array (or a pytree of arrays); got {type(leaf).__name__}: {err}") from err

    return jax.tree.map(convert, value)


def num_examples(tree, name: str) -> int:
    lengths = {int(np.shape(a)[0]) if np.ndim(a) else -1 for a in jax.tree.leaves(tree)}
    if -1 in lengths:
        raise ValueError(f"`{name}` must have a leading batch axis; received a scalar")
    if len(lengths) != 1:
        raise ValueError(f"all arrays in `{name}` must have the same number of examples; received lengths {sorted(lengths)}")
    return lengths.pop()


def check_lengths(x, y, sample_weight) -> int:
    """Raises ValueError if x, y and sample_weight disagree on the number of examples."""
    n = num_examples(x, "x")
    if n == 0:
        raise ValueError("the dataset is empty: expected at least one example in `x`; received 0 examples")
    for name, value in (("y", y), ("sample_weight", sample_weight)):
        if value is not None:
            m = num_examples(value, name)
            if m != n:
                raise ValueError(
                    f"`x` and `{name}` must have the same number of examples; received x with {n} and {name} with {m}"
                )
    return n


def check_labels(y, output_shape, loss, where: str) -> None:
    """Checks labels against the model's output on the host.

    Sparse losses: integer-valued labels in `[0, num_classes)`, where
    `num_classes = output_shape[-1]` (JAX gathers would clamp a wrong label and
    train silently). Other losses: `y.shape[1:]` compatible with the output.
    """
    if y is None or loss is None or not hasattr(y, "shape") or not hasattr(output_shape, "__len__"):
        return
    y_np = np.asarray(y)
    out = tuple(output_shape)
    if loss.sparse_labels:
        num_classes = out[-1]
        expected_label_shape = out[1:-1]
        label_shape = y_np.shape[1:]
        if label_shape not in (expected_label_shape, expected_label_shape + (1,)):
            raise ValueError(
                f"{where}: loss '{loss.name}' expects integer labels of shape {shape_str((None,) + expected_label_shape)} "
                f"for model outputs of shape {shape_str((None,) + out[1:])}; received labels of shape {shape_str(y_np.shape)}"
                + (" (one-hot labels need loss='categorical_crossentropy')" if label_shape == (num_classes,) else "")
            )
        if y_np.size == 0:
            return
        if not np.issubdtype(y_np.dtype, np.integer):
            if not np.issubdtype(y_np.dtype, np.floating) or not np.all(np.mod(y_np, 1) == 0):
                raise ValueError(
                    f"{where}: loss '{loss.name}' expects integer class ids; received labels of dtype {y_np.dtype}"
                    + ("" if not np.issubdtype(y_np.dtype, np.floating) else " with non-integer values")
                )
        low, high = y_np.min(), y_np.max()
        if low < 0 or high >= num_classes:
            bad = int(np.argmax((y_np.reshape(len(y_np), -1) < 0).any(1) | (y_np.reshape(len(y_np), -1) >= num_classes).any(1)))
            raise ValueError(
                f"{where}: labels must be in [0, {num_classes}) for a model with {num_classes} outputs; received labels "
                f"in [{low}, {high}] (first bad label at example {bad})"
            )
    elif loss.kind in ("categorical",):
        if y_np.shape[1:] != out[1:]:
            raise ValueError(
                f"{where}: loss '{loss.name}' expects one-hot labels of shape {shape_str((None,) + out[1:])}; received "
                f"labels of shape {shape_str(y_np.shape)}"
                + (" (integer labels need loss='sparse_categorical_crossentropy')" if y_np.ndim == len(out) - 1 else "")
            )


__all__ = ["as_array_tree", "check_labels", "check_lengths", "num_examples"]
