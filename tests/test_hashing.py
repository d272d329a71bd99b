"""`nj.layers.Hashing` reproduces Keras 3's `Hashing`, which needs TensorFlow (not installed here).

Oracles: the hashes against independent implementations (`pyfarmhash`'s FarmHash `Fingerprint64`, the `siphash24`
package's SipHash-2-4) on random byte strings of every length 0..300 (FarmHash's code paths for 0-16, 17-32, 33-64 and
> 64 bytes); the layer against the exact outputs printed in Keras's `Hashing` docstring and its own unit tests
(`keras/src/layers/preprocessing/hashing_test.py`): unsalted, salted, with a mask value, integer inputs, every output mode.
"""

import random

import jax
import numpy as np
import pytest

import nnjax as nj
from nnjax.layers.hash_functions import fingerprint64, siphash24

farmhash = pytest.importorskip("farmhash")
siphash_ref = pytest.importorskip("siphash24")

L = nj.layers
LETTERS = [["A"], ["B"], ["C"], ["D"], ["E"]]
NAMES = [["omar"], ["stringer"], ["marlo"], ["wire"], ["skywalker"]]
INTS = np.array([[0], [1], [2], [3], [4]])


def random_strings():
    rng = random.Random(0)
    return [bytes(rng.getrandbits(8) for _ in range(length)) for length in range(301) for _ in range(7)]  # 2107 strings


def test_fingerprint64_matches_farmhash_on_every_length():
    strings = random_strings()
    mismatched = [len(s) for s in strings if fingerprint64(s) != farmhash.fingerprint64(s)]
    assert not mismatched, f"lengths with a different hash: {sorted(set(mismatched))}"


def test_siphash24_matches_the_reference_on_every_length():
    rng = random.Random(1)
    mismatched = []
    for data in random_strings():
        key = bytes(rng.getrandbits(8) for _ in range(16))
        expected = int.from_bytes(siphash_ref.siphash24(data, key=key).digest(), "little")
        if siphash24(int.from_bytes(key[:8], "little"), int.from_bytes(key[8:], "little"), data) != expected:
            mismatched.append(len(data))
    assert not mismatched, f"lengths with a different hash: {sorted(set(mismatched))}"


@pytest.mark.parametrize(
    ("kwargs", "inputs", "expected"),
    [
        ({"num_bins": 3}, LETTERS, [[1], [0], [1], [1], [2]]),  # Keras's docstring examples
        ({"num_bins": 3, "mask_value": ""}, [["A"], ["B"], [""], ["C"], ["D"]], [[1], [1], [0], [2], [2]]),
        ({"num_bins": 3, "salt": [133, 137]}, LETTERS, [[1], [2], [1], [0], [2]]),
        ({"num_bins": 3, "salt": 133}, LETTERS, [[0], [0], [2], [1], [0]]),
        ({"num_bins": 1}, LETTERS, [[0]] * 5),  # Keras's unit tests
        ({"num_bins": 2}, NAMES, [[0], [0], [1], [0], [0]]),
        ({"num_bins": 2}, [n[0] for n in NAMES], [0, 0, 1, 0, 0]),
        ({"num_bins": 3, "mask_value": ""}, NAMES, [[1], [1], [2], [1], [1]]),
        ({"num_bins": 3, "mask_value": "omar"}, np.array(NAMES), [[0], [1], [2], [1], [1]]),
        ({"num_bins": 3}, INTS, [[1], [0], [1], [0], [2]]),
        ({"num_bins": 2, "salt": [133, 137]}, np.array(NAMES), [[0], [1], [0], [1], [0]]),
        ({"num_bins": 2, "salt": [211, 137]}, np.array(NAMES), [[1], [0], [1], [0], [1]]),
        ({"num_bins": 3, "salt": [133, 137]}, INTS, [[1], [1], [2], [0], [1]]),
        ({"num_bins": 2}, [[[1], [2]], [[2], [3]], [[3], [4]]], [[[1], [1]], [[1], [1]], [[1], [1]]]),
    ],
)
def test_bins_match_keras_documented_outputs(kwargs, inputs, expected):
    out = L.Hashing(**kwargs)(inputs)
    assert isinstance(out, jax.Array) and out.dtype == jax.numpy.int32  # Keras's int64, as JAX without x64 holds it
    assert out.tolist() == expected


