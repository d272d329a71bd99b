"""`save` / `restore` of a `TrainState` (or any pytree of arrays) with Orbax, checked end to end.

A checkpoint folder holds two Orbax items, written through Orbax's atomic
temporary-folder commit (`<name>.orbax-checkpoint-tmp` renamed to `<name>`):

    <path>/state/          the arrays (TensorStore, OCDBT)
    <path>/metadata/       a JSON object (data position, callback state, ...)
    <path>/nnjax_manifest.json   size + SHA-256 of every file, written last

Restoring checks, in order and before Orbax reads any array: the manifest
(every file present, unaltered; no links; no path leaving the folder), Orbax's
tree metadata (plain key names, known value types, shapes within a cap and
equal to the target's) and the array shapes TensorStore reports. Nothing is
unpickled and no module named by a checkpoint is imported.
"""

from __future__ import annotations

import asyncio
import functools
import json
import math
import os
import shutil
import threading
from typing import Any

import jax
import numpy as np

from nnjax.checkpoint import manifest as manifest_lib
from nnjax.checkpoint.errors import (
    CheckpointCorruptError,
    CheckpointMismatchError,
    CheckpointSaveError,
    UntrustedCheckpointError,
    describe,
)

STATE_ITEM = "state"
METADATA_ITEM = "metadata"
TMP_MARKER = ".orbax-checkpoint-tmp"
# Per-array cap on element counts claimed by a checkpoint (raised to the target's largest array if that is bigger).
DEFAULT_MAX_ELEMENTS = 2**31
_ARRAY_TYPES = {"jax.Array", "np.ndarray", "scalar"}
_EMPTY_TYPES = {"None", "Dict", "List", "Tuple", "NamedTuple"}

# Manifest requests, keyed by final folder: filled by `start_save`, consumed by the commit hook.
_requests: dict[str, tuple] = {}
_requests_lock = threading.Lock()


@functools.cache
def _temporary_path_class():
    """Orbax's atomic-rename temporary path, plus the nnjax manifest written right after the rename."""
    from orbax.checkpoint import path as ocp_path

    class ManifestTemporaryPath(ocp_path.atomicity.AtomicRenameTemporaryPath):
        async def finalize(self):
            await super().finalize()
            final = os.fspath(self.get_final())
            with _requests_lock:
                step, metrics, fsync = _requests.pop(final, (None, None, True))
            await asyncio.to_thread(manifest_lib.write_manifest, final, step=step, metrics=metrics, fsync=fsync)

    return ManifestTemporaryPath


def new_checkpointer():
    """An Orbax `AsyncCheckpointer` over the two items, committing through the manifest."""
    import orbax.checkpoint as ocp

    return ocp.AsyncCheckpointer(ocp.CompositeCheckpointHandler(), temporary_path_class=_temporary_path_class())


def _reader():
    import orbax.checkpoint as ocp

    return ocp.Checkpointer(ocp.CompositeCheckpointHandler(), temporary_path_class=_temporary_path_class())


# ---------------------------------------------------------------------------- trees
def key_name(key) -> str:
    """A key path entry as Orbax names it ("params", "0", "kernel")."""
    for attr in ("key", "name", "idx"):
        if hasattr(key, attr):
            return str(getattr(key, attr))
    return str(key)


def leaf_paths(tree) -> list[tuple[tuple[str, ...], Any]]:
    """`[(path, leaf)]` with Orbax's key names."""
    return [(tuple(key_name(k) for k in path), leaf) for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]]


def _is_plain_name(name: Any) -> bool:
    return isinstance(name, (str, int)) and not isinstance(name, bool) and str(name) not in ("", ".", "..") and not any(
        c in str(name) for c in "/\\\x00")


def _check_save_keys(tree) -> None:
    for path, _ in leaf_paths(tree):
        for name in path:
            if not _is_plain_name(name):
                raise ValueError(f"checkpoint save: key {name!r} in {'/'.join(path)!r} is not allowed: keys must not be empty, "
                                 "'.' or '..', nor contain '/', '\\' or NUL")


def _to_json(value, where="metadata"):
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise TypeError(f"checkpoint {where}: keys must be str; got {k!r}")
            out[k] = _to_json(v, f"{where}[{k!r}]")
        return out
    if isinstance(value, (list, tuple)):
        return [_to_json(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, np.ndarray) and value.ndim == 0 or isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"checkpoint {where}: expected JSON data (dict, list, str, number, bool, None); got {type(value).__name__}")


