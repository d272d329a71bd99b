"""Keras 3's JAX-form step overrides on a `Model` subclass, against Keras 3 (JAX backend).

The idioms of the keras-io guide "Customizing what happens in fit() with JAX" are written once, as a function of
the library (`keras` or `nnjax`): a train_step over `(trainable, non_trainable, optimizer, metrics)` variable lists
with the compiled loss and metrics, one with its own metric objects listed by a `metrics` property, a test_step and
a predict_step. Both frameworks start from the same weights (Keras's, copied) and train 2 epochs on the same
batches: the History logs, the per-batch logs and the final weights must agree to 1e-5.
"""

import jax
import numpy as np
import pytest

import nnjax as nj

keras = pytest.importorskip("keras")

RNG = np.random.default_rng(7)
X = RNG.normal(size=(20, 6)).astype(np.float32)
Y = RNG.normal(size=(20, 1)).astype(np.float32)
XV, YV = X[:8] * 0.5, Y[:8] + 0.1


def models(lib):
    """The overriding subclasses, for `lib` = keras or nnjax."""
    unpack = lib.utils.unpack_x_y_sample_weight

    def update_metrics(model, metric_values, loss, y, y_pred, sample_weight, weigh_loss=True):
        logs, updated = {}, []
        for metric in model.metrics:
            mine = metric_values[len(updated) : len(updated) + len(metric.variables)]
            if metric.name == "loss":
                mine = metric.stateless_update_state(mine, loss, sample_weight=sample_weight if weigh_loss else None)
            else:
                mine = metric.stateless_update_state(mine, y, y_pred, sample_weight=sample_weight)
            logs[metric.name] = metric.stateless_result(mine)
            updated += mine
        return logs, updated

    class CompiledMetrics(lib.Model):
        traces = test_traces = 0

        def compute_loss_and_updates(self, trainable, non_trainable, metric_values, x, y, sample_weight, training=False):
            y_pred, non_trainable = self.stateless_call(trainable, non_trainable, x, training=training)
            loss, (trainable, non_trainable, metric_values) = self.stateless_compute_loss(
                trainable, non_trainable, metric_values, x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=training
            )
            return loss, (y_pred, non_trainable, metric_values)

        def train_step(self, state, data):
            type(self).traces += 1
            trainable, non_trainable, optimizer_values, metric_values = state
            x, y, sample_weight = unpack(data)
            grad_fn = jax.value_and_grad(self.compute_loss_and_updates, has_aux=True)
            (loss, (y_pred, non_trainable, metric_values)), grads = grad_fn(
                trainable, non_trainable, metric_values, x, y, sample_weight, training=True
            )
            trainable, optimizer_values = self.optimizer.stateless_apply(optimizer_values, grads, trainable)
            logs, metric_values = update_metrics(self, metric_values, loss, y, y_pred, sample_weight)
            return logs, (trainable, non_trainable, optimizer_values, metric_values)

        def test_step(self, state, data):
            type(self).test_traces += 1
            x, y, sample_weight = unpack(data)
            trainable, non_trainable, metric_values = state
            y_pred, non_trainable = self.stateless_call(trainable, non_trainable, x, training=False)
            loss = self.compute_loss(x, y, y_pred, sample_weight)
            logs, metric_values = update_metrics(self, metric_values, loss, y, y_pred, sample_weight)
            return logs, (trainable, non_trainable, metric_values)

    class OwnMetrics(lib.Model):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.loss_tracker = lib.metrics.Mean(name="loss")
            self.mae_metric = lib.metrics.MeanAbsoluteError(name="mae")
            self.loss_fn = lib.losses.MeanSquaredError()

        def compute_loss_and_updates(self, trainable, non_trainable, x, y, sample_weight, training=False):
            y_pred, non_trainable = self.stateless_call(trainable, non_trainable, x, training=training)
            return self.loss_fn(y, y_pred, sample_weight=sample_weight), (y_pred, non_trainable)

        def train_step(self, state, data):
            trainable, non_trainable, optimizer_values, metric_values = state
            x, y, sample_weight = unpack(data)
            (loss, (y_pred, non_trainable)), grads = jax.value_and_grad(self.compute_loss_and_updates, has_aux=True)(
                trainable, non_trainable, x, y, sample_weight, training=True
            )
            trainable, optimizer_values = self.optimizer.stateless_apply(optimizer_values, grads, trainable)
            split = len(self.loss_tracker.variables)
            loss_values = self.loss_tracker.stateless_update_state(metric_values[:split], loss, sample_weight=sample_weight)
            mae_values = self.mae_metric.stateless_update_state(metric_values[split:], y, y_pred, sample_weight=sample_weight)
            logs = {
                "nested": {self.loss_tracker.name: self.loss_tracker.stateless_result(loss_values)},
                self.mae_metric.name: self.mae_metric.stateless_result(mae_values),
            }
            return logs, (trainable, non_trainable, optimizer_values, loss_values + mae_values)

        @property
        def metrics(self):
            return [self.loss_tracker, self.mae_metric]

    class DoubledPredictions(lib.Model):
        def predict_step(self, state, data):
            trainable, non_trainable = state
            x, _, _ = unpack(data)
            y_pred, non_trainable = self.stateless_call(trainable, non_trainable, x, training=False)
            return 2.0 * y_pred + 1.0, non_trainable

    class DefaultLossAndUpdates(lib.Model):
        def train_step(self, state, data):
            trainable, non_trainable, optimizer_values, metric_values = state
            x, y, sample_weight = unpack(data)
            (_, (loss, y_pred, non_trainable, metric_values)), grads = jax.value_and_grad(
                self.compute_loss_and_updates, has_aux=True
            )(trainable, non_trainable, metric_values, x, y, sample_weight, training=True, optimizer_variables=optimizer_values)
            trainable, optimizer_values = self.optimizer.stateless_apply(optimizer_values, grads, trainable)
            # the loss is a scalar: the loss tracker takes no per-example weights
            logs, metric_values = update_metrics(self, metric_values, loss, y, y_pred, sample_weight, weigh_loss=False)
            return logs, (trainable, non_trainable, optimizer_values, metric_values)

    return {
        "compiled_metrics": CompiledMetrics,
        "own_metrics": OwnMetrics,
        "predict": DoubledPredictions,
        "default_loss_and_updates": DefaultLossAndUpdates,
    }


