"""nnjax layers against Keras 3 (JAX backend) as the oracle.

Each row builds the Keras layer and the nnjax layer with the same arguments, copies Keras's
weights into nnjax's, and compares outputs and the gradients of `sum(output * cotangent)` with
respect to the input and to every weight. float32 throughout; tolerances 1e-5 unless the row
says otherwise and why.
"""

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import nnjax as nj

keras = pytest.importorskip("keras")
L = nj.layers
R = np.random.default_rng(0)


def f32(*shape, scale=1.0):
    return (R.normal(size=shape) * scale).astype(np.float32)


@dataclasses.dataclass
class Row:
    id: str
    keras: Callable[[], Any]
    nnjax: Callable[[], Any]
    x: Any
    weights: dict = dataclasses.field(default_factory=dict)  # Keras weight name -> nnjax attribute
    kwargs: dict = dataclasses.field(default_factory=dict)  # call keyword arguments (both sides)
    atol: float = 1e-5
    grads: bool = True
    # Build both layers with "zeros" initialisers, then give Keras's weights random values (copied to nnjax as
    # always): a random initialiser (orthogonal above all) compiles per shape and costs more than the row.
    zeros: bool = False


SEQ = f32(2, 6, 3)
IMG = f32(2, 6, 7, 3)
VOL = f32(2, 4, 5, 3, 2)
Q, V, KEYS = f32(2, 4, 5), f32(2, 6, 5), f32(2, 6, 5)
Q_MASK = np.array([[True, True, False, True], [True, False, True, True]])
V_MASK = np.array([[True, True, True, False, False, True], [False, True, True, True, True, True]])
CONV_LSTM_WEIGHTS = {"kernel": "kernel", "recurrent_kernel": "recurrent_kernel", "bias": "bias"}
IDS = R.integers(0, 6, size=(4, 5)).astype(np.int32)