def state_step(state) -> int | None:
    """`int(state.step)` for a `TrainState`-like object, else None."""
    step = getattr(state, "step", None)
    if step is None or np.ndim(step) != 0:
        return None
    return int(jax.device_get(step))


def abstract_target(target) -> Any:
    """`ShapeDtypeStruct`s with shardings for every leaf of `target` (arrays keep theirs; others go to device 0)."""
    default = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])

    def one(leaf):
        if isinstance(leaf, jax.ShapeDtypeStruct):
            return leaf if leaf.sharding is not None else jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=default)
        if isinstance(leaf, jax.Array):
            return jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=leaf.sharding)
        arr = np.asarray(leaf)
        return jax.ShapeDtypeStruct(arr.shape, arr.dtype, sharding=default)

    return jax.tree.map(one, target)


# ---------------------------------------------------------------------------- saving
def prepare_save(state, metadata: dict | None, metrics: dict | None) -> tuple[dict, dict]:
    """Checks what `start_save` would write, in the foreground: keys, JSON metadata, numeric metrics.

    Raises:
      TypeError / ValueError: naming the offending key or value.
    """
    _check_save_keys(state)
    meta = _to_json({} if metadata is None else metadata)
    json.dumps(meta)
    return meta, manifest_lib._jsonable_metrics(metrics)


def start_save(checkpointer, path: str, state, *, metadata: dict, step: int | None, metrics: dict, fsync: bool, force: bool) -> None:
    """Starts an Orbax save of `state` + `metadata` (from `prepare_save`) to `path`; the manifest is written when Orbax commits."""
    import orbax.checkpoint as ocp

    with _requests_lock:
        _requests[path] = (step, metrics, fsync)
    try:
        checkpointer.save(path, args=ocp.args.Composite(**{STATE_ITEM: ocp.args.StandardSave(state),
                                                           METADATA_ITEM: ocp.args.JsonSave(metadata)}), force=force)
    except BaseException:
        forget_request(path)
        raise


def forget_request(path: str) -> None:
    with _requests_lock:
        _requests.pop(path, None)


def remove_uncommitted(path: str) -> None:
    """Removes `path` if it has no manifest, and every Orbax temporary folder of it (best effort)."""
    parent, name = os.path.split(path)
    try:
        entries = os.listdir(parent)
    except OSError:
        return
    for entry in entries:
        full = os.path.join(parent, entry)
        if entry.startswith(name + TMP_MARKER) and os.path.isdir(full) and not os.path.islink(full):
            shutil.rmtree(full, ignore_errors=True)
    if os.path.isdir(path) and not os.path.islink(path) and not os.path.lexists(os.path.join(path, manifest_lib.MANIFEST_NAME)):
        shutil.rmtree(path, ignore_errors=True)


def save(path: str | os.PathLike, state: Any, *, metadata: dict | None = None, step: int | None = None,
         metrics: dict | None = None, overwrite: bool = False, fsync: bool = True) -> str:
    """Writes `state` (a `TrainState` or any pytree of arrays) to the folder `path`, atomically.

    Orbax writes into a temporary folder and renames it; nnjax then writes the
    SHA-256 manifest, which is the commit point. Returns when the checkpoint is
    committed.

    Args:
      path: the checkpoint folder to create.
      state: a pytree of arrays (a `TrainState`: its static fields are not stored).
      metadata: JSON data stored next to the arrays (read back by `restore(..., return_metadata=True)`).
      step: recorded in the manifest; `int(state.step)` by default when `state` has one.
      metrics: `{name: float}` recorded in the manifest.
      overwrite: replace an existing checkpoint at `path` (the old one is removed first).
      fsync: flush every file to disk before committing.

    Returns:
      The absolute path written.

    Raises:
      FileExistsError: if `path` exists and `overwrite` is False.
      TypeError / ValueError: for metadata that is not JSON data or keys that are not plain names.
      CheckpointSaveError: if writing failed (disk full, I/O error); nothing is left at `path`.

    Example:
      >>> nj.checkpoint.save("/tmp/run/ckpt", state, metadata={"epoch": 3})
      >>> state = nj.checkpoint.restore("/tmp/run/ckpt", state)
    """
    path = os.path.abspath(os.fspath(path))
    if os.path.lexists(path) and not overwrite:
        raise FileExistsError(f"checkpoint save: {path!r} already exists; pass overwrite=True to replace it")
    if step is None:
        step = state_step(state)
    meta, metrics = prepare_save(state, metadata, metrics)
    checkpointer = new_checkpointer()
    try:
        start_save(checkpointer, path, state, metadata=meta, step=step, metrics=metrics, fsync=fsync, force=overwrite)
        checkpointer.wait_until_finished()
    except Exception as err:
        forget_request(path)
        remove_uncommitted(path)
        raise CheckpointSaveError(f"saving checkpoint {describe(step, path)} failed: {type(err).__name__}: {err}",
                                  step=step, path=path) from err
    finally:
        checkpointer.close()
    return path


