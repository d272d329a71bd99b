"""Host-side checks of user data, run before anything is traced or compiled."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from nnjax.data.arrays import as_array_tree, check_lengths, num_examples
from nnjax.layers.base import shape_str
from nnjax.train import steps


def check_labels(y, output_shape, loss, where: str) -> None:
    """Checks labels against the model's output on the host.

    Sparse losses: integer-valued labels in `[0, num_classes)`, where
    `num_classes = output_shape[-1]` (JAX gathers would clamp a wrong label and
    train silently). Other losses: `y.shape[1:]` compatible with the output.
    """
    if y is None or loss is None or not hasattr(y, "shape") or not hasattr(output_shape, "__len__"):
        return
    y_np = np.asarray(y)
    out = tuple(output_shape)
    if loss.sparse_labels:
        num_classes = out[-1]
        expected_label_shape = out[1:-1]
        label_shape = y_np.shape[1:]
        if label_shape not in (expected_label_shape, expected_label_shape + (1,)):
            raise ValueError(
                f"{where}: loss '{loss.name}' expects integer labels of shape {shape_str((None,) + expected_label_shape)} "
                f"for model outputs of shape {shape_str((None,) + out[1:])}; received labels of shape {shape_str(y_np.shape)}"
                + (" (one-hot labels need loss='categorical_crossentropy')" if label_shape == (num_classes,) else "")
            )
        if y_np.size == 0:
            return
        if not np.issubdtype(y_np.dtype, np.integer):
            if not np.issubdtype(y_np.dtype, np.floating) or not np.all(np.mod(y_np, 1) == 0):
                raise ValueError(
                    f"{where}: loss '{loss.name}' expects integer class ids; received labels of dtype {y_np.dtype}"
                    + ("" if not np.issubdtype(y_np.dtype, np.floating) else " with non-integer values")
                )
        low, high = y_np.min(), y_np.max()
        if low < 0 or high >= num_classes:
            bad = int(np.argmax((y_np.reshape(len(y_np), -1) < 0).any(1) | (y_np.reshape(len(y_np), -1) >= num_classes).any(1)))
            raise ValueError(
                f"{where}: labels must be in [0, {num_classes}) for a model with {num_classes} outputs; received labels "
                f"in [{low}, {high}] (first bad label at example {bad})"
            )
    elif loss.kind in ("categorical",):
        if y_np.shape[1:] != out[1:]:
            raise ValueError(
                f"{where}: loss '{loss.name}' expects one-hot labels of shape {shape_str((None,) + out[1:])}; received "
                f"labels of shape {shape_str(y_np.shape)}"
                + (" (integer labels need loss='sparse_categorical_crossentropy')" if y_np.ndim == len(out) - 1 else "")
            )
    elif _is_builtin(loss):  # binary and regression losses: labels shaped like the output (a trailing 1 may be left out)
        label_shape, out_shape = y_np.shape[1:], out[1:]
        if label_shape != out_shape and not (out_shape[-1:] == (1,) and label_shape == out_shape[:-1]):
            hint = ""
            if loss.kind == "binary" and len(label_shape) == len(out_shape) and label_shape[-1:] == (2,):
                hint = " (one-hot labels of two classes need 2 outputs with loss='categorical_crossentropy', or 0/1 labels)"
            raise ValueError(
                f"{where}: loss '{loss.name}' expects targets of shape {shape_str((None,) + out_shape)} (the model's "
                f"output) or {shape_str((None,) + out_shape[:-1])} when it ends in 1; received targets of shape "
                f"{shape_str(y_np.shape)}: they would broadcast against the output silently{hint}"
            )
        if "binary" in loss.name and "crossentropy" in loss.name and y_np.size:
            low, high = float(y_np.min()), float(y_np.max())
            if low < 0 or high > 1:
                bad = int(np.argmax(((y_np < 0) | (y_np > 1)).reshape(len(y_np), -1).any(1)))
                raise ValueError(
                    f"{where}: loss '{loss.name}' expects labels in [0, 1]; received labels in [{low}, {high}] "
                    f"(first bad label at example {bad})"
                )


def output_structure(model) -> tuple[str, list[str]] | None:
    """`(kind, output names)` of a model that declares its outputs (a functional model): kind is "single",
    "list" (a list or tuple of outputs) or "dict"; None for a model whose outputs are known only by calling it."""
    names = getattr(model, "output_names", None)
    if names is None:
        return None
    structure = model.output
    kind = "dict" if isinstance(structure, dict) else "list" if isinstance(structure, (list, tuple)) else "single"
    return kind, [str(name) for name in names]


def check_output_labels(y, output_spec, config, where: str) -> None:
    """`check_labels` for each output of a multi-output model (`config.outputs`), against that output's loss.

    Raises:
      ValueError: when `y` does not match the outputs (naming them and what `y` holds), or an output's labels
        do not suit its loss.
    """
    if y is None or not config.outputs:
        return
    targets = steps.output_targets(config, y, f"{where}: y")
    for head in config.outputs:
        out = output_spec[head.key] if output_spec is not None else None
        if head.loss is not None and targets[head.position] is not None and out is not None:
            check_labels(targets[head.position], (None,) + tuple(out.shape[1:]), head.loss, f"{where} (output {head.name!r})")


def _is_builtin(loss) -> bool:
    """A Keras-named loss of nnjax's (a user's callable may take targets of any shape)."""
    return getattr(loss.fn, "__module__", "") == "nnjax.train.losses"


_OUTPUT_SPECS: dict = {}


def output_spec(state, spec):
    """`jax.eval_shape` of `predict_step`, remembered per input spec and state layout.

    Tracing the model costs ~1.5 ms per layer (0.16 s for 100 layers) on every fit call;
    the answer only changes with the input spec, the model's structure or a parameter shape.
    """
    try:
        key = (jax.tree.structure(spec), tuple((a.shape, a.dtype) for a in jax.tree.leaves(spec)),
               jax.tree.structure(state), tuple((np.shape(a), jnp.result_type(a)) for a in jax.tree.leaves(state)))
        hash(key)
    except TypeError:  # some static part of the state is unhashable: do not remember
        key = None
    if key is not None and key in _OUTPUT_SPECS:
        return _OUTPUT_SPECS[key]
    out = jax.eval_shape(lambda s, v: steps.predict_step(s, v), state, spec)
    if key is not None:
        if len(_OUTPUT_SPECS) >= 64:
            _OUTPUT_SPECS.clear()
        _OUTPUT_SPECS[key] = out
    return out


def check_class_weight(class_weight, config) -> None:
    """Raises ValueError for `class_weight` on a model with several outputs (Keras supports it for one output only)."""
    if class_weight is not None and config is not None and config.outputs:
        names = [head.name for head in config.outputs]
        raise ValueError(f"fit: `class_weight` is only supported for models with a single output; this model has the "
                         f"outputs {names}. Pass sample_weight per output instead (a dict keyed by the output names)")


def _is_count(value, *, minimum: int) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, np.integer)) and value >= minimum


def check_fit_arguments(*, epochs, initial_epoch, steps_per_epoch, validation_freq, batch_size) -> None:
    """Raises ValueError for fit arguments that would fail (or mislead) only after compiling."""
    for name, value, minimum, none_ok in (("epochs", epochs, 0, False), ("initial_epoch", initial_epoch, 0, False),
                                          ("steps_per_epoch", steps_per_epoch, 1, True),
                                          ("validation_freq", validation_freq, 1, False), ("batch_size", batch_size, 1, True)):
        if value is None and none_ok:
            continue
        if not _is_count(value, minimum=minimum):
            raise ValueError(f"fit: `{name}` must be an int >= {minimum}{' or None' if none_ok else ''}; got {value!r}")


__all__ = ["as_array_tree", "check_class_weight", "check_fit_arguments", "check_labels", "check_output_labels", "check_lengths", "num_examples", "output_spec", "output_structure"]
