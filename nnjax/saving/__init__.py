"""Whole-model saving, as Keras 3's `keras.saving`: architecture as JSON, arrays through Orbax, no pickle.

    model.save("run/model")                    # a folder: JSON config + Orbax arrays + optimizer state
    model = nj.models.load_model("run/model")  # compiled again; fit resumes where it stopped
    model.save("model.keras")                  # a Keras 3 file; keras.models.load_model reads it
    model = nj.saving.load_model("keras_made.keras")

Classes and functions are found by name only (nnjax's layers, `custom_objects`, and what
`register_keras_serializable` registered); no code is ever imported or evaluated from a file.
"""

from nnjax import models as _models
from nnjax.saving import graph as _graph  # noqa: F401 - registers the functional graph's (de)serialization
from nnjax.saving.model_io import clone_model, load_model, model_from_json, save_model
from nnjax.saving.objects import (
    SerializationError,
    custom_object_scope,
    deserialize_layer,
    get_registered_name,
    get_registered_object,
    register_keras_serializable,
    serialize_layer,
)

__all__ = [
    "SerializationError",
    "clone_model",
    "custom_object_scope",
    "deserialize_layer",
    "get_registered_name",
    "get_registered_object",
    "load_model",
    "model_from_json",
    "register_keras_serializable",
    "save_model",
    "serialize_layer",
]

# keras.models' saving functions, as nnjax.models' (nnjax.models does not import nnjax.saving: no cycle).
_models.load_model, _models.save_model, _models.model_from_json, _models.clone_model = (
    load_model, save_model, model_from_json, clone_model)
