"""nnjax's core layers against Keras 3 (JAX backend) as the oracle.

Each case builds the Keras layer and the nnjax layer with the same arguments, gives Keras's weights
random values, copies them into nnjax's, and compares, under one `jax.jit` per case: the outputs,
the gradients of `sum(output * cotangent)` with respect to the floating inputs and to every trainable
weight, and (for training-mode calls) the updated non-trainable weights (BatchNormalization's moving
statistics). float32 throughout; tolerances 1e-5 unless a case says otherwise and why.

Both layers are built with "zeros" initialisers and Keras's are then given random weights here:
random initialisers (orthogonal above all) compile once per shape and would cost seconds per case
(their values are checked in test_keras_parity_initializers.py).

A registry check closes the file: every layer name that both Keras and `nj.layers` export has a case
here or in test_keras_parity_layers.py, or an entry in `NOT_COMPARED` that says why.
"""

import dataclasses
import inspect
import zlib
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import nnjax as nj

keras = pytest.importorskip("keras")
KL = keras.layers
L = nj.layers
R = np.random.default_rng(1)


def f32(*shape, scale=1.0):
    return (R.normal(size=shape) * scale).astype(np.float32)


RECURRENT_INITIALIZERS = ("kernel_initializer", "recurrent_initializer", "bias_initializer")


def zero_init(cls, *args, **kwargs):
    """`cls(*args, **kwargs)` with every `*_initializer` argument not given set to "zeros" (a fast build).

    For a Keras or an nnjax layer; nnjax's SimpleRNN/LSTM/GRU take their cell's initialisers as `**kwargs`.
    """
    names = [name for name in inspect.signature(cls.__init__).parameters if name.endswith("_initializer")]
    if isinstance(cls, type) and issubclass(cls, L.RNN) and not names:
        names = RECURRENT_INITIALIZERS
    for name in names:
        kwargs.setdefault(name, "zeros")
    return cls(*args, **kwargs)


def leaf_name(path: str) -> str:
    return path.split("/")[-1]


def cell_weights(path: str) -> str:
    return "cell." + leaf_name(path)


def bidirectional_weights(path: str) -> str:
    direction = path.split("/")[0].split("_")[0]  # "forward_lstm/lstm_cell/kernel" -> "forward"
    return f"{direction}_layer.cell.{leaf_name(path)}"


def attention_weights(path: str) -> str:
    return path.replace("attention_output", "output").replace("/", "_")  # "query/kernel" -> "query_kernel"


@dataclasses.dataclass
class Case:
    id: str
    keras: Callable[[], Any]
    nnjax: Callable[[], Any]
    args: tuple  # positional inputs of the call (both sides)
    kwargs: dict = dataclasses.field(default_factory=dict)  # call keyword arguments (both sides)
    weights: Callable[[str], str] = leaf_name  # Keras weight path (below the layer) -> nnjax attribute path
    training: tuple = (False,)  # the modes compared, each in the same compiled function
    atol: float = 1e-5
    shape: bool = True  # compare nnjax's compute_output_shape with Keras's output shapes


SEQ = f32(2, 6, 3)
IMG = f32(2, 7, 6, 3)
IMG_CF = f32(2, 4, 7, 6)
VOL = f32(2, 5, 4, 6, 2)
Q, V, KEYS = f32(2, 4, 5), f32(2, 6, 5), f32(2, 6, 3)
ATTENTION_MASK = R.integers(0, 2, size=(2, 4, 6)).astype(bool) | np.eye(4, 6, dtype=bool)  # every query sees a key
BLIND_MASK = ATTENTION_MASK.copy()
BLIND_MASK[0, 1] = False  # query 1 of example 0 may attend to no key
IDS = R.integers(0, 7, size=(3, 5)).astype(np.int32)
A, B, C = f32(2, 3, 4), f32(2, 3, 4), f32(2, 3, 4)
BN = f32(8, 3, 4, scale=2.0) + 1.0
RNN_SEQ = f32(2, 5, 3)
SELF = f32(2, 5, 4)


def conv(name, keras_cls, nnjax_cls, x, *args, atol=1e-5, **kwargs):
    return Case(name, lambda: zero_init(keras_cls, *args, **kwargs), lambda: zero_init(nnjax_cls, *args, **kwargs), (x,), atol=atol)


