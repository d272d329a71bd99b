"""Whole-model saving: folders (architecture JSON + Orbax arrays), JSON configs, clone_model, Keras 3 ".keras" files.

Oracles: the model that was saved (its predictions and an uninterrupted training run), and Keras 3
itself for ".keras" files, in both directions (a model Keras trained and saved, read by nnjax; a file
nnjax wrote, read by `keras.models.load_model`).
"""

import json
import os
import subprocess
import sys
import textwrap

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import nnjax as nj

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# float32 forward passes of the same arithmetic on the same weights: equal up to reassociation in XLA's fused kernels.
ATOL = 1e-5


def _data(seed=0, n=32):
    rs = np.random.RandomState(seed)
    x = rs.randn(n, 4).astype("float32")
    y = (x[:, 0] + x[:, 1] > 0).astype("int32")
    return x, y


def _tiny():
    return nj.Sequential([nj.layers.Dense(8, activation="relu", input_shape=(4,)), nj.layers.Dropout(0.25),
                          nj.layers.Dense(2, activation="softmax")])


RESUME_CHILD = textwrap.dedent("""
    import sys
    import numpy as np
    import nnjax as nj
    path, out = sys.argv[1], sys.argv[2]
    rs = np.random.RandomState(0)
    x = rs.randn(32, 4).astype("float32"); y = (x[:, 0] + x[:, 1] > 0).astype("int32")
    model = nj.models.load_model(path)
    model.fit(x, y, epochs=3, initial_epoch=2, batch_size=8, verbose=0)
    np.savez(out, *model.get_weights())
""")


