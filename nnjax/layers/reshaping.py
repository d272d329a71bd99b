"""Reshaping layers: RepeatVector, Permute, UpSampling1D/2D/3D, ZeroPadding1D/2D/3D, Cropping1D/2D/3D.

Arguments, defaults and output shapes are Keras 3's. Spatial layers take `data_format`
("channels_last", the default, or "channels_first") as Keras does, except `Cropping1D` and
`UpSampling1D`, which have none in Keras either.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from nnjax.layers.base import Layer, shape_str
from nnjax.layers.utils import check_choice, check_data_format, normalize_tuple


def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _pair(value, arg: str, where: str) -> tuple[int, int]:
    """`n -> (n, n)`, `(a, b) -> (a, b)`, checking non-negative ints."""
    values = (value, value) if _is_int(value) else value
    try:
        values = tuple(values)
    except TypeError:
        values = ()
    if len(values) != 2 or not all(_is_int(v) and v >= 0 for v in values):
        raise ValueError(f"{where}: `{arg}` must be a non-negative int or a pair of non-negative ints; got {value!r}")
    return int(values[0]), int(values[1])


def _pairs(value, rank: int, arg: str, where: str) -> tuple[tuple[int, int], ...]:
    """Keras's padding/cropping forms: `n`, `(n1, n2, ...)` (symmetric) or `((l1, r1), (l2, r2), ...)`."""
    if _is_int(value):
        return (_pair(value, arg, where),) * rank
    try:
        entries = tuple(value)
    except TypeError:
        entries = ()
    if len(entries) != rank:
        raise ValueError(
            f"{where}: `{arg}` must be an int, a tuple of {rank} ints or a tuple of {rank} pairs of ints; got {value!r}"
        )
    return tuple(_pair(e, f"{arg}[{i}]", where) for i, e in enumerate(entries))


class _Shaped(Layer):
    _checked_axes = ()
    _jit_eager_calls = True


class RepeatVector(_Shaped):
    """Repeats each input vector `n` times: `(batch, features) -> (batch, n, features)`.

    Args:
      n: number of repetitions.
    """

    _ndim = 2

    def __init__(self, n: int, **kwargs):
        super().__init__(**kwargs)
        if not _is_int(n) or n <= 0:
            raise ValueError(f'RepeatVector "{self.name}": `n` must be a positive int; got {n!r}')
        self.n = int(n)

    def call(self, x, *, training=False, key=None):
        return jnp.repeat(x[:, None, :], self.n, axis=1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.n, input_shape[1])

    def get_config(self) -> dict:
        return {"name": self.name, "n": self.n}


class Permute(_Shaped):
    """Permutes the non-batch axes: `Permute((2, 1))` swaps axes 1 and 2 of `(batch, a, b)`.

    Args:
      dims: a permutation of `1..rank-1` (1-based; the batch axis 0 stays in place).
    """

    def __init__(self, dims: Sequence[int], **kwargs):
        super().__init__(**kwargs)
        self.dims = tuple(int(d) for d in dims)
        if sorted(self.dims) != list(range(1, len(self.dims) + 1)):
            raise ValueError(
                f'Permute "{self.name}": `dims` must be a permutation of 1..{len(self.dims)} (the batch axis 0 is not '
                f"permuted); got {tuple(dims)!r}"
            )
        self._ndim = len(self.dims) + 1

    def call(self, x, *, training=False, key=None):
        return jnp.transpose(x, (0,) + self.dims)

    def compute_output_shape(self, input_shape):
        return (input_shape[0],) + tuple(input_shape[d] for d in self.dims)

    def get_config(self) -> dict:
        return {"name": self.name, "dims": self.dims}


class _Spatial(_Shaped):
    """A layer acting on the `rank` spatial axes of `(batch, *spatial, channels)`."""

    rank = 2

    def __init__(self, data_format: str | None = None, **kwargs):
        super().__init__(**kwargs)
        self.data_format = check_data_format(data_format, self._where)
        self._ndim = self.rank + 2

    @property
    def _where(self) -> str:
        return f'{type(self).__name__} "{self.name}"'

    @property
    def spatial_axes(self) -> tuple[int, ...]:
        first = 1 if self.data_format == "channels_last" else 2
        return tuple(range(first, first + self.rank))


