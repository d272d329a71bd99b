"""Keras's functional API: symbolic tensors (`Input`) and `Functional`, a graph of layers as a Flax NNX module.

    inputs = nj.Input(shape=(784,), name="img")
    x = nj.layers.Dense(64, activation="relu")(inputs)
    outputs = nj.layers.Dense(10)(x)
    model = nj.Model(inputs, outputs, name="mnist_model")

`Input` returns a `KerasTensor`: a shape (batch axis None) and a dtype, no values. Calling a layer, an
`nj.ops` function or an arithmetic operator on symbolic tensors records a node and returns new symbolic
tensors, whose shapes come from abstract evaluation (`jax.eval_shape`, no FLOPs); a layer is built for
an example shape the first time it is called. `Functional(inputs, outputs)` collects the nodes between
the inputs and the outputs, in topological order, into a Flax NNX module whose
`__call__(inputs, training=False, key=None)` runs them: it splits, jits, vmaps and checkpoints like any
other module, and a layer called twice is one layer with one set of weights.

Axes of unknown size (the batch axis, or `Input(shape=(None, 28))`) are found by evaluating every node
abstractly at two example sizes: an output axis whose size differs between the two is unknown (None).
"""

from __future__ import annotations

import functools
import inspect
import weakref
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from nnjax.layers import base as base_lib
from nnjax.layers.base import Layer, shape_str, unique_name
from nnjax.layers.core import InputLayer

# Example sizes that stand in for an unknown axis: (first evaluation, second evaluation). Far enough
# apart that strided layers (pooling, strided convolutions) map them to different sizes.
_BATCH_SIZES = (2, 3)
_AXIS_SIZES = (64, 96)


class KerasTensor:
    """A symbolic tensor: the shape and dtype of a value that a functional model will compute.

    Attributes:
      shape: a tuple; None for an axis of unknown size (the batch axis, variable-length axes).
      dtype: a NumPy dtype.
      name: the tensor's name (an input's name, or that of the layer that produced it).

    Operators (`+`, `-`, `*`, `/`, `**`, `@`, comparisons, `x[:, 0]`) and `nj.ops` functions on symbolic
    tensors record graph nodes. A symbolic tensor has no value: converting it to an array raises.
    """

    _ks_shape: tuple
    _ks_dtype: Any
    _ks_name: str | None
    _ks_node: Any  # the `_Node` that produced it; None for an input
    _ks_index: int  # position among that node's outputs

    def _ks_init(self, shape, dtype, name=None, node=None, index=0) -> None:
        object.__setattr__(self, "_ks_shape", tuple(None if d is None else int(d) for d in shape))
        object.__setattr__(self, "_ks_dtype", np.dtype(jnp.dtype(dtype)))
        object.__setattr__(self, "_ks_name", name)
        object.__setattr__(self, "_ks_node", node)
        object.__setattr__(self, "_ks_index", index)

    def __init__(self, shape, dtype="float32", name=None, node=None, index=0):
        self._ks_init(shape, dtype, name, node, index)

    @property
    def shape(self) -> tuple:
        return self._ks_shape

    @property
    def dtype(self):
        return self._ks_dtype

    @property
    def ndim(self) -> int:
        return len(self._ks_shape)

    @property
    def name(self) -> str | None:  # an InputLayer overrides it with its layer name
        return self._ks_name

    def __repr__(self) -> str:
        return f"<KerasTensor shape={shape_str(self.shape)}, dtype={self.dtype.name}, name={self.name}>"

    # -- no values ----------------------------------------------------------------------
    def _no_value(self, what: str):
        raise TypeError(
            f"{what}: {self!r} is a symbolic tensor of a functional model and has no value. Use it in "
            "layer calls and nj.ops, build nj.Model(inputs, outputs), then call the model on arrays"
        )

    def __array__(self, dtype=None, copy=None):
        self._no_value("converting to an array")

    def __jax_array__(self):
        self._no_value("converting to a JAX array")

    def __bool__(self):
        self._no_value("using as a Python bool (if/while on a symbolic tensor)")

    def __len__(self):
        if self.shape and self.shape[0] is not None:
            return self.shape[0]
        self._no_value("len() of an axis of unknown size")

    def __iter__(self):
        if self.shape and self.shape[0] is not None:
            return iter([self[i] for i in range(self.shape[0])])
        self._no_value("iterating over an axis of unknown size")

    # -- operators record nodes ---------------------------------------------------------
    def __add__(self, other):
        return record_op(jnp.add, (self, other), {}, "add")

    def __radd__(self, other):
        return record_op(jnp.add, (other, self), {}, "add")

    def __sub__(self, other):
        return record_op(jnp.subtract, (self, other), {}, "subtract")

    def __rsub__(self, other):
        return record_op(jnp.subtract, (other, self), {}, "subtract")

    def __mul__(self, other):
        return record_op(jnp.multiply, (self, other), {}, "multiply")

    def __rmul__(self, other):
        return record_op(jnp.multiply, (other, self), {}, "multiply")

    def __truediv__(self, other):
        return record_op(jnp.true_divide, (self, other), {}, "divide")

    def __rtruediv__(self, other):
        return record_op(jnp.true_divide, (other, self), {}, "divide")

    def __floordiv__(self, other):
        return record_op(jnp.floor_divide, (self, other), {}, "floor_divide")

    def __rfloordiv__(self, other):
        return record_op(jnp.floor_divide, (other, self), {}, "floor_divide")

    def __mod__(self, other):
        return record_op(jnp.mod, (self, other), {}, "mod")

    def __pow__(self, other):
        return record_op(jnp.power, (self, other), {}, "power")

    def __rpow__(self, other):
        return record_op(jnp.power, (other, self), {}, "power")

    def __matmul__(self, other):
        return record_op(jnp.matmul, (self, other), {}, "matmul")

    def __rmatmul__(self, other):
        return record_op(jnp.matmul, (other, self), {}, "matmul")

    def __neg__(self):
        return record_op(jnp.negative, (self,), {}, "negative")

    def __pos__(self):
        return self

    def __abs__(self):
        return record_op(jnp.abs, (self,), {}, "absolute")

    def __invert__(self):
        return record_op(jnp.invert, (self,), {}, "invert")

    def __and__(self, other):
        return record_op(jnp.logical_and, (self, other), {}, "logical_and")

    def __or__(self, other):
        return record_op(jnp.logical_or, (self, other), {}, "logical_or")

    def __lt__(self, other):
        return record_op(jnp.less, (self, other), {}, "less")

    def __le__(self, other):
        return record_op(jnp.less_equal, (self, other), {}, "less_equal")

    def __gt__(self, other):
        return record_op(jnp.greater, (self, other), {}, "greater")

    def __ge__(self, other):
        return record_op(jnp.greater_equal, (self, other), {}, "greater_equal")

    def __getitem__(self, index):
        return record_op(_getitem, (self, _Index(index)), {}, "get_item")

    def astype(self, dtype):
        return record_op(_astype, (self, _Static(jnp.dtype(dtype))), {}, "cast")

    @property
    def T(self):  # noqa: N802 - NumPy's name
        return record_op(jnp.transpose, (self,), {}, "transpose")


