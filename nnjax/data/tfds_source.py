"""TensorFlow Datasets without TensorFlow: `tfds.data_source` (array_record) behind a `Dataset`.

Opening a dataset looks in the TFDS data folder first and decides within
seconds: a prepared dataset is read at once; a missing one is downloaded only
when the network answers, otherwise `DatasetUnavailableError` says where the
files were looked for and how to place them by hand. (`tfds.data_source` on its
own retries for minutes when offline.)
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
from collections.abc import Callable
from typing import Any

import numpy as np

from nnjax.data.pipeline import Dataset, read_records

# The host TFDS downloads prepared datasets from; probed before any download is tried.
NETWORK_PROBE = ("storage.googleapis.com", 443)
NETWORK_TIMEOUT_S = 3.0


class DatasetUnavailableError(FileNotFoundError):
    """A TFDS dataset is neither prepared in the data folder nor downloadable."""


def _import_tfds():
    try:
        import tensorflow_datasets as tfds_lib
    except ImportError as err:  # pragma: no cover - tensorflow-datasets is a dependency
        raise ImportError("nnjax.data.tfds needs tensorflow-datasets: pip install tensorflow-datasets array_record") from err
    return tfds_lib


def default_data_dir() -> str:
    """Where TFDS looks for prepared datasets: `$TFDS_DATA_DIR` or `~/tensorflow_datasets`."""
    return os.path.expanduser(os.environ.get("TFDS_DATA_DIR") or os.path.join("~", "tensorflow_datasets"))


def network_available(address: tuple[str, int] = NETWORK_PROBE, timeout: float = NETWORK_TIMEOUT_S) -> bool:
    """Whether a TCP connection to `address` opens within `timeout` seconds."""
    try:
        socket.create_connection(address, timeout=timeout).close()
        return True
    except OSError:
        return False


@contextlib.contextmanager
def _quiet_absl():
    """absl's warnings off for the duration (nnjax reports a missing dataset itself, in one error)."""
    logger = logging.getLogger("absl")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _how_to_place(name: str, root: str) -> str:
    return (
        f"To place the files by hand: on a machine with network run\n"
        f"    pip install tensorflow-datasets array_record && tfds build {name} --file_format=array_record\n"
        f"then copy the folder ~/tensorflow_datasets/{name} to {os.path.join(root, name)} on this machine "
        f"(or pass data_dir=... / set TFDS_DATA_DIR to the folder that holds {name}/)."
    )


def open_split(name: str, split: str, *, data_dir: str | None = None, download: bool = True):
    """Opens one split of a TFDS dataset for random access, without TensorFlow.

    Args:
      name: a TFDS name, optionally with config and version ("cifar10", "mnist:3.*.*").
      split: a TFDS split ("train", "test[:10%]", ...).
      data_dir: the TFDS data folder (default `default_data_dir()`).
      download: download and prepare the dataset (in array_record format) when it
        is missing and the network answers.

    Returns:
      `(data_source, builder)`: a sequence of feature dicts and its `DatasetBuilder`.

    Raises:
      ValueError: for an unknown dataset or split.
      DatasetUnavailableError: if the data is not prepared (or not in a
        random-access format) and cannot be downloaded.
    """
    tfds_lib = _import_tfds()
    root = os.path.expanduser(data_dir) if data_dir else default_data_dir()
    try:
        with _quiet_absl():  # TFDS warns about "variant folders" of a dataset that is simply not there
            builder = tfds_lib.builder(name, data_dir=root)
    except tfds_lib.core.registered.DatasetNotFoundError as err:
        raise ValueError(f"nj.data.tfds: TFDS has no dataset named {name!r} (see tfds.list_builders())") from err
    try:
        with _quiet_absl():
            return builder.as_data_source(split=split), builder
    except Exception as err:  # noqa: BLE001 - sorted out below into clear errors
        first_error = err
    with _quiet_absl():
        prepared = builder.is_prepared()
    if prepared:
        if isinstance(first_error, NotImplementedError):
            raise DatasetUnavailableError(
                f"TFDS dataset {name!r} is prepared in {builder.data_dir} but in {builder.info.file_format.value} format, "
                f"which has no random access; nnjax reads array_record without TensorFlow. Rebuild it with\n"
                f"    tfds build {name} --file_format=array_record --data_dir {root}\n" + _how_to_place(name, root)
            ) from first_error
        splits = sorted(builder.info.splits)
        raise ValueError(
            f"TFDS dataset {name!r} in {builder.data_dir} cannot open split {split!r} (available splits: {splits}): {first_error}"
        ) from first_error
    if download and network_available():
        builder.download_and_prepare(file_format="array_record")
        return builder.as_data_source(split=split), builder
    reason = (
        "download=False" if not download else f"no network ({NETWORK_PROBE[0]} did not answer within {NETWORK_TIMEOUT_S:g} s)"
    )
    raise DatasetUnavailableError(
        f"TFDS dataset {name!r} (split {split!r}) is not prepared in the data folder searched, {root} "
        f"(expected {builder.data_dir}), and cannot be downloaded: {reason}.\n" + _how_to_place(name, root)
    ) from None


def supervised_example(keys: tuple[str, str]) -> Callable[[dict], tuple]:
    """Converts a TFDS feature dict to `(features[keys[0]], features[keys[1]])`."""
    x_key, y_key = keys

    def convert(record: dict) -> tuple:
        return record[x_key], record[y_key]

    return convert


