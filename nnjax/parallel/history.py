"""`EnsembleHistory`: per-member training curves (drawn by `nj.viz.plot_ensemble_history`)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from nnjax.callbacks.base import Callback


class EnsembleHistory(Callback):
    """Per-member training curves.

    `history[name]` is a list over epochs; each entry is a list with one float per
    member. `curves(name)` gives them as an array of shape `(epochs, size)`.

    Attributes:
      history: `{"loss": [[m0, m1, ...], ...], "val_loss": ..., ...}`.
      epoch: the epoch indices recorded.
    """

    def __init__(self):
        super().__init__()
        self.history: dict[str, list[list[float]]] = {}
        self.epoch: list[int] = []
        self.throughput: list[dict] = []  # per epoch: examples/s (all members together), steps/s, steps_per_execution
        self.steps_per_execution = None  # the fit loop's StepsChoice

    def record(self, epoch: int, member_logs: Mapping[str, np.ndarray]) -> None:
        """Appends one epoch: `member_logs[name]` has shape `(size,)`."""
        self.epoch.append(int(epoch))
        for name, values in member_logs.items():
            self.history.setdefault(name, []).append([float(v) for v in np.asarray(values).reshape(-1)])

    def curves(self, name: str) -> np.ndarray:
        """The curve of every member: shape `(epochs, size)`.

        Raises:
          KeyError: if `name` was not recorded; the message lists what was.
        """
        if name not in self.history:
            raise KeyError(f"EnsembleHistory: no curve named {name!r}; recorded: {sorted(self.history)}")
        return np.asarray(self.history[name], dtype=np.float64)

    def mean(self, name: str) -> np.ndarray:
        """Mean over members, per epoch: shape `(epochs,)`."""
        return self.curves(name).mean(axis=1)

    def std(self, name: str) -> np.ndarray:
        """Standard deviation over members, per epoch: shape `(epochs,)`."""
        return self.curves(name).std(axis=1)

    def member(self, index: int) -> dict[str, list[float]]:
        """Member `index`'s curves, shaped like a Keras `History.history`."""
        return {name: [epoch_values[index] for epoch_values in values] for name, values in self.history.items()}

    @property
    def size(self) -> int:
        return len(next(iter(self.history.values()))[0]) if self.history else 0

    def get_state(self) -> dict:
        return {"history": self.history, "epoch": self.epoch}

    def set_state(self, state: dict) -> None:
        self.history = {k: [list(e) for e in v] for k, v in state.get("history", {}).items()}
        self.epoch = list(state.get("epoch", []))


__all__ = ["EnsembleHistory"]
