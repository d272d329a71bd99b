"""User Flax modules (NNX and Linen) trained through `nj.Model`: mode, randomness, stored and sown values,
mutable Linen collections.

The fixtures are small modules written here in the idioms of Flax's examples (an `examples/mnist`-style
CNN whose `__call__` requires `rngs`, an imagenet-style Linen residual block with `batch_stats`, a Linen
VAE taking an explicit `z_rng`, an NNX toy VAE storing its KL term in a Variable). The oracles are NumPy
forward passes with the running statistics, and Flax's own `apply` / eval-mode call on the trained weights.
"""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import nnjax as nj

# float32 forward passes of a few small matmuls: 1e-5 relative agreement
RTOL, ATOL = 1e-5, 1e-5


def images(n=48, seed=0):
    """8x8 one-channel images whose class (0, 1, 2) is the bright band (top, middle, bottom rows)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n).astype(np.int32)
    x = rng.normal(0, 0.3, (n, 8, 8, 1)).astype(np.float32)
    for i, label in enumerate(y):
        x[i, 3 * label:3 * label + 2] += 1.5
    return x, y


def regression(n=32, din=3, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, din)).astype(np.float32)
    return x, (x @ np.arange(1, din + 1, dtype=np.float32))[:, None]


def decreased(history, factor=0.8):
    losses = history.history["loss"]
    return losses[-1] < factor * losses[0], losses


# ---------------------------------------------------------------- fixtures: NNX
class CNN(nnx.Module):
    """An `examples/mnist`-style CNN: two conv + average-pool stages, a dense layer with dropout, logits.
    Its `__call__` requires `rngs` (for the dropout)."""

    def __init__(self, *, rngs: nnx.Rngs):
        self.conv1 = nnx.Conv(1, 4, kernel_size=(3, 3), rngs=rngs)
        self.conv2 = nnx.Conv(4, 8, kernel_size=(3, 3), rngs=rngs)
        self.pool = functools.partial(nnx.avg_pool, window_shape=(2, 2), strides=(2, 2))
        self.hidden = nnx.Linear(2 * 2 * 8, 16, rngs=rngs)
        self.dropout = nnx.Dropout(0.5)
        self.logits = nnx.Linear(16, 3, rngs=rngs)

    def __call__(self, x, rngs: nnx.Rngs):
        x = self.pool(nnx.relu(self.conv1(x)))
        x = self.pool(nnx.relu(self.conv2(x)))
        x = self.dropout(nnx.relu(self.hidden(x.reshape(x.shape[0], -1))), rngs=rngs)
        return self.logits(x)


class TrainFlagMLP(nnx.Module):
    """Linear -> BatchNorm -> relu -> Dropout -> Linear, mode given by `train=`."""

    def __init__(self, din=3, *, rngs: nnx.Rngs):
        self.l1 = nnx.Linear(din, 8, rngs=rngs)
        self.bn = nnx.BatchNorm(8, momentum=0.9, rngs=rngs)
        self.drop = nnx.Dropout(0.5, rngs=rngs)
        self.l2 = nnx.Linear(8, 1, rngs=rngs)

    def __call__(self, x, train: bool):
        h = self.bn(self.l1(x), use_running_average=not train)
        return self.l2(self.drop(nnx.relu(h), deterministic=not train))


class DeterministicMLP(TrainFlagMLP):
    """The same network taking `deterministic=`, its BatchNorm left to the module's mode."""

    def __call__(self, x, deterministic: bool = False):
        h = self.bn(self.l1(x))
        return self.l2(self.drop(nnx.relu(h), deterministic=deterministic))


class KL(nnx.Variable):
    pass


class ToyVAE(nnx.Module):
    """A toy VAE storing its KL term in a Variable created by `__call__`; noise from its own rng stream."""

    def __init__(self, din=6, latent=2, *, rngs: nnx.Rngs):
        self.encoder = nnx.Linear(din, 2 * latent, rngs=rngs)
        self.decoder = nnx.Linear(latent, din, rngs=rngs)
        self.rngs = rngs
        self.latent = latent

    def encode(self, x):
        h = self.encoder(x)
        mean, log_std = h[:, :self.latent], h[:, self.latent:]
        return mean, log_std, jnp.mean(0.5 * jnp.sum(jnp.exp(2 * log_std) + mean**2 - 1.0 - 2 * log_std, axis=-1))

    def __call__(self, x):
        mean, log_std, kl = self.encode(x)
        self.kl = KL(kl)
        return self.decoder(mean + jnp.exp(log_std) * jax.random.normal(self.rngs.noise(), mean.shape))


