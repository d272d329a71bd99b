"""Small Keras callbacks: `TerminateOnNaN`, `CSVLogger`, `LambdaCallback`, `SwapEMAWeights`."""

from __future__ import annotations

import collections.abc
import csv
import math
import os
import warnings

import numpy as np

from nnjax.callbacks.base import Callback


class TerminateOnNaN(Callback):
    """Stops training as soon as the loss is NaN or infinite.

    It reads the loss after every execution (one host sync each; use
    `steps_per_execution` to amortise it). Training stops at the end of that
    execution; `ModelCheckpoint` refuses to save non-finite weights, so the last
    checkpoint written stays finite. For a policy that never applies a
    non-finite update at all, use `compile(nonfinite="halt")`.

    Args:
      raise_error: raise `RuntimeError` instead of setting `model.stop_training`
        (then `on_train_end` does not run, as in Keras).
    """

    def __init__(self, raise_error: bool = False):
        super().__init__()
        self.raise_error = raise_error
        self.stopped_batch = None

    def on_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is None or math.isfinite(float(np.asarray(loss))):
            return
        self.stopped_batch = batch
        if self.raise_error:
            raise RuntimeError(f"NaN or Inf loss encountered at batch {batch}. Value: {float(loss)}. Terminating training immediately.")
        print(f"Batch {batch}: Invalid loss, terminating training")
        self.model.stop_training = True


def _csv_value(value):
    if isinstance(value, str):
        return value
    if isinstance(value, collections.abc.Iterable) and not (isinstance(value, np.ndarray) and value.ndim == 0):
        return f"[{', '.join(map(str, value))}]"
    return value


class CSVLogger(Callback):
    """Writes one row per epoch to a CSV file: `epoch` then every logged key, sorted.

    Args:
      filename: the CSV file.
      separator: the field separator.
      append: append to an existing file (its header is kept) instead of overwriting it.

    The values are written with full precision (`repr` of the float), so reading
    the file back gives exactly `History.history`. Keys missing in an epoch
    (validation with `validation_freq > 1`) are written as "NA".

    Resumed through `BackupAndRestore`, the file is continued (whatever `append`
    says), cut back first to what it held at the backup: the rows of the epochs
    trained again are written again, so each epoch appears once.
    """

    _unsuffixed = ("learning_rate", "skipped_steps")  # logged once, never with a "val_" twin

    def __init__(self, filename: str | os.PathLike, separator: str = ",", append: bool = False):
        super().__init__()
        self.filename = os.fspath(filename)
        self.sep = separator
        self.append = append
        self.keys: list[str] | None = None
        self._file = None
        self._writer = None
        self._resumed = False

    def on_train_begin(self, logs=None):
        self._close()
        self.keys = None  # a backup's set_state, if any, comes after on_train_begin
        self._resumed = False

    def _open(self):
        mode = "a" if self.append or self._resumed else "w"
        write_header = mode == "w" or not (os.path.exists(self.filename) and os.path.getsize(self.filename) > 0)
        self._file = open(self.filename, mode, newline="", encoding="utf-8")  # noqa: SIM115 - closed in on_train_end

        class Dialect(csv.excel):
            delimiter = self.sep

        self._writer = csv.DictWriter(self._file, fieldnames=["epoch"] + self.keys, dialect=Dialect)
        if write_header:
            self._writer.writeheader()

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if self.keys is None:
            self.keys = sorted(logs)
            if not any(k.startswith("val_") for k in self.keys):
                self.keys += ["val_" + k for k in self.keys if k not in self._unsuffixed]
        if self._writer is None:
            self._open()
        row = {"epoch": epoch}
        row.update((key, _csv_value(logs.get(key, "NA"))) for key in self.keys)
        self._writer.writerow(row)
        self._file.flush()

    def _close(self):
        if self._file is not None:
            self._file.close()
        self._file = None
        self._writer = None

    def on_train_end(self, logs=None):
        self._close()

    def close(self) -> None:
        self._close()

    def _size(self) -> int:
        """The bytes of the file that belong to this fit's result so far (what a resume keeps)."""
        if self._file is not None:
            self._file.flush()
            return os.fstat(self._file.fileno()).st_size
        if (self.append or self._resumed) and os.path.isfile(self.filename):
            return os.path.getsize(self.filename)
        return 0  # not opened yet: the first row will start the file afresh

    def get_state(self) -> dict:
        return {"keys": self.keys, "size": self._size()}

    def set_state(self, state: dict) -> None:
        """Restores the columns and cuts the file back to its size at the backup; the next rows are appended."""
        self.keys = state.get("keys")
        self._resumed = True
        size = state.get("size")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            return  # a backup from before sizes were kept: append to what is there
        have = os.path.getsize(self.filename) if os.path.isfile(self.filename) else None
        if have == size:
            return
        if have is not None and have > size:
            with open(self.filename, "rb") as f:
                f.seek(max(size - 1, 0))
                at_line_end = size == 0 or f.read(1) == b"\n"
            if at_line_end:
                os.truncate(self.filename, size)  # rows of the epochs about to be trained again
                return
        found = "is missing" if have is None else f"has {have} bytes" + (", not ending a row there" if have > size else "")
        warnings.warn(f"CSVLogger: {self.filename} {found}; at the backup it had {size} bytes. The rows of the resumed epochs are "
                      "appended to what is there (rows may be missing or repeated)", RuntimeWarning, stacklevel=2)