# `x == y` keeps Python's identity meaning (tensors are dictionary keys); use nj.ops.equal for elementwise.
KerasTensor.__hash__ = object.__hash__


class _Static:
    """A constant argument held as Python data (not traced) in a node: an index, a dtype."""

    __slots__ = ("value",)

    def __init__(self, value):
        self.value = value


class _Index(_Static):
    pass


def _getitem(x, index):
    return x[index]


def _astype(x, dtype):
    return x.astype(dtype)


def is_symbolic(value) -> bool:
    return isinstance(value, KerasTensor)


def any_symbolic(args, kwargs) -> bool:
    """Whether a call's arguments hold a symbolic tensor (at the top level or in a list/tuple/dict)."""
    for value in (*args, *kwargs.values()):
        if isinstance(value, KerasTensor):
            return True
        if isinstance(value, (list, tuple)) and any(isinstance(v, KerasTensor) for v in value):
            return True
        if isinstance(value, dict) and any(isinstance(v, KerasTensor) for v in value.values()):
            return True
    return False


class SymbolicInput(InputLayer, KerasTensor):
    """What `nj.Input` returns: a model input, both a symbolic tensor and an `InputLayer`.

    As a symbolic tensor it starts a functional model; as an `InputLayer` it can be the first entry of
    `nj.Sequential([...])`, as `keras.Input` can.
    """

    def __init__(self, shape: tuple, dtype, name: str | None):
        known = all(d is not None for d in shape[1:])
        super().__init__(tuple(shape[1:]) if known else None, dtype=dtype, name=name or unique_name("input_layer"))
        self._ks_init(shape, dtype, self.name)

    @property
    def name(self):
        return self.__dict__.get("name")

    @name.setter
    def name(self, value):
        self.__dict__["name"] = value

    def __repr__(self) -> str:
        return KerasTensor.__repr__(self)

    __str__ = __repr__

    def __bool__(self):  # a module is truthy; only derived symbolic tensors refuse bool()
        return True

    def __call__(self, x, training: bool = False, key=None):
        return super().__call__(x, training=training, key=key)


