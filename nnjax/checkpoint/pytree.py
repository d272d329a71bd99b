"""Saving and restoring pytrees of arrays with Orbax (TensorStore + JSON, never pickle)."""

from __future__ import annotations

import os
from typing import Any

import jax
import numpy as np


def _checkpointer():
    import orbax.checkpoint as ocp

    return ocp.StandardCheckpointer()


def save_pytree(path: str | os.PathLike, tree: Any, *, overwrite: bool = True) -> str:
    """Writes a pytree of arrays to the folder `path` (atomically, through Orbax).

    Returns:
      The absolute path written.
    """
    path = os.path.abspath(os.fspath(path))
    checkpointer = _checkpointer()
    checkpointer.save(path, tree, force=overwrite)
    checkpointer.wait_until_finished()
    return path


def restore_pytree(path: str | os.PathLike, target: Any) -> Any:
    """Reads a pytree written by `save_pytree`, with `target`'s structure, shapes and dtypes.

    Raises:
      FileNotFoundError: if `path` does not exist.
      ValueError: if the stored tree does not match `target`'s structure or shapes.
    """
    path = os.path.abspath(os.fspath(path))
    if not os.path.isdir(path):
        raise FileNotFoundError(f"no checkpoint at {path!r}: expected a folder written by save_weights / save_pytree")
    abstract = jax.tree.map(lambda a: jax.ShapeDtypeStruct(np.shape(a), np.asarray(a).dtype if not hasattr(a, "dtype") else a.dtype), target)
    checkpointer = _checkpointer()
    try:
        restored = checkpointer.restore(path, abstract)
    except (ValueError, KeyError, TypeError) as err:
        raise ValueError(f"checkpoint at {path!r} does not match the model: {err}") from err
    return restored


__all__ = ["restore_pytree", "save_pytree"]
