"""StringLookup, IntegerLookup, TextVectorization: host-side preprocessing with `adapt`.

Keras 3 computes these with TensorFlow, which is not installed here, so the oracle is Keras's
documented behaviour: the examples of the layers' docstrings in keras 3.15
(keras/src/layers/preprocessing/string_lookup.py, integer_lookup.py, text_vectorization.py),
each reproduced below with Keras's printed result.
"""

import jax
import numpy as np
import pytest

import nnjax as nj

L = nj.layers
VOCAB = ["a", "b", "c", "d"]
DATA = [["a", "c", "d"], ["d", "z", "b"]]
DATA4 = [["a", "c", "d", "d"], ["d", "z", "b", "z"]]


def test_string_lookup_matches_keras_documented_examples():
    assert L.StringLookup(vocabulary=VOCAB)(DATA).tolist() == [[1, 3, 4], [4, 0, 2]]
    adapted = L.StringLookup()
    adapted.adapt(DATA)
    assert adapted.get_vocabulary() == ["[UNK]", "d", "z", "c", "b", "a"]  # by count, ties by token, highest first
    assert adapted(DATA).tolist() == [[5, 3, 1], [1, 2, 4]]
    np.testing.assert_array_equal(L.StringLookup(vocabulary=VOCAB, output_mode="one_hot")(["a", "b", "c", "d", "z"]),
                                  np.eye(5, dtype=np.float32)[[1, 2, 3, 4, 0]])
    np.testing.assert_array_equal(L.StringLookup(vocabulary=VOCAB, output_mode="multi_hot")(DATA4),
                                  [[0, 1, 0, 1, 1], [1, 0, 1, 0, 1]])
    np.testing.assert_array_equal(L.StringLookup(vocabulary=VOCAB, output_mode="count")(DATA4),
                                  [[0, 1, 0, 1, 2], [2, 0, 1, 0, 1]])
    tf_idf = L.StringLookup(output_mode="tf_idf")
    tf_idf.set_vocabulary(VOCAB, idf_weights=[0.25, 0.75, 0.6, 0.4])
    np.testing.assert_allclose(tf_idf(DATA4), [[0, 0.25, 0, 0.6, 0.8], [1.0, 0, 0.75, 0, 0.4]], rtol=1e-6)
    with_oov = L.StringLookup(output_mode="tf_idf")
    with_oov.set_vocabulary(["[UNK]"] + VOCAB, idf_weights=[0.9, 0.25, 0.75, 0.6, 0.4])
    np.testing.assert_allclose(with_oov(DATA4), [[0, 0.25, 0, 0.6, 0.8], [1.8, 0, 0.75, 0, 0.4]], rtol=1e-6)
    inverse = L.StringLookup(vocabulary=VOCAB, invert=True)
    assert inverse([[1, 3, 4], [4, 0, 2]]).tolist() == [["a", "c", "d"], ["d", "[UNK]", "b"]]
    assert inverse(L.StringLookup(vocabulary=VOCAB)(DATA)).tolist() == [["a", "c", "d"], ["d", "[UNK]", "b"]]


def test_integer_lookup_matches_keras_documented_examples():
    vocab, data = [12, 36, 1138, 42], np.array([[12, 1138, 42], [42, 1000, 36]])
    assert L.IntegerLookup(vocabulary=vocab)(data).tolist() == [[1, 3, 4], [4, 0, 2]]
    adapted = L.IntegerLookup()
    adapted.adapt(data)
    assert adapted.get_vocabulary() == [-1, 42, 1138, 1000, 36, 12]
    assert adapted(data).tolist() == [[5, 2, 1], [1, 3, 4]]
    two_oov = L.IntegerLookup(vocabulary=vocab, num_oov_indices=2)  # Keras's floormod rule for integers
    assert two_oov(np.array([[12, 1138, 42], [37, 1000, 36]])).tolist() == [[2, 4, 5], [1, 0, 3]]
    assert L.IntegerLookup(vocabulary=[10, 20, 30], num_oov_indices=4)(np.array([100, 300, 700, 1100, 1700, 2000])).tolist() == [0] * 6


def test_text_vectorization_matches_keras_documented_examples():
    vectorize = L.TextVectorization(max_tokens=5000, output_mode="int", output_sequence_length=4)
    vectorize.adapt(["foo bar", "bar baz", "baz bada boom"])
    assert vectorize([["foo qux bar"], ["qux baz"]]).tolist() == [[4, 1, 3, 0], [1, 2, 0, 0]]
    given = L.TextVectorization(max_tokens=5000, output_mode="int", output_sequence_length=4,
                                vocabulary=["earth", "wind", "and", "fire"])
    assert given.get_vocabulary() == ["", "[UNK]", "earth", "wind", "and", "fire"]


