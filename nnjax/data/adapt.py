"""Turning what a user passes to fit/evaluate/predict into a batch source."""

from __future__ import annotations

import inspect

from nnjax.data.arrays import ArraySource, as_array_tree, check_lengths
from nnjax.data.generators import GeneratorSource
from nnjax.data.loaders import adapt_loader, is_loader
from nnjax.data.pipeline import Dataset


def is_source(x) -> bool:
    """Whether `x` is already a batch source (has `batches(epoch, start_step)` and `steps_per_epoch`)."""
    return hasattr(x, "batches") and hasattr(x, "steps_per_epoch")


def _is_tfds_data_source(x) -> bool:
    return hasattr(x, "dataset_info") and hasattr(x, "__getitem__") and hasattr(x, "__len__")


def _is_grain_map_dataset(x) -> bool:
    return any(cls.__module__.startswith("grain.") and cls.__name__ == "MapDataset" for cls in type(x).__mro__)


def is_streaming(x) -> bool:
    """Whether `x` is a dataset, generator, TFDS or Grain source (anything but in-memory arrays)."""
    streaming = is_source(x) or inspect.isgenerator(x) or inspect.isgeneratorfunction(x) or hasattr(x, "__next__")
    return streaming or _is_tfds_data_source(x) or _is_grain_map_dataset(x) or is_loader(x)


def adapt(x, y=None, *, sample_weight=None, batch_size: int | None = None, shuffle: bool = True, seed: int = 0,
          drop_remainder: bool = False):
    """A batch source for what `fit`, `evaluate` or `predict` was given.

    Accepted:
      - arrays (NumPy, JAX, nested lists, pytrees of them) with `y` and
        `sample_weight`: an `ArraySource` (checked: equal lengths, at least one example);
      - a source (`Dataset`, `ArraySource`, `GeneratorSource`, anything with
        `batches` and `steps_per_epoch`): returned as is;
      - a generator function or a generator/iterator yielding `(x, y[, w])`
        batches: a `GeneratorSource`;
      - a `tfds.data_source(...)` split (examples from its `supervised_keys`) or a
        `grain.MapDataset` of `(x, y[, w])` examples: a `Dataset` with
        `batch_size` (32 by default), `shuffle` and `seed`;
      - a batched `grain.MapDataset` (`.batch(n)` in its lineage) or a Keras-style
        `PyDataset` (`len()` batches, `[i]` a batch): its batches, as they are
        (a `PyDataset`'s batch order shuffled with `shuffle`);
      - a `grain.IterDataset` (batched with `batch_size` unless already batched), a
        `grain.DataLoader` with a `grain.transforms.Batch` operation, a torch
        `DataLoader`: re-iterated every epoch, batches as they come.

    An example or batch that is a dict with one label key ("label", "labels",
    "y", "target", "targets") is `(the other entries, label)` (see
    `nnjax.data.pipeline.as_example`).

    Raises:
      ValueError: if `y` or `sample_weight` is given with a source or generator
        (they yield their own labels), `batch_size` with a generator or anything
        else that yields whole batches, or a loader that yields single examples
        and batches them itself (see `nnjax.data.loaders`).
    """
    if not is_streaming(x):
        x, y, sample_weight = (as_array_tree(v, n) for v, n in ((x, "x"), (y, "y"), (sample_weight, "sample_weight")))
        check_lengths(x, y, sample_weight)
        return ArraySource(x, y, sample_weight, batch_size=32 if batch_size is None else batch_size, shuffle=shuffle, seed=seed,
                           drop_remainder=drop_remainder)
    for name, value in (("y", y), ("sample_weight", sample_weight)):
        if value is not None:
            raise ValueError(
                f"`{name}` must be None when `x` is a dataset or generator (it yields its own); got {type(value).__name__}"
            )
    if is_source(x):
        return x
    if is_loader(x):
        source = adapt_loader(x, batch_size=batch_size, shuffle=shuffle, seed=seed)
        if source is not None:
            return source
    if inspect.isgenerator(x) or inspect.isgeneratorfunction(x) or hasattr(x, "__next__"):
        if batch_size is not None:
            raise ValueError(f"`batch_size` must be None when `x` is a generator (it yields whole batches); got {batch_size!r}")
        return GeneratorSource(x)
    to_example = None
    name = type(x).__name__
    if _is_tfds_data_source(x):
        from nnjax.data.tfds_source import supervised_example

        info = x.dataset_info
        name = f"{getattr(info, 'name', name)}"
        keys = getattr(info, "supervised_keys", None)
        if keys and len(keys) == 2 and all(isinstance(k, str) for k in keys):
            to_example = supervised_example(tuple(keys))
    return Dataset(x, batch_size=batch_size or 32, shuffle=shuffle, seed=seed, to_example=to_example, name=name)


__all__ = ["adapt", "is_source", "is_streaming"]