def same(name, keras_cls, nnjax_cls, args, *ctor_args, call_kwargs=None, shape=True, **kwargs):
    """A case whose two layers take the same constructor arguments."""
    return Case(name, lambda: zero_init(keras_cls, *ctor_args, **kwargs), lambda: zero_init(nnjax_cls, *ctor_args, **kwargs), args,
                kwargs=call_kwargs or {}, shape=shape)


def rnn(name, keras_cls, nnjax_cls, *args, x=RNN_SEQ, **kwargs):
    return Case(name, lambda: zero_init(keras_cls, *args, **kwargs), lambda: zero_init(nnjax_cls, *args, **kwargs), (x,),
                weights=cell_weights)


def bidirectional(name, merge_mode, keras_cls, nnjax_cls, **kwargs):
    return Case(name, lambda: KL.Bidirectional(zero_init(keras_cls, 3, **kwargs), merge_mode=merge_mode),
                lambda: L.Bidirectional(zero_init(nnjax_cls, 3, **kwargs), merge_mode=merge_mode), (RNN_SEQ,), weights=bidirectional_weights)


def attention(name, args, *, call_kwargs=None, shape=True, **kwargs):
    return Case(name, lambda: zero_init(KL.MultiHeadAttention, **kwargs), lambda: zero_init(L.MultiHeadAttention, **kwargs), args,
                kwargs=call_kwargs or {}, weights=attention_weights, shape=shape)


