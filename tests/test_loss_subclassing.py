"""A user's `Loss` subclass (Keras's `class MyLoss(keras.losses.Loss): def call(...)`) behaves as on Keras 3.

The same subclass body runs on both (`jnp` arithmetic works on Keras's JAX tensors). Compared: the reduced value with
sample weights and a mask for every Keras reduction (atol 1e-6), the config round trip, and `fit` for 2 epochs of a
small Dense model with Keras's initial weights copied in, single- and multi-output (History rtol 1e-5).
"""

import jax.numpy as jnp
import numpy as np
import pytest

import nnjax as nj

keras = pytest.importorskip("keras")

RNG = np.random.default_rng(3)
X = RNG.normal(size=(48, 5)).astype(np.float32)
Y = (X @ RNG.normal(size=(5, 2))).astype(np.float32)
SW = RNG.uniform(0.1, 2.0, size=48).astype(np.float32)
REDUCTIONS = ["sum", "sum_over_batch_size", "mean", "mean_with_sample_weight", "none", None]


def scaled_huber_class(base):
    """The user's code, written once, subclassing either framework's `Loss`."""

    class ScaledHuber(base):
        def __init__(self, delta=1.0, scale=2.0, name="scaled_huber", reduction="sum_over_batch_size", dtype=None):
            super().__init__(name=name, reduction=reduction, dtype=dtype)
            self.delta, self.scale = delta, scale

        def call(self, y_true, y_pred):
            error = jnp.abs(y_pred - y_true)
            quadratic = jnp.minimum(error, self.delta)
            return self.scale * jnp.mean(0.5 * quadratic**2 + self.delta * (error - quadratic), axis=-1)

        def get_config(self):
            return {**super().get_config(), "delta": self.delta, "scale": self.scale}

    return ScaledHuber


KerasHuber, MyHuber = scaled_huber_class(keras.losses.Loss), scaled_huber_class(nj.losses.Loss)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_values_with_sample_weight_match_keras_for_every_reduction(reduction):
    y_true, y_pred = RNG.normal(size=(6, 3)).astype(np.float32), RNG.normal(size=(6, 3)).astype(np.float32) * 2
    weights = RNG.uniform(0.0, 2.0, size=(6,)).astype(np.float32)
    theirs, mine = KerasHuber(delta=0.7, reduction=reduction), MyHuber(delta=0.7, reduction=reduction)
    for kwargs in ({}, {"sample_weight": weights}):
        np.testing.assert_allclose(
            np.asarray(mine(y_true, y_pred, **kwargs)),
            np.asarray(theirs(y_true, y_pred, **kwargs)),
            rtol=1e-6,
            atol=1e-6,
            err_msg=f"{reduction} {kwargs and 'weighted'}",
        )


@pytest.mark.parametrize("reduction", ["sum", "sum_over_batch_size", "mean_with_sample_weight"])
def test_mask_on_the_predictions_matches_keras(reduction):
    # Keras's `Loss.__call__` reads the mask from `y_pred._keras_mask` (JAX arrays take no attributes) and hands it to
    # `reduce_weighted_values`; nnjax's compile passes it as `mask=`.
    from keras.src.losses.loss import reduce_weighted_values

    y_true, y_pred = RNG.normal(size=(3, 4, 2)).astype(np.float32), RNG.normal(size=(3, 4, 2)).astype(np.float32)
    mask = np.array([[1, 1, 0, 0], [1, 1, 1, 1], [1, 0, 0, 0]], bool)
    weights = RNG.uniform(0.5, 2.0, size=(3, 4)).astype(np.float32)
    keras_loss = KerasHuber(reduction=reduction)
    theirs = reduce_weighted_values(keras_loss.call(y_true, y_pred), weights, mask, reduction, keras_loss.dtype)
    mine = MyHuber(reduction=reduction)(y_true, y_pred, sample_weight=weights, mask=mask)
    np.testing.assert_allclose(np.asarray(mine), np.asarray(theirs), rtol=1e-6, atol=1e-6)


