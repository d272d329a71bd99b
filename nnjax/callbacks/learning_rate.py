"""`LearningRateScheduler` and `ReduceLROnPlateau`: change the learning rate between epochs.

Both write the new rate into the optimizer state
(`nj.optimizers.set_learning_rate`), so nothing is recompiled. They need an
optimizer whose learning rate is injected (every nnjax optimizer name and
constructor; for a raw optax transformation use `optax.inject_hyperparams`).
A rate given as a schedule is recomputed by the optimizer at every step, so
setting it from a callback has no lasting effect: use one or the other.
"""

from __future__ import annotations

import inspect
import numbers
from collections.abc import Callable

import numpy as np

from nnjax.callbacks.base import Callback
from nnjax.callbacks.monitor import is_improvement, json_float, logged_value, resolve_mode
from nnjax.train.optimizers import get_learning_rate, set_learning_rate


def current_learning_rate(model, what: str) -> float:
    """The learning rate in `model`'s optimizer state.

    Raises:
      ValueError: if the optimizer has no injected learning rate.
    """
    rate = get_learning_rate(model.state.opt_state)
    if rate is None:
        raise ValueError(
            f"{what}: the optimizer has no learning rate in its state; use an nnjax optimizer "
            "(e.g. 'adam', nj.optimizers.Adam()) or wrap an optax one with optax.inject_hyperparams"
        )
    rate = np.asarray(rate)
    if rate.size > 1:  # an ensemble's members: one shared rate, or a sweep the callback cannot change as one
        if not np.all(rate == rate.reshape(-1)[0]):
            raise ValueError(
                f"{what}: the members' learning rates differ ({rate.reshape(-1).tolist()}, a hyperparameter sweep); a "
                "callback sets one rate for every member. Give the members one learning rate, or schedule each rate "
                "with an optax schedule"
            )
        rate = rate.reshape(-1)[0]
    return float(rate)


def assign_learning_rate(model, value: float) -> None:
    """Writes `value` into `model`'s optimizer state (no recompilation).

    Raises:
      ValueError: if the optimizer's learning rate is a schedule (it would overwrite the value at the next step).
    """
    if getattr(model, "optimizer_has_schedule", False):
        raise ValueError(
            "the optimizer's learning rate is a schedule, which sets the rate at every step; a callback cannot "
            "change it. Use a constant learning_rate with LearningRateScheduler / ReduceLROnPlateau, or the schedule alone"
        )
    state = model.state
    value = np.broadcast_to(np.asarray(value, np.float64), np.shape(get_learning_rate(state.opt_state)))  # every member
    model.state = state.replace(opt_state=set_learning_rate(state.opt_state, value))


def _positional_arity(fn: Callable) -> int:
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return 2
    if any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in params):
        return 2
    return sum(p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD) for p in params)


class LearningRateScheduler(Callback):
    """Sets the learning rate at the start of every epoch to `schedule(epoch, lr)`.

    Args:
      schedule: `fn(epoch, lr) -> new_lr` (epoch is 0-based, lr the current rate),
        or Keras's older one-argument form `fn(epoch) -> new_lr`.
      verbose: 1 prints the new rate each epoch.

    The rate of each epoch appears in the logs and `History` as "learning_rate".

    Example:
      >>> def schedule(epoch, lr):
      ...     return lr if epoch < 10 else lr * 0.9
      >>> history = model.fit(x, y, epochs=12, verbose=0, callbacks=[nj.callbacks.LearningRateScheduler(schedule)])
      >>> [round(float(r), 6) for r in history.history["learning_rate"][9:]]
      [0.001, 0.0009, 0.00081]
    """

    logs_learning_rate = True

    def __init__(self, schedule: Callable, verbose: int = 0):
        super().__init__()
        if not callable(schedule):
            raise TypeError(f"LearningRateScheduler: `schedule` must be callable as schedule(epoch, lr); got {schedule!r}")
        self.schedule = schedule
        self.verbose = verbose
        self._arity = _positional_arity(schedule)

    def on_epoch_begin(self, epoch, logs=None):
        lr = current_learning_rate(self.model, "LearningRateScheduler")
        new = self.schedule(epoch, lr) if self._arity >= 2 else self.schedule(epoch)
        if isinstance(new, np.ndarray) and new.ndim == 0:
            new = new.item()
        if isinstance(new, bool) or not isinstance(new, numbers.Real):
            raise ValueError(f"LearningRateScheduler: schedule({epoch}, {lr}) must return a float; got {new!r}")
        assign_learning_rate(self.model, float(new))
        if self.verbose > 0:
            print(f"\nEpoch {epoch + 1}: LearningRateScheduler setting learning rate to {float(new)}.")


class ReduceLROnPlateau(Callback):
    """Multiplies the learning rate by `factor` when `monitor` stops improving.

    Args:
      monitor: the logged quantity to watch.
      factor: new_lr = lr * factor, in (0, 1).
      patience: epochs without improvement before reducing.
      verbose: 1 prints a line at each reduction.
      mode: "auto", "min" or "max".
      min_delta: a change smaller than this is not an improvement.
      cooldown: epochs to wait after a reduction before counting again.
      min_lr: the rate never goes below this.

    The rate of each epoch (before any reduction at its end) appears in the logs
    and `History` as "learning_rate".

    Raises:
      ValueError: for a `factor` outside (0, 1).
    """

    logs_learning_rate = True

    def __init__(
        self,
        monitor: str = "val_loss",
        factor: float = 0.1,
        patience: int = 10,
        verbose: int = 0,
        mode: str = "auto",
        min_delta: float = 1e-4,
        cooldown: int = 0,
        min_lr: float = 0.0,
    ):
        super().__init__()
        if not 0.0 < factor < 1.0:
            raise ValueError(f"ReduceLROnPlateau: `factor` must be in (0, 1); got {factor!r}")
        self.monitor = monitor
        self.factor = float(factor)
        self.patience = int(patience)
        self.verbose = verbose
        self.mode = resolve_mode("ReduceLROnPlateau", monitor, mode)
        self.min_delta = abs(float(min_delta))
        self.cooldown = int(cooldown)
        self.min_lr = float(min_lr)
        self._reset()

    def _reset(self) -> None:
        self.best = None
        self.wait = 0
        self.cooldown_counter = 0

    def on_train_begin(self, logs=None):
        self._reset()  # a backup's set_state, if any, comes after on_train_begin

    def on_epoch_end(self, epoch, logs=None):
        lr = current_learning_rate(self.model, "ReduceLROnPlateau")
        current = logged_value("ReduceLROnPlateau", logs, self.monitor)
        if current is None:
            return
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.wait = 0
        if is_improvement(current, self.best, self.mode, self.min_delta):
            self.best = current
            self.wait = 0
        elif self.cooldown_counter <= 0:
            self.wait += 1
            if self.wait >= self.patience and lr > np.float32(self.min_lr):
                new = max(lr * self.factor, self.min_lr)
                assign_learning_rate(self.model, new)
                if self.verbose > 0:
                    print(f"\nEpoch {epoch + 1}: ReduceLROnPlateau reducing learning rate to {new}.")
                self.cooldown_counter = self.cooldown
                self.wait = 0

    def get_state(self) -> dict:
        return {"best": json_float(self.best), "wait": self.wait, "cooldown_counter": self.cooldown_counter}

    def set_state(self, state: dict) -> None:
        self.best = state.get("best")
        self.wait = int(state.get("wait", 0))
        self.cooldown_counter = int(state.get("cooldown_counter", 0))


__all__ = ["LearningRateScheduler", "ReduceLROnPlateau", "assign_learning_rate", "current_learning_rate"]
