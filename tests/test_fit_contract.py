"""Small promises of `fit` that user code relies on: a new History per call, a loss_fn's extra values logged."""

import jax.numpy as jnp
import numpy as np

import nnjax as nj

RNG = np.random.default_rng(0)
X = RNG.normal(size=(32, 3)).astype(np.float32)
Y = RNG.normal(size=(32, 1)).astype(np.float32)


def linear():
    model = nj.Sequential([nj.layers.Dense(1, input_shape=(3,))])
    return model


def test_each_fit_returns_its_own_history_as_keras_does():
    model = linear()
    model.compile(optimizer="sgd", loss="mse", seed=0)
    first = model.fit(X, Y, epochs=2, verbose=0)
    second = model.fit(X, Y, epochs=3, verbose=0)
    assert first is not second and model.history is second
    assert len(first.history["loss"]) == 2 and len(second.history["loss"]) == 3


def test_a_loss_fn_extra_values_are_logged_as_the_epochs_mean():
    def objective(outputs, batch):
        error = outputs - batch[1]
        return jnp.mean(error**2), {"mae": jnp.mean(jnp.abs(error))}

    model = linear()
    model.compile(optimizer=nj.optimizers.SGD(learning_rate=0.0), loss_fn=objective, seed=0)  # rate 0: fixed weights
    history = model.fit(X, Y, batch_size=8, epochs=1, shuffle=False, verbose=0)
    kernel, bias = np.asarray(model.layers[0].kernel[...]), np.asarray(model.layers[0].bias[...])
    error = X @ kernel + bias - Y
    np.testing.assert_allclose(history.history["mae"], [np.abs(error).mean()], rtol=1e-6)
    np.testing.assert_allclose(history.history["loss"], [(error**2).mean()], rtol=1e-6)
