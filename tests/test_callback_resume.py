"""Every stateful callback resumes right through `BackupAndRestore`.

A run is interrupted (an exception from a callback at the end of an epoch, after
the other callbacks have acted and before the backup of that epoch is written,
or in the middle of an epoch) and resumed in a fresh model, and compared with an
uninterrupted run of the same seed: the oracle is that uninterrupted run (its
weights recorded at every epoch, its learning rates, its files). Runs are on CPU
in one process, so the same program on the same values gives the same bits;
weights are compared to 1e-6 all the same.

The callbacks under test share their runs (module fixtures), so the file trains
ten small fits in all.
"""

import csv
import os
import shutil

import jax
import numpy as np
import pytest

import nnjax as nj
import nnjax.callbacks.backup as backup_module
from nnjax.checkpoint import CheckpointManager

EPOCHS = 8
BATCH = 16  # 64 examples: 4 steps per epoch


def data():
    """Training labels follow the inputs; validation labels are random, so val_loss falls, then rises (it overfits)."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 4)).astype(np.float32)
    y = np.abs(x[:, :3]).argmax(1).astype(np.int32)
    x_val = rng.normal(size=(32, 4)).astype(np.float32)
    y_val = rng.integers(0, 3, 32).astype(np.int32)
    return x, y, (x_val, y_val)


def new_model(use_ema=False):
    nj.utils.set_random_seed(0)
    model = nj.Sequential([nj.layers.Dense(8, activation="relu"), nj.layers.Dense(3, activation="softmax")])
    model.build((None, 4))
    model.compile(optimizer=nj.optimizers.Adam(0.05, use_ema=use_ema, ema_momentum=0.8), loss="sparse_categorical_crossentropy",
                  seed=0, steps_per_execution=1)
    return model


class Interrupt(nj.callbacks.Callback):
    """Dies like a killed process: raises at the end of epoch `epoch`, or after training step `step`."""

    def __init__(self, epoch=None, step=None):
        super().__init__()
        self.epoch, self.step = epoch, step

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.epoch:
            raise RuntimeError("interrupted")

    def on_train_batch_end(self, batch, logs=None):
        if self.step is not None and int(jax.device_get(self.model.state.step)) == self.step:
            raise RuntimeError("interrupted")


class Weights(nj.callbacks.Callback):
    """Records the weights at the end of every epoch (before any callback listed after it acts)."""

    def __init__(self):
        super().__init__()
        self.by_epoch = {}

    def on_epoch_end(self, epoch, logs=None):
        self.by_epoch[epoch] = self.model.get_weights()


def fit(model, callbacks):
    x, y, val = data()
    return model.fit(x, y, batch_size=BATCH, epochs=EPOCHS, validation_data=val, verbose=0, callbacks=callbacks)


def interrupted_and_resumed(backup_dir, make_callbacks, interrupt, save_freq="epoch", inspect=None, make_model=new_model):
    """Runs `make_callbacks()` until `interrupt` raises, then again in a fresh model from the backup.

    `inspect(backup_dir)` runs between the two. Returns the resumed `(model, callbacks, backup)`.
    """
    backup = nj.callbacks.BackupAndRestore(backup_dir, save_freq=save_freq)
    first = make_callbacks()
    with pytest.raises(RuntimeError, match="interrupted"):
        fit(make_model(), [*first, interrupt, backup])
    backup.close()
    for callback in first:
        callback.close()
    if inspect is not None:
        inspect(backup_dir)
    model = make_model()
    callbacks = make_callbacks()
    backup = nj.callbacks.BackupAndRestore(backup_dir, save_freq=save_freq)
    fit(model, [*callbacks, backup])
    assert backup.restored_step is not None
    return model, callbacks, backup


def assert_weights_equal(actual, expected):
    assert len(actual) == len(expected)
    for a, e in zip(actual, expected):
        np.testing.assert_allclose(a, e, rtol=0, atol=1e-6)  # same program, same values: equal up to the last bit on CPU


def early_stopping():
    return nj.callbacks.EarlyStopping(monitor="val_loss", patience=EPOCHS, restore_best_weights=True)


def under_test(folder, *, append=False):
    """EarlyStopping, ModelCheckpoint(save_best_only), CSVLogger and TensorBoard, writing into `folder`."""
    return [Weights(), early_stopping(),
            nj.callbacks.ModelCheckpoint(folder / "best", monitor="val_loss", save_best_only=True, save_weights_only=True),
            nj.callbacks.CSVLogger(folder / "log.csv", append=append), nj.callbacks.TensorBoard(folder / "tb", update_freq=1)]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The uninterrupted run; one interrupted at the end of the epoch after the best; one interrupted mid-epoch.

    Both interruptions come after files were written past the last backup (rows, events of the epochs trained again).
    """
    root = tmp_path_factory.mktemp("resume")
    reference = {"folder": root / "reference", "model": new_model()}
    reference["callbacks"] = under_test(reference["folder"])
    reference["history"] = fit(reference["model"], reference["callbacks"]).history
    best = int(np.argmin(reference["history"]["val_loss"]))
    assert best < EPOCHS - 2  # the last epochs are worse: restoring the best weights matters
    reference["best"] = best

    seen = {}

    def inspect(backup_dir):  # the backup left by the interrupted run, read with its arrays
        with CheckpointManager(backup_dir) as mngr:
            step = mngr.latest_step()
            meta = nj.checkpoint.read_metadata(backup_dir / str(step))
            target = nj.callbacks.BackupAndRestore(backup_dir)._arrays_target(meta)
            seen.update(restored=mngr.restore(target=new_model().state, arrays_target=target),
                        files=sorted(os.listdir(backup_dir / str(step))))

    epoch_end = {"folder": root / "epoch_end"}
    epoch_end["model"], epoch_end["callbacks"], epoch_end["backup"] = interrupted_and_resumed(
        root / "backup_epoch_end", lambda: under_test(epoch_end["folder"]), Interrupt(epoch=best + 1), inspect=inspect)
    epoch_end["inspected"] = seen

    mid_epoch = {"folder": root / "mid_epoch"}
    mid_epoch["folder"].mkdir()
    shutil.copy(reference["folder"] / "log.csv", mid_epoch["folder"] / "log.csv")  # an earlier fit's rows, kept by append=True
    mid_epoch["model"], mid_epoch["callbacks"], mid_epoch["backup"] = interrupted_and_resumed(
        root / "backup_mid_epoch", lambda: under_test(mid_epoch["folder"], append=True), Interrupt(step=29), save_freq=3)
    return {"reference": reference, "epoch_end": epoch_end, "mid_epoch": mid_epoch}


