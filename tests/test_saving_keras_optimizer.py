""".keras files carry the compile state both ways: `compile_config` and the optimizer's variables.

Oracle: Keras 3 itself. A model trained in nnjax and saved is loaded by `keras.models.load_model`; its
optimizer variables (looked up by Keras's own variable names) equal nnjax's state, and one more epoch in
Keras equals one more in nnjax. The other way round, a model Keras trained and saved continues in nnjax
exactly as in Keras. Tolerances: 1e-7 on copied arrays, 1e-6 on weights and logs after further steps
(float32 updates of the same values in the same order).
"""

import numpy as np
import pytest

import nnjax as nj

keras = pytest.importorskip("keras")

RS = np.random.RandomState(0)
X = RS.randn(16, 4).astype("float32")
Y = RS.randint(0, 3, 16).astype("int32")
LAYERS = ("h", "bn", "o")


def _nnjax_model():
    nj.utils.set_random_seed(0)
    return nj.Sequential(
        [
            nj.layers.Dense(5, activation="tanh", input_shape=(4,), name="h"),
            nj.layers.BatchNormalization(name="bn"),
            nj.layers.Dense(3, name="o"),
        ]
    )


def _assert_same_weights(mine, theirs, atol):
    for name in LAYERS:
        for got, want in zip(mine.get_layer(name).get_weights(), theirs.get_layer(name).get_weights(), strict=True):
            np.testing.assert_allclose(got, want, rtol=0, atol=atol, err_msg=name)


def _slots(model, names) -> dict:
    """nnjax's optimizer slots by (layer, weight, slot name), read from the model's optimizer state."""
    state = model.state.opt_state.inner_state
    found = {}
    for slot_name, slot in zip(names, state.slots, strict=True):
        for index, layer in enumerate(LAYERS):
            for weight, variable in slot["layers"][index].items():
                found[(layer, weight, slot_name)] = np.asarray(variable.get_value())
    return found


OPTIMIZERS = {
    "adam": (lambda: nj.optimizers.Adam(0.01), lambda: keras.optimizers.Adam(0.01)),
    "sgd_momentum": (lambda: nj.optimizers.SGD(0.05, momentum=0.9), lambda: keras.optimizers.SGD(0.05, momentum=0.9)),
    "rmsprop_centered": (
        lambda: nj.optimizers.RMSprop(0.01, momentum=0.5, centered=True),
        lambda: keras.optimizers.RMSprop(0.01, momentum=0.5, centered=True),
    ),
    "nadam": (lambda: nj.optimizers.Nadam(0.01), lambda: keras.optimizers.Nadam(0.01)),
    "adam_schedule": (
        lambda: nj.optimizers.Adam(nj.optimizers.schedules.ExponentialDecay(0.1, 3, 0.5)),
        lambda: keras.optimizers.Adam(keras.optimizers.schedules.ExponentialDecay(0.1, 3, 0.5)),
    ),
}


@pytest.mark.parametrize("optimizer", ["adam", "sgd_momentum", "rmsprop_centered", "nadam"])
def test_keras_continues_an_nnjax_trained_model(tmp_path, optimizer):
    model = _nnjax_model()
    model.compile(
        optimizer=OPTIMIZERS[optimizer][0](),
        loss=nj.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
        seed=0,
    )
    model.fit(X, Y, epochs=1, batch_size=8, shuffle=False, verbose=0)
    kmodel = keras.models.load_model(model.save(str(tmp_path / "m.keras")))
    assert (
        type(kmodel.optimizer).__name__
        == {"adam": "Adam", "sgd_momentum": "SGD", "rmsprop_centered": "RMSprop", "nadam": "Nadam"}[optimizer]
    )
    assert int(kmodel.optimizer.iterations) == 2
    if optimizer in ("adam", "sgd_momentum"):
        mine = _slots(model, ("momentum", "velocity") if optimizer == "adam" else ("momentum",))
        theirs = {v.path: np.asarray(v) for v in kmodel.optimizer.variables}
        assert len(theirs) == 2 + len(mine)  # iteration, learning_rate, one array per (variable, slot)
        for (layer, weight, slot), value in mine.items():
            (key,) = [k for k in theirs if k.split("/")[-1] == f"{layer}_{weight}_{slot}"]  # Keras: "adam/h_kernel_momentum"
            np.testing.assert_allclose(theirs[key], value, rtol=0, atol=1e-7)
    k_logs = kmodel.fit(X, Y, epochs=1, batch_size=8, shuffle=False, verbose=0).history
    n_logs = model.fit(X, Y, epochs=1, batch_size=8, shuffle=False, verbose=0).history
    _assert_same_weights(model, kmodel, atol=1e-6)
    for key in ("loss", "accuracy"):
        np.testing.assert_allclose(n_logs[key], k_logs[key], rtol=1e-6, err_msg=key)


