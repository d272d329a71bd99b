"""Every Keras metric class nnjax exports, against Keras 3's class (the oracle): three `update_state` calls with
sample weights, `result()` after each, `reset_state`, and the stateless API under `jax.jit` equal to the eager one.
Tolerance: float32, atol 1e-6 (rtol 1e-5 for sums over 200 thresholds)."""

import jax
import numpy as np
import pytest

import nnjax as nj

keras = pytest.importorskip("keras")

B, C = 16, 3


def _batch(kind, rng):
    logits = rng.normal(size=(B, C)).astype(np.float32)
    probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    labels = rng.integers(0, C, size=(B,))
    if kind == "values":
        return (rng.normal(size=(B, 2)).astype(np.float32),)
    if kind == "regression":
        return rng.normal(size=(B, C)).astype(np.float32), rng.normal(size=(B, C)).astype(np.float32)
    if kind == "positive":
        return rng.uniform(0.1, 2, size=(B, C)).astype(np.float32), rng.uniform(0.1, 2, size=(B, C)).astype(np.float32)
    if kind == "binary":
        y = rng.integers(0, 2, size=(B, 1)).astype(np.float32)
        return y, np.clip(0.5 * y + rng.uniform(0, 0.6, size=(B, 1)), 0, 1).astype(np.float32)
    if kind == "multi_hot":
        return rng.integers(0, 2, size=(B, C)).astype(np.float32), probs
    if kind == "one_hot":
        return np.eye(C, dtype=np.float32)[labels], probs
    if kind == "sparse":
        return labels.astype(np.int32), probs
    if kind == "sparse_logits":
        return labels.astype(np.int32), logits
    if kind == "signed":
        return (2 * rng.integers(0, 2, size=(B, C)) - 1).astype(np.float32), logits
    if kind == "equal":
        return labels.astype(np.float32), rng.integers(0, C, size=(B,)).astype(np.float32)
    if kind == "sorted_ids":
        return labels.astype(np.int32), np.argsort(-probs, axis=-1).astype(np.int32)
    raise AssertionError(kind)


# (Keras class name, kwargs, data kind, weights: "float" | "int")
CASES = [
    ("Mean", {}, "values", "float"),
    ("Sum", {}, "values", "float"),
    ("Accuracy", {}, "equal", "float"),
    ("BinaryAccuracy", {"threshold": 0.6}, "binary", "float"),
    ("CategoricalAccuracy", {}, "one_hot", "float"),
    ("SparseCategoricalAccuracy", {}, "sparse", "float"),
    ("TopKCategoricalAccuracy", {"k": 2}, "one_hot", "float"),
    ("SparseTopKCategoricalAccuracy", {"k": 2}, "sparse", "float"),
    ("SparseTopKCategoricalAccuracy", {"k": 2, "from_sorted_ids": True}, "sorted_ids", "float"),
    ("MeanSquaredError", {}, "regression", "float"),
    ("MeanAbsoluteError", {}, "regression", "float"),
    ("MeanAbsolutePercentageError", {}, "positive", "float"),
    ("MeanSquaredLogarithmicError", {}, "positive", "float"),
    ("RootMeanSquaredError", {}, "regression", "float"),
    ("CosineSimilarity", {}, "regression", "float"),
    ("LogCoshError", {}, "regression", "float"),
    ("Poisson", {}, "positive", "float"),
    ("KLDivergence", {}, "one_hot", "float"),
    ("Hinge", {}, "signed", "float"),
    ("SquaredHinge", {}, "signed", "float"),
    ("CategoricalHinge", {}, "one_hot", "float"),
    ("BinaryCrossentropy", {"label_smoothing": 0.1}, "multi_hot", "float"),
    ("CategoricalCrossentropy", {"label_smoothing": 0.1}, "one_hot", "float"),
    ("SparseCategoricalCrossentropy", {"from_logits": True}, "sparse_logits", "float"),
    ("R2Score", {}, "regression", "float"),
    ("R2Score", {"class_aggregation": "variance_weighted_average", "num_regressors": 2}, "regression", "float"),
    ("Precision", {"thresholds": [0.3, 0.6]}, "binary", "float"),
    ("Recall", {"top_k": 1, "class_id": 2}, "multi_hot", "float"),
    ("AUC", {"curve": "PR"}, "binary", "float"),
    ("AUC", {"multi_label": True}, "multi_hot", "float"),
    ("F1Score", {"average": "macro"}, "one_hot", "float"),
    ("FBetaScore", {"beta": 2.0, "threshold": 0.4}, "multi_hot", "float"),
    ("TruePositives", {}, "binary", "float"),
    ("FalsePositives", {"thresholds": [0.2, 0.7]}, "binary", "float"),
    ("TrueNegatives", {}, "binary", "float"),
    ("FalseNegatives", {}, "binary", "float"),
    ("SensitivityAtSpecificity", {"specificity": 0.5}, "binary", "float"),
    ("SpecificityAtSensitivity", {"sensitivity": 0.5, "num_thresholds": 50}, "binary", "float"),
    ("PrecisionAtRecall", {"recall": 0.6}, "binary", "float"),
    ("RecallAtPrecision", {"precision": 0.7}, "binary", "float"),
    ("IoU", {"num_classes": C, "target_class_ids": [0, 2], "sparse_y_pred": False}, "sparse", "int"),
    ("MeanIoU", {"num_classes": C, "sparse_y_pred": False}, "sparse", "int"),
    ("OneHotIoU", {"num_classes": C, "target_class_ids": [1]}, "one_hot", "int"),
    ("OneHotMeanIoU", {"num_classes": C}, "one_hot", "int"),
    ("BinaryIoU", {"threshold": 0.6}, "binary", "int"),
]
# Keras metric classes nnjax exports that are not compared above, and why.
EXCLUDED = {
    "Metric": "the base class (tests/test_metric_base.py compares user subclasses)",
    "MeanMetricWrapper": "compared through every wrapper class above and in test_mean_metric_wrapper_of_a_function",
}


