"""Models with several outputs against Keras 3 (JAX backend): per-output `loss`, `loss_weights`, `metrics` and
`weighted_metrics` given as lists or dicts, targets and sample weights per output.

Both frameworks start from the same weights (Keras's, copied) and train with SGD on the same batches (shuffle off).
Compared: the names Keras logs, the running values after every batch, the epoch logs (validation included), the
weights after training and `evaluate` (list order and dict). Tolerances: 1e-6 relative on logged values (float32
sums of the same terms in the same order), 1e-6 absolute on weights after 6 steps.
"""

import numpy as np
import pytest

import nnjax as nj

keras = pytest.importorskip("keras")

RNG = np.random.default_rng(0)
X = RNG.normal(size=(20, 4)).astype(np.float32)
YA = RNG.integers(0, 3, size=20).astype(np.int32)
YB = RNG.normal(size=(20, 1)).astype(np.float32)
SW = RNG.uniform(0.1, 2.0, size=20).astype(np.float32)
SW_B = RNG.uniform(0.1, 2.0, size=20).astype(np.float32)


def build(lib, outputs_as):
    inputs = keras.Input((4,), name="x") if lib is keras else nj.Input(shape=(4,), name="x")
    hidden = lib.layers.Dense(5, activation="relu", name="h")(inputs)
    a = lib.layers.Dense(3, activation="softmax", name="a")(hidden)
    b = lib.layers.Dense(1, name="b")(hidden)
    return lib.Model(inputs, {"b": b, "a": a} if outputs_as == "dict" else [a, b])


def pair(outputs_as):
    keras.utils.set_random_seed(1)
    theirs, mine = build(keras, outputs_as), build(nj, outputs_as)
    for name in ("h", "a", "b"):
        kernel, bias = theirs.get_layer(name).get_weights()
        mine.get_layer(name).kernel[...] = kernel
        mine.get_layer(name).bias[...] = bias
    return theirs, mine


class BatchLogs:
    def __init__(self, base):
        outer = self
        self.logs = []

        class Recorder(base):
            def on_train_batch_end(self, batch, logs=None):
                outer.logs.append(dict(logs))

        self.callback = Recorder()


def assert_logs_equal(mine: dict, theirs: dict):
    assert sorted(mine) == sorted(theirs)
    for key, value in theirs.items():
        np.testing.assert_allclose(np.asarray(mine[key], np.float64), np.asarray(value, np.float64), rtol=1e-6, atol=1e-7,
                                   err_msg=key)


