"""Layer outputs against independent NumPy/SciPy references (loops and the Keras equations)."""

import itertools
import math
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.signal
from flax import nnx

import nnjax as nj

L = nj.layers
RTOL = ATOL = 1e-5  # float32 layers against float64 NumPy references


def rng(seed=0):
    return np.random.default_rng(seed)


def w(layer, name):
    return np.asarray(getattr(layer, name)[...], np.float64)


# ---------------------------------------------------------------- convolution
def np_conv(x, kernel, strides, padding, dilation, groups=1):
    """Keras/TensorFlow convolution by loops. x: (B, *spatial, C); kernel: (*K, C // groups, F)."""
    rank = x.ndim - 2
    ks = kernel.shape[:rank]
    dk = [(k - 1) * d + 1 for k, d in zip(ks, dilation, strict=False)]
    pads = []
    for n, k, s in zip(x.shape[1:-1], dk, strides, strict=False):
        if padding == "valid":
            pads.append((0, 0))
        elif padding == "causal":
            pads.append((k - 1, 0))
        else:  # same: ceil(n / s) outputs, the odd pixel of padding at the end
            total = max((math.ceil(n / s) - 1) * s + k - n, 0)
            pads.append((total // 2, total - total // 2))
    xp = np.pad(x, [(0, 0)] + pads + [(0, 0)])
    out_sizes = [(n - k) // s + 1 for n, k, s in zip(xp.shape[1:-1], dk, strides, strict=False)]
    filters = kernel.shape[-1]
    cg, fg = x.shape[-1] // groups, filters // groups
    y = np.zeros((x.shape[0], *out_sizes, filters))
    for o in itertools.product(*[range(n) for n in out_sizes]):
        for k in itertools.product(*[range(n) for n in ks]):
            pos = tuple(oi * s + ki * d for oi, ki, s, d in zip(o, k, strides, dilation, strict=False))
            patch = xp[(slice(None),) + pos]
            for g in range(groups):
                y[(slice(None),) + o + (slice(g * fg, (g + 1) * fg),)] += patch[:, g * cg:(g + 1) * cg] @ kernel[k][:, g * fg:(g + 1) * fg]
    return y


CONV2D_CASES = [
    dict(filters=4, kernel_size=3, strides=1, padding="valid", dilation_rate=1, groups=1),
    dict(filters=4, kernel_size=3, strides=2, padding="same", dilation_rate=1, groups=1),
    dict(filters=5, kernel_size=(2, 3), strides=(2, 1), padding="same", dilation_rate=1, groups=1),
    dict(filters=4, kernel_size=3, strides=1, padding="same", dilation_rate=2, groups=1),
    dict(filters=6, kernel_size=3, strides=1, padding="valid", dilation_rate=1, groups=3),
    dict(filters=4, kernel_size=4, strides=3, padding="same", dilation_rate=1, groups=2),
]


@pytest.mark.parametrize("case", CONV2D_CASES, ids=lambda c: "-".join(f"{k}{v}" for k, v in c.items()))
def test_conv2d_matches_loops(case):
    x = rng(1).normal(size=(2, 9, 8, 6)).astype(np.float32)
    layer = L.Conv2D(**case, activation="relu", bias_initializer="random_normal", key=0)
    y = np.asarray(layer(x))
    k = case["kernel_size"]
    ks = (k, k) if isinstance(k, int) else k
    s = case["strides"]
    strides = (s, s) if isinstance(s, int) else s
    d = case["dilation_rate"]
    ref = np_conv(x.astype(np.float64), w(layer, "kernel"), strides, case["padding"], (d, d), case["groups"]) + w(layer, "bias")
    ref = np.maximum(ref, 0)
    assert w(layer, "kernel").shape == ks + (6 // case["groups"], case["filters"])  # Keras's layout
    assert y.shape == ref.shape
    np.testing.assert_allclose(y, ref, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("padding,strides,dilation", [("valid", 1, 1), ("same", 2, 1), ("causal", 1, 2), ("same", 1, 3)])
def test_conv1d_matches_loops(padding, strides, dilation):
    x = rng(2).normal(size=(3, 11, 4)).astype(np.float32)
    layer = L.Conv1D(5, 3, strides=strides, padding=padding, dilation_rate=dilation, key=1)
    y = np.asarray(layer(x))
    ref = np_conv(x.astype(np.float64), w(layer, "kernel"), (strides,), padding, (dilation,)) + w(layer, "bias")
    np.testing.assert_allclose(y, ref, rtol=RTOL, atol=ATOL)


def test_conv_against_scipy_correlate():
    # One channel, one filter, "valid": Keras's convolution is SciPy's cross-correlation.
    x = rng(3).normal(size=(1, 7, 6, 1)).astype(np.float32)
    layer = L.Conv2D(1, (3, 2), use_bias=False, key=2)
    y = np.asarray(layer(x))[0, ..., 0]
    ref = scipy.signal.correlate(x[0, ..., 0].astype(np.float64), w(layer, "kernel")[..., 0, 0], mode="valid")
    np.testing.assert_allclose(y, ref, rtol=RTOL, atol=ATOL)


def test_conv3d_and_channels_first_match_loops():
    x = rng(4).normal(size=(2, 5, 6, 4, 3)).astype(np.float32)
    layer = L.Conv3D(2, 2, strides=(1, 2, 1), padding="same", key=3)
    y = np.asarray(layer(x))
    ref = np_conv(x.astype(np.float64), w(layer, "kernel"), (1, 2, 1), "same", (1, 1, 1)) + w(layer, "bias")
    np.testing.assert_allclose(y, ref, rtol=RTOL, atol=ATOL)
    x2 = rng(5).normal(size=(2, 3, 7, 6)).astype(np.float32)  # (B, C, H, W)
    layer = L.Conv2D(4, 3, strides=2, padding="same", data_format="channels_first", key=4)
    y = np.asarray(layer(x2))
    ref = np_conv(x2.transpose(0, 2, 3, 1).astype(np.float64), w(layer, "kernel"), (2, 2), "same", (1, 1)) + w(layer, "bias")
    np.testing.assert_allclose(y, ref.transpose(0, 3, 1, 2), rtol=RTOL, atol=ATOL)


def conv_matrix(in_shape, kernel, strides, padding, dilation):
    """The forward convolution as a matrix (built from NumPy loops on basis images)."""
    size = int(np.prod(in_shape))
    cols = []
    for i in range(size):
        e = np.zeros(size)
        e[i] = 1.0
        cols.append(np_conv(e.reshape((1,) + in_shape), kernel, strides, padding, dilation).ravel())
    return np.stack(cols, axis=1)


def keras_transpose_length(n, stride, kernel, padding, output_padding, dilation=1):
    """Keras's `deconv_output_length`."""
    k = (kernel - 1) * dilation + 1
    if output_padding is None:
        return n * stride if padding == "same" else (n - 1) * stride + max(k, stride)
    pad = k // 2 if padding == "same" else 0
    return (n - 1) * stride + k - 2 * pad + output_padding


@pytest.mark.parametrize("padding,strides,kernel_size,dilation,output_padding", [
    ("same", 2, 3, 1, None), ("valid", 2, 3, 1, None), ("same", 2, 4, 1, None), ("valid", 3, 2, 1, None),
    ("same", 1, 3, 2, None), ("same", 3, 2, 1, None), ("same", 2, 3, 1, 1), ("valid", 2, 3, 1, 1),
])
def test_conv2d_transpose_is_the_adjoint_of_conv2d(padding, strides, kernel_size, dilation, output_padding):
    # Conv2DTranspose(x) = C^T x, where C is the Conv2D (same kernel, strides, padding) from the Keras
    # output size to the input size: TensorFlow's definition, and Keras's output-size rule.
    x = rng(6).normal(size=(2, 4, 3, 3)).astype(np.float32)
    layer = L.Conv2DTranspose(2, kernel_size, strides=strides, padding=padding, dilation_rate=dilation,
                              output_padding=output_padding, key=5)
    y = np.asarray(layer(x))
    expected_hw = [keras_transpose_length(n, strides, kernel_size, padding, output_padding, dilation) for n in (4, 3)]
    assert y.shape == (2, *expected_hw, 2)
    assert layer.compute_output_shape((None, 4, 3, 3)) == (None, *expected_hw, 2)
    kernel = w(layer, "kernel")  # (kh, kw, filters, in): a forward conv from `filters` to `in` channels
    c = conv_matrix((*expected_hw, 2), kernel, (strides, strides), padding, (dilation, dilation))
    assert c.shape[0] == x[0].size  # the forward conv maps the output size back to the input size
    ref = (c.T @ x.reshape(2, -1).T.astype(np.float64)).T.reshape(y.shape) + w(layer, "bias")
    np.testing.assert_allclose(y, ref, rtol=RTOL, atol=ATOL)


def test_conv1d_transpose_matches_scatter_loop():
    # Direct definition for "valid": every input step adds kernel[k] @ x to output step i * stride + k.
    x = rng(7).normal(size=(1, 5, 2)).astype(np.float32)
    layer = L.Conv1DTranspose(3, 3, strides=2, key=6)
    y = np.asarray(layer(x))
    kernel = w(layer, "kernel")  # (3, filters, in)
    ref = np.zeros((1, (5 - 1) * 2 + 3, 3))
    for i in range(5):
        for k in range(3):
            ref[:, i * 2 + k] += x[:, i].astype(np.float64) @ kernel[k].T
    np.testing.assert_allclose(y, ref + w(layer, "bias"), rtol=RTOL, atol=ATOL)


# ---------------------------------------------------------------- pooling
def np_pool(x, pool, strides, padding, kind):
    rank = x.ndim - 2
    pads = []
    for n, p, s in zip(x.shape[1:-1], pool, strides, strict=False):
        if padding == "valid":
            pads.append((0, 0))
        else:
            total = max((math.ceil(n / s) - 1) * s + p - n, 0)
            pads.append((total // 2, total - total // 2))
    valid = np.pad(np.ones(x.shape[1:-1]), pads)
    xp = np.pad(x.astype(np.float64), [(0, 0)] + pads + [(0, 0)])
    out = [(n - p) // s + 1 for n, p, s in zip(xp.shape[1:-1], pool, strides, strict=False)]
    y = np.zeros((x.shape[0], *out, x.shape[-1]))
    for o in itertools.product(*[range(n) for n in out]):
        window = tuple(slice(oi * s, oi * s + p) for oi, s, p in zip(o, strides, pool, strict=False))
        vals = xp[(slice(None),) + window]
        mask = valid[window].astype(bool)
        picked = vals[:, mask]  # (B, n_valid, C)
        y[(slice(None),) + o] = picked.max(axis=1) if kind == "max" else picked.mean(axis=1)
    assert rank == len(pool)
    return y


@pytest.mark.parametrize("kind", ["max", "average"])
@pytest.mark.parametrize("pool,strides,padding", [(2, None, "valid"), (3, 2, "same"), ((2, 3), (1, 2), "same"), (3, 1, "valid")])
def test_pooling2d_matches_loops(kind, pool, strides, padding):
    x = rng(8).normal(size=(2, 7, 8, 3)).astype(np.float32)
    cls = L.MaxPooling2D if kind == "max" else L.AveragePooling2D
    y = np.asarray(cls(pool, strides, padding)(x))
    p = (pool, pool) if isinstance(pool, int) else pool
    s = p if strides is None else ((strides, strides) if isinstance(strides, int) else strides)
    np.testing.assert_allclose(y, np_pool(x, p, s, padding, kind), rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("kind", ["max", "average"])
def test_pooling1d_and_global_pools(kind):
    x = rng(9).normal(size=(2, 9, 4)).astype(np.float32)
    cls = L.MaxPooling1D if kind == "max" else L.AveragePooling1D
    np.testing.assert_allclose(np.asarray(cls(4, 3, "same")(x)), np_pool(x, (4,), (3,), "same", kind), rtol=RTOL, atol=ATOL)
    reduce = np.max if kind == "max" else np.mean
    g1 = L.GlobalMaxPooling1D() if kind == "max" else L.GlobalAveragePooling1D()
    np.testing.assert_allclose(np.asarray(g1(x)), reduce(x, axis=1), rtol=RTOL, atol=ATOL)
    x2 = rng(10).normal(size=(2, 5, 6, 3)).astype(np.float32)
    g2 = L.GlobalMaxPooling2D(keepdims=True) if kind == "max" else L.GlobalAveragePooling2D(keepdims=True)
    np.testing.assert_allclose(np.asarray(g2(x2)), reduce(x2, axis=(1, 2), keepdims=True), rtol=RTOL, atol=ATOL)


# ---------------------------------------------------------------- recurrent layers (Keras equations)
def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def np_simple_rnn(x, kernel, recurrent, bias, h):
    outs = []
    for t in range(x.shape[1]):
        h = np.tanh(x[:, t] @ kernel + h @ recurrent + bias)
        outs.append(h)
    return np.stack(outs, 1), [h]


def np_lstm(x, kernel, recurrent, bias, h, c):
    u = h.shape[-1]
    outs = []
    for t in range(x.shape[1]):
        z = x[:, t] @ kernel + h @ recurrent + bias
        i, f, g, o = sigmoid(z[:, :u]), sigmoid(z[:, u:2 * u]), np.tanh(z[:, 2 * u:3 * u]), sigmoid(z[:, 3 * u:])
        c = f * c + i * g
        h = o * np.tanh(c)
        outs.append(h)
    return np.stack(outs, 1), [h, c]


def np_gru(x, kernel, recurrent, bias, h, reset_after=True):
    u = h.shape[-1]
    outs = []
    for t in range(x.shape[1]):
        if reset_after:
            xz = x[:, t] @ kernel + bias[0]
            inner = h @ recurrent + bias[1]
            z = sigmoid(xz[:, :u] + inner[:, :u])
            r = sigmoid(xz[:, u:2 * u] + inner[:, u:2 * u])
            hh = np.tanh(xz[:, 2 * u:] + r * inner[:, 2 * u:])
        else:
            xz = x[:, t] @ kernel + bias
            z = sigmoid(xz[:, :u] + h @ recurrent[:, :u])
            r = sigmoid(xz[:, u:2 * u] + h @ recurrent[:, u:2 * u])
            hh = np.tanh(xz[:, 2 * u:] + (r * h) @ recurrent[:, 2 * u:])
        h = z * h + (1 - z) * hh
        outs.append(h)
    return np.stack(outs, 1), [h]


def run_reference(kind, layer_cell, x, init):
    kernel, recurrent, bias = (w(layer_cell, n) for n in ("kernel", "recurrent_kernel", "bias"))
    if kind == "simple_rnn":
        return np_simple_rnn(x, kernel, recurrent, bias, *init)
    if kind == "lstm":
        return np_lstm(x, kernel, recurrent, bias, *init)
    return np_gru(x, kernel, recurrent, bias, *init, reset_after=layer_cell.reset_after)


RNN_KINDS = {"simple_rnn": (L.SimpleRNN, 1), "lstm": (L.LSTM, 2), "gru": (L.GRU, 1)}


@pytest.mark.parametrize("kind", list(RNN_KINDS))
@pytest.mark.parametrize("go_backwards", [False, True])
def test_recurrent_layers_match_numpy_equations(kind, go_backwards):
    cls, num_states = RNN_KINDS[kind]
    x = rng(11).normal(size=(3, 6, 4)).astype(np.float32)
    units = 5
    layer = cls(units, return_sequences=True, return_state=True, go_backwards=go_backwards, bias_initializer="random_normal", key=7)
    out, *states = layer(x)
    init = [np.zeros((3, units))] * num_states
    xs = x[:, ::-1] if go_backwards else x
    ref_out, ref_states = run_reference(kind, layer.cell, xs.astype(np.float64), init)
    np.testing.assert_allclose(np.asarray(out), ref_out, rtol=RTOL, atol=ATOL)  # outputs in processing order, as Keras
    for got, want in zip(states, ref_states, strict=False):
        np.testing.assert_allclose(np.asarray(got), want, rtol=RTOL, atol=ATOL)
    last = cls(units, bias_initializer="random_normal", key=7)(x)  # return_sequences=False: the last output
    ref_last = run_reference(kind, layer.cell, x.astype(np.float64), init)[0][:, -1]
    np.testing.assert_allclose(np.asarray(last), ref_last, rtol=RTOL, atol=ATOL)


def test_gru_reset_before_and_initial_state_match_numpy():
    x = rng(12).normal(size=(2, 5, 3)).astype(np.float32)
    h0 = rng(13).normal(size=(2, 4)).astype(np.float32)
    layer = L.GRU(4, reset_after=False, return_sequences=True, bias_initializer="random_normal", key=8)
    out = layer(x, initial_state=[h0])
    assert layer.cell.bias.shape == (12,)
    ref, _ = np_gru(x.astype(np.float64), w(layer.cell, "kernel"), w(layer.cell, "recurrent_kernel"), w(layer.cell, "bias"),
                    h0.astype(np.float64), reset_after=False)
    np.testing.assert_allclose(np.asarray(out), ref, rtol=RTOL, atol=ATOL)


def test_lstm_initial_state_and_forget_bias():
    x = rng(14).normal(size=(2, 4, 3)).astype(np.float32)
    h0, c0 = (rng(15 + i).normal(size=(2, 6)).astype(np.float32) for i in range(2))
    layer = L.LSTM(6, key=9)
    out = layer(x, initial_state=[h0, c0])
    bias = w(layer.cell, "bias")
    np.testing.assert_array_equal(bias, np.concatenate([np.zeros(6), np.ones(6), np.zeros(12)]))  # unit_forget_bias
    ref, _ = np_lstm(x.astype(np.float64), w(layer.cell, "kernel"), w(layer.cell, "recurrent_kernel"), bias, h0, c0)
    np.testing.assert_allclose(np.asarray(out), ref[:, -1], rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("merge_mode", ["concat", "sum", "ave", "mul", None])
def test_bidirectional_matches_numpy(merge_mode):
    x = rng(16).normal(size=(2, 5, 3)).astype(np.float32)
    layer = L.Bidirectional(L.LSTM(4, return_sequences=True, bias_initializer="random_normal"), merge_mode=merge_mode, key=10)
    out = layer(x)
    zeros = [np.zeros((2, 4))] * 2
    fw, _ = run_reference("lstm", layer.forward_layer.cell, x.astype(np.float64), zeros)
    bw, _ = run_reference("lstm", layer.backward_layer.cell, x[:, ::-1].astype(np.float64), zeros)
    bw = bw[:, ::-1]  # flipped back to time order
    expected = {"concat": np.concatenate([fw, bw], -1), "sum": fw + bw, "ave": (fw + bw) / 2, "mul": fw * bw, None: [fw, bw]}[merge_mode]
    if merge_mode is None:
        for got, want in zip(out, expected, strict=False):
            np.testing.assert_allclose(np.asarray(got), want, rtol=RTOL, atol=ATOL)
    else:
        np.testing.assert_allclose(np.asarray(out), expected, rtol=RTOL, atol=ATOL)
    assert layer.backward_layer.go_backwards and not layer.forward_layer.go_backwards


def test_bidirectional_return_state_gru():
    x = rng(17).normal(size=(2, 4, 3)).astype(np.float32)
    out, h_fw, h_bw = L.Bidirectional(L.GRU(3, return_state=True), key=11)(x)
    assert out.shape == (2, 6) and h_fw.shape == (2, 3) and h_bw.shape == (2, 3)
    np.testing.assert_allclose(np.asarray(out), np.concatenate([h_fw, h_bw], -1), rtol=0, atol=0)


# ---------------------------------------------------------------- normalisation
def test_batch_normalization_training_inference_and_running_stats():
    momentum, eps = 0.9, 1e-3
    layer = L.BatchNormalization(momentum=momentum, gamma_initializer="random_normal", beta_initializer="random_normal", key=12)
    batches = [rng(20 + i).normal(loc=i, scale=1 + i, size=(6, 3, 2, 4)).astype(np.float32) for i in range(3)]
    mean_ref, var_ref = np.zeros(4), np.ones(4)
    gamma = beta = None
    for x in batches:
        y = np.asarray(layer(x, training=True))
        gamma, beta = w(layer, "gamma"), w(layer, "beta")
        xd = x.astype(np.float64)
        bm, bv = xd.mean(axis=(0, 1, 2)), xd.var(axis=(0, 1, 2))  # biased, as Keras
        np.testing.assert_allclose(y, gamma * (xd - bm) / np.sqrt(bv + eps) + beta, rtol=1e-4, atol=1e-4)
        mean_ref = mean_ref * momentum + bm * (1 - momentum)
        var_ref = var_ref * momentum + bv * (1 - momentum)
        np.testing.assert_allclose(w(layer, "moving_mean"), mean_ref, rtol=RTOL, atol=ATOL)
        np.testing.assert_allclose(w(layer, "moving_variance"), var_ref, rtol=RTOL, atol=ATOL)
    x = batches[0]
    y = np.asarray(layer(x, training=False))  # inference: running statistics, which do not move
    np.testing.assert_allclose(y, gamma * (x - mean_ref) / np.sqrt(var_ref + eps) + beta, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(w(layer, "moving_mean"), mean_ref, rtol=RTOL, atol=ATOL)
    assert isinstance(layer.moving_mean, nnx.BatchStat) and isinstance(layer.gamma, nnx.Param)
    defaults = L.BatchNormalization()
    assert (defaults.momentum, defaults.epsilon) == (0.99, 1e-3)  # Keras's defaults


def test_batch_normalization_stats_in_train_state(digits):
    # The running statistics live in TrainState.model_state and move with each train_step.
    (x_train, y_train), _ = digits
    x = x_train[:64].reshape(64, 64)
    y = y_train[:64]
    model = nj.Sequential([L.BatchNormalization(momentum=0.5, key=0), L.Dense(10, activation="softmax", key=1)])
    model.build((None, 64))
    model.compile("sgd", "sparse_categorical_crossentropy")
    state = model.state
    assert sorted(a.shape for a in jax.tree.leaves(state.model_state)) == [(64,), (64,)]  # moving mean and variance
    step = jax.jit(nj.train.train_step)
    new_state, _ = step(state, (jnp.asarray(x[:32]), jnp.asarray(y[:32])))
    new_state, _ = step(new_state, (jnp.asarray(x[32:]), jnp.asarray(y[32:])))
    mean_ref = np.zeros(64)
    for part in (x[:32], x[32:]):
        mean_ref = mean_ref * 0.5 + part.astype(np.float64).mean(0) * 0.5
    merged = nnx.merge(new_state.graphdef, new_state.params, new_state.model_state)
    np.testing.assert_allclose(np.asarray(merged.layers[0].moving_mean[...]), mean_ref, rtol=RTOL, atol=ATOL)


def test_batch_normalization_data_parallel_uses_the_global_batch():
    # Under jit with the batch sharded over 8 devices the statistics are those of the whole batch.
    devices = jax.devices()
    assert len(devices) >= 2
    layer = L.BatchNormalization(momentum=0.0, key=0)
    x = rng(30).normal(loc=2.0, size=(16, 5)).astype(np.float32)
    layer(x[:2])
    graphdef, state = nnx.split(layer)
    mesh = jax.make_mesh((len(devices),), ("data",))
    xs = jax.device_put(x, jax.sharding.NamedSharding(mesh, jax.P("data")))

    def train(state, x):
        module = nnx.merge(graphdef, state)
        y = module(x, training=True)
        return y, nnx.state(module)

    y, new_state = jax.jit(train)(state, xs)
    module = nnx.merge(graphdef, new_state)
    np.testing.assert_allclose(np.asarray(module.moving_mean[...]), x.astype(np.float64).mean(0), rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(np.asarray(module.moving_variance[...]), x.astype(np.float64).var(0), rtol=1e-4, atol=1e-5)
    # Under vmap over a named axis (per-device code), axis_name averages the statistics over it.
    named = L.BatchNormalization(momentum=0.0, axis_name="devices", key=0)
    named(x[:2])
    graphdef2, state2 = nnx.split(named)

    def per_shard(state, x_shard):
        module = nnx.merge(graphdef2, state)
        y = module(x_shard, training=True)
        return y, nnx.state(module)

    y_shards, shard_states = jax.vmap(per_shard, in_axes=(None, 0), axis_name="devices")(state2, x.reshape(4, 4, 5))
    x64 = x.astype(np.float64)
    expected = (x64 - x64.mean(0)) / np.sqrt(x64.var(0) + 1e-3)
    np.testing.assert_allclose(np.asarray(y_shards).reshape(16, 5), expected, rtol=1e-4, atol=1e-4)
    stats = nnx.merge(graphdef2, shard_states)
    np.testing.assert_allclose(np.asarray(stats.moving_mean[...]), np.broadcast_to(x64.mean(0), (4, 5)), rtol=RTOL, atol=ATOL)


def test_batch_normalization_in_a_vmapped_ensemble():
    # vmap over two stacked train states: each member keeps its own statistics (no shared state).
    model = nj.Sequential([L.BatchNormalization(momentum=0.0, key=0), L.Dense(1, key=1)])
    model.build((None, 3))
    model.compile("sgd", "mse")
    state = model.state
    stacked = jax.tree.map(lambda a: jnp.stack([a, a]), state)
    xs = rng(31).normal(size=(2, 8, 3)).astype(np.float32) + np.array([0.0, 5.0])[:, None, None].astype(np.float32)
    ys = np.zeros((2, 8, 1), np.float32)
    new, _ = jax.jit(jax.vmap(nj.train.train_step))(stacked, (xs, ys))
    for member in range(2):
        single = jax.tree.map(lambda a, m=member: a[m], new)
        bn = nnx.merge(single.graphdef, single.params, single.model_state).layers[0]
        np.testing.assert_allclose(np.asarray(bn.moving_mean[...]), xs[member].astype(np.float64).mean(0), rtol=RTOL, atol=ATOL)


def test_layer_normalization_matches_numpy():
    x = rng(32).normal(size=(2, 3, 6)).astype(np.float32)
    layer = L.LayerNormalization(gamma_initializer="random_normal", beta_initializer="random_normal", key=13)
    y = np.asarray(layer(x))
    xd = x.astype(np.float64)
    ref = (xd - xd.mean(-1, keepdims=True)) / np.sqrt(xd.var(-1, keepdims=True) + 1e-3) * w(layer, "gamma") + w(layer, "beta")
    np.testing.assert_allclose(y, ref, rtol=1e-4, atol=1e-5)
    multi = L.LayerNormalization(axis=(1, 2), key=14)
    ref2 = (xd - xd.mean((1, 2), keepdims=True)) / np.sqrt(xd.var((1, 2), keepdims=True) + 1e-3)
    np.testing.assert_allclose(np.asarray(multi(x)), ref2, rtol=1e-4, atol=1e-5)
    rms = L.LayerNormalization(rms_scaling=True, key=15)
    # Keras 3's rms_scaling divides the uncentred input by sqrt(variance + eps); Keras itself is the oracle.
    np.testing.assert_allclose(np.asarray(rms(x)), xd / np.sqrt(xd.var(-1, keepdims=True) + 1e-3), rtol=1e-4, atol=1e-5)
    keras = pytest.importorskip("keras")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Keras deprecates rms_scaling; it still computes it
        theirs = np.asarray(keras.layers.LayerNormalization(rms_scaling=True)(x))
    np.testing.assert_allclose(np.asarray(rms(x)), theirs, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------- attention
def np_attention(q_in, v_in, k_in, layer, mask):
    wq, wk, wv, wo = (w(layer, n) for n in ("query_kernel", "key_kernel", "value_kernel", "output_kernel"))
    bq, bk, bv, bo = (w(layer, n) for n in ("query_bias", "key_bias", "value_bias", "output_bias"))
    q = np.einsum("btd,dnh->bnth", q_in, wq) + bq[None, :, None, :]
    k = np.einsum("bsd,dnh->bnsh", k_in, wk) + bk[None, :, None, :]
    v = np.einsum("bsd,dnh->bnsh", v_in, wv) + bv[None, :, None, :]
    logits = q @ k.transpose(0, 1, 3, 2) / np.sqrt(q.shape[-1])
    if mask is not None:
        logits = np.where(mask[:, None], logits, -np.inf)
    probs = np.exp(logits - logits.max(-1, keepdims=True))
    probs = probs / probs.sum(-1, keepdims=True)
    heads = probs @ v  # (b, n, t, h)
    return np.einsum("bnth,nho->bto", heads, wo) + bo, probs


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("with_mask", [False, True])
def test_multi_head_attention_matches_numpy(causal, with_mask):
    r = rng(40)
    query = r.normal(size=(2, 5, 8)).astype(np.float32)
    value = r.normal(size=(2, 5, 6)).astype(np.float32)
    key = r.normal(size=(2, 5, 7)).astype(np.float32)
    layer = L.MultiHeadAttention(num_heads=2, key_dim=3, bias_initializer="random_normal", key=16)
    mask = None
    if with_mask:
        mask = r.random((2, 5, 5)) > 0.3
        mask[:, :, 0] = True  # every query sees at least one position
    out, scores = layer(query, value, key, attention_mask=mask, use_causal_mask=causal, return_attention_scores=True)
    fused = layer(query, value, key, attention_mask=mask, use_causal_mask=causal)  # jax.nn.dot_product_attention path
    full = None if mask is None else mask
    if causal:
        tri = np.tril(np.ones((5, 5), bool))[None]
        full = tri if full is None else full & tri
    ref, ref_probs = np_attention(query.astype(np.float64), value.astype(np.float64), key.astype(np.float64), layer, full)
    np.testing.assert_allclose(np.asarray(out), ref, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(np.asarray(fused), ref, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(np.asarray(scores), ref_probs, rtol=1e-4, atol=1e-6)
    assert out.shape == (2, 5, 8)


def test_cross_attention_lengths_and_self_attention_default():
    r = rng(41)
    query = r.normal(size=(2, 3, 8)).astype(np.float32)
    value = r.normal(size=(2, 6, 8)).astype(np.float32)
    layer = L.MultiHeadAttention(num_heads=4, output_shape=5, key=17)  # key_dim = 8 // 4
    out = layer(query, value)
    ref, _ = np_attention(query.astype(np.float64), value.astype(np.float64), value.astype(np.float64), layer, None)
    np.testing.assert_allclose(np.asarray(out), ref, rtol=1e-4, atol=1e-5)
    assert layer.key_dim == 2 and out.shape == (2, 3, 5)
    self_layer = L.MultiHeadAttention(num_heads=2, key_dim=4, key=18)
    q = r.normal(size=(1, 4, 8)).astype(np.float32)
    np.testing.assert_allclose(np.asarray(self_layer(q)), np.asarray(self_layer(q, q, q)), rtol=0, atol=0)


def test_attention_dropout_uses_the_key():
    r = rng(42)
    x = r.normal(size=(2, 6, 8)).astype(np.float32)
    layer = L.MultiHeadAttention(num_heads=2, key_dim=4, dropout=0.5, key=19)
    a = np.asarray(layer(x, x, training=True, rng=jax.random.key(1)))
    b = np.asarray(layer(x, x, training=True, rng=jax.random.key(1)))
    c = np.asarray(layer(x, x, training=True, rng=jax.random.key(2)))
    d = np.asarray(layer(x, x))
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c) and not np.allclose(a, d)
    with pytest.raises(ValueError, match="needs a PRNG key"):
        layer(x, x, training=True)


# ---------------------------------------------------------------- embedding, dropout, merge
def test_embedding_lookup_matches_numpy_indexing():
    ids = np.array([[0, 3, 9], [9, 1, 1]])
    layer = L.Embedding(10, 4, key=20)
    out = np.asarray(layer(ids))
    table = w(layer, "embeddings")
    np.testing.assert_allclose(out, table[ids], rtol=0, atol=0)
    assert np.all(np.abs(table) <= 0.05)  # Keras's U(-0.05, 0.05)
    # Inside jit an out-of-range id cannot be checked: it gives NaN, not a silently clamped row.
    graphdef, state = nnx.split(layer)
    out = np.asarray(jax.jit(lambda s, i: nnx.merge(graphdef, s)(i))(state, jnp.array([[1, 10, -1]])))
    assert np.all(np.isfinite(out[0, 0])) and np.all(np.isnan(out[0, 1])) and np.all(np.isnan(out[0, 2]))


def test_dropout_training_inference_and_keys():
    x = np.ones((200, 50), np.float32)
    layer = L.Dropout(0.3)
    np.testing.assert_array_equal(np.asarray(layer(x)), x)
    y = np.asarray(layer(x, training=True, key=jax.random.key(0)))
    kept = y != 0
    assert abs(kept.mean() - 0.7) < 0.02
    np.testing.assert_allclose(y[kept], 1 / 0.7, rtol=1e-6)
    np.testing.assert_array_equal(y, np.asarray(layer(x, training=True, key=jax.random.key(0))))
    assert not np.array_equal(y, np.asarray(layer(x, training=True, key=jax.random.key(1))))


def test_merge_layers_match_numpy():
    r = rng(50)
    a, b, c = (r.normal(size=(2, 3, 4)).astype(np.float32) for _ in range(3))
    np.testing.assert_allclose(np.asarray(L.Add()([a, b, c])), a + b + c, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(L.Subtract()([a, b])), a - b, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(L.Multiply()([a, b])), a * b, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(L.Average()([a, b])), (a + b) / 2, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(L.Maximum()([a, b])), np.maximum(a, b), rtol=0)
    np.testing.assert_allclose(np.asarray(L.Minimum()([a, b])), np.minimum(a, b), rtol=0)
    np.testing.assert_allclose(np.asarray(L.Concatenate(axis=1)([a, b[:, :2]])), np.concatenate([a, b[:, :2]], 1), rtol=0)
