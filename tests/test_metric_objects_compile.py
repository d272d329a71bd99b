"""Metric objects in `compile`: nnjax's Keras classes, user subclasses of `nj.metrics.Metric` and flax
`nnx.metrics`, with Keras 3 (copied weights, SGD, in-memory data, no shuffling) as the oracle for the logs,
float32 rtol 1e-5; the objects hold the final values after `fit`/`evaluate`, as Keras's do."""

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import nnjax as nj

keras = pytest.importorskip("keras")

RNG = np.random.default_rng(0)
X = RNG.normal(size=(64, 6)).astype(np.float32)
Y_BINARY = (X[:, 0] + 0.5 * X[:, 1] > 0).astype(np.float32)[:, None]
Y_CLASS = RNG.integers(0, 3, size=(64,)).astype(np.int32)
W = RNG.uniform(0.2, 2.0, size=(64,)).astype(np.float32)


def user_metrics(lib, ops):
    """Keras's guide-shaped metric (a scalar variable, assign) and one with a vector variable (assign_add)."""

    class BinaryTruePositives(lib.metrics.Metric):
        def __init__(self, name="binary_true_positives", **kwargs):
            super().__init__(name=name, **kwargs)
            self.true_positives = self.add_variable(shape=(), initializer="zeros", name="true_positives")

        def update_state(self, y_true, y_pred, sample_weight=None):
            values = ops.cast(ops.logical_and(ops.greater(y_true, 0.5), ops.greater(y_pred, 0.5)), self.dtype)
            if sample_weight is not None:
                values = values * ops.reshape(ops.cast(sample_weight, self.dtype), (-1, 1))
            self.true_positives.assign(self.true_positives + ops.sum(values))

        def result(self):
            return self.true_positives.value  # Keras 3 on this JAX cannot trace a returned Variable

    class ScoreHistogram(lib.metrics.Metric):
        def __init__(self, name="top_bin_share", **kwargs):
            super().__init__(name=name, **kwargs)
            self.bins = self.add_variable(shape=(4,), initializer="zeros", name="bins")

        def update_state(self, y_true, y_pred, sample_weight=None):
            index = ops.clip(ops.cast(ops.floor(ops.reshape(y_pred, (-1,)) * 4), "int32"), 0, 3)
            self.bins.assign_add(ops.sum(ops.one_hot(index, 4), axis=0))

        def result(self):
            return self.bins.value[3] / ops.maximum(ops.sum(self.bins.value), 1.0)

    return BinaryTruePositives, ScoreHistogram


def _binary_pair():
    keras.utils.set_random_seed(2)
    theirs = keras.Sequential([keras.Input((6,)), keras.layers.Dense(1, activation="sigmoid")])
    mine = nj.Sequential([nj.layers.Dense(1, activation="sigmoid", input_shape=(6,))])
    kernel, bias = theirs.layers[0].get_weights()
    mine.layers[0].kernel[...] = kernel
    mine.layers[0].bias[...] = bias
    return theirs, mine


def _metric_set(lib, ops):
    true_positives, histogram = user_metrics(lib, ops)
    metrics = [
        true_positives(),
        histogram(),
        lib.metrics.AUC(num_thresholds=50, curve="PR", name="pr_auc"),
        lib.metrics.BinaryAccuracy(name="binary_accuracy"),
    ]
    return metrics, [true_positives(name="weighted_tp")]


def _assert_logs(mine: dict, theirs: dict):
    assert sorted(mine) == sorted(theirs)
    for name, value in theirs.items():
        np.testing.assert_allclose(mine[name], value, rtol=1e-5, atol=1e-6, err_msg=name)


def test_user_subclasses_and_keras_classes_in_fit_and_evaluate_match_keras():
    theirs, mine = _binary_pair()
    k_metrics, k_weighted = _metric_set(keras, keras.ops)
    n_metrics, n_weighted = _metric_set(nj, nj.ops)
    theirs.compile(
        optimizer=keras.optimizers.SGD(0.1), loss="binary_crossentropy", metrics=k_metrics, weighted_metrics=k_weighted
    )
    mine.compile(
        optimizer=nj.optimizers.SGD(0.1), loss="binary_crossentropy", metrics=n_metrics, weighted_metrics=n_weighted, seed=0
    )
    fit = dict(sample_weight=W, batch_size=16, epochs=2, shuffle=False, verbose=0)
    k_history = theirs.fit(X, Y_BINARY, **fit).history
    n_history = mine.fit(X, Y_BINARY, **fit).history
    assert set(n_history) == {"loss", "binary_true_positives", "top_bin_share", "pr_auc", "binary_accuracy", "weighted_tp"}
    _assert_logs(n_history, k_history)
    for ours, keras_metric in zip(n_metrics + n_weighted, k_metrics + k_weighted):  # the epoch's final state, as Keras
        np.testing.assert_allclose(np.asarray(ours.result()), np.asarray(keras_metric.result()), rtol=1e-5, atol=1e-6)
    _assert_logs(
        mine.evaluate(X[:40], Y_BINARY[:40], sample_weight=W[:40], batch_size=16, verbose=0, return_dict=True),
        theirs.evaluate(X[:40], Y_BINARY[:40], sample_weight=W[:40], batch_size=16, verbose=0, return_dict=True),
    )
    for ours, keras_metric in zip(n_metrics, k_metrics):
        np.testing.assert_allclose(np.asarray(ours.result()), np.asarray(keras_metric.result()), rtol=1e-5, atol=1e-6)
    ours = n_metrics[0]
    ours.update_state(Y_BINARY[:4], np.full((4, 1), 0.9, np.float32))  # the object stays usable eagerly
    assert float(ours.result()) == pytest.approx(float(k_metrics[0].result()) + float(Y_BINARY[:4].sum()))


