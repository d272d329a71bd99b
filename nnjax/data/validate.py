"""Host checks of data values: what would otherwise train silently on garbage.

JAX computes on whatever it is given: a NaN in `x` turns the loss into NaN, a
float64 1e39 becomes inf in float32, a negative sample weight flips a gradient,
an object array of ragged rows fails deep inside tracing. These checks run on
the host, once per in-memory dataset (remembered while the arrays are alive and
unchanged in identity) and on every streamed batch, before anything is compiled
or trained on. Each error names the array, the first bad example and its value.
"""

from __future__ import annotations

import weakref

import jax
import numpy as np

_FLOAT32_MAX = float(np.finfo(np.float32).max)
_CHECKED: dict[int, weakref.ref] = {}  # id(array) -> the array, once checked whole


def _path_name(name: str, path) -> str:
    return name + "".join(f"[{getattr(k, 'key', getattr(k, 'idx', k))!r}]" for k in path)


def _first_bad_row(mask: np.ndarray) -> tuple[int, tuple]:
    flat = np.argwhere(mask)[0]
    return int(flat[0]), tuple(int(i) for i in flat)


def check_array(array, name: str, *, where: str, offset: int = 0, nonfinite_ok: bool = False) -> None:
    """Raises if `array` holds non-numbers, strings, NaN/inf, or float values that overflow float32.

    Args:
      array: a NumPy (or JAX) array with a leading example axis.
      name: how the message names it (e.g. "x", "y['label']").
      where: the calling function ("fit", "evaluate").
      offset: the index of the array's first example in the dataset (for streamed batches).
      nonfinite_ok: accept NaN/inf and float32 overflow (a `compile(nonfinite=...)` policy handles them per step).

    Raises:
      TypeError: for object arrays (ragged rows, mixed types) and strings.
      ValueError: for NaN/inf and float values beyond float32's range.
    """
    a = np.asarray(array)
    if a.dtype == object:
        raise TypeError(
            f"{where}: `{name}` is an object array (ragged rows or mixed types, e.g. lists of different lengths); expected "
            f"a numeric array of one shape. Pad sequences to one length (nj.utils.pad_sequences) or convert each part"
        )
    if a.dtype.kind in "USV":
        raise TypeError(
            f"{where}: `{name}` holds {'strings' if a.dtype.kind in 'US' else 'raw bytes'} (dtype {a.dtype}); expected "
            f"numbers. Map text to integer ids first (e.g. a vocabulary lookup), then pass the ids"
        )
    if a.dtype.kind not in "fc" or a.size == 0 or nonfinite_ok:
        return
    finite = np.isfinite(a)
    if not finite.all():
        row, index = _first_bad_row(~finite)
        raise ValueError(
            f"{where}: `{name}` holds a non-finite value: {a[index]} at example {row + offset} (index {index}); expected "
            "finite numbers. Remove or impute the bad examples"
        )
    if a.dtype.itemsize > 4:
        too_big = np.abs(a) > _FLOAT32_MAX
        if too_big.any():
            row, index = _first_bad_row(too_big)
            raise ValueError(
                f"{where}: `{name}` holds {float(a[index]):g} at example {row + offset} (index {index}), beyond float32's range "
                f"(±{_FLOAT32_MAX:.4g}): it would become inf when computed in float32. Rescale the data"
            )


def check_sample_weight(sample_weight, *, where: str, offset: int = 0) -> None:
    """Raises if sample weights are not one finite, non-negative number per example.

    A list or dict (one array per output of a multi-output model) is checked array by array.

    Raises:
      ValueError: for a weight array that is not `(N,)`, or a negative or non-finite weight.
    """
    if sample_weight is None:
        return
    if isinstance(sample_weight, (list, tuple, dict)):
        items = sample_weight.items() if isinstance(sample_weight, dict) else enumerate(sample_weight)
        for key, weights in items:
            check_sample_weight(weights, where=f"{where} (sample_weight[{key!r}])", offset=offset)
        return
    w = np.asarray(sample_weight)
    if w.ndim != 1:
        raise ValueError(
            f"{where}: `sample_weight` must have shape (N,): one weight per example; received shape {w.shape}"
            + (" (per-timestep weights are not supported)" if w.ndim == 2 else "")
        )
    check_array(w, "sample_weight", where=where, offset=offset)
    if w.size and (w < 0).any():
        row = int(np.argmax(w < 0))
        raise ValueError(
            f"{where}: `sample_weight` must be >= 0; received {float(w[row]):g} at example {row + offset}"
        )


def check_values(x, y=None, sample_weight=None, *, where: str, offset: int = 0, remember: bool = False,
                 nonfinite_ok: bool = False) -> None:
    """`check_array` on every leaf of `x` and `y` and `check_sample_weight`.

    With `remember`, arrays already checked (the same array objects, still alive) are skipped, so a dataset
    passed to many `fit` calls is scanned once. `nonfinite_ok` is passed to `check_array` for `x` and `y`.
    """
    for name, tree in (("x", x), ("y", y)):
        if tree is None:
            continue
        for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
            if remember and _seen(leaf):
                continue
            check_array(leaf, _path_name(name, path), where=where, offset=offset, nonfinite_ok=nonfinite_ok)
            if remember:
                _remember(leaf)
    if sample_weight is not None and not (remember and _seen(sample_weight)):
        check_sample_weight(sample_weight, where=where, offset=offset)
        if remember:
            _remember(sample_weight)


def _seen(array) -> bool:
    ref = _CHECKED.get(id(array))
    return ref is not None and ref() is array


def _remember(array) -> None:
    try:
        _CHECKED[id(array)] = weakref.ref(array)
    except TypeError:  # not weak-referenceable: check it every time
        return
    if len(_CHECKED) > 4096:
        for key in [k for k, ref in _CHECKED.items() if ref() is None]:
            del _CHECKED[key]


__all__ = ["check_array", "check_sample_weight", "check_values"]