@pytest.mark.parametrize("optimizer", ["adam", "adam_schedule", "sgd_momentum"])
def test_nnjax_continues_a_keras_trained_model(tmp_path, optimizer):
    keras.utils.set_random_seed(0)
    kmodel = keras.Sequential(
        [
            keras.Input((4,)),
            keras.layers.Dense(5, activation="tanh", name="h"),
            keras.layers.BatchNormalization(name="bn"),
            keras.layers.Dense(3, name="o"),
        ]
    )
    kmodel.compile(
        optimizer=OPTIMIZERS[optimizer][1](),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy", keras.metrics.SparseTopKCategoricalAccuracy(k=2)],
    )
    kmodel.fit(X, Y, epochs=1, batch_size=8, shuffle=False, verbose=0)
    path = str(tmp_path / "k.keras")
    kmodel.save(path)
    model = nj.models.load_model(path)
    assert model.metric_names() == ["loss", "accuracy", "sparse_top_k_categorical_accuracy"]
    assert int(model.state.step) == int(kmodel.optimizer.iterations) == 2
    k_logs = kmodel.fit(X, Y, epochs=2, batch_size=8, shuffle=False, verbose=0).history
    n_logs = model.fit(X, Y, epochs=2, batch_size=8, shuffle=False, verbose=0).history
    _assert_same_weights(model, kmodel, atol=1e-6)
    for key in k_logs:
        np.testing.assert_allclose(n_logs[key], k_logs[key], rtol=1e-6, err_msg=key)


def test_keras_file_without_compile_state(tmp_path):
    """include_optimizer=False writes no compile_config: Keras loads the model uncompiled."""
    model = _nnjax_model()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.fit(X, Y, epochs=1, batch_size=8, verbose=0)
    kmodel = keras.models.load_model(model.save(str(tmp_path / "plain.keras"), include_optimizer=False))
    assert not kmodel.compiled
    _assert_same_weights(model, kmodel, atol=0)


def test_functional_model_with_nested_shared_and_frozen_layers(tmp_path):
    """Keras orders the slots by its graph walk (nested models in place, a shared layer once, a frozen one left out)."""
    nj.utils.set_random_seed(0)
    a, b, inner_input = nj.Input((4,), name="a"), nj.Input((4,), name="b"), nj.Input((5,))
    shared = nj.layers.Dense(3, activation="tanh", name="shared")
    inner = nj.Sequential([nj.layers.Dense(5, name="i1"), nj.layers.Dense(5, activation="relu", name="i2")], name="inner")
    head = nj.Model(inner_input, nj.layers.Dense(2, name="fd")(inner_input), name="head")
    hidden = nj.layers.Concatenate(name="cat")([shared(a), shared(b)])
    model = nj.Model([a, b], head(inner(nj.layers.Dense(6, name="frozen")(hidden))), name="graph")
    model.get_layer("frozen").trainable = False
    model.compile(optimizer=nj.optimizers.Adam(0.01), loss="mse", seed=0)
    xs, y = [X, X[::-1] * 0.5], RS.randn(16, 2).astype("float32")
    model.fit(xs, y, epochs=1, batch_size=8, shuffle=False, verbose=0)
    kmodel = keras.models.load_model(model.save(str(tmp_path / "g.keras")))
    assert [v.path for v in kmodel.trainable_variables] == [
        "shared/kernel",
        "shared/bias",
        "i1/kernel",
        "i1/bias",
        "i2/kernel",
        "i2/bias",
        "fd/kernel",
        "fd/bias",
    ]
    k_logs = kmodel.fit(xs, y, epochs=2, batch_size=8, shuffle=False, verbose=0).history
    n_logs = model.fit(xs, y, epochs=2, batch_size=8, shuffle=False, verbose=0).history
    np.testing.assert_allclose(n_logs["loss"], k_logs["loss"], rtol=1e-6)
    np.testing.assert_allclose(model.predict(xs, verbose=0), kmodel.predict(xs, verbose=0), rtol=0, atol=1e-6)
