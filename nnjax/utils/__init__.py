"""Utilities: seeding and keys, Keras's NumPy helpers and dataset utilities, `plot_model`."""

from nnjax.utils.dataset_utils import (
    image_dataset_from_directory,
    pack_x_y_sample_weight,
    split_dataset,
    text_dataset_from_directory,
    timeseries_dataset_from_array,
    unpack_x_y_sample_weight,
)
from nnjax.utils.numerical import normalize, pad_sequences, to_categorical
from nnjax.utils.py_dataset import PyDataset
from nnjax.utils.random import as_key, global_seed, next_seed, set_random_seed


def plot_model(model, to_file: str = "model.png", **kwargs) -> str:
    """`nj.viz.plot_model` under Keras's name `keras.utils.plot_model`."""
    from nnjax.viz import plot_model as draw

    return draw(model, to_file, **kwargs)


__all__ = [
    "PyDataset",
    "as_key",
    "global_seed",
    "image_dataset_from_directory",
    "next_seed",
    "normalize",
    "pack_x_y_sample_weight",
    "pad_sequences",
    "plot_model",
    "set_random_seed",
    "split_dataset",
    "text_dataset_from_directory",
    "timeseries_dataset_from_array",
    "to_categorical",
    "unpack_x_y_sample_weight",
]
