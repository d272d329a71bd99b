"""`BackupAndRestore`: Keras's fault-tolerance callback, resuming mid-epoch and bit for bit.

A backup is an `nj.checkpoint.CheckpointManager` folder. Each checkpoint holds
the `TrainState` (params, model state, optimizer state, step, RNG key) as
arrays, and as JSON: the position in the data (`{"epoch", "step"}` plus what the
position is valid for: seed, batch size, dataset size), the running metric sums
of the current epoch (as float32 bit patterns), `History`, and every
callback's `get_state()`. Callbacks' `get_array_state()` (EarlyStopping's best
weights) go into the checkpoint's `arrays` item beside the `TrainState`, with
their layout in the JSON (`callback_arrays`), verified and restored like it.
The order of batches is a pure function of (seed, epoch), so a resumed run sees
exactly the batches the dead one would have.
"""

from __future__ import annotations

import math
import os
import signal
import warnings

import jax
import numpy as np

from nnjax.callbacks import array_layout
from nnjax.callbacks.base import Callback, History, ProgbarLogger
from nnjax.checkpoint.core import _to_json
from nnjax.checkpoint.errors import UntrustedCheckpointError
from nnjax.checkpoint.manager import CheckpointManager
from nnjax.checkpoint.preemption import PreemptionGuard
from nnjax.train import totals as totals_lib

# 2: epoch totals as a list of float32 leaves (every metric kind, ensembles); 3: callbacks' arrays in the `arrays` item
BACKUP_FORMAT = 3
READABLE_FORMATS = (2, 3)
_DATA_KEYS = ("seed", "batch_size", "num_examples", "shuffle", "drop_remainder")


def _finite(value) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return True


def _float32_bits(totals) -> list:
    """Epoch totals as the bit patterns of their float32 leaves: one `[shape, [ints]]` per leaf (exact in JSON)."""
    return [[list(np.shape(leaf)), np.asarray(leaf, np.float32).reshape(-1).view(np.uint32).tolist()]
            for leaf in totals_lib.to_leaves(totals)]


def _from_float32_bits(bits: list) -> list[np.ndarray]:
    return [np.asarray(values, np.uint32).view(np.float32).reshape(shape) for shape, values in bits]


def _valid_bits(entry) -> bool:
    if not (isinstance(entry, list) and len(entry) == 2 and isinstance(entry[0], list) and isinstance(entry[1], list)):
        return False
    shape, values = entry
    if not all(isinstance(d, int) and not isinstance(d, bool) and 0 <= d < 2**31 for d in shape):
        return False
    return len(values) == int(np.prod(shape)) and all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 2**32 for v in values)


def _state_step(state) -> int:
    """The state's step (an ensemble's members all share it)."""
    return int(np.asarray(jax.device_get(state.step)).reshape(-1)[0])




