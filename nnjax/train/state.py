"""`TrainState`: everything a training step reads and writes, as one pytree."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import nnx, struct

from nnjax.train import freeze
from nnjax.train import losses as losses_lib
from nnjax.train import metrics as metrics_lib
from nnjax.utils.random import as_key


@dataclasses.dataclass(frozen=True)
class StepConfig:
    """The static (hashable, non-array) part of a training step.

    Attributes:
      loss: the per-element loss, applied as `loss(y_true, y_pred)`.
      metrics: metrics reported by `train_step` and `eval_step`, unweighted (Keras's `metrics=`):
        per-element `Metric`s or stateful ones (`nnjax.train.confusion`).
      weighted_metrics: metrics weighted by the batch's `sample_weight` (Keras's `weighted_metrics=`).
      loss_fn: optional objective that replaces `loss`:
        `loss_fn(outputs, batch) -> loss` or `-> (loss, aux)`, where `outputs` is
        whatever the model returns and `batch` is the batch as given. `aux` is a
        dict of scalars reported next to the loss. Use it for losses that are not
        a function of `(y_true, y_pred)`: a VAE's KL term, a policy gradient.
        A `loss_fn` that declares them (by name) also receives `intermediates=`, a nested dict of
        what the forward pass sowed (`nnx.sow`, Linen's `self.sow`, as tuples) or stored in
        Variables created by `__call__` (`self.kl = nnx.Variable(...)`), and `params=`, a nested
        dict of the differentiated parameters (for weight penalties). `loss_fn(outputs, batch)`
        gets neither, as before.
      compute_dtype: dtype of the forward and backward pass (e.g. bfloat16 for
        mixed precision); parameters and optimizer state keep their own dtype.
      nonfinite: None, "halt", "skip" or a `nonfinite.NonFinitePolicy`: what
        `train_step` does with a non-finite loss, gradient or parameter (see
        `nnjax.train.nonfinite`; the optimizer must then be `nonfinite.tracked`).
      trainable: None (every parameter trains) or one bool per leaf of
        `TrainState.params` (flattening order); False leaves are frozen: their
        gradients and updates are zeroed (see `nnjax.train.freeze`).
      outputs: per-output losses and metrics of a model with several outputs (Keras's
        `compile(loss=[...] | {...}, loss_weights=..., metrics=[[...], ...])`), one `OutputHead`
        per output; when given, `loss`, `metrics` and `weighted_metrics` are unused.
      compute_loss: None, or `fn(x, y, y_pred, sample_weight, training) -> loss` replacing the
        compiled objective (a subclassed model's `compute_loss` override); `default_loss(...)` inside it
        is the compiled loss plus the layers' added losses.
    """

    loss: losses_lib.Loss | None = None
    metrics: tuple[metrics_lib.Metric, ...] = ()
    weighted_metrics: tuple = ()  # metrics weighted by `sample_weight` (Keras's `weighted_metrics`)
    loss_fn: Callable | None = None
    compute_dtype: Any = None
    nonfinite: Any = None
    trainable: tuple[bool, ...] | None = None
    outputs: tuple = ()  # OutputHead per output of a multi-output model
    compute_loss: Callable | None = None


@dataclasses.dataclass(frozen=True)
class OutputHead:
    """The loss and metrics of one output of a model with several outputs.

    Attributes:
      name: the output's name (a functional model's output layer name, or the key of a dict output);
        logged values are prefixed with it ("a_loss", "a_accuracy").
      key: where the output sits in the model's outputs: an index (list/tuple outputs) or a key (dict outputs).
      position: the output's index in the model's flat output order (targets given as a list pair by it).
      loss: the output's `Loss`, or None when the output is not trained on.
      loss_weight: the factor of this output's loss in the objective (None: 1).
      metrics: unweighted metrics of this output.
      weighted_metrics: metrics weighted by the output's sample weights.
    """

    name: str
    key: Any
    position: int
    loss: Any = None
    loss_weight: float | None = None
    metrics: tuple = ()
    weighted_metrics: tuple = ()


class TrainState(struct.PyTreeNode):
    """Params, model state, optimizer state, step and RNG of one model.

    A pytree: `jax.jit`, `jax.vmap` (stack several for an ensemble), sharding
    and checkpointing all see just its arrays.

    Attributes:
      step: int32 scalar, the number of updates applied.
      params: `nnx.State` of the trainable `nnx.Param`s.
      model_state: `nnx.State` of everything else the model holds (BatchNorm
        statistics, RNG counters of user modules).
      opt_state: the optax state.
      rng: raw `uint32[2]` key; step `s` uses `fold_in(rng, s)`, so a resumed run
        draws the same dropout masks as an uninterrupted one.
      graphdef: static structure of the Flax module (`nnx.split`).
      tx: the optax transformation.
      config: the `StepConfig`.
    """

    step: jax.Array
    params: Any
    model_state: Any
    opt_state: Any
    rng: jax.Array
    graphdef: Any = struct.field(pytree_node=False)
    tx: optax.GradientTransformation = struct.field(pytree_node=False)
    config: StepConfig = struct.field(pytree_node=False, default=StepConfig())

    @classmethod
    def create(
        cls,
        module: nnx.Module,
        tx: optax.GradientTransformation,
        *,
        loss=None,
        metrics=(),
        loss_fn: Callable | None = None,
        compute_dtype=None,
        key=None,
        nonfinite=None,
        wrt=None,
    ) -> TrainState:
        """Splits a built Flax NNX module into a `TrainState`.

        Args:
          module: a built module (its parameters exist).
          tx: an optax transformation (or an nnjax optimizer name).
          loss: a loss name, `nj.train.losses.Loss` or callable; not needed with `loss_fn`.
          metrics: metric names or callables.
          loss_fn: optional objective `(outputs, batch) -> loss | (loss, aux)`.
          compute_dtype: e.g. `jnp.bfloat16` for mixed precision.
          key: a PRNG key or int seed for dropout; drawn from the global seed when None.
          nonfinite: None, "halt" or "skip" (see `nnjax.train.nonfinite`); wraps `tx` in `nonfinite.tracked`.
          wrt: None or an nnx filter (e.g. `nnx.PathContains("head")`): only the parameters it selects get
            gradients and updates; the others stay as they are. Parameters of a `Layer` whose `trainable` is
            False are frozen either way.

        Returns:
          A `TrainState` at step 0.
        """
        from nnjax.train import optimizers  # local: optimizers imports nothing from here

        tx = optimizers.get(tx)
        if nonfinite is not None:
            from nnjax.train import nonfinite as nonfinite_lib

            nonfinite = nonfinite_lib.get_policy(nonfinite)
            tx = nonfinite_lib.tracked(tx)
        graphdef, params, model_state = nnx.split(module, nnx.Param, ...)
        loss_obj = losses_lib.get(loss) if loss is not None else None
        if loss_obj is None and loss_fn is None:
            raise ValueError("TrainState.create: pass `loss` (a name or callable) or `loss_fn`; got neither")
        metric_objs = tuple(metrics_lib.get(m, loss_obj) for m in (metrics or ()))
        trainable = freeze.trainable_leaves(module, params, wrt)
        config = StepConfig(loss=loss_obj, metrics=metric_objs, loss_fn=loss_fn, compute_dtype=compute_dtype, nonfinite=nonfinite,
                            trainable=trainable)
        return cls(
            step=jnp.zeros((), jnp.int32),
            params=params,
            model_state=model_state,
            opt_state=tx.init(params),
            rng=as_key(key),
            graphdef=graphdef,
            tx=tx,
            config=config,
        )

    def module(self) -> nnx.Module:
        """A Flax module holding this state's parameters (`nnx.merge`)."""
        return nnx.merge(self.graphdef, self.params, self.model_state)


def stack_states(states) -> TrainState:
    """Stacks same-shaped `TrainState`s along a new leading axis, for `jax.vmap`.

    Models built separately differ in static metadata (layer names in the graph
    definition, optimizer objects), so `jax.tree.map(jnp.stack, ...)` refuses them;
    this keeps the first state's static fields and stacks the arrays.

    Raises:
      ValueError: if the states do not have the same number, shapes and dtypes of arrays.
    """
    states = list(states)
    if not states:
        raise ValueError("stack_states: expected at least one TrainState; received none")
    leaves0, treedef = jax.tree.flatten(states[0])
    columns = [leaves0]
    for index, other in enumerate(states[1:], start=1):
        leaves = jax.tree.leaves(other)
        if len(leaves) != len(leaves0) or any(jnp.shape(a) != jnp.shape(b) or jnp.result_type(a) != jnp.result_type(b)
                                              for a, b in zip(leaves, leaves0)):
            raise ValueError(
                f"stack_states: state {index} does not match state 0: expected {len(leaves0)} arrays of shapes "
                f"{[jnp.shape(a) for a in leaves0]}; received {len(leaves)} arrays of shapes {[jnp.shape(a) for a in leaves]}"
            )
        columns.append(leaves)
    return jax.tree.unflatten(treedef, [jnp.stack(group) for group in zip(*columns)])


def unstack_state(state: TrainState, index: int) -> TrainState:
    """Member `index` of a stacked `TrainState`."""
    return jax.tree.map(lambda a: a[index], state)


__all__ = ["OutputHead", "StepConfig", "TrainState", "stack_states", "unstack_state"]