def test_resume_in_a_fresh_process_equals_an_uninterrupted_run(tmp_path):
    """2 epochs, save, load in a new process, 1 more epoch == 3 epochs in one go (Adam, Dropout, shuffling)."""
    x, y = _data()
    whole = _tiny()
    whole.compile(optimizer=nj.optimizers.Adam(learning_rate=0.01), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"], seed=3)
    first = nj.models.clone_model(whole)
    first.set_weights(whole.get_weights())
    first.compile(optimizer=nj.optimizers.Adam(learning_rate=0.01), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"], seed=3)
    whole.fit(x, y, epochs=3, batch_size=8, verbose=0)
    first.fit(x, y, epochs=2, batch_size=8, verbose=0)
    path = first.save(str(tmp_path / "model"))
    out = str(tmp_path / "resumed.npz")
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    subprocess.run([sys.executable, "-c", RESUME_CHILD, path, out], check=True, cwd=ROOT, env=env, timeout=120)
    resumed = np.load(out)
    expected = whole.get_weights()
    assert len(resumed.files) == len(expected)
    for i, want in enumerate(expected):
        np.testing.assert_allclose(resumed[f"arr_{i}"], want, atol=1e-6, rtol=0)
    # Not trivially equal: the third epoch moved the weights.
    assert max(np.abs(a - b).max() for a, b in zip(first.get_weights(), expected)) > 1e-4


def test_load_model_compile_false_and_the_saved_state(tmp_path):
    x, y = _data()
    model = _tiny()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, epochs=1, batch_size=16, verbose=0)
    path = model.save(str(tmp_path / "m"))
    plain = nj.models.load_model(path, compile=False)
    assert not plain.compiled
    np.testing.assert_allclose(plain.predict(x, verbose=0), model.predict(x, verbose=0), atol=ATOL)
    again = nj.saving.load_model(path)
    assert again.compiled and again.metric_names() == model.metric_names()
    assert int(again.state.step) == int(model.state.step) == 2


def _graph_model():
    a = nj.Input((4,), name="a")
    b = nj.Input((6,), name="b")
    shared = nj.layers.Dense(3, activation="tanh", name="shared")
    inner_in = nj.Input((3,))
    inner = nj.Model(inner_in, nj.layers.Dense(2, name="inner_dense")(inner_in), name="inner")
    h = nj.layers.Concatenate()([shared(a), shared(b[:, :4])])
    o = inner(nj.layers.Dense(3)(h))
    s = nj.Sequential([nj.layers.Dense(2), nj.layers.LayerNormalization()])(h) * 2.0 + 1.0
    return nj.Model([a, b], {"o": o, "s": s}, name="graph")


def _graph_inputs():
    rs = np.random.RandomState(1)
    return [rs.randn(5, 4).astype("float32"), rs.randn(5, 6).astype("float32")]


def test_functional_graph_json_round_trip_and_clone():
    """Shared layer, nested functional and Sequential models, ops on symbolic tensors, dict outputs."""
    model = _graph_model()
    xs = _graph_inputs()
    rebuilt = nj.models.model_from_json(model.to_json())
    assert [getattr(layer, "name", None) for layer in rebuilt.layers] == [getattr(layer, "name", None) for layer in model.layers]
    rebuilt.set_weights(model.get_weights())
    want, got = model.predict(xs, verbose=0), rebuilt.predict(xs, verbose=0)
    for key in ("o", "s"):
        np.testing.assert_allclose(got[key], want[key], atol=ATOL)
    clone = nj.models.clone_model(model)
    assert [w.shape for w in clone.get_weights()] == [w.shape for w in model.get_weights()]
    assert any(np.abs(a - b).max() > 1e-3 for a, b in zip(clone.get_weights(), model.get_weights()))  # new weights
    assert json.loads(clone.to_json())["config"]["calls"] == json.loads(model.to_json())["config"]["calls"]


def test_functional_folder_round_trip(tmp_path):
    model = _graph_model()
    xs = _graph_inputs()
    path = model.save(str(tmp_path / "graph"), include_optimizer=False)
    loaded = nj.models.load_model(path)
    want, got = model.predict(xs, verbose=0), loaded.predict(xs, verbose=0)
    for key in ("o", "s"):
        np.testing.assert_allclose(got[key], want[key], atol=ATOL)


LAYERS = [
    (lambda: nj.layers.Conv2D(3, 3, strides=2, padding="same", activation="relu"), (2, 8, 8, 2)),
    (lambda: nj.layers.BatchNormalization(momentum=0.9), (2, 5)),
    (lambda: nj.layers.Embedding(7, 3), (2, 4)),
    (lambda: nj.layers.LSTM(3, return_sequences=True, go_backwards=True), (2, 4, 2)),
    (lambda: nj.layers.Bidirectional(nj.layers.GRU(2), merge_mode="sum"), (2, 4, 2)),
    (lambda: nj.layers.TimeDistributed(nj.layers.Dense(2, use_bias=False)), (2, 3, 4)),
    (lambda: nj.layers.MaxPooling2D(pool_size=2), (2, 4, 4, 1)),
    (lambda: nj.layers.MultiHeadAttention(num_heads=2, key_dim=2), None),
]


@pytest.mark.parametrize("index", range(len(LAYERS)))
def test_layer_config_round_trip(index):
    """serialize_layer -> JSON -> deserialize_layer gives a layer computing the same function (weights copied)."""
    make, shape = LAYERS[index]
    layer = make()
    if shape is None:  # attention: query and value
        x = (jnp.ones((2, 3, 4)), jnp.ones((2, 5, 4)))
        call = lambda lay: lay(*x)  # noqa: E731
    else:
        x = jnp.asarray(np.random.RandomState(2).randint(0, 7, shape) if "Embedding" in type(layer).__name__
                        else np.random.RandomState(2).randn(*shape).astype("float32"))
        call = lambda lay: lay(x)  # noqa: E731
    want = call(layer)
    data = json.loads(json.dumps(nj.saving.serialize_layer(layer)))
    copy = nj.saving.deserialize_layer(data)
    assert type(copy) is type(layer) and copy.name == layer.name
    call(copy)
    nnx.update(copy, nnx.state(layer))
    np.testing.assert_allclose(np.asarray(call(copy)), np.asarray(want), atol=ATOL)


def test_custom_layer_needs_registration_and_lambda_needs_its_function(tmp_path):
    class Scale(nj.layers.Layer):
        def __init__(self, factor=2.0, **kwargs):
            super().__init__(**kwargs)
            self.factor = factor

        def call(self, x):
            return x * self.factor

    model = nj.Sequential([nj.layers.Dense(2, input_shape=(3,)), Scale(3.0)])
    with pytest.raises(nj.saving.SerializationError, match=r"Scale.*register_keras_serializable"):
        model.to_json()
    nj.saving.register_keras_serializable(package="tests")(Scale)
    x = np.ones((2, 3), "float32")
    path = model.save(str(tmp_path / "custom"))
    loaded = nj.models.load_model(path)
    assert isinstance(loaded.layers[1], Scale) and loaded.layers[1].factor == 3.0
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=ATOL)

    def cube(t):
        return t ** 3

    lam = nj.Sequential([nj.layers.Dense(2, input_shape=(3,)), nj.layers.Lambda(cube)])
    path = lam.save(str(tmp_path / "lambda"))
    with pytest.raises(nj.saving.SerializationError, match=r"'cube'.*custom_objects"):
        nj.models.load_model(path)
    loaded = nj.models.load_model(path, custom_objects={"cube": cube})
    np.testing.assert_allclose(loaded.predict(x, verbose=0), lam.predict(x, verbose=0), atol=ATOL)


