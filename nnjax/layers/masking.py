"""Keras's masks: which time steps of a sequence are padding, carried from layer to layer.

A mask is a boolean array of an output's leading axes (`(batch, timesteps)` for a sequence) that
travels beside the array it describes, as Keras's `_keras_mask`: `Embedding(mask_zero=True)` and
`Masking` create one; a layer that supports masking receives its input's mask (`call(..., mask=)`,
and `query_mask`/`value_mask`/`key_mask` for attention) and gives its output a mask
(`compute_mask(inputs, previous_mask)`); a layer that does not support masking drops it with
Keras's warning. A model output that carries a mask leaves the masked steps out of the loss and
of the `compile(metrics=)` averages, as Keras does.

JAX arrays and tracers take no attributes, so the masks live in a table keyed by the array
object (weakly: an entry goes with its array). Within one trace an array keeps its identity, so a
mask set by one layer is found by the next; a transformation that returns new arrays (`jit`,
`vmap`, `grad` outputs) returns them without masks, as in Keras's JAX backend.
"""

from __future__ import annotations

import functools
import inspect
import threading
import warnings
import weakref

import jax
import jax.numpy as jnp

from nnjax.layers.base import Layer, shape_str

_MASKS: dict[int, tuple[weakref.ref, jax.Array]] = {}
_ACTIVE = threading.local()


def _forget(key: int) -> None:
    _MASKS.pop(key, None)


def get_mask(x):
    """The mask attached to `x` (an array or tracer), or None."""
    entry = _MASKS.get(id(x))
    if entry is None:
        return None
    ref, mask = entry
    return mask if ref() is x else None


def set_mask(x, mask) -> None:
    """Attaches `mask` (None: removes the mask) to the array or tracer `x`."""
    key = id(x)
    if mask is None:
        _MASKS.pop(key, None)
        return
    try:
        ref = weakref.ref(x)
    except TypeError:  # a Python scalar or an object that cannot be referenced: it cannot carry a mask
        return
    if key not in _MASKS or _MASKS[key][0]() is not x:
        weakref.finalize(x, _forget, key)
    _MASKS[key] = (ref, mask)


def masks_of(tree):
    """The masks of a structure of arrays (None where there is none), or None when none has one."""
    if _is_array(tree):
        return get_mask(tree)
    if isinstance(tree, (list, tuple)):
        masks = [masks_of(t) for t in tree]
        return None if all(m is None for m in masks) else type(tree)(masks) if isinstance(tree, list) else tuple(masks)
    if isinstance(tree, dict):
        masks = {k: masks_of(v) for k, v in tree.items()}
        return None if all(m is None for m in masks.values()) else masks
    return None


def _is_array(x) -> bool:
    return isinstance(x, (jax.Array, jax.core.Tracer))


def _attach(outputs, masks) -> None:
    """Attaches `masks` (a mask, or a list matching the flattened outputs) to `outputs`, where none is set."""
    flat = [o for o in jax.tree.leaves(outputs) if _is_array(o)]
    if _is_array(masks):
        masks = [masks] + [None] * (len(flat) - 1)
    else:
        masks = list(masks) if isinstance(masks, (list, tuple)) else jax.tree.leaves(masks, is_leaf=lambda m: m is None)
    for tensor, mask in zip(flat, masks, strict=False):
        if mask is not None and get_mask(tensor) is None:
            set_mask(tensor, jnp.asarray(mask).astype(bool))


def supports_masking(layer) -> bool:
    """Keras's rule: the layer says so (`supports_masking = True`) or overrides `compute_mask`."""
    return bool(getattr(layer, "supports_masking", False)) or type(layer).compute_mask is not Layer.compute_mask


@functools.cache
def _mask_parameters(call) -> tuple[bool, bool, tuple[str, ...]]:
    """(the function takes `mask`, it takes `**kwargs`, its `<tensor>_mask` parameters) of a `__call__`/`call`."""
    try:
        params = inspect.signature(call).parameters
    except (TypeError, ValueError):  # pragma: no cover
        return False, False, ()
    var_keyword = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    named = tuple(n for n in params if n.endswith("_mask") and n[: -len("_mask")] in params)
    return "mask" in params, var_keyword, named


def _takes_mask(layer, call) -> bool:
    takes, var_keyword, _ = _mask_parameters(call)
    if takes:
        return True
    if var_keyword:  # Layer.__call__ passes its keyword arguments on to `call`
        takes_call, var_call, _ = _mask_parameters(type(layer).call)
        return takes_call or var_call
    return False


