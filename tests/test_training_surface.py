"""Keras's training surface against Keras 3 (JAX backend): `train_on_batch` / `test_on_batch` / `predict_on_batch`,
`get_layer` and `layers`, `optimizer.learning_rate`, the evaluate/predict callback hooks, regularizers and constraints.

Weights are copied from Keras into nnjax; both take the same steps on the same batches. Tolerances: 1e-6 on losses and
weights after a few float32 steps (the same arithmetic in the same order), 1e-5 where a penalty or a norm adds sums
over a kernel in an order XLA may choose differently.
"""

import jax
import numpy as np
import pytest

import nnjax as nj

keras = pytest.importorskip("keras")

RNG = np.random.default_rng(0)
X = RNG.normal(size=(12, 5)).astype(np.float32)
Y = RNG.integers(0, 3, size=12).astype(np.int32)
SW = RNG.uniform(0.5, 2.0, size=12).astype(np.float32)


def keras_mlp(optimizer, metrics=None, **dense_kwargs):
    keras.utils.set_random_seed(3)
    model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(4, activation="relu", name="hidden", **dense_kwargs),
                              keras.layers.Dense(3, activation="softmax", name="probs")])
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy", metrics=metrics)
    return model


def nnjax_mlp(kmodel, optimizer, metrics=None, loss="sparse_categorical_crossentropy", **dense_kwargs):
    model = nj.Sequential([nj.layers.Dense(4, activation="relu", name="hidden", input_shape=(5,), **dense_kwargs),
                           nj.layers.Dense(3, activation="softmax", name="probs")])
    copy_weights(kmodel, model)
    model.compile(optimizer=optimizer, loss=loss, metrics=metrics, seed=0)
    return model


def copy_weights(kmodel, model):
    for layer in kmodel.layers:
        mine = model.get_layer(layer.name)
        mine.kernel[...] = np.asarray(layer.kernel)
        mine.bias[...] = np.asarray(layer.bias)


def assert_weights(model, kmodel, atol=1e-6):
    for layer in kmodel.layers:
        mine = model.get_layer(layer.name)
        np.testing.assert_allclose(np.asarray(mine.kernel[...]), np.asarray(layer.kernel), rtol=0, atol=atol)
        np.testing.assert_allclose(np.asarray(mine.bias[...]), np.asarray(layer.bias), rtol=0, atol=atol)


# ----------------------------------------------------------------------------------- train/test/predict_on_batch
def test_train_on_batch_matches_keras_and_compiles_once():
    kmodel = keras_mlp(keras.optimizers.SGD(0.1, momentum=0.9), metrics=["accuracy"])
    traces = []

    def counted_loss(y_true, y_pred):  # runs once per trace of the step
        traces.append(1)
        return nj.losses.sparse_categorical_crossentropy(y_true, y_pred)

    model = nnjax_mlp(kmodel, nj.optimizers.SGD(0.1, momentum=0.9), metrics=["accuracy"], loss=counted_loss)
    after_first = None
    for step in range(3):
        xb, yb = X[4 * step: 4 * step + 4], Y[4 * step: 4 * step + 4]
        theirs = kmodel.train_on_batch(xb, yb)
        mine = model.train_on_batch(xb, yb)
        assert isinstance(mine, list) and len(mine) == 2
        np.testing.assert_allclose(mine, theirs, rtol=0, atol=1e-6)
        assert_weights(model, kmodel)
        after_first = len(traces) if after_first is None else after_first
    assert len(traces) == after_first, f"train_on_batch traced again: {len(traces) - after_first} more times"


