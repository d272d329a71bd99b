"""CIFAR-100 small colour images, as `keras.datasets.cifar100`, read from TFDS without TensorFlow."""

from __future__ import annotations

import numpy as np

from nnjax.datasets._tfds_arrays import load_image_classification

LABEL_KEYS = {"fine": "label", "coarse": "coarse_label"}


def load_data(
    label_mode: str = "fine", *, data_dir: str | None = None, download: bool = True
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Loads CIFAR-100 (50,000 training and 10,000 test images; 100 fine or 20 coarse classes).

    Args:
      label_mode: "fine" (100 classes) or "coarse" (20 superclasses).
      data_dir: the TFDS data folder (default `$TFDS_DATA_DIR` or `~/tensorflow_datasets`).
      download: download when the data is missing and the network answers.

    Returns:
      `(x_train, y_train), (x_test, y_test)`: uint8 images of shape `(N, 32, 32, 3)`
      and uint8 class ids of shape `(N, 1)`, as Keras returns them.

    Raises:
      ValueError: if `label_mode` is not "fine" or "coarse".
      nnjax.data.DatasetUnavailableError: if TFDS's "cifar100" is neither prepared in
        the data folder nor downloadable; the message says where to put the files.

    Example:
      >>> # downloads through TFDS: not run by the doctests
      >>> (x_train, y_train), (x_test, y_test) = nj.datasets.cifar100.load_data(label_mode="coarse")  # doctest: +SKIP
    """
    if label_mode not in LABEL_KEYS:
        raise ValueError(f'cifar100.load_data: `label_mode` must be "fine" or "coarse"; got {label_mode!r}')
    return load_image_classification(
        "cifar100",
        label_key=LABEL_KEYS[label_mode],
        squeeze_channel=False,
        label_column=True,
        data_dir=data_dir,
        download=download,
    )


__all__ = ["load_data"]
