# ruff: noqa: N803, N806 - the programs name the framework module K and their classes as Keras code does
"""Whole Keras programs, in the idioms of keras-io's examples and guides, run on Keras 3 and on nnjax.

Each program below is written once as a function of the module it is given (`keras` or `nnjax`): the
only difference between the two runs is that module, as for a user who changes `import keras` into
`import nnjax as nj`. The programs are written here (not copied); each names the keras-io file whose
idioms it follows (repository keras-team/keras-io, with the commit read). Data is small and in memory.

A Keras user moves weights with `model.set_weights(other.get_weights())`; the tests do the same to
start both runs from Keras's initial weights, then compare what the program computes: History, the
evaluation, predictions. Two things differ from the programs' own code, both because the two frameworks
draw different random numbers: dropout rates are 0, and `fit` gets `shuffle=False` (each framework
shuffles in its own order). Nothing else is changed. Tolerances: outputs 1e-5 absolute, training logs
1e-4 relative (float32; XLA fuses the two programs differently).
"""

import subprocess
import sys
import textwrap

import numpy as np
import pytest

import nnjax as nj

keras = pytest.importorskip("keras")

ATOL = 1e-5
LOG_RTOL = 1e-4


@pytest.fixture(scope="module")
def digits():
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    return (x / 16.0).astype("float32")[:512], y.astype("int32")[:512]


def same_history(a, b, rtol=LOG_RTOL):
    assert sorted(a.history) == sorted(b.history)
    for key in a.history:
        np.testing.assert_allclose(b.history[key], a.history[key], rtol=rtol, atol=1e-6, err_msg=key)


def twins(build):
    """The program's model on Keras and on nnjax, nnjax's weights set from Keras's (`set_weights`)."""
    keras.utils.set_random_seed(0)
    nj.utils.set_random_seed(0)
    k_model, n_model = build(keras), build(nj)
    assert [w.shape for w in n_model.get_weights()] == [tuple(w.shape) for w in k_model.get_weights()]
    n_model.set_weights(k_model.get_weights())
    return k_model, n_model


# --- examples/vision/mnist_convnet.py (keras-io commit 14a2af7ef8d0558837cb98378504421e55f0d980) ------------
def mnist_convnet(K, dropout=0.5):
    num_classes = 10
    return K.Sequential(
        [
            K.Input(shape=(8, 8, 1)),
            K.layers.Conv2D(8, kernel_size=(3, 3), activation="relu"),
            K.layers.MaxPooling2D(pool_size=(2, 2)),
            K.layers.Conv2D(16, kernel_size=(2, 2), activation="relu"),
            K.layers.MaxPooling2D(pool_size=(2, 2)),
            K.layers.Flatten(),
            K.layers.Dropout(dropout),
            K.layers.Dense(num_classes, activation="softmax"),
        ]
    )


def train_convnet(K, model, x, y):
    x = np.expand_dims(x.reshape(-1, 8, 8), -1)
    y = K.utils.to_categorical(y, 10)
    model.compile(loss="categorical_crossentropy", optimizer="adam", metrics=["accuracy"])
    history = model.fit(x, y, batch_size=64, epochs=2, validation_split=0.1, shuffle=False, verbose=0)
    score = model.evaluate(x, y, verbose=0)
    return history, score, model.predict(x[:8], verbose=0)


def test_mnist_convnet_program_matches_keras(digits):
    x, y = digits
    k_model, n_model = twins(lambda K: mnist_convnet(K, dropout=0.0))
    k_hist, k_score, k_pred = train_convnet(keras, k_model, x, y)
    n_hist, n_score, n_pred = train_convnet(nj, n_model, x, y)
    same_history(k_hist, n_hist)
    np.testing.assert_allclose(n_score, k_score, rtol=LOG_RTOL)
    np.testing.assert_allclose(np.asarray(n_pred), k_pred, atol=ATOL)
    assert n_model.count_params() == k_model.count_params()


