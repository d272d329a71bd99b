"""Which folders nnjax wrote, and replacing a checkpoint without a moment when none is readable.

A checkpoint folder is nnjax's when it holds `nnjax_manifest.json` (committed) or
`nnjax_uncommitted` (written into Orbax's temporary folder when a save starts,
removed after the manifest): only such folders, and the sibling names below, are
ever deleted or replaced. Anything else in the way stops the save with
`ForeignFolderError`.

Overwriting `<path>` writes the new checkpoint beside it and swaps:

    <path>.nnjax-new/      the new checkpoint, written and committed (manifest) first
    <path>                 then exchanged with it in one `renameat2(RENAME_EXCHANGE)` (Linux),
                           or, where the file system cannot, renamed aside to
    <path>.nnjax-old/      just before `<path>.nnjax-new` is renamed to `<path>`
    <path>.nnjax-trash-*   a replaced checkpoint being deleted

So at every instant a committed checkpoint is at `<path>` or, between the two
renames of the fallback, at `<path>.nnjax-new` (with the previous one at
`<path>.nnjax-old`): `resolve` finds it, and `recover` (run before the next save)
completes or rolls back an interrupted swap.
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


def resolve(path: str) -> str:
    """The folder holding the checkpoint at `path`: `path` itself, or the sibling of a swap caught half-way."""
    if os.path.lexists(path):
        return path
    for candidate in (path + NEW_SUFFIX, path + OLD_SUFFIX):
        if is_committed(candidate):
            return candidate
    return path


def _temporaries(path: str) -> list[str]:
    """Orbax temporary folders and nnjax trash folders of `path` and of `path.nnjax-new`."""
    parent, name = os.path.split(path)
    try:
        entries = os.listdir(parent)
    except OSError:
        return []
    return [
        os.path.join(parent, e)
        for e in entries
        if e.startswith(
            (
                name + TMP_MARKER,
                name + NEW_SUFFIX + TMP_MARKER,
                name + TRASH_MARKER,
                name + NEW_SUFFIX + TRASH_MARKER,
                name + OLD_SUFFIX + TRASH_MARKER,
            )
        )
    ]


def remove_temporaries(path: str) -> None:
    """Removes what interrupted saves of `path` left: nnjax-marked Orbax temporaries and trash (never anything unmarked)."""
    new_prefix = os.path.basename(path) + NEW_SUFFIX
    for full in _temporaries(path):
        name = os.path.basename(full)
        ours = TRASH_MARKER in name or name.startswith(new_prefix) or os.path.abspath(full) in _created_here or is_pending(full)
        if _is_plain_dir(full) and ours:
            shutil.rmtree(full, ignore_errors=True)
            _created_here.discard(os.path.abspath(full))


def recover(path: str, *, what: str = "checkpoint save") -> None:
    """Completes (or rolls back) an overwrite of `path` interrupted by a crash, and removes its leftovers.

    Raises:
      ForeignFolderError: if something nnjax did not write sits at `path.nnjax-new` or `path.nnjax-old`.
    """
    new, old = path + NEW_SUFFIX, path + OLD_SUFFIX
    if not os.path.lexists(path):
        for candidate in (new, old):  # the commit point of an overwrite is the swap: a committed new one wins
            if is_committed(candidate):
                os.rename(candidate, path)
                _fsync_dir(os.path.dirname(path))
                break
    for candidate in (new, old):
        if os.path.lexists(candidate):
            if not is_owned(candidate) and not (_is_plain_dir(candidate) and not os.listdir(candidate)):
                raise refuse(candidate, what)
            discard(candidate)
    remove_temporaries(path)


def abandon(target: str, path: str) -> None:
    """Cleans up after a failed save into `target` (`path` itself, or `path.nnjax-new`); `path`'s checkpoint stays."""
    if target == path:
        if is_owned(path) and not is_committed(path):
            discard(path)
        remove_temporaries(path)
    else:
        recover(path)


__all__ = ["discard", "is_committed", "is_owned", "is_pending", "is_replaceable", "recover", "resolve", "swap_into"]
