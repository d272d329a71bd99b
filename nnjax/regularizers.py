"""Weight and activity regularizers with Keras 3's names and arithmetic: `L1`, `L2`, `L1L2`.

A regularizer is a callable `fn(weight) -> scalar`; the penalty of a layer's weights joins the training
loss once per forward pass (Keras adds `layer.losses` to the compiled loss), an activity penalty is
divided by the batch size, as Keras 3 divides it:

    nj.layers.Dense(64, kernel_regularizer=nj.regularizers.L2(1e-4), bias_regularizer="l1")

Names resolve as Keras 3 resolves them: "l1" is `L1()` (0.01), "l2" is `L2()` (0.01), "l1l2" is `L1L2()`
(both factors 0.0, Keras's defaults for the class); Keras 3 does not know "l1_l2" as a name.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from nnjax._identifiers import resolve
from nnjax._identifiers import serialize as _serialize


def _factor(value, name: str, where: str) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: `{name}` must be a non-negative float; got {value!r}") from None
    if not value >= 0.0 or value == float("inf"):
        raise ValueError(f"{where}: `{name}` must be a non-negative finite float; got {value!r}")
    return value


class Regularizer:
    """Base class: `__call__(weight) -> scalar penalty` and `get_config()`."""

    def __call__(self, x: jax.Array) -> jax.Array:
        return jnp.zeros((), jnp.result_type(x))

    def get_config(self) -> dict:
        return dataclasses.asdict(self) if dataclasses.is_dataclass(self) else {}

    @classmethod
    def from_config(cls, config: dict) -> Regularizer:
        return cls(**config)


@dataclasses.dataclass(frozen=True)
class L1(Regularizer):
    """`l1 * sum(|x|)`.

    Args:
      l1: the factor (0.01 as in Keras).
    """

    l1: float = 0.01

    def __post_init__(self):
        object.__setattr__(self, "l1", _factor(self.l1, "l1", "L1"))

    def __call__(self, x):
        return jnp.asarray(self.l1, jnp.result_type(x)) * jnp.sum(jnp.abs(x))

    def get_config(self) -> dict:
        # Keras's L1 holds its factor as a float32 tensor, so its config carries the float32 value (0.01 -> 0.0099999998).
        return {"l1": float(np.float32(self.l1))}


@dataclasses.dataclass(frozen=True)
class L2(Regularizer):
    """`l2 * sum(x ** 2)`.

    Args:
      l2: the factor (0.01 as in Keras).
    """

    l2: float = 0.01

    def __post_init__(self):
        object.__setattr__(self, "l2", _factor(self.l2, "l2", "L2"))

    def __call__(self, x):
        return jnp.asarray(self.l2, jnp.result_type(x)) * jnp.sum(jnp.square(x))


@dataclasses.dataclass(frozen=True)
class L1L2(Regularizer):
    """`l1 * sum(|x|) + l2 * sum(x ** 2)` (a zero factor adds nothing, as in Keras).

    Args:
      l1, l2: the factors (0.0 as in Keras's class).
    """

    l1: float = 0.0
    l2: float = 0.0

    def __post_init__(self):
        object.__setattr__(self, "l1", _factor(0.0 if self.l1 is None else self.l1, "l1", "L1L2"))
        object.__setattr__(self, "l2", _factor(0.0 if self.l2 is None else self.l2, "l2", "L1L2"))

    def __call__(self, x):
        dtype = jnp.result_type(x)
        penalty = jnp.zeros((), dtype)
        if self.l1 != 0.0:
            penalty = penalty + jnp.asarray(self.l1, dtype) * jnp.sum(jnp.abs(x))
        if self.l2 != 0.0:
            penalty = penalty + jnp.asarray(self.l2, dtype) * jnp.sum(jnp.square(x))
        return penalty


# Keras's lower-case aliases of the classes.
l1 = L1
l2 = L2
l1_l2 = L1L2


_NAMES: dict[str, type] = {"l1": L1, "l2": L2, "l1l2": L1L2, "L1": L1, "L2": L2, "L1L2": L1L2, "Regularizer": Regularizer,
                           "regularizer": Regularizer}


def get(identifier: Any, where: str = "regularizer"):
    """A regularizer from a name ("l1", "l2", "l1_l2"), a `{"class_name", "config"}` dict, a class or a callable.

    Returns:
      None for None, else a callable `fn(weight) -> scalar`.

    Raises:
      ValueError: for an unknown name or a value that is not callable; the message lists the names.
    """
    return resolve(identifier, _NAMES, kind="regularizer", where=where, callable_form="fn(weight) -> scalar")


def serialize(regularizer):
    """Keras's serialized form: `{"module": "keras.regularizers", "class_name": "L2", "config": {"l2": 0.01},
    "registered_name": None}` (None and names as they are); `deserialize` (or `get`) reads it back.

    Example:
      >>> nj.regularizers.serialize(nj.regularizers.L1L2(l1=0.1, l2=0.2))["config"]
      {'l1': 0.1, 'l2': 0.2}
    """
    return _serialize(regularizer, _NAMES, module="keras.regularizers")


def deserialize(config, custom_objects=None):
    """A regularizer from `serialize`'s form (or a name), as Keras's `deserialize`."""
    names = {**_NAMES, **(custom_objects or {})}
    return resolve(config, names, kind="regularizer", where="regularizers.deserialize", callable_form="fn(weight) -> scalar")


__all__ = ["L1", "L1L2", "L2", "Regularizer", "deserialize", "get", "l1", "l1_l2", "l2", "serialize"]
