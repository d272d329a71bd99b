"""User code from the optax, Keras, Grain and torch worlds, run through nnjax as those libraries mean it.

Each test uses the real library as its oracle: optax's own loss values and
`schedule_free_eval_params`, Keras 3 (JAX backend) for frozen layers, and
Grain/torch loaders for the data a model sees.
"""

import numpy as np
import optax
import pytest

import nnjax as nj

keras = pytest.importorskip("keras")


# ------------------------------------------------------------------------------------------------ optax losses
def _separable(n=256, features=4, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, features)).astype(np.float32)
    y = (x @ np.array([1.5, -2.0, 1.0, 0.5], np.float32) > 0).astype(np.float32)
    return x, y


def _binary_accuracy(loss, seed=0):
    x, y = _separable()
    nj.utils.set_random_seed(seed)  # the same initial weights whatever ran before in the process
    model = nj.Sequential([nj.layers.Dense(1, input_shape=(4,))])
    model.compile(optimizer=nj.optimizers.Adam(0.05), loss=loss, seed=seed)
    model.fit(x, y, batch_size=32, epochs=8, shuffle=False, verbose=0)
    logits = np.asarray(model.predict(x, verbose=0)).reshape(-1)
    return float(np.mean((logits > 0) == (y > 0.5)))


def test_optax_sigmoid_loss_trains_like_keras_binary_crossentropy():
    reference = _binary_accuracy(nj.losses.BinaryCrossentropy(from_logits=True))
    with_optax = _binary_accuracy(optax.sigmoid_binary_cross_entropy)
    assert reference > 0.95
    assert with_optax == pytest.approx(reference, abs=0.02)


@pytest.mark.parametrize("fn", [optax.l2_loss, optax.squared_error, optax.huber_loss, optax.log_cosh,
                                optax.sigmoid_binary_cross_entropy], ids=lambda f: f.__name__)
def test_optax_loss_values_are_optax_mean(fn):
    rng = np.random.default_rng(1)
    y_pred = rng.normal(size=(6, 3)).astype(np.float32)
    y_true = rng.uniform(size=(6, 3)).astype(np.float32)
    loss = nj.losses.get(fn)
    # optax called in its own order, reduced by Keras's default (mean over elements); float32, one reduction.
    np.testing.assert_allclose(float(loss(y_true, y_pred)), float(np.mean(fn(y_pred, y_true))), rtol=1e-6)


def test_optax_integer_label_loss_keeps_label_shape():
    rng = np.random.default_rng(2)
    logits = rng.normal(size=(5, 4)).astype(np.float32)
    labels = rng.integers(0, 4, size=(5,)).astype(np.int32)
    loss = nj.losses.get(optax.softmax_cross_entropy_with_integer_labels)
    expected = np.mean(optax.softmax_cross_entropy_with_integer_labels(logits, labels))
    np.testing.assert_allclose(float(loss(labels, logits)), float(expected), rtol=1e-6)


def test_loss_with_ambiguous_argument_names_is_refused():
    def my_loss(predictions, logits):
        return (predictions - logits) ** 2

    with pytest.raises(ValueError, match=r"loss\(y_true, y_pred\)"):
        nj.losses.get(my_loss)


def test_keras_order_and_unnamed_losses_keep_keras_order():
    y_true, y_pred = np.array([[1.0, 0.0]], np.float32), np.array([[0.5, 0.25]], np.float32)
    assert float(nj.losses.get(lambda y_true, y_pred: y_true - y_pred)(y_true, y_pred)) == pytest.approx(0.125)
    assert float(nj.losses.get(lambda a, b: a - b)(y_true, y_pred)) == pytest.approx(0.125)


# ------------------------------------------------------------------------------------------------ freezing
FREEZE_X = np.random.default_rng(3).normal(size=(32, 5)).astype(np.float32)
FREEZE_Y = np.random.default_rng(4).integers(0, 3, size=(32,)).astype(np.int32)
OPTIMIZERS = {
    "adam": lambda ns: ns.Adam(1e-2),
    "adamw_exclude_bias": lambda ns: ns.AdamW(1e-2, weight_decay=0.5, exclude_from_weight_decay=["bias"]),
}


def _keras_adamw_exclude_bias(ns):
    optimizer = ns.AdamW(1e-2, weight_decay=0.5)
    optimizer.exclude_from_weight_decay(var_names=["bias"])  # Keras's spelling of the same setting
    return optimizer