ROWS = [
    # activations
    Row("relu", lambda: keras.layers.ReLU(), lambda: L.ReLU(), SEQ),
    Row("relu_args", lambda: keras.layers.ReLU(max_value=0.8, negative_slope=0.1, threshold=0.2),
        lambda: L.ReLU(max_value=0.8, negative_slope=0.1, threshold=0.2), SEQ),
    Row("relu6", lambda: keras.layers.ReLU(max_value=6.0), lambda: L.ReLU(max_value=6.0), f32(2, 6, 3, scale=5)),
    Row("relu_slope", lambda: keras.layers.ReLU(negative_slope=0.2), lambda: L.ReLU(negative_slope=0.2), SEQ),
    Row("leaky_relu_default", lambda: keras.layers.LeakyReLU(), lambda: L.LeakyReLU(), SEQ),
    Row("leaky_relu", lambda: keras.layers.LeakyReLU(0.05), lambda: L.LeakyReLU(0.05), SEQ),
    Row("prelu", lambda: keras.layers.PReLU(alpha_initializer="random_uniform"), lambda: L.PReLU(), SEQ, {"alpha": "alpha"}),
    Row("prelu_shared", lambda: keras.layers.PReLU(alpha_initializer="random_uniform", shared_axes=[1, 2]),
        lambda: L.PReLU(shared_axes=[1, 2]), IMG, {"alpha": "alpha"}),
    Row("elu", lambda: keras.layers.ELU(), lambda: L.ELU(), SEQ),
    Row("elu_alpha", lambda: keras.layers.ELU(alpha=0.5), lambda: L.ELU(alpha=0.5), SEQ),
    Row("softmax", lambda: keras.layers.Softmax(), lambda: L.Softmax(), SEQ),
    Row("softmax_axis", lambda: keras.layers.Softmax(axis=1), lambda: L.Softmax(axis=1), SEQ),
    Row("softmax_axes", lambda: keras.layers.Softmax(axis=(1, 2)), lambda: L.Softmax(axis=(1, 2)), SEQ),
    Row("softmax_mask", lambda: keras.layers.Softmax(), lambda: L.Softmax(), SEQ,
        kwargs={"mask": R.integers(0, 2, size=(2, 6, 3)).astype(bool)}),
    Row("identity", lambda: keras.layers.Identity(), lambda: L.Identity(), SEQ),
    # reshaping
    Row("lambda", lambda: keras.layers.Lambda(lambda x, a: keras.ops.tanh(x) * a, arguments={"a": 2.0}),
        lambda: L.Lambda(lambda x, a: jnp.tanh(x) * a, arguments={"a": 2.0}), SEQ),
    Row("lambda_output_shape", lambda: keras.layers.Lambda(lambda x: keras.ops.sum(x, axis=1), output_shape=(3,)),
        lambda: L.Lambda(lambda x: jnp.sum(x, axis=1), output_shape=(3,)), SEQ),
    Row("repeat_vector", lambda: keras.layers.RepeatVector(4), lambda: L.RepeatVector(4), f32(2, 3)),
    Row("permute", lambda: keras.layers.Permute((2, 1)), lambda: L.Permute((2, 1)), SEQ),
    Row("permute_3", lambda: keras.layers.Permute((3, 1, 2)), lambda: L.Permute((3, 1, 2)), IMG),
    Row("up_sampling1d", lambda: keras.layers.UpSampling1D(3), lambda: L.UpSampling1D(3), SEQ),
    Row("up_sampling2d", lambda: keras.layers.UpSampling2D((2, 3)), lambda: L.UpSampling2D((2, 3)), IMG),
    Row("up_sampling2d_bilinear", lambda: keras.layers.UpSampling2D(2, interpolation="bilinear"),
        lambda: L.UpSampling2D(2, interpolation="bilinear"), IMG),
    Row("up_sampling2d_channels_first", lambda: keras.layers.UpSampling2D(2, data_format="channels_first"),
        lambda: L.UpSampling2D(2, data_format="channels_first"), IMG),
    Row("up_sampling3d", lambda: keras.layers.UpSampling3D((1, 2, 3)), lambda: L.UpSampling3D((1, 2, 3)), VOL),
    Row("zero_padding1d", lambda: keras.layers.ZeroPadding1D((1, 2)), lambda: L.ZeroPadding1D((1, 2)), SEQ),
    Row("zero_padding1d_default", lambda: keras.layers.ZeroPadding1D(), lambda: L.ZeroPadding1D(), SEQ),
    Row("zero_padding2d_default", lambda: keras.layers.ZeroPadding2D(), lambda: L.ZeroPadding2D(), IMG),
    Row("zero_padding2d", lambda: keras.layers.ZeroPadding2D(((1, 0), (2, 3))), lambda: L.ZeroPadding2D(((1, 0), (2, 3))), IMG),
    Row("zero_padding2d_channels_first", lambda: keras.layers.ZeroPadding2D((1, 2), data_format="channels_first"),
        lambda: L.ZeroPadding2D((1, 2), data_format="channels_first"), IMG),
    Row("zero_padding3d", lambda: keras.layers.ZeroPadding3D(), lambda: L.ZeroPadding3D(), VOL),
    Row("zero_padding3d_int", lambda: keras.layers.ZeroPadding3D(2), lambda: L.ZeroPadding3D(2), VOL),
    Row("cropping1d", lambda: keras.layers.Cropping1D(), lambda: L.Cropping1D(), SEQ),
    Row("cropping1d_pair", lambda: keras.layers.Cropping1D((2, 0)), lambda: L.Cropping1D((2, 0)), SEQ),
    Row("cropping2d", lambda: keras.layers.Cropping2D(((1, 2), (0, 3))), lambda: L.Cropping2D(((1, 2), (0, 3))), IMG),
    Row("cropping2d_sym", lambda: keras.layers.Cropping2D((1, 2)), lambda: L.Cropping2D((1, 2)), IMG),
    Row("cropping2d_channels_first", lambda: keras.layers.Cropping2D(1, data_format="channels_first"),
        lambda: L.Cropping2D(1, data_format="channels_first"), IMG),
    Row("cropping3d", lambda: keras.layers.Cropping3D(), lambda: L.Cropping3D(), VOL),
    Row("cropping3d_pairs", lambda: keras.layers.Cropping3D(((0, 1), (2, 1), (1, 0))),
        lambda: L.Cropping3D(((0, 1), (2, 1), (1, 0))), VOL),
    Row("time_distributed_dense", lambda: keras.layers.TimeDistributed(keras.layers.Dense(4)),
        lambda: L.TimeDistributed(L.Dense(4)), SEQ, {"kernel": "layer.kernel", "bias": "layer.bias"}, zeros=True),
    Row("time_distributed_conv2d", lambda: keras.layers.TimeDistributed(keras.layers.Conv2D(2, 3)),
        lambda: L.TimeDistributed(L.Conv2D(2, 3)), f32(2, 3, 5, 5, 2), {"kernel": "layer.kernel", "bias": "layer.bias"}, zeros=True),
    # preprocessing
    Row("rescaling", lambda: keras.layers.Rescaling(1 / 255.0), lambda: L.Rescaling(1 / 255.0), IMG),
    Row("rescaling_offset", lambda: keras.layers.Rescaling(1 / 127.5, offset=-1), lambda: L.Rescaling(1 / 127.5, offset=-1), IMG),
    Row("rescaling_per_channel", lambda: keras.layers.Rescaling(np.array([0.5, 2.0, 3.0]), offset=np.array([1.0, 0.0, -1.0])),
        lambda: L.Rescaling(np.array([0.5, 2.0, 3.0]), offset=np.array([1.0, 0.0, -1.0])), IMG),
    Row("center_crop", lambda: keras.layers.CenterCrop(3, 4), lambda: L.CenterCrop(3, 4), IMG),
    Row("center_crop_odd", lambda: keras.layers.CenterCrop(5, 2), lambda: L.CenterCrop(5, 2), IMG),
    # Smaller than the target: bilinear resampling, same jax.image.resize on both sides.
    Row("center_crop_upscale", lambda: keras.layers.CenterCrop(8, 5), lambda: L.CenterCrop(8, 5), IMG),
    Row("center_crop_channels_first", lambda: keras.layers.CenterCrop(2, 4, data_format="channels_first"),
        lambda: L.CenterCrop(2, 4, data_format="channels_first"), f32(2, 3, 6, 7)),
    Row("resizing_bilinear", lambda: keras.layers.Resizing(4, 9), lambda: L.Resizing(4, 9), IMG),
    Row("resizing_nearest", lambda: keras.layers.Resizing(12, 5, interpolation="nearest"),
        lambda: L.Resizing(12, 5, interpolation="nearest"), IMG),
    Row("resizing_bicubic", lambda: keras.layers.Resizing(9, 9, interpolation="bicubic"),
        lambda: L.Resizing(9, 9, interpolation="bicubic"), IMG),
    Row("resizing_antialias", lambda: keras.layers.Resizing(3, 3, antialias=True), lambda: L.Resizing(3, 3, antialias=True), IMG),
    Row("resizing_crop_to_aspect", lambda: keras.layers.Resizing(4, 2, crop_to_aspect_ratio=True),
        lambda: L.Resizing(4, 2, crop_to_aspect_ratio=True), IMG),
    Row("resizing_pad_to_aspect", lambda: keras.layers.Resizing(4, 8, pad_to_aspect_ratio=True, fill_value=0.5),
        lambda: L.Resizing(4, 8, pad_to_aspect_ratio=True, fill_value=0.5), IMG),
    Row("resizing_channels_first", lambda: keras.layers.Resizing(4, 3, data_format="channels_first"),
        lambda: L.Resizing(4, 3, data_format="channels_first"), f32(2, 3, 6, 7)),
    # normalization
    Row("group_normalization", lambda: keras.layers.GroupNormalization(2, beta_initializer="random_normal",
                                                                     gamma_initializer="random_normal"),
        lambda: L.GroupNormalization(2), f32(2, 5, 4, 6), {"gamma": "gamma", "beta": "beta"}),
    Row("group_normalization_instance", lambda: keras.layers.GroupNormalization(-1), lambda: L.GroupNormalization(-1),
        f32(2, 5, 6), {"gamma": "gamma", "beta": "beta"}),
    Row("group_normalization_axis1", lambda: keras.layers.GroupNormalization(3, axis=1, center=False),
        lambda: L.GroupNormalization(3, axis=1, center=False), f32(2, 6, 4, 3), {"gamma": "gamma"}),
    Row("rms_normalization", lambda: keras.layers.RMSNormalization(), lambda: L.RMSNormalization(), SEQ, {"scale": "scale"}),
    Row("rms_normalization_eps", lambda: keras.layers.RMSNormalization(epsilon=0.1), lambda: L.RMSNormalization(epsilon=0.1),
        f32(2, 6, 3, scale=0.3), {"scale": "scale"}),
    Row("unit_normalization", lambda: keras.layers.UnitNormalization(), lambda: L.UnitNormalization(), SEQ),
    Row("unit_normalization_axes", lambda: keras.layers.UnitNormalization(axis=[1, 2]), lambda: L.UnitNormalization(axis=[1, 2]),
        SEQ),
    # depthwise and separable convolutions
    Row("depthwise_conv1d", lambda: keras.layers.DepthwiseConv1D(3, depth_multiplier=2, bias_initializer="random_normal"),
        lambda: L.DepthwiseConv1D(3, depth_multiplier=2), f32(2, 8, 3), {"kernel": "kernel", "bias": "bias"}, zeros=True),
    Row("depthwise_conv1d_same_strided", lambda: keras.layers.DepthwiseConv1D(4, strides=2, padding="same"),
        lambda: L.DepthwiseConv1D(4, strides=2, padding="same"), f32(2, 9, 3), {"kernel": "kernel", "bias": "bias"}, zeros=True),
    Row("depthwise_conv2d", lambda: keras.layers.DepthwiseConv2D(3, bias_initializer="random_normal", activation="relu"),
        lambda: L.DepthwiseConv2D(3, activation="relu"), IMG, {"kernel": "kernel", "bias": "bias"}, zeros=True),
    Row("depthwise_conv2d_dilated", lambda: keras.layers.DepthwiseConv2D((2, 3), depth_multiplier=3, dilation_rate=2,
                                                                       padding="same", use_bias=False),
        lambda: L.DepthwiseConv2D((2, 3), depth_multiplier=3, dilation_rate=2, padding="same", use_bias=False), IMG,
        {"kernel": "kernel"}, zeros=True),
    Row("depthwise_conv2d_channels_first", lambda: keras.layers.DepthwiseConv2D(3, strides=2, data_format="channels_first"),
        lambda: L.DepthwiseConv2D(3, strides=2, data_format="channels_first"), f32(2, 3, 7, 8), {"kernel": "kernel", "bias": "bias"}, zeros=True),
    Row("separable_conv1d", lambda: keras.layers.SeparableConv1D(4, 3, depth_multiplier=2, bias_initializer="random_normal"),
        lambda: L.SeparableConv1D(4, 3, depth_multiplier=2), f32(2, 8, 3),
        {"depthwise_kernel": "depthwise_kernel", "pointwise_kernel": "pointwise_kernel", "bias": "bias"}, zeros=True),
    Row("separable_conv2d", lambda: keras.layers.SeparableConv2D(5, 3, strides=2, padding="same", activation="tanh"),
        lambda: L.SeparableConv2D(5, 3, strides=2, padding="same", activation="tanh"), IMG,
        {"depthwise_kernel": "depthwise_kernel", "pointwise_kernel": "pointwise_kernel", "bias": "bias"}, zeros=True),
    Row("separable_conv2d_dilated", lambda: keras.layers.SeparableConv2D(2, 2, dilation_rate=2, use_bias=False),
        lambda: L.SeparableConv2D(2, 2, dilation_rate=2, use_bias=False), IMG,
        {"depthwise_kernel": "depthwise_kernel", "pointwise_kernel": "pointwise_kernel"}, zeros=True),
    # stochastic layers in inference, and ActivityRegularization: the identity
    Row("spatial_dropout1d_inference", lambda: keras.layers.SpatialDropout1D(0.5), lambda: L.SpatialDropout1D(0.5), SEQ),
    Row("spatial_dropout2d_inference", lambda: keras.layers.SpatialDropout2D(0.5), lambda: L.SpatialDropout2D(0.5), IMG),
    Row("spatial_dropout3d_inference", lambda: keras.layers.SpatialDropout3D(0.5), lambda: L.SpatialDropout3D(0.5), VOL),
    Row("gaussian_noise_inference", lambda: keras.layers.GaussianNoise(0.5), lambda: L.GaussianNoise(0.5), SEQ),
    Row("gaussian_dropout_inference", lambda: keras.layers.GaussianDropout(0.5), lambda: L.GaussianDropout(0.5), SEQ),
    Row("alpha_dropout_inference", lambda: keras.layers.AlphaDropout(0.5), lambda: L.AlphaDropout(0.5), SEQ),
    Row("activity_regularization", lambda: keras.layers.ActivityRegularization(0.1, 0.2),
        lambda: L.ActivityRegularization(0.1, 0.2), SEQ),
    # attention and Dot
    Row("attention", lambda: keras.layers.Attention(), lambda: L.Attention(), [Q, V]),
    Row("attention_key_scale", lambda: keras.layers.Attention(use_scale=True), lambda: L.Attention(use_scale=True), [Q, V, KEYS],
        {"scale": "scale"}),
    Row("attention_concat", lambda: keras.layers.Attention(use_scale=True, score_mode="concat"),
        lambda: L.Attention(use_scale=True, score_mode="concat"), [Q, V], {"scale": "scale", "concat_score_weight": "concat_score_weight"}),
    Row("attention_masks", lambda: keras.layers.Attention(), lambda: L.Attention(), [Q, V], kwargs={"mask": [Q_MASK, V_MASK]}),
    Row("attention_causal", lambda: keras.layers.Attention(), lambda: L.Attention(), [Q, V], kwargs={"use_causal_mask": True}),
    Row("additive_attention", lambda: keras.layers.AdditiveAttention(), lambda: L.AdditiveAttention(), [Q, V, KEYS], {"scale": "scale"}),
    Row("additive_attention_masked_no_scale", lambda: keras.layers.AdditiveAttention(use_scale=False),
        lambda: L.AdditiveAttention(use_scale=False), [Q, V], kwargs={"mask": [None, V_MASK], "use_causal_mask": True}),
    Row("dot_2d", lambda: keras.layers.Dot(axes=1), lambda: L.Dot(axes=1), [f32(3, 5), f32(3, 5)]),
    Row("dot_3d", lambda: keras.layers.Dot(axes=(1, 2)), lambda: L.Dot(axes=(1, 2)), [f32(2, 3, 5), f32(2, 4, 3)]),
    Row("dot_negative_axes", lambda: keras.layers.Dot(axes=-1), lambda: L.Dot(axes=-1), [f32(2, 3, 5), f32(2, 4, 5)]),
    Row("dot_mixed_rank", lambda: keras.layers.Dot(axes=(1, 2)), lambda: L.Dot(axes=(1, 2)), [f32(2, 4), f32(2, 3, 4)]),
    Row("dot_4d", lambda: keras.layers.Dot(axes=(3, 1)), lambda: L.Dot(axes=(3, 1)), [f32(2, 2, 3, 4), f32(2, 4, 3, 2)]),
    Row("dot_normalize", lambda: keras.layers.Dot(axes=2, normalize=True), lambda: L.Dot(axes=2, normalize=True),
        [f32(2, 3, 5), f32(2, 4, 5)]),
    # categorical encodings (integer inputs: values only)
    Row("category_encoding_multi_hot", lambda: keras.layers.CategoryEncoding(6), lambda: L.CategoryEncoding(6), IDS, grads=False),
    Row("category_encoding_one_hot", lambda: keras.layers.CategoryEncoding(6, output_mode="one_hot"),
        lambda: L.CategoryEncoding(6, output_mode="one_hot"), IDS, grads=False),
    Row("category_encoding_one_hot_column", lambda: keras.layers.CategoryEncoding(6, output_mode="one_hot"),
        lambda: L.CategoryEncoding(6, output_mode="one_hot"), IDS[:, :1], grads=False),
    Row("category_encoding_count", lambda: keras.layers.CategoryEncoding(6, output_mode="count"),
        lambda: L.CategoryEncoding(6, output_mode="count"), IDS, grads=False),
    Row("category_encoding_count_weights", lambda: keras.layers.CategoryEncoding(6, output_mode="count"),
        lambda: L.CategoryEncoding(6, output_mode="count"), IDS, kwargs={"count_weights": f32(4, 5)}, grads=False),
    Row("discretization_int", lambda: keras.layers.Discretization(bin_boundaries=[-1.0, 0.0, 0.5]),
        lambda: L.Discretization(bin_boundaries=[-1.0, 0.0, 0.5]), f32(4, 5), grads=False),
    Row("discretization_one_hot", lambda: keras.layers.Discretization(bin_boundaries=[-1.0, 0.0, 0.5], output_mode="one_hot"),
        lambda: L.Discretization(bin_boundaries=[-1.0, 0.0, 0.5], output_mode="one_hot"), f32(4, 5), grads=False),
    Row("discretization_multi_hot", lambda: keras.layers.Discretization(bin_boundaries=[0.0, 1.0], output_mode="multi_hot"),
        lambda: L.Discretization(bin_boundaries=[0.0, 1.0], output_mode="multi_hot"), f32(4, 5), grads=False),
    Row("discretization_count", lambda: keras.layers.Discretization(bin_boundaries=[0.0, 1.0], output_mode="count"),
        lambda: L.Discretization(bin_boundaries=[0.0, 1.0], output_mode="count"), f32(4, 5), grads=False),
    Row("normalization_given", lambda: keras.layers.Normalization(mean=[1.0, 2.0, 3.0], variance=[1.0, 4.0, 0.25]),
        lambda: L.Normalization(mean=[1.0, 2.0, 3.0], variance=[1.0, 4.0, 0.25]), SEQ),
    Row("normalization_given_invert", lambda: keras.layers.Normalization(mean=0.5, variance=2.0, invert=True),
        lambda: L.Normalization(mean=0.5, variance=2.0, invert=True), SEQ),
    # convolutional LSTMs
    Row("conv_lstm2d_same_sequences_backwards", lambda: keras.layers.ConvLSTM2D(2, (2, 3), padding="same", return_sequences=True,
                                                                              go_backwards=True, bias_initializer="random_normal"),
        lambda: L.ConvLSTM2D(2, (2, 3), padding="same", return_sequences=True, go_backwards=True), f32(2, 2, 4, 5, 2),
        CONV_LSTM_WEIGHTS, zeros=True),
    Row("conv_lstm2d_strided_channels_first", lambda: keras.layers.ConvLSTM2D(2, 3, strides=2, data_format="channels_first"),
        lambda: L.ConvLSTM2D(2, 3, strides=2, data_format="channels_first"), f32(2, 2, 2, 7, 7), CONV_LSTM_WEIGHTS, zeros=True),
    Row("conv_lstm1d", lambda: keras.layers.ConvLSTM1D(3, 2, dilation_rate=2, return_sequences=True),
        lambda: L.ConvLSTM1D(3, 2, dilation_rate=2, return_sequences=True), f32(2, 2, 6, 2), CONV_LSTM_WEIGHTS, zeros=True),
]


