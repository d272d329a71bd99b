"""`compile`'s arguments resolved: optimizer, loss and metric names looked up, policies applied."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np
import optax

from nnjax.train import losses as losses_lib
from nnjax.train import metrics as metrics_lib
from nnjax.train import nonfinite as nonfinite_lib
from nnjax.train import optimizers as optimizers_lib
from nnjax.train import precision
from nnjax.utils.random import as_key, next_seed


@dataclasses.dataclass
class CompileConfig:
    """What `compile` was given, resolved."""

    tx: optax.GradientTransformation
    loss: losses_lib.Loss | None
    metrics: tuple
    loss_fn: Callable | None
    steps_per_execution: int | str  # or "auto": measured by fit (nnjax.shell.steps_policy)
    compute_dtype: Any
    distribution: Any
    seed: int
    nonfinite: Any = None  # an nnjax.train.nonfinite.NonFinitePolicy or None
    log_learning_rate: bool = False  # the optimizer's rate is a schedule: log it each epoch


def resolve(optimizer, loss, metrics, *, loss_fn: Callable | None, steps_per_execution: int | str, dtype_policy: str | None,
            distribution, seed, nonfinite) -> CompileConfig:
    """`Model.compile`'s arguments as a `CompileConfig` (see `Model.compile` for each).

    Raises:
      ValueError / TypeError: for unknown names or bad values, before anything is compiled.
    """
    tx = optimizers_lib.get(optimizer)
    loss_obj = losses_lib.get(loss) if loss is not None else None
    if loss_obj is None and loss_fn is None:
        raise ValueError("compile: pass `loss` (e.g. loss='sparse_categorical_crossentropy') or `loss_fn`; got neither")
    metric_objs = tuple(metrics_lib.get(m, loss_obj) for m in (metrics or []))
    if steps_per_execution != "auto" and (isinstance(steps_per_execution, bool) or not isinstance(steps_per_execution, int)
                                          or steps_per_execution < 1):
        raise ValueError(f"compile: `steps_per_execution` must be 'auto' or a positive int; got {steps_per_execution!r}")
    log_learning_rate = optimizers_lib.has_schedule(tx)
    policy = precision.get_policy(dtype_policy)
    if policy.loss_scaling:
        tx = precision.dynamic_loss_scale(tx)
    nonfinite_policy = nonfinite_lib.get_policy(nonfinite)
    if nonfinite_policy is not None:
        tx = nonfinite_lib.tracked(tx)
    if seed is None:
        data_seed = next_seed()
    else:
        data_seed = int(seed) if isinstance(seed, (int, np.integer)) else int(np.asarray(as_key(seed))[-1])
    return CompileConfig(
        tx=tx, loss=loss_obj, metrics=metric_objs, loss_fn=loss_fn, steps_per_execution=steps_per_execution,
        compute_dtype=policy.compute_dtype, distribution=distribution, seed=data_seed, nonfinite=nonfinite_policy,
        log_learning_rate=log_learning_rate,
    )


__all__ = ["CompileConfig", "resolve"]
