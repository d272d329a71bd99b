"""The layout of a callback's array state, as JSON: what a backup records to rebuild its restore target.

A callback's `get_array_state()` is a pytree of dicts (str keys) and lists with
array leaves. Its layout is the same tree in JSON, every node tagged, so that
no container can be mistaken for a leaf:

    {"dict": {"best_weights": {"list": [{"array": {"shape": [4, 8], "dtype": "float32"}}, ...]}}}

`target_from_layout` turns a layout read from a checkpoint back into
`jax.ShapeDtypeStruct`s; it trusts nothing in it (container kinds, key names,
shapes and dtype names are all checked), and the checkpoint reader then checks
the stored arrays against that target and caps their sizes.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

# Dtypes a callback's arrays may have (numbers and booleans; never object or string arrays).
DTYPES = ("bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
          "float16", "bfloat16", "float32", "float64", "complex64", "complex128")
MAX_RANK = 64
MAX_DEPTH = 32  # containers inside containers


def _plain_key(key: Any) -> bool:
    return isinstance(key, str) and key not in ("", ".", "..") and not any(c in key for c in "/\\\x00")


def layout_of(tree: Any, where: str) -> tuple[dict, Any]:
    """The JSON layout of `tree` and the tree as it is saved (tuples as lists, leaves as arrays).

    Args:
      tree: dicts with str keys, lists or tuples, and array leaves (NumPy, JAX or Python numbers).
      where: names the tree in errors, e.g. "EarlyStopping.get_array_state()".

    Returns:
      `(layout, saved_tree)`.

    Raises:
      TypeError: for another container, a key that is not a plain str, or a leaf that is not a numeric array.
    """

    def walk(node, path, depth):
        if depth > MAX_DEPTH:
            raise TypeError(f"{where}: nested deeper than {MAX_DEPTH} containers at {path or 'the root'}")
        if isinstance(node, dict):
            out_layout, out_tree = {}, {}
            for key, value in node.items():
                if not _plain_key(key):
                    raise TypeError(f"{where}: key {key!r} at {path or 'the root'} must be a non-empty str without '/', '\\\\' "
                                    "or NUL (and not '.' or '..')")
                out_layout[key], out_tree[key] = walk(value, f"{path}[{key!r}]", depth + 1)
            return {"dict": out_layout}, out_tree
        if isinstance(node, (list, tuple)):
            pairs = [walk(value, f"{path}[{i}]", depth + 1) for i, value in enumerate(node)]
            return {"list": [p[0] for p in pairs]}, [p[1] for p in pairs]
        if isinstance(node, (bool, int, float, complex)):  # a Python number: JAX's default dtype for it
            node = np.asarray(node, jax.dtypes.canonicalize_dtype(np.asarray(node).dtype))
        array = node if isinstance(node, (jax.Array, np.ndarray)) else np.asarray(node) if isinstance(node, np.generic) else None
        if array is None or str(array.dtype) not in DTYPES:
            what = type(node).__name__ if array is None else f"an array of dtype {array.dtype}"
            raise TypeError(f"{where}: the leaf at {path or 'the root'} is {what}; expected a numeric array "
                            f"(NumPy or JAX, dtype one of {', '.join(DTYPES)}), in dicts and lists")
        if jax.dtypes.canonicalize_dtype(array.dtype) != array.dtype:  # it would come back narrowed
            raise TypeError(f"{where}: the leaf at {path or 'the root'} is {array.dtype}, which JAX restores as "
                            f"{jax.dtypes.canonicalize_dtype(array.dtype)} unless jax_enable_x64 is set; store it as that dtype")
        return {"array": {"shape": [int(d) for d in array.shape], "dtype": str(array.dtype)}}, array

    return walk(tree, "", 0)


def target_from_layout(layout: Any, where: str) -> Any:
    """`jax.ShapeDtypeStruct`s in the structure a layout records (dicts and lists).

    Raises:
      ValueError: naming the node, for anything but a well-formed layout.
    """

    def walk(node, path, depth):
        if depth > MAX_DEPTH:
            raise ValueError(f"{where}: nested deeper than {MAX_DEPTH} containers at {path or 'the root'}")
        if not isinstance(node, dict) or len(node) != 1:
            raise ValueError(f"{where}: the node at {path or 'the root'} must be one of {{'dict': ...}}, {{'list': ...}}, "
                             f"{{'array': ...}}; got {str(node)[:80]}")
        (kind, value), = node.items()
        if kind == "dict" and isinstance(value, dict):
            bad = [k for k in value if not _plain_key(k)]
            if bad:
                raise ValueError(f"{where}: key {bad[0]!r} at {path or 'the root'} is not a plain name")
            return {k: walk(v, f"{path}[{k!r}]", depth + 1) for k, v in value.items()}
        if kind == "list" and isinstance(value, list):
            return [walk(v, f"{path}[{i}]", depth + 1) for i, v in enumerate(value)]
        if kind == "array" and isinstance(value, dict) and set(value) == {"shape", "dtype"}:
            shape, dtype = value["shape"], value["dtype"]
            if (not isinstance(shape, list) or len(shape) > MAX_RANK
                    or not all(isinstance(d, int) and not isinstance(d, bool) and 0 <= d < 2**63 for d in shape)):
                raise ValueError(f"{where}: the array at {path or 'the root'} claims the shape {shape!r}; expected a list of at "
                                 f"most {MAX_RANK} non-negative ints")
            if not isinstance(dtype, str) or dtype not in DTYPES:
                raise ValueError(f"{where}: the array at {path or 'the root'} claims the dtype {dtype!r}; expected one of {DTYPES}")
            return jax.ShapeDtypeStruct(tuple(shape), jnp.dtype(dtype))
        raise ValueError(f"{where}: the node at {path or 'the root'} is a malformed {kind!r} entry")

    return walk(layout, "", 0)


def to_host(tree: Any) -> Any:
    """The restored tree with NumPy leaves (dicts and lists kept)."""
    return jax.tree.map(np.asarray, jax.device_get(tree))


__all__ = ["DTYPES", "layout_of", "target_from_layout", "to_host"]
