"""`Model.summary()`: Keras's table of layers, output shapes and parameter counts."""

from __future__ import annotations

import jax
import numpy as np
from flax import nnx

from nnjax.layers.base import Layer, shape_str


def _count(module, kind) -> int:
    try:
        state = nnx.state(module, kind)
    except Exception:  # noqa: BLE001 - an unbuilt layer has no state
        return 0
    return int(sum(np.prod(np.shape(a)) for a in jax.tree.leaves(state)))


def layer_rows(model) -> list[dict]:
    """One dict per layer: name, type, output shape, parameter count."""
    rows = []
    for layer in model.layers:
        name = getattr(layer, "name", type(layer).__name__)
        out = getattr(layer, "built_output_shape", None) if isinstance(layer, Layer) else None
        if layer is model.module and out is None:
            out = model.output_shape
        rows.append({
            "name": name,
            "type": type(layer).__name__,
            "input_shape": getattr(layer, "built_input_shape", None),
            "output_shape": out,
            "params": _count(layer, nnx.Variable),
            "layer": layer,
        })
    return rows


def flops_per_example(model) -> float | None:
    """FLOPs of one forward pass per example, from XLA's cost analysis of the compiled predict step."""
    from nnjax.train import steps

    if model.input_shape is None:
        return None
    batch = 8
    spec = jax.ShapeDtypeStruct((batch,) + tuple(model.input_shape[1:]), model._input_spec[1])
    compiled = jax.jit(steps.predict_step).lower(model._inference_state(), spec).compile()
    cost = compiled.cost_analysis()
    if isinstance(cost, (list, tuple)):
        cost = cost[0] if cost else {}
    flops = (cost or {}).get("flops")
    return None if flops is None else float(flops) / batch


KERAS_TYPES = {"SequentialModule": "Sequential", "FunctionalModel": "Functional", "SymbolicInput": "InputLayer"}


def type_name(layer) -> str:
    """The class name Keras shows for a layer ("Sequential" for a nested Sequential's module)."""
    return KERAS_TYPES.get(type(layer).__name__, type(layer).__name__)


def trainable_mark(layer, params: int) -> str:
    """Keras's "Trainable" column: "Y" / "N" for a layer with weights, "-" without."""
    if not params:
        return "-"
    return "Y" if getattr(layer, "trainable", True) else "N"


def _nested_module(layer):
    """The module of a nested Sequential or functional model (None for a plain layer)."""
    from nnjax.layers.functional import Functional
    from nnjax.layers.sequential import SequentialModule

    module = getattr(layer, "_module", layer)  # an nj.Model wrapper: its module
    return module if isinstance(module, (SequentialModule, Functional)) else None


def nested_rows(layer, level: int) -> list[dict]:
    """Rows for the layers inside a nested model, indented as Keras's `expand_nested` ("   └ " per level)."""
    from nnjax.layers.functional import Functional

    module = _nested_module(layer)
    if module is None:
        return []
    prefix = "   " * level + "\u2514 "
    rows = []
    if isinstance(module, Functional):
        graph = module._program.graph
        for tensor in graph["input_tensors"]:
            rows.append({"name": f"{prefix}{tensor.name}", "type": "InputLayer", "shape": shape_str(tensor.shape), "params": 0,
                         "connected": "-", "trainable": "-"})
        children = [(node.op, ", ".join(shape_str(t.shape) for t in node.outputs)) for node in graph["nodes"]
                    if node.is_module and node.call_index == 0]
    else:
        children = [(child, shape_str(child.built_output_shape) if getattr(child, "built_output_shape", None) else "?")
                    for child in module.layers if type(child).__name__ not in ("InputLayer", "SymbolicInput")]
    for child, shape in children:
        params = _count(child, nnx.Variable)
        rows.append({"name": f"{prefix}{getattr(child, 'name', type(child).__name__)}", "type": type_name(child),
                     "shape": shape, "params": params, "connected": "-", "trainable": trainable_mark(child, params)})
        rows += nested_rows(child, level + 1)
    return rows


def select_range(rows: list[dict], layer_range) -> list[dict]:
    """The top-level rows from the first matching `layer_range[0]` to the last matching `layer_range[1]` (Keras's rule:
    `re.match` on layer names, both ends included), each with the nested rows that follow it.

    Raises:
      ValueError: for a `layer_range` that is not two strings or that matches no layer (Keras's messages).
    """
    import re

    if layer_range is None:
        return rows
    if len(layer_range) != 2:
        raise ValueError(f"layer_range must be a list or tuple of length 2. Received: layer_range = {layer_range} of length "
                         f"{len(layer_range)}")
    if not all(isinstance(name, str) for name in layer_range):
        raise ValueError(f"layer_range should contain string type only. Received: {layer_range}")
    top = [i for i, row in enumerate(rows) if not row.get("nested")]
    lower = [i for i in top if re.match(layer_range[0], rows[i]["layer_name"])]
    upper = [i for i in top if re.match(layer_range[1], rows[i]["layer_name"])]
    if not lower or not upper:
        raise ValueError(f"Passed layer_names do not match the layer names in the model. Received: {layer_range} (top-level "
                         f"layers: {[rows[i]['layer_name'] for i in top]})")
    first, last = (min(upper), max(lower)) if min(lower) > max(upper) else (min(lower), max(upper))
    end = next((i for i in top if i > last), len(rows))
    return rows[first:end]


