"""Restoring checkpoints nnjax did not write: plain Orbax folders (`ocp.StandardCheckpointer`, `ocp.CheckpointManager`).

They carry no nnjax manifest, so their bytes cannot be verified; everything else
is checked as for nnjax's own (no links or special files, bounded JSON, plain key
names, known value types, shapes and chunk shapes within caps and equal to the
target's) before TensorStore reads an array. Reached only through
`nj.checkpoint.restore(..., allow_unverified=True)`.
"""

from __future__ import annotations

import math
import os
import warnings
from typing import Any

import jax

from nnjax.checkpoint import core
from nnjax.checkpoint import manifest as manifest_lib
from nnjax.checkpoint.errors import CheckpointCorruptError, CheckpointMismatchError, UnverifiedCheckpointWarning

_ORBAX_STEP_MARKER = "_CHECKPOINT_METADATA"
_ORBAX_ITEM_MARKER = "_METADATA"


def _items(folder: str) -> list[str]:
    try:
        names = sorted(os.listdir(folder))
    except OSError:
        return []
    return [
        n
        for n in names
        if os.path.isdir(os.path.join(folder, n))
        and not os.path.islink(os.path.join(folder, n))
        and os.path.isfile(os.path.join(folder, n, _ORBAX_ITEM_MARKER))
    ]


def _steps(folder: str) -> list[str]:
    try:
        names = os.listdir(folder)
    except OSError:
        return []
    return sorted((n for n in names if n.isdigit() and os.path.isfile(os.path.join(folder, n, _ORBAX_STEP_MARKER))), key=int)


def is_plain_orbax(folder: str) -> bool:
    """True for an Orbax item folder, an Orbax step folder, or an `ocp.CheckpointManager` directory."""
    return (
        os.path.isfile(os.path.join(folder, _ORBAX_ITEM_MARKER))
        or os.path.isfile(os.path.join(folder, _ORBAX_STEP_MARKER))
        or bool(_items(folder))
        or bool(_steps(folder))
    )


def item_folder(folder: str) -> str:
    """The folder holding the arrays: `folder` itself (StandardCheckpointer) or its only item (a CheckpointManager step).

    Raises:
      CheckpointMismatchError: for a CheckpointManager directory or a step of several items (the error lists them).
    """
    if os.path.isfile(os.path.join(folder, _ORBAX_ITEM_MARKER)):
        return folder
    items = _items(folder)
    if len(items) == 1:
        return os.path.join(folder, items[0])
    if items:
        raise CheckpointMismatchError(
            f"checkpoint restore: the Orbax checkpoint {folder!r} holds the items {items}; pass the folder of "
            f"the one to restore, e.g. {os.path.join(folder, items[0])!r}",
            path=folder,
        )
    steps = _steps(folder)
    if steps:
        raise CheckpointMismatchError(
            f"checkpoint restore: {folder!r} is an Orbax CheckpointManager directory (steps {steps[:5]}"
            f"{', ...' if len(steps) > 5 else ''}); pass one step's folder, e.g. "
            f"{os.path.join(folder, steps[-1])!r}",
            path=folder,
        )
    raise CheckpointCorruptError(f"checkpoint restore: {folder!r} has no Orbax {_ORBAX_ITEM_MARKER} file", path=folder)


def _strip_value(path: tuple[str, ...]) -> tuple[str, ...]:
    return path[:-1] if len(path) > 1 and path[-1] == "value" else path