def _attr(layer, path: str):
    for part in path.split("."):
        layer = getattr(layer, part)
    return layer


def _keras_weights(klayer) -> dict:
    """Keras weights by their short name ("kernel", "alpha", ...)."""
    return {v.name: v for v in klayer.weights}


def copy_keras_weights(row: Row, klayer, layer) -> None:
    kweights = _keras_weights(klayer)
    assert set(kweights) == set(row.weights), f"{row.id}: Keras has weights {sorted(kweights)}"
    for kname, attr in row.weights.items():
        variable = _attr(layer, attr)
        value = np.asarray(kweights[kname].value)
        assert variable[...].shape == value.shape, f"{row.id}: {attr} has shape {variable[...].shape}, Keras {value.shape}"
        variable[...] = jnp.asarray(value)


# One compiled program per side and row, XLA's cheap pipeline: the rows are tiny, op-by-op dispatch and LLVM's
# expensive passes cost far more than the arithmetic (the tolerances are unchanged).
FAST_COMPILE = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}


def run_keras(klayer, x, kwargs, cotangent):
    """Keras's output and the gradients of sum(output * cotangent) (input, then each trainable weight by name)."""
    trainable = [v.value for v in klayer.trainable_variables]
    frozen = [v.value for v in klayer.non_trainable_variables]
    names = [v.name for v in klayer.trainable_variables]

    def objective(weights, x):
        out, _ = klayer.stateless_call(weights, frozen, x, **kwargs)
        return jnp.sum(out * cotangent), out

    x = jax.tree.map(jnp.asarray, x)
    grads = jax.jit(jax.value_and_grad(objective, argnums=(0, 1), has_aux=True), compiler_options=FAST_COMPILE)
    (_, out), (dweights, dx) = grads(trainable, x)
    return np.asarray(out), dx, dict(zip(names, dweights, strict=True))


