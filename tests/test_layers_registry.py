"""One list of every layer with a sample input; each property is checked over all of them.

Properties: output shapes as Keras documents them (and `compute_output_shape` agrees), `jit` equals
eager, `jax.vmap` works, `jax.eval_shape` works, bfloat16 in gives bfloat16 out where the layer keeps
the dtype, no retracing on a second call with the same shapes, training mode under `jit` equals
eager with the same key, and the layer works inside `nj.Sequential` as it does standalone.
"""

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen, nnx

import nnjax as nj

L = nj.layers
R = np.random.default_rng(0)


def f32(*shape):
    return R.normal(size=shape).astype(np.float32)


def ids(*shape, high=10):
    return R.integers(0, high, size=shape).astype(np.int32)


@dataclasses.dataclass
class Case:
    id: str
    make: Callable[[], Any]
    inputs: tuple  # positional arguments of the call
    expected: Any  # output shape(s) with the batch axis, from the Keras documentation
    keeps_dtype: bool = True
    training: bool = False  # has training behaviour (dropout, batch statistics) to check under jit
    kwargs: dict = dataclasses.field(default_factory=dict)
    sequential: bool = True  # single array in, single array out: also run inside nj.Sequential


class _LinenMLP(linen.Module):
    """A Linen module with parameters and a dropout stream, for the Linen bridge's case."""

    @linen.compact
    def __call__(self, x, train: bool = False):
        x = linen.relu(linen.Dense(4)(x))
        x = linen.Dropout(0.5, deterministic=not train)(x)
        return linen.Dense(2)(x)


SEQ = f32(2, 5, 3)
IMG = f32(2, 9, 9, 3)
VOL = f32(2, 4, 4, 4, 3)
LONG = f32(2, 10, 3)

