"""Keras-named layers, implemented as Flax NNX modules that infer their input sizes.

Every layer works standalone (`layer(x)`, building itself from `x` on the first call) and inside
`nj.Sequential`. Layers with training behaviour take `training=` and stochastic layers take their
randomness from an explicit `key=` (the training step passes `fold_in(state.rng, step)`, and
`Sequential` gives layer i `fold_in(key, i)`).
"""

from nnjax.layers.activation import ELU, Identity, LeakyReLU, PReLU, ReLU, Softmax
from nnjax.layers.attention import MultiHeadAttention
from nnjax.layers.base import Layer
from nnjax.layers.conv import Conv1D, Conv1DTranspose, Conv2D, Conv2DTranspose, Conv3D
from nnjax.layers.core import Activation, Dense, Dropout, Flatten, Input, InputLayer, Reshape
from nnjax.layers.embedding import Embedding
from nnjax.layers.merge import Add, Average, Concatenate, Maximum, Minimum, Multiply, Subtract
from nnjax.layers.normalization import BatchNormalization, LayerNormalization
from nnjax.layers.pooling import (
    AveragePooling1D,
    AveragePooling2D,
    AveragePooling3D,
    GlobalAveragePooling1D,
    GlobalAveragePooling2D,
    GlobalAveragePooling3D,
    GlobalMaxPooling1D,
    GlobalMaxPooling2D,
    GlobalMaxPooling3D,
    MaxPooling1D,
    MaxPooling2D,
    MaxPooling3D,
)
from nnjax.layers.preprocessing import CenterCrop, Rescaling, Resizing
from nnjax.layers.recurrent import GRU, LSTM, RNN, Bidirectional, GRUCell, LSTMCell, SimpleRNN, SimpleRNNCell
from nnjax.layers.reshaping import (
    Cropping1D,
    Cropping2D,
    Cropping3D,
    Permute,
    RepeatVector,
    UpSampling1D,
    UpSampling2D,
    UpSampling3D,
    ZeroPadding1D,
    ZeroPadding2D,
    ZeroPadding3D,
)
from nnjax.layers.wrappers import TimeDistributed

__all__ = [
    "Activation",
    "Add",
    "Average",
    "AveragePooling1D",
    "AveragePooling2D",
    "AveragePooling3D",
    "BatchNormalization",
    "Bidirectional",
    "CenterCrop",
    "Concatenate",
    "Conv1D",
    "Conv1DTranspose",
    "Conv2D",
    "Conv2DTranspose",
    "Conv3D",
    "Cropping1D",
    "Cropping2D",
    "Cropping3D",
    "Dense",
    "Dropout",
    "ELU",
    "Embedding",
    "Flatten",
    "GRU",
    "GRUCell",
    "GlobalAveragePooling1D",
    "GlobalAveragePooling2D",
    "GlobalAveragePooling3D",
    "GlobalMaxPooling1D",
    "GlobalMaxPooling2D",
    "GlobalMaxPooling3D",
    "Identity",
    "Input",
    "InputLayer",
    "LSTM",
    "LSTMCell",
    "Layer",
    "LayerNormalization",
    "LeakyReLU",
    "MaxPooling1D",
    "MaxPooling2D",
    "MaxPooling3D",
    "Maximum",
    "Minimum",
    "MultiHeadAttention",
    "Multiply",
    "PReLU",
    "Permute",
    "RNN",
    "ReLU",
    "RepeatVector",
    "Rescaling",
    "Reshape",
    "Resizing",
    "SimpleRNN",
    "SimpleRNNCell",
    "Softmax",
    "Subtract",
    "TimeDistributed",
    "UpSampling1D",
    "UpSampling2D",
    "UpSampling3D",
    "ZeroPadding1D",
    "ZeroPadding2D",
    "ZeroPadding3D",
]
