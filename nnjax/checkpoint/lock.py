"""One writer per checkpoint directory: an exclusive lock file naming its holder (pid, host).

`<directory>/.nnjax-lock` is held with `flock` for as long as a `CheckpointManager`
is open. The kernel drops the lock when its process dies (kill -9 included), so a
lock left by a dead process is taken over by the next run; on a file system
without `flock` an exclusive-create lock file is used instead, taken over when
it names a process of this host that no longer exists. Managers of one directory
within one process share the lock. A directory this process cannot write to is
opened without a lock (nothing can be written or deleted there).
"""

from __future__ import annotations

import errno
import json
import logging
import os
import socket
import sys
import threading
import time

from nnjax.checkpoint.errors import CheckpointLockError

log = logging.getLogger(__name__)

LOCK_NAME = ".nnjax-lock"
_NO_FLOCK = (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOTSUP, errno.ENOSYS, errno.EINVAL)

_held: dict[str, DirectoryLock] = {}
_held_lock = threading.Lock()


def _holder_info() -> dict:
    return {"pid": os.getpid(), "host": socket.gethostname(), "since_unix": time.time(), "argv": sys.argv[:3]}


def _read_holder(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.loads(f.read(4096) or "{}")
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _alive(pid) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _describe(holder: dict) -> str:
    if not holder.get("pid"):
        return "another process (it has not written its pid and host yet)"
    since = holder.get("since_unix")
    when = f", since {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(since))}" if isinstance(since, (int, float)) else ""
    return f"pid {holder.get('pid')} on host {holder.get('host')!r}{when}"


class DirectoryLock:
    """The exclusive lock of one checkpoint directory, shared by the managers of this process."""

    def __init__(self, directory: str, fd: int | None, flocked: bool):
        self.directory = directory
        self.path = os.path.join(directory, LOCK_NAME)
        self._fd = fd
        self._flocked = flocked
        self._users = 1

    # ------------------------------------------------------------------ acquiring
    @classmethod
    def acquire(cls, directory: str, *, what: str = "CheckpointManager") -> DirectoryLock:
        """Takes (or shares, within this process) the lock of `directory`.

        Raises:
          CheckpointLockError: if another live process holds it; the error names the directory and the holder.
        """
        key = os.path.realpath(directory)
        with _held_lock:
            lock = _held.get(key)
            if lock is not None:
                lock._users += 1
                return lock
            lock = cls._take(directory, what)
            _held[key] = lock
            return lock

    @classmethod
    def _take(cls, directory: str, what: str) -> DirectoryLock:
        path = os.path.join(directory, LOCK_NAME)
        while True:
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as err:
                if err.errno not in (errno.EROFS, errno.EACCES, errno.EPERM):
                    raise
                # A directory this process cannot write to: nothing can be saved or deleted there, so nothing to guard.
                log.warning("nnjax.checkpoint: %s is not writable (%s); opening it without a lock", directory, err.strerror)
                return cls(directory, None, False)
            try:
                import fcntl

                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except ImportError:
                os.close(fd)
                return cls._take_exclusive(directory, what)
            except OSError as err:
                os.close(fd)
                if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise cls._busy(directory, what, _read_holder(path)) from None
                if err.errno in _NO_FLOCK:
                    return cls._take_exclusive(directory, what)
                raise
            # Its previous holder may have removed the file between our open and our flock: lock the current file.
            try:
                current = os.stat(path)
            except FileNotFoundError:
                current = None
            mine = os.fstat(fd)
            if current is None or (current.st_dev, current.st_ino) != (mine.st_dev, mine.st_ino):
                os.close(fd)
                continue
            previous = _read_holder(path)
            if previous.get("pid"):
                log.info(
                    "nnjax.checkpoint: taking over the lock of %s left by %s (no longer running)", directory, _describe(previous)
                )
            cls._write(fd, _holder_info())
            return cls(directory, fd, True)

    @classmethod
    def _take_exclusive(cls, directory: str, what: str) -> DirectoryLock:
        path = os.path.join(directory, LOCK_NAME)
        for _ in range(3):
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                holder = _read_holder(path)
                if holder.get("host") == socket.gethostname() and not _alive(holder.get("pid")):
                    log.info("nnjax.checkpoint: taking over the stale lock of %s left by %s", directory, _describe(holder))
                    try:
                        os.remove(path)
                    except FileNotFoundError:
                        pass
                    continue
                raise cls._busy(directory, what, holder) from None
            cls._write(fd, _holder_info())
            return cls(directory, fd, False)
        raise cls._busy(directory, what, _read_holder(path))

    @staticmethod
    def _write(fd: int, info: dict) -> None:
        data = json.dumps(info).encode()
        os.ftruncate(fd, 0)
        os.pwrite(fd, data, 0)
        try:
            os.fsync(fd)
        except OSError:
            pass

    @staticmethod
    def _busy(directory: str, what: str, holder: dict) -> CheckpointLockError:
        return CheckpointLockError(
            f"{what}: the checkpoint directory {directory!r} is in use by {_describe(holder)} (lock file "
            f"{os.path.join(directory, LOCK_NAME)!r}). Two runs writing one directory would overwrite and delete each "
            "other's checkpoints: wait for that run to end, or give this one its own directory",
            path=directory,
            holder=holder,
        )

    # ------------------------------------------------------------------ releasing
    def release(self) -> None:
        """Drops one user; the last one removes the lock file and unlocks."""
        with _held_lock:
            self._users -= 1
            if self._users > 0:
                return
            _held.pop(os.path.realpath(self.directory), None)
            fd, self._fd = self._fd, None
            if fd is None:
                return
            try:
                current = os.stat(self.path)
                mine = os.fstat(fd)
                if (current.st_dev, current.st_ino) == (mine.st_dev, mine.st_ino):
                    os.remove(self.path)  # while still locked: a waiting process then locks a fresh file
            except OSError:
                pass
            os.close(fd)


__all__ = ["LOCK_NAME", "DirectoryLock"]