def Input(  # noqa: N802 - Keras's name
    shape: Sequence[int | None] | None = None,
    batch_size: int | None = None,
    dtype=None,
    sparse: bool | None = None,
    batch_shape: Sequence[int | None] | None = None,
    name: str | None = None,
    tensor=None,
    optional: bool = False,
) -> SymbolicInput:
    """A model input, as `keras.Input`: a symbolic tensor of shape `(batch_size, *shape)`.

    Args:
      shape: shape of one example, without the batch axis; None for an axis of variable size.
      batch_size: a fixed batch size (None: any).
      dtype: the input's dtype ("float32" by default; "int32" for token ids).
      batch_shape: the full shape, batch axis included (instead of `shape` and `batch_size`).
      name: the input's name (the key of this input when the model is fed a dict).

    Returns:
      A `SymbolicInput` (a `KerasTensor` and an `InputLayer`).

    Raises:
      ValueError: for neither or both of `shape`/`batch_shape`, and for `sparse`, `tensor` or `optional`.

    Example:
      >>> inputs = nj.Input(shape=(None, 28), name="sequence")  # inputs.shape == (None, None, 28)
    """
    if sparse or tensor is not None or optional:
        raise ValueError("Input: `sparse`, `tensor` and `optional` are not supported by nnjax; pass dense arrays")
    if (shape is None) == (batch_shape is None):
        raise ValueError(f"Input: pass exactly one of `shape` and `batch_shape`; got shape={shape!r}, batch_shape={batch_shape!r}")
    if batch_shape is None:
        if isinstance(shape, int):
            shape = (shape,)
        batch_shape = (batch_size,) + tuple(shape)
    batch_shape = tuple(batch_shape)
    for d in batch_shape:
        if d is not None and (isinstance(d, bool) or not isinstance(d, (int, np.integer)) or d < 0):
            raise ValueError(f"Input: every axis must be a non-negative int or None; got shape {batch_shape!r}")
    return SymbolicInput(batch_shape, jnp.dtype(dtype or "float32"), name)


# ---------------------------------------------------------------------------------- recording
class _Node:
    """One recorded call: `op(*args, **kwargs)` on symbolic tensors, producing `outputs`."""

    __slots__ = ("op", "is_module", "treedef", "leaves", "outputs", "out_treedef", "name", "kind", "call_index", "__weakref__")

    def __init__(self, op, is_module, treedef, leaves, name):
        self.op, self.is_module, self.treedef, self.leaves, self.name = op, is_module, treedef, leaves, name
        # The type shown by summary(): the layer's class, or the operation's name in CamelCase ("get_item" -> "GetItem").
        self.kind = type(op).__name__ if is_module else "".join(part.capitalize() for part in name.split("_"))
        self.outputs: list[KerasTensor] = []
        self.out_treedef = None
        self.call_index = 0  # the how-many-th call of this layer (Keras's node index)

    @property
    def inputs(self) -> list[KerasTensor]:
        return [leaf for leaf in self.leaves if isinstance(leaf, KerasTensor)]


_calls_per_module: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _flatten(args, kwargs):
    return jax.tree.flatten((tuple(args), dict(kwargs)), is_leaf=lambda v: isinstance(v, (KerasTensor, _Static)))


def _example(leaves, which: int, extra: dict | None = None) -> list:
    """The leaves with each symbolic tensor replaced by an abstract value of example sizes `which` (0 or 1)."""
    out = []
    for leaf in leaves:
        if isinstance(leaf, KerasTensor):
            shape = tuple(
                (_BATCH_SIZES if axis == 0 else _AXIS_SIZES)[which] if d is None else d for axis, d in enumerate(leaf.shape)
            )
            out.append(jax.ShapeDtypeStruct(shape, leaf.dtype))
        else:
            out.append(leaf)
    return out


def _static_or_traced(leaves) -> list[int]:
    """Positions of the abstract values among `leaves`; every other leaf is a constant of the node."""
    return [i for i, leaf in enumerate(leaves) if isinstance(leaf, jax.ShapeDtypeStruct)]


def _eval_shapes(fn: Callable, treedef, leaves: list) -> list:
    """Output ShapeDtypeStructs of `fn(*args, **kwargs)` at both example sizes: (first, second) leaves + treedef."""
    results = []
    for which in (0, 1):
        example = _example(leaves, which)
        traced = _static_or_traced(example)

        def run(values, example=example, traced=traced):
            filled = list(example)
            for i, v in zip(traced, values):
                filled[i] = v
            filled = [leaf.value if isinstance(leaf, _Static) else leaf for leaf in filled]
            args, kwargs = jax.tree.unflatten(treedef, filled)
            return fn(*args, **kwargs)

        with base_lib._building(jax.random.PRNGKey(0)):  # synthetic example inputs (an Embedding reads zeros as ids)
            out = jax.eval_shape(run, [example[i] for i in traced])
        results.append(out)
    return results


