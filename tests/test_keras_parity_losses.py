"""Every Keras-named loss nnjax exports computes Keras 3's value and gradient, with Keras 3 as the oracle.

One registry (`CASES`): each row builds `keras.losses.X(**kw)` and
`nj.losses.X(**kw)` and compares, on the same labels and predictions, the
reduced value with and without `sample_weight`, the unreduced values
(`reduction=None`) and the gradient with respect to `y_pred`. Tolerance:
float32, rtol 1e-6 / atol 1e-6 (same expressions, same order; MAPE's factor
100 and CTC's forward recursion are scaled by rtol).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import nnjax as nj

keras = pytest.importorskip("keras")

B, C = 6, 4
RTOL, ATOL = 1e-6, 1e-6


def _data(kind, rng):
    logits = rng.normal(size=(B, C)).astype(np.float32)
    probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    labels = rng.integers(0, C, size=(B,))
    one_hot = np.eye(C, dtype=np.float32)[labels]
    if kind == "sparse":
        return labels.astype(np.int32), probs
    if kind == "sparse_column":
        return labels[:, None].astype(np.int32), probs
    if kind == "sparse_logits":
        return labels.astype(np.int32), logits
    if kind == "categorical":
        return one_hot, probs
    if kind == "categorical_logits":
        return one_hot, logits
    if kind == "binary":
        return rng.integers(0, 2, size=(B, 1)).astype(np.float32), (1 / (1 + np.exp(-logits[:, :1]))).astype(np.float32)
    if kind == "binary_flat_labels":
        return rng.integers(0, 2, size=(B,)).astype(np.float32), (1 / (1 + np.exp(-logits[:, :1]))).astype(np.float32)
    if kind == "binary_logits":
        return rng.integers(0, 2, size=(B, C)).astype(np.float32), logits
    if kind == "binary_multi":
        return rng.integers(0, 2, size=(B, C)).astype(np.float32), probs
    if kind == "signed":
        return rng.choice([-1.0, 1.0], size=(B, C)).astype(np.float32), logits
    if kind == "zero_one":
        return rng.integers(0, 2, size=(B, C)).astype(np.float32), logits
    if kind == "mixed_labels":  # not all in {0, 1}: Keras leaves them unconverted
        return rng.choice([-1.0, 0.0, 1.0], size=(B, C)).astype(np.float32), logits
    if kind == "regression":
        return rng.normal(size=(B, C)).astype(np.float32), rng.normal(size=(B, C)).astype(np.float32)
    if kind == "positive":
        return rng.uniform(0.1, 3.0, size=(B, C)).astype(np.float32), rng.uniform(0.1, 3.0, size=(B, C)).astype(np.float32)
    if kind == "distributions":
        other = rng.normal(size=(B, C))
        return (np.exp(other) / np.exp(other).sum(-1, keepdims=True)).astype(np.float32), probs
    if kind == "ctc":
        y = rng.integers(1, C, size=(B, 3))
        y[0, 2] = 0  # padded labels: shorter sequences
        y[1, 1:] = 0
        return y.astype(np.int32), rng.normal(size=(B, 7, C)).astype(np.float32)
    raise AssertionError(kind)


# (Keras class name, constructor kwargs, data kind)
CASES = [
    ("SparseCategoricalCrossentropy", {}, "sparse"),
    ("SparseCategoricalCrossentropy", {}, "sparse_column"),
    ("SparseCategoricalCrossentropy", {"from_logits": True}, "sparse_logits"),
    ("SparseCategoricalCrossentropy", {"from_logits": True, "ignore_class": 1}, "sparse_logits"),
    ("CategoricalCrossentropy", {}, "categorical"),
    ("CategoricalCrossentropy", {"from_logits": True, "label_smoothing": 0.1}, "categorical_logits"),
    ("BinaryCrossentropy", {}, "binary"),
    ("BinaryCrossentropy", {}, "binary_flat_labels"),
    ("BinaryCrossentropy", {"from_logits": True, "label_smoothing": 0.2}, "binary_logits"),
    ("BinaryFocalCrossentropy", {}, "binary_multi"),
    (
        "BinaryFocalCrossentropy",
        {"apply_class_balancing": True, "alpha": 0.4, "gamma": 1.5, "from_logits": True},
        "binary_logits",
    ),
    ("CategoricalFocalCrossentropy", {}, "categorical"),
    (
        "CategoricalFocalCrossentropy",
        {"alpha": 0.5, "gamma": 3.0, "from_logits": True, "label_smoothing": 0.1},
        "categorical_logits",
    ),
    ("Hinge", {}, "signed"),
    ("Hinge", {}, "zero_one"),
    ("Hinge", {}, "mixed_labels"),
    ("SquaredHinge", {}, "signed"),
    ("SquaredHinge", {}, "zero_one"),
    ("CategoricalHinge", {}, "categorical_logits"),
    ("MeanSquaredError", {}, "regression"),
    ("MeanAbsoluteError", {}, "regression"),
    ("MeanAbsolutePercentageError", {}, "regression"),
    ("MeanSquaredLogarithmicError", {}, "positive"),
    ("CosineSimilarity", {}, "regression"),
    ("Huber", {}, "regression"),
    ("Huber", {"delta": 0.3}, "regression"),
    ("LogCosh", {}, "regression"),
    ("KLDivergence", {}, "distributions"),
    ("Poisson", {}, "positive"),
    ("Dice", {}, "binary_multi"),
    ("Dice", {"axis": -1}, "binary_multi"),
    ("Tversky", {}, "binary_multi"),
    ("Tversky", {"alpha": 0.3, "beta": 0.7}, "binary_multi"),
    ("Tversky", {"axis": -1}, "binary_multi"),
    ("CTC", {}, "ctc"),
]
REDUCTIONS = ["sum_over_batch_size", "sum", "mean", "mean_with_sample_weight", None]


def _both(name, kw, reduction="sum_over_batch_size"):
    return getattr(keras.losses, name)(reduction=reduction, **kw), getattr(nj.losses, name)(reduction=reduction, **kw)


def _close(got, expected, what):
    np.testing.assert_allclose(np.asarray(got), np.asarray(expected), rtol=RTOL * (100 if "MeanAbsolutePercentage" in what else 1),
                               atol=ATOL, err_msg=what)  # fmt: skip


@pytest.mark.parametrize(("name", "kw", "kind"), CASES, ids=[f"{n}-{k}-{i}" for i, (n, _, k) in enumerate(CASES)])
def test_loss_matches_keras(name, kw, kind):
    rng = np.random.default_rng(len(kind) + len(kw))
    y_true, y_pred = _data(kind, rng)
    sample_weight = rng.uniform(0.0, 2.0, size=(B,)).astype(np.float32)
    sample_weight[2] = 0.0
    keras_loss, nj_loss = _both(name, kw)
    for sw in (None, sample_weight):
        what = f"{name}{kw} sample_weight={sw is not None}"
        expected = keras_loss(y_true, y_pred, sample_weight=sw)
        _close(nj_loss(y_true, y_pred, sample_weight=sw), expected, what)
        expected_grad = jax.grad(lambda p, sw=sw: keras_loss(y_true, p, sample_weight=sw))(jnp.asarray(y_pred))
        got_grad = jax.grad(lambda p, sw=sw: nj_loss(y_true, p, sample_weight=sw))(jnp.asarray(y_pred))
        _close(got_grad, expected_grad, what + " grad")
    keras_none, nj_none = _both(name, kw, reduction=None)
    _close(nj_none(y_true, y_pred, sample_weight=sample_weight), keras_none(y_true, y_pred, sample_weight=sample_weight),
           f"{name} reduction=None")  # fmt: skip


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize(("name", "kw", "kind"), [CASES[0], CASES[3], CASES[19]], ids=["scce", "scce_ignore_class", "mse"])
def test_reductions_match_keras(name, kw, kind, reduction):
    rng = np.random.default_rng(1)
    y_true, y_pred = _data(kind, rng)
    sample_weight = rng.uniform(0.0, 2.0, size=(B,)).astype(np.float32)
    keras_loss, nj_loss = _both(name, kw, reduction)
    for sw in (None, sample_weight):
        _close(nj_loss(y_true, y_pred, sample_weight=sw), keras_loss(y_true, y_pred, sample_weight=sw), f"{name} {reduction}")


def test_sample_weight_divides_by_element_count():
    """Keras's default: sum(w * loss) / number of elements, not / sum(w) (all weights 0.5 halve the loss)."""
    y, p = np.ones((4, 1), np.float32), np.zeros((4, 1), np.float32)
    loss = nj.losses.MeanSquaredError()
    np.testing.assert_allclose(loss(y, p, sample_weight=np.full(4, 0.5, np.float32)), 0.5 * float(loss(y, p)), rtol=1e-7)


