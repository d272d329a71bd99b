"""Pictures and tables: `summary`, `plot_model`."""

from nnjax.viz.plot_model import plot_model
from nnjax.viz.summary import flops_per_example, summary_text

__all__ = ["flops_per_example", "plot_model", "summary_text"]
