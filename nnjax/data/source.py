"""What every batch source is: the `BatchSource` protocol, the epoch plan of finite sources, and the iterator.

A source yields `(x, y, sample_weight)` batches from `batches(epoch, start_step)`;
the order of an epoch is a pure function of `(seed, epoch)`, so a position is
just `{"epoch", "step"}`. Sources (arrays, `Dataset`, generators, TFDS) depend on
this module; it depends on none of them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class BatchSource(Protocol):
    """What `fit`, `evaluate` and `predict` read: batches by epoch, resumable at any step.

    Attributes:
      steps_per_epoch: batches per epoch, or None when unknown (a stream).
      batch_size: examples per batch, or None when the source yields whole batches.

    Optional methods a source may have: `fingerprint()` (what a saved position is
    valid for), `get_state()`/`set_state()` (a position beyond `(epoch, step)`),
    `take(idx)` and `arrays` (in-memory sources, which fit can put on the device).
    """

    steps_per_epoch: int | None

    def batches(self, epoch: int, start_step: int = 0) -> Iterator[tuple]:
        """Yields `(x, y, sample_weight)` batches of `epoch` from `start_step` on."""
        ...

    def peek(self) -> tuple:
        """A first batch (for building the model and checks), without moving any position."""
        ...


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

    def iterator(self, state: dict | None = None, *, num_epochs: int | None = None) -> DataIterator:
        """An iterator over the batches of successive epochs, with `get_state`/`set_state`."""
        return DataIterator(self, state, num_epochs=num_epochs)

    def __iter__(self) -> DataIterator:
        return self.iterator(num_epochs=1)

    def __len__(self) -> int:
        return self.steps_per_epoch


class DataIterator:
    """Iterates a source's batches across epochs; its position is a small JSON-able dict.

    Args:
      source: anything with `batches(epoch, start_step)` and `steps_per_epoch`
        (`Dataset`, `ArraySource`, a restartable `GeneratorSource`).
      state: a `get_state()` dict to start from (default: epoch 0, step 0).
      num_epochs: stop after this epoch count (absolute: epochs `0..num_epochs-1`);
        None runs forever.

    `get_state()` returns `{"epoch", "step", ...}`, the position of the next
    batch; `set_state(state)` in a fresh iterator then yields exactly the
    remaining batches.

    Raises:
      ValueError: from `set_state` if the state was saved for a different
        dataset (seed, batch size, size, shuffling, process count).
    """

    def __init__(self, source, state: dict | None = None, *, num_epochs: int | None = None):
        self.source = source
        self.num_epochs = num_epochs
        self.epoch = 0
        self.step = 0
        self._batches: Iterator | None = None
        if state is not None:
            self.set_state(state)

    def __iter__(self) -> DataIterator:
        return self

    def __next__(self) -> tuple:
        while True:
            if self.num_epochs is not None and self.epoch >= self.num_epochs:
                raise StopIteration
            if self._batches is None:
                self._batches = iter(self.source.batches(self.epoch, self.step))
            try:
                batch = next(self._batches)
            except StopIteration:
                self._close()
                if self.step == 0:
                    raise ValueError(
                        f"{type(self.source).__name__}: epoch {self.epoch} yielded no batches; expected at least one"
                    ) from None
                self.epoch, self.step = self.epoch + 1, 0
                continue
            self.step += 1
            return batch

    def _close(self) -> None:
        if self._batches is not None and hasattr(self._batches, "close"):
            self._batches.close()
        self._batches = None

    def close(self) -> None:
        """Stops any reader threads (also done when the iterator is garbage-collected)."""
        self._close()

    def get_state(self) -> dict:
        """The position of the next batch: `{"epoch", "step"}` plus what the position is valid for."""
        epoch, step = self.epoch, self.step
        steps = getattr(self.source, "steps_per_epoch", None)
        if steps is not None and step >= steps:
            epoch, step = epoch + 1, 0
        fingerprint = self.source.fingerprint() if hasattr(self.source, "fingerprint") else {}
        return {"epoch": int(epoch), "step": int(step), **fingerprint}

    def set_state(self, state: dict) -> None:
        """Moves to a position from `get_state()` (also after a JSON round trip)."""
        if isinstance(state, (str, bytes)):
            state = json.loads(state)
        if not isinstance(state, dict) or "epoch" not in state or "step" not in state:
            raise ValueError(f"set_state: expected a dict with 'epoch' and 'step' (from get_state()); got {state!r}")
        mine = self.source.fingerprint() if hasattr(self.source, "fingerprint") else {}
        differ = {k: (state[k], v) for k, v in mine.items() if k in state and state[k] != v}
        if differ:
            detail = ", ".join(f"{k}: saved {saved!r}, this dataset {current!r}" for k, (saved, current) in differ.items())
            raise ValueError(f"set_state: the saved position belongs to a different dataset ({detail})")
        steps = getattr(self.source, "steps_per_epoch", None)
        epoch, step = int(state["epoch"]), int(state["step"])
        if epoch < 0 or step < 0 or (steps is not None and step > steps):
            raise ValueError(f"set_state: position epoch={epoch}, step={step} is outside the dataset ({steps} steps per epoch)")
        self._close()
        self.epoch, self.step = epoch, step

    def __del__(self):
        try:
            self._close()
        except Exception:  # noqa: BLE001 - never raise from a finaliser
            pass


__all__ = ["BatchSource", "DataIterator", "EpochPlan", "epoch_permutation"]
