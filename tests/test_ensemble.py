"""`nj.parallel.Ensemble`: members equal single runs, sweeps, per-member metrics and outputs."""

import numpy as np
import optax
import pytest

import nnjax as nj
from nnjax import parallel

TOL = 1e-5  # absolute, on losses, metrics, weights and outputs


def _data(digits, n=512):
    (x, y), (x_test, y_test) = digits
    return x[:n], y[:n], x_test[:128], y_test[:128]


def _build():
    """Dropout and BatchNorm: each member needs its own keys and statistics."""
    return nj.Sequential(
        [
            nj.layers.Flatten(),
            nj.layers.Dense(32, use_bias=False),
            nj.layers.BatchNormalization(),
            nj.layers.Activation("relu"),
            nj.layers.Dropout(0.2),
            nj.layers.Dense(10, activation="softmax"),
        ]
    )


def _linear():
    return nj.Sequential([nj.layers.Flatten(), nj.layers.Dense(10, activation="softmax")])


COMPILE = dict(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])


def _single_run(seed, x, y, validation_data=None, optimizer="adam", build=_build):
    """The documented single-model equivalent of member `seed`."""
    nj.utils.set_random_seed(seed)
    model = build()
    model.compile(**{**COMPILE, "optimizer": optimizer}, seed=seed)
    history = model.fit(x, y, batch_size=64, epochs=2, verbose=0, validation_data=validation_data)
    return model, history.history


@pytest.mark.slow  # nine trainings: the ensemble and each of its eight members alone
def test_eight_members_each_equal_the_model_trained_alone(digits):
    x, y, x_test, _ = _data(digits, 512)
    ens = parallel.Ensemble(_build, size=8)
    ens.compile(**COMPILE)
    history = ens.fit(x, y, batch_size=64, epochs=2, verbose=0)
    assert isinstance(history, parallel.EnsembleHistory)
    assert history.curves("loss").shape == (2, 8) and history.curves("accuracy").shape == (2, 8)
    predictions = ens.predict(x_test, batch_size=64)
    assert predictions.shape == (8, 128, 10)
    weights = ens.get_weights()
    for seed in range(8):
        model, alone = _single_run(seed, x, y)
        for name, values in alone.items():
            np.testing.assert_allclose(history.curves(name)[:, seed], values, rtol=0, atol=TOL, err_msg=name)
        assert history.member(seed)["loss"] == pytest.approx(alone["loss"], abs=TOL)
        for w_ens, w_alone in zip(weights, model.get_weights(), strict=True):  # equal weights: equal outputs
            np.testing.assert_allclose(w_ens[seed], w_alone, rtol=0, atol=TOL)
    # Members really differ: their own initialisation, dropout masks, data order and BatchNorm statistics.
    moving_mean = [w for w in weights if w.shape == (8, 32)][-2]
    assert len({np.round(row, 6).tobytes() for row in moving_mean}) == 8
    np.testing.assert_array_equal(history.mean("loss"), history.curves("loss").mean(axis=1))
    np.testing.assert_allclose(ens.member(3).predict(x_test, batch_size=64, verbose=0), predictions[3], rtol=0, atol=TOL)
    np.testing.assert_allclose(model.predict(x_test, batch_size=64, verbose=0), predictions[7], rtol=0, atol=TOL)


def test_learning_rate_sweep_gives_each_member_its_own_run(digits):
    x, y, x_test, y_test = _data(digits, 320)  # 5 batches of 64; validation: 2 batches
    rates = [3e-4, 1e-3, 3e-3, 1e-2]
    sweep = parallel.Ensemble(_linear, size=4, seeds=0)  # one initialisation, one data order
    sweep.compile(**COMPILE, hyperparams={"learning_rate": rates})
    history = sweep.fit(x, y, batch_size=64, epochs=2, verbose=0, validation_data=(x_test, y_test))
    learning_rates = nj.optimizers.get_learning_rate(sweep.state.opt_state)
    np.testing.assert_allclose(np.asarray(learning_rates), rates, rtol=1e-7)
    finals = []
    for index, rate in enumerate(rates):
        _, alone = _single_run(0, x, y, (x_test, y_test), optimizer=nj.optimizers.Adam(learning_rate=rate), build=_linear)
        for name, values in alone.items():
            np.testing.assert_allclose(history.curves(name)[:, index], values, rtol=0, atol=TOL, err_msg=f"{name} at {rate}")
        finals.append(alone["loss"][-1])
    assert len(set(np.round(finals, 4))) == 4  # the rates matter


def test_weight_decay_sweep_through_inject_hyperparams(digits):
    x, y, _, _ = _data(digits, 256)
    decays = [0.0, 0.5]
    tx = optax.inject_hyperparams(optax.adamw)(learning_rate=1e-2, weight_decay=0.0)
    sweep = parallel.Ensemble(_linear, size=2, seeds=7)
    sweep.compile(**{**COMPILE, "optimizer": tx}, hyperparams={"weight_decay": decays})
    history = sweep.fit(x, y, batch_size=64, epochs=2, verbose=0)
    for index, decay in enumerate(decays):
        nj.utils.set_random_seed(7)
        model = _linear()
        model.compile(**{**COMPILE, "optimizer": optax.adamw(1e-2, weight_decay=decay)}, seed=7)
        alone = model.fit(x, y, batch_size=64, epochs=2, verbose=0).history
        np.testing.assert_allclose(history.curves("loss")[:, index], alone["loss"], rtol=0, atol=TOL)