def _widths(line_length, positions, columns: int, sequential_like: bool, show_trainable: bool) -> list[int]:
    """Column widths from Keras's `line_length` and `positions` (relative when all are <= 1, else absolute)."""
    default = 88 if sequential_like else 108
    positions = list(positions or ([0.45, 0.80, 1.0] if sequential_like else [0.3, 0.56, 0.74, 1.0]))
    if show_trainable:
        default += 12
        positions = [p * 0.90 for p in positions] + [1.0] if positions[-1] <= 1 else positions + [positions[-1] + 12]
    line_length = line_length or default
    if len(positions) != columns:
        raise ValueError(f"summary: `positions` must give {columns - show_trainable} column ends (one per column: "
                         f"{'layer, shape, params' if sequential_like else 'layer, shape, params, connections'}); "
                         f"received {len(positions) - show_trainable}")
    ends = [int(p * line_length) for p in positions] if positions[-1] <= 1 else [int(p) for p in positions]
    widths = [end - start for start, end in zip([0, *ends[:-1]], ends, strict=True)]
    if min(widths) < 4:
        raise ValueError(f"summary: insufficient width to print the summary: columns of {widths} characters from "
                         f"line_length={line_length} and positions={positions}; each needs at least 4")
    return widths


def render(title: str, rows: list[dict], totals: tuple[int, int], *, connections: bool, show_trainable: bool = False,
           line_length: int | None = None, positions=None) -> str:
    """The summary table: one line per row (cells wrapped to fixed columns when `line_length` / `positions` are given)."""
    import textwrap

    headers = ["Layer (type)", "Output Shape", "Param #"] + (["Connected to"] if connections else [])
    headers += ["Trainable"] if show_trainable else []
    body = []
    for row in rows:
        cells = [f"{row['name']} ({row['type']})", row["shape"], f"{row['params']:,}"]
        cells += [row.get("connected") or "-"] if connections else []
        cells += [row["trainable"]] if show_trainable else []
        body.append(cells)
    if line_length is None and positions is None:
        widths = [max(len(h), *(len(b[i]) for b in body)) + 2 if body else len(h) + 2 for i, h in enumerate(headers)]
    else:
        widths = _widths(line_length, positions, len(headers), not connections, show_trainable)
    width = sum(widths)

    def lines_of(cells):
        wrapped = [textwrap.wrap(c, max(w - 1, 1), break_long_words=True) or [""] for c, w in zip(cells, widths, strict=True)]
        height = max(len(parts) for parts in wrapped)
        return ["".join((parts[i] if i < len(parts) else "").ljust(w) for parts, w in zip(wrapped, widths, strict=True)).rstrip()
                for i in range(height)]

    lines = [f'Model: "{title}"', "\u2501" * width, *lines_of(headers), "\u2501" * width]
    for i, cells in enumerate(body):
        lines += lines_of(cells)
        lines.append(("\u2500" if i < len(body) - 1 else "\u2501") * width)
    trainable, non_trainable = totals
    lines.append(f" Total params: {trainable + non_trainable:,}")
    lines.append(f" Trainable params: {trainable:,}")
    lines.append(f" Non-trainable params: {non_trainable:,}")
    return "\n".join(lines)


def totals(model) -> tuple[int, int]:
    """`(trainable, non_trainable)` parameter counts of a model (non-trainable: floating model state)."""
    from nnjax.train import freeze

    params, model_state = model._variables()
    flags = freeze.trainable_leaves(model.module, params)  # a frozen layer's (`trainable = False`) weights do not train
    sizes = [int(np.prod(np.shape(a))) for a in jax.tree.leaves(params)]
    trainable = sum(size for i, size in enumerate(sizes) if flags is None or flags[i])
    non_trainable = sum(sizes) - trainable + int(sum(np.prod(np.shape(a)) for a in jax.tree.leaves(model_state)
                                                     if np.issubdtype(np.asarray(a).dtype, np.inexact)))
    return trainable, non_trainable


def summary_text(model, flops: bool = False, *, expand_nested: bool = False, show_trainable: bool = False,
                 line_length: int | None = None, positions=None, layer_range=None) -> str:
    """Keras's `model.summary()` table of a (non-functional) model as text; see `Model.summary` for the arguments."""
    rows = []
    for r in layer_rows(model):
        layer = r["layer"]
        rows.append({"name": r["name"], "layer_name": r["name"], "type": type_name(layer),
                     "shape": shape_str(r["output_shape"]) if r["output_shape"] else "?", "params": r["params"],
                     "trainable": trainable_mark(layer, r["params"])})
        if expand_nested:
            rows += [dict(row, nested=True) for row in nested_rows(layer, 1)]
    rows = select_range(rows, layer_range)
    text = render(model.name, rows, totals(model), connections=False, show_trainable=show_trainable,
                  line_length=line_length, positions=positions)
    if flops:
        value = flops_per_example(model)
        text += "\n" + (f" FLOPs per example (forward): {value:,.0f}" if value is not None else " FLOPs per example: unknown")
    return text


__all__ = ["flops_per_example", "layer_rows", "nested_rows", "render", "select_range", "summary_text", "totals", "type_name"]