class _UpSampling(_Spatial):
    def __init__(self, size=2, data_format: str | None = None, **kwargs):
        super().__init__(data_format=data_format, **kwargs)
        self.size = normalize_tuple(size, self.rank, "size", self._where)

    def call(self, x, *, training=False, key=None):
        for axis, factor in zip(self.spatial_axes, self.size, strict=True):
            x = jnp.repeat(x, factor, axis=axis)
        return x

    def compute_output_shape(self, input_shape):
        shape = list(input_shape)
        for axis, factor in zip(self.spatial_axes, self.size, strict=True):
            shape[axis] = None if shape[axis] is None else shape[axis] * factor
        return tuple(shape)

    def get_config(self) -> dict:
        return {"name": self.name, "size": self.size, "data_format": self.data_format}


class UpSampling1D(_UpSampling):
    """Repeats each step `size` times: `(batch, steps, features) -> (batch, steps * size, features)`.

    Args:
      size: upsampling factor (2).
    """

    rank = 1

    def __init__(self, size: int = 2, **kwargs):
        if not _is_int(size):
            raise TypeError(f"UpSampling1D: `size` must be an int; got {size!r}")
        super().__init__(size=size, **kwargs)

    def get_config(self) -> dict:
        return {"name": self.name, "size": self.size[0]}


class UpSampling2D(_UpSampling):
    """Upsamples images by `size`: `(batch, h, w, c) -> (batch, h * size[0], w * size[1], c)`.

    Args:
      size: int or `(rows, cols)` factors ((2, 2)).
      data_format: "channels_last" or "channels_first".
      interpolation: "nearest" (repeats pixels, the default) or one of "bilinear", "bicubic",
        "lanczos3", "lanczos5" (`jax.image.resize`, as Keras's JAX backend, no antialiasing).
    """

    rank = 2
    _interpolations = ("nearest", "bilinear", "bicubic", "lanczos3", "lanczos5")

    def __init__(self, size=(2, 2), data_format: str | None = None, interpolation: str = "nearest", **kwargs):
        super().__init__(size=size, data_format=data_format, **kwargs)
        self.interpolation = check_choice(interpolation, self._interpolations, "interpolation", self._where)

    def call(self, x, *, training=False, key=None):
        if self.interpolation == "nearest":
            return super().call(x)
        shape = list(x.shape)
        for axis, factor in zip(self.spatial_axes, self.size, strict=True):
            shape[axis] *= factor
        method = {"bilinear": "linear", "bicubic": "cubic"}.get(self.interpolation, self.interpolation)
        return jax.image.resize(x, tuple(shape), method=method, antialias=False).astype(x.dtype)

    def get_config(self) -> dict:
        return super().get_config() | {"interpolation": self.interpolation}


class UpSampling3D(_UpSampling):
    """Repeats each voxel `size` times along depth, height and width.

    Args:
      size: int or 3-tuple of factors ((2, 2, 2)).
      data_format: "channels_last" or "channels_first".
    """

    rank = 3


class _ZeroPadding(_Spatial):
    def __init__(self, padding=1, data_format: str | None = None, **kwargs):
        super().__init__(data_format=data_format, **kwargs)
        self.padding = _pairs(padding, self.rank, "padding", self._where) if self.rank > 1 else (
            _pair(padding, "padding", self._where),
        )

    def call(self, x, *, training=False, key=None):
        widths = [(0, 0)] * x.ndim
        for axis, pad in zip(self.spatial_axes, self.padding, strict=True):
            widths[axis] = pad
        return jnp.pad(x, widths)

    def compute_output_shape(self, input_shape):
        shape = list(input_shape)
        for axis, (lo, hi) in zip(self.spatial_axes, self.padding, strict=True):
            shape[axis] = None if shape[axis] is None else shape[axis] + lo + hi
        return tuple(shape)

    def get_config(self) -> dict:
        padding = self.padding[0] if self.rank == 1 else self.padding
        return {"name": self.name, "padding": padding, "data_format": self.data_format}


