"""Learning-rate schedules with Keras's names, as plain optax schedules.

Each constructor returns a function `step -> learning_rate` (an
`optax.Schedule`): pass it, or any optax schedule, as `learning_rate` to an
nnjax optimizer. The step is the number of optimizer updates applied so far,
and the rate of the latest step is what `fit` logs as "learning_rate".

    lr = nj.optimizers.schedules.CosineDecay(1e-3, decay_steps=10_000, warmup_steps=500, warmup_target=3e-3)
    model.compile(optimizer=nj.optimizers.Adam(lr), ...)

The formulas are Keras's (`keras.optimizers.schedules`), including its edge
cases (e.g. `PiecewiseConstantDecay` switches *after* a boundary).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax.numpy as jnp
import optax

from nnjax.train.recorded import recorded, serialized


def _step(count):
    return jnp.asarray(count, jnp.float32)


def _check_positive(what: str, name: str, value) -> None:
    if not value > 0:
        raise ValueError(f"{what}: `{name}` must be > 0; got {value!r}")


def ExponentialDecay(initial_learning_rate: float, decay_steps: int, decay_rate: float, staircase: bool = False) -> optax.Schedule:  # noqa: N802
    """`initial_learning_rate * decay_rate ** (step / decay_steps)` (floored exponent with `staircase`)."""
    _check_positive("ExponentialDecay", "decay_steps", decay_steps)

    def schedule(count):
        p = _step(count) / decay_steps
        p = jnp.floor(p) if staircase else p
        return initial_learning_rate * jnp.power(decay_rate, p)

    return schedule


def InverseTimeDecay(initial_learning_rate: float, decay_steps: int, decay_rate: float, staircase: bool = False) -> optax.Schedule:  # noqa: N802
    """`initial_learning_rate / (1 + decay_rate * step / decay_steps)` (floored with `staircase`)."""
    _check_positive("InverseTimeDecay", "decay_steps", decay_steps)

    def schedule(count):
        p = _step(count) / decay_steps
        p = jnp.floor(p) if staircase else p
        return initial_learning_rate / (1.0 + decay_rate * p)

    return schedule


def PiecewiseConstantDecay(boundaries: Sequence[int], values: Sequence[float]) -> optax.Schedule:  # noqa: N802
    """`values[0]` while `step <= boundaries[0]`, `values[1]` while `step <= boundaries[1]`, ..., then `values[-1]`.

    Raises:
      ValueError: unless `len(values) == len(boundaries) + 1`.
    """
    boundaries, values = list(boundaries), list(values)
    if len(values) != len(boundaries) + 1:
        raise ValueError(
            f"PiecewiseConstantDecay: expected len(values) == len(boundaries) + 1; got {len(values)} values and {len(boundaries)} boundaries"
        )
    b = jnp.asarray(boundaries, jnp.float32)
    v = jnp.asarray(values, jnp.float32)

    def schedule(count):
        return v[jnp.sum(_step(count) > b)]

    return schedule


def PolynomialDecay(  # noqa: N802
    initial_learning_rate: float, decay_steps: int, end_learning_rate: float = 0.0001, power: float = 1.0, cycle: bool = False
) -> optax.Schedule:
    """`(initial - end) * (1 - step / decay_steps) ** power + end`, holding `end` after `decay_steps`.

    With `cycle=True` the decay restarts with `decay_steps` stretched to the next
    multiple above `step`, as in Keras.
    """
    _check_positive("PolynomialDecay", "decay_steps", decay_steps)

    def schedule(count):
        step = _step(count)
        if cycle:
            steps = decay_steps * jnp.maximum(jnp.ceil(step / decay_steps), 1.0)
        else:
            steps = jnp.float32(decay_steps)
            step = jnp.minimum(step, steps)
        return (initial_learning_rate - end_learning_rate) * jnp.power(1.0 - step / steps, power) + end_learning_rate

    return schedule


def CosineDecay(  # noqa: N802
    initial_learning_rate: float,
    decay_steps: int,
    alpha: float = 0.0,
    warmup_target: float | None = None,
    warmup_steps: int = 0,
) -> optax.Schedule:
    """Cosine decay to `alpha * peak` over `decay_steps`, after an optional linear warmup.

    Without warmup the peak is `initial_learning_rate`. With `warmup_target`
    and `warmup_steps`, the rate rises linearly from `initial_learning_rate` to
    `warmup_target` over `warmup_steps`, then decays from `warmup_target`.
    """
    _check_positive("CosineDecay", "decay_steps", decay_steps)
    peak = initial_learning_rate if warmup_target is None else warmup_target

    def schedule(count):
        step = _step(count)
        decay_step = jnp.clip(step - warmup_steps, 0.0, decay_steps)
        cosine = 0.5 * (1.0 + jnp.cos(math.pi * decay_step / decay_steps))
        decayed = peak * ((1.0 - alpha) * cosine + alpha)
        if warmup_target is None or warmup_steps <= 0:
            return decayed
        warm = initial_learning_rate + (warmup_target - initial_learning_rate) * step / warmup_steps
        return jnp.where(step < warmup_steps, warm, decayed)

    return schedule


def CosineDecayRestarts(  # noqa: N802
    initial_learning_rate: float, first_decay_steps: int, t_mul: float = 2.0, m_mul: float = 1.0, alpha: float = 0.0
) -> optax.Schedule:
    """SGDR: cosine decays that restart, each `t_mul` times longer and `m_mul` times lower than the last."""
    _check_positive("CosineDecayRestarts", "first_decay_steps", first_decay_steps)

    def schedule(count):
        fraction = _step(count) / first_decay_steps
        if t_mul == 1.0:
            restart = jnp.floor(fraction)
            fraction = fraction - restart
        else:
            restart = jnp.floor(jnp.log(1.0 - fraction * (1.0 - t_mul)) / math.log(t_mul))
            done = (1.0 - jnp.power(t_mul, restart)) / (1.0 - t_mul)
            fraction = (fraction - done) / jnp.power(t_mul, restart)
        cosine = 0.5 * jnp.power(m_mul, restart) * (1.0 + jnp.cos(math.pi * fraction))
        return initial_learning_rate * ((1.0 - alpha) * cosine + alpha)

    return schedule


SCHEDULES = {
    "exponential_decay": ExponentialDecay,
    "inverse_time_decay": InverseTimeDecay,
    "piecewise_constant_decay": PiecewiseConstantDecay,
    "polynomial_decay": PolynomialDecay,
    "cosine_decay": CosineDecay,
    "cosine_decay_restarts": CosineDecayRestarts,
}
_KERAS_NAMES = {"PiecewiseConstantDecay": "PiecewiseConstant", "CosineDecayRestarts": "SGDRDecay"}  # Keras's defaults
for _name, _constructor in list(SCHEDULES.items()):
    # Each schedule records its arguments, as Keras's config (with its default `name`), for saving a compiled model.
    SCHEDULES[_name] = globals()[_constructor.__name__] = recorded(
        "keras.optimizers.schedules", _constructor.__name__, key=lambda schedule: schedule,
        extra={"name": _KERAS_NAMES.get(_constructor.__name__, _constructor.__name__)})(_constructor)
del _name, _constructor
_BY_CLASS_NAME = {fn.__name__: fn for fn in SCHEDULES.values()}


def serialize(schedule) -> dict | None:
    """Keras's `{"module", "class_name", "config", "registered_name"}` of a schedule made here, or None (any other)."""
    return serialized(schedule, key=lambda fn: fn)


def deserialize(data: dict) -> optax.Schedule:
    """The schedule Keras's (or `serialize`'s) form names, e.g. `{"class_name": "ExponentialDecay", "config": {...}}`.

    Raises:
      ValueError: for a class that is not one of Keras's schedules.
    """
    config = {k: v for k, v in (data.get("config") or {}).items() if k != "name"}
    return get(data["class_name"], **config)


def get(name: str, **config) -> optax.Schedule:
    """A schedule by Keras class name or snake-case name, e.g. `get("CosineDecay", initial_learning_rate=1e-3, decay_steps=100)`.

    Raises:
      ValueError: for an unknown name; the message lists the valid ones.
    """
    fn = SCHEDULES.get(name) or _BY_CLASS_NAME.get(name)
    if fn is None:
        raise ValueError(f"unknown learning-rate schedule {name!r}; expected one of {sorted(_BY_CLASS_NAME)} or {sorted(SCHEDULES)}")
    return fn(**config)


__all__ = [
    "SCHEDULES",
    "CosineDecay",
    "CosineDecayRestarts",
    "ExponentialDecay",
    "InverseTimeDecay",
    "PiecewiseConstantDecay",
    "PolynomialDecay",
    "deserialize",
    "get",
    "serialize",
]
