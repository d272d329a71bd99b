"""`save` / `restore` of a `TrainState` (or any pytree of arrays) with Orbax, checked end to end.

A checkpoint folder holds two Orbax items (three with `arrays`), written
through Orbax's atomic temporary-folder commit (`<name>.orbax-checkpoint-tmp`
renamed to `<name>`):

    <path>/state/          the arrays (TensorStore, OCDBT)
    <path>/metadata/       a JSON object (data position, callback state, ...)
    <path>/arrays/         optional: more arrays beside the state (a backup's callback arrays), checked as `state/`
    <path>/nnjax_uncommitted     present from the first write until the commit (see `folders`)
    <path>/nnjax_manifest.json   size + SHA-256 of every file, written last: the commit point

Every save writes `<path>.nnjax-new-<pid>-<n>` and renames (or swaps) it in once committed
(`nnjax.checkpoint.folders`): a crash or a full disk at any moment leaves the
previous checkpoint or the new one readable at `path`.

Restoring checks, in order and before Orbax reads any array: the manifest
(every file present, unaltered; no links; no path leaving the folder), every
JSON file through a reader bounded in size and nesting depth, Orbax's tree
metadata (plain key names, known value types, shapes within a cap and equal to
the target's) and the array shapes and chunk shapes TensorStore reports (a
chunk larger than its array would make TensorStore allocate it). Nothing is
unpickled and no module named by a checkpoint is imported.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import math
import os
import threading
from typing import Any

import jax
import numpy as np

from nnjax.checkpoint import folders
from nnjax.checkpoint import manifest as manifest_lib
from nnjax.checkpoint.errors import (
    CheckpointCorruptError,
    CheckpointMismatchError,
    CheckpointSaveError,
    UntrustedCheckpointError,
    UnverifiedCheckpointError,
    describe,
)

log = logging.getLogger(__name__)

STATE_ITEM = "state"
METADATA_ITEM = "metadata"
ARRAYS_ITEM = "arrays"  # optional second tree of arrays, saved and verified like the state
TMP_MARKER = folders.TMP_MARKER
# Per-array cap on element counts claimed by a checkpoint (raised to the target's largest array if that is bigger).
DEFAULT_MAX_ELEMENTS = 2**31
_ARRAY_TYPES = {"jax.Array", "np.ndarray", "scalar"}
_EMPTY_TYPES = {"None", "Dict", "List", "Tuple", "NamedTuple"}

# Manifest requests, keyed by final folder: filled by `start_save`, consumed by the commit hook.
_requests: dict[str, tuple] = {}
_marker_errors: dict[str, OSError] = {}
_requests_lock = threading.Lock()


@functools.cache
def _temporary_path_class():
    """Orbax's atomic-rename temporary path, marked as nnjax's from its creation and committed by nnjax's manifest."""
    from orbax.checkpoint import path as ocp_path

    class ManifestTemporaryPath(ocp_path.atomicity.AtomicRenameTemporaryPath):
        async def create(self):
            tmp = await super().create()
            folder = os.fspath(tmp)
            folders.created_here(folder)
            try:
                await asyncio.to_thread(_mark_pending, folder)
            except OSError as err:
                # Raised at the commit instead: failing here would leave Orbax's writers waiting for a signal that never comes.
                with _requests_lock:
                    _marker_errors[folder] = err
            return tmp

        async def finalize(self):
            with _requests_lock:
                marker_error = _marker_errors.pop(os.fspath(self.get()), None)
            if marker_error is not None:
                raise marker_error
            await super().finalize()
            final = os.fspath(self.get_final())
            with _requests_lock:
                step, metrics, fsync, swap_to = _requests.pop(final, (None, None, True, None))
            await asyncio.to_thread(_commit, final, step=step, metrics=metrics, fsync=fsync, swap_to=swap_to)

    return ManifestTemporaryPath


def _mark_pending(folder: str) -> None:
    with open(os.path.join(folder, manifest_lib.PENDING_NAME), "w", encoding="utf-8") as f:
        f.write("an nnjax checkpoint being written; not committed until nnjax_manifest.json exists\n")


