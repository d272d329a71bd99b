"""SHA-256 manifests: nnjax's commit marker and end-to-end check of a checkpoint folder.

Orbax commits a checkpoint by renaming its temporary folder, and checks only the
shard index of its arrays (crc32c): a flipped byte in array data or in a JSON
file restores silently. nnjax therefore writes `nnjax_manifest.json` last, after
Orbax's rename: the size and SHA-256 of every file in the folder, plus the step
and its metrics. A folder without a manifest is not committed (a process died
between the rename and the manifest) and is never restored. Before a restore,
every file is checked against the manifest, and the folder is checked for links,
special files and paths that leave it.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import stat
import time
from typing import Any

from nnjax.checkpoint.errors import CheckpointCorruptError, UntrustedCheckpointError, describe

MANIFEST_NAME = "nnjax_manifest.json"
# Written into Orbax's temporary folder when a save starts, removed once the manifest exists: a folder
# carrying it was written by nnjax and never committed, so nnjax may delete it. Never listed in a manifest.
PENDING_NAME = "nnjax_uncommitted"
FORMAT = "nnjax.checkpoint"
VERSION = 1
# Caps on what a checkpoint may claim, checked before anything is read into memory.
MAX_JSON_BYTES = 64 << 20
MAX_FILES = 100_000
MAX_JSON_DEPTH = 128
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_CHUNK = 1 << 20


def json_depth(value: Any) -> int:
    """How deeply lists and dicts nest in parsed JSON (a scalar is 0), computed without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is None:
            continue
        deepest = max(deepest, depth)
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return deepest


def read_json(path: str, *, step: int | None = None, limit: int = MAX_JSON_BYTES) -> Any:
    """Parses a JSON file of at most `limit` bytes, nested at most `MAX_JSON_DEPTH` deep, that is a regular file, not a link.

    Raises:
      CheckpointCorruptError: if the file is missing, is not valid JSON or nests deeper than `MAX_JSON_DEPTH`.
      UntrustedCheckpointError: if it is a link, not a regular file, or too large.
    """
    try:
        info = os.lstat(path)
    except FileNotFoundError as err:
        raise CheckpointCorruptError(f"checkpoint {describe(step, os.path.dirname(path))}: file {path!r} is missing", step=step, path=path) from err
    if not stat.S_ISREG(info.st_mode):
        raise UntrustedCheckpointError(f"checkpoint {describe(step, os.path.dirname(path))}: {path!r} is not a regular file "
                                       "(links and special files are refused)", step=step, path=path)
    if info.st_size > limit:
        raise UntrustedCheckpointError(f"checkpoint {describe(step, os.path.dirname(path))}: {path!r} is {info.st_size} bytes; "
                                       f"expected a JSON file of at most {limit} bytes", step=step, path=path)
    with open(path, "rb") as f:
        raw = f.read(min(info.st_size, limit) + 1)
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as err:
        raise CheckpointCorruptError(f"checkpoint {describe(step, os.path.dirname(path))}: {path!r} is not valid JSON "
                                     f"({type(err).__name__}: {str(err)[:200]})", step=step, path=path) from err
    depth = json_depth(data)
    if depth > MAX_JSON_DEPTH:
        raise CheckpointCorruptError(f"checkpoint {describe(step, os.path.dirname(path))}: {path!r} nests lists/objects {depth} deep; "
                                     f"expected at most {MAX_JSON_DEPTH}", step=step, path=path)
    return data


def is_safe_relpath(rel: Any) -> bool:
    """True for a relative path made of plain names: no `..`, `.`, empty parts, backslashes, NUL or drive."""
    if not isinstance(rel, str) or not rel or "\x00" in rel or "\\" in rel or rel.startswith("/") or len(rel) > 4096:
        return False
    parts = rel.split("/")
    return all(part not in ("", ".", "..") for part in parts) and ":" not in parts[0]