def run_nnjax(layer, x, kwargs, cotangent):
    graphdef, params, rest = nnx.split(layer, nnx.Param, ...)

    def objective(params, x):
        out = nnx.merge(graphdef, params, rest, copy=True)(x, **kwargs)
        return jnp.sum(out * cotangent), out

    x = jax.tree.map(jnp.asarray, x)
    grads = jax.jit(jax.value_and_grad(objective, argnums=(0, 1), has_aux=True), compiler_options=FAST_COMPILE)
    (_, out), (dparams, dx) = grads(params, x)
    return np.asarray(out), dx, dparams


def _grad_at(dparams, path: str):
    node = dparams
    for part in path.split("."):
        node = node[part]
    return np.asarray(node[...] if hasattr(node, "__getitem__") and not isinstance(node, dict) else node)


def zero_initializers(layer, zeros) -> None:
    """Sets every `*_initializer` of an unbuilt layer, of its cell and of the layer it wraps to `zeros`."""
    replaced = 0
    for obj in (layer, getattr(layer, "cell", None), getattr(layer, "layer", None)):
        for name in list(vars(obj)) if obj is not None else []:
            if name.endswith("_initializer") and getattr(obj, name) is not None:
                setattr(obj, name, zeros)
                replaced += 1
    assert replaced, f"{type(layer).__name__} has no *_initializer attribute to replace"


