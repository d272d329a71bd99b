"""A deterministic, resumable, process-sharded stream of batches over a random-access source.

`Dataset` reads examples by index from anything with `len()` and `[i]` (a
`tfds.data_source`, a Grain source, a list of examples), so the order of every
epoch is a pure function of `(seed, epoch)` and a position is just
`{"epoch", "step"}`: resuming means recomputing the order and starting at
`step`. Batches are assembled on Grain worker threads (`grain.MapDataset`
with `ReadOptions(num_threads=...)`), which read ahead in order.
"""

from __future__ import annotations

import inspect
import os
import threading
from collections.abc import Callable, Iterator, Sequence

import jax
import numpy as np

from nnjax.data.source import EpochPlan

# Small datasets are decoded once and kept in host memory (TFDS's own advice for data under 1 GB).
CACHE_BYTES = 1 << 30
_CACHE_CHUNK = 1024


def _positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValueError(f"`{name}` must be a positive int; got {value!r}")
    return int(value)


def _takes_rng(fn: Callable) -> bool:
    """Whether `fn` wants a second argument `rng` (a NumPy Generator)."""
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return False
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    required = [p for p in positional if p.default is p.empty]
    return len(required) >= 2 or any(p.name == "rng" for p in params)


def as_example(item) -> tuple:
    """Normalises one example or batch to `(x, y, sample_weight)` with NumPy leaves.

    A tuple/list of 1 to 3 parts is `(x[, y[, sample_weight]])`; an array is `x`
    alone. A dict is a record: `{"x", "y", "sample_weight"}` (any of the last
    two) are those parts; a dict with one label key of `LABEL_KEYS`
    (`{"image": ..., "label": ...}`) is `(x, label[, sample_weight])`, where `x`
    is the one other entry or a dict of the others; any other dict is `x` alone
    (a multi-input model's inputs).

    Raises:
      ValueError: for a tuple of more than 3 parts, or a dict with more than one
        label key.
    """
    if isinstance(item, dict):
        item = _record_parts(item)
    if isinstance(item, list):
        item = tuple(item)
    if isinstance(item, tuple):
        if not 1 <= len(item) <= 3:
            raise ValueError(
                f"an example must be x, (x,), (x, y) or (x, y, sample_weight); received a tuple of {len(item)} parts"
            )
        item = item + (None,) * (3 - len(item))
    else:
        item = (item, None, None)
    return tuple(None if part is None else jax.tree.map(_host_array, part) for part in item)


LABEL_KEYS = ("label", "labels", "y", "target", "targets")


def _record_parts(record: dict):
    """A dict record as `(x, y, sample_weight)`, or the dict itself when it holds no label (see `as_example`)."""
    if "x" in record and set(record) <= {"x", "y", "sample_weight"}:
        return (record["x"], record.get("y"), record.get("sample_weight"))
    labels = [key for key in LABEL_KEYS if key in record]
    if not labels or len(record) < 2:
        return record
    if len(labels) > 1:
        raise ValueError(
            f"a dict example must have at most one label key of {list(LABEL_KEYS)}; received keys {sorted(record)}. "
            "Map the records to (x, y) tuples first"
        )
    rest = {key: value for key, value in record.items() if key not in (labels[0], "sample_weight")}
    x = next(iter(rest.values())) if len(rest) == 1 else rest
    return (x, record[labels[0]], record.get("sample_weight"))


def _host_array(leaf) -> np.ndarray:
    array = np.asarray(leaf)
    canonical = (
        jax.dtypes.canonicalize_dtype(array.dtype) if array.dtype != object and array.dtype.kind not in "US" else array.dtype
    )
    return array if canonical == array.dtype else array.astype(canonical)


def stack_examples(examples: Sequence[tuple]) -> tuple:
    """Stacks `(x, y, w)` examples into one batch `(x, y, w)` with a leading batch axis.

    Raises:
      ValueError: if the examples differ in structure or shape.
    """
    first = examples[0]
    parts = []
    for i, name in enumerate(("x", "y", "sample_weight")):
        if first[i] is None:
            if any(ex[i] is not None for ex in examples):
                raise ValueError(f"every example must have `{name}` or none may; example 0 has none and a later one has it")
            parts.append(None)
            continue
        try:
            parts.append(jax.tree.map(lambda *leaves: np.stack(leaves), *[ex[i] for ex in examples]))
        except ValueError as err:
            raise ValueError(f"cannot batch `{name}`: the examples differ in structure or shape ({err})") from err
    return tuple(parts)


def _dtype_key(dtype) -> np.dtype | str:
    """The dtype, except that strings of any length (and objects) only keep their kind."""
    dtype = np.dtype(dtype)
    return {"U": "str", "S": "bytes", "O": "object"}.get(dtype.kind, dtype)


