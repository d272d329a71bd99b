"""Image augmentation layers that run on the device: RandomFlip, RandomRotation, RandomZoom,
RandomTranslation, RandomCrop, RandomContrast, RandomBrightness.

Each layer is active only with `training=True` and draws its randomness from the `key` passed to
`__call__` (the training step passes `fold_in(state.rng, step)`; `Sequential` gives layer i
`fold_in(key, i)`), so augmentation runs inside the compiled training step, on the device. In
inference they are the identity (except `RandomCrop`, which, as in Keras, always returns the
target size: a centre crop to the target aspect ratio, resized).

Every layer splits its work in two, so the randomness can be inspected or replayed:
`sample(key, shape)` draws one transformation per image (a dict of arrays) and
`apply(x, params)` applies it. Given the same transformation, the output is Keras's (the
geometric layers use Keras's affine matrices and `jax.scipy.ndimage.map_coordinates`, as
Keras's JAX backend does). Integer images are converted to float32, as in Keras.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from nnjax.layers.base import Layer
from nnjax.layers.preprocessing import as_float
from nnjax.layers.utils import check_choice, check_data_format

_FILL_MODES = ("reflect", "wrap", "constant", "nearest")
_INTERPOLATIONS = ("bilinear", "nearest")


def _factor(value, bounds: tuple[float, float], arg: str, where: str) -> tuple[float, float]:
    """Keras's factor rule: a number f gives `(max(-|f|, low), |f|)`; a pair gives its sorted values."""
    message = f"{where}: `{arg}` must be a number or a pair of numbers in [{bounds[0]}, {bounds[1]}]; got {value!r}"
    if isinstance(value, (tuple, list)):
        if len(value) != 2 or not all(isinstance(v, (int, float, np.number)) for v in value):
            raise ValueError(message)
        if value[0] > bounds[1] or value[1] < bounds[0]:
            raise ValueError(message)
        lower, upper = sorted(float(v) for v in value)
        return lower, upper
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
        raise ValueError(message)
    if not bounds[0] <= value <= bounds[1]:
        raise ValueError(message)
    value = abs(float(value))
    return max(-value, bounds[0]), value


def affine_transform(images, transforms, interpolation: str = "bilinear", fill_mode: str = "reflect",
                     fill_value: float = 0.0, data_format: str = "channels_last"):
    """Applies one projective transform per image, as `keras.ops.image.affine_transform` (JAX backend).

    Args:
      images: `(batch, h, w, c)` (or `(batch, c, h, w)` with channels_first).
      transforms: `(batch, 8)`: `[a0, a1, a2, b0, b1, b2, c0, c1]` maps output pixel `(x, y)` to the
        input point `(a0 x + a1 y + a2, b0 x + b1 y + b2)` (c0 = c1 = 0 here).
      interpolation: "bilinear" or "nearest".
      fill_mode: "reflect", "wrap", "constant" or "nearest": how points outside the image are filled.
      fill_value: the value of "constant" filling.
      data_format: "channels_last" or "channels_first".

    Returns:
      The transformed images, same shape and dtype.
    """
    if data_format == "channels_first":
        images = jnp.transpose(images, (0, 2, 3, 1))
    height, width = images.shape[1], images.shape[2]
    rows, cols = jnp.meshgrid(jnp.arange(height, dtype=jnp.float32), jnp.arange(width, dtype=jnp.float32), indexing="ij")
    t = transforms.astype(jnp.float32)
    order = 1 if interpolation == "bilinear" else 0

    def one(image, t):
        in_rows = t[3] * cols + t[4] * rows + t[5]
        in_cols = t[0] * cols + t[1] * rows + t[2]
        channel = lambda plane: jax.scipy.ndimage.map_coordinates(  # noqa: E731
            plane, [in_rows, in_cols], order=order, mode=fill_mode, cval=fill_value
        )
        return jax.vmap(channel, in_axes=-1, out_axes=-1)(image)

    out = jax.vmap(one)(images.astype(jnp.promote_types(images.dtype, jnp.float32)), t).astype(images.dtype)
    return jnp.transpose(out, (0, 3, 1, 2)) if data_format == "channels_first" else out


