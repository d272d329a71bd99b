"""Keras's NumPy utilities: `to_categorical`, `normalize`, `pad_sequences` (host arrays in, host arrays out)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def to_categorical(x, num_classes: int | None = None) -> np.ndarray:
    """One-hot rows for integer class ids, as `keras.utils.to_categorical`.

    Args:
      x: integer class ids, any shape; a trailing axis of size 1 is dropped.
      num_classes: number of classes; `max(x) + 1` when None.

    Returns:
      float64 array of shape `x.shape + (num_classes,)`.

    Raises:
      ValueError: for ids outside `[0, num_classes)`.
    """
    x = np.asarray(x, dtype="int64")
    input_shape = x.shape
    if input_shape and input_shape[-1] == 1 and len(input_shape) > 1:
        input_shape = tuple(input_shape[:-1])
    flat = x.reshape(-1)
    if not num_classes:
        num_classes = int(np.max(flat)) + 1 if flat.size else 0
    if flat.size and (flat.min() < 0 or flat.max() >= num_classes):
        raise ValueError(f"to_categorical: class ids must be in [0, {num_classes}); received ids in [{flat.min()}, {flat.max()}]")
    categorical = np.zeros((flat.shape[0], num_classes))
    categorical[np.arange(flat.shape[0]), flat] = 1
    return categorical.reshape(tuple(input_shape) + (num_classes,))


def normalize(x, axis: int = -1, order: int = 2) -> np.ndarray:
    """`x` divided by its `order`-norm along `axis` (zero norms left as 1), as `keras.utils.normalize`."""
    x = np.asarray(x)
    norm = np.atleast_1d(np.linalg.norm(x, order, axis))
    norm[norm == 0] = 1
    return x / np.expand_dims(norm, axis if axis is not None else -1)


def pad_sequences(sequences: Sequence, maxlen: int | None = None, dtype="int32", padding: str = "pre",
                  truncating: str = "pre", value=0.0) -> np.ndarray:
    """Pads (or truncates) sequences to one length, as `keras.utils.pad_sequences`.

    Args:
      sequences: a list of sequences (lists or arrays; each may have trailing feature axes).
      maxlen: the output length; the longest sequence's when None.
      dtype: the output dtype.
      padding: "pre" or "post": where to pad.
      truncating: "pre" or "post": which end to cut from longer sequences.
      value: the padding value.

    Returns:
      `(len(sequences), maxlen, *feature_shape)` array.

    Raises:
      ValueError: for a `padding`/`truncating` other than "pre"/"post".
    """
    for arg, name in ((padding, "padding"), (truncating, "truncating")):
        if arg not in ("pre", "post"):
            raise ValueError(f"pad_sequences: `{name}` must be 'pre' or 'post'; got {arg!r}")
    lengths = [len(s) for s in sequences]
    maxlen = max(lengths, default=0) if maxlen is None else int(maxlen)
    sample_shape = next((np.asarray(s).shape[1:] for s in sequences if len(s)), ())
    out = np.full((len(sequences), maxlen) + tuple(sample_shape), value, dtype=dtype)
    for i, seq in enumerate(sequences):
        if not len(seq):
            continue
        seq = np.asarray(seq, dtype=dtype)
        trunc = seq[-maxlen:] if truncating == "pre" else seq[:maxlen]
        if padding == "post":
            out[i, : len(trunc)] = trunc
        else:
            out[i, maxlen - len(trunc):] = trunc
    return out


__all__ = ["normalize", "pad_sequences", "to_categorical"]