def _spec(batch: tuple) -> tuple:
    """Per part: None, or (tree structure, ((dtype, example shape), ...))."""
    spec = []
    for part in batch:
        if part is None:
            spec.append(None)
            continue
        leaves, treedef = jax.tree.flatten(part)
        spec.append((treedef, tuple((_dtype_key(a.dtype), tuple(a.shape[1:])) for a in leaves)))
    return tuple(spec)


def check_consistent(first_spec: tuple, batch: tuple, where: str) -> None:
    """Raises ValueError if `batch` differs from the first batch in structure, dtype or shape.

    A change would silently recompile the step (or fail inside it); labels that
    turn from int to float are the common case.
    """
    spec = _spec(batch)
    if spec == first_spec:
        return
    for name, expected, got in zip(("x", "y (labels)", "sample_weight"), first_spec, spec, strict=True):
        if expected == got:
            continue
        what = "structure" if (expected is None or got is None or expected[0] != got[0]) else "dtype or shape"
        raise ValueError(
            f"{where}: `{name}` changed {what}: the first batch had {_describe(expected)}; this batch has {_describe(got)}"
        )


def _describe(spec) -> str:
    if spec is None:
        return "none"
    return "; ".join(f"dtype {getattr(dtype, 'name', dtype)} and example shape {shape}" for dtype, shape in spec[1])


