"""Every Keras-named initializer nnjax exports draws from Keras 3's distribution, with Keras 3 as the oracle.

The random streams differ (JAX keys versus Keras's seed generator), so the
oracle is sample statistics: one large sample from each side, compared by
mean, standard deviation, extreme values and the mass beyond two standard
deviations. Each tolerance is six standard errors of the difference of the two
sample statistics (n elements: means sigma*sqrt(2/n), standard deviations
sigma/sqrt(n), tail fractions sqrt(2p(1-p)/n)), so a false alarm has odds far
below one in a million. Deterministic initializers are compared exactly.
"""

import math

import jax
import numpy as np
import pytest

import nnjax as nj

keras = pytest.importorskip("keras")

DENSE, CONV, VECTOR = (300, 400), (3, 3, 64, 64), (50000,)
RANDOM_CASES = [
    ("glorot_uniform", {}, DENSE),
    ("glorot_normal", {}, DENSE),
    ("he_uniform", {}, CONV),
    ("he_normal", {}, CONV),
    ("lecun_uniform", {}, DENSE),
    ("lecun_normal", {}, CONV),
    ("random_normal", {}, DENSE),
    ("random_uniform", {}, DENSE),
    ("truncated_normal", {}, DENSE),
    ("normal", {}, VECTOR),
    ("uniform", {}, VECTOR),
    ("variance_scaling", {}, VECTOR),
    ("RandomNormal", {"mean": 0.5, "stddev": 2.0}, DENSE),
    ("RandomUniform", {"minval": -3.0, "maxval": 1.0}, DENSE),
    ("TruncatedNormal", {"mean": -1.0, "stddev": 0.3}, DENSE),
] + [
    ("VarianceScaling", {"scale": 3.0, "mode": mode, "distribution": distribution}, CONV)
    for mode in ("fan_in", "fan_out", "fan_avg")
    for distribution in ("truncated_normal", "untruncated_normal", "uniform")
]
EXACT_CASES = [
    ("zeros", {}, DENSE),
    ("ones", {}, DENSE),
    ("one", {}, DENSE),
    ("zero", {}, DENSE),
    ("constant", {}, DENSE),
    ("Constant", {"value": 0.7}, CONV),
    ("identity", {}, (5, 7)),
    ("Identity", {"gain": 2.5}, (6, 4)),
]
ORTHOGONAL_CASES = [("orthogonal", {}, (40, 30)), ("orthogonal", {}, (30, 40)), ("Orthogonal", {"gain": 1.7}, (3, 4, 20))]


def _keras(name, kw, shape):
    if name == "constant":  # keras.initializers.get("constant") raises in Keras 3.15 (Constant.from_config needs `value`)
        name = "Constant"
    init = getattr(keras.initializers, name)(**kw) if kw or name[0].isupper() else keras.initializers.get(name)
    return np.asarray(init(shape, dtype="float32"))


def _nnjax(name, kw, shape):
    init = nj.initializers.CLASSES[name](**kw) if kw or name[0].isupper() else nj.initializers.get(name)
    return np.asarray(init(jax.random.key(0), shape, jax.numpy.float32))


@pytest.mark.parametrize(("name", "kw", "shape"), RANDOM_CASES, ids=[f"{n}{sorted(kw.items())}" for n, kw, _ in RANDOM_CASES])
def test_random_initializer_matches_keras_statistics(name, kw, shape):
    ours, theirs = _nnjax(name, kw, shape).ravel(), _keras(name, kw, shape).ravel()
    n = ours.size
    sigma = theirs.std()
    assert abs(ours.mean() - theirs.mean()) < 6 * sigma * math.sqrt(2 / n)
    assert abs(ours.std() - sigma) < 6 * sigma / math.sqrt(n)
    # Extreme values: uniform and truncated distributions end at the same bound (the gap to it is ~range/n).
    for ours_end, theirs_end in ((ours.min(), theirs.min()), (ours.max(), theirs.max())):
        if "uniform" in name.lower() or "truncated" in name.lower() or kw.get("distribution") in ("uniform", "truncated_normal"):
            assert abs(ours_end - theirs_end) < 0.02 * sigma
    # Mass beyond two standard deviations of the centre: 0 when truncated, ~4.6% when normal, 0 when uniform.
    centre = theirs.mean()
    p_ours, p_theirs = np.mean(np.abs(ours - centre) > 2 * sigma), np.mean(np.abs(theirs - centre) > 2 * sigma)
    p = max(p_theirs, 1.0 / n)
    assert abs(p_ours - p_theirs) < 6 * math.sqrt(2 * p * (1 - p) / n) + 2.0 / n


@pytest.mark.parametrize(("name", "kw", "shape"), EXACT_CASES, ids=[f"{n}{sorted(kw.items())}" for n, kw, _ in EXACT_CASES])
def test_deterministic_initializer_equals_keras(name, kw, shape):
    np.testing.assert_array_equal(_nnjax(name, kw, shape), _keras(name, kw, shape))


@pytest.mark.parametrize(("name", "kw", "shape"), ORTHOGONAL_CASES, ids=[f"{n}{s}" for n, _, s in ORTHOGONAL_CASES])
def test_orthogonal_is_orthogonal_like_keras(name, kw, shape):
    """Keras's orthogonal matrix is over (prod(shape[:-1]), shape[-1]): its smaller Gram matrix is gain^2 * I."""
    gain = kw.get("gain", 1.0)
    for w in (_nnjax(name, kw, shape), _keras(name, kw, shape)):
        m = w.reshape(-1, shape[-1])
        gram = m.T @ m if m.shape[0] >= m.shape[1] else m @ m.T
        np.testing.assert_allclose(gram, gain**2 * np.eye(gram.shape[0]), atol=1e-5 * gain**2)


def test_registry_covers_every_initializer():
    covered = {name for name, _, _ in RANDOM_CASES + EXACT_CASES + ORTHOGONAL_CASES}
    assert set(nj.initializers.INITIALIZERS) - {"identity_initializer", "orthogonal_initializer"} <= covered
    assert (
        set(nj.initializers.CLASSES)
        - {"GlorotUniform", "GlorotNormal", "HeUniform", "HeNormal", "LecunUniform", "LecunNormal", "Zeros", "Ones"}
        <= covered
    )  # fmt: skip  (those classes are covered by their snake-case names)
    from keras.src.initializers import ALL_OBJECTS_DICT

    keras_names = {k for k in ALL_OBJECTS_DICT if k not in ("Initializer", "initializer", "STFT", "stft", "STFTInitializer")}
    ours = set(nj.initializers.INITIALIZERS) | set(nj.initializers.CLASSES)
    assert {k for k in keras_names if k.lower() not in ours and k not in ours} == {"IdentityInitializer", "OrthogonalInitializer"}


def test_seed_gives_the_same_values_every_call():
    init = nj.initializers.GlorotUniform(seed=3)
    a = init(jax.random.key(0), (4, 5))
    b = init(jax.random.key(1), (4, 5))
    np.testing.assert_array_equal(a, b)
