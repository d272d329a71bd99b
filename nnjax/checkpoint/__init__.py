"""Checkpoints with Orbax: atomic, verified (SHA-256 manifest), async, resumable; never pickle.

- `save(path, state)` / `restore(path, target)`: one checkpoint folder; restore
  onto any device layout given by `target`'s shardings. Overwrites swap a
  committed new folder in by rename (never a moment without a readable one);
  folders nnjax did not write are never replaced or deleted; plain Orbax
  checkpoints restore with `allow_unverified=True`.
- `CheckpointManager`: numbered checkpoints for a loop (every N steps, keep last
  N and best K, async saves, fallback to the previous good one), one process
  per directory (a lock naming its holder).
- `PreemptionGuard`: SIGTERM becomes a flag checked between steps.
- `nj.callbacks.BackupAndRestore` builds on these for `Model.fit`.
"""

from nnjax.checkpoint import foreign as _foreign  # noqa: F401  (registers the plain-Orbax reader)
from nnjax.checkpoint.core import abstract_target, read_metadata, restore, save
from nnjax.checkpoint.errors import (
    CheckpointCorruptError,
    CheckpointError,
    CheckpointLockError,
    CheckpointMismatchError,
    CheckpointSaveError,
    ForeignFolderError,
    UntrustedCheckpointError,
    UnverifiedCheckpointError,
    UnverifiedCheckpointWarning,
)
from nnjax.checkpoint.manager import CheckpointManager, Restored
from nnjax.checkpoint.manifest import MANIFEST_NAME, verify
from nnjax.checkpoint.preemption import PreemptionGuard
from nnjax.checkpoint.pytree import restore_pytree, save_pytree

__all__ = [
    "MANIFEST_NAME",
    "CheckpointCorruptError",
    "CheckpointError",
    "CheckpointLockError",
    "CheckpointManager",
    "CheckpointMismatchError",
    "CheckpointSaveError",
    "ForeignFolderError",
    "PreemptionGuard",
    "Restored",
    "UnverifiedCheckpointError",
    "UnverifiedCheckpointWarning",
    "UntrustedCheckpointError",
    "abstract_target",
    "read_metadata",
    "restore",
    "restore_pytree",
    "save",
    "save_pytree",
    "verify",
]
