"""`nj.metrics.Metric`: Keras 3's metric base class, eager and stateless, with Keras 3 as the oracle (float32,
atol 1e-6)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import nnjax as nj

keras = pytest.importorskip("keras")


def _true_positives(lib, ops):
    class BinaryTruePositives(lib.metrics.Metric):
        """Keras's guide example: one scalar variable, assign_add of a weighted count."""

        def __init__(self, name="binary_true_positives", **kwargs):
            super().__init__(name=name, **kwargs)
            self.true_positives = self.add_variable(shape=(), initializer="zeros", name="true_positives")

        def update_state(self, y_true, y_pred, sample_weight=None):
            values = ops.logical_and(ops.cast(y_true, "bool"), ops.cast(y_pred, "bool"))
            values = ops.cast(values, self.dtype)
            if sample_weight is not None:
                values = values * ops.broadcast_to(ops.cast(sample_weight, self.dtype), ops.shape(values))
            self.true_positives.assign(self.true_positives + ops.sum(values))

        def result(self):
            return self.true_positives

    return BinaryTruePositives


def _class_counts(lib, ops):
    class ClassCounts(lib.metrics.Metric):
        """A non-scalar variable: weighted counts of each predicted class; the result is the largest share."""

        def __init__(self, num_classes=3, name="class_counts", **kwargs):
            super().__init__(name=name, **kwargs)
            self.counts = self.add_weight(shape=(num_classes,), initializer="zeros", name="counts")
            self.num_classes = num_classes

        def update_state(self, y_true, y_pred, sample_weight=None):
            hits = ops.one_hot(ops.argmax(y_pred, axis=-1), self.num_classes)
            if sample_weight is not None:
                hits = hits * ops.expand_dims(ops.cast(sample_weight, self.dtype), -1)
            self.counts.assign_add(ops.sum(hits, axis=0))

        def result(self):
            return ops.max(self.counts) / ops.maximum(ops.sum(self.counts), 1.0)

    return ClassCounts


def _batches(rng, vector, n=3):
    shape = (8, 3) if vector else (8,)
    return [
        (
            rng.integers(0, 2, size=shape).astype(np.float32),
            rng.uniform(size=shape).astype(np.float32) if vector else rng.integers(0, 2, size=shape).astype(np.float32),
            rng.uniform(0, 2, size=(8,)).astype(np.float32),
        )
        for _ in range(n)
    ]


@pytest.mark.parametrize("make", [_true_positives, _class_counts], ids=["scalar_variable", "vector_variable"])
def test_user_subclass_eager_and_stateless_match_keras(make):
    ours, theirs = make(nj, nj.ops)(), make(keras, keras.ops)()
    batches = _batches(np.random.default_rng(0), vector=make is _class_counts)
    update = jax.jit(ours.stateless_update_state)
    values = ours.stateless_reset_state()
    for y, p, w in batches:
        ours.update_state(y, p, sample_weight=w)
        theirs.update_state(y, p, sample_weight=w)
        values = update(values, y, p, w)
        np.testing.assert_allclose(np.asarray(ours.result()), np.asarray(theirs.result()), atol=1e-6)
    np.testing.assert_allclose(np.asarray(jax.jit(ours.stateless_result)(values)), np.asarray(theirs.result()), atol=1e-6)
    assert [v.shape for v in ours.variables] == [tuple(v.shape) for v in theirs.variables]
    assert [v.name for v in ours.variables] == [v.name for v in theirs.variables]
    ours.reset_state()
    theirs.reset_state()
    np.testing.assert_allclose(np.asarray(ours.result()), np.asarray(theirs.result()), atol=1e-6)


def test_mean_and_sum_match_keras_eagerly_and_under_jit():
    rng = np.random.default_rng(1)
    for name in ("Mean", "Sum"):
        ours, theirs = getattr(nj.metrics, name)(), getattr(keras.metrics, name)()
        assert ours.name == theirs.name and ours.dtype == theirs.dtype == "float32"
        values = ours.stateless_reset_state()
        for _ in range(3):
            x, w = rng.normal(size=(4, 2)).astype(np.float32), rng.uniform(size=(4,)).astype(np.float32)
            ours.update_state(x, sample_weight=w)
            theirs.update_state(x, sample_weight=w)
            values = jax.jit(ours.stateless_update_state)(values, x, sample_weight=w)
        np.testing.assert_allclose(float(ours.result()), float(theirs.result()), atol=1e-6, err_msg=name)
        np.testing.assert_allclose(float(ours.stateless_result(values)), float(theirs.result()), atol=1e-6)
        np.testing.assert_allclose(float(ours([1.0, 2.0])), float(theirs([1.0, 2.0])), atol=1e-6)  # __call__: update, result


