"""The functional API against Keras 3: graph-building fixtures run unchanged on both frameworks.

Each `build_*` fixture below is one function of the module it is given (`keras` or `nnjax`): it is called
once with Keras and once with nnjax, each wrapped in `Tracked`, which records every layer the fixture
constructs. Keras's initial weights are then copied into nnjax's layers (paired by creation order), and
parameter counts per layer, outputs and training runs are compared. The fixtures cover the idioms of
Keras's functional API (in the style of keras-io's functional API guide, written here): a plain layer
stack, several named inputs and outputs, residual connections, a layer shared by two inputs, and whole
models used as layers. Tolerance: float32, atol 1e-5 (the same arithmetic in a different order: XLA
fuses differently).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import nnjax as nj

keras = pytest.importorskip("keras")

ATOL = 1e-5


class RecordingLayers:
    """A stand-in for `module.layers`: every layer class constructed through it is remembered, in order."""

    def __init__(self, layers_module):
        self._layers, self.created = layers_module, []

    def __getattr__(self, name):
        value = getattr(self._layers, name)
        if not isinstance(value, type):
            return value  # functions (`add`, `concatenate`, `Input`, ...) pass through

        def construct(*args, **kwargs):
            layer = value(*args, **kwargs)
            self.created.append(layer)
            return layer

        return construct


class Tracked:
    """A stand-in for the `keras` / `nnjax` module whose `.layers` records what a fixture builds."""

    def __init__(self, module):
        self._module = module
        self.layers = RecordingLayers(module.layers)

    def __getattr__(self, name):
        return getattr(self._module, name)


def copy_keras_weights(keras_layers, nnjax_layers):
    """Sets each nnjax layer's variables to its Keras twin's, matched by variable name (kernel, bias, ...)."""
    assert len(keras_layers) == len(nnjax_layers)
    for kl, nl in zip(keras_layers, nnjax_layers, strict=True):
        ours = {}
        for path, value in nnx.iter_graph(nl):
            if isinstance(value, nnx.Variable) and path:
                ours.setdefault(str(path[-1]), []).append(value)
        for weight in kl.weights:
            name = weight.path.split("/")[-1]
            assert name in ours, f"{nl.name}: no variable {name!r}; has {sorted(ours)}"
            target = ours[name].pop(0)
            assert tuple(target.shape) == tuple(weight.shape), (nl.name, name)
            target[...] = jnp.asarray(np.asarray(weight.value))
        assert kl.count_params() == nl.count_params(), (kl.name, nl.name)


def run_both(build, *args):
    """Builds the fixture with Keras, then with nnjax, and gives nnjax Keras's initial weights."""
    k_lib, n_lib = Tracked(keras), Tracked(nj)
    k_model = build(k_lib, *args)
    n_model = build(n_lib, *args)
    copy_keras_weights(k_lib.layers.created, n_lib.layers.created)
    return k_model, n_model


def assert_outputs_match(k_model, n_model, x):
    expected = k_model.predict(x, verbose=0)
    got = n_model.predict(x)
    jax.tree.map(lambda e, g: np.testing.assert_allclose(g, e, atol=ATOL, rtol=1e-5), expected, got)


# ------------------------------------------------------------------------------------ fixtures
# Sizes of the digit classifier: 28x28 grey images, two hidden layers, ten classes.
DIGIT_SIDE, DIGIT_HIDDEN, DIGIT_CLASSES = 28, (48, 32), 10


def build_digit_mlp(lib):
    """A plain stack: `Input` -> `Flatten` -> `Dense` layers, one layer object made first and called after,
    and a named `Model(inputs=..., outputs=...)`."""
    pixels = lib.Input(shape=(DIGIT_SIDE, DIGIT_SIDE), name="pixels")
    flat = lib.layers.Flatten()(pixels)
    first_hidden = lib.layers.Dense(DIGIT_HIDDEN[0], activation="relu")  # made, then applied: the layer is an object
    h = first_hidden(flat)
    h = lib.layers.Dense(DIGIT_HIDDEN[1], activation="relu")(h)
    logits = lib.layers.Dense(DIGIT_CLASSES)(h)
    return lib.Model(inputs=pixels, outputs=logits, name="digit_mlp")


def digit_mlp_params() -> int:
    sizes = (DIGIT_SIDE * DIGIT_SIDE, *DIGIT_HIDDEN, DIGIT_CLASSES)
    return sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:], strict=True))