def scan_files(folder: str, *, step: int | None = None) -> dict[str, str]:
    """Every regular file under `folder`: `{relative path: absolute path}`.

    Raises:
      UntrustedCheckpointError: for links, sockets, devices or too many files.
    """
    files: dict[str, str] = {}
    for root, dirs, names in os.walk(folder, followlinks=False):
        for name in dirs + names:
            full = os.path.join(root, name)
            mode = os.lstat(full).st_mode
            rel = os.path.relpath(full, folder).replace(os.sep, "/")
            if stat.S_ISLNK(mode):
                raise UntrustedCheckpointError(f"checkpoint {describe(step, folder)}: {rel!r} is a symbolic link; links are refused",
                                               step=step, path=full)
            if stat.S_ISDIR(mode):
                continue
            if not stat.S_ISREG(mode):
                raise UntrustedCheckpointError(f"checkpoint {describe(step, folder)}: {rel!r} is not a regular file", step=step, path=full)
            files[rel] = full
            if len(files) > MAX_FILES:
                raise UntrustedCheckpointError(f"checkpoint {describe(step, folder)} holds more than {MAX_FILES} files", step=step, path=folder)
    return files


def _hash_file(path: str, *, fsync: bool) -> tuple[int, str]:
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
        if fsync:
            os.fsync(f.fileno())
    return size, digest.hexdigest()


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _jsonable_metrics(metrics: dict | None) -> dict:
    out = {}
    for name, value in (metrics or {}).items():
        if not isinstance(name, str):
            raise TypeError(f"checkpoint metrics: names must be str; got {name!r}")
        try:
            out[name] = float(value)
        except (TypeError, ValueError) as err:
            raise TypeError(f"checkpoint metrics: {name!r} must be a number; got {value!r}") from err
    return out