def test_stateless_calls_change_nothing_and_the_variable_api_is_keras():
    m = nj.metrics.Mean(name="loss")
    m.update_state([1.0, 2.0])
    new = jax.jit(m.stateless_update_state)([v.value for v in m.variables], jnp.array([6.0]))
    assert [float(v) for v in new] == [9.0, 3.0]
    assert [float(v.numpy()) for v in m.variables] == [3.0, 2.0]  # untouched by the traced update
    assert [float(v) for v in m.stateless_reset_state()] == [0.0, 0.0] and float(m.result()) == 1.5
    total = m.variables[0]
    assert total.path == "loss/total" and total.shape == () and total.dtype == "float32" and not total.trainable
    assert float(jnp.sum(total) + 1.0) == 4.0 and float(np.asarray(total)) == 3.0 and float(total * 2) == 6.0
    total.assign_sub(1.0)
    assert float(total.value) == 2.0
    with pytest.raises(ValueError, match=r'variable "loss/total" has shape \(\); received a value of shape \(2,\)'):
        total.assign([1.0, 2.0])
    assert repr(m) == "<Mean name=loss>" and m.get_config() == {"name": "loss", "dtype": "float32"}
    assert nj.metrics.Mean.from_config(m.get_config()).name == "loss"


def test_nested_metrics_are_tracked_and_names_default_as_keras():
    class Pair(nj.metrics.Metric):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.first, self.second = nj.metrics.Mean(name="a"), nj.metrics.Sum(name="b")

        def update_state(self, x):
            self.first.update_state(x)
            self.second.update_state(x)

        def result(self):
            return self.first.result() + self.second.result()

    pair = Pair()
    assert [v.path for v in pair.variables] == ["a/total", "a/count", "b/total"]
    assert float(pair.stateless_result(pair.stateless_update_state([0.0, 0.0, 0.0], jnp.array([2.0, 4.0])))) == 9.0
    assert pair.name.startswith("pair") and Pair().name != pair.name  # Keras numbers repeated default names


def test_errors_name_the_metric_and_the_fix():
    class Untraceable(nj.metrics.Metric):
        def __init__(self):
            super().__init__(name="untraceable")
            self.total = self.add_variable((), "zeros", name="total")

        def update_state(self, y_true, y_pred, sample_weight=None):
            self.total.assign_add(float(jnp.sum(y_pred)))

        def result(self):
            return self.total.value

    metric = Untraceable()
    metric.update_state(None, jnp.ones(2))  # eager: concrete values are fine
    assert float(metric.result()) == 2.0
    with pytest.raises(
        TypeError,
        match=r"metric 'untraceable' \(Untraceable\): update_state cannot be traced by "
        r"jax.jit .*Python float\(\), int\(\)",
    ):
        jax.jit(metric.stateless_update_state)([jnp.zeros(())], None, jnp.ones(2))
    with pytest.raises(
        RuntimeError,
        match=r'variable "untraceable/total": assigned a traced value .* use '
        r"metric.stateless_update_state",
    ):
        jax.jit(lambda x: metric.total.assign(x).value)(jnp.ones(()))
    with pytest.raises(
        ValueError,
        match=r"corresponding 1:1 to Untraceable\(\).variables \(1: \['total'\]\); "
        "received a list of length 2",
    ):
        metric.stateless_result([1.0, 2.0])

    class NoSuper(nj.metrics.Metric):
        def __init__(self):
            pass

    with pytest.raises(RuntimeError, match="forgot to call `super"):
        NoSuper().add_variable((), "zeros")


def test_registered_subclass_serializes_and_is_found_by_name():
    @nj.saving.register_keras_serializable(package="metric_tests")
    class Doubled(nj.metrics.Mean):
        def __init__(self, factor=2.0, name="doubled", dtype=None):
            super().__init__(name=name, dtype=dtype)
            self.factor = factor

        def update_state(self, values, sample_weight=None):
            super().update_state(jnp.asarray(values) * self.factor, sample_weight)

        def get_config(self):
            return {**super().get_config(), "factor": self.factor}

    config = nj.metrics.serialize(Doubled(factor=3.0, name="d"))
    assert config["registered_name"] == "metric_tests>Doubled" and config["config"]["factor"] == 3.0
    again = nj.metrics.get(config)
    assert type(again) is Doubled and again.name == "d" and float(again([1.0, 2.0])) == 4.5
    assert type(nj.metrics.get("metric_tests>Doubled")) is Doubled
    assert type(nj.metrics.get("AUC")) is nj.metrics.AUC and type(nj.metrics.get("precision")) is nj.metrics.Precision
    assert nj.metrics.get("mse").fn is nj.losses.mean_squared_error  # snake-case names: the per-element function
    with pytest.raises(ValueError, match=r"unknown metric class 'Nope'; expected one of \[.*'AUC'.*\], a class registered"):
        nj.metrics.deserialize({"class_name": "Nope", "config": {}})
    with pytest.raises(TypeError, match="metrics.serialize: expected a metric object"):
        nj.metrics.serialize("mse")
