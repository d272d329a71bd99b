"""Image preprocessing layers that run on the device: Rescaling, CenterCrop, Resizing.

As in Keras, integer images are converted to float32; floating inputs keep their dtype (so
bfloat16 in gives bfloat16 out). Inputs are batches `(batch, height, width, channels)` (or
`(batch, channels, height, width)` with `data_format="channels_first"`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from nnjax.layers.base import Layer
from nnjax.layers.utils import check_choice, check_data_format

_INTERPOLATIONS = ("bilinear", "nearest", "bicubic", "lanczos3", "lanczos5", "area")


def as_float(x):
    """`x` in its own floating dtype, or float32 for integer and boolean inputs."""
    return x if jnp.issubdtype(x.dtype, jnp.floating) else x.astype(jnp.float32)


def _positive(value, arg: str, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValueError(f"{where}: `{arg}` must be a positive int; got {value!r}")
    return int(value)


class Rescaling(Layer):
    """`x * scale + offset`, e.g. `Rescaling(1 / 255)` for `[0, 255]` images to `[0, 1]`.

    Args:
      scale: a float, or an array broadcastable to the input (one value per channel).
      offset: a float or array, added after scaling (0.0).
    """

    supports_masking = True  # passes its input's mask on (Keras)

    _checked_axes = ()
    _jit_eager_calls = True

    def __init__(self, scale, offset=0.0, **kwargs):
        super().__init__(**kwargs)
        # Static Python floats / nested lists: hashable into the compiled call's cache and saved with the config.
        self.scale = float(scale) if np.ndim(scale) == 0 else tuple(np.asarray(scale, np.float64).ravel().tolist())
        self.offset = float(offset) if np.ndim(offset) == 0 else tuple(np.asarray(offset, np.float64).ravel().tolist())
        self._scale_shape = np.shape(scale)
        self._offset_shape = np.shape(offset)

    def call(self, x, *, training=False, key=None):
        x = as_float(x)
        scale = jnp.asarray(self.scale, x.dtype).reshape(self._scale_shape)
        offset = jnp.asarray(self.offset, x.dtype).reshape(self._offset_shape)
        return x * scale + offset

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self) -> dict:
        return {"name": self.name, "scale": self.scale, "offset": self.offset}


class _Image(Layer):
    _checked_axes = ()
    _jit_eager_calls = True
    _ndim = 4

    def __init__(self, height: int, width: int, data_format: str | None = None, **kwargs):
        super().__init__(**kwargs)
        where = f'{type(self).__name__} "{self.name}"'
        self.height = _positive(height, "height", where)
        self.width = _positive(width, "width", where)
        self.data_format = check_data_format(data_format, where)

    @property
    def _hw_axes(self) -> tuple[int, int]:
        return (1, 2) if self.data_format == "channels_last" else (2, 3)

    def _crop(self, x, top: int, left: int, height: int, width: int):
        index = [slice(None)] * 4
        index[self._hw_axes[0]] = slice(top, top + height)
        index[self._hw_axes[1]] = slice(left, left + width)
        return x[tuple(index)]

    def _resize(self, x, interpolation: str, antialias: bool = False):
        shape = list(x.shape)
        shape[self._hw_axes[0]], shape[self._hw_axes[1]] = self.height, self.width
        if interpolation == "area":
            raise ValueError(f'{type(self).__name__} "{self.name}": interpolation="area" is not available on the JAX backend')
        return jax.image.resize(x, tuple(shape), method=interpolation, antialias=antialias).astype(x.dtype)

    def _crop_to_aspect_ratio(self, x):
        """Keras's centred crop to the target aspect ratio (`smart_resize`, `crop_to_aspect_ratio`)."""
        height, width = x.shape[self._hw_axes[0]], x.shape[self._hw_axes[1]]
        crop_height = max(min(height, int(float(width * self.height) / self.width)), 1)
        crop_width = max(min(width, int(float(height * self.width) / self.height)), 1)
        return self._crop(x, int(float(height - crop_height) / 2), int(float(width - crop_width) / 2), crop_height,
                          crop_width)

    def compute_output_shape(self, input_shape):
        shape = list(input_shape)
        shape[self._hw_axes[0]], shape[self._hw_axes[1]] = self.height, self.width
        return tuple(shape)


