"""A functional model's graph as JSON data (layers, inputs, the calls between them), and back.

The config lists the layers once each (a shared layer once; a nested model as its own graph), the
inputs (shape, dtype, name) and one entry per recorded call in topological order: which layer (or
which `nj.ops` / `jax.numpy` operation) ran on which tensors. A tensor is named by the call that
produced it and its position among that call's outputs (`{"__tensor__": [call, index]}`) or by its
input position (`{"__input__": i}`). Rebuilding replays the calls on new `nj.Input`s, so the new
model has the same layers in the same order, hence the same weight tree.
"""

from __future__ import annotations

import functools
import re
from typing import Any

import jax
import jax.numpy as jnp

from nnjax.layers import functional as functional_lib
from nnjax.layers.functional import Functional, KerasTensor
from nnjax.saving import objects as objects_lib
from nnjax.saving.objects import SerializationError, decode, deserialize_layer, encode, serialize_layer


class _Ref:
    __slots__ = ("data",)

    def __init__(self, data):
        self.data = data


@functools.cache
def _op_names() -> dict[int, str]:
    """`id(fn) -> "ops:<name>"` for the functions `nj.ops` records, and the activations."""
    from nnjax import activations, ops

    names: dict[int, str] = {}
    for name in dir(ops):
        inner = getattr(getattr(ops, name), "__wrapped__", None)
        if callable(inner):
            names.setdefault(id(inner), f"ops:{name}")
    for name, fn in activations.ACTIVATIONS.items():
        names.setdefault(id(fn), f"activation:{name}")
    names[id(functional_lib._getitem)] = "getitem"
    names[id(functional_lib._astype)] = "astype"
    return names


def _op_name(fn, where: str) -> str:
    name = _op_names().get(id(fn))
    if name is not None:
        return name
    short = getattr(fn, "__name__", None)
    if short and getattr(jnp, short, None) is fn:
        return f"jnp:{short}"
    raise SerializationError(
        f"{where}: the operation {short or fn!r} on symbolic tensors cannot be saved: only nj.ops, jax.numpy functions, "
        "operators (+, *, x[...]) and nj.activations are named in a config. Wrap it in a layer (a registered Layer "
        "subclass) to save the model"
    )


def _op_from_name(name: str, where: str):
    from nnjax import activations, ops

    kind, _, short = name.partition(":")
    if name == "getitem":
        return functional_lib._getitem
    if name == "astype":
        return functional_lib._astype
    if kind == "ops" and hasattr(getattr(ops, short, None), "__wrapped__"):
        return getattr(ops, short).__wrapped__
    if kind == "activation" and short in activations.ACTIVATIONS:
        return activations.ACTIVATIONS[short]
    if kind == "jnp" and callable(getattr(jnp, short, None)):
        return getattr(jnp, short)
    raise SerializationError(f"{where}: unknown operation {name!r} in the saved graph")


def _encode_static(value) -> Any:
    if isinstance(value, slice):
        return {"__slice__": [_encode_static(value.start), _encode_static(value.stop), _encode_static(value.step)]}
    if value is Ellipsis:
        return {"__ellipsis__": True}
    if isinstance(value, tuple):
        return {"__tuple__": [_encode_static(v) for v in value]}
    if isinstance(value, list):
        return [_encode_static(v) for v in value]
    return encode(value, "index")


def _decode_static(data) -> Any:
    if isinstance(data, dict) and "__slice__" in data:
        return slice(*(_decode_static(v) for v in data["__slice__"]))
    if isinstance(data, dict) and "__ellipsis__" in data:
        return Ellipsis
    if isinstance(data, dict) and "__tuple__" in data:
        return tuple(_decode_static(v) for v in data["__tuple__"])
    if isinstance(data, list):
        return [_decode_static(v) for v in data]
    return decode(data, "index")


def _encode_args(node, refs: dict[int, dict], where: str) -> Any:
    leaves = []
    for leaf in node.leaves:
        if isinstance(leaf, KerasTensor):
            leaves.append(_Ref(refs[id(leaf)]))
        elif isinstance(leaf, functional_lib._Static):
            kind = "__index__" if isinstance(leaf, functional_lib._Index) else "__static__"
            leaves.append(_Ref({kind: _encode_static(leaf.value)}))
        else:
            leaves.append(leaf)
    args, kwargs = jax.tree.unflatten(node.treedef, leaves)

    def enc(value):
        if isinstance(value, _Ref):
            return value.data
        if isinstance(value, tuple):
            return {"__tuple__": [enc(v) for v in value]}
        if isinstance(value, list):
            return [enc(v) for v in value]
        if isinstance(value, dict):
            return {"__dict__": {k: enc(v) for k, v in value.items()}}
        return encode(value, where)

    return {"args": enc(tuple(args)), "kwargs": enc(dict(kwargs))}