CASES = {
    # dicts everywhere, one sample weight for every output
    "dicts": dict(
        outputs_as="dict",
        compile=dict(loss={"a": "sparse_categorical_crossentropy", "b": "mse"}, loss_weights={"a": 1.0, "b": 0.5},
                     metrics={"a": ["accuracy"], "b": ["mae", "mse"]}, weighted_metrics={"a": ["accuracy"], "b": ["mae"]}),
        y=lambda: {"a": YA, "b": YB}, sample_weight=lambda: SW),
    # lists everywhere, sample weights per output
    "lists": dict(
        outputs_as="list",
        compile=dict(loss=["sparse_categorical_crossentropy", "mae"], loss_weights=[0.3, 2.0],
                     metrics=[["accuracy", "sparse_top_k_categorical_accuracy"], ["mse"]],
                     weighted_metrics=[["accuracy"], ["mse"]]),
        y=lambda: [YA, YB], sample_weight=lambda: [SW, SW_B]),
    # one loss for every output; a flat list of metrics is one metric per output (Keras's rule)
    "shared_loss": dict(
        outputs_as="list",
        compile=dict(loss="mse", metrics=["mae", "mse"]),
        y=lambda: [np.eye(3, dtype=np.float32)[YA], YB], sample_weight=lambda: None),
    # a dict of losses for list outputs, an output without weighted metrics
    "dict_loss_list_outputs": dict(
        outputs_as="list",
        compile=dict(loss={"a": "sparse_categorical_crossentropy", "b": "huber"}, metrics={"a": ["accuracy"]},
                     weighted_metrics={"b": ["mae"]}),
        y=lambda: [YA, YB], sample_weight=lambda: [SW_B, SW]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_fit_and_evaluate_match_keras(case):
    spec = CASES[case]
    theirs, mine = pair(spec["outputs_as"])
    theirs.compile(optimizer=keras.optimizers.SGD(learning_rate=0.1), **spec["compile"])
    mine.compile(optimizer=nj.optimizers.SGD(learning_rate=0.1), **spec["compile"], seed=0)
    y, weights = spec["y"](), spec["sample_weight"]()
    k_batches, n_batches = BatchLogs(keras.callbacks.Callback), BatchLogs(nj.callbacks.Callback)
    validation = (X[:8] * 0.5, y if isinstance(y, dict) else list(y)) if case == "dicts" else None
    if validation is not None:
        validation = (validation[0], {k: v[:8] for k, v in validation[1].items()})
    k_history = theirs.fit(X, y, sample_weight=weights, batch_size=8, epochs=2, shuffle=False, verbose=0,
                           validation_data=validation, callbacks=[k_batches.callback]).history
    n_history = mine.fit(X, y, sample_weight=weights, batch_size=8, epochs=2, shuffle=False, verbose=0,
                         validation_data=validation, callbacks=[n_batches.callback]).history
    assert len(n_batches.logs) == len(k_batches.logs) == 6
    for step, (n_logs, k_logs) in enumerate(zip(n_batches.logs, k_batches.logs, strict=True)):
        assert_logs_equal(n_logs, k_logs), step
    assert_logs_equal(n_history, k_history)
    for name in ("h", "a", "b"):
        for got, expected in zip(mine.get_layer(name).get_weights(), theirs.get_layer(name).get_weights(), strict=True):
            np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)
    k_values = theirs.evaluate(X, y, sample_weight=weights, batch_size=8, verbose=0)
    n_values = mine.evaluate(X, y, sample_weight=weights, batch_size=8, verbose=0)
    np.testing.assert_allclose(np.asarray(n_values), np.asarray(k_values), rtol=1e-6)  # Keras's list order
    assert_logs_equal(mine.evaluate(X, y, sample_weight=weights, verbose=0, return_dict=True),
                      theirs.evaluate(X, y, sample_weight=weights, verbose=0, return_dict=True))


def test_predict_keeps_the_output_structure():
    _, mine = pair("dict")
    out = mine.predict(X, batch_size=8, verbose=0)
    assert sorted(out) == ["a", "b"] and out["a"].shape == (20, 3) and out["b"].shape == (20, 1)


def test_mismatched_structures_name_the_outputs_and_the_keys():
    _, mine = pair("list")
    with pytest.raises(ValueError, match=r"output names \['a', 'b'\].*'c'"):
        mine.compile("sgd", loss={"a": "mse", "c": "mse"})
    with pytest.raises(ValueError, match=r"every output \['a', 'b'\]"):
        mine.compile("sgd", loss={"a": "mse"})  # Keras: a dict for list outputs names them all
    with pytest.raises(ValueError, match=r"one entry per output \['a', 'b'\] \(2\).*3 entries"):
        mine.compile("sgd", loss=["mse", "mse", "mse"])
    with pytest.raises(ValueError, match=r"`metrics`.*one entry per output"):
        mine.compile("sgd", loss="mse", metrics=["mae"])
    with pytest.raises(ValueError, match=r"`loss_weights`.*one weight per output"):
        mine.compile("sgd", loss="mse", loss_weights=0.5)
    mine.compile("sgd", loss=["sparse_categorical_crossentropy", "mse"])
    with pytest.raises(ValueError, match=r"keys \['a', 'b'\].*received keys \['a', 'z'\]"):
        mine.fit(X, {"a": YA, "z": YB}, verbose=0)
    with pytest.raises(ValueError, match=r"2 entries, one per output \['a', 'b'\]"):
        mine.fit(X, [YA], verbose=0)
    with pytest.raises(ValueError, match=r"`class_weight` is only supported for models with a single output"):
        mine.fit(X, [YA, YB], class_weight={0: 1.0, 1: 2.0, 2: 1.0}, verbose=0)
    with pytest.raises(ValueError, match=r"output 'a'.*labels must be in \[0, 3\)"):
        mine.fit(X, [YA + 3, YB], verbose=0)  # a label out of range would be clamped by the gather: refused first


def test_single_output_rules_are_unchanged():
    inputs = nj.Input(shape=(4,), name="x")
    model = nj.Model(inputs, nj.layers.Dense(1, name="out")(inputs))
    with pytest.raises(ValueError, match=r"`loss_weights` to be a float.*received loss_weights=2; pass 2.0"):
        model.compile("sgd", loss="mse", loss_weights=2)  # Keras refuses an int here (not in a list)
    with pytest.raises(ValueError, match=r"one output 'out'.*one float.*received loss_weights=\[1.0, 2.0\]"):
        model.compile("sgd", loss="mse", loss_weights=[1.0, 2.0])
    with pytest.raises(ValueError, match=r"`loss_weights` scales the compiled `loss`.*loss_fn"):
        model.compile("sgd", loss_fn=lambda out, batch: out.sum(), loss_weights=0.5)
    model.compile("sgd", loss={"out": "mse"}, metrics={"out": ["mae"]})  # Keras: a dict keyed by the one output
    logs = model.fit(X, YB, verbose=0, shuffle=False).history
    assert sorted(logs) == ["loss", "mae"]


@pytest.mark.parametrize("loss_weights", [0.5, [0.5], {"out": 0.5}])
def test_single_output_loss_weights_scale_the_loss_as_keras(loss_weights):
    """Keras multiplies the one output's loss (not its metrics) by the weight; SGD then steps on the scaled loss."""
    keras.utils.set_random_seed(3)
    theirs = keras.Model(k_in := keras.Input((4,), name="x"), keras.layers.Dense(1, name="out")(k_in))
    mine = nj.Model(n_in := nj.Input(shape=(4,), name="x"), nj.layers.Dense(1, name="out")(n_in))
    kernel, bias = theirs.get_layer("out").get_weights()
    mine.get_layer("out").kernel[...] = kernel
    mine.get_layer("out").bias[...] = bias
    theirs.compile(optimizer=keras.optimizers.SGD(learning_rate=0.1), loss="mse", metrics=["mae"], loss_weights=loss_weights)
    mine.compile(optimizer=nj.optimizers.SGD(learning_rate=0.1), loss="mse", metrics=["mae"], loss_weights=loss_weights,
                 seed=0)
    k_batches, n_batches = BatchLogs(keras.callbacks.Callback), BatchLogs(nj.callbacks.Callback)
    theirs.fit(X, YB, batch_size=8, epochs=1, shuffle=False, verbose=0, callbacks=[k_batches.callback])
    mine.fit(X, YB, batch_size=8, epochs=1, shuffle=False, verbose=0, callbacks=[n_batches.callback])
    assert len(n_batches.logs) == len(k_batches.logs) == 3
    for n_logs, k_logs in zip(n_batches.logs, k_batches.logs, strict=True):
        assert_logs_equal(n_logs, k_logs)
    for got, expected in zip(mine.get_layer("out").get_weights(), theirs.get_layer("out").get_weights(), strict=True):
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)
    assert_logs_equal(mine.evaluate(X, YB, verbose=0, return_dict=True), theirs.evaluate(X, YB, verbose=0, return_dict=True))
