"""Bad input fails early with a message naming the layer, what was expected and what was received."""

import re

import numpy as np
import pytest

import nnjax as nj

L = nj.layers


def raises(exc, *fragments):
    """pytest.raises matching every fragment (literally) in the message."""
    return pytest.raises(exc, match="(?s)" + "".join(f"(?=.*{re.escape(f)})" for f in fragments))


def test_conv2d_given_a_3d_input():
    layer = L.Conv2D(4, 3, name="conv_a")
    with raises(ValueError, 'layer "conv_a"', "expected ndim=4", "found ndim=3", "(8, 28, 28)"):
        layer(np.zeros((8, 28, 28), np.float32))


def test_conv2d_given_wrong_channels_after_build():
    layer = L.Conv2D(4, 3, name="conv_b")
    layer(np.zeros((2, 8, 8, 3), np.float32))
    with raises(ValueError, 'layer "conv_b"', "expected axis -1 of input shape to have value 3", "(2, 8, 8, 5)"):
        layer(np.zeros((2, 8, 8, 5), np.float32))


def test_conv2d_too_small_for_its_kernel_and_groups():
    with raises(ValueError, 'layer "conv_c"', "kernel size (5, 5)", "(None, 3, 3, 1)"):
        L.Conv2D(2, 5, name="conv_c")(np.zeros((1, 3, 3, 1), np.float32))
    with raises(ValueError, 'layer "conv_d"', "divisible by groups=2", "(None, 4, 4, 3)"):
        L.Conv2D(4, 3, groups=2, name="conv_d")(np.zeros((1, 4, 4, 3), np.float32))


def test_lstm_given_a_2d_input():
    layer = L.LSTM(8, name="lstm_a")
    with raises(ValueError, 'layer "lstm_a"', "expected ndim=3", "found ndim=2", "(4, 16)"):
        layer(np.zeros((4, 16), np.float32))


def test_rnn_initial_state_of_the_wrong_shape():
    layer = L.LSTM(3, name="lstm_b")
    with raises(ValueError, 'Layer "lstm_b"', "[(2, 3), (2, 3)]", "[(2, 4)]"):
        layer(np.zeros((2, 5, 1), np.float32), initial_state=[np.zeros((2, 4), np.float32)])


def test_embedding_given_float_ids():
    layer = L.Embedding(10, 4, name="emb_a")
    with raises(TypeError, 'layer "emb_a"', "expected integer ids", "float32"):
        layer(np.array([[1.0, 2.0]], np.float32))


def test_embedding_given_ids_out_of_range():
    layer = L.Embedding(10, 4, name="emb_b")
    with raises(ValueError, 'layer "emb_b"', "[0, 10)", "received ids in [0, 12]"):
        layer(np.array([[0, 12, 3]]))
    with raises(ValueError, 'layer "emb_b"', "[0, 10)", "received ids in [-1, 3]"):
        layer(np.array([[-1, 3]]))


def test_embedding_ids_in_a_model_fail_before_training():
    model = nj.Sequential([L.Embedding(10, 4), L.Flatten(), L.Dense(2)])
    model.compile("adam", "sparse_categorical_crossentropy")
    with raises(TypeError, "expected integer ids", "float32"):
        model.fit(np.ones((8, 3), np.float32), np.zeros(8, np.int32), verbose=0)


def test_attention_heads_that_do_not_divide_the_width():
    layer = L.MultiHeadAttention(num_heads=3, name="mha_a")
    with raises(ValueError, 'MultiHeadAttention "mha_a"', "num_heads=3 must divide the query width", "(None, 5, 64)", "width 64"):
        layer(np.zeros((2, 5, 64), np.float32))


def test_attention_inputs_of_the_wrong_rank_or_width():
    layer = L.MultiHeadAttention(num_heads=2, key_dim=4, name="mha_b")
    with raises(ValueError, 'layer "mha_b"', "rank 3", "found ndim=2", "(2, 8)"):
        layer(np.zeros((2, 8), np.float32))
    layer(np.zeros((2, 5, 8), np.float32))
    with raises(ValueError, 'layer "mha_b"', "expected axis -1 of input shape to have value 8", "(2, 5, 6)"):
        layer(np.zeros((2, 5, 6), np.float32))
    with raises(ValueError, 'MultiHeadAttention "mha_b"', "attention_mask", "(batch, T, S) = (2, 5, 5)", "(3, 4)"):
        layer(np.zeros((2, 5, 8), np.float32), attention_mask=np.ones((3, 4), bool))