# ---------------------------------------------------------------------------- checking before restoring
def _shape_of(value, where: str, step, path) -> tuple[int, ...]:
    if not isinstance(value, list) or len(value) > 64 or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in value):
        raise UntrustedCheckpointError(f"checkpoint {describe(step, path)}: {where} claims the shape {value!r}; expected a list of at "
                                       "most 64 non-negative ints", step=step, path=path)
    return tuple(value)


def _check_elements(shape, cap: int, where: str, step, path) -> None:
    if math.prod(shape) > cap:
        raise UntrustedCheckpointError(f"checkpoint {describe(step, path)}: {where} claims the shape {shape} "
                                       f"({math.prod(shape)} elements), more than the limit of {cap} elements; refusing to allocate it "
                                       "(pass max_elements= to allow larger arrays)", step=step, path=path)


def _check_tree_metadata(folder: str, abstract, *, step, cap: int, manifest: dict) -> None:
    """Refuses a checkpoint whose Orbax metadata is unsafe or does not match `abstract`, before reading any array."""
    for rel, entry in manifest["files"].items():
        base = rel.rsplit("/", 1)[-1]
        if (base.startswith("_") or base.endswith(".json") or "array_metadatas/" in rel or rel == f"{METADATA_ITEM}/{METADATA_ITEM}") \
                and entry["size"] > manifest_lib.MAX_JSON_BYTES:
            raise UntrustedCheckpointError(f"checkpoint {describe(step, folder)}: metadata file {rel!r} has {entry['size']} bytes, "
                                           f"more than {manifest_lib.MAX_JSON_BYTES}", step=step, path=os.path.join(folder, rel))
    state_dir = os.path.join(folder, STATE_ITEM)
    meta_path = os.path.join(state_dir, "_METADATA")
    tree_meta = manifest_lib.read_json(meta_path, step=step)

    def bad(msg):
        return UntrustedCheckpointError(f"checkpoint {describe(step, folder)}: {meta_path!r} {msg}", step=step, path=meta_path)

    if not isinstance(tree_meta, dict) or not isinstance(tree_meta.get("tree_metadata"), dict):
        raise bad("has no 'tree_metadata' object")
    stored: dict[tuple[str, ...], tuple[int, ...] | None] = {}
    for raw_key, entry in tree_meta["tree_metadata"].items():
        if not isinstance(entry, dict) or not isinstance(entry.get("key_metadata"), list) or not isinstance(entry.get("value_metadata"), dict):
            raise bad(f"has a malformed entry for {raw_key!r}")
        names = []
        for k in entry["key_metadata"]:
            name = k.get("key") if isinstance(k, dict) else None
            if not _is_plain_name(name):
                raise bad(f"names the key {name!r}: keys must be plain names (no '/', '..', NUL or absolute paths)")
            names.append(str(name))
        value = entry["value_metadata"]
        value_type = value.get("value_type")
        if not isinstance(value_type, str) or value_type not in _ARRAY_TYPES | _EMPTY_TYPES:
            raise bad(f"gives {'/'.join(names)!r} the value type {value_type!r}; expected one of {sorted(_ARRAY_TYPES | _EMPTY_TYPES)}")
        if not isinstance(value.get("skip_deserialize", False), bool):
            raise bad(f"gives {'/'.join(names)!r} a non-boolean skip_deserialize {value.get('skip_deserialize')!r}")
        if value_type in _EMPTY_TYPES or value.get("skip_deserialize"):
            continue
        shape = None
        if "write_shape" in value and value["write_shape"] is not None:
            shape = _shape_of(value["write_shape"], f"array {'/'.join(names)!r}", step, folder)
            _check_elements(shape, cap, f"array {'/'.join(names)!r}", step, folder)
        stored[tuple(names)] = shape
    array_meta_dir = os.path.join(state_dir, "array_metadatas")
    if os.path.isdir(array_meta_dir):
        for name in sorted(os.listdir(array_meta_dir)):
            data = manifest_lib.read_json(os.path.join(array_meta_dir, name), step=step)
            entries = data.get("array_metadatas") if isinstance(data, dict) else None
            if not isinstance(entries, list):
                raise bad(f"(array_metadatas/{name}) has no 'array_metadatas' list")
            for item in entries:
                meta = item.get("array_metadata") if isinstance(item, dict) else None
                if not isinstance(meta, dict):
                    raise bad(f"(array_metadatas/{name}) has a malformed entry")
                for field in ("write_shape", "chunk_shape"):
                    if meta.get(field) is not None:
                        shape = _shape_of(meta[field], f"array {meta.get('param_name')!r} ({field})", step, folder)
                        _check_elements(shape, cap, f"array {meta.get('param_name')!r} ({field})", step, folder)
    wanted = {path: leaf for path, leaf in leaf_paths(abstract)}
    where = f"checkpoint {describe(step, folder)}"
    missing = [p for p in wanted if p not in stored]
    extra = [p for p in stored if p not in wanted]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"the target's arrays {['/'.join(p) for p in missing[:5]]} are not in the checkpoint")
        if extra:
            parts.append(f"the checkpoint's arrays {['/'.join(p) for p in extra[:5]]} are not in the target")
        raise CheckpointMismatchError(f"{where} does not match the restore target: " + "; ".join(parts)
                                      + " (a different model, optimizer or nnjax version?)", step=step, path=folder)
    for p, shape in stored.items():
        # Orbax's write_shape is the shape of the pieces written (shards, or slices of replicated arrays), at most the array's.
        expected = tuple(wanted[p].shape)
        if shape is not None and (len(shape) != len(expected) or any(w > e for w, e in zip(shape, expected, strict=True))):
            raise CheckpointMismatchError(f"{where}: array {'/'.join(p)!r} is written in pieces of shape {tuple(shape)}, which do not fit "
                                          f"the target's shape {expected}", step=step, path=folder)
    _check_tensorstore_shapes(state_dir, wanted, cap=cap, step=step, folder=folder)


