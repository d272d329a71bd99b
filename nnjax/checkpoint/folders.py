"""Which folders nnjax wrote, and replacing a checkpoint without a moment when none is readable.

A checkpoint folder is nnjax's when it holds `nnjax_manifest.json` (committed) or
`nnjax_uncommitted` (written into Orbax's temporary folder when a save starts,
removed after the manifest): only such folders, and the sibling names below, are
ever deleted or replaced. Anything else in the way stops the save with
`ForeignFolderError`.

Every save of `<path>` writes the new checkpoint beside it, then swaps (or, when
nothing is at `<path>` yet, renames) it in:

    <path>.nnjax-new-<pid>-<n>/   the new checkpoint, written and committed (manifest) first
    <path>                 then exchanged with it in one `renameat2(RENAME_EXCHANGE)` (Linux),
                           or, where the file system cannot, renamed aside to
    <path>.nnjax-old/      just before `<path>.nnjax-new-*` is renamed to `<path>`
    <path>.nnjax-trash-*   a replaced checkpoint being deleted

The rename into `<path>` is the commit point. So at every instant the last
committed checkpoint is at `<path>` or, between the two renames of the fallback,
at `<path>.nnjax-new-*` (with the previous one at `<path>.nnjax-old`): `resolve`
finds it, and `recover` (run before the next save) completes an interrupted swap
and removes every other leftover.
"""

from __future__ import annotations

import ctypes
import errno
import itertools
import os
import shutil
import stat
import sys

from nnjax.checkpoint.errors import ForeignFolderError
from nnjax.checkpoint.manifest import MANIFEST_NAME, PENDING_NAME

TMP_MARKER = ".orbax-checkpoint-tmp"
NEW_SUFFIX = ".nnjax-new"
OLD_SUFFIX = ".nnjax-old"
TRASH_MARKER = ".nnjax-trash-"
_trash_counter = itertools.count()
# Orbax temporary folders created by this process: removable after a failed save even if their marker could not be written.
_created_here: set[str] = set()


def created_here(path: str) -> None:
    """Records an Orbax temporary folder this process created."""
    _created_here.add(os.path.abspath(path))


def _is_plain_dir(path: str) -> bool:
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except OSError:
        return False


def is_committed(path: str) -> bool:
    """True for a plain folder holding nnjax's manifest (its files are not verified here)."""
    return _is_plain_dir(path) and os.path.lexists(os.path.join(path, MANIFEST_NAME))


def is_pending(path: str) -> bool:
    """True for a plain folder nnjax started writing and never committed."""
    return _is_plain_dir(path) and os.path.lexists(os.path.join(path, PENDING_NAME))


def is_owned(path: str) -> bool:
    """True if nnjax wrote the folder at `path` (committed or not): only these are deleted or replaced."""
    return is_committed(path) or is_pending(path)


def is_replaceable(path: str) -> bool:
    """True if a save may replace what is at `path`: nothing, an empty folder or a folder nnjax wrote."""
    if not os.path.lexists(path):
        return True
    return is_owned(path) or (_is_plain_dir(path) and not os.listdir(path))


def contents(path: str, limit: int = 5) -> str:
    """`"'images', 'labels.csv', ... (12 entries)"` for error messages; `"a file"` when `path` is not a folder."""
    if os.path.islink(path):
        return "a symbolic link"
    if not os.path.isdir(path):
        return "a file"
    try:
        names = sorted(os.listdir(path))
    except OSError as err:
        return f"an unreadable folder ({err})"
    shown = ", ".join(repr(n) for n in names[:limit])
    return f"{shown}{', ...' if len(names) > limit else ''} ({len(names)} entries)"


def refuse(path: str, what: str) -> ForeignFolderError:
    """The error for a folder nnjax did not write, standing where `what` would write or delete."""
    return ForeignFolderError(
        f"{what}: {path!r} exists and was not written by nnjax (it has no {MANIFEST_NAME}; it holds {contents(path)}); "
        "nnjax never deletes or replaces what it did not write. Choose another path, or move it away yourself",
        path=path,
    )


def _fsync_dir(path: str) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def discard(path: str) -> None:
    """Deletes a folder nnjax wrote: renamed to a trash name first (atomic), then removed (best effort)."""
    if not os.path.lexists(path):
        return
    parent, name = os.path.split(path)
    trash = os.path.join(parent, f"{name}{TRASH_MARKER}{os.getpid()}-{next(_trash_counter)}")
    try:
        os.rename(path, trash)
    except OSError:
        trash = path
    shutil.rmtree(trash, ignore_errors=True)


def _renameat2():
    if not sys.platform.startswith("linux"):
        return None
    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    fn.restype = ctypes.c_int
    return fn


_AT_FDCWD, _RENAME_EXCHANGE = -100, 2
_exchange_fn = _renameat2()