# --- guides/functional_api.py (keras-io commit 14a2af7ef8d0558837cb98378504421e55f0d980) -------------------
def ticket_router(K, num_words=50, num_tags=4, num_departments=3):
    title_input = K.Input(shape=(None,), name="title")
    body_input = K.Input(shape=(None,), name="body")
    tags_input = K.Input(shape=(num_tags,), name="tags")
    title_features = K.layers.Embedding(num_words, 8)(title_input)
    body_features = K.layers.Embedding(num_words, 8)(body_input)
    title_features = K.layers.LSTM(8)(title_features)
    body_features = K.layers.LSTM(4)(body_features)
    x = K.layers.concatenate([title_features, body_features, tags_input])
    priority_pred = K.layers.Dense(1, name="priority")(x)
    department_pred = K.layers.Dense(num_departments, name="department")(x)
    return K.Model(inputs=[title_input, body_input, tags_input], outputs=[priority_pred, department_pred])


def train_router(K, model, num_words=50, num_tags=4, num_departments=3):
    rng = np.random.default_rng(0)
    title_data = rng.integers(num_words, size=(96, 5))
    body_data = rng.integers(num_words, size=(96, 12))
    tags_data = rng.integers(2, size=(96, num_tags)).astype("float32")
    priority_targets = rng.random(size=(96, 1))
    dept_targets = rng.integers(2, size=(96, num_departments))
    model.compile(
        optimizer=K.optimizers.RMSprop(1e-3),
        loss={
            "priority": K.losses.BinaryCrossentropy(from_logits=True),
            "department": K.losses.CategoricalCrossentropy(from_logits=True),
        },
        loss_weights={"priority": 1.0, "department": 0.2},
    )
    history = model.fit(
        {"title": title_data, "body": body_data, "tags": tags_data},
        {"priority": priority_targets, "department": dept_targets},
        epochs=2,
        batch_size=32,
        shuffle=False,
        verbose=0,
    )
    return history, model.predict([title_data[:4], body_data[:4], tags_data[:4]], verbose=0)


def test_functional_guide_multi_input_multi_output_program_matches_keras():
    k_model, n_model = twins(ticket_router)
    k_hist, k_pred = train_router(keras, k_model)
    n_hist, n_pred = train_router(nj, n_model)
    same_history(k_hist, n_hist)
    for k_out, n_out in zip(k_pred, n_pred, strict=True):
        np.testing.assert_allclose(np.asarray(n_out), k_out, atol=ATOL)


def toy_resnet(K, dropout=0.5):
    inputs = K.Input(shape=(8, 8, 1), name="img")
    x = K.layers.Conv2D(8, 3, activation="relu")(inputs)
    x = K.layers.Conv2D(8, 3, activation="relu", padding="same")(x)
    block_1_output = K.layers.MaxPooling2D(2)(x)
    x = K.layers.Conv2D(8, 3, activation="relu", padding="same")(block_1_output)
    x = K.layers.Conv2D(8, 3, activation="relu", padding="same")(x)
    block_2_output = K.layers.add([x, block_1_output])
    x = K.layers.Conv2D(8, 3, activation="relu")(block_2_output)
    x = K.layers.GlobalAveragePooling2D()(x)
    x = K.layers.Dense(16, activation="relu")(x)
    x = K.layers.Dropout(dropout)(x)
    outputs = K.layers.Dense(10)(x)
    return K.Model(inputs, outputs, name="toy_resnet")


def test_functional_guide_toy_resnet_program_matches_keras(digits):
    x, y = digits
    x = x.reshape(-1, 8, 8, 1)
    k_model, n_model = twins(lambda K: toy_resnet(K, dropout=0.0))
    runs = []
    for K, model in ((keras, k_model), (nj, n_model)):
        model.compile(optimizer=K.optimizers.RMSprop(1e-3), loss=K.losses.CategoricalCrossentropy(from_logits=True),
                      metrics=["acc"])  # fmt: skip
        runs.append(model.fit(x, K.utils.to_categorical(y, 10), batch_size=64, epochs=1, validation_split=0.2, shuffle=False, verbose=0))
    same_history(*runs)


