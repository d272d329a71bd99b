"""Ready models, each a Flax NNX module (an nnjax `Layer`) that infers its input size.

Use one standalone (`logits = gpt(ids)`), in the functional core
(`nj.train.TrainState.create(model, ...)`) or with the Keras-style shell
(`nj.Model(nj.models.ResNet20(), input_shape=(32, 32, 3))`). Each class's docstring gives its
parameter count at the default size.
"""

from nnjax.models.base import Composite, build_chain
from nnjax.models.gpt import GPT, TransformerBlock
from nnjax.models.lenet import LeNet
from nnjax.models.lstm import LSTMClassifier
from nnjax.models.mlp import MLP, Perceptron
from nnjax.models.resnet import Airbench94, BasicBlock, ResNet, ResNet18, ResNet20


def __getattr__(name: str):
    """Keras's `keras.models.Model`, `Sequential`, `load_model`, `save_model`, `model_from_json`, `clone_model`
    (imported on first use)."""
    if name in ("Model", "Sequential"):
        from nnjax import shell

        return getattr(shell, name)
    raise AttributeError(f"module 'nnjax.models' has no attribute {name!r}")


__all__ = [
    "GPT",
    "MLP",
    "Airbench94",
    "BasicBlock",
    "Composite",
    "LSTMClassifier",
    "LeNet",
    "Perceptron",
    "ResNet",
    "ResNet18",
    "ResNet20",
    "TransformerBlock",
    "build_chain",
]
