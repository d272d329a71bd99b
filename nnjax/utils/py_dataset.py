"""`PyDataset`: Keras's base class for a dataset of batches by index."""

from __future__ import annotations


class PyDataset:
    """Keras's `keras.utils.PyDataset`: subclass it, define `__len__` (the number of batches) and
    `__getitem__(index)` (the batch `x`, `(x, y)` or `(x, y, sample_weight)`), optionally `on_epoch_end`.

    `fit`, `evaluate` and `predict` read batch `i` as `dataset[i]` (the batch order shuffled each
    epoch from the seed with `fit(shuffle=True)`, as Keras does) and call `on_epoch_end()` after
    each epoch. Batches are read on the calling thread: `workers`, `use_multiprocessing` and
    `max_queue_size` are accepted for Keras compatibility and kept as attributes.

    Example:
      >>> class Batches(nj.utils.PyDataset):
      ...     def __init__(self, x, y, batch_size, **kwargs):
      ...         super().__init__(**kwargs)
      ...         self.x, self.y, self.batch_size = x, y, batch_size
      ...     def __len__(self):
      ...         return -(-len(self.x) // self.batch_size)
      ...     def __getitem__(self, i):
      ...         s = slice(i * self.batch_size, (i + 1) * self.batch_size)
      ...         return self.x[s], self.y[s]
      >>> history = model.fit(Batches(x, y, 32), epochs=2, verbose=0)
    """

    def __init__(self, workers: int = 1, use_multiprocessing: bool = False, max_queue_size: int = 10):
        self.workers = workers
        self.use_multiprocessing = use_multiprocessing
        self.max_queue_size = max_queue_size

    def __getitem__(self, index: int):
        raise NotImplementedError(f"{type(self).__name__} must implement __getitem__(index) returning a batch")

    def __len__(self) -> int:
        raise NotImplementedError(f"{type(self).__name__} must implement __len__() returning the number of batches")

    @property
    def num_batches(self) -> int:
        return len(self)

    def on_epoch_end(self) -> None:
        """Called after each epoch (e.g. to reshuffle); does nothing by default."""


__all__ = ["PyDataset"]
