"""`FitLoop`: the one training loop behind `Model.fit` and `Ensemble.fit`.

The loop drives a model's `Execution` (the compiled k-step programs of
`nnjax.train.execution`) over a batch source, epoch by epoch, and calls the
callbacks between executions. Its position and running totals are public
(`LoopState`), so callbacks read them and a backup saves and restores them
without touching the model's internals:

    loop = model.fit_loop                  # during fit (callbacks: self.model.fit_loop)
    loop.state.epoch, loop.state.step      # where training is
    loop.epoch_means()                     # the running means of the epoch so far
    loop.resume(epoch=2, step=5, totals=..., callback_states=...)   # from on_train_begin

A model driven by the loop provides: `execution`, `state` (get/set; a
`FlatState` may be stored through `_store_state`), `metric_names()`,
`_orders(source, epoch)`, `_check_halt(state)`, `_optimizer_logs(callbacks)`,
`_epoch_logs(epoch, raw_logs)`, `_evaluate_source(source, keep_on_device)` and
`stop_training`.
"""

from __future__ import annotations

import dataclasses
import time
import weakref
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from nnjax.callbacks.base import CallbackList
from nnjax.data.arrays import ArraySource
from nnjax.data.prefetch import group_executions, prefetch_to_device
from nnjax.shell.steps_policy import AutoSteps, StepsChoice, forces_single_steps
from nnjax.train import nonfinite as nonfinite_lib
from nnjax.train import optimizers as optimizers_lib
from nnjax.train import totals as totals_lib
from nnjax.train.execution import FlatState, batch_size_of

# In-memory datasets up to this size live on the device for the whole fit.
DEVICE_RESIDENT_BYTES = 2 << 30


def _tree_bytes(tree) -> int:
    return sum(int(np.asarray(a).nbytes) if not hasattr(a, "nbytes") else int(a.nbytes) for a in jax.tree.leaves(tree))


def _layout_key(source) -> tuple:
    if not hasattr(source, "arrays"):  # a streaming source: the layout of its first batch
        leaves = [leaf for part in source.peek() if part is not None for leaf in jax.tree.leaves(part)]
        size = np.shape(leaves[0])[0] if leaves else 0
        return ("stream", size, tuple((np.shape(a)[1:], np.asarray(a).dtype.str) for a in leaves))
    leaves = [leaf for part in source.arrays if part is not None for leaf in jax.tree.leaves(part)]
    return (source.batch_size, tuple((np.shape(a)[1:], np.asarray(a[:0]).dtype.str) for a in leaves))  # not N: per-step costs


def tokens_per_example(source) -> int | None:
    """Tokens per example for sequence models fed integer ids `(B, T)`, else None."""
    leaves = jax.tree.leaves(source.peek()[0])
    if len(leaves) == 1 and np.issubdtype(np.asarray(leaves[0]).dtype, np.integer) and np.ndim(leaves[0]) == 2:
        return int(np.shape(leaves[0])[1])
    return None


class FitMemory:
    """What a model keeps between `fit` calls, so a call costs little more than its steps:

    - the in-memory data placed on the device, reused while the same arrays (by identity) are passed;
    - the steps per execution that "auto" measured, per data layout;
    - the FLOPs of a training step (for MFU), per data layout.
    """

    def __init__(self):
        self._device = None  # (weak references to the arrays, the placed data)
        self._steps: dict = {}
        self._flops: dict = {}

    def device_arrays(self, source, execution):
        leaves = [leaf for part in source.arrays if part is not None for leaf in jax.tree.leaves(part)]
        cached = self._device
        if cached is not None and cached[2] is execution and len(cached[0]) == len(leaves) and all(
                r() is a for r, a in zip(cached[0], leaves)):
            return cached[1]
        placed = execution.place_data(source.arrays)
        try:
            self._device = ([weakref.ref(a) for a in leaves], placed, execution)
        except TypeError:  # not weak-referenceable: placed at every call
            self._device = None
        return placed

    def steps(self, source) -> int | None:
        return self._steps.get(_layout_key(source))

    def remember_steps(self, source, k: int) -> None:
        self._steps[_layout_key(source)] = k

    def flops_per_step(self, model, source) -> float | None:
        """FLOPs of one training step from XLA's cost analysis; None unless a peak is known (accelerators,
        or `$NNJAX_PEAK_FLOPS`), so a CPU run pays nothing."""
        from nnjax.bench.flops import peak_flops, step_cost
        from nnjax.train.steps import train_step

        if peak_flops() is None or not hasattr(source, "arrays"):
            return None
        key = _layout_key(source)
        if key not in self._flops:
            batch = jax.tree.map(lambda a: a[0], model.execution.place_batches([source.peek()]))
            self._flops[key] = step_cost(jax.jit(train_step), model.state, batch).get("flops")
        return self._flops[key]

    def clear(self) -> None:
        self.__init__()


