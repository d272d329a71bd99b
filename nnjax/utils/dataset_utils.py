"""Keras's dataset utilities over NumPy: `split_dataset`, `timeseries_dataset_from_array`,
`image_dataset_from_directory`, `text_dataset_from_directory`, `pack_x_y_sample_weight`, `unpack_x_y_sample_weight`.

No TensorFlow: the datasets are `nj.utils.PyDataset`s of NumPy batches (what `fit`, `evaluate` and
`predict` take), built with Keras's own rules for which files, sequences and samples they hold and in
which order (the same seed gives Keras's order). Images are decoded with Pillow (imported when used).
"""

from __future__ import annotations

import os
import random as py_random
from collections.abc import Sequence
from typing import Any

import numpy as np

from nnjax.utils.py_dataset import PyDataset

IMAGE_FORMATS = (".bmp", ".gif", ".jpeg", ".jpg", ".png")


# ----------------------------------------------------------------------------------- packing
def unpack_x_y_sample_weight(data) -> tuple:
    """`(x, y, sample_weight)` from `x`, `(x,)`, `(x, y)` or `(x, y, sample_weight)` (missing parts None), as Keras.

    Raises:
      ValueError: for a tuple of more than three parts.
    """
    if isinstance(data, list):
        data = tuple(data)
    if not isinstance(data, tuple):
        return (data, None, None)
    if len(data) == 1:
        return (data[0], None, None)
    if len(data) == 2:
        return (data[0], data[1], None)
    if len(data) == 3:
        return (data[0], data[1], data[2])
    raise ValueError(f"Data is expected to be in format `x`, `(x,)`, `(x, y)`, or `(x, y, sample_weight)`, found: {data}")


def pack_x_y_sample_weight(x, y=None, sample_weight=None):
    """The batch `fit` takes: `x` alone (a tuple/list `x` as `(x,)`), `(x, y)` or `(x, y, sample_weight)`, as Keras."""
    if y is None:
        return x if not isinstance(x, (tuple, list)) else (x,)
    if sample_weight is None:
        return (x, y)
    return (x, y, sample_weight)


# ----------------------------------------------------------------------------------- split_dataset
def _split_sizes(left_size, right_size, total: int) -> tuple[int, int]:
    """Keras's `_rescale_dataset_split_sizes`: fractions rounded, the missing side the rest, empty sides refused."""
    for name, value in (("left_size", left_size), ("right_size", right_size)):
        if value is not None and type(value) not in (int, float):
            raise TypeError(f"Invalid `{name}` Type. Expected: int or float or None, Received: type({name})={type(value)}.")
    if left_size == 0 and right_size == 0:
        raise ValueError("Both `left_size` and `right_size` are zero. At least one of the split sizes must be non-zero.")
    for name, value in (("left_size", left_size), ("right_size", right_size)):
        if (type(value) is int and (value <= 0 or value >= total)) or (type(value) is float and (value <= 0 or value >= 1)):
            raise ValueError(f"`{name}` should be either a positive integer smaller than {total}, or a float within the "
                             f"range `[0, 1]`. Received: {name}={value}")
    if type(left_size) is float and type(right_size) is float and left_size + right_size > 1:
        raise ValueError("The sum of `left_size` and `right_size` is greater than 1. It must be less than or equal to 1.")
    left = round(left_size * total) if type(left_size) is float else left_size
    right = round(right_size * total) if type(right_size) is float else right_size
    left = total - right if left is None else left
    right = total - left if right is None else right
    if left + right > total:
        raise ValueError(f"The sum of `left_size` and `right_size` should be smaller than the {total}. Received: "
                         f"left_size + right_size = {left + right} and total_length = {total}")
    for split, side in ((left, "left"), (right, "right")):
        if split == 0:
            raise ValueError(f"With `dataset` of length={total}, `left_size`={left} and `right_size`={right}. Resulting "
                             f"{side} side dataset split will be empty. Adjust any of the aforementioned parameters")
    return int(left), int(right)


