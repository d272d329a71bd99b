"""How nnjax calls a module: with the mode flag and randomness its `__call__` asks for, the Flax way.

Flax's own layers learn the mode from attributes (`Dropout.deterministic`,
`BatchNorm.use_running_average`) that `module.train()` / `module.eval()` set;
nnjax's layers and many user modules take a flag. `call_module` does both, so a
module evaluates in inference mode whichever convention it follows.
"""

from __future__ import annotations

import functools
import inspect

from flax import nnx

_FLAGS = ("training", "train", "deterministic", "is_training")


@functools.cache
def _signature(module_type: type) -> tuple[frozenset, frozenset]:
    """(parameter names of `__call__`, those without a default)."""
    try:
        params = inspect.signature(module_type.__call__).parameters
    except (TypeError, ValueError):
        return frozenset(), frozenset()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return frozenset({"training", "key"}), frozenset()
    required = frozenset(n for n, p in params.items() if p.default is p.empty and n != "self"
                         and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY))
    return frozenset(params), required


def call_module(module: nnx.Module, x, *, training: bool, key=None):
    """Calls a Flax NNX module in training or inference mode.

    - A module that is not an nnjax layer is switched with `module.train()` / `module.eval()`
      (Flax's Dropout, BatchNorm and any module reading `deterministic` / `use_running_average`).
    - The flag its `__call__` accepts is passed too: `training=`, `train=`, `is_training=` or
      `deterministic=` (negated).
    - Randomness: `key=` (nnjax layers), or `rngs=` as an `nnx.Rngs` of the step's key. A module that
      requires `rngs` gets a fixed one in inference (its stochastic parts are off there).
    """
    from nnjax.layers.base import Layer

    accepted, required = _signature(type(module))
    if not isinstance(module, Layer) and hasattr(module, "train") and hasattr(module, "eval"):
        module.train() if training else module.eval()
    kwargs = {}
    for flag in _FLAGS:
        if flag in accepted:
            kwargs[flag] = (not training) if flag == "deterministic" else training
            break
    if "key" in accepted and key is not None:
        kwargs["key"] = key
    elif "rngs" in accepted and (key is not None or "rngs" in required):
        import jax

        kwargs["rngs"] = nnx.Rngs(key if key is not None else jax.random.PRNGKey(0))
    return module(x, **kwargs)


__all__ = ["call_module"]
