"""Keras-named layers, implemented as Flax NNX modules that infer their input sizes."""

from nnjax.layers.base import Layer
from nnjax.layers.core import Activation, Dense, Dropout, Flatten, Input, InputLayer, Reshape

__all__ = ["Activation", "Dense", "Dropout", "Flatten", "Input", "InputLayer", "Layer", "Reshape"]
