"""What a training step does when its loss, gradients or new parameters are not finite.

Two policies, chosen with `compile(nonfinite=...)` or `TrainState.create(nonfinite=...)`
(the default, None, checks nothing and costs nothing):

- `"halt"`: the first non-finite step is not applied. The state is frozen from
  then on (later steps of the same compiled execution are no-ops too, `step`
  included), and `Model.fit` raises `NonFiniteError` naming the step, the loss
  and the path of the first non-finite gradient or parameter. The model keeps
  the weights from before that step, so no NaN reaches a checkpoint.
- `"skip"` (`NonFinitePolicy("skip", max_consecutive=5)`): a non-finite step is
  not applied (parameters, model state and optimizer state keep their values
  bit for bit; `step` advances, so the next batch gets its own dropout key) and
  is counted (`skipped_steps`, logged by `fit` as "skipped_steps"). More than
  `max_consecutive` non-finite steps in a row halt training as above: a NaN
  update is never applied, unlike `optax.apply_if_finite`, which applies it
  once its limit is reached.

The counters live in the optimizer state (`NonFiniteState`, added by `tracked`),
so they are checkpointed and work under `jax.jit`, `lax.scan` and `jax.vmap`.
In a custom loop:

    state = TrainState.create(module, "adam", loss="mse", nonfinite="halt")
    state, metrics = jax.jit(train_step)(state, batch)
    error = nonfinite.halt_error(state)   # None, or a NonFiniteError to raise
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from nnjax.train.precision import all_finite, select_tree

MODES = ("halt", "skip")


class NonFiniteError(FloatingPointError):
    """Training met a non-finite loss, gradient or parameter and stopped before applying it.

    Attributes:
      step: the step (`TrainState.step`) whose update was refused.
      loss: the loss of that step.
      path: the first non-finite gradient or parameter ("layers/1/kernel"), or
        None when only the loss was non-finite.
    """

    def __init__(self, message: str, *, step: int, loss: float, path: str | None):
        super().__init__(message)
        self.step = step
        self.loss = loss
        self.path = path


@dataclasses.dataclass(frozen=True)
class NonFinitePolicy:
    """A non-finite policy (see the module docstring).

    Attributes:
      mode: "halt" or "skip".
      max_consecutive: with "skip", this many non-finite steps in a row are
        skipped; one more halts training.
    """

    mode: str = "halt"
    max_consecutive: int = 5

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"nonfinite policy: `mode` must be one of {MODES}; got {self.mode!r}")
        if isinstance(self.max_consecutive, bool) or not isinstance(self.max_consecutive, int) or self.max_consecutive < 0:
            raise ValueError(f"nonfinite policy: `max_consecutive` must be an int >= 0; got {self.max_consecutive!r}")


def get_policy(identifier) -> NonFinitePolicy | None:
    """Resolves None, "halt", "skip" or a `NonFinitePolicy`.

    Raises:
      ValueError: for anything else; the message lists the valid choices.
    """
    if identifier is None or isinstance(identifier, NonFinitePolicy):
        return identifier
    if isinstance(identifier, str) and identifier in MODES:
        return NonFinitePolicy(identifier)
    raise ValueError(f"compile(nonfinite=...): expected None, 'halt', 'skip' or nj.train.nonfinite.NonFinitePolicy; got {identifier!r}")


class NonFiniteState(NamedTuple):
    """Optimizer state of `tracked`: the inner state plus the policy's counters."""

    inner: Any  # the wrapped optimizer's state
    skipped: jax.Array  # int32 []: non-finite steps skipped so far
    consecutive: jax.Array  # int32 []: non-finite steps in a row
    halted_step: jax.Array  # int32 []: the step that halted training; -1 while training goes on
    halted_leaf: jax.Array  # int32 []: flat index (params order) of its first non-finite leaf; -1 if only the loss
    halted_loss: jax.Array  # float32 []: its loss


def tracked(inner: optax.GradientTransformation) -> optax.GradientTransformation:
    """Wraps an optimizer so its state can hold the non-finite counters.

    The update is `inner`'s, unchanged; `guard` (called by `train_step` when
    the config has a policy) decides whether it is kept.
    """

    def init_fn(params):
        return NonFiniteState(
            inner.init(params),
            skipped=jnp.zeros((), jnp.int32),
            consecutive=jnp.zeros((), jnp.int32),
            halted_step=jnp.full((), -1, jnp.int32),
            halted_leaf=jnp.full((), -1, jnp.int32),
            halted_loss=jnp.zeros((), jnp.float32),
        )

    def update_fn(updates, state, params=None):
        new_updates, new_inner = inner.update(updates, state.inner, params)
        return new_updates, state._replace(inner=new_inner)

    return optax.GradientTransformation(init_fn, update_fn)


def _leaf_nonfinite(trees) -> jax.Array:
    """bool[num_leaves]: leaf i of any tree in `trees` (same structure) has a non-finite element."""
    flat = [jax.tree.leaves(tree) for tree in trees]
    flags = []
    for leaves in zip(*flat, strict=True):
        flags.append(jnp.any(jnp.stack([~all_finite(leaf) for leaf in leaves])))
    return jnp.stack(flags) if flags else jnp.zeros((0,), bool)


