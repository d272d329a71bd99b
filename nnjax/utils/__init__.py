"""Utilities: seeding and keys."""

from nnjax.utils.random import as_key, global_seed, next_seed, set_random_seed

__all__ = ["as_key", "global_seed", "next_seed", "set_random_seed"]
