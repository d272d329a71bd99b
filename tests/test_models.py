"""Ready models: documented parameter counts at the default size, forward passes, and learning."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import nnjax as nj

M = nj.models
R = np.random.default_rng(0)


def conv(k, cin, cout, bias=False):
    return k * k * cin * cout + (cout if bias else 0)


def dense(cin, cout, bias=True):
    return cin * cout + (cout if bias else 0)


def counts(module):
    trainable = sum(int(np.prod(a.shape)) for a in jax.tree.leaves(nnx.state(module, nnx.Param)))
    stats = sum(int(np.prod(a.shape)) for a in jax.tree.leaves(nnx.state(module, nnx.BatchStat)))
    return trainable, stats


def resnet20_expected():
    trainable = conv(3, 3, 16) + 2 * 16  # stem conv + batch norm (gamma, beta)
    cin = 16
    for width in (16, 32, 64):
        for _ in range(3):  # option A shortcuts have no weights
            trainable += conv(3, cin, width) + conv(3, width, width) + 4 * width
            cin = width
    trainable += dense(64, 10)
    stats = 2 * (16 + 3 * 2 * (16 + 32 + 64))
    return trainable, stats


def resnet18_expected():
    trainable, stats, cin = conv(3, 3, 64) + 2 * 64, 2 * 64, 64
    for stage, width in enumerate((64, 128, 256, 512)):
        for block in range(2):
            trainable += conv(3, cin, width) + conv(3, width, width) + 4 * width
            stats += 4 * width
            if stage > 0 and block == 0:  # 1x1 projection + batch norm
                trainable += conv(1, cin, width) + 2 * width
                stats += 2 * width
            cin = width
    return trainable + dense(512, 10), stats


def airbench_expected():
    trainable = conv(2, 3, 24, bias=True)
    cin, stats = 24, 0
    for width in (64, 256, 256):
        trainable += conv(3, cin, width) + conv(3, width, width) + 2 * width  # batch norm: bias only
        stats += 4 * width
        cin = width
    return trainable + dense(256, 10, bias=False), stats


def gpt_expected(vocab=256, block=256, layers=6, width=384):
    per_block = 2 * (2 * width) + 4 * dense(width, width) + dense(width, 4 * width) + dense(4 * width, width)
    return vocab * width + block * width + layers * per_block + 2 * width, 0


DEFAULTS = [
    ("MLP", M.MLP, (2, 28, 28), np.float32, (dense(784, 128) + dense(128, 10), 0), 101_770, (2, 10)),
    ("Perceptron", M.Perceptron, (2, 28, 28), np.float32, (dense(784, 10), 0), 7_850, (2, 10)),
    ("LeNet", M.LeNet, (2, 28, 28, 1), np.float32,
     (conv(5, 1, 6, True) + conv(5, 6, 16, True) + dense(400, 120) + dense(120, 84) + dense(84, 10), 0), 61_706, (2, 10)),
    ("ResNet20", M.ResNet20, (2, 32, 32, 3), np.float32, resnet20_expected(), 269_722, (2, 10)),
    ("ResNet", M.ResNet, (2, 32, 32, 3), np.float32, resnet20_expected(), 269_722, (2, 10)),
    ("ResNet18", M.ResNet18, (2, 32, 32, 3), np.float32, resnet18_expected(), 11_173_962, (2, 10)),
    ("Airbench94", M.Airbench94, (2, 32, 32, 3), np.float32, airbench_expected(), 1_971_640, (2, 10)),
    ("LSTMClassifier", M.LSTMClassifier, (2, 28, 28), np.float32, (4 * (128 * (28 + 128) + 128) + dense(128, 10), 0), 81_674, (2, 10)),
    ("GPT", M.GPT, (2, 256), np.int32, gpt_expected(), 10_844_160, (2, 256, 256)),
]


@pytest.mark.parametrize("name,make,shape,dtype,expected,documented,out_shape", DEFAULTS, ids=[d[0] for d in DEFAULTS])
def test_default_size_forward_and_documented_parameter_count(name, make, shape, dtype, expected, documented, out_shape):
    model = make()
    x = R.integers(0, 256, shape).astype(dtype) if dtype == np.int32 else R.normal(size=shape).astype(dtype)
    y = model(x)
    assert y.shape == out_shape
    assert counts(model) == expected  # against the layer-by-layer formula
    assert expected[0] == documented
    doc = (make.__doc__ or "") + (type(model).__doc__ or "")
    assert f"{documented:,}" in doc, f"{name}'s docstring does not state {documented:,} parameters"
    assert model.count_params() == sum(expected)
    if out_shape[-1] == 10 and name != "Airbench94":
        np.testing.assert_allclose(np.asarray(y).sum(-1), 1.0, rtol=1e-5)  # softmax probabilities by default


def train_losses(module, x, y, loss, steps, learning_rate):
    state = nj.train.TrainState.create(module, nj.optimizers.Adam(learning_rate), loss=loss, key=0)
    step = jax.jit(nj.train.train_step)
    losses = []
    for _ in range(steps):
        state, metrics = step(state, (x, y))
        losses.append(float(metrics["loss"]))
    return losses, state


SMALL = [
    ("MLP", lambda: M.MLP(dropout=0.1), (16, 28, 28)),
    ("Perceptron", lambda: M.Perceptron(), (16, 28, 28)),
    ("LeNet", lambda: M.LeNet(), (16, 28, 28, 1)),
    ("ResNet", lambda: M.ResNet((1, 1), (8, 16), shortcut="projection"), (16, 16, 16, 3)),
    ("ResNet_pad", lambda: M.ResNet((1, 1), (8, 16), shortcut="pad"), (16, 16, 16, 3)),
    ("Airbench94", lambda: M.Airbench94(widths=(8, 16, 16)), (16, 32, 32, 3)),
    ("LSTMClassifier", lambda: M.LSTMClassifier(units=16, num_layers=2, bidirectional=True, dropout=0.1), (16, 7, 5)),
    ("LSTMClassifier_tokens", lambda: M.LSTMClassifier(units=16, cell="gru", vocab_size=20, embedding_dim=8), (16, 7)),
]


@pytest.mark.parametrize("name,make,shape", SMALL, ids=[s[0] for s in SMALL])
def test_a_few_training_steps_lower_the_loss(name, make, shape):
    x = R.integers(0, 20, shape).astype(np.int32) if name.endswith("tokens") else R.normal(size=shape).astype(np.float32)
    y = R.integers(0, 10, shape[0]).astype(np.int32)
    model = make()
    model(x[:2])
    losses, state = train_losses(model, x, y, "sparse_categorical_crossentropy", steps=10, learning_rate=1e-2)
    assert losses[-1] < 0.9 * losses[0], losses  # same batch every step: a clear, steady decrease
    if "ResNet" in name or name == "Airbench94":  # batch statistics moved inside the TrainState
        stats = jax.tree.leaves(nnx.state(nnx.merge(state.graphdef, state.params, state.model_state), nnx.BatchStat))
        assert stats and not all(np.allclose(s, 0) or np.allclose(s, 1) for s in stats)


TEXT = "To be, or not to be, that is the question: whether 'tis nobler in the mind to suffer."


@pytest.mark.slow
def test_gpt_overfits_a_short_text_and_generates_it_back():
    vocab = sorted(set(TEXT))
    ids = np.array([vocab.index(c) for c in TEXT], np.int32)
    block = 32
    starts = np.arange(len(ids) - block)
    x = np.stack([ids[s:s + block] for s in starts])
    y = np.stack([ids[s + 1:s + block + 1] for s in starts])
    gpt = M.GPT(vocab_size=len(vocab), block_size=block, num_layers=2, num_heads=2, embed_dim=64, key=0)
    gpt(x[:1])
    loss = nj.losses.SparseCategoricalCrossentropy(from_logits=True)
    losses, state = train_losses(gpt, x, y, loss, steps=200, learning_rate=3e-3)
    print(f"GPT loss: {losses[0]:.3f} -> {losses[-1]:.4f} nats/token")
    assert losses[-1] < 0.1
    trained = nnx.merge(state.graphdef, state.params, state.model_state)
    sample = trained.generate(ids[:8], len(ids) - 8, key=0, temperature=0.0)  # greedy, longer than block_size
    assert "".join(vocab[i] for i in sample) == TEXT
    stochastic = trained.generate(ids[None, :8], 20, key=jax.random.key(1), top_k=3)
    again = trained.generate(ids[None, :8], 20, key=jax.random.key(1), top_k=3)
    np.testing.assert_array_equal(stochastic, again)
    assert stochastic.shape == (1, 28)


def test_gpt_options_and_errors():
    gpt = M.GPT(vocab_size=11, block_size=8, num_layers=1, num_heads=2, embed_dim=16, tie_embeddings=False, dropout=0.1, key=1)
    ids = R.integers(0, 11, (3, 8)).astype(np.int32)
    logits = gpt(ids)
    assert logits.shape == (3, 8, 11) and gpt.head.kernel.shape == (16, 11)
    a = gpt(ids, training=True, key=jax.random.key(0))
    assert not np.allclose(np.asarray(a), np.asarray(logits))  # dropout in training
    # Causality: changing a later token does not change earlier logits.
    changed = ids.copy()
    changed[:, 5] = (changed[:, 5] + 1) % 11
    np.testing.assert_allclose(np.asarray(gpt(changed))[:, :5], np.asarray(logits)[:, :5], rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match=r"expected at most block_size=8 tokens.*\(3, 9\)"):
        gpt(R.integers(0, 11, (3, 9)).astype(np.int32))
    with pytest.raises(ValueError, match=r"num_heads=3 must divide embed_dim=16"):
        M.GPT(num_heads=3, embed_dim=16)
    with pytest.raises(ValueError, match=r"expected ids in \[0, 11\)"):
        gpt(np.full((1, 4), 11, np.int32))


def test_airbench_whitening_init_whitens_patches():
    images = R.normal(size=(16, 28, 28, 3)) @ np.array([[1.0, 0.5, 0.2], [0.0, 1.0, 0.3], [0.0, 0.0, 0.2]])
    model = M.Airbench94(widths=(4, 4, 4), key=0)
    model.init_whitening(images.astype(np.float32), epsilon=1e-8)
    kernel = np.asarray(model.whiten.kernel[...], np.float64)  # (2, 2, 3, 24)
    patches = np.stack([images[:, i:i + 27, j:j + 27, :] for i in range(2) for j in range(2)], axis=3).reshape(-1, 12)
    out = patches @ kernel.reshape(12, 24)
    second_moment = out[:, :12].T @ out[:, :12] / len(out)
    np.testing.assert_allclose(second_moment, np.eye(12), atol=1e-5)  # whitened
    np.testing.assert_allclose(kernel[..., 12:], -kernel[..., :12])
    assert np.all(np.asarray(model.whiten.bias[...]) == 0)


@pytest.mark.slow
def test_models_work_with_the_shell(digits):
    (x_train, y_train), (x_test, y_test) = digits
    model = nj.Model(M.ResNet((1, 1), (16, 32), shortcut="projection", name="resnet_digits"), input_shape=(8, 8, 1))
    model.compile(nj.optimizers.Adam(3e-3), "sparse_categorical_crossentropy", metrics=["accuracy"], seed=0, steps_per_execution=16)
    printed = []
    assert model.summary(print_fn=printed.append) is None
    text = "\n".join(printed)
    assert "resnet_digits" in text and f"{model.count_params():,}" in text
    model.fit(x_train[:1024, ..., None], y_train[:1024], batch_size=64, epochs=4, verbose=0)
    _, accuracy = model.evaluate(x_test[..., None], y_test, batch_size=len(x_test), verbose=0)
    print(f"small ResNet on digits through nj.Model: {accuracy:.4f}")
    assert accuracy >= 0.9


def test_same_seed_same_model():
    a, b = M.ResNet((1,), (4,), key=3), M.ResNet((1,), (4,), key=3)
    x = jnp.ones((1, 8, 8, 3))
    np.testing.assert_array_equal(np.asarray(a(x)), np.asarray(b(x)))
    c = M.ResNet((1,), (4,), key=4)
    assert not np.allclose(np.asarray(a(x)), np.asarray(c(x)))