def _batchless(x):
    if isinstance(x, list):
        return [(None,) + tuple(a.shape[1:]) for a in x]
    return (None,) + tuple(x.shape[1:])


@pytest.mark.parametrize("row", ROWS, ids=lambda r: r.id)
def test_matches_keras(row):
    x = row.x
    klayer = row.keras()
    layer = row.nnjax()
    if row.zeros:
        zero_initializers(klayer, keras.initializers.Zeros())
        zero_initializers(layer, nj.initializers.get("zeros"))
        klayer(x, **row.kwargs)  # builds Keras's layer
        weight_rng = np.random.default_rng(1)
        for variable in klayer.weights:
            variable.assign(weight_rng.uniform(-0.5, 0.5, size=variable.shape).astype(np.float32))
    expected = np.asarray(klayer(x, **row.kwargs))  # builds Keras's layer (unless built above)
    out = np.asarray(layer(x, **row.kwargs))  # builds nnjax's layer
    copy_keras_weights(row, klayer, layer)
    assert tuple(layer.compute_output_shape(_batchless(x))) == (None,) + expected.shape[1:]
    if not row.grads:  # integer inputs or outputs: values only
        out = np.asarray(layer(x, **row.kwargs))
        assert out.shape == expected.shape and out.dtype == expected.dtype, (out.dtype, expected.dtype)
        np.testing.assert_allclose(out, expected, rtol=row.atol, atol=row.atol)
        return
    cotangent = R.normal(size=expected.shape).astype(np.float32)
    kout, kdx, kgrads = run_keras(klayer, x, row.kwargs, cotangent)
    out, dx, dparams = run_nnjax(layer, x, row.kwargs, cotangent)
    np.testing.assert_allclose(kout, expected, rtol=1e-6, atol=1e-6)  # Keras's stateless call agrees with its call
    assert out.shape == expected.shape
    np.testing.assert_allclose(out, expected, rtol=row.atol, atol=row.atol)
    for a, b in zip(jax.tree.leaves(dx), jax.tree.leaves(kdx), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=row.atol, atol=row.atol, err_msg=f"{row.id}: input gradient")
    for kname, attr in row.weights.items():
        if kname in kgrads:
            np.testing.assert_allclose(_grad_at(dparams, attr), np.asarray(kgrads[kname]), rtol=row.atol, atol=row.atol,
                                       err_msg=f"{row.id}: gradient of {attr}")


def test_activity_regularization_penalty_matches_keras_losses():
    x = f32(4, 6, 3)
    klayer = keras.layers.ActivityRegularization(l1=0.01, l2=0.03)
    klayer(x)
    layer = L.ActivityRegularization(l1=0.01, l2=0.03)
    y = layer(x)
    np.testing.assert_array_equal(np.asarray(y), x)
    np.testing.assert_allclose(float(layer.loss[...]), float(klayer.losses[0]), rtol=1e-6)
    # The penalty is a differentiable function of the input when taken from the state a forward pass returns.
    graphdef, params, rest = nnx.split(layer, nnx.Param, ...)

    def penalty(x):
        module = nnx.merge(graphdef, params, rest, copy=True)
        module(x)
        return L.activity_loss(nnx.state(module))

    grad = jax.grad(penalty)(jnp.asarray(x))
    np.testing.assert_allclose(np.asarray(grad), (0.01 * np.sign(x) + 0.03 * 2 * x) / 4, rtol=1e-5, atol=1e-7)
    model = nj.Sequential([L.Dense(3, key=0), L.ActivityRegularization(l2=0.5), L.ActivityRegularization(l1=0.5)])
    out = model(x)
    expected = 0.5 * np.sum(np.square(np.asarray(out))) / 4 + 0.5 * np.sum(np.abs(np.asarray(out))) / 4
    np.testing.assert_allclose(float(L.activity_loss(model)), expected, rtol=1e-5)


# ------------------------------------------------------------------ stochastic layers: statistics, not Keras's bits
KEY = jax.random.key(7)
BIG = R.normal(size=(64, 16, 16, 32)).astype(np.float32)


@pytest.mark.parametrize("make", [lambda: L.SpatialDropout1D(0.3), lambda: L.SpatialDropout2D(0.3), lambda: L.SpatialDropout3D(0.3),
                                  lambda: L.SpatialDropout2D(0.3, data_format="channels_first"), lambda: L.GaussianNoise(0.4),
                                  lambda: L.GaussianDropout(0.3), lambda: L.AlphaDropout(0.3)],
                         ids=["sd1", "sd2", "sd3", "sd2_cf", "gnoise", "gdrop", "alpha"])
def test_stochastic_layers_identity_in_inference_and_keyed_in_training(make):
    layer = make()
    shape = {"SpatialDropout1D": (8, 10, 6), "SpatialDropout3D": (4, 3, 3, 3, 6)}.get(type(layer).__name__, (4, 5, 5, 6))
    x = R.normal(size=shape).astype(np.float32)
    np.testing.assert_array_equal(np.asarray(layer(x)), x)
    np.testing.assert_array_equal(np.asarray(layer(x, training=False, key=KEY)), x)
    a = np.asarray(layer(x, training=True, key=KEY))
    b = np.asarray(layer(x, training=True, key=KEY))
    c = np.asarray(layer(x, training=True, key=jax.random.key(8)))
    np.testing.assert_array_equal(a, b)  # the same key gives the same noise
    assert not np.allclose(a, c)  # another key, other noise
    assert not np.allclose(a, x)
    with pytest.raises(ValueError, match="needs a PRNG key"):
        layer(x, training=True)


