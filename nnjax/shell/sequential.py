"""`Sequential`: Keras's linear stack of layers, a `Model` over a `SequentialModule`."""

from __future__ import annotations

from collections.abc import Sequence

from flax import nnx

from nnjax.layers.base import unique_name
from nnjax.layers.sequential import LinenLayer, SequentialModule, is_linen
from nnjax.shell.model import Model


class Sequential(Model):
    """A linear stack of layers, as Keras's `Sequential`.

    Example:
      >>> model = nj.Sequential([
      ...     nj.layers.Flatten(input_shape=(28, 28)),
      ...     nj.layers.Dense(128, activation="relu"),
      ...     nj.layers.Dense(10, activation="softmax"),
      ... ])
    """

    def __init__(self, layers: Sequence[nnx.Module] | None = None, name: str | None = None):
        super().__init__(SequentialModule(layers or [], name=name or unique_name("sequential")))

    def add(self, layer) -> None:
        """Appends a layer (Keras's `model.add`)."""
        if is_linen(layer):
            layer = LinenLayer(layer)
        self._module.add(layer)
        if not self.built and self._module.input_shape_hint is not None:
            self.build((None,) + tuple(self._module.input_shape_hint))

    def pop(self) -> None:
        if self.built:
            raise ValueError(f'Sequential "{self.name}": cannot remove a layer from a built model')
        self._module.layers.pop()


__all__ = ["Sequential"]
