"""Stateful metrics (Precision, Recall, AUC, F-scores, MeanIoU, top-k) give Keras 3's epoch values, with Keras 3 as the oracle.

Registry (`CASES`): each row builds `keras.metrics.X(**kw)` and
`nj.metrics.X(**kw)`, feeds both the same three batches (`update_state` /
a jitted `update`), with and without sample weights, and compares `result()`.
Tolerance: float32, rtol 1e-5 / atol 1e-6 (sums of up to 200 threshold terms).
"""

import jax
import numpy as np
import pytest

import nnjax as nj

keras = pytest.importorskip("keras")

B, C, BATCHES = 16, 3, 3


def _batches(kind, rng):
    out = []
    for _ in range(BATCHES):
        logits = rng.normal(size=(B, C)).astype(np.float32)
        probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
        labels = rng.integers(0, C, size=(B,))
        if kind == "binary":
            y = rng.integers(0, 2, size=(B, 1)).astype(np.float32)
            p = np.clip(0.5 * y + rng.uniform(0, 0.6, size=(B, 1)), 0, 1).astype(np.float32)  # informative scores
        elif kind == "binary_logits":
            y = rng.integers(0, 2, size=(B, 1)).astype(np.float32)
            p = (2.0 * y - 1.0 + rng.normal(size=(B, 1))).astype(np.float32)
        elif kind == "multi_hot":
            y, p = rng.integers(0, 2, size=(B, C)).astype(np.float32), probs
        elif kind == "one_hot":
            y, p = np.eye(C, dtype=np.float32)[labels], probs
        elif kind == "sparse":
            y, p = labels.astype(np.int32), probs
        elif kind == "sparse_ids":
            y, p = labels.astype(np.int32), rng.integers(0, C, size=(B,)).astype(np.int32)
        else:
            raise AssertionError(kind)
        out.append((y, p, rng.uniform(0, 2, size=(B,)).astype(np.float32), rng.integers(0, 3, size=(B,)).astype(np.int32)))
    return out


# (Keras class name, kwargs, data kind, weights: "float" or "int")
CASES = [
    ("Precision", {}, "binary", "float"),
    ("Precision", {"thresholds": [0.2, 0.5, 0.8]}, "binary", "float"),
    ("Precision", {"thresholds": [0.0, 0.5, 1.0]}, "binary", "float"),
    ("Precision", {"top_k": 2}, "multi_hot", "float"),
    ("Precision", {"class_id": 1}, "multi_hot", "float"),
    ("Recall", {}, "binary", "float"),
    ("Recall", {"thresholds": [0.3, 0.6]}, "binary", "float"),
    ("Recall", {"top_k": 1, "class_id": 2}, "multi_hot", "float"),
    ("AUC", {}, "binary", "float"),
    ("AUC", {"curve": "PR"}, "binary", "float"),
    ("AUC", {"num_thresholds": 50, "summation_method": "minoring"}, "binary", "float"),
    ("AUC", {"curve": "PR", "summation_method": "majoring"}, "binary", "float"),
    ("AUC", {"curve": "PRGAIN"}, "binary", "float"),
    ("AUC", {"from_logits": True}, "binary_logits", "float"),
    ("AUC", {"thresholds": [0.1, 0.3, 0.7]}, "binary", "float"),
    ("AUC", {}, "multi_hot", "float"),
    ("AUC", {"multi_label": True}, "multi_hot", "float"),
    ("AUC", {"multi_label": True, "num_labels": C, "curve": "PR", "label_weights": [0.2, 1.0, 3.0]}, "multi_hot", "float"),
    ("AUC", {"label_weights": [0.5, 1.0, 2.0]}, "multi_hot", "float"),
    ("F1Score", {}, "one_hot", "float"),
    ("F1Score", {"average": "micro"}, "one_hot", "float"),
    ("F1Score", {"average": "macro", "threshold": 0.4}, "multi_hot", "float"),
    ("F1Score", {"average": "weighted"}, "one_hot", "float"),
    ("FBetaScore", {"beta": 2.0, "average": "macro"}, "multi_hot", "float"),
    ("MeanIoU", {"num_classes": C, "sparse_y_pred": False}, "sparse", "int"),
    ("MeanIoU", {"num_classes": C, "ignore_class": 0}, "sparse_ids", "int"),
    ("TopKCategoricalAccuracy", {"k": 2}, "one_hot", "float"),
    ("SparseTopKCategoricalAccuracy", {"k": 2}, "sparse", "float"),
]


@pytest.mark.parametrize(("name", "kw", "kind", "weights"), CASES, ids=[f"{n}-{i}" for i, (n, *_) in enumerate(CASES)])
def test_stateful_metric_matches_keras(name, kw, kind, weights):
    batches = _batches(kind, np.random.default_rng(len(kw) * 7 + len(kind)))
    metric = getattr(nj.train.confusion, name)(**kw)
    update = jax.jit(metric.update)
    for weighted in (False, True):
        keras_metric = getattr(keras.metrics, name)(**kw)
        state = metric.init(batches[0][1].shape)
        for y, p, float_w, int_w in batches:
            sw = (float_w if weights == "float" else int_w) if weighted else None
            keras_metric.update_state(y, p, sample_weight=sw)
            state = update(state, y, p, sw)
        np.testing.assert_allclose(
            metric.result(state), keras_metric.result(), rtol=1e-5, atol=1e-6, err_msg=f"{name}{kw} weighted={weighted}"
        )


def test_states_merge_across_devices_and_batches():
    """Two halves accumulated apart and merged give the sequential result (the sum a psum would take)."""
    batches = _batches("binary", np.random.default_rng(3))
    metric = nj.train.confusion.AUC()
    whole = metric.init()
    for y, p, w, _ in batches:
        whole = metric.update(whole, y, p, w)
    first = metric.update(metric.init(), *batches[0][:3])
    rest = metric.init()
    for y, p, w, _ in batches[1:]:
        rest = metric.update(rest, y, p, w)
    np.testing.assert_allclose(metric.result(nj.metrics.merge(first, rest)), metric.result(whole), rtol=1e-6)


def test_epoch_precision_is_not_a_mean_of_batch_precisions():
    """Guard on the motivating bug: a mean of per-batch precisions differs from Keras's epoch value here."""
    y = [np.array([[1.0], [0.0]]), np.array([[1.0], [1.0], [1.0], [0.0]])]
    p = [np.array([[0.9], [0.9]]), np.array([[0.9], [0.9], [0.9], [0.1]])]
    metric, keras_metric = nj.train.confusion.Precision(), keras.metrics.Precision()
    state = metric.init()
    for yb, pb in zip(y, p):
        state = metric.update(state, yb, pb)
        keras_metric.update_state(yb, pb)
    np.testing.assert_allclose(metric.result(state), keras_metric.result(), rtol=1e-6)
    batch_mean = np.mean([float(metric.result(metric.update(metric.init(), yb, pb))) for yb, pb in zip(y, p)])
    assert abs(batch_mean - float(metric.result(state))) > 0.05


def test_registry_covers_every_stateful_metric():
    assert {name for name, *_ in CASES} == set(nj.train.confusion.CLASSES)
    for name in nj.train.confusion.CLASSES:
        assert hasattr(keras.metrics, name), name
    assert nj.train.confusion.get("auc").name == "auc" and nj.train.confusion.get("accuracy") is None
