"""Other libraries' loaders as batch sources: Grain, torch `DataLoader`, Keras-style `PyDataset`.

Each is taken as what it is: a loader or dataset that already yields batches
gives those batches (never batched again); one that yields single examples is
batched by nnjax (Grain datasets) or refused with the fix (loaders whose
batching belongs to them).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import jax
import numpy as np

from nnjax.data.generators import GeneratorSource
from nnjax.data.pipeline import _spec, as_example, check_consistent
from nnjax.data.source import epoch_permutation


def _mro_has(x, module_prefix: str, *names: str) -> bool:
    return any(cls.__module__.startswith(module_prefix) and cls.__name__ in names for cls in type(x).__mro__)


def is_grain_map_dataset(x) -> bool:
    return _mro_has(x, "grain.", "MapDataset")


def is_grain_iter_dataset(x) -> bool:
    return _mro_has(x, "grain.", "IterDataset")


def is_grain_data_loader(x) -> bool:
    return _mro_has(x, "grain.", "DataLoader")


def is_torch_data_loader(x) -> bool:
    return _mro_has(x, "torch.utils.data", "DataLoader")


def is_py_dataset(x) -> bool:
    """A Keras `PyDataset` (or `keras.utils.Sequence`) or an `nj.utils.PyDataset`: `len()` batches, `[i]` a batch."""
    return any(cls.__name__ in ("PyDataset", "Sequence") and cls.__module__.startswith(("keras", "nnjax"))
               for cls in type(x).__mro__)


def is_loader(x) -> bool:
    """Whether `adapt` reads `x` with this module (any of the kinds above)."""
    return (is_grain_map_dataset(x) or is_grain_iter_dataset(x) or is_grain_data_loader(x) or is_torch_data_loader(x)
            or is_py_dataset(x))


def grain_is_batched(dataset) -> bool:
    """Whether a Grain `MapDataset`/`IterDataset` has a `.batch(...)` anywhere in its lineage."""
    pending, seen = [dataset], set()
    while pending:
        node = pending.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if "Batch" in type(node).__name__:
            return True
        pending.extend(getattr(node, "parents", ()) or ())
    return False


def _to_numpy(tree):
    """Torch tensors (and anything with `__array__`) as NumPy arrays; other leaves unchanged."""

    def leaf(value):
        if type(value).__module__.startswith("torch"):
            return value.detach().cpu().numpy()
        return value

    return jax.tree.map(leaf, tree)


class BatchSequence:
    """A source over random-access *batches*: `len(data)` batches, `data[i]` the i-th (a Keras `PyDataset`, a
    batched Grain `MapDataset`).

    Args:
      data: `len()` and `[i]`, each item a batch `x`, `(x, y)` or `(x, y, sample_weight)` with a leading batch axis.
      shuffle: visit the batches of each epoch in the order `epoch_permutation(seed, epoch, len(data))`
        (Keras shuffles a `PyDataset`'s batch order the same way); the examples within a batch stay together.
      seed: the order's seed.
      name: for error messages.

    `data.on_epoch_end()`, where present, is called after each epoch (Keras's `PyDataset` hook).
    """

    batch_size = None

    def __init__(self, data, *, shuffle: bool = False, seed: int = 0, name: str | None = None):
        self.data = data
        self.shuffle = bool(shuffle)
        self.seed = int(seed)
        self.name = name or type(data).__name__
        self.steps_per_epoch = int(len(data))
        if self.steps_per_epoch == 0:
            raise ValueError(f"{self.name}: expected at least one batch; len() is 0")
        self._first_spec = None

    def _batch(self, index: int, where: str) -> tuple:
        batch = as_example(_to_numpy(self.data[int(index)]))
        if self._first_spec is None:
            self._first_spec = _spec(batch)
        check_consistent(self._first_spec, batch, where)
        return batch

    def peek(self) -> tuple:
        return self._batch(0, f"{self.name} batch 0")

    def batches(self, epoch: int, start_step: int = 0) -> Iterator[tuple]:
        order = epoch_permutation(self.seed, epoch, self.steps_per_epoch) if self.shuffle else np.arange(self.steps_per_epoch)
        last = self.steps_per_epoch - 1
        for step in range(start_step, self.steps_per_epoch):
            batch = self._batch(order[step], f"{self.name} batch {step} of epoch {epoch}")
            try:
                yield batch
            finally:  # after the last batch was taken, even when the reader stops here (closes this generator)
                if step == last:
                    self._end_epoch()

    def _end_epoch(self) -> None:
        on_epoch_end = getattr(self.data, "on_epoch_end", None)
        if callable(on_epoch_end):
            on_epoch_end()

    def fingerprint(self) -> dict:
        return {"seed": self.seed, "steps_per_epoch": self.steps_per_epoch, "shuffle": self.shuffle}


def _restartable(make_iterator: Callable[[], Iterator], steps_per_epoch: int | None) -> GeneratorSource:
    def batches():
        for item in make_iterator():
            yield _to_numpy(item)

    return GeneratorSource(batches, steps_per_epoch=steps_per_epoch)


def _length(x) -> int | None:
    try:
        n = len(x)
    except TypeError:
        return None
    return n if n > 0 else None


def adapt_loader(x, *, batch_size: int | None, shuffle: bool, seed: int):
    """The batch source of a Grain dataset or loader, a torch `DataLoader` or a `PyDataset` (see module docstring).

    Raises:
      ValueError: for `batch_size` with something that yields batches already, or a loader that yields single
        examples and batches them itself (torch `DataLoader(batch_size=None)`, a Grain `DataLoader` without
        `grain.transforms.Batch`).
    """
    kind = type(x).__name__

    def no_batch_size(what: str):
        if batch_size is not None:
            raise ValueError(f"`batch_size` must be None when `x` is {what} (it yields whole batches); got {batch_size!r}")

    if is_py_dataset(x):
        no_batch_size(f"a PyDataset ({kind})")
        return BatchSequence(x, shuffle=shuffle, seed=seed, name=kind)
    if is_grain_map_dataset(x):
        if grain_is_batched(x):
            no_batch_size("a batched grain.MapDataset")
            return BatchSequence(x, shuffle=False, seed=seed, name=kind)
        return None  # examples: nnjax's Dataset batches them (`adapt`)
    if is_grain_iter_dataset(x):
        if grain_is_batched(x):
            no_batch_size("a batched grain.IterDataset")
            return _restartable(lambda: iter(x), None)
        batched = x.batch(batch_size or 32)
        return _restartable(lambda: iter(batched), None)
    if is_grain_data_loader(x):
        import grain

        if not any(isinstance(op, grain.transforms.Batch) for op in getattr(x, "_operations", ())):
            raise ValueError(
                "a grain.DataLoader without grain.transforms.Batch in its `operations` yields single examples; "
                "add grain.transforms.Batch(batch_size=...) to `operations` (nnjax trains on the batches a loader yields)"
            )
        no_batch_size("a grain.DataLoader")
        return _restartable(lambda: iter(x), None)
    if is_torch_data_loader(x):
        if getattr(x, "batch_size", None) is None and getattr(x, "batch_sampler", None) is None:
            raise ValueError(
                "a torch DataLoader with batch_size=None yields single examples; pass batch_size=... to the DataLoader "
                "(nnjax trains on the batches a loader yields)"
            )
        no_batch_size("a torch DataLoader")
        return _restartable(lambda: iter(x), _length(x))
    return None


__all__ = ["BatchSequence", "adapt_loader", "grain_is_batched", "is_loader", "is_py_dataset"]
