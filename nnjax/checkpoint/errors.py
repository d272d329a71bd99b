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


def describe(step: int | None, path: str) -> str:
    """`"step 12 (/ckpt/12)"` or just the path when the step is unknown."""
    return f"step {step} ({path})" if step is not None else str(path)


__all__ = [
    "CheckpointCorruptError",
    "CheckpointError",
    "CheckpointMismatchError",
    "CheckpointSaveError",
    "UntrustedCheckpointError",
]