def exchange(a: str, b: str) -> bool:
    """Swaps two existing paths atomically (Linux `renameat2(RENAME_EXCHANGE)`); False where unsupported."""
    if _exchange_fn is None:
        return False
    if _exchange_fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EPERM):
        return False
    raise OSError(err, os.strerror(err), a, None, b)


def swap_into(new: str, path: str) -> None:
    """Puts the committed checkpoint `new` at `path`, replacing what is there without a gap (see the module doc)."""
    parent = os.path.dirname(path)
    if not os.path.lexists(path):
        os.rename(new, path)
        _fsync_dir(parent)
        return
    if exchange(new, path):
        _fsync_dir(parent)
        discard(new)  # now the previous checkpoint
        return
    old = path + OLD_SUFFIX
    if os.path.lexists(old):
        if not is_owned(old):
            raise refuse(old, "checkpoint save")
        discard(old)
    os.rename(path, old)
    os.rename(new, path)
    _fsync_dir(parent)
    discard(old)


def new_name(path: str) -> str:
    """A fresh sibling to write a checkpoint of `path` into: `<path>.nnjax-new-<pid>-<n>`.

    Unique per save, so that writes Orbax leaves running after a failed save (TensorStore
    may still be flushing into its temporary folder) never land in a later save's folders.
    """
    return f"{path}{NEW_SUFFIX}-{os.getpid()}-{next(_trash_counter)}"


def _entries(path: str) -> list[str]:
    try:
        return os.listdir(os.path.dirname(path))
    except OSError:
        return []


def new_siblings(path: str) -> list[str]:
    """The `<path>.nnjax-new*` folders (not their Orbax temporaries or trash), newest commit first."""
    parent, name = os.path.split(path)
    found = [
        os.path.join(parent, e)
        for e in _entries(path)
        if e.startswith(name + NEW_SUFFIX) and TMP_MARKER not in e and TRASH_MARKER not in e
    ]

    def committed_at(folder):
        try:
            return os.lstat(os.path.join(folder, MANIFEST_NAME)).st_mtime_ns
        except OSError:
            return -1

    return sorted(found, key=committed_at, reverse=True)


def _swap_survivor(path: str) -> str | None:
    """With nothing at `path`: the checkpoint a swap caught between its two renames leaves, else None.

    Only the fallback's `<path>.nnjax-old` shows such a swap; a committed `<path>.nnjax-new-*`
    alone is a save that never reached its commit point (the rename into `path`).
    """
    old = path + OLD_SUFFIX
    if not is_committed(old):
        return None
    return next((c for c in new_siblings(path) if is_committed(c)), old)


def resolve(path: str) -> str:
    """The folder holding the checkpoint at `path`: `path` itself, or what a swap caught half-way left beside it."""
    if os.path.lexists(path):
        return path
    return _swap_survivor(path) or path


def remove_temporaries(path: str) -> None:
    """Removes what interrupted saves of `path` left: Orbax temporaries and trash of nnjax's (never anything unmarked)."""
    parent, name = os.path.split(path)
    for entry in _entries(path):
        full = os.path.join(parent, entry)
        if not _is_plain_dir(full):
            continue
        ours_by_name = entry.startswith((name + NEW_SUFFIX, name + OLD_SUFFIX, name + TRASH_MARKER)) and (
            TMP_MARKER in entry or TRASH_MARKER in entry
        )
        if ours_by_name or (entry.startswith(name + TMP_MARKER) and (os.path.abspath(full) in _created_here or is_pending(full))):
            shutil.rmtree(full, ignore_errors=True)
            _created_here.discard(os.path.abspath(full))


def recover(path: str, *, what: str = "checkpoint save") -> None:
    """Completes (or rolls back) an overwrite of `path` interrupted by a crash, and removes its leftovers.

    Raises:
      ForeignFolderError: if something nnjax did not write sits at `path.nnjax-new*` or `path.nnjax-old`.
    """
    if not os.path.lexists(path):
        survivor = _swap_survivor(path)
        if survivor is not None:
            os.rename(survivor, path)
            _fsync_dir(os.path.dirname(path))
    for candidate in [*new_siblings(path), path + OLD_SUFFIX]:
        if os.path.lexists(candidate):
            if not is_owned(candidate) and not (_is_plain_dir(candidate) and not os.listdir(candidate)):
                raise refuse(candidate, what)
            discard(candidate)
    remove_temporaries(path)


def abandon(target: str, path: str) -> None:
    """Cleans up after a failed save into `target` (a `new_name` of `path`); `path`'s checkpoint stays."""
    recover(path)


__all__ = ["discard", "is_committed", "is_owned", "is_pending", "is_replaceable", "new_name", "recover", "resolve", "swap_into"]