def test_unserialisable_models_say_what_to_add(tmp_path):
    class Block(nnx.Module):
        def __init__(self):
            self.linear = nnx.Linear(3, 2, rngs=nnx.Rngs(0))

        def __call__(self, x):
            return self.linear(x)

    model = nj.Model(Block())
    with pytest.raises(nj.saving.SerializationError, match=r"Block.*get_config.*register_keras_serializable"):
        model.save(str(tmp_path / "block"))
    assert not os.path.exists(tmp_path / "block")
    seq = _tiny()
    with pytest.raises(ValueError, match="HDF5"):
        seq.save(str(tmp_path / "m.h5"))
    seq.compile(optimizer="adam", loss="mse", loss_fn=lambda outputs, batch: outputs.sum())
    with pytest.raises(nj.saving.SerializationError, match="custom loss_fn.*include_optimizer=False"):
        seq.save(str(tmp_path / "loss_fn"))
    seq.save(str(tmp_path / "loss_fn"), include_optimizer=False)


# ---------------------------------------------------------------------------------- Keras 3 files
def _keras_train(model, x, y):
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.fit(x, y, epochs=1, batch_size=8, verbose=0)  # a few steps: BatchNorm statistics and weights move


def test_keras_sequential_file_predicts_the_same_in_nnjax(tmp_path):
    keras = pytest.importorskip("keras")
    rs = np.random.RandomState(0)
    x = rs.randn(16, 6, 6, 3).astype("float32")
    y = rs.randint(0, 3, 16)
    kmodel = keras.Sequential([
        keras.Input((6, 6, 3)), keras.layers.Conv2D(4, 3, activation="relu"), keras.layers.BatchNormalization(),
        keras.layers.MaxPooling2D(), keras.layers.AveragePooling2D(2, padding="same"),
        keras.layers.Flatten(), keras.layers.Dropout(0.2), keras.layers.Dense(6, activation="gelu"),
        keras.layers.LayerNormalization(), keras.layers.Dense(3, activation="softmax"),
    ])
    _keras_train(kmodel, x, y)
    path = str(tmp_path / "k.keras")
    kmodel.save(path)
    model = nj.models.load_model(path)
    np.testing.assert_allclose(model.predict(x, verbose=0), kmodel.predict(x, verbose=0), atol=ATOL)
    assert model.compiled and model.metric_names() == ["loss"]  # Keras's compile_config: names only


def test_keras_functional_file_predicts_the_same_in_nnjax(tmp_path):
    keras = pytest.importorskip("keras")
    rs = np.random.RandomState(0)
    a, b = keras.Input((4,), name="a"), keras.Input((6,), name="b")
    seq, tokens = keras.Input((5, 3), name="seq"), keras.Input((5,), dtype="int32", name="tokens")
    shared = keras.layers.Dense(3, name="shared")
    inner = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, name="inner_dense")], name="inner")
    h = keras.layers.Concatenate()([shared(a), shared(b[:, :4])])
    outputs = {
        "o": inner(keras.layers.Dense(3, activation="relu")(h)),
        "r": keras.layers.Bidirectional(keras.layers.LSTM(2))(seq) + 1.0,
        "e": keras.layers.GRU(3)(keras.layers.Embedding(10, 4)(tokens)),
    }
    kmodel = keras.Model([a, b, seq, tokens], outputs)
    xs = [rs.randn(16, 4).astype("float32"), rs.randn(16, 6).astype("float32"), rs.randn(16, 5, 3).astype("float32"),
          rs.randint(0, 10, (16, 5)).astype("int32")]
    kmodel.compile(optimizer="sgd", loss={"o": "mse", "r": "mse", "e": "mse"})
    kmodel.fit(xs, {"o": np.ones((16, 2)), "r": np.ones((16, 4)), "e": np.ones((16, 3))}, epochs=1, batch_size=8, verbose=0)
    path = str(tmp_path / "f.keras")
    kmodel.save(path)
    model = nj.models.load_model(path)  # compiled with the per-output losses of Keras's compile_config
    assert model.compiled and sorted(model.metric_names()) == ["e_loss", "loss", "o_loss", "r_loss"]
    want, got = kmodel.predict(xs, verbose=0), model.predict(xs, verbose=0)
    for key in outputs:
        np.testing.assert_allclose(got[key], want[key], atol=ATOL)


def test_keras_file_with_an_unsupported_argument_names_it(tmp_path):
    keras = pytest.importorskip("keras")
    kmodel = keras.Sequential([keras.Input((3,)), keras.layers.BatchNormalization(renorm=True)])
    path = str(tmp_path / "r.keras")
    kmodel.save(path)
    with pytest.raises(nj.saving.SerializationError, match=r"renorm=True.*BatchNormalization"):
        nj.models.load_model(path)