CASES = [
    # core
    same("dense", KL.Dense, L.Dense, (SEQ,), 4),
    same("dense_activation_no_bias", KL.Dense, L.Dense, (f32(3, 5),), 4, activation="tanh", use_bias=False),
    same("dense_softmax", KL.Dense, L.Dense, (f32(3, 5),), 4, activation="softmax"),
    same("flatten", KL.Flatten, L.Flatten, (IMG,)),
    same("flatten_2d", KL.Flatten, L.Flatten, (f32(3, 5),)),
    same("flatten_channels_first", KL.Flatten, L.Flatten, (IMG_CF,), data_format="channels_first"),
    same("reshape", KL.Reshape, L.Reshape, (IMG,), (6, 21)),
    same("reshape_inferred", KL.Reshape, L.Reshape, (IMG,), (-1, 3, 2)),
    same("activation_relu", KL.Activation, L.Activation, (SEQ,), "relu"),
    same("activation_gelu", KL.Activation, L.Activation, (SEQ,), "gelu"),
    same("activation_softmax", KL.Activation, L.Activation, (SEQ,), "softmax"),
    same("activation_swish", KL.Activation, L.Activation, (SEQ,), "swish"),
    same("activation_callable", KL.Activation, L.Activation, (SEQ,), jnp.tanh),
    same("dropout_inference", KL.Dropout, L.Dropout, (SEQ,), 0.4),
    # convolutions
    conv("conv1d", KL.Conv1D, L.Conv1D, SEQ, 4, 3),
    conv("conv1d_causal_dilated", KL.Conv1D, L.Conv1D, f32(2, 9, 3), 4, 3, padding="causal", dilation_rate=2),
    conv("conv1d_same_strided", KL.Conv1D, L.Conv1D, f32(2, 9, 3), 2, 4, strides=2, padding="same", activation="relu"),
    conv("conv1d_channels_first_groups", KL.Conv1D, L.Conv1D, f32(2, 4, 7), 6, 2, groups=2, data_format="channels_first"),
    conv("conv2d_valid", KL.Conv2D, L.Conv2D, IMG, 4, (2, 3)),
    conv("conv2d_same_strided", KL.Conv2D, L.Conv2D, IMG, 4, 3, strides=2, padding="same"),
    conv("conv2d_valid_strided", KL.Conv2D, L.Conv2D, IMG, 2, 3, strides=(2, 1)),
    conv("conv2d_dilated_same", KL.Conv2D, L.Conv2D, IMG, 2, 3, dilation_rate=(2, 1), padding="same", use_bias=False),
    conv("conv2d_groups", KL.Conv2D, L.Conv2D, f32(2, 5, 5, 4), 6, 3, groups=2, activation="sigmoid"),
    conv("conv2d_channels_first", KL.Conv2D, L.Conv2D, IMG_CF, 3, 3, strides=2, padding="same", data_format="channels_first"),
    conv("conv3d", KL.Conv3D, L.Conv3D, VOL, 2, 2),
    conv("conv3d_same_strided", KL.Conv3D, L.Conv3D, VOL, 3, (3, 2, 3), strides=2, padding="same"),
    conv("conv1d_transpose_valid", KL.Conv1DTranspose, L.Conv1DTranspose, SEQ, 2, 3, strides=2),
    conv("conv1d_transpose_same", KL.Conv1DTranspose, L.Conv1DTranspose, SEQ, 2, 4, strides=3, padding="same"),
    conv("conv1d_transpose_output_padding", KL.Conv1DTranspose, L.Conv1DTranspose, SEQ, 2, 3, strides=3, output_padding=1),
    conv("conv2d_transpose_valid", KL.Conv2DTranspose, L.Conv2DTranspose, IMG, 2, 3, strides=2),
    conv("conv2d_transpose_same", KL.Conv2DTranspose, L.Conv2DTranspose, IMG, 3, (2, 3), strides=(2, 3), padding="same"),
    conv("conv2d_transpose_same_output_padding", KL.Conv2DTranspose, L.Conv2DTranspose, IMG, 2, 3, strides=2, padding="same",
         output_padding=1),
    conv("conv2d_transpose_dilated", KL.Conv2DTranspose, L.Conv2DTranspose, IMG, 2, 2, dilation_rate=2),
    conv("conv2d_transpose_channels_first", KL.Conv2DTranspose, L.Conv2DTranspose, IMG_CF, 2, 3, strides=2,
         data_format="channels_first"),
    conv("conv3d_transpose_valid", KL.Conv3DTranspose, L.Conv3DTranspose, VOL, 2, 2, strides=2),
    conv("conv3d_transpose_same_output_padding", KL.Conv3DTranspose, L.Conv3DTranspose, VOL, 2, 3, strides=2, padding="same",
         output_padding=(1, 0, 1)),
    # pooling
    same("max_pooling1d", KL.MaxPooling1D, L.MaxPooling1D, (f32(2, 7, 3),)),
    same("max_pooling1d_same", KL.MaxPooling1D, L.MaxPooling1D, (f32(2, 7, 3),), 3, 2, padding="same"),
    same("max_pooling2d", KL.MaxPooling2D, L.MaxPooling2D, (IMG,), (2, 3)),
    same("max_pooling2d_same_strided", KL.MaxPooling2D, L.MaxPooling2D, (IMG,), 3, 2, padding="same"),
    same("max_pooling2d_channels_first", KL.MaxPooling2D, L.MaxPooling2D, (IMG_CF,), 2, data_format="channels_first"),
    same("max_pooling3d", KL.MaxPooling3D, L.MaxPooling3D, (VOL,), 2, padding="same"),
    same("average_pooling1d", KL.AveragePooling1D, L.AveragePooling1D, (f32(2, 7, 3),), 3),
    same("average_pooling1d_same", KL.AveragePooling1D, L.AveragePooling1D, (f32(2, 7, 3),), 3, 2, padding="same"),
    same("average_pooling2d", KL.AveragePooling2D, L.AveragePooling2D, (IMG,), 2, 1),
    same("average_pooling2d_same", KL.AveragePooling2D, L.AveragePooling2D, (IMG,), 3, 2, padding="same"),
    same("average_pooling2d_channels_first_same", KL.AveragePooling2D, L.AveragePooling2D, (IMG_CF,), 2, padding="same",
         data_format="channels_first"),
    same("average_pooling3d", KL.AveragePooling3D, L.AveragePooling3D, (VOL,), (2, 2, 3)),
    same("average_pooling3d_same", KL.AveragePooling3D, L.AveragePooling3D, (VOL,), 2, padding="same"),
    same("global_average_pooling1d", KL.GlobalAveragePooling1D, L.GlobalAveragePooling1D, (SEQ,)),
    same("global_average_pooling1d_keepdims", KL.GlobalAveragePooling1D, L.GlobalAveragePooling1D, (SEQ,), keepdims=True),
    same("global_average_pooling2d", KL.GlobalAveragePooling2D, L.GlobalAveragePooling2D, (IMG,)),
    same("global_average_pooling2d_channels_first_keepdims", KL.GlobalAveragePooling2D, L.GlobalAveragePooling2D, (IMG_CF,),
         data_format="channels_first", keepdims=True),
    same("global_average_pooling3d", KL.GlobalAveragePooling3D, L.GlobalAveragePooling3D, (VOL,), keepdims=True),
    same("global_max_pooling1d", KL.GlobalMaxPooling1D, L.GlobalMaxPooling1D, (SEQ,)),
    same("global_max_pooling1d_channels_first", KL.GlobalMaxPooling1D, L.GlobalMaxPooling1D, (SEQ,), data_format="channels_first"),
    same("global_max_pooling2d_keepdims", KL.GlobalMaxPooling2D, L.GlobalMaxPooling2D, (IMG,), keepdims=True),
    same("global_max_pooling3d", KL.GlobalMaxPooling3D, L.GlobalMaxPooling3D, (VOL,)),
    # normalization: inference and training (with the moving statistics) in one compiled function
    dataclasses.replace(same("batch_normalization", KL.BatchNormalization, L.BatchNormalization, (BN,)), training=(False, True)),
    dataclasses.replace(same("batch_normalization_momentum_epsilon_axis1", KL.BatchNormalization, L.BatchNormalization, (BN,),
                             axis=1, momentum=0.5, epsilon=0.1), training=(False, True)),
    dataclasses.replace(same("batch_normalization_no_center", KL.BatchNormalization, L.BatchNormalization, (BN,), center=False),
                        training=(False, True)),
    dataclasses.replace(same("batch_normalization_no_scale_axis2", KL.BatchNormalization, L.BatchNormalization, (BN,),
                             axis=2, scale=False), training=(False, True)),
    dataclasses.replace(same("batch_normalization_image", KL.BatchNormalization, L.BatchNormalization, (IMG,), momentum=0.9),
                        training=(False, True)),
    dataclasses.replace(same("batch_normalization_channels_first", KL.BatchNormalization, L.BatchNormalization, (IMG_CF,), axis=1,
                             momentum=0.0, epsilon=1e-5), training=(False, True)),
    same("layer_normalization", KL.LayerNormalization, L.LayerNormalization, (BN,)),
    same("layer_normalization_axes", KL.LayerNormalization, L.LayerNormalization, (BN,), axis=[1, 2], epsilon=0.01),
    same("layer_normalization_axis1_no_center", KL.LayerNormalization, L.LayerNormalization, (BN,), axis=1, center=False),
    same("layer_normalization_no_scale", KL.LayerNormalization, L.LayerNormalization, (BN,), scale=False),
    same("layer_normalization_plain", KL.LayerNormalization, L.LayerNormalization, (BN,), center=False, scale=False),
    # embedding (integer ids: gradients with respect to the table only)
    same("embedding", KL.Embedding, L.Embedding, (IDS,), 7, 4),
    same("embedding_3d_ids", KL.Embedding, L.Embedding, (IDS.reshape(3, 5, 1),), 7, 2),
    # recurrent
    rnn("simple_rnn", KL.SimpleRNN, L.SimpleRNN, 4),
    rnn("simple_rnn_sequences_backwards_relu", KL.SimpleRNN, L.SimpleRNN, 3, return_sequences=True, go_backwards=True,
        activation="relu"),
    rnn("simple_rnn_state", KL.SimpleRNN, L.SimpleRNN, 3, return_state=True),
    rnn("lstm", KL.LSTM, L.LSTM, 4),
    rnn("lstm_sequences_state", KL.LSTM, L.LSTM, 3, return_sequences=True, return_state=True),
    rnn("lstm_backwards_sequences", KL.LSTM, L.LSTM, 3, return_sequences=True, go_backwards=True),
    rnn("lstm_backwards_state_no_bias", KL.LSTM, L.LSTM, 2, return_state=True, go_backwards=True, use_bias=False),
    rnn("gru", KL.GRU, L.GRU, 4),
    rnn("gru_reset_before", KL.GRU, L.GRU, 3, reset_after=False, return_sequences=True),
    rnn("gru_reset_after_state_backwards", KL.GRU, L.GRU, 3, return_state=True, go_backwards=True, return_sequences=True),
    rnn("gru_reset_before_state_backwards", KL.GRU, L.GRU, 2, reset_after=False, return_state=True, go_backwards=True),
    Case("rnn_lstm_cell", lambda: KL.RNN(zero_init(KL.LSTMCell, 3), return_sequences=True), lambda: L.RNN(zero_init(L.LSTMCell, 3), return_sequences=True),
         (RNN_SEQ,), weights=cell_weights),
    Case("rnn_gru_cell_state", lambda: KL.RNN(zero_init(KL.GRUCell, 3), return_state=True), lambda: L.RNN(zero_init(L.GRUCell, 3), return_state=True),
         (RNN_SEQ,), weights=cell_weights),
    Case("rnn_simple_rnn_cell_backwards", lambda: KL.RNN(zero_init(KL.SimpleRNNCell, 3), go_backwards=True),
         lambda: L.RNN(zero_init(L.SimpleRNNCell, 3), go_backwards=True), (RNN_SEQ,), weights=cell_weights),
    # one step of a cell: `cell(x_t, states) -> (output, new_states)`
    same("simple_rnn_cell_step", KL.SimpleRNNCell, L.SimpleRNNCell, (f32(2, 3), [f32(2, 4)]), 4, shape=False),
    same("lstm_cell_step", KL.LSTMCell, L.LSTMCell, (f32(2, 3), [f32(2, 4), f32(2, 4)]), 4, shape=False),
    same("gru_cell_step", KL.GRUCell, L.GRUCell, (f32(2, 3), [f32(2, 4)]), 4, shape=False),
    same("gru_cell_step_reset_before", KL.GRUCell, L.GRUCell, (f32(2, 3), [f32(2, 4)]), 4, reset_after=False, shape=False),
    Case("conv_lstm3d", lambda: zero_init(KL.ConvLSTM3D, 2, 2, padding="same", return_sequences=True),
         lambda: zero_init(L.ConvLSTM3D, 2, 2, padding="same", return_sequences=True), (f32(2, 2, 3, 3, 3, 2),)),
    bidirectional("bidirectional_concat", "concat", KL.LSTM, L.LSTM),
    bidirectional("bidirectional_sum_sequences", "sum", KL.GRU, L.GRU, return_sequences=True),
    bidirectional("bidirectional_mul_sequences", "mul", KL.SimpleRNN, L.SimpleRNN, return_sequences=True),
    bidirectional("bidirectional_ave", "ave", KL.LSTM, L.LSTM),
    bidirectional("bidirectional_none_sequences", None, KL.GRU, L.GRU, return_sequences=True),
    bidirectional("bidirectional_concat_state", "concat", KL.LSTM, L.LSTM, return_state=True),
    # attention
    attention("mha_self", (Q, Q), num_heads=2, key_dim=3),  # Keras's call needs `value` (nnjax's defaults it to `query`)
    # Keras 3.15's fused path fails when value_dim != key_dim; asking for the scores takes its einsum path.
    attention("mha_cross_key", (Q, V, KEYS), num_heads=2, key_dim=3, value_dim=4, output_shape=6,
              call_kwargs={"return_attention_scores": True}, shape=False),
    attention("mha_cross_mask", (Q, V), num_heads=3, key_dim=2, call_kwargs={"attention_mask": ATTENTION_MASK}),
    attention("mha_self_causal", (SELF, SELF), num_heads=2, key_dim=2, call_kwargs={"use_causal_mask": True}),
    attention("mha_causal_and_mask_no_bias", (Q, V), num_heads=2, key_dim=3, use_bias=False,
              call_kwargs={"attention_mask": ATTENTION_MASK, "use_causal_mask": True}),
    attention("mha_causal_longer_query", (f32(2, 6, 5), f32(2, 3, 5)), num_heads=2, key_dim=3, call_kwargs={"use_causal_mask": True}),
    attention("mha_scores", (Q, V), num_heads=2, key_dim=3, call_kwargs={"return_attention_scores": True}, shape=False),
    attention("mha_scores_causal", (SELF, SELF), num_heads=2, key_dim=3, shape=False,
              call_kwargs={"return_attention_scores": True, "use_causal_mask": True}),
    # a query row that may attend to no key: Keras's fused path averages the values, its masked softmax
    # (scores asked for, or dropout > 0 even in inference) gives zero weights
    attention("mha_query_sees_nothing", (Q, V), num_heads=2, key_dim=3, call_kwargs={"attention_mask": BLIND_MASK}),
    attention("mha_query_sees_nothing_scores", (Q, V), num_heads=2, key_dim=3, shape=False,
              call_kwargs={"attention_mask": BLIND_MASK, "return_attention_scores": True}),
    attention("mha_query_sees_nothing_dropout_inference", (Q, V), num_heads=2, key_dim=3, dropout=0.3,
              call_kwargs={"attention_mask": BLIND_MASK}),
    # merging
    same("add", KL.Add, L.Add, ([A, B, C],)),
    same("subtract", KL.Subtract, L.Subtract, ([A, B],)),
    same("multiply", KL.Multiply, L.Multiply, ([A, B, C],)),
    same("average", KL.Average, L.Average, ([A, B],)),
    same("maximum", KL.Maximum, L.Maximum, ([A, B, C],)),
    same("minimum", KL.Minimum, L.Minimum, ([A, B],)),
    same("concatenate", KL.Concatenate, L.Concatenate, ([A, f32(2, 3, 2)],)),
    same("concatenate_axis1", KL.Concatenate, L.Concatenate, ([A, f32(2, 1, 4), B],), axis=1),
]


