"""The Keras-style shell: `Model` and `Sequential` over the functional core (`nnjax.train`)."""

from nnjax.shell import functional as _functional  # noqa: F401  (registers nj.Model(inputs, outputs))
from nnjax.shell.model import Model
from nnjax.shell.sequential import Sequential

__all__ = ["Model", "Sequential"]