CASES = [
    Case("dense", lambda: L.Dense(5, activation="relu"), (f32(4, 3),), (4, 5)),
    Case("dense_3d", lambda: L.Dense(5), (f32(4, 2, 3),), (4, 2, 5)),
    Case("flatten", lambda: L.Flatten(), (f32(4, 2, 3),), (4, 6)),
    Case("reshape", lambda: L.Reshape((3, -1)), (f32(4, 6),), (4, 3, 2)),
    Case("activation", lambda: L.Activation("gelu"), (f32(4, 3),), (4, 3)),
    Case("input_layer", lambda: L.InputLayer((3,)), (f32(4, 3),), (4, 3)),
    Case("dropout", lambda: L.Dropout(0.5), (f32(4, 6),), (4, 6), training=True),
    Case("conv1d", lambda: L.Conv1D(4, 3), (LONG,), (2, 8, 4)),
    Case("conv1d_causal_dilated", lambda: L.Conv1D(4, 3, padding="causal", dilation_rate=2), (LONG,), (2, 10, 4)),
    Case("conv2d_same_strided", lambda: L.Conv2D(4, 3, strides=2, padding="same"), (IMG,), (2, 5, 5, 4)),
    Case("conv2d_valid", lambda: L.Conv2D(4, (2, 3), activation="relu"), (IMG,), (2, 8, 7, 4)),
    Case("conv2d_dilated", lambda: L.Conv2D(2, 3, dilation_rate=2), (IMG,), (2, 5, 5, 2)),
    Case("conv2d_groups", lambda: L.Conv2D(6, 3, groups=3), (IMG,), (2, 7, 7, 6)),
    Case("conv2d_channels_first", lambda: L.Conv2D(4, 3, data_format="channels_first"), (f32(2, 3, 8, 8),), (2, 4, 6, 6)),
    Case("conv3d", lambda: L.Conv3D(2, 2), (VOL,), (2, 3, 3, 3, 2)),
    Case("conv2d_transpose_same", lambda: L.Conv2DTranspose(4, 3, strides=2, padding="same"), (f32(2, 5, 5, 3),), (2, 10, 10, 4)),
    Case("conv2d_transpose_valid", lambda: L.Conv2DTranspose(4, 3, strides=2), (f32(2, 5, 5, 3),), (2, 11, 11, 4)),
    Case("conv1d_transpose", lambda: L.Conv1DTranspose(2, 3, strides=2), (f32(2, 5, 3),), (2, 11, 2)),
    Case("conv3d_transpose", lambda: L.Conv3DTranspose(2, 2, strides=2, padding="same"), (VOL,), (2, 8, 8, 8, 2)),
    Case("max_pooling1d", lambda: L.MaxPooling1D(), (LONG,), (2, 5, 3)),
    Case("average_pooling1d_same", lambda: L.AveragePooling1D(3, 2, padding="same"), (LONG,), (2, 5, 3)),
    Case("max_pooling2d", lambda: L.MaxPooling2D(), (IMG,), (2, 4, 4, 3)),
    Case("max_pooling2d_same", lambda: L.MaxPooling2D(3, 2, padding="same"), (IMG,), (2, 5, 5, 3)),
    Case("average_pooling2d", lambda: L.AveragePooling2D((2, 3)), (IMG,), (2, 4, 3, 3)),
    Case("max_pooling3d", lambda: L.MaxPooling3D(), (VOL,), (2, 2, 2, 2, 3)),
    Case("average_pooling3d", lambda: L.AveragePooling3D(2, padding="same"), (VOL,), (2, 2, 2, 2, 3)),
    Case("global_average_pooling1d", lambda: L.GlobalAveragePooling1D(), (LONG,), (2, 3)),
    Case("global_max_pooling1d", lambda: L.GlobalMaxPooling1D(), (LONG,), (2, 3)),
    Case("global_average_pooling2d", lambda: L.GlobalAveragePooling2D(), (IMG,), (2, 3)),
    Case("global_max_pooling2d_keepdims", lambda: L.GlobalMaxPooling2D(keepdims=True), (IMG,), (2, 1, 1, 3)),
    Case("global_average_pooling3d", lambda: L.GlobalAveragePooling3D(), (VOL,), (2, 3)),
    Case("global_max_pooling3d", lambda: L.GlobalMaxPooling3D(), (VOL,), (2, 3)),
    Case("batch_normalization", lambda: L.BatchNormalization(), (f32(4, 3, 3, 2),), (4, 3, 3, 2), training=True),
    Case("layer_normalization", lambda: L.LayerNormalization(), (SEQ,), (2, 5, 3)),
    Case("embedding", lambda: L.Embedding(10, 4), (ids(2, 5),), (2, 5, 4), keeps_dtype=False),
    Case("simple_rnn", lambda: L.SimpleRNN(4), (SEQ,), (2, 4)),
    Case("lstm_sequences", lambda: L.LSTM(4, return_sequences=True), (SEQ,), (2, 5, 4)),
    Case("lstm_state", lambda: L.LSTM(4, return_state=True), (SEQ,), [(2, 4), (2, 4), (2, 4)], sequential=False),
    Case("lstm_dropout", lambda: L.LSTM(4, dropout=0.3, recurrent_dropout=0.3), (SEQ,), (2, 4), training=True),
    Case("gru", lambda: L.GRU(4), (SEQ,), (2, 4)),
    Case("gru_backwards_sequences", lambda: L.GRU(4, return_sequences=True, go_backwards=True, reset_after=False), (SEQ,), (2, 5, 4)),
    Case("rnn_lstm_cell", lambda: L.RNN(L.LSTMCell(4), unroll=True), (SEQ,), (2, 4)),
    Case("bidirectional_lstm", lambda: L.Bidirectional(L.LSTM(4, return_sequences=True)), (SEQ,), (2, 5, 8)),
    Case("bidirectional_gru_sum", lambda: L.Bidirectional(L.GRU(4), merge_mode="sum"), (SEQ,), (2, 4)),
    Case("simple_rnn_cell", lambda: L.SimpleRNNCell(4), (f32(2, 3),), ((2, 4), [(2, 4)]), sequential=False),
    Case("lstm_cell", lambda: L.LSTMCell(4), (f32(2, 3),), ((2, 4), [(2, 4), (2, 4)]), sequential=False),
    Case("gru_cell", lambda: L.GRUCell(4), (f32(2, 3),), ((2, 4), [(2, 4)]), sequential=False),
    Case("mha_self", lambda: L.MultiHeadAttention(2, 3), (f32(2, 5, 6),), (2, 5, 6)),
    Case("mha_cross", lambda: L.MultiHeadAttention(2, 3, value_dim=2), (f32(2, 5, 6), f32(2, 7, 4)), (2, 5, 6), sequential=False),
    Case("mha_causal_dropout", lambda: L.MultiHeadAttention(3, dropout=0.2, output_shape=4), (f32(2, 5, 6),), (2, 5, 4),
         training=True, kwargs={"use_causal_mask": True}, sequential=False),
    Case("add", lambda: L.Add(), ([f32(2, 3, 4), f32(2, 3, 4)],), (2, 3, 4), sequential=False),
    Case("subtract", lambda: L.Subtract(), ([f32(2, 3, 4), f32(2, 3, 4)],), (2, 3, 4), sequential=False),
    Case("multiply", lambda: L.Multiply(), ([f32(2, 3, 4), f32(2, 3, 4)],), (2, 3, 4), sequential=False),
    Case("average", lambda: L.Average(), ([f32(2, 3, 4), f32(2, 3, 4), f32(2, 3, 4)],), (2, 3, 4), sequential=False),
    Case("maximum", lambda: L.Maximum(), ([f32(2, 3, 4), f32(2, 3, 4)],), (2, 3, 4), sequential=False),
    Case("minimum", lambda: L.Minimum(), ([f32(2, 3, 4), f32(2, 3, 4)],), (2, 3, 4), sequential=False),
    Case("concatenate", lambda: L.Concatenate(), ([f32(2, 3, 4), f32(2, 3, 2)],), (2, 3, 6), sequential=False),
    # activation layers
    Case("relu", lambda: L.ReLU(max_value=1.0, negative_slope=0.1, threshold=0.2), (f32(4, 3),), (4, 3)),
    Case("leaky_relu", lambda: L.LeakyReLU(), (f32(4, 3),), (4, 3)),
    Case("prelu", lambda: L.PReLU(alpha_initializer="random_uniform", shared_axes=[1]), (SEQ,), (2, 5, 3)),
    Case("elu", lambda: L.ELU(0.5), (f32(4, 3),), (4, 3)),
    Case("softmax", lambda: L.Softmax(axis=1), (SEQ,), (2, 5, 3)),
    Case("softmax_mask", lambda: L.Softmax(), (SEQ,), (2, 5, 3), kwargs={"mask": np.arange(15).reshape(1, 5, 3) % 2 == 0},
         sequential=False),
    Case("identity", lambda: L.Identity(), (SEQ,), (2, 5, 3)),
    # reshaping layers
    Case("repeat_vector", lambda: L.RepeatVector(3), (f32(2, 4),), (2, 3, 4)),
    Case("permute", lambda: L.Permute((2, 1)), (SEQ,), (2, 3, 5)),
    Case("lambda", lambda: L.Lambda(lambda x, power: jnp.tanh(x) ** power, arguments={"power": 3}), (SEQ,), (2, 5, 3)),
    Case("lambda_output_shape", lambda: L.Lambda(lambda x: jnp.sum(x, axis=1), output_shape=(3,)), (SEQ,), (2, 3)),
    Case("time_distributed", lambda: L.TimeDistributed(L.Dense(4)), (SEQ,), (2, 5, 4)),
    Case("time_distributed_dropout", lambda: L.TimeDistributed(L.Dropout(0.5)), (SEQ,), (2, 5, 3), training=True),
    Case("up_sampling1d", lambda: L.UpSampling1D(), (SEQ,), (2, 10, 3)),
    Case("up_sampling2d", lambda: L.UpSampling2D((2, 3)), (IMG,), (2, 18, 27, 3)),
    Case("up_sampling2d_bilinear", lambda: L.UpSampling2D(interpolation="bilinear"), (IMG,), (2, 18, 18, 3)),
    Case("up_sampling3d", lambda: L.UpSampling3D(), (VOL,), (2, 8, 8, 8, 3)),
    Case("zero_padding1d", lambda: L.ZeroPadding1D((1, 2)), (SEQ,), (2, 8, 3)),
    Case("zero_padding2d", lambda: L.ZeroPadding2D(((1, 0), (2, 3))), (IMG,), (2, 10, 14, 3)),
    Case("zero_padding3d", lambda: L.ZeroPadding3D(), (VOL,), (2, 6, 6, 6, 3)),
    Case("cropping1d", lambda: L.Cropping1D(), (SEQ,), (2, 3, 3)),
    Case("cropping2d", lambda: L.Cropping2D(((1, 2), (0, 3))), (IMG,), (2, 6, 6, 3)),
    Case("cropping3d", lambda: L.Cropping3D(), (VOL,), (2, 2, 2, 2, 3)),
    # image preprocessing
    Case("rescaling", lambda: L.Rescaling(1 / 255, offset=-0.5), (IMG,), (2, 9, 9, 3)),
    Case("center_crop", lambda: L.CenterCrop(4, 5), (IMG,), (2, 4, 5, 3)),
    Case("resizing", lambda: L.Resizing(4, 12), (IMG,), (2, 4, 12, 3)),
    # normalization
    Case("group_normalization", lambda: L.GroupNormalization(3), (f32(2, 4, 4, 6),), (2, 4, 4, 6)),
    Case("rms_normalization", lambda: L.RMSNormalization(), (SEQ,), (2, 5, 3)),
    Case("unit_normalization", lambda: L.UnitNormalization(), (SEQ,), (2, 5, 3)),
    # depthwise and separable convolutions
    Case("depthwise_conv1d", lambda: L.DepthwiseConv1D(3, depth_multiplier=2), (LONG,), (2, 8, 6)),
    Case("depthwise_conv2d_same_strided", lambda: L.DepthwiseConv2D(3, strides=2, padding="same"), (IMG,), (2, 5, 5, 3)),
    Case("separable_conv1d", lambda: L.SeparableConv1D(4, 3, padding="same"), (LONG,), (2, 10, 4)),
    Case("separable_conv2d", lambda: L.SeparableConv2D(4, 3, depth_multiplier=2), (IMG,), (2, 7, 7, 4)),
    # stochastic layers and activity regularization
    Case("spatial_dropout1d", lambda: L.SpatialDropout1D(0.5), (LONG,), (2, 10, 3), training=True),
    Case("spatial_dropout2d", lambda: L.SpatialDropout2D(0.5), (IMG,), (2, 9, 9, 3), training=True),
    Case("spatial_dropout3d", lambda: L.SpatialDropout3D(0.5), (VOL,), (2, 4, 4, 4, 3), training=True),
    Case("gaussian_noise", lambda: L.GaussianNoise(0.3), (SEQ,), (2, 5, 3), training=True),
    Case("gaussian_dropout", lambda: L.GaussianDropout(0.3), (SEQ,), (2, 5, 3), training=True),
    Case("alpha_dropout", lambda: L.AlphaDropout(0.3), (SEQ,), (2, 5, 3), training=True),
    Case("activity_regularization", lambda: L.ActivityRegularization(0.1, 0.1), (SEQ,), (2, 5, 3)),
    # attention, Dot and categorical/numeric preprocessing
    Case("attention", lambda: L.Attention(use_scale=True), ([f32(2, 4, 3), f32(2, 5, 3)],), (2, 4, 3), sequential=False),
    Case("attention_scores", lambda: L.Attention(score_mode="concat"), ([f32(2, 4, 3), f32(2, 5, 3), f32(2, 5, 3)],),
         ((2, 4, 3), (2, 4, 5)), kwargs={"return_attention_scores": True}, sequential=False),
    Case("attention_dropout", lambda: L.Attention(dropout=0.5), ([f32(2, 4, 3), f32(2, 5, 3)],), (2, 4, 3), training=True,
         kwargs={"use_causal_mask": True}, sequential=False),
    Case("additive_attention", lambda: L.AdditiveAttention(), ([f32(2, 4, 3), f32(2, 5, 3)],), (2, 4, 3), sequential=False),
    Case("dot", lambda: L.Dot(axes=(1, 2)), ([f32(2, 3, 5), f32(2, 4, 3)],), (2, 5, 4), sequential=False),
    Case("category_encoding", lambda: L.CategoryEncoding(10), (ids(2, 5),), (2, 10), keeps_dtype=False),
    Case("discretization", lambda: L.Discretization(bin_boundaries=[-0.5, 0.0, 0.5]), (f32(2, 5),), (2, 5), keeps_dtype=False),
    Case("discretization_one_hot", lambda: L.Discretization(bin_boundaries=[0.0, 1.0], output_mode="one_hot"), (f32(2, 5),),
         (2, 5, 3), keeps_dtype=False),
    Case("normalization", lambda: L.Normalization(mean=[0.5, 1.0, -1.0], variance=[1.0, 2.0, 4.0]), (SEQ,), (2, 5, 3)),
    Case("conv_lstm2d", lambda: L.ConvLSTM2D(2, 3, padding="same", return_sequences=True), (f32(2, 3, 4, 4, 2),), (2, 3, 4, 4, 2)),
    Case("conv_lstm1d_state_dropout", lambda: L.ConvLSTM1D(2, 3, return_state=True, dropout=0.3, recurrent_dropout=0.3),
         (f32(2, 3, 6, 2),), [(2, 4, 2), (2, 4, 2), (2, 4, 2)], training=True, sequential=False),
    Case("conv_lstm3d", lambda: L.ConvLSTM3D(2, 2), (f32(2, 2, 3, 3, 3, 1),), (2, 2, 2, 2, 2)),
    # augmentation (training: keyed; inference: identity)
    Case("random_flip", lambda: L.RandomFlip(), (f32(4, 5, 5, 2),), (4, 5, 5, 2), training=True),
    Case("random_rotation", lambda: L.RandomRotation(0.2), (IMG,), (2, 9, 9, 3), training=True),
    Case("random_zoom", lambda: L.RandomZoom(0.3, fill_mode="constant"), (IMG,), (2, 9, 9, 3), training=True),
    Case("random_translation", lambda: L.RandomTranslation(0.2, 0.2), (IMG,), (2, 9, 9, 3), training=True),
    Case("random_crop", lambda: L.RandomCrop(5, 6), (IMG,), (2, 5, 6, 3), training=True),
    Case("random_contrast", lambda: L.RandomContrast(0.5, value_range=(-3, 3)), (IMG,), (2, 9, 9, 3), training=True),
    Case("random_brightness", lambda: L.RandomBrightness(0.3, value_range=(-3, 3)), (IMG,), (2, 9, 9, 3), training=True),
    # masking (the mask it carries is checked against Keras in test_masking.py)
    Case("masking", lambda: L.Masking(mask_value=0.5), (f32(2, 5, 3),), (2, 5, 3)),
    # containers
    Case("sequential_module", lambda: L.SequentialModule([L.Dense(4, activation="relu"), L.Dropout(0.5), L.Dense(2)]),
         (f32(4, 3),), (4, 2), training=True),
    # Linen promotes bfloat16 inputs with float32 parameters to float32: the user module's dtype rule is kept.
    Case("linen_layer", lambda: L.LinenLayer(_LinenMLP()), (f32(4, 3),), (4, 2), keeps_dtype=False, training=True),
]


