"""Keras's one-batch methods and layer lookup: `train_on_batch`, `test_on_batch`, `predict_on_batch`, `get_layer`.

The batch methods run the very programs `fit`, `evaluate` and `predict` compile (one step of the model's
`Execution`), so a second call with batches of the same shapes compiles nothing, and calls may be mixed
freely with `fit`. The full host checks (shapes, label ranges) run on the first batch of each layout;
later batches get the per-batch value checks a streamed batch gets.
"""

from __future__ import annotations

import jax
import numpy as np

from nnjax.data.arrays import as_array_tree
from nnjax.train.execution import FlatState
from nnjax.train.losses import class_weight_to_sample_weight


def _layout(batch) -> tuple:
    leaves = [leaf for part in batch if part is not None for leaf in jax.tree.leaves(part)]
    return tuple(jax.tree.structure(part) for part in batch) + tuple((np.shape(a), np.asarray(a).dtype.str) for a in leaves)


def _python_logs(logs: dict) -> dict:
    """Keras's `pythonify_logs`: sorted by name, floats where the value is a scalar."""
    out = {}
    for key, value in sorted(logs.items()):
        value = np.asarray(value)
        out[key] = float(value) if value.ndim == 0 else value
    return out


class BatchMixin:
    """`train_on_batch`, `test_on_batch`, `predict_on_batch` and `get_layer` for a `Model`."""

    def _one_batch(self, x, y, sample_weight, what: str) -> tuple:
        """`(x, y, sample_weight)` as host arrays, checked (and the model built) as `fit` checks its data."""
        x = as_array_tree(x, "x")
        y = as_array_tree(y, "y")
        sample_weight = as_array_tree(sample_weight, "sample_weight")
        leaves = jax.tree.leaves(x)
        if not leaves:
            raise ValueError(f"{what}: `x` must hold at least one array; got {type(x).__name__}")
        batch = (x, y, sample_weight)
        layout = _layout(batch)
        checked = self.__dict__.setdefault("_checked_batch_layouts", set())
        if layout in checked and self.built:
            self._check_batch(batch, what)
            return batch
        size = int(np.shape(leaves[0])[0])
        source = self._source(x, y, sample_weight, size, False, what)
        self._check_source(source, what)
        batch = next(iter(source.batches(0)))
        checked.add(layout)
        return batch

    def _batch_totals(self, state, batch, phase: str):
        """Zero totals for one batch of `phase` ("train" or "test")."""
        del phase
        return self.execution.zero_totals(state, batch)

    def _log_order(self, logs: dict) -> list[str]:
        """The names of `logs` in the order of Keras's list results."""
        del logs
        return self.metric_names()

    def _logs_or_list(self, logs: dict, return_dict: bool):
        """Keras's return value: the dict, or the values in `metric_names()` order (a float when only the loss)."""
        logs = _python_logs(logs)
        if return_dict:
            return logs
        names = self._log_order(logs)
        values = [logs[name] for name in names if name in logs] + [logs[k] for k in sorted(logs) if k not in names]
        return values[0] if len(values) == 1 else values

    def train_on_batch(self, x, y=None, sample_weight=None, class_weight=None, return_dict: bool = False):
        """One optimizer step on one batch, as Keras's `train_on_batch`.

        Args:
          x: the batch's inputs `(B, ...)` (an array or a pytree of arrays).
          y: its targets `(B, ...)`, or None for a `loss_fn` that needs none.
          sample_weight: per-example weights `(B,)`.
          class_weight: `{class id: weight}` turned into sample weights by the labels (not with `sample_weight`).
          return_dict: return `{name: value}` instead of a list.

        Returns:
          The loss of the batch (computed before the update) when there are no metrics, else
          `[loss, *metrics]` in `metric_names()` order, or a dict with `return_dict=True`; Python floats.

        Raises:
          RuntimeError: if the model is not compiled.
          ValueError: for `sample_weight` together with `class_weight`, or data `fit` would refuse.
        """
        self._require_compiled("train_on_batch")
        if class_weight is not None:
            if sample_weight is not None:
                raise ValueError(
                    "train_on_batch: `sample_weight` and `class_weight` cannot be specified at the same time; "
                    f"received sample_weight of shape {np.shape(sample_weight)} and class_weight={class_weight!r}"
                )
            if y is None:
                raise ValueError("train_on_batch: `class_weight` needs the labels `y`; got y=None")
            sample_weight = class_weight_to_sample_weight(as_array_tree(y, "y"), class_weight)
        batch = self._one_batch(x, y, sample_weight, "train_on_batch")
        execution = self.execution
        stored = self._stored_state()
        totals = self._batch_totals(stored.tree() if isinstance(stored, FlatState) else stored, batch, "train")
        flat, totals = execution.train(stored, totals, execution.place_batches([batch]))
        error = self._check_halt(flat)
        if error is not None:
            raise error
        self._store_state(flat)
        logs = self._reduce(self._totals_result(totals))
        self._store_keras_metrics()
        return self._logs_or_list(logs, return_dict)

    def test_on_batch(self, x, y=None, sample_weight=None, return_dict: bool = False):
        """Loss and metrics of one batch in inference mode, as Keras's `test_on_batch` (the weights are unchanged).

        Returns:
          As `train_on_batch`.

        Raises:
          RuntimeError: if the model is not compiled.
        """
        self._require_compiled("test_on_batch")
        batch = self._one_batch(x, y, sample_weight, "test_on_batch")
        execution = self.execution
        state = self.state
        totals = execution.evaluate(state, self._batch_totals(state, batch, "test"), execution.place_batches([batch]))
        logs = self._reduce(self._totals_result(totals))
        self._store_keras_metrics()
        return self._logs_or_list(logs, return_dict)

    def predict_on_batch(self, x):
        """The model's outputs for one batch `x` `(B, ...)`, in inference mode, as NumPy arrays.

        Runs `predict`'s compiled program: a second batch of the same shape compiles nothing.

        Raises:
          ValueError: if the model is not built and `x` does not tell its input shape.
        """
        x = as_array_tree(x, "x")
        if not self.built:
            self._ensure_built(x)
        self._require_built("predict_on_batch")
        from nnjax.train import schedule_free

        state, execution = schedule_free.eval_state(self._inference_state()), self.execution
        xs = execution.place_inputs(jax.tree.map(lambda a: np.expand_dims(a, 0), x))
        out = execution.predict(state, xs)
        axis = 0 if execution.members is None else 1
        return jax.tree.map(lambda a: np.take(np.asarray(a), 0, axis=axis), out)

    def get_layer(self, name: str | None = None, index: int | None = None):
        """A layer of `layers` by its name or its index, as Keras's `get_layer`.

        Raises:
          ValueError: with Keras's messages: both or neither given, an unknown name, an index past the end.
        """
        if index is not None and name is not None:
            raise ValueError(f"Provide only a layer name or a layer index. Received: index={index}, name={name}.")
        layers = self.layers
        if index is not None:
            if len(layers) <= index:
                raise ValueError(f"Was asked to retrieve layer at index {index} but model only has {len(layers)} layers.")
            return layers[index]
        if name is not None:
            for layer in layers:
                if getattr(layer, "name", None) == name:
                    return layer
            raise ValueError(f"No such layer: {name}. Existing layers are: {[getattr(x, 'name', None) for x in layers]}.")
        raise ValueError("Provide either a layer name or layer index at `get_layer`.")


__all__ = ["BatchMixin"]