# --- guides/making_new_layers_and_models_via_subclassing.py (keras-io commit 175a5e441aee7e228bfa9100bab65c2dae303273)
def subclassing_classes(K):
    class Linear(K.layers.Layer):
        def __init__(self, units=32, **kwargs):
            super().__init__(**kwargs)
            self.units = units

        def build(self, input_shape):
            self.w = self.add_weight(shape=(input_shape[-1], self.units), initializer="random_normal", trainable=True)
            self.b = self.add_weight(shape=(self.units,), initializer="random_normal", trainable=True)

        def call(self, inputs):
            return K.ops.matmul(inputs, self.w) + self.b

        def get_config(self):
            config = super().get_config()
            config.update({"units": self.units})
            return config

    class ActivityRegularizationLayer(K.layers.Layer):
        def __init__(self, rate=1e-2):
            super().__init__()
            self.rate = rate

        def call(self, inputs):
            self.add_loss(self.rate * K.ops.mean(inputs))
            return inputs

    class MLPBlock(K.layers.Layer):
        def __init__(self):
            super().__init__()
            self.linear_1 = Linear(16)
            self.linear_2 = Linear(16)
            self.regularization = ActivityRegularizationLayer(1e-2)
            self.linear_3 = Linear(1)

        def call(self, inputs):
            x = K.ops.relu(self.linear_1(inputs))
            x = self.regularization(K.ops.relu(self.linear_2(x)))
            return self.linear_3(x)

    class Regressor(K.Model):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.block = MLPBlock()

        def call(self, inputs):
            return self.block(inputs)

    return Linear, ActivityRegularizationLayer, MLPBlock, Regressor


def test_subclassing_guide_layer_contract_matches_keras():
    runs = {}
    for K in (keras, nj):
        K.utils.set_random_seed(0)
        Linear, ActivityRegularizationLayer, MLPBlock, _ = subclassing_classes(K)
        mlp = MLPBlock()
        y = mlp(np.ones((3, 8), "float32"))
        layer = Linear(4, name="lin")
        config = layer.get_config()
        new_layer = Linear.from_config(config)
        runs[K.__name__] = dict(
            out_shape=tuple(y.shape), weights=len(mlp.weights), trainable=len(mlp.trainable_weights),
            losses=len(mlp.losses), config_units=config["units"], new_units=new_layer.units, new_name=new_layer.name,
        )  # fmt: skip
    assert runs["nnjax"] == runs["keras"]
    assert runs["keras"]["weights"] == 6 and runs["keras"]["losses"] == 1


def test_subclassing_guide_add_loss_with_and_without_a_compiled_loss_matches_keras():
    rng = np.random.default_rng(0)
    x, y = rng.random((64, 3)).astype("float32"), rng.random((64, 3)).astype("float32")
    runs = []
    for K in (keras, nj):
        _, ActivityRegularizationLayer, _, _ = subclassing_classes(K)
        inputs = K.Input(shape=(3,))
        outputs = ActivityRegularizationLayer()(K.layers.Dense(3, kernel_initializer="ones")(inputs))
        model = K.Model(inputs, outputs)
        model.compile(optimizer="adam", loss="mse")
        first = model.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0).history["loss"]
        model.compile(optimizer="adam")  # only the layer's added loss is minimised
        second = model.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0).history["loss"]
        runs.append((first, second, model.get_weights()))
    (k_first, k_second, k_weights), (n_first, n_second, n_weights) = runs
    np.testing.assert_allclose(n_first, k_first, rtol=LOG_RTOL)
    np.testing.assert_allclose(n_second, k_second, rtol=LOG_RTOL)
    for k_w, n_w in zip(k_weights, n_weights, strict=True):
        np.testing.assert_allclose(n_w, k_w, atol=ATOL)


