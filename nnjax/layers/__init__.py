"""Keras-named layers, implemented as Flax NNX modules that infer their input sizes.

Every layer works standalone (`layer(x)`, building itself from `x` on the first call) and inside
`nj.Sequential`. Layers with training behaviour take `training=` and stochastic layers take their
randomness from an explicit `key=` (the training step passes `fold_in(state.rng, step)`, and
`Sequential` gives layer i `fold_in(key, i)`).
"""

from nnjax.layers.activation import ELU, Identity, LeakyReLU, PReLU, ReLU, Softmax
from nnjax.layers.attention import MultiHeadAttention
from nnjax.layers.attention_extra import AdditiveAttention, Attention, Dot
from nnjax.layers.augmentation import (
    RandomBrightness,
    RandomContrast,
    RandomCrop,
    RandomFlip,
    RandomRotation,
    RandomTranslation,
    RandomZoom,
)
from nnjax.layers.base import Layer
from nnjax.layers.conv import Conv1D, Conv1DTranspose, Conv2D, Conv2DTranspose, Conv3D, Conv3DTranspose
from nnjax.layers.conv_extra import DepthwiseConv1D, DepthwiseConv2D, SeparableConv1D, SeparableConv2D
from nnjax.layers.conv_recurrent import ConvLSTM1D, ConvLSTM2D, ConvLSTM3D
from nnjax.layers.core import Activation, Dense, Dropout, Flatten, InputLayer, Reshape
from nnjax.layers.embedding import Embedding
from nnjax.layers.functional import Input
from nnjax.layers.hashing import Hashing
from nnjax.layers.lookup import IntegerLookup, StringLookup, TextVectorization
from nnjax.layers.masking import Masking
from nnjax.layers.merge import (
    Add,
    Average,
    Concatenate,
    Maximum,
    Minimum,
    Multiply,
    Subtract,
    add,
    average,
    concatenate,
    dot,
    maximum,
    minimum,
    multiply,
    subtract,
)
from nnjax.layers.noise import (
    ActivityLoss,
    ActivityRegularization,
    AlphaDropout,
    GaussianDropout,
    GaussianNoise,
    SpatialDropout1D,
    SpatialDropout2D,
    SpatialDropout3D,
    activity_loss,
)
from nnjax.layers.normalization import BatchNormalization, LayerNormalization
from nnjax.layers.normalization_extra import GroupNormalization, RMSNormalization, UnitNormalization
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
from nnjax.layers.preprocessing_numeric import CategoryEncoding, Discretization, Normalization
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
from nnjax.layers.sequential import LinenLayer, SequentialModule, is_linen
from nnjax.layers.wrappers import Lambda, TimeDistributed

# Keras's other names for the same classes (`layers.MaxPool2D is layers.MaxPooling2D`, as in Keras)
AvgPool1D = AveragePooling1D
AvgPool2D = AveragePooling2D
AvgPool3D = AveragePooling3D
Convolution1D = Conv1D
Convolution1DTranspose = Conv1DTranspose
Convolution2D = Conv2D
Convolution2DTranspose = Conv2DTranspose
Convolution3D = Conv3D
Convolution3DTranspose = Conv3DTranspose
GlobalAvgPool1D = GlobalAveragePooling1D
GlobalAvgPool2D = GlobalAveragePooling2D
GlobalAvgPool3D = GlobalAveragePooling3D
GlobalMaxPool1D = GlobalMaxPooling1D
GlobalMaxPool2D = GlobalMaxPooling2D
GlobalMaxPool3D = GlobalMaxPooling3D
MaxPool1D = MaxPooling1D
MaxPool2D = MaxPooling2D
MaxPool3D = MaxPooling3D
SeparableConvolution1D = SeparableConv1D
SeparableConvolution2D = SeparableConv2D

__all__ = [
    "AvgPool1D",
    "AvgPool2D",
    "AvgPool3D",
    "Convolution1D",
    "Convolution1DTranspose",
    "Convolution2D",
    "Convolution2DTranspose",
    "Convolution3D",
    "Convolution3DTranspose",
    "GlobalAvgPool1D",
    "GlobalAvgPool2D",
    "GlobalAvgPool3D",
    "GlobalMaxPool1D",
    "GlobalMaxPool2D",
    "GlobalMaxPool3D",
    "MaxPool1D",
    "MaxPool2D",
    "MaxPool3D",
    "SeparableConvolution1D",
    "SeparableConvolution2D",
    "Activation",
    "ActivityLoss",
    "ActivityRegularization",
    "Add",
    "AdditiveAttention",
    "AlphaDropout",
    "Attention",
    "Average",
    "AveragePooling1D",
    "AveragePooling2D",
    "AveragePooling3D",
    "BatchNormalization",
    "Bidirectional",
    "CategoryEncoding",
    "CenterCrop",
    "Concatenate",
    "Conv1D",
    "Conv1DTranspose",
    "Conv2D",
    "Conv2DTranspose",
    "Conv3D",
    "Conv3DTranspose",
    "ConvLSTM1D",
    "ConvLSTM2D",
    "ConvLSTM3D",
    "Cropping1D",
    "Cropping2D",
    "Cropping3D",
    "Dense",
    "DepthwiseConv1D",
    "DepthwiseConv2D",
    "Discretization",
    "Dot",
    "Dropout",
    "ELU",
    "Embedding",
    "Masking",
    "IntegerLookup",
    "StringLookup",
    "TextVectorization",
    "Flatten",
    "GRU",
    "GRUCell",
    "GaussianDropout",
    "GaussianNoise",
    "GlobalAveragePooling1D",
    "GlobalAveragePooling2D",
    "GlobalAveragePooling3D",
    "GlobalMaxPooling1D",
    "GlobalMaxPooling2D",
    "GlobalMaxPooling3D",
    "GroupNormalization",
    "Hashing",
    "Identity",
    "Input",
    "InputLayer",
    "LSTM",
    "LSTMCell",
    "Lambda",
    "Layer",
    "LayerNormalization",
    "LeakyReLU",
    "LinenLayer",
    "MaxPooling1D",
    "MaxPooling2D",
    "MaxPooling3D",
    "Maximum",
    "Minimum",
    "MultiHeadAttention",
    "Multiply",
    "Normalization",
    "PReLU",
    "Permute",
    "RMSNormalization",
    "RNN",
    "RandomBrightness",
    "RandomContrast",
    "RandomCrop",
    "RandomFlip",
    "RandomRotation",
    "RandomTranslation",
    "RandomZoom",
    "ReLU",
    "RepeatVector",
    "Rescaling",
    "Reshape",
    "Resizing",
    "SeparableConv1D",
    "SeparableConv2D",
    "SequentialModule",
    "SimpleRNN",
    "SimpleRNNCell",
    "Softmax",
    "SpatialDropout1D",
    "SpatialDropout2D",
    "SpatialDropout3D",
    "Subtract",
    "TimeDistributed",
    "UnitNormalization",
    "UpSampling1D",
    "UpSampling2D",
    "UpSampling3D",
    "ZeroPadding1D",
    "ZeroPadding2D",
    "ZeroPadding3D",
    "activity_loss",
    "add",
    "average",
    "concatenate",
    "dot",
    "is_linen",
    "maximum",
    "minimum",
    "multiply",
    "subtract",
]
