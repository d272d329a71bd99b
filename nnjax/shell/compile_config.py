"""`compile`'s arguments resolved: optimizer, loss and metric names looked up, policies applied."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import jax
import numpy as np
import optax

from nnjax.train import confusion, metric_adapters, precision
from nnjax.train import losses as losses_lib
from nnjax.train import metrics as metrics_lib
from nnjax.train import nonfinite as nonfinite_lib
from nnjax.train import optimizers as optimizers_lib
from nnjax.train.state import OutputHead
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
    weighted_metrics: tuple = ()  # weighted by sample_weight (Keras's `weighted_metrics`)
    outputs: tuple = ()  # an OutputHead per output of a multi-output model (per-output loss and metrics)


def _metric(identifier, loss):
    """A metric object's accumulator (`nnjax.train.metric_adapters`), a stateful metric (Precision, AUC, ...:
    `nnjax.train.confusion`) or a per-element one."""
    accumulator = metric_adapters.as_accumulator(identifier)
    if accumulator is not None:
        return accumulator
    stateful = confusion.get(identifier)
    return stateful if stateful is not None else metrics_lib.get(identifier, loss)


def _metric_list(value, argument: str) -> list:
    if value is None:
        return []
    if isinstance(value, dict):
        raise ValueError(f"compile: `{argument}` as a dict (per output) is not supported for single-output models; "
                         f"pass a list; got {sorted(value)}")
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _per_output(value, kind: str, names: list[str], argument: str, *, flat_list: bool) -> list:
    """`value` as one entry per output: a list/tuple by position, a dict by output name (missing: None).

    `flat_list`: a list whose length is not the number of outputs is an error (Keras's rule for `metrics`);
    otherwise a value that is not a list or a dict applies to every output (Keras's rule for `loss`).
    """
    given = f"{value!r}"
    if isinstance(value, dict):
        unknown = [key for key in value if key not in names]
        if unknown:
            raise ValueError(f"compile: `{argument}` as a dict must be keyed by the model's output names {names}; "
                             f"received keys {list(value)} (not outputs: {unknown})")
        if kind != "dict" and argument == "loss" and set(value) != set(names):
            raise ValueError(f"compile: `loss` as a dict must have a key for every output {names} (Keras's rule for "
                             f"list outputs; use None for an output without a loss); received keys {list(value)}")
        return [value.get(name) for name in names]
    if isinstance(value, (list, tuple)):
        if len(value) != len(names):
            raise ValueError(f"compile: `{argument}` as a list must have one entry per output {names} "
                             f"({len(names)}), or be a dict keyed by them; received {len(value)} entries: {given}")
        return list(value)
    if flat_list:
        raise ValueError(f"compile: `{argument}` for a model with outputs {names} must be a list with one entry per "
                         f"output or a dict keyed by them; received {given}")
    return [value] * len(names)


def _output_heads(loss, loss_weights, metrics, weighted_metrics, structure) -> tuple:
    """An `OutputHead` per output of a multi-output model, from `compile`'s per-output arguments (Keras's rules)."""
    kind, names = structure
    losses = _per_output(loss, kind, names, "loss", flat_list=False)
    if loss_weights is None:
        weights = [None] * len(names)
    elif isinstance(loss_weights, (int, float)) and not isinstance(loss_weights, bool):
        raise ValueError(f"compile: `loss_weights` for a model with outputs {names} must be a list with one weight per "
                         f"output or a dict keyed by them; received {loss_weights!r}")
    else:
        weights = _per_output(loss_weights, kind, names, "loss_weights", flat_list=True)
    per_metrics = [None] * len(names) if not metrics else _per_output(metrics, kind, names, "metrics", flat_list=True)
    per_weighted = [None] * len(names) if not weighted_metrics else _per_output(
        weighted_metrics, kind, names, "weighted_metrics", flat_list=True)
    heads = []
    for position, name in enumerate(names):
        loss_obj = losses_lib.get(losses[position]) if losses[position] is not None else None
        weight = weights[position]
        if weight is not None and (isinstance(weight, bool) or not isinstance(weight, (int, float, np.number))):
            raise ValueError(f"compile: `loss_weights` of output {name!r} must be a number; received {weight!r}")
        heads.append(OutputHead(
            name=name, key=name if kind == "dict" else position, position=position, loss=loss_obj,
            loss_weight=None if weight is None else float(weight),
            metrics=tuple(_metric(m, loss_obj) for m in _entries(per_metrics[position])),
            weighted_metrics=tuple(_metric(m, loss_obj) for m in _entries(per_weighted[position]))))
    if all(head.loss is None for head in heads):
        raise ValueError(f"compile: `loss` gives no output of {names} a loss; received {loss!r}")
    return tuple(heads)


def _entries(value) -> list:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _single(value, names, argument):
    """A dict keyed by the one output's name (Keras accepts it) as its value."""
    if isinstance(value, dict) and names is not None and len(names) == 1 and set(value) == set(names):
        return value[names[0]]
    return value


def _single_weight(loss_weights, names) -> float:
    """The factor of a single-output model's loss: a float, a one-entry list or a dict keyed by the output (Keras's)."""
    value = loss_weights
    if isinstance(value, (list, tuple)) and len(value) == 1:
        value = value[0]
    elif isinstance(value, dict) and names is not None and len(names) == 1 and set(value) == set(names):
        value = value[names[0]]
    elif isinstance(value, (list, tuple, dict)):
        raise ValueError(f"compile: `loss_weights` for a model with one output "
                         f"{names[0] if names else ''!r} must be a float, a list with one float or a dict keyed by the "
                         f"output's name; received loss_weights={loss_weights!r}")
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (float, int, np.floating, np.integer)):
        raise ValueError(f"compile: expected `loss_weights` to be a float (single output case) or a list, tuple, or "
                         f"dict (multiple output case); received loss_weights={loss_weights!r} of type "
                         f"{type(loss_weights).__name__}")
    if value is loss_weights and not isinstance(value, (float, np.floating)):
        raise ValueError(f"compile: expected `loss_weights` to be a float for a single-output model (Keras refuses an "
                         f"int here); received loss_weights={loss_weights!r}; pass {float(value)!r}")
    return float(value)