def _check_tensorstore_shapes(state_dir: str, wanted: dict, *, cap: int, step, folder: str) -> None:
    """The shapes and dtypes TensorStore will use (Orbax's metadata), checked against the target."""
    import orbax.checkpoint as ocp
    from etils import epath

    try:
        tree = ocp.StandardCheckpointHandler().metadata(epath.Path(state_dir))
        tree = getattr(tree, "tree", tree)
    except Exception as err:  # TensorStore reports unreadable metadata with assorted types
        raise CheckpointCorruptError(f"checkpoint {describe(step, folder)}: Orbax cannot read its array metadata: {type(err).__name__}: {err}",
                                     step=step, path=state_dir) from err

    def is_meta(x):
        return hasattr(x, "shape") and hasattr(x, "dtype")

    for path, meta in jax.tree_util.tree_flatten_with_path(tree, is_leaf=is_meta)[0]:
        if not is_meta(meta):
            continue
        names = tuple(key_name(k) for k in path)
        shape = tuple(int(d) for d in meta.shape)
        _check_elements(shape, cap, f"array {'/'.join(names)!r}", step, folder)
        target = wanted.get(names)
        if target is None:
            continue
        if shape != tuple(target.shape):
            raise CheckpointMismatchError(f"checkpoint {describe(step, folder)}: array {'/'.join(names)!r} is stored with shape {shape}; "
                                          f"the target expects {tuple(target.shape)}", step=step, path=folder)
        if meta.dtype is not None and np.dtype(meta.dtype) != np.dtype(target.dtype):
            raise CheckpointMismatchError(f"checkpoint {describe(step, folder)}: array {'/'.join(names)!r} is stored as {np.dtype(meta.dtype)}; "
                                          f"the target expects {np.dtype(target.dtype)}", step=step, path=folder)


