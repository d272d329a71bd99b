"""`BackupAndRestore` inside one process: what a backup holds, where a resumed fit starts, when backups are kept.

Bit-for-bit resumption is shown across real processes in `test_fault_tolerance.py`;
here the positions, counters and files are checked against hand computations.
"""

import os
import signal

import jax
import numpy as np
import pytest

import nnjax as nj
from nnjax.checkpoint import CheckpointManager
from nnjax.parallel import FSDP

STEPS_PER_EPOCH = 6  # 48 examples, batch 8


def tiny_model(seed=0, **compile_kwargs):
    nj.utils.set_random_seed(seed)
    model = nj.Sequential([nj.layers.Dense(8, activation="relu"), nj.layers.Dense(3, activation="softmax")])
    model.build((None, 4))
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", seed=seed, **compile_kwargs)
    return model


def tiny_data(n=48):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 4)).astype(np.float32)
    return x, (np.abs(x[:, :3]).argmax(1)).astype(np.int32)


class Crash(nj.callbacks.Callback):
    """Dies like a killed process would: an exception after `at_step` training steps."""

    def __init__(self, at_step):
        super().__init__()
        self.at_step = at_step

    def on_train_batch_end(self, batch, logs=None):
        if int(jax.device_get(self.model.state.step)) == self.at_step:
            raise RuntimeError("simulated crash")


class Probe(nj.callbacks.Callback):
    """Records where training starts and what EarlyStopping holds when the first step begins."""

    def __init__(self, early_stopping=None):
        super().__init__()
        self.early_stopping = early_stopping
        self.epochs, self.batches, self.first = [], [], None

    def on_epoch_begin(self, epoch, logs=None):
        self.epochs.append(epoch)

    def on_train_batch_begin(self, batch, logs=None):
        if self.first is None:
            self.first = {"batch": batch, "step": int(jax.device_get(self.model.state.step)),
                          "early_stopping": None if self.early_stopping is None else self.early_stopping.get_state()}
        self.batches.append(batch)


def crash_at(backup_dir, at_step, save_freq, epochs=4, **kwargs):
    model = tiny_model()
    x, y = tiny_data()
    early = nj.callbacks.EarlyStopping(monitor="loss", patience=100)
    backup = nj.callbacks.BackupAndRestore(backup_dir, save_freq=save_freq, **kwargs)
    with pytest.raises(RuntimeError, match="simulated crash"):
        model.fit(x, y, batch_size=8, epochs=epochs, verbose=0, shuffle=True, callbacks=[early, Crash(at_step), backup])
    backup.close()  # the process lives on in a test; a real crash ends it
    return model, early


def test_resume_mid_epoch_restores_position_history_callbacks(tmp_path):
    crashed, early_a = crash_at(tmp_path / "b", at_step=16, save_freq=5)
    # Backups at steps 5, 10, 15 (the last 2 kept); the crash at 16 lost one step.
    assert CheckpointManager(tmp_path / "b").all_steps() == [10, 15]
    history_a = {k: list(v) for k, v in crashed.history.history.items()}
    assert len(history_a["loss"]) == 2  # epochs 0 and 1 finished

    model = tiny_model()
    x, y = tiny_data()
    early = nj.callbacks.EarlyStopping(monitor="loss", patience=100)
    backup = nj.callbacks.BackupAndRestore(tmp_path / "b", save_freq=5)
    probe = Probe(early)
    model.fit(x, y, batch_size=8, epochs=4, verbose=0, callbacks=[early, probe, backup])
    assert backup.restored_step == 15
    # step 15 = epoch 15 // 6 = 2, batch 15 % 6 = 3: training resumes at batch 3 of epoch 2
    assert probe.epochs == [2, 3] and probe.first["batch"] == 3 and probe.first["step"] == 15
    assert probe.batches == [3, 4, 5] + list(range(STEPS_PER_EPOCH))
    assert probe.first["early_stopping"] == early_a.get_state()  # counters as they were after epoch 1
    assert int(model.state.step) == 4 * STEPS_PER_EPOCH
    assert model.history.epoch == [0, 1, 2, 3]
    assert model.history.history["loss"][:2] == history_a["loss"]  # the dead run's epochs, exactly
    assert not os.path.exists(tmp_path / "b")  # training ended normally: the backup is deleted (Keras)


