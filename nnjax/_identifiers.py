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