def _in_call(layer) -> bool:
    return id(layer) in getattr(_ACTIVE, "layers", ())


def call_with_masks(layer, call, args, kwargs):
    """Runs `call(layer, *args, **kwargs)` (a layer's `__call__`) with Keras's mask propagation.

    The mask of the first input (of each, for a list) is passed as `mask=` when the call takes it
    and none was given; a tensor argument `t` whose call takes `t_mask` gets its own mask. The
    output gets `layer.compute_mask(inputs, mask)` when the layer supports masking; otherwise a
    mask that reached the layer is dropped, with Keras's warning.
    """
    if not args or _in_call(layer):  # a subclass's __call__ calling Layer.__call__: handled once, outside
        return call(layer, *args, **kwargs)
    x = args[0]
    previous = kwargs.get("mask") if kwargs.get("mask") is not None else masks_of(x)
    creates = type(layer).compute_mask is not Layer.compute_mask
    _, _, named = _mask_parameters(call)
    if previous is not None and kwargs.get("mask") is None and _takes_mask(layer, call):
        kwargs = {**kwargs, "mask": previous}
    if named:
        bound = _bind(call, layer, args, kwargs)
        for name in named:
            tensor = bound.get(name[: -len("_mask")])
            if kwargs.get(name) is None and _is_array(tensor) and get_mask(tensor) is not None:
                kwargs = {**kwargs, name: get_mask(tensor)}
    active = getattr(_ACTIVE, "layers", None)
    if active is None:
        active = _ACTIVE.layers = set()
    active.add(id(layer))
    try:
        outputs = call(layer, *args, **kwargs)
    finally:
        active.discard(id(layer))
    if previous is None and not creates:
        return outputs
    if supports_masking(layer):
        masks = layer.compute_mask(x, previous)
        if masks is not None:
            _attach(outputs, masks)
    elif previous is not None:
        warnings.warn(
            f"Layer '{layer.name}' (of type {type(layer).__name__}) was passed an input with a mask attached to it. "
            "However, this layer does not support masking and will therefore destroy the mask information. "
            "Downstream layers will not see the mask.",
            stacklevel=3,
        )
    return outputs


def _bind(call, layer, args, kwargs) -> dict:
    try:
        return inspect.signature(call).bind_partial(layer, *args, **kwargs).arguments
    except TypeError:
        return {}


def warn_if_masked(module, x) -> None:
    """Keras's warning for a Flax module that receives a masked input: it cannot see the mask, which stops there."""
    if masks_of(x) is not None:
        warnings.warn(
            f"The Flax module {type(module).__name__} was passed an input with a mask attached to it. It does not "
            "support masking and will therefore destroy the mask information. Downstream layers will not see the mask.",
            stacklevel=3,
        )


def check_mask_shape(where: str, mask, x, axes: int = 2):
    """A `(batch, timesteps)` mask for `x` of shape `(batch, timesteps, ...)`, as bool; raises on a mismatch."""
    mask = jnp.asarray(mask)
    if mask.shape != tuple(x.shape[:axes]):
        raise ValueError(
            f"{where}: `mask` must have the shape of the input's first {axes} axes, {shape_str(tuple(x.shape[:axes]))}; "
            f"received mask of shape {shape_str(mask.shape)}"
        )
    return mask.astype(bool)


class Masking(Layer):
    """Masks the time steps whose features all equal `mask_value`, as Keras's `Masking`.

    Input `(batch, timesteps, features)`; the output is the input with masked steps set to 0 and it
    carries the mask `any(x != mask_value, axis=-1)` of shape `(batch, timesteps)` to the next layers.

    Args:
      mask_value: the padding value (0.0 by default).
    """

    _checked_axes = ()
    supports_masking = True

    def __init__(self, mask_value: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.mask_value = float(mask_value)

    def call(self, x, *, training=False, key=None):
        keep = jnp.any(x != jnp.asarray(self.mask_value, x.dtype), axis=-1, keepdims=True)
        return jnp.where(keep, x, jnp.zeros_like(x))

    def compute_mask(self, inputs, previous_mask=None):
        return jnp.any(inputs != jnp.asarray(self.mask_value, jnp.result_type(inputs)), axis=-1)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self) -> dict:
        return {"name": self.name, "mask_value": self.mask_value}


from nnjax.layers import base as _base  # noqa: E402

_base._mask_hook = call_with_masks

__all__ = ["Masking", "get_mask", "set_mask", "masks_of", "supports_masking"]