class LambdaCallback(Callback):
    """A callback made of plain functions, as Keras's.

    Args:
      on_epoch_begin, on_epoch_end: `fn(epoch, logs)`.
      on_train_begin, on_train_end: `fn(logs)`.
      on_train_batch_begin, on_train_batch_end: `fn(batch, logs)`.
      **kwargs: any other hook by name, e.g. `on_test_end=fn`.

    Only the hooks given are set, so a callback without batch hooks costs the
    training loop nothing per step.
    """

    def __init__(
        self,
        on_epoch_begin=None,
        on_epoch_end=None,
        on_train_begin=None,
        on_train_end=None,
        on_train_batch_begin=None,
        on_train_batch_end=None,
        **kwargs,
    ):
        super().__init__()
        hooks = dict(
            on_epoch_begin=on_epoch_begin,
            on_epoch_end=on_epoch_end,
            on_train_begin=on_train_begin,
            on_train_end=on_train_end,
            on_train_batch_begin=on_train_batch_begin,
            on_train_batch_end=on_train_batch_end,
            **kwargs,
        )
        for name, fn in hooks.items():
            if fn is None:
                continue
            if not name.startswith("on_") or not hasattr(Callback, name):
                raise TypeError(f"LambdaCallback: unknown hook {name!r}; expected one of Callback's on_* methods")
            if not callable(fn):
                raise TypeError(f"LambdaCallback: {name} must be callable; got {fn!r}")
            setattr(self, name, fn)


class SwapEMAWeights(Callback):
    """Evaluates with the exponential moving average of the weights (optimizer `use_ema=True`).

    The EMA weights replace the model's weights for every evaluation (the
    validation in `fit`, `evaluate`) and are swapped back afterwards. With
    `swap_on_epoch=True` they are also in the model between epochs, so
    callbacks such as `ModelCheckpoint` save the EMA weights (put it before
    them, and after `EarlyStopping`, in the callback list).

    Raises:
      ValueError: (when used) if the optimizer keeps no EMA.
    """

    def __init__(self, swap_on_epoch: bool = False):
        super().__init__()
        self.swap_on_epoch = swap_on_epoch
        self._swapped = False

    def _swap(self) -> None:
        from nnjax.train import ema

        self.model.state = ema.swap(self.model.state)
        self._swapped = not self._swapped

    def on_epoch_begin(self, epoch, logs=None):
        if self.swap_on_epoch and self._swapped:
            self._swap()

    def on_epoch_end(self, epoch, logs=None):
        if self.swap_on_epoch and not self._swapped:
            self._swap()
            if epoch == (self.params.get("epochs") or 0) - 1 or self.model.stop_training:
                # fit ends by putting the EMA into the weights; keep the EMA (now in the weights) as the average too.
                from nnjax.train import ema

                state = self.model.state
                self.model.state = state.replace(opt_state=ema.set_ema(state.opt_state, ema.finalize(state).params))
                self._swapped = False

    def on_test_begin(self, logs=None):
        if not self._swapped:
            self._swap()

    def on_test_end(self, logs=None):
        if self._swapped:
            self._swap()

    def get_state(self) -> dict:
        """Whether the EMA is in the weights: a backup taken between epochs holds them swapped."""
        return {"swapped": self._swapped}

    def set_state(self, state: dict) -> None:
        self._swapped = bool(state.get("swapped", False))


__all__ = ["CSVLogger", "LambdaCallback", "SwapEMAWeights", "TerminateOnNaN"]