@pytest.mark.parametrize("rank,data_format", [(1, "channels_last"), (2, "channels_last"), (2, "channels_first"), (3, "channels_last")])
def test_spatial_dropout_drops_whole_channels(rank, data_format):
    cls = {1: L.SpatialDropout1D, 2: L.SpatialDropout2D, 3: L.SpatialDropout3D}[rank]
    rate = 0.4
    layer = cls(rate) if rank == 1 else cls(rate, data_format=data_format)
    shape = (200,) + (3,) * rank + (20,) if data_format == "channels_last" else (200, 20) + (3,) * rank
    x = np.abs(R.normal(size=shape)).astype(np.float32) + 0.1
    y = np.asarray(layer(x, training=True, key=KEY))
    spatial = tuple(range(1, 1 + rank)) if data_format == "channels_last" else tuple(range(2, 2 + rank))
    dropped = y == 0
    # Each (example, channel) is dropped everywhere or nowhere; kept entries are x / (1 - rate).
    assert np.all(dropped.all(axis=spatial) | (~dropped).all(axis=spatial))
    np.testing.assert_allclose(y[~dropped], x[~dropped] / (1 - rate), rtol=1e-6)
    fraction = dropped.all(axis=spatial).mean()  # 4000 Bernoulli draws: standard error 0.008
    assert abs(fraction - rate) < 0.04


def test_gaussian_noise_statistics():
    y = np.asarray(L.GaussianNoise(0.25)(BIG, training=True, key=KEY))
    noise = y - BIG  # 524288 draws: the mean's standard error is 3.5e-4
    assert abs(noise.mean()) < 2e-3 and abs(noise.std() - 0.25) < 2e-3


def test_gaussian_dropout_statistics():
    rate = 0.2
    x = np.ones_like(BIG)
    factor = np.asarray(L.GaussianDropout(rate)(x, training=True, key=KEY))
    assert abs(factor.mean() - 1.0) < 3e-3 and abs(factor.std() - np.sqrt(rate / (1 - rate))) < 3e-3


