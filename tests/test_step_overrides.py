"""Keras's overridable training methods on a `Model` subclass, against Keras 3 (JAX backend).

`compute_loss` overrides are honoured in `fit` and `evaluate`: both frameworks start from the same weights (Keras's,
copied), train 3 SGD steps on the same batches, and must log the same values after every step and end on the same
weights (1e-6: float32 sums of the same terms). Overrides nnjax cannot honour (a `compute_metrics` without the step
that would call it; tests/test_keras_jax_train_step.py has the honoured JAX-form steps) are refused with a NotImplementedError naming the method and the alternative.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import nnjax as nj

keras = pytest.importorskip("keras")

RNG = np.random.default_rng(3)
X = RNG.normal(size=(12, 4)).astype(np.float32)
Y = RNG.normal(size=(12, 2)).astype(np.float32)
YA = RNG.integers(0, 3, size=12).astype(np.int32)


class KerasPenalised(keras.Model):
    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        loss = super().compute_loss(x, y, y_pred, sample_weight, training)
        return loss + 0.5 * keras.ops.mean(keras.ops.square(keras.ops.concatenate(keras.tree.flatten(y_pred), -1)))


class Penalised(nj.Model):
    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        loss = super().compute_loss(x, y, y_pred, sample_weight, training)
        return loss + 0.5 * jnp.mean(jnp.square(jnp.concatenate(jax.tree.leaves(y_pred), -1)))


class KerasNoTrainingArg(keras.Model):
    def compute_loss(self, x, y, y_pred, sample_weight):  # Keras < 3.3's signature: called without `training`
        return keras.ops.mean(keras.ops.abs(y - y_pred)) + 0.1 * keras.ops.mean(x)


class NoTrainingArg(nj.Model):
    def compute_loss(self, x, y, y_pred, sample_weight):
        return jnp.mean(jnp.abs(y - y_pred)) + 0.1 * jnp.mean(x)


def build(lib, cls, two_outputs=False):
    inputs = keras.Input((4,), name="x") if lib is keras else nj.Input(shape=(4,), name="x")
    hidden = lib.layers.Dense(3, activation="tanh", name="h")(inputs)
    out = lib.layers.Dense(2, name="d")(hidden)
    if two_outputs:
        return cls(inputs, [out, lib.layers.Dense(3, activation="softmax", name="c")(hidden)])
    return cls(inputs, out)


def pair(keras_cls, cls, two_outputs=False):
    keras.utils.set_random_seed(1)
    theirs, mine = build(keras, keras_cls, two_outputs), build(nj, cls, two_outputs)
    for layer in theirs.layers[1:]:
        kernel, bias = layer.get_weights()
        mine.get_layer(layer.name).kernel[...] = kernel
        mine.get_layer(layer.name).bias[...] = bias
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
    "super_plus_penalty": (KerasPenalised, Penalised, False, dict(loss="mse", metrics=["mae"]), lambda: Y),
    "no_training_argument": (KerasNoTrainingArg, NoTrainingArg, False, dict(loss="mse"), lambda: Y),
    "two_outputs": (KerasPenalised, Penalised, True,
                    dict(loss=["mse", "sparse_categorical_crossentropy"], loss_weights=[0.5, 2.0],
                         metrics=[["mae"], ["accuracy"]]), lambda: [Y, YA]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_compute_loss_override_trains_and_evaluates_as_keras(case):
    keras_cls, cls, two_outputs, compile_kwargs, targets = CASES[case]
    theirs, mine = pair(keras_cls, cls, two_outputs)
    assert isinstance(mine, cls) and isinstance(mine, nj.Model)
    theirs.compile(optimizer=keras.optimizers.SGD(learning_rate=0.1), **compile_kwargs)
    mine.compile(optimizer=nj.optimizers.SGD(learning_rate=0.1), **compile_kwargs, seed=0)
    k_batches, n_batches = BatchLogs(keras.callbacks.Callback), BatchLogs(nj.callbacks.Callback)
    k_history = theirs.fit(X, targets(), batch_size=4, shuffle=False, verbose=0, callbacks=[k_batches.callback]).history
    n_history = mine.fit(X, targets(), batch_size=4, shuffle=False, verbose=0, callbacks=[n_batches.callback]).history
    assert len(n_batches.logs) == len(k_batches.logs) == 3
    for n_logs, k_logs in zip(n_batches.logs, k_batches.logs, strict=True):
        assert_logs_equal(n_logs, k_logs)
    assert_logs_equal(n_history, k_history)
    for layer in theirs.layers[1:]:
        for got, expected in zip(mine.get_layer(layer.name).get_weights(), layer.get_weights(), strict=True):
            np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)
    assert_logs_equal(mine.evaluate(X, targets(), batch_size=4, verbose=0, return_dict=True),
                      theirs.evaluate(X, targets(), batch_size=4, verbose=0, return_dict=True))


class KerasStyleTrainStep(nj.Model):
    def train_step(self, state, data):  # Keras 3's JAX form
        trainable_variables, non_trainable_variables, optimizer_variables, metrics_variables = state
        return {}, state


class OwnTestStep(nj.Model):
    def test_step(self, state, data):
        return {}, state


class OwnPredictStep(nj.Model):
    def predict_step(self, state, data):
        return data


class OwnMetrics(nj.Model):
    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        return {}


def test_overrides_nnjax_cannot_honour_are_refused_by_name():
    for cls, method, refused, allowed in (
        (KerasStyleTrainStep, "train_step", [], ["fit", "train_on_batch", "evaluate", "predict"]),
        (OwnTestStep, "test_step", [], ["fit", "evaluate", "test_on_batch", "predict"]),
        (OwnMetrics, "compute_metrics", ["fit", "evaluate", "fit(validation_data)", "train_on_batch"], ["predict"]),
    ):
        inputs = nj.Input(shape=(4,))
        model = cls(inputs, nj.layers.Dense(2)(inputs))  # layers of its own: training donates the state's buffers
        model.compile(optimizer="sgd", loss="mse")
        calls = {"fit": lambda m: m.fit(X, Y, verbose=0), "evaluate": lambda m: m.evaluate(X, Y, verbose=0),
                 "predict": lambda m: m.predict(X, verbose=0), "train_on_batch": lambda m: m.train_on_batch(X, Y),
                 "test_on_batch": lambda m: m.test_on_batch(X, Y),
                 "fit(validation_data)": lambda m: m.fit(X, Y, validation_data=(X, Y), verbose=0)}
        for what in refused:
            step = "test_step" if what == "evaluate" else "train_step"  # fit refuses before validating
            with pytest.raises(NotImplementedError,
                               match=rf"{what.split('(')[0]}.*overrides `{method}`, which nnjax calls only from your "
                                     rf"own JAX-form `{step}`.*expected `{step}` to be overridden too. Supported instead"):
                calls[what](model)
        for what in allowed:
            calls[what](model)
    inputs = nj.Input(shape=(4,))
    model = OwnPredictStep(inputs, nj.layers.Dense(2)(inputs))
    with pytest.raises(TypeError, match=r"predict_step of OwnPredictStep: expected it to return \(outputs, "
                                        r"non_trainable_variables\), as Keras's predict_step does; received a tuple of "
                                        r"length 1"):
        model.predict(X, verbose=0)


class KerasSubclassed(keras.Model):
    def __init__(self, units):
        super().__init__()
        self.hidden = keras.layers.Dense(units, activation="tanh")
        self.heads = [keras.layers.Dense(units), keras.layers.Dense(2)]

    def call(self, inputs, training=False):
        return self.heads[1](self.heads[0](self.hidden(inputs)) * 0.5)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        return super().compute_loss(x, y, y_pred, sample_weight, training) + 0.5 * keras.ops.mean(y_pred**2)


class Subclassed(nj.Model):
    def __init__(self, units):
        super().__init__()
        self.units = units
        self.hidden = nj.layers.Dense(units, activation="tanh")
        self.heads = [nj.layers.Dense(units), nj.layers.Dense(2)]

    def halve(self, h):
        return h * 0.5

    def call(self, inputs, training=False):
        return self.heads[1](self.halve(self.heads[0](self.hidden(inputs))))

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        return super().compute_loss(x, y, y_pred, sample_weight, training) + 0.5 * jnp.mean(y_pred**2)


def test_subclass_with_layers_and_call_trains_as_keras():
    keras.utils.set_random_seed(1)
    theirs, mine = KerasSubclassed(3), Subclassed(3)
    theirs(X[:1])
    mine.build((None, 4))
    assert mine.units == 3 and mine.name.startswith("subclassed")
    pairs = [(theirs.hidden, mine.hidden), (theirs.heads[0], mine.heads[0]), (theirs.heads[1], mine.heads[1])]
    for k_layer, n_layer in pairs:
        kernel, bias = k_layer.get_weights()
        n_layer.kernel[...] = kernel
        n_layer.bias[...] = bias
    theirs.compile(optimizer=keras.optimizers.SGD(learning_rate=0.1), loss="mse", metrics=["mae"])
    mine.compile(optimizer=nj.optimizers.SGD(learning_rate=0.1), loss="mse", metrics=["mae"], seed=0)
    k_batches, n_batches = BatchLogs(keras.callbacks.Callback), BatchLogs(nj.callbacks.Callback)
    theirs.fit(X, Y, batch_size=4, shuffle=False, verbose=0, callbacks=[k_batches.callback])
    mine.fit(X, Y, batch_size=4, shuffle=False, verbose=0, callbacks=[n_batches.callback])
    for n_logs, k_logs in zip(n_batches.logs, k_batches.logs, strict=True):
        assert_logs_equal(n_logs, k_logs)
    for k_layer, n_layer in pairs:  # the trained weights, read through the model's attributes
        for got, expected in zip(n_layer.get_weights(), k_layer.get_weights(), strict=True):
            np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)
    np.testing.assert_allclose(mine.predict(X, verbose=0), theirs.predict(X, verbose=0), rtol=1e-6, atol=1e-6)


def test_subclasses_of_sequential_stay_sequential():
    class Stack(nj.Sequential):
        pass

    model = Stack([nj.Input(shape=(4,)), nj.layers.Dense(2)])
    assert isinstance(model, nj.Sequential) and model.predict(X, verbose=0).shape == (12, 2)