def _symbolic_outputs(results, node: _Node, base_name: str):
    first_leaves, out_treedef = jax.tree.flatten(results[0])
    second_leaves = jax.tree.leaves(results[1])
    outputs = []
    for index, (a, b) in enumerate(zip(first_leaves, second_leaves, strict=True)):
        if not hasattr(a, "shape"):
            raise TypeError(f'"{base_name}" returned {type(a).__name__} on symbolic inputs; expected arrays (or a pytree of arrays)')
        shape = tuple(da if da == db else None for da, db in zip(a.shape, b.shape, strict=True))
        outputs.append(KerasTensor(shape, a.dtype, name=base_name, node=node, index=index))
    node.outputs, node.out_treedef = outputs, out_treedef
    return jax.tree.unflatten(out_treedef, outputs)


def _explain(err: Exception, what: str, inputs: list[KerasTensor]) -> Exception:
    shapes = ", ".join(shape_str(t.shape) for t in inputs)
    if isinstance(err, (jax.errors.ConcretizationTypeError, jax.errors.TracerBoolConversionError,
                        jax.errors.TracerIntegerConversionError, jax.errors.TracerArrayConversionError)):
        return TypeError(
            f"{what} cannot run on symbolic inputs of shape {shapes}: it needs concrete values (Python control "
            f"flow or NumPy on array values). Use jnp/nj.ops (jnp.where, lax.cond) in it, or subclass nj.Model. "
            f"JAX said: {err}"
        )
    return err


def record_op(fn: Callable, args, kwargs, name: str | None = None):
    """Records `fn(*args, **kwargs)` (a pure function of arrays) on symbolic tensors; returns symbolic outputs."""
    leaves, treedef = _flatten(args, kwargs)
    name = name or getattr(fn, "__name__", "op")
    node = _Node(fn, False, treedef, leaves, name)
    try:
        results = _eval_shapes(fn, treedef, leaves)
    except Exception as err:  # noqa: BLE001 - re-raised, with an explanation for tracer errors
        raise _explain(err, f'Operation "{name}"', node.inputs) from err
    node.name = unique_name(name)
    return _symbolic_outputs(results, node, node.name)


def _build_for(layer: Layer, leaves: list, treedef, args) -> None:
    """Builds `layer` for the first example sizes of its symbolic inputs, outside any trace."""
    symbolic = [leaf for leaf in leaves if isinstance(leaf, KerasTensor)]
    from nnjax.layers.merge import _Merge

    if len(symbolic) == 1 or isinstance(layer, _Merge):
        first = symbolic[0]
        example = _example([first], 0)[0]
        if any(d is None for d in first.shape[1:]) and not isinstance(layer, _Merge):
            _check_weights_do_not_depend_on_unknown_axes(layer, first)
        layer.ensure_built(example.shape)
        if len(symbolic) == 1 and any(d is None for d in first.shape[1:]):
            layer.built_input_shape = (None,) + tuple(first.shape[1:])  # accept any size on the unknown axes
        return
    # Several inputs (attention: query, value, key): one concrete call on zeros builds it as it would build itself.
    example = [jnp.zeros(leaf.shape, leaf.dtype) if isinstance(leaf, jax.ShapeDtypeStruct) else leaf
               for leaf in _example(leaves, 0)]
    example = [leaf.value if isinstance(leaf, _Static) else leaf for leaf in example]
    call_args, call_kwargs = jax.tree.unflatten(treedef, example)
    with base_lib._building(jax.random.PRNGKey(0)):
        layer(*call_args, **call_kwargs)


def _check_weights_do_not_depend_on_unknown_axes(layer: Layer, tensor: KerasTensor) -> None:
    """Raises if building `layer` for two sizes of an unknown axis gives different weight shapes."""
    shapes = []
    for which in (0, 1):
        shape = _example([tensor], which)[0].shape

        def build(shape=shape):
            probe = nnx.clone(layer)
            probe.ensure_built(shape, jax.random.PRNGKey(0))
            return nnx.state(probe, nnx.Variable)

        try:
            shapes.append(jax.tree.map(lambda a: a.shape, jax.eval_shape(build)))
        except Exception:  # noqa: BLE001 - a build that cannot run abstractly (a bridged Linen module): not checked
            return
    if shapes[0] != shapes[1]:
        unknown = [axis for axis, d in enumerate(tensor.shape) if axis and d is None]
        raise ValueError(
            f'Layer "{layer.name}" ({type(layer).__name__}) needs to know the size of axis {unknown[-1]} of its '
            f"input to create its weights, but received an input of shape {shape_str(tensor.shape)} (None: unknown). "
            "Give that axis a size in nj.Input(shape=...)"
        )