def test_subclassed_model_program_trains_like_keras():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(96, 8)).astype("float32"), rng.normal(size=(96, 1)).astype("float32")
    models = {}
    for K in (keras, nj):
        K.utils.set_random_seed(0)
        *_, Regressor = subclassing_classes(K)
        models[K.__name__] = model = Regressor(name="regressor")
        model(x[:2])  # builds the weights
    models["nnjax"].set_weights(models["keras"].get_weights())
    runs = []
    for K in (keras, nj):
        model = models[K.__name__]
        model.compile(optimizer=K.optimizers.SGD(0.05, momentum=0.9), loss="mse", metrics=["mae"])
        runs.append(model.fit(x, y, batch_size=32, epochs=3, shuffle=False, verbose=0))
    same_history(*runs)
    np.testing.assert_allclose(np.asarray(models["nnjax"].predict(x[:5], verbose=0)),
                               models["keras"].predict(x[:5], verbose=0), atol=ATOL)  # fmt: skip


def test_keras_get_weights_order_loads_layers_whose_weights_have_equal_shapes():
    """An LSTM whose input width equals its units has kernel and recurrent_kernel of one shape: a list in any
    other order than Keras's would load silently wrong."""
    x = np.random.default_rng(2).normal(size=(4, 5, 6)).astype("float32")
    k_model, n_model = twins(lambda K: K.Sequential([K.Input((5, 6)), K.layers.LSTM(6), K.layers.BatchNormalization(),
                                                     K.layers.Dense(6)]))  # fmt: skip
    np.testing.assert_allclose(np.asarray(n_model.predict(x, verbose=0)), k_model.predict(x, verbose=0), atol=ATOL)
    for k_w, n_w in zip(k_model.get_weights(), n_model.get_weights(), strict=True):
        np.testing.assert_array_equal(n_w, k_w)


# --- guides/serialization_and_saving.py (keras-io commit 14a2af7ef8d0558837cb98378504421e55f0d980) ---------
SAVING_PROGRAM = textwrap.dedent(
    """
    import sys
    import numpy as np
    K = __import__(sys.argv[1])
    if K.__name__ == "keras":
        K.utils.set_random_seed(0)

    @K.saving.register_keras_serializable(package="MyLayers")
    class CustomLayer(K.layers.Layer):
        def __init__(self, factor, **kwargs):
            super().__init__(**kwargs)
            self.factor = factor

        def call(self, x):
            return x * self.factor

        def get_config(self):
            config = super().get_config()
            config.update({"factor": self.factor})
            return config

    x = np.linspace(-1, 1, 40, dtype="float32").reshape(10, 4)
    if sys.argv[2] == "save":
        inputs = K.Input(shape=(4,))
        outputs = K.layers.Dense(1)(CustomLayer(0.5)(K.layers.Dense(3, activation="relu")(inputs)))
        model = K.Model(inputs, outputs)
        model.compile(optimizer="adam", loss="mse")
        model.fit(x, x[:, :1], epochs=2, verbose=0)
        model.save(sys.argv[3])
    else:
        model = K.models.load_model(sys.argv[3])
    np.save(sys.argv[4], np.asarray(model.predict(x, verbose=0)))
    """
)


@pytest.mark.slow
def test_saving_guide_program_keras_file_loads_in_a_fresh_nnjax_process(tmp_path):
    script = tmp_path / "program.py"
    script.write_text(SAVING_PROGRAM)
    env_python = [sys.executable, str(script)]

    def run(*args):
        done = subprocess.run(env_python + list(args), capture_output=True, text=True, timeout=300,
                              env={**__import__("os").environ, "KERAS_BACKEND": "jax"})  # fmt: skip
        assert done.returncode == 0, done.stderr[-3000:]

    run("keras", "save", str(tmp_path / "model.keras"), str(tmp_path / "keras_pred.npy"))
    run("nnjax", "load", str(tmp_path / "model.keras"), str(tmp_path / "nnjax_pred.npy"))
    run("nnjax", "save", str(tmp_path / "ours.keras"), str(tmp_path / "ours_pred.npy"))
    run("keras", "load", str(tmp_path / "ours.keras"), str(tmp_path / "ours_in_keras.npy"))
    np.testing.assert_allclose(np.load(tmp_path / "nnjax_pred.npy"), np.load(tmp_path / "keras_pred.npy"), atol=ATOL)
    np.testing.assert_allclose(np.load(tmp_path / "ours_in_keras.npy"), np.load(tmp_path / "ours_pred.npy"), atol=ATOL)
