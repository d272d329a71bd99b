"""How nnjax calls a module: with the mode flag and randomness its `__call__` asks for, the Flax way.

Flax's own layers learn the mode from attributes (`Dropout.deterministic`,
`BatchNorm.use_running_average`) that `module.train()` / `module.eval()` set;
nnjax's layers and many user modules take a flag. `call_module` does both, so a
module evaluates in inference mode whichever convention it follows.
"""

from __future__ import annotations

import functools
import inspect

import jax
from flax import nnx

_FLAGS = ("training", "train", "deterministic", "is_training")
INFERENCE_KEY_SEED = 0  # an explicit key argument gets `jax.random.PRNGKey(0)` in inference


def is_rng_argument(name: str) -> bool:
    """Whether a `__call__` parameter named `name` is an explicit PRNG key (`z_rng`, `noise_key`, `rng`)."""
    return name not in ("key", "rngs") and (name.endswith("rng") or name.endswith("key"))


@functools.cache
def call_signature(module_type: type) -> tuple[frozenset, frozenset, tuple[str, ...]]:
    """(parameter names of `__call__`, those without a default, required explicit-rng parameters in order)."""
    try:
        params = inspect.signature(module_type.__call__).parameters
    except (TypeError, ValueError):
        return frozenset(), frozenset(), ()
    required = tuple(n for n, p in params.items() if p.default is p.empty and n != "self"
                     and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY))
    rng_args = tuple(n for n in required if is_rng_argument(n))
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return frozenset({"training", "key"}), frozenset(), rng_args
    return frozenset(params), frozenset(required), rng_args


def rng_arguments(names: tuple[str, ...], key) -> dict:
    """Keys for the explicit rng parameters `names` of a `__call__`.

    Training (`key` given): the i-th gets `fold_in(key, i + 1)` (apart from the `rngs` built from `key`).
    Inference (`key` None): the fixed `PRNGKey(0)`, or `fold_in(PRNGKey(0), i)` for the i-th of several.
    """
    if not names:
        return {}
    if key is not None:
        return {name: jax.random.fold_in(key, index + 1) for index, name in enumerate(names)}
    base = jax.random.PRNGKey(INFERENCE_KEY_SEED)
    if len(names) == 1:
        return {names[0]: base}
    return {name: jax.random.fold_in(base, index) for index, name in enumerate(names)}


def call_module(module: nnx.Module, x, *, training: bool, key=None):
    """Calls a Flax NNX module in training or inference mode.

    The rule, for every module nnjax calls (the model's own and each layer of a `Sequential`):

    - Mode: a module that is not an nnjax layer is switched with `module.train()` / `module.eval()`
      (Flax's Dropout, BatchNorm and any module reading `deterministic` / `use_running_average`
      follow it), *and* the flag its `__call__` accepts is passed: `training=`, `train=`,
      `is_training=` or `deterministic=` (negated). `fit` runs in training mode; `evaluate` and
      `predict` in inference mode (BatchNorm uses its running statistics, Dropout is off).
    - Randomness: `key=` (nnjax layers), or `rngs=` as an `nnx.Rngs` of the step's key. A module that
      requires `rngs` gets a fixed `nnx.Rngs(0)` in inference (its stochastic parts are off there).
    - Explicit keys: a required parameter whose name ends in `rng` or `key` (`z_rng`, `noise_key`)
      gets a PRNG key: `fold_in(step key, i + 1)` for the i-th in training, and the fixed
      `jax.random.PRNGKey(0)` in inference (`fold_in(PRNGKey(0), i)` for several), so
      `evaluate`/`predict` are reproducible. A required `key=` gets `PRNGKey(0)` in inference.

    Args:
      module: the module to call.
      x: its input pytree.
      training: the mode.
      key: the step's PRNG key (None in inference).

    Returns:
      Whatever the module returns.
    """
    from nnjax.layers.base import Layer

    accepted, required, rng_args = call_signature(type(module))
    if not isinstance(module, Layer) and hasattr(module, "train") and hasattr(module, "eval"):
        module.train() if training else module.eval()
    kwargs = {}
    for flag in _FLAGS:
        if flag in accepted:
            kwargs[flag] = (not training) if flag == "deterministic" else training
            break
    if "key" in accepted and (key is not None or "key" in required):
        kwargs["key"] = key if key is not None else jax.random.PRNGKey(INFERENCE_KEY_SEED)
    elif "rngs" in accepted and (key is not None or "rngs" in required):
        kwargs["rngs"] = nnx.Rngs(key if key is not None else jax.random.PRNGKey(0))
    kwargs.update(rng_arguments(rng_args, key))
    outputs = module(x, **kwargs)
    if not isinstance(module, Layer):
        from nnjax.layers.masking import warn_if_masked

        warn_if_masked(module, x)
    return outputs


__all__ = ["call_module", "call_signature", "is_rng_argument", "rng_arguments"]
