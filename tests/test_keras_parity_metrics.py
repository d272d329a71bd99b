"""Per-element metrics, their weighting, "accuracy" resolution and class weights match Keras 3, with Keras 3 as the oracle.

Registry (`CASES`): each Keras metric function name nnjax resolves, fed the
same labels and predictions as `keras.metrics.<Class>()` over two batches
(`update_state`, with and without sample weights); nnjax's epoch value is
`sum(total) / sum(count)` of `weighted_sum_and_count`, as its fit loop sums
them. Tolerance: float32, rtol 1e-6 / atol 1e-6.
"""

import numpy as np
import pytest

import nnjax as nj

keras = pytest.importorskip("keras")
from keras.src.trainers.compile_utils import get_metric  # noqa: E402

B, C = 8, 4


def _data(kind, rng):
    logits = rng.normal(size=(B, C)).astype(np.float32)
    probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    labels = rng.integers(0, C, size=(B,))
    if kind == "sparse":
        return labels.astype(np.int32), probs
    if kind == "sparse_column":
        return labels[:, None].astype(np.int32), probs
    if kind == "one_hot":
        return np.eye(C, dtype=np.float32)[labels], probs
    if kind == "binary":
        return rng.integers(0, 2, size=(B, 1)).astype(np.float32), (1 / (1 + np.exp(-logits[:, :1]))).astype(np.float32)
    if kind == "multi_binary":
        return rng.integers(0, 2, size=(B, C)).astype(np.float32), probs
    if kind == "regression":
        return rng.normal(size=(B, C)).astype(np.float32), rng.normal(size=(B, C)).astype(np.float32)
    if kind == "positive":
        return rng.uniform(0.1, 2, size=(B, C)).astype(np.float32), rng.uniform(0.1, 2, size=(B, C)).astype(np.float32)
    if kind == "signed":
        return rng.choice([-1.0, 1.0], size=(B, C)).astype(np.float32), logits
    raise AssertionError(kind)


# (nnjax metric name, Keras class, data kind)
CASES = [
    ("sparse_categorical_accuracy", "SparseCategoricalAccuracy", "sparse"),
    ("sparse_categorical_accuracy", "SparseCategoricalAccuracy", "sparse_column"),
    ("categorical_accuracy", "CategoricalAccuracy", "one_hot"),
    ("binary_accuracy", "BinaryAccuracy", "binary"),
    ("binary_accuracy", "BinaryAccuracy", "multi_binary"),
    ("top_k_categorical_accuracy", "TopKCategoricalAccuracy", "one_hot"),
    ("sparse_top_k_categorical_accuracy", "SparseTopKCategoricalAccuracy", "sparse"),
    ("mean_squared_error", "MeanSquaredError", "regression"),
    ("mean_absolute_error", "MeanAbsoluteError", "regression"),
    ("mean_absolute_percentage_error", "MeanAbsolutePercentageError", "regression"),
    ("mean_squared_logarithmic_error", "MeanSquaredLogarithmicError", "positive"),
    ("sparse_categorical_crossentropy", "SparseCategoricalCrossentropy", "sparse"),
    ("categorical_crossentropy", "CategoricalCrossentropy", "one_hot"),
    ("binary_crossentropy", "BinaryCrossentropy", "multi_binary"),
    ("kl_divergence", "KLDivergence", "one_hot"),
    ("poisson", "Poisson", "positive"),
    ("hinge", "Hinge", "signed"),
    ("squared_hinge", "SquaredHinge", "signed"),
    ("categorical_hinge", "CategoricalHinge", "one_hot"),
]


@pytest.mark.parametrize(("name", "keras_class", "kind"), CASES, ids=[f"{n}-{k}" for n, _, k in CASES])
def test_metric_epoch_value_matches_keras(name, keras_class, kind):
    rng = np.random.default_rng(len(name) + len(kind))
    batches = [(*_data(kind, rng), rng.uniform(0, 2, size=(B,)).astype(np.float32)) for _ in range(2)]
    metric = nj.metrics.get(name)
    for weighted in (False, True):
        keras_metric = getattr(keras.metrics, keras_class)()
        total = count = 0.0
        for y, p, w in batches:
            sw = w if weighted else None
            keras_metric.update_state(y, p, sample_weight=sw)
            t, c = nj.metrics.weighted_sum_and_count(metric(y, p), sw)
            total, count = total + t, count + c
        np.testing.assert_allclose(
            total / count, keras_metric.result(), rtol=1e-6, atol=1e-6, err_msg=f"{name} weighted={weighted}"
        )


SHAPES = [
    ((B,), (B, C)),
    ((B, 1), (B, C)),
    ((B, C), (B, C)),
    ((B, 1), (B, 1)),
    ((B,), (B, 1)),
    ((B,), (B,)),
    ((B, 5, 1), (B, 5, C)),
]


@pytest.mark.parametrize(("y_shape", "p_shape"), SHAPES)
def test_accuracy_resolves_by_shape_as_keras(y_shape, p_shape):
    """`compile(metrics=["accuracy"])`: Keras's choice of accuracy for these label and output shapes, and its value."""
    expected_class = type(get_metric("accuracy", np.zeros(y_shape), np.zeros(p_shape))).__name__
    kind = nj.metrics.accuracy_kind(y_shape, p_shape)
    assert {"binary": "BinaryAccuracy", "sparse": "SparseCategoricalAccuracy", "categorical": "CategoricalAccuracy"}[
        kind
    ] == expected_class
    rng = np.random.default_rng(0)
    p = rng.uniform(size=p_shape).astype(np.float32)
    y = (rng.integers(0, p_shape[-1], size=y_shape) if kind == "sparse" else rng.integers(0, 2, size=y_shape)).astype(np.float32)
    keras_metric = get_metric("accuracy", y, p)
    keras_metric.update_state(y, p)
    np.testing.assert_allclose(nj.metrics.weighted_mean(nj.metrics.get("accuracy")(y, p)), keras_metric.result(), rtol=1e-6)


def test_single_unit_regression_accuracy_is_binary_as_keras():
    """The issue's case: one output unit, labels in {0, 1}: Keras's 'accuracy' is binary accuracy (1.0 here), not sparse (0.5)."""
    y = np.array([[0.0], [1.0]], np.float32)
    p = np.array([[0.1], [0.9]], np.float32)
    assert float(nj.metrics.weighted_mean(nj.metrics.get("accuracy")(y, p))) == 1.0


def test_class_weight_matches_keras():
    from keras.src.trainers.data_adapters.data_adapter_utils import class_weight_to_sample_weights

    rng = np.random.default_rng(0)
    class_weight = {0: 0.5, 1: 2.0, 3: 4.0}
    for y in (rng.integers(0, C, size=(B,)), rng.integers(0, C, size=(B, 1)), np.eye(C)[rng.integers(0, C, size=(B,))]):
        np.testing.assert_array_equal(
            nj.losses.class_weight_to_sample_weight(y, class_weight), class_weight_to_sample_weights(y, class_weight)
        )
    with pytest.raises(ValueError, match="cannot be given together"):
        nj.losses.class_weight_to_sample_weight(y, class_weight, sample_weight=np.ones(B))


def test_registry_covers_every_metric_name():
    names = {nj.metrics.ALIASES.get(n, n) for n in nj.metrics.METRICS} - {"accuracy", "acc"}
    assert {n for n, _, _ in CASES} == names