def split_dataset(dataset, left_size: int | float | None = None, right_size: int | float | None = None,
                  shuffle: bool = False, seed: int | None = None):
    """Splits arrays (or a tuple/list/dict of arrays, split along axis 0) into a left and a right part, as Keras.

    Sizes are counts or fractions (rounded); a missing side takes the rest. With `shuffle`, samples are
    first shuffled as Keras's NumPy path shuffles them (`random.shuffle` seeded with `seed`). The left
    part is the first `left_size` samples, the right part the last `right_size`.

    Returns:
      `(left, right)`, each of the structure of `dataset` (arrays that `fit` takes as they are).

    Raises:
      ValueError / TypeError: for sizes Keras refuses, or arrays of different lengths.
    """
    if left_size is None and right_size is None:
        raise ValueError("At least one of the `left_size` or `right_size` must be specified. Received: left_size=None and "
                         "right_size=None")
    if isinstance(dataset, dict):
        keys, parts = list(dataset), [np.asarray(v) for v in dataset.values()]
    elif isinstance(dataset, (tuple, list)):
        keys, parts = None, [np.asarray(v) for v in dataset]
    else:
        keys, parts = None, [np.asarray(dataset)]
    lengths = {len(p) for p in parts}
    if len(lengths) != 1:
        raise ValueError(f"split_dataset: every array must have the same length along axis 0; got lengths {sorted(lengths)}")
    total = lengths.pop()
    order = list(range(total))
    if shuffle:
        py_random.Random(py_random.randint(0, int(1e6)) if seed is None else seed).shuffle(order)
    left, right = _split_sizes(left_size, right_size, total)
    left_idx, right_idx = np.asarray(order[:left], np.int64), np.asarray(order[-right:], np.int64)

    def rebuild(idx):
        taken = [p[idx] for p in parts]
        if keys is not None:
            return dict(zip(keys, taken, strict=True))
        if isinstance(dataset, (tuple, list)):
            return type(dataset)(taken)
        return taken[0]

    return rebuild(left_idx), rebuild(right_idx)


# ----------------------------------------------------------------------------------- batches as a PyDataset
class ArrayBatches(PyDataset):
    """Batches computed by `batch(index)`; what the `*_dataset_from_*` utilities return.

    Attributes:
      class_names: for the directory datasets, the class of each label id (Keras's `dataset.class_names`).
      file_paths: for the directory datasets, the files in the order they are served.
    """

    def __init__(self, count: int, batch, class_names=None, file_paths=None):
        super().__init__()
        self._count, self._batch = int(count), batch
        self.class_names = class_names
        self.file_paths = file_paths

    def __len__(self) -> int:
        return self._count

    def __getitem__(self, index: int):
        if not 0 <= index < self._count:
            raise IndexError(f"batch index {index} out of range for {self._count} batches")
        return self._batch(index)


