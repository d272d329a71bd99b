"""Keras's callback protocol: `Callback`, `CallbackList`, `History`, `ProgbarLogger`.

Callbacks run between compiled steps, on the host, never inside them.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Iterable
from typing import Any

import numpy as np


class Callback:
    """Base class with Keras's hooks; override the ones you need.

    Hooks run on the host between compiled executions. With
    `steps_per_execution=k`, `on_train_batch_begin/end` run once per execution
    (`batch` is the index of its first/last step). The batch-end `logs` are the
    running means of the epoch so far; computing them costs a host sync, so
    they are computed only when a callback overrides a batch-end hook, and not
    at all for one whose `wants_batch_logs()` returns False for that batch
    (`logs` is then None).

    `get_state` / `set_state` carry counters and best values as JSON, and
    `get_array_state` / `set_array_state` carry arrays (best weights), so a
    backup can resume a callback where it was. A restored state is applied
    after every callback's `on_train_begin` and before the first
    `on_epoch_begin` (`set_state` first, then `set_array_state`), so
    `on_train_begin` may reset freely.

    The hooks and what they receive:
      on_train_begin(logs=None) / on_train_end(logs): logs of the last epoch.
      on_epoch_begin(epoch) / on_epoch_end(epoch, logs): `logs` holds "loss",
        each metric, their "val_" versions when validation ran, and
        "learning_rate" when a schedule or a callback sets it.
      on_train_batch_begin(batch) / on_train_batch_end(batch, logs): once per
        execution (see above).
      on_test_begin / on_test_end(logs): around validation and `evaluate`.
      close(): called instead of `on_train_end` when `fit` raises; release what
        you hold (signal handlers, files), keep what you saved.

    During `fit`, `self.model.fit_loop` is the `FitLoop`: its `state`
    (`epoch`, `step`, `steps_per_epoch`, `totals`, `position`),
    `epoch_means()` and `resume(...)` are the public loop state.

    Attributes:
      model: the `nj.Model` being trained (set by `set_model`).
      params: `{"epochs", "steps", "verbose"}` (set by `set_params`).
      runs_last: class attribute; callbacks that set it run after all others in
        every hook (a backup must see the others' state after the same hook).
    """

    runs_last: bool = False

    def __init__(self):
        self.model = None
        self.params: dict[str, Any] = {}

    def set_model(self, model) -> None:
        self.model = model

    def set_params(self, params: dict) -> None:
        self.params = params

    def on_train_begin(self, logs=None): ...
    def on_train_end(self, logs=None): ...
    def on_epoch_begin(self, epoch, logs=None): ...
    def on_epoch_end(self, epoch, logs=None): ...
    def on_train_batch_begin(self, batch, logs=None):
        self.on_batch_begin(batch, logs)  # Keras: the old name is called from the new one

    def on_train_batch_end(self, batch, logs=None):
        self.on_batch_end(batch, logs)

    def on_test_begin(self, logs=None): ...
    def on_test_end(self, logs=None): ...
    def on_test_batch_begin(self, batch, logs=None): ...
    def on_test_batch_end(self, batch, logs=None): ...
    def on_predict_begin(self, logs=None): ...
    def on_predict_end(self, logs=None): ...
    def on_predict_batch_begin(self, batch, logs=None): ...
    def on_predict_batch_end(self, batch, logs=None): ...

    # Keras's older names for the training-batch hooks; override either name.
    def on_batch_begin(self, batch, logs=None): ...
    def on_batch_end(self, batch, logs=None): ...

    def get_state(self) -> dict:
        """JSON-serialisable state to store in a backup (counters, best values)."""
        return {}

    def set_state(self, state: dict) -> None:
        """Restores what `get_state` returned."""

    def get_array_state(self) -> Any | None:
        """Arrays to store in a backup beside the train state, or None (the default: nothing to store).

        Returns:
          A pytree of dicts (str keys) and lists whose leaves are arrays (NumPy or JAX, numeric dtypes),
          e.g. `{"best_weights": [w0, w1, ...]}`. `BackupAndRestore` writes it into its Orbax checkpoint
          (verified with the rest of it) and records its layout, so a resumed fit rebuilds the same
          structure. Keep it to what cannot be recomputed.
        """
        return None

    def set_array_state(self, arrays: Any | None) -> None:
        """Restores what `get_array_state` returned, after `set_state`.

        Args:
          arrays: the saved structure (dicts and lists as saved, leaves as NumPy arrays with the saved
            shapes and dtypes), or None when the backup holds none for this callback (none was saved,
            or the backup was written before callbacks could store arrays). A callback that needed
            its arrays must say so (a warning naming it), never carry on as if it had them.
        """

    def close(self) -> None:
        """Releases resources when `fit` raises (instead of `on_train_end`)."""


def overrides(callback: Callback, hook: str) -> bool:
    """True if `callback` defines its own `hook` (so the loop must compute its logs).

    A hook set on the instance (as `LambdaCallback` does) counts too.
    """
    if hook in vars(callback):
        return True
    return getattr(type(callback), hook, None) is not getattr(Callback, hook, None)


class History(Callback):
    """Records every epoch's logs: `history.history["loss"]` is a list over epochs.

    Every key `fit` logs is recorded: the loss, the metrics, their "val_"
    versions and, when the optimizer has one, "learning_rate" (the rate of the
    epoch's last step).
    """

    def __init__(self):
        super().__init__()
        self.history: dict[str, list] = {}
        self.epoch: list[int] = []
        self.throughput: list[dict] = []  # per epoch: examples/s, steps/s, steps_per_execution (tokens/s, MFU)
        self.steps_per_execution = None  # the fit loop's StepsChoice: what "auto" measured and chose

    def on_train_begin(self, logs=None):
        pass

    def on_epoch_end(self, epoch, logs=None):
        self.epoch.append(epoch)
        for name, value in (logs or {}).items():
            self.history.setdefault(name, []).append(value)

    def get_state(self):
        return {"history": self.history, "epoch": self.epoch}

    def set_state(self, state):
        self.history = {k: list(v) for k, v in state.get("history", {}).items()}
        self.epoch = list(state.get("epoch", []))


def _format_value(value) -> str:
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return str(int(value))
    value = float(value)
    if value != 0 and (abs(value) < 1e-3 or abs(value) >= 1e4):
        return f"{value:.4e}"
    return f"{value:.4f}"


def _format_time(seconds: float) -> str:
    if seconds >= 3600:
        return f"{int(seconds // 3600)}:{int(seconds % 3600 // 60):02d}:{int(seconds % 60):02d}"
    if seconds >= 60:
        return f"{int(seconds // 60)}:{int(seconds % 60):02d}"
    return f"{int(round(seconds))}s"


def _format_per_step(seconds: float) -> str:
    if seconds >= 1:
        return f"{seconds:.0f}s/step"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.0f}ms/step"
    return f"{seconds * 1e6:.0f}us/step"


class Progbar:
    """Keras's progress bar: `12/60 ━━━━━━━━━━━━━━━━━━━━ 3s 52ms/step - loss: 0.4010`.

    In a terminal it redraws one line; when output is piped it writes only the
    final line, so logs stay readable. `compact=True` is Keras's `verbose=2`
    line: `60/60 - 3s - 52ms/step - loss: 0.4010`, with no bar.
    """

    def __init__(self, target: int | None, width: int = 20, stream=None, interval: float = 0.05, dynamic=None,
                 compact: bool = False):
        self.target = target
        self.width = width
        self.stream = stream or sys.stdout
        self.interval = interval
        if dynamic is None:
            dynamic = (hasattr(self.stream, "isatty") and self.stream.isatty()) or "ipykernel" in sys.modules
        self.dynamic = dynamic and not compact
        self.compact = compact
        self.start = time.perf_counter()
        self.last_draw = 0.0
        self.last_len = 0

    def due(self) -> bool:
        return self.dynamic and time.perf_counter() - self.last_draw >= self.interval

    def line(self, current: int, values: dict, finalize: bool, examples: int | None = None) -> str:
        elapsed = time.perf_counter() - self.start
        per_step = elapsed / max(current, 1)
        metrics = [f"{k}: {_format_value(v)}" for k, v in values.items()]
        if examples:  # live throughput: examples trained per second of this epoch
            metrics.insert(0, f"{examples / max(elapsed, 1e-9):.0f} examples/s")
        if self.compact:
            return " - ".join([f"{current}/{self.target or current}", _format_time(elapsed), _format_per_step(per_step)] + metrics)
        if self.target:
            digits = int(math.log10(self.target)) + 1
            done = min(int(self.width * current / self.target), self.width)
            encoding = getattr(self.stream, "encoding", None) or ""
            full, empty = ("\u2501", "\u2500") if "utf" in encoding.lower() else ("=", ".")
            bar = f"{current:>{digits}}/{self.target} " + full * done + empty * (self.width - done)
        else:
            bar = f"{current}/Unknown"
        if finalize or not self.target:
            timing = f"{_format_time(elapsed)} {_format_per_step(per_step)}"
        else:
            timing = f"{_format_time(per_step * (self.target - current))} {_format_per_step(per_step)}"
        return " - ".join([f"{bar} {timing}"] + metrics)

    def update(self, current: int, values: dict, finalize: bool = False, examples: int | None = None) -> None:
        if not finalize and not self.due():
            return
        text = self.line(current, values, finalize, examples)
        if self.dynamic:
            pad = max(self.last_len - len(text), 0)
            self.stream.write("\r" + text + " " * pad + ("\n" if finalize else ""))
            self.last_len = len(text)
        elif finalize:
            self.stream.write(text + "\n")
        self.stream.flush()
        self.last_draw = time.perf_counter()


class ProgbarLogger(Callback):
    """Prints `Epoch k/n` and a live progress bar (`verbose=1`) or one line per epoch (`verbose=2`)."""

    def __init__(self, verbose: int = 1, stream=None):
        super().__init__()
        self.verbose = verbose
        self.stream = stream or sys.stdout
        self.bar: Progbar | None = None
        self.seen = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.stream.write(f"Epoch {epoch + 1}/{self.params.get('epochs')}\n")
        self.stream.flush()
        self.bar = Progbar(self.params.get("steps"), stream=self.stream, dynamic=None if self.verbose == 1 else False,
                           compact=self.verbose != 1)
        self.seen = 0

    def wants_batch_logs(self) -> bool:
        return self.bar is not None and self.bar.due()

    execution_aware = True  # draws once per execution; does not need one step per execution

    def _examples(self) -> int | None:
        loop = getattr(self.model, "fit_loop", None)
        return None if loop is None else loop.state.examples

    def on_train_batch_end(self, batch, logs=None):
        self.seen = batch + 1
        if self.bar is not None and logs is not None:
            self.bar.update(self.seen, logs, examples=self._examples())

    def on_epoch_end(self, epoch, logs=None):
        if self.bar is not None:
            steps = self.params.get("steps") or self.seen
            self.bar.update(steps, logs or {}, finalize=True, examples=self._examples())
        self.bar = None
        loop = getattr(self.model, "fit_loop", None)
        choice = None if loop is None else loop.steps_choice
        if self.verbose == 2 and choice is not None and choice.reason == "measured" and not self._told:
            self.stream.write(choice.describe() + "\n")  # once: what "auto" measured and chose
            self.stream.flush()
            self._told = True

    def on_train_begin(self, logs=None):
        self._told = False


class CallbackList:
    """Calls each hook on every callback, in order; adds `History` and the progress bar."""

    def __init__(self, callbacks: Iterable[Callback] | None, *, model=None, history: History | None = None,
                 verbose: int = 0, epochs: int | None = None, steps: int | None = None):
        callbacks = list(callbacks or [])
        for cb in callbacks:
            if not isinstance(cb, Callback):
                raise TypeError(f"fit(callbacks=...): expected nj.callbacks.Callback instances; got {cb!r}")
        if verbose and not any(isinstance(cb, ProgbarLogger) for cb in callbacks):
            callbacks.append(ProgbarLogger(verbose))
        if history is not None:
            callbacks.insert(0, history)
        self.callbacks = [cb for cb in callbacks if not cb.runs_last] + [cb for cb in callbacks if cb.runs_last]
        for cb in self.callbacks:
            cb.set_model(model)
        self.set_params({"epochs": epochs, "steps": steps, "verbose": verbose})
        self.batch_end_hooks = [cb for cb in self.callbacks if overrides(cb, "on_train_batch_end") or overrides(cb, "on_batch_end")]
        # A callback that changes the learning rate sets `logs_learning_rate = True`: fit then puts the rate in the
        # epoch logs before any on_epoch_end, so History (which runs first) records it.
        self.logs_learning_rate = any(getattr(cb, "logs_learning_rate", False) for cb in self.callbacks)

    def set_params(self, params: dict) -> None:
        for cb in self.callbacks:
            cb.set_params(params)

    def close(self) -> None:
        """Calls every callback's `close()`; errors are swallowed (the error that ended fit is the one to report)."""
        for cb in self.callbacks:
            try:
                cb.close()
            except Exception:  # noqa: BLE001 - the first error is the one to report
                pass

    def needs_batch_logs(self) -> bool:
        """True if some callback will read this step's logs (forces a host sync).

        A callback that reads them only now and then defines `wants_batch_logs()`;
        one that does not is asked every time.
        """
        for cb in self.batch_end_hooks:
            wants = getattr(cb, "wants_batch_logs", None)
            if wants is None or wants():
                return True
        return False

    def __iter__(self):
        return iter(self.callbacks)

    def call(self, hook: str, *args) -> None:
        """Calls `hook(*args)` on every callback; logs of None are passed as `{}`, as Keras passes them."""
        if args and args[-1] is None:
            args = (*args[:-1], {})
        for cb in self.callbacks:
            getattr(cb, hook)(*args)

    def on_train_batch_end(self, batch, logs):
        for cb in self.batch_end_hooks:
            cb.on_train_batch_end(batch, logs)


def to_python(logs: dict) -> dict:
    """Converts device scalars to Python floats."""
    return {k: float(np.asarray(v)) for k, v in logs.items()}


__all__ = ["Callback", "CallbackList", "History", "Progbar", "ProgbarLogger", "overrides", "to_python"]