RESUMED = ["epoch_end", "mid_epoch"]


def test_runs_were_interrupted_where_intended(runs):
    best = runs["reference"]["best"]
    assert runs["epoch_end"]["backup"].restored_step == (best + 1) * 4  # the backup of the epoch before the interrupted one
    # Backups every 3 steps; interrupted after step 29, so epoch 6 ended (step 28) after the backup of step 27.
    assert runs["mid_epoch"]["backup"].restored_step == 27
    for name in RESUMED:
        assert runs[name]["model"].history.history["val_loss"] == pytest.approx(runs["reference"]["history"]["val_loss"], abs=1e-6)


# ---------------------------------------------------------------------------- EarlyStopping
@pytest.mark.parametrize("name", RESUMED)
def test_early_stopping_restores_the_true_best_weights_after_a_resume(runs, name):
    reference, resumed = runs["reference"], runs[name]
    weights, best = reference["callbacks"][0].by_epoch, reference["best"]
    expected, actual = reference["callbacks"][1], resumed["callbacks"][1]
    assert expected.best_epoch == best
    assert_weights_equal(reference["model"].get_weights(), weights[best])
    assert (actual.best, actual.best_epoch, actual.wait, actual.stopped_epoch) == (
        expected.best, expected.best_epoch, expected.wait, expected.stopped_epoch)
    assert_weights_equal(resumed["model"].get_weights(), weights[best])
    assert not np.allclose(weights[EPOCHS - 1][0], weights[best][0])  # the last epoch's weights would be wrong


