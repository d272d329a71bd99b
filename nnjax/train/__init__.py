"""The functional core: `TrainState` and pure step functions.

Everything `Model.fit` does is built from these parts; a custom loop can use
them with `jax.jit`, `jax.vmap`, sharding or `shard_map` and nothing else.
"""

from nnjax.train import (
    confusion,
    constraints,
    ema,
    freeze,
    losses,
    metrics,
    nonfinite,
    optimizer_rules,
    optimizers,
    precision,
    schedules,
)
from nnjax.train.constraints import apply_constraints, constraints_of
from nnjax.train.freeze import param_labels
from nnjax.train.state import OutputHead, StepConfig, TrainState, stack_states, unstack_state
from nnjax.train.steps import (
    apply_model,
    call_module,
    compute_loss,
    compute_metrics,
    eval_step,
    predict_step,
    step_key,
    train_step,
    unpack_batch,
)

__all__ = [
    "OutputHead",
    "StepConfig",
    "TrainState",
    "apply_constraints",
    "apply_model",
    "call_module",
    "compute_loss",
    "compute_metrics",
    "confusion",
    "constraints",
    "constraints_of",
    "ema",
    "eval_step",
    "freeze",
    "losses",
    "metrics",
    "nonfinite",
    "optimizer_rules",
    "optimizers",
    "param_labels",
    "precision",
    "predict_step",
    "schedules",
    "stack_states",
    "step_key",
    "train_step",
    "unpack_batch",
    "unstack_state",
]