@pytest.mark.parametrize(
    ("mode", "inputs", "expected"),
    [
        ("one_hot", np.array([0, 1, 2, 3, 4]), [[0, 1, 0], [1, 0, 0], [0, 1, 0], [1, 0, 0], [0, 0, 1]]),
        ("one_hot", INTS, [[0, 1, 0], [1, 0, 0], [0, 1, 0], [1, 0, 0], [0, 0, 1]]),
        ("multi_hot", np.array([[0, 1, 2, 3, 4]]), [[1, 1, 1]]),
        ("count", np.array([[0, 1, 2, 3, 4]]), [[2, 2, 1]]),
        ("count", np.array([0, 1, 2, 3, 4]), [2, 2, 1]),
    ],
)
def test_output_modes_match_keras(mode, inputs, expected):
    layer = L.Hashing(num_bins=3, output_mode=mode)
    out = layer(inputs)
    assert out.dtype == jax.numpy.float32
    np.testing.assert_array_equal(np.asarray(out), np.asarray(expected, np.float32))
    assert layer.compute_output_shape(inputs.shape) == out.shape


def test_integer_inputs_hash_inside_jit_and_train_before_an_embedding():
    layer = L.Hashing(num_bins=3, name="hash_jit")
    assert jax.jit(layer)(INTS).tolist() == [[1], [0], [1], [0], [2]]
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 10_000, size=(32, 3)), rng.normal(size=(32, 1)).astype(np.float32)
    nj.utils.set_random_seed(0)
    model = nj.Sequential(
        [
            L.Hashing(num_bins=16, salt=7, name="hash_seq", input_shape=(3,)),
            L.Embedding(16, 4, name="emb"),
            L.GlobalAveragePooling1D(name="pool"),
            L.Dense(1, name="head"),
        ]
    )
    model.compile(optimizer="sgd", loss="mse")
    history = model.fit(x, y, batch_size=8, epochs=2, verbose=0).history
    assert len(history["loss"]) == 2 and np.isfinite(history["loss"]).all()
    # The model's embedding sees the host-computed bins: the same rows as looking them up by hand.
    bins = np.asarray(L.Hashing(num_bins=16, salt=7)(x))
    np.testing.assert_allclose(
        np.asarray(model.layers[1](bins)), np.asarray(model.layers[1].embeddings[...])[bins], rtol=0, atol=0
    )

    inputs = nj.Input(shape=(3,), dtype="int32", name="ids")
    hashed = L.Hashing(num_bins=16, output_mode="multi_hot", name="hash_fn")(inputs)
    functional = nj.Model(inputs, L.Dense(1, name="head_fn")(hashed))
    assert tuple(functional.output_shape) == (None, 1)
    assert functional(x).shape == (32, 1)


def test_config_round_trips_and_saved_models_reload(tmp_path):
    layer = L.Hashing(num_bins=4, salt=133, mask_value="", name="hash_cfg")
    config = layer.get_config()
    assert {k: config[k] for k in ("num_bins", "salt", "mask_value", "output_mode", "sparse")} == {
        "num_bins": 4,
        "salt": [133, 133],
        "mask_value": "",
        "output_mode": "int",
        "sparse": False,
    }
    clone = L.Hashing.from_config(config)
    words = [["a"], [""], ["bcd"], ["efghijklmnopqrstuvwxyz"]]
    assert clone(words).tolist() == layer(words).tolist()
    nj.utils.set_random_seed(1)
    model = nj.Sequential([L.Hashing(num_bins=8, name="hash_save", input_shape=(2,)), L.Embedding(8, 3, name="emb_save")])
    path = str(tmp_path / "hashing.keras")
    model.save(path)
    loaded = nj.models.load_model(path)
    ids = np.array([[3, 99], [7, 12345]])
    np.testing.assert_array_equal(np.asarray(loaded(ids)), np.asarray(model(ids)))


def test_bad_arguments_name_what_is_wrong():
    with pytest.raises(ValueError, match=r"`num_bins` must be a positive int; got num_bins=0"):
        L.Hashing(num_bins=0)
    with pytest.raises(ValueError, match=r"`salt` must be an int or a pair of ints; got salt='string'"):
        L.Hashing(num_bins=2, salt="string")
    with pytest.raises(ValueError, match=r"`salt` must be an int or a pair of ints; got salt=\[133, 137, 177\]"):
        L.Hashing(num_bins=2, salt=[133, 137, 177])
    with pytest.raises(ValueError, match=r"`output_mode` must be one of .*got output_mode='tf_idf'"):
        L.Hashing(num_bins=3, output_mode="tf_idf")
    with pytest.raises(ValueError, match=r"`dtype` must be 'int32' or 'int64'; got dtype='float32'"):
        L.Hashing(num_bins=3, dtype="float32")
    with pytest.raises(ValueError, match=r"`sparse=True` needs output_mode"):
        L.Hashing(num_bins=3, sparse=True)
