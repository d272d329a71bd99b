"""Weight constraints with Keras 3's names and arithmetic: `MaxNorm`, `MinMaxNorm`, `NonNeg`, `UnitNorm`.

A constraint is a callable `fn(weight) -> projected weight`; as in Keras, it is applied to the weight after
every optimizer update (`nnjax.train.constraints.apply_constraints`), never inside the forward pass:

    nj.layers.Dense(64, kernel_constraint=nj.constraints.MaxNorm(2.0), bias_constraint="non_neg")

Norms are taken over `axis` (0 by default: for a Dense kernel `(in, out)`, each unit's incoming weights)
and divided with Keras's `epsilon()` (1e-7) added.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from nnjax._identifiers import resolve
from nnjax._identifiers import serialize as _serialize

EPSILON = 1e-7  # keras.backend.epsilon()


def _norms(w, axis):
    return jnp.sqrt(jnp.sum(jnp.square(w), axis=axis, keepdims=True))


class Constraint:
    """Base class: `__call__(weight) -> weight` (the identity) and `get_config()`."""

    def __call__(self, w: jax.Array) -> jax.Array:
        return w

    def get_config(self) -> dict:
        return dataclasses.asdict(self) if dataclasses.is_dataclass(self) else {}

    @classmethod
    def from_config(cls, config: dict) -> Constraint:
        return cls(**config)


def _axis(axis):
    return tuple(axis) if isinstance(axis, list) else axis


@dataclasses.dataclass(frozen=True)
class MaxNorm(Constraint):
    """Rescales each slice along `axis` whose L2 norm exceeds `max_value`: `w * clip(n, 0, max) / (eps + n)`.

    Args:
      max_value: the largest norm (2 as in Keras).
      axis: the axis (or axes) the norm is taken over.
    """

    max_value: float = 2.0
    axis: Any = 0

    def __post_init__(self):
        object.__setattr__(self, "axis", _axis(self.axis))

    def __call__(self, w):
        norms = _norms(w, self.axis)
        desired = jnp.clip(norms, 0, self.max_value)
        return w * (desired / (EPSILON + norms))


@dataclasses.dataclass(frozen=True)
class NonNeg(Constraint):
    """`max(w, 0)`."""

    def __call__(self, w):
        return jnp.maximum(w, 0)


@dataclasses.dataclass(frozen=True)
class UnitNorm(Constraint):
    """`w / (eps + ||w||)` along `axis`.

    Args:
      axis: the axis (or axes) the norm is taken over.
    """

    axis: Any = 0

    def __post_init__(self):
        object.__setattr__(self, "axis", _axis(self.axis))

    def __call__(self, w):
        return w / (EPSILON + _norms(w, self.axis))


@dataclasses.dataclass(frozen=True)
class MinMaxNorm(Constraint):
    """Moves each slice's norm towards `[min_value, max_value]` by `rate`: `w * d / (eps + n)`,
    `d = rate * clip(n, min, max) + (1 - rate) * n`.

    Args:
      min_value, max_value: the interval (0.0, 1.0 as in Keras).
      rate: 1.0 projects at once; smaller values move part of the way.
      axis: the axis (or axes) the norm is taken over.
    """

    min_value: float = 0.0
    max_value: float = 1.0
    rate: float = 1.0
    axis: Any = 0

    def __post_init__(self):
        object.__setattr__(self, "axis", _axis(self.axis))

    def __call__(self, w):
        norms = _norms(w, self.axis)
        desired = self.rate * jnp.clip(norms, self.min_value, self.max_value) + (1 - self.rate) * norms
        return w * (desired / (EPSILON + norms))


# Keras's lower-case aliases of the classes.
max_norm = MaxNorm
min_max_norm = MinMaxNorm
non_neg = NonNeg
unit_norm = UnitNorm

_NAMES: dict[str, type] = {
    "Constraint": Constraint, "constraint": Constraint, "MaxNorm": MaxNorm, "max_norm": MaxNorm, "MinMaxNorm": MinMaxNorm,
    "min_max_norm": MinMaxNorm, "NonNeg": NonNeg, "non_neg": NonNeg, "UnitNorm": UnitNorm, "unit_norm": UnitNorm,
}


def get(identifier: Any, where: str = "constraint"):
    """A constraint from a name ("max_norm", "non_neg", "unit_norm", "min_max_norm"), a config dict, a class or a callable.

    Returns:
      None for None, else a callable `fn(weight) -> weight`.

    Raises:
      ValueError: for an unknown name or a value that is not callable; the message lists the names.
    """
    return resolve(identifier, _NAMES, kind="constraint", where=where, callable_form="fn(weight) -> weight")


def serialize(constraint):
    """Keras's serialized form: `{"module": "keras.constraints", "class_name": "MaxNorm", "config": {...},
    "registered_name": None}` (None and names as they are); `deserialize` (or `get`) reads it back.

    Example:
      >>> nj.constraints.serialize(nj.constraints.MaxNorm(2))["config"]
      {'max_value': 2, 'axis': 0}
    """
    return _serialize(constraint, _NAMES, module="keras.constraints")


def deserialize(config, custom_objects=None):
    """A constraint from `serialize`'s form (or a name), as Keras's `deserialize`."""
    names = {**_NAMES, **(custom_objects or {})}
    return resolve(config, names, kind="constraint", where="constraints.deserialize", callable_form="fn(weight) -> weight")


__all__ = ["Constraint", "MaxNorm", "MinMaxNorm", "NonNeg", "UnitNorm", "deserialize", "get", "max_norm", "min_max_norm",
           "non_neg", "serialize", "unit_norm"]