# A request router: two token sequences of any length and a fixed-size flag vector in; an urgency score
# and a team choice out.
ROUTER_VOCAB, ROUTER_FLAGS, ROUTER_TEAMS = 3000, 9, 5


def build_request_router(lib):
    """Several named inputs (two variable-length integer sequences, one float vector), a separate
    `Embedding` + `LSTM` branch per sequence, `layers.concatenate` of the branches with the raw vector,
    and two named output heads in a list."""
    subject = lib.Input(shape=(None,), name="subject")
    message = lib.Input(shape=(None,), name="message")
    flags = lib.Input(shape=(ROUTER_FLAGS,), name="flags")
    message_state = lib.layers.LSTM(24)(lib.layers.Embedding(ROUTER_VOCAB, 12)(message))
    subject_state = lib.layers.LSTM(40)(lib.layers.Embedding(ROUTER_VOCAB, 20)(subject))
    joined = lib.layers.concatenate([flags, subject_state, message_state])
    team = lib.layers.Dense(ROUTER_TEAMS, name="team")(joined)
    urgency = lib.layers.Dense(1, name="urgency")(joined)
    return lib.Model(inputs=[subject, message, flags], outputs=[urgency, team])


def build_residual_cnn(lib):
    """A small residual network: a conv stem and pooling, two blocks whose input is added back with
    `layers.add` (so the graph is a DAG, not a chain), global pooling and a dropout-regularised head."""
    image = lib.Input(shape=(20, 20, 3), name="image")
    x = lib.layers.Conv2D(16, 3, activation="relu")(image)
    skip = lib.layers.MaxPooling2D(2, name="pool")(x)
    for _ in range(2):
        y = lib.layers.Conv2D(16, 3, padding="same", activation="relu")(skip)
        y = lib.layers.Conv2D(16, 3, padding="same")(y)
        skip = lib.layers.add([skip, y])
    x = lib.layers.Conv2D(24, 3, activation="relu")(skip)
    x = lib.layers.GlobalAveragePooling2D()(x)
    x = lib.layers.Dropout(0.3)(lib.layers.Dense(32, activation="relu")(x))
    return lib.Model(image, lib.layers.Dense(6)(x), name="residual_cnn")


SHARED_VOCAB, SHARED_DIM = 600, 20


def build_shared_encoder(lib):
    """One `Embedding` object applied to two int32 inputs of different lengths: a single lookup table
    serves both, and the model returns both encodings plus their pooled cosine similarity."""
    table = lib.layers.Embedding(SHARED_VOCAB, SHARED_DIM)
    query = lib.Input(shape=(None,), dtype="int32", name="query")
    document = lib.Input(shape=(None,), dtype="int32", name="document")
    query_vectors, document_vectors = table(query), table(document)
    pool = lib.layers.GlobalAveragePooling1D()
    similarity = lib.layers.dot([pool(query_vectors), pool(document_vectors)], axes=1, normalize=True)
    return lib.Model([query, document], [query_vectors, document_vectors, similarity])


ENSEMBLE_FEATURES, ENSEMBLE_MEMBERS = 20, 4


def build_averaged_members(lib):
    """Whole `Model`s called on a symbolic tensor like layers, then merged with `layers.average`."""

    def member():
        features = lib.Input(shape=(ENSEMBLE_FEATURES,))
        hidden = lib.layers.Dense(8, activation="relu")(features)
        return lib.Model(features, lib.layers.Dense(1)(hidden))

    members = [member() for _ in range(ENSEMBLE_MEMBERS)]
    features = lib.Input(shape=(ENSEMBLE_FEATURES,))
    return lib.Model(inputs=features, outputs=lib.layers.average([m(features) for m in members]))


def router_inputs(rng, batch, subject_len, message_len):
    return {
        "subject": rng.integers(ROUTER_VOCAB, size=(batch, subject_len)),
        "message": rng.integers(ROUTER_VOCAB, size=(batch, message_len)),
        "flags": rng.integers(2, size=(batch, ROUTER_FLAGS)).astype("float32"),
    }


# ------------------------------------------------------------------------------------ parity
def test_digit_mlp_matches_keras():
    k_model, n_model = run_both(build_digit_mlp)
    assert isinstance(n_model, nj.Model)
    assert n_model.name == "digit_mlp"
    assert n_model.count_params() == k_model.count_params() == digit_mlp_params()
    x = np.random.default_rng(0).random((20, DIGIT_SIDE, DIGIT_SIDE), dtype=np.float32)
    assert_outputs_match(k_model, n_model, x)
    assert tuple(n_model.inputs[0].shape) == tuple(k_model.inputs[0].shape) == (None, DIGIT_SIDE, DIGIT_SIDE)
    assert str(n_model.inputs[0].dtype) == str(k_model.inputs[0].dtype) == "float32"