def build(lib, cls, batchnorm=False):
    inputs = keras.Input((6,), name="x") if lib is keras else nj.Input(shape=(6,), name="x")
    hidden = lib.layers.Dense(4, activation="tanh", name="hidden")(inputs)
    if batchnorm:
        hidden = lib.layers.BatchNormalization(momentum=0.5, name="bn")(hidden)
    return cls(inputs, lib.layers.Dense(1, name="out")(hidden))


def pair(kind, batchnorm=False):
    keras.utils.set_random_seed(2)
    theirs, mine = build(keras, models(keras)[kind], batchnorm), build(nj, models(nj)[kind], batchnorm)
    for layer in theirs.layers[1:]:
        mine.get_layer(layer.name).set_weights(layer.get_weights())
    return theirs, mine


def batch_recorder(base, into):
    class Recorder(base):
        def on_train_batch_end(self, batch, logs=None):
            into.append(dict(logs))

    return Recorder()


def assert_logs_equal(mine: dict, theirs: dict):
    assert sorted(mine) == sorted(theirs)
    for key, value in theirs.items():
        np.testing.assert_allclose(
            np.asarray(mine[key], np.float64), np.asarray(value, np.float64), rtol=1e-5, atol=1e-6, err_msg=key
        )


def assert_same_weights(mine, theirs):
    for layer in theirs.layers[1:]:
        for got, expected in zip(mine.get_layer(layer.name).get_weights(), layer.get_weights(), strict=True):
            np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize("kind", ["compiled_metrics", "own_metrics"])