def record_call(module: nnx.Module, call: Callable, args, kwargs):
    """Records a call of `module` on symbolic tensors (the `Layer.__call__` hook); builds the module first."""
    leaves, treedef = _flatten(args, kwargs)
    name = getattr(module, "name", None) or type(module).__name__
    if isinstance(module, Layer) and not module.built:
        _build_for(module, leaves, treedef, args)
    node = _Node(module, True, treedef, leaves, name)
    graphdef, state = nnx.split(module)
    # A stochastic layer called with training=True at graph-building time evaluates with a stand-in key.
    stand_in_key = kwargs.get("training") is True and "key" in _accepted_kwargs(module) and kwargs.get("key") is None

    def apply(*call_args, **call_kwargs):
        if stand_in_key:
            call_kwargs = {**call_kwargs, "key": jax.random.PRNGKey(0)}
        return call(nnx.merge(graphdef, state), *call_args, **call_kwargs)

    try:
        results = _eval_shapes(apply, treedef, leaves)
    except Exception as err:  # noqa: BLE001 - re-raised, with an explanation for tracer errors
        raise _explain(err, f'Layer "{name}" ({type(module).__name__})', node.inputs) from err
    try:
        count = _calls_per_module.get(module, 0)
        _calls_per_module[module] = count + 1
    except TypeError:
        count = 0
    node.call_index = count
    outputs = _symbolic_outputs(results, node, name)
    if isinstance(module, Layer):
        first_input = args[0] if len(args) == 1 else list(args)
        base_lib._recorded_calls.setdefault(module, []).append((first_input, outputs))
    if isinstance(module, Layer) and module.built_output_shape is None and len(node.outputs) == 1:
        module.built_output_shape = node.outputs[0].shape
    return outputs


# ---------------------------------------------------------------------------------- the graph
class _Step:
    """One node of a compiled graph: which layer (or function) to run on which slots."""

    __slots__ = ("layer_index", "fn", "treedef", "leaves", "out_slots")

    def __init__(self, layer_index, fn, treedef, leaves, out_slots):
        self.layer_index, self.fn, self.treedef, self.leaves, self.out_slots = layer_index, fn, treedef, leaves, out_slots


class _Slot:
    __slots__ = ("index",)

    def __init__(self, index: int):
        self.index = index


class _Program:
    """A functional model's graph as static data (held by the module; equal and hashed by identity)."""

    def __init__(self, steps, input_slots, input_names, input_specs, input_kind, output_slots, out_treedef, output_names,
                 graph):
        self.graph = graph  # the symbolic inputs, outputs and nodes (for summary() and layer connections)
        self.steps = steps
        self.input_slots = input_slots
        self.input_names = input_names
        self.input_specs = input_specs  # ((shape, dtype), ...)
        self.input_kind = input_kind  # "single", "list" or "dict"
        self.output_slots = output_slots
        self.out_treedef = out_treedef
        self.output_names = output_names


def _structure(value, what: str):
    """`(kind, names, tensors)` of a model's inputs or outputs: a tensor, a list/tuple or a dict of tensors."""
    if isinstance(value, KerasTensor):
        return "single", None, [value]
    if isinstance(value, (list, tuple)):
        tensors = list(value)
        kind = "list"
        if isinstance(value, tuple) and what == "outputs":
            kind = "tuple"
    elif isinstance(value, dict):
        tensors = list(value.values())
        kind = "dict"
    else:
        raise TypeError(f"Model: `{what}` must be a symbolic tensor (from nj.Input or a layer call), a list or a dict of them; "
                        f"got {type(value).__name__}")
    for i, t in enumerate(tensors):
        if not isinstance(t, KerasTensor):
            raise TypeError(f"Model: `{what}` entry {i} must be a symbolic tensor (from nj.Input or a layer call); got {t!r}")
    if not tensors:
        raise ValueError(f"Model: `{what}` is empty; expected at least one symbolic tensor")
    return kind, (list(value.keys()) if kind == "dict" else None), tensors