# Less LLVM optimisation: compiling, not running, is what these tiny cases spend their time on.
FAST_COMPILE = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}


def _keras_path(variable) -> str:
    """A Keras weight's path below its layer: "kernel", "lstm_cell/kernel", "query/bias"."""
    return variable.path.split("/", 1)[1]


def _attr(layer, path: str):
    for part in path.split("."):
        layer = getattr(layer, part)
    return layer


def _state_at(state, path: str):
    for part in path.split("."):
        state = state[part]
    return np.asarray(state[...])


def _leaf_shapes(tree) -> list:
    if isinstance(tree, (list, tuple)) and tree and not isinstance(tree[0], (int, type(None))):
        return [s for t in tree for s in _leaf_shapes(t)]
    return [tuple(tree)]


def _build(case: Case):
    """Both layers built for `case.args`; Keras's weights randomised and copied into nnjax's."""
    klayer = case.keras()
    klayer(*jax.tree.map(lambda a: keras.KerasTensor(a.shape, dtype=str(a.dtype)), case.args))  # a symbolic (shape-only) call
    layer = case.nnjax()
    if isinstance(layer, L.MultiHeadAttention):
        layer.build_for(*[a.shape for a in case.args])
    else:
        layer.ensure_built(jax.tree.leaves(case.args)[0].shape)
    rng = np.random.default_rng(zlib.crc32(case.id.encode()))
    names = {}
    for variable in klayer.weights:
        path = _keras_path(variable)
        if path.endswith("seed_generator_state"):  # Keras's RNG counter: nnjax takes keys per call
            continue
        value = rng.normal(size=variable.shape) * 0.5
        if "variance" in path:
            value = rng.uniform(0.5, 1.5, size=variable.shape)
        variable.assign(value.astype(np.float32))
        target = _attr(layer, case.weights(path))
        assert target[...].shape == tuple(variable.shape), f"{case.id}: {path} is {variable.shape} in Keras, {target[...].shape} here"
        target[...] = jnp.asarray(variable.value)
        names[path] = case.weights(path)
    n_params = len(jax.tree.leaves(nnx.state(layer, nnx.Param)))
    assert n_params == len(klayer.trainable_weights), f"{case.id}: {n_params} parameters here, Keras has {klayer.trainable_weights}"
    return klayer, layer, names