class CenterCrop(_Image):
    """Crops the central `height x width` window of each image.

    An image smaller than the target on some axis is first cropped to the target aspect ratio and
    then resized (bilinear), as Keras's `smart_resize`.

    Args:
      height, width: the output size.
      data_format: "channels_last" or "channels_first".
    """

    def call(self, x, *, training=False, key=None):
        x = as_float(x)
        height, width = x.shape[self._hw_axes[0]], x.shape[self._hw_axes[1]]
        if height >= self.height and width >= self.width:
            return self._crop(x, (height - self.height) // 2, (width - self.width) // 2, self.height, self.width)
        return self._resize(self._crop_to_aspect_ratio(x), "bilinear")

    def get_config(self) -> dict:
        return {"name": self.name, "height": self.height, "width": self.width, "data_format": self.data_format}


class Resizing(_Image):
    """Resizes images to `height x width` with `jax.image.resize`, as Keras's JAX backend.

    Args:
      height, width: the output size.
      interpolation: "bilinear" (default), "nearest", "bicubic", "lanczos3" or "lanczos5".
      crop_to_aspect_ratio: first crop the centre to the target aspect ratio (no distortion).
      pad_to_aspect_ratio: first pad (with `fill_value`) to the target aspect ratio.
      fill_mode: "constant" (the only mode, as in Keras).
      fill_value: padding value for `pad_to_aspect_ratio` (0.0).
      antialias: antialias when downsampling (False, Keras's default).
      data_format: "channels_last" or "channels_first".
    """

    def __init__(self, height: int, width: int, interpolation: str = "bilinear", crop_to_aspect_ratio: bool = False,
                 pad_to_aspect_ratio: bool = False, fill_mode: str = "constant", fill_value: float = 0.0,
                 antialias: bool = False, data_format: str | None = None, **kwargs):
        super().__init__(height, width, data_format=data_format, **kwargs)
        where = f'Resizing "{self.name}"'
        self.interpolation = check_choice(interpolation, _INTERPOLATIONS[:-1], "interpolation", where)
        self.fill_mode = check_choice(fill_mode, ("constant",), "fill_mode", where)
        if crop_to_aspect_ratio and pad_to_aspect_ratio:
            raise ValueError(f"{where}: only one of `crop_to_aspect_ratio` and `pad_to_aspect_ratio` can be True")
        self.crop_to_aspect_ratio = bool(crop_to_aspect_ratio)
        self.pad_to_aspect_ratio = bool(pad_to_aspect_ratio)
        self.fill_value = float(fill_value)
        self.antialias = bool(antialias)

    def _pad_to_aspect_ratio(self, x):
        h_axis, w_axis = self._hw_axes
        height, width = x.shape[h_axis], x.shape[w_axis]
        pad_height = max(height, int(float(width * self.height) / self.width))
        pad_width = max(width, int(float(height * self.width) / self.height))
        top = int(float(pad_height - height) / 2)
        left = int(float(pad_width - width) / 2)
        widths = [(0, 0)] * 4
        # Keras pads the same amount on both sides (so an odd difference loses one row or column).
        if top > 0:
            widths[h_axis] = (top, top)
        elif left > 0:
            widths[w_axis] = (left, left)
        return jnp.pad(x, widths, constant_values=jnp.asarray(self.fill_value, x.dtype))

    def call(self, x, *, training=False, key=None):
        x = as_float(x)
        if self.crop_to_aspect_ratio:
            x = self._crop_to_aspect_ratio(x)
        elif self.pad_to_aspect_ratio:
            x = self._pad_to_aspect_ratio(x)
        return self._resize(x, self.interpolation, self.antialias)

    def get_config(self) -> dict:
        return {"name": self.name, "height": self.height, "width": self.width, "interpolation": self.interpolation,
                "crop_to_aspect_ratio": self.crop_to_aspect_ratio, "pad_to_aspect_ratio": self.pad_to_aspect_ratio,
                "fill_value": self.fill_value, "antialias": self.antialias, "data_format": self.data_format}


__all__ = ["CenterCrop", "Rescaling", "Resizing", "as_float"]
