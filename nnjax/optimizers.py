"""Keras-style optimizer constructors returning optax transformations (see `nnjax.train.optimizers`)."""

from nnjax.train import schedules  # noqa: F401  (Keras: keras.optimizers.schedules.CosineDecay, ...)
from nnjax.train.optimizers import (  # noqa: F401
    OPTIMIZERS,
    SGD,
    Adadelta,
    Adagrad,
    Adam,
    Adamax,
    AdamW,
    Lion,
    Nadam,
    RMSprop,
    build,
    get,
    get_learning_rate,
    set_learning_rate,
)

__all__ = ["OPTIMIZERS", "SGD", "Adadelta", "Adagrad", "Adam", "AdamW", "Adamax", "Lion", "Nadam", "RMSprop", "build", "get",
           "get_learning_rate", "schedules", "set_learning_rate"]