def _topological_nodes(outputs: list[KerasTensor], inputs: list[KerasTensor]) -> list[_Node]:
    """The nodes between `inputs` and `outputs`, each after the nodes it reads from."""
    input_ids = {id(t) for t in inputs}
    order: list[_Node] = []
    state: dict[int, int] = {}  # node id -> 1 visiting, 2 done

    def visit_tensor(tensor: KerasTensor, consumer: str):
        if id(tensor) in input_ids:
            return
        node = tensor._ks_node
        if node is None:
            given = ", ".join(repr(t) for t in inputs)
            raise ValueError(
                f"Graph disconnected: cannot obtain value for {tensor!r} (needed by {consumer}): it is an nj.Input that "
                f"is not among the model's inputs. Inputs given: [{given}]"
            )
        visit_node(node)

    def visit_node(node: _Node):
        mark = state.get(id(node))
        if mark == 2:
            return
        stack = [(node, iter(node.inputs))]
        state[id(node)] = 1
        while stack:
            current, pending = stack[-1]
            advanced = False
            for tensor in pending:
                if id(tensor) in input_ids:
                    continue
                parent = tensor._ks_node
                if parent is None:
                    visit_tensor(tensor, f'"{current.name}"')
                if state.get(id(parent)) == 2:
                    continue
                state[id(parent)] = 1
                stack.append((parent, iter(parent.inputs)))
                advanced = True
                break
            if not advanced:
                stack.pop()
                state[id(current)] = 2
                order.append(current)

    for tensor in outputs:
        visit_tensor(tensor, "the model's outputs")
    return order


def keras_operation_order(outputs: list[KerasTensor], inputs: list[KerasTensor]) -> list:
    """The graph's operations in Keras's order: each input tensor (standing for its `InputLayer`), each layer
    once (however often it is called) and each call of a plain operation (`jnp`/`nj.ops` on symbolic tensors), by depth from the outputs (deepest first), ties in the order a depth-first walk from
    the outputs first meets them (Keras 3's `keras.src.ops.function.map_graph`).

    This order is Keras's `model.layers`, hence `model.weights`/`get_weights()`, its config's layer list and the
    numbering of the groups of its `.keras` weights file.
    """
    input_ids = {id(t): t for t in inputs}
    first_seen: dict[int, int] = {}  # op (or input tensor) id -> traversal index
    keys: dict[int, object] = {}  # op id -> the op or input tensor
    finished: set[int] = set()
    walk: list = []  # nodes (and input tensors) from the inputs to the outputs

    def op_of(item):  # an input tensor stands for its InputLayer; a layer is one operation however often it is called
        if id(item) in input_ids:
            return item
        return item.op if item.is_module else item

    def visit(tensor):
        item = tensor if id(tensor) in input_ids else tensor._ks_node
        if item is None or id(item) in finished:
            return
        op = op_of(item)
        if id(op) not in first_seen:
            first_seen[id(op)] = len(first_seen)
            keys[id(op)] = op
        stack = [(item, iter(() if item is tensor else item.inputs))]
        while stack:
            current, pending = stack[-1]
            for child in pending:
                child_item = child if id(child) in input_ids else child._ks_node
                if child_item is None or id(child_item) in finished:
                    continue
                child_op = op_of(child_item)
                if id(child_op) not in first_seen:
                    first_seen[id(child_op)] = len(first_seen)
                    keys[id(child_op)] = child_op
                stack.append((child_item, iter(() if child_item is child else child_item.inputs)))
                break
            else:
                stack.pop()
                finished.add(id(current))
                walk.append(current)

    for tensor in outputs:
        visit(tensor)
    node_depth: dict[int, int] = {}
    op_depth: dict[int, int] = {}
    for item in reversed(walk):
        depth = node_depth.setdefault(id(item), 0)
        op = op_of(item)
        depth = max(depth, op_depth.get(id(op), 0))
        op_depth[id(op)] = node_depth[id(item)] = depth
        if id(item) in input_ids:
            continue
        for tensor in item.inputs:
            parent = tensor if id(tensor) in input_ids else tensor._ks_node
            if parent is not None and id(parent) in finished:
                node_depth[id(parent)] = max(depth + 1, node_depth.get(id(parent), 0))
    for tensor in inputs:  # inputs no output depends on still count, at depth 0 (Keras keeps unused InputLayers)
        if id(tensor) not in op_depth:
            op_depth[id(tensor)], keys[id(tensor)], first_seen[id(tensor)] = 0, tensor, -1
    order = sorted(op_depth, key=lambda k: (-op_depth[k], first_seen[k]))
    return [keys[k] for k in order]