def test_registry_covers_every_public_layer():
    covered = set()
    for case in CASES:
        layer = case.make()
        covered.add(type(layer).__name__)
        for child in (getattr(layer, "cell", None), getattr(layer, "forward_layer", None)):
            if child is not None:
                covered.add(type(child).__name__)
    # Host-side preprocessing (strings on the host, never traced) has its own tests: test_lookup_layers.py, test_hashing.py.
    host_side = {"StringLookup", "IntegerLookup", "TextVectorization", "Hashing"}
    public = {getattr(L, name).__name__ for name in L.__all__  # Keras's aliases (MaxPool2D) count as their class
              if isinstance(getattr(L, name), type) and issubclass(getattr(L, name), L.Layer)}
    public -= {"Layer"} | host_side
    assert public - covered == set(), f"layers without a registry entry: {sorted(public - covered)}"


def shapes(tree):
    return jax.tree.map(lambda a: tuple(a.shape), tree)


def normalise(expected):
    """Expected shapes as a pytree of tuples (lists of shapes stay lists)."""
    if isinstance(expected, tuple) and all(isinstance(d, int) for d in expected):
        return expected
    return type(expected)(normalise(e) for e in expected)


def is_shape(x):
    return isinstance(x, tuple) and all(d is None or isinstance(d, int) for d in x)


