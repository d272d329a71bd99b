"""Checkpoints with Orbax: atomic, verified (SHA-256 manifest), async, resumable; never pickle.

- `save(path, state)` / `restore(path, target)`: one checkpoint folder; restore
  onto any device layout given by `target`'s shardings.
- `CheckpointManager`: numbered checkpoints for a loop (every N steps, keep last
  N and best K, async saves, fallback to the previous good one).
- `PreemptionGuard`: SIGTERM becomes a flag checked between steps.
- `nj.callbacks.BackupAndRestore` builds on these for `Model.fit`.
"""

from nnjax.checkpoint.core import abstract_target, read_metadata, restore, save
from nnjax.checkpoint.errors import (
    CheckpointCorruptError,
    CheckpointError,
    CheckpointMismatchError,
    CheckpointSaveError,
    UntrustedCheckpointError,
)
from nnjax.checkpoint.manager import CheckpointManager, Restored
from nnjax.checkpoint.manifest import MANIFEST_NAME, verify
from nnjax.checkpoint.preemption import PreemptionGuard
from nnjax.checkpoint.pytree import restore_pytree, save_pytree

__all__ = [
    "MANIFEST_NAME",
    "CheckpointCorruptError",
    "CheckpointError",
    "CheckpointManager",
    "CheckpointMismatchError",
    "CheckpointSaveError",
    "PreemptionGuard",
    "Restored",
    "UntrustedCheckpointError",
    "abstract_target",
    "read_metadata",
    "restore",
    "restore_pytree",
    "save",
    "save_pytree",
    "verify",
]
