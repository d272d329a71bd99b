"""Keras's callbacks, each with a behaviour that could fail: stopping, restoring, saving, logging."""

import csv
import json
import math
import os

import numpy as np
import pytest

import nnjax as nj


def small_classifier(features=20, classes=2):
    return nj.Sequential([
        nj.layers.Dense(64, input_shape=(features,), activation="relu"),
        nj.layers.Dense(classes, activation="softmax"),
    ])


def random_labels(n=200, features=20, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, features)).astype(np.float32), rng.integers(0, 2, n).astype(np.int32)


def snapshots():
    """A LambdaCallback that keeps a host copy of the weights at each epoch end (an independent record)."""
    taken = []
    callback = nj.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: taken.append(callback.model.get_weights()))
    return callback, taken


# ---------------------------------------------------------------------------------------------- EarlyStopping
def test_early_stopping_on_random_labels_stops_and_restores_best_weights():
    x, y = random_labels()
    nj.utils.set_random_seed(0)
    model = small_classifier()
    model.compile(optimizer=nj.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy", seed=0)
    recorder, taken = snapshots()
    stopper = nj.callbacks.EarlyStopping(monitor="val_loss", patience=3, restore_best_weights=True)
    history = model.fit(x, y, epochs=100, batch_size=32, validation_split=0.25, verbose=0, callbacks=[recorder, stopper])
    val_loss = history.history["val_loss"]
    epochs_run = len(val_loss)
    assert epochs_run < 100  # random labels: validation loss soon rises while the training loss falls
    best = int(np.argmin(val_loss))
    # Keras's rule, by hand: stop at the first epoch that is `patience` epochs past the best so far.
    expected_stop = next(e for e in range(1, epochs_run + 1) if e - int(np.argmin(val_loss[: e + 1])) >= 3)
    assert epochs_run - 1 == expected_stop == stopper.stopped_epoch
    assert best == stopper.best_epoch and best < epochs_run - 1
    for restored, kept in zip(model.get_weights(), taken[best], strict=True):
        np.testing.assert_array_equal(restored, kept)
    assert not all(np.array_equal(a, b) for a, b in zip(taken[-1], taken[best], strict=True))


def test_early_stopping_state_is_json_and_is_applied_after_on_train_begin():
    # The loop's protocol: a restored state is set once every on_train_begin has run (FitLoop.resume).
    stopper = nj.callbacks.EarlyStopping(patience=5)
    stopper.on_train_begin()
    stopper.set_state(json.loads(json.dumps({"wait": 2, "stopped_epoch": 0, "best": 0.5, "best_epoch": 3})))
    assert (stopper.wait, stopper.best, stopper.best_epoch) == (2, 0.5, 3)
    assert json.loads(json.dumps(stopper.get_state())) == {"wait": 2, "stopped_epoch": 0, "best": 0.5, "best_epoch": 3}
    stopper.on_train_end()
    stopper.on_train_begin()  # a fresh fit starts over
    assert stopper.best is None and stopper.wait == 0


# ---------------------------------------------------------------------------------------------- TerminateOnNaN + ModelCheckpoint
def diverging_regression(n=64):
    """y = 0, x = +-1: full-batch-free SGD with lr 2 multiplies the weights by -3 each step, so the loss overflows."""
    rng = np.random.default_rng(0)
    x = rng.choice([-1.0, 1.0], size=(n, 1)).astype(np.float32)
    return x, np.zeros((n, 1), np.float32)


def test_terminate_on_nan_stops_a_diverging_run_and_no_nan_is_checkpointed(tmp_path):
    x, y = diverging_regression()
    model = nj.Sequential([nj.layers.Dense(1, input_shape=(1,))])
    model.compile(optimizer=nj.optimizers.SGD(2.0), loss="mse", seed=0)
    checkpoint = nj.callbacks.ModelCheckpoint(str(tmp_path / "ckpt-{epoch:02d}"), monitor="loss", save_weights_only=True)
    with pytest.warns(RuntimeWarning, match="not finite"):
        history = model.fit(x, y, batch_size=16, epochs=60, shuffle=False, verbose=0,
                            callbacks=[nj.callbacks.TerminateOnNaN(), checkpoint])
    losses = history.history["loss"]
    assert len(losses) < 60 and not math.isfinite(losses[-1])
    assert all(math.isfinite(v) for v in losses[:-1])
    saved = sorted(os.listdir(tmp_path))
    assert saved == [f"ckpt-{e + 1:02d}" for e in range(len(losses) - 1)]  # every finite epoch, not the last
    probe = nj.Sequential([nj.layers.Dense(1, input_shape=(1,))])
    probe.load_weights(str(tmp_path / saved[-1]))
    assert all(np.isfinite(w).all() for w in probe.get_weights())


def test_terminate_on_nan_raise_error():
    x, y = diverging_regression()
    model = nj.Sequential([nj.layers.Dense(1, input_shape=(1,))])
    model.compile(optimizer=nj.optimizers.SGD(2.0), loss="mse", seed=0)
    with pytest.raises(RuntimeError, match="NaN or Inf loss encountered at batch"):
        model.fit(x, y, batch_size=16, epochs=60, verbose=0, callbacks=[nj.callbacks.TerminateOnNaN(raise_error=True)])


def test_model_checkpoint_save_best_only_keeps_best_epoch_and_load_restores_exactly(tmp_path):
    x, y = random_labels()
    nj.utils.set_random_seed(1)
    model = small_classifier()
    model.compile(optimizer=nj.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy", seed=1)
    recorder, taken = snapshots()
    best_path = str(tmp_path / "best")
    named = nj.callbacks.ModelCheckpoint(str(tmp_path / "e{epoch}-{val_loss:.4f}"), save_best_only=True, save_weights_only=True)
    history = model.fit(x, y, epochs=8, batch_size=32, validation_split=0.25, verbose=0, callbacks=[
        recorder, named, nj.callbacks.ModelCheckpoint(best_path, monitor="val_loss", save_best_only=True, save_weights_only=True)])
    val_loss = history.history["val_loss"]
    best = int(np.argmin(val_loss))
    assert best < len(val_loss) - 1, "the run should get worse after its best epoch for this test to mean something"
    fresh = small_classifier()
    fresh.load_weights(best_path)
    for loaded, kept in zip(fresh.get_weights(), taken[best], strict=True):
        np.testing.assert_array_equal(loaded, kept)
    # One folder per improvement, named from the logs of that epoch.
    improved = [e for e in range(len(val_loss)) if val_loss[e] < min(val_loss[:e], default=math.inf)]
    expected = {f"e{e + 1}-{val_loss[e]:.4f}" for e in improved}
    assert expected <= set(os.listdir(tmp_path)) and len(expected) == len(named.saved)


def test_model_checkpoint_save_freq_in_steps(tmp_path):
    x, y = random_labels(n=64)
    model = small_classifier()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", steps_per_execution=2)
    checkpoint = nj.callbacks.ModelCheckpoint(str(tmp_path / "s-{epoch}-{batch}"), save_freq=3, save_weights_only=True)
    model.fit(x, y, batch_size=8, epochs=2, verbose=0, callbacks=[checkpoint])  # 8 steps per epoch, 2 per execution
    # Executions end after steps 2, 4, 6, 8 of each epoch; a save happens at the first one reaching 3 more steps.
    assert [os.path.basename(p) for p in checkpoint.saved] == ["s-1-3", "s-1-7", "s-2-3", "s-2-7"]


def test_model_checkpoint_filepath_error_lists_keys(tmp_path):
    x, y = random_labels(n=32)
    model = small_classifier()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    with pytest.raises(ValueError, match="names 'val_auc' which is not logged"):
        model.fit(x, y, epochs=1, verbose=0, callbacks=[nj.callbacks.ModelCheckpoint(str(tmp_path / "{val_auc}"))])


# ---------------------------------------------------------------------------------------------- learning rate
def test_learning_rate_scheduler_sets_the_rates_and_history_records_them():
    """Full-batch SGD on a linear model: the weights follow the scheduled rates, computed by hand."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, 3)).astype(np.float32)
    y = rng.normal(size=(16, 1)).astype(np.float32)
    model = nj.Sequential([nj.layers.Dense(1, input_shape=(3,), use_bias=False)])
    model.compile(optimizer=nj.optimizers.SGD(0.5), loss="mse")
    kernel = model.get_weights()[0].astype(np.float64)
    scheduler = nj.callbacks.LearningRateScheduler(lambda epoch, lr: 0.1 if epoch == 0 else lr * 0.5)
    history = model.fit(x, y, batch_size=16, epochs=4, shuffle=False, verbose=0, callbacks=[scheduler])
    rates = [0.1, 0.05, 0.025, 0.0125]
    assert history.history["learning_rate"] == pytest.approx(rates, rel=1e-6)
    for lr in rates:
        kernel = kernel - lr * (x.T.astype(np.float64) @ (2 * (x @ kernel - y) / len(x)))
    np.testing.assert_allclose(model.get_weights()[0], kernel, rtol=1e-5)


def test_learning_rate_scheduler_old_one_argument_form_and_bad_output():
    x, y = random_labels(n=32)
    model = small_classifier()
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    history = model.fit(x, y, epochs=2, verbose=0, callbacks=[nj.callbacks.LearningRateScheduler(lambda epoch: 0.2 / (epoch + 1))])
    assert history.history["learning_rate"] == pytest.approx([0.2, 0.1])
    with pytest.raises(ValueError, match="must return a float"):
        model.fit(x, y, epochs=1, verbose=0, callbacks=[nj.callbacks.LearningRateScheduler(lambda epoch, lr: "fast")])


def test_reduce_lr_on_plateau_follows_keras_rules():
    """A model that cannot improve (zero weights, zero targets): the rate halves after every `patience` epochs."""
    x = np.ones((8, 2), np.float32)
    y = np.zeros((8, 1), np.float32)
    model = nj.Sequential([nj.layers.Dense(1, input_shape=(2,), kernel_initializer="zeros")])
    model.compile(optimizer=nj.optimizers.SGD(0.1), loss="mse")
    reducer = nj.callbacks.ReduceLROnPlateau(monitor="loss", factor=0.5, patience=1, min_lr=0.03)
    history = model.fit(x, y, epochs=5, verbose=0, callbacks=[reducer])
    assert history.history["learning_rate"] == pytest.approx([0.1, 0.1, 0.05, 0.03, 0.03], rel=1e-6)
    assert json.loads(json.dumps(reducer.get_state()))["best"] == 0.0
    with pytest.raises(ValueError, match="`factor` must be in \\(0, 1\\)"):
        nj.callbacks.ReduceLROnPlateau(factor=1.5)


# ---------------------------------------------------------------------------------------------- CSVLogger
def test_csv_logger_rows_match_history(tmp_path):
    x, y = random_labels(n=96)
    model = small_classifier()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    path = tmp_path / "log.csv"
    history = model.fit(x, y, epochs=3, validation_split=0.25, verbose=0, callbacks=[nj.callbacks.CSVLogger(str(path))])
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["epoch", "accuracy", "loss", "val_accuracy", "val_loss"]
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2]
    for key, values in history.history.items():
        assert [float(r[key]) for r in rows] == values  # exact: full precision in the file
    # append=True continues the same file, with no second header
    model.fit(x, y, epochs=1, validation_split=0.25, verbose=0, callbacks=[nj.callbacks.CSVLogger(str(path), append=True)])
    with open(path, newline="") as f:
        assert len(list(csv.DictReader(f))) == 4


# ---------------------------------------------------------------------------------------------- TensorBoard
def test_crc32c_known_value():
    from nnjax.callbacks.event_file import crc32c

    assert crc32c(b"123456789") == 0xE3069283  # the standard CRC-32C check value


def test_tensorboard_event_files_parse_with_tensorboards_reader(tmp_path):
    event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    x, y = random_labels(n=64)
    model = small_classifier()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"], steps_per_execution=2)
    history = model.fit(x[:48], y[:48], epochs=3, batch_size=8, validation_data=(x[48:], y[48:]), verbose=0,
                        callbacks=[nj.callbacks.TensorBoard(str(tmp_path), update_freq=4)])  # 6 steps per epoch
    train = event_accumulator.EventAccumulator(str(tmp_path / "train"))
    train.Reload()
    assert {"epoch_loss", "epoch_accuracy", "batch_loss", "batch_accuracy"} <= set(train.Tags()["scalars"])
    epoch_loss = train.Scalars("epoch_loss")
    assert [e.step for e in epoch_loss] == [0, 1, 2]
    np.testing.assert_allclose([e.value for e in epoch_loss], history.history["loss"], rtol=1e-6)
    # Every 4 steps, at the first execution (2 steps each) that reaches a multiple of 4: steps 4, 8, 12, 16.
    assert [e.step for e in train.Scalars("batch_loss")] == [4, 8, 12, 16]
    validation = event_accumulator.EventAccumulator(str(tmp_path / "validation"))
    validation.Reload()
    np.testing.assert_allclose([e.value for e in validation.Scalars("epoch_loss")], history.history["val_loss"], rtol=1e-6)
    np.testing.assert_allclose([e.value for e in validation.Scalars("epoch_accuracy")], history.history["val_accuracy"], rtol=1e-6)


def test_tensorboard_refuses_features_it_does_not_write():
    with pytest.raises(ValueError, match="`profile_batch` is not supported"):
        nj.callbacks.TensorBoard(profile_batch=2)
    with pytest.raises(ValueError, match="`write_images` writes the weights at each histogram epoch; set `histogram_freq`"):
        nj.callbacks.TensorBoard(write_images=True)
    with pytest.raises(ValueError, match="`update_freq` must be"):
        nj.callbacks.TensorBoard(update_freq=0)


def test_tensorboard_learning_rate_histograms_images_and_hparams(tmp_path):
    event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    x, y = random_labels(n=32)
    model = small_classifier()
    model.compile(optimizer=nj.optimizers.Adam(0.003), loss="sparse_categorical_crossentropy")
    board = nj.callbacks.TensorBoard(str(tmp_path), histogram_freq=2, write_images=True, hparams={"lr": 0.003, "opt": "adam"})
    model.fit(x, y, epochs=3, batch_size=8, verbose=0, callbacks=[board])
    train = event_accumulator.EventAccumulator(str(tmp_path / "train"), size_guidance={"histograms": 0, "images": 0})
    train.Reload()
    # Keras logs the learning rate at every epoch, schedule or not.
    assert [e.value for e in train.Scalars("epoch_learning_rate")] == pytest.approx([0.003] * 3)
    weights = {"/".join(map(str, path)): np.asarray(v.get_value()) for path, v in model.state.params.flat_state()}
    tag, kernel = next((f"{p}/histogram", w) for p, w in weights.items() if w.ndim == 2)
    events = train.Histograms(tag)
    assert [e.step for e in events] == [0, 2]  # every histogram_freq epochs
    last = events[-1].histogram_value
    assert last.num == kernel.size and sum(last.bucket) == kernel.size and len(last.bucket) == 30
    assert last.min == pytest.approx(kernel.min()) and last.max == pytest.approx(kernel.max())
    assert last.sum == pytest.approx(float(kernel.astype(np.float64).sum()), rel=1e-6)
    image = train.Images(tag.replace("/histogram", "/image"))[-1]
    assert (image.height, image.width) == tuple(sorted(kernel.shape))
    import io

    import matplotlib.image

    pixels = matplotlib.image.imread(io.BytesIO(image.encoded_image_string), format="png")  # a valid PNG, min to max
    assert pixels.shape == (image.height, image.width) and pixels.min() == 0.0 and pixels.max() == 1.0
    from tensorboard.plugins.hparams import plugin_data_pb2

    content = train.PluginTagToContent("hparams")
    session = plugin_data_pb2.HParamsPluginData.FromString(next(iter(content.values()))).session_start_info
    assert session.hparams["lr"].number_value == pytest.approx(0.003) and session.hparams["opt"].string_value == "adam"


# ---------------------------------------------------------------------------------------------- Lambda and the protocol
def test_lambda_callback_and_keras_batch_hook_names():
    x, y = random_labels(n=64)
    model = small_classifier()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", steps_per_execution=2)
    events = []

    class OldStyle(nj.callbacks.Callback):  # Keras users override the old name on_batch_end
        def on_batch_end(self, batch, logs=None):
            events.append(("old", batch, sorted(logs)))

    lam = nj.callbacks.LambdaCallback(
        on_train_begin=lambda logs: events.append(("begin",)),
        on_epoch_end=lambda epoch, logs: events.append(("epoch", epoch, sorted(logs))),
        on_train_batch_end=lambda batch, logs: events.append(("batch", batch)),
        on_test_end=lambda logs: events.append(("test",)),
    )
    model.fit(x, y, epochs=1, batch_size=16, validation_split=0.25, verbose=0, callbacks=[lam, OldStyle()])
    assert events[0] == ("begin",)
    assert [e for e in events if e[0] == "batch"] == [("batch", 1), ("batch", 2)]  # 3 steps: executions of 2 and 1
    assert [e for e in events if e[0] == "old"] == [("old", 1, ["loss"]), ("old", 2, ["loss"])]
    assert ("test",) in events and events[-1] == ("epoch", 0, ["loss", "val_loss"])
    with pytest.raises(TypeError, match="unknown hook 'on_epoch_middle'"):
        nj.callbacks.LambdaCallback(on_epoch_middle=print)


def test_callbacks_without_batch_hooks_cost_no_batch_logs():
    list_ = nj.callbacks.CallbackList([nj.callbacks.LambdaCallback(on_epoch_end=print), nj.callbacks.EarlyStopping(),
                                       nj.callbacks.CSVLogger(os.devnull)], history=nj.callbacks.History())
    assert list_.batch_end_hooks == [] and not list_.needs_batch_logs()


def test_every_callback_state_is_json():
    callbacks = [nj.callbacks.EarlyStopping(), nj.callbacks.ModelCheckpoint("x"), nj.callbacks.ReduceLROnPlateau(),
                 nj.callbacks.CSVLogger("x.csv"), nj.callbacks.TensorBoard(), nj.callbacks.TerminateOnNaN(),
                 nj.callbacks.LearningRateScheduler(lambda e, lr: lr), nj.callbacks.History(), nj.callbacks.SwapEMAWeights()]
    for callback in callbacks:
        state = callback.get_state()
        callback.set_state(json.loads(json.dumps(state)))
        assert callback.get_state() == state, type(callback).__name__


# ---------------------------------------------------------------------------------------------- plot_history
def test_plot_history_draws_one_panel_per_metric_with_training_and_validation(tmp_path):
    x, y = random_labels(n=96)
    model = small_classifier()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    history = model.fit(x, y, epochs=4, validation_split=0.25, verbose=0,
                        callbacks=[nj.callbacks.LearningRateScheduler(lambda epoch, lr: 1e-3 / (epoch + 1))])
    path = tmp_path / "curves.png"
    figure = nj.plot_history(history, to_file=str(path))
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    panels = {ax.get_title(): ax for ax in figure.axes}
    assert list(panels) == ["loss", "accuracy", "learning rate"]
    for name in ("loss", "accuracy"):
        lines = {line.get_label(): line for line in panels[name].get_lines()}
        np.testing.assert_array_equal(lines["training"].get_ydata(), history.history[name])
        np.testing.assert_array_equal(lines["validation"].get_ydata(), history.history[f"val_{name}"])
        np.testing.assert_array_equal(lines["training"].get_xdata(), [1, 2, 3, 4])
    assert panels["learning rate"].get_yscale() == "linear"  # 1e-3 .. 2.5e-4 spans less than 10x
    assert list(nj.viz.plot_history({"loss": [3.0, 2.0]}).axes[0].get_lines()[0].get_ydata()) == [3.0, 2.0]
    with pytest.raises(ValueError, match="the history is empty"):
        nj.viz.plot_history({})
    with pytest.raises(ValueError, match="\\['auc'\\] not in the history"):
        nj.viz.plot_history(history, metrics=["auc"])


def test_rate_callbacks_refuse_an_optimizer_with_a_schedule():
    x, y = random_labels(n=32)
    model = small_classifier()
    model.compile(optimizer=nj.optimizers.Adam(nj.optimizers.schedules.ExponentialDecay(1e-3, 10, 0.5)),
                  loss="sparse_categorical_crossentropy")
    with pytest.raises(ValueError, match="learning rate is a schedule"):
        model.fit(x, y, epochs=1, verbose=0, callbacks=[nj.callbacks.LearningRateScheduler(lambda epoch, lr: lr)])


def test_model_checkpoint_saves_whole_models_that_load_weights_and_load_model_read(tmp_path):
    x, y = random_labels(n=64)
    model = small_classifier()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.fit(x, y, epochs=2, verbose=0, callbacks=[nj.callbacks.ModelCheckpoint(str(tmp_path / "whole"))])
    expected = model.predict(x, verbose=0)
    loaded = nj.models.load_model(str(tmp_path / "whole"))  # Keras's default: the whole model
    np.testing.assert_allclose(loaded.predict(x, verbose=0), expected, rtol=1e-6)
    other = small_classifier()
    other.load_weights(str(tmp_path / "whole"))  # and its weights, as Keras's load_weights reads a .keras file
    np.testing.assert_allclose(other.predict(x, verbose=0), expected, rtol=1e-6)


def test_model_checkpoint_of_a_model_without_config_saves_its_weights_with_a_warning(tmp_path):
    from flax import nnx

    class Linear(nnx.Module):
        def __init__(self, rngs):
            self.dense = nnx.Linear(20, 2, rngs=rngs)

        def __call__(self, x):
            return self.dense(x)

    x, y = random_labels(n=32)
    model = nj.Model(Linear(nnx.Rngs(0)))
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    with pytest.warns(RuntimeWarning, match="cannot be saved whole .* saving its weights instead"):
        model.fit(x, y, epochs=2, verbose=0, callbacks=[nj.callbacks.ModelCheckpoint(str(tmp_path / "w"))])
    again = nj.Model(Linear(nnx.Rngs(1)))
    again.build((None, 20))
    again.load_weights(str(tmp_path / "w"))
    np.testing.assert_allclose(again.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-6)
