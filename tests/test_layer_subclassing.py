"""Keras-style subclassed layers: sublayers, training flag and keys, call signatures, build/add_weight.

Each test runs the Keras idiom unchanged on nnjax; Keras 3 (JAX backend) is the oracle for parameter
counts, weights and outputs.
"""

import jax
import jax.numpy as jnp
import keras
import numpy as np
import optax
import pytest
from flax import nnx

import nnjax as nj
from nnjax.train import steps
from nnjax.utils import random as nj_random


def regression_data(n=256, features=4, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, features)).astype(np.float32)
    w = rng.normal(size=(features, 1)).astype(np.float32)
    return x, (x @ w + 0.5).astype(np.float32)


def make_relu_head(layers):
    """Sublayers made in `__init__` and chained in `call` (the same source builds the Keras and nnjax layer)."""

    class ReluHead(layers.Layer):
        def __init__(self, width, **kwargs):
            super().__init__(**kwargs)
            self.expand = layers.Dense(width, activation="relu")
            self.project = layers.Dense(1)

        def call(self, features):
            return self.project(self.expand(features))

    return ReluHead


def test_sublayers_made_in_init_are_parameters_and_train():
    x, y = regression_data()
    nj.utils.set_random_seed(0)
    block = make_relu_head(nj.layers)(16)
    model = nj.Sequential([block])
    model.compile(optimizer=optax.adam(0.02), loss="mse")
    history = model.fit(x, y, epochs=15, batch_size=32, verbose=0)
    losses = history.history["loss"]
    # Linear target, 4 -> 16 -> 1 ReLU net: Adam brings the MSE down by far more than 10x in 120 steps.
    assert losses[-1] < 0.1 * losses[0], losses

    keras_block = make_relu_head(keras.layers)(16)
    keras_block(np.zeros((1, 4), np.float32))
    assert model.count_params() == keras_block.count_params() == block.count_params() == 4 * 16 + 16 + 16 + 1
    params = nnx.state(model.module, nnx.Param)
    assert sum(np.size(a) for a in jax.tree.leaves(params)) == keras_block.count_params()
    assert sum(np.size(a) for a in jax.tree.leaves(model.state.params)) == keras_block.count_params()
    assert [tuple(w.shape) for w in block.weights] == [tuple(w.shape) for w in keras_block.weights]
    assert [w.name for w in block.weights] == [w.name for w in keras_block.weights] == ["kernel", "bias"] * 2