def built(case):
    """A layer built by one eager call, its eager inference output, and its pure function."""
    layer = case.make()
    eager = layer(*case.inputs, **case.kwargs)
    graphdef, state = nnx.split(layer)
    traces = {"count": 0}

    def pure(state, inputs, training=False, key=None):
        traces["count"] += 1
        module = nnx.merge(graphdef, state)
        extra = {"training": True, "key": key} if training else {}
        out = module(*inputs, **case.kwargs, **extra)
        return out, nnx.state(module)

    return layer, eager, state, pure, traces


def assert_trees_close(a, b, rtol=1e-5, atol=1e-6):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=False):
        assert x.dtype == y.dtype
        if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):  # rng counters (the Linen bridge keeps its streams)
            x, y = jax.random.key_data(x), jax.random.key_data(y)
        np.testing.assert_allclose(np.asarray(x, np.float32), np.asarray(y, np.float32), rtol=rtol, atol=atol)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_layer_properties(case):
    layer, eager, state, pure, traces = built(case)
    # Output shapes as Keras documents them, and compute_output_shape agrees (batch axis as None).
    expected = normalise(case.expected)
    assert jax.tree.map(tuple, shapes(eager), is_leaf=is_shape) == expected
    if len(case.inputs) == 1 and not isinstance(case.inputs[0], list) and case.id not in ("simple_rnn_cell", "lstm_cell", "gru_cell"):
        declared = layer.compute_output_shape((None,) + case.inputs[0].shape[1:])
        with_none = jax.tree.map(lambda s: (None,) + tuple(s[1:]), expected, is_leaf=is_shape)
        assert jax.tree.map(tuple, declared, is_leaf=is_shape) == with_none

    # jit equals eager; a second call with new values of the same shapes does not retrace.
    jitted = jax.jit(pure, static_argnums=(2,))
    out, _ = jitted(state, case.inputs)
    assert_trees_close(out, eager)
    other = jax.tree.map(lambda a: a[::-1], case.inputs)  # same shapes, other values
    out_other, _ = jitted(state, other)
    assert traces["count"] == 1, f"{case.id}: retraced on a second call with the same shapes"

    # vmap over a leading axis: each slice equals the unmapped result.
    stacked = jax.tree.map(lambda a, b: np.stack([a, b]), case.inputs, other)
    mapped, _ = jax.jit(jax.vmap(pure, in_axes=(None, 0)))(state, stacked)
    assert_trees_close(jax.tree.map(lambda a: a[0], mapped), eager)
    assert_trees_close(jax.tree.map(lambda a: a[1], mapped), out_other)

    # eval_shape traces without computing; bfloat16 in gives bfloat16 out where the layer keeps dtype.
    abstract, _ = jax.eval_shape(pure, state, case.inputs)
    assert shapes(abstract) == shapes(eager)
    assert jax.tree.map(lambda a: a.dtype, abstract) == jax.tree.map(lambda a: a.dtype, eager)
    bf16_inputs = jax.tree.map(
        lambda a: jax.ShapeDtypeStruct(a.shape, jnp.bfloat16 if np.issubdtype(a.dtype, np.floating) else a.dtype), case.inputs
    )
    low, _ = jax.eval_shape(pure, state, bf16_inputs)
    if case.keeps_dtype:
        assert all(a.dtype == jnp.bfloat16 for a in jax.tree.leaves(low)), f"{case.id}: bfloat16 in did not give bfloat16 out"
    out_bf16, _ = jitted(state, jax.tree.map(lambda a: a.astype(jnp.bfloat16) if np.issubdtype(a.dtype, np.floating) else a, case.inputs))
    assert all(np.all(np.isfinite(np.asarray(a, np.float32))) for a in jax.tree.leaves(out_bf16))


