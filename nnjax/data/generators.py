"""Python generators as batch sources for fit/evaluate/predict."""

from __future__ import annotations

import inspect
import itertools
from collections.abc import Callable, Iterator

import jax
import numpy as np

from nnjax.data.pipeline import _spec, as_example, check_consistent


class GeneratorSource:
    """Batches from a Python generator, as Keras's `fit(generator)`.

    Args:
      generator: a generator function (called with no arguments at the start of
        every epoch: restartable, so a run can resume mid-epoch by skipping the
        batches already seen) or a generator/iterator object (one pass: each
        epoch takes the next batches of the same stream). Each item is a batch
        `x`, `(x,)`, `(x, y)` or `(x, y, sample_weight)` with a leading batch axis.
      steps_per_epoch: batches per epoch; None means "until the generator is
        exhausted".

    Raises:
      TypeError: if `generator` is neither a generator function nor an iterator.
      ValueError: from `peek`/`batches` if the generator yields nothing, or a
        batch differs from the first in structure, dtype or shape.

    Example:
      >>> def batches():
      ...     for i in range(0, len(x), 64):
      ...         yield x[i:i + 64], y[i:i + 64]
      >>> history = model.fit(nj.data.from_generator(batches), epochs=2, verbose=0)
    """

    def __init__(self, generator: Callable[[], Iterator] | Iterator, steps_per_epoch: int | None = None):
        if inspect.isgeneratorfunction(generator) or (callable(generator) and not hasattr(generator, "__next__")):
            self._factory = generator
            self._stream = None
        elif hasattr(generator, "__next__"):
            self._factory = None
            self._stream = generator
        else:
            raise TypeError(
                f"from_generator: expected a generator function or an iterator yielding batches; got {type(generator).__name__}"
            )
        if steps_per_epoch is not None and (
            isinstance(steps_per_epoch, bool) or not isinstance(steps_per_epoch, int) or steps_per_epoch <= 0
        ):
            raise ValueError(f"from_generator: `steps_per_epoch` must be a positive int or None; got {steps_per_epoch!r}")
        self.steps_per_epoch = steps_per_epoch
        self._head: list = []  # batches read ahead from a one-pass stream (by peek), replayed first
        self._first_spec = None
        self._first_batch = None  # a one-pass stream's first batch, for `peek` once the stream is used up
        self.exhausted = False  # a one-pass stream ran out of batches
        self.batch_size = None

    @property
    def restartable(self) -> bool:
        """True for a generator function (each epoch starts afresh)."""
        return self._factory is not None

    def _new_stream(self) -> Iterator:
        stream = self._factory()
        if not hasattr(stream, "__next__"):
            stream = iter(stream)
        return stream

    def _checked(self, item, where: str) -> tuple:
        batch = as_example(item)
        if self._first_spec is None:
            self._first_spec = _spec(batch)
            leaves = jax.tree.leaves(batch[0])
            self.batch_size = int(np.shape(leaves[0])[0]) if leaves and np.ndim(leaves[0]) else None
        check_consistent(self._first_spec, batch, where)
        return batch

    def peek(self) -> tuple:
        """The first batch (without consuming it from a one-pass stream)."""
        if self._factory is not None:
            stream = self._new_stream()
            item = next(stream, _END)
            if hasattr(stream, "close"):
                stream.close()
        elif self._head:
            item = self._head[0]
        elif self._first_batch is not None:
            return self._first_batch
        else:
            item = next(self._stream, _END)
            if item is not _END:
                self._head.append(item)
        if item is _END:
            raise ValueError("from_generator: the generator yielded no batches; expected at least one")
        return self._checked(item, "generator batch 0")

    def batches(self, epoch: int, start_step: int = 0) -> Iterator[tuple]:
        """Yields the batches of `epoch` from `start_step` on.

        A generator function restarts every epoch and skips `start_step` batches;
        a one-pass stream continues where the previous epoch stopped (and skips
        `start_step` batches, so a resumed run must hand in a fresh stream).
        """
        if self._factory is not None:
            stream = self._new_stream()
        else:
            head, self._head = self._head, []
            stream = itertools.chain(head, self._stream)
        limit = None if self.steps_per_epoch is None else self.steps_per_epoch
        skipped = 0
        while skipped < start_step:
            if next(stream, _END) is _END:
                return
            skipped += 1
        step = start_step
        while limit is None or step < limit:
            item = next(stream, _END)
            if item is _END:
                self.exhausted = self._factory is None
                return
            batch = self._checked(item, f"generator batch {step} of epoch {epoch}")
            if self._factory is None and self._first_batch is None:
                self._first_batch = batch
            yield batch
            step += 1

    def fingerprint(self) -> dict:
        return {"steps_per_epoch": self.steps_per_epoch}


_END = object()

OUT_OF_DATA = (
    "Your input ran out of data; interrupting training. Make sure that your dataset or generator can generate at least "
    "`steps_per_epoch * epochs` batches."
)


def from_generator(generator: Callable[[], Iterator] | Iterator, steps_per_epoch: int | None = None) -> GeneratorSource:
    """Wraps a Python generator (function or object) as a batch source; see `GeneratorSource`."""
    return GeneratorSource(generator, steps_per_epoch=steps_per_epoch)


__all__ = ["OUT_OF_DATA", "GeneratorSource", "from_generator"]
