"""What can go wrong with a checkpoint, as exceptions a user can act on."""

from __future__ import annotations


class CheckpointError(Exception):
    """Base class of nnjax's checkpoint errors.

    Attributes:
      step: the step of the checkpoint concerned, or None when unknown.
      path: the checkpoint folder or file concerned, or None.
    """

    def __init__(self, message: str, *, step: int | None = None, path: str | None = None):
        super().__init__(message)
        self.step = step
        self.path = path


class CheckpointCorruptError(CheckpointError, ValueError):
    """A committed checkpoint's files do not match its manifest (truncated, deleted, altered)."""


class UntrustedCheckpointError(CheckpointError, ValueError):
    """A checkpoint's metadata names paths outside its folder, links, unknown types or absurd shapes.

    Raised before anything is allocated or written.
    """


class CheckpointMismatchError(CheckpointError, ValueError):
    """A valid checkpoint whose arrays do not match the restore target (other model, other optimizer)."""


class CheckpointSaveError(CheckpointError, RuntimeError):
    """A save failed (disk full, I/O error), in the foreground or in the background.

    The original exception is chained (`__cause__`); earlier checkpoints are untouched.
    """


class UnverifiedCheckpointError(UntrustedCheckpointError):
    """A checkpoint without nnjax's manifest (a plain Orbax one): its bytes cannot be checked.

    `nj.checkpoint.restore(..., allow_unverified=True)` restores it anyway.
    """


class UnverifiedCheckpointWarning(UserWarning):
    """A checkpoint was restored without verifying its integrity (`allow_unverified=True`)."""


class ForeignFolderError(CheckpointError, FileExistsError):
    """A folder nnjax did not write stands where nnjax would write or delete: nnjax leaves it alone and stops."""


class CheckpointLockError(CheckpointError, RuntimeError):
    """Another process holds the checkpoint directory (two runs would overwrite each other's checkpoints).

    Attributes:
      holder: what the lock file says about its holder (`{"pid", "host", ...}`), or {} when unknown.
    """

    def __init__(self, message: str, *, path: str | None = None, holder: dict | None = None):
        super().__init__(message, path=path)
        self.holder = dict(holder or {})


def describe(step: int | None, path: str) -> str:
    """`"step 12 (/ckpt/12)"` or just the path when the step is unknown."""
    return f"step {step} ({path})" if step is not None else str(path)


__all__ = [
    "CheckpointCorruptError",
    "CheckpointError",
    "CheckpointLockError",
    "CheckpointMismatchError",
    "CheckpointSaveError",
    "ForeignFolderError",
    "UnverifiedCheckpointError",
    "UnverifiedCheckpointWarning",
    "UntrustedCheckpointError",
]
