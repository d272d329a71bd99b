"""Every Keras-named activation nnjax exports computes Keras 3's values and gradients, with Keras 3 as the oracle.

Registry: one row per activation name (plus rows with non-default
arguments); values and gradients of `sum(f(x))` are compared on the same
inputs, away from the kinks of the piecewise functions. Tolerance: float32,
rtol 1e-6 / atol 1e-6 (both sides run the same jax.nn functions).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import nnjax as nj

keras = pytest.importorskip("keras")

# (name, keyword arguments)
CASES = [(name, {}) for name in sorted(nj.activations.ACTIVATIONS) if name != "threshold"] + [
    ("threshold", {"threshold": 0.3, "default_value": -1.0}),
    ("relu", {"negative_slope": 0.1}),
    ("relu", {"max_value": 6.0}),
    ("relu", {"max_value": 2.5, "threshold": 0.5}),
    ("relu", {"negative_slope": 0.3, "max_value": 2.0, "threshold": -0.5}),
    ("leaky_relu", {"negative_slope": 0.05}),
    ("elu", {"alpha": 0.5}),
    ("celu", {"alpha": 2.0}),
    ("gelu", {"approximate": True}),
    ("glu", {"axis": 0}),
    ("squareplus", {"b": 1.0}),
    ("soft_shrink", {"threshold": 1.0}),
    ("hard_shrink", {"threshold": 1.0}),
    ("softmax", {"axis": 0}),
    ("log_softmax", {"axis": 0}),
    ("sparsemax", {"axis": 0}),
]


def _x():
    x = np.random.default_rng(0).normal(scale=2.5, size=(6, 8)).astype(np.float32)
    return x + np.where(np.abs(np.round(x * 2) - x * 2) < 0.02, 0.05, 0.0).astype(np.float32)  # away from kinks at k/2


@pytest.mark.parametrize(("name", "kw"), CASES, ids=[f"{n}{sorted(kw.items())}" for n, kw in CASES])
def test_activation_matches_keras(name, kw):
    x = jnp.asarray(_x())
    keras_fn = keras.activations.get(name)
    nj_fn = nj.activations.get(name)
    np.testing.assert_allclose(nj_fn(x, **kw), keras_fn(x, **kw), rtol=1e-6, atol=1e-6)
    expected = jax.grad(lambda v: jnp.sum(keras_fn(v, **kw)))(x)
    got = jax.grad(lambda v: jnp.sum(nj_fn(v, **kw)))(x)
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)


def test_registry_covers_every_keras_activation():
    """nnjax has every activation Keras 3 has, and a new one cannot be added without a parity row."""
    from keras.src.activations import ALL_OBJECTS_DICT

    assert set(ALL_OBJECTS_DICT) == set(nj.activations.ACTIVATIONS)
    assert {name for name, _ in CASES} == set(nj.activations.ACTIVATIONS)


def test_leaky_relu_default_slope_is_keras():
    x = jnp.asarray([-1.0, 2.0])
    np.testing.assert_allclose(nj.activations.get("leaky_relu")(x), keras.activations.leaky_relu(x), rtol=0)
    assert float(nj.activations.get("leaky_relu")(x)[0]) != float(jax.nn.leaky_relu(x)[0])  # not jax.nn's 0.01