def test_alpha_dropout_keeps_selu_mean_and_variance():
    rate = 0.2
    y = np.asarray(L.AlphaDropout(rate)(BIG, training=True, key=KEY))
    # Zero-mean unit-variance inputs keep mean 0 and variance 1 (the point of alpha dropout).
    assert abs(y.mean()) < 5e-3 and abs(y.var() - 1.0) < 1e-2
    alpha_p = -1.6732632423543772 * 1.0507009873554805
    a = ((1 - rate) * (1 + rate * alpha_p**2)) ** -0.5
    b = -a * alpha_p * rate
    dropped = np.isclose(y, a * alpha_p + b, atol=1e-6)
    assert abs(dropped.mean() - rate) < 5e-3
    np.testing.assert_allclose(y[~dropped], a * BIG[~dropped] + b, rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------ adapt: statistics computed as Keras computes them
@pytest.mark.parametrize("axis", [-1, None, (1, 2)], ids=["last", "none", "two_axes"])
def test_normalization_adapt_matches_keras(axis):
    data = (R.normal(size=(50, 4, 3)) * np.array([1.0, 3.0, 0.5]) + np.array([2.0, -1.0, 0.0])).astype(np.float32)
    x = f32(6, 4, 3)
    klayer = keras.layers.Normalization(axis=axis)
    klayer.adapt(data)
    layer = L.Normalization(axis=axis)
    layer.adapt(data)
    np.testing.assert_allclose(np.asarray(layer(x)), np.asarray(klayer(x)), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.asarray(layer.mean[...]), np.asarray(klayer.adapt_mean.value), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(layer.variance[...]), np.asarray(klayer.adapt_variance.value), rtol=1e-5, atol=1e-6)
    # Batches give the statistics of the whole data (Keras's streaming update; Keras's own iterable path
    # needs TensorFlow here, so the whole-data statistics are the reference).
    streamed = L.Normalization(axis=axis)
    streamed.adapt([data[:20], data[20:35], data[35:]])
    np.testing.assert_allclose(np.asarray(streamed(x)), np.asarray(klayer(x)), rtol=1e-5, atol=1e-5)


def test_normalization_statistics_are_non_trainable_model_state():
    data = (R.normal(size=(64, 5)) * 3 + 1).astype(np.float32)
    layer = L.Normalization()
    layer.adapt(data)
    model = nj.Sequential([layer, L.Dense(2, key=0)])
    model.build((None, 5))
    graphdef, params, rest = nnx.split(model.module, nnx.Param, ...)
    assert all("mean" not in str(path) and "variance" not in str(path) for path, _ in nnx.to_flat_state(params))
    saved = {str(path) for path, _ in nnx.to_flat_state(rest)}
    assert any("mean" in p for p in saved) and any("variance" in p for p in saved)
    # A fresh, un-adapted model given the saved state computes what the adapted one computes (a restore).
    fresh = nj.Sequential([L.Normalization(), L.Dense(2, key=0)])
    fresh.build((None, 5))
    nnx.update(fresh.module, params, rest)
    np.testing.assert_allclose(fresh.predict(data, verbose=0), model.predict(data, verbose=0), rtol=1e-6, atol=1e-6)
    # Training leaves the statistics alone (they are not parameters).
    model.compile(optimizer="sgd", loss="mse")
    model.fit(data, np.zeros((64, 2), np.float32), epochs=1, batch_size=16, verbose=0)
    np.testing.assert_allclose(np.asarray(model.module.layers[0].mean[...]), data.mean(axis=0), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("num_bins,size", [(4, 1000), (5, 37), (3, 20000)])
def test_discretization_adapt_matches_keras(num_bins, size):
    data = R.normal(size=(size, 1)).astype(np.float32)
    # Keras's Discretization.adapt checks for tf.data first (TensorFlow is not installed here), then runs
    # reset_state / update_state per batch / finalize_state: the same steps, called directly.
    klayer = keras.layers.Discretization(num_bins=num_bins, epsilon=0.01)
    klayer.update_state(data)
    klayer.finalize_state()
    layer = L.Discretization(num_bins=num_bins, epsilon=0.01)
    layer.adapt(data)
    np.testing.assert_allclose(np.asarray(layer.boundaries[...]), np.asarray(klayer.bin_boundaries, np.float32), rtol=1e-6, atol=1e-6)
    x = f32(8, 3)
    np.testing.assert_array_equal(np.asarray(layer(x)), np.asarray(klayer(x)))
    batches = [data[: size // 3], data[size // 3:]]
    kbatched = keras.layers.Discretization(num_bins=num_bins)
    for batch in batches:
        kbatched.update_state(batch)
    kbatched.finalize_state()
    batched = L.Discretization(num_bins=num_bins)
    batched.adapt(batches)
    np.testing.assert_allclose(np.asarray(batched.boundaries[...]), np.asarray(kbatched.bin_boundaries, np.float32), rtol=1e-6, atol=1e-6)


def test_adapt_and_id_errors_are_reported():
    with pytest.raises(ValueError, match="adapt"):
        L.Discretization(num_bins=3)(f32(2, 2))
    with pytest.raises(ValueError, match="at least num_bins"):
        L.Discretization(num_bins=10).adapt(f32(4, 1))
    with pytest.raises(ValueError, match=r"ids must be in \[0, 4\)"):
        L.CategoryEncoding(4)(np.array([[1, 4]]))
    with pytest.raises(ValueError, match="both `mean` and `variance`"):
        L.Normalization(mean=1.0)


# ------------------------------------------------------------------ augmentation: Keras's output for the same transformation
def _flat(a):
    return np.asarray(a).reshape(-1)


AUGMENTATIONS = [
    ("flip", lambda: keras.layers.RandomFlip(), lambda: L.RandomFlip(), lambda t: {"flips": _flat(t["flips"])}),
    ("flip_horizontal_cf", lambda: keras.layers.RandomFlip("horizontal", data_format="channels_first"),
     lambda: L.RandomFlip("horizontal", data_format="channels_first"), lambda t: {"flips": _flat(t["flips"])}),
    ("rotation", lambda: keras.layers.RandomRotation(0.2), lambda: L.RandomRotation(0.2), lambda t: {"angle": t["angle"]}),
    ("rotation_constant_nearest", lambda: keras.layers.RandomRotation((-0.3, 0.1), fill_mode="constant", fill_value=0.5,
                                                                       interpolation="nearest"),
     lambda: L.RandomRotation((-0.3, 0.1), fill_mode="constant", fill_value=0.5, interpolation="nearest"),
     lambda t: {"angle": t["angle"]}),
    ("rotation_wrap", lambda: keras.layers.RandomRotation(0.25, fill_mode="wrap"), lambda: L.RandomRotation(0.25, fill_mode="wrap"),
     lambda t: {"angle": t["angle"]}),
    ("zoom", lambda: keras.layers.RandomZoom(0.3), lambda: L.RandomZoom(0.3),
     lambda t: {"height_zoom": _flat(t["height_zoom"]), "width_zoom": _flat(t["width_zoom"])}),
    ("zoom_both_nearest_fill", lambda: keras.layers.RandomZoom((-0.4, -0.1), (0.1, 0.5), fill_mode="nearest"),
     lambda: L.RandomZoom((-0.4, -0.1), (0.1, 0.5), fill_mode="nearest"),
     lambda t: {"height_zoom": _flat(t["height_zoom"]), "width_zoom": _flat(t["width_zoom"])}),
    ("translation", lambda: keras.layers.RandomTranslation(0.2, 0.3), lambda: L.RandomTranslation(0.2, 0.3),
     lambda t: {"translations": np.asarray(t["translations"])}),
    ("translation_constant_cf", lambda: keras.layers.RandomTranslation(0.3, 0.1, fill_mode="constant", data_format="channels_first"),
     lambda: L.RandomTranslation(0.3, 0.1, fill_mode="constant", data_format="channels_first"),
     lambda t: {"translations": np.asarray(t["translations"])}),
    ("contrast", lambda: keras.layers.RandomContrast(0.5, value_range=(0, 1)), lambda: L.RandomContrast(0.5, value_range=(0, 1)),
     lambda t: {"contrast_factor": _flat(t["contrast_factor"])}),
    ("contrast_pair", lambda: keras.layers.RandomContrast((0.4, 0.6)), lambda: L.RandomContrast((0.4, 0.6)),
     lambda t: {"contrast_factor": _flat(t["contrast_factor"])}),
    ("brightness", lambda: keras.layers.RandomBrightness(0.3, value_range=(0, 1)), lambda: L.RandomBrightness(0.3, value_range=(0, 1)),
     lambda t: {"rgb_delta": _flat(t["rgb_delta"])}),
    ("crop", lambda: keras.layers.RandomCrop(5, 4), lambda: L.RandomCrop(5, 4),
     lambda t: {"top": np.full((3,), int(t[0])), "left": np.full((3,), int(t[1]))}),
]


@pytest.mark.parametrize("make_keras,make,convert", [a[1:] for a in AUGMENTATIONS], ids=[a[0] for a in AUGMENTATIONS])
def test_augmentation_matches_keras_for_the_same_transformation(make_keras, make, convert):
    x = R.uniform(size=(3, 9, 8, 2)).astype(np.float32)
    klayer, layer = make_keras(), make()
    if getattr(layer, "data_format", "channels_last") == "channels_first":
        x = np.transpose(x, (0, 3, 1, 2))
    for trial in range(2):
        transformation = klayer.get_random_transformation(x, training=True)
        expected = np.asarray(klayer.transform_images(x, transformation, training=True))
        out = np.asarray(jax.jit(layer.apply)(jnp.asarray(x), convert(transformation)))
        # Bilinear resampling: float32 interpolation weights from the same arithmetic; 1e-5 on values in [0, 1].
        np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5, err_msg=f"trial {trial}")


def test_random_crop_inference_is_keras_smart_resize():
    # Keras documents RandomCrop's inference output as the largest centred window of the target aspect
    # ratio, resized: `keras.preprocessing.image.smart_resize`. (Keras 3.15's own inference path returns
    # the input unchanged, whose shape then disagrees with its compute_output_shape; nnjax keeps the
    # documented, shape-consistent behaviour.)
    for shape in [(2, 10, 12, 3), (2, 3, 12, 3), (2, 5, 4, 3)]:
        x = R.uniform(size=shape).astype(np.float32)
        expected = np.asarray(keras.preprocessing.image.smart_resize(x, (5, 4)))
        np.testing.assert_allclose(np.asarray(L.RandomCrop(5, 4)(x)), expected, rtol=1e-5, atol=1e-5)


AUGMENTATION_LAYERS = {
    "flip": lambda: L.RandomFlip(), "rotation": lambda: L.RandomRotation(0.2), "zoom": lambda: L.RandomZoom(0.3),
    "translation": lambda: L.RandomTranslation(0.2, 0.2), "contrast": lambda: L.RandomContrast((0.5, 0.5), value_range=(0, 1)),
    "brightness": lambda: L.RandomBrightness(0.4, value_range=(0, 1)),
}


@pytest.mark.parametrize("name", list(AUGMENTATION_LAYERS))
def test_augmentation_is_identity_in_inference_and_keyed_in_training(name):
    layer = AUGMENTATION_LAYERS[name]()
    x = R.uniform(size=(16, 8, 8, 3)).astype(np.float32)
    np.testing.assert_array_equal(np.asarray(layer(x)), x)
    np.testing.assert_array_equal(np.asarray(layer(x, training=False, key=KEY)), x)
    a = np.asarray(layer(x, training=True, key=KEY))
    np.testing.assert_array_equal(a, np.asarray(layer(x, training=True, key=KEY)))
    assert not np.allclose(a, x)
    assert not np.allclose(a, np.asarray(layer(x, training=True, key=jax.random.key(9))))
    with pytest.raises(ValueError, match="needs a PRNG key"):
        layer(x, training=True)
    # Integer images become float32, as in Keras.
    assert layer((x * 255).astype(np.uint8)).dtype == jnp.float32


def test_flip_twice_with_the_same_key_is_the_identity():
    x = R.uniform(size=(32, 5, 6, 3)).astype(np.float32)
    for mode in ("horizontal", "vertical", "horizontal_and_vertical"):
        layer = L.RandomFlip(mode)
        once = layer(x, training=True, key=KEY)
        np.testing.assert_array_equal(np.asarray(layer(once, training=True, key=KEY)), x)
        flipped = np.asarray(layer.sample(KEY, x.shape)["flips"])
        assert 0 < flipped.sum() < len(flipped)  # some images flipped, some not
        axes = {"horizontal": (2,), "vertical": (1,), "horizontal_and_vertical": (1, 2)}[mode]
        np.testing.assert_array_equal(np.asarray(once)[flipped], np.flip(x[flipped], axis=axes))
        np.testing.assert_array_equal(np.asarray(once)[~flipped], x[~flipped])


def test_augmentation_value_ranges_and_geometry():
    x = R.uniform(size=(64, 8, 8, 3)).astype(np.float32)
    bright = L.RandomBrightness(0.5, value_range=(0, 1))
    y = np.asarray(bright(x, training=True, key=KEY))
    assert y.min() >= 0.0 and y.max() <= 1.0
    delta = np.asarray(bright.sample(KEY, x.shape)["rgb_delta"])
    assert np.all(np.abs(delta) <= 0.5)
    contrast = L.RandomContrast(0.5, value_range=(0, 1))
    factors = np.asarray(contrast.sample(KEY, x.shape)["contrast_factor"])
    assert np.all((factors >= 1.0) & (factors <= 1.5))  # Keras 3: a single factor f gives [1, 1 + f]
    y = np.asarray(contrast(x, training=True, key=KEY))
    assert y.min() >= 0.0 and y.max() <= 1.0
    angles = np.asarray(L.RandomRotation(0.1).sample(KEY, x.shape)["angle"])
    assert np.all(np.abs(angles) <= 36.0) and angles.std() > 5
    # No rotation, zoom or translation is the identity (the affine resampling is exact at grid points).
    for layer in (L.RandomRotation(0.0), L.RandomZoom(0.0), L.RandomTranslation(0.0, 0.0)):
        np.testing.assert_allclose(np.asarray(layer(x, training=True, key=KEY)), x, atol=1e-6)
    # A random crop is a window of its image.
    crop = L.RandomCrop(5, 4)
    params = crop.sample(KEY, x.shape)
    y = np.asarray(crop(x, training=True, key=KEY))
    assert y.shape == (64, 5, 4, 3)
    for i in range(3):
        top, left = int(params["top"][i]), int(params["left"][i])
        np.testing.assert_array_equal(y[i], x[i, top:top + 5, left:left + 4])
    assert len({(int(t), int(s)) for t, s in zip(params["top"], params["left"], strict=True)}) > 1  # per-image windows


def test_lambda_passes_training_and_rejects_masks():
    layer = L.Lambda(lambda x, training=False: x * (2.0 if training else 1.0))
    x = f32(2, 3)
    np.testing.assert_array_equal(np.asarray(layer(x)), x)
    np.testing.assert_array_equal(np.asarray(layer(x, training=True)), 2 * x)
    with pytest.raises(ValueError, match="mask"):
        L.Lambda(lambda x: x, mask=lambda x, m: m)


def test_new_layers_train_inside_fit():
    # Augmentation, stochastic and adapted layers in one model: fit passes each its key, predict is deterministic.
    x = R.uniform(0, 255, size=(32, 8, 8, 3)).astype(np.float32)
    y = R.integers(0, 3, size=(32,)).astype(np.int32)
    norm = L.Normalization(axis=None)
    norm.adapt(x)
    model = nj.Sequential([
        norm, L.RandomFlip("horizontal"), L.RandomRotation(0.1), L.RandomContrast(0.2, value_range=(-3, 3)),
        L.SeparableConv2D(4, 3, padding="same"), L.GroupNormalization(2), L.PReLU(), L.SpatialDropout2D(0.2),
        L.GaussianNoise(0.1), L.ActivityRegularization(l2=1e-3), L.Flatten(), L.Dense(3),
    ])
    model.compile(optimizer="adam", loss=nj.losses.SparseCategoricalCrossentropy(from_logits=True))
    history = model.fit(x, y, epochs=2, batch_size=16, verbose=0)
    assert all(np.isfinite(history.history["loss"]))
    first, second = model.predict(x, verbose=0), model.predict(x, verbose=0)
    np.testing.assert_array_equal(first, second)  # inference: augmentation and noise are off
