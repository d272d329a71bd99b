"""Perceptrons and hidden layers: what a single layer can and cannot learn.

1. A single-layer perceptron (one Dense unit, sigmoid) separates linearly
   separable data perfectly.
2. The same perceptron cannot learn XOR: no line separates it, so at best it gets
   3 of the 4 points right.
3. One hidden layer is enough to learn XOR.

    python examples/perceptron.py
"""

from __future__ import annotations

import sys

import numpy as np

import nnjax as nj

XOR_X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], np.float32)
XOR_Y = np.array([0, 1, 1, 0], np.float32)


def separable_data(n: int = 200, seed: int = 0):
    """Two Gaussian blobs on either side of the line x0 + x1 = 0, with a margin."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 2)).astype(np.float32)
    margin = x.sum(axis=1)
    x = x[np.abs(margin) > 0.5]
    y = (x.sum(axis=1) > 0).astype(np.float32)
    return x, y


def perceptron(seed: int = 0) -> nj.Sequential:
    """One Dense unit with a sigmoid: a linear decision boundary."""
    nj.utils.set_random_seed(seed)
    model = nj.Sequential([nj.layers.Dense(1, activation="sigmoid", input_shape=(2,))])
    model.compile(optimizer=nj.optimizers.SGD(learning_rate=0.5), loss="binary_crossentropy", metrics=["accuracy"])
    return model


def hidden_layer_mlp(seed: int = 0, hidden: int = 8) -> nj.Sequential:
    """A hidden tanh layer before the sigmoid unit: enough to bend the boundary around XOR."""
    nj.utils.set_random_seed(seed)
    model = nj.Sequential([
        nj.layers.Dense(hidden, activation="tanh", input_shape=(2,)),
        nj.layers.Dense(1, activation="sigmoid"),
    ])
    model.compile(optimizer=nj.optimizers.Adam(learning_rate=0.05), loss="binary_crossentropy", metrics=["accuracy"])
    return model


def main(argv=None) -> dict:
    del argv
    x, y = separable_data()
    linear = perceptron()
    linear.fit(x, y, epochs=30, batch_size=16, verbose=0)
    separable_acc = linear.evaluate(x, y, verbose=0)[1]
    print(f"perceptron on linearly separable data: accuracy {separable_acc:.3f}")

    xor_linear = perceptron()
    xor_linear.fit(XOR_X, XOR_Y, epochs=500, batch_size=4, verbose=0)
    xor_linear_acc = xor_linear.evaluate(XOR_X, XOR_Y, verbose=0)[1]
    print(f"perceptron on XOR: accuracy {xor_linear_acc:.3f} (a line cannot separate XOR)")

    mlp = hidden_layer_mlp()
    mlp.fit(XOR_X, XOR_Y, epochs=300, batch_size=4, verbose=0)
    xor_mlp_acc = mlp.evaluate(XOR_X, XOR_Y, verbose=0)[1]
    print(f"one hidden layer on XOR: accuracy {xor_mlp_acc:.3f}")
    return {"separable": separable_acc, "xor_perceptron": xor_linear_acc, "xor_mlp": xor_mlp_acc}


if __name__ == "__main__":
    main(sys.argv[1:])
