"""The arguments nnjax's Keras-named constructors were called with, as Keras's serialized form.

nnjax's losses, stateful metrics and learning-rate schedules are plain functions and tuples, not
classes with a `get_config`. To save a compiled model (and to write Keras's `compile_config`), the
constructors that make them record their arguments here, keyed by the function the result is made
of (a metric's `update`, a schedule itself), as Keras's `serialize_keras_object` writes them:

    {"module": "keras.metrics", "class_name": "Precision", "config": {"thresholds": 0.3, ...},
     "registered_name": None}
"""

from __future__ import annotations

import functools
import inspect
import weakref
from collections.abc import Callable
from typing import Any

_RECORDS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # function -> serialized form


def recorded(
    module: str, class_name: str, key: Callable[[Any], Any], *, drop: tuple[str, ...] = (), extra: dict | None = None
) -> Callable:
    """Decorates a constructor so that each result's arguments are recorded under `key(result)`.

    Args:
      module: Keras's module of the class, e.g. "keras.metrics".
      class_name: Keras's class name, e.g. "Precision".
      key: the function of the result the record is kept for (it lives as long as the result).
      drop: arguments left out of the config (nnjax-only ones).
      extra: entries Keras's config has and the constructor does not take (e.g. a schedule's `name`).

    Returns:
      A decorator; the constructor keeps its name, signature and docstring.
    """

    def decorator(constructor):
        signature = inspect.signature(constructor)

        @functools.wraps(constructor)
        def wrapper(*args, **kwargs):
            result = constructor(*args, **kwargs)
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            config = {k: v for k, v in bound.arguments.items() if k not in drop}
            config.update(extra or {})
            try:
                _RECORDS[key(result)] = {"module": module, "class_name": class_name, "config": config, "registered_name": None}
            except TypeError:  # a result that cannot be weakly referenced: nothing to record
                pass
            return result

        return wrapper

    return decorator


def serialized(obj, key: Callable[[Any], Any]) -> dict | None:
    """The recorded `{"module", "class_name", "config", "registered_name"}` of `obj` (a copy), or None."""
    try:
        record = _RECORDS.get(key(obj))
    except TypeError:
        return None
    return None if record is None else {**record, "config": dict(record["config"])}


__all__ = ["recorded", "serialized"]
