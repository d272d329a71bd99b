"""nnjax: a functional core of pure JAX training functions, with a Keras-style shell.

    import nnjax as nj
    model = nj.Sequential([nj.layers.Flatten(input_shape=(28, 28)),
                           nj.layers.Dense(128, activation="relu"),
                           nj.layers.Dense(10, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, epochs=5)
"""

from nnjax import (
    activations,
    bench,
    callbacks,
    checkpoint,
    constraints,
    data,
    datasets,
    initializers,
    layers,
    losses,
    metrics,
    models,
    ops,
    optimizers,
    parallel,
    random,
    regularizers,
    saving,
    train,
    utils,
)
from nnjax.layers.functional import Input, KerasTensor
from nnjax.shell import Model, Sequential
from nnjax.viz import plot_history, plot_model

__version__ = "0.1.0"

__all__ = [
    "Input",
    "KerasTensor",
    "Model",
    "Sequential",
    "__version__",
    "activations",
    "bench",
    "callbacks",
    "checkpoint",
    "constraints",
    "data",
    "datasets",
    "initializers",
    "layers",
    "losses",
    "metrics",
    "models",
    "ops",
    "optimizers",
    "parallel",
    "plot_history",
    "plot_model",
    "random",
    "regularizers",
    "saving",
    "train",
    "utils",
]
