"""The layers learn real data: scikit-learn's handwritten digits (8x8), trained with `fit`."""

import numpy as np
import pytest

import nnjax as nj

L = nj.layers
BATCH = 32
TRAIN = 1408  # 44 full batches of the 1437 training images: one compiled program per epoch


def train_and_evaluate(layers, x_train, y_train, x_test, y_test, epochs, lr=1e-2, seed=0):
    nj.utils.set_random_seed(seed)
    model = nj.Sequential(layers)
    model.compile(optimizer=nj.optimizers.Adam(lr), loss="sparse_categorical_crossentropy", metrics=["accuracy"],
                  steps_per_execution=TRAIN // BATCH, seed=seed)
    history = model.fit(x_train[:TRAIN], y_train[:TRAIN], batch_size=BATCH, epochs=epochs, verbose=0)
    _, accuracy = model.evaluate(x_test, y_test, batch_size=len(x_test), verbose=0)
    return model, history, accuracy


def test_cnn_with_batch_norm_pooling_and_dropout(digits):
    (x_train, y_train), (x_test, y_test) = digits
    layers = [
        L.Conv2D(32, 3, padding="same", input_shape=(8, 8, 1)),
        L.BatchNormalization(),
        L.Activation("relu"),
        L.MaxPooling2D(),
        L.Flatten(),
        L.Dropout(0.2),
        L.Dense(10, activation="softmax"),
    ]
    model, history, accuracy = train_and_evaluate(layers, x_train[..., None], y_train, x_test[..., None], y_test, epochs=10,
                                                  lr=3e-3)
    print(f"CNN test accuracy: {accuracy:.4f}")
    assert accuracy >= 0.95
    assert history.history["loss"][-1] < history.history["loss"][0]
    bn = model.layers[1]
    assert np.all(np.asarray(bn.moving_variance[...]) != 1.0)  # the running statistics moved during fit


@pytest.mark.parametrize("rnn", ["lstm", "gru"])
def test_lstm_and_gru_read_digits_row_by_row(digits, rnn):
    (x_train, y_train), (x_test, y_test) = digits  # (N, 8 rows, 8 pixels): 8 steps of 8 features
    layer = L.LSTM(32) if rnn == "lstm" else L.GRU(32)
    _, _, accuracy = train_and_evaluate([layer, L.Dense(10, activation="softmax")], x_train, y_train, x_test, y_test, epochs=10)
    print(f"{rnn} test accuracy: {accuracy:.4f}")
    assert accuracy >= 0.90


def test_bidirectional_lstm_and_simple_rnn_learn(digits):
    (x_train, y_train), (x_test, y_test) = digits
    _, _, bi_accuracy = train_and_evaluate([L.Bidirectional(L.LSTM(16)), L.Dense(10, activation="softmax")],
                                           x_train, y_train, x_test, y_test, epochs=8)
    _, _, rnn_accuracy = train_and_evaluate([L.SimpleRNN(32), L.Dense(10, activation="softmax")],
                                            x_train, y_train, x_test, y_test, epochs=8)
    print(f"Bidirectional LSTM: {bi_accuracy:.4f}, SimpleRNN: {rnn_accuracy:.4f}")
    assert bi_accuracy >= 0.90
    assert rnn_accuracy >= 0.85


def test_embedding_over_quantised_pixels(digits):
    (x_train, y_train), (x_test, y_test) = digits
    quantise = lambda x: np.round(x * 16).astype(np.int32).reshape(len(x), 64)  # noqa: E731 - ids 0..16
    layers = [L.Embedding(17, 4), L.Flatten(), L.Dense(10, activation="softmax")]
    _, _, accuracy = train_and_evaluate(layers, quantise(x_train), y_train, quantise(x_test), y_test, epochs=8)
    print(f"Embedding test accuracy: {accuracy:.4f}")
    assert accuracy >= 0.90