@pytest.mark.slow
def test_multi_input_multi_output_router_matches_keras():
    k_model, n_model = run_both(build_request_router)
    assert n_model.count_params() == k_model.count_params()
    rng = np.random.default_rng(0)
    x = router_inputs(rng, 8, 11, 17)
    assert_outputs_match(k_model, n_model, [x["subject"], x["message"], x["flags"]])  # a list, in input order
    # A dict keyed by input name, and another sequence length on the Input's None axis.
    x["message"] = rng.integers(ROUTER_VOCAB, size=(8, 6))
    expected = k_model.predict(x, verbose=0)
    got = n_model.predict(x)
    assert isinstance(got, list) and len(got) == 2
    for e, g in zip(expected, got, strict=True):
        np.testing.assert_allclose(g, e, atol=ATOL, rtol=1e-5)
    assert [t.shape for t in n_model.outputs] == [(None, 1), (None, ROUTER_TEAMS)]


@pytest.mark.slow
def test_residual_cnn_matches_keras_and_summary_shows_connections():
    k_model, n_model = run_both(build_residual_cnn)
    for kl, nl in zip([x for x in k_model.layers if x.weights], [x for x in n_model.layers if x.count_params()], strict=True):
        assert kl.count_params() == nl.count_params()
    x = np.random.default_rng(1).random((4, 20, 20, 3), dtype=np.float32)
    assert_outputs_match(k_model, n_model, x)
    printed = []
    assert n_model.summary(print_fn=printed.append) is None
    text = "\n".join(printed)
    assert "Connected to" in text
    add_rows = [line for line in text.splitlines() if line.startswith("add")]
    assert len(add_rows) == 2 and all(", " in row for row in add_rows)  # each residual add reads two layers
    assert "pool[0][0]" in add_rows[0]  # the first block adds its input (the pooled stem) back
    first_add = add_rows[0].split()[0]
    assert f"{first_add}[0][0]" in add_rows[1]  # the second block adds the first block's sum back


def test_shared_embedding_is_one_layer_with_one_table():
    k_model, n_model = run_both(build_shared_encoder)
    assert n_model.count_params() == k_model.count_params() == SHARED_VOCAB * SHARED_DIM
    embeddings = [layer for layer in n_model.layers if isinstance(layer, nj.layers.Embedding)]
    assert len(embeddings) == 1
    rng = np.random.default_rng(2)
    a, b = rng.integers(SHARED_VOCAB, size=(3, 5)), rng.integers(SHARED_VOCAB, size=(3, 9))
    assert_outputs_match(k_model, n_model, [a, b])
    table = np.asarray(embeddings[0].embeddings[...])
    np.testing.assert_array_equal(n_model.predict([a, b])[1], table[b])  # both inputs read the one table


def test_nested_models_average_matches_keras_and_shares_weights():
    k_model, n_model = run_both(build_averaged_members)
    per_member = ENSEMBLE_FEATURES * 8 + 8 + 8 + 1
    assert n_model.count_params() == k_model.count_params() == ENSEMBLE_MEMBERS * per_member
    x = np.random.default_rng(3).random((6, ENSEMBLE_FEATURES), dtype=np.float32)
    assert_outputs_match(k_model, n_model, x)
    inner = n_model.layers[1]
    assert isinstance(inner, nj.Model) and [type(x).__name__ for x in inner.layers] == ["SymbolicInput", "Dense", "Dense"]
    # The nested model's weights are the outer model's: shifting one member's output bias by
    # ENSEMBLE_MEMBERS moves the average by exactly 1.
    inner.layers[2].bias[...] = inner.layers[2].bias[...] + float(ENSEMBLE_MEMBERS)
    np.testing.assert_allclose(n_model.predict(x) - k_model.predict(x, verbose=0), 1.0, atol=ATOL)


