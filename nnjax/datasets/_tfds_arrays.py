"""Keras-style `load_data()` backed by TFDS's array_record data sources (no TensorFlow)."""

from __future__ import annotations

import numpy as np

from nnjax.data.tfds_source import open_split, read_all


def load_image_classification(
    name: str,
    *,
    label_key: str = "label",
    squeeze_channel: bool,
    label_column: bool,
    data_dir: str | None = None,
    download: bool = True,
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """`(x_train, y_train), (x_test, y_test)` of a TFDS image classification dataset, as Keras returns them.

    Args:
      name: the TFDS name.
      label_key: the feature holding the class id ("label"; "coarse_label" for CIFAR-100's coarse labels).
      squeeze_channel: drop a trailing channel axis of size 1 (MNIST's `(28, 28, 1)` -> `(28, 28)`).
      label_column: labels of shape `(N, 1)` (CIFAR) instead of `(N,)` (MNIST).
      data_dir: the TFDS data folder (default `$TFDS_DATA_DIR` or `~/tensorflow_datasets`).
      download: download when the data is missing and the network answers.

    Returns:
      uint8 images `(N, H, W)` or `(N, H, W, C)` and uint8 labels `(N,)` or `(N, 1)`.

    Raises:
      nnjax.data.DatasetUnavailableError: if the data is neither prepared nor downloadable.
    """
    splits = []
    for split in ("train", "test"):
        source, _ = open_split(name, split, data_dir=data_dir, download=download)
        images, labels = read_all(source, ("image", label_key))
        if squeeze_channel and images.ndim == 4 and images.shape[-1] == 1:
            images = images[..., 0]
        labels = labels.astype(np.uint8)
        if label_column:
            labels = labels.reshape(-1, 1)
        splits.append((images.astype(np.uint8, copy=False), labels))
    return splits[0], splits[1]