def test_on_batch_return_values_as_keras():
    kmodel = keras_mlp("sgd")
    model = nnjax_mlp(kmodel, "sgd")
    theirs = kmodel.train_on_batch(X, Y, sample_weight=SW)
    mine = model.train_on_batch(X, Y, sample_weight=SW)
    assert isinstance(mine, float) and isinstance(theirs, float)  # the loss alone when there are no metrics
    np.testing.assert_allclose(mine, theirs, rtol=0, atol=1e-6)
    theirs = kmodel.train_on_batch(X, Y, class_weight={0: 0.5, 2: 3.0}, return_dict=True)
    mine = model.train_on_batch(X, Y, class_weight={0: 0.5, 2: 3.0}, return_dict=True)
    assert mine.keys() == theirs.keys()
    np.testing.assert_allclose(mine["loss"], theirs["loss"], rtol=0, atol=1e-6)
    assert_weights(model, kmodel)
    for kwargs in ({}, {"sample_weight": SW}, {"return_dict": True}):
        theirs, mine = kmodel.test_on_batch(X, Y, **kwargs), model.test_on_batch(X, Y, **kwargs)
        assert type(mine) is type(theirs)
        np.testing.assert_allclose(mine["loss"] if kwargs.get("return_dict") else mine,
                                   theirs["loss"] if kwargs.get("return_dict") else theirs, rtol=0, atol=1e-6)
    assert_weights(model, kmodel)  # test_on_batch leaves the weights alone
    np.testing.assert_allclose(model.predict_on_batch(X), np.asarray(kmodel.predict_on_batch(X)), rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="cannot be specified at the same time"):
        model.train_on_batch(X, Y, sample_weight=SW, class_weight={0: 1.0})
    with pytest.raises(ValueError, match="cannot be specified at the same time"):
        kmodel.train_on_batch(X, Y, sample_weight=SW, class_weight={0: 1.0})


def test_test_on_batch_with_metrics_as_keras():
    kmodel = keras_mlp("adam", metrics=["accuracy", "sparse_categorical_crossentropy"])
    model = nnjax_mlp(kmodel, "adam", metrics=["accuracy", "sparse_categorical_crossentropy"])
    theirs, mine = kmodel.test_on_batch(X, Y), model.test_on_batch(X, Y)
    assert len(mine) == len(theirs) == 3
    np.testing.assert_allclose(mine, theirs, rtol=0, atol=1e-6)
    assert model.test_on_batch(X, Y, return_dict=True).keys() == kmodel.test_on_batch(X, Y, return_dict=True).keys()


def test_predict_on_batch_compiles_once():
    traces = []

    class Counted(nj.layers.Layer):
        def call(self, x):
            traces.append(1)
            return x * 2.0

    model = nj.Sequential([nj.layers.Dense(2, input_shape=(5,)), Counted()])
    first = model.predict_on_batch(X[:4])
    before = len(traces)
    second = model.predict_on_batch(X[4:8])
    assert len(traces) == before, "a second batch of the same shape traced the model again"
    np.testing.assert_allclose(np.concatenate([first, second]), model.predict(X[:8], batch_size=4, verbose=0), atol=1e-6)


def test_on_batch_needs_compile():
    model = nj.Sequential([nj.layers.Dense(2, input_shape=(5,))])
    with pytest.raises(RuntimeError, match="compile"):
        model.train_on_batch(X, Y)
    with pytest.raises(RuntimeError, match="compile"):
        model.test_on_batch(X, Y)


# ----------------------------------------------------------------------------------- layers and get_layer
def test_layers_and_get_layer_as_keras():
    ksequential = keras.Sequential([keras.Input((5,)), keras.layers.Dense(4, name="a"), keras.layers.Dense(3, name="b")])
    sequential = nj.Sequential([nj.Input((5,)), nj.layers.Dense(4, name="a"), nj.layers.Dense(3, name="b")])
    kinput = keras.Input((5,), name="x")
    kfunctional = keras.Model(kinput, keras.layers.Dense(3, name="b")(keras.layers.Dense(4, name="a")(kinput)))
    inputs = nj.Input((5,), name="x")
    functional = nj.Model(inputs, nj.layers.Dense(3, name="b")(nj.layers.Dense(4, name="a")(inputs)))
    for mine, theirs in ((sequential, ksequential), (functional, kfunctional)):
        assert [layer.name for layer in mine.layers] == [layer.name for layer in theirs.layers]
        assert mine.get_layer("a") is mine.layers[-2] and mine.get_layer(index=-1) is mine.layers[-1]
        for kwargs in ({"name": "nope"}, {"index": 7}, {"name": "a", "index": 0}, {}):
            with pytest.raises(ValueError) as keras_error:
                theirs.get_layer(**kwargs)
            with pytest.raises(ValueError) as error:
                mine.get_layer(**kwargs)
            assert str(error.value) == str(keras_error.value)