def test_the_backup_holds_the_best_weights_in_its_checkpoint(runs):
    restored, files = runs["epoch_end"]["inspected"]["restored"], runs["epoch_end"]["inspected"]["files"]
    assert restored.metadata["nnjax_backup"] == 3 and "arrays" in files
    best_epoch = restored.metadata["callbacks"]["EarlyStopping"]["best_epoch"]
    assert best_epoch == runs["reference"]["best"]
    saved = [np.asarray(w) for w in restored.arrays["EarlyStopping"]["best_weights"]]
    assert_weights_equal(saved, runs["reference"]["callbacks"][0].by_epoch[best_epoch])


def test_a_backup_without_arrays_still_resumes_and_warns_once_naming_early_stopping(tmp_path, monkeypatch):
    with monkeypatch.context() as patch:  # a backup as written before callbacks could store arrays (format 2)
        patch.setattr(backup_module, "BACKUP_FORMAT", 2)
        patch.setattr(nj.callbacks.EarlyStopping, "get_array_state", lambda self: None)
        backup = nj.callbacks.BackupAndRestore(tmp_path / "backup")
        with pytest.raises(RuntimeError, match="interrupted"):
            fit(new_model(), [early_stopping(), Interrupt(epoch=6), backup])
        backup.close()
    assert nj.checkpoint.read_metadata(tmp_path / "backup" / "24")["nnjax_backup"] == 2
    assert "arrays" not in os.listdir(tmp_path / "backup" / "24")
    model, resumed = new_model(), early_stopping()
    backup = nj.callbacks.BackupAndRestore(tmp_path / "backup")
    with pytest.warns(RuntimeWarning) as caught:
        fit(model, [resumed, backup])
    about = [w for w in caught if "holds no best weights" in str(w.message)]
    assert len(about) == 1 and str(about[0].message).startswith("EarlyStopping:"), [str(w.message) for w in caught]
    assert backup.restored_step == 24 and len(model.history.history["loss"]) == EPOCHS


# ---------------------------------------------------------------------------- ModelCheckpoint
@pytest.mark.parametrize("name", RESUMED)
def test_model_checkpoint_best_only_is_not_overwritten_by_a_worse_epoch_after_resume(runs, name):
    reference, resumed = runs["reference"], runs[name]
    weights, best = reference["callbacks"][0].by_epoch, reference["best"]
    expected, actual = reference["callbacks"][2], resumed["callbacks"][2]
    assert actual.best == expected.best and len(actual.saved) == len(expected.saved)
    for folder in (reference["folder"], resumed["folder"]):
        check = new_model()
        check.load_weights(folder / "best")
        assert_weights_equal(check.get_weights(), weights[best])


# ---------------------------------------------------------------------------- CSVLogger
def read_rows(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.reader(f))


def test_csv_logger_has_each_epoch_once_after_resume(runs):
    expected = read_rows(runs["reference"]["folder"] / "log.csv")
    assert [row[0] for row in expected] == ["epoch"] + [str(e) for e in range(EPOCHS)]
    rows = read_rows(runs["epoch_end"]["folder"] / "log.csv")
    assert rows[0] == expected[0] and [row[0] for row in rows] == [row[0] for row in expected]  # one header, each epoch once
    np.testing.assert_allclose(np.asarray(rows[1:], np.float64), np.asarray(expected[1:], np.float64), rtol=0, atol=1e-6)


def test_csv_logger_appends_after_an_earlier_fit_and_has_each_epoch_once_after_a_mid_epoch_resume(runs):
    expected = read_rows(runs["reference"]["folder"] / "log.csv")
    rows = read_rows(runs["mid_epoch"]["folder"] / "log.csv")
    assert rows[: len(expected)] == expected  # the earlier fit's rows are kept (append=True), no second header
    assert [row[0] for row in rows[len(expected):]] == [str(e) for e in range(EPOCHS)]
    np.testing.assert_allclose(np.asarray(rows[len(expected):], np.float64), np.asarray(expected[1:], np.float64), rtol=0, atol=1e-6)


