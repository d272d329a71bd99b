"""`LSTMClassifier`: a recurrent sequence classifier."""

from __future__ import annotations

from flax import nnx

from nnjax import layers
from nnjax.layers.utils import check_choice
from nnjax.models.base import Stack
from nnjax.models.mlp import _classifier_activation

_CELLS = {"lstm": layers.LSTM, "gru": layers.GRU, "simple_rnn": layers.SimpleRNN}


class LSTMClassifier(Stack):
    """Stacked (optionally bidirectional) LSTM layers reading a sequence, then a classifier on the last state.

    Inputs are feature sequences `(batch, timesteps, features)`, or integer tokens `(batch, timesteps)`
    when `vocab_size` is given (an `Embedding` comes first).

    Parameters at the default size (28 features per step, e.g. MNIST read row by row, 10 classes):
    **81,674** (`4 * 128 * (28 + 128 + 1)` for the LSTM, `128 * 10 + 10` for the classifier).

    Args:
      num_classes: outputs (10).
      units: LSTM width (128).
      num_layers: stacked recurrent layers (1).
      bidirectional: wrap each recurrent layer in `Bidirectional` (concatenated outputs).
      cell: "lstm" (default), "gru" or "simple_rnn".
      dropout: dropout before the classifier (and between stacked layers).
      vocab_size / embedding_dim: add `Embedding(vocab_size, embedding_dim)` for token inputs.
      classifier_activation: "softmax" by default ("auto"), None for logits.

    Output `(batch, num_classes)`.
    """

    def __init__(self, num_classes: int = 10, units: int = 128, num_layers: int = 1, bidirectional: bool = False,
                 cell: str = "lstm", dropout: float = 0.0, vocab_size: int | None = None, embedding_dim: int = 64,
                 classifier_activation="auto", **kwargs):
        super().__init__(**kwargs)
        cell = check_choice(cell, tuple(_CELLS), "cell", f'LSTMClassifier "{self.name}"')
        stack = []
        if vocab_size is not None:
            stack.append(layers.Embedding(vocab_size, embedding_dim))
        for index in range(num_layers):
            recurrent = _CELLS[cell](units, return_sequences=index < num_layers - 1)
            stack.append(layers.Bidirectional(recurrent) if bidirectional else recurrent)
            if dropout:
                stack.append(layers.Dropout(dropout))
        stack.append(layers.Dense(num_classes, activation=_classifier_activation(classifier_activation, num_classes)))
        self.stack = nnx.List(stack)
        self.token_inputs = vocab_size is not None


__all__ = ["LSTMClassifier"]