def _objective(out, seed: int):
    """`sum(output * cotangent)` over every output, with fixed cotangents that vary along every axis.

    (A deterministic pattern rather than random draws: threefry would dominate the compile time.)
    """
    total = 0.0
    for i, leaf in enumerate(jax.tree.leaves(out)):
        cotangent = jnp.cos(jnp.arange(leaf.size, dtype=leaf.dtype).reshape(leaf.shape) * 1.37 + 0.5 * i + seed)
        total = total + jnp.sum(leaf * cotangent)
    return total


def _compare(case: Case):
    klayer, layer, names = _build(case)
    trainable_paths = [_keras_path(v) for v in klayer.trainable_variables]
    frozen_paths = [_keras_path(v) for v in klayer.non_trainable_variables]  # compared where nnjax has them
    trainable = [v.value for v in klayer.trainable_variables]
    frozen = [v.value for v in klayer.non_trainable_variables]
    graphdef, params, rest = nnx.split(layer, nnx.Param, ...)
    float_inputs = all(jnp.issubdtype(a.dtype, jnp.floating) for a in jax.tree.leaves(case.args))
    argnums = (0, 1) if float_inputs else (0,)

    keras_training = "training" in inspect.signature(klayer.call).parameters

    def keras_objective(weights, args, training, seed):
        mode = {"training": training} if keras_training else {}
        out, new_frozen = klayer.stateless_call(weights, frozen, *args, **mode, **case.kwargs)
        return _objective(out, seed), (out, new_frozen)

    def nnjax_objective(params, args, training, seed):
        module = nnx.merge(graphdef, params, rest, copy=True)
        out = module(*args, training=training, **case.kwargs)
        return _objective(out, seed), (out, nnx.state(module, nnx.Not(nnx.Param)))

    @jax.jit(compiler_options=FAST_COMPILE)
    def run(trainable, params, args):
        return [(jax.grad(keras_objective, argnums, has_aux=True)(trainable, args, training, seed),
                 jax.grad(nnjax_objective, argnums, has_aux=True)(params, args, training, seed))
                for seed, training in enumerate(case.training)]

    tol = {"rtol": case.atol, "atol": case.atol}
    for training, ((kgrads, (kout, kfrozen)), (grads, (out, state))) in zip(case.training, run(trainable, params, case.args),
                                                                            strict=True):
        mode = f"{case.id} (training={training})"
        kleaves, leaves = jax.tree.leaves(kout), jax.tree.leaves(out)
        assert len(leaves) == len(kleaves), f"{mode}: {len(leaves)} outputs here, Keras {len(kleaves)}"
        for i, (a, b) in enumerate(zip(leaves, kleaves, strict=True)):
            assert a.shape == b.shape and a.dtype == b.dtype, f"{mode}: output {i} is {a.dtype}{a.shape}, Keras {b.dtype}{b.shape}"
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), **tol, err_msg=f"{mode}: output {i}")
        for path, value in zip(frozen_paths, kfrozen, strict=True):
            if path not in names:
                continue
            np.testing.assert_allclose(_state_at(state, names[path]), np.asarray(value), **tol, err_msg=f"{mode}: {path} after the call")
        if float_inputs:
            for a, b in zip(jax.tree.leaves(grads[1]), jax.tree.leaves(kgrads[1]), strict=True):
                np.testing.assert_allclose(np.asarray(a), np.asarray(b), **tol, err_msg=f"{mode}: input gradient")
        for path, kgrad in zip(trainable_paths, kgrads[0], strict=True):
            np.testing.assert_allclose(_state_at(grads[0], names[path]), np.asarray(kgrad), **tol, err_msg=f"{mode}: gradient of {path}")
    if case.shape:
        batchless = jax.tree.map(lambda a: (None,) + a.shape[1:], case.args, is_leaf=lambda a: isinstance(a, np.ndarray))
        expected = [(None,) + tuple(o.shape[1:]) for o in jax.tree.leaves(kout)]
        assert _leaf_shapes(layer.compute_output_shape(*batchless)) == expected, case.id


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_matches_keras(case):
    _compare(case)


