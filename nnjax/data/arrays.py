"""In-memory arrays as a deterministic, resumable batch source."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import jax
import numpy as np


def epoch_permutation(seed: int, epoch: int, num_examples: int) -> np.ndarray:
    """The example order of one epoch: a pure function of `(seed, epoch)`.

    Uses NumPy's Philox-free `default_rng([seed, epoch])` so that every data path
    (host batches, device-resident gathers, resumed runs) agrees on the order.
    """
    return np.random.default_rng([int(seed) % (2**63), int(epoch)]).permutation(num_examples)


class EpochPlan:
    """The batch plan shared by every finite source: needs `num_examples`, `batch_size`, `shuffle`,
    `seed` and `drop_remainder` attributes."""

    @property
    def steps_per_epoch(self) -> int:
        """Batches per epoch (the same on every process)."""
        full, rest = divmod(self.num_examples, self.batch_size)
        return full if (self.drop_remainder or rest == 0) else full + 1

    def order(self, epoch: int) -> np.ndarray:
        """The global example order of `epoch`: int array `(N,)`."""
        if not self.shuffle:
            return np.arange(self.num_examples)
        return epoch_permutation(self.seed, epoch, self.num_examples)

    def fingerprint(self) -> dict:
        """What a saved position is only valid for (stored in `DataIterator.get_state()`)."""
        return {
            "seed": self.seed,
            "batch_size": self.batch_size,
            "num_examples": self.num_examples,
            "shuffle": self.shuffle,
            "drop_remainder": self.drop_remainder,
        }


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

    def iterator(self, state: dict | None = None, *, num_epochs: int | None = None):
        """A `DataIterator` over successive epochs, whose position is `get_state()`/`set_state()`."""
        from nnjax.data.pipeline import DataIterator

        return DataIterator(self, state, num_epochs=num_epochs)


def split_validation(x, y, sample_weight, validation_split: float):
    """Keras's `validation_split`: the last fraction of the arrays, taken before shuffling."""
    if not 0.0 < validation_split < 1.0:
        raise ValueError(f"`validation_split` must be in (0, 1); got {validation_split!r}")
    n = int(jax.tree.leaves(x)[0].shape[0])
    n_val = int(n * validation_split)
    if n_val == 0 or n_val == n:
        raise ValueError(
            f"`validation_split`={validation_split} leaves {n - n_val} training and {n_val} validation examples "
            f"out of {n}; expected at least one of each"
        )
    cut = n - n_val

    def part(tree, sl):
        return None if tree is None else jax.tree.map(lambda a: a[sl], tree)

    train = (part(x, slice(0, cut)), part(y, slice(0, cut)), part(sample_weight, slice(0, cut)))
    val = (part(x, slice(cut, n)), part(y, slice(cut, n)), part(sample_weight, slice(cut, n)))
    return train, val


__all__ = ["ArraySource", "EpochPlan", "epoch_permutation", "split_validation"]