class SowingVAE(ToyVAE):
    """The same VAE sowing its KL term with `nnx.sow`."""

    def __call__(self, x):
        mean, log_std, kl = self.encode(x)
        self.sow(nnx.Intermediate, "kl", kl)
        return self.decoder(mean + jnp.exp(log_std) * jax.random.normal(self.rngs.noise(), mean.shape))


def numpy_kl(encoder, x, latent=2):
    h = x @ np.asarray(encoder.kernel.get_value()) + np.asarray(encoder.bias.get_value())
    mean, log_std = h[:, :latent], h[:, latent:]
    return np.mean(0.5 * np.sum(np.exp(2 * log_std) + mean**2 - 1.0 - 2 * log_std, axis=-1))


# ---------------------------------------------------------------- fixtures: Linen
class ResidualBlock(nn.Module):
    """An imagenet-style residual block: conv-BN-relu-conv-BN plus the identity."""

    features: int

    @nn.compact
    def __call__(self, x, train: bool = True):
        norm = functools.partial(nn.BatchNorm, use_running_average=not train, momentum=0.9)
        y = nn.relu(norm()(nn.Conv(self.features, (3, 3), use_bias=False)(x)))
        y = norm()(nn.Conv(self.features, (3, 3), use_bias=False)(y))
        return nn.relu(x + y)


class TinyResNet(nn.Module):
    classes: int = 3

    @nn.compact
    def __call__(self, x, train: bool = True):
        x = nn.relu(nn.BatchNorm(use_running_average=not train, momentum=0.9)(nn.Conv(4, (3, 3), use_bias=False)(x)))
        x = ResidualBlock(4)(x, train=train)
        return nn.Dense(self.classes)(jnp.mean(x, axis=(1, 2)))


class DenseBN(nn.Module):
    @nn.compact
    def __call__(self, x, train: bool = True):
        h = nn.BatchNorm(use_running_average=not train, momentum=0.9)(nn.Dense(4)(x))
        return nn.Dense(1)(nn.relu(h))


class LinenVAE(nn.Module):
    """A Linen VAE whose `__call__` takes an explicit `z_rng` for the reparameterised sample."""

    latents: int = 2
    din: int = 6

    def setup(self):
        self.enc_hidden, self.enc_mean, self.enc_logvar = nn.Dense(16), nn.Dense(self.latents), nn.Dense(self.latents)
        self.dec_hidden, self.dec_out = nn.Dense(16), nn.Dense(self.din)

    def __call__(self, x, z_rng):
        h = nn.relu(self.enc_hidden(x))
        mean, logvar = self.enc_mean(h), self.enc_logvar(h)
        z = mean + jnp.exp(0.5 * logvar) * jax.random.normal(z_rng, logvar.shape)
        return self.dec_out(nn.relu(self.dec_hidden(z))), mean, logvar


class NoisyDense(nn.Module):
    """Gaussian input noise from a "noise" stream and dropout, both in training only; sows its activation."""

    @nn.compact
    def __call__(self, x, train: bool = True):
        if train:
            x = x + 0.05 * jax.random.normal(self.make_rng("noise"), x.shape)
        h = nn.Dense(8)(x)
        self.sow("intermediates", "hidden", h)
        return nn.Dense(1)(nn.Dropout(0.2, deterministic=not train)(nn.relu(h)))


class TwoStreams(nn.Module):
    @nn.compact
    def __call__(self, x):
        nn.Dense(1)(x)
        return jax.random.normal(self.make_rng("noise"), x.shape), jax.random.normal(self.make_rng("augment"), x.shape)


