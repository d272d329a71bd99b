"""Keras's `evaluate` and `predict` for a model: the same execution's programs as `fit`, in inference mode.

Batches stream from the source; each run of equal-size batches is one compiled execution.
"""

from __future__ import annotations

import itertools

import jax
import numpy as np

from nnjax.callbacks.base import CallbackList, overrides, to_python
from nnjax.data.adapt import is_streaming
from nnjax.train import schedule_free
from nnjax.train.execution import batch_size_of


def format_logs(logs: dict) -> str:
    """`loss: 0.1234 - accuracy: 0.9000` (an ensemble's arrays as `mean ± std`)."""

    def one(value):
        value = np.asarray(value)
        return f"{float(value):.4f}" if value.ndim == 0 else f"{value.mean():.4f} ± {value.std():.4f}"

    return " - ".join(f"{k}: {one(v)}" for k, v in logs.items())


_TEST_BATCH_HOOKS = ("on_test_batch_begin", "on_test_batch_end")
_PREDICT_BATCH_HOOKS = ("on_predict_batch_begin", "on_predict_batch_end")


def _batch_hooks(callbacks, hooks) -> bool:
    """Whether a callback of `callbacks` (a `CallbackList` or None) defines one of `hooks` (then batches run one by one)."""
    return callbacks is not None and any(overrides(cb, hook) for cb in callbacks for hook in hooks)


def _limited(batches, steps: int | None):
    return batches if steps is None else itertools.islice(batches, int(steps))