def test_predict_and_evaluate_match_numpy_for_each_member(digits):
    x, y, _, _ = _data(digits, 100)
    ens = parallel.Ensemble(_linear, size=3)
    ens.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    ens.build((None, 8, 8))
    bias, kernel = sorted(ens.get_weights(), key=lambda w: w.ndim)  # (3, 10), (3, 64, 10)
    logits = np.einsum("nf,mfc->mnc", x.reshape(len(x), -1).astype(np.float64), kernel) + bias[:, None]
    probs = np.exp(logits - logits.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    np.testing.assert_allclose(ens.predict(x, batch_size=32), probs, rtol=1e-5, atol=1e-6)
    logs = ens.evaluate(x, y, batch_size=16, verbose=0, return_dict=True)
    np.testing.assert_allclose(logs["loss"], -np.log(probs[:, np.arange(len(y)), y]).mean(axis=1), rtol=1e-5)
    np.testing.assert_allclose(logs["accuracy"], (probs.argmax(-1) == y).mean(axis=1), atol=1e-6)
    assert not np.allclose(kernel[0], kernel[1])  # seeds 0 and 1


def test_build_fn_may_take_the_seed_and_weights_round_trip(digits, tmp_path):
    x, y, _, _ = _data(digits, 64)
    seen = []

    def build(seed):
        seen.append(seed)
        return nj.Sequential([nj.layers.Flatten(), nj.layers.Dense(10, activation="softmax", key=seed)])

    ens = parallel.Ensemble(build, size=3, seeds=[5, 6, 7])
    ens.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    ens.fit(x, y, batch_size=32, epochs=1, verbose=0)
    assert seen == [5, 6, 7]
    before = ens.predict(x)
    path = ens.save_weights(tmp_path / "ensemble")
    other = parallel.Ensemble(build, size=3, seeds=[1, 2, 3])
    other.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    other.build((None, 8, 8))
    assert not np.allclose(other.predict(x), before)
    other.load_weights(path)
    np.testing.assert_array_equal(other.predict(x), before)


def test_a_dataset_feeds_every_member_the_same_batches(digits):
    x, y, _, _ = _data(digits, 200)  # 3 batches of 64 and one of 8
    arrays = parallel.Ensemble(_linear, size=2)
    arrays.compile(**COMPILE)
    expected = arrays.fit(x, y, batch_size=64, epochs=2, shuffle=False, verbose=0)  # every member in file order
    streamed = parallel.Ensemble(_linear, size=2)
    streamed.compile(**COMPILE, steps_per_execution=2)
    history = streamed.fit(nj.data.ArraySource(x, y, batch_size=64, shuffle=False), epochs=2, verbose=0)
    for name in ("loss", "accuracy"):
        np.testing.assert_allclose(history.curves(name), expected.curves(name), rtol=0, atol=TOL)


def test_errors_name_what_was_expected_and_received(digits):
    x, y, _, _ = _data(digits, 64)
    with pytest.raises(ValueError, match="expected 4 seeds .* received 2"):
        parallel.Ensemble(_build, size=4, seeds=[1, 2])
    with pytest.raises(ValueError, match="`size` must be a positive int; got 0"):
        parallel.Ensemble(_build, size=0)
    ens = parallel.Ensemble(_build, size=4)
    with pytest.raises(ValueError, match=r"hyperparams\['learning_rate'\] needs 4 values .* received 3"):
        ens.compile(**COMPILE, hyperparams={"learning_rate": [1e-3, 1e-2, 1e-1]})
    with pytest.raises(ValueError, match="`seed` is not accepted"):
        ens.compile(**COMPILE, seed=3)
    with pytest.raises(ValueError, match="unknown optimizer 'adamm'"):
        ens.compile(optimizer="adamm", loss="mse")
    with pytest.raises(RuntimeError, match="call compile"):
        ens.fit(x, y, verbose=0)
    ens.compile(**COMPILE, hyperparams={"momentum": [0.1, 0.2, 0.3, 0.4]})
    with pytest.raises(ValueError, match=r"does not inject \['momentum'\]; it injects \['learning_rate'\]"):
        ens.fit(x, y, verbose=0)
    with pytest.raises(ValueError, match=r"labels must be in \[0, 10\)"):
        ens.fit(x, y + 5, verbose=0)


def test_plot_ensemble_history_draws_mean_and_spread(digits, tmp_path):
    history = parallel.EnsembleHistory()
    history.record(0, {"loss": np.array([1.0, 3.0]), "val_loss": np.array([2.0, 2.0])})
    history.record(1, {"loss": np.array([0.5, 1.5]), "val_loss": np.array([1.0, 2.0])})
    fig = parallel.plot_ensemble_history(history, to_file=tmp_path / "curves.png")
    assert (tmp_path / "curves.png").stat().st_size > 0
    (ax,) = fig.axes
    mean_line = [line for line in ax.get_lines() if "training (mean" in str(line.get_label())][0]
    np.testing.assert_allclose(mean_line.get_ydata(), [2.0, 1.0])
    assert history.member(1) == {"loss": [3.0, 1.5], "val_loss": [2.0, 2.0]}
    with pytest.raises(KeyError, match="no curve named 'accuracy'"):
        history.curves("accuracy")