def linen_variables(layer):
    """Linen's `{"params": ..., "batch_stats": ...}` of an nnjax-wrapped Linen module."""
    copy = functools.partial(jax.tree.map, np.array)  # host copies: fit donates the state's buffers
    variables = {"params": copy(nnx.state(layer.inner, nnx.Param).to_pure_dict())}
    stats = copy(nnx.state(layer.inner, nnx.BatchStat).to_pure_dict())
    if stats:
        variables["batch_stats"] = stats
    return variables


# ---------------------------------------------------------------- item 6: mode
@pytest.mark.parametrize("module_type", [TrainFlagMLP, DeterministicMLP])
def test_nnx_mode_flag_fit_in_training_mode_predict_with_running_statistics(module_type):
    x, y = regression()
    # One full-batch step at learning rate 0: the running statistics take one training-mode update.
    model = nj.Model(module_type(rngs=nnx.Rngs(0)))
    model.compile(optax.sgd(0.0), "mse", seed=0)
    before = model.module
    w1, b1 = np.asarray(before.l1.kernel.get_value()), np.asarray(before.l1.bias.get_value())
    model.fit(x, y, epochs=1, batch_size=len(x), shuffle=False, verbose=0)
    h = x @ w1 + b1
    bn = model.module.bn
    np.testing.assert_allclose(bn.mean.get_value(), 0.1 * h.mean(0), rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(bn.var.get_value(), 0.9 + 0.1 * h.var(0), rtol=RTOL, atol=ATOL)

    # Then real training; predict uses the running statistics and no dropout.
    model.compile(optax.adam(3e-2), "mse", seed=0)
    ok, losses = decreased(model.fit(x, y, epochs=30, batch_size=8, verbose=0))
    assert ok, losses
    m = model.module
    h = x @ np.asarray(m.l1.kernel.get_value()) + np.asarray(m.l1.bias.get_value())
    h = (h - np.asarray(m.bn.mean.get_value())) / np.sqrt(np.asarray(m.bn.var.get_value()) + m.bn.epsilon)
    h = np.maximum(h * np.asarray(m.bn.scale.get_value()) + np.asarray(m.bn.bias.get_value()), 0)
    expected = h @ np.asarray(m.l2.kernel.get_value()) + np.asarray(m.l2.bias.get_value())
    predicted = model.predict(x, batch_size=len(x), verbose=0)
    np.testing.assert_allclose(predicted, expected, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(model.predict(x[:1], verbose=0), expected[:1], rtol=RTOL, atol=ATOL)
    loss = model.evaluate(x, y, batch_size=len(x), verbose=0)
    np.testing.assert_allclose(loss, np.mean((expected - y) ** 2), rtol=1e-5)


# ---------------------------------------------------------------- item 7: rngs and explicit keys
def test_nnx_cnn_requiring_rngs_trains_and_evaluates_with_dropout_off():
    x, y = images()
    model = nj.Model(CNN(rngs=nnx.Rngs(0)))
    model.compile(optax.adam(1e-2), nj.losses.SparseCategoricalCrossentropy(from_logits=True), seed=0)
    ok, losses = decreased(model.fit(x, y, epochs=12, batch_size=16, verbose=0))
    assert ok, losses
    module = model.module
    module.eval()  # Flax's own inference call on the trained weights: dropout off, any rngs
    expected = np.asarray(module(jnp.asarray(x), rngs=nnx.Rngs(123)))
    logits = model.predict(x, verbose=0)
    np.testing.assert_allclose(logits, expected, rtol=RTOL, atol=ATOL)
    log_probs = expected - np.log(np.sum(np.exp(expected), axis=1, keepdims=True))
    loss = model.evaluate(x, y, batch_size=len(x), verbose=0)
    np.testing.assert_allclose(loss, -np.mean(log_probs[np.arange(len(y)), y]), rtol=1e-5)


def test_linen_vae_gets_its_z_rng_in_training_and_a_fixed_key_in_inference():
    x, _ = regression(n=64, din=6)

    def vae_loss(outputs, batch):
        recon, mean, logvar = outputs
        kl = -0.5 * jnp.mean(jnp.sum(1 + logvar - mean**2 - jnp.exp(logvar), axis=-1))
        return jnp.mean(jnp.sum((recon - batch[0]) ** 2, axis=-1)) + kl

    model = nj.Model(LinenVAE())
    model.compile(optax.adam(3e-2), loss_fn=vae_loss, seed=0)
    ok, losses = decreased(model.fit(x, x, epochs=15, batch_size=16, verbose=0))
    assert ok, losses
    layer = model.module
    expected = LinenVAE().apply(linen_variables(layer), x, jax.random.PRNGKey(0))  # the documented inference key
    for got, want in zip(model.predict(x, batch_size=len(x), verbose=0), expected):
        np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)
    # In training each step's key is new: two keys give two different samples.
    first = layer(jnp.asarray(x[:4]), training=True, key=jax.random.PRNGKey(1))[0]
    second = layer(jnp.asarray(x[:4]), training=True, key=jax.random.PRNGKey(2))[0]
    assert not np.allclose(first, second)


# ---------------------------------------------------------------- item 8: stored and sown values
@pytest.mark.parametrize("module_type, read_kl", [(ToyVAE, lambda i: i["kl"]), (SowingVAE, lambda i: i["kl"][0])])
def test_nnx_vae_kl_from_the_call_reaches_loss_fn(module_type, read_kl):
    x, _ = regression(n=64, din=6)

    def vae_loss(outputs, batch, *, intermediates):
        kl = read_kl(intermediates)
        return jnp.mean(jnp.sum((outputs - batch[0]) ** 2, axis=-1)) + kl, {"kl": kl}

    model = nj.Model(module_type(rngs=nnx.Rngs(0, noise=1)))
    model.compile(optax.adam(3e-2), loss_fn=vae_loss, seed=0)
    ok, losses = decreased(model.fit(x, x, epochs=15, batch_size=16, verbose=0))
    assert ok, losses
    results = model.evaluate(x, x, batch_size=len(x), return_dict=True, verbose=0)
    np.testing.assert_allclose(results["kl"], numpy_kl(model.module.encoder, x), rtol=1e-5)
    assert not hasattr(model.module, "kl")  # values of the call are not kept in the state


class ResizedCounter(nnx.Module):
    def __init__(self, *, rngs: nnx.Rngs):
        self.dense = nnx.Linear(3, 1, rngs=rngs)
        self.seen = nnx.Variable(jnp.zeros(()))

    def __call__(self, x):
        self.seen = nnx.Variable(jnp.zeros(x.shape[0]))  # a state Variable whose shape follows the batch
        return self.dense(x)


def test_a_call_that_reshapes_kept_state_is_refused_with_its_name():
    x, y = regression(n=8)
    model = nj.Model(ResizedCounter(rngs=nnx.Rngs(0)))
    model.compile("sgd", "mse")
    with pytest.raises(ValueError, match=r"changed the Variable seen: expected shape \(\)"):
        model.fit(x, y, epochs=1, batch_size=4, verbose=0)


def test_loss_fn_sees_params_and_linen_sown_values():
    x, y = regression(n=32, din=3)
    seen = {}

    def penalised(outputs, batch, *, intermediates=None, params=None):
        seen["params"] = jax.tree.map(jnp.shape, params)
        l2 = sum(jnp.sum(params[name]["kernel"] ** 2) for name in ("Dense_0", "Dense_1"))
        hidden = jnp.mean(intermediates["hidden"][0])
        return jnp.mean((outputs - batch[1]) ** 2) + 1e-3 * l2, {"l2": l2, "hidden": hidden}

    model = nj.Model(NoisyDense())
    model.compile(optax.adam(3e-2), loss_fn=penalised, seed=0)
    ok, losses = decreased(model.fit(x, y, epochs=30, batch_size=8, verbose=0))
    assert ok, losses
    assert seen["params"] == {"Dense_0": {"bias": (8,), "kernel": (3, 8)}, "Dense_1": {"bias": (1,), "kernel": (8, 1)}}
    params = linen_variables(model.module)["params"]
    results = model.evaluate(x, y, batch_size=len(x), return_dict=True, verbose=0)
    kernels = [np.asarray(params[name]["kernel"]) for name in ("Dense_0", "Dense_1")]
    np.testing.assert_allclose(results["l2"], sum(np.sum(k**2) for k in kernels), rtol=1e-5)
    hidden = x @ kernels[0] + np.asarray(params["Dense_0"]["bias"])  # inference: no input noise
    np.testing.assert_allclose(results["hidden"], hidden.mean(), rtol=1e-5, atol=ATOL)
    # predict: no noise, no dropout
    expected = np.maximum(hidden, 0) @ kernels[1] + np.asarray(params["Dense_1"]["bias"])
    np.testing.assert_allclose(model.predict(x, verbose=0), expected, rtol=RTOL, atol=ATOL)


# ---------------------------------------------------------------- item 9: mutable collections, rng streams
def test_linen_batch_stats_updated_in_training_and_used_in_inference():
    x, y = regression(n=32, din=3)
    model = nj.Model(DenseBN())
    model.compile(optax.sgd(0.0), "mse", seed=0)
    model.build((None, 3))
    start = linen_variables(model.module)
    model.fit(x, y, epochs=1, batch_size=len(x), shuffle=False, verbose=0)
    h = x @ np.asarray(start["params"]["Dense_0"]["kernel"]) + np.asarray(start["params"]["Dense_0"]["bias"])
    stats = linen_variables(model.module)["batch_stats"]["BatchNorm_0"]
    np.testing.assert_allclose(stats["mean"], 0.1 * h.mean(0), rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(stats["var"], 0.9 + 0.1 * h.var(0), rtol=RTOL, atol=ATOL)

    model.compile(optax.adam(3e-2), "mse", seed=0)
    ok, losses = decreased(model.fit(x, y, epochs=30, batch_size=8, verbose=0))
    assert ok, losses
    variables = linen_variables(model.module)
    p, s = variables["params"], variables["batch_stats"]["BatchNorm_0"]
    h = x @ np.asarray(p["Dense_0"]["kernel"]) + np.asarray(p["Dense_0"]["bias"])
    h = (h - np.asarray(s["mean"])) / np.sqrt(np.asarray(s["var"]) + 1e-5)
    h = np.maximum(h * np.asarray(p["BatchNorm_0"]["scale"]) + np.asarray(p["BatchNorm_0"]["bias"]), 0)
    expected = h @ np.asarray(p["Dense_1"]["kernel"]) + np.asarray(p["Dense_1"]["bias"])
    np.testing.assert_allclose(model.predict(x, verbose=0), expected, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(model.predict(x[:1], verbose=0), expected[:1], rtol=RTOL, atol=ATOL)


def test_linen_resnet_with_batch_stats_trains_and_predicts_with_running_statistics():
    x, y = images()
    model = nj.Model(TinyResNet())
    model.compile(optax.adam(1e-2), nj.losses.SparseCategoricalCrossentropy(from_logits=True), seed=0)
    model.build((None, 8, 8, 1))
    initial = linen_variables(model.module)["batch_stats"]
    ok, losses = decreased(model.fit(x, y, epochs=8, batch_size=16, verbose=0))
    assert ok, losses
    variables = linen_variables(model.module)
    moved = jax.tree.map(lambda a, b: float(np.max(np.abs(np.asarray(a) - np.asarray(b)))), variables["batch_stats"], initial)
    assert min(jax.tree.leaves(moved)) > 0
    expected = TinyResNet().apply(variables, x, train=False)  # Linen's own inference call
    np.testing.assert_allclose(model.predict(x, verbose=0), expected, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(model.predict(x[:1], verbose=0), expected[:1], rtol=RTOL, atol=ATOL)


def test_linen_rng_streams_each_get_their_own_key():
    layer = nj.layers.LinenLayer(TwoStreams())
    layer.ensure_built((1, 5), jax.random.PRNGKey(0))
    assert {"noise", "augment"} <= set(layer.rng_streams)
    noise, augment = layer(jnp.zeros((2, 5)), training=True, key=jax.random.PRNGKey(3))
    assert not np.allclose(noise, augment)
    again, _ = layer(jnp.zeros((2, 5)), training=True, key=jax.random.PRNGKey(4))
    assert not np.allclose(noise, again)