def test_text_vectorization_standardizes_splits_ngrams_and_counts():
    vectorize = L.TextVectorization(ngrams=2, output_mode="count")
    vectorize.adapt(["The cat sat.", "the CAT ran!"])
    vocab = vectorize.get_vocabulary()
    assert vocab[0] == "[UNK]" and {"the", "cat", "the cat", "cat sat", "cat ran"} <= set(vocab)  # lowered, no punctuation
    counts = vectorize(["the cat, the cat"])
    assert counts.shape == (1, len(vocab))
    assert counts[0, vocab.index("the cat")] == 2 and counts[0, vocab.index("the")] == 2
    assert "cat the" not in vocab and counts[0, 0] == 1  # the one out-of-vocabulary bigram counts as [UNK]
    tf_idf = L.TextVectorization(output_mode="tf_idf")
    tf_idf.adapt(["a b", "a c", "a"])
    idf = dict(zip(tf_idf.get_vocabulary(), tf_idf.lookup.idf_weights, strict=True))
    assert idf["a"] == pytest.approx(np.log(1 + 3 / 4)) and idf["b"] == pytest.approx(np.log(1 + 3 / 2))
    chars = L.TextVectorization(split="character", standardize=None, output_mode="int")
    chars.adapt(["abba"])
    assert chars(["ab"]).tolist() == [[chars.get_vocabulary().index("a"), chars.get_vocabulary().index("b")]]


def test_vectorized_text_trains_a_classifier_and_the_vocabulary_is_in_the_config():
    rng = np.random.default_rng(0)
    good, bad = ["great", "fine", "lovely", "superb"], ["awful", "poor", "bad", "dreadful"]
    filler = ["the", "film", "was", "really", "quite"]
    texts, labels = [], []
    for _ in range(200):
        label = int(rng.integers(2))
        words = list(rng.choice(filler, 3)) + [str(rng.choice(good if label else bad))]
        rng.shuffle(words)
        texts.append(" ".join(words))
        labels.append(label)
    vectorize = L.TextVectorization(max_tokens=20, output_sequence_length=6)
    vectorize.adapt(texts)
    x, y = vectorize(texts), np.array(labels, np.int32)
    model = nj.Sequential([L.Embedding(20, 8, mask_zero=True), L.GlobalAveragePooling1D(), L.Dense(2, activation="softmax")])
    model.compile(optimizer=nj.optimizers.Adam(0.05), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x[:160], y[:160], epochs=15, batch_size=32, verbose=0)
    assert model.evaluate(x[160:], y[160:], verbose=0, return_dict=True)["accuracy"] >= 0.95
    again = L.TextVectorization(**{k: v for k, v in vectorize.get_config().items() if k != "name"})
    np.testing.assert_array_equal(again(texts[:5]), x[:5])  # the vocabulary travels in the config


def test_string_lookup_with_several_oov_indices_hashes_like_tensorflow():
    """Keras's docstring example (TensorFlow's FarmHash picks 'm' -> 0, 'z' -> 1), then the rule itself over many
    tokens against pyfarmhash's Fingerprint64 (TensorFlow's `to_hash_bucket_fast`)."""
    layer = L.StringLookup(vocabulary=VOCAB, num_oov_indices=2)
    assert layer([["a", "c", "d"], ["m", "z", "b"]]).tolist() == [[2, 4, 5], [0, 1, 3]]
    farmhash = pytest.importorskip("farmhash")
    tokens = [f"token{i}" for i in range(200)] + ["", "é", "a longer token of more than sixty-four bytes " * 2]
    layer = L.StringLookup(vocabulary=VOCAB, num_oov_indices=7)
    expected = [farmhash.fingerprint64(t) % 7 for t in tokens]
    assert layer(tokens).tolist() == expected


def test_lookup_errors_name_what_is_wrong():
    with pytest.raises(ValueError, match=r"has no vocabulary; pass `vocabulary=` or call `adapt\(data\)` first"):
        L.StringLookup()(["a"])
    with pytest.raises(ValueError, match=r"with num_oov_indices=0 every input must be in the vocabulary; found .*'z'"):
        L.StringLookup(vocabulary=VOCAB, num_oov_indices=0)(DATA)
    with pytest.raises(ValueError, match=r"repeated tokens \['a'\]"):
        L.StringLookup(vocabulary=["a", "b", "a"])
    with pytest.raises(TypeError, match="runs on the host"):
        jax.jit(lambda v: L.IntegerLookup(vocabulary=[1, 2])(v))(np.array([1, 2]))
