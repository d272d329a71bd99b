"""End to end against Keras 3 (JAX backend): the tutorial's MLP, Keras's initial weights copied in, `fit` for 20 Adam
steps on the same batches (shuffle off), with sample weights, class weights, validation data and weighted metrics.

What is compared, step by step: the running loss and metrics Keras logs after every batch, the epoch logs (validation
included), the final weights, and `evaluate` with `weighted_metrics`. Tolerances: 1e-6 relative on logged values (float32
sums of the same terms in the same order) and 1e-6 absolute on weights after 20 steps.
"""

import numpy as np
import pytest

import nnjax as nj

keras = pytest.importorskip("keras")

RNG = np.random.default_rng(0)
X = RNG.normal(size=(160, 8, 8)).astype(np.float32)
Y = (X.reshape(160, -1)[:, :10].argmax(1)).astype(np.int32)
W = RNG.uniform(0.0, 2.0, size=160).astype(np.float32)
XV, YV = X[:40] * 0.5, Y[:40]
CLASS_WEIGHT = {0: 0.5, 1: 2.0, 3: 1.5, 7: 0.25}


class BatchLogs:
    """The logs after every batch, for either framework's callback API."""

    def __init__(self, base):
        outer = self
        self.logs = []

        class Recorder(base):
            def on_train_batch_end(self, batch, logs=None):
                outer.logs.append(dict(logs))

        self.callback = Recorder()


def keras_model():
    keras.utils.set_random_seed(1)
    model = keras.Sequential([keras.Input((8, 8)), keras.layers.Flatten(), keras.layers.Dense(32, activation="relu"),
                              keras.layers.Dense(10, activation="softmax")])
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=3e-3), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"], weighted_metrics=["accuracy"])
    return model


def nnjax_model(kmodel):
    model = nj.Sequential([nj.layers.Flatten(input_shape=(8, 8)), nj.layers.Dense(32, activation="relu"),
                           nj.layers.Dense(10, activation="softmax")])
    for mine, theirs in zip([model.layers[1], model.layers[2]], [kmodel.layers[1], kmodel.layers[2]], strict=True):
        kernel, bias = theirs.get_weights()
        mine.kernel[...] = kernel
        mine.bias[...] = bias
    model.compile(optimizer=nj.optimizers.Adam(learning_rate=3e-3), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"], weighted_metrics=["accuracy"], seed=0)
    return model


def run_both(**fit_kwargs):
    kmodel = keras_model()
    model = nnjax_model(kmodel)
    theirs, mine = BatchLogs(keras.callbacks.Callback), BatchLogs(nj.callbacks.Callback)
    khistory = kmodel.fit(X, Y, batch_size=8, epochs=1, shuffle=False, verbose=0, callbacks=[theirs.callback], **fit_kwargs)
    history = model.fit(X, Y, batch_size=8, epochs=1, shuffle=False, verbose=0, callbacks=[mine.callback], **fit_kwargs)
    return kmodel, model, khistory.history, history.history, theirs.logs, mine.logs


def assert_logs_match(theirs: dict, mine: dict):
    assert set(mine) == set(theirs), (sorted(mine), sorted(theirs))
    for name in theirs:
        np.testing.assert_allclose(np.asarray(mine[name], np.float64), np.asarray(theirs[name], np.float64), rtol=1e-6,
                                   atol=1e-7, err_msg=name)


def assert_weights_match(kmodel, model):
    for mine, theirs in zip([model.layers[1], model.layers[2]], [kmodel.layers[1], kmodel.layers[2]], strict=True):
        kernel, bias = theirs.get_weights()
        np.testing.assert_allclose(np.asarray(mine.kernel[...]), kernel, rtol=0, atol=1e-6)
        np.testing.assert_allclose(np.asarray(mine.bias[...]), bias, rtol=0, atol=1e-6)


@pytest.mark.parametrize("case", ["plain", "sample_weight", "class_weight"])
def test_fit_logs_every_step_and_ends_on_keras_weights(case):
    kwargs = {"plain": {}, "sample_weight": {"sample_weight": W}, "class_weight": {"class_weight": CLASS_WEIGHT}}[case]
    kmodel, model, khistory, history, theirs, mine = run_both(validation_data=(XV, YV), **kwargs)
    assert len(theirs) == len(mine) == 20
    for keras_logs, logs in zip(theirs, mine, strict=True):
        assert_logs_match(keras_logs, logs)
    assert_logs_match({k: v[0] for k, v in khistory.items()}, {k: v[0] for k, v in history.items()})
    assert_weights_match(kmodel, model)
    if case != "plain":  # the weights reach the loss and the weighted metric only
        assert history["accuracy"] != history["weighted_accuracy"]


def test_evaluate_with_weighted_metrics_matches_keras():
    kmodel = keras_model()
    model = nnjax_model(kmodel)
    theirs = kmodel.evaluate(XV, YV, sample_weight=W[:40], batch_size=16, verbose=0, return_dict=True)
    mine = model.evaluate(XV, YV, sample_weight=W[:40], batch_size=16, verbose=0, return_dict=True)
    assert_logs_match(theirs, mine)


def test_stateful_metrics_report_the_epochs_value_as_keras_does():
    # Precision over an epoch is sum(TP) / sum(TP + FP) over all its batches, not the mean of batch precisions.
    xb = RNG.normal(size=(96, 6)).astype(np.float32)
    yb = (xb[:, 0] + 0.3 * xb[:, 1] > 0).astype(np.float32)[:, None]
    keras.utils.set_random_seed(2)
    kmodel = keras.Sequential([keras.Input((6,)), keras.layers.Dense(1, activation="sigmoid")])
    kmodel.compile(optimizer="sgd", loss="binary_crossentropy", metrics=[keras.metrics.Precision(name="precision"), keras.metrics.AUC(name="auc")])  # Keras numbers repeated names
    model = nj.Sequential([nj.layers.Dense(1, activation="sigmoid", input_shape=(6,))])
    kernel, bias = kmodel.layers[0].get_weights()
    model.layers[0].kernel[...] = kernel
    model.layers[0].bias[...] = bias
    model.compile(optimizer="sgd", loss="binary_crossentropy", metrics=[nj.metrics.Precision(name="precision"), nj.metrics.AUC(name="auc")], seed=0)
    theirs = kmodel.fit(xb, yb, batch_size=16, epochs=2, shuffle=False, verbose=0).history
    mine = model.fit(xb, yb, batch_size=16, epochs=2, shuffle=False, verbose=0).history
    assert set(mine) == set(theirs) == {"loss", "precision", "auc"}
    for name in theirs:
        np.testing.assert_allclose(mine[name], theirs[name], rtol=1e-5, err_msg=name)