def _batches(n: int, batch_size: int | None) -> tuple[int, int]:
    size = n if batch_size is None else int(batch_size)
    return (-(-n // size) if n else 0), size


# ----------------------------------------------------------------------------------- timeseries
def timeseries_dataset_from_array(data, targets, sequence_length: int, sequence_stride: int = 1, sampling_rate: int = 1,
                                  batch_size: int | None = 128, shuffle: bool = False, seed: int | None = None,
                                  start_index: int | None = None, end_index: int | None = None) -> ArrayBatches:
    """Sliding windows over `data` `(T, ...)`, as Keras's `timeseries_dataset_from_array`.

    Window `i` starts at `start_index + p_i` and takes `sequence_length` steps `sampling_rate` apart; the
    starts `p_i` run `0, sequence_stride, ...` over `T - (sequence_length - 1) * sampling_rate` positions
    (at most `len(targets)`), shuffled by `np.random.RandomState(seed)` with `shuffle`. Its target is
    `targets[start_index + p_i]`.

    Returns:
      An `ArrayBatches` of `(windows (B, sequence_length, ...), targets (B, ...))`, or of windows alone
      when `targets` is None.

    Raises:
      ValueError: with Keras's messages, for indices, rates or strides outside the data.
    """
    data = np.asarray(data)
    if start_index:
        if start_index < 0:
            raise ValueError(f"`start_index` must be 0 or greater. Received: start_index={start_index}")
        if start_index >= len(data):
            raise ValueError(f"`start_index` must be lower than the length of the data. Received: start_index={start_index}, "
                             f"for data of length {len(data)}")
    if end_index:
        if start_index and end_index <= start_index:
            raise ValueError(f"`end_index` must be higher than `start_index`. Received: start_index={start_index}, and "
                             f"end_index={end_index} ")
        if end_index >= len(data):
            raise ValueError(f"`end_index` must be lower than the length of the data. Received: end_index={end_index}, "
                             f"for data of length {len(data)}")
        if end_index <= 0:
            raise ValueError(f"`end_index` must be higher than 0. Received: end_index={end_index}")
    for name, value in (("sampling_rate", sampling_rate), ("sequence_stride", sequence_stride)):
        if value <= 0:
            raise ValueError(f"`{name}` must be higher than 0. Received: {name}={value}")
        if value >= len(data):
            raise ValueError(f"`{name}` must be lower than the length of the data. Received: {name}={value}, for data "
                             f"of length {len(data)}")
    start = 0 if start_index is None else int(start_index)
    end = len(data) if end_index is None else int(end_index)
    num_seqs = end - start - (sequence_length - 1) * sampling_rate
    if targets is not None:
        targets = np.asarray(targets)
        num_seqs = min(num_seqs, len(targets))
    positions = np.arange(0, max(num_seqs, 0), sequence_stride, dtype=np.int64)
    if shuffle:
        np.random.RandomState(np.random.randint(1e6) if seed is None else seed).shuffle(positions)
    offsets = np.arange(sequence_length, dtype=np.int64) * sampling_rate
    count, size = _batches(len(positions), batch_size)

    def batch(index):
        starts = positions[index * size: (index + 1) * size] + start
        windows = data[starts[:, None] + offsets]
        return windows if targets is None else (windows, targets[starts])

    return ArrayBatches(count, batch)


# ----------------------------------------------------------------------------------- directories
def _valid_files(directory: str, follow_links: bool, formats: tuple[str, ...]):
    walk = os.walk(directory, followlinks=follow_links)
    for root, _, files in sorted(walk, key=lambda x: x[0]):
        for name in sorted(files):
            if name.lower().endswith(formats):
                yield root, name


def index_directory(directory: str, labels, formats: tuple[str, ...], class_names=None, shuffle: bool = True,
                    seed: int | None = None, follow_links: bool = False) -> tuple[list[str], Any, list[str]]:
    """Keras's `index_directory`: `(file paths, integer labels or None, class names)`, files in sorted walk order,
    class subfolders in alphanumeric order (or `class_names`' order), shuffled by `np.random.RandomState(seed)`.

    Raises:
      ValueError: for `class_names` that are not subfolders, or explicit labels of the wrong length.
    """
    if not os.path.isdir(directory):
        raise ValueError(f"Could not find directory {directory}")
    subdirs = [""]
    if labels == "inferred":
        subdirs = [d for d in sorted(os.listdir(directory)) if os.path.isdir(os.path.join(directory, d))
                   and not d.startswith(".")]
        if class_names is not None:
            if not set(class_names).issubset(set(subdirs)):
                raise ValueError("The `class_names` passed did not match the names of the subdirectories of the target "
                                 f"directory. Expected: {subdirs} (or a subset of it), but received: class_names={class_names}")
            subdirs = list(class_names)
    elif class_names is not None:
        raise ValueError("When `labels=None` (no labels), argument `class_names` cannot be specified." if labels is None else
                         "When argument `labels` is specified, argument `class_names` cannot be specified (the "
                         "`class_names` will be the sorted list of labels).")
    filenames, inferred = [], []
    for index, subdir in enumerate(subdirs):
        root_dir = os.path.join(directory, subdir)
        for root, name in _valid_files(root_dir, follow_links, formats):
            filenames.append(os.path.join(subdir, os.path.relpath(os.path.join(root, name), root_dir)) if subdir
                             else os.path.relpath(os.path.join(root, name), root_dir))
            inferred.append(index)
    if labels == "inferred":
        label_list = np.asarray(inferred, np.int32)
        names = subdirs
    elif labels is None:
        label_list, names = None, []
    else:
        if len(labels) != len(filenames):
            raise ValueError(f"Expected the lengths of `labels` to match the number of files in the target directory. "
                             f"len(labels) is {len(labels)} while we found {len(filenames)} files in directory {directory}.")
        label_list = np.asarray(labels)
        names = [str(c) for c in sorted(set(np.asarray(labels).tolist()))]
    paths = [os.path.join(directory, f) for f in filenames]
    if shuffle:
        seed = np.random.randint(1e6) if seed is None else seed
        rng = np.random.RandomState(seed)
        rng.shuffle(paths)
        if label_list is not None:
            rng = np.random.RandomState(seed)
            rng.shuffle(label_list)
    return paths, label_list, names


def _subset(paths, labels, validation_split, subset):
    """Keras's `get_training_or_validation_split`: the validation part is the last `int(split * n)` samples."""
    if not validation_split:
        return paths, labels
    count = int(validation_split * len(paths))
    if subset == "training":
        return paths[:-count], None if labels is None else labels[:-count]
    if subset == "validation":
        return paths[-count:], None if labels is None else labels[-count:]
    raise ValueError(f'`subset` must be either "training" or "validation", received: {subset}')


def _check_split(validation_split, subset, shuffle, seed) -> None:
    if subset not in (None, "training", "validation", "both"):
        raise ValueError(f'`subset` must be either "training", "validation" or "both", received: {subset}')
    if validation_split and subset is None:
        raise ValueError("If `validation_split` is set, `subset` must be set too (\"training\", \"validation\" or \"both\")")
    if subset is not None and not validation_split:
        raise ValueError("If `subset` is set, `validation_split` must be set too")
    if validation_split and shuffle and seed is None:
        raise ValueError("If using `validation_split` and shuffling the data, you must provide a `seed` argument, to make "
                         "sure that there is no overlap between the training and validation subset.")
    if validation_split is not None and not 0 < validation_split < 1:
        raise ValueError(f"`validation_split` must be between 0 and 1, received: {validation_split}")


def _label_batch(labels, label_mode: str | None, num_classes: int):
    if label_mode == "int":
        return labels.astype(np.int32)
    if label_mode == "binary":
        return labels.astype(np.float32)[:, None]
    return np.eye(num_classes, dtype=np.float32)[labels]


def _check_label_mode(label_mode, labels, num_classes: int) -> None:
    if label_mode not in ("int", "categorical", "binary", None):
        raise ValueError(f'`label_mode` argument must be one of "int", "categorical", "binary", or None. '
                         f"Received: label_mode={label_mode}")
    if labels is None or label_mode is None:
        return
    if label_mode == "binary" and num_classes != 2:
        raise ValueError(f'When passing `label_mode="binary"`, there must be exactly 2 class_names. Received: '
                         f"class_names has {num_classes} classes")


def _from_directory(directory, labels, label_mode, class_names, batch_size, shuffle, seed, validation_split, subset,
                    follow_links, formats, load):
    if labels not in ("inferred", None) and not isinstance(labels, (list, tuple)):
        raise ValueError("`labels` argument should be a list/tuple of integer labels, of the same size as the number of "
                         f'files in the target directory. If you wish to infer the labels from the subdirectory names in '
                         f'the target directory, pass `labels="inferred"`. If you wish to get a dataset that only contains '
                         f"images (no labels), pass `labels=None`. Received: labels={labels}")
    if labels is None or label_mode is None:
        labels, label_mode = None, None
    _check_split(validation_split, subset, shuffle, seed)
    if seed is None:
        seed = np.random.randint(1e6)
    paths, label_ids, names = index_directory(directory, labels, formats, class_names=class_names, shuffle=shuffle,
                                              seed=seed, follow_links=follow_links)
    _check_label_mode(label_mode, label_ids, len(names))

    def make(part):
        files, ids = _subset(paths, label_ids, validation_split, part) if part else (paths, label_ids)
        if not files:
            raise ValueError(f"No files found in directory {directory}. Allowed formats: {formats}")
        count, size = _batches(len(files), batch_size)

        def batch(index):
            chunk = slice(index * size, (index + 1) * size)
            x = load(files[chunk])
            return x if ids is None else (x, _label_batch(np.asarray(ids[chunk]), label_mode, len(names)))

        return ArrayBatches(count, batch, class_names=names, file_paths=list(files))

    if subset == "both":
        return make("training"), make("validation")
    return make(subset)


INTERPOLATIONS = ("bilinear", "nearest", "bicubic", "area", "lanczos3", "lanczos5", "gaussian", "mitchellcubic")
# What `keras.ops.image.resize` computes on the JAX backend (`jax.image.resize`); Keras refuses the others there.
JAX_INTERPOLATIONS = ("bilinear", "nearest", "lanczos3", "lanczos5", "bicubic")


def _crop_or_pad(image: np.ndarray, size: tuple[int, int], crop: bool, pad: bool) -> np.ndarray:
    """Keras's JAX `resize` window: the centred crop (or zero padding) to the target aspect ratio, before resizing.

    Args:
      image: float32 `(height, width, channels)`.
      size: the target `(height, width)`.
      crop: take the largest centred window of the target's aspect ratio.
      pad: pad with zeros, the same number of rows (or columns) on both sides, to about that ratio.

    Returns:
      float32 `(height', width', channels)`.
    """
    height, width = image.shape[:2]
    target_height, target_width = size
    if crop:
        crop_height = max(min(height, int(float(width * target_height) / target_width)), 1)
        crop_width = max(min(width, int(float(height * target_width) / target_height)), 1)
        top, left = int(float(height - crop_height) / 2), int(float(width - crop_width) / 2)
        return image[top : top + crop_height, left : left + crop_width]
    if pad:
        top = int(float(max(height, int(float(width * target_height) / target_width)) - height) / 2)
        left = int(float(max(width, int(float(height * target_width) / target_height)) - width) / 2)
        if top > 0:
            return np.pad(image, ((top, top), (0, 0), (0, 0)))
        if left > 0:
            return np.pad(image, ((0, 0), (left, left), (0, 0)))
    return image


def _resize(image: np.ndarray, size: tuple[int, int], interpolation: str, crop: bool, pad: bool) -> np.ndarray:
    """`keras.ops.image.resize(image, size, interpolation, antialias=False, crop/pad_to_aspect_ratio)` on JAX.

    Args:
      image: `(height, width, channels)` in [0, 255].
      size: the target `(height, width)`.
      interpolation: one of `JAX_INTERPOLATIONS` (`jax.image.resize`'s method, half-pixel centres).
      crop, pad: `crop_to_aspect_ratio`, `pad_to_aspect_ratio`.

    Returns:
      float32 `(size[0], size[1], channels)`.
    """
    import jax

    image = _crop_or_pad(image.astype(np.float32), size, crop, pad)
    resized = jax.image.resize(image, (size[0], size[1], image.shape[2]), method=interpolation, antialias=False)
    return np.asarray(resized, np.float32)


def _check_image_options(interpolation, crop_to_aspect_ratio, pad_to_aspect_ratio, data_format) -> str:
    """The lower-cased interpolation, after Keras's checks (and the JAX backend's refusal of three methods)."""
    if not isinstance(interpolation, str) or interpolation.lower() not in INTERPOLATIONS:
        raise ValueError(f"Argument `interpolation` should be one of {INTERPOLATIONS}. Received: interpolation={interpolation}")
    interpolation = interpolation.lower()
    if interpolation not in JAX_INTERPOLATIONS:
        raise ValueError(
            f"image_dataset_from_directory: interpolation={interpolation!r} is not computed by Keras's JAX backend "
            f"(`keras.ops.image.resize` there refuses it), nor by nnjax; expected one of {JAX_INTERPOLATIONS}"
        )
    if crop_to_aspect_ratio and pad_to_aspect_ratio:
        raise ValueError("Only one of `pad_to_aspect_ratio`, `crop_to_aspect_ratio` can be set to `True`.")
    if data_format not in (None, "channels_last", "channels_first"):
        raise ValueError(
            f"`data_format` must be None, 'channels_last' or 'channels_first'; received data_format={data_format!r}"
        )
    return interpolation


def image_dataset_from_directory(directory: str, labels="inferred", label_mode: str | None = "int", class_names=None,
                                 color_mode: str = "rgb", batch_size: int | None = 32,
                                 image_size: Sequence[int] = (256, 256), shuffle: bool = True, seed: int | None = None,
                                 validation_split: float | None = None, subset: str | None = None,
                                 interpolation: str = "bilinear", follow_links: bool = False,
                                 crop_to_aspect_ratio: bool = False, pad_to_aspect_ratio: bool = False,
                                 data_format: str | None = None, verbose: bool = True):
    """Images in class subfolders of `directory` as batches, as Keras's `image_dataset_from_directory`.

    Which files, their labels, order (shuffled with `seed`) and the training/validation split follow Keras
    exactly. Images are decoded with Pillow to float32 `(B, height, width, channels)` in [0, 255]
    (channels: 3 "rgb", 1 "grayscale", 4 "rgba") and resized to `image_size` as Keras's JAX backend
    does (`keras.ops.image.resize`: `jax.image.resize` with half-pixel centres and no antialias, after a
    centred crop or zero padding to the target's aspect ratio when asked).

    Args:
      interpolation: "bilinear", "nearest", "bicubic", "lanczos3" or "lanczos5" (Keras also names
        "area", "gaussian" and "mitchellcubic", which its JAX backend refuses; so does nnjax).
      crop_to_aspect_ratio: crop the largest centred window of `image_size`'s aspect ratio, then resize.
      pad_to_aspect_ratio: pad with zeros (centred) to that aspect ratio, then resize.
      data_format: None or "channels_last": `(B, H, W, C)`; "channels_first": `(B, C, H, W)`.
      Others: as Keras's.

    Returns:
      An `ArrayBatches` of `(images, labels)` ("int": int32 `(B,)`, "categorical": float32 one-hot `(B, C)`,
      "binary": float32 `(B, 1)`), of images alone for `labels=None` / `label_mode=None`, or a
      `(training, validation)` pair for `subset="both"`; `.class_names` and `.file_paths` are set.

    Raises:
      ValueError: with Keras's messages for bad arguments, and for the interpolations Keras's JAX backend
        refuses.
    """
    channels = {"rgb": 3, "rgba": 4, "grayscale": 1}
    if color_mode not in channels:
        raise ValueError(f'`color_mode` must be one of {{"rgb", "rgba", "grayscale"}}. Received: color_mode={color_mode}')
    interpolation = _check_image_options(interpolation, crop_to_aspect_ratio, pad_to_aspect_ratio, data_format)
    del verbose
    size = (int(image_size[0]), int(image_size[1]))
    pil_mode = {"rgb": "RGB", "rgba": "RGBA", "grayscale": "L"}[color_mode]

    def load(files):
        from PIL import Image

        images = []
        for path in files:
            with Image.open(path) as image:
                array = np.asarray(image.convert(pil_mode), np.float32)
            array = array.reshape(array.shape[:2] + (channels[color_mode],))
            images.append(_resize(array, size, interpolation, crop_to_aspect_ratio, pad_to_aspect_ratio))
        batch = np.stack(images)
        return batch.transpose(0, 3, 1, 2) if data_format == "channels_first" else batch

    return _from_directory(directory, labels, label_mode, class_names, batch_size, shuffle, seed, validation_split,
                           subset, follow_links, IMAGE_FORMATS, load)


def text_dataset_from_directory(directory: str, labels="inferred", label_mode: str | None = "int", class_names=None,
                                batch_size: int | None = 32, max_length: int | None = None, shuffle: bool = True,
                                seed: int | None = None, validation_split: float | None = None, subset: str | None = None,
                                follow_links: bool = False, verbose: bool = True):
    """`.txt` files in class subfolders of `directory` as batches, as Keras's `text_dataset_from_directory`.

    Files, labels, order and split follow Keras exactly. Texts are NumPy arrays (dtype object) of `str` read as
    UTF-8, cut to their first `max_length` characters when given, as Keras's `format="grain"` gives them (its
    TensorFlow format holds bytes and cuts bytes).

    Returns:
      An `ArrayBatches` of `(texts (B,), labels)`, texts alone without labels, or a `(training, validation)`
      pair for `subset="both"`; `.class_names` and `.file_paths` are set.
    """
    del verbose

    def load(files):
        texts = []
        for path in files:
            with open(path, encoding="utf-8") as f:
                content = f.read()
            texts.append(content if max_length is None else content[:max_length])
        out = np.empty(len(texts), dtype=object)
        out[:] = texts
        return out

    return _from_directory(directory, labels, label_mode, class_names, batch_size, shuffle, seed, validation_split,
                           subset, follow_links, (".txt",), load)


__all__ = [
    "ArrayBatches",
    "image_dataset_from_directory",
    "index_directory",
    "pack_x_y_sample_weight",
    "split_dataset",
    "text_dataset_from_directory",
    "timeseries_dataset_from_array",
    "unpack_x_y_sample_weight",
]