class Functional(Layer):
    """A graph of layers between symbolic inputs and outputs, as one Flax NNX module (Keras's functional model).

    Args:
      inputs: a symbolic tensor from `nj.Input`, a list or a dict of them.
      outputs: symbolic tensors computed from `inputs` (a tensor, a list or a dict).
      name: the model's name.

    `__call__(inputs, training=False, key=None)` takes arrays in the structure of `inputs` (a list in
    order, or a dict keyed by input name; a dict also works for list inputs) and returns arrays in the
    structure of `outputs`. Layer node `i` gets the key `fold_in(key, i)`. Inputs whose dtype is a float
    type are cast to the declared input dtype, as Keras does; integer inputs pass unchanged.

    Raises:
      ValueError: when an output cannot be computed from the inputs ("Graph disconnected").
    """

    _checked_axes = ()

    def __init__(self, inputs, outputs, *, name: str | None = None):
        super().__init__(name=name or unique_name("functional"))
        in_kind, in_keys, in_tensors = _structure(inputs, "inputs")
        out_kind, _, out_tensors = _structure(outputs, "outputs")
        if len({id(t) for t in in_tensors}) != len(in_tensors):
            raise ValueError("Model: the same symbolic tensor appears twice in `inputs`")
        nodes = _topological_nodes(out_tensors, in_tensors)
        slots: dict[int, int] = {id(t): i for i, t in enumerate(in_tensors)}
        modules: list[nnx.Module] = []
        module_index: dict[int, int] = {}
        steps = []
        for node in nodes:
            leaves = []
            for leaf in node.leaves:
                if isinstance(leaf, KerasTensor):
                    leaves.append(_Slot(slots[id(leaf)]))
                else:
                    leaves.append(leaf)
            out_slots = []
            for tensor in node.outputs:
                slots[id(tensor)] = len(slots)
                out_slots.append(slots[id(tensor)])
            if node.is_module:
                if id(node.op) not in module_index:
                    module_index[id(node.op)] = len(modules)
                    modules.append(node.op)
                steps.append(_Step(module_index[id(node.op)], None, node.treedef, tuple(leaves), tuple(out_slots)))
            else:
                steps.append(_Step(None, node.op, node.treedef, tuple(leaves), tuple(out_slots)))
        names = tuple(in_keys) if in_kind == "dict" else tuple(t.name for t in in_tensors)
        out_structure = {"single": out_tensors[0], "list": out_tensors, "tuple": tuple(out_tensors)}.get(out_kind)
        if out_kind == "dict":
            out_structure = dict(outputs)
        out_leaves, out_treedef = jax.tree.flatten(out_structure, is_leaf=lambda v: isinstance(v, KerasTensor))
        out_tensors = list(out_leaves)  # a dict's outputs in the pytree's (sorted-key) order
        output_names = tuple(sorted(outputs)) if out_kind == "dict" else tuple(
            (t._ks_node.name if t._ks_node is not None else t.name) for t in out_tensors)
        self.layers = nnx.List(modules)
        position = {id(m): i for i, m in enumerate(modules)}
        self._keras_order = tuple(position[id(op)] for op in keras_operation_order(out_tensors, in_tensors)
                                  if id(op) in position)  # fmt: skip
        self._program = _Program(
            steps=tuple(steps),
            input_slots=tuple(range(len(in_tensors))),
            input_names=names,
            input_specs=tuple((t.shape, t.dtype) for t in in_tensors),
            input_kind=in_kind,
            output_slots=tuple(slots[id(t)] for t in out_tensors),
            out_treedef=out_treedef,
            output_names=output_names,
            graph={"inputs": inputs, "outputs": outputs, "nodes": nodes, "input_tensors": in_tensors,
                   "output_tensors": out_tensors},
        )
        self.built = True
        single_shape = in_tensors[0].shape if in_kind == "single" else None
        self.built_input_shape = single_shape
        self.built_output_shape = out_tensors[0].shape if out_kind == "single" else None

    def _sublayers(self) -> list:
        """The layers in Keras's order (what `weights` and `get_weights()` follow), each once."""
        order = getattr(self, "_keras_order", None)
        if order is None or len(order) != len(self.layers):
            return list(self.layers)
        return [self.layers[i] for i in order]

    # -- inputs -------------------------------------------------------------------------
    @property
    def input_names(self) -> tuple:
        return self._program.input_names

    @property
    def output_names(self) -> tuple:
        return self._program.output_names

    def _flat_inputs(self, inputs) -> list:
        program = self._program
        names = program.input_names
        if program.input_kind == "single":
            if isinstance(inputs, dict) and len(inputs) == 1:
                inputs = next(iter(inputs.values()))
            elif isinstance(inputs, (list, tuple)) and len(inputs) == 1:
                inputs = inputs[0]
            flat = [inputs]
        elif isinstance(inputs, dict):
            missing = [n for n in names if n not in inputs]
            if missing:
                raise ValueError(
                    f'Model "{self.name}": the input dict has no entry for input(s) {missing}; expected keys {list(names)}, '
                    f"received keys {list(inputs)}"
                )
            flat = [inputs[n] for n in names]
        elif isinstance(inputs, (list, tuple)):
            if len(inputs) != len(names):
                raise ValueError(
                    f'Model "{self.name}" expects {len(names)} inputs ({", ".join(map(str, names))}); received {len(inputs)}'
                )
            flat = list(inputs)
        elif len(names) == 1:  # one input declared as a list (`nj.Model([inputs], ...)`): Keras accepts the array itself
            flat = [inputs]
        else:
            raise ValueError(
                f'Model "{self.name}" expects {len(names)} inputs ({", ".join(map(str, names))}) as a list or a dict keyed '
                f"by input name; received a single {type(inputs).__name__}"
            )
        out = []
        for value, (shape, dtype), name in zip(flat, program.input_specs, names, strict=True):
            value = jnp.asarray(value) if not hasattr(value, "shape") else value
            if len(value.shape) != len(shape) or any(e is not None and e != g for e, g in zip(shape[1:], value.shape[1:])):
                raise ValueError(
                    f'Input "{name}" of model "{self.name}" is incompatible with the model: expected shape {shape_str(shape)}, '
                    f"received input with shape {shape_str((None,) + tuple(value.shape[1:]))}"
                )
            if jnp.issubdtype(value.dtype, jnp.floating) and jnp.issubdtype(dtype, jnp.floating) and value.dtype != dtype:
                value = value.astype(dtype)
            out.append(value)
        return out

    # -- running ------------------------------------------------------------------------
    def __call__(self, inputs, training: bool = False, key=None):
        """Runs the graph on arrays (see the class docstring)."""
        program = self._program
        values: dict[int, Any] = dict(zip(program.input_slots, self._flat_inputs(inputs), strict=True))
        for index, step in enumerate(program.steps):
            leaves = []
            for leaf in step.leaves:
                if isinstance(leaf, _Slot):
                    leaves.append(values[leaf.index])
                elif isinstance(leaf, _Static):
                    leaves.append(leaf.value)
                else:
                    leaves.append(leaf)
            args, kwargs = jax.tree.unflatten(step.treedef, leaves)
            if step.layer_index is None:
                out = step.fn(*args, **kwargs)
            else:
                step_key = None if key is None else jax.random.fold_in(key, index)
                out = call_layer(self.layers[step.layer_index], args, kwargs, training=training, key=step_key)
            for slot, value in zip(step.out_slots, jax.tree.leaves(out), strict=True):
                values[slot] = value
        return jax.tree.unflatten(program.out_treedef, [values[s] for s in program.output_slots])

    def call(self, inputs, *, training=False, key=None):
        return self(inputs, training=training, key=key)

    def check_host_inputs(self, x) -> None:
        """Host-side checks (Embedding id ranges) of the layers that read an input directly."""
        try:
            flat = self._flat_inputs(x) if not isinstance(x, (list, tuple, dict)) or self._program.input_kind != "single" else [x]
        except ValueError:
            return
        for step in self._program.steps:
            if step.layer_index is None:
                continue
            slots = [leaf.index for leaf in step.leaves if isinstance(leaf, _Slot)]
            layer = self.layers[step.layer_index]
            if len(slots) == 1 and slots[0] < len(flat) and isinstance(layer, Layer):
                layer.check_host_inputs(np.asarray(flat[slots[0]]))

    def compute_output_shape(self, input_shape):
        return self.built_output_shape

    def get_config(self) -> dict:
        return {"name": self.name}


