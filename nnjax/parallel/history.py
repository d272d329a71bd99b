"""`EnsembleHistory`: per-member training curves, and `plot_ensemble_history` (mean, spread, members)."""

from __future__ import annotations

import os
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


def plot_ensemble_history(
    history: EnsembleHistory,
    to_file: str | os.PathLike | None = None,
    metrics=None,
    dpi: int = 120,
    title: str | None = None,
    members: bool = True,
):
    """Draws an ensemble's curves: the mean over members, a band of ± one standard deviation, and each member thinly.

    One panel per metric; training solid blue, validation dashed red.

    Args:
      history: what `Ensemble.fit` returns (or `ensemble.history`).
      to_file: a PNG (or any format matplotlib knows, by extension) to write.
      metrics: names to draw (without "val_"); all of them by default, "loss" first.
      dpi: resolution of the written file.
      title: a title over the whole figure.
      members: also draw every member's own curve.

    Returns:
      The `matplotlib.figure.Figure` (made without pyplot: no window, no global state).

    Raises:
      ValueError: if the history is empty or a requested metric is not in it.
      TypeError: if `history` is not an `EnsembleHistory`.

    Example:
      >>> nj.parallel.plot_ensemble_history(ens.fit(x, y, epochs=10), to_file="ensemble.png")
    """
    from nnjax.viz.plot_history import panel_figure, panel_names

    if not isinstance(history, EnsembleHistory):
        raise TypeError(
            f"plot_ensemble_history: expected an EnsembleHistory (what Ensemble.fit returns); got {type(history).__name__}"
        )
    if not history.history:
        raise ValueError("plot_ensemble_history: the history is empty: expected at least one epoch; train with fit() first")
    names = panel_names(history.history, metrics, "plot_ensemble_history")
    fig, axes = panel_figure(len(names))
    for name, ax in zip(names, axes, strict=True):
        for key, label, color, style in ((name, "training", "#1f77b4", "-"), (f"val_{name}", "validation", "#d62728", "--")):
            if key not in history.history:
                continue
            curves = history.curves(key)  # (epochs, size)
            epochs = (
                np.asarray(history.epoch[: len(curves)]) + 1
                if len(history.epoch) >= len(curves)
                else np.arange(1, len(curves) + 1)
            )
            if members:
                ax.plot(epochs, curves, style, color=color, alpha=0.25, linewidth=0.8)
            mean, std = curves.mean(axis=1), curves.std(axis=1)
            ax.fill_between(epochs, mean - std, mean + std, color=color, alpha=0.2, linewidth=0)
            ax.plot(epochs, mean, style, color=color, linewidth=2.0, label=f"{label} (mean ± std of {curves.shape[1]})")
        ax.set_title(name.replace("_", " "))
        ax.set_xlabel("epoch")
        ax.grid(True, alpha=0.3)
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.legend(fontsize="small")
    if title:
        fig.suptitle(title)
    if to_file is not None:
        fig.savefig(os.fspath(to_file), dpi=dpi)
    return fig


__all__ = ["EnsembleHistory", "plot_ensemble_history"]
