"""Saving what a model was compiled with: loss and metric objects with arguments, learning-rate schedules.

Oracle: an uninterrupted run of the same model (2 epochs + save + load in a fresh process + 1 epoch must
equal 3 epochs in one go), and Keras 3's own serialized form of the same objects (`serialize_keras_object`).
"""

import json
import os
import subprocess
import sys
import textwrap

import jax.numpy as jnp
import numpy as np
import optax
import pytest

import nnjax as nj

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CHILD = textwrap.dedent("""
    import json, sys
    import numpy as np
    import nnjax as nj
    path, out = sys.argv[1], sys.argv[2]
    rs = np.random.RandomState(0)
    x = rs.randn(32, 4).astype("float32"); y = (x[:, 0] + x[:, 1] > 0).astype("float32")[:, None]
    model = nj.models.load_model(path)
    logs = model.fit(x, y, epochs=3, initial_epoch=2, batch_size=8, verbose=0).history
    np.savez(out + ".npz", *model.get_weights())
    json.dump({k: [float(v) for v in vs] for k, vs in logs.items()}, open(out + ".json", "w"))
""")


def _data():
    rs = np.random.RandomState(0)
    x = rs.randn(32, 4).astype("float32")
    return x, (x[:, 0] + x[:, 1] > 0).astype("float32")[:, None]


def _model():
    nj.utils.set_random_seed(5)
    return nj.Sequential(
        [
            nj.layers.Dense(8, activation="relu", input_shape=(4,), name="hidden"),
            nj.layers.Dropout(0.25, name="drop"),
            nj.layers.Dense(1, name="logit"),
        ]
    )


def _compile(model):
    model.compile(
        optimizer=nj.optimizers.Adam(
            learning_rate=nj.optimizers.schedules.ExponentialDecay(0.05, 3, 0.5), beta_1=0.8, clipnorm=1.0
        ),
        loss=nj.losses.BinaryCrossentropy(from_logits=True, label_smoothing=0.1),
        metrics=[nj.metrics.Precision(thresholds=0.3, name="p30"), "accuracy", nj.metrics.binary_accuracy],
        loss_weights=0.5,
        seed=3,
    )


def test_objects_and_schedule_resume_in_a_fresh_process(tmp_path):
    """Loss and metric objects with arguments and an LR schedule come back: training continues exactly."""
    x, y = _data()
    whole, first = _model(), _model()
    first.set_weights(whole.get_weights())
    _compile(whole)
    _compile(first)
    expected_logs = whole.fit(x, y, epochs=3, batch_size=8, verbose=0).history
    first.fit(x, y, epochs=2, batch_size=8, verbose=0)
    path = first.save(str(tmp_path / "model"))
    out = str(tmp_path / "resumed")
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    subprocess.run([sys.executable, "-c", CHILD, path, out], check=True, cwd=ROOT, env=env, timeout=180)
    resumed = np.load(out + ".npz")
    for i, want in enumerate(whole.get_weights()):
        np.testing.assert_allclose(resumed[f"arr_{i}"], want, atol=1e-6, rtol=0)
    logs = json.load(open(out + ".json"))
    assert sorted(logs) == sorted(expected_logs) == ["accuracy", "binary_accuracy", "learning_rate", "loss", "p30"]
    for key, values in logs.items():
        np.testing.assert_allclose(values[-1], expected_logs[key][-1], rtol=1e-6, atol=1e-7, err_msg=key)
    assert max(np.abs(a - b).max() for a, b in zip(first.get_weights(), whole.get_weights(), strict=True)) > 1e-4


def test_saved_compile_config_is_keras_serialized_form(tmp_path):
    """The stored objects are what Keras's `serialize_keras_object` writes for the same Keras objects."""
    keras = pytest.importorskip("keras")
    model = _model()
    model.compile(
        optimizer=nj.optimizers.SGD(nj.optimizers.schedules.PiecewiseConstantDecay([2, 4], [0.1, 0.05, 0.01])),
        loss=nj.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=3),
        metrics=[nj.metrics.Precision(thresholds=[0.3, 0.6], top_k=None, name="precision")],  # default names count up
    )
    model.build((None, 4))
    path = model.save(str(tmp_path / "m"))
    saved = nj.checkpoint.read_metadata(path)["compile"]
    theirs = {
        "loss": keras.saving.serialize_keras_object(keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=3)),
        "metric": keras.saving.serialize_keras_object(keras.metrics.Precision(thresholds=[0.3, 0.6], name="precision")),
        "rate": keras.saving.serialize_keras_object(keras.optimizers.schedules.PiecewiseConstantDecay([2, 4], [0.1, 0.05, 0.01])),
    }
    loss = dict(saved["loss"], config={k: v for k, v in saved["loss"]["config"].items() if k != "axis"})
    assert loss == theirs["loss"]
    assert saved["metrics"][0] == theirs["metric"]
    assert saved["optimizer"]["learning_rate"] == theirs["rate"]
    loaded = nj.models.load_model(path)
    assert loaded._compiled.loss.get_config() == model._compiled.loss.get_config()


