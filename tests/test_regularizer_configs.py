"""Regularizers and constraints in layer configs, as Keras 3 writes and reads them.

Compared with Keras 3 (the oracle): `get_config()`'s regularizer and constraint entries, dict for dict, for every
layer that takes them; `from_config`, `clone_model` and a `.keras` file (nnjax -> nnjax, nnjax -> Keras, Keras -> nnjax)
rebuild them, checked by the penalties and projections they compute and by 2 epochs of `fit` on both sides from the
file's weights (History rtol 1e-5).
"""

import numpy as np
import pytest

import nnjax as nj

keras = pytest.importorskip("keras")

RNG = np.random.default_rng(11)
X = RNG.normal(size=(32, 6, 3)).astype(np.float32)
Y = RNG.normal(size=(32, 1)).astype(np.float32)


def penalties(lib):
    """The same regularizer and constraint arguments, built from either library."""
    reg, con = lib.regularizers, lib.constraints
    return {
        "Dense": (
            lambda: lib.layers.Dense(
                3,
                kernel_regularizer=reg.L2(0.01),
                kernel_constraint=con.MaxNorm(2),
                bias_regularizer=reg.L1L2(0.1, 0.2),
                activity_regularizer="l1",
                name="dense_p",
            )
        ),
        "Conv2D": (lambda: lib.layers.Conv2D(2, 3, kernel_regularizer="l2", bias_constraint=con.NonNeg(), name="conv_p")),
        "Conv1DTranspose": (
            lambda: lib.layers.Conv1DTranspose(
                2, 3, kernel_constraint=con.UnitNorm(axis=[0, 1]), activity_regularizer=reg.L1(0.3), name="convt_p"
            )
        ),
        "Embedding": (
            lambda: lib.layers.Embedding(
                5,
                2,
                embeddings_regularizer=reg.L1(0.2),
                embeddings_constraint=con.MinMaxNorm(0.5, 1.5, 0.5, axis=1),
                name="emb_p",
            )
        ),
        "LSTM": (
            lambda: lib.layers.LSTM(
                4,
                kernel_regularizer=reg.L2(0.1),
                recurrent_constraint=con.MaxNorm(1.5),
                bias_regularizer="l1",
                activity_regularizer=reg.L2(0.05),
                name="lstm_p",
            )
        ),
        "GRUCell": (
            lambda: lib.layers.GRUCell(4, recurrent_regularizer=reg.L1L2(l2=0.3), kernel_constraint="non_neg", name="gru_cell_p")
        ),
        "Flatten": (lambda: lib.layers.Flatten(activity_regularizer=reg.L1(0.1), name="flatten_p")),
    }


def penalty_entries(config):
    return {k: v for k, v in config.items() if k.endswith(("_regularizer", "_constraint"))}


@pytest.mark.parametrize("name", sorted(penalties(nj)))
def test_get_config_carries_them_as_keras_does_and_from_config_rebuilds_them(name):
    layer, keras_layer = penalties(nj)[name](), penalties(keras)[name]()
    config, keras_config = layer.get_config(), keras_layer.get_config()
    assert penalty_entries(config) == penalty_entries(keras_config)
    assert penalty_entries(config)  # every case has some
    again = type(layer).from_config(config)
    assert penalty_entries(again.get_config()) == penalty_entries(config)
    for key, value in penalty_entries(config).items():
        if value is not None:
            holder = again.cell if name == "LSTM" and key != "activity_regularizer" else again
            rebuilt = getattr(holder, key)
            reference = keras.regularizers.get(value) if key.endswith("_regularizer") else keras.constraints.get(value)
            w = RNG.normal(size=(3, 4)).astype(np.float32)
            np.testing.assert_allclose(np.asarray(rebuilt(w)), np.asarray(reference(w)), rtol=1e-6, atol=1e-7, err_msg=key)


def test_a_layer_without_them_writes_none_as_keras():
    config, keras_config = nj.layers.Dense(2, name="plain").get_config(), keras.layers.Dense(2, name="plain").get_config()
    assert penalty_entries(config) == penalty_entries(keras_config)
    assert "activity_regularizer" not in nj.layers.Dropout(0.1).get_config()  # Keras's base Layer writes it only when set
    assert "activity_regularizer" not in keras.layers.Dropout(0.1).get_config()


def build(lib):
    reg, con, layers = lib.regularizers, lib.constraints, lib.layers
    inputs = keras.Input((6, 3), name="x") if lib is keras else nj.Input(shape=(6, 3), name="x")
    hidden = layers.LSTM(
        4,
        kernel_regularizer=reg.L2(0.1),
        recurrent_constraint=con.MaxNorm(1.5),
        activity_regularizer=reg.L1(0.03),
        return_sequences=True,
        name="lstm",
    )(inputs)
    hidden = layers.Conv1D(2, 3, kernel_regularizer="l2", bias_constraint=con.NonNeg(), name="conv")(hidden)
    flat = layers.Flatten(name="flat")(hidden)
    out = layers.Dense(
        1,
        kernel_regularizer=reg.L1L2(0.01, 0.02),
        kernel_constraint=con.MinMaxNorm(0.1, 0.9, axis=[0]),
        activity_regularizer="l2",
        name="head",
    )(flat)
    return lib.Model(inputs, out)


def fit_history(model, lib):
    optimizer = keras.optimizers.SGD(0.05) if lib is keras else nj.optimizers.SGD(0.05)
    model.compile(optimizer=optimizer, loss="mse", **({} if lib is keras else {"seed": 0}))
    return model.fit(X, Y, batch_size=8, epochs=2, shuffle=False, verbose=0).history["loss"]


def test_keras_files_both_ways_and_clone_model_keep_them(tmp_path):
    # Keras writes, nnjax reads: the same penalties and constraints act, so training matches Keras's from the same weights.
    keras.utils.set_random_seed(3)
    keras_path = str(tmp_path / "from_keras.keras")
    build(keras).save(keras_path)
    theirs, mine = keras.models.load_model(keras_path, compile=False), nj.models.load_model(keras_path, compile=False)
    assert isinstance(mine.get_layer("head").kernel_constraint, nj.constraints.MinMaxNorm)
    np.testing.assert_allclose(fit_history(mine, nj), fit_history(theirs, keras), rtol=1e-5)

    # nnjax writes: Keras and nnjax both read the regularizers and constraints back.
    nj.utils.set_random_seed(3)
    model = build(nj)
    path = str(tmp_path / "from_nnjax.keras")
    model.save(path)
    for config in (
        keras.models.load_model(path).get_layer("head").get_config(),
        nj.models.load_model(path).get_layer("head").get_config(),
    ):
        assert penalty_entries(config) == penalty_entries(theirs.get_layer("head").get_config())
    clone = nj.models.clone_model(model)
    for name in ("lstm", "conv", "head"):
        assert penalty_entries(clone.get_layer(name).get_config()) == penalty_entries(model.get_layer(name).get_config())
        assert penalty_entries(model.get_layer(name).get_config()) == penalty_entries(theirs.get_layer(name).get_config())