def test_nnjax_writes_a_keras_file_that_keras_loads(tmp_path):
    keras = pytest.importorskip("keras")
    rs = np.random.RandomState(0)
    x = rs.randn(16, 6, 3).astype("float32")
    model = nj.Sequential([
        nj.layers.Conv1D(4, 2, activation="relu", input_shape=(6, 3)), nj.layers.BatchNormalization(),
        nj.layers.Bidirectional(nj.layers.GRU(2)),
        nj.layers.LayerNormalization(), nj.layers.Dense(2, activation="softmax"),
    ])
    model.build((None, 6, 3))
    # Weights away from their initial values (BatchNorm statistics too: the variance stays positive).
    model.set_weights([w + 0.1 * rs.randn(*w.shape).astype("float32") for w in model.get_weights()])
    path = model.save(str(tmp_path / "n.keras"))
    kmodel = keras.models.load_model(path)
    np.testing.assert_allclose(kmodel.predict(x, verbose=0), model.predict(x, verbose=0), atol=ATOL)


def test_nnjax_writes_a_functional_keras_file_that_keras_loads(tmp_path):
    """Shared layer, nested models, ops and dict outputs: Keras numbers the weight groups in its own graph order."""
    keras = pytest.importorskip("keras")
    model = _graph_model()
    xs = _graph_inputs()
    path = model.save(str(tmp_path / "g.keras"))
    kmodel = keras.models.load_model(path)
    back = nj.models.load_model(path)  # and nnjax reads its own file
    want, got, again = model.predict(xs, verbose=0), kmodel.predict(xs, verbose=0), back.predict(xs, verbose=0)
    for key in ("o", "s"):
        np.testing.assert_allclose(got[key], want[key], atol=ATOL)
        np.testing.assert_allclose(again[key], want[key], atol=ATOL)


def test_every_registry_layer_is_rebuilt_from_its_config():
    """Every public layer of the registry (tests/test_layers_registry.py) round-trips through JSON to the same config;
    those that hold Python code or a foreign module (Lambda, LinenLayer) say so. Outputs are compared above."""
    from test_layers_registry import CASES

    refused = {}
    for case in CASES:
        layer = case.make()
        try:
            data = json.loads(json.dumps(nj.saving.serialize_layer(layer)))
            copy = nj.saving.deserialize_layer(data)
        except nj.saving.SerializationError as err:
            refused[type(layer).__name__] = str(err)
            continue
        assert type(copy) is type(layer), case.id
        assert json.loads(json.dumps(nj.saving.serialize_layer(copy))) == data, case.id
    assert set(refused) == {"Lambda", "LinenLayer"}, sorted(refused)
    assert "custom_objects" in refused["Lambda"] and "_LinenMLP" in refused["LinenLayer"]


def test_subclassed_model_is_rebuilt_by_its_get_config(tmp_path):
    @nj.saving.register_keras_serializable(package="tests")
    class Tower(nj.Model):
        def __init__(self, units=3):
            super().__init__(nj.Sequential([nj.layers.Dense(units), nj.layers.Dense(1)])._module, input_shape=(4,))
            self.units = units

        def get_config(self):
            return {"units": self.units}

    class Plain(nj.Model):
        pass

    model = Tower(5)
    x = np.random.RandomState(0).randn(3, 4).astype("float32")
    loaded = nj.models.load_model(model.save(str(tmp_path / "tower")))
    assert type(loaded) is Tower and loaded.units == 5
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=ATOL)
    with pytest.raises(nj.saving.SerializationError, match=r"Plain.*get_config.*register_keras_serializable"):
        Plain(nj.layers.Dense(2), input_shape=(3,)).to_json()


def test_every_registry_layer_get_config_rebuilds_it_with_from_config():
    """Keras's layer contract: `type(layer).from_config(layer.get_config())` is the same layer (same config). Layers
    that do not write their own `get_config` get their constructor's arguments (Keras 3's automatic config)."""
    from test_layers_registry import CASES

    failures = {}
    for case in CASES:
        layer = case.make()
        if type(layer).__name__ in ("Lambda", "LinenLayer"):  # hold Python code or a foreign module
            continue
        config = layer.get_config()
        try:
            copy = type(layer).from_config(config)
        except Exception as err:  # noqa: BLE001 - collected to name every failing layer at once
            failures[case.id] = f"{type(err).__name__}: {err}"
            continue
        if copy.get_config() != config:
            failures[case.id] = f"config changed: {config} -> {copy.get_config()}"
    assert not failures, failures