class LoopHooks:
    """What the loop asks of the model it trains, for one model; `Ensemble` overrides the member-aware ones."""

    def _zero_totals(self, source):
        """Zero epoch totals for this model's metrics and `source`'s batches."""
        return self.execution.zero_totals(self._stored_state_tree(), source.peek())

    def _stored_state_tree(self):
        stored = self._stored_state()
        return stored.tree() if isinstance(stored, FlatState) else stored

    def _totals_result(self, totals) -> dict:
        members = self.execution.members is not None
        if not members:  # the compiled metric objects hold the values so far, as Keras's do
            totals_lib.write_back(self.state.config, totals)
        return totals_lib.result(self.state.config, totals, members=members)

    def _epoch_result(self, totals) -> dict:
        """The values an epoch (or an evaluation) ends with (`_totals_result` unless a Keras-form step's rule applies)."""
        return self._totals_result(totals)

    def _orders(self, source, epoch: int):
        """The device-resident example order of `epoch`: int32 `(N,)`."""
        return jnp.asarray(source.order(epoch), jnp.int32)

    def _check_halt(self, stored) -> Exception | None:
        """The error that stops training under `nonfinite="halt"` (one host sync per execution), or None."""
        if self._compiled.nonfinite is None:
            return None
        state = stored.tree() if isinstance(stored, FlatState) else stored
        error = nonfinite_lib.halt_error(state)
        if error is not None:
            self._state = nonfinite_lib.clear_halt(state)
        return error

    def _optimizer_logs(self, callbacks) -> dict:
        """`learning_rate` (when a schedule or a callback changes it) and, under nonfinite="skip", `skipped_steps`."""
        logs = {}
        opt_state = self.state.opt_state
        logged = self._compiled.log_learning_rate or callbacks.logs_learning_rate
        rate = optimizers_lib.get_learning_rate(opt_state) if logged else None
        if rate is not None:
            logs["learning_rate"] = self._reduce_value(np.asarray(rate, np.float64))
        if self._compiled.nonfinite is not None and self._compiled.nonfinite.mode == "skip":
            logs["skipped_steps"] = nonfinite_lib.skipped_steps(opt_state)
        return logs

    @staticmethod
    def _reduce_value(value):
        return float(value)

    def _reduce(self, logs: dict) -> dict:
        """Logs as callbacks see them (an ensemble averages its members)."""
        return logs

    def _epoch_logs(self, epoch: int, raw: dict) -> dict:
        return self._reduce(raw)


@dataclasses.dataclass
class LoopState:
    """Where a fit is.

    Attributes:
      epoch: the current epoch (0-based; `epochs` once training ended).
      step: training steps done in the current epoch.
      steps_per_epoch: steps in each epoch (None for an unsized stream).
      totals: the running metric sums of the current epoch (`nnjax.train.totals`), on the device.
      start: the `(epoch, step)` where this fit started or resumed.
      examples: examples trained on in the current epoch so far.
    """

    epoch: int = 0
    step: int = 0
    steps_per_epoch: int | None = None
    totals: Any = None
    start: tuple[int, int] = (0, 0)
    examples: int = 0

    @property
    def position(self) -> dict:
        """`{"epoch", "step"}`: the position of the next batch (what a backup stores)."""
        return {"epoch": int(self.epoch), "step": int(self.step)}


