"""Grouping batches into compiled executions, and prefetching them to the device.

`fit` runs `steps_per_execution` steps per dispatch; `group_executions` forms
those groups from a batch stream and `prefetch_to_device` stacks and places
the next groups on a background thread while the current one trains (double
buffering), with whatever placement the caller passes (`jax.device_put`, or a
distribution's `place_batches` for data-parallel sharding).
"""

from __future__ import annotations

import itertools
import queue
import threading
from collections.abc import Callable, Iterable, Iterator

import jax


def batch_size_of(batch: tuple) -> int:
    """The leading dimension of a batch's `x`."""
    return int(jax.tree.leaves(batch[0])[0].shape[0])


def group_executions(batches: Iterable[tuple], steps_per_execution, max_steps: int | None = None) -> Iterator[list[tuple]]:
    """Groups consecutive batches into lists of at most `steps_per_execution` of one batch size.

    A batch of a different size (the short last batch) starts a group of its
    own, so every group stacks into one array per leaf.

    Args:
      batches: an iterable of `(x, y, sample_weight)` batches.
      steps_per_execution: the largest group: an int, or an iterator of ints giving each group's
        size in turn (the auto policy's measurement plan).
      max_steps: take at most this many batches (None: all). No batch beyond it
        is pulled from `batches` (a one-pass generator keeps the rest).

    Yields:
      Lists of batches.
    """
    if isinstance(steps_per_execution, int):
        if steps_per_execution < 1:
            raise ValueError(f"`steps_per_execution` must be a positive int; got {steps_per_execution!r}")
        sizes = itertools.repeat(steps_per_execution)
    else:
        sizes = iter(steps_per_execution)
    iterator = iter(batches)
    group: list = []
    taken = 0
    target = next(sizes)
    while max_steps is None or taken < max_steps:
        try:
            batch = next(iterator)
        except StopIteration:
            break
        if group and batch_size_of(batch) != batch_size_of(group[0]):
            yield group
            group, target = [], next(sizes)
        group.append(batch)
        taken += 1
        if len(group) >= target:
            yield group
            group, target = [], next(sizes)
    if group:
        yield group


_DONE = object()


class prefetch_to_device:  # noqa: N801 - used like a function, as flax's prefetch_to_device
    """Applies `put` to the items of `iterable` on a background thread, `size` items ahead.

    Use as a context manager (the thread stops and is joined on exit, also on
    `break` or an exception) and iterate it. An exception raised while reading
    or placing is re-raised in the consuming thread.

    Args:
      iterable: host items (e.g. groups of batches).
      put: places one item on the device (default `jax.device_put`).
      size: items placed ahead of the one in use (2: double buffering).

    Example:
      >>> from nnjax.data.prefetch import group_executions, prefetch_to_device
      >>> ds = nj.data.Dataset(list(zip(x, y)), batch_size=32)
      >>> with prefetch_to_device(group_executions(ds.batches(0), 1), put=model.execution.place_batches) as placed:
      ...     executions = sum(1 for batch in placed)
      >>> executions
      2
    """

    def __init__(self, iterable: Iterable, put: Callable = jax.device_put, size: int = 2):
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f"prefetch_to_device: `size` must be a positive int; got {size!r}")
        self._iterable = iterable
        self._put = put
        self._queue: queue.Queue = queue.Queue(maxsize=size)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="nnjax-prefetch", daemon=True)
        self._started = False

    def _run(self) -> None:
        try:
            for item in self._iterable:
                if self._stop.is_set():
                    break
                placed = self._put(item)
                while not self._stop.is_set():
                    try:
                        self._queue.put((True, placed), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if self._stop.is_set():
                    break
        except BaseException as err:  # noqa: BLE001 - handed to the consumer
            self._offer((False, err))
            return
        finally:
            close = getattr(self._iterable, "close", None)
            if close is not None:
                close()
        self._offer((True, _DONE))

    def _offer(self, entry) -> None:
        while not self._stop.is_set():
            try:
                self._queue.put(entry, timeout=0.1)
                return
            except queue.Full:
                continue

    def __enter__(self) -> prefetch_to_device:
        if not self._started:
            self._started = True
            self._thread.start()
        return self

    def __iter__(self) -> Iterator:
        self.__enter__()
        while True:
            ok, value = self._queue.get()
            if not ok:
                raise value
            if value is _DONE:
                return
            yield value

    def close(self) -> None:
        """Stops the background thread and waits for it."""
        self._stop.set()
        if self._started:
            while self._thread.is_alive():
                try:
                    self._queue.get_nowait()
                except queue.Empty:
                    pass
                self._thread.join(timeout=0.05)

    def __exit__(self, *exc) -> None:
        self.close()


__all__ = ["batch_size_of", "group_executions", "prefetch_to_device"]
