"""Keras's `get(identifier)` rule, shared by `nj.regularizers.get` and `nj.constraints.get`."""

from __future__ import annotations

import inspect
from typing import Any


def resolve(identifier: Any, names: dict[str, type], *, kind: str, where: str, callable_form: str):
    """None, an instance of a class named in `names` (a name, a `{"class_name", "config"}` dict or a class), or a callable.

    Raises:
      ValueError: for an unknown name or a value that is not callable; the message lists the names.
    """
    if identifier is None:
        return None
    if isinstance(identifier, dict):
        cls = names.get(identifier.get("class_name"))
        if cls is None:
            raise ValueError(f"{where}: unknown {kind} {identifier.get('class_name')!r}; expected one of {sorted(names)}")
        return cls(**identifier.get("config", {}))
    if isinstance(identifier, str):
        if identifier not in names:
            raise ValueError(f"{where}: could not interpret {kind} identifier {identifier!r}; expected one of "
                             f"{sorted(names)} or a callable {callable_form}")
        return names[identifier]()
    if inspect.isclass(identifier):
        return identifier()
    if callable(identifier):
        return identifier
    raise ValueError(f"{where}: could not interpret {kind} identifier {identifier!r}; expected a name or a callable")


def _json_ready(value):
    if isinstance(value, tuple):
        return [_json_ready(v) for v in value]
    if isinstance(value, dict):
        return {k: _json_ready(v) for k, v in value.items()}
    return value


def serialize(obj: Any, names: dict[str, type], *, module: str):
    """Keras's `serialize_keras_object` form of a regularizer or constraint.

    Args:
      obj: None, a name (kept: Keras's `get` reads it back), or an object with `get_config()`.
      names: the package's classes by name; an instance of one is written under `module`.
      module: "keras.regularizers" or "keras.constraints".

    Returns:
      None, the name, `{"module", "class_name", "config", "registered_name": None}` (tuples written as lists),
      or a callable without `get_config` unchanged (it has no data form).
    """
    if obj is None or isinstance(obj, (str, dict)):
        return obj
    get_config = getattr(obj, "get_config", None)
    if get_config is None:
        return obj
    cls = type(obj)
    builtin = names.get(cls.__name__) is cls
    return {"module": module if builtin else cls.__module__, "class_name": cls.__name__,
            "config": _json_ready(get_config()), "registered_name": None}
