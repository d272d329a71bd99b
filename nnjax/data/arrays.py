"""In-memory arrays as a deterministic, resumable batch source."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator
from typing import Any

import jax
import numpy as np

from nnjax.data.source import EpochPlan, epoch_permutation


@dataclasses.dataclass
class ArraySource(EpochPlan):
    """Batches of in-memory arrays, reshuffled each epoch from `(seed, epoch)`.

    Args:
      x: input array or pytree of arrays with a shared leading axis `N`.
      y: targets (array or pytree) with leading axis `N`, or None.
      sample_weight: weights of shape `(N,)`, or None.
      batch_size: examples per batch.
      shuffle: reshuffle every epoch.
      seed: the shuffle seed.
      drop_remainder: drop the last partial batch instead of yielding it.

    The position `(epoch, step)` is all the state there is: `batches(epoch,
    start_step)` resumes exactly where a run stopped.
    """

    x: Any
    y: Any = None
    sample_weight: Any = None
    batch_size: int = 32
    shuffle: bool = True
    seed: int = 0
    drop_remainder: bool = False

    def __post_init__(self):
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, (int, np.integer)) or self.batch_size <= 0:
            raise ValueError(f"`batch_size` must be a positive int; got {self.batch_size!r}")
        self.batch_size = int(self.batch_size)
        self.num_examples = int(jax.tree.leaves(self.x)[0].shape[0])
        if self.num_examples == 0:
            raise ValueError("the dataset is empty: expected at least one example in `x`; received 0 examples")
        if self.drop_remainder and self.batch_size > self.num_examples:
            raise ValueError(
                f"`batch_size`={self.batch_size} is larger than the dataset ({self.num_examples} examples) with "
                "drop_remainder=True: every batch would be dropped; use a smaller batch_size or drop_remainder=False"
            )

    @property
    def arrays(self) -> tuple:
        return (self.x, self.y, self.sample_weight)

    def batch_indices(self, epoch: int) -> list[np.ndarray]:
        """Index arrays of every batch of `epoch`, in order."""
        order = self.order(epoch)
        return [order[i * self.batch_size : (i + 1) * self.batch_size] for i in range(self.steps_per_epoch)]

    def take(self, idx: np.ndarray) -> tuple:
        """The batch `(x, y, sample_weight)` at indices `idx` (None parts stay None)."""
        return tuple(None if part is None else jax.tree.map(lambda a: a[idx], part) for part in self.arrays)

    def batches(self, epoch: int, start_step: int = 0) -> Iterator[tuple]:
        """Yields the batches of `epoch` from `start_step` on."""
        for idx in self.batch_indices(epoch)[start_step:]:
            yield self.take(idx)

    def peek(self) -> tuple:
        """The first `min(batch_size, N)` examples, unshuffled (for building and checks)."""
        return self.take(np.arange(min(self.batch_size, self.num_examples)))


def _is_nested_numbers(value) -> bool:
    """A (nested) Python list of numbers: one array, not a pytree of scalars."""
    if isinstance(value, (list, tuple)):
        return len(value) > 0 and all(_is_nested_numbers(v) for v in value)
    return isinstance(value, (int, float, complex, np.number, np.bool_, bool))


def as_array_tree(value, name: str):
    """Converts array-likes to NumPy: nested lists of numbers become one array; dicts/tuples/lists of arrays
    (several inputs) keep their structure with each leaf converted.

    Raises:
      TypeError: for a leaf NumPy cannot convert (ragged rows), naming `name`.
      ValueError: for a list of `(x, y)` batches, which is not an input.
    """
    if value is None:
        return None
    if _is_nested_numbers(value):
        try:
            return np.asarray(value)
        except ValueError as err:  # ragged nested lists
            raise TypeError(f"`{name}` must be an array (rows of one length); got nested lists of different lengths: {err}") from err
    if (isinstance(value, list) and len(value) > 1 and all(isinstance(v, tuple) and len(v) in (2, 3) for v in value)
            and all(hasattr(part, "shape") or _is_nested_numbers(part) for v in value for part in v[:2])):
        raise ValueError(
            f"`{name}` looks like a list of {len(value)} (x, y) batches; expected arrays. Pass the batches as a generator "
            "(fit(batches_fn)) or concatenate them into one x and one y"
        )

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


def split_validation(x, y, sample_weight, validation_split: float):
    """Keras's `validation_split`: the last fraction of the arrays, taken before shuffling."""
    if not 0.0 < validation_split < 1.0:
        raise ValueError(f"`validation_split` must be in (0, 1); got {validation_split!r}")
    n = int(jax.tree.leaves(x)[0].shape[0])
    cut = int(math.floor(n * (1.0 - validation_split)))  # Keras's split point (512 x 0.9 -> 460 training examples)
    n_val = n - cut
    if n_val == 0 or n_val == n:
        raise ValueError(
            f"`validation_split`={validation_split} leaves {n - n_val} training and {n_val} validation examples "
            f"out of {n}; expected at least one of each"
        )

    def part(tree, sl):
        return None if tree is None else jax.tree.map(lambda a: a[sl], tree)

    train = (part(x, slice(0, cut)), part(y, slice(0, cut)), part(sample_weight, slice(0, cut)))
    val = (part(x, slice(cut, n)), part(y, slice(cut, n)), part(sample_weight, slice(cut, n)))
    return train, val


__all__ = ["ArraySource", "EpochPlan", "as_array_tree", "check_lengths", "epoch_permutation", "num_examples", "split_validation"]
