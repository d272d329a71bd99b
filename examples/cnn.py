"""A convolutional network on Fashion-MNIST (through TFDS), with scikit-learn's digits as the fallback.

Conv2D - BatchNormalization - ReLU - MaxPooling2D, twice, then Dropout and a softmax classifier,
trained with Adam through `nj.Sequential.fit`. Fashion-MNIST comes from `nj.datasets` when TFDS
has it (prepared or downloadable); otherwise the script says so in one line and trains on the 8x8
digits that ship with scikit-learn.

    python examples/cnn.py                              # Fashion-MNIST if available, else digits
    python examples/cnn.py --dataset digits --epochs 3  # the small, offline run the tests use
    python examples/cnn.py --limit 5000                 # fewer training images
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

import nnjax as nj


def load_fashion_mnist():
    """`(x_train, y_train), (x_test, y_test)`: uint8 images (N, 28, 28) and labels, from TFDS."""
    datasets = getattr(nj, "datasets", None)
    if datasets is None:
        raise RuntimeError("nnjax.datasets is not installed")
    return datasets.fashion_mnist.load_data()


def load_digits():
    """scikit-learn's 8x8 digits, split 80/20, scaled to uint8 [0, 255] like Fashion-MNIST."""
    from sklearn.datasets import load_digits as sklearn_digits
    from sklearn.model_selection import train_test_split

    data = sklearn_digits()
    images = (data.images * (255.0 / 16.0)).round().astype(np.uint8)
    x_train, x_test, y_train, y_test = train_test_split(images, data.target.astype(np.int32), test_size=0.2, random_state=0,
                                                        stratify=data.target)
    return (x_train, y_train), (x_test, y_test)


def load(dataset: str):
    """Returns `(name, ((x_train, y_train), (x_test, y_test)))`, falling back to digits when TFDS fails."""
    if dataset in ("auto", "fashion_mnist"):
        try:
            return "fashion_mnist", load_fashion_mnist()
        except Exception as err:  # noqa: BLE001 - any failure to get the data means: use the fallback
            if dataset == "fashion_mnist":
                raise
            reason = str(err).splitlines()[0] if str(err) else type(err).__name__
            print(f"Fashion-MNIST is not available through TFDS ({reason}); training on scikit-learn's digits instead.")
    return "digits", load_digits()


def make_model(num_classes: int = 10, width: int = 32, dropout: float = 0.3) -> nj.Sequential:
    """Two conv blocks (each halves the resolution) and a classifier; works for 8x8 and 28x28 images.

    The batch norms use momentum 0.9 rather than Keras's 0.99: the running statistics, which
    inference uses, then settle within tens of steps, so short runs evaluate well too.
    """
    layers = nj.layers
    return nj.Sequential([
        layers.Conv2D(width, 3, padding="same", use_bias=False),
        layers.BatchNormalization(momentum=0.9),
        layers.Activation("relu"),
        layers.MaxPooling2D(),
        layers.Conv2D(2 * width, 3, padding="same", use_bias=False),
        layers.BatchNormalization(momentum=0.9),
        layers.Activation("relu"),
        layers.MaxPooling2D(),
        layers.Flatten(),
        layers.Dropout(dropout),
        layers.Dense(num_classes, activation="softmax"),
    ])


def main(argv=None) -> float:
    """Trains and evaluates; returns the test accuracy."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=["auto", "fashion_mnist", "digits"], default="auto")
    parser.add_argument("--epochs", type=int, default=None, help="5 for Fashion-MNIST, 10 for digits by default")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--limit", type=int, default=None, help="train on the first N images only")
    parser.add_argument("--width", type=int, default=32, help="filters of the first conv (the second has twice as many)")
    parser.add_argument("--learning-rate", type=float, default=3e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--verbose", type=int, default=2)
    args = parser.parse_args(argv)

    nj.utils.set_random_seed(args.seed)
    name, ((x_train, y_train), (x_test, y_test)) = load(args.dataset)
    x_train = (x_train[: args.limit] / 255.0).astype(np.float32)[..., None]  # (N, H, W, 1)
    y_train = y_train[: args.limit].astype(np.int32)
    x_test = (x_test / 255.0).astype(np.float32)[..., None]
    y_test = y_test.astype(np.int32)
    epochs = args.epochs or (5 if name == "fashion_mnist" else 10)

    model = make_model(width=args.width)
    model.build((None,) + x_train.shape[1:])
    model.compile(optimizer=nj.optimizers.Adam(args.learning_rate), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"], seed=args.seed, steps_per_execution=max(1, len(x_train) // args.batch_size))
    model.summary()
    model.fit(x_train, y_train, batch_size=args.batch_size, epochs=epochs, verbose=args.verbose)
    test_loss, test_accuracy = model.evaluate(x_test, y_test, batch_size=500, verbose=0)
    print(f"\nTest accuracy on {name}: {test_accuracy:.4f} (loss {test_loss:.4f})")
    return test_accuracy


if __name__ == "__main__":
    main(sys.argv[1:])
