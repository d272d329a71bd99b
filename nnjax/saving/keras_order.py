"""The order in which Keras walks a model: its layers (a functional graph's operations), and their variables.

Keras numbers the groups of a ".keras" weights file, lists a functional config's layers and orders a model's
`weights` (so its `trainable_variables` and its optimizer's slots) in this order.
"""

from __future__ import annotations


def keras_operation_order(graph) -> list:
    """The operations of a graph in Keras's order (see `nnjax.layers.functional.keras_operation_order`)."""
    from nnjax.layers.functional import keras_operation_order as order

    return order(graph["output_tensors"], graph["input_tensors"])


def keras_layer_order(module) -> list:
    """The layers of a Sequential or functional module (input tensors of a graph included) in Keras's order."""
    from flax import nnx

    from nnjax.layers.functional import KerasTensor
    from nnjax.layers.sequential import SequentialModule

    if isinstance(module, SequentialModule):  # its layers, without the input
        return [layer for layer in module.layers if type(layer).__name__ not in ("InputLayer", "SymbolicInput")]
    return [op for op in keras_operation_order(module._program.graph) if isinstance(op, (KerasTensor, nnx.Module))]


def keras_variables(module, layers: list) -> list:
    """The variables of a model level in Keras's `model.weights` order (the weights file's order, nested models
    walked in place): the order of Keras's `trainable_variables` once the non-trainable ones are left out."""
    from nnjax.layers.functional import Functional, KerasTensor
    from nnjax.layers.recurrent import Bidirectional
    from nnjax.layers.sequential import SequentialModule

    found: list = []
    for layer in layers:
        if isinstance(layer, KerasTensor):
            continue
        if isinstance(layer, SequentialModule) or type(layer) is Functional:
            found += keras_variables(layer, keras_layer_order(layer))
        elif isinstance(layer, Bidirectional):
            found += list(layer.forward_layer.weights) + list(layer.backward_layer.weights)
        else:
            found += list(layer.weights)
    return found


__all__ = ["keras_layer_order", "keras_operation_order", "keras_variables"]
