"""`plot_model`: a PNG diagram of a model's graph, drawn with matplotlib (no graphviz needed).

A functional model is drawn as its graph (a DAG: branches side by side, merges with an arrow from
each input); a `Sequential` or any other model as the chain of its layers. `model_graph` returns
the same graph as data (what the picture shows), for tests and for other renderers.
"""

from __future__ import annotations

import dataclasses
import os

from flax import nnx

from nnjax.layers.base import shape_str
from nnjax.viz.summary import _count, layer_rows


@dataclasses.dataclass
class GraphNode:
    """One box of the diagram.

    Attributes:
      id: a unique key.
      name: the layer's (or input's) name.
      kind: the layer's class ("InputLayer" for an input).
      output_shape: the output shape(s), batch axis as None.
      inputs: the ids of the nodes whose outputs this node takes, in call order.
      activation: the layer's activation name, when it has one.
      dtype: the output dtype, when known.
      params: the layer's parameter count.
      sublayers: for a nested model, the `name (kind)` of its layers.
    """

    id: str
    name: str
    kind: str
    output_shape: object = None
    inputs: list = dataclasses.field(default_factory=list)
    activation: str | None = None
    dtype: str | None = None
    params: int = 0
    sublayers: list = dataclasses.field(default_factory=list)


def _activation_name(layer) -> str | None:
    activation = getattr(layer, "activation", None)
    if activation is None:
        return None
    if isinstance(activation, str):
        return activation
    return getattr(activation, "__name__", type(activation).__name__)


def _sublayers(layer) -> list[str]:
    inner = getattr(layer, "layers", None)
    if inner is None or isinstance(inner, (str, bytes)):
        return []
    try:
        return [f"{getattr(sub, 'name', type(sub).__name__)} ({type(sub).__name__})" for sub in inner]
    except TypeError:
        return []


def _functional_graph(model) -> list[GraphNode] | None:
    program = getattr(getattr(model, "module", None), "_program", None)
    graph = getattr(program, "graph", None)
    if graph is None:
        return None
    nodes, ids = [], {}
    for tensor in graph["input_tensors"]:
        ids[id(tensor)] = f"input:{tensor.name}"
        nodes.append(GraphNode(ids[id(tensor)], tensor.name, "InputLayer", tuple(tensor.shape), dtype=str(tensor.dtype)))
    for index, node in enumerate(graph["nodes"]):
        key = f"node:{index}:{node.name}"
        for tensor in node.outputs:
            ids[id(tensor)] = key
        parents = []
        for tensor in node.inputs:
            producer = ids.get(id(tensor))
            if producer is not None and producer not in parents:
                parents.append(producer)
        shapes = [tuple(t.shape) for t in node.outputs]
        op = node.op if node.is_module else None
        nodes.append(GraphNode(
            key, node.name, node.kind, shapes[0] if len(shapes) == 1 else shapes, parents,
            activation=_activation_name(op) if op is not None else None,
            dtype=str(node.outputs[0].dtype) if node.outputs else None,
            params=_count(op, nnx.Variable) if op is not None and node.call_index == 0 else 0,
            sublayers=_sublayers(op) if op is not None else [],
        ))
    return nodes


def model_graph(model) -> list[GraphNode]:
    """The diagram's boxes in topological order: a functional model's DAG, or the chain of a model's layers."""
    model._require_built("plot_model")
    graph = _functional_graph(model)
    if graph is not None:
        return graph
    in_shape = model.input_shape
    nodes = [GraphNode("input", "input", "InputLayer", in_shape)]
    for index, row in enumerate(layer_rows(model)):
        layer = row["layer"]
        nodes.append(GraphNode(f"layer:{index}", row["name"], row["type"], row["output_shape"], [nodes[-1].id],
                               activation=_activation_name(layer), params=row["params"], sublayers=_sublayers(layer)))
    return nodes


def _depths(nodes: list[GraphNode]) -> dict[str, int]:
    """Each node's rank: the longest path from an input (inputs at 0)."""
    depth: dict[str, int] = {}
    for node in nodes:  # topological order
        depth[node.id] = 1 + max((depth[p] for p in node.inputs if p in depth), default=-1)
    return depth


def _label(node: GraphNode, show_shapes, show_dtype, show_layer_names, show_layer_activations, expand_nested) -> tuple[str, str]:
    title = f"{node.name} ({node.kind})" if show_layer_names else node.kind
    lines = []
    if show_shapes and node.output_shape is not None:
        lines.append(f"out: {shape_str(node.output_shape) if not isinstance(node.output_shape, list) else ', '.join(shape_str(s) for s in node.output_shape)}")
    if show_dtype and node.dtype:
        lines.append(f"dtype: {node.dtype}")
    if show_layer_activations and node.activation:
        lines.append(f"activation: {node.activation}")
    if node.kind != "InputLayer":
        lines.append(f"params: {node.params:,}")
    if expand_nested and node.sublayers:
        lines += ["  " + s for s in node.sublayers]
    return title, "\n".join(lines)