# ----------------------------------------------------------------------------------- optimizer.learning_rate
def test_learning_rate_set_and_assign_follow_keras_sgd():
    kmodel = keras_mlp(keras.optimizers.SGD(0.1))
    model = nnjax_mlp(kmodel, nj.optimizers.SGD(0.1))
    np.testing.assert_allclose(float(model.optimizer.learning_rate), float(kmodel.optimizer.learning_rate), rtol=1e-7)

    def steps(n):
        for i in range(n):
            batch = (X[4 * (i % 3): 4 * (i % 3) + 4], Y[4 * (i % 3): 4 * (i % 3) + 4])
            np.testing.assert_allclose(model.train_on_batch(*batch), kmodel.train_on_batch(*batch), rtol=0, atol=1e-6)
            assert_weights(model, kmodel)

    steps(2)
    kmodel.optimizer.learning_rate = 0.01
    model.optimizer.learning_rate = 0.01
    assert float(model.optimizer.learning_rate) == pytest.approx(float(kmodel.optimizer.learning_rate), rel=1e-7)
    steps(2)
    kmodel.optimizer.learning_rate.assign(0.5)
    model.optimizer.learning_rate.assign(0.5)
    steps(2)
    kmodel.optimizer.learning_rate = 0.02  # fit takes the rate from the same state
    model.optimizer.learning_rate = 0.02
    kmodel.fit(X, Y, batch_size=4, shuffle=False, verbose=0)
    model.fit(X, Y, batch_size=4, shuffle=False, verbose=0)
    assert_weights(model, kmodel)
    assert model.optimizer.iterations == int(kmodel.optimizer.iterations) == 9


def test_learning_rate_of_a_schedule_is_not_settable():
    schedule = nj.optimizers.schedules.ExponentialDecay(0.1, decay_steps=2, decay_rate=0.5)
    model = nj.Sequential([nj.layers.Dense(3, input_shape=(5,))])
    model.compile(nj.optimizers.SGD(schedule), loss="mse")
    with pytest.raises(TypeError, match="not settable"):
        model.optimizer.learning_rate = 0.01
    unbuilt = nj.Sequential([nj.layers.Dense(3)])
    unbuilt.compile(nj.optimizers.SGD(0.1), loss="mse")
    assert float(unbuilt.optimizer.learning_rate) == pytest.approx(0.1)
    with pytest.raises(ValueError, match="not built yet"):
        unbuilt.optimizer.learning_rate = 0.01


# ----------------------------------------------------------------------------------- callback hooks
HOOKS = ("on_train_begin", "on_train_end", "on_epoch_begin", "on_epoch_end", "on_train_batch_begin", "on_train_batch_end",
         "on_test_begin", "on_test_end", "on_test_batch_begin", "on_test_batch_end", "on_predict_begin", "on_predict_end",
         "on_predict_batch_begin", "on_predict_batch_end")


def recorder(base, calls):
    """A callback of `base` recording `(hook, batch or epoch, logs)` for every hook."""

    def hook(name):
        def record(self, *args, **kwargs):
            *index, logs = (*args, kwargs["logs"]) if "logs" in kwargs else args
            calls.append((name, *index, logs))
        return record

    return type("Recorder", (base,), {name: hook(name) for name in HOOKS})()


def assert_same_calls(mine, theirs):
    assert [c[:-1] for c in mine] == [c[:-1] for c in theirs]
    for (name, *_, logs), (_, *_, klogs) in zip(mine, theirs, strict=True):
        assert isinstance(logs, dict), (name, logs)
        assert sorted(logs) == sorted(klogs), name
        for key in klogs:
            np.testing.assert_allclose(np.asarray(logs[key]), np.asarray(klogs[key]), rtol=0, atol=1e-6, err_msg=f"{name} {key}")


@pytest.mark.parametrize("method", ["evaluate", "predict"])
def test_evaluate_and_predict_call_the_hooks_as_keras(method):
    kmodel = keras_mlp("sgd", metrics=["accuracy"])
    model = nnjax_mlp(kmodel, "sgd", metrics=["accuracy"])
    kcalls, calls = [], []
    args = (X,) if method == "predict" else (X, Y)
    theirs = getattr(kmodel, method)(*args, batch_size=5, verbose=0, callbacks=[recorder(keras.callbacks.Callback, kcalls)])
    mine = getattr(model, method)(*args, batch_size=5, verbose=0, callbacks=[recorder(nj.callbacks.Callback, calls)])
    np.testing.assert_allclose(np.asarray(mine), np.asarray(theirs), rtol=0, atol=1e-6)
    assert len(kcalls) == 2 + 2 * 3  # begin, 3 batches (5, 5, 2 examples), end
    assert_same_calls(calls, kcalls)
    kcalls.clear()
    calls.clear()
    theirs = getattr(kmodel, method)(*args, batch_size=5, steps=2, verbose=0, callbacks=[recorder(keras.callbacks.Callback, kcalls)])
    mine = getattr(model, method)(*args, batch_size=5, steps=2, verbose=0, callbacks=[recorder(nj.callbacks.Callback, calls)])
    np.testing.assert_allclose(np.asarray(mine), np.asarray(theirs), rtol=0, atol=1e-6)
    assert_same_calls(calls, kcalls)