@pytest.mark.parametrize("make", [
    lambda: L.Conv2D(4, 3, padding="sme", name="bad_pad"),
    lambda: L.Conv1D(4, 3, padding="full", name="bad_pad"),
    lambda: L.MaxPooling2D(padding="causal", name="bad_pad"),
    lambda: L.Conv2DTranspose(4, 3, padding="causal", name="bad_pad"),
], ids=["conv2d", "conv1d", "max_pooling2d", "conv2d_transpose"])
def test_unknown_padding_names_the_layer_and_the_choices(make):
    with raises(ValueError, '"bad_pad"', "`padding` must be 'valid' or 'same'"):
        make()


def test_causal_padding_is_listed_for_conv1d():
    with raises(ValueError, "'valid' or 'same' or 'causal'", "got 'full'"):
        L.Conv1D(4, 3, padding="full")


@pytest.mark.parametrize("make", [
    lambda: L.Dense(3, activation="rellu", name="bad_act"),
    lambda: L.Conv2D(3, 3, activation="rellu", name="bad_act"),
    lambda: L.LSTM(3, activation="rellu", name="bad_act"),
    lambda: L.Activation("rellu", name="bad_act"),
], ids=["dense", "conv2d", "lstm", "activation"])
def test_unknown_activation_names_the_layer_and_the_choices(make):
    with raises(ValueError, '"bad_act"', "unknown activation 'rellu'", "'relu'"):
        make()


def test_bad_arguments():
    with raises(ValueError, "`kernel_size` must be a positive int or a tuple of 2", "(3, 0)"):
        L.Conv2D(4, (3, 0))
    with raises(ValueError, "`strides` > 1 is not compatible with `dilation_rate` > 1"):
        L.Conv2D(4, 3, strides=2, dilation_rate=2)
    with raises(ValueError, "`filters` must be divisible by `groups`", "filters=5, groups=2"):
        L.Conv2D(5, 3, groups=2)
    with raises(ValueError, "`output_padding` must be smaller than `strides`"):
        L.Conv2DTranspose(4, 3, strides=2, output_padding=2)
    with raises(ValueError, "`merge_mode` must be", "got 'max'"):
        L.Bidirectional(L.LSTM(3), merge_mode="max")
    with raises(TypeError, "`layer` must be an nnjax recurrent layer", "Dense"):
        L.Bidirectional(L.Dense(3))
    with raises(ValueError, "`dropout` must be in [0, 1)", "1.5"):
        L.GRU(3, dropout=1.5)
    with raises(ValueError, "`data_format` must be 'channels_last' or 'channels_first'", "'NHWC'"):
        L.MaxPooling2D(data_format="NHWC")


def test_merge_layers_check_their_inputs():
    a = np.zeros((2, 3, 4), np.float32)
    with raises(ValueError, "Add", "same (or broadcastable) shapes", "(2, 3, 4)", "(2, 3, 5)"):
        L.Add()([a, np.zeros((2, 3, 5), np.float32)])
    with raises(ValueError, "Concatenate", "matching shapes except for the concatenation axis", "(2, 4, 4)"):
        L.Concatenate()([a, np.zeros((2, 4, 4), np.float32)])
    with raises(ValueError, "Subtract", "expects 2 inputs", "received 3"):
        L.Subtract()([a, a, a])
    with raises(ValueError, "expects a list", "single input"):
        L.Add()(a)


def test_a_model_with_a_conv2d_fails_before_compiling_on_3d_data():
    model = nj.Sequential([L.Conv2D(4, 3, name="conv_m"), L.Flatten(), L.Dense(2)])
    model.compile("adam", "sparse_categorical_crossentropy")
    with raises(ValueError, 'layer "conv_m"', "expected ndim=4", "found ndim=3"):
        model.fit(np.zeros((8, 6, 6), np.float32), np.zeros(8, np.int32), verbose=0)