class ZeroPadding1D(_ZeroPadding):
    """Pads the steps axis with zeros: `(batch, steps, f) -> (batch, left + steps + right, f)`.

    Args:
      padding: int (both sides) or `(left, right)` (1).
      data_format: "channels_last" or "channels_first".
    """

    rank = 1


class ZeroPadding2D(_ZeroPadding):
    """Pads images with zero rows and columns.

    Args:
      padding: int, `(symmetric_height, symmetric_width)` or `((top, bottom), (left, right))` ((1, 1)).
      data_format: "channels_last" or "channels_first".
    """

    rank = 2

    def __init__(self, padding=(1, 1), data_format: str | None = None, **kwargs):
        super().__init__(padding=padding, data_format=data_format, **kwargs)


class ZeroPadding3D(_ZeroPadding):
    """Pads volumes with zeros along depth, height and width.

    Args:
      padding: int, 3 symmetric ints, or 3 `(before, after)` pairs (1 on every side).
      data_format: "channels_last" or "channels_first".
    """

    rank = 3

    def __init__(self, padding=((1, 1), (1, 1), (1, 1)), data_format: str | None = None, **kwargs):
        super().__init__(padding=padding, data_format=data_format, **kwargs)


class _Cropping(_Spatial):
    def __init__(self, cropping, data_format: str | None = None, **kwargs):
        super().__init__(data_format=data_format, **kwargs)
        self.cropping = _pairs(cropping, self.rank, "cropping", self._where) if self.rank > 1 else (
            _pair(cropping, "cropping", self._where),
        )

    def build(self, input_shape, key):
        for axis, (lo, hi) in zip(self.spatial_axes, self.cropping, strict=True):
            size = input_shape[axis]
            if size is not None and lo + hi >= size:
                raise ValueError(
                    f"{self._where}: `cropping` {self.cropping} must leave at least one entry on each cropped axis; "
                    f"received input of shape {shape_str((None,) + tuple(input_shape[1:]))}"
                )

    def call(self, x, *, training=False, key=None):
        index = [slice(None)] * x.ndim
        for axis, (lo, hi) in zip(self.spatial_axes, self.cropping, strict=True):
            index[axis] = slice(lo, x.shape[axis] - hi)
        return x[tuple(index)]

    def compute_output_shape(self, input_shape):
        shape = list(input_shape)
        for axis, (lo, hi) in zip(self.spatial_axes, self.cropping, strict=True):
            shape[axis] = None if shape[axis] is None else shape[axis] - lo - hi
        return tuple(shape)

    def get_config(self) -> dict:
        cropping = self.cropping[0] if self.rank == 1 else self.cropping
        return {"name": self.name, "cropping": cropping, "data_format": self.data_format}


class Cropping1D(_Cropping):
    """Crops the steps axis: `(batch, steps, f) -> (batch, steps - left - right, f)`.

    Args:
      cropping: int (both sides) or `(left, right)` ((1, 1)).
    """

    rank = 1

    def __init__(self, cropping=(1, 1), **kwargs):
        super().__init__(cropping=cropping, **kwargs)


class Cropping2D(_Cropping):
    """Crops images along height and width.

    Args:
      cropping: int, `(symmetric_height, symmetric_width)` or `((top, bottom), (left, right))`
        (((0, 0), (0, 0))).
      data_format: "channels_last" or "channels_first".
    """

    rank = 2

    def __init__(self, cropping=((0, 0), (0, 0)), data_format: str | None = None, **kwargs):
        super().__init__(cropping=cropping, data_format=data_format, **kwargs)


class Cropping3D(_Cropping):
    """Crops volumes along depth, height and width.

    Args:
      cropping: int, 3 symmetric ints, or 3 `(before, after)` pairs (1 on every side).
      data_format: "channels_last" or "channels_first".
    """

    rank = 3

    def __init__(self, cropping=((1, 1), (1, 1), (1, 1)), data_format: str | None = None, **kwargs):
        super().__init__(cropping=cropping, data_format=data_format, **kwargs)


__all__ = [
    "Cropping1D",
    "Cropping2D",
    "Cropping3D",
    "Permute",
    "RepeatVector",
    "UpSampling1D",
    "UpSampling2D",
    "UpSampling3D",
    "ZeroPadding1D",
    "ZeroPadding2D",
    "ZeroPadding3D",
]