def test_fit_hooks_get_dicts_in_keras_order():
    kmodel = keras_mlp("sgd", metrics=["accuracy"])
    model = nnjax_mlp(kmodel, "sgd", metrics=["accuracy"])
    kcalls, calls = [], []
    fit = {"batch_size": 4, "epochs": 2, "shuffle": False, "verbose": 0, "validation_data": (X[:6], Y[:6])}
    kmodel.fit(X, Y, callbacks=[recorder(keras.callbacks.Callback, kcalls)], **fit)
    model.fit(X, Y, callbacks=[recorder(nj.callbacks.Callback, calls)], **fit)
    assert_same_calls(calls, kcalls)  # validation's test batch hooks included


def test_fit_validation_calls_the_test_batch_hooks_as_keras():
    kmodel = keras_mlp("sgd")
    model = nnjax_mlp(kmodel, "sgd")
    kcalls, calls = [], []
    fit = {"batch_size": 4, "epochs": 1, "shuffle": False, "verbose": 0, "validation_data": (X[:6], Y[:6])}
    kmodel.fit(X, Y, callbacks=[recorder(keras.callbacks.Callback, kcalls)], **fit)
    model.fit(X, Y, callbacks=[recorder(nj.callbacks.Callback, calls)], **fit)
    assert_same_calls(calls, kcalls)


# ----------------------------------------------------------------------------------- regularizers and constraints
# The trained model has one layer of each kind of weight options; Conv1D, Conv3D and Conv2DTranspose share them with
# Conv2D / Conv1DTranspose (`_ConvBase`), SimpleRNN with LSTM and GRU (`_Cell`): to keep the file fast they are
# checked by `test_every_layer_takes_the_weight_options` (penalties of one call) instead of by training.
ALL_CASES = ("dense", "conv2d", "conv1d_transpose", "embedding", "lstm", "gru")


def _layer_cases(lib, options, names=ALL_CASES):
    """(input shape, input dtype, layer) for each layer case of `names`; `options(name, prefixes)` gives the keyword
    arguments for the layer named `name` with the weight prefixes `prefixes`."""
    layers = lib.layers
    kernel_bias, rnn = ("kernel", "bias"), ("kernel", "recurrent", "bias")
    cases = {
        "dense": lambda: ((5,), "float32", layers.Dense(4, activation="tanh", **options("dense", kernel_bias))),
        "conv1d": lambda: ((6, 2), "float32", layers.Conv1D(3, 3, **options("conv1d", kernel_bias))),
        "conv2d": lambda: ((5, 5, 2), "float32", layers.Conv2D(3, 3, **options("conv2d", kernel_bias))),
        "conv1d_transpose": lambda: ((4, 2), "float32",
                                     layers.Conv1DTranspose(3, 2, strides=2, **options("conv1d_transpose", kernel_bias))),
        "embedding": lambda: ((6,), "int32", layers.Embedding(10, 3, **options("embedding", ("embeddings",)))),
        "simple_rnn": lambda: ((4, 3), "float32", layers.SimpleRNN(3, **options("simple_rnn", rnn))),
        "lstm": lambda: ((4, 3), "float32", layers.LSTM(3, **options("lstm", rnn))),
        "gru": lambda: ((4, 3), "float32", layers.GRU(3, **options("gru", rnn))),
    }
    return [cases[name]() for name in names]


def _data(cases):
    rng = np.random.default_rng(5)
    xs = [(rng.integers(1, 10, size=(8, *shape)) if dtype == "int32" else rng.normal(size=(8, *shape))).astype(dtype)
          for shape, dtype, _ in cases]
    return xs, rng.integers(0, 3, size=8).astype(np.int32)


def _model(lib, options, names=ALL_CASES):
    """One functional model with a branch per layer case (each flattened), concatenated into a softmax head:
    one compilation for every case."""
    cases = _layer_cases(lib, options, names)
    inputs = [lib.Input(shape, dtype=dtype, name=f"in_{i}") for i, (shape, dtype, _) in enumerate(cases)]
    # Every layer named: Keras's and nnjax's default name counters depend on what ran before in the process.
    branches = [lib.layers.Flatten(name=f"flat_{i}")(layer(x)) for i, (x, (_, _, layer)) in enumerate(zip(inputs, cases, strict=True))]
    outputs = lib.layers.Dense(3, activation="softmax", name="head")(lib.layers.Concatenate(name="joined")(branches))
    return lib.Model(inputs, outputs), cases