# Keras's function name of each class (what `compile(loss="...")` strings resolve to).
FUNCTION_NAMES = {
    "BinaryCrossentropy": "binary_crossentropy",
    "BinaryFocalCrossentropy": "binary_focal_crossentropy",
    "CTC": "ctc",
    "CategoricalCrossentropy": "categorical_crossentropy",
    "CategoricalFocalCrossentropy": "categorical_focal_crossentropy",
    "CategoricalHinge": "categorical_hinge",
    "CosineSimilarity": "cosine_similarity",
    "Dice": "dice",
    "Hinge": "hinge",
    "Huber": "huber",
    "KLDivergence": "kl_divergence",
    "LogCosh": "log_cosh",
    "MeanAbsoluteError": "mean_absolute_error",
    "MeanAbsolutePercentageError": "mean_absolute_percentage_error",
    "MeanSquaredError": "mean_squared_error",
    "MeanSquaredLogarithmicError": "mean_squared_logarithmic_error",
    "Poisson": "poisson",
    "SparseCategoricalCrossentropy": "sparse_categorical_crossentropy",
    "SquaredHinge": "squared_hinge",
    "Tversky": "tversky",
}


def test_registry_covers_every_loss():
    """A new loss cannot be exported without a parity case; every string name resolves as Keras's."""
    assert {name for name, _, _ in CASES} == set(nj.losses.CLASSES) == set(FUNCTION_NAMES)
    canonical = {nj.losses.ALIASES.get(n, n) for n in nj.losses.LOSSES}
    assert canonical == set(FUNCTION_NAMES.values())
    for class_name, function_name in FUNCTION_NAMES.items():
        kind = next(k for c, kw, k in CASES if c == class_name and not kw)
        y_true, y_pred = _data(kind, np.random.default_rng(0))
        expected = jnp.mean(getattr(keras.losses, function_name)(y_true, y_pred))  # Keras's function, then the default reduction
        _close(nj.losses.get(function_name)(y_true, y_pred), expected, function_name)
        _close(nj.losses.get(class_name)(y_true, y_pred), expected, class_name)
    for alias, target in nj.losses.ALIASES.items():
        assert nj.losses.get(alias).fn is nj.losses.get(target).fn, alias


def test_bad_reduction_raises():
    with pytest.raises(ValueError, match="reduction"):
        nj.losses.MeanSquaredError(reduction="average")
