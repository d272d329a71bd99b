"""MNIST handwritten digits, as `keras.datasets.mnist`, read from TFDS without TensorFlow."""

from __future__ import annotations

import numpy as np

from nnjax.datasets._tfds_arrays import load_image_classification


def load_data(
    *, data_dir: str | None = None, download: bool = True
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Loads MNIST handwritten digits (60,000 training and 10,000 test examples, 10 classes).

    Args:
      data_dir: the TFDS data folder (default `$TFDS_DATA_DIR` or `~/tensorflow_datasets`).
      download: download when the data is missing and the network answers.

    Returns:
      `(x_train, y_train), (x_test, y_test)`: uint8 images of shape `(N, 28, 28)` and
      uint8 class ids in `[0, 10)` of shape `(N,)`, as Keras returns them.

    Raises:
      nnjax.data.DatasetUnavailableError: if TFDS's "mnist" is neither prepared in
        the data folder nor downloadable; the message says where to put the files.

    Example:
      >>> # downloads through TFDS: not run by the doctests
      >>> (x_train, y_train), (x_test, y_test) = nj.datasets.mnist.load_data()  # doctest: +SKIP
    """
    return load_image_classification("mnist", squeeze_channel=True, label_column=False, data_dir=data_dir, download=download)


__all__ = ["load_data"]
