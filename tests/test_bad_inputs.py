"""Bad data never trains silently: every case raises before compiling, naming the argument, what was expected and
what was received; streamed batches are checked one by one."""

import warnings

import numpy as np
import pytest

import nnjax as nj

RNG = np.random.default_rng(0)
X = RNG.normal(size=(40, 4)).astype(np.float32)
Y = RNG.integers(0, 3, size=40).astype(np.int32)


def classifier(loss="sparse_categorical_crossentropy", units=3, activation="softmax"):
    model = nj.Sequential([nj.layers.Dense(units, activation=activation)])
    model.compile(optimizer="sgd", loss=loss, seed=0)
    return model


def with_value(array, index, value):
    array = array.astype(np.float64).copy()
    array[index] = value
    return array


nan_x = with_value(X, (7, 2), np.nan)
big_x = with_value(X, (11, 0), 1e39)

# (name, fit kwargs or a callable taking the model, model factory, error type, message pattern)
CASES = [
    ("nested lists of rows", dict(x=X.tolist(), y=Y.tolist()), classifier, None, None),
    ("ragged nested lists", dict(x=[[1.0, 2.0, 3.0, 4.0], [1.0, 2.0]], y=[0, 1]), classifier, TypeError,
     r"`x` must be an array \(rows of one length\); got nested lists of different lengths"),
    ("a list of batches", dict(x=[(X[:20], Y[:20]), (X[20:], Y[20:])]), classifier, ValueError,
     r"`x` looks like a list of 2 \(x, y\) batches; expected arrays"),
    ("a dict x for a Sequential", dict(x={"a": X}, y=Y), classifier, ValueError,
     r"takes one input array; received a dict of inputs with keys \['a'\]"),
    ("NaN in x", dict(x=nan_x, y=Y), classifier, ValueError,
     r"`x` holds a non-finite value: nan at example 7 \(index \(7, 2\)\); expected finite numbers"),
    ("inf in y", dict(x=X, y=with_value(np.zeros((40, 3)), (5, 1), np.inf)), lambda: classifier("mse"), ValueError,
     r"`y` holds a non-finite value: inf at example 5"),
    ("float64 beyond float32", dict(x=big_x, y=Y), classifier, ValueError,
     r"`x` holds 1e\+39 at example 11 \(index \(11, 0\)\), beyond float32's range"),
    ("negative sample_weight", dict(x=X, y=Y, sample_weight=with_value(np.ones(40), 3, -2.0)), classifier, ValueError,
     r"`sample_weight` must be >= 0; received -2 at example 3"),
    ("2-D sample_weight", dict(x=X, y=Y, sample_weight=np.ones((40, 2))), classifier, ValueError,
     r"`sample_weight` must have shape \(N,\): one weight per example; received shape \(40, 2\)"),
    ("strings as x", dict(x=np.array(["a b"] * 40), y=Y), classifier, TypeError,
     r"`x` holds strings \(dtype <U3\); expected numbers"),
    ("object array x", dict(x=np.array([np.zeros(3), np.zeros(2)] * 20, dtype=object), y=Y), classifier, TypeError,
     r"`x` is an object array \(ragged rows or mixed types"),
    ("binary labels outside [0, 1]", dict(x=X, y=np.full((40, 1), 2.0)),
     lambda: classifier("binary_crossentropy", 1, "sigmoid"), ValueError,
     r"loss 'binary_crossentropy' expects labels in \[0, 1\]; received labels in \[2.0, 2.0\]"),
    ("one-hot labels against one output", dict(x=X, y=np.eye(2)[Y % 2]),
     lambda: classifier("binary_crossentropy", 1, "sigmoid"), ValueError,
     r"expects targets of shape \(None, 1\) .* received targets of shape \(40, 2\).*one-hot labels of two classes"),
    ("regression width 3 against 1", dict(x=X, y=np.zeros((40, 3))), lambda: classifier("mse", 1, None), ValueError,
     r"loss 'mean_squared_error' expects targets of shape \(None, 1\) .* received targets of shape \(40, 3\)"),
    ("validation_freq=0", dict(x=X, y=Y, validation_freq=0), classifier, ValueError,
     r"fit: `validation_freq` must be an int >= 1; got 0"),
    ("epochs=2.5", dict(x=X, y=Y, epochs=2.5), classifier, ValueError, r"fit: `epochs` must be an int >= 0; got 2.5"),
    ("steps_per_epoch=0", dict(x=X, y=Y, steps_per_epoch=0), classifier, ValueError,
     r"fit: `steps_per_epoch` must be an int >= 1 or None; got 0"),
    ("steps_per_epoch=-1", dict(x=X, y=Y, steps_per_epoch=-1), classifier, ValueError, r"`steps_per_epoch` .* got -1"),
    ("steps_per_epoch=2.5", dict(x=X, y=Y, steps_per_epoch=2.5), classifier, ValueError, r"`steps_per_epoch` .* got 2.5"),
    ("batch_size=0", dict(x=X, y=Y, batch_size=0), classifier, ValueError, r"fit: `batch_size` must be an int >= 1 or None; got 0"),
]


