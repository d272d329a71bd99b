"""Keras-style datasets: `(x, y), (x_test, y_test) = nj.datasets.fashion_mnist.load_data()`.

Backed by TFDS's array_record data sources: no TensorFlow needed. Each module
returns NumPy arrays with Keras's shapes and dtypes.
"""

from nnjax.datasets import cifar10, cifar100, fashion_mnist, mnist

__all__ = ["cifar10", "cifar100", "fashion_mnist", "mnist"]