def test_digit_mlp_fit_and_evaluate_match_keras():
    k_model, n_model = run_both(build_digit_mlp)
    rng = np.random.default_rng(10)
    x_train = rng.random((320, DIGIT_SIDE, DIGIT_SIDE), dtype=np.float32)
    y_train = rng.integers(0, DIGIT_CLASSES, 320)
    x_test, y_test = rng.random((64, DIGIT_SIDE, DIGIT_SIDE), dtype=np.float32), rng.integers(0, DIGIT_CLASSES, 64)
    histories, scores = [], []
    for lib, model in ((keras, k_model), (nj, n_model)):
        # Integer labels against logits, RMSprop, an accuracy metric and a held-out tail of the training
        # arrays (shuffle=False so that both frameworks see the same batches).
        model.compile(
            optimizer=lib.optimizers.RMSprop(learning_rate=5e-4),
            loss=lib.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=["accuracy"],
        )
        history = model.fit(x_train, y_train, epochs=2, batch_size=40, validation_split=0.25, shuffle=False, verbose=0)
        histories.append(history.history)
        scores.append(model.evaluate(x_test, y_test, verbose=0))
    for name in ("loss", "val_loss", "accuracy", "val_accuracy"):
        np.testing.assert_allclose(histories[1][name], histories[0][name], rtol=1e-5, atol=1e-6, err_msg=name)
    np.testing.assert_allclose(scores[1], scores[0], rtol=1e-5, atol=1e-6)


def build_two_branch_regressor(lib):
    a = lib.Input(shape=(6,), name="a")
    b = lib.Input(shape=(3,), name="b")
    x = lib.layers.concatenate([lib.layers.Dense(8, activation="relu")(a), b])
    return lib.Model([a, b], lib.layers.Dense(1)(x))


def test_fit_matches_keras_with_the_same_weights_and_batches():
    k_model, n_model = run_both(build_two_branch_regressor)
    rng = np.random.default_rng(4)
    xa, xb = rng.normal(size=(64, 6)).astype("float32"), rng.normal(size=(64, 3)).astype("float32")
    y = (xa[:, :1] - 0.5 * xb[:, 1:2]).astype("float32")
    k_model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.05), loss="mse")
    n_model.compile(optimizer=nj.optimizers.SGD(learning_rate=0.05), loss="mse")
    k_hist = k_model.fit([xa, xb], y, batch_size=16, epochs=3, shuffle=False, verbose=0).history["loss"]
    n_hist = n_model.fit({"a": xa, "b": xb}, y, batch_size=16, epochs=3, shuffle=False, verbose=0).history["loss"]
    assert n_hist[-1] < 0.7 * n_hist[0]  # it trains
    np.testing.assert_allclose(n_hist, k_hist, rtol=1e-4)  # and lands where Keras lands, step for step
    assert_outputs_match(k_model, n_model, [xa, xb])


@pytest.mark.parametrize("merge", ["add", "subtract", "multiply", "average", "maximum", "minimum", "concatenate", "dot"])
def test_lowercase_merge_helpers_match_keras(merge):
    def build_merge(lib):
        a, b = lib.Input(shape=(3, 4)), lib.Input(shape=(3, 4))
        if merge == "dot":
            return lib.Model([a, b], [lib.layers.dot([a, b], axes=2), lib.layers.dot([a, b], axes=1, normalize=True)])
        return lib.Model([a, b], getattr(lib.layers, merge)([a, b]))

    k_model, n_model = run_both(build_merge)
    rng = np.random.default_rng(8)
    assert_outputs_match(k_model, n_model, [rng.normal(size=(2, 3, 4)).astype("float32") for _ in range(2)])


@pytest.mark.slow
def test_router_trains_like_keras_with_two_weighted_losses():
    # Both compile with a loss and a weight per named output (a dict keyed by the output layers' names).
    urgency_weight, team_weight = 0.7, 0.3
    k_model, n_model = run_both(build_request_router)
    rng = np.random.default_rng(11)
    inputs = router_inputs(rng, 64, 10, 18)
    urgency_targets = rng.random(size=(64, 1)).astype("float32")
    team_targets = np.eye(ROUTER_TEAMS, dtype="float32")[rng.integers(ROUTER_TEAMS, size=64)]
    k_model.compile(
        optimizer=keras.optimizers.RMSprop(learning_rate=2e-3),
        loss={
            "team": keras.losses.CategoricalCrossentropy(from_logits=True),
            "urgency": keras.losses.BinaryCrossentropy(from_logits=True),
        },
        loss_weights={"team": team_weight, "urgency": urgency_weight},
    )

    n_model.compile(
        optimizer=nj.optimizers.RMSprop(learning_rate=2e-3),
        loss={"team": nj.losses.CategoricalCrossentropy(from_logits=True),
              "urgency": nj.losses.BinaryCrossentropy(from_logits=True)},
        loss_weights={"team": team_weight, "urgency": urgency_weight},
    )
    k_hist = k_model.fit(inputs, {"urgency": urgency_targets, "team": team_targets}, epochs=2, batch_size=16,
                         shuffle=False, verbose=0).history
    n_hist = n_model.fit(inputs, {"urgency": urgency_targets, "team": team_targets}, epochs=2, batch_size=16,
                         shuffle=False, verbose=0).history
    assert sorted(n_hist) == sorted(k_hist) == ["loss", "team_loss", "urgency_loss"]
    for key in k_hist:  # float32 sums of the same terms: RMSprop over 8 steps keeps them within 1e-5
        np.testing.assert_allclose(n_hist[key], k_hist[key], rtol=1e-5, err_msg=key)
    assert_outputs_match(k_model, n_model, inputs)