def write_manifest(folder: str, *, step: int | None, metrics: dict | None = None, fsync: bool = True) -> dict:
    """Hashes every file in `folder` and writes the manifest atomically (temporary file, fsync, rename).

    Args:
      folder: a checkpoint folder that Orbax has just committed.
      step: the checkpoint's step, or None.
      metrics: `{name: float}` stored with the checkpoint (for keep-best retention).
      fsync: flush every file and the folders to disk before the manifest appears.

    Returns:
      The manifest written.
    """
    files = {}
    dirs = set()
    for rel, full in sorted(scan_files(folder, step=step).items()):
        if rel == MANIFEST_NAME or rel.startswith(MANIFEST_NAME + ".") or rel == PENDING_NAME:
            continue
        size, sha = _hash_file(full, fsync=fsync)
        files[rel] = {"size": size, "sha256": sha}
        dirs.add(os.path.dirname(full))
    manifest = {
        "format": FORMAT,
        "version": VERSION,
        "step": step,
        "created_unix": time.time(),
        "metrics": _jsonable_metrics(metrics),
        "files": files,
    }
    if fsync:
        for d in sorted(dirs):
            _fsync_dir(d)
    tmp = os.path.join(folder, MANIFEST_NAME + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(json.dumps(manifest, indent=1, sort_keys=True))  # one write: a full disk fails it whole
        f.flush()
        if fsync:
            os.fsync(f.fileno())
    os.replace(tmp, os.path.join(folder, MANIFEST_NAME))
    if fsync:
        _fsync_dir(folder)
        _fsync_dir(os.path.dirname(os.path.abspath(folder)))
    return manifest


def _check_schema(manifest: Any, path: str, step: int | None) -> dict:
    where = f"checkpoint {describe(step, os.path.dirname(path))}: manifest {path!r}"

    def bad(msg):
        return UntrustedCheckpointError(f"{where} {msg}", step=step, path=path)

    if not isinstance(manifest, dict):
        raise bad(f"must be a JSON object; got {type(manifest).__name__}")
    if manifest.get("format") != FORMAT or manifest.get("version") != VERSION:
        raise bad(f"has format {manifest.get('format')!r} version {manifest.get('version')!r}; expected {FORMAT!r} version {VERSION}")
    m_step = manifest.get("step")
    if m_step is not None and (isinstance(m_step, bool) or not isinstance(m_step, int) or m_step < 0):
        raise bad(f"names step {m_step!r}; expected a non-negative int or null")
    metrics = manifest.get("metrics", {})
    if not isinstance(metrics, dict) or not all(isinstance(k, str) and isinstance(v, (int, float)) and not isinstance(v, bool)
                                                for k, v in metrics.items()):
        raise bad("has malformed metrics; expected {name: number}")
    files = manifest.get("files")
    if not isinstance(files, dict) or len(files) > MAX_FILES:
        raise bad(f"must list at most {MAX_FILES} files as {{path: {{size, sha256}}}}")
    for rel, entry in files.items():
        if not is_safe_relpath(rel) or rel in (MANIFEST_NAME, PENDING_NAME):
            raise bad(f"names the path {rel!r}, which is not a plain relative path inside the checkpoint folder")
        if (not isinstance(entry, dict) or isinstance(entry.get("size"), bool) or not isinstance(entry.get("size"), int)
                or entry["size"] < 0 or not isinstance(entry.get("sha256"), str) or not _SHA256.match(entry["sha256"])):
            raise bad(f"has a malformed entry for {rel!r}: expected {{'size': int >= 0, 'sha256': 64 hex digits}}; got {entry!r}")
    return manifest


def read_manifest(folder: str, *, step: int | None = None) -> dict | None:
    """The manifest of `folder` (schema-checked, files not hashed), or None if it has none (not committed).

    Raises:
      UntrustedCheckpointError: for a malformed manifest, a link or an oversized file.
      CheckpointCorruptError: if the manifest is not valid JSON.
    """
    path = os.path.join(folder, MANIFEST_NAME)
    if not os.path.lexists(path):
        return None
    return _check_schema(read_json(path, step=step), path, step)


def verify(folder: str, *, step: int | None = None) -> dict:
    """Checks every file of a committed checkpoint against its manifest.

    Args:
      folder: the checkpoint folder.
      step: its step, for error messages (the manifest's step is used when None).

    Returns:
      The manifest.

    Raises:
      CheckpointCorruptError: naming the step and the first file that is missing,
        unexpected, truncated or altered; or if the folder has no manifest.
      UntrustedCheckpointError: for links, special files or paths outside the folder.
    """
    info = os.lstat(folder) if os.path.lexists(folder) else None
    if info is None:
        raise CheckpointCorruptError(f"checkpoint {describe(step, folder)} does not exist", step=step, path=folder)
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
        raise UntrustedCheckpointError(f"checkpoint {describe(step, folder)} is not a plain folder (links are refused)", step=step, path=folder)
    manifest = read_manifest(folder, step=step)
    if manifest is None:
        raise CheckpointCorruptError(
            f"checkpoint {describe(step, folder)} has no {MANIFEST_NAME}: it was never committed (the save was interrupted) "
            "or the manifest was deleted", step=step, path=os.path.join(folder, MANIFEST_NAME))
    if step is None:
        step = manifest.get("step")
    where = f"checkpoint {describe(step, folder)}"
    actual = scan_files(folder, step=step)
    actual.pop(MANIFEST_NAME, None)
    actual.pop(PENDING_NAME, None)  # a commit interrupted between the manifest and the marker's removal
    listed = manifest["files"]
    for rel in sorted(listed):
        if rel not in actual:
            raise CheckpointCorruptError(f"{where}: file {rel!r} listed in the manifest is missing", step=step, path=os.path.join(folder, rel))
    for rel in sorted(actual):
        if rel not in listed:
            raise CheckpointCorruptError(f"{where}: file {rel!r} is not in the manifest (added or renamed after the commit)",
                                         step=step, path=actual[rel])
    for rel in sorted(listed):
        expected = listed[rel]
        size = os.lstat(actual[rel]).st_size
        if size != expected["size"]:
            raise CheckpointCorruptError(f"{where}: file {rel!r} has {size} bytes; the manifest records {expected['size']} (truncated or "
                                         "overwritten)", step=step, path=actual[rel])
        _, sha = _hash_file(actual[rel], fsync=False)
        if sha != expected["sha256"]:
            raise CheckpointCorruptError(f"{where}: file {rel!r} does not match its SHA-256 in the manifest (its bytes were altered)",
                                         step=step, path=actual[rel])
    return manifest


def finite_metric(manifest: dict, name: str) -> float | None:
    """The metric `name` of a manifest if it is a finite number, else None."""
    value = manifest.get("metrics", {}).get(name)
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


__all__ = ["MANIFEST_NAME", "PENDING_NAME", "finite_metric", "json_depth", "read_json", "read_manifest", "verify", "write_manifest"]
