"""Checkpoints with Orbax."""

from nnjax.checkpoint.pytree import restore_pytree, save_pytree

__all__ = ["restore_pytree", "save_pytree"]
