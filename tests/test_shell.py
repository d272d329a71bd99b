"""The Keras-style shell: the tutorial's model end to end, Flax models, weights, summary, plots."""

import os

import flax.linen as linen
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import nnjax as nj


def tutorial_model(input_shape=(8, 8)):
    return nj.Sequential([
        nj.layers.Flatten(input_shape=input_shape),
        nj.layers.Dense(128, activation="relu"),
        nj.layers.Dense(10, activation="softmax"),
    ])


@pytest.mark.parametrize("optimizer", ["adam", optax.sgd(0.05, momentum=0.9)], ids=["adam", "sgd_momentum"])
def test_tutorial_model_learns_digits(digits, optimizer):
    (x, y), (x_test, y_test) = digits
    nj.utils.set_random_seed(0)
    model = tutorial_model()
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    history = model.fit(x, y, epochs=15, verbose=0, validation_split=0.1)
    assert set(history.history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert len(history.history["loss"]) == 15
    assert history.history["loss"][-1] < history.history["loss"][0] / 3
    loss, accuracy = model.evaluate(x_test, y_test, verbose=0)
    assert accuracy >= 0.95, accuracy
    logs = model.evaluate(x_test, y_test, verbose=0, return_dict=True)
    assert logs["accuracy"] == pytest.approx(accuracy) and logs["loss"] == pytest.approx(loss)
    probs = model.predict(x_test)
    assert isinstance(probs, np.ndarray) and probs.shape == (len(x_test), 10)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    assert np.mean(probs.argmax(axis=1) == y_test) == pytest.approx(accuracy)


def test_epoch_metrics_are_exact_means_including_partial_batch(digits):
    """evaluate's loss equals the NumPy mean cross-entropy over all examples (last batch partial)."""
    (x, y), _ = digits
    x, y = x[:100], y[:100]  # 100 = 3 * 32 + 4
    model = tutorial_model()
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    probs = model.predict(x).astype(np.float64)
    expected_loss = -np.mean(np.log(np.clip(probs[np.arange(100), y], 1e-7, 1 - 1e-7)))
    expected_acc = np.mean(probs.argmax(1) == y)
    loss, acc = model.evaluate(x, y, batch_size=32, verbose=0)
    assert loss == pytest.approx(expected_loss, rel=1e-5)
    assert acc == pytest.approx(expected_acc)


def test_validation_data_and_sample_weight(digits):
    (x, y), (x_test, y_test) = digits
    model = tutorial_model()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    weights = np.where(y == 3, 0.0, 1.0)
    history = model.fit(x, y, sample_weight=weights, epochs=2, batch_size=64, validation_data=(x_test, y_test), verbose=0)
    assert len(history.history["val_accuracy"]) == 2


def test_set_random_seed_makes_fit_repeatable(digits):
    (x, y), _ = digits
    results = []
    for _ in range(2):
        nj.utils.set_random_seed(42)
        model = nj.Sequential([nj.layers.Flatten(input_shape=(8, 8)), nj.layers.Dense(32, activation="relu"),
                               nj.layers.Dropout(0.3), nj.layers.Dense(10, activation="softmax")])
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
        model.fit(x[:256], y[:256], epochs=2, verbose=0)
        results.append(model.get_weights())
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)
    nj.utils.set_random_seed(43)
    other = nj.Sequential([nj.layers.Flatten(input_shape=(8, 8)), nj.layers.Dense(32, activation="relu"),
                           nj.layers.Dropout(0.3), nj.layers.Dense(10, activation="softmax")])
    assert not np.allclose(other.get_weights()[1], results[0][1])


def test_explicit_key_and_seed_are_accepted(digits):
    a = nj.layers.Dense(4, key=jax.random.key(7))
    b = nj.layers.Dense(4, seed=7)
    c = nj.layers.Dense(4, seed=8)
    x = jnp.ones((2, 3))
    np.testing.assert_array_equal(a(x), b(x))
    assert not np.allclose(a(x), c(x))


class UserMLP(nnx.Module):
    def __init__(self, rngs: nnx.Rngs):
        self.hidden = nnx.Linear(64, 64, rngs=rngs)
        self.dropout = nnx.Dropout(0.1, rngs=rngs)
        self.out = nnx.Linear(64, 10, rngs=rngs)

    def __call__(self, x):
        x = x.reshape((x.shape[0], -1))
        return self.out(self.dropout(nnx.relu(self.hidden(x))))


