"""`nj.Model(inputs, outputs)`: a functional model, a `Model` over a `Functional` graph module."""

from __future__ import annotations

import inspect
import weakref
from collections.abc import Callable

import jax.numpy as jnp
import numpy as np
from flax import nnx

from nnjax.layers.base import shape_str
from nnjax.layers.functional import Functional, KerasTensor, any_symbolic, keras_operation_order
from nnjax.shell.model import Model


def is_functional_call(*args, **kwargs) -> bool:
    """Whether `Model(*args, **kwargs)` is Keras's functional form `Model(inputs, outputs, name=...)`."""
    if "inputs" in kwargs or "outputs" in kwargs:
        return True
    return bool(args) and any_symbolic(args[:1], {})


# The FunctionalModel of each graph module, so that `layers` shows a nested model as the model it is.
_models: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


class FunctionalModel(Model):
    """What `nj.Model(inputs, outputs, name=...)` returns: Keras's functional model.

    A `Model` (compile/fit/evaluate/predict/save_weights) whose module is a `Functional` graph of layers.
    Called on symbolic tensors it is a layer of another functional model (nesting, with shared weights).

    Args:
      inputs: a symbolic tensor from `nj.Input`, a list or a dict of them.
      outputs: symbolic tensors computed from `inputs`: a tensor, a list or a dict.
      name: the model's name.
    """

    def __init__(self, inputs=None, outputs=None, name: str | None = None, trainable: bool = True, **kwargs):
        if inputs is None or outputs is None:
            raise TypeError("Model(inputs, outputs): a functional model needs both `inputs` and `outputs`")
        if kwargs:
            raise TypeError(f"Model(inputs, outputs): unexpected keyword arguments {sorted(kwargs)}")
        if not trainable:
            raise ValueError("Model(inputs, outputs, trainable=False) is not supported; freeze weights through the optimizer "
                             "(optax.set_to_zero / multi_transform)")
        module = Functional(inputs, outputs, name=name)
        super().__init__(module, name=module.name)
        _models[module] = self
        tensors = module._program.graph["input_tensors"]
        if len(tensors) == 1:
            self._input_spec = (tensors[0].shape, jnp.dtype(tensors[0].dtype))

    # -- Keras's graph attributes -----------------------------------------------------------
    @property
    def inputs(self) -> list[KerasTensor]:
        return list(self.module._program.graph["input_tensors"])

    @property
    def outputs(self) -> list[KerasTensor]:
        return list(self.module._program.graph["output_tensors"])

    @property
    def input(self):
        return self.module._program.graph["inputs"]

    @property
    def output(self):
        return self.module._program.graph["outputs"]

    @property
    def input_names(self) -> list[str]:
        return list(self.module.input_names)

    @property
    def output_names(self) -> list[str]:
        return list(self.module.output_names)

    @property
    def layers(self) -> list:
        """The input layers and every layer once, in Keras's order (by depth from the outputs, deepest first)."""
        module = self.module
        graph = module._program.graph
        inner = {id(layer) for layer in module.layers}
        ordered = keras_operation_order(graph["output_tensors"], graph["input_tensors"])
        return [_models.get(op, op) for op in ordered if id(op) in inner or (isinstance(op, nnx.Module) and op in self.inputs)]

    def compile(self, optimizer="rmsprop", loss=None, metrics=None, loss_weights=None, **kwargs) -> None:
        """`Model.compile`; a model with several outputs needs `loss_fn` until per-output losses exist.

        Raises:
          ValueError: for `loss`, `metrics` or `loss_weights` on a model with several outputs, when
            `Model.compile` does not take per-output losses (`loss_weights`); the message shows `loss_fn`.
        """
        per_output = "loss_weights" in inspect.signature(Model.compile).parameters
        if per_output:
            super().compile(optimizer, loss, metrics, loss_weights=loss_weights, **kwargs)
            return
        several = len(self.outputs) > 1
        if several and (loss is not None or metrics or loss_weights is not None):
            raise ValueError(
                f'compile: model "{self.name}" has {len(self.outputs)} outputs ({", ".join(self.output_names)}); per-output '
                "`loss`, `metrics` and `loss_weights` (lists or dicts) are not supported yet. Pass one objective instead: "
                "compile(optimizer, loss_fn=lambda outputs, batch: ...) where `outputs` is the model's output structure and "
                "`batch[1]` the targets, e.g. the weighted sum of nj.ops.binary_crossentropy(...) terms"
            )
        if loss_weights is not None:
            raise ValueError("compile: `loss_weights` applies to models with several outputs; this model has one")
        super().compile(optimizer, loss, metrics, **kwargs)

    def __call__(self, x, training: bool = False, key=None):
        """On arrays, runs the model eagerly; on symbolic tensors, records it as a layer of another model."""
        if any_symbolic((x,), {}):
            return self.module(x)  # the module holds the current weights (a view of the state)
        return super().__call__(x, training=training, key=key)

    def summary(self, line_length: int | None = None, positions=None, print_fn: Callable[[str], None] | None = None,
                expand_nested: bool = False, show_trainable: bool = False, layer_range=None, flops: bool = False) -> None:
        """Prints Keras's table (layer, output shape, parameters, the layers each is connected to) once; returns None.

        Arguments as `Model.summary`; `summary_text(model)` returns the text.
        """
        del flops
        (print_fn or print)(summary_text(self, expand_nested=expand_nested, show_trainable=show_trainable,
                                         line_length=line_length, positions=positions, layer_range=layer_range))


def _param_count(module) -> int:
    try:
        state = nnx.state(module, nnx.Variable)
    except Exception:  # noqa: BLE001 - a module without state
        return 0
    import jax

    return int(sum(np.prod(np.shape(a)) for a in jax.tree.leaves(state) if np.issubdtype(np.asarray(a).dtype, np.inexact)))


def _tensor_ref(tensor: KerasTensor) -> str:
    node = tensor._ks_node
    if node is None:
        return f"{tensor.name}[0][0]"
    return f"{node.name}[{node.call_index}][{tensor._ks_index}]"


def summary_text(model: FunctionalModel, *, expand_nested: bool = False, show_trainable: bool = False,
                 line_length: int | None = None, positions=None, layer_range=None) -> str:
    """Keras's summary table of a functional model: its inputs and calls in graph order, with their connections."""
    from nnjax.viz import summary as summary_lib

    graph = model.module._program.graph
    rows = []
    for tensor in graph["input_tensors"]:
        rows.append({"name": tensor.name, "layer_name": tensor.name, "type": "InputLayer", "shape": shape_str(tensor.shape),
                     "params": 0, "connected": "-", "trainable": "-"})
    for node in graph["nodes"]:
        params = _param_count(node.op) if node.is_module and node.call_index == 0 else 0
        rows.append({"name": node.name, "layer_name": node.name, "type": node.kind,
                     "shape": ", ".join(shape_str(t.shape) for t in node.outputs), "params": params,
                     "connected": ", ".join(_tensor_ref(t) for t in node.inputs) or "-",
                     "trainable": summary_lib.trainable_mark(node.op, params) if node.is_module else "-"})
        if expand_nested and node.is_module and node.call_index == 0:
            rows += [dict(row, nested=True) for row in summary_lib.nested_rows(node.op, 1)]
    rows = summary_lib.select_range(rows, layer_range)
    return summary_lib.render(model.name, rows, summary_lib.totals(model), connections=True, show_trainable=show_trainable,
                              line_length=line_length, positions=positions)


Model._functional_dispatch = (is_functional_call, FunctionalModel)


__all__ = ["FunctionalModel", "is_functional_call", "summary_text"]
