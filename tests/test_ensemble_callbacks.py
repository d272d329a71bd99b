"""An `Ensemble` runs the one fit loop: generators, TFDS, and every callback work on it as on a `Model`.

The references are independent runs: single models trained alone on the same batches (what each member must
equal), the ensemble's own per-member history read back from files, and NumPy over the weights.
"""

import csv

import numpy as np
import pytest

import nnjax as nj
from nnjax import parallel

TOL = 1e-5
COMPILE = dict(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])


def _linear():
    return nj.Sequential([nj.layers.Flatten(), nj.layers.Dense(10, activation="softmax")])


def _data(digits, n=192):
    (x, y), (x_test, y_test) = digits
    return x[:n], y[:n], x_test[:64], y_test[:64]


def _ensemble(size=3, **compile_kwargs):
    ens = parallel.Ensemble(_linear, size=size)
    ens.compile(**{**COMPILE, **compile_kwargs})
    return ens


def test_a_generator_feeds_every_member_and_each_equals_a_model_trained_alone_on_it(digits):
    x, y, _, _ = _data(digits)

    def batches():  # a fresh pass per epoch: 3 batches of 64
        for i in range(0, len(x), 64):
            yield x[i:i + 64], y[i:i + 64]

    ens = _ensemble(size=2, steps_per_execution=2)
    history = ens.fit(batches, epochs=2, verbose=0)
    for member, seed in enumerate(ens.seeds):
        nj.utils.set_random_seed(seed)
        alone = _linear()
        alone.compile(**COMPILE, seed=seed)
        expected = alone.fit(batches, epochs=2, verbose=0).history
        np.testing.assert_allclose(history.member(member)["loss"], expected["loss"], rtol=0, atol=TOL)
        for got, want in zip(ens.member(member).get_weights(), alone.get_weights(), strict=True):
            np.testing.assert_allclose(got, want, rtol=0, atol=TOL)


def test_tfds_on_mock_data_trains_an_ensemble():
    tfds = pytest.importorskip("tensorflow_datasets")

    def normalise(example):
        image, label = example
        return image.astype(np.float32) / 255.0, label

    with tfds.testing.mock_data(num_examples=64):
        ens = _ensemble(size=2)
        history = ens.fit(nj.data.tfds("mnist", split="train", batch_size=32, seed=1, transform=normalise), epochs=2,
                          verbose=0)
        (x, y), _ = nj.datasets.mnist.load_data()
    assert history.curves("loss").shape == (2, 2)
    x = x.reshape((-1, 28, 28, 1)).astype(np.float32) / 255.0  # TFDS's shape
    probs = ens.predict(x)
    assert probs.shape == (2, 64, 10)
    loss = ens.evaluate(x, y, verbose=0)[0]
    np.testing.assert_allclose(loss, -np.log(probs[:, np.arange(64), y]).mean(axis=1), rtol=1e-4)


