"""The tutorial's example, ported from Keras by changing the imports.

Trains `Flatten -> Dense(128, relu) -> Dense(10, softmax)` with Adam and sparse
categorical cross-entropy, evaluates it and draws the model.

Fashion-MNIST comes through TFDS when TFDS has it (downloaded or cached); when
it cannot (no network and no cache) the script says so in one line and trains on
scikit-learn's handwritten digits, a real dataset that ships with the package.

    python examples/quickstart.py                       # Fashion-MNIST if available, else digits
    python examples/quickstart.py --dataset digits      # force the fallback
    python examples/quickstart.py --epochs 1 --plot out/model.png
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

import nnjax as nj


def load_fashion_mnist():
    """Fashion-MNIST as Keras returns it: uint8 images (N, 28, 28), integer labels."""
    from nnjax import datasets  # imports tensorflow_datasets lazily

    return datasets.fashion_mnist.load_data()


def load_digits_dataset():
    """scikit-learn's 8x8 digits, split 80/20, images as uint8 scaled to [0, 255] like Fashion-MNIST."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    data = load_digits()
    images = (data.images * (255.0 / 16.0)).round().astype(np.uint8)
    x_train, x_test, y_train, y_test = train_test_split(
        images, data.target.astype(np.int64), test_size=0.2, random_state=0, stratify=data.target
    )
    return (x_train, y_train), (x_test, y_test)


def _short_reason(err: Exception) -> str:
    from nnjax.data.tfds_source import DatasetUnavailableError

    if isinstance(err, DatasetUnavailableError):
        return "not in the TFDS folder, and no network to download it"
    if isinstance(err, ImportError):
        return f"{err.name or 'tensorflow-datasets'} is not installed"
    return str(err).splitlines()[0] if str(err) else type(err).__name__


def load(dataset: str):
    if dataset in ("auto", "fashion_mnist"):
        try:
            return "fashion_mnist", load_fashion_mnist()
        except Exception as err:  # noqa: BLE001 - any failure to get the data means: use the fallback
            if dataset == "fashion_mnist":
                raise
            print(f"Fashion-MNIST is not available here ({_short_reason(err)}); training on scikit-learn's digits "
                  "instead (`--dataset fashion_mnist` says how to get it).")
    return "digits", load_digits_dataset()


def main(argv=None) -> float:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=["auto", "fashion_mnist", "digits"], default="auto")
    parser.add_argument("--epochs", type=int, default=None, help="5 for Fashion-MNIST, 15 for digits by default")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--plot", default="model.png", help="where plot_model writes its PNG ('' to skip)")
    args = parser.parse_args(argv)

    nj.utils.set_random_seed(args.seed)
    name, ((train_images, train_labels), (test_images, test_labels)) = load(args.dataset)
    train_images = train_images / 255.0
    test_images = test_images / 255.0
    epochs = args.epochs or (5 if name == "fashion_mnist" else 15)

    model = nj.Sequential([
        nj.layers.Flatten(input_shape=train_images.shape[1:]),
        nj.layers.Dense(128, activation="relu"),
        nj.layers.Dense(10, activation="softmax"),
    ])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.summary()
    model.fit(train_images, train_labels, epochs=epochs, batch_size=args.batch_size)
    test_loss, test_acc = model.evaluate(test_images, test_labels, verbose=0)
    print(f"\nTest accuracy on {name}: {test_acc:.4f} (loss {test_loss:.4f})")
    if args.plot:
        nj.plot_model(model, to_file=args.plot)
        print(f"Model diagram written to {args.plot}")
    return test_acc


if __name__ == "__main__":
    main(sys.argv[1:])