class FitLoop:
    """Trains `model` on `source` for epochs `initial_epoch .. epochs-1`, calling `callbacks` between executions.

    Args:
      model: a `Model` (or `Ensemble`) that is compiled and built.
      source: the training `BatchSource`.
      val_source: a source to evaluate every `validation_freq` epochs, or None.
      callbacks: the fit's `CallbackList` (History and the progress bar included).
      epochs, initial_epoch, steps_per_epoch, validation_freq: as in `Model.fit`.
    """

    def __init__(self, model, source, val_source, callbacks: CallbackList, *, epochs: int, initial_epoch: int = 0,
                 steps_per_epoch: int | None = None, validation_freq: int = 1):
        self.model = model
        self.source = source
        self.val_source = val_source
        self.callbacks = callbacks
        self.epochs = int(epochs)
        self.validation_freq = validation_freq
        steps = source.steps_per_epoch if steps_per_epoch is None else min(steps_per_epoch, source.steps_per_epoch or steps_per_epoch)
        self.state = LoopState(epoch=initial_epoch, step=0, steps_per_epoch=steps, start=(initial_epoch, 0))
        self.halted = False  # set when a non-finite policy stopped training (a backup keeps its checkpoint)
        self.steps_choice: StepsChoice | None = None  # how many steps each execution runs, and why
        self.throughput: list[dict] = []  # per epoch: examples/s, steps/s (tokens/s, MFU where known)
        self._tuner: AutoSteps | None = None
        self._tokens: int | None = None  # tokens per example (0: not a sequence of ids), found at the first epoch
        self._resume_totals = None
        self._callback_states: dict | None = None
        self._array_states: dict | None = None

    # ------------------------------------------------------------------ public API for callbacks
    def epoch_means(self) -> dict:
        """The running means of the current epoch (floats; arrays `(members,)` for an ensemble), or {}."""
        return {} if self.state.totals is None else self.model._totals_result(self.state.totals)

    def resume(self, epoch: int, step: int, *, totals: dict | None = None, callback_states: dict | None = None,
               array_states: dict | None = None) -> None:
        """Makes this fit continue at `(epoch, step)` (call it from `on_train_begin`).

        Args:
          epoch, step: the position of the next batch.
          totals: the epoch's running totals at that position, as `nnjax.train.totals.to_leaves` gives them, to
            resume mid-epoch with the values an uninterrupted run would report (checked against this fit's
            totals when the epoch starts).
          callback_states: `{callback: state}`; each callback's `set_state(state)` is called once every
            `on_train_begin` has run, before the first epoch begins.
          array_states: `{callback: arrays or None}`; each callback's `set_array_state(arrays)` is called
            after every `set_state`.

        """
        self.state.epoch, self.state.step = int(epoch), int(step)
        self.state.start = (int(epoch), int(step))
        self._resume_totals = totals if step > 0 else None
        self._callback_states = callback_states
        self._array_states = array_states

    # ------------------------------------------------------------------ the loop
    def run(self) -> dict:
        """Runs the fit; returns the last epoch's logs."""
        model, callbacks, state = self.model, self.callbacks, self.state
        source = self.source
        resident = isinstance(source, ArraySource) and _tree_bytes(source.arrays) <= DEVICE_RESIDENT_BYTES
        device_data = model.fit_memory.device_arrays(source, model.execution) if resident else None
        self._choose_steps(resident)
        callbacks.call("on_train_begin", None)
        for callback, saved in (self._callback_states or {}).items():
            callback.set_state(saved)
        for callback, arrays in (self._array_states or {}).items():
            callback.set_array_state(arrays)
        self._callback_states = self._array_states = None
        logs: dict = {}
        start_epoch, start_step = state.epoch, state.step
        for epoch in range(start_epoch, self.epochs):
            state.epoch, state.step = epoch, start_step
            callbacks.call("on_epoch_begin", epoch, None)
            began = time.perf_counter()
            raw = self._train_epoch(device_data, epoch, start_step)  # ends with a host read of the totals
            self._record_throughput(epoch, time.perf_counter() - began, start_step)
            start_step = 0
            if self.val_source is not None and (epoch + 1) % self.validation_freq == 0 and not self.halted:
                callbacks.call("on_test_begin", None)
                val_logs = model._evaluate_source(self.val_source, keep_on_device=True, callbacks=callbacks)
                callbacks.call("on_test_end", val_logs)
                raw.update({f"val_{k}": v for k, v in val_logs.items()})
            raw.update(model._optimizer_logs(callbacks))
            logs = model._epoch_logs(epoch, raw)
            callbacks.call("on_epoch_end", epoch, logs)
            state.epoch, state.step = epoch + 1, 0
            if model.stop_training:
                break
        return logs

    def _train_epoch(self, device_data, epoch: int, start_step: int) -> dict:
        model, source, state = self.model, self.source, self.state
        execution = model.execution
        k = self.steps_choice.steps_per_execution
        state.examples = 0
        totals, self._resume_totals = self._resume_totals, None
        zeros = model._zero_totals(source)
        state.totals = zeros if totals is None else self._resumed_totals(zeros, totals)
        steps_total = state.steps_per_epoch
        step = start_step
        if device_data is not None:
            bs = source.batch_size
            order = model._orders(source, epoch)
            full_steps = min(steps_total, source.num_examples // bs)
            if self._tuner is None and self.steps_choice.reason == "measuring":
                self._tuner = AutoSteps(full_steps - step)
                if self._tuner.choice is not None:  # an epoch too short to measure anything: one step at a time
                    k = self._chosen(self._tuner.choice)
            while step < steps_total and not model.stop_training:
                tuner = self._tuner if self._tuner is not None and self._tuner.choice is None else None
                if tuner is not None and step < full_steps:
                    n, size = tuner.next_size(), bs
                    tuner.before(state.totals)
                elif step < full_steps:
                    # full steps run k at a time (the remaining < k as one execution); the last partial batch alone
                    n, size = self._group_size(step, full_steps, k), bs
                else:
                    n, size = 1, source.num_examples - step * bs
                self.callbacks.call("on_train_batch_begin", step, None)
                flat, totals = execution.train_indexed(model._stored_state(), state.totals, device_data, order, step * bs, n, size)
                if tuner is not None and size == bs:
                    tuner.after(totals)
                    if tuner.choice is not None:
                        k = self._chosen(tuner.choice)
                state.examples += n * size
                step = self._after_execution(flat, totals, step, n)
        else:
            # Groups of up to k equal-size batches (a short last batch alone), stacked and placed on a
            # background thread two executions ahead (double buffering) while the current one trains.
            remaining = None if steps_total is None else steps_total - start_step
            tuner = self._streaming_tuner(remaining)
            sizes = k if tuner is None else self._streaming_sizes(tuner)
            groups = group_executions(self._checked(source.batches(epoch, start_step), epoch, start_step), sizes, remaining)

            def put(group):
                return len(group), sum(batch_size_of(b) for b in group), execution.place_batches(group)

            with prefetch_to_device(groups, put=put, size=2) as placed_groups:
                for n, examples, placed in placed_groups:
                    self.callbacks.call("on_train_batch_begin", step, None)
                    timed = tuner is not None and tuner.choice is None and n == tuner.next_size()
                    if timed:
                        tuner.before(state.totals)
                    flat, totals = execution.train(model._stored_state(), state.totals, placed)
                    if timed:
                        tuner.after(totals)
                        if tuner.choice is not None:
                            self._stream_k = self._chosen(tuner.choice)
                    elif tuner is not None and tuner.choice is None:  # the data broke the plan (a short batch)
                        self._stream_k = self._chosen(tuner.finish())
                    state.examples += examples
                    step = self._after_execution(flat, totals, step, n)
                    if model.stop_training:
                        break
            if tuner is not None and tuner.choice is None:  # the epoch ended before the plan did
                self._stream_k = self._chosen(tuner.finish())
        if step == start_step and start_step == 0:
            raise ValueError("fit: the dataset yielded no batches: expected at least one batch per epoch; received 0")
        return model._epoch_result(state.totals)

    # ------------------------------------------------------------------ steps per execution and throughput
    def _streaming_tuner(self, remaining: int | None) -> AutoSteps | None:
        """The measurement plan of the first streamed epoch under "auto" (None once chosen or when fixed)."""
        if self.steps_choice.reason != "measuring" or self._tuner is not None:
            return None
        self._tuner = AutoSteps(remaining if remaining is not None else 10**6)
        self._stream_k = 1
        if self._tuner.choice is not None:  # too few steps to compare two sizes
            self._chosen(self._tuner.choice)
            return None
        return self._tuner

    def _streaming_sizes(self, tuner: AutoSteps):
        """Group sizes for a streamed epoch: the plan's, then the chosen size (single steps until it is known:
        the groups are formed two executions ahead, on the prefetch thread)."""
        yield from [size for size, _ in tuner.plan]
        while True:
            yield self._stream_k

    def _choose_steps(self, resident: bool) -> None:
        k, model = self.model.steps_per_execution, self.model
        if k != "auto":
            self.steps_choice = StepsChoice(int(k), reason="fixed")
        elif forces_single_steps(self.callbacks):
            self.steps_choice = StepsChoice(1, reason="per-batch callbacks")
        elif model.fit_memory.steps(self.source) is not None:
            self.steps_choice = StepsChoice(model.fit_memory.steps(self.source), reason="remembered")
        else:
            self.steps_choice = StepsChoice(1, reason="measuring")  # until the first epoch's measurements are in

    def _chosen(self, choice: StepsChoice) -> int:
        self.steps_choice = choice
        if choice.reason == "measured":
            self.model.fit_memory.remember_steps(self.source, choice.steps_per_execution)
        return choice.steps_per_execution

    def _group_size(self, step: int, full_steps: int, k: int) -> int:
        """Steps of the next execution: k at a time from the epoch's start, the remaining < k as one execution.

        After measuring, the loop is off the epoch's k-grid: single steps (compiled while measuring) bring it back,
        so every later epoch runs only sizes compiled in the first (no recompilation)."""
        if self.steps_choice.reason == "measured" and step % k:
            return 1
        return min(k, full_steps - step)

    def _record_throughput(self, epoch: int, seconds: float, start_step: int) -> None:
        state = self.state
        steps = state.step - start_step
        info = {"epoch": epoch, "seconds": seconds, "steps_per_second": steps / max(seconds, 1e-9),
                "examples_per_second": state.examples / max(seconds, 1e-9),
                "steps_per_execution": self.steps_choice.steps_per_execution}
        if self._tokens is None:  # peeks at the source once per fit, not every epoch
            self._tokens = tokens_per_example(self.source) or 0
        tokens = self._tokens
        if tokens:
            info["tokens_per_second"] = info["examples_per_second"] * tokens
        flops = self.model.fit_memory.flops_per_step(self.model, self.source)
        if flops:
            from nnjax.bench.flops import mfu, peak_flops

            info["mfu"] = mfu(flops, seconds / max(steps, 1), peak_flops())
        self.throughput.append(info)
        history = self.model.history
        history.throughput = self.throughput
        history.steps_per_execution = self.steps_choice

    @staticmethod
    def _resumed_totals(zeros, leaves):
        try:
            return totals_lib.from_leaves(zeros, leaves)
        except ValueError as err:
            raise ValueError(f"FitLoop.resume: the saved epoch totals do not fit this fit's metrics: {err}") from err

    def _checked(self, batches, epoch: int, start_step: int):
        """Streamed batches, each checked on the host (values, label ranges) before it is trained on."""
        for step, batch in enumerate(batches, start_step):
            self.model._check_batch(batch, f"fit (batch {step} of epoch {epoch})")
            yield batch

    def _after_execution(self, flat, totals, step: int, n: int) -> int:
        model, state = self.model, self.state
        error = model._check_halt(flat)
        if error is not None:
            self.halted = True
            raise error
        model._store_state(flat)
        state.totals = totals
        state.step = step + n
        if self.callbacks.batch_end_hooks:
            logs = model._reduce(model._totals_result(totals)) if self.callbacks.needs_batch_logs() else None
            self.callbacks.on_train_batch_end(state.step - 1, logs)
        return state.step


__all__ = ["DEVICE_RESIDENT_BYTES", "FitLoop", "LoopState"]