def _commit(final: str, *, step, metrics, fsync: bool, swap_to: str | None) -> None:
    """The manifest (the commit point of a new folder), then the marker's removal, then the swap over `swap_to`."""
    manifest_lib.write_manifest(final, step=step, metrics=metrics, fsync=fsync)
    try:
        os.remove(os.path.join(final, manifest_lib.PENDING_NAME))
    except FileNotFoundError:
        pass
    if swap_to is not None:
        folders.swap_into(final, swap_to)


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
def prepare_save(state, metadata: dict | None, metrics: dict | None, arrays: Any = None) -> tuple[dict, dict]:
    """Checks what `start_save` would write, in the foreground: keys, JSON metadata, numeric metrics.

    Raises:
      TypeError / ValueError: naming the offending key or value.
    """
    _check_save_keys(state)
    if arrays is not None:
        _check_save_keys(arrays)
    meta = _to_json({} if metadata is None else metadata)
    json.dumps(meta)
    return meta, manifest_lib._jsonable_metrics(metrics)


def save_target(path: str, *, what: str = "checkpoint save") -> str:
    """Where a save of `path` writes: a fresh `path.nnjax-new-<pid>-<n>`, renamed or swapped into `path` once committed.

    Completes or rolls back an earlier interrupted save of `path` first.

    Raises:
      ForeignFolderError: if `path` (or a sibling nnjax would use) holds something nnjax did not write.
    """
    if os.path.lexists(path) and not folders.is_replaceable(path):
        raise folders.refuse(path, what)
    folders.recover(path, what=what)
    return folders.new_name(path)


def start_save(checkpointer, target: str, state, *, metadata: dict, step: int | None, metrics: dict, fsync: bool,
               swap_to: str | None = None, arrays: Any = None) -> None:
    """Starts an Orbax save of `state` + `metadata` (from `prepare_save`) to the new folder `target`.

    `arrays`, if not None, is a second pytree of arrays written as its own item (`arrays/`).
    When Orbax commits, nnjax writes the manifest and, with `swap_to`, swaps `target` into that path.
    """
    import orbax.checkpoint as ocp

    items = {STATE_ITEM: ocp.args.StandardSave(state), METADATA_ITEM: ocp.args.JsonSave(metadata)}
    if arrays is not None:
        items[ARRAYS_ITEM] = ocp.args.StandardSave(arrays)
    with _requests_lock:
        _requests[target] = (step, metrics, fsync, swap_to)
    try:
        checkpointer.save(target, args=ocp.args.Composite(**items))
    except BaseException:
        forget_request(target)
        raise


def forget_request(path: str) -> None:
    with _requests_lock:
        _requests.pop(path, None)


