"""Executions: the compiled k-step train, eval and predict programs that `fit` dispatches.

An execution runs `k` steps of the core's pure `train_step` in one XLA program
(`lax.scan`; one step runs without a loop, since XLA:CPU runs convolutions inside
a while loop 3-5x slower). It takes its batches either from the host (stacked to
`(k, B, ...)`) or as indices into data that already lives on the device.

Two options change the program, not the loop that drives it:

- `distribution`: an `nj.parallel` strategy; batches are constrained to its
  layout and the state keeps its layout across calls.
- `members`: the state is a stack of `members` TrainStates (an ensemble); every
  step runs under `jax.vmap`. Host batches are shared by every member; device
  data is indexed by one order per member (`order` of shape `(members, N)`).

The TrainState crosses the jit boundary as its list of leaves (`FlatState`):
flattening and rebuilding the tree costs ~0.1 ms per call in Python, more than
a small model's whole step on a CPU.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from nnjax.train import steps
from nnjax.train import totals as totals_lib


class FlatState(NamedTuple):
    """A `TrainState` kept as its leaves between executions (`tree()` rebuilds it)."""

    treedef: Any
    leaves: list

    def tree(self):
        return jax.tree.unflatten(self.treedef, self.leaves)


def take(data: tuple, idx) -> tuple:
    """The batch `(x, y, sample_weight)` at indices `idx` of device-resident `data` (None parts stay None)."""
    return tuple(None if part is None else jax.tree.map(lambda a: a[idx], part) for part in data)


def batch_size_of(batch) -> int:
    """The number of examples in `batch` = `(x, y, sample_weight)`."""
    return int(jax.tree.leaves(batch[0])[0].shape[0])


def stack_batches(batches: list[tuple]) -> tuple:
    """Host batches stacked to `(k, B, ...)` (one batch: a view, no copy)."""
    stack = (lambda a: np.expand_dims(a, 0)) if len(batches) == 1 else (lambda *a: np.stack(a))
    return tuple(None if batches[0][i] is None else jax.tree.map(stack, *[b[i] for b in batches]) for i in range(3))


class Execution:
    """The compiled programs of one training configuration.

    Args:
      distribution: an `nj.parallel` strategy or None (one device).
      members: None for one model, or the number of stacked members (vmap).
      skip_nonfinite: steps skipped by `nonfinite="skip"` do not count in the epoch's means.
      step_functions: None (the core's steps), or an object whose `train(state, totals, batch) -> (state, totals)`,
        `evaluate(state, totals, batch) -> totals` and `predict(state, x) -> outputs` replace them (each may be
        None: the core's); its totals are whatever those functions carry (Keras's JAX-form overrides).

    Example:
      >>> from nnjax.train.execution import Execution
      >>> ex, state, batch = Execution(), model.state, (x[:32], y[:32], None)   # (x, y, sample_weight)
      >>> before = int(state.step)
      >>> flat, totals = ex.train(state, ex.zero_totals(state, batch), ex.place_batches([batch]))  # donates `state`
      >>> int(flat.tree().step) - before
      1
    """

    def __init__(self, distribution=None, members: int | None = None, skip_nonfinite: bool = False, step_functions=None):
        if step_functions is not None and members is not None:
            raise ValueError("Execution: `step_functions` and `members` cannot be combined; got both")
        if distribution is not None and members is not None:
            raise ValueError("Execution: `distribution` and `members` cannot be combined yet; got both")
        self.distribution = distribution
        self.members = members
        self.skip_nonfinite = skip_nonfinite
        self.step_functions = step_functions
        self._fns: dict = {}
        self._zero_totals: dict = {}  # totals shapes per (state structure, batch shapes)
        self._last = None

    # ------------------------------------------------------------------ placement
    def place_data(self, arrays):
        """Puts in-memory data `(x, y, sample_weight)` on the device(s) for indexed executions."""
        return jax.device_put(arrays) if self.distribution is None else self.distribution.place_data(arrays)

    def place_batches(self, batches: list[tuple]):
        """Stacks host batches to `(k, B, ...)` and places them (sharded under a distribution)."""
        stacked = stack_batches(batches)
        return jax.device_put(stacked) if self.distribution is None else self.distribution.place_batches(stacked)

    def place_inputs(self, xs):
        """Places stacked inputs `(k, B, ...)` for `predict`."""
        return jax.device_put(xs) if self.distribution is None else self.distribution.place_batches((xs, None, None))[0]

    def place_state(self, state):
        return state if self.distribution is None else self.distribution.place_state(state)

    def zero_totals(self, state, batch):
        """Zero epoch totals for `state`'s metrics, shaped like the contributions of a batch like `batch` (host
        arrays or shapes; an ensemble's `state` is stacked). Remembered per state structure and batch shapes."""
        spec = jax.tree.map(lambda a: jax.ShapeDtypeStruct(np.shape(a), np.asarray(a).dtype if not hasattr(a, "dtype")
                                                           else a.dtype), batch)
        try:
            key = (jax.tree.structure(state), jax.tree.structure(spec), tuple((a.shape, a.dtype) for a in jax.tree.leaves(spec)))
            hash(key)
        except TypeError:
            key = None
        cache = self._zero_totals
        if key is None or key not in cache:
            one = steps.eval_step_totals if self.members is None else jax.vmap(steps.eval_step_totals, in_axes=(0, None))
            shapes = jax.eval_shape(one, state, spec)
            if key is None:
                return totals_lib.init(shapes)
            cache[key] = shapes
        return totals_lib.init(cache[key])

    # ------------------------------------------------------------------ programs
    def _programs(self) -> dict[str, Callable]:
        if self._fns:
            return self._fns
        distribution, members, skip = self.distribution, self.members, self.skip_nonfinite
        custom = self.step_functions
        custom_train = None if custom is None else custom.train
        custom_eval = None if custom is None else custom.evaluate

        def constrain(batch):
            return batch if distribution is None else distribution.constrain_batch(batch)

        def keep_layout(carry):  # a strategy pins its state layout (FSDP, model axes): the next call reuses this compilation
            state, totals = carry
            return (state if not hasattr(distribution, "constrain_state") else distribution.constrain_state(state)), totals

        def one_train(state, totals, batch):
            batch = constrain(batch)
            if custom_train is not None:
                return custom_train(state, totals, batch)
            new_state, contributions = steps.train_step_totals(state, batch)
            if skip:  # a skipped step does not turn the epoch's values into NaN
                finite = jnp.all(jnp.stack([jnp.all(jnp.isfinite(c)) for c in jax.tree.leaves(contributions)]))
                contributions = totals_lib.mask(contributions, finite)
            return new_state, totals_lib.add(totals, contributions)

        def one_eval(state, totals, batch):
            if custom_eval is not None:
                return custom_eval(state, totals, constrain(batch))
            return totals_lib.add(totals, steps.eval_step_totals(state, constrain(batch)))

        if members is None:
            train_shared = one_train
            eval_shared = one_eval

            def train_at(state, totals, data, idx):
                return one_train(state, totals, take(data, idx))

            predict_shared = steps.predict_step if custom is None or custom.predict is None else custom.predict
            order_axis = 0
        else:
            train_shared = jax.vmap(one_train, in_axes=(0, 0, None))
            eval_shared = jax.vmap(one_eval, in_axes=(0, 0, None))
            train_at = jax.vmap(lambda s, t, data, ix: one_train(s, t, take(data, ix)), in_axes=(0, 0, None, 0))
            predict_shared = jax.vmap(steps.predict_step, in_axes=(0, None))
            order_axis = 1

        def train_scan(state, totals, batches):
            def body(carry, batch):
                return train_shared(*carry, batch), None

            if jax.tree.leaves(batches)[0].shape[0] == 1:  # one step: no loop
                return keep_layout(body((state, totals), jax.tree.map(lambda a: a[0], batches))[0])
            return keep_layout(jax.lax.scan(body, (state, totals), batches)[0])

        def train_indexed(state, totals, data, order, offset, num_steps, batch_size):
            """`num_steps` steps; step j takes `data[order[offset + j * B : ... + B]]` (per member: `order[m]`)."""

            def body(carry, i):
                idx = jax.lax.dynamic_slice_in_dim(order, offset + i * batch_size, batch_size, axis=order_axis)
                return train_at(*carry, data, idx), None

            if num_steps == 1:
                return keep_layout(body((state, totals), 0)[0])
            return keep_layout(jax.lax.scan(body, (state, totals), jnp.arange(num_steps))[0])

        def eval_scan(state, totals, batches):
            def body(totals, batch):
                return eval_shared(state, totals, batch), None

            return jax.lax.scan(body, totals, batches)[0]

        def predict_scan(state, xs):
            out = jax.lax.map(lambda x: predict_shared(state, constrain((x,))[0]), xs)
            if members is not None:
                out = jax.tree.map(lambda a: jnp.moveaxis(a, 1, 0), out)  # (members, k, B, ...)
            return out

        self._fns.update(
            train_scan=jax.jit(train_scan, donate_argnums=(0, 1)),
            train_indexed=jax.jit(train_indexed, donate_argnums=(0, 1), static_argnums=(5, 6)),
            eval_scan=jax.jit(eval_scan),
            predict_scan=jax.jit(predict_scan),
        )
        return self._fns

    def program(self, name: str) -> Callable:
        """The jitted program `name`: "train_scan", "train_indexed", "eval_scan" or "predict_scan"."""
        return self._programs()[name]

    # ------------------------------------------------------------------ dispatch
    def _run_flat(self, name: str, state, *args) -> tuple[FlatState, Any]:
        flat = state if isinstance(state, FlatState) else FlatState(*reversed(jax.tree.flatten(state)))
        last = self._last
        if last is not None and last[0] == name and last[1] is flat.treedef:
            fn, out = last[2], last[3]
        else:
            key = ("flat", name, flat.treedef)
            if key not in self._fns:
                inner, treedef, out = self.program(name).__wrapped__, flat.treedef, {"in": flat.treedef}

                def run(leaves, *rest):
                    new_state, totals = inner(jax.tree.unflatten(treedef, leaves), *rest)
                    new_leaves, out["treedef"] = jax.tree.flatten(new_state)
                    return new_leaves, totals

                static = (5, 6) if name == "train_indexed" else ()
                self._fns[key] = (jax.jit(run, donate_argnums=(0, 1), static_argnums=static), out)
            fn, out = self._fns[key]
        leaves, totals = fn(flat.leaves, *args)
        if "same" not in out:  # the step keeps the tree's structure (it does): skip the lookup next call
            out["same"] = out["treedef"] == out["in"]
        self._last = (name, out["treedef"], fn, out) if out["same"] else None
        return FlatState(out["treedef"], leaves), totals

    def train(self, state, totals: dict, placed_batches) -> tuple[FlatState, dict]:
        """Runs one step per stacked batch of `placed_batches` (`(k, B, ...)`, from `place_batches`)."""
        return self._run_flat("train_scan", state, totals, placed_batches)

    def train_indexed(self, state, totals: dict, data, order, offset: int, num_steps: int, batch_size: int):
        """Runs `num_steps` steps of `batch_size` over device-resident `data`, taking examples
        `order[offset:]` in turn (`order`: `(N,)`, or `(members, N)` for one order per member)."""
        return self._run_flat("train_indexed", state, totals, data, order, offset, num_steps, batch_size)

    def evaluate(self, state, totals: dict, placed_batches) -> dict:
        """Adds the eval metrics of every stacked batch to `totals`."""
        return self.program("eval_scan")(state, totals, placed_batches)

    def predict(self, state, placed_inputs):
        """Outputs for stacked inputs `(k, B, ...)`: `(k, B, ...)`, or `(members, k, B, ...)`."""
        return self.program("predict_scan")(state, placed_inputs)


__all__ = ["Execution", "FlatState", "batch_size_of", "stack_batches", "take"]
