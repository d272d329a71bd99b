"""`ModelCheckpoint`: save the model during training, every epoch, every N steps or when it improves."""

from __future__ import annotations

import math
import os
import warnings

import numpy as np

from nnjax.callbacks.base import Callback
from nnjax.callbacks.monitor import is_improvement, json_float, logged_value, resolve_mode


def weights_are_finite(model) -> bool:
    """True if every float variable of a compiled `model` is finite (one small reduction on the device, then a host read)."""
    import jax
    import jax.numpy as jnp

    state = model.state
    flags = [jnp.all(jnp.isfinite(a)) for a in jax.tree.leaves((state.params, state.model_state)) if jnp.issubdtype(a.dtype, jnp.inexact)]
    return bool(np.asarray(jnp.all(jnp.stack(flags)))) if flags else True


class ModelCheckpoint(Callback):
    """Saves the model with Orbax while it trains.

    Each save is a folder (Orbax: TensorStore + JSON, never pickle) that
    `model.load_weights(path)` reads back exactly. Nothing is saved while the
    weights, the loss or the monitored value are not finite (the save is skipped
    with a warning), so a diverging run leaves its last good checkpoint in place.

    With a fixed `filepath`, each save writes the new checkpoint beside the old one
    and swaps it in once committed (`nj.checkpoint.save(..., overwrite=True)`): a
    crash or a full disk mid-save leaves the previous one loadable. A folder that
    nnjax did not write is never replaced: the save raises
    `nj.checkpoint.ForeignFolderError` naming it.

    Args:
      filepath: the folder to write; may contain `{epoch}` (1-based, as Keras),
        `{batch}` and any logged key, e.g. "ckpt/e{epoch:02d}-{val_loss:.3f}".
      monitor: the logged quantity compared with `save_best_only`.
      verbose: 1 prints a line per save.
      save_best_only: save only when `monitor` improves on the best so far (with a
        fixed `filepath` the folder then always holds the best model).
      save_weights_only: True saves the variables (`model.save_weights`); False
        saves with `model.save` when the model has one (the full training state),
        and the variables otherwise.
      mode: "auto", "min" or "max" for `monitor`.
      save_freq: "epoch", or an int: save every this many training steps (with
        `steps_per_execution`, at the first execution that reaches it).
      initial_value_threshold: with `save_best_only`, a value the first save must beat.

    Example:
      >>> ckpt = nj.callbacks.ModelCheckpoint("best", monitor="val_loss", save_best_only=True)
      >>> history = model.fit(x, y, validation_split=0.2, epochs=5, callbacks=[ckpt], verbose=0)
      >>> model.load_weights("best")
    """

    execution_aware = True  # saves at execution boundaries, where the state and the position agree

    def __init__(
        self,
        filepath: str | os.PathLike,
        monitor: str = "val_loss",
        verbose: int = 0,
        save_best_only: bool = False,
        save_weights_only: bool = False,
        mode: str = "auto",
        save_freq="epoch",
        initial_value_threshold: float | None = None,
    ):
        super().__init__()
        if save_freq != "epoch" and (isinstance(save_freq, bool) or not isinstance(save_freq, int) or save_freq < 1):
            raise ValueError(f"ModelCheckpoint: `save_freq` must be 'epoch' or a positive int; got {save_freq!r}")
        self.filepath = os.fspath(filepath)
        self.monitor = monitor
        self.verbose = verbose
        self.save_best_only = save_best_only
        self.save_weights_only = save_weights_only
        self._weights_only_fallback = False
        self.mode = resolve_mode("ModelCheckpoint", monitor, mode)
        self.save_freq = save_freq
        self.best = None if initial_value_threshold is None else float(initial_value_threshold)
        self._steps_since_save = 0
        self._last_step = 0
        self._epoch = 0
        self.saved: list[str] = []  # folders written, in order

    # ------------------------------------------------------------------ hooks
    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch
        self._last_step = int(self.model.fit_loop.state.step) if getattr(self.model, "fit_loop", None) is not None else 0

    def _advance(self, batch: int) -> int:
        return self._steps_since_save + max(batch + 1 - self._last_step, 0)

    def wants_batch_logs(self) -> bool:
        if self.save_freq == "epoch":
            return False
        return self._advance(int(self.model.fit_loop.state.step) - 1) >= self.save_freq

    def on_train_batch_end(self, batch, logs=None):
        if self.save_freq == "epoch":
            return
        self._steps_since_save = self._advance(batch)
        self._last_step = batch + 1
        if self._steps_since_save >= self.save_freq:
            self._steps_since_save = 0
            self._save(self._epoch, batch, logs or {})

    def on_epoch_end(self, epoch, logs=None):
        if self.save_freq == "epoch":
            self._save(epoch, None, logs or {})

    # ------------------------------------------------------------------ saving
    def _path(self, epoch: int, batch: int | None, logs: dict) -> str:
        values = {k: float(np.asarray(v)) for k, v in logs.items()}
        try:
            return self.filepath.format(epoch=epoch + 1, batch=batch, **values)
        except (KeyError, IndexError) as err:
            raise ValueError(
                f"ModelCheckpoint: filepath {self.filepath!r} names {err} which is not logged; available keys: epoch, batch, {sorted(values)}"
            ) from err

    def _save(self, epoch: int, batch: int | None, logs: dict) -> None:
        current = None
        if self.save_best_only:
            current = logged_value("ModelCheckpoint", logs, self.monitor)
            if current is None or not is_improvement(current, self.best, self.mode, 0.0):
                if current is not None and not math.isfinite(current):
                    warnings.warn(f"ModelCheckpoint: {self.monitor} is {current} at epoch {epoch + 1}; not saving", RuntimeWarning, stacklevel=2)
                return
        loss = logs.get("loss")
        if (loss is not None and not math.isfinite(float(np.asarray(loss)))) or not weights_are_finite(self.model):
            warnings.warn(f"ModelCheckpoint: the loss or the weights are not finite at epoch {epoch + 1}; not saving", RuntimeWarning, stacklevel=2)
            return
        path = self._path(epoch, batch, logs)
        if self.save_weights_only or not hasattr(self.model, "save") or self._weights_only_fallback:
            self.model.save_weights(path, overwrite=True)
        else:
            from nnjax.saving.objects import SerializationError

            try:
                self.model.save(path)
            except SerializationError as err:  # e.g. a plain Flax module: no config to save the model whole
                self._weights_only_fallback = True
                warnings.warn(f"ModelCheckpoint: the model cannot be saved whole ({err}); saving its weights instead "
                              "(load them with model.load_weights; pass save_weights_only=True to silence this)",
                              RuntimeWarning, stacklevel=2)
                self.model.save_weights(path, overwrite=True)
        if self.save_best_only:
            self.best = current
        self.saved.append(path)
        if self.verbose > 0:
            what = f"{self.monitor} improved to {current:.5f}, saving" if self.save_best_only else "saving"
            print(f"Epoch {epoch + 1}: {what} model to {path}")

    # ------------------------------------------------------------------ backup
    def get_state(self) -> dict:
        return {"best": json_float(self.best), "steps_since_save": self._steps_since_save, "saved": list(self.saved)}

    def set_state(self, state: dict) -> None:
        self.best = state.get("best")
        self._steps_since_save = int(state.get("steps_since_save", 0))
        self.saved = list(state.get("saved", []))


__all__ = ["ModelCheckpoint", "weights_are_finite"]