def _pair(options, names=ALL_CASES):
    """The Keras model and the nnjax one (Keras's initial weights copied in), and a batch."""
    keras.utils.set_random_seed(11)
    kmodel, cases = _model(keras, lambda name, prefixes: {"name": name, **options(keras, name, prefixes)}, names)
    kmodel.compile(keras.optimizers.SGD(0.2, momentum=0.5), "sparse_categorical_crossentropy")
    model, _ = _model(nj, lambda name, prefixes: {"name": name, **options(nj, name, prefixes)}, names)
    for theirs in kmodel.layers:
        if theirs.weights:
            model.get_layer(theirs.name).set_weights([np.asarray(w) for w in theirs.get_weights()])
    model.compile(nj.optimizers.SGD(0.2, momentum=0.5), "sparse_categorical_crossentropy", seed=0)
    return kmodel, model, _data(cases)


def _assert_same_training(kmodel, model, data, steps=3, atol=1e-5):
    x, y = data
    for _ in range(steps):
        np.testing.assert_allclose(model.train_on_batch(x, y), kmodel.train_on_batch(x, y), rtol=0, atol=atol)
    for theirs in kmodel.layers:
        for w, kw in zip(model.get_layer(theirs.name).get_weights(), theirs.get_weights(), strict=True):
            np.testing.assert_allclose(w, np.asarray(kw), rtol=0, atol=atol, err_msg=theirs.name)


def _regularizers(lib, name, prefixes):
    factors = {"kernel": lib.regularizers.L2(0.05), "bias": lib.regularizers.L1(0.03), "recurrent": "l2",
               "embeddings": lib.regularizers.L1L2(l1=0.01, l2=0.02)}
    # (Keras 3.15's SimpleRNN accepts `activity_regularizer` but never passes it on, LSTM and GRU do; nnjax applies it
    # as documented. SimpleRNN is not in the trained model.)
    return {f"{p}_regularizer": factors[p] for p in prefixes} | {"activity_regularizer": lib.regularizers.L1L2(0.01, 0.03)}


def test_regularizers_join_the_loss_as_keras():
    kmodel, model, data = _pair(_regularizers)
    _assert_same_training(kmodel, model, data)


def test_every_layer_takes_the_weight_options():
    x = RNG.normal(size=(2, 4, 4, 4, 1)).astype(np.float32)
    options = {"kernel_regularizer": nj.regularizers.L2(0.1), "bias_regularizer": nj.regularizers.L1(0.2),
               "kernel_constraint": nj.constraints.NonNeg(), "bias_constraint": nj.constraints.MaxNorm(1.0)}
    rnn = {"recurrent_regularizer": nj.regularizers.L1(0.3), "recurrent_constraint": nj.constraints.UnitNorm()}
    cases = [(nj.layers.Conv3D(2, 2, bias_initializer="ones", **options), x),
             (nj.layers.Conv2DTranspose(2, 2, bias_initializer="ones", **options), x[:, 0]),
             (nj.layers.Conv1D(2, 2, bias_initializer="ones", **options), x[:, 0, 0]),
             (nj.layers.SimpleRNN(2, bias_initializer="ones", **options, **rnn), x[:, 0, 0])]
    for layer, inputs in cases:
        layer(inputs)
        owner = getattr(layer, "cell", layer)
        kernel, bias = np.asarray(owner.kernel[...]), np.asarray(owner.bias[...])
        expected = float(keras.regularizers.L2(0.1)(kernel) + keras.regularizers.L1(0.2)(bias))
        if hasattr(owner, "recurrent_kernel"):
            expected += float(keras.regularizers.L1(0.3)(np.asarray(owner.recurrent_kernel[...])))
            assert owner.recurrent_kernel.get_metadata()["constraint"] == nj.constraints.UnitNorm()
        np.testing.assert_allclose(sum(float(v) for v in layer.losses), expected, rtol=1e-6, err_msg=layer.name)
        assert owner.kernel.get_metadata()["constraint"] == nj.constraints.NonNeg()
        assert owner.bias.get_metadata()["constraint"] == nj.constraints.MaxNorm(1.0)