class LinenMLP(linen.Module):
    @linen.compact
    def __call__(self, x, training: bool = False):
        x = x.reshape((x.shape[0], -1))
        x = linen.relu(linen.Dense(64)(x))
        x = linen.Dropout(0.1, deterministic=not training)(x)
        return linen.Dense(10)(x)


@pytest.mark.parametrize("make", [lambda: UserMLP(nnx.Rngs(0)), lambda: LinenMLP()], ids=["nnx", "linen"])
def test_user_flax_modules_train_through_fit(digits, make):
    (x, y), (x_test, y_test) = digits
    model = nj.Model(make())
    model.compile(optimizer="adam", loss=nj.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    model.fit(x, y, epochs=15, batch_size=32, verbose=0)
    _, accuracy = model.evaluate(x_test, y_test, verbose=0)
    assert accuracy >= 0.93, accuracy


def test_summary_counts_parameters(capsys):
    model = nj.Sequential([nj.layers.Flatten(input_shape=(28, 28)), nj.layers.Dense(128, activation="relu"),
                           nj.layers.Dense(10, activation="softmax")])
    assert model.summary() is None  # printed once, returned nothing (as Keras: no second copy echoed by a REPL)
    text = capsys.readouterr().out
    expected = 784 * 128 + 128 + 128 * 10 + 10  # 101,770 as Keras reports
    assert model.count_params() == expected
    assert f"Total params: {expected:,}" in text
    assert "(None, 128)" in text and "(None, 10)" in text and "(None, 784)" in text
    assert text.count("Total params") == 1


def test_plot_model_writes_png(tmp_path):
    model = tutorial_model((28, 28))
    path = nj.plot_model(model, to_file=str(tmp_path / "model.png"))
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert os.path.getsize(path) > 5000


def test_get_set_save_load_weights_round_trip(tmp_path, digits):
    (x, y), _ = digits
    model = tutorial_model()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.fit(x[:128], y[:128], epochs=1, verbose=0)
    weights = model.get_weights()
    assert [w.shape for w in weights] == [(64, 128), (128,), (128, 10), (10,)]  # Keras's order: kernel, bias
    path = model.save_weights(tmp_path / "weights")
    predictions = model.predict(x[:16])

    other = tutorial_model()
    other.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    assert not np.allclose(other.predict(x[:16]), predictions)
    other.load_weights(path)
    np.testing.assert_array_equal(other.predict(x[:16]), predictions)

    third = tutorial_model()
    third.set_weights(weights)
    np.testing.assert_array_equal(third.predict(x[:16]), predictions)
    with pytest.raises(ValueError, match=r"bias \(weight 1\) must have shape \(128,\); received shape \(3, 3\)"):
        third.set_weights([weights[0], np.zeros((3, 3)), weights[2], weights[3]])
    with pytest.raises(ValueError, match="has 4 weight arrays; received 1"):
        third.set_weights(weights[:1])


def test_fit_continues_with_optimizer_state_and_builds_from_data(digits):
    (x, y), _ = digits
    model = nj.Sequential([nj.layers.Flatten(), nj.layers.Dense(16, activation="relu"), nj.layers.Dense(10, activation="softmax")])
    assert not model.built
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.fit(x[:64], y[:64], epochs=1, verbose=0)
    assert model.built and model.input_shape == (None, 8, 8)
    step_after_first = int(model.state.step)
    model.fit(x[:64], y[:64], epochs=1, verbose=0)
    assert int(model.state.step) == 2 * step_after_first == 4


def test_steps_per_execution_equals_single_steps(digits):
    (x, y), _ = digits
    results = []
    for k in (1, 4):
        nj.utils.set_random_seed(5)
        model = tutorial_model()
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"], steps_per_execution=k)
        history = model.fit(x[:330], y[:330], epochs=2, batch_size=32, verbose=0)  # 11 steps: 2 groups of 4, 2 single, 1 partial
        results.append((model.get_weights(), history.history))
    for a, b in zip(results[0][0], results[1][0]):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(results[0][1]["loss"], results[1][1]["loss"], rtol=1e-5)
