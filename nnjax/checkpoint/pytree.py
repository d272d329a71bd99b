"""`save_pytree` / `restore_pytree`: the weights-only checkpoints behind `Model.save_weights` / `load_weights`."""

from __future__ import annotations

import os
from typing import Any

from nnjax.checkpoint import core, folders
from nnjax.checkpoint.errors import CheckpointMismatchError


def save_pytree(path: str | os.PathLike, tree: Any, *, overwrite: bool = True) -> str:
    """Writes a pytree of arrays to the folder `path` (atomically, through Orbax, with a SHA-256 manifest).

    Overwriting writes the new checkpoint beside the old one and swaps them once it is
    committed (see `nj.checkpoint.save`): the old one stays readable until then.

    Returns:
      The absolute path written.

    Raises:
      FileExistsError: if `path` exists and `overwrite` is False.
      ForeignFolderError: if `path` holds files nnjax did not write (they are left untouched).
      CheckpointSaveError: if writing failed; what was at `path` is intact.
    """
    return core.save(path, tree, overwrite=overwrite)


def restore_pytree(path: str | os.PathLike, target: Any, *, allow_unverified: bool = False) -> Any:
    """Reads a pytree written by `save_pytree`, with `target`'s structure, shapes and dtypes.

    Args:
      path: the folder.
      target: the pytree of arrays to restore onto.
      allow_unverified: also read a plain Orbax checkpoint (e.g. of `nnx.state(module)`), whose
        integrity cannot be verified (see `nj.checkpoint.restore`).

    Raises:
      FileNotFoundError: if `path` does not exist.
      ValueError: if the stored tree does not match `target` (`CheckpointMismatchError`), or its files
        are damaged (`CheckpointCorruptError`) or unsafe (`UntrustedCheckpointError`; a plain Orbax
        checkpoint without `allow_unverified`: `UnverifiedCheckpointError`).
    """
    path = os.path.abspath(os.fspath(path))
    if not os.path.isdir(folders.resolve(path)):
        raise FileNotFoundError(f"no checkpoint at {path!r}: expected a folder written by save_weights / save_pytree")
    try:
        return core.restore(path, target, allow_unverified=allow_unverified)
    except CheckpointMismatchError as err:
        raise CheckpointMismatchError(f"checkpoint at {path!r} does not match the model: {err}", step=err.step, path=err.path) from err


__all__ = ["restore_pytree", "save_pytree"]