class Dataset(EpochPlan):
    """Batches of a random-access source, reshuffled each epoch from `(seed, epoch)`.

    Args:
      source: a sequence of examples: anything with `len(source)` and
        `source[i]` (a `tfds.data_source(...)`, a Grain data source, a list).
        An example is `x`, `(x, y)` or `(x, y, sample_weight)` (leaves are arrays
        or numbers), or anything `to_example` turns into one.
      batch_size: the global batch size (all processes together).
      shuffle: reshuffle every epoch; the order of epoch `e` is
        `epoch_permutation(seed, e, len(source))`, as for in-memory arrays.
      seed: the shuffle (and transform) seed. None draws one from
        `nj.utils.set_random_seed`'s generator.
      transform: a per-example function `fn(example) -> example` or
        `fn(example, rng) -> example`, NumPy or JAX; `rng` is a
        `np.random.Generator` seeded from `(seed, epoch, example index)`, so
        augmentation is repeatable and a resumed run sees the same batches.
        It runs on host threads.
      batch_transform: a per-batch function `fn(batch)` or `fn(batch, rng)` on
        the stacked `(x, y, sample_weight)` of shape `(B, ...)` (vectorised:
        much faster than `transform`); `rng` is seeded from
        `(seed, epoch, step, process_index)`.
      drop_remainder: drop the last partial batch. Otherwise it is yielded
        short, and a batch larger than the dataset gives one short batch.
      to_example: converts a raw record to an example before `transform`
        (e.g. a TFDS feature dict to `(image, label)`).
      cache: keep the decoded examples in host memory after the first read:
        True, False or "auto" (when the dataset takes at most `CACHE_BYTES`).
      num_threads: Grain reader threads; None picks `min(8, cpu_count)`, and 0
        once the data is cached if there is no per-example transform.
      prefetch: batches each reader thread works ahead.
      process_index / process_count: this process and the number of processes
        (`jax.process_index()` / `jax.process_count()` by default). Each process
        reads only its slice `[p*B/P, (p+1)*B/P)` of every global batch.
      name: a name for error messages.

    Raises:
      ValueError: for an empty source, a bad `batch_size`, a batch larger than
        the dataset with `drop_remainder=True`, or a global batch that cannot be
        split evenly between processes.

    Example:
      >>> records = list(zip(x, y))
      >>> ds = nj.data.Dataset(records, batch_size=16, seed=0, transform=lambda ex: (ex[0] / 255.0, ex[1]))
      >>> history = model.fit(ds, epochs=3, verbose=0)
      >>> it = iter(ds); batch = next(it); state = it.get_state()
      >>> state["epoch"], state["step"]
      (0, 1)
    """

    def __init__(
        self,
        source,
        *,
        batch_size: int = 32,
        shuffle: bool = True,
        seed: int | None = None,
        transform: Callable | None = None,
        batch_transform: Callable | None = None,
        drop_remainder: bool = False,
        to_example: Callable | None = None,
        cache: bool | str = "auto",
        num_threads: int | None = None,
        prefetch: int = 2,
        process_index: int | None = None,
        process_count: int | None = None,
        name: str | None = None,
    ):
        from nnjax.utils.random import next_seed

        self.name = name or type(source).__name__
        self.source = source
        self.batch_size = _positive_int(batch_size, "batch_size")
        self.shuffle = bool(shuffle)
        self.seed = next_seed() if seed is None else int(seed)
        self.transform = transform
        self.batch_transform = batch_transform
        self.drop_remainder = bool(drop_remainder)
        self.to_example = to_example
        if cache not in (True, False, "auto"):
            raise ValueError(f"`cache` must be True, False or 'auto'; got {cache!r}")
        self.cache = cache
        self.prefetch = _positive_int(prefetch, "prefetch")
        self.process_count = jax.process_count() if process_count is None else _positive_int(process_count, "process_count")
        self.process_index = jax.process_index() if process_index is None else int(process_index)
        if not 0 <= self.process_index < self.process_count:
            raise ValueError(f"`process_index` must be in [0, {self.process_count}); got {self.process_index}")
        self._transform_rng = transform is not None and _takes_rng(transform)
        self._batch_transform_rng = batch_transform is not None and _takes_rng(batch_transform)
        self._cached: tuple | None = None
        self._cache_lock = threading.Lock()
        self._first_spec = None
        try:
            self.num_examples = len(source)
        except TypeError as err:
            raise TypeError(f"Dataset: `source` must support len() and [index]; got {type(source).__name__}") from err
        if self.num_examples == 0:
            raise ValueError(f"Dataset {self.name!r} is empty: expected at least one example; received 0 examples")
        if self.drop_remainder and self.batch_size > self.num_examples:
            raise ValueError(
                f"Dataset {self.name!r}: `batch_size`={self.batch_size} is larger than the dataset ({self.num_examples} examples) "
                "with drop_remainder=True: every batch would be dropped; use a smaller batch_size or drop_remainder=False"
            )
        if self.batch_size % self.process_count:
            raise ValueError(
                f"Dataset {self.name!r}: the global `batch_size`={self.batch_size} must be divisible by the number of processes "
                f"({self.process_count}); received a remainder of {self.batch_size % self.process_count}"
            )
        rest = self.num_examples % self.batch_size
        if not self.drop_remainder and rest and self.process_count > 1 and rest % self.process_count:
            raise ValueError(
                f"Dataset {self.name!r}: the last global batch has {rest} examples, which {self.process_count} processes cannot "
                "share evenly; pass drop_remainder=True"
            )
        self._auto_threads = num_threads is None
        if num_threads is None:
            cheap = cache is True and transform is None
            num_threads = 0 if cheap else min(8, os.cpu_count() or 1)
        self.num_threads = int(num_threads)

    # ------------------------------------------------------------------ the plan
    def _local(self, global_idx: np.ndarray) -> np.ndarray:
        share = len(global_idx) // self.process_count
        return global_idx[self.process_index * share : (self.process_index + 1) * share]

    def batch_indices(self, epoch: int) -> list[np.ndarray]:
        """This process's example indices of every batch of `epoch`, in order."""
        order = self.order(epoch)
        bs = self.batch_size
        return [self._local(order[i * bs : (i + 1) * bs]) for i in range(self.steps_per_epoch)]

    # ------------------------------------------------------------------ reading
    def _read(self, idx: np.ndarray) -> list[tuple]:
        """Untransformed examples `(x, y, w)` at indices `idx`."""
        records = read_records(self.source, idx)
        convert = self.to_example
        return [as_example(convert(r) if convert is not None else r) for r in records]

    def _ensure_cache(self) -> tuple | None:
        if self.cache is False or self._cached is not None:
            return self._cached
        with self._cache_lock:
            if self._cached is not None:
                return self._cached
            first = stack_examples(self._read(np.arange(1)))
            estimate = sum(a.nbytes for a in jax.tree.leaves(first)) * self.num_examples
            fixed = all(a.dtype != object and a.dtype.kind not in "US" for a in jax.tree.leaves(first))
            if self.cache == "auto" and (estimate > CACHE_BYTES or not fixed):
                self.cache = False
                return None
            chunks = [np.arange(i, min(i + _CACHE_CHUNK, self.num_examples)) for i in range(0, self.num_examples, _CACHE_CHUNK)]
            try:
                parts = list(
                    _parallel_map(lambda idx: stack_examples(self._read(idx)), chunks, max(1, self.num_threads), self.prefetch)
                )
                self._cached = tuple(
                    None if parts[0][i] is None else jax.tree.map(lambda *a: np.concatenate(a), *[p[i] for p in parts])
                    for i in range(3)
                )
            except ValueError:
                if self.cache is True:
                    raise
                self.cache = False
                return None
            if self._auto_threads and self.transform is None:  # slicing cached arrays: threads would only add handoffs
                self.num_threads = 0
        return self._cached

    def take(self, idx: np.ndarray, epoch: int = 0, step: int = 0) -> tuple:
        """The transformed batch `(x, y, sample_weight)` of the examples at `idx`.

        Args:
          idx: int array `(b,)` of example indices.
          epoch: the epoch (seeds `transform`'s and `batch_transform`'s rng).
          step: the step (seeds `batch_transform`'s rng).

        Returns:
          `(x, y, sample_weight)` with a leading axis of size `b` (None parts stay None).
        """
        idx = np.asarray(idx)
        cached = self._cached  # built by `batches()`; `peek()` never reads the whole dataset
        if cached is not None and self.transform is None:
            batch = tuple(None if part is None else jax.tree.map(lambda a: a[idx], part) for part in cached)
        else:
            if cached is not None:
                examples = [_example_at(cached, i) for i in idx]
            else:
                examples = self._read(idx)
            if self.transform is not None:
                examples = [self._apply_transform(ex, int(i), epoch) for ex, i in zip(examples, idx, strict=True)]
            batch = stack_examples(examples)
        if self.batch_transform is not None:
            if self._batch_transform_rng:
                rng = np.random.default_rng([self.seed % (2**63), int(epoch), int(step), self.process_index, 2])
                batch = self.batch_transform(batch, rng)
            else:
                batch = self.batch_transform(batch)
            batch = as_example(batch)
        return batch

    def _apply_transform(self, example: tuple, index: int, epoch: int) -> tuple:
        packed = tuple(part for part in example if part is not None) if example[2] is None else example
        packed = packed[0] if len(packed) == 1 else packed
        if self._transform_rng:
            out = self.transform(packed, np.random.default_rng([self.seed % (2**63), int(epoch), index, 1]))
        else:
            out = self.transform(packed)
        return as_example(out)

    def batches(self, epoch: int, start_step: int = 0) -> Iterator[tuple]:
        """Yields this process's batches of `epoch` from `start_step` on.

        Raises:
          ValueError: if `start_step` is outside `[0, steps_per_epoch]`, or a batch
            differs from the first in structure, dtype or shape (e.g. labels that
            turn from int to float).
        """
        if not 0 <= start_step <= self.steps_per_epoch:
            raise ValueError(f"Dataset {self.name!r}: `start_step` must be in [0, {self.steps_per_epoch}]; got {start_step}")
        plan = self.batch_indices(epoch)[start_step:]
        if self.cache is not False:
            self._ensure_cache()
        steps = range(start_step, start_step + len(plan))
        batches = _parallel_map(lambda s: self.take(plan[s - start_step], epoch, s), steps, self.num_threads, self.prefetch)
        try:
            for step, batch in zip(steps, batches, strict=False):
                if self._first_spec is None:
                    self._first_spec = _spec(batch)
                check_consistent(self._first_spec, batch, f"Dataset {self.name!r}, epoch {epoch}, batch {step}")
                yield batch
        finally:
            batches.close()

    def peek(self) -> tuple:
        """The first `min(batch_size, N)` examples, unshuffled and transformed (for building and checks)."""
        idx = np.arange(min(self.batch_size // self.process_count, self.num_examples))
        batch = self.take(idx, 0, 0)
        if self._first_spec is None:
            self._first_spec = _spec(batch)
        return batch

    # ------------------------------------------------------------------ position
    def fingerprint(self) -> dict:
        """What a saved position is only valid for (stored in `DataIterator.get_state()`)."""
        return {**super().fingerprint(), "process_count": self.process_count}

    def __repr__(self) -> str:
        return (
            f"Dataset({self.name!r}, examples={self.num_examples}, batch_size={self.batch_size}, shuffle={self.shuffle}, "
            f"seed={self.seed}, process={self.process_index}/{self.process_count})"
        )


def _example_at(arrays: tuple, i: int) -> tuple:
    return tuple(None if part is None else jax.tree.map(lambda a: a[i], part) for part in arrays)


def read_records(source, idx: Sequence[int]) -> list:
    """Records `source[i]` for `i` in `idx`, in one batched read when the source supports it."""
    keys = [int(i) for i in idx]
    getitems = getattr(source, "__getitems__", None)
    if getitems is not None:
        try:
            records = getitems(keys)
            if len(records) == len(keys):
                return list(records)
        except TypeError:  # sources whose batched read takes other arguments (e.g. TFDS's mock); read one by one
            pass
    return [source[k] for k in keys]


def _parallel_map(fn: Callable, items: Sequence, num_threads: int, prefetch: int) -> Iterator:
    """`fn` over `items`, in order; with threads, on a Grain `MapDataset` that reads ahead."""
    if num_threads <= 0 or len(items) <= 1:
        for item in items:
            yield fn(item)
        return
    import grain

    dataset = grain.MapDataset.source(list(items)).map(fn)
    iterator = dataset.to_iter_dataset(
        grain.ReadOptions(num_threads=num_threads, prefetch_buffer_size=num_threads * prefetch)
    ).__iter__()
    try:
        yield from iterator
    finally:
        iterator.close()


__all__ = ["CACHE_BYTES", "LABEL_KEYS", "Dataset", "as_example", "check_consistent", "read_records", "stack_examples"]