# ------------------------------------------------------------------------------------ semantics
def test_symbolic_shapes_dtypes_and_variable_length_axes():
    inputs = nj.Input(shape=(None, 28), name="seq")
    assert inputs.shape == (None, None, 28) and inputs.dtype == np.float32 and inputs.name == "seq"
    x = nj.layers.Dense(16)(inputs)
    assert x.shape == (None, None, 16)
    pooled = nj.layers.GlobalAveragePooling1D()(x)
    assert pooled.shape == (None, 16)
    ids = nj.Input(shape=(7,), dtype="int32")
    assert ids.dtype == np.int32
    assert nj.Input(batch_shape=(4, 3)).shape == (4, 3)
    model = nj.Model(inputs, pooled)
    for length in (3, 11):
        xs = np.random.default_rng(length).random((2, length, 28), dtype=np.float32)
        dense = model.layers[1]
        expected = (xs @ np.asarray(dense.kernel[...]) + np.asarray(dense.bias[...])).mean(axis=1)
        np.testing.assert_allclose(model.predict(xs), expected, atol=ATOL)


def test_symbolic_arithmetic_slicing_and_ops_record_graph_nodes():
    k_in = keras.Input(shape=(5, 4))
    n_in = nj.Input(shape=(5, 4))

    def graph(ops, x):
        y = x * 2.0 + 1.0
        first = y[:, 0]
        summed = ops.sum(ops.square(y - ops.mean(y, axis=1, keepdims=True)), axis=1)
        z = ops.concatenate([first, ops.sqrt(summed + 1e-3)], axis=-1)
        return ops.softmax(z) / (1.0 - ops.exp(-ops.abs(z)) + 2.0)

    k_model = keras.Model(k_in, graph(keras.ops, k_in))
    n_model = nj.Model(n_in, graph(nj.ops, n_in))
    assert n_model.outputs[0].shape == (None, 8)
    x = np.random.default_rng(5).random((3, 5, 4), dtype=np.float32)
    np.testing.assert_allclose(n_model.predict(x), k_model.predict(x, verbose=0), atol=ATOL)


def test_dict_inputs_and_dict_outputs_match_keras():
    def build_dicts(lib):
        inputs = {"zeta": lib.Input(shape=(4,), name="zeta"), "alpha": lib.Input(shape=(2,), name="alpha")}
        joined = lib.layers.concatenate([inputs["zeta"], inputs["alpha"]])
        return lib.Model(inputs, {"score": lib.layers.Dense(1)(joined), "class": lib.layers.Dense(3)(joined)})

    k_model, n_model = run_both(build_dicts)
    rng = np.random.default_rng(9)
    x = {"zeta": rng.normal(size=(5, 4)).astype("float32"), "alpha": rng.normal(size=(5, 2)).astype("float32")}
    expected, got = k_model.predict(x, verbose=0), n_model.predict(x)
    assert set(got) == set(expected) == {"score", "class"}
    for name in expected:
        np.testing.assert_allclose(got[name], expected[name], atol=ATOL, rtol=1e-5)


def test_graph_module_is_a_flax_module_that_splits_jits_vmaps_and_differentiates():
    inputs = nj.Input(shape=(3,))
    h = nj.layers.Dense(4, activation="tanh")(inputs)
    model = nj.Model(inputs, nj.layers.Dense(2)(h) + h[:, :2])
    module = model.module
    assert isinstance(module, nnx.Module)
    graphdef, params = nnx.split(module, nnx.Param)
    x = np.random.default_rng(6).random((5, 3), dtype=np.float32)

    @jax.jit
    def apply(params, x):
        return nnx.merge(graphdef, params)(x)

    eager = np.asarray(module(x))
    np.testing.assert_allclose(apply(params, x), eager, atol=ATOL)
    per_example = jax.vmap(lambda row: apply(params, row[None])[0])(x)
    np.testing.assert_allclose(per_example, eager, atol=ATOL)
    grads = jax.grad(lambda p: jnp.sum(apply(p, x) ** 2))(params)
    assert jax.tree.structure(grads) == jax.tree.structure(params)
    assert all(np.all(np.isfinite(g)) and np.any(g != 0) for g in jax.tree.leaves(grads))


