"""The arguments each layer was constructed with: what whole-model saving writes as the layer's config.

`Layer.__init_subclass__` wraps every subclass's `__init__` with `recording_init`; the outermost
`__init__` of an object records its arguments (the ones a subclass passes on to `super().__init__`
are not recorded again). `init_arguments(layer)` reads them back; `nnjax.saving` serialises them
and rebuilds the layer as `cls(**arguments)` (Keras's `from_config`).
"""

from __future__ import annotations

import functools
import inspect
import weakref
from collections.abc import Callable

_arguments: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # layer -> {name: value} or None (positional *args)
_recording: set = set()  # ids of the objects whose outermost __init__ is running


def recording_init(init: Callable) -> Callable:
    """`init` wrapped so that the outermost call on an object records its bound arguments."""
    if getattr(init, "_records_arguments", False):
        return init
    signature = inspect.signature(init)

    @functools.wraps(init)
    def __init__(self, *args, **kwargs):  # noqa: N807 - the wrapped method
        if id(self) in _recording:
            return init(self, *args, **kwargs)
        _recording.add(id(self))
        try:
            record = _bind(signature, self, args, kwargs)
            init(self, *args, **kwargs)
        finally:
            _recording.discard(id(self))
        try:
            _arguments[self] = record
        except TypeError:  # an object that cannot be weakly referenced
            pass

    __init__._records_arguments = True
    return __init__


def _bind(signature: inspect.Signature, self, args, kwargs) -> dict | None:
    try:
        bound = signature.bind(self, *args, **kwargs)
    except TypeError:
        return None  # the call itself raises
    out = {}
    for index, (name, value) in enumerate(bound.arguments.items()):
        if index == 0:
            continue
        kind = signature.parameters[name].kind
        if kind is inspect.Parameter.VAR_POSITIONAL:
            if value:
                return None
        elif kind is inspect.Parameter.VAR_KEYWORD:
            out.update(value)
        else:
            out[name] = value
    return out


def init_arguments(layer) -> dict | None:
    """The keyword arguments `layer` was constructed with, or None if they were not recorded
    (a class outside `Layer`, or positional `*args` that have no names)."""
    try:
        record = _arguments.get(layer)
    except TypeError:
        return None
    return None if record is None else dict(record)


def has_init_arguments(layer) -> bool:
    try:
        return layer in _arguments and _arguments[layer] is not None
    except TypeError:
        return False


__all__ = ["has_init_arguments", "init_arguments", "recording_init"]