def make_encoder_layer(lib):
    """A transformer encoder layer as a subclassed Keras `Layer`, built from `lib` (`keras` or `nnjax`).

    The Keras idiom: a custom layer holding other layers as attributes made in `__init__` (a
    `MultiHeadAttention`, a `Sequential` feed-forward net, two `LayerNormalization`s, two `Dropout`s),
    wired in `call` as a post-norm residual block: each of the two sub-blocks adds its dropped-out output
    to its input, then normalises. Attention is the first attribute, so its weights come first in
    `weights` in both frameworks.
    """

    class EncoderLayer(lib.layers.Layer):
        def __init__(self, width, heads, hidden, drop_rate=0.15, **kwargs):
            super().__init__(**kwargs)
            self.attention = lib.layers.MultiHeadAttention(num_heads=heads, key_dim=width // heads)
            self.feed_forward = lib.Sequential([lib.layers.Dense(hidden, activation="gelu"), lib.layers.Dense(width)])
            self.attention_norm = lib.layers.LayerNormalization(epsilon=1e-5)
            self.feed_forward_norm = lib.layers.LayerNormalization(epsilon=1e-5)
            self.attention_drop = lib.layers.Dropout(drop_rate)
            self.feed_forward_drop = lib.layers.Dropout(drop_rate)

        def call(self, tokens):
            mixed = self.attention(query=tokens, value=tokens)  # self-attention: `key` defaults to `value`
            tokens = self.attention_norm(tokens + self.attention_drop(mixed))
            return self.feed_forward_norm(tokens + self.feed_forward_drop(self.feed_forward(tokens)))

    return EncoderLayer


def test_transformer_encoder_layer_counts_like_keras_and_trains():
    width, heads, hidden, length = 8, 2, 16, 6
    rng = np.random.default_rng(1)
    x = rng.normal(size=(192, length, width)).astype(np.float32)
    y = (x[:, :, 0].mean(axis=1) > 0).astype(np.int32)

    nj.utils.set_random_seed(0)
    block = make_encoder_layer(nj)(width, heads, hidden)
    model = nj.Sequential([block, nj.layers.GlobalAveragePooling1D(), nj.layers.Dense(2, activation="softmax")])
    model.build((None, length, width))

    keras_block = make_encoder_layer(keras)(width, heads, hidden)
    keras_block(np.zeros((1, length, width), np.float32))
    assert block.count_params() == keras_block.count_params()
    assert sorted(tuple(w.shape) for w in block.weights) == sorted(tuple(w.shape) for w in keras_block.weights)
    # Same forward pass as Keras with Keras's weights (nnjax's attention holds its four kernels, then
    # its four biases; Keras interleaves them). float32, a few matmuls and two LayerNorms: 1e-5.
    keras_weights = keras_block.get_weights()
    probe = make_encoder_layer(nj)(width, heads, hidden)
    probe(x[:1])
    probe.set_weights([keras_weights[i] for i in (0, 2, 4, 6, 1, 3, 5, 7)] + keras_weights[8:])
    np.testing.assert_allclose(probe(x[:4]), keras_block(x[:4]), rtol=1e-5, atol=1e-5)
    # The held Sequential (the feed-forward net) is part of the model's parameters.
    feed_forward_params = nnx.state(block.feed_forward, nnx.Param)
    assert sum(np.size(a) for a in jax.tree.leaves(feed_forward_params)) == width * hidden + hidden + hidden * width + width

    before = jax.tree.map(np.array, nnx.state(block.feed_forward, nnx.Param))
    model.compile(optimizer=optax.adam(0.01), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    history = model.fit(x, y, epochs=8, batch_size=32, verbose=0)
    losses = history.history["loss"]
    # A separable label (sign of a mean): cross-entropy falls well below its start of ~log(2).
    assert losses[-1] < 0.6 * losses[0], losses
    after = nnx.state(block.feed_forward, nnx.Param)
    moved = [float(np.abs(np.asarray(a) - b).max()) for a, b in zip(jax.tree.leaves(after), jax.tree.leaves(before), strict=True)]
    assert min(moved) > 0.0


def make_dropout_block(layers, explicit: bool):
    class DropoutBlock(layers.Layer):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.dense = layers.Dense(32)
            self.dropout = layers.Dropout(0.5)

        def call(self, inputs, training=None):
            if explicit:
                return self.dropout(self.dense(inputs), training=training)
            return self.dropout(self.dense(inputs))

    return DropoutBlock


@pytest.mark.parametrize("explicit", [False, True], ids=["inherited_flag", "explicit_flag"])
def test_dropout_inside_call_follows_the_outer_training_flag_and_key(explicit):
    x = np.random.default_rng(2).normal(size=(8, 4)).astype(np.float32)
    block = make_dropout_block(nj.layers, explicit)()
    block(x)
    k1, k2 = jax.random.PRNGKey(1), jax.random.PRNGKey(2)

    forward = jax.jit(lambda state, key: steps.call_module(nnx.merge(graphdef, state), x, training=True, key=key))
    graphdef, state = nnx.split(block)
    a, b, a_again = forward(state, k1), forward(state, k2), forward(state, k1)
    dense = np.asarray(x @ block.dense.kernel[...] + block.dense.bias[...])
    assert not np.allclose(a, b)  # distinct keys: distinct masks
    np.testing.assert_array_equal(a, a_again)  # reproducible from the step key
    dropped = np.asarray(a) == 0.0
    assert 0.2 < dropped.mean() < 0.8
    np.testing.assert_allclose(np.asarray(a)[~dropped], 2.0 * dense[~dropped], rtol=1e-6)

    model = nj.Sequential([block])
    model.build((None, 4))
    model.compile(optimizer=optax.sgd(0.0), loss="mse")
    y = np.zeros((8, 32), np.float32)
    fit_loss = model.fit(x, y, epochs=1, batch_size=8, verbose=0).history["loss"][0]
    eval_loss = model.evaluate(x, y, batch_size=8, verbose=0)
    eval_loss = eval_loss["loss"] if isinstance(eval_loss, dict) else eval_loss
    # Inference is the plain dense layer; training drops half the units and doubles the rest.
    np.testing.assert_allclose(eval_loss, np.mean(dense**2), rtol=1e-5)
    assert abs(fit_loss - eval_loss) > 0.1 * eval_loss
    p1, p2 = model.predict(x, verbose=0), model.predict(x, verbose=0)
    np.testing.assert_array_equal(p1, p2)
    np.testing.assert_allclose(p1, dense, rtol=1e-5, atol=1e-6)


def test_explicit_training_false_inside_call_is_honoured():
    class AlwaysInference(nj.layers.Layer):
        def __init__(self):
            super().__init__()
            self.dropout = nj.layers.Dropout(0.5)

        def call(self, inputs, training=None):
            return self.dropout(inputs, training=False)

    layer = AlwaysInference()
    x = jnp.ones((4, 8))
    np.testing.assert_array_equal(layer(x, training=True, key=jax.random.PRNGKey(0)), x)


def make_bn_block(layers):
    class NormBlock(layers.Layer):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.dense = layers.Dense(3)
            self.bn = layers.BatchNormalization()

        def call(self, inputs, training=False, mask=None):
            return self.bn(self.dense(inputs))

    return NormBlock


def test_batchnorm_inside_call_updates_moving_stats_in_fit_only():
    x, _ = regression_data(n=64)
    x = x * 3.0 + 2.0
    y = np.zeros((64, 3), np.float32)
    nj.utils.set_random_seed(0)
    block = make_bn_block(nj.layers)()
    model = nj.Sequential([block])
    model.build((None, 4))
    assert len(block.non_trainable_weights) == 2 and len(block.trainable_weights) == 4
    model.compile(optimizer=optax.sgd(0.0), loss="mse")
    start = [w.numpy().copy() for w in block.non_trainable_weights]
    model.fit(x, y, epochs=1, batch_size=64, verbose=0)
    fitted = [w.numpy().copy() for w in block.non_trainable_weights]
    # One batch: moving_mean = 0.99 * 0 + 0.01 * batch mean of the dense outputs (Keras's momentum 0.99).
    h = x @ block.dense.kernel[...] + block.dense.bias[...]
    np.testing.assert_allclose(fitted[0], 0.01 * np.asarray(h).mean(axis=0), rtol=1e-4, atol=1e-6)
    assert not np.allclose(fitted[0], start[0])
    model.evaluate(x, y, batch_size=64, verbose=0)
    model.predict(x, verbose=0)
    for now, then in zip(block.non_trainable_weights, fitted, strict=True):
        np.testing.assert_array_equal(now.numpy(), then)


@pytest.mark.parametrize("style", ["inputs", "training_none", "training_mask", "nnjax"])
def test_every_keras_call_signature_is_accepted(style):
    if style == "inputs":
        class Scale(nj.layers.Layer):
            def call(self, inputs):
                return inputs * 3.0
    elif style == "training_none":
        class Scale(nj.layers.Layer):
            def call(self, inputs, training=None):
                return inputs * (2.0 if training else 1.0)
    elif style == "training_mask":
        class Scale(nj.layers.Layer):
            def call(self, inputs, training=False, mask=None):
                return inputs * (2.0 if training else 1.0) if mask is None else inputs * mask
    else:
        class Scale(nj.layers.Layer):
            def call(self, x, *, training, key):
                return x + (jax.random.normal(key, x.shape) if training else 0.0)

    layer = Scale()
    x = jnp.ones((2, 3))
    layer(x)  # built eagerly (as a model builds it before compiling its step)
    train_out = jax.jit(lambda v, k: steps.call_module(layer, v, training=True, key=k))(x, jax.random.PRNGKey(0))
    infer_out = steps.call_module(layer, x, training=False)
    expected_train = {"inputs": 3.0 * x, "training_none": 2.0 * x, "training_mask": 2.0 * x}
    if style in expected_train:
        np.testing.assert_array_equal(train_out, expected_train[style])
        np.testing.assert_array_equal(infer_out, x * (3.0 if style == "inputs" else 1.0))
    else:
        np.testing.assert_allclose(train_out, x + jax.random.normal(jax.random.PRNGKey(0), x.shape), rtol=1e-6)
        np.testing.assert_array_equal(infer_out, x)
    if style == "training_mask":
        np.testing.assert_array_equal(layer(x, mask=jnp.zeros((2, 3))), jnp.zeros((2, 3)))


def make_gaussian_draw(layers, random, ops):
    """A VAE's sampling step as a subclassed `Layer`: given the pair `(mean, log_variance)` it returns
    `mean + exp(log_variance / 2) * noise` with standard-normal noise (the reparameterisation trick, so
    gradients reach both inputs). The noise comes from a `SeedGenerator` the layer holds, the Keras way
    of giving a layer its own randomness."""

    class GaussianDraw(layers.Layer):
        def __init__(self, noise_seed=2024, **kwargs):
            super().__init__(**kwargs)
            self.noise_seeds = random.SeedGenerator(noise_seed)

        def call(self, moments):
            mean, log_variance = moments
            noise = random.normal(shape=ops.shape(mean), seed=self.noise_seeds)
            return mean + noise * ops.exp(log_variance / 2.0)

    return GaussianDraw


def test_gaussian_draw_takes_a_tuple_eagerly_and_under_jit():
    GaussianDraw = make_gaussian_draw(nj.layers, nj_random, nj.ops)  # noqa: N806 - a class
    means = jnp.full((4000, 2), 1.5)
    log_vars = jnp.full((4000, 2), np.log(4.0))

    layer = GaussianDraw()
    z = layer([means, log_vars])
    assert layer.built and layer.built_input_shape == [(None, 2), (None, 2)]
    # z ~ N(1.5, 2^2): 8000 draws put the sample mean within 0.1 and the std within 0.1 (> 4 sigma).
    assert abs(float(z.mean()) - 1.5) < 0.1 and abs(float(z.std()) - 2.0) < 0.1
    assert not np.allclose(z, layer([means, log_vars]))  # the generator advances eagerly, as in Keras

    jitted = jax.jit(lambda m, v, k: layer((m, v), key=k))
    a, b = jitted(means, log_vars, jax.random.PRNGKey(0)), jitted(means, log_vars, jax.random.PRNGKey(1))
    np.testing.assert_array_equal(a, jitted(means, log_vars, jax.random.PRNGKey(0)))
    assert not np.allclose(a, b)
    assert abs(float(a.mean()) - 1.5) < 0.1 and abs(float(a.std()) - 2.0) < 0.1
    # The reparameterisation trick: z = mean + noise * exp(log_var / 2), so dz/dmean = 1 and
    # dz/dlog_var = (z - mean) / 2 for the same key (the same noise).
    key = jax.random.PRNGKey(0)
    d_mean, d_log_var = jax.grad(lambda m, v: jnp.sum(layer((m, v), key=key)), argnums=(0, 1))(means, log_vars)
    np.testing.assert_allclose(d_mean, np.ones(means.shape), rtol=1e-6)
    np.testing.assert_allclose(d_log_var, (np.asarray(a) - 1.5) / 2.0, rtol=1e-5, atol=1e-6)

    seen = {}

    class Recorder(GaussianDraw):
        def build(self, input_shape):
            seen["shape"] = input_shape

    Recorder()((means[:3], log_vars[:3]))
    assert seen["shape"] == ((3, 2), (3, 2))
    fresh = GaussianDraw()
    with pytest.raises(RuntimeError, match="first time inside a jax.jit"):
        jax.jit(lambda m, v, k: fresh((m, v), key=k))(means, log_vars, jax.random.PRNGKey(0))
    # Without a key a compiled function reuses one draw at every run: it says so.
    with pytest.warns(UserWarning, match="without a key"):
        jax.jit(lambda m, v: layer((m, v)))(means, log_vars)


def test_encoder_with_sampling_and_add_loss_trains_under_fit():
    GaussianDraw = make_gaussian_draw(nj.layers, nj_random, nj.ops)  # noqa: N806 - a class
    layers = nj.layers

    class LatentEncoder(layers.Layer):
        def __init__(self, latent_dim, **kwargs):
            super().__init__(**kwargs)
            self.to_mean = layers.Dense(latent_dim)
            self.to_log_variance = layers.Dense(latent_dim)
            self.draw = GaussianDraw()

        def call(self, features):
            mean, log_variance = self.to_mean(features), self.to_log_variance(features)
            # KL(N(mean, exp(log_variance)) || N(0, 1)), summed over latent axes, averaged over the batch.
            self.add_loss(0.5 * jnp.mean(jnp.sum(jnp.exp(log_variance) + mean**2 - 1.0 - log_variance, axis=-1)))
            return self.draw((mean, log_variance))

    x, y = regression_data(n=128)
    nj.utils.set_random_seed(0)
    encoder = LatentEncoder(1)
    model = nj.Sequential([encoder])
    model.compile(optimizer=optax.adam(0.05), loss="mse")
    model.build((None, 4))
    state = model.state
    batch = (jnp.asarray(x), jnp.asarray(y))
    loss, (outputs, *_rest) = steps.compute_loss(state, state.params, batch, training=True, key=jax.random.PRNGKey(3))
    mean = x @ encoder.to_mean.kernel[...] + encoder.to_mean.bias[...]
    log_variance = x @ encoder.to_log_variance.kernel[...] + encoder.to_log_variance.bias[...]
    kl = 0.5 * np.mean(np.sum(np.exp(log_variance) + mean**2 - 1.0 - log_variance, axis=1))
    np.testing.assert_allclose(loss, np.mean((np.asarray(outputs) - y) ** 2) + kl, rtol=1e-5)
    history = model.fit(x, y, epochs=10, batch_size=32, verbose=0)
    assert history.history["loss"][-1] < 0.5 * history.history["loss"][0]
    encoder(x[:5])
    assert len(encoder.losses) == 1


def make_scaled_tanh(layers, ops):
    """A layer whose weights are made in `build` with `add_weight` once the input width is known, with a
    non-trainable running sum updated by `assign_add` in `call`, and a `get_config` for its arguments."""

    class ScaledTanh(layers.Layer):
        def __init__(self, units=32, gain=1.0, **kwargs):
            super().__init__(**kwargs)
            self.units, self.gain = units, gain

        def build(self, input_shape):
            width = input_shape[-1]
            self.matrix = self.add_weight(shape=(width, self.units), initializer="random_normal", name="matrix")
            self.offset = self.add_weight(shape=(self.units,), initializer="zeros", name="offset")
            self.seen_sum = self.add_weight(shape=(), initializer="zeros", trainable=False, name="seen_sum")

        def call(self, features):
            self.seen_sum.assign_add(ops.sum(features))
            return ops.tanh(ops.matmul(features, self.matrix) + self.offset) * self.gain

        def get_config(self):
            return {**super().get_config(), "units": self.units, "gain": self.gain}

    return ScaledTanh


def test_keras_style_build_and_add_weight_match_keras():
    x = np.random.default_rng(4).normal(size=(5, 6)).astype(np.float32)
    keras_layer = make_scaled_tanh(keras.layers, keras.ops)(units=3, gain=2.0)
    keras_out = np.asarray(keras_layer(x))

    nj.utils.set_random_seed(0)
    layer = make_scaled_tanh(nj.layers, nj.ops)(units=3, gain=2.0)
    layer(x[:1])
    assert [w.name for w in layer.weights] == [w.name for w in keras_layer.weights] == ["matrix", "offset", "seen_sum"]
    assert len(layer.trainable_weights) == len(keras_layer.trainable_weights) == 2
    assert len(layer.non_trainable_weights) == len(keras_layer.non_trainable_weights) == 1
    assert layer.count_params() == keras_layer.count_params()
    # The framework-supplied initialisation is Keras's random_normal (stddev 0.05), not zeros.
    assert 0.0 < float(np.std(layer.matrix.numpy())) < 0.2

    layer.set_weights([w.numpy() for w in keras_layer.trainable_weights] + [np.zeros((), np.float32)])
    out = np.asarray(layer(x))
    np.testing.assert_allclose(out, keras_out, rtol=1e-6, atol=1e-6)  # float32 matmul + tanh, same order of ops
    np.testing.assert_allclose(layer.seen_sum.numpy(), keras_layer.seen_sum.numpy(), rtol=1e-6)
    layer.matrix.assign(np.ones((6, 3), np.float32))
    assert layer.matrix.shape == (6, 3) and np.all(layer.matrix.numpy() == 1.0)
    with pytest.raises(ValueError, match="shape"):
        layer.matrix.assign(np.ones((3, 3)))

    config = layer.get_config()
    assert set(config) == set(keras_layer.get_config())
    clone = type(layer).from_config(config)
    assert clone.get_config() == config and clone.units == 3 and clone.gain == 2.0

    seeded = [make_scaled_tanh(nj.layers, nj.ops)(units=3, seed=7) for _ in range(2)]
    for s in seeded:
        s(x)
    np.testing.assert_array_equal(seeded[0].matrix.numpy(), seeded[1].matrix.numpy())


def test_keras_layer_trains_and_counts_inside_a_model():
    x, y = regression_data()
    nj.utils.set_random_seed(1)
    ScaledTanh = make_scaled_tanh(nj.layers, nj.ops)  # noqa: N806 - a class
    model = nj.Sequential([ScaledTanh(units=8), nj.layers.Dense(1)])
    model.compile(optimizer=optax.adam(0.02), loss="mse")
    history = model.fit(x, y, epochs=15, batch_size=32, verbose=0)
    assert history.history["loss"][-1] < 0.2 * history.history["loss"][0]
    assert model.count_params() == 4 * 8 + 8 + 1 + 8 + 1


def test_a_custom_layer_accepts_other_input_shapes_after_building_as_keras():
    block = make_encoder_layer(nj)(4, 1, 8)
    assert block(jnp.ones((2, 5, 4)), key=jax.random.PRNGKey(0)).shape == (2, 5, 4)
    assert block(jnp.ones((3, 7, 4))).shape == (3, 7, 4)  # no input spec: another length is fine, as in Keras
    with pytest.raises(ValueError, match="expected axis -1"):
        block.feed_forward.layers[0](jnp.ones((3, 7, 5)))  # the sublayers keep their own checks


def make_eager_affine(layers, ops):
    """A layer whose weights are made in `__init__` with `add_weight` (the input width is an argument, so
    there is no `build`)."""

    class EagerAffine(layers.Layer):
        def __init__(self, in_features, out_features, **kwargs):
            super().__init__(**kwargs)
            self.matrix = self.add_weight(shape=(in_features, out_features), initializer="glorot_uniform")
            self.shift = self.add_weight(shape=(out_features,), initializer="zeros")

        def call(self, features):
            return ops.matmul(features, self.matrix) + self.shift

    return EagerAffine


def test_weights_made_in_init_match_keras():
    x = np.random.default_rng(5).normal(size=(3, 4)).astype(np.float32)
    keras_layer = make_eager_affine(keras.layers, keras.ops)(4, 2)
    layer = make_eager_affine(nj.layers, nj.ops)(4, 2)
    assert [tuple(w.shape) for w in layer.weights] == [tuple(w.shape) for w in keras_layer.weights] == [(4, 2), (2,)]
    assert float(np.abs(layer.matrix.numpy()).max()) > 0.0
    layer.set_weights(keras_layer.get_weights())
    np.testing.assert_allclose(layer(x), keras_layer(x), rtol=1e-6, atol=1e-6)


def test_weight_regularizer_joins_the_loss_once_per_forward_pass():
    class Penalised(nj.layers.Layer):
        def build(self, input_shape):
            self.w = self.add_weight(shape=(input_shape[-1], 2), regularizer=lambda w: 0.1 * jnp.sum(w**2))

        def call(self, inputs):
            return inputs @ self.w  # called twice below: Keras counts the weight penalty once

    class Twice(nj.layers.Layer):
        def __init__(self):
            super().__init__()
            self.inner = Penalised()

        def call(self, inputs):
            return self.inner(inputs) + self.inner(inputs)

    x, _ = regression_data(n=16)
    y = np.ones((16, 2), np.float32)
    model = nj.Sequential([Twice()])
    model.compile(optimizer="sgd", loss="mse")
    model.build((None, 4))
    state = model.state
    loss, (outputs, *_rest) = steps.compute_loss(state, state.params, (x, y), training=False)
    w = model.layers[0].inner.w.numpy()
    np.testing.assert_allclose(loss, np.mean((2 * x @ w - y) ** 2) + 0.1 * np.sum(w**2), rtol=1e-5)
