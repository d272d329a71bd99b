"""Data: in-memory arrays, TFDS without TensorFlow, generators; deterministic, resumable, prefetched.

Every source yields `(x, y, sample_weight)` batches from `batches(epoch, start_step)`;
the order of an epoch is a pure function of `(seed, epoch)`, so a position is
just `{"epoch", "step"}` (`DataIterator.get_state()`).
"""

from nnjax.data.adapt import adapt, is_source
from nnjax.data.arrays import ArraySource, epoch_permutation, split_validation
from nnjax.data.generators import GeneratorSource, from_generator
from nnjax.data.pipeline import Dataset
from nnjax.data.prefetch import group_executions, prefetch_to_device
from nnjax.data.source import BatchSource, DataIterator, EpochPlan
from nnjax.data.tfds_source import DatasetUnavailableError, load, tfds

__all__ = [
    "ArraySource",
    "BatchSource",
    "DataIterator",
    "Dataset",
    "DatasetUnavailableError",
    "EpochPlan",
    "GeneratorSource",
    "adapt",
    "epoch_permutation",
    "from_generator",
    "group_executions",
    "is_source",
    "load",
    "prefetch_to_device",
    "split_validation",
    "tfds",
]
