"""Sharding strategies for `Model.compile(distribution=...)`: `DataParallel`, `FSDP`, `ModelParallel`.

All three are built on `jax.make_mesh`, `NamedSharding` and `jax.jit`: they only
decide where each array of the `TrainState` and of every batch lives, and XLA's
partitioner inserts the collectives (the gradient all-reduce of data
parallelism, the parameter all-gathers of FSDP). The training step itself is the
core's `train_step`, unchanged, so a sharded run computes the same function as a
one-device run; only the order of floating-point sums may differ.

A strategy is the object the shell calls at four points:

- `place_state(state)`: puts every `TrainState` array on the mesh;
- `place_data(arrays)`: puts a device-resident dataset (replicated);
- `place_batches(stacked)`: puts host batches stacked to `(k, B, ...)`, split on `B`;
- `constrain_batch(batch)`: inside the compiled step, splits each batch on its first axis.

The same objects work in a custom loop: `strategy.place_state(state)`,
`strategy.shard_batch(batch)` and `jax.jit(nj.train.train_step)`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
from flax import nnx
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

AxisNames = str | tuple[str, ...]


def make_mesh(shape: Sequence[int] | None = None, axis_names: Sequence[str] = ("data",), *, devices=None) -> Mesh:
    """A device mesh with `Auto` axes (XLA chooses the collectives), via `jax.make_mesh`.

    Args:
      shape: size of each mesh axis; `(len(devices),)` when None (a 1-D mesh).
      axis_names: one name per axis, e.g. `("data",)` or `("data", "model")`.
      devices: the devices to use (all of `jax.devices()` when None).

    Returns:
      A `jax.sharding.Mesh`.

    Raises:
      ValueError: if the shape does not multiply to the number of devices, or the
        numbers of sizes and names differ.

    Example:
      >>> mesh = nj.parallel.make_mesh((2, 4), ("data", "model"))
    """
    devices = list(jax.devices() if devices is None else devices)
    if not devices:
        raise ValueError("make_mesh: expected at least one device; received an empty `devices`")
    axis_names = tuple(axis_names)
    shape = (len(devices),) if shape is None else tuple(int(s) for s in shape)
    if len(shape) != len(axis_names):
        raise ValueError(f"make_mesh: expected one name per mesh axis; received shape {shape} and axis_names {axis_names}")
    if math.prod(shape) != len(devices):
        raise ValueError(f"make_mesh: a mesh of shape {shape} needs {math.prod(shape)} devices; received {len(devices)} devices")
    axis_types = (jax.sharding.AxisType.Auto,) * len(shape)
    return jax.make_mesh(shape, axis_names, axis_types=axis_types, devices=devices)


def _as_mesh(devices, mesh, axis_name: str) -> Mesh:
    if isinstance(devices, Mesh):
        if mesh is not None:
            raise ValueError("pass the mesh once: as the first argument or as mesh=, not both")
        mesh, devices = devices, None
    if mesh is not None:
        if devices is not None:
            raise ValueError("pass either `devices` or `mesh`, not both")
        if not isinstance(mesh, Mesh):
            raise TypeError(f"`mesh` must be a jax.sharding.Mesh; got {type(mesh).__name__}")
        return mesh
    if devices is not None and not isinstance(devices, (list, tuple)):
        raise TypeError(f"`devices` must be a list of jax devices or a jax.sharding.Mesh; got {type(devices).__name__}")
    return make_mesh(None, (axis_name,), devices=devices)


def put(value, sharding: NamedSharding):
    """`jax.device_put` that also works when `sharding` spans other processes' devices.

    On several hosts (`jax.distributed`), every process passes the same full host
    value and contributes the shards its own devices hold.

    Args:
      value: a NumPy array, a scalar or a `jax.Array`.
      sharding: where the result lives.

    Returns:
      A `jax.Array` with `sharding`.
    """
    if sharding.is_fully_addressable or (isinstance(value, jax.Array) and not value.is_fully_addressable):
        return jax.device_put(value, sharding)
    host = np.asarray(value)
    return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])


class Distribution:
    """Base class: a mesh, the axis (or axes) that splits the batch, and state placement.

    Subclasses choose the `PartitionSpec` of each `TrainState` array in
    `state_specs`; batches are always split on their first axis over `data_axis`.

    Args:
      mesh: the device mesh.
      data_axis: the mesh axis name (or tuple of names) the batch is split over.
    """

    def __init__(self, mesh: Mesh, data_axis: AxisNames = "data"):
        names = (data_axis,) if isinstance(data_axis, str) else tuple(data_axis)
        missing = [n for n in names if n not in mesh.axis_names]
        if missing:
            raise ValueError(
                f"{type(self).__name__}: data_axis {data_axis!r} must name axes of the mesh; the mesh has axes "
                f"{tuple(mesh.axis_names)}, received {tuple(missing)}"
            )
        self.mesh = mesh
        self.data_axis = data_axis if isinstance(data_axis, str) else tuple(data_axis)
        self._data_names = names

    # ------------------------------------------------------------------ facts
    @property
    def num_replicas(self) -> int:
        """How many parts each batch is split into (the size of the data axis)."""
        return int(math.prod(self.mesh.shape[n] for n in self._data_names))

    @property
    def devices(self) -> list:
        return list(self.mesh.devices.flat)

    def batch_sharding(self) -> NamedSharding:
        """Sharding of a batch array: first axis split over the data axis."""
        return NamedSharding(self.mesh, P(self.data_axis))

    def replicated(self) -> NamedSharding:
        return NamedSharding(self.mesh, P())

    # ------------------------------------------------------------------ state
    def state_specs(self, state) -> Any:
        """A pytree of `PartitionSpec`s with the structure of `jax.tree.leaves(state)` (a list)."""
        return [P() for _ in jax.tree.leaves(state)]

    def state_shardings(self, state) -> Any:
        """The `NamedSharding` of every array of `state`, as a pytree shaped like `state`."""
        leaves, treedef = jax.tree.flatten(state)
        return jax.tree.unflatten(treedef, [NamedSharding(self.mesh, spec) for spec in self.state_specs(state)])

    def place_state(self, state):
        """Puts every array of a `TrainState` (or any pytree) on the mesh."""
        leaves, treedef = jax.tree.flatten(state)
        specs = self.state_specs(state)
        return jax.tree.unflatten(
            treedef, [put(leaf, NamedSharding(self.mesh, spec)) for leaf, spec in zip(leaves, specs, strict=True)]
        )

    def constrain_state(self, state):
        """Inside `jit`: pins every array of the new state to its placement.

        Without it XLA may choose another layout for an output (e.g. shard a bias
        that `place_state` replicated), and the next call would compile again.
        """
        leaves, treedef = jax.tree.flatten(state)
        specs = self.state_specs(state)
        return jax.tree.unflatten(
            treedef,
            [
                jax.lax.with_sharding_constraint(leaf, NamedSharding(self.mesh, spec))
                for leaf, spec in zip(leaves, specs, strict=True)
            ],
        )

    # ------------------------------------------------------------------ data
    def check_batch_size(self, batch_size: int, what: str = "fit") -> None:
        """Raises ValueError if `batch_size` cannot be split evenly over the data axis.

        Only the full batches must divide: a dataset's last, shorter batch is
        accepted and split unevenly (XLA pads it internally; results are unchanged).
        """
        n = self.num_replicas
        if batch_size % n:
            suggestion = max(n, round(batch_size / n) * n)
            raise ValueError(
                f"{what}: batch_size={batch_size} cannot be split over the {n} devices of {type(self).__name__}'s "
                f"{self.data_axis!r} axis: expected a multiple of {n} (e.g. batch_size={suggestion}); received {batch_size}"
            )

    def place_data(self, arrays):
        """Puts a whole in-memory dataset on every device (batches are gathered from it in the step)."""
        return jax.tree.map(lambda a: put(a, self.replicated()), arrays)

    def place_batches(self, stacked):
        """Puts host batches stacked to `(k, B, ...)`, split on `B` over the data axis.

        A `B` that the data axis does not divide (a dataset's last batch) is placed
        replicated and split unevenly inside the step.
        """
        n = self.num_replicas

        def place(a):
            a = np.asarray(a)
            spec = P(None, self.data_axis) if a.ndim >= 2 and a.shape[1] % n == 0 else P()
            return put(a, NamedSharding(self.mesh, spec))

        return jax.tree.map(place, stacked)

    def shard_batch(self, batch):
        """Puts one batch `(B, ...)` (any pytree) split on its first axis; for custom loops.

        Raises:
          ValueError: if the data axis does not divide `B`.
        """
        sharding = self.batch_sharding()

        def place(a):
            a = np.asarray(a) if not isinstance(a, jax.Array) else a
            if a.ndim == 0:
                return put(a, self.replicated())
            self.check_batch_size(int(a.shape[0]), "shard_batch")
            return put(a, sharding)

        return jax.tree.map(place, batch)

    def constrain_batch(self, batch):
        """Inside `jit`: splits every array of the batch on its first axis over the data axis."""
        sharding = self.batch_sharding()
        return jax.tree.map(lambda a: jax.lax.with_sharding_constraint(a, sharding) if a.ndim >= 1 else a, batch)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(mesh={dict(self.mesh.shape)}, data_axis={self.data_axis!r})"


class DataParallel(Distribution):
    """Data parallelism: parameters replicated, every batch split over the devices.

    XLA averages the gradients across devices (an all-reduce), so training gives
    the same result as on one device. BatchNorm statistics are computed over the
    whole (global) batch, exactly as on one device.

    Args:
      devices: the devices to use (all of `jax.devices()` when None), or a
        `jax.sharding.Mesh`.
      mesh: a mesh to use instead of `devices`.
      data_axis: the mesh axis (or axes) that split the batch; with a mesh of
        several axes, parameters are still replicated over all of them.

    The batch size must be a multiple of the number of devices (checked before
    compiling); a dataset's last, shorter batch is allowed.

    Example:
      >>> model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", distribution=nj.parallel.DataParallel())
      >>> history = model.fit(x, y, batch_size=64, verbose=0)   # 8 examples per device on 8 devices
    """

    def __init__(self, devices: Sequence | Mesh | None = None, *, mesh: Mesh | None = None, data_axis: AxisNames = "data"):
        super().__init__(_as_mesh(devices, mesh, data_axis if isinstance(data_axis, str) else data_axis[0]), data_axis)


def _annotation_specs(state, mesh: Mesh, who: str) -> list:
    """One `PartitionSpec` per leaf of `state`, from Flax partitioning metadata (`nnx.with_partitioning`)."""
    specs_tree = nnx.get_partition_spec(state)
    specs = jax.tree.leaves(specs_tree, is_leaf=lambda x: isinstance(x, P) or x is None)
    leaves = jax.tree.leaves(state)
    if len(specs) != len(leaves):  # metadata we cannot align: fall back to replication
        return [P() for _ in leaves]
    out = []
    for spec, leaf in zip(specs, leaves, strict=True):
        spec = P() if spec is None else spec
        names = [n for entry in spec if entry is not None for n in ((entry,) if isinstance(entry, str) else entry)]
        unknown = [n for n in names if n not in mesh.axis_names]
        if unknown:
            raise ValueError(
                f"{who}: a parameter of shape {tuple(np.shape(leaf))} is annotated with {spec}, but the mesh has axes "
                f"{tuple(mesh.axis_names)}: expected annotations to use mesh axis names; received {tuple(unknown)}"
            )
        out.append(spec)
    return out


def _add_data_axis(spec: P, shape: tuple, data_axis: AxisNames, size: int, min_size: int) -> P:
    """Shards the largest still-unsharded axis that `size` divides over `data_axis` (FSDP)."""
    if math.prod(shape) < min_size or not shape:
        return spec
    entries = list(spec) + [None] * (len(shape) - len(spec))
    used = {n for e in entries if e is not None for n in ((e,) if isinstance(e, str) else e)}
    data_names = (data_axis,) if isinstance(data_axis, str) else tuple(data_axis)
    if used & set(data_names):
        return spec
    candidates = [i for i, (e, d) in enumerate(zip(entries, shape, strict=True)) if e is None and d % size == 0]
    if not candidates:
        return spec
    axis = max(candidates, key=lambda i: (shape[i], -i))
    entries[axis] = data_axis
    return P(*entries)


class FSDP(Distribution):
    """Fully sharded data parallelism: parameters and optimizer state split over the data axis.

    Every array of at least `min_size` elements is split along its largest axis
    that the data axis divides, so each device holds `1/N` of it; smaller arrays
    (biases, scalars) and arrays with no axis divisible by `N` are replicated
    (`state_shardings(state)` shows the layout). Batches are split as in `DataParallel`, and
    XLA gathers each parameter where it is used. The result equals replicated
    training (only the order of floating-point sums may differ).

    On a mesh with more axes (e.g. `("data", "model")`), Flax partitioning
    annotations (`nnx.with_partitioning`) are honoured first and the data axis is
    added on a remaining axis: FSDP combined with model (tensor) parallelism.

    Args:
      devices: the devices (all when None) or a `jax.sharding.Mesh`.
      mesh: a mesh to use instead of `devices`.
      data_axis: the mesh axis that splits the batch and the parameters.
      min_size: arrays with fewer elements stay replicated.

    Example:
      >>> model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", distribution=nj.parallel.FSDP())
    """

    def __init__(
        self, devices: Sequence | Mesh | None = None, *, mesh: Mesh | None = None, data_axis: str = "data", min_size: int = 1024
    ):
        super().__init__(_as_mesh(devices, mesh, data_axis), data_axis)
        if isinstance(min_size, bool) or not isinstance(min_size, int) or min_size < 0:
            raise ValueError(f"FSDP: `min_size` must be a non-negative int; got {min_size!r}")
        self.min_size = min_size

    def state_specs(self, state) -> list:
        base = (
            _annotation_specs(state, self.mesh, "FSDP")
            if len(self.mesh.axis_names) > 1
            else [P() for _ in jax.tree.leaves(state)]
        )
        return [
            _add_data_axis(spec, tuple(np.shape(leaf)), self.data_axis, self.num_replicas, self.min_size)
            for spec, leaf in zip(base, jax.tree.leaves(state), strict=True)
        ]


class ModelParallel(Distribution):
    """Model (tensor) parallelism from Flax partitioning annotations, with data parallelism.

    Parameters annotated with `nnx.with_partitioning(init, (None, "model"))` are
    split over the named mesh axes (and so are their optimizer moments); the rest
    is replicated. Batches are split over `data_axis`.

    Args:
      mesh: a mesh whose axis names the annotations use, e.g.
        `nj.parallel.make_mesh((2, 4), ("data", "model"))`.
      data_axis: the mesh axis that splits the batch.

    Build the module under `jax.set_mesh(mesh)` (Flax places annotated
    parameters when they are created).

    Example:
      >>> class Annotated(nnx.Module):  # a kernel split over the "model" axis
      ...     def __init__(self, rngs):
      ...         init = nnx.with_partitioning(nnx.initializers.lecun_normal(), (None, "model"))
      ...         self.dense = nnx.Linear(8, 4, kernel_init=init, rngs=rngs)
      ...     def __call__(self, x):
      ...         return self.dense(x)
      >>> mesh = nj.parallel.make_mesh((2, 4), ("data", "model"))
      >>> with jax.set_mesh(mesh):
      ...     model = nj.Model(Annotated(rngs=nnx.Rngs(0)))
      >>> model.compile(optimizer="adam", loss="mse", distribution=nj.parallel.ModelParallel(mesh))
    """

    def __init__(self, mesh: Mesh, *, data_axis: AxisNames = "data"):
        if not isinstance(mesh, Mesh):
            raise TypeError(
                f"ModelParallel: `mesh` must be a jax.sharding.Mesh (see nj.parallel.make_mesh); got {type(mesh).__name__}"
            )
        super().__init__(mesh, data_axis)

    def state_specs(self, state) -> list:
        return _annotation_specs(state, self.mesh, "ModelParallel")


__all__ = ["DataParallel", "Distribution", "FSDP", "ModelParallel", "make_mesh", "put"]