def _decode_args(data, tensors: dict, inputs: list, where: str):
    def dec(value):
        if isinstance(value, list):
            return [dec(v) for v in value]
        if isinstance(value, dict):
            if "__tensor__" in value:
                call, index = value["__tensor__"]
                return tensors[(call, index)]
            if "__input__" in value:
                return inputs[value["__input__"]]
            if "__index__" in value:
                return functional_lib._Index(_decode_static(value["__index__"]))
            if "__static__" in value:
                return functional_lib._Static(_decode_static(value["__static__"]))
            if "__tuple__" in value:
                return tuple(dec(v) for v in value["__tuple__"])
            if "__dict__" in value:
                return {k: dec(v) for k, v in value["__dict__"].items()}
        return decode(value, where)

    return dec(data["args"]), dec(data["kwargs"])


def functional_config(module: Functional, where: str = "model") -> dict:
    """The graph of a `Functional` module as JSON data (see the module docstring).

    Raises:
      SerializationError: for a layer or an operation that has no config.
    """
    program = module._program
    graph = program.graph
    in_tensors = graph["input_tensors"]
    refs: dict[int, dict] = {id(t): {"__input__": i} for i, t in enumerate(in_tensors)}
    layer_index = {id(layer): i for i, layer in enumerate(module.layers)}
    calls = []
    for position, node in enumerate(graph["nodes"]):
        here = f'{where} > call "{node.name}"'
        entry = _encode_args(node, refs, here)
        if node.is_module:
            entry["layer"] = layer_index[id(node.op)]
        else:
            entry["op"] = _op_name(node.op, here)
            entry["name"] = re.sub(r"_\d+$", "", node.name)  # the base name before unique_name numbered it
        calls.append(entry)
        for index, tensor in enumerate(node.outputs):
            refs[id(tensor)] = {"__tensor__": [position, index]}
    outputs = graph["outputs"]
    kind, keys, out_tensors = functional_lib._structure(outputs, "outputs")
    return {
        "name": module.name,
        "layers": [serialize_layer(layer, where) for layer in module.layers],
        "inputs": [{"batch_shape": list(t.shape), "dtype": jnp.dtype(t.dtype).name, "name": t.name} for t in in_tensors],
        "input_kind": program.input_kind,
        "input_keys": list(graph["inputs"].keys()) if program.input_kind == "dict" else None,
        "calls": calls,
        "outputs": {"kind": kind, "keys": keys, "tensors": [refs[id(t)] for t in out_tensors]},
    }


def functional_from_config(config: dict, where: str = "model", custom_objects: dict | None = None) -> Functional:
    """A new `Functional` module (new weights) from `functional_config`'s data."""
    layers = [deserialize_layer(data, where, custom_objects) for data in config["layers"]]
    inputs = [functional_lib.Input(batch_shape=tuple(spec["batch_shape"]), dtype=spec["dtype"], name=spec["name"])
              for spec in config["inputs"]]
    tensors: dict[tuple[int, int], KerasTensor] = {}
    for position, call in enumerate(config["calls"]):
        here = f"{where} > call {position}"
        args, kwargs = _decode_args(call, tensors, inputs, here)
        if "layer" in call:
            out = layers[call["layer"]](*args, **kwargs)
        else:
            out = functional_lib.record_op(_op_from_name(call["op"], here), args, kwargs, call.get("name"))
        for index, tensor in enumerate(jax.tree.leaves(out, is_leaf=lambda v: isinstance(v, KerasTensor))):
            tensors[(position, index)] = tensor

    def tensor(ref):
        return inputs[ref["__input__"]] if "__input__" in ref else tensors[tuple(ref["__tensor__"])]

    if config["input_kind"] == "dict":
        model_inputs: Any = dict(zip(config["input_keys"], inputs, strict=True))
    elif config["input_kind"] == "single":
        model_inputs = inputs[0]
    else:
        model_inputs = list(inputs)
    out_spec = config["outputs"]
    out_tensors = [tensor(ref) for ref in out_spec["tensors"]]
    if out_spec["kind"] == "single":
        outputs: Any = out_tensors[0]
    elif out_spec["kind"] == "dict":
        outputs = dict(zip(out_spec["keys"], out_tensors, strict=True))
    elif out_spec["kind"] == "tuple":
        outputs = tuple(out_tensors)
    else:
        outputs = out_tensors
    return Functional(model_inputs, outputs, name=config["name"])


__all__ = ["functional_config", "functional_from_config"]


objects_lib._FUNCTIONAL.update({"config": functional_config, "from_config": functional_from_config})