# ---------------------------------------------------------------------------- TensorBoard
def read_events(folder):
    """`[(tag, step, value)]` in file order, for every event file in `folder` (tensorboard's own record reader)."""
    from tensorboard.backend.event_processing.event_file_loader import LegacyEventFileLoader

    events = []
    for name in sorted(os.listdir(folder)):
        for event in LegacyEventFileLoader(os.path.join(folder, name)).Load():
            events.extend((value.tag, event.step, value.simple_value) for value in event.summary.value)
    return events


TIMINGS = ("per_second", "mfu")  # measured throughput: differs from run to run


@pytest.mark.parametrize("name", RESUMED)
def test_tensorboard_steps_continue_after_resume(runs, name):
    for run in ("train", "validation"):
        expected = read_events(runs["reference"]["folder"] / "tb" / run)
        events = read_events(runs[name]["folder"] / "tb" / run)
        assert [(tag, step) for tag, step, _ in events] == [(tag, step) for tag, step, _ in expected], run
        values = [(v, w) for (tag, _, v), (_, _, w) in zip(events, expected) if not any(t in tag for t in TIMINGS)]
        assert len(values) >= EPOCHS
        np.testing.assert_allclose(*zip(*values), rtol=0, atol=1e-6)
        by_tag = {}
        for tag, step, _ in events:
            by_tag.setdefault(tag, []).append(step)
        assert all(steps == sorted(set(steps)) for steps in by_tag.values())  # no repeated or restarted step
    batch_steps = [step for tag, step, _ in read_events(runs[name]["folder"] / "tb" / "train") if tag == "batch_loss"]
    assert batch_steps == list(range(1, EPOCHS * 4 + 1))


# ---------------------------------------------------------------------------- ReduceLROnPlateau
def plateau():
    return nj.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=1, cooldown=1, min_delta=0.02)


def test_reduce_lr_on_plateau_continues_its_learning_rate_sequence(tmp_path):
    model, reference = new_model(), plateau()
    rates = fit(model, [reference]).history["learning_rate"]
    # Reductions before and after the interruption, and a cooldown across it (reduced at the end of epoch 4).
    drops = [epoch for epoch in range(1, EPOCHS) if rates[epoch] < rates[epoch - 1]]
    assert any(d <= 5 for d in drops) and any(d > 6 for d in drops) and rates[5] < rates[4] and rates[6] == rates[5]

    model, (resumed,), _ = interrupted_and_resumed(tmp_path / "backup", lambda: [plateau()], Interrupt(epoch=5))
    assert model.history.history["learning_rate"] == rates
    assert (resumed.best, resumed.wait, resumed.cooldown_counter) == (reference.best, reference.wait, reference.cooldown_counter)
    np.testing.assert_allclose(float(nj.optimizers.get_learning_rate(model.state.opt_state)),
                               float(nj.optimizers.get_learning_rate(reference.model.state.opt_state)), rtol=0)


# ---------------------------------------------------------------------------- SwapEMAWeights
def test_swap_ema_weights_resumes_with_the_weights_swapped_back(tmp_path):
    def ema_model():
        return new_model(use_ema=True)

    model = ema_model()
    history = fit(model, [nj.callbacks.SwapEMAWeights(swap_on_epoch=True)]).history
    # The backup of epoch 3 is taken with the EMA in the weights; the resumed fit must swap them back before training on.
    resumed, _, _ = interrupted_and_resumed(tmp_path / "backup", lambda: [nj.callbacks.SwapEMAWeights(swap_on_epoch=True)],
                                            Interrupt(epoch=4), make_model=ema_model)
    assert resumed.history.history["loss"] == pytest.approx(history["loss"], abs=1e-6)
    assert_weights_equal(resumed.get_weights(), model.get_weights())