def test_name_config_and_dtype_as_keras():
    class MyAbsoluteLoss(nj.losses.Loss):
        def call(self, y_true, y_pred):
            return jnp.abs(y_pred - y_true)

    loss = MyAbsoluteLoss(reduction="sum")
    assert loss.name == "my_absolute_loss"  # Keras: auto_name (snake case of the class name)
    assert loss.get_config() == {"name": "my_absolute_loss", "reduction": "sum"}
    mine = MyHuber(delta=0.5, scale=3.0, reduction="mean")
    assert mine.get_config() == KerasHuber(delta=0.5, scale=3.0, reduction="mean").get_config()
    clone = MyHuber.from_config(mine.get_config())
    assert (clone.delta, clone.scale, clone.reduction, clone.name) == (0.5, 3.0, "mean", "scaled_huber")
    # Keras casts both to the loss's dtype before `call`: integer labels come in as float32.
    seen = []

    class Recording(nj.losses.Loss):
        def call(self, y_true, y_pred):
            seen.append((y_true.dtype, y_pred.dtype))
            return y_pred - y_true

    Recording()(np.array([1, 2]), np.array([1.5, 2.0]))
    assert seen == [(jnp.float32, jnp.float32)]


def test_bad_reduction_and_missing_call_raise():
    with pytest.raises(ValueError, match=r"`reduction` must be one of .*got 'avg'"):
        MyHuber(reduction="avg")

    class NoCall(nj.losses.Loss):
        pass

    with pytest.raises(TypeError, match="implement `call"):
        NoCall()


def dense_pair():
    keras.utils.set_random_seed(4)
    theirs = keras.Sequential([keras.Input((5,)), keras.layers.Dense(4, activation="tanh"), keras.layers.Dense(2)])
    mine = nj.Sequential([nj.layers.Dense(4, activation="tanh", input_shape=(5,)), nj.layers.Dense(2)])
    for layer, keras_layer in zip(mine.layers, theirs.layers, strict=True):
        kernel, bias = keras_layer.get_weights()
        layer.kernel[...], layer.bias[...] = kernel, bias
    return theirs, mine


@pytest.mark.parametrize("reduction", ["sum_over_batch_size", "sum", "mean_with_sample_weight"])
def test_fit_with_the_subclass_matches_keras(reduction):
    theirs, mine = dense_pair()
    theirs.compile(optimizer=keras.optimizers.SGD(0.05), loss=KerasHuber(delta=0.5, reduction=reduction))
    mine.compile(optimizer=nj.optimizers.SGD(0.05), loss=MyHuber(delta=0.5, reduction=reduction), seed=0)
    kwargs = {"batch_size": 16, "epochs": 2, "shuffle": False, "verbose": 0, "sample_weight": SW}
    khistory, history = theirs.fit(X, Y, **kwargs).history, mine.fit(X, Y, **kwargs).history
    assert set(history) == set(khistory) == {"loss"}
    np.testing.assert_allclose(history["loss"], khistory["loss"], rtol=1e-5)


def test_per_output_subclass_losses_match_keras():
    def build(lib):
        inputs = keras.Input((5,), name="x") if lib is keras else nj.Input(shape=(5,), name="x")
        hidden = lib.layers.Dense(4, activation="relu", name="h")(inputs)
        return lib.Model(inputs, [lib.layers.Dense(2, name="a")(hidden), lib.layers.Dense(1, name="b")(hidden)])

    keras.utils.set_random_seed(5)
    theirs, mine = build(keras), build(nj)
    for name in ("h", "a", "b"):
        kernel, bias = theirs.get_layer(name).get_weights()
        mine.get_layer(name).kernel[...], mine.get_layer(name).bias[...] = kernel, bias
    theirs.compile(optimizer=keras.optimizers.SGD(0.05), loss=[KerasHuber(scale=1.0), "mse"], loss_weights=[1.0, 0.5])
    mine.compile(optimizer=nj.optimizers.SGD(0.05), loss=[MyHuber(scale=1.0), "mse"], loss_weights=[1.0, 0.5], seed=0)
    targets = [Y, Y[:, :1] * 0.5]
    kwargs = {"batch_size": 16, "epochs": 2, "shuffle": False, "verbose": 0}
    khistory, history = theirs.fit(X, targets, **kwargs).history, mine.fit(X, targets, **kwargs).history
    assert set(history) == set(khistory)
    for key in khistory:
        np.testing.assert_allclose(history[key], khistory[key], rtol=1e-5, err_msg=key)
