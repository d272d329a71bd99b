"""Bad input fails early, with a message naming what was expected and what was received."""

import jax.numpy as jnp
import numpy as np
import optax
import pytest

import nnjax as nj


def compiled_model(input_shape=(8, 8)):
    model = nj.Sequential([
        nj.layers.Flatten(input_shape=input_shape),
        nj.layers.Dense(16, activation="relu"),
        nj.layers.Dense(10, activation="softmax"),
    ])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    return rng.random((40, 8, 8), dtype=np.float32), rng.integers(0, 10, 40)


def assert_nothing_trained(model, before):
    for a, b in zip(model.get_weights(), before):
        np.testing.assert_array_equal(a, b)


def test_labels_out_of_range_never_train(data):
    x, y = data
    model = compiled_model()
    before = model.get_weights()
    bad = y.copy()
    bad[7] = 10
    with pytest.raises(ValueError, match=r"labels must be in \[0, 10\) for a model with 10 outputs; received labels in \[0, 10\] \(first bad label at example 7\)"):
        model.fit(x, bad, epochs=1, verbose=0)
    bad[7] = -1
    with pytest.raises(ValueError, match=r"received labels in \[-1, 9\]"):
        model.fit(x, bad, epochs=1, verbose=0)
    with pytest.raises(ValueError, match=r"labels must be in \[0, 10\)"):
        model.evaluate(x, bad, verbose=0)
    assert_nothing_trained(model, before)


def test_non_integer_labels_for_sparse_loss(data):
    x, y = data
    model = compiled_model()
    with pytest.raises(ValueError, match="expects integer class ids; received labels of dtype float64 with non-integer values"):
        model.fit(x, y + 0.5, epochs=1, verbose=0)


def test_one_hot_labels_with_sparse_loss_name_the_fix(data):
    x, y = data
    model = compiled_model()
    with pytest.raises(ValueError, match=r"expects integer labels of shape \(None,\).*received labels of shape \(40, 10\).*categorical_crossentropy"):
        model.fit(x, np.eye(10)[y], epochs=1, verbose=0)


def test_x_and_y_lengths_differ(data):
    x, y = data
    with pytest.raises(ValueError, match="`x` and `y` must have the same number of examples; received x with 40 and y with 39"):
        compiled_model().fit(x, y[:-1], epochs=1, verbose=0)


def test_input_shape_mismatch(data):
    x, y = data
    model = compiled_model()
    with pytest.raises(ValueError, match=r"expected shape \(None, 8, 8\), received input with shape \(None, 8, 9\)"):
        model.fit(np.zeros((40, 8, 9), np.float32), y, epochs=1, verbose=0)
    with pytest.raises(ValueError, match=r"expected shape \(None, 8, 8\), received input with shape \(None, 64\)"):
        model.predict(np.zeros((4, 64), np.float32))


def test_dense_layer_standalone_shape_error():
    layer = nj.layers.Dense(4, name="head")
    layer(np.ones((2, 3), np.float32))
    with pytest.raises(ValueError, match=r'Input 0 of layer "head" is incompatible with the layer: expected axis -1 of input shape to have value 3, but received input with shape \(2, 5\)'):
        layer(np.ones((2, 5), np.float32))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"optimizer": "adamm"}, r"unknown optimizer 'adamm'; expected one of \[.*'adam'.*'sgd'"),
        ({"loss": "sparse_crossentropy"}, r"unknown loss 'sparse_crossentropy'; expected one of \[.*'sparse_categorical_crossentropy'"),
        ({"metrics": ["acuracy"]}, r"unknown metric 'acuracy'; expected one of \[.*'accuracy'"),
        ({"optimizer": 3}, r"expected an optimizer name .* or an optax.GradientTransformation; got 3"),
    ],
)
def test_unknown_names_list_the_valid_ones(kwargs, message):
    model = nj.Sequential([nj.layers.Dense(2, input_shape=(3,))])
    args = {"optimizer": "adam", "loss": "mse", **kwargs}
    with pytest.raises((ValueError, TypeError), match=message):
        model.compile(**args)


def test_fit_without_a_loss_or_an_added_loss_says_what_to_pass():
    """Keras compiles without `loss` (a layer's add_loss may be the objective) and stops at the first step."""
    model = nj.Sequential([nj.layers.Dense(2, input_shape=(3,))])
    model.compile(optimizer="adam")
    with pytest.raises(ValueError, match=r"No loss to compute: .* none of its layers called `add_loss`; pass `loss`"):
        model.fit(np.zeros((4, 3), np.float32), np.zeros((4, 2), np.float32), verbose=0)


