"""Shared by the callbacks that watch a logged quantity: direction ("min"/"max") and improvement."""

from __future__ import annotations

import math
import warnings

import numpy as np

MODES = ("auto", "min", "max")
# In "auto" mode, a monitored name containing one of these is maximised (Keras's rule, widened to its other metrics).
_MAXIMISED = ("acc", "auc", "precision", "recall", "f1", "iou")


def resolve_mode(callback: str, monitor: str, mode: str) -> str:
    """ "min" or "max" for `monitor` under `mode`.

    Raises:
      ValueError: for a mode other than "auto", "min" or "max".
    """
    if mode not in MODES:
        raise ValueError(f"{callback}: `mode` must be one of {MODES}; got {mode!r}")
    if mode != "auto":
        return mode
    name = monitor[4:] if monitor.startswith("val_") else monitor
    return "max" if any(key in name for key in _MAXIMISED) else "min"


def is_improvement(current: float, reference: float | None, mode: str, min_delta: float) -> bool:
    """True if `current` beats `reference` by more than `min_delta` in direction `mode` (None is beaten by anything finite)."""
    if current is None or not math.isfinite(current):
        return False
    if reference is None:
        return True
    if mode == "min":
        return current < reference - min_delta
    return current > reference + min_delta


def logged_value(callback: str, logs: dict | None, monitor: str) -> float | None:
    """`logs[monitor]` as a float, or None (with a warning naming the available keys) if absent."""
    logs = logs or {}
    if monitor not in logs:
        warnings.warn(
            f"{callback}: the monitored quantity {monitor!r} is not in the logs; available: {sorted(logs)}",
            RuntimeWarning,
            stacklevel=3,
        )
        return None
    return float(np.asarray(logs[monitor]))


def json_float(value: float | None):
    """A float for JSON: None and finite floats pass, infinities and NaN become None."""
    if value is None or not math.isfinite(float(value)):
        return None
    return float(value)


__all__ = ["MODES", "is_improvement", "json_float", "logged_value", "resolve_mode"]
