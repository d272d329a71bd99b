"""An `nj.Sequential` inside an `nj.Sequential` (Keras's augmentation-block idiom) is part of the model: its
weights are counted, trained, and shared with the inner model, as in Keras."""

import jax.numpy as jnp
import keras
import numpy as np
import pytest

import nnjax as nj

L = nj.layers


def test_nested_sequential_trains_and_shares_its_weights_like_keras():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 5)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int32)
    block = nj.Sequential([L.Dense(8, activation="relu"), L.Dense(4, activation="relu")], name="block")
    model = nj.Sequential([block, L.Dense(2, activation="softmax")])
    model.build((None, 5))
    kblock = keras.Sequential([keras.layers.Dense(8, activation="relu"), keras.layers.Dense(4, activation="relu")])
    kmodel = keras.Sequential([keras.Input((5,)), kblock, keras.layers.Dense(2, activation="softmax")])
    assert model.count_params() == kmodel.count_params() == (5 * 8 + 8) + (8 * 4 + 4) + (4 * 2 + 2)
    inner = [layer for layer in model.module.layers[0].layers]
    for klayer, layer in zip(kblock.layers + [kmodel.layers[-1]], inner + [model.module.layers[1]], strict=True):
        layer.kernel[...] = jnp.asarray(klayer.kernel.numpy())
        layer.bias[...] = jnp.asarray(klayer.bias.numpy())
    for m, opt in ((kmodel, keras.optimizers.SGD(0.1)), (model, nj.optimizers.SGD(0.1))):
        m.compile(optimizer=opt, loss="sparse_categorical_crossentropy")
    kloss = kmodel.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0).history["loss"]
    loss = model.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0).history["loss"]
    np.testing.assert_allclose(loss, kloss, rtol=1e-5)
    # The inner model sees the trained weights (shared, as Keras's nested model).
    np.testing.assert_allclose(block.predict(x, verbose=0), np.asarray(kblock(x)), rtol=1e-5, atol=1e-6)


def test_layer_output_builds_a_feature_extractor_as_keras():
    inputs = nj.Input((6,))
    hidden = L.Dense(4, activation="relu", name="hidden")
    model = nj.Model(inputs, L.Dense(2, name="head")(hidden(inputs)))
    assert hidden.output.shape == (None, 4) and hidden.input is inputs
    extractor = nj.Model(model.inputs, model.get_layer("hidden").output)
    x = np.random.default_rng(1).normal(size=(3, 6)).astype(np.float32)
    expected = np.maximum(x @ np.asarray(hidden.kernel[...]) + np.asarray(hidden.bias[...]), 0)
    np.testing.assert_allclose(extractor.predict(x, verbose=0), expected, rtol=1e-5, atol=1e-6)
    with pytest.raises(AttributeError, match="has never been called on symbolic inputs"):
        _ = L.Dense(3).output