def test_what_cannot_be_saved_says_how(tmp_path):
    model = _model()
    model.compile(optimizer=nj.optimizers.Adam(learning_rate=optax.cosine_decay_schedule(0.1, 10)), loss="mse")
    model.build((None, 4))
    with pytest.raises(
        nj.saving.SerializationError,
        match=r"schedule that is not one of nj.optimizers.schedules.*"
        r"include_optimizer=False",
    ):
        model.save(str(tmp_path / "optax_schedule"))

    def my_metric(y_true, y_pred):
        return (y_pred - y_true) ** 2

    model.compile(optimizer="adam", loss="mse", metrics=[my_metric])
    with pytest.raises(nj.saving.SerializationError, match=r"'my_metric' has no registered name.*register_keras_serializable"):
        model.save(str(tmp_path / "function"))
    model.compile(optimizer="adam", loss="mse", distribution=nj.parallel.DataParallel())
    with pytest.raises(nj.saving.SerializationError, match=r"distribution=DataParallel.*include_optimizer=False.*compile"):
        model.save(str(tmp_path / "distributed"))
    assert not os.path.exists(tmp_path / "distributed")
    model.save(str(tmp_path / "distributed"), include_optimizer=False)


def test_registered_metric_function_comes_back(tmp_path):
    @nj.saving.register_keras_serializable(package="test_saving_compile")
    def squared_gap(y_true, y_pred):
        return (y_pred - y_true) ** 2

    x, y = _data()
    model = _model()
    model.compile(optimizer="sgd", loss=nj.losses.MeanSquaredError(reduction="sum"), metrics=[squared_gap])
    model.fit(x, y, epochs=1, batch_size=16, verbose=0)
    loaded = nj.models.load_model(model.save(str(tmp_path / "m")))
    assert loaded.metric_names() == ["loss", "squared_gap"]
    want = model.evaluate(x, y, verbose=0, return_dict=True)
    got = loaded.evaluate(x, y, verbose=0, return_dict=True)
    assert got == pytest.approx(want, rel=1e-6)
    assert want["loss"] == pytest.approx(float(np.sum((model.predict(x, verbose=0) - y) ** 2)), rel=1e-5)  # one batch of 32


def test_metric_object_with_get_config_comes_back_by_its_registered_class(tmp_path):
    """The hook for metric classes: an object with `get_config` is saved by its class's registered name."""

    @nj.saving.register_keras_serializable(package="test_saving_compile")
    class ScaledError:
        def __init__(self, scale=1.0):
            self.scale = scale
            self.__name__ = "scaled_error"

        def __call__(self, y_true, y_pred):
            return self.scale * (y_pred - y_true) ** 2

        def get_config(self):
            return {"scale": self.scale}

    x, y = _data()
    model = _model()
    model.compile(optimizer="sgd", loss="mse", metrics=[ScaledError(scale=3.0)])
    model.build((None, 4))
    path = model.save(str(tmp_path / "m"))
    saved = nj.checkpoint.read_metadata(path)["compile"]["metrics"][0]
    assert saved["registered_name"] == "test_saving_compile>ScaledError" and saved["config"] == {"scale": 3.0}
    loaded = nj.models.load_model(path)
    got = loaded.evaluate(x, y, verbose=0, return_dict=True)
    error = float(np.mean((model.predict(x, verbose=0) - y) ** 2))  # the hand value of the mean squared error
    assert got == pytest.approx({"loss": error, "scaled_error": 3.0 * error}, rel=1e-5)


def test_subclassed_loss_comes_back_by_its_registered_class(tmp_path):
    @nj.saving.register_keras_serializable(package="test_saving_compile")
    class ScaledAbsolute(nj.losses.Loss):
        def __init__(self, scale=1.0, **kwargs):
            super().__init__(**kwargs)
            self.scale = scale

        def call(self, y_true, y_pred):
            return self.scale * jnp.mean(jnp.abs(y_pred - y_true), axis=-1)

        def get_config(self):
            return {**super().get_config(), "scale": self.scale}

    x, y = _data()
    model = _model()
    model.compile(optimizer="sgd", loss=ScaledAbsolute(scale=2.0, reduction="sum"))
    model.build((None, 4))
    loaded = nj.models.load_model(model.save(str(tmp_path / "m")))
    assert isinstance(loaded._compiled.loss, ScaledAbsolute) and loaded._compiled.loss.get_config() == {
        "name": "scaled_absolute",
        "reduction": "sum",
        "scale": 2.0,
    }
    hand = 2.0 * float(np.abs(model.predict(x, verbose=0) - y).sum())  # one batch of 32, reduction "sum"
    assert loaded.evaluate(x, y, verbose=0) == pytest.approx(hand, rel=1e-5)
