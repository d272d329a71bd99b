"""Test setup: 8 CPU devices (for the parallel tests), float32 matmuls, shared data."""

import os

# XLA's backend optimisations (LLVM passes above all) cost more than they save on the suite's many small programs;
# tests compare against oracles with tolerances, or nnjax with itself under the same flags, so level 0 is enough.
FAST_XLA_FLAGS = "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8 " + FAST_XLA_FLAGS)
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("KERAS_BACKEND", "jax")  # Keras 3 is the oracle of the parity tests

import numpy as np  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture(scope="session")
def digits():
    """scikit-learn's handwritten digits: (x_train, y_train), (x_test, y_test), images (N, 8, 8) in [0, 1]."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    data = load_digits()
    x = (data.images / 16.0).astype(np.float32)
    y = data.target.astype(np.int32)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.2, random_state=0, stratify=y)
    return (x_train, y_train), (x_test, y_test)