KERAS_OPTIMIZERS = {"adam": OPTIMIZERS["adam"], "adamw_exclude_bias": _keras_adamw_exclude_bias}


def _keras_frozen(optimizer):
    keras.utils.set_random_seed(5)
    model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(8, activation="relu"),
                              keras.layers.BatchNormalization(), keras.layers.Dense(3)])
    model.layers[0].trainable = False
    model.layers[1].trainable = False
    # Moving statistics away from their initial values, so that training-mode BatchNorm would differ.
    model.layers[1].set_weights([np.full(8, 1.5, np.float32), np.full(8, 0.2, np.float32),
                                 np.full(8, 0.3, np.float32), np.full(8, 2.0, np.float32)])
    model.compile(optimizer=KERAS_OPTIMIZERS[optimizer](keras.optimizers),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


@pytest.mark.parametrize("optimizer", sorted(OPTIMIZERS))
def test_frozen_layers_train_as_in_keras(optimizer):
    kmodel = _keras_frozen(optimizer)
    model = nj.Sequential([nj.layers.Dense(8, activation="relu", input_shape=(5,)), nj.layers.BatchNormalization(),
                           nj.layers.Dense(3)])
    for mine, theirs in zip(model.layers, kmodel.layers, strict=True):
        mine.set_weights(theirs.get_weights())
    model.layers[0].trainable = False
    model.layers[1].trainable = False
    model.compile(optimizer=OPTIMIZERS[optimizer](nj.optimizers),
                  loss=nj.losses.SparseCategoricalCrossentropy(from_logits=True), seed=0)
    before = [layer.get_weights() for layer in kmodel.layers]
    kmodel.fit(FREEZE_X, FREEZE_Y, batch_size=8, epochs=1, shuffle=False, verbose=0)
    model.fit(FREEZE_X, FREEZE_Y, batch_size=8, epochs=1, shuffle=False, verbose=0)
    # 4 Adam steps of a small MLP in float32: atol 1e-6, as the fit parity tests.
    for index, (mine, theirs) in enumerate(zip(model.layers, kmodel.layers, strict=True)):
        for got, want in zip(mine.get_weights(), theirs.get_weights(), strict=True):
            np.testing.assert_allclose(got, want, rtol=0, atol=1e-6, err_msg=f"layer {index}")
    for frozen in (0, 1):  # Keras's frozen weights, BatchNorm statistics included, did not move
        for got, initial in zip(model.layers[frozen].get_weights(), before[frozen], strict=True):
            np.testing.assert_array_equal(got, initial)
    assert model.layers[0].trainable_weights == [] and len(kmodel.layers[0].trainable_weights) == 0


class TwoLayer:
    """A plain NNX module built by `make()`: `out(relu(hidden(x)))`."""

    @staticmethod
    def make():
        from flax import nnx

        class Net(nnx.Module):
            def __init__(self, rngs):
                self.hidden = nnx.Linear(5, 4, rngs=rngs)
                self.out = nnx.Linear(4, 2, rngs=rngs)

            def __call__(self, x):
                import jax

                return self.out(jax.nn.relu(self.hidden(x)))

        return Net(nnx.Rngs(0))


def _sgd_reference(module, x, y, lr):
    """Plain SGD on the mean squared error, by `jax.grad` of a function of the weights (no nnjax)."""
    import jax
    import jax.numpy as jnp

    weights = {name: {"kernel": jnp.asarray(getattr(module, name).kernel[...]), "bias": jnp.asarray(getattr(module, name).bias[...])}
               for name in ("hidden", "out")}

    def mse(w):
        h = jax.nn.relu(x @ w["hidden"]["kernel"] + w["hidden"]["bias"])
        return jnp.mean(jnp.square(h @ w["out"]["kernel"] + w["out"]["bias"] - y))

    grads = jax.grad(mse)(weights)
    return weights, jax.tree.map(lambda w, g: w - lr * g, weights, grads)


def test_train_state_wrt_filter_trains_only_selected_params():
    from flax import nnx

    module = TwoLayer.make()
    x, y = FREEZE_X[:8], np.random.default_rng(6).normal(size=(8, 2)).astype(np.float32)
    initial, stepped = _sgd_reference(module, x, y, 0.1)
    state = nj.train.TrainState.create(module, optax.sgd(0.1), loss="mse", wrt=nnx.PathContains("out"), key=0)
    state, _ = nj.train.train_step(state, (x, y))
    trained = state.module()
    for name, expected in (("hidden", initial["hidden"]), ("out", stepped["out"])):
        for part in ("kernel", "bias"):
            np.testing.assert_allclose(getattr(trained, name).__getattribute__(part)[...], expected[part], rtol=1e-6, atol=1e-7,
                                       err_msg=f"{name}.{part}")


def test_param_labels_paths_work_with_optax_multi_transform():
    module = TwoLayer.make()
    x, y = FREEZE_X[:8], np.random.default_rng(7).normal(size=(8, 2)).astype(np.float32)
    initial, stepped = _sgd_reference(module, x, y, 0.1)
    params_of = nj.train.TrainState.create(module, optax.sgd(0.1), loss="mse", key=0).params
    # A Linen-style rule on the path: biases are held, everything else trains.
    labels = nj.train.param_labels(params_of, lambda path, _: "hold" if path[-1] == "bias" else "train")
    assert sorted(set(jax_leaves(labels))) == ["hold", "train"]
    tx = optax.multi_transform({"train": optax.sgd(0.1), "hold": optax.set_to_zero()}, labels)
    state = nj.train.TrainState.create(module, tx, loss="mse", key=0)
    state, _ = nj.train.train_step(state, (x, y))
    trained = state.module()
    for name in ("hidden", "out"):
        np.testing.assert_allclose(getattr(trained, name).kernel[...], stepped[name]["kernel"], rtol=1e-6, atol=1e-7)
        np.testing.assert_array_equal(getattr(trained, name).bias[...], initial[name]["bias"])


def jax_leaves(tree):
    import jax

    return jax.tree.leaves(tree)


# ------------------------------------------------------------------------------------------------ loaders
DATA_X = np.random.default_rng(8).normal(size=(60, 8, 8)).astype(np.float32)
DATA_Y = (DATA_X.reshape(60, -1)[:, :2].sum(1) > 0).astype(np.int32)
RECORDS = [(DATA_X[i], DATA_Y[i]) for i in range(60)]
INIT_KERNEL = np.random.default_rng(9).normal(size=(64, 2)).astype(np.float32) * 0.1


def _fit_weights(data, epochs=2, **fit_kwargs):
    model = nj.Sequential([nj.layers.Flatten(input_shape=(8, 8)), nj.layers.Dense(2)])
    model.layers[1].set_weights([INIT_KERNEL, np.zeros(2, np.float32)])
    model.compile(optimizer=nj.optimizers.SGD(0.1), loss=nj.losses.SparseCategoricalCrossentropy(from_logits=True), seed=0)
    history = model.fit(data, epochs=epochs, shuffle=False, verbose=0, **fit_kwargs)
    return model.layers[1].get_weights(), history.history


def _reference(epochs=2):
    """The same 6 batches of 10, in order, from in-memory arrays (the path checked against Keras elsewhere)."""
    model = nj.Sequential([nj.layers.Flatten(input_shape=(8, 8)), nj.layers.Dense(2)])
    model.layers[1].set_weights([INIT_KERNEL, np.zeros(2, np.float32)])
    model.compile(optimizer=nj.optimizers.SGD(0.1), loss=nj.losses.SparseCategoricalCrossentropy(from_logits=True), seed=0)
    model.fit(DATA_X, DATA_Y, batch_size=10, epochs=epochs, shuffle=False, verbose=0)
    return model.layers[1].get_weights()


class KerasBatches(keras.utils.PyDataset):
    def __init__(self):
        super().__init__()
        self.epochs_ended = 0

    def __len__(self):
        return 6

    def __getitem__(self, index):
        return DATA_X[index * 10:(index + 1) * 10], DATA_Y[index * 10:(index + 1) * 10]

    def on_epoch_end(self):
        self.epochs_ended += 1


class NnjaxBatches(nj.utils.PyDataset):
    def __len__(self):
        return 6

    def __getitem__(self, index):
        return DATA_X[index * 10:(index + 1) * 10], DATA_Y[index * 10:(index + 1) * 10]


def _loaders():
    import grain
    import torch

    torch_set = torch.utils.data.TensorDataset(torch.tensor(DATA_X), torch.tensor(DATA_Y))
    return {
        "grain_iter_batched": (lambda: grain.MapDataset.source(RECORDS).batch(10).to_iter_dataset(), {}),
        "grain_iter_examples": (lambda: grain.MapDataset.source(RECORDS).to_iter_dataset(), {"batch_size": 10}),
        "grain_map_batched": (lambda: grain.MapDataset.source(RECORDS).batch(10), {}),
        "grain_map_dict_records": (
            lambda: grain.MapDataset.source([{"image": x, "label": y} for x, y in RECORDS]), {"batch_size": 10}),
        "grain_data_loader": (lambda: grain.DataLoader(
            data_source=RECORDS, sampler=grain.samplers.IndexSampler(60, shuffle=False, num_epochs=1),
            operations=[grain.transforms.Batch(10)], worker_count=0), {}),
        "torch_data_loader": (lambda: torch.utils.data.DataLoader(torch_set, batch_size=10, shuffle=False), {}),
        "torch_dict_records": (lambda: torch.utils.data.DataLoader(
            [{"image": torch.tensor(x), "label": int(y)} for x, y in RECORDS], batch_size=10), {}),
        "keras_py_dataset": (KerasBatches, {}),
        "nnjax_py_dataset": (NnjaxBatches, {}),
    }


LOADERS = sorted(["grain_iter_batched", "grain_iter_examples", "grain_map_batched", "grain_map_dict_records",
                  "grain_data_loader", "torch_data_loader", "torch_dict_records", "keras_py_dataset", "nnjax_py_dataset"])


@pytest.mark.parametrize("kind", LOADERS)
def test_loader_trains_on_its_batches(kind):
    make, fit_kwargs = _loaders()[kind]
    data = make()
    weights, history = _fit_weights(data, **fit_kwargs)
    assert len(history["loss"]) == 2
    # Same batches in the same order as the arrays: same float32 arithmetic, so 1e-6 covers only reduction order.
    for got, want in zip(weights, _reference(), strict=True):
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)
    if kind == "keras_py_dataset":
        assert data.epochs_ended == 2