def close_checkpointer(checkpointer, error: BaseException | None) -> BaseException | None:
    """Closes an Orbax checkpointer; returns the error to report (`error`, else what closing raised)."""
    try:
        checkpointer.close()
    except Exception as err:  # Orbax re-raises a background failure here, often the one already caught
        if error is None:
            return err
        log.debug("nnjax.checkpoint: closing the checkpointer also failed: %r", err)
    return error


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
      overwrite: replace an existing checkpoint at `path`. The new one is written and
        committed beside it (`<path>.nnjax-new-*`), then swapped in by rename: a crash or a
        full disk at any moment leaves the previous checkpoint or the new one readable
        (`restore(path)` finds either). Only a folder nnjax wrote (or an empty one) is replaced.
      fsync: flush every file to disk before committing.

    Returns:
      The absolute path written.

    Raises:
      FileExistsError: if `path` exists and `overwrite` is False.
      ForeignFolderError: if `path` holds files nnjax did not write (nothing is touched).
      TypeError / ValueError: for metadata that is not JSON data or keys that are not plain names.
      CheckpointSaveError: if writing failed (disk full, I/O error); what was at `path` before is intact.

    Example:
      >>> state = model.state
      >>> path = nj.checkpoint.save("run/ckpt", state, metadata={"epoch": 3})
      >>> state = nj.checkpoint.restore("run/ckpt", state)
    """
    path = os.path.abspath(os.fspath(path))
    if not overwrite and (os.path.lexists(path) or folders.resolve(path) != path):
        raise FileExistsError(f"checkpoint save: {path!r} already exists; pass overwrite=True to replace it")
    if step is None:
        step = state_step(state)
    meta, metrics = prepare_save(state, metadata, metrics)
    target = save_target(path)
    checkpointer = new_checkpointer()
    error = None
    try:
        start_save(checkpointer, target, state, metadata=meta, step=step, metrics=metrics, fsync=fsync, swap_to=path)
        checkpointer.wait_until_finished()
    except Exception as err:
        error = err
    except BaseException:
        close_checkpointer(checkpointer, None)
        raise
    error = close_checkpointer(checkpointer, error)
    if error is not None:
        forget_request(target)
        try:
            folders.abandon(target, path)
        except OSError as cleanup_error:
            log.warning("nnjax.checkpoint: cleaning up after the failed save of %s: %r", path, cleanup_error)
        raise CheckpointSaveError(f"saving checkpoint {describe(step, path)} failed: {type(error).__name__}: {error}"
                                  + (" (the previous checkpoint there is intact)" if folders.is_committed(path) else ""),
                                  step=step, path=path) from error
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


def _is_json_file(rel: str) -> bool:
    """Files Orbax or nnjax parse as JSON (the rest are TensorStore's binary data)."""
    base = rel.rsplit("/", 1)[-1]
    return base.startswith("_") or base.endswith(".json") or "array_metadatas/" in rel or rel == f"{METADATA_ITEM}/{METADATA_ITEM}"


def check_json_files(folder: str, rels, *, step) -> None:
    """Parses every JSON file of a checkpoint through the bounded reader before Orbax reads it.

    Raises:
      UntrustedCheckpointError: a file larger than `MAX_JSON_BYTES`, a link.
      CheckpointCorruptError: invalid JSON, or nested deeper than `MAX_JSON_DEPTH` (Orbax's own
        reader would raise a bare RecursionError, which no fallback expects).
    """
    for rel in sorted(rels):
        if _is_json_file(rel):
            manifest_lib.read_json(os.path.join(folder, rel), step=step)


def read_tree_metadata(state_dir: str, *, step, cap: int, folder: str) -> dict[tuple[str, ...], dict]:
    """Orbax's tree metadata of an item folder, checked: `{path: {"shape": tuple | None, "keys": raw keys}}` for its arrays.

    Raises:
      UntrustedCheckpointError: for key names that are not plain names, unknown value types, absurd shapes.
    """
    meta_path = os.path.join(state_dir, "_METADATA")
    tree_meta = manifest_lib.read_json(meta_path, step=step)

    def bad(msg):
        return UntrustedCheckpointError(f"checkpoint {describe(step, folder)}: {meta_path!r} {msg}", step=step, path=meta_path)

    if not isinstance(tree_meta, dict) or not isinstance(tree_meta.get("tree_metadata"), dict):
        raise bad("has no 'tree_metadata' object")
    stored: dict[tuple[str, ...], dict] = {}
    for raw_key, entry in tree_meta["tree_metadata"].items():
        if not isinstance(entry, dict) or not isinstance(entry.get("key_metadata"), list) or not isinstance(entry.get("value_metadata"), dict):
            raise bad(f"has a malformed entry for {raw_key!r}")
        names, keys = [], []
        for k in entry["key_metadata"]:
            name = k.get("key") if isinstance(k, dict) else None
            if not _is_plain_name(name):
                raise bad(f"names the key {name!r}: keys must be plain names (no '/', '..', NUL or absolute paths)")
            names.append(str(name))
            keys.append(name)
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
        stored[tuple(names)] = {"shape": shape, "keys": tuple(keys)}
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
    return stored


def check_matches(stored: dict, wanted: dict, *, step, folder: str) -> None:
    """Raises CheckpointMismatchError unless the stored arrays are exactly the target's (`{path: ShapeDtypeStruct}`)."""
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
    for p, info in stored.items():
        # Orbax's write_shape is the shape of the pieces written (shards, or slices of replicated arrays), at most the array's.
        shape, expected = info["shape"], tuple(wanted[p].shape)
        if shape is not None and (len(shape) != len(expected) or any(w > e for w, e in zip(shape, expected, strict=True))):
            raise CheckpointMismatchError(f"{where}: array {'/'.join(p)!r} is written in pieces of shape {tuple(shape)}, which do not fit "
                                          f"the target's shape {expected}", step=step, path=folder)


def _check_json_sizes(folder: str, *, step, manifest: dict) -> None:
    """Refuses metadata files too large for the bounded reader, then parses every JSON file through it."""
    for rel, entry in manifest["files"].items():
        if _is_json_file(rel) and entry["size"] > manifest_lib.MAX_JSON_BYTES:
            raise UntrustedCheckpointError(f"checkpoint {describe(step, folder)}: metadata file {rel!r} has {entry['size']} bytes, "
                                           f"more than {manifest_lib.MAX_JSON_BYTES}", step=step, path=os.path.join(folder, rel))
    check_json_files(folder, manifest["files"], step=step)


def _check_tree_metadata(folder: str, abstract, *, step, cap: int, item: str = STATE_ITEM) -> None:
    """Refuses an item whose Orbax metadata is unsafe or does not match `abstract`, before reading any array."""
    item_dir = os.path.join(folder, item)
    if not os.path.isdir(item_dir) or os.path.islink(item_dir):
        raise CheckpointMismatchError(f"checkpoint {describe(step, folder)} has no {item!r} item; the restore target asks for one",
                                      step=step, path=folder)
    stored = read_tree_metadata(item_dir, step=step, cap=cap, folder=folder)
    wanted = {path: leaf for path, leaf in leaf_paths(abstract)}
    check_matches(stored, wanted, step=step, folder=folder)
    check_tensorstore_shapes(item_dir, wanted, cap=cap, step=step, folder=folder)


def check_tensorstore_shapes(state_dir: str, wanted: dict, *, cap: int, step, folder: str) -> None:
    """The shapes, chunk shapes and dtypes TensorStore will use (Orbax's metadata), checked against the target.

    TensorStore allocates a whole chunk to read any part of it: a chunk claimed larger than its
    array (a crafted `.zarray`) would abort the process (`std::bad_alloc`) instead of raising.
    """
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
        chunk = getattr(getattr(meta, "storage", None), "chunk_shape", None)
        if chunk is not None:
            chunk = tuple(int(d) for d in chunk)
            if len(chunk) != len(shape) or any(c < 1 or c > max(d, 1) for c, d in zip(chunk, shape, strict=False)):
                raise CheckpointCorruptError(f"checkpoint {describe(step, folder)}: array {'/'.join(names)!r} of shape {shape} claims "
                                             f"chunks of shape {chunk}; expected chunks no larger than the array (refusing to let "
                                             "TensorStore allocate them)", step=step, path=state_dir)
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
def _element_cap(abstract, max_elements: int | None) -> int:
    sizes = [math.prod(leaf.shape) for leaf in jax.tree.leaves(abstract)]
    return max([DEFAULT_MAX_ELEMENTS if max_elements is None else int(max_elements)] + sizes)


def restore_folder(folder: str, target: Any, *, step: int | None = None, max_elements: int | None = None,
                   return_metadata: bool = False):
    """Verifies and restores one checkpoint folder (see `restore`)."""
    state, metadata, _ = restore_folder_with_arrays(folder, target, step=step, max_elements=max_elements)
    return (state, metadata) if return_metadata else state


def restore_folder_with_arrays(folder: str, target: Any, *, step: int | None = None, max_elements: int | None = None,
                               arrays_target: Any = None) -> tuple[Any, dict, Any]:
    """Verifies and restores one checkpoint folder: its state, its metadata and its optional `arrays` item.

    Args:
      folder, target, step, max_elements: as `restore`.
      arrays_target: the target of the `arrays` item: a pytree of arrays / `jax.ShapeDtypeStruct`s,
        or a function of the checkpoint's verified JSON metadata returning one (or None: the item is
        not read). Its arrays go through every check the state's do; each is capped at
        `max_elements` (default 2**31) whatever the target claims, since a target built from the
        metadata is built from the checkpoint itself.

    Returns:
      `(state, metadata, arrays)`; `arrays` is None when the item was not read.

    Raises:
      As `restore`; CheckpointMismatchError also when `arrays_target` asks for an item the checkpoint lacks.
    """
    import orbax.checkpoint as ocp

    if target is None:
        raise TypeError("checkpoint restore: `target` is required (a TrainState or pytree of arrays / jax.ShapeDtypeStruct with "
                        "the shapes, dtypes and shardings to restore onto); got None")
    manifest = manifest_lib.verify(folder, step=step)
    if step is None:
        step = manifest.get("step")
    abstract = abstract_target(target)
    cap = _element_cap(abstract, max_elements)
    _check_json_sizes(folder, step=step, manifest=manifest)
    _check_tree_metadata(folder, abstract, step=step, cap=cap)
    items = {STATE_ITEM: ocp.args.StandardRestore(abstract), METADATA_ITEM: ocp.args.JsonRestore()}
    arrays_abstract = None
    if callable(arrays_target):
        arrays_target = arrays_target(_read_metadata_file(folder, step=step, manifest=manifest))
    if arrays_target is not None:
        arrays_abstract = abstract_target(arrays_target)
        arrays_cap = DEFAULT_MAX_ELEMENTS if max_elements is None else int(max_elements)
        for path, leaf in leaf_paths(arrays_abstract):
            _check_elements(tuple(leaf.shape), arrays_cap, f"array {'/'.join(path)!r} of the {ARRAYS_ITEM!r} target", step, folder)
        _check_tree_metadata(folder, arrays_abstract, step=step, cap=arrays_cap, item=ARRAYS_ITEM)
        items[ARRAYS_ITEM] = ocp.args.StandardRestore(arrays_abstract)
    reader = _reader()
    try:
        restored = reader.restore(folder, args=ocp.args.Composite(**items))
    except (ValueError, KeyError, TypeError) as err:
        raise CheckpointMismatchError(f"checkpoint {describe(step, folder)} does not match the restore target: {err}",
                                      step=step, path=folder) from err
    except RecursionError as err:
        raise CheckpointCorruptError(f"checkpoint {describe(step, folder)}: Orbax cannot read it: RecursionError: {err}",
                                     step=step, path=folder) from err
    finally:
        reader.close()
    state = restored[STATE_ITEM]
    metadata = restored[METADATA_ITEM]
    if not isinstance(metadata, dict):
        raise UntrustedCheckpointError(f"checkpoint {describe(step, folder)}: its metadata must be a JSON object; got "
                                       f"{type(metadata).__name__}", step=step, path=folder)
    state = jax.tree.unflatten(jax.tree.structure(target), jax.tree.leaves(state))
    arrays = None
    if arrays_abstract is not None:
        arrays = jax.tree.unflatten(jax.tree.structure(arrays_abstract), jax.tree.leaves(restored[ARRAYS_ITEM]))
    return state, metadata, arrays


_FOREIGN_READER = None  # the module that reads plain Orbax checkpoints (it depends on this one, not the reverse)


def restore(path: str | os.PathLike, target: Any, *, max_elements: int | None = None, return_metadata: bool = False,
            allow_unverified: bool = False):
    """Reads a checkpoint written by `save` onto `target`'s structure, shapes, dtypes and shardings.

    `target` may hold arrays (their shardings are kept: restore a checkpoint saved
    on one device straight onto a `NamedSharding` over four, or back) or
    `jax.ShapeDtypeStruct`s with `sharding=`.

    nnjax's checkpoints are verified file by file against their SHA-256 manifest.
    A plain Orbax checkpoint (written by `ocp.StandardCheckpointer`, or one step
    of an `ocp.CheckpointManager`, e.g. of `nnx.state(module)`) has no manifest:
    its bytes cannot be verified, so it is refused unless `allow_unverified=True`;
    then its metadata still goes through every other check (no links, plain key
    names, known value types, bounded shapes and chunks) and an
    `UnverifiedCheckpointWarning` says its integrity was not verified.

    Args:
      path: the checkpoint folder. If an overwrite of it was interrupted half-way
        (`save(..., overwrite=True)`), the committed checkpoint beside it is read.
      target: a `TrainState` or pytree of arrays / `jax.ShapeDtypeStruct`s.
      max_elements: the most elements any array the checkpoint claims may have
        (default 2**31, or the target's largest array if bigger).
      return_metadata: also return the JSON metadata saved with it ({} for a plain Orbax checkpoint).
      allow_unverified: restore a plain Orbax checkpoint without integrity check
        (see above). Arrays are matched by path; a trailing `value` (NNX
        variables) and the `params`/`model_state` split of `Model.save_weights`
        are looked through.

    Returns:
      The restored tree (same type as `target`), or `(tree, metadata)`.

    Raises:
      FileNotFoundError: if `path` does not exist.
      CheckpointCorruptError: a file is missing, truncated or altered (the error names the step and the file).
      UnverifiedCheckpointError: a plain Orbax checkpoint, without `allow_unverified=True`.
      UntrustedCheckpointError: links, paths leaving the folder, unknown value types, absurd shapes.
      CheckpointMismatchError: the arrays do not match `target`.

    Example:
      >>> import os, orbax.checkpoint as ocp
      >>> module = nnx.Linear(2, 3, rngs=nnx.Rngs(0))
      >>> with ocp.StandardCheckpointer() as orbax_alone:   # a checkpoint written by Orbax alone
      ...     orbax_alone.save(os.path.abspath("flax_ckpt"), nnx.state(module))
      >>> state = nj.checkpoint.restore("flax_ckpt", nnx.state(module), allow_unverified=True)
    """
    path = os.path.abspath(os.fspath(path))
    folder = folders.resolve(path)
    if not os.path.lexists(folder):
        raise FileNotFoundError(f"checkpoint restore: nothing at {path!r}: expected a folder written by nj.checkpoint.save")
    if not folders.is_owned(folder) and os.path.isdir(folder) and not os.path.islink(folder):
        foreign = _FOREIGN_READER  # nnjax.checkpoint.foreign, registered when it is imported
        if foreign is not None and foreign.is_plain_orbax(folder):
            if not allow_unverified:
                raise UnverifiedCheckpointError(
                    f"checkpoint restore: {path!r} is a plain Orbax checkpoint: it has no {manifest_lib.MANIFEST_NAME}, so its files "
                    "cannot be verified (a truncated or altered file could restore silently wrong values). Pass "
                    "allow_unverified=True to restore it anyway", path=path)
            restored = foreign.restore_plain_orbax(folder, target, max_elements=max_elements)
            return (restored, {}) if return_metadata else restored
    return restore_folder(folder, target, max_elements=max_elements, return_metadata=return_metadata)


def read_metadata(path: str | os.PathLike, *, verify: bool = True) -> dict:
    """The JSON metadata of a checkpoint (its files are verified against the manifest first unless `verify=False`).

    Raises:
      FileNotFoundError, CheckpointCorruptError, UntrustedCheckpointError: as `restore`.
    """
    path = folders.resolve(os.path.abspath(os.fspath(path)))
    if not os.path.lexists(path):
        raise FileNotFoundError(f"checkpoint: nothing at {path!r}")
    manifest = manifest_lib.verify(path) if verify else manifest_lib.read_manifest(path)
    if manifest is None:
        raise CheckpointCorruptError(f"checkpoint {path!r} has no manifest: it was never committed", path=path)
    return _read_metadata_file(path, step=manifest.get("step"), manifest=manifest)


def _read_metadata_file(folder: str, *, step, manifest: dict) -> dict:
    """The metadata item through the bounded JSON reader (the folder's manifest was read or verified by the caller)."""
    rel = f"{METADATA_ITEM}/{METADATA_ITEM}"
    if rel not in manifest.get("files", {}):
        raise CheckpointCorruptError(f"checkpoint {describe(step, folder)}: its manifest lists no {rel!r}", step=step, path=folder)
    data = manifest_lib.read_json(os.path.join(folder, rel), step=step)
    if not isinstance(data, dict):
        raise UntrustedCheckpointError(f"checkpoint {describe(step, folder)}: its metadata must be a JSON object; got "
                                       f"{type(data).__name__}", step=step, path=folder)
    return data


__all__ = ["abstract_target", "read_metadata", "restore", "save"]