def _accepted_kwargs(module) -> frozenset:
    return _accepted_by_type(type(module))


@functools.cache
def _accepted_by_type(module_type: type) -> frozenset:
    try:
        params = inspect.signature(module_type.__call__).parameters
    except (TypeError, ValueError):
        return frozenset()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return frozenset({"training", "key"})
    return frozenset(params)


def call_layer(module: nnx.Module, args, kwargs, *, training: bool, key=None):
    """Calls a layer of a graph with its recorded arguments, adding the mode and a key where it takes them.

    A `training=`/`key=` recorded at graph-building time (`Dropout(0.5)(x, training=True)`) wins.
    """
    accepted = _accepted_kwargs(module)
    kwargs = dict(kwargs)
    if "training" not in kwargs and "deterministic" not in kwargs:
        if "training" in accepted:
            kwargs["training"] = training
        elif "deterministic" in accepted:
            kwargs["deterministic"] = not training
        else:
            module.train() if training else module.eval()
    if key is not None and "key" not in kwargs and "rngs" not in kwargs and "rng" not in kwargs:
        if "key" in accepted:
            kwargs["key"] = key
        elif "rngs" in accepted:
            kwargs["rngs"] = nnx.Rngs(key)
    return module(*args, **kwargs)


def functional_layers(module: Functional) -> list:
    """The layers of a functional module in the order they are first called."""
    return list(module.layers)


base_lib._symbolic_hook = (any_symbolic, record_call)

from nnjax import activations as _activations  # noqa: E402

_activations._symbolic_recorder = record_op  # nj.activations.relu(t) on a symbolic tensor records a node


__all__ = ["Functional", "Input", "KerasTensor", "SymbolicInput", "any_symbolic", "call_layer", "is_symbolic", "record_call",
           "record_op"]