def test_train_step_forms_train_as_keras(kind):
    theirs, mine = pair(kind)
    if kind == "compiled_metrics":
        compile_kwargs = dict(optimizer="adam", loss="mse", metrics=["mae"])
        fit_kwargs = dict(validation_data=(XV, YV))
    else:  # only the optimizer is compiled; two steps per execution
        compile_kwargs = dict(optimizer="adam", steps_per_execution=2)
        fit_kwargs = {}
    theirs.compile(**compile_kwargs)
    mine.compile(**compile_kwargs)
    k_batches, n_batches = [], []
    k_history = theirs.fit(
        X,
        Y,
        batch_size=4,
        epochs=2,
        shuffle=False,
        verbose=0,
        callbacks=[batch_recorder(keras.callbacks.Callback, k_batches)],
        **fit_kwargs,
    ).history
    n_history = mine.fit(
        X,
        Y,
        batch_size=4,
        epochs=2,
        shuffle=False,
        verbose=0,
        callbacks=[batch_recorder(nj.callbacks.Callback, n_batches)],
        **fit_kwargs,
    ).history
    assert sorted(n_history) == sorted(k_history)
    for key in k_history:
        np.testing.assert_allclose(n_history[key], k_history[key], rtol=1e-5, atol=1e-6, err_msg=key)
    assert len(n_batches) == len(k_batches) == (10 if kind == "compiled_metrics" else 6)
    for n_logs, k_logs in zip(n_batches, k_batches, strict=True):
        assert_logs_equal(n_logs, k_logs)
    assert_same_weights(mine, theirs)
    assert mine.optimizer.iterations == int(theirs.optimizer.iterations) == 10
    # the metric objects hold what the last step returned (after validation: the validation values, as Keras)
    assert_logs_equal(mine.get_metrics_result(), {k: float(v) for k, v in theirs.get_metrics_result().items()})
    if kind == "compiled_metrics":
        assert_logs_equal(
            mine.evaluate(X, Y, batch_size=8, verbose=0, return_dict=True),
            theirs.evaluate(X, Y, batch_size=8, verbose=0, return_dict=True),
        )
        np.testing.assert_allclose(
            mine.evaluate(X, Y, batch_size=8, verbose=0), theirs.evaluate(X, Y, batch_size=8, verbose=0), rtol=1e-5
        )
        np.testing.assert_allclose(mine.predict(X, verbose=0), theirs.predict(X, verbose=0), rtol=1e-5, atol=1e-6)


def test_variable_lists_follow_keras_order():
    theirs, mine = pair("compiled_metrics")
    theirs.compile(optimizer="adam", loss="mse", metrics=["mae"])
    mine.compile(optimizer="adam", loss="mse", metrics=["mae"])
    for got, expected in zip(mine.trainable_variables, theirs.trainable_variables, strict=True):
        np.testing.assert_array_equal(np.asarray(got), np.asarray(expected))
    assert mine.non_trainable_variables == [] == list(theirs.non_trainable_variables)
    assert [m.name for m in mine.metrics] == [m.name for m in theirs.metrics] == ["loss", "compile_metrics"]
    for model in (theirs, mine):  # Keras builds its compile metrics on the first batch
        model.fit(X, Y, batch_size=10, shuffle=False, verbose=0)
    assert len(mine.metrics_variables) == len(theirs.metrics_variables) == 4
    for got, expected in zip(mine.metrics_variables, theirs.metrics_variables, strict=True):
        np.testing.assert_allclose(np.asarray(got), np.asarray(expected), rtol=1e-6)