def test_bidirectional_without_merge_gives_two_output_shapes():
    klayer = KL.Bidirectional(zero_init(KL.GRU, 3, return_sequences=True), merge_mode=None)
    layer = L.Bidirectional(zero_init(L.GRU, 3, return_sequences=True), merge_mode=None)
    layer.ensure_built(RNN_SEQ.shape)
    expected = [tuple(s) for s in klayer.compute_output_shape((None, 5, 3))]
    assert _leaf_shapes(layer.compute_output_shape((None, 5, 3))) == expected


# ------------------------------------------------------------------ Dropout in training: the statistics (the RNGs differ)
def test_dropout_training_drops_the_rate_and_rescales_like_keras():
    x = np.abs(f32(64, 32, 16)) + 0.1  # 32768 draws per mask: the dropped fraction's standard error is below 0.003
    for rate, noise_shape in ((0.3, None), (0.5, (None, 1, 16))):
        expected = np.asarray(KL.Dropout(rate, noise_shape=noise_shape, seed=3)(x, training=True))
        out = np.asarray(L.Dropout(rate, noise_shape=noise_shape)(x, training=True, key=jax.random.key(3)))
        for name, y in (("keras", expected), ("nnjax", out)):
            dropped = y == 0
            assert abs(dropped.mean() - rate) < 0.02, (name, rate, dropped.mean())
            np.testing.assert_allclose(y[~dropped], x[~dropped] / (1 - rate), rtol=1e-6, err_msg=name)
            if noise_shape is not None:  # one decision per (example, channel), shared along the steps
                assert np.all(dropped.all(axis=1) | (~dropped).all(axis=1)), name
        assert not np.array_equal(out, x)