def guard(old_state, new_state, loss, grads=None):
    """Applies the config's non-finite policy to one step.

    Args:
      old_state: the `TrainState` before the step; its `opt_state` must be a
        `NonFiniteState` (`tracked`).
      new_state: the state `train_step` computed.
      loss: float32 scalar, the step's loss.
      grads: the gradients (same structure as the params), or None to check only
        the loss and the new parameters (under loss scaling, where overflowing
        gradients are the loss scale's business).

    Returns:
      The `TrainState` to continue with.

    Raises:
      ValueError: at trace time, if the optimizer state is not a `NonFiniteState`.
    """
    policy = get_policy(old_state.config.nonfinite)
    tracker = old_state.opt_state
    if not isinstance(tracker, NonFiniteState):
        raise ValueError(
            "train_step: StepConfig.nonfinite is set, so the optimizer must be wrapped with "
            f"nj.train.nonfinite.tracked(tx) (compile and TrainState.create do it); got opt_state {type(tracker).__name__}"
        )
    leaf_bad = _leaf_nonfinite([new_state.params] if grads is None else [grads, new_state.params])
    ok = jnp.isfinite(loss) & ~jnp.any(leaf_bad)
    first_bad = jnp.where(jnp.any(leaf_bad), jnp.argmax(leaf_bad), -1).astype(jnp.int32) if leaf_bad.size else jnp.int32(-1)
    was_halted = tracker.halted_step >= 0
    consecutive = jnp.where(ok, 0, tracker.consecutive + 1).astype(jnp.int32)
    if policy.mode == "skip":
        halt_now = ~was_halted & (consecutive > policy.max_consecutive)
        skipped = tracker.skipped + (~ok & ~was_halted).astype(jnp.int32)
    else:
        halt_now = ~was_halted & ~ok
        skipped = tracker.skipped
    apply = ok & ~was_halted
    frozen = was_halted | halt_now
    new_tracker = NonFiniteState(
        inner=select_tree(apply, new_state.opt_state.inner, tracker.inner),
        skipped=skipped,
        consecutive=jnp.where(was_halted, tracker.consecutive, consecutive),
        halted_step=jnp.where(halt_now, old_state.step, tracker.halted_step).astype(jnp.int32),
        halted_leaf=jnp.where(halt_now, first_bad, tracker.halted_leaf).astype(jnp.int32),
        halted_loss=jnp.where(halt_now, jnp.asarray(loss, jnp.float32), tracker.halted_loss),
    )
    return new_state.replace(
        step=jnp.where(frozen, old_state.step, new_state.step),
        params=select_tree(apply, new_state.params, old_state.params),
        model_state=select_tree(apply, new_state.model_state, old_state.model_state),
        opt_state=new_tracker,
    )


def mask_metrics(metrics: dict, weight):
    """`(metrics, weight)` with a non-finite step's contribution removed (weight 0, values 0).

    `fit` uses it under the "skip" policy, so a skipped step does not turn the
    epoch's mean loss into NaN.
    """
    ok = jnp.all(jnp.stack([jnp.all(jnp.isfinite(v)) for v in metrics.values()]))
    metrics = {name: jnp.where(ok, value, jnp.zeros_like(value)) for name, value in metrics.items()}
    return metrics, jnp.where(ok, jnp.asarray(weight, jnp.float32), 0.0)


def _tracker(opt_state) -> NonFiniteState | None:
    return opt_state if isinstance(opt_state, NonFiniteState) else None


def skipped_steps(opt_state) -> int | None:
    """Non-finite steps skipped so far, or None when no policy tracks them (host sync)."""
    tracker = _tracker(opt_state)
    return None if tracker is None else int(np.asarray(tracker.skipped))


def leaf_path(params, index: int) -> str:
    """The slash-separated path of leaf `index` of `params` ("layers/1/kernel")."""
    paths = [path for path, _ in jax.tree_util.tree_flatten_with_path(params)[0]]
    parts = []
    for key in paths[index]:
        name = getattr(key, "key", getattr(key, "idx", getattr(key, "name", key)))
        parts.append(str(name))
    if parts and parts[-1] == "value":  # nnx.Variable's own attribute
        parts.pop()
    return "/".join(parts)


def halt_error(state) -> NonFiniteError | None:
    """The `NonFiniteError` describing why `state` halted, or None if it did not (host sync).

    Args:
      state: a `TrainState` whose optimizer state is a `NonFiniteState`.
    """
    tracker = _tracker(state.opt_state)
    if tracker is None:
        return None
    step = int(np.asarray(tracker.halted_step))
    if step < 0:
        return None
    loss = float(np.asarray(tracker.halted_loss))
    leaf = int(np.asarray(tracker.halted_leaf))
    path = leaf_path(state.params, leaf) if leaf >= 0 else None
    policy = get_policy(state.config.nonfinite)
    where = f"first non-finite gradient or parameter: {path}" if path else "gradients and parameters were finite"
    if policy is not None and policy.mode == "skip":
        cause = f"{int(np.asarray(tracker.consecutive))} non-finite steps in a row (more than max_consecutive={policy.max_consecutive}); the last"
    else:
        cause = "non-finite"
    message = (
        f"training halted: {cause} step {step} has loss {loss}; {where}. The update was not applied: "
        f"the model keeps its weights from before step {step}."
    )
    return NonFiniteError(message, step=step, loss=loss, path=path)


def clear_halt(state):
    """`state` with its halt record cleared, so training can go on after handling a `NonFiniteError`."""
    tracker = _tracker(state.opt_state)
    if tracker is None:
        return state
    tracker = tracker._replace(
        consecutive=jnp.zeros((), jnp.int32),
        halted_step=jnp.full((), -1, jnp.int32),
        halted_leaf=jnp.full((), -1, jnp.int32),
        halted_loss=jnp.zeros((), jnp.float32),
    )
    return state.replace(opt_state=tracker)


__all__ = [
    "MODES",
    "NonFiniteError",
    "NonFinitePolicy",
    "NonFiniteState",
    "clear_halt",
    "get_policy",
    "guard",
    "halt_error",
    "leaf_path",
    "mask_metrics",
    "skipped_steps",
    "tracked",
]
