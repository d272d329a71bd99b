"""Keras's weight methods of a model: `get_weights`, `set_weights`, `save_weights`, `load_weights`, `count_params`.

The weights are read from and written to the `TrainState` when the model has one (after
`compile`), else to the module: the state is the one place they live during and after training.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx


class WeightsMixin:
    """Weight access for `Model` (and `Ensemble`, whose arrays carry a leading member axis)."""

    _stacked_weights = False  # an Ensemble: its state's arrays carry a member axis that its module's do not

    def _variables(self):
        """`(params, model_state)` from the train state if there is one, else from the module."""
        if self._state is not None:
            state = self.state
            return state.params, state.model_state
        _, params, model_state = nnx.split(self._module, nnx.Param, ...)
        return params, model_state

    def _set_variables(self, params, model_state) -> None:
        if self._state is not None:
            self.state = self.execution.place_state(self.state.replace(params=params, model_state=model_state))
        else:
            nnx.update(self._module, params, model_state)

    def _keras_layer(self):
        """The module when it is an nnjax `Layer` (whose `weights` are in Keras's order), else None."""
        from nnjax.layers.base import Layer

        module = self.module  # holds the current weights
        return module if isinstance(module, Layer) else None

    @property
    def weights(self) -> list:
        """Every variable, in Keras's order (layer by layer, each layer's in creation order), holding current values.

        A model of a plain Flax module lists its variables in the module's graph order.
        """
        self._require_built("weights")
        layer = self._keras_layer()
        if layer is not None:
            return layer.weights
        return [v for _, v in nnx.iter_graph(self.module) if isinstance(v, nnx.Variable)]

    @property
    def trainable_weights(self) -> list:
        """The `nnx.Param`s of `weights` that the optimizer trains (Keras's `trainable_weights`)."""
        layer = self._keras_layer() if self.built else None
        if layer is not None:
            return layer.trainable_weights
        return [v for v in self.weights if isinstance(v, nnx.Param)]

    @property
    def non_trainable_weights(self) -> list:
        """The other variables of `weights` (BatchNorm statistics, frozen layers' weights)."""
        trainable = {id(v) for v in self.trainable_weights}
        return [v for v in self.weights if id(v) not in trainable]

    def get_weights(self) -> list[np.ndarray]:
        """Host copies of `weights`, in Keras's order (so `set_weights(keras_model.get_weights())` works)."""
        self._require_built("get_weights")
        if self._stacked_weights:  # each `(size, ...)`, in a member's Keras order
            params, model_state = self._variables()
            leaves = jax.tree.leaves(params) + jax.tree.leaves(model_state)
            return [np.array(leaves[i]) for i in self._stacked_order(len(leaves))]
        return [np.array(v.get_value()) for v in self.weights]

    def set_weights(self, weights: Sequence) -> None:
        """Replaces every variable, in `get_weights()` order.

        Raises:
          ValueError: if the count or a shape differs from the model's.
        """
        self._require_built("set_weights")
        if self._stacked_weights:
            self._set_stacked_weights(list(weights))
            return
        variables = self.weights
        weights = list(weights)
        if len(weights) != len(variables):
            raise ValueError(f'set_weights: model "{self.name}" has {len(variables)} weight arrays; received {len(weights)}')
        new = []
        for i, (old, w) in enumerate(zip(variables, weights)):
            w = np.asarray(w)
            if w.shape != tuple(old.shape):
                where = getattr(old, "path", None) or f"weight {i}"
                raise ValueError(f"set_weights: {where} (weight {i}) must have shape {tuple(old.shape)}; "
                                 f"received shape {w.shape}")  # fmt: skip
            new.append(jnp.asarray(w, dtype=old.get_value().dtype))
        for variable, value in zip(variables, new):
            variable.set_value(value)
        _, params, model_state = nnx.split(self._module, nnx.Param, ...)
        if self._state is not None:
            self._set_variables(params, model_state)

    def _stacked_order(self, count: int) -> list[int]:
        """Indices into the state's leaves (params', then model_state's) in Keras's order of a member's weights."""
        module = self.members[0]._module if getattr(self, "members", None) else None
        if module is not None:
            _, params, model_state = nnx.split(module, nnx.Param, ...)
            order = keras_leaf_order(module, params, model_state)
            if len(order) == count:
                return order
        return list(range(count))

    def _set_stacked_weights(self, weights: list) -> None:
        params, model_state = self._variables()
        leaves_p, tree_p = jax.tree.flatten(params)
        leaves_s, tree_s = jax.tree.flatten(model_state)
        order = self._stacked_order(len(leaves_p) + len(leaves_s))
        current = leaves_p + leaves_s
        if len(weights) != len(current):
            raise ValueError(f'set_weights: model "{self.name}" has {len(current)} weight arrays; received {len(weights)}')
        weights = [weights[order.index(i)] for i in range(len(current))]  # back to the state's order
        new = []
        for i, (old, w) in enumerate(zip(current, weights)):
            w = np.asarray(w)
            if w.shape != tuple(old.shape):
                raise ValueError(f"set_weights: weight {i} must have shape {tuple(old.shape)}; received shape {w.shape}")
            new.append(jnp.asarray(w, dtype=old.dtype))
        self._set_variables(jax.tree.unflatten(tree_p, new[: len(leaves_p)]), jax.tree.unflatten(tree_s, new[len(leaves_p) :]))

    def save_weights(self, filepath: str, overwrite: bool = True) -> str:
        """Writes all variables to the folder `filepath` with Orbax. Returns the absolute path."""
        from nnjax.checkpoint.pytree import save_pytree

        self._require_built("save_weights")
        params, model_state = self._variables()
        return save_pytree(filepath, {"params": params.to_pure_dict(), "model_state": model_state.to_pure_dict()}, overwrite=overwrite)

    def load_weights(self, filepath: str, *, allow_unverified: bool = False) -> None:
        """Reads variables written by `save_weights`.

        Args:
          filepath: the folder `save_weights` wrote.
          allow_unverified: also load a plain Orbax checkpoint (e.g. of `nnx.state(module)`), whose integrity
            cannot be verified (see `nj.checkpoint.restore`).

        Raises:
          FileNotFoundError: if nothing was saved at `filepath`.
          ValueError: if the saved weights do not match this model.
        """
        from nnjax.checkpoint.pytree import restore_pytree

        self._require_built("load_weights")
        params, model_state = self._variables()
        target = {"params": params.to_pure_dict(), "model_state": model_state.to_pure_dict()}
        saved = _saved_model_weights(filepath)
        if saved is not None:  # a whole model (model.save, ModelCheckpoint's default): its weights, as Keras reads them
            restored = _matched(saved, target, filepath)
        else:
            restored = restore_pytree(filepath, target, allow_unverified=allow_unverified)
        nnx.replace_by_pure_dict(params, restored["params"])
        nnx.replace_by_pure_dict(model_state, restored["model_state"])
        self._set_variables(params, model_state)

    def count_params(self) -> int:
        """Scalars in every variable (trainable and not; summed over members for an ensemble)."""
        self._require_built("count_params")
        params, model_state = self._variables()
        return int(sum(np.prod(np.shape(a)) for a in jax.tree.leaves(params) + jax.tree.leaves(model_state)))


def keras_leaf_order(module, params, model_state) -> list[int]:
    """Indices into `leaves(params) + leaves(model_state)` in Keras's order: the module's `weights` when it is an
    nnjax layer (layer by layer, each in creation order), then any leaf they do not list, in tree order."""
    from nnjax.train.freeze import path_of

    params_paths = [path_of(p) for p, _ in jax.tree.flatten_with_path(params)[0]]
    state_paths = [path_of(p) for p, _ in jax.tree.flatten_with_path(model_state)[0]]
    slots = {("params", path): i for i, path in enumerate(params_paths)}
    slots.update({("state", path): len(params_paths) + i for i, path in enumerate(state_paths)})
    order, seen = [], set()
    if hasattr(module, "weights"):
        by_id = {id(node): path for path, node in nnx.iter_graph(module) if isinstance(node, nnx.Variable)}
        for variable in module.weights:
            path = by_id.get(id(variable))
            kind = "params" if isinstance(variable, nnx.Param) else "state"
            slot = slots.get((kind, tuple(path))) if path is not None else None
            if slot is not None and slot not in seen:
                seen.add(slot)
                order.append(slot)
    return order + [slot for slot in range(len(slots)) if slot not in seen]


def _saved_model_weights(filepath) -> dict | None:
    """The `{"params", "model_state"}` of a folder `model.save` wrote (read through a rebuilt model), else None."""
    import os

    from nnjax.checkpoint import core
    from nnjax.shell import saving_mixin

    path = os.path.abspath(os.fspath(filepath))
    if path.endswith(".keras"):
        model = saving_mixin._saving().load_model(path, compile=False)
    else:
        if not os.path.isdir(path):
            return None
        try:
            if core.read_metadata(path).get("format") != "nnjax.model":
                return None
        except Exception:  # noqa: BLE001 - not a whole-model folder: restore_pytree reports what it is
            return None
        model = saving_mixin._saving().load_model(path, compile=False)
    params, model_state = model._variables()
    return {"params": params.to_pure_dict(), "model_state": model_state.to_pure_dict()}


def _matched(saved: dict, target: dict, filepath) -> dict:
    """`saved` if it has `target`'s arrays, shapes and dtypes; raises a mismatch error naming the first difference."""
    from nnjax.checkpoint.errors import CheckpointMismatchError

    saved_leaves, saved_tree = jax.tree.flatten_with_path(saved)
    target_leaves, target_tree = jax.tree.flatten_with_path(target)
    saved_paths = {jax.tree_util.keystr(p): np.shape(v) for p, v in saved_leaves}
    target_paths = {jax.tree_util.keystr(p): np.shape(v) for p, v in target_leaves}
    if saved_paths != target_paths:
        differ = sorted(set(saved_paths.items()) ^ set(target_paths.items()))[:3]
        raise CheckpointMismatchError(f"load_weights: the model saved at {str(filepath)!r} does not match this model: "
                                      f"expected the arrays and shapes of this model, found differences at {differ}")
    return saved


__all__ = ["WeightsMixin", "keras_leaf_order"]