def test_classification_objects_and_flax_accuracy_match_keras():
    keras.utils.set_random_seed(3)
    theirs = keras.Sequential([keras.Input((6,)), keras.layers.Dense(3, activation="softmax")])
    mine = nj.Sequential([nj.layers.Dense(3, activation="softmax", input_shape=(6,))])
    kernel, bias = theirs.layers[0].get_weights()
    mine.layers[0].kernel[...] = kernel
    mine.layers[0].bias[...] = bias
    keras_accuracy = keras.metrics.SparseCategoricalAccuracy()
    ours_accuracy, flax_accuracy = nj.metrics.SparseCategoricalAccuracy(), nnx.metrics.Accuracy()
    theirs.compile(
        optimizer=keras.optimizers.SGD(0.1),
        loss="sparse_categorical_crossentropy",
        metrics=[
            keras_accuracy,
            "accuracy",
            keras.metrics.SparseTopKCategoricalAccuracy(k=2, name="top2"),
        ],
        weighted_metrics=[keras.metrics.SparseCategoricalCrossentropy(name="xent")],
    )
    mine.compile(
        optimizer=nj.optimizers.SGD(0.1),
        loss="sparse_categorical_crossentropy",
        metrics=[
            ours_accuracy,
            flax_accuracy,  # logged as "accuracy"
            nj.metrics.SparseTopKCategoricalAccuracy(k=2, name="top2"),
        ],
        weighted_metrics=[nj.metrics.SparseCategoricalCrossentropy(name="xent")],
        seed=0,
    )
    fit = dict(sample_weight=W, batch_size=16, epochs=2, shuffle=False, verbose=0, validation_data=(X[:24], Y_CLASS[:24]))
    k_history = theirs.fit(X, Y_CLASS, **fit).history
    _assert_logs(mine.fit(X, Y_CLASS, **fit).history, k_history)
    # After fit with validation data Keras's objects hold the last validation's state; so do nnjax's and flax's.
    np.testing.assert_allclose(float(ours_accuracy.result()), float(keras_accuracy.result()), rtol=1e-6)
    np.testing.assert_allclose(float(flax_accuracy.compute()), k_history["val_accuracy"][-1], rtol=1e-6)


def test_per_output_metric_objects_match_numpy():
    inputs = nj.Input(shape=(6,), name="x")
    a = nj.layers.Dense(3, activation="softmax", name="a")(inputs)
    b = nj.layers.Dense(1, name="b")(inputs)
    model = nj.Model(inputs, [a, b])
    model.compile(
        optimizer="sgd",
        loss=["sparse_categorical_crossentropy", "mse"],
        seed=0,
        metrics=[[nj.metrics.SparseCategoricalAccuracy(name="acc")], [nj.metrics.MeanAbsoluteError(name="mae")]],
        weighted_metrics={"b": [nj.metrics.MeanSquaredError(name="mse")]},
    )
    y_b = X[:, :1] * 2.0
    logs = model.evaluate(X, [Y_CLASS, y_b], sample_weight=W, batch_size=16, verbose=0, return_dict=True)
    probs, out_b = model.predict(X, verbose=0)
    np.testing.assert_allclose(logs["a_acc"], np.mean(np.argmax(probs, -1) == Y_CLASS), rtol=1e-6)
    np.testing.assert_allclose(logs["b_mae"], np.mean(np.abs(out_b - y_b)), rtol=1e-5)
    np.testing.assert_allclose(logs["b_mse"], np.sum(W * (out_b - y_b)[:, 0] ** 2) / np.sum(W), rtol=1e-5)


def test_flax_average_of_a_per_example_value():
    model = nj.Sequential([nj.layers.Dense(3, activation="softmax", input_shape=(6,))])
    confidence = nj.metrics.from_flax(
        nnx.metrics.Average(), lambda y_true, y_pred: {"values": jnp.max(y_pred, -1)}, name="confidence"
    )
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", metrics=[confidence], seed=0)
    logs = model.evaluate(X, Y_CLASS, batch_size=16, verbose=0, return_dict=True)
    np.testing.assert_allclose(logs["confidence"], np.mean(np.max(model.predict(X, verbose=0), -1)), rtol=1e-6)


def test_errors_name_the_metric_and_what_was_expected():
    class Untraceable(nj.metrics.Metric):
        def __init__(self):
            super().__init__(name="untraceable")
            self.total = self.add_variable((), "zeros", name="total")

        def update_state(self, y_true, y_pred, sample_weight=None):
            self.total.assign_add(float(jnp.sum(y_pred)))

        def result(self):
            return self.total.value

    model = nj.Sequential([nj.layers.Dense(1, input_shape=(6,))])
    model.compile(optimizer="sgd", loss="mse", metrics=[Untraceable()], seed=0)
    with pytest.raises(TypeError, match=r"metric 'untraceable' \(Untraceable\): update_state cannot be traced"):
        model.fit(X, Y_BINARY, epochs=1, verbose=0)
    with pytest.raises(
        TypeError,
        match=r"compile\(metrics=...\): expected a metric name .*, a metric object "
        r"\(nj.metrics.AUC\(\), a subclass of nj.metrics.Metric, a flax nnx.metrics "
        r"object\) or a function .*; received int 3",
    ):
        model.compile(optimizer="sgd", loss="mse", metrics=[3])
