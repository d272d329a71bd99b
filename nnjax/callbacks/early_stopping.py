"""`EarlyStopping`: stop when a monitored quantity has stopped improving (Keras's arguments and rules)."""

from __future__ import annotations

import warnings

import numpy as np

from nnjax.callbacks.base import Callback
from nnjax.callbacks.monitor import is_improvement, json_float, logged_value, resolve_mode


class EarlyStopping(Callback):
    """Stops training when `monitor` has not improved for `patience` epochs.

    Args:
      monitor: the logged quantity to watch ("val_loss", "val_accuracy", ...).
      min_delta: a change smaller than this is not an improvement.
      patience: epochs without improvement after which training stops.
      verbose: 1 prints a line when stopping and when restoring.
      mode: "auto" (maximise accuracy-like names, minimise the rest), "min" or "max".
      baseline: training stops if the quantity does not beat this within `patience` epochs.
      restore_best_weights: at the end of training, put back the weights of the
        best epoch (host copies taken at each improvement; `BackupAndRestore`
        keeps them in its backups, so a resumed fit still ends with them).
      start_from_epoch: epochs to wait before watching (a warm-up).

    Attributes:
      stopped_epoch: the (0-based) epoch at which training was stopped, 0 if it was not.
      best: the best value seen; best_epoch: its epoch.

    Example:
      >>> history = model.fit(x, y, validation_split=0.2, epochs=100, verbose=0,
      ...                     callbacks=[nj.callbacks.EarlyStopping(patience=3, restore_best_weights=True)])
    """

    def __init__(
        self,
        monitor: str = "val_loss",
        min_delta: float = 0.0,
        patience: int = 0,
        verbose: int = 0,
        mode: str = "auto",
        baseline: float | None = None,
        restore_best_weights: bool = False,
        start_from_epoch: int = 0,
    ):
        super().__init__()
        self.monitor = monitor
        self.min_delta = abs(float(min_delta))
        self.patience = int(patience)
        self.verbose = verbose
        self.mode = resolve_mode("EarlyStopping", monitor, mode)
        self.baseline = baseline
        self.restore_best_weights = restore_best_weights
        self.start_from_epoch = int(start_from_epoch)
        self._reset()

    def _reset(self) -> None:
        self.wait = 0
        self.stopped_epoch = 0
        self.best = None
        self.best_epoch = 0
        self.best_weights = None

    def on_train_begin(self, logs=None):
        self._reset()  # a backup's set_state, if any, comes after on_train_begin

    def on_epoch_end(self, epoch, logs=None):
        if epoch < self.start_from_epoch:
            return
        current = logged_value("EarlyStopping", logs, self.monitor)
        if current is None:
            return
        if self.restore_best_weights and self.best_weights is None:
            # Until something improves, the weights we have are the best ones.
            self.best_weights = self.model.get_weights()
            self.best_epoch = epoch
        self.wait += 1
        if is_improvement(current, self.best, self.mode, self.min_delta):
            self.best = current
            self.best_epoch = epoch
            if self.restore_best_weights:
                self.best_weights = self.model.get_weights()
            if self.baseline is None or is_improvement(current, self.baseline, self.mode, self.min_delta):
                self.wait = 0
            return
        if self.wait >= self.patience and epoch > 0:
            self.stopped_epoch = epoch
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        if self.stopped_epoch > 0 and self.verbose > 0:
            print(f"Epoch {self.stopped_epoch + 1}: early stopping")
        if self.restore_best_weights and self.best_weights is not None:
            if self.verbose > 0:
                print(f"Restoring model weights from the end of the best epoch: {self.best_epoch + 1}.")
            self.model.set_weights(self.best_weights)

    def get_state(self) -> dict:
        """Counters and the best value (the best weights are in `get_array_state`)."""
        return {"wait": self.wait, "stopped_epoch": self.stopped_epoch, "best": json_float(self.best), "best_epoch": self.best_epoch}

    def get_array_state(self) -> dict | None:
        """`{"best_weights": [...]}` (in `model.get_weights()` order) once there are best weights to restore, else None."""
        if not self.restore_best_weights or self.best_weights is None:
            return None
        return {"best_weights": list(self.best_weights)}

    def set_array_state(self, arrays: dict | None) -> None:
        """Puts back the best weights of a backup; warns if the backup has none although a best epoch was recorded.

        Raises:
          ValueError: if the saved weights do not have the model's layout (count, shapes, dtypes).
        """
        if not self.restore_best_weights:
            return
        if arrays is None:
            if self.best is not None or self.best_epoch:
                warnings.warn(
                    f"EarlyStopping: the backup it resumes from holds no best weights (best {self.monitor} {self.best} at epoch "
                    f"{self.best_epoch + 1}); it was written before callbacks could store arrays, or by a fit without "
                    "restore_best_weights. Those weights are lost: at the end of training the weights of a later epoch that beats "
                    "that value are restored, or, if none does, the weights stay those of the last epoch",
                    RuntimeWarning, stacklevel=2)
            return
        weights = arrays.get("best_weights") if isinstance(arrays, dict) else None
        current = self.model.get_weights()
        layout = [(tuple(np.shape(w)), np.asarray(w).dtype) for w in current]
        saved = None if not isinstance(weights, list) else [(tuple(np.shape(w)), np.asarray(w).dtype) for w in weights]
        if saved != layout:
            raise ValueError(f"EarlyStopping: the backup's best weights have the layout {saved} (shape, dtype per variable); this "
                             f"model's weights have {layout}")
        self.best_weights = [np.asarray(w) for w in weights]

    def set_state(self, state: dict) -> None:
        self.wait = int(state.get("wait", 0))
        self.stopped_epoch = int(state.get("stopped_epoch", 0))
        self.best = state.get("best")
        self.best_epoch = int(state.get("best_epoch", 0))


__all__ = ["EarlyStopping"]
