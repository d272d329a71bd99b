"""An LSTM reads handwritten digits row by row: a sequence classifier on real data.

Each 8x8 image of scikit-learn's digits becomes a sequence of 8 steps of 8 pixels; the recurrent
layer carries what it has seen from row to row and a softmax classifier reads its last state.
`nj.models.LSTMClassifier` is the model; `--cell gru` or `--cell simple_rnn` and `--bidirectional`
swap the recurrent layer.

    python examples/lstm.py                          # LSTM(64), 15 epochs: ~95% test accuracy
    python examples/lstm.py --cell gru --bidirectional
    python examples/lstm.py --epochs 3 --units 16    # the small run the tests use
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

import nnjax as nj


def load_sequences():
    """`(x_train, y_train), (x_test, y_test)`: float32 sequences (N, 8 steps, 8 features) in [0, 1], int32 labels."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    data = load_digits()
    x = (data.images / 16.0).astype(np.float32)  # row t of the image is step t of the sequence
    x_train, x_test, y_train, y_test = train_test_split(x, data.target.astype(np.int32), test_size=0.2, random_state=0,
                                                        stratify=data.target)
    return (x_train, y_train), (x_test, y_test)


def main(argv=None) -> float:
    """Trains and evaluates; returns the test accuracy."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cell", choices=["lstm", "gru", "simple_rnn"], default="lstm")
    parser.add_argument("--units", type=int, default=64)
    parser.add_argument("--layers", type=int, default=1, help="stacked recurrent layers")
    parser.add_argument("--bidirectional", action="store_true")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--learning-rate", type=float, default=3e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--verbose", type=int, default=2)
    args = parser.parse_args(argv)

    nj.utils.set_random_seed(args.seed)
    (x_train, y_train), (x_test, y_test) = load_sequences()
    classifier = nj.models.LSTMClassifier(num_classes=10, units=args.units, num_layers=args.layers, cell=args.cell,
                                          bidirectional=args.bidirectional)
    model = nj.Model(classifier, input_shape=x_train.shape[1:])
    model.compile(optimizer=nj.optimizers.Adam(args.learning_rate), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"], seed=args.seed, steps_per_execution=len(x_train) // args.batch_size)
    model.summary()
    model.fit(x_train, y_train, batch_size=args.batch_size, epochs=args.epochs, verbose=args.verbose)
    test_loss, test_accuracy = model.evaluate(x_test, y_test, batch_size=len(x_test), verbose=0)
    print(f"\nTest accuracy ({args.cell}{', bidirectional' if args.bidirectional else ''}): {test_accuracy:.4f} "
          f"(loss {test_loss:.4f})")
    return test_accuracy


if __name__ == "__main__":
    main(sys.argv[1:])
