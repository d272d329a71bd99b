"""What the ready models share: a `Composite` layer that builds its sublayers by shape propagation."""

from __future__ import annotations

from collections.abc import Sequence

import jax

from nnjax.layers.base import Layer


def output_shape(layer: Layer, input_shape: tuple) -> tuple:
    """Builds `layer` for `input_shape` (if needed) and returns its output shape (batch axis kept)."""
    layer.ensure_built(input_shape)
    shape = tuple(layer.compute_output_shape(tuple(input_shape)))
    if layer.built_output_shape is None:
        layer.built_output_shape = (None,) + shape[1:]
    return (input_shape[0],) + shape[1:]


def build_chain(layers: Sequence[Layer], input_shape: tuple) -> tuple:
    """Builds `layers` in order, each from the previous one's output shape; returns the last output shape.

    Shapes are propagated with `compute_output_shape` (no forward pass), so building a deep model
    costs only the initialisation of its weights.
    """
    shape = tuple(input_shape)
    for layer in layers:
        shape = output_shape(layer, shape)
    return shape


class Composite(Layer):
    """A layer made of layers: `build` wires the sublayers from shapes, `call` runs them.

    Sublayers are created (unbuilt) in `__init__`; `build` calls `build_chain`/`output_shape`, and
    each sublayer draws its initialisation key from this layer's key (`fold_in(key, n)` for the
    n-th sublayer built), so the same seed gives the same model.
    """

    _checked_axes = ()
    _jit_eager_calls = True


class Stack(Composite):
    """A `Composite` whose sublayers run in order: subclasses set `self.stack = nnx.List([...])` in `__init__`.

    Each sublayer gets the dropout key `fold_in(key, index)`.
    """

    def first_sublayer(self):
        return self.stack[0]

    def build(self, input_shape, key):
        build_chain(list(self.stack), input_shape)

    def call(self, x, *, training=False, key=None):
        for index, layer in enumerate(self.stack):
            x = layer(x, training=training, key=None if key is None else jax.random.fold_in(key, index))
        return x


__all__ = ["Composite", "Stack", "build_chain", "output_shape"]