def test_predict_step_override_as_keras():
    theirs, mine = pair("predict")
    expected = theirs.predict(X, batch_size=8, verbose=0)
    np.testing.assert_allclose(mine.predict(X, batch_size=8, verbose=0), expected, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(mine.predict_on_batch(X[:5]), theirs.predict_on_batch(X[:5]), rtol=1e-6, atol=1e-6)


def test_steps_are_traced_in_the_first_epoch_only():
    _, mine = pair("compiled_metrics")
    cls = type(mine)
    mine.compile(optimizer="sgd", loss="mse", metrics=["mae"], steps_per_execution=1)
    fit = dict(batch_size=8, shuffle=False, verbose=0, validation_data=(XV, YV))
    mine.fit(X, Y, epochs=1, **fit)  # full and partial batches: traced for both
    traced = (cls.traces, cls.test_traces)
    assert min(traced) > 0
    mine.fit(X, Y, epochs=2, **fit)
    mine.evaluate(XV, YV, batch_size=8, verbose=0)
    assert (cls.traces, cls.test_traces) == traced


class _WrongStep(nj.Model):
    returns = "state only"

    def train_step(self, state, data):
        trainable, non_trainable, optimizer_values, metric_values = state
        if self.returns == "state only":
            return state
        if self.returns == "three lists":
            return {}, (trainable, non_trainable, optimizer_values)
        return {}, (trainable[:-1], non_trainable, optimizer_values, metric_values)


@pytest.mark.parametrize(
    "returns, error, message",
    [
        (
            "state only",
            TypeError,
            r"train_step of _WrongStep: expected it to return \(logs, state\) with state = "
            r"\(trainable_variables, .*received a tuple of length 4",
        ),
        ("three lists", TypeError, r"expected the returned state to be a tuple of 4 lists .*received a tuple of length 3"),
        ("one weight short", ValueError, r"expected trainable_variables to be a list of 4 arrays .*received 3"),
    ],
)
def test_a_train_step_returning_the_wrong_structure_is_refused(returns, error, message):
    inputs = nj.Input(shape=(6,))
    model = _WrongStep(inputs, nj.layers.Dense(1)(nj.layers.Dense(4)(inputs)))
    model.returns = returns
    model.compile(optimizer="sgd")
    with pytest.raises(error, match=message):
        model.fit(X, Y, batch_size=4, verbose=0)


def test_one_batch_methods_run_the_steps_as_keras():
    theirs, mine = pair("compiled_metrics")
    for model in (theirs, mine):
        model.compile(optimizer="adam", loss="mse", metrics=["mae"])
    for _ in range(2):  # each call starts from reset metrics, as Keras
        np.testing.assert_allclose(mine.train_on_batch(X[:6], Y[:6]), theirs.train_on_batch(X[:6], Y[:6]), rtol=1e-5)
    assert_logs_equal(mine.test_on_batch(X, Y, return_dict=True), theirs.test_on_batch(X, Y, return_dict=True))
    assert_same_weights(mine, theirs)


def test_compile_options_a_train_step_would_bypass_are_refused():
    _, mine = pair("compiled_metrics")
    with pytest.raises(
        NotImplementedError,
        match=r"overrides train_step, which applies its own updates, so "
        r"nonfinite='halt' would not act on them; expected nonfinite=None",
    ):
        mine.compile(optimizer="sgd", loss="mse", nonfinite="halt")


@pytest.mark.filterwarnings("ignore:Your input ran out of data")
def test_a_streamed_dataset_trains_through_the_train_step():
    theirs, mine = pair("compiled_metrics")
    for model in (theirs, mine):
        model.compile(optimizer="sgd", loss="mse", metrics=["mae"])

    def batches():
        for start in range(0, 20, 5):
            yield X[start : start + 5], Y[start : start + 5]

    k_history = theirs.fit(batches(), epochs=1, shuffle=False, verbose=0).history
    n_history = mine.fit(batches(), epochs=1, shuffle=False, verbose=0).history
    assert_logs_equal({k: v[0] for k, v in n_history.items()}, {k: v[0] for k, v in k_history.items()})
    assert_same_weights(mine, theirs)


def test_compiled_count_metrics_reach_the_train_step_as_keras():
    labels = (Y > 0).astype(np.float32)
    theirs, mine = pair("compiled_metrics")
    for model in (theirs, mine):  # Precision and AUC keep counts: compile_metrics holds them as variables
        model.compile(optimizer="adam", loss="binary_crossentropy", metrics=["precision", "auc"])
    fit = dict(batch_size=4, epochs=2, shuffle=False, verbose=0, validation_data=(XV, labels[:8]))
    k_history, n_history = theirs.fit(X, labels, **fit).history, mine.fit(X, labels, **fit).history
    assert sorted(n_history) == sorted(k_history) == ["auc", "loss", "precision", "val_auc", "val_loss", "val_precision"]
    for key in k_history:
        np.testing.assert_allclose(n_history[key], k_history[key], rtol=1e-5, atol=1e-6, err_msg=key)
    assert_same_weights(mine, theirs)


def test_default_compute_loss_and_updates_with_sample_weights_and_batchnorm_state():
    theirs, mine = pair("default_loss_and_updates", batchnorm=True)
    weights = np.linspace(0.5, 2.0, len(X)).astype(np.float32)
    for model in (theirs, mine):
        model.compile(optimizer="adam", loss="mse", metrics=["mae"], weighted_metrics=["mse"])
    assert [tuple(np.shape(v)) for v in mine.non_trainable_variables] == [(4,), (4,)]  # the moving mean, variance
    fit = dict(sample_weight=weights, batch_size=5, epochs=2, shuffle=False, verbose=0)
    k_history, n_history = theirs.fit(X, Y, **fit).history, mine.fit(X, Y, **fit).history
    assert sorted(n_history) == sorted(k_history) == ["loss", "mae", "mse"]
    for key in k_history:
        np.testing.assert_allclose(n_history[key], k_history[key], rtol=1e-5, atol=1e-6, err_msg=key)
    assert_same_weights(mine, theirs)  # the BatchNormalization statistics the steps returned included
    for got, expected in zip(mine.non_trainable_variables, theirs.non_trainable_variables, strict=True):
        np.testing.assert_allclose(np.asarray(got), np.asarray(expected), rtol=1e-5, atol=1e-6)


def subclassed(lib):
    class TwoDense(lib.Model):
        def __init__(self):
            super().__init__()
            self.wide = lib.layers.Dense(5, name="wide")
            self.narrow = lib.layers.Dense(1, name="narrow")
            self.batch_losses = lib.metrics.Mean(name="loss")  # tracked: model.metrics lists it after the compiled ones

        def call(self, x, training=False):
            return self.narrow(self.wide(x))

        def train_step(self, state, data):
            trainable, non_trainable, optimizer_values, metric_values = state
            x, y = data

            def objective(trainable):
                y_pred, _ = self.stateless_call(trainable, non_trainable, x, training=True)
                return self.compute_loss(x, y, y_pred)

            loss, grads = jax.value_and_grad(objective)(trainable)
            trainable, optimizer_values = self.optimizer.stateless_apply(optimizer_values, grads, trainable)
            tracker = self.metrics[0]  # the compiled loss tracker; the tracked one keeps its reset values
            updated = tracker.stateless_update_state(metric_values[:2], loss)
            logs = {"loss": tracker.stateless_result(updated)}
            return logs, (trainable, non_trainable, optimizer_values, updated + metric_values[2:])

    return TwoDense()


def test_subclassed_train_step_epoch_logs_follow_keras_rule():
    keras.utils.set_random_seed(3)
    theirs, mine = subclassed(keras), subclassed(nj)
    theirs(X[:1])
    mine.build((None, 6))
    for name in ("wide", "narrow"):
        getattr(mine, name).set_weights(getattr(theirs, name).get_weights())
    for model in (theirs, mine):
        model.compile(optimizer="sgd", loss="mse")
    assert [m.name for m in mine.metrics] == [m.name for m in theirs.metrics] == ["loss", "loss"]
    k_batches, n_batches = [], []
    fit = dict(batch_size=5, epochs=2, shuffle=False, verbose=0)
    k_history = theirs.fit(X, Y, callbacks=[batch_recorder(keras.callbacks.Callback, k_batches)], **fit).history
    n_history = mine.fit(X, Y, callbacks=[batch_recorder(nj.callbacks.Callback, n_batches)], **fit).history
    # the step's logs have the names of model.metrics' results: the epoch ends on those results (the last "loss",
    # the tracked metric's, was never updated), while each batch sees the step's own logs
    assert n_history == k_history == {"loss": [0.0, 0.0]}
    for n_logs, k_logs in zip(n_batches, k_batches, strict=True):
        assert_logs_equal(n_logs, k_logs)
    for name in ("wide", "narrow"):
        for got, expected in zip(getattr(mine, name).get_weights(), getattr(theirs, name).get_weights(), strict=True):
            np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5)


def test_metric_objects_given_to_compile_are_updated_by_the_train_step():
    theirs, mine = pair("compiled_metrics")
    k_mae, n_mae = keras.metrics.MeanAbsoluteError(name="abs_err"), nj.metrics.MeanAbsoluteError(name="abs_err")
    theirs.compile(optimizer="sgd", loss="mse", metrics=[k_mae])
    mine.compile(optimizer="sgd", loss="mse", metrics=[n_mae])
    fit = dict(batch_size=4, epochs=1, shuffle=False, verbose=0)
    assert_logs_equal(
        {k: v[0] for k, v in mine.fit(X, Y, **fit).history.items()}, {k: v[0] for k, v in theirs.fit(X, Y, **fit).history.items()}
    )
    np.testing.assert_allclose(float(n_mae.result()), float(k_mae.result()), rtol=1e-5)
    assert mine.metrics[1].metrics == [n_mae]