def test_loaders_yielding_single_examples_are_refused():
    import grain
    import torch

    torch_examples = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.tensor(DATA_X), torch.tensor(DATA_Y)),
                                                 batch_size=None)
    with pytest.raises(ValueError, match="batch_size=None yields single examples"):
        _fit_weights(torch_examples)
    grain_examples = grain.DataLoader(data_source=RECORDS, sampler=grain.samplers.IndexSampler(60, shuffle=False, num_epochs=1),
                                      worker_count=0)
    with pytest.raises(ValueError, match=r"grain\.transforms\.Batch"):
        _fit_weights(grain_examples)
    with pytest.raises(ValueError, match="already batched|yields whole batches"):
        _fit_weights(grain.MapDataset.source(RECORDS).batch(10), batch_size=10)


def test_one_pass_generator_warns_and_stops_after_its_data():
    batches = ((DATA_X[i:i + 10], DATA_Y[i:i + 10]) for i in range(0, 60, 10))
    with pytest.warns(UserWarning, match="ran out of data"):
        weights, history = _fit_weights(batches, epochs=3)
    assert len(history["loss"]) == 1
    for got, want in zip(weights, _reference(epochs=1), strict=True):
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)


# ------------------------------------------------------------------------------------------------ schedule-free
def test_schedule_free_evaluate_uses_eval_params():
    import jax
    import jax.numpy as jnp
    from flax import nnx

    x, y = FREEZE_X, np.random.default_rng(10).normal(size=(32, 2)).astype(np.float32)
    model = nj.Model(TwoLayer.make())
    model.compile(optimizer=optax.contrib.schedule_free_adamw(1e-2), loss="mse", seed=0)
    model.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
    state = model.state
    sf_state = next(node for node in jax.tree.leaves(state.opt_state, is_leaf=lambda n: isinstance(
        n, optax.contrib.ScheduleFreeState)) if isinstance(node, optax.contrib.ScheduleFreeState))
    eval_params = optax.contrib.schedule_free_eval_params(sf_state, state.params)
    module = nnx.merge(state.graphdef, eval_params, state.model_state)
    expected = float(jnp.mean(jnp.square(module(jnp.asarray(x)) - y)))
    train_module = nnx.merge(state.graphdef, state.params, state.model_state)
    assert abs(float(jnp.mean(jnp.square(train_module(jnp.asarray(x)) - y))) - expected) > 1e-4  # the two differ
    # One float32 forward pass and mean over 64 values, summed in batches of 8: rtol 1e-5.
    np.testing.assert_allclose(model.evaluate(x, y, batch_size=8, verbose=0), expected, rtol=1e-5)
    np.testing.assert_allclose(model.predict(x, verbose=0), module(jnp.asarray(x)), rtol=1e-5, atol=1e-6)
