"""Keras's whole-model saving methods of a model: `save`, `to_json`, `get_config` / `from_config`.

The work is done by `nnjax.saving` (architecture as JSON, arrays through nnjax's checkpoints, Keras 3
".keras" files); these methods are its entry points on `Model`.
"""

from __future__ import annotations

import os


class SavingMixin:
    """`save`, `to_json`, `get_config` and `from_config` for `Model`."""

    def save(self, filepath: str | os.PathLike, overwrite: bool = True, *, include_optimizer: bool = True) -> str:
        """Saves the architecture, weights and compile state (see `nj.saving.save_model`). Returns the absolute path.

        Args:
          filepath: a folder, or a path ending in ".keras" for a Keras 3 zip file.
          overwrite: replace what is at `filepath` (only something nnjax wrote).
          include_optimizer: also save the compile arguments and optimizer state, so that `fit` resumes exactly.
        """
        from nnjax.saving.model_io import save_model

        return save_model(self, filepath, overwrite=overwrite, include_optimizer=include_optimizer)

    def to_json(self, **kwargs) -> str:
        """The architecture as a JSON string (`nj.models.model_from_json` rebuilds it, with new weights)."""
        from nnjax.saving.model_io import to_json

        return to_json(self, **kwargs)

    def get_config(self) -> dict:
        """The architecture as JSON data: a Sequential's layers, a functional model's graph.

        Raises:
          SerializationError: for a subclassed model, which must define its own `get_config`.
        """
        from nnjax.saving.model_io import model_config

        return model_config(self)

    @classmethod
    def from_config(cls, config: dict, custom_objects: dict | None = None):
        """A new model (new weights) from `get_config()`'s data; `cls(**config)` for a subclassed model."""
        from nnjax.saving.model_io import model_from_config

        if isinstance(config, dict) and config.get("module") == "nnjax" and "class_name" in config:
            return model_from_config(config, custom_objects)
        return cls(**config)


__all__ = ["SavingMixin"]
