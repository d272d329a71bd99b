"""`plot_model`: a PNG diagram of a model's layers, drawn with matplotlib (no graphviz needed)."""

from __future__ import annotations

import os

from nnjax.layers.base import shape_str
from nnjax.viz.summary import layer_rows


def plot_model(model, to_file: str = "model.png", show_shapes: bool = True, show_layer_names: bool = True,
               show_dtype: bool = False, dpi: int = 120) -> str:
    """Draws the model's layers top to bottom, with input and output shapes.

    Args:
      model: a built `nj.Model` / `nj.Sequential`.
      to_file: PNG path to write.
      show_shapes: print input/output shapes in each box.
      show_layer_names: print layer names next to their types.

    Returns:
      The path written.

    Raises:
      ValueError: if the model is not built.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyBboxPatch

    model._require_built("plot_model")
    rows = layer_rows(model)
    in_shape = model.input_shape
    entries = [{"title": "Input", "detail": f"shape: {shape_str(in_shape)}" if in_shape else ""}]
    prev = in_shape
    for r in rows:
        title = f"{r['name']} ({r['type']})" if show_layer_names else r["type"]
        detail = ""
        if show_shapes:
            detail = f"in: {shape_str(r['input_shape'] or prev) if (r['input_shape'] or prev) else '?'}   out: {shape_str(r['output_shape']) if r['output_shape'] else '?'}"
        detail += f"\nparams: {r['params']:,}"
        entries.append({"title": title, "detail": detail})
        prev = r["output_shape"]
    box_h, gap, width = 1.0, 0.6, 6.0
    height = len(entries) * (box_h + gap)
    fig, ax = plt.subplots(figsize=(width, max(2.0, height * 0.9)))
    ax.set_xlim(0, 10)
    ax.set_ylim(0, height)
    ax.axis("off")
    for i, entry in enumerate(entries):
        y = height - (i + 1) * (box_h + gap) + gap / 2
        color = "#dfe9f5" if i == 0 else "#f5efdf"
        ax.add_patch(FancyBboxPatch((1, y), 8, box_h, boxstyle="round,pad=0.05", fc=color, ec="#333333"))
        ax.text(5, y + box_h * 0.68, entry["title"], ha="center", va="center", fontsize=10, weight="bold")
        ax.text(5, y + box_h * 0.28, entry["detail"], ha="center", va="center", fontsize=8, family="monospace")
        if i < len(entries) - 1:
            ax.annotate("", xy=(5, y - gap + 0.05), xytext=(5, y - 0.05), arrowprops={"arrowstyle": "->", "color": "#333333"})
    ax.set_title(f'Model: "{model.name}"', fontsize=11)
    directory = os.path.dirname(os.path.abspath(to_file))
    os.makedirs(directory, exist_ok=True)
    fig.savefig(to_file, dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return to_file


__all__ = ["plot_model"]
