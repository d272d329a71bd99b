"""User code from the optax, Keras, Grain and torch worlds, run through nnjax as those libraries mean it.

Each test uses the real library as its oracle: optax's own loss values and
`schedule_free_eval_params`, Keras 3 (JAX backend) for frozen layers, and
Grain/torch loaders for the data a model sees.
"""

import numpy as np
import optax
import pytest

import nnjax as nj

keras = pytest.importorskip("keras")


# ------------------------------------------------------------------------------------------------ optax losses
def _separable(n=256, features=4, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, features)).astype(np.float32)
    y = (x @ np.array([1.5, -2.0, 1.0, 0.5], np.float32) > 0).astype(np.float32)
    return x, y


def _binary_accuracy(loss, seed=0):
    x, y = _separable()
    model = nj.Sequential([nj.layers.Dense(1, input_shape=(4,))])
    model.compile(optimizer=nj.optimizers.Adam(0.05), loss=loss, seed=seed)
    model.fit(x, y, batch_size=32, epochs=8, shuffle=False, verbose=0)
    logits = np.asarray(model.predict(x, verbose=0)).reshape(-1)
    return float(np.mean((logits > 0) == (y > 0.5)))


def test_optax_sigmoid_loss_trains_like_keras_binary_crossentropy():
    reference = _binary_accuracy(nj.losses.BinaryCrossentropy(from_logits=True))
    with_optax = _binary_accuracy(optax.sigmoid_binary_cross_entropy)
    assert reference > 0.95
    assert with_optax == pytest.approx(reference, abs=0.02)


@pytest.mark.parametrize("fn", [optax.l2_loss, optax.squared_error, optax.huber_loss, optax.log_cosh,
                                optax.sigmoid_binary_cross_entropy], ids=lambda f: f.__name__)
def test_optax_loss_values_are_optax_mean(fn):
    rng = np.random.default_rng(1)
    y_pred = rng.normal(size=(6, 3)).astype(np.float32)
    y_true = rng.uniform(size=(6, 3)).astype(np.float32)
    loss = nj.losses.get(fn)
    # optax called in its own order, reduced by Keras's default (mean over elements); float32, one reduction.
    np.testing.assert_allclose(float(loss(y_true, y_pred)), float(np.mean(fn(y_pred, y_true))), rtol=1e-6)


def test_optax_integer_label_loss_keeps_label_shape():
    rng = np.random.default_rng(2)
    logits = rng.normal(size=(5, 4)).astype(np.float32)
    labels = rng.integers(0, 4, size=(5,)).astype(np.int32)
    loss = nj.losses.get(optax.softmax_cross_entropy_with_integer_labels)
    expected = np.mean(optax.softmax_cross_entropy_with_integer_labels(logits, labels))
    np.testing.assert_allclose(float(loss(labels, logits)), float(expected), rtol=1e-6)


def test_loss_with_ambiguous_argument_names_is_refused():
    def my_loss(predictions, logits):
        return (predictions - logits) ** 2

    with pytest.raises(ValueError, match=r"loss\(y_true, y_pred\)"):
        nj.losses.get(my_loss)


def test_keras_order_and_unnamed_losses_keep_keras_order():
    y_true, y_pred = np.array([[1.0, 0.0]], np.float32), np.array([[0.5, 0.25]], np.float32)
    assert float(nj.losses.get(lambda y_true, y_pred: y_true - y_pred)(y_true, y_pred)) == pytest.approx(0.125)
    assert float(nj.losses.get(lambda a, b: a - b)(y_true, y_pred)) == pytest.approx(0.125)
