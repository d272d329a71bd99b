"""`plot_history`: training curves, one panel per metric, training and validation together."""

from __future__ import annotations

import math
import os

import numpy as np

_TRAIN_COLOR, _VAL_COLOR = "#1f77b4", "#d62728"
_MAXIMISED = ("acc", "auc", "precision", "recall", "f1", "iou")


def _as_dict(history) -> tuple[dict, list | None]:
    if hasattr(history, "history") and isinstance(history.history, dict):
        return history.history, list(getattr(history, "epoch", []) or []) or None
    if isinstance(history, dict):
        return history, None
    raise TypeError(f"plot_history: expected a History (what fit returns) or a dict of lists; got {type(history).__name__}")


def panel_names(keys, metrics, where: str) -> list[str]:
    """One panel per metric of a history's `keys` ("val_x" shares x's panel): "loss" first, "learning_rate" last.

    Raises:
      ValueError: if a name in `metrics` is not in the history.
    """
    keys = list(keys)
    names = [k for k in keys if not k.startswith("val_")]
    names += [k[4:] for k in keys if k.startswith("val_") and k[4:] not in keys]
    names.sort(key=lambda k: (k != "loss", k == "learning_rate", keys.index(k) if k in keys else len(keys)))
    if metrics is not None:
        missing = [m for m in metrics if m not in names]
        if missing:
            raise ValueError(f"{where}: {missing} not in the history; available: {names}")
        names = list(metrics)
    return names


def panel_figure(count: int):
    """A matplotlib Figure (no pyplot, no window) with `count` panels on a grid of up to 3 columns."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    cols = min(count, 3)
    rows = math.ceil(count / cols)
    fig = Figure(figsize=(4.4 * cols, 3.3 * rows), layout="constrained")
    FigureCanvasAgg(fig)
    return fig, [fig.add_subplot(rows, cols, index + 1) for index in range(count)]


def _title(name: str) -> str:
    return name.replace("_", " ")


def plot_history(history, to_file: str | os.PathLike | None = None, metrics=None, dpi: int = 120, title: str | None = None):
    """Draws the curves in a `History`: one panel per metric, training solid, validation dashed.

    Args:
      history: what `fit` returns (or `model.history`), or a dict such as
        `{"loss": [...], "val_loss": [...]}`; an ensemble's `EnsembleHistory` is
        drawn as the members' mean, spread and individual curves.
      to_file: a PNG (or any format matplotlib knows, by extension) to write.
      metrics: names to draw (without "val_"); all of them by default, "loss" first.
      dpi: resolution of the written file.
      title: a title over the whole figure.

    Returns:
      The `matplotlib.figure.Figure` (made without pyplot, so no window opens and
      no global state changes; a notebook displays it).

    Raises:
      ValueError: if the history is empty or a requested metric is not in it.
      TypeError: if `history` is neither a History nor a dict.

    Example:
      >>> history = model.fit(x, y, validation_split=0.2, epochs=3, verbose=0)
      >>> figure = nj.plot_history(history, to_file="curves.png")
    """
    from nnjax.parallel.history import EnsembleHistory

    if isinstance(history, EnsembleHistory):  # per-member curves: mean, spread and members
        return plot_ensemble_history(history, to_file=to_file, metrics=metrics, dpi=dpi, title=title)
    data, epochs = _as_dict(history)
    data = {k: [float(v) for v in values] for k, values in data.items() if len(values)}
    if not data:
        raise ValueError("plot_history: the history is empty: expected at least one epoch of logs; train with fit() first")
    names = panel_names(data, metrics, "plot_history")
    fig, axes = panel_figure(len(names))
    for name, ax in zip(names, axes, strict=True):
        for key, label, color, style in ((name, "training", _TRAIN_COLOR, "-"), (f"val_{name}", "validation", _VAL_COLOR, "--")):
            values = data.get(key)
            if not values:
                continue
            n = len(values)
            base = epochs if epochs is not None and len(epochs) == n else None
            if base is None and key != name and name in data and n < len(data[name]):
                stride = len(data[name]) // n  # validated every `stride` epochs (validation_freq)
                x = np.arange(1, n + 1) * stride
            else:
                x = np.asarray(base) + 1 if base is not None else np.arange(1, n + 1)
            ax.plot(x, values, style, color=color, label=label, marker="o" if n <= 30 else None, markersize=3.5, linewidth=1.6)
            if key.startswith("val_") and name != "learning_rate":
                finite = [(v, xi) for v, xi in zip(values, x, strict=True) if math.isfinite(v)]
                if finite:
                    best = (max if any(m in name for m in _MAXIMISED) else min)(finite)
                    ax.plot([best[1]], [best[0]], "*", color=color, markersize=11, label=f"best {best[0]:.4g} (epoch {best[1]})")
        if name == "learning_rate":
            positive = [v for v in data[name] if v > 0]
            if positive and max(positive) / min(positive) > 10:
                ax.set_yscale("log")
        ax.set_title(_title(name))
        ax.set_xlabel("epoch")
        ax.grid(True, alpha=0.3)
        ax.xaxis.get_major_locator().set_params(integer=True)
        if len(ax.get_lines()) > 1:
            ax.legend(fontsize="small")
    if title:
        fig.suptitle(title)
    if to_file is not None:
        fig.savefig(os.fspath(to_file), dpi=dpi)
    return fig


def plot_ensemble_history(
    history,
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
      >>> ens = nj.parallel.Ensemble(lambda: nj.Sequential([nj.layers.Dense(3, activation="softmax")]), size=2)
      >>> ens.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
      >>> figure = nj.parallel.plot_ensemble_history(ens.fit(x, y, epochs=3, verbose=0), to_file="ensemble.png")
    """
    from nnjax.parallel.history import EnsembleHistory

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


__all__ = ["panel_figure", "panel_names", "plot_ensemble_history", "plot_history"]