# ------------------------------------------------------------------ Input and InputLayer: shapes and dtypes, no numbers
INPUT_NAMES = ("Input", "InputLayer")


def test_input_and_input_layer_declare_what_keras_declares():
    for dtype in ("float32", "int32"):
        kinput, ours = keras.Input(shape=(4, 3), dtype=dtype, name="x"), L.Input(shape=(4, 3), dtype=dtype, name="x")
        assert (tuple(ours.shape), np.dtype(ours.dtype).name, ours.name) == (tuple(kinput.shape), kinput.dtype, kinput.name)
        klayer, layer = KL.InputLayer(shape=(4, 3), dtype=dtype), L.InputLayer((4, 3), dtype=dtype)
        assert tuple(layer.compute_output_shape((None, 4, 3))) == tuple(klayer.output.shape)
        assert layer.input_dtype == klayer.output.dtype
    np.testing.assert_array_equal(np.asarray(L.InputLayer((6, 3))(SEQ)), SEQ)
    # At the head of a Sequential model, it builds the model as in Keras.
    kmodel = keras.Sequential([KL.InputLayer(shape=(6, 3)), zero_init(KL.Dense, 2)])
    model = nj.Sequential([L.InputLayer((6, 3)), zero_init(L.Dense, 2)])
    assert model.built and tuple(model.output_shape) == tuple(kmodel.output_shape)