def rotation_matrices(angles, height: int, width: int):
    """Keras's affine matrices `(batch, 8)` rotating by `angles` (radians) about the image centre."""
    cx, cy = 0.5 * (width - 1), 0.5 * (height - 1)
    cos, sin = jnp.cos(angles), jnp.sin(angles)
    a0, a1, b0, b1 = cos, -sin, sin, cos
    a2 = cx - cx * a0 - cy * a1
    b2 = cy - cx * b0 - cy * b1
    zeros = jnp.zeros_like(angles)
    return jnp.stack([a0, a1, a2, b0, b1, b2, zeros, zeros], axis=1)


class _Augmentation(Layer):
    _checked_axes = ()
    _jit_eager_calls = True
    _ndim = 4

    def __init__(self, data_format: str | None = None, **kwargs):
        super().__init__(**kwargs)
        self.data_format = check_data_format(data_format, self._where)

    @property
    def _where(self) -> str:
        return f'{type(self).__name__} "{self.name}"'

    @property
    def _hw_axes(self) -> tuple[int, int]:
        return (1, 2) if self.data_format == "channels_last" else (2, 3)

    def _hw(self, shape) -> tuple[int, int]:
        return shape[self._hw_axes[0]], shape[self._hw_axes[1]]

    def sample(self, key, shape) -> dict:
        """One random transformation per image of a batch of `shape`."""
        raise NotImplementedError

    def apply(self, x, params: dict):
        """`x` transformed by `params` (from `sample`)."""
        raise NotImplementedError

    def call(self, x, *, training=False, key=None):
        x = as_float(x)
        if not training:
            return x
        if key is None:
            raise ValueError(
                f"{self._where}: training=True needs a PRNG key; call layer(x, training=True, key=key) "
                "(fit and train_step pass one for you)"
            )
        return self.apply(x, self.sample(key, x.shape))

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)


class RandomFlip(_Augmentation):
    """Flips each image with probability 1/2, as Keras: one draw per image.

    Args:
      mode: "horizontal" (left-right), "vertical" (up-down) or "horizontal_and_vertical" (the
        default; as in Keras, one draw flips both axes or neither).
      data_format: "channels_last" or "channels_first".

    Transformation: `{"flips": bool (batch,)}`.
    """

    def __init__(self, mode: str = "horizontal_and_vertical", data_format: str | None = None, **kwargs):
        super().__init__(data_format=data_format, **kwargs)
        self.mode = check_choice(mode, ("horizontal", "vertical", "horizontal_and_vertical"), "mode", self._where)

    def sample(self, key, shape) -> dict:
        return {"flips": jax.random.uniform(key, (shape[0],)) <= 0.5}

    def apply(self, x, params):
        flips = params["flips"].reshape((-1, 1, 1, 1))
        h_axis, w_axis = self._hw_axes
        if self.mode in ("horizontal", "horizontal_and_vertical"):
            x = jnp.where(flips, jnp.flip(x, axis=w_axis), x)
        if self.mode in ("vertical", "horizontal_and_vertical"):
            x = jnp.where(flips, jnp.flip(x, axis=h_axis), x)
        return x

    def get_config(self) -> dict:
        return {"name": self.name, "mode": self.mode, "data_format": self.data_format}


class _Affine(_Augmentation):
    def __init__(self, fill_mode: str = "reflect", interpolation: str = "bilinear", fill_value: float = 0.0,
                 data_format: str | None = None, **kwargs):
        super().__init__(data_format=data_format, **kwargs)
        self.fill_mode = check_choice(fill_mode, _FILL_MODES, "fill_mode", self._where)
        self.interpolation = check_choice(interpolation, _INTERPOLATIONS, "interpolation", self._where)
        self.fill_value = float(fill_value)

    def matrices(self, params, shape):
        raise NotImplementedError

    def apply(self, x, params):
        return affine_transform(x, self.matrices(params, x.shape), self.interpolation, self.fill_mode, self.fill_value,
                                self.data_format)

    def get_config(self) -> dict:
        return {"name": self.name, "fill_mode": self.fill_mode, "interpolation": self.interpolation,
                "fill_value": self.fill_value, "data_format": self.data_format}