class BackupAndRestore(Callback):
    """Backs up training so that a run killed at any moment resumes where it was, as Keras's `BackupAndRestore`.

    Run the same script again and `fit` continues from the last backup, mid-epoch
    included, ending with the weights an uninterrupted run would have (bit for
    bit on CPU with XLA on one thread). On SIGTERM (preemption) the current step
    finishes, a backup of it is written and the process exits with status 0.
    The backup is deleted when training ends normally; it is kept when training
    was preempted, stopped on a non-finite loss, or raised.

    Args:
      backup_dir: the folder for the backups (one sub-folder per saved step).
      save_freq: "epoch" (at the end of every epoch) or an int N (every N
        training steps, counted across epochs).
      delete_checkpoint: delete the backups when `fit` ends normally.
      max_to_keep: how many recent backups to keep (2: a corrupt latest one falls
        back to the previous one).
      async_save: write backups in the background (a failure is raised at the
        next backup or at the end of `fit`, never dropped).
      exit_on_preemption: after the SIGTERM backup, exit the process (status 0);
        if False, stop training and return from `fit` (`self.preempted` is True).
      preemption_signals: the signals that mean "preempted".
      fsync: flush the backup files to disk before committing each one.

    Attributes:
      restored_step: the step restored at the start of `fit`, or None.
      preempted: True once a preemption signal was handled.

    Example:
      >>> backup = nj.callbacks.BackupAndRestore("run/backup", save_freq=2)
      >>> history = model.fit(x, y, epochs=3, callbacks=[backup], verbose=0)  # rerun after a crash: resumes
    """

    execution_aware = True  # saves at execution boundaries, where the state and the position agree

    def __init__(self, backup_dir: str | os.PathLike, save_freq="epoch", delete_checkpoint: bool = True, *,
                 max_to_keep: int = 2, async_save: bool = True, exit_on_preemption: bool = True,
                 preemption_signals=(signal.SIGTERM,), fsync: bool = True):
        super().__init__()
        if not backup_dir:
            raise ValueError(f"BackupAndRestore: `backup_dir` must be a folder path; got {backup_dir!r}")
        if save_freq != "epoch" and (isinstance(save_freq, bool) or not isinstance(save_freq, int) or save_freq < 1):
            raise ValueError(f"BackupAndRestore: `save_freq` must be 'epoch' or a positive int (steps); got {save_freq!r}")
        self.backup_dir = os.path.abspath(os.fspath(backup_dir))
        self.save_freq = save_freq
        self.delete_checkpoint = delete_checkpoint
        self.max_to_keep = max_to_keep
        self.async_save = async_save
        self.exit_on_preemption = exit_on_preemption
        self.preemption_signals = tuple(preemption_signals)
        self.fsync = fsync
        self.restored_step: int | None = None
        self.preempted = False
        self._manager: CheckpointManager | None = None
        self._guard: PreemptionGuard | None = None
        self._nonfinite = False
        self._last_global: int | None = None
        self._last_saved_step: int | None = None

    # ------------------------------------------------------------------ helpers
    runs_last = True  # a backup sees every other callback's state after the same hook

    def _loop(self):
        loop = getattr(self.model, "fit_loop", None)
        if loop is None:
            raise RuntimeError("BackupAndRestore: it runs inside fit (model.fit_loop is None)")
        return loop

    def _callbacks(self) -> dict:
        """The other callbacks of this fit, by stable name: "EarlyStopping", "EarlyStopping_1", ..."""
        named, counts = {}, {}
        for cb in self._loop().callbacks:
            if isinstance(cb, (History, ProgbarLogger, BackupAndRestore)):
                continue
            name = type(cb).__name__
            n = counts.get(name, 0)
            counts[name] = n + 1
            named[name if n == 0 else f"{name}_{n}"] = cb
        return named

    def _data_fingerprint(self) -> dict:
        source = self._loop().source
        if hasattr(source, "fingerprint"):
            info = dict(source.fingerprint())
        else:
            info = {key: getattr(source, key) for key in _DATA_KEYS if hasattr(source, key)}
        info["steps_per_epoch"] = self.params.get("steps")
        seeds = getattr(self.model, "seeds", None)  # an ensemble: each member has its own data order
        if seeds is not None:
            info["member_seeds"] = [int(seed) for seed in seeds]
        return _to_json(info, "data fingerprint")

    def _global_step(self) -> int:
        position = self._loop().state.position
        steps = self.params.get("steps")
        if steps:
            return int(position["epoch"]) * int(steps) + int(position["step"])
        return _state_step(self.model.state)

    # ------------------------------------------------------------------ save
    def _save(self, position: dict, totals, loss) -> None:
        model = self.model
        states, layouts, arrays = {}, {}, {}
        for name, cb in self._callbacks().items():
            try:
                state = _to_json(cb.get_state(), f"{name}.get_state()")
            except TypeError as err:
                raise TypeError(f"BackupAndRestore: {err}; get_state() must return JSON data") from err
            if state:
                states[name] = state
            tree = cb.get_array_state()
            if tree is not None:
                layouts[name], arrays[name] = array_layout.layout_of(tree, f"BackupAndRestore: {name}.get_array_state()")
        source = self._loop().source
        metadata = {
            "nnjax_backup": BACKUP_FORMAT,
            "position": {"epoch": int(position["epoch"]), "step": int(position["step"])},
            "epoch_totals": None if totals is None else _float32_bits(totals),
            "history": model.history.get_state(),
            "callbacks": states,
            "callback_arrays": layouts,
            "data": self._data_fingerprint(),
            "data_state": source.get_state() if hasattr(source, "get_state") and hasattr(source, "set_state") else None,
        }
        state = model.state
        step = _state_step(state)
        metrics = {"loss": float(loss)} if loss is not None else None
        self._manager.save(step, state, metadata=metadata, metrics=metrics, arrays=arrays or None)
        self._last_saved_step = step

    # ------------------------------------------------------------------ restore
    def _arrays_target(self, meta: dict):
        """The restore target of a backup's `arrays` item, from the layouts its metadata records (None: no item)."""
        layouts = meta.get("callback_arrays") if meta.get("nnjax_backup") == 3 else None
        if not layouts:
            return None
        if not isinstance(layouts, dict):
            raise UntrustedCheckpointError(f"BackupAndRestore: backup in {self.backup_dir!r}: 'callback_arrays' must be an object; got "
                                           f"{type(layouts).__name__}", path=self.backup_dir)
        try:
            return {name: array_layout.target_from_layout(layout, f"callback_arrays[{name!r}]") for name, layout in layouts.items()}
        except ValueError as err:
            raise UntrustedCheckpointError(f"BackupAndRestore: backup in {self.backup_dir!r}: {err}", path=self.backup_dir) from err

    def _restore(self) -> None:
        model = self.model
        restored = self._manager.restore(target=model.state, arrays_target=self._arrays_target)
        meta = restored.metadata
        where = f"BackupAndRestore: backup step {restored.step} in {self.backup_dir!r}"
        position = meta.get("position")
        if (meta.get("nnjax_backup") not in READABLE_FORMATS or not isinstance(position, dict)
                or not all(isinstance(position.get(k), int) and position[k] >= 0 for k in ("epoch", "step"))):
            raise UntrustedCheckpointError(f"{where} is not an nnjax backup of format {' or '.join(map(str, READABLE_FORMATS))} with a "
                                           f"position {{'epoch', 'step'}}; got {sorted(meta)}", step=restored.step, path=self.backup_dir)
        saved_data, data = meta.get("data") or {}, self._data_fingerprint()
        differ = {k: (saved_data[k], v) for k, v in data.items() if k in saved_data and saved_data[k] != v}
        if differ:
            detail = ", ".join(f"{k}: backup {a!r}, this fit {b!r}" for k, (a, b) in differ.items())
            raise ValueError(f"{where} was written for other data or another seed ({detail}); resuming would not reproduce "
                             "the run. Fit the same data with the same compile(seed=...), or use another backup_dir")
        totals = meta.get("epoch_totals")
        if totals is not None and (not isinstance(totals, list) or not all(_valid_bits(v) for v in totals)):
            raise UntrustedCheckpointError(f"{where}: malformed epoch_totals", step=restored.step, path=self.backup_dir)
        loop = self._loop()
        resumed_totals = _from_float32_bits(totals) if position["step"] > 0 and totals is not None else None
        model.state = restored.state
        if isinstance(meta.get("history"), dict):
            model.history.set_state(meta["history"])
        source = loop.source
        if meta.get("data_state") is not None and hasattr(source, "set_state"):
            source.set_state(meta["data_state"])
        callback_states = {}
        callbacks = self._callbacks()
        for name, state in (meta.get("callbacks") if isinstance(meta.get("callbacks"), dict) else {}).items():
            if name in callbacks:
                callback_states[callbacks[name]] = state
            else:
                warnings.warn(f"BackupAndRestore: the backup holds the state of callback {name!r}, which this fit does not have; "
                              "ignored", stacklevel=3)
        saved_arrays = restored.arrays or {}
        for name in saved_arrays:
            if name not in callbacks:
                warnings.warn(f"BackupAndRestore: the backup holds the arrays of callback {name!r}, which this fit does not have; "
                              "ignored", stacklevel=3)
        array_states = {cb: array_layout.to_host(saved_arrays[name]) if name in saved_arrays else None
                        for name, cb in callbacks.items()}
        loop.resume(position["epoch"], position["step"], totals=resumed_totals, callback_states=callback_states,
                    array_states=array_states)
        self.restored_step = restored.step

    # ------------------------------------------------------------------ hooks
    def on_train_begin(self, logs=None):
        model = self.model
        if model is None or not getattr(model, "built", False):
            raise ValueError("BackupAndRestore: the model must be built before training starts")
        self.preempted = False
        self._nonfinite = False
        self.restored_step = None
        self._manager = CheckpointManager(self.backup_dir, max_to_keep=self.max_to_keep, async_save=self.async_save, fsync=self.fsync)
        if self._manager.latest_step() is not None:
            self._restore()
        self._last_global = None  # set at the first epoch begin, when the loop holds the start
        self._guard = PreemptionGuard(self.preemption_signals)
        self._guard.install()

    def on_epoch_begin(self, epoch, logs=None):
        if self._last_global is None:
            self._last_global = self._global_step()

    def _save_due(self) -> bool:
        if not isinstance(self.save_freq, int) or self._last_global is None:
            return False
        return self._global_step() // self.save_freq > self._last_global // self.save_freq

    def wants_batch_logs(self) -> bool:
        return bool(self._guard is not None and self._guard.requested) or self._save_due()

    def on_train_batch_end(self, batch, logs=None):
        if self._manager is None:
            return
        loss = None if logs is None else logs.get("loss")
        if loss is not None and not _finite(loss):
            self._mark_nonfinite(f"the loss is {loss} at step {self._global_step()}")
        if self._nonfinite:
            return  # never back up a state that went through a non-finite loss
        preempted = self._guard is not None and self._guard.requested
        due = self._save_due()
        if not (preempted or due):
            return
        loop = self._loop()
        self._save(loop.state.position, loop.state.totals, loss)
        self._last_global = self._global_step()
        if preempted:
            self._on_preempted()

    def _mark_nonfinite(self, what: str) -> None:
        if not self._nonfinite:
            kept = ("no backup was written before it" if self._last_saved_step is None
                    else f"the backup of step {self._last_saved_step} in {self.backup_dir!r} (the last state before it) is kept "
                         "for a resume")
            warnings.warn(f"BackupAndRestore: {what}; no further backup is written in this fit, so {kept}", stacklevel=3)
        self._nonfinite = True

    def _on_preempted(self) -> None:
        self.preempted = True
        self._manager.wait_until_finished()
        self._guard.uninstall()
        if self.exit_on_preemption:
            self._manager.close()
            self._manager = None
            raise SystemExit(0)
        self.model.stop_training = True

    def on_epoch_end(self, epoch, logs=None):
        if self._manager is None or self.preempted:
            return
        if logs and not all(_finite(v) for k, v in logs.items() if k.endswith("loss")):
            self._mark_nonfinite(f"a loss of epoch {epoch} is not finite ({logs})")
        if self._nonfinite or self.save_freq != "epoch":
            return
        steps = self.params.get("steps")
        if steps is not None and self._loop().state.step != steps:
            return  # an epoch cut short (stop_training mid-epoch) is not a finished epoch
        self._save({"epoch": epoch + 1, "step": 0}, None, (logs or {}).get("loss"))

    def close(self) -> None:
        """Restores the signal handlers and waits for the backup in flight (`fit` does this when it ends;
        call it yourself if `fit` raised and the process goes on)."""
        if self._guard is not None:
            self._guard.uninstall()
            self._guard = None
        manager, self._manager = self._manager, None
        if manager is not None:
            manager.close()

    def on_train_end(self, logs=None):
        manager = self._manager
        self.close()  # raises a failed background save here, at the latest
        if manager is None:
            return
        if logs and not all(_finite(v) for k, v in logs.items() if k.endswith("loss")):
            self._nonfinite = True
        halted = self._loop().halted
        if self.delete_checkpoint and not (self.preempted or self._nonfinite or halted):
            manager.delete_all()


__all__ = ["BackupAndRestore"]