def test_resume_at_epoch_boundary_with_epoch_backups(tmp_path):
    crash_at(tmp_path / "b", at_step=15, save_freq="epoch")
    assert CheckpointManager(tmp_path / "b").all_steps() == [6, 12]
    model = tiny_model()
    x, y = tiny_data()
    backup = nj.callbacks.BackupAndRestore(tmp_path / "b", save_freq="epoch", delete_checkpoint=False)
    probe = Probe()
    model.fit(x, y, batch_size=8, epochs=3, verbose=0, callbacks=[probe, backup])
    assert backup.restored_step == 12 and probe.epochs == [2] and probe.first == {"batch": 0, "step": 12, "early_stopping": None}
    assert CheckpointManager(tmp_path / "b").all_steps() == [12, 18]  # kept: delete_checkpoint=False


def test_backup_holds_sums_of_the_epoch_so_far(tmp_path):
    """The epoch's running loss sum survives the crash: the resumed epoch reports the mean over all its steps."""
    crash_at(tmp_path / "b", at_step=10, save_freq=3, epochs=2)
    mngr = CheckpointManager(tmp_path / "b")
    model = tiny_model()
    restored = mngr.restore(target=model.state)
    totals = restored.metadata["epoch_totals"]
    assert restored.step == 9 and restored.metadata["position"] == {"epoch": 1, "step": 3}
    count = np.asarray(totals["_count"], np.uint32).view(np.float32)
    assert count == 3 * 8  # three batches of 8 examples into epoch 1
    assert restored.metadata["data"]["seed"] == 0 and restored.metadata["data"]["steps_per_epoch"] == STEPS_PER_EPOCH


def test_other_seed_or_data_is_refused(tmp_path):
    crash_at(tmp_path / "b", at_step=8, save_freq=4)
    model = tiny_model(seed=1)
    x, y = tiny_data()
    with pytest.raises(ValueError, match="other data or another seed.*seed: backup 0, this fit 1"):
        model.fit(x, y, batch_size=8, epochs=2, verbose=0, callbacks=[nj.callbacks.BackupAndRestore(tmp_path / "b", save_freq=4)])
    model = tiny_model()
    with pytest.raises(ValueError, match="batch_size: backup 8, this fit 4"):
        model.fit(x, y, batch_size=4, epochs=2, verbose=0, callbacks=[nj.callbacks.BackupAndRestore(tmp_path / "b", save_freq=4)])


def test_nan_keeps_the_backup_and_nothing_after_the_nan_is_saved(tmp_path):
    x, y = tiny_data()
    x[3 * 8 + 2] = 3e38  # finite (it passes the data checks) but overflows in the model: unshuffled, the loss is NaN at step 4
    model = tiny_model()
    backup = nj.callbacks.BackupAndRestore(tmp_path / "b", save_freq=2, max_to_keep=5)
    model.fit(x, y, batch_size=8, epochs=2, verbose=0, shuffle=False, callbacks=[nj.callbacks.TerminateOnNaN(), backup])
    mngr = CheckpointManager(tmp_path / "b")
    assert mngr.all_steps() == [2]  # step 4 had a NaN loss: no backup then or later, and nothing deleted
    restored = mngr.restore(target=model.state)
    assert all(np.isfinite(np.asarray(leaf)).all() for leaf in jax.tree.leaves(restored.state.params))


def test_nonfinite_halt_error_keeps_the_backup(tmp_path):
    x, y = tiny_data()
    x[3 * 8 + 2] = 3e38  # overflows in the model: a NaN loss at step 4
    model = tiny_model(nonfinite="halt")
    backup = nj.callbacks.BackupAndRestore(tmp_path / "b", save_freq=2, async_save=False)
    with pytest.raises(FloatingPointError):
        model.fit(x, y, batch_size=8, epochs=2, verbose=0, shuffle=False, callbacks=[backup])
    backup.close()
    assert CheckpointManager(tmp_path / "b").all_steps() == [2]


class Terminate(nj.callbacks.Callback):
    def __init__(self, at_step):
        super().__init__()
        self.at_step = at_step

    def on_train_batch_end(self, batch, logs=None):
        if int(jax.device_get(self.model.state.step)) == self.at_step:
            os.kill(os.getpid(), signal.SIGTERM)


def test_sigterm_backs_up_the_current_step_and_stops(tmp_path):
    previous = signal.getsignal(signal.SIGTERM)
    model = tiny_model()
    x, y = tiny_data()
    backup = nj.callbacks.BackupAndRestore(tmp_path / "b", save_freq="epoch", exit_on_preemption=False)
    model.fit(x, y, batch_size=8, epochs=4, verbose=0, callbacks=[Terminate(at_step=8), backup])
    assert backup.preempted and int(model.state.step) == 8
    assert signal.getsignal(signal.SIGTERM) is previous
    mngr = CheckpointManager(tmp_path / "b")
    assert mngr.latest_step() == 8  # the step that was running when the signal came; epoch backup at 6 kept too
    assert mngr.all_steps() == [6, 8]
    assert mngr.restore(target=model.state).metadata["position"] == {"epoch": 1, "step": 2}
    # resuming loses no step
    model = tiny_model()
    probe = Probe()
    backup = nj.callbacks.BackupAndRestore(tmp_path / "b", save_freq="epoch")
    model.fit(x, y, batch_size=8, epochs=4, verbose=0, callbacks=[probe, backup])
    assert backup.restored_step == 8 and probe.first["step"] == 8 and probe.first["batch"] == 2
    assert int(model.state.step) == 24