# ------------------------------------------------------------------ Keras's functional forms of the merge layers
FUNCTIONAL_FORMS = {"add": {}, "subtract": {}, "multiply": {}, "average": {}, "maximum": {}, "minimum": {}, "concatenate": {"axis": 1},
                    "dot": {"axes": 2}}


def test_functional_merge_forms_match_keras():
    for name, kwargs in FUNCTIONAL_FORMS.items():
        inputs = [A, B] if name in ("subtract", "dot") else [A, B, C]
        expected = np.asarray(getattr(KL, name)(inputs, **kwargs))
        np.testing.assert_allclose(np.asarray(getattr(L, name)(inputs, **kwargs)), expected, rtol=1e-6, atol=1e-6, err_msg=name)


# ------------------------------------------------------------------ registry: every shared name has a Keras comparison
# Names that both Keras and nnjax export but that no test compares numerically, and why.
NOT_COMPARED = {
    "Layer": "the base class, no computation of its own; its subclassing contract (build/add_weight/call) is checked in "
             "test_layer_subclassing.py",
    "Masking": "compared with Keras 3 where it matters, the mask it carries, in test_masking.py (through LSTMs)",
    **{name: "Keras 3 computes it with TensorFlow (not installed here); nnjax's host-side version is checked against "
             "Keras's documented examples in test_lookup_layers.py" for name in ("StringLookup", "IntegerLookup", "TextVectorization")},
    "Hashing": "Keras 3 hashes with TensorFlow (not installed here); nnjax's hashes are checked against pyfarmhash and "
               "siphash24, and the layer against Keras's documented outputs, in test_hashing.py",
}


def test_keras_alias_names_are_the_same_classes_as_in_keras():
    aliases = {name for name in dir(KL) if isinstance(getattr(KL, name), type) and getattr(KL, name).__name__ != name}
    ours = {name for name in aliases if hasattr(L, name)}
    assert ours >= aliases - {"GroupQueryAttention"}, sorted(aliases - ours)
    for name in ours:
        assert getattr(L, name) is getattr(L, getattr(KL, name).__name__), name


def _keras_class_names(factories) -> set[str]:
    return {type(make()).__name__ for make in factories}


def test_every_layer_that_keras_and_nnjax_both_export_is_compared_with_keras():
    import test_keras_parity_layers as newer  # the other parity file (pytest puts tests/ on sys.path)

    covered = _keras_class_names(case.keras for case in CASES)
    covered |= _keras_class_names(row.keras for row in newer.ROWS)
    covered |= _keras_class_names(augmentation[1] for augmentation in newer.AUGMENTATIONS)
    covered |= {"Dropout", *INPUT_NAMES, *FUNCTIONAL_FORMS}  # the dedicated tests above
    shared = {name for name in L.__all__ if hasattr(KL, name)}
    covered |= {name for name in shared if getattr(getattr(L, name), "__name__", name) in covered}  # Keras's aliases
    missing = shared - covered - set(NOT_COMPARED)
    assert not missing, f"layers that both Keras and nnjax export, with no Keras parity test: {sorted(missing)}"
    stale = set(NOT_COMPARED) - (shared - covered)
    assert not stale, f"NOT_COMPARED lists names that are compared now or no longer shared: {sorted(stale)}"
