"""Pictures and tables: `summary`, `plot_model`, `plot_history`."""

from nnjax.viz.plot_history import plot_ensemble_history, plot_history
from nnjax.viz.plot_model import plot_model
from nnjax.viz.summary import flops_per_example, summary_text

__all__ = ["flops_per_example", "plot_ensemble_history", "plot_history", "plot_model", "summary_text"]