class RandomRotation(_Affine):
    """Rotates each image by a random angle in `[lower, upper] * 2 pi` about its centre.

    Args:
      factor: a fraction of a full turn: f gives `[-f, f]`, a pair `(lower, upper)` its range.
      fill_mode: "reflect" (default), "wrap", "constant" or "nearest".
      interpolation: "bilinear" (default) or "nearest".
      fill_value: the fill of "constant" mode (0.0).
      data_format: "channels_last" or "channels_first".

    Transformation: `{"angle": degrees (batch,)}`.
    """

    def __init__(self, factor, fill_mode: str = "reflect", interpolation: str = "bilinear", fill_value: float = 0.0,
                 data_format: str | None = None, **kwargs):
        super().__init__(fill_mode, interpolation, fill_value, data_format, **kwargs)
        self.factor = _factor(factor, (-1.0, 1.0), "factor", self._where)

    def sample(self, key, shape) -> dict:
        lower, upper = self.factor[0] * 360.0, self.factor[1] * 360.0
        return {"angle": jax.random.uniform(key, (shape[0],), minval=lower, maxval=upper)}

    def matrices(self, params, shape):
        height, width = self._hw(shape)
        return rotation_matrices(params["angle"] * (math.pi / 180.0), height, width)

    def get_config(self) -> dict:
        return super().get_config() | {"factor": self.factor}


class RandomZoom(_Affine):
    """Zooms each image by a random factor: `1 + uniform(lower, upper)` per axis (negative zooms in).

    Args:
      height_factor: f gives `[-f, f]`; a pair `(lower, upper)` its range (each in [-1, 1]).
        A value of -0.3 zooms in by 30%, 0.3 zooms out.
      width_factor: as `height_factor`; None keeps the aspect ratio (the height zoom is used).
      fill_mode / interpolation / fill_value / data_format: as `RandomRotation`.

    Transformation: `{"height_zoom": (batch,), "width_zoom": (batch,)}`.
    """

    def __init__(self, height_factor, width_factor=None, fill_mode: str = "reflect", interpolation: str = "bilinear",
                 fill_value: float = 0.0, data_format: str | None = None, **kwargs):
        super().__init__(fill_mode, interpolation, fill_value, data_format, **kwargs)
        self.height_factor = _factor(height_factor, (-1.0, 1.0), "height_factor", self._where)
        self.width_factor = None if width_factor is None else _factor(width_factor, (-1.0, 1.0), "width_factor",
                                                                      self._where)

    def sample(self, key, shape) -> dict:
        height_key, width_key = jax.random.split(key)
        height_zoom = jax.random.uniform(height_key, (shape[0],), minval=1.0 + self.height_factor[0],
                                         maxval=1.0 + self.height_factor[1])
        if self.width_factor is None:
            return {"height_zoom": height_zoom, "width_zoom": height_zoom}
        width_zoom = jax.random.uniform(width_key, (shape[0],), minval=1.0 + self.width_factor[0],
                                        maxval=1.0 + self.width_factor[1])
        return {"height_zoom": height_zoom, "width_zoom": width_zoom}

    def matrices(self, params, shape):
        height, width = self._hw(shape)
        zx, zy = params["width_zoom"].astype(jnp.float32), params["height_zoom"].astype(jnp.float32)
        zeros = jnp.zeros_like(zx)
        x_offset = (width - 1.0) / 2.0 * (1.0 - zx)
        y_offset = (height - 1.0) / 2.0 * (1.0 - zy)
        return jnp.stack([zx, zeros, x_offset, zeros, zy, y_offset, zeros, zeros], axis=1)

    def get_config(self) -> dict:
        return super().get_config() | {"height_factor": self.height_factor, "width_factor": self.width_factor}