def test_early_stopping_restores_every_members_best_weights(digits):
    x, y, xv, yv = _data(digits)

    class Snapshots(nj.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.weights = []

        def on_epoch_end(self, epoch, logs=None):
            self.weights.append(self.model.get_weights())

    ens = _ensemble(optimizer=nj.optimizers.SGD(learning_rate=3.0))  # a rate that overshoots: val_loss goes up and down
    snapshots = Snapshots()
    stop = nj.callbacks.EarlyStopping(monitor="val_loss", patience=2, restore_best_weights=True)
    history = ens.fit(x, y, batch_size=32, epochs=12, verbose=0, validation_data=(xv, yv), callbacks=[snapshots, stop])
    mean_val = history.mean("val_loss")
    best = int(np.argmin(mean_val))
    assert stop.best_epoch == best
    for got, want in zip(ens.get_weights(), snapshots.weights[best], strict=True):
        np.testing.assert_array_equal(got, want)
        assert got.shape[0] == 3  # every member's weights, stacked


def test_model_checkpoint_saves_the_best_ensemble_and_it_loads_back(digits, tmp_path):
    x, y, xv, yv = _data(digits)
    path = tmp_path / "best"
    ens = _ensemble()
    history = ens.fit(x, y, batch_size=32, epochs=3, verbose=0, validation_data=(xv, yv),
                      callbacks=[nj.callbacks.ModelCheckpoint(str(path), monitor="val_loss", save_best_only=True)])
    fresh = _ensemble()
    fresh.build((None, 8, 8))
    fresh.load_weights(str(path))
    best = int(np.argmin(history.mean("val_loss")))
    val_loss = fresh.evaluate(xv, yv, verbose=0)[0]
    np.testing.assert_allclose(val_loss, history.curves("val_loss")[best], rtol=1e-5)


def test_csv_logger_and_tensorboard_write_the_member_means(digits, tmp_path):
    event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    x, y, _, _ = _data(digits)
    ens = _ensemble()
    history = ens.fit(x, y, batch_size=64, epochs=2, verbose=0, callbacks=[
        nj.callbacks.CSVLogger(str(tmp_path / "log.csv")), nj.callbacks.TensorBoard(str(tmp_path / "tb"))])
    rows = list(csv.DictReader(open(tmp_path / "log.csv")))
    np.testing.assert_allclose([float(r["loss"]) for r in rows], history.mean("loss"), rtol=1e-12)
    train = event_accumulator.EventAccumulator(str(tmp_path / "tb" / "train"))
    train.Reload()
    np.testing.assert_allclose([e.value for e in train.Scalars("epoch_loss")], history.mean("loss"), rtol=1e-6)


def test_learning_rate_callbacks_set_every_members_rate(digits):
    x, y, _, _ = _data(digits)
    ens = _ensemble(optimizer=nj.optimizers.SGD(learning_rate=0.4))
    history = ens.fit(x, y, batch_size=64, epochs=3, verbose=0,
                      callbacks=[nj.callbacks.LearningRateScheduler(lambda epoch, lr: 0.4 / 2**epoch)])
    np.testing.assert_allclose(history.curves("learning_rate"), [[0.4] * 3, [0.2] * 3, [0.1] * 3], rtol=1e-6)
    rate = nj.optimizers.get_learning_rate(ens.state.opt_state)
    np.testing.assert_allclose(np.asarray(rate), [0.1] * 3, rtol=1e-6)

    plateau = _ensemble(optimizer=nj.optimizers.SGD(learning_rate=0.4))
    reduce = nj.callbacks.ReduceLROnPlateau(monitor="loss", factor=0.5, patience=0, min_delta=10.0)  # never "improves"
    history = plateau.fit(x, y, batch_size=64, epochs=3, verbose=0, callbacks=[reduce])
    # Each epoch logs its own rate, before a reduction at its end: the first epoch is an improvement (best was None).
    np.testing.assert_allclose(history.mean("learning_rate"), [0.4, 0.4, 0.2], rtol=1e-6)
    np.testing.assert_allclose(np.asarray(nj.optimizers.get_learning_rate(plateau.state.opt_state)), [0.1] * 3, rtol=1e-6)


def test_a_sweep_refuses_a_callback_that_sets_one_rate(digits):
    x, y, _, _ = _data(digits)
    sweep = parallel.Ensemble(_linear, size=2, seeds=0)
    sweep.compile(**COMPILE, hyperparams={"learning_rate": [1e-3, 1e-2]})
    with pytest.raises(ValueError, match=r"the members' learning rates differ \(\[0\.001"):
        sweep.fit(x, y, epochs=1, verbose=0, callbacks=[nj.callbacks.LearningRateScheduler(lambda epoch, lr: lr)])


def test_backup_resumes_an_ensemble_mid_epoch_exactly(digits, tmp_path):
    x, y, _, _ = _data(digits)

    class DieAt(nj.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if self.model.fit_loop.state.epoch == 1 and self.model.fit_loop.state.step == 2:
                raise KeyboardInterrupt("simulated crash")

    whole = _ensemble()
    expected = whole.fit(x, y, batch_size=32, epochs=2, verbose=0)
    backup = str(tmp_path / "backup")
    crashed = _ensemble()
    with pytest.raises(KeyboardInterrupt):
        crashed.fit(x, y, batch_size=32, epochs=2, verbose=0,
                    callbacks=[DieAt(), nj.callbacks.BackupAndRestore(backup, save_freq=1, async_save=False)])
    resumed = _ensemble()
    history = resumed.fit(x, y, batch_size=32, epochs=2, verbose=0, callbacks=[nj.callbacks.BackupAndRestore(backup, save_freq=1)])
    np.testing.assert_allclose(history.curves("loss"), expected.curves("loss"), rtol=0, atol=1e-6)
    for got, want in zip(resumed.get_weights(), whole.get_weights(), strict=True):
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)


def test_nonfinite_policies_act_per_member():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(64, 4)).astype(np.float32), rng.normal(size=(64, 1)).astype(np.float32)
    x[20] = np.nan  # batch 2 of 8-example batches, unshuffled

    def build():
        return nj.Sequential([nj.layers.Dense(1)])

    halting = parallel.Ensemble(build, size=2)
    halting.compile(optimizer="sgd", loss="mse", nonfinite="halt")
    with pytest.raises(nj.train.nonfinite.NonFiniteError, match=r"ensemble member 0 \(seed 0\): training halted: non-finite step 2"):
        halting.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0, steps_per_epoch=4)
    assert all(np.isfinite(w).all() for w in halting.get_weights())
    skipping = parallel.Ensemble(build, size=2)
    skipping.compile(optimizer="sgd", loss="mse", nonfinite="skip")
    history = skipping.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
    assert history.curves("skipped_steps").tolist() == [[1.0, 1.0]]
    assert all(np.isfinite(w).all() for w in skipping.get_weights())