def test_unknown_activation_names_the_layer():
    with pytest.raises(ValueError, match=r'Dense "hidden": unknown activation \'rleu\'; expected one of \[.*\'relu\''):
        nj.layers.Dense(4, activation="rleu", name="hidden")


def test_empty_dataset():
    model = compiled_model()
    with pytest.raises(ValueError, match="the dataset is empty: expected at least one example in `x`; received 0 examples"):
        model.fit(np.zeros((0, 8, 8), np.float32), np.zeros((0,), np.int32), epochs=1, verbose=0)


def test_predict_before_build():
    model = nj.Sequential([nj.layers.Dense(4), nj.layers.Dense(2)])
    with pytest.raises(ValueError, match=r'predict: model ".*" has not been built yet: its input shape is unknown'):
        model.predict(np.ones((3, 5), np.float32))


def test_fit_before_compile(data):
    x, y = data
    model = nj.Sequential([nj.layers.Flatten(input_shape=(8, 8)), nj.layers.Dense(10)])
    with pytest.raises(RuntimeError, match="you must call compile"):
        model.fit(x, y, verbose=0)


def test_failing_fit_loses_nothing_saved(tmp_path, data):
    x, y = data
    model = compiled_model()
    model.fit(x, y, epochs=1, verbose=0)
    path = model.save_weights(tmp_path / "w")
    saved = model.get_weights()
    bad = y.copy()
    bad[0] = 99
    with pytest.raises(ValueError):
        model.fit(x, bad, epochs=1, verbose=0)
    assert_nothing_trained(model, saved)
    fresh = compiled_model()
    fresh.load_weights(path)
    for a, b in zip(fresh.get_weights(), saved):
        np.testing.assert_array_equal(a, b)


def test_load_weights_of_another_model_is_refused(tmp_path):
    small = nj.Sequential([nj.layers.Dense(3, input_shape=(2,))])
    path = small.save_weights(tmp_path / "small")
    big = nj.Sequential([nj.layers.Dense(5, input_shape=(2,))])
    with pytest.raises(ValueError, match="does not match the model"):
        big.load_weights(path)
    with pytest.raises(FileNotFoundError, match="no checkpoint at"):
        big.load_weights(tmp_path / "missing")


def test_embedding_ids_out_of_range_fail_before_training():
    """A compiled gather cannot report a bad id, so fit checks the whole array on the host first."""
    model = nj.Sequential([nj.layers.Embedding(10, 4, name="tokens"), nj.layers.Flatten(), nj.layers.Dense(2, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    ids = np.tile(np.arange(5), (20, 1))
    ids[13, 2] = 10
    with pytest.raises(ValueError, match=r'layer "tokens".*expected ids in \[0, 10\).*received ids in \[0, 10\]'):
        model.fit(ids, np.zeros(20, np.int32), epochs=1, verbose=0)
    gpt = nj.Model(nj.models.GPT(vocab_size=16, block_size=8, num_layers=1, num_heads=2, embed_dim=8), input_shape=(8,), input_dtype="int32")
    gpt.compile(optimizer="adam", loss=nj.losses.SparseCategoricalCrossentropy(from_logits=True))
    tokens = np.full((4, 8), 3)
    tokens[1, 1] = 16
    with pytest.raises(ValueError, match=r"expected ids in \[0, 16\)"):
        gpt.fit(tokens, np.zeros((4, 8), np.int32), epochs=1, verbose=0)


def test_random_uniform_initializer_is_keras_range():
    import jax

    values = np.asarray(nj.initializers.get("random_uniform")(jax.random.PRNGKey(0), (10000,)))
    assert values.min() >= -0.05 and values.max() < 0.05 and values.min() < -0.045 and values.max() > 0.045


def test_keras_optimizer_methods_on_an_nnjax_optimizer_say_what_to_use():
    """A Keras program's second optimizer (`self.d_optimizer.stateless_apply(...)`, `optimizer.apply_gradients`)
    meets an optax transformation: the error names the method and the optax calls that do the same."""
    tx = nj.optimizers.Adam(1e-3)
    assert isinstance(tx, optax.GradientTransformation)
    for method in ("stateless_apply", "apply_gradients", "build", "variables"):
        with pytest.raises(AttributeError, match=rf"not Keras optimizer objects: `{method}` is not there.*tx.update"):
            getattr(tx, method)
    params = {"w": jnp.ones(3)}
    updates, _ = tx.update(params, tx.init(params), params)  # still plain optax
    np.testing.assert_allclose(optax.apply_updates(params, updates)["w"], 1 - 1e-3, rtol=1e-5)