@pytest.mark.parametrize("name, kwargs, build, error, pattern", CASES, ids=[c[0] for c in CASES])
def test_bad_fit_input_is_refused_before_compiling(name, kwargs, build, error, pattern):
    model = build()
    if error is None:  # the well-formed variant trains
        history = model.fit(**kwargs, epochs=1, verbose=0)
        assert np.isfinite(history.history["loss"][0])
        return
    with pytest.raises(error, match=pattern):
        model.fit(**{"epochs": 1, **kwargs}, verbose=0)
    assert model.fit_loop is None  # nothing ran


def test_evaluate_without_y_names_the_loss():
    model = classifier()
    model.fit(X, Y, epochs=1, verbose=0)
    with pytest.raises(ValueError, match=r"evaluate: `y` is required: loss 'sparse_categorical_crossentropy' compares"):
        model.evaluate(X, verbose=0)


def test_a_bad_label_in_a_later_streamed_batch_stops_before_it_is_trained_on():
    y = Y.copy()
    y[25] = 10  # in batch 3 of 8-example batches

    def batches():
        for i in range(0, 40, 8):
            yield X[i:i + 8], y[i:i + 8]

    model = classifier()
    seen = []

    class Steps(nj.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            seen.append(batch)

    with pytest.raises(ValueError, match=r"fit \(batch 3 of epoch 0\): labels must be in \[0, 3\) .* received labels in \[.*10\]"):
        model.fit(batches, epochs=1, verbose=0, callbacks=[Steps()])
    assert max(seen) < 3  # batch 3 never reached the compiled step


def test_a_nan_in_a_streamed_dataset_batch_is_named():
    x = X.copy()
    x[30, 1] = np.nan
    ds = nj.data.Dataset(list(zip(x, Y, strict=True)), batch_size=8, shuffle=False)
    with pytest.raises(ValueError, match=r"fit \(batch 3 of epoch 0\): `x` holds a non-finite value: nan at example 6"):
        classifier().fit(ds, epochs=1, verbose=0)


def test_backup_warns_when_a_nonfinite_loss_stops_its_backups(tmp_path):
    x = np.full((16, 1), 1.0, np.float32)
    model = nj.Sequential([nj.layers.Dense(1)])
    model.compile(optimizer=nj.optimizers.SGD(learning_rate=1e20), loss="mse", seed=0)  # diverges to inf within steps
    backup = nj.callbacks.BackupAndRestore(str(tmp_path / "b"), save_freq=1, async_save=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(x, np.full((16, 1), 1e10, np.float32), batch_size=4, epochs=2, verbose=0, callbacks=[backup])
    messages = [str(w.message) for w in caught if "BackupAndRestore" in str(w.message)]
    assert len(messages) == 1 and "no further backup is written" in messages[0] and "is kept for a resume" in messages[0] and "step None" not in messages[0]