def _supervised_keys(builder, name: str) -> tuple[str, str]:
    keys = builder.info.supervised_keys
    if not keys or len(keys) != 2 or not all(isinstance(k, str) for k in keys):
        raise ValueError(
            f"TFDS dataset {name!r} declares no (input, label) keys (supervised_keys={keys!r}): pass as_supervised=False "
            "and a `transform` that maps the feature dict to (x, y)"
        )
    return tuple(keys)


def tfds(
    name: str,
    split: str = "train",
    *,
    batch_size: int = 32,
    shuffle: bool = True,
    seed: int | None = None,
    transform: Callable | None = None,
    batch_transform: Callable | None = None,
    drop_remainder: bool = False,
    as_supervised: bool = True,
    data_dir: str | None = None,
    download: bool = True,
    cache: bool | str = "auto",
    num_threads: int | None = None,
    process_index: int | None = None,
    process_count: int | None = None,
) -> Dataset:
    """A TFDS dataset as a streaming, resumable batch source for `fit`/`evaluate`/`predict`.

    Reads `tfds.data_source` (array_record) by index: no TensorFlow, a
    deterministic order from `(seed, epoch)`, each process reading only its
    slice of every global batch. See `Dataset` for the arguments shared with it.

    Args:
      name: a TFDS name ("cifar10", "imdb_reviews", "mnist:3.*.*").
      split: a TFDS split ("train", "test", "train[:90%]").
      batch_size: the global batch size.
      shuffle: reshuffle every epoch.
      seed: the shuffle/augmentation seed (None: from `nj.utils.set_random_seed`).
      transform: per-example `fn(example[, rng])`; an example is `(x, y)` with
        `as_supervised=True`, else the TFDS feature dict (return `(x, y)`).
      batch_transform: per-batch `fn(batch[, rng])` on `(x, y, sample_weight)`.
      drop_remainder: drop the last partial batch.
      as_supervised: examples are `(input, label)` from the dataset's
        `supervised_keys` (e.g. ("image", "label")).
      data_dir: the TFDS data folder (default `$TFDS_DATA_DIR` or `~/tensorflow_datasets`).
      download: download when missing and the network answers.
      cache: keep decoded examples in host memory ("auto": up to 1 GiB).
      num_threads: reader threads (None: automatic).
      process_index / process_count: override `jax.process_index()/process_count()`.

    Returns:
      A `Dataset` yielding `(x, y, None)` batches of NumPy arrays.

    Raises:
      ValueError: unknown dataset or split, an empty split, a bad batch size.
      DatasetUnavailableError: data neither prepared nor downloadable (the
        message says where to put the files).

    Example:
      >>> # TFDS data: not run by the doctests
      >>> train = nj.data.tfds("fashion_mnist", split="train", batch_size=128, seed=0,  # doctest: +SKIP
      ...                      transform=lambda ex: (ex[0].astype("float32") / 255.0, ex[1]))
      >>> history = model.fit(train, epochs=5)  # doctest: +SKIP
    """
    source, builder = open_split(name, split, data_dir=data_dir, download=download)
    to_example = supervised_example(_supervised_keys(builder, name)) if as_supervised else None
    if len(source) == 0:
        raise ValueError(f"TFDS dataset {name!r} split {split!r} is empty: expected at least one example; received 0")
    return Dataset(
        source,
        batch_size=batch_size,
        shuffle=shuffle,
        seed=seed,
        transform=transform,
        batch_transform=batch_transform,
        drop_remainder=drop_remainder,
        to_example=to_example,
        cache=cache,
        num_threads=num_threads,
        process_index=process_index,
        process_count=process_count,
        name=f"{name}:{split}",
    )


def load(name: str, split: str = "train", **kwargs: Any) -> Dataset:
    """`nj.data.tfds` under `tfds.load`'s name: `nj.data.load("imdb_reviews", split="train", batch_size=64)`."""
    return tfds(name, split, **kwargs)


def read_all(source, keys: tuple[str, ...], *, chunk: int = 2048, num_threads: int | None = None) -> tuple[np.ndarray, ...]:
    """Every example of a TFDS data source as stacked NumPy arrays, one per feature key.

    Args:
      source: a `tfds.data_source` split.
      keys: feature names to keep (e.g. ("image", "label")).
      chunk: records per batched read.
      num_threads: reader threads (None: `min(8, cpu_count)`).

    Returns:
      One array per key, each with leading axis `len(source)`.
    """
    from nnjax.data.pipeline import _parallel_map

    n = len(source)
    if n == 0:
        raise ValueError("the split is empty: expected at least one example; received 0")
    chunks = [np.arange(i, min(i + chunk, n)) for i in range(0, n, chunk)]

    def read(idx):
        records = read_records(source, idx)
        return tuple(np.stack([np.asarray(r[k]) for r in records]) for k in keys)

    threads = min(8, os.cpu_count() or 1) if num_threads is None else num_threads
    parts = list(_parallel_map(read, chunks, threads, 2))
    return tuple(np.concatenate([p[i] for p in parts]) for i in range(len(keys)))


__all__ = ["DatasetUnavailableError", "default_data_dir", "load", "network_available", "open_split", "read_all", "tfds"]