def test_multi_input_fit_under_data_parallel_equals_single_device():
    a, b = nj.Input(shape=(3,), name="a"), nj.Input(shape=(5,), name="b")
    model = nj.Model([a, b], nj.layers.Dense(1)(nj.layers.concatenate([nj.layers.Dense(4, activation="relu")(a), b])))
    twin = nj.Model([a, b], model.output)  # the same graph: the same layers, the same weights
    start = model.get_weights()
    rng = np.random.default_rng(12)
    x = {"a": rng.normal(size=(64, 3)).astype("float32"), "b": rng.normal(size=(64, 5)).astype("float32")}
    y = rng.normal(size=(64, 1)).astype("float32")
    histories = []
    for m, distribution in ((model, None), (twin, nj.parallel.DataParallel())):
        m.set_weights(start)
        m.compile(optimizer=nj.optimizers.SGD(0.05), loss="mse", distribution=distribution)
        histories.append(m.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0).history["loss"])
    np.testing.assert_allclose(histories[1], histories[0], rtol=1e-5)  # float32 sums in another order across devices


def test_training_flag_and_keys_reach_layers_and_recorded_training_wins(tmp_path):
    inputs = nj.Input(shape=(200,))
    dropped = nj.layers.Dropout(0.5)(inputs)
    always = nj.layers.Dropout(0.5)(inputs, training=True)  # Monte Carlo dropout, as in Keras
    model = nj.Model(inputs, [dropped, always])
    x = np.ones((2, 200), np.float32)
    inference, mc = model.module(x, training=False, key=jax.random.PRNGKey(0))
    np.testing.assert_array_equal(inference, x)
    assert 0.3 < float(np.mean(np.asarray(mc) == 0)) < 0.7
    train_a, _ = model.module(x, training=True, key=jax.random.PRNGKey(1))
    train_b, _ = model.module(x, training=True, key=jax.random.PRNGKey(2))
    assert set(np.unique(np.asarray(train_a))) <= {0.0, 2.0} and np.any(np.asarray(train_a) != np.asarray(train_b))


def test_save_and_load_weights_round_trip(tmp_path):
    def make():
        inputs = nj.Input(shape=(4,))
        return nj.Model(inputs, nj.layers.Dense(3)(nj.layers.Dense(5, activation="relu")(inputs)))

    first, second = make(), make()
    x = np.random.default_rng(7).random((2, 4), dtype=np.float32)
    assert not np.allclose(first.predict(x), second.predict(x))
    first.save_weights(str(tmp_path / "w"))
    second.load_weights(str(tmp_path / "w"))
    np.testing.assert_array_equal(second.predict(x), first.predict(x))


def test_input_works_as_the_first_entry_of_sequential():
    model = nj.Sequential([nj.Input(shape=(6,)), nj.layers.Dense(3)])
    assert model.built and model.count_params() == 21


def test_errors_name_the_problem():
    a, b = nj.Input(shape=(3,), name="a"), nj.Input(shape=(3,), name="b")
    out = nj.layers.Dense(2)(nj.layers.add([a, b]))
    with pytest.raises(ValueError, match="Graph disconnected"):
        nj.Model(a, out)
    with pytest.raises(ValueError, match="expected axis -1 of input shape to have value 3"):
        dense = nj.layers.Dense(2)
        dense(a)
        dense(nj.Input(shape=(4,)))
    with pytest.raises(ValueError, match="needs to know the size of axis 1"):
        nj.layers.Dense(2)(nj.layers.Flatten()(nj.Input(shape=(None, 3))))
    with pytest.raises(TypeError, match="has no value"):
        np.asarray(a + 1.0)
    two_outputs = nj.Model([a, b], [out, a])
    with pytest.raises(ValueError, match=r"one entry per output \['dense.*', 'a'\] \(2\).*received 1 entries"):
        two_outputs.compile("sgd", loss=["mse"])
    model = nj.Model([a, b], out)
    with pytest.raises(ValueError, match=r"no entry for input\(s\) \['b'\]"):
        model.predict({"a": np.zeros((1, 3), np.float32)})