# ---------------------------------------------------------------------------- restoring
def restore_folder(folder: str, target: Any, *, step: int | None = None, max_elements: int | None = None,
                   return_metadata: bool = False):
    """Verifies and restores one checkpoint folder (see `restore`)."""
    import orbax.checkpoint as ocp

    if target is None:
        raise TypeError("checkpoint restore: `target` is required (a TrainState or pytree of arrays / jax.ShapeDtypeStruct with "
                        "the shapes, dtypes and shardings to restore onto); got None")
    manifest = manifest_lib.verify(folder, step=step)
    if step is None:
        step = manifest.get("step")
    abstract = abstract_target(target)
    sizes = [math.prod(leaf.shape) for leaf in jax.tree.leaves(abstract)]
    cap = max([DEFAULT_MAX_ELEMENTS if max_elements is None else int(max_elements)] + sizes)
    _check_tree_metadata(folder, abstract, step=step, cap=cap, manifest=manifest)
    reader = _reader()
    try:
        restored = reader.restore(folder, args=ocp.args.Composite(**{STATE_ITEM: ocp.args.StandardRestore(abstract),
                                                                     METADATA_ITEM: ocp.args.JsonRestore()}))
    except (ValueError, KeyError, TypeError) as err:
        raise CheckpointMismatchError(f"checkpoint {describe(step, folder)} does not match the restore target: {err}",
                                      step=step, path=folder) from err
    finally:
        reader.close()
    state = restored[STATE_ITEM]
    metadata = restored[METADATA_ITEM]
    if not isinstance(metadata, dict):
        raise UntrustedCheckpointError(f"checkpoint {describe(step, folder)}: its metadata must be a JSON object; got "
                                       f"{type(metadata).__name__}", step=step, path=folder)
    state = jax.tree.unflatten(jax.tree.structure(target), jax.tree.leaves(state))
    if return_metadata:
        return state, metadata
    return state


def restore(path: str | os.PathLike, target: Any, *, max_elements: int | None = None, return_metadata: bool = False):
    """Reads a checkpoint written by `save` onto `target`'s structure, shapes, dtypes and shardings.

    `target` may hold arrays (their shardings are kept: restore a checkpoint saved
    on one device straight onto a `NamedSharding` over four, or back) or
    `jax.ShapeDtypeStruct`s with `sharding=`.

    Args:
      path: the checkpoint folder.
      target: a `TrainState` or pytree of arrays / `jax.ShapeDtypeStruct`s.
      max_elements: the most elements any array the checkpoint claims may have
        (default 2**31, or the target's largest array if bigger).
      return_metadata: also return the JSON metadata saved with it.

    Returns:
      The restored tree (same type as `target`), or `(tree, metadata)`.

    Raises:
      FileNotFoundError: if `path` does not exist.
      CheckpointCorruptError: a file is missing, truncated or altered (the error names the step and the file).
      UntrustedCheckpointError: links, paths leaving the folder, unknown value types, absurd shapes.
      CheckpointMismatchError: the arrays do not match `target`.
    """
    path = os.path.abspath(os.fspath(path))
    if not os.path.lexists(path):
        raise FileNotFoundError(f"checkpoint restore: nothing at {path!r}: expected a folder written by nj.checkpoint.save")
    return restore_folder(path, target, max_elements=max_elements, return_metadata=return_metadata)


def read_metadata(path: str | os.PathLike, *, verify: bool = True) -> dict:
    """The JSON metadata of a checkpoint (its files are verified against the manifest first unless `verify=False`).

    Raises:
      FileNotFoundError, CheckpointCorruptError, UntrustedCheckpointError: as `restore`.
    """
    path = os.path.abspath(os.fspath(path))
    if not os.path.lexists(path):
        raise FileNotFoundError(f"checkpoint: nothing at {path!r}")
    manifest = manifest_lib.verify(path) if verify else manifest_lib.read_manifest(path)
    if manifest is None:
        raise CheckpointCorruptError(f"checkpoint {path!r} has no manifest: it was never committed", path=path)
    data = manifest_lib.read_json(os.path.join(path, METADATA_ITEM, METADATA_ITEM), step=manifest.get("step"))
    if not isinstance(data, dict):
        raise UntrustedCheckpointError(f"checkpoint {path!r}: its metadata must be a JSON object; got {type(data).__name__}", path=path)
    return data


__all__ = ["abstract_target", "read_metadata", "restore", "save"]
