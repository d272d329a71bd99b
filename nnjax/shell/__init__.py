"""The Keras-style shell: `Model`, `Sequential`."""

from nnjax.shell.model import Model, Sequential
from nnjax.shell.sequential import LinenLayer, SequentialModule

__all__ = ["LinenLayer", "Model", "Sequential", "SequentialModule"]
