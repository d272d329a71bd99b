"""Keras's whole-model saving methods of a model: `save`, `to_json`, `get_config` / `from_config`.

The work is done by `nnjax.saving` (architecture as JSON, arrays through nnjax's checkpoints, Keras 3
".keras" files); these methods are its entry points on `Model`.
"""

from __future__ import annotations

import os

# Set by nnjax.saving.model_io when it is imported (nnjax's __init__ imports it): the saving functions.
# A hook rather than an import, so that the shell and nnjax.saving (which builds models) form no cycle.
_io = None


def _saving():
    if _io is None:  # importing nnjax imports nnjax.saving, which sets it
        raise RuntimeError("nnjax.saving is not loaded: import nnjax (its __init__ loads the saving functions)")
    return _io


class SavingMixin:
    """`save`, `to_json`, `get_config` and `from_config` for `Model`."""

    def save(self, filepath: str | os.PathLike, overwrite: bool = True, *, include_optimizer: bool = True) -> str:
        """Saves the architecture, weights and compile state (see `nj.saving.save_model`). Returns the absolute path.

        Args:
          filepath: a folder, or a path ending in ".keras" for a Keras 3 zip file.
          overwrite: replace what is at `filepath` (only something nnjax wrote).
          include_optimizer: also save the compile arguments and optimizer state, so that `fit` resumes exactly.
        """
        return _saving().save_model(self, filepath, overwrite=overwrite, include_optimizer=include_optimizer)

    def to_json(self, **kwargs) -> str:
        """The architecture as a JSON string (`nj.models.model_from_json` rebuilds it, with new weights)."""
        return _saving().to_json(self, **kwargs)

    def get_config(self) -> dict:
        """The architecture as JSON data: a Sequential's layers, a functional model's graph.

        Raises:
          SerializationError: for a subclassed model, which must define its own `get_config`.
        """
        return _saving().model_config(self)

    @classmethod
    def from_config(cls, config: dict, custom_objects: dict | None = None):
        """A new model (new weights) from `get_config()`'s data; `cls(**config)` for a subclassed model."""
        if isinstance(config, dict) and config.get("module") == "nnjax" and "class_name" in config:
            return _saving().model_from_config(config, custom_objects)
        return cls(**config)


__all__ = ["SavingMixin"]