def plot_model(model, to_file: str = "model.png", show_shapes: bool = True, show_dtype: bool = False,
               show_layer_names: bool = True, rankdir: str = "TB", expand_nested: bool = False, dpi: int = 120,
               show_layer_activations: bool = False, show_trainable: bool = False):
    """Draws the model's graph with Keras's `plot_model` arguments.

    Args:
      model: a built `nj.Model` / `nj.Sequential` / functional model.
      to_file: PNG path to write.
      show_shapes / show_dtype / show_layer_names / show_layer_activations: what each box shows.
      rankdir: "TB" (top to bottom, the default) or "LR" (left to right).
      expand_nested: list the layers of a nested model inside its box.
      dpi: resolution of the PNG.
      show_trainable: accepted for Keras compatibility (parameter counts are always shown).

    Returns:
      An `IPython.display.Image` of the file inside a notebook (as Keras), else the path written.

    Raises:
      ValueError: if the model is not built, or for an unknown `rankdir`.
    """
    if rankdir not in ("TB", "LR"):
        raise ValueError(f'plot_model: `rankdir` must be "TB" or "LR"; got {rankdir!r}')
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyBboxPatch

    nodes = model_graph(model)
    depth = _depths(nodes)
    ranks: dict[int, list[GraphNode]] = {}
    for node in nodes:
        ranks.setdefault(depth[node.id], []).append(node)
    labels = {n.id: _label(n, show_shapes, show_dtype, show_layer_names, show_layer_activations, expand_nested) for n in nodes}
    lines = max(1 + detail.count("\n") + 1 for _, detail in labels.values())
    box_w, box_h, gap_w, gap_h = 4.2, 0.45 + 0.28 * lines, 0.6, 0.7
    centre = {}
    for rank, members in ranks.items():
        for i, node in enumerate(members):
            across = (i - (len(members) - 1) / 2) * (box_w + gap_w)
            along = -rank * (box_h + gap_h)
            centre[node.id] = (across, along) if rankdir == "TB" else (rank * (box_w + gap_w), (len(members) - 1) / 2 * (box_h + gap_h) - i * (box_h + gap_h))
    xs = [c[0] for c in centre.values()]
    ys = [c[1] for c in centre.values()]
    width = max(xs) - min(xs) + box_w + 1
    height = max(ys) - min(ys) + box_h + 1
    fig, ax = plt.subplots(figsize=(max(4.0, width * 0.9), max(2.0, height * 0.9)))
    ax.set_xlim(min(xs) - box_w / 2 - 0.5, max(xs) + box_w / 2 + 0.5)
    ax.set_ylim(min(ys) - box_h / 2 - 0.5, max(ys) + box_h / 2 + 0.5)
    ax.axis("off")
    for node in nodes:
        x, y = centre[node.id]
        title, detail = labels[node.id]
        color = "#dfe9f5" if node.kind == "InputLayer" else "#f5efdf"
        ax.add_patch(FancyBboxPatch((x - box_w / 2, y - box_h / 2), box_w, box_h, boxstyle="round,pad=0.05", fc=color,
                                    ec="#333333"))
        ax.text(x, y + box_h / 2 - 0.22, title, ha="center", va="center", fontsize=9, weight="bold")
        ax.text(x, y - 0.12, detail, ha="center", va="center", fontsize=7, family="monospace")
        for parent in node.inputs:
            px, py = centre[parent]
            if rankdir == "TB":
                start, end = (px, py - box_h / 2 - 0.03), (x, y + box_h / 2 + 0.03)
            else:
                start, end = (px + box_w / 2 + 0.03, py), (x - box_w / 2 - 0.03, y)
            ax.annotate("", xy=end, xytext=start, arrowprops={"arrowstyle": "->", "color": "#333333"})
    ax.set_title(f'Model: "{model.name}"', fontsize=11)
    directory = os.path.dirname(os.path.abspath(to_file))
    os.makedirs(directory, exist_ok=True)
    fig.savefig(to_file, dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return _notebook_image(to_file)


def _notebook_image(path: str):
    """An `IPython.display.Image` inside a Jupyter kernel (Keras's return value there), else the path."""
    try:
        from IPython import get_ipython
    except ImportError:
        return path
    shell = get_ipython()
    if shell is None or "IPKernelApp" not in getattr(shell, "config", {}):
        return path
    from IPython.display import Image

    return Image(filename=path)


__all__ = ["GraphNode", "model_graph", "plot_model"]