def test_arguments_are_checked():
    with pytest.raises(ValueError, match="save_freq"):
        nj.callbacks.BackupAndRestore("/tmp/x", save_freq="batch")
    with pytest.raises(ValueError, match="save_freq"):
        nj.callbacks.BackupAndRestore("/tmp/x", save_freq=0)
    with pytest.raises(ValueError, match="backup_dir"):
        nj.callbacks.BackupAndRestore("")


def fsdp_model():
    nj.utils.set_random_seed(0)
    model = nj.Sequential([nj.layers.Dense(8, activation="relu"), nj.layers.Dense(3, activation="softmax")])
    model.build((None, 4))
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", seed=0,
                  distribution=FSDP(jax.devices()[:4], min_size=8))
    return model


class StateProbe(nj.callbacks.Callback):
    def on_train_batch_begin(self, batch, logs=None):
        if not hasattr(self, "leaves"):
            self.leaves = jax.tree.leaves(self.model.state)
            self.host = [np.array(leaf) for leaf in self.leaves]


def test_resume_under_fsdp_restores_every_array_in_its_sharding(tmp_path):
    x, y = tiny_data()
    crashed = fsdp_model()
    backup = nj.callbacks.BackupAndRestore(tmp_path / "b", save_freq=3)
    with pytest.raises(RuntimeError, match="simulated crash"):
        crashed.fit(x, y, batch_size=8, epochs=2, verbose=0, callbacks=[Crash(7), backup])
    backup.close()
    single = tiny_model()  # same shapes, one device: an independent read of step 6
    saved = CheckpointManager(tmp_path / "b").restore(target=single.state)
    assert saved.step == 6

    model = fsdp_model()
    placed = [leaf.sharding for leaf in jax.tree.leaves(model.state)]
    probe = StateProbe()
    backup = nj.callbacks.BackupAndRestore(tmp_path / "b", save_freq=3)
    model.fit(x, y, batch_size=8, epochs=2, verbose=0, callbacks=[probe, backup])
    assert backup.restored_step == 6
    assert [leaf.sharding for leaf in probe.leaves] == placed  # FSDP's layout, not the checkpoint's single device
    assert any(len(s.device_set) == 4 and s.spec != jax.sharding.PartitionSpec() for s in placed)
    for got, want in zip(probe.host, jax.tree.leaves(saved.state), strict=True):
        assert np.array_equal(got.reshape(-1).view(np.uint8), np.array(want).reshape(-1).view(np.uint8))


def test_a_second_fit_backs_up_on_its_own_schedule(tmp_path):
    model = tiny_model()
    x, y = tiny_data()
    model.fit(x, y, batch_size=8, epochs=2, verbose=0)  # 12 steps without backups
    backup = nj.callbacks.BackupAndRestore(tmp_path / "b", save_freq=4, delete_checkpoint=False, max_to_keep=5)
    model.fit(x, y, batch_size=8, epochs=2, verbose=0, callbacks=[backup])
    # every 4 steps of this fit: its steps 4, 8, 12 are the state's steps 16, 20, 24
    assert CheckpointManager(tmp_path / "b").all_steps() == [16, 20, 24]


def test_a_failing_fit_restores_signal_handlers_and_keeps_the_backup(tmp_path):
    import signal

    import numpy as np

    import nnjax as nj

    class Boom(nj.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                raise RuntimeError("boom at epoch 1")

    before = signal.getsignal(signal.SIGTERM)
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(64, 4)).astype("float32"), rng.integers(0, 2, 64)
    model = nj.Sequential([nj.layers.Dense(2, activation="softmax", input_shape=(4,))])
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    backup = nj.callbacks.BackupAndRestore(tmp_path / "backup", save_freq="epoch")
    with pytest.raises(RuntimeError, match="boom at epoch 1"):
        model.fit(x, y, epochs=3, verbose=0, callbacks=[backup, Boom()])
    assert signal.getsignal(signal.SIGTERM) is before
    assert [p.name for p in (tmp_path / "backup").iterdir() if p.name.isdigit()]  # the epoch-1 backup is kept