@pytest.mark.parametrize("case", [c for c in CASES if c.training], ids=lambda c: c.id)
def test_training_mode_jit_equals_eager(case):
    layer, _, state, pure, _ = built(case)
    key = jax.random.key(3)
    out_jit, state_jit = jax.jit(pure, static_argnums=(2,))(state, case.inputs, True, key)
    copy = nnx.merge(*nnx.split(layer), copy=True)
    out_eager = copy(*case.inputs, **case.kwargs, training=True, key=key)
    assert_trees_close(out_jit, out_eager)
    assert_trees_close(state_jit, nnx.state(copy))
    inference, _ = jax.jit(pure, static_argnums=(2,))(state, case.inputs, False)
    assert not np.allclose(np.asarray(out_jit), np.asarray(inference))  # training behaves differently


@pytest.mark.parametrize("case", [c for c in CASES if c.sequential], ids=lambda c: c.id)
def test_layer_inside_sequential(case):
    # The same layer (same seed) standalone and as the only layer of a Sequential model.
    x = case.inputs[0]
    standalone = case.make()
    reference = standalone(x, **case.kwargs)
    graphdef, state = nnx.split(standalone)
    model = nj.Sequential([nnx.merge(graphdef, state, copy=True)])
    model.build((None,) + x.shape[1:], x.dtype)
    np.testing.assert_allclose(model.predict(x, verbose=0), np.asarray(reference), rtol=1e-5, atol=1e-6)