def _weights(rng, kind):
    return rng.integers(0, 3, size=(B,)).astype(np.int32) if kind == "int" else rng.uniform(0, 2, size=(B,)).astype(np.float32)


@pytest.mark.parametrize(("name", "kw", "kind", "weights"), CASES, ids=[f"{n}-{i}" for i, (n, *_) in enumerate(CASES)])
def test_metric_class_matches_keras(name, kw, kind, weights):
    rng = np.random.default_rng(len(name) * 3 + len(kw))
    batches = [(*_batch(kind, rng), _weights(rng, weights)) for _ in range(3)]
    ours, theirs = getattr(nj.metrics, name)(**kw), getattr(keras.metrics, name)(**kw)
    assert ours.name == theirs.name.split("_")[0] or ours.name.rstrip("_0123456789") == theirs.name.rstrip("_0123456789")
    for *args, w in batches:
        ours.update_state(*args, sample_weight=w)
        theirs.update_state(*args, sample_weight=w)
        np.testing.assert_allclose(
            np.asarray(ours.result()), np.asarray(theirs.result()), rtol=1e-5, atol=1e-6, err_msg=f"{name}{kw}"
        )
    fresh = getattr(nj.metrics, name)(**kw)
    update = jax.jit(fresh.stateless_update_state)
    values = None
    for *args, w in batches:
        if values is None:  # variables made on first use (F-scores, R2Score, multi-label AUC) exist after one eager call
            if not fresh.variables:
                fresh.update_state(*args, sample_weight=w)
                values = [v.value for v in fresh.variables]
                continue
            values = fresh.stateless_reset_state()
        values = update(values, *args, sample_weight=w)
    np.testing.assert_allclose(
        np.asarray(jax.jit(fresh.stateless_result)(values)), np.asarray(ours.result()), rtol=1e-6, atol=1e-6
    )
    ours.reset_state()
    theirs.reset_state()
    np.testing.assert_allclose(np.asarray(ours.result()), np.asarray(theirs.result()), atol=1e-6)


def test_mean_metric_wrapper_of_a_function():
    rng = np.random.default_rng(5)
    ours = nj.metrics.MeanMetricWrapper(nj.losses.huber, name="h", delta=0.5)
    theirs = keras.metrics.MeanMetricWrapper(keras.losses.huber, name="h", delta=0.5)
    for _ in range(2):
        y, p = _batch("regression", rng)
        w = _weights(rng, "float")
        np.testing.assert_allclose(float(ours(y, p, sample_weight=w)), float(theirs(y, p, sample_weight=w)), atol=1e-6)


def test_registry_compares_every_keras_class_nnjax_exports():
    exported = {name for name in nj.metrics.CLASSES if hasattr(keras.metrics, name)}
    assert exported == {name for name, *_ in CASES} | set(EXCLUDED)
    assert set(nj.metrics.CLASSES) <= {name for name in dir(keras.metrics) if name[0].isupper()}
    missing = {name for name in dir(keras.metrics) if name[0].isupper()} - set(nj.metrics.CLASSES)
    assert missing == {"ConcordanceCorrelation", "PearsonCorrelation"}  # not in nnjax yet


def test_configs_round_trip_and_match_keras():
    for name, kw, *_ in CASES:
        ours, theirs = getattr(nj.metrics, name)(name="m", **kw), getattr(keras.metrics, name)(name="m", **kw)
        config = ours.get_config()
        keras_config = theirs.get_config()
        shared = set(config) & set(keras_config)
        assert {"name", "dtype"} <= shared, name
        assert {k: config[k] for k in shared if k not in ("dtype", "label_weights")} == {
            k: (list(v) if isinstance(v, tuple) else v)
            for k, v in keras_config.items()
            if k in shared and k not in ("dtype", "label_weights")
        }, name
        again = nj.metrics.deserialize(nj.metrics.serialize(ours))
        assert type(again) is type(ours) and again.get_config() == config, name