def match_paths(stored: list[tuple[str, ...]], wanted: list[tuple[str, ...]], *, folder: str) -> dict:
    """`{target path: stored path}`, one to one, looking through NNX's trailing `value` and `{params, model_state}` splits.

    Raises:
      CheckpointMismatchError: naming arrays found on one side only.
    """
    by_name = {_strip_value(p): p for p in stored}
    if len(by_name) != len(stored):
        raise CheckpointMismatchError(
            f"checkpoint {folder!r}: its array paths are ambiguous once NNX's 'value' is dropped", path=folder
        )
    for drop in (0, 1):
        keys = [_strip_value(p)[drop:] for p in wanted]
        if len(set(keys)) == len(keys) and set(keys) == set(by_name):
            return {w: by_name[k] for w, k in zip(wanted, keys, strict=True)}
    keys = {_strip_value(p) for p in wanted}
    missing, extra = sorted(keys - set(by_name)), sorted(set(by_name) - keys)
    raise CheckpointMismatchError(
        f"checkpoint {folder!r} does not match the restore target: the target's arrays {['/'.join(p) for p in missing[:5]]} are not "
        f"in the checkpoint; the checkpoint's arrays {['/'.join(p) for p in extra[:5]]} are not in the target",
        path=folder,
    )


def _nested(entries: dict) -> Any:
    """Nested dicts keyed by Orbax's raw keys, `{raw keys: leaf}` -> `{k0: {k1: leaf}}`."""
    root: dict = {}
    for keys, leaf in entries.items():
        node = root
        for key in keys[:-1]:
            node = node.setdefault(key, {})
        node[keys[-1]] = leaf
    return root


def _get(tree: Any, keys: tuple) -> Any:
    for key in keys:
        tree = tree[key]
    return tree


def restore_plain_orbax(folder: str, target: Any, *, max_elements: int | None = None) -> Any:
    """Restores a plain Orbax checkpoint onto `target` (see `nj.checkpoint.restore(..., allow_unverified=True)`)."""
    import orbax.checkpoint as ocp

    item = item_folder(folder)
    files = manifest_lib.scan_files(item)  # refuses links and special files
    core.check_json_files(item, files, step=None)
    abstract = core.abstract_target(target)
    sizes = [math.prod(leaf.shape) for leaf in jax.tree.leaves(abstract)]
    cap = max([core.DEFAULT_MAX_ELEMENTS if max_elements is None else int(max_elements)] + sizes)
    stored = core.read_tree_metadata(item, step=None, cap=cap, folder=folder)
    target_leaves = core.leaf_paths(abstract)
    mapping = match_paths(list(stored), [p for p, _ in target_leaves], folder=folder)
    wanted = {mapping[p]: leaf for p, leaf in target_leaves}
    core.check_matches(stored, wanted, step=None, folder=folder)
    core.check_tensorstore_shapes(item, wanted, cap=cap, step=None, folder=folder)
    abstract_stored = _nested({stored[p]["keys"]: leaf for p, leaf in wanted.items()})
    reader = ocp.Checkpointer(ocp.StandardCheckpointHandler())
    try:
        restored = reader.restore(item, args=ocp.args.StandardRestore(abstract_stored))
    except (ValueError, KeyError, TypeError) as err:
        raise CheckpointMismatchError(f"checkpoint {folder!r} does not match the restore target: {err}", path=folder) from err
    except RecursionError as err:
        raise CheckpointCorruptError(f"checkpoint {folder!r}: Orbax cannot read it: RecursionError: {err}", path=folder) from err
    finally:
        reader.close()
    leaves = [_get(restored, stored[mapping[p]]["keys"]) for p, _ in target_leaves]
    warnings.warn(
        f"nnjax.checkpoint: restored the plain Orbax checkpoint {folder!r} without verifying its integrity (it has no "
        f"{manifest_lib.MANIFEST_NAME}: a truncated or altered file is not detected)",
        UnverifiedCheckpointWarning,
        stacklevel=3,
    )
    return jax.tree.unflatten(jax.tree.structure(target), leaves)


import sys  # noqa: E402

core._FOREIGN_READER = sys.modules[__name__]  # nj.checkpoint.restore(..., allow_unverified=True) reads through here


__all__ = ["is_plain_orbax", "item_folder", "match_paths", "restore_plain_orbax"]