class RandomTranslation(_Affine):
    """Shifts each image by a random fraction of its height and width.

    Args:
      height_factor: f gives a vertical shift in `[-f, f] * height`; a pair `(lower, upper)` its range.
      width_factor: the same for the horizontal shift (fraction of the width).
      fill_mode / interpolation / fill_value / data_format: as `RandomRotation`.

    Transformation: `{"translations": pixels (batch, 2)` as `(dx, dy)`}.
    """

    def __init__(self, height_factor, width_factor, fill_mode: str = "reflect", interpolation: str = "bilinear",
                 fill_value: float = 0.0, data_format: str | None = None, **kwargs):
        super().__init__(fill_mode, interpolation, fill_value, data_format, **kwargs)
        self.height_factor = _factor(height_factor, (-1.0, 1.0), "height_factor", self._where)
        self.width_factor = _factor(width_factor, (-1.0, 1.0), "width_factor", self._where)

    def sample(self, key, shape) -> dict:
        height, width = self._hw(shape)
        height_key, width_key = jax.random.split(key)
        dy = jax.random.uniform(height_key, (shape[0],), minval=self.height_factor[0], maxval=self.height_factor[1]) * height
        dx = jax.random.uniform(width_key, (shape[0],), minval=self.width_factor[0], maxval=self.width_factor[1]) * width
        return {"translations": jnp.stack([dx, dy], axis=1)}

    def matrices(self, params, shape):
        t = params["translations"].astype(jnp.float32)
        ones, zeros = jnp.ones_like(t[:, 0]), jnp.zeros_like(t[:, 0])
        return jnp.stack([ones, zeros, -t[:, 0], zeros, ones, -t[:, 1], zeros, zeros], axis=1)

    def get_config(self) -> dict:
        return super().get_config() | {"height_factor": self.height_factor, "width_factor": self.width_factor}