def _scaled(loss_obj, weight: float):
    """`loss_obj` with its per-element losses multiplied by `weight`: every reduction is linear, so the scalar loss is
    `weight` times the unweighted one, as Keras multiplies the compiled loss."""
    if loss_obj is None:
        return None

    @functools.wraps(loss_obj.fn)  # keeps the function's module: nnjax's own losses still have their labels checked
    def weighted(y_true, y_pred):
        return jax.tree.map(lambda value: value * weight, loss_obj.per_element(y_true, y_pred))

    return losses_lib.Loss(loss_obj.name, loss_obj.reduction, fn=weighted, sparse_labels=loss_obj.sparse_labels,
                           kind=loss_obj.kind, mask_fn=loss_obj.mask_fn)


def resolve(optimizer, loss, metrics, *, loss_fn: Callable | None, steps_per_execution: int | str, dtype_policy: str | None,
            distribution, seed, nonfinite, weighted_metrics=None, loss_weights=None, outputs=None) -> CompileConfig:
    """`Model.compile`'s arguments as a `CompileConfig` (see `Model.compile` for each).

    `outputs` is `(kind, names)` of the model's outputs ("single", "list" or "dict"; see
    `nnjax.shell.checks.output_structure`), or None when the model does not declare them.
    Without `loss` (or `loss_fn`), the layers' `add_loss` values are the objective (a Keras-form `train_step`
    computes its own); a step with no objective at all says so when it is traced.

    Raises:
      ValueError / TypeError: for unknown names or bad values, before anything is compiled.
    """
    tx = optimizers_lib.get(optimizer)
    heads = ()
    names = None if outputs is None else list(outputs[1])
    several = outputs is not None and outputs[0] != "single" and len(names) > 1
    if several and loss_fn is None and loss is not None:
        heads = _output_heads(loss, loss_weights, metrics, weighted_metrics, (outputs[0], names))
        loss = metrics = weighted_metrics = None
    elif several and loss_fn is not None and (metrics or weighted_metrics or loss_weights is not None):
        raise ValueError(f"compile: with `loss_fn`, per-output `metrics`, `weighted_metrics` and `loss_weights` of the "
                         f"outputs {names} are not supported; pass `loss=` per output instead, or return the values "
                         "to log from `loss_fn` as `(loss, aux)`")
    elif loss_weights is not None and (loss_fn is not None or several):
        raise ValueError(f"compile: `loss_weights` scales the compiled `loss`; with `loss_fn` there is none to scale, "
                         f"return the weighted objective from `loss_fn` instead; received loss_weights={loss_weights!r}")
    elif isinstance(loss, (list, tuple, dict)) and not (isinstance(loss, dict) and names and len(names) == 1):
        raise ValueError(
            f"compile: `loss` as a {type(loss).__name__} (one per output) needs a functional model with several outputs "
            f"(nj.Model(inputs, [out1, out2]) or a dict of outputs); this model has "
            f"{'the one output ' + str(names) if names else 'no declared outputs'}; received loss={loss!r}")
    loss = _single(loss, names, "loss")
    metrics, weighted_metrics = _single(metrics, names, "metrics"), _single(weighted_metrics, names, "weighted_metrics")
    loss_obj = losses_lib.get(loss) if loss is not None else None
    metric_objs = tuple(_metric(m, loss_obj) for m in _metric_list(metrics, "metrics"))
    weighted_objs = tuple(_metric(m, loss_obj) for m in _metric_list(weighted_metrics, "weighted_metrics"))
    if loss_weights is not None and not heads:
        loss_obj = _scaled(loss_obj, _single_weight(loss_weights, names))
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
        log_learning_rate=log_learning_rate, weighted_metrics=weighted_objs, outputs=heads,
    )


__all__ = ["CompileConfig", "resolve"]
