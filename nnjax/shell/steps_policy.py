"""`steps_per_execution="auto"`: fit measures how many steps to run per compiled execution, and keeps the fastest.

One step per execution pays Python and dispatch costs between steps; a scanned
execution of k steps pays them once, but XLA may compile the step inside a loop
into slower code (XLA:CPU runs convolutions inside a while loop 3-5x slower). So
the answer depends on the model and the device, and fit measures it: during the
first epoch (on device-resident data, or on streamed batches stacked per execution) it runs executions of each candidate size
(the first of each size, which compiles, untimed), times enough of them to cover
`min_steps` steps, and keeps the size with the highest steps/s for the rest of
the fit. Every step is a real training step in order: only how they are grouped
into executions changes, never what is computed. The choice is remembered per
model and data layout, so later `fit` calls start at full speed.

Callbacks that act on every batch (a user's `on_train_batch_begin/end`) keep
Keras's semantics: with one of them present, "auto" runs one step per execution.
Built-in callbacks that handle executions (progress bar, TensorBoard, backups,
checkpoints) set `execution_aware = True` and do not force it.
"""

from __future__ import annotations

import dataclasses
import time

import jax

CANDIDATES = (1, 4, 16, 64)


def forces_single_steps(callbacks) -> bool:
    """True if a callback that is not execution-aware overrides a per-batch training hook."""
    from nnjax.callbacks.base import overrides

    for callback in callbacks:
        if getattr(callback, "execution_aware", False):
            continue
        if any(overrides(callback, hook) for hook in ("on_train_batch_begin", "on_train_batch_end", "on_batch_begin",
                                                       "on_batch_end")):
            return True
    return False


@dataclasses.dataclass
class StepsChoice:
    """What the auto policy measured and chose.

    Attributes:
      steps_per_execution: the size kept for the rest of the fit.
      steps_per_second: measured rate of each candidate size (empty when nothing was measured).
      reason: "measured", "remembered" (an earlier fit measured this layout), "per-batch callbacks",
        "short epoch" (too few steps to compare two sizes) or "fixed".
    """

    steps_per_execution: int
    steps_per_second: dict = dataclasses.field(default_factory=dict)
    reason: str = "measured"

    def describe(self) -> str:
        if self.reason == "fixed":
            return f"steps_per_execution={self.steps_per_execution} (fixed)"
        rates = ", ".join(f"{k}: {v:.0f}" for k, v in sorted(self.steps_per_second.items()))
        return f"steps_per_execution=auto -> {self.steps_per_execution} ({self.reason}{'; steps/s ' + rates if rates else ''})"


class AutoSteps:
    """The measurement plan the fit loop follows during the first epoch (one entry per execution).

    Args:
      available: full-batch steps left in the epoch (what the plan may use).
      candidates: sizes to try, ascending; a size is tried only if its whole window fits.
      min_steps: steps timed per candidate (at least two executions of it).
    """

    def __init__(self, available: int, candidates=CANDIDATES, min_steps: int = 32):
        min_steps = max(2, min(min_steps, available // 8))
        self.plan: list[tuple[int, str]] = []  # (size, mark): "compile" untimed, then "start" .. "stop" timed
        used = 0
        for size in candidates:
            executions = max(2, -(-min_steps // size))
            need = size * (executions + 1)
            if used + need > available:
                break
            used += need
            self.plan += [(size, "compile"), (size, "start")] + [(size, "")] * (executions - 2) + [(size, "stop")]
        if sum(mark == "compile" for _, mark in self.plan) < 2:  # nothing to compare: one step at a time
            self.plan = []
        self.rates: dict[int, float] = {}
        self._start = 0.0
        self._steps = 0
        self.choice: StepsChoice | None = None if self.plan else StepsChoice(1, reason="short epoch")

    def next_size(self) -> int | None:
        """The size of the next measured execution, or None once the plan is done (then `choice` is set)."""
        return self.plan[0][0] if self.plan else None

    def before(self, totals) -> None:
        """Before dispatching the planned execution: a timing window starts once the compiling one is done."""
        if self.plan[0][1] == "start":
            jax.block_until_ready(totals)
            self._start, self._steps = time.perf_counter(), 0

    def after(self, totals) -> None:
        """After dispatching it: a window ends when its last execution is done."""
        size, mark = self.plan.pop(0)
        if mark != "compile":
            self._steps += size
        if mark == "stop":
            jax.block_until_ready(totals)
            self.rates[size] = self._steps / max(time.perf_counter() - self._start, 1e-9)
        if not self.plan:
            best = max(self.rates, key=self.rates.get) if self.rates else 1
            self.choice = StepsChoice(best, dict(self.rates), "measured")

    def finish(self) -> StepsChoice:
        """Ends the plan early (the data ran out or broke it): the fastest size measured, if two were."""
        self.plan = []
        if len(self.rates) >= 2:
            best = max(self.rates, key=self.rates.get)
            self.choice = StepsChoice(best, dict(self.rates), "measured")
        else:
            self.choice = StepsChoice(1, dict(self.rates), "short epoch")
        return self.choice


__all__ = ["CANDIDATES", "AutoSteps", "StepsChoice", "forces_single_steps"]