# ---------------------------------------------------------------------------- the arrays item's safety
def test_the_arrays_item_is_verified_and_a_corrupt_one_falls_back(tmp_path):
    state = {"w": np.arange(4, dtype=np.float32)}
    old = {"EarlyStopping": {"best_weights": [np.full((2, 3), 1.0, np.float32), np.zeros(3, np.int32)]}}
    new = {"EarlyStopping": {"best_weights": [np.full((2, 3), 2.0, np.float32), np.ones(3, np.int32)]}}
    with CheckpointManager(tmp_path, async_save=False, max_to_keep=None) as mngr:
        mngr.save(1, state, arrays=old)
        mngr.save(2, state, arrays=new)
    target = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), old)
    with CheckpointManager(tmp_path) as mngr:
        restored = mngr.restore(step=2, target=state, arrays_target=target)
        assert [np.asarray(w).tolist() for w in restored.arrays["EarlyStopping"]["best_weights"]] == [
            w.tolist() for w in new["EarlyStopping"]["best_weights"]]
        data = [os.path.join(d, f) for d, _, fs in os.walk(tmp_path / "2" / "arrays") for f in fs if "/d/" in os.path.join(d, f)]
        with open(data[0], "r+b") as f:  # flip one byte of the arrays' data
            byte = f.read(1)
            f.seek(0)
            f.write(bytes([byte[0] ^ 0xFF]))
        with pytest.raises(nj.checkpoint.CheckpointCorruptError):
            mngr.restore(step=2, target=state, arrays_target=target)
        with pytest.warns(UserWarning, match="skipping step 2"):
            restored = mngr.restore(target=state, arrays_target=lambda metadata: target)
        assert restored.step == 1 and np.asarray(restored.arrays["EarlyStopping"]["best_weights"][0]).tolist() == [[1.0] * 3] * 2
        wrong = jax.tree.map(lambda a: jax.ShapeDtypeStruct((a.shape[0] + 1, *a.shape[1:]), a.dtype), old)
        with pytest.raises(nj.checkpoint.CheckpointMismatchError, match="best_weights/0"):
            mngr.restore(step=1, target=state, arrays_target=wrong)


@pytest.mark.parametrize("layout, message", [
    ({"array": {"shape": [2], "dtype": "object"}}, "dtype 'object'"),
    ({"array": {"shape": [-1], "dtype": "float32"}}, "shape \\[-1\\]"),
    ({"dict": {"../x": {"list": []}}}, "not a plain name"),
    ({"tuple": []}, "malformed 'tuple'"),
    ([1, 2], "must be one of"),
])
def test_a_layout_read_from_a_backup_is_checked(layout, message):
    from nnjax.callbacks.array_layout import target_from_layout

    with pytest.raises(ValueError, match=message):
        target_from_layout(layout, "callback_arrays['X']")


def test_array_state_must_be_numeric_arrays_in_dicts_and_lists():
    from nnjax.callbacks.array_layout import layout_of, target_from_layout

    layout, saved = layout_of({"w": (np.zeros((2, 3), np.float32), 3), "n": [np.int32(1)]}, "X.get_array_state()")
    rebuilt = target_from_layout(layout, "X")
    assert jax.tree.map(lambda s: (s.shape, str(s.dtype)), rebuilt) == {"w": [((2, 3), "float32"), ((), "int32")], "n": [((), "int32")]}
    assert isinstance(saved["w"], list)
    with pytest.raises(TypeError, match="X.get_array_state\\(\\): the leaf at \\['w'\\] is an array of dtype <U1"):
        layout_of({"w": np.array(["a"])}, "X.get_array_state()")
    with pytest.raises(TypeError, match="float64, which JAX restores as float32"):
        layout_of({"w": np.zeros(2)}, "X.get_array_state()")
    with pytest.raises(TypeError, match="key 1"):
        layout_of({1: np.zeros(2, np.float32)}, "X.get_array_state()")
