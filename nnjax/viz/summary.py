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


def summary_text(model, flops: bool = False) -> str:
    rows = layer_rows(model)
    headers = ("Layer (type)", "Output Shape", "Param #")
    body = [(f"{r['name']} ({r['type']})", shape_str(r["output_shape"]) if r["output_shape"] else "?", f"{r['params']:,}") for r in rows]
    widths = [max(len(h), *(len(b[i]) for b in body)) + 2 if body else len(h) + 2 for i, h in enumerate(headers)]
    width = sum(widths)

    def fmt(cells):
        return "".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()

    params, model_state = model._variables()
    trainable = int(sum(np.prod(np.shape(a)) for a in jax.tree.leaves(params)))
    non_trainable = int(sum(np.prod(np.shape(a)) for a in jax.tree.leaves(model_state) if np.issubdtype(np.asarray(a).dtype, np.floating)))
    lines = [f'Model: "{model.name}"', "\u2501" * width, fmt(headers), "\u2501" * width]
    for i, cells in enumerate(body):
        lines.append(fmt(cells))
        lines.append(("\u2500" if i < len(body) - 1 else "\u2501") * width)
    total = trainable + non_trainable
    lines.append(f" Total params: {total:,}")
    lines.append(f" Trainable params: {trainable:,}")
    lines.append(f" Non-trainable params: {non_trainable:,}")
    if flops:
        value = flops_per_example(model)
        lines.append(f" FLOPs per example (forward): {value:,.0f}" if value is not None else " FLOPs per example: unknown")
    return "\n".join(lines)


__all__ = ["flops_per_example", "layer_rows", "summary_text"]