class InferenceMixin:
    """`evaluate` and `predict` over a model's `execution` (`predict_on_batch`: `nnjax.shell.batches`)."""

    def _zero_eval_totals(self, source):
        """Zero totals of an evaluation over `source` (a Keras-form test_step's differ from the training ones)."""
        return self._zero_totals(source)

    def _evaluate_source(self, source, keep_on_device: bool = False, callbacks: CallbackList | None = None,
                         steps: int | None = None) -> dict:
        """Loss and metrics over `source`. With `keep_on_device`, in-memory data placed on the device
        once is reused by the next call with the same source (fit validates every epoch).

        When a callback of `callbacks` defines `on_test_batch_begin/end`, every batch is its own execution and the
        hooks get Keras's logs: `{}` before a batch, the running means of the batches so far after it. `steps`
        stops after that many batches.
        """
        state, execution = schedule_free.eval_state(self.state), self.execution  # schedule-free: evaluation params
        totals = self._zero_eval_totals(source)
        per_batch = _batch_hooks(callbacks, _TEST_BATCH_HOOKS)
        cached = self._eval_cache
        if cached is not None and cached[0] is source and not per_batch and steps is None:
            for placed in cached[1]:
                totals = execution.evaluate(state, totals, placed)
            return self._epoch_result(totals)
        keep_on_device = keep_on_device and not per_batch and steps is None
        kept, group = [], []

        def flush():
            nonlocal totals
            placed = execution.place_batches(group)
            totals = execution.evaluate(state, totals, placed)
            if keep_on_device:
                kept.append(placed)

        seen = 0
        streamed = not hasattr(source, "arrays")
        for index, batch in enumerate(_limited(source.batches(0), steps)):  # one execution per run of equal-size batches
            if streamed:
                self._check_batch(batch, f"evaluate (batch {index})")
            if per_batch:
                callbacks.call("on_test_batch_begin", index, {})
                group = [batch]
                flush()
                callbacks.call("on_test_batch_end", index, to_python(self._reduce(self._totals_result(totals))))
                seen += 1
                continue
            if group and batch_size_of(batch) != batch_size_of(group[0]):
                flush()
                group = []
            group.append(batch)
            seen += 1
        if not seen:
            raise ValueError("evaluate: the dataset yielded no batches: expected at least one; received 0")
        if not per_batch:
            flush()
        if keep_on_device and hasattr(source, "arrays"):
            self._eval_cache = (source, kept)
        return self._epoch_result(totals)

    def evaluate(self, x=None, y=None, batch_size: int | None = None, verbose="auto", sample_weight=None,
                 steps: int | None = None, callbacks=None, return_dict: bool = False):
        """Loss and metrics on data, in inference mode.

        Args:
          x, y, batch_size, sample_weight: as in `fit`.
          verbose: 0 silent; otherwise one line of results.
          steps: evaluate only the first `steps` batches.
          callbacks: `nj.callbacks.Callback`s; called as Keras calls them: `on_test_begin({})`, per batch
            `on_test_batch_begin(i, {})` and `on_test_batch_end(i, running logs)`, then `on_test_end(logs)`.
          return_dict: return `{name: value}`.

        Returns:
          `[loss, *metrics]` (a float when there are no metrics), or a dict with `return_dict=True`.
        """
        config = self._require_compiled("evaluate")
        keras_form = self.execution.step_functions is not None and self.execution.step_functions.evaluate is not None
        if y is None and not keras_form and config.loss_fn is None and x is not None and not is_streaming(x):
            raise ValueError(
                f"evaluate: `y` is required: loss '{config.loss.name if config.loss is not None else 'per-output losses'}' "
                "compares the outputs with targets; got y=None "
                "(pass evaluate(x, y), or a dataset that yields (x, y) batches)"
            )
        source = self._source(x, y, sample_weight, batch_size, False, "evaluate")
        self._check_source(source, "evaluate")
        callback_list = CallbackList(callbacks, model=self, verbose=0)
        callback_list.call("on_test_begin", {})
        logs = self._evaluate_source(source, callbacks=callback_list, steps=steps)
        self._store_keras_metrics()
        callback_list.call("on_test_end", logs)
        if verbose == "auto":
            verbose = 1
        if verbose:
            print(format_logs(logs))
        if return_dict:
            return logs
        values = [logs[name] for name in (self._keras_metric_order(logs) if keras_form else self.metric_names())]
        return values[0] if len(values) == 1 else values

    def predict(self, x, batch_size: int | None = None, verbose="auto", steps: int | None = None, callbacks=None):
        """The model's outputs for `x`, in inference mode, as NumPy arrays (`(members, N, ...)` for an ensemble).

        Args:
          x: inputs (array or pytree of arrays) or a dataset.
          batch_size: examples per batch (32 by default).
          verbose: accepted for Keras compatibility (nothing is printed).
          steps: predict only the first `steps` batches.
          callbacks: `nj.callbacks.Callback`s; called as Keras calls them: `on_predict_begin({})`, per batch
            `on_predict_batch_begin(i, {})` and `on_predict_batch_end(i, {"outputs": the batch's outputs})`,
            then `on_predict_end({})`.

        Raises:
          ValueError: if the model is not built (its input shape is unknown) or `x` is empty.
        """
        del verbose
        self._require_built("predict")
        source = self._source(x, None, None, batch_size, False, "predict")
        self._check_source(source, "predict")
        callback_list = CallbackList(callbacks, model=self, verbose=0)
        per_batch = _batch_hooks(callback_list, _PREDICT_BATCH_HOOKS)
        state, execution = schedule_free.eval_state(self._inference_state()), self.execution
        axis = 0 if execution.members is None else 1  # the example axis of the outputs
        outputs, group = [], []

        def flush():
            xs = execution.place_inputs(jax.tree.map(lambda *a: np.stack(a), *[b[0] for b in group]))
            out = execution.predict(state, xs)
            outputs.append(jax.tree.map(lambda a: np.asarray(a).reshape(a.shape[:axis] + (-1,) + a.shape[axis + 2:]), out))

        callback_list.call("on_predict_begin", {})
        for index, batch in enumerate(_limited(source.batches(0), steps)):
            if per_batch:
                callback_list.call("on_predict_batch_begin", index, {})
                group = [batch]
                flush()
                callback_list.call("on_predict_batch_end", index, {"outputs": outputs[-1]})
                continue
            if group and batch_size_of(batch) != batch_size_of(group[0]):
                flush()
                group = []
            group.append(batch)
        if group and not per_batch:
            flush()
        callback_list.call("on_predict_end", {})
        if not outputs:
            raise ValueError("predict: the dataset yielded no batches: expected at least one; received 0")
        return jax.tree.map(lambda *o: np.concatenate(o, axis=axis), *outputs)


__all__ = ["InferenceMixin", "format_logs"]