class RandomCrop(_Augmentation):
    """Crops a random `height x width` window of each image in training.

    In inference, and in training for images not larger than the target on both axes, the image
    is centre-cropped to the target aspect ratio and resized (bilinear), as Keras documents
    (`keras.preprocessing.image.smart_resize`); so the output is always `(batch, height, width,
    channels)`, as Keras's `compute_output_shape` says. (Keras 3.15's own inference path returns
    the input unchanged.) Unlike Keras (one window per batch), each image gets its own window.

    Args:
      height, width: the output size.
      data_format: "channels_last" or "channels_first".

    Transformation: `{"top": int32 (batch,), "left": int32 (batch,)}`.
    """

    def __init__(self, height: int, width: int, data_format: str | None = None, **kwargs):
        super().__init__(data_format=data_format, **kwargs)
        for arg, value in (("height", height), ("width", width)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
                raise ValueError(f"{self._where}: `{arg}` must be a positive int; got {value!r}")
        self.height, self.width = int(height), int(width)

    def sample(self, key, shape) -> dict:
        height, width = self._hw(shape)
        top_key, left_key = jax.random.split(key)
        top = jax.random.randint(top_key, (shape[0],), 0, max(height - self.height, 0) + 1)
        left = jax.random.randint(left_key, (shape[0],), 0, max(width - self.width, 0) + 1)
        return {"top": top, "left": left}

    def apply(self, x, params):
        h_axis, w_axis = self._hw_axes
        sizes = list(x.shape[1:])
        sizes[h_axis - 1], sizes[w_axis - 1] = self.height, self.width

        def one(image, top, left):
            starts = [jnp.zeros((), jnp.int32)] * image.ndim
            starts[h_axis - 1], starts[w_axis - 1] = top, left
            return jax.lax.dynamic_slice(image, starts, sizes)

        return jax.vmap(one)(x, params["top"].astype(jnp.int32), params["left"].astype(jnp.int32))

    def _centre_resize(self, x):
        height, width = self._hw(x.shape)
        crop_height = max(min(height, int(float(width * self.height) / self.width)), 1)
        crop_width = max(min(width, int(float(height * self.width) / self.height)), 1)
        top, left = int(float(height - crop_height) / 2), int(float(width - crop_width) / 2)
        index = [slice(None)] * 4
        h_axis, w_axis = self._hw_axes
        index[h_axis], index[w_axis] = slice(top, top + crop_height), slice(left, left + crop_width)
        x = x[tuple(index)]
        shape = list(x.shape)
        shape[h_axis], shape[w_axis] = self.height, self.width
        return jax.image.resize(x, tuple(shape), method="bilinear", antialias=False).astype(x.dtype)

    def call(self, x, *, training=False, key=None):
        x = as_float(x)
        height, width = self._hw(x.shape)
        if not training or not (height > self.height and width > self.width):
            return self._centre_resize(x)
        return super().call(x, training=training, key=key)

    def compute_output_shape(self, input_shape):
        shape = list(input_shape)
        shape[self._hw_axes[0]], shape[self._hw_axes[1]] = self.height, self.width
        return tuple(shape)

    def get_config(self) -> dict:
        return {"name": self.name, "height": self.height, "width": self.width, "data_format": self.data_format}


def _value_range(value, where: str) -> tuple[float, float]:
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise ValueError(f"{where}: `value_range` must be a pair (low, high); got {value!r}")
    low, high = sorted(float(v) for v in value)
    return low, high


class RandomContrast(_Augmentation):
    """Scales each image's deviation from its per-channel mean by a random factor, then clips.

    `y = clip((x - mean) * c + mean, *value_range)`, `mean` over height and width, `c` uniform in
    `[1 - lower, 1 + upper]`. As in Keras 3 (factor bounds [0, 1]), a single number f gives
    `(lower, upper) = (0, f)`, so `c` in `[1, 1 + f]`; pass `(f, f)` for `[1 - f, 1 + f]`.

    Args:
      factor: a number or a pair in [0, 1].
      value_range: the range of the input values, used to clip ((0, 255)).

    Transformation: `{"contrast_factor": (batch,)}`.
    """

    def __init__(self, factor, value_range=(0, 255), data_format: str | None = None, **kwargs):
        super().__init__(data_format=data_format, **kwargs)
        self.factor = _factor(factor, (0.0, 1.0), "factor", self._where)
        self.value_range = _value_range(value_range, self._where)

    def sample(self, key, shape) -> dict:
        return {"contrast_factor": jax.random.uniform(key, (shape[0],), minval=1.0 - self.factor[0], maxval=1.0 + self.factor[1])}

    def apply(self, x, params):
        factor = params["contrast_factor"].reshape((-1, 1, 1, 1)).astype(x.dtype)
        mean = jnp.mean(x, axis=self._hw_axes, keepdims=True)
        return jnp.clip((x - mean) * factor + mean, *self.value_range).astype(x.dtype)

    def get_config(self) -> dict:
        return {"name": self.name, "factor": self.factor, "value_range": self.value_range}


class RandomBrightness(_Augmentation):
    """Adds a random offset to each image, then clips to `value_range`.

    The offset is uniform in `[lower, upper] * (high - low)` of `value_range`, one per image.

    Args:
      factor: a number f (giving `[-f, f]`) or a pair `(lower, upper)`, in [-1, 1].
      value_range: the range of the input values ((0, 255)).

    Transformation: `{"rgb_delta": (batch,)}` (already scaled to the value range).
    """

    def __init__(self, factor, value_range=(0, 255), **kwargs):
        super().__init__(**kwargs)
        self.factor = _factor(factor, (-1.0, 1.0), "factor", self._where)
        self.value_range = _value_range(value_range, self._where)

    def sample(self, key, shape) -> dict:
        delta = jax.random.uniform(key, (shape[0],), minval=self.factor[0], maxval=self.factor[1])
        return {"rgb_delta": delta * (self.value_range[1] - self.value_range[0])}

    def apply(self, x, params):
        delta = params["rgb_delta"].reshape((-1, 1, 1, 1)).astype(x.dtype)
        return jnp.clip(x + delta, *self.value_range).astype(x.dtype)

    def get_config(self) -> dict:
        return {"name": self.name, "factor": self.factor, "value_range": self.value_range}


__all__ = [
    "RandomBrightness",
    "RandomContrast",
    "RandomCrop",
    "RandomFlip",
    "RandomRotation",
    "RandomTranslation",
    "RandomZoom",
    "affine_transform",
]