def test_regularizer_names_and_values_as_keras():
    w = RNG.normal(size=(4, 3)).astype(np.float32)
    for name in ("l1", "l2", "l1l2", "L1", "L1L2"):
        np.testing.assert_allclose(nj.regularizers.get(name)(w), keras.regularizers.get(name)(w), rtol=1e-6)
    for reg in ("L1", "L2"):
        np.testing.assert_allclose(getattr(nj.regularizers, reg)(0.3)(w), getattr(keras.regularizers, reg)(0.3)(w), rtol=1e-6)
    np.testing.assert_allclose(nj.regularizers.l1_l2(l1=0.2, l2=0.1)(w), keras.regularizers.l1_l2(l1=0.2, l2=0.1)(w),
                               rtol=1e-6)
    for bad in ("l1_l2", "nope"):  # Keras 3 knows neither name
        with pytest.raises(ValueError):
            keras.regularizers.get(bad)
        with pytest.raises(ValueError, match="could not interpret"):
            nj.regularizers.get(bad)
    with pytest.raises(TypeError, match="unrecognized keyword"):
        nj.layers.Flatten(kernel_regularizer="l2")


def test_constraint_values_as_keras():
    w = RNG.normal(size=(4, 3)).astype(np.float32) * 2
    cases = [("MaxNorm", {"max_value": 1.5}), ("MaxNorm", {"max_value": 1.0, "axis": 1}), ("NonNeg", {}),
             ("UnitNorm", {}), ("UnitNorm", {"axis": [0, 1]}), ("MinMaxNorm", {"min_value": 0.5, "max_value": 1.2, "rate": 0.6})]
    for cls, kwargs in cases:
        np.testing.assert_allclose(getattr(nj.constraints, cls)(**kwargs)(w), getattr(keras.constraints, cls)(**kwargs)(w),
                                   rtol=0, atol=1e-6, err_msg=cls)
    for name in ("max_norm", "non_neg", "unit_norm", "min_max_norm"):
        np.testing.assert_allclose(nj.constraints.get(name)(w), keras.constraints.get(name)(w), rtol=0, atol=1e-6)


def _constraints(lib, name, prefixes):
    chosen = {"kernel": lib.constraints.MaxNorm(0.3), "bias": lib.constraints.NonNeg(), "recurrent": lib.constraints.UnitNorm(),
              "embeddings": lib.constraints.MinMaxNorm(0.1, 0.4, rate=0.7)}
    return {f"{p}_constraint": chosen[p] for p in prefixes}


def test_apply_constraints_projects_the_constrained_parameters():
    from nnjax.train import apply_constraints, constraints_of

    lstm = nj.layers.LSTM(3, kernel_constraint=nj.constraints.MaxNorm(0.3), recurrent_constraint="unit_norm",
                          bias_constraint=nj.constraints.NonNeg())
    model = nj.Sequential([nj.Input((4, 3)), lstm, nj.layers.Dense(2, kernel_constraint=nj.constraints.MinMaxNorm(0.1, 0.4, rate=0.7))])
    model.compile("sgd", "mse")
    expected = {("lstm", "kernel"): keras.constraints.MaxNorm(0.3), ("lstm", "recurrent_kernel"): keras.constraints.UnitNorm(),
                ("lstm", "bias"): keras.constraints.NonNeg(), ("dense", "kernel"): keras.constraints.MinMaxNorm(0.1, 0.4, rate=0.7)}
    params = model.state.params
    assert len(constraints_of(params)) == len(expected)
    before = {path: v.get_value() for path, v in params.flat_state()}
    projected = apply_constraints(params)
    for path, variable in projected.flat_state():
        layer = "lstm" if "cell" in path else "dense"
        constraint = expected.get((layer, path[-1]))
        want = before[path] if constraint is None else np.asarray(constraint(before[path]))
        np.testing.assert_allclose(variable.get_value(), want, rtol=0, atol=1e-6, err_msg=str(path))
    frozen = apply_constraints(params, trainable=tuple(False for _ in jax.tree.leaves(params)))
    for path, variable in frozen.flat_state():
        np.testing.assert_array_equal(variable.get_value(), before[path])
    with pytest.raises(NotImplementedError):
        nj.layers.Dense(2).add_weight((2,), overwrite_with_gradient=True)


def test_constraints_after_each_update_as_keras():
    kmodel, model, data = _pair(_constraints, ("dense", "conv2d", "embedding", "gru"))
    _assert_same_training(kmodel, model, data)
