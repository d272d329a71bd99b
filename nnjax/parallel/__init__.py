"""Parallel training: ensembles under `jax.vmap`, sharding over device meshes, `shard_map`, multi-host."""

from nnjax.parallel.ensemble import Ensemble
from nnjax.parallel.history import EnsembleHistory
from nnjax.parallel.hyperparams import set_hyperparams
from nnjax.parallel.multihost import initialize, is_main_process, shutdown
from nnjax.parallel.shard_map import data_parallel_step, pmean_gradients, shard_map_train_step
from nnjax.parallel.sharding import FSDP, DataParallel, Distribution, ModelParallel, make_mesh, put

__all__ = [
    "DataParallel",
    "Distribution",
    "Ensemble",
    "EnsembleHistory",
    "FSDP",
    "ModelParallel",
    "data_parallel_step",
    "initialize",
    "is_main_process",
    "make_mesh",
    "plot_ensemble_history",
    "pmean_gradients",
    "put",
    "set_hyperparams",
    "shard_map_train_step",
    "shutdown",
]

from nnjax.viz.plot_history import plot_ensemble_history  # noqa: E402  (drawn by viz; kept here for users of nj.parallel)
