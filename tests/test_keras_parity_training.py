"""End to end in the functional core: the same MLP, weights and batches as Keras 3, 20 optimizer steps, Keras's numbers.

Keras's model is trained with `train_on_batch`; nnjax's is a plain Flax NNX
module with Keras's initial weights copied in, trained by `nj.train.train_step`
with the Keras-named optimizer and loss. Per-step losses and final weights are
compared (float32, atol 1e-6, rtol 1e-5: 20 steps of matmuls whose summation
order XLA may fuse differently).
"""

import jax
import numpy as np
import pytest
from flax import nnx

import nnjax as nj

keras = pytest.importorskip("keras")

STEPS, BATCH, FEATURES, HIDDEN, CLASSES = 20, 16, 5, 12, 3


class MLP(nnx.Module):
    def __init__(self, rngs):
        self.hidden = nnx.Linear(FEATURES, HIDDEN, rngs=rngs)
        self.out = nnx.Linear(HIDDEN, CLASSES, rngs=rngs)

    def __call__(self, x):
        return self.out(jax.nn.relu(self.hidden(x)))


def _data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(STEPS, BATCH, FEATURES)).astype(np.float32)
    y = rng.integers(0, CLASSES, size=(STEPS, BATCH)).astype(np.int32)
    w = rng.uniform(0, 2, size=(STEPS, BATCH)).astype(np.float32)
    return x, y, w


OPTIMIZERS = {
    "adam": lambda ns: ns.Adam(1e-3),
    "adamw_amsgrad_clipnorm": lambda ns: ns.AdamW(3e-3, weight_decay=0.05, amsgrad=True, clipnorm=0.5),
    "sgd_momentum_schedule": lambda ns: ns.SGD(ns.schedules.ExponentialDecay(0.1, decay_steps=5, decay_rate=0.5), momentum=0.9),
    "nadam": lambda ns: ns.Nadam(2e-3),
}


@pytest.mark.parametrize("weighted", [False, True], ids=["plain", "sample_weight"])
@pytest.mark.parametrize("optimizer", sorted(OPTIMIZERS))
def test_mlp_training_matches_keras(optimizer, weighted):
    x, y, w = _data()
    keras.utils.set_random_seed(0)
    keras_model = keras.Sequential(
        [keras.Input((FEATURES,)), keras.layers.Dense(HIDDEN, activation="relu"), keras.layers.Dense(CLASSES)]
    )
    keras_model.compile(
        optimizer=OPTIMIZERS[optimizer](keras.optimizers), loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )
    module = MLP(nnx.Rngs(0))
    (k1, b1), (k2, b2) = (layer.get_weights() for layer in keras_model.layers)
    module.hidden.kernel.value, module.hidden.bias.value = k1, b1
    module.out.kernel.value, module.out.bias.value = k2, b2
    state = nj.train.TrainState.create(
        module, OPTIMIZERS[optimizer](nj.optimizers), loss=nj.losses.SparseCategoricalCrossentropy(from_logits=True), key=0
    )
    step = jax.jit(nj.train.train_step)
    for i in range(STEPS):
        batch = (x[i], y[i], w[i]) if weighted else (x[i], y[i])
        keras_loss = keras_model.train_on_batch(x[i], y[i], sample_weight=w[i] if weighted else None)
        state, logs = step(state, batch)
        np.testing.assert_allclose(logs["loss"], keras_loss, rtol=1e-5, atol=1e-6, err_msg=f"step {i}")
    trained = nnx.merge(state.graphdef, state.params, state.model_state)
    for got, expected in zip(
        (trained.hidden.kernel.value, trained.hidden.bias.value, trained.out.kernel.value, trained.out.bias.value),
        keras_model.get_weights(),
    ):
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
